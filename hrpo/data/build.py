"""Merged training sets the original never released (spec 5), and retrieval contexts for QA rows.

* ``mmlu-train`` = MMLU ``auxiliary_train`` + ARC-Challenge ``train``, simply concatenated (the original's
  ``MMLU_Train_Merged``); every row keeps ``source``.
* ``rag-train`` = NQ ``train`` + HotpotQA ``train`` (Search-R1's mix, the original's ``RAG_Train_Merged``), each
  row with ``contexts``: from the input if present, else retrieved with ``hrpo.retrieval.attach.attach_contexts``
  over a FAISS index (``index_dir``), else an error.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from hrpo.data.loaders import load_benchmark
from hrpo.data.rows import BadRowPolicy, DataSourceError, Row, RowError, read_jsonl

logger = logging.getLogger(__name__)

ENV_INDEX_DIR = "HRPO_INDEX_DIR"
MERGED = {
    "mmlu-train": (("mmlu", "auxiliary_train"), ("arc_challenge", "train")),
    "rag-train": (("nq", "train"), ("hotpotqa", "train")),
}


# ``(rows, index_dir, topk=..., question_field=...) -> rows with "contexts"``: the retrieval contract.
Retriever = Callable[..., list[Row]]


def attach_with_index(
    rows: list[Row], index_dir: str | os.PathLike, topk: int = 3, question_field: str = "question"
) -> list[Row]:
    """The default retriever: :func:`hrpo.retrieval.attach.attach_contexts` over the FAISS index in ``index_dir``."""
    from hrpo.retrieval.attach import attach_contexts  # lazy: faiss and encoders only when retrieving

    return attach_contexts(rows, index_dir, topk=topk, question_field=question_field)


def ensure_contexts(
    rows: list[Row],
    index_dir: str | os.PathLike | None = None,
    topk: int = 3,
    closed_book: bool = False,
    retriever: Retriever | None = None,
) -> list[Row]:
    """Rows that all carry ``contexts`` (list of ``"Title"\\ntext`` strings).

    Rows that already have contexts keep them. The others get the top-``topk`` passages from the retrieval
    index in ``index_dir`` (or ``$HRPO_INDEX_DIR``). ``closed_book=True`` gives them an empty list instead
    (not a paper setting). Otherwise a DataSourceError explains the options. ``retriever`` replaces the
    default :func:`attach_with_index` (tests inject one).
    """
    missing = [i for i, r in enumerate(rows) if not r.get("contexts")]
    if not missing:
        return rows
    index_dir = index_dir or os.environ.get(ENV_INDEX_DIR) or None
    out = [dict(r) for r in rows]
    if index_dir is not None:
        retrieve = retriever or attach_with_index
        attached = retrieve([out[i] for i in missing], index_dir, topk=topk, question_field="question")
        for i, row in zip(missing, attached, strict=True):
            out[i] = {**row, "contexts": list(row["contexts"])}
        return out
    if closed_book:
        for i in missing:
            out[i]["contexts"] = []
        return out
    example = rows[missing[0]].get("id")
    raise DataSourceError(
        f"{len(missing)} of {len(rows)} QA rows (e.g. {example!r}) have no 'contexts'. Retrieve them with a "
        f"FAISS index (--index DIR, or {ENV_INDEX_DIR}; lm-eval: --metadata '{{\"index_dir\": DIR}}'), use input "
        f"rows that already carry 'contexts', or run closed-book explicitly (lm-eval: "
        f"--metadata '{{\"closed_book\": true}}')."
    )


def build_merged(
    name: str,
    data_dir: str | os.PathLike | None = None,
    index_dir: str | os.PathLike | None = None,
    topk: int = 3,
    skip_bad_rows: bool = False,
    max_rows_per_source: int | None = None,
) -> tuple[list[Row], BadRowPolicy]:
    """Rows of a merged training set (``mmlu-train`` or ``rag-train``) and the bad-row policy used
    (its ``skipped`` list says what was dropped under ``skip_bad_rows``)."""
    if name not in MERGED:
        raise KeyError(f"unknown merged set {name!r}; known: {', '.join(MERGED)}")
    policy = BadRowPolicy(skip=skip_bad_rows)
    rows: list[Row] = []
    for bench, split in MERGED[name]:
        part = load_benchmark(bench, split, data_dir=data_dir, policy=policy)
        part = part[:max_rows_per_source] if max_rows_per_source else part
        rows += [{**r, "source": f"{bench}/{split}"} for r in part]
    if name == "rag-train":
        rows = ensure_contexts(rows, index_dir=index_dir, topk=topk)
    return _uniform_columns(rows), policy


def _uniform_columns(rows: list[Row]) -> list[Row]:
    """Give every row the same keys (``datasets.Dataset.from_list`` takes the columns from the first row)."""
    keys: dict[str, None] = {}
    for r in rows:
        keys.update(dict.fromkeys(r))
    return [{k: r.get(k, "" if k in ("subject", "gold_raw", "level") else None) for k in keys} for r in rows]


def write_jsonl(rows: Iterable[Row], path: str | os.PathLike) -> int:
    """Write rows as jsonl (UTF-8, one object per line) via a temporary file; returns the row count."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    n = 0
    with tmp.open("w", encoding="utf-8") as fh:
        for row in rows:
            fh.write(json.dumps(row, ensure_ascii=False) + "\n")
            n += 1
    os.replace(tmp, path)
    return n


def read_rows(path: str | os.PathLike, required: tuple[str, ...] = ()) -> list[Row]:
    """Read a jsonl written by :func:`write_jsonl` (e.g. a merged training set), every line a JSON object
    with the ``required`` fields; a missing or empty file, a line that is not UTF-8 / JSON / an object, or is
    cut short raises :class:`~hrpo.data.rows.MalformedRowError` (or DataSourceError) naming ``path:line``."""
    path = Path(path)
    if not path.is_file():
        raise DataSourceError(f"rows file {path} not found; pass an existing jsonl of rows")

    def convert(raw: Any, index: int) -> Row:
        if not isinstance(raw, dict):
            raise RowError(f"expected a JSON object, got {type(raw).__name__}")
        missing = [k for k in required if raw.get(k) in (None, "", [])]
        if missing:
            raise RowError(f"missing or empty field(s) {missing} (each row needs {list(required)})")
        return raw

    return read_jsonl(path, convert, BadRowPolicy())
