"""Attach retrieved contexts to QA rows: ``row["contexts"] = [top-k documents]`` in ``"Title"\\ntext`` form.

The RAG tasks and the RAG training set read that field; the prompt builder in ``hrpo`` turns each context
into a ``title::::text`` line. Retrievers are cached per (index, method), so attaching several splits loads
the encoder and index once.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from tqdm.auto import tqdm

_CACHE: dict[tuple[str, str], object] = {}


def _retriever(index_dir: str | os.PathLike, method: str):
    from .search import load_retriever

    key = (str(Path(index_dir).resolve()), method)
    if key not in _CACHE:
        _CACHE[key] = load_retriever(index_dir, method)
    return _CACHE[key]


def attach_contexts(
    rows: list[dict],
    index_dir: str | os.PathLike,
    topk: int = 3,
    question_field: str = "question",
    batch_size: int = 64,
    method: str = "dense",
    show_progress: bool = False,
) -> list[dict]:
    """Copies of ``rows`` with a ``contexts`` list of the ``topk`` best documents for ``row[question_field]``.

    ``method`` is ``dense``, ``bm25`` or ``hybrid`` (the latter two need an index built with ``--bm25``).
    Input rows are not modified. A row without a string question raises ``KeyError``/``TypeError`` naming it.
    """
    questions = []
    for i, row in enumerate(rows):
        if question_field not in row:
            raise KeyError(f"row {i} has no field {question_field!r} (fields: {sorted(row)})")
        q = row[question_field]
        if not isinstance(q, str):
            raise TypeError(f"row {i}: field {question_field!r} must be a string, got {type(q).__name__}")
        questions.append(q)
    retriever = _retriever(index_dir, method)
    out: list[dict] = []
    bar = tqdm(total=len(rows), desc="attach contexts", unit="row", disable=not show_progress)
    for start in range(0, len(rows), batch_size):
        hits = retriever.search(questions[start : start + batch_size], topk)
        for row, per_q in zip(rows[start : start + batch_size], hits, strict=True):
            out.append({**row, "contexts": [h.contents for h in per_q]})
        bar.update(len(hits))
    bar.close()
    return out


def read_rows(path: str | os.PathLike) -> list[dict]:
    """Rows of a ``.jsonl`` file (one object per line) or a ``.json`` list."""
    text = Path(path).read_text()
    if str(path).endswith(".json"):
        data = json.loads(text)
        if not isinstance(data, list):
            raise ValueError(f"{path}: expected a JSON list of objects")
        return data
    rows = []
    for lineno, line in enumerate(text.splitlines(), start=1):
        if line.strip():
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError as err:
                raise ValueError(f"{path}:{lineno}: not valid JSON ({err.msg})") from None
    return rows


def attach_file(
    input_path: str | os.PathLike,
    output_path: str | os.PathLike,
    index_dir: str | os.PathLike,
    topk: int = 3,
    question_field: str = "question",
    batch_size: int = 64,
    method: str = "dense",
    show_progress: bool = True,
) -> int:
    """Read ``input_path`` (jsonl/json), attach contexts, write jsonl to ``output_path``; returns the row count."""
    rows = attach_contexts(
        read_rows(input_path),
        index_dir,
        topk,
        question_field,
        batch_size,
        method,
        show_progress=show_progress,
    )
    out = Path(output_path)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    with open(tmp, "w") as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
    os.replace(tmp, out)
    return len(rows)
