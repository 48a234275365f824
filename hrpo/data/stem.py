"""STEM benchmark loaders: GSM8K, MATH, MATH500, MMLU (incl. auxiliary_train), MMLU-STEM, ARC-Challenge.

Every loader takes ``split``, ``data_dir`` (else ``HRPO_DATA_DIR``, else the hub) and an optional
:class:`~hrpo.data.rows.BadRowPolicy`, and returns rows in the schema of :mod:`hrpo.data.rows`.
"""

from __future__ import annotations

import json
import os
from collections.abc import Collection
from pathlib import Path
from typing import Any

from hrpo.answers import last_boxed
from hrpo.benchmarks import check_split
from hrpo.data.rows import (
    LETTERS,
    BadRowPolicy,
    Row,
    RowError,
    check_choices,
    convert_items,
    letter_gold,
    need_str,
    read_csv,
    read_jsonl,
)
from hrpo.data.sources import DataSourceError, fetch, load_hub, local_file, resolve_data_dir

PathLike = str | os.PathLike | None

# Hendrycks MATH subjects: hub config name -> the ``type`` string of the official files.
MATH_SUBJECTS = {
    "algebra": "Algebra",
    "counting_and_probability": "Counting & Probability",
    "geometry": "Geometry",
    "intermediate_algebra": "Intermediate Algebra",
    "number_theory": "Number Theory",
    "prealgebra": "Prealgebra",
    "precalculus": "Precalculus",
}
# The 18 MMLU STEM subjects of ../shared/data/mmlu_stem (3,018 test questions). TIGER-Lab/MMLU-STEM on the hub
# adds anatomy (135 more, 3,153).
MMLU_STEM_SUBJECTS = [
    "abstract_algebra",
    "astronomy",
    "college_biology",
    "college_chemistry",
    "college_computer_science",
    "college_mathematics",
    "college_physics",
    "computer_security",
    "conceptual_physics",
    "electrical_engineering",
    "elementary_mathematics",
    "high_school_biology",
    "high_school_chemistry",
    "high_school_computer_science",
    "high_school_mathematics",
    "high_school_physics",
    "high_school_statistics",
    "machine_learning",
]


# ---- GSM8K ------------------------------------------------------------------------------------------------


def _gsm8k_row(split: str):
    def convert(raw: Any, index: int) -> Row:
        question, solution = need_str(raw, "question"), need_str(raw, "answer")
        if "####" not in solution:
            raise RowError("field 'answer' has no '#### <final answer>' line")
        gold = solution.rsplit("####", 1)[1].strip()
        if not gold:
            raise RowError("empty final answer after '####'")
        return {
            "id": f"gsm8k/{split}/{index}",
            "question": question,
            "gold": gold,
            "task": "gsm8k",
            "solution": solution,
        }

    return convert


def load_gsm8k(
    split: str = "test", data_dir: PathLike = None, policy: BadRowPolicy | None = None
) -> list[Row]:
    """GSM8K ``train`` (7,473) or ``test`` (1,319): ``gold`` = text after ``####`` in the reference solution."""
    check_split("gsm8k", split)
    return fetch(
        data_dir=data_dir,
        local=[f"gsm8k/{split}.jsonl"],
        fmt="official jsonl with question/answer",
        read=read_jsonl,
        convert_local=_gsm8k_row(split),
        hub=("openai/gsm8k", "main", split),
        policy=policy,
    )


# ---- MATH / MATH500 ---------------------------------------------------------------------------------------


def _math_row(prefix: str, id_key: str | None = None):
    def convert(raw: Any, index: int) -> Row:
        problem, solution = need_str(raw, "problem"), need_str(raw, "solution")
        gold = raw.get("answer") if isinstance(raw.get("answer"), str) and raw["answer"].strip() else None
        gold = gold or last_boxed(solution)
        if gold is None:
            raise RowError("solution has no \\boxed{...} answer")
        ident = raw.get(id_key) if id_key else None
        return {
            "id": str(ident) if ident not in (None, "") else f"{prefix}/{raw.get('idx', index)}",
            "question": problem,
            "gold": gold,
            "task": "math",
            "solution": solution,
            "subject": str(raw.get("type") or raw.get("subject") or ""),
            "level": str(raw.get("level") or ""),
        }

    return convert


def _read_math_tree(root: Path, convert, policy: BadRowPolicy) -> list[Row]:
    """The official Hendrycks layout: ``<split>/<subject>/<n>.json`` (one problem per file)."""
    files = sorted(
        root.glob("*/*.json"), key=lambda p: (p.parent.name, int(p.stem) if p.stem.isdigit() else 0)
    )

    def items():
        for f in files:
            try:
                yield str(f), json.loads(f.read_bytes().decode("utf-8"))
            except json.JSONDecodeError as err:
                yield str(f), {"_error": f"invalid JSON ({err.msg} at line {err.lineno})"}
            except UnicodeDecodeError as err:  # a row error naming the file, not a codec traceback
                byte = err.object[err.start]
                yield str(f), {"_error": f"not UTF-8 (byte {byte:#04x} at offset {err.start})"}

    def checked(raw: Any, index: int) -> Row:
        if "_error" in raw:
            raise RowError(f"{raw['_error']}; re-download or re-write the file")
        return convert(raw, index)

    return convert_items(items(), checked, policy, root)


def load_math(
    split: str = "test", data_dir: PathLike = None, policy: BadRowPolicy | None = None
) -> list[Row]:
    """Hendrycks MATH ``train`` (7,500) or ``test`` (5,000); ``gold`` = last ``\\boxed{}`` of the solution.

    Local: ``math/<split>.jsonl`` (fields problem, level, type, solution) or the official tree
    ``math/<split>/<subject>/<n>.json``. Hub: the 7 subject configs of ``EleutherAI/hendrycks_math``.
    """
    check_split("math", split)
    convert = _math_row(f"math/{split}")
    root = resolve_data_dir(data_dir)
    policy = policy if policy is not None else BadRowPolicy()
    if root is not None:
        path = local_file(
            root,
            [f"math/{split}.jsonl", f"math/{split}"],
            "jsonl or <subject>/<n>.json tree",
            "EleutherAI/hendrycks_math",
        )
        return read_jsonl(path, convert, policy) if path.is_file() else _read_math_tree(path, convert, policy)
    rows: list[Row] = []
    for config in MATH_SUBJECTS:
        records = load_hub("EleutherAI/hendrycks_math", config, split, local_hint=f"math/{split}.jsonl")
        base = len(rows)
        items = ((f"EleutherAI/hendrycks_math/{config}[{split}] row {i}", r) for i, r in enumerate(records))
        rows += convert_items(items, lambda r, i, b=base: convert(r, b + i), policy, config)
    return rows


def load_math500(
    split: str = "test", data_dir: PathLike = None, policy: BadRowPolicy | None = None
) -> list[Row]:
    """MATH500 (500 test problems of Lightman et al.); ``gold`` = the ``answer`` field, ``id`` = ``unique_id``."""
    check_split("math500", split)
    return fetch(
        data_dir=data_dir,
        local=["math500/test.jsonl"],
        fmt="jsonl with problem/solution/answer/unique_id",
        read=read_jsonl,
        convert_local=_math_row("math500", "unique_id"),
        hub=("HuggingFaceH4/MATH-500", None, "test"),
        policy=policy,
    )


# ---- multiple choice: MMLU, MMLU-STEM, ARC ----------------------------------------------------------------


def _mc_row(ident: str, question: Any, choices: list[str], gold: str, gold_raw: str, subject: str) -> Row:
    if not isinstance(question, str) or not question.strip():
        raise RowError("missing or empty question")
    return {
        "id": ident,
        "question": question,
        "gold": gold,
        "task": "multiple_choice",
        "choices": choices,
        "gold_raw": gold_raw,
        "subject": subject,
    }


def _mmlu_csv_row(subject: str, split: str):
    def convert(record: Any, index: int) -> Row:
        if len(record) != 6:
            raise RowError(f"expected 6 CSV columns (question, 4 choices, answer letter), got {len(record)}")
        choices = check_choices(record[1:5], exact=4)
        gold = letter_gold(record[5], list(LETTERS[:4]))
        return _mc_row(
            f"mmlu/{split}/{subject}/{index}", record[0], choices, gold, record[5].strip(), subject
        )

    return convert


def _mmlu_hub_row(split: str):
    def convert(raw: Any, index: int) -> Row:
        raw = raw.get("train", raw) if isinstance(raw, dict) else raw  # auxiliary_train nests each row
        choices = check_choices(raw.get("choices"), exact=4)
        answer = raw.get("answer")
        if not isinstance(answer, int) or not 0 <= answer < 4:
            raise RowError(f"answer index {answer!r} is not in 0..3")
        subject = str(raw.get("subject") or "")
        return _mc_row(
            f"mmlu/{split}/{index}", raw.get("question"), choices, LETTERS[answer], LETTERS[answer], subject
        )

    return convert


def load_mmlu(
    split: str = "test",
    data_dir: PathLike = None,
    policy: BadRowPolicy | None = None,
    subjects: Collection[str] | None = None,
) -> list[Row]:
    """MMLU ``test`` (14,042), ``val`` (1,531), ``dev`` (285) or ``auxiliary_train`` (99,842), optionally by subject.

    Local: the Hendrycks ``data.tar`` CSVs, ``mmlu/<split>/<subject>_<split>.csv`` (auxiliary_train:
    ``mmlu/auxiliary_train/*.csv``). Hub: ``cais/mmlu`` (``all`` or ``auxiliary_train``).
    """
    check_split("mmlu", split)
    policy = policy if policy is not None else BadRowPolicy()
    root = resolve_data_dir(data_dir)
    if root is not None:
        folder = local_file(root, [f"mmlu/{split}"], "folder of header-less Hendrycks CSVs", "cais/mmlu")
        files = sorted(folder.glob("*.csv"))
        if not files:
            raise DataSourceError(
                f"no CSV files in {folder} (expected <subject>_{split}.csv, Hendrycks format)"
            )
        rows: list[Row] = []
        for f in files:
            subject = f.stem.removesuffix(f"_{split}")
            if subjects is None or subject in subjects:
                rows += read_csv(f, _mmlu_csv_row(subject, split), policy)
        return rows
    config, hub_split = ("auxiliary_train", "train") if split == "auxiliary_train" else ("all", split)
    hub_split = "validation" if hub_split == "val" else hub_split
    records = load_hub("cais/mmlu", config, hub_split, local_hint=f"mmlu/{split}/<subject>_{split}.csv")
    items = ((f"cais/mmlu[{hub_split}] row {i}", r) for i, r in enumerate(records))
    rows = convert_items(items, _mmlu_hub_row(split), policy, "cais/mmlu")
    return [r for r in rows if subjects is None or r["subject"] in subjects]


def _mmlu_stem_row(raw: Any, index: int) -> Row:
    if not isinstance(raw, dict):
        raise RowError("expected a JSON object")
    choices = check_choices(raw.get("choices"), exact=4)
    answer = raw.get("answer")
    if isinstance(answer, str) and answer.strip() in LETTERS[:4]:
        answer = LETTERS.index(answer.strip())
    if not isinstance(answer, int) or not 0 <= answer < 4:
        raise RowError(f"answer {answer!r} is not an index 0..3 or a letter A-D")
    subject = str(raw.get("type") or raw.get("subject") or "")
    return _mc_row(
        f"mmlu_stem/{index}", raw.get("question"), choices, LETTERS[answer], LETTERS[answer], subject
    )


def load_mmlu_stem(
    split: str = "test", data_dir: PathLike = None, policy: BadRowPolicy | None = None
) -> list[Row]:
    """MMLU-STEM test. Local ``mmlu_stem/test.jsonl`` (18 subjects, 3,018); hub ``TIGER-Lab/MMLU-STEM`` (3,153)."""
    check_split("mmlu_stem", split)
    return fetch(
        data_dir=data_dir,
        local=["mmlu_stem/test.jsonl"],
        fmt="jsonl with question/type/choices[4]/answer index",
        read=read_jsonl,
        convert_local=_mmlu_stem_row,
        hub=("TIGER-Lab/MMLU-STEM", None, "test"),
        policy=policy,
    )


ARC_FILES = {"test": "Test", "dev": "Dev", "train": "Train"}


def _arc_row(raw: Any, index: int) -> Row:
    """Official ARC jsonl (``question: {stem, choices: [{text, label}]}``) or the hub's flattened schema."""
    if not isinstance(raw, dict):
        raise RowError("expected a JSON object")
    q = raw.get("question")
    if isinstance(q, dict):  # official file
        stem, options = q.get("stem"), q.get("choices")
        if not isinstance(options, list) or not all(isinstance(o, dict) for o in options):
            raise RowError("question.choices must be a list of {text, label}")
        texts, labels = [o.get("text") for o in options], [str(o.get("label", "")).strip() for o in options]
    else:  # hub: question str, choices {text: [...], label: [...]}
        stem, opts = q, raw.get("choices") or {}
        texts, labels = list(opts.get("text") or []), [str(x).strip() for x in opts.get("label") or []]
    choices = check_choices(texts, min_n=2, max_n=len(LETTERS))
    if len(labels) != len(choices) or len(set(labels)) != len(labels):
        raise RowError(f"option labels {labels} do not match the {len(choices)} choices")
    gold_raw = str(raw.get("answerKey", "")).strip()
    if not gold_raw:
        raise RowError("missing or empty field 'answerKey'")
    gold = letter_gold(gold_raw, labels)  # numeric labels "1".."4" map to A..D by position
    ident = str(raw.get("id") or f"arc_challenge/{index}")
    return _mc_row(ident, stem, choices, gold, gold_raw, "")


def load_arc_challenge(
    split: str = "test", data_dir: PathLike = None, policy: BadRowPolicy | None = None
) -> list[Row]:
    """ARC-Challenge ``test`` (1,172), ``dev`` (299), ``train`` (1,119); numeric labels mapped to letters."""
    check_split("arc_challenge", split)
    hub_split = "validation" if split == "dev" else split
    return fetch(
        data_dir=data_dir,
        local=[f"arc_challenge/ARC-Challenge-{ARC_FILES[split]}.jsonl"],
        fmt="official ARC-V1 jsonl",
        read=read_jsonl,
        convert_local=_arc_row,
        hub=("allenai/ai2_arc", "ARC-Challenge", hub_split),
        policy=policy,
    )


# ---- generated arithmetic (issue 12: the demo's held-out task) ----------------------------------------------

ARITHMETIC_LEVEL = 0
"""Difficulty level of the ``arithmetic`` benchmark: the CPU recipe's calibrated mix (configs/cpu_smollm2.yaml)."""
ARITHMETIC_ITEMS = 200
"""Rows per split: the held-out size of benchmark/learning.py (the same 200 test problems, seed 0)."""


def load_arithmetic(
    split: str = "test", data_dir: PathLike = None, policy: BadRowPolicy | None = None
) -> list[Row]:
    """Generated word problems of :mod:`hrpo.data.arithmetic` (level :data:`ARITHMETIC_LEVEL`, seed 0): the same
    :data:`ARITHMETIC_ITEMS` rows every call; ``train`` and ``test`` are disjoint. Nothing is read, so
    ``data_dir`` and ``policy`` are ignored."""
    check_split("arithmetic", split)
    from hrpo.data.arithmetic import arithmetic_rows

    return arithmetic_rows(ARITHMETIC_ITEMS, split, seed=0, level=ARITHMETIC_LEVEL)


__all__ = [
    "ARITHMETIC_ITEMS",
    "ARITHMETIC_LEVEL",
    "MATH_SUBJECTS",
    "MMLU_STEM_SUBJECTS",
    "load_arc_challenge",
    "load_arithmetic",
    "load_gsm8k",
    "load_math",
    "load_math500",
    "load_mmlu",
    "load_mmlu_stem",
]
