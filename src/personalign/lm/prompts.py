"""Prompt templates of WikiPersona Appendix G (the CoT diversity prompt G.3 and the pieces it is built from)."""

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
    "Respond to the following prompt from this person. "
    + _CATER.format(whose="their")
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
    'In one sentence, describe who this user is and what they value, starting with "The user".'
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
