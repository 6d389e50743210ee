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


def chat(tokenizer, system: str, user: str, assistant_prefix: str = "") -> str:
    """A chat-formatted prompt string ending inside the assistant turn, ready for generation."""
    if tokenizer.chat_template is None:  # a base model (e.g. gemma3-270m): plain dialogue, with its BOS token
        return f"{tokenizer.bos_token or ''}{system}\n\nUser: {user}\nAssistant: {assistant_prefix}"
    messages = [{"role": "system", "content": system}, {"role": "user", "content": user}]
    return tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False) + assistant_prefix
