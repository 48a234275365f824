"""lm-eval hooks for the ``hrpo_*`` tasks: data from :mod:`hrpo.data`, prompts from :mod:`hrpo.prompts`,
scores from :mod:`hrpo.rewards` -- the same code the RL trainer uses.

Options arrive as task metadata (``lm_eval --metadata '{"data_dir": "../shared/data"}'`` or
``TaskManager(metadata=...)``); every one is optional:

* ``data_dir`` -- local data directory (else ``$HRPO_DATA_DIR``, else the Hugging Face Hub).
* ``compat`` -- ``"fixed"`` (default) or ``"original"`` (the original parsers, for paper comparisons).
* ``math_verify`` -- accept symbolically equal MATH answers (math-verify, hard per-call timeout); default on
  under ``compat: fixed``, off (and not allowed) under ``compat: original``.
* ``delimiter`` -- answer delimiter (default ``####``; the system prompt follows it).
* ``index_dir`` / ``topk`` / ``closed_book`` -- contexts for the knowledge tasks (see
  :func:`hrpo.data.build.ensure_contexts`); rows that already carry ``contexts`` need none of them.
* ``skip_bad_rows`` -- skip malformed rows (count logged) instead of failing.
* ``qa_file`` -- for ``hrpo_qa_file`` only: a jsonl of hrpo.data QA rows (``id``, ``question``, ``gold`` aliases,
  optional ``contexts``), e.g. written by ``hrpo retrieval attach`` or ``hrpo demo``.

The options are stored in each doc (columns ``compat``, ``math_verify``, ``delimiter``, ``topk``,
``system_prompt``) because lm-eval passes metadata only to ``custom_dataset``.
"""

from __future__ import annotations

from typing import Any

import datasets

from hrpo import prompts, rewards
from hrpo.answers import DEFAULT_DELIMITER
from hrpo.data import load_benchmark
from hrpo.data.build import ensure_contexts

_TRUE = (True, "true", "True", "1", 1)


def _dataset(name: str, split: str, meta: dict[str, Any]) -> datasets.DatasetDict:
    rows = load_benchmark(
        name, split, data_dir=meta.get("data_dir") or None, skip_bad_rows=meta.get("skip_bad_rows") in _TRUE
    )
    return _to_dataset(rows, split, meta)


def _to_dataset(rows: list[dict[str, Any]], split: str, meta: dict[str, Any]) -> datasets.DatasetDict:
    delimiter = str(meta.get("delimiter") or DEFAULT_DELIMITER)
    topk = int(meta.get("topk") or prompts.DEFAULT_TOPK)
    if rows and rows[0]["task"] == "qa":
        rows = ensure_contexts(
            rows,
            index_dir=meta.get("index_dir") or None,
            topk=topk,
            closed_book=meta.get("closed_book") in _TRUE,
        )
    compat = str(meta.get("compat") or "fixed")
    if compat not in ("fixed", "original"):
        raise ValueError(f"metadata compat must be 'fixed' or 'original', got {compat!r}")
    requested = meta.get("math_verify")
    math_verify = compat == "fixed" if requested is None or requested == "" else requested in _TRUE
    if math_verify and compat == "original":
        raise ValueError(
            "metadata math_verify cannot be on with compat 'original' (the original is a string match)"
        )
    extra = {
        "system_prompt": prompts.system_prompt(delimiter),
        "delimiter": delimiter,
        "compat": compat,
        "math_verify": math_verify,
        "topk": topk,
    }
    keys = dict.fromkeys(k for r in rows for k in r)  # same columns in every row
    table = [{**{k: r.get(k) for k in keys}, **extra} for r in rows]
    return datasets.DatasetDict({split: datasets.Dataset.from_list(table)})


def gsm8k(**meta: Any) -> datasets.DatasetDict:
    return _dataset("gsm8k", "test", meta)


def math(**meta: Any) -> datasets.DatasetDict:
    return _dataset("math", "test", meta)


def math500(**meta: Any) -> datasets.DatasetDict:
    return _dataset("math500", "test", meta)


def mmlu_stem(**meta: Any) -> datasets.DatasetDict:
    return _dataset("mmlu_stem", "test", meta)


def arc_challenge(**meta: Any) -> datasets.DatasetDict:
    return _dataset("arc_challenge", "test", meta)


def nq(**meta: Any) -> datasets.DatasetDict:
    return _dataset("nq", "test", meta)


def triviaqa(**meta: Any) -> datasets.DatasetDict:
    return _dataset("triviaqa", "test", meta)


def hotpotqa(**meta: Any) -> datasets.DatasetDict:
    return _dataset("hotpotqa", "dev", meta)


def twowiki(**meta: Any) -> datasets.DatasetDict:
    return _dataset("2wiki", "dev", meta)


def bamboogle(**meta: Any) -> datasets.DatasetDict:
    return _dataset("bamboogle", "test", meta)


def doc_to_text(doc: dict[str, Any]) -> str:
    """The HRPO user message (the system prompt travels separately as the task description)."""
    return prompts.user_message(doc, topk=int(doc.get("topk") or prompts.DEFAULT_TOPK))


def doc_to_target(doc: dict[str, Any]) -> str:
    """The gold answer as text (first alias for QA); used for logging only (the tasks are zero-shot)."""
    gold = doc["gold"]
    return gold if isinstance(gold, str) else str(gold[0])


def process_results(doc: dict[str, Any], results: list[str]) -> dict[str, float]:
    """Score the generation with :func:`hrpo.rewards.eval_metrics`: ``exact_match`` (correctness without the
    format check), ``format``, ``hedged`` and, for QA, ``f1``."""
    return rewards.eval_metrics(
        doc,
        results[0],
        delimiter=doc.get("delimiter") or DEFAULT_DELIMITER,
        compat=doc.get("compat") or "fixed",
        math_verify=doc.get("math_verify"),  # None (no column): the compat default
    )


def qa_file(**meta: Any) -> datasets.DatasetDict:
    """Any local QA jsonl (``metadata.qa_file``) scored like the knowledge tasks."""
    from hrpo.data.build import read_rows

    if not meta.get("qa_file"):
        raise ValueError('hrpo_qa_file needs --metadata \'{"qa_file": "path/to/rows.jsonl"}\'')
    rows = [{**row, "task": "qa"} for row in read_rows(meta["qa_file"])]
    return _to_dataset(rows, "test", meta)
