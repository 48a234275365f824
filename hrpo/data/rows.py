"""The one row schema every loader returns, its errors, and line-aware readers of the raw file formats.

A row is a plain ``dict`` (so it drops straight into ``datasets.Dataset.from_list`` and TRL):

* ``id`` (str) -- stable within its source, e.g. ``"gsm8k/test/17"`` or the file's own id.
* ``question`` (str) -- the question or problem text, as in the source.
* ``gold`` -- ``str`` for gsm8k/math/multiple choice (the final answer, the boxed answer, the option letter),
  ``list[str]`` of answer aliases for open QA.
* ``task`` (str) -- which scorer in :mod:`hrpo.rewards` and which prompt in :mod:`hrpo.prompts` apply:
  ``"gsm8k"``, ``"math"``, ``"multiple_choice"`` or ``"qa"``.
* task-specific: ``choices`` (list[str], options in letter order) and ``gold_raw`` (the source's own answer
  label, e.g. ARC's ``"3"``) for multiple choice; ``contexts`` (list[str], ``"Title"\\ntext`` passages) for QA;
  ``solution`` (reference solution) for gsm8k/math; ``subject``/``level`` where the source has them;
  ``source`` for merged training sets.
"""

from __future__ import annotations

import csv
import json
import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

Row = dict[str, Any]
TASKS = ("gsm8k", "math", "multiple_choice", "qa")
LETTERS = "ABCDEFGHIJ"


class DataSourceError(FileNotFoundError):
    """A data file or hub dataset could not be found; the message says what was looked for and how to supply it."""


class MalformedRowError(ValueError):
    """A row of a data file cannot be used; the message names the file and the line (or item) number."""

    def __init__(self, where: str, reason: str) -> None:
        super().__init__(f"{where}: {reason}")
        self.where = where
        self.reason = reason


class RowError(ValueError):
    """Raised by a row converter; the reader adds the file and line and re-raises as MalformedRowError."""


@dataclass
class BadRowPolicy:
    """What to do with malformed rows: raise (default) or skip and count them.

    ``skip=True`` is the explicit opt-in; the loader logs how many rows were skipped per file and
    :attr:`skipped` keeps the ``(where, reason)`` pairs so a caller can report them.
    """

    skip: bool = False
    skipped: list[tuple[str, str]] = field(default_factory=list)

    def handle(self, where: str, reason: str) -> None:
        if not self.skip:
            raise MalformedRowError(where, reason)
        self.skipped.append((where, reason))


def convert_items(
    items: Iterator[tuple[str, Any]],
    convert: Callable[[Any, int], Row | None],
    policy: BadRowPolicy,
    path: Any,
) -> list[Row]:
    """Convert ``(where, raw)`` pairs with ``convert(raw, index)``; RowError becomes a policy decision."""
    rows: list[Row] = []
    before = len(policy.skipped)
    for index, (where, raw) in enumerate(items):
        try:
            row = convert(raw, index)
        except RowError as err:
            policy.handle(where, str(err))
            continue
        if row is not None:
            rows.append(row)
    if (n := len(policy.skipped) - before) > 0:
        logger.warning("skipped %d malformed row(s) in %s (first: %s)", n, path, policy.skipped[before][1])
    return rows


REWRITE_HINT = "re-download or re-write the file"


def _not_utf8(err: UnicodeDecodeError, data: bytes) -> str:
    return f"not UTF-8 (byte {data[err.start]:#04x} at column {err.start + 1}); re-save the file as UTF-8"


def _empty_file(path: Path) -> MalformedRowError:
    """An empty file is never a skippable row: a loader must not quietly yield zero rows."""
    return MalformedRowError(str(path), f"the file is empty (no rows); {REWRITE_HINT}")


def _jsonl_items(path: Path) -> Iterator[tuple[str, Any]]:
    # Bytes, decoded line by line: a non-UTF-8 byte is then a row error naming its line, not a codec traceback.
    seen = False
    with path.open("rb") as fh:
        for lineno, raw in enumerate(fh, start=1):
            if not raw.strip():
                continue
            seen = True
            where = f"{path}:{lineno}"
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as err:
                yield where, RowError(_not_utf8(err, raw))
                continue
            try:
                yield where, json.loads(line)
            except json.JSONDecodeError as err:
                cut = "" if raw.endswith(b"\n") else f"; the file ends mid-line (cut short?): {REWRITE_HINT}"
                yield where, RowError(f"invalid JSON ({err.msg} at column {err.colno}){cut}")
    if not seen:
        raise _empty_file(path)


def read_jsonl(path: Path, convert: Callable[[Any, int], Row | None], policy: BadRowPolicy) -> list[Row]:
    """Read a jsonl file, converting each line; errors name ``path:line`` (1-based; blank lines skipped).

    Bad lines (not UTF-8, not JSON, cut short, rejected by ``convert``) go to ``policy``; an empty file raises
    :class:`MalformedRowError` whatever the policy.
    """
    return convert_items(_jsonl_items(path), _raise_parse_errors(convert), policy, path)


def read_json_list(path: Path, convert: Callable[[Any, int], Row | None], policy: BadRowPolicy) -> list[Row]:
    """Read a JSON file holding one list; errors name ``path:item N`` (0-based index into the list), or
    ``path:line`` when the file itself is not UTF-8 / not JSON / cut short."""
    data = path.read_bytes()
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as err:
        line = data.count(b"\n", 0, err.start) + 1
        col = err.start - (data.rfind(b"\n", 0, err.start) + 1)
        raise MalformedRowError(
            f"{path}:{line}",
            f"not UTF-8 (byte {data[err.start]:#04x} at column {col + 1}); re-save it as UTF-8",
        ) from None
    if not text.strip():
        raise _empty_file(path)
    try:
        items_list = json.loads(text)
    except json.JSONDecodeError as err:
        cut = (
            f"; the file ends inside the JSON (cut short?): {REWRITE_HINT}"
            if err.pos >= len(text.rstrip()) - 1
            else ""
        )
        raise MalformedRowError(
            f"{path}:{err.lineno}", f"invalid JSON ({err.msg} at column {err.colno}){cut}"
        ) from None
    if not isinstance(items_list, list):
        raise MalformedRowError(
            str(path), f"expected a JSON list of objects, got {type(items_list).__name__}"
        )
    items = ((f"{path}:item {i}", item) for i, item in enumerate(items_list))
    return convert_items(items, convert, policy, path)


def read_csv(path: Path, convert: Callable[[Any, int], Row | None], policy: BadRowPolicy) -> list[Row]:
    """Read a header-less CSV; errors name ``path:line`` of the record's first physical line (1-based)."""

    def items() -> Iterator[tuple[str, Any]]:
        with path.open(encoding="utf-8", newline="") as fh:
            reader = csv.reader(fh)
            start = 1
            try:
                for record in reader:
                    yield f"{path}:{start}", record
                    start = reader.line_num + 1  # quoted fields may span several physical lines
            except csv.Error as err:  # e.g. a NUL byte: the record starting at this line
                raise MalformedRowError(f"{path}:{start}", f"not CSV ({err}); {REWRITE_HINT}") from None
            except UnicodeDecodeError as err:  # the decoder reads ahead: the line is the first not yet parsed
                raise MalformedRowError(
                    f"{path}:{start}",
                    f"not UTF-8 (byte {err.object[err.start]:#04x}) at or after this line; "
                    "re-save the file as UTF-8",
                ) from None
        if start == 1:
            raise _empty_file(path)

    return convert_items(items(), convert, policy, path)


def _raise_parse_errors(convert: Callable[[Any, int], Row | None]) -> Callable[[Any, int], Row | None]:
    def wrapped(raw: Any, index: int) -> Row | None:
        if isinstance(raw, RowError):
            raise raw
        return convert(raw, index)

    return wrapped


# ---- field checks shared by the converters --------------------------------------------------------------


def need_str(obj: Any, key: str) -> str:
    """``obj[key]`` as a string that is not blank (numbers are converted), else RowError naming the field."""
    if not isinstance(obj, dict):
        raise RowError(f"expected a JSON object, got {type(obj).__name__}")
    value = obj.get(key)
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str) or not value.strip():
        raise RowError(f"missing or empty field {key!r}")
    return value


def need_aliases(value: Any, key: str) -> list[str]:
    """A non-empty list of non-empty answer strings (a single string becomes a one-element list)."""
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list):
        raise RowError(f"field {key!r} must be a string or a list of strings")
    aliases = [str(v) for v in value if isinstance(v, (str, int, float)) and str(v).strip()]
    if not aliases:
        raise RowError(f"missing or empty field {key!r}")
    return aliases


def letter_gold(label: Any, labels: list[str]) -> str:
    """Map a source answer label to an option letter.

    ``labels`` are the source's own labels in option order (``["A","B","C","D"]`` or ARC's ``["1","2","3","4"]``);
    the answer maps to the letter at the same position, so numeric labels are never dropped.
    """
    label = str(label).strip()
    if label in labels:
        return LETTERS[labels.index(label)]
    raise RowError(f"answer label {label!r} is not one of the option labels {labels}")


def check_choices(
    choices: Any, min_n: int = 2, max_n: int = len(LETTERS), exact: int | None = None
) -> list[str]:
    """Validate an option list: strings, and the expected count (``exact`` or ``min_n..max_n``)."""
    if not isinstance(choices, list) or not all(isinstance(c, (str, int, float)) for c in choices):
        raise RowError("field 'choices' must be a list of strings")
    choices = [str(c) for c in choices]
    if exact is not None and len(choices) != exact:
        raise RowError(f"expected {exact} choices, got {len(choices)}")
    if not min_n <= len(choices) <= max_n:
        raise RowError(f"expected {min_n}-{max_n} choices, got {len(choices)}")
    return choices
