"""A stage's executed notebook as a record of its results: what varies between two runs that computed the same results
(timestamps, durations, progress-bar rates and elapsed times, the injected cell's random id, pandas Styler's random
table ids, memory addresses in reprs, this checkout's absolute path, a warning repeated on every call) is removed or
numbered, so a rerun with unchanged results changes no committed byte."""

from __future__ import annotations

import json
import re
from pathlib import Path

INJECTED_ID = "injected-parameters"
_RUN_METADATA = ("duration", "start_time", "end_time")  # papermill's, per notebook and per cell
_BAR = re.compile(r"(?P<bar>[^\r\n]*?\d+%\|[^|\r\n]*\|\s*\d+/(?P<total>\d+))(?: \[[^\]\r\n]*\])?")  # one tqdm state
_WARNING = re.compile(r"^\S+\.py:\d+: \w*Warning: ")
_STYLER_ID = re.compile(
    r"(?<![0-9A-Za-z])T_[0-9a-f]{5}(?![0-9a-f])"
)  # pandas Styler's random table id (uuid4 hex, 5 characters)
_ADDRESS = re.compile(r" at 0x[0-9a-f]+>")  # an object's memory address in its repr
# transformers' notebook progress bar: "[8/8 00:15, Epoch 1/1]", while running "[5/8 00:03 < 00:02, 1.2 it/s, ...]"
_TRAINER_PROGRESS = re.compile(r"\[(\d+/\d+) \d+(?::\d+)+(?: < \d+(?::\d+)+)?(?:, [\d.]+ it/s)?(, Epoch [\d.]+/\d+)?\]")


def _bar_key(match: re.Match) -> tuple[str, str]:
    """(description, total) of a progress-bar state: the states of one bar share it."""
    return match["bar"].rsplit("%|", 1)[0].rstrip("0123456789 ").strip(), match["total"]


def _last_bar_states(text: str) -> str:
    """`text` with each progress bar reduced to its last state, without rates or times, on a line of its own."""
    matches = list(_BAR.finditer(text))
    pieces, end = [], 0
    for k, match in enumerate(matches):
        pieces.append(text[end : match.start()])
        following = matches[k + 1] if k + 1 < len(matches) else None
        if following is None or _bar_key(following) != _bar_key(match):
            pieces.append("\n" + match["bar"].strip() + "\n")
        end = match.end()
    return "".join(pieces) + text[end:]


def clean_stream(text: str, root: str, warned: set[str] | None = None) -> str:
    """A stderr/stdout text with each progress bar reduced to its last state without rates or times, carriage
    returns and the blank lines they leave dropped, each warning in `warned` (filled as they are met) and the source
    line Python prints under it kept once, and `root/` removed from paths."""
    warned = set() if warned is None else warned
    lines = re.split(r"\r\n|\r|\n", _last_bar_states(text.replace(root + "/", "")))
    kept: list[str] = []
    repeated = False
    for line in lines:
        if repeated and line.startswith("  "):
            repeated = False
            continue
        repeated = bool(_WARNING.match(line)) and line in warned
        if repeated:
            continue
        if _WARNING.match(line):
            warned.add(line)
        if line.strip():
            kept.append(line)
    return "".join(line + "\n" for line in kept)


def _stable_data(data: dict, styler_ids: dict[str, str]) -> None:
    """Rich outputs without run-specific names or times: Styler tables numbered in order of appearance, no memory
    addresses, the trainer's progress bar without its elapsed time."""

    def numbered(match: re.Match) -> str:
        return styler_ids.setdefault(match[0], f"T_{len(styler_ids) + 1:05d}")

    for kind, pattern, replacement in (
        ("text/html", _STYLER_ID, numbered),
        ("text/html", _TRAINER_PROGRESS, r"[\1\2]"),
        ("text/plain", _ADDRESS, ">"),
    ):
        if kind in data:
            lines = data[kind] if isinstance(data[kind], list) else [data[kind]]
            data[kind] = [pattern.sub(replacement, line) for line in lines]


def as_record(notebook: dict, root: str) -> dict:
    """`notebook` (nbformat JSON as a dict), cleaned in place and returned (see the module docstring)."""
    for key in _RUN_METADATA:
        notebook.get("metadata", {}).get("papermill", {}).pop(key, None)
    warned: set[str] = set()  # a warning is kept where it first appears in the notebook
    styler_ids: dict[str, str] = {}  # random Styler id -> its number of appearance in the notebook
    for cell in notebook.get("cells", []):
        metadata = cell.get("metadata", {})
        metadata.pop("execution", None)
        for key in _RUN_METADATA:
            metadata.get("papermill", {}).pop(key, None)
        if "injected-parameters" in metadata.get("tags", []):
            cell["id"] = INJECTED_ID
        outputs = []
        for output in cell.get("outputs", []):
            previous = outputs[-1] if outputs else None
            if output.get("output_type") == "stream":
                text = "".join(output.get("text", ""))
                if previous and previous.get("output_type") == "stream" and previous["name"] == output["name"]:
                    previous["text"] += text  # one stream output per run of writes, cleaned as a whole below
                    continue
                output["text"] = text
            outputs.append(output)
        for output in outputs:
            if output.get("output_type") == "stream":
                output["text"] = clean_stream(output["text"], root, warned)
            _stable_data(output.get("data", {}), styler_ids)
        cell["outputs"] = [o for o in outputs if o.get("output_type") != "stream" or o["text"].strip()]
    return notebook


def write_record(path: Path, root: Path | None = None) -> None:
    """Rewrite the executed notebook at `path` as a record; `root`: the checkout whose path is removed (the cwd)."""
    root = (root or Path.cwd()).resolve()
    notebook = json.loads(path.read_text(encoding="utf-8"))
    path.write_text(json.dumps(as_record(notebook, str(root)), indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
