"""The HRPO prompts (spec 4.1-4.2): one system prompt for every task, one user message per task family.

:func:`build_messages` turns a row of :mod:`hrpo.data` into ``[system, user]`` chat messages -- the same for
training (TRL's conversational ``prompt`` column) and evaluation (the lm-eval tasks put :func:`system_prompt`
in the task ``description``, which lm-eval 0.4.13 sends as the system turn under ``--apply_chat_template``, and
:func:`user_message` as the user turn). :func:`render_prompt` applies a tokenizer's chat template with
``add_generation_prompt=True``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from hrpo.answers import DEFAULT_DELIMITER, LETTERS

_SYSTEM = (
    "A conversation between User and Assistant. The user asks a question, and the assistant solves it. "
    "The assistant first thinks about the reasoning process in the mind and then provides the user with the "
    "answer. The final answer is provided after the {delim} tag, i.e., {{reasoning process}} {delim} {{answer}}."
)
DEFAULT_TOPK = 3
CONTEXT_HEADER = "Context (which may or may not be relevant):\n"


def system_prompt(delimiter: str = DEFAULT_DELIMITER) -> str:
    """The HRPO system prompt (spec 4.1; verbatim for the default ``####``)."""
    return _SYSTEM.format(delim=delimiter)


SYSTEM_PROMPT = system_prompt()


def format_context(passage: str) -> str:
    """One context line as the authors' ``utils.py`` / ``eval_rag.py`` build it.

    The passage (``"Title"\ntext``) is split at every newline, double quotes are stripped from both ends of the
    first piece (the title), and the pieces are joined with ``::::``; so ``"Title"\nline 1\nline 2`` becomes
    ``Title::::line 1::::line 2``. Nothing else is stripped.
    """
    pieces = passage.split("\n")
    pieces[0] = pieces[0].strip('"')
    return "::::".join(pieces)


def multiple_choice_message(question: str, choices: Sequence[str]) -> str:
    """``Question: ...\\nOptions:\\n`` then ``A. choice`` lines, stripped."""
    lines = "\n".join(f"{LETTERS[i]}. {c}" for i, c in enumerate(choices))
    return f"Question: {question}\nOptions:\n{lines}".strip()


def rag_message(question: str, contexts: Sequence[str] | None, topk: int = DEFAULT_TOPK) -> str:
    """Byte for byte the authors' RAG user message (``process_rag`` in ``utils.py``, ``get_prompt`` in
    ``eval_rag.py`` of github.com/Yueeeeeeee/HRPO): the header line, one :func:`format_context` line per top-``topk``
    context, each ending in a newline, then a blank line and ``Question: ...``; the whole string stripped.

    Where the paper's prompt figures render this message differently, the code wins: it produced the reported
    numbers. With no contexts at all (closed book, not a paper setting) the message is ``Question: ...``.
    """
    if not contexts:
        return f"Question: {question}".strip()
    lines = "".join(format_context(c) + "\n" for c in list(contexts)[:topk])
    return f"{CONTEXT_HEADER}{lines}\nQuestion: {question}".strip()


def user_message(row: dict[str, Any], topk: int = DEFAULT_TOPK) -> str:
    """The user turn for a row, chosen by its ``task`` (``gsm8k``/``math``/``multiple_choice``/``qa``)."""
    task = row.get("task")
    if task in ("gsm8k", "math"):
        return row["question"].strip()
    if task == "multiple_choice":
        return multiple_choice_message(row["question"], row["choices"])
    if task == "qa":
        return rag_message(row["question"], row.get("contexts"), topk)
    raise ValueError(f"row {row.get('id')!r} has no known 'task' (got {task!r})")


def build_messages(
    row: dict[str, Any], delimiter: str = DEFAULT_DELIMITER, topk: int = DEFAULT_TOPK
) -> list[dict[str, str]]:
    """``[{"role": "system", ...}, {"role": "user", ...}]`` for one row (training and evaluation)."""
    return [
        {"role": "system", "content": system_prompt(delimiter)},
        {"role": "user", "content": user_message(row, topk)},
    ]


def render_prompt(messages: list[dict[str, str]], tokenizer: Any) -> str:
    """The prompt string from ``tokenizer``'s chat template, ending with the assistant header.

    Tokenise the result with ``add_special_tokens=False`` (the template already holds the special tokens).
    """
    if getattr(tokenizer, "chat_template", None) is None:
        raise ValueError("the tokenizer has no chat template; HRPO prompts are chat prompts (set one first)")
    return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)


def add_prompt_column(
    rows: list[dict[str, Any]], delimiter: str = DEFAULT_DELIMITER, topk: int = DEFAULT_TOPK
) -> list[dict[str, Any]]:
    """Copies of ``rows`` with TRL's conversational ``prompt`` column (the messages of :func:`build_messages`)."""
    return [{**row, "prompt": build_messages(row, delimiter, topk)} for row in rows]
