"""lm-eval hooks for the ``hrpo_*`` tasks: data from :mod:`hrpo.data`, prompts from :mod:`hrpo.prompts`,
scores from :mod:`hrpo.rewards` -- the same code the RL trainer uses.

Every task YAML names its row of the registry :mod:`hrpo.benchmarks` with ``dataset_kwargs: {benchmark: KEY}``
and uses the one :func:`custom_dataset`; the row says which loader and split apply.

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

import json
from collections import defaultdict
from typing import Any

import datasets

from hrpo import benchmarks, prompts, rewards
from hrpo.answers import DEFAULT_DELIMITER
from hrpo.data import load_benchmark
from hrpo.data.build import ensure_contexts, read_rows

_TRUE = (True, "true", "True", "1", 1)


def custom_dataset(benchmark: str, **meta: Any) -> datasets.DatasetDict:
    """The dataset of every ``hrpo_*`` task: the eval split of registry row ``benchmark`` (the YAML's
    ``dataset_kwargs``), options from the task metadata (lm-eval calls ``custom_dataset(**metadata,
    **dataset_kwargs)``)."""
    bench = benchmarks.get(benchmark)
    if bench.loader is None:  # hrpo_qa_file: the rows of a file named by the option of the same name
        return _file_dataset(bench, meta)
    rows = load_benchmark(
        benchmark,
        bench.eval_split,
        data_dir=meta.get("data_dir") or None,
        skip_bad_rows=meta.get("skip_bad_rows") in _TRUE,
    )
    return _to_dataset(rows, bench.eval_split, meta, per_subject=bool(bench.subjects))


def _file_dataset(bench: benchmarks.Benchmark, meta: dict[str, Any]) -> datasets.DatasetDict:
    """Any local jsonl of rows (``metadata.<key>``) with the row's prompt kind, scored like its benchmark."""
    if not meta.get(bench.key):
        example = json.dumps({bench.key: "path/to/rows.jsonl"})
        raise ValueError(f"{bench.task_name} needs --metadata '{example}'")
    rows = [
        {**row, "task": bench.prompt} for row in read_rows(meta[bench.key], required=("question", "gold"))
    ]
    return _to_dataset(rows, bench.eval_split, meta)


def _to_dataset(
    rows: list[dict[str, Any]], split: str, meta: dict[str, Any], per_subject: bool = False
) -> datasets.DatasetDict:
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
    if per_subject:  # only then: the other tasks' docs (and logged samples) keep their columns
        extra["per_subject"] = True
    keys = dict.fromkeys(k for r in rows for k in r)  # same columns in every row
    table = [{**{k: r.get(k) for k in keys}, **extra} for r in rows]
    return datasets.DatasetDict({split: datasets.Dataset.from_list(table)})


def doc_to_text(doc: dict[str, Any]) -> str:
    """The HRPO user message (the system prompt travels separately as the task description)."""
    return prompts.user_message(doc, topk=int(doc.get("topk") or prompts.DEFAULT_TOPK))


def doc_to_target(doc: dict[str, Any]) -> str:
    """The gold answer as text (first alias for QA); used for logging only (the tasks are zero-shot)."""
    gold = doc["gold"]
    return gold if isinstance(gold, str) else str(gold[0])


def process_results(doc: dict[str, Any], results: list[str]) -> dict[str, Any]:
    """Score the generation with :func:`hrpo.rewards.eval_metrics`: ``exact_match`` (correctness without the
    format check), ``format``, ``hedged`` and, for QA, ``f1``.

    Docs of a benchmark with subjects (``hrpo_mmlu``, column ``per_subject``) also give
    ``exact_match_<subject>`` (so lm-eval's mean over the docs that report it is the subject's accuracy) and
    ``macro_exact_match`` as a ``(subject, score)`` pair for :func:`macro_mean`."""
    scores: dict[str, Any] = rewards.eval_metrics(
        doc,
        results[0],
        delimiter=doc.get("delimiter") or DEFAULT_DELIMITER,
        compat=doc.get("compat") or "fixed",
        math_verify=doc.get("math_verify"),  # None (no column): the compat default
    )
    if doc.get("per_subject"):
        correct = scores["exact_match"]
        scores[f"exact_match_{doc['subject']}"] = correct
        scores["macro_exact_match"] = (doc["subject"], correct)
    return scores


def macro_mean(items: list[tuple[str, float]]) -> float:
    """The unweighted mean over subjects of each subject's mean score (``macro_exact_match``); lm-eval gives a
    custom aggregation no stderr. ``exact_match`` is the micro mean (every question weighs the same)."""
    by_subject: dict[str, list[float]] = defaultdict(list)
    for subject, score in items:
        by_subject[subject].append(float(score))
    return sum(sum(v) / len(v) for v in by_subject.values()) / len(by_subject)


# ---- pass@k (the sampled hrpo_*_passk variants; issue 16) ----------------------------------------------------


def process_results_passk(doc: dict[str, Any], results: list[Any]) -> dict[str, float]:
    """pass@k of the ``repeats`` sampled completions of one doc (the variant's filter keeps them all, so
    ``results[0]`` is their list): each is scored by :func:`hrpo.rewards.eval_metrics` (correct ignoring the
    format, as ``exact_match``; a hedged answer is wrong), then ``pass@<k>`` for every k of
    :data:`hrpo.benchmarks.PASSK_KS` up to n (:func:`hrpo.passk.pass_at_ks`), plus the format and hedged rates
    over the samples."""
    from hrpo import passk

    samples = results[0]
    if isinstance(samples, str):  # a filter that took the first sample: pass@k needs all of them
        raise ValueError(
            "pass@k needs every sample of a doc: the task's filter_list must keep them all (filter: []), not "
            "take_first; see tasks/hrpo_gsm8k_passk.yaml"
        )
    scores = [
        rewards.eval_metrics(
            doc,
            text,
            delimiter=doc.get("delimiter") or DEFAULT_DELIMITER,
            compat=doc.get("compat") or "fixed",
            math_verify=doc.get("math_verify"),
        )
        for text in samples
    ]
    out = {
        f"pass@{k}": v
        for k, v in passk.pass_at_ks([s["exact_match"] for s in scores], benchmarks.PASSK_KS).items()
    }
    n = max(len(scores), 1)
    out["format"] = sum(s["format"] for s in scores) / n
    out["hedged"] = sum(s["hedged"] for s in scores) / n
    return out
