"""Corpus reading: one JSON object per line, streamed, in either of two layouts.

* ``{"id", "title", "text", ...}`` (DPR / this repo's shared corpus), or
* ``{"id", "contents"}`` where ``contents`` is ``"Title"\\ntext`` (wiki-18 as shipped by FlashRAG / Search-R1).

Everything downstream works on ``contents`` strings in the wiki-18 form, so a document returned by the
server looks exactly like Search-R1's. Reading is streamed so that a 21M-line corpus never sits in memory.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np


class CorpusError(ValueError):
    """A corpus file that is not usable (empty, not UTF-8, a bad or cut-short record, changed since the index
    was built); the message names the file, the 1-based line or byte offset, and what to do."""


@dataclass(frozen=True)
class Passage:
    """One corpus record: ``row`` is its 0-based position among non-empty lines (= FAISS row id)."""

    row: int
    id: str
    contents: str


def make_contents(title: str, text: str) -> str:
    """wiki-18 ``contents``: the title in double quotes, a newline, then the text."""
    return f'"{title}"\n{text}'


def split_contents(contents: str) -> tuple[str, str]:
    """Inverse of :func:`make_contents` (a contents without a title line gives ``("", contents)``)."""
    first, sep, rest = contents.partition("\n")
    if sep and len(first) >= 2 and first.startswith('"') and first.endswith('"'):
        return first[1:-1], rest
    return "", contents


def parse_record(line: str | bytes, where: str, whole_line: bool = True) -> tuple[str, str]:
    """``(id, contents)`` of one jsonl line; raises :class:`CorpusError` naming ``where`` on bad input.

    ``whole_line``: ``line`` was read up to a newline, so a missing one means the file ends mid-record.
    """
    if isinstance(line, bytes):
        try:
            line = line.decode("utf-8")
        except UnicodeDecodeError as err:
            raise CorpusError(
                f"{where}: not UTF-8 (byte {line[err.start]:#04x} at column {err.start + 1}); re-encode the "
                "corpus as UTF-8 (e.g. `iconv -f latin1 -t utf-8`)"
            ) from None
    try:
        obj = json.loads(line)
    except json.JSONDecodeError as err:
        cut = (
            ""
            if line.endswith("\n") or not whole_line
            else "; the line has no newline: the file looks cut short"
        )
        raise CorpusError(f"{where}: not valid JSON ({err.msg} at column {err.colno}){cut}") from None
    if not isinstance(obj, dict):
        raise CorpusError(f"{where}: expected a JSON object, got {type(obj).__name__}")
    if "id" not in obj:
        raise CorpusError(f"{where}: record has no 'id' field (fields: {sorted(obj)})")
    if isinstance(obj.get("contents"), str):
        contents = obj["contents"]
    elif isinstance(obj.get("title"), str) and isinstance(obj.get("text"), str):
        contents = make_contents(obj["title"], obj["text"])
    else:
        raise CorpusError(
            f"{where}: record needs string fields 'contents' or 'title'+'text' (fields: {sorted(obj)})"
        )
    return str(obj["id"]), contents


def iter_corpus(path: str | os.PathLike, limit: int | None = None) -> Iterator[Passage]:
    """Stream passages from a jsonl corpus, skipping blank lines; stops after ``limit`` passages if given."""
    row = 0
    with open(path, "rb") as f:
        for lineno, line in enumerate(f, start=1):
            if not line.strip():
                continue
            if limit is not None and row >= limit:
                return
            pid, contents = parse_record(line, f"{path}:{lineno}")
            yield Passage(row, pid, contents)
            row += 1


def scan_corpus(path: str | os.PathLike, limit: int | None = None) -> tuple[np.ndarray, str]:
    """One streamed pass: byte offsets of every record and the sha256 of the bytes read.

    Returns ``(offsets, sha256_hex)`` where ``offsets`` is int64 of shape ``(n + 1,)``: record ``i`` is the
    byte range ``offsets[i]:offsets[i+1]`` (blank lines between records are harmless to JSON parsing).
    With ``limit`` the checksum covers only the bytes of the first ``limit`` records. Every record is parsed
    here, so a bad line (not UTF-8, not JSON, cut short) fails in seconds, before hours of encoding, and a
    corpus without records raises :class:`CorpusError`.
    """
    digest = hashlib.sha256()
    offsets: list[int] = []
    pos = 0
    if not Path(path).is_file():
        raise CorpusError(
            f"corpus {path} does not exist or is not a file; pass an existing jsonl as --corpus"
        )
    with open(path, "rb") as f:
        for lineno, line in enumerate(f, start=1):
            if line.strip():
                if limit is not None and len(offsets) >= limit:
                    break
                parse_record(line, f"{path}:{lineno}")  # JSON costs microseconds; encoding a passage ms
                offsets.append(pos)
            digest.update(line)
            pos += len(line)
    if not offsets:
        raise CorpusError(
            f"corpus {path} holds no passages ({pos} bytes, no non-blank line); give a jsonl with one "
            '{"id", "title", "text"} or {"id", "contents"} object per line'
        )
    offsets.append(pos)
    return np.asarray(offsets, dtype=np.int64), digest.hexdigest()


def count_passages(path: str | os.PathLike) -> int:
    """Number of non-blank lines (records) in a corpus file."""
    with open(path, "rb") as f:
        return sum(1 for line in f if line.strip())


def corpus_fingerprint(path: str | os.PathLike) -> dict:
    """Cheap identity of a corpus file (absolute path and size) for quick checks at load time."""
    p = Path(path).resolve()
    return {"path": str(p), "bytes": p.stat().st_size}
