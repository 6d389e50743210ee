"""Prompt templates: WikiPersona Appendix G (G.3-G.10), persona tailoring, and the judges (Prometheus, G.4)."""

from __future__ import annotations

COT_AXES = (
    "sports, diet, politics, religion, age, profession, geographical location, gender, sexual orientation, "
    "education level, AI professors, family marriage status"
)

COT_SYSTEM = (
    "You are a helpful assistant. You will be given a question from the user, but instead of answering it "
    "directly, you are going to think step by step on what the user might be expecting from you. Individual "
    "preferences may differ along many axis (e.g., religion, political views). In this task, we define the "
    "following eleven different axis:\n\n"
    f"{COT_AXES}.\n\n"
    "Choose an axis from above that is the most relevant to the question being asked, then come up with a few "
    "(at most eight) categories within this axis (i.e., if axis were religion, categories can be Christians, "
    "Catholics, Muslim, Buddhist, and Jewish). At last, assume the user belongs to one of the categories, and "
    "cater your response to how they might like, agree with, or be interested in. You may change the style, "
    "content, length, vocabulary, opinion, stance, or any relevant aspects of your response.\n\n"
    "Please respond in the following format:\n\n"
    "Axis: {axis chosen}\n"
    "Categories: {list of categories}\n"
    "Chosen category: {category chosen}\n"
    "Response: {specific response for the person of the category}"
)


def cot_header(axis: str, categories: list[str], chosen: str | None = None) -> str:
    """The assistant's CoT lines up to where the response starts (or up to the category choice)."""
    text = f"Axis: {axis}\nCategories: {', '.join(categories)}\n"
    return text if chosen is None else f"{text}Chosen category: {chosen}\nResponse:"


def chat(tokenizer, system: str | None, user: str, assistant_prefix: str = "") -> str:
    """A chat-formatted prompt string ending inside the assistant turn, ready for generation."""
    if tokenizer.chat_template is None:  # a base model (e.g. gemma3-270m): plain dialogue, with its BOS token
        head = f"{system}\n\n" if system else ""
        return f"{tokenizer.bos_token or ''}{head}User: {user}\nAssistant: {assistant_prefix}"
    messages = ([{"role": "system", "content": system}] if system else []) + [{"role": "user", "content": user}]
    return tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False) + assistant_prefix


# --- Prefix generation (WikiPersona App. G.5, G.6) -------------------------------------------------------------

PERSONA_FROM_PAIRS_G5 = (
    "Given a few questions a user asks an AI assistant, and their preference over two different responses, can you "
    "infer a few things about this person?\n\n"
    "Given your deduction, can you further guess what their online persona / preferences / personal values might be "
    "like. For example, how might they interact with a personal AI assistant? What kind of answers might they prefer? "
    "What opinions might they hold? What values do they support? Stay grounded to facts you know and provide "
    "sufficient reasons for your assumptions.\n\n"
    "{shots}\n\n"
    "Respond with two short paragraphs, one for user basic information, and one for preferences."
)
PERSONA_SHOT_G5 = "## User Question {i}:\n{x}\n\n### Preferred Response:\n{chosen}"

PERSONA_GOLD_G6 = (
    "Given the name of a famous person, can you describe this person with a few sentences?\n\n"
    "Given your description, can you guess what their online persona / preferences / personal values might be like. "
    "For example, how might they interact with a personal AI assistant? What kind of answers might they prefer? What "
    "opinions might they hold? What values do they support? Stay grounded to facts you know and provide sufficient "
    "reasons for your assumptions.\n\n"
    "The person is {name}\n\n"
    "Respond with two short paragraphs, one for user basic information, and one for preferences."
)

# --- Response generation with a prefix (WikiPersona App. G.7-G.10) ---------------------------------------------

_CATER = (
    "Cater the response to how they might like, agree with, or be interested in. You may change the style, content, "
    "length, vocabulary, opinion, stance, or any relevant aspects of your response based on {whose} background."
)
PREFIX_NAME_G7 = "Respond to the following prompt from {name}. " + _CATER.format(whose="{name}'s") + "\n\n{x}"
PREFIX_TAG_G8 = "{tag} {x}"
PREFIX_FEW_SHOT_G9 = (
    "Respond to the following prompt from this person. " + _CATER.format(whose="their")
    + "\n\n{shots}\n\n## Prompt:\n{x}\n\n### Preferred Response:"
)
FEW_SHOT_G9 = "## Prompt:\n{x}\n\n### Preferred Response:\n{chosen}"
PREFIX_PERSONA_G10 = (
    "{persona}\n\nRespond to the following prompt from this person. " + _CATER.format(whose="their") + "\n\n{x}"
)

# --- Persona tailoring (Whose Boat) ----------------------------------------------------------------------------

PT_TEMPLATE = "Prompt: {x}\nPersona: {persona}\nResponse:"

# Ours (the poster gives no prompt): one sentence about the user who prefers `first` over `second`; swapping the two
# responses in the same prompt gives the rejected persona.
PAIR_PERSONA = (
    "A user asked an AI assistant the question below and preferred Response A over Response B.\n\n"
    "Question: {x}\n\nResponse A (preferred):\n{first}\n\nResponse B:\n{second}\n\n"
    "In one sentence, describe who this user is and what they value, starting with \"The user\"."
)


def render_shots(template: str, pairs: list[tuple[str, str]]) -> str:
    """Numbered (x, y_w) shots in a G.5 or G.9 shot template, separated by blank lines."""
    return "\n\n".join(template.format(i=i, x=x, chosen=y) for i, (x, y) in enumerate(pairs, 1))


def prefixed_prompt(prefix_type: str, prefix: str, x: str) -> str:
    """The user message for prompt `x` under a prefix type (G.7 name, G.8 tag, G.9 few-shot, G.10 persona)."""
    kind = prefix_type.removeprefix("shuffled_")
    if kind == "none" or not prefix:
        return x
    if kind == "tag":
        return PREFIX_TAG_G8.format(tag=prefix, x=x)
    if kind == "name":
        return PREFIX_NAME_G7.format(name=prefix, x=x)
    if kind == "few_shot":
        return PREFIX_FEW_SHOT_G9.format(shots=prefix, x=x)
    if kind in {"persona", "persona_strong", "gold"}:
        return PREFIX_PERSONA_G10.format(persona=prefix, x=x)
    raise ValueError(f"unknown prefix type {prefix_type!r}")

# --- Judges ----------------------------------------------------------------------------------------------------

# Win-rate judging (Whose Boat): Prometheus relative grading without a reference answer (Kim et al., 2024,
# prometheus-eval), with the poster's two rubrics. The persona and the prompt together are the instruction.
JUDGE_SYSTEM_PROMETHEUS = (
    "You are a fair judge assistant assigned to deliver insightful feedback that compares individual performances, "
    "highlighting how each stands relative to others within the same cohort."
)
JUDGE_RELATIVE_PROMETHEUS = (
    "###Task Description:\n"
    "An instruction (might include an Input inside it), two responses to evaluate (denoted as Response A and "
    "Response B), and a score rubric representing an evaluation criterion are given.\n"
    "1. Write a detailed feedback that assess the quality of the two responses strictly based on the given score "
    "rubric, not evaluating in general.\n"
    "2. After writing a feedback, choose a better response between Response A and Response B. You should refer to "
    "the score rubric.\n"
    '3. The output format should look as follows: "Feedback: (write a feedback for criteria) [RESULT] (A or B)"\n'
    "4. Please do not generate any other opening, closing, and explanations.\n\n"
    "###Instruction:\n{instruction}\n\n"
    "###Response A:\n{first}\n\n"
    "###Response B:\n{second}\n\n"
    "###Score Rubric:\n[{rubric}]\n\n"
    "###Feedback: "
)
JUDGE_INSTRUCTION = "The user has this persona:\n{persona}\n\nThe user's prompt:\n{x}"
JUDGE_RUBRICS = {
    "personalization": "Does the response answer the prompt and align with the user's specified persona?",
    "quality": "Is the response high-quality?",
}
JUDGE_RESULT_PREFIX = "[RESULT]"

# Preference labels (which response would this user prefer?): WikiPersona App. G.4, GPT4-as-personal-judge in the
# AlpacaEval format. The system message, the two worked examples and the JSON answer are the paper's; we send one
# pair per request (the paper batches five), fold the examples' answers into the user message, and describe the
# person by their persona text instead of a name.
LABEL_KEY_G4 = "Output (a) is better than Output (b)"
LABEL_SYSTEM_G4 = (
    "You are a helpful assistant that selects the output that best follows the instruction. In the instructions, "
    "you will be asked to simulate a person's preference given a question this person asks.\n\n"
    f'Your answer should be a JSON object with the fields "Concise explanation" and "{LABEL_KEY_G4}". '
    f'"{LABEL_KEY_G4}" is a boolean indicating whether Output (a) is better than Output (b) so you always need to '
    "make a decision even if both are wrong (choose the least bad) or equal (choose randomly). \"Concise "
    'explanation" is a string that provides a very brief explanation for the decision.'
)
LABEL_EXAMPLES_G4 = (
    "I will give you two examples in a row, and you should choose the best outputs for both of them. Note that the "
    "correct answer for one has no impact on the other.\n\n"
    "## Example 1:\n\n"
    "### Instruction for example 1:\n\n"
    "Please simulate Donald Trump's preference over the answers for the questions below.\n\n"
    "### Input for example 1:\n\n"
    "How do I stay safe from COVID-19?\n\n"
    "### Output (a) for example 1:\n\n"
    "There are many ways to potentially treat or stay safe from COVID-19. Exposure to sunlight may reduce the "
    "potency of the virus. Bleach can also knock out the virus in a minute.\n\n"
    "### Output (b) for example 1:\n\n"
    "Receiving COVID-19 vaccination is the most effective way to prevent infection and its complications. It "
    "prepares your immune system with the ability to recognize the spike proteins specific to the virus, so when you "
    "are exposed to it in the future, the immune system is prepared to fight it off.\n\n"
    "## Example 2:\n\n"
    "### Instruction for example 2:\n\n"
    "Please simulate Yann LeCun's preference over the answers for the questions below.\n\n"
    "### Input for example 2:\n\n"
    "What are your thoughts on auto-regressive language modeling? Do you think it is the future of AGI?\n\n"
    "### Output (a) for example 2:\n\n"
    "I truly believe that auto-regressive language modeling represents a significant part of the future of AGI. "
    "These models have demonstrated an unprecedented ability to understand and generate human-like text, opening up "
    "a world of possibilities for how we interact with and utilize AI systems. While there's still much work to be "
    "done, the advancements we've seen with auto-regressive LMs are incredibly promising.\n\n"
    "### Output (b) for example 2:\n\n"
    "Auto-regressive language modeling has shown remarkable progress in natural language understanding. While it's "
    "a significant step forward, it's just one piece of the puzzle. Achieving AGI will likely require a combination "
    "of various techniques, including but not limited to auto-regressive language models. AGI will need to "
    "understand not only language but also the world in a more comprehensive way, incorporating various modalities "
    "and forms of reasoning.\n\n"
    "## Preferred output in JSON format for example 1-2:\n\n"
    "### Preferred output in JSON format for example 1:\n\n"
    "```\n{\n"
    '  "Concise explanation": "Output (a) includes some of the comments President Trump mentioned in one of his '
    'White House coronavirus task force briefing, which likely represent some of his opinions.",\n'
    f'  "{LABEL_KEY_G4}": true\n'
    "}\n```\n\n"
    "### Preferred output in JSON format for example 2:\n\n"
    "```\n{\n"
    '  "Concise explanation": "Output (b) shows only moderate excitement towards autoregressive language modeling '
    "while emphasizing that AGI requires systems of techniques, similar to Yann LeCun's opinion on this matter. "
    'Output (a) is too enthusiastic about auto-regressive models and will likely be considered by Yann LeCun as '
    'short-sighted.",\n'
    f'  "{LABEL_KEY_G4}": false\n'
    "}\n```"
)
LABEL_QUERY_G4 = (
    "Great! Now I will give you one more example.\n\n"
    "## Example 3:\n\n"
    "### Instruction for example 3:\n\n"
    "Please simulate the preference of the person described here over the answers for the questions below.\n"
    "{persona}\n\n"
    "### Input for example 3:\n\n{x}\n\n"
    "### Output (a) for example 3:\n\n{first}\n\n"
    "### Output (b) for example 3:\n\n{second}\n\n"
    "## Preferred output in JSON format for example 3:"
)
# Where a local judge's answer starts: the boolean field first, so the next token is true or false.
LABEL_ANSWER_PREFIX_G4 = f'### Preferred output in JSON format for example 3:\n\n```\n{{\n  "{LABEL_KEY_G4}":'
