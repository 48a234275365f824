"""``hrpo data build {mmlu-train,rag-train}``: write the merged training sets as jsonl.

    hrpo data build mmlu-train --data_dir ../shared/data --out data/mmlu_train.jsonl
    hrpo data build rag-train --index indexes/wiki18-e5 --out data/rag_train.jsonl
    hrpo data check --data_dir ../shared/data

Without ``--data_dir`` (or ``HRPO_DATA_DIR``) the sources come from the Hugging Face Hub.
"""

from __future__ import annotations

import argparse

from hrpo.commands import run_action


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="hrpo data", description="Benchmark data utilities. See `hrpo data build --help`."
    )
    sub = parser.add_subparsers(title="actions", metavar="<action>")
    build = sub.add_parser(
        "build",
        help="write a merged training set as jsonl",
        description="mmlu-train = MMLU auxiliary_train + ARC-Challenge train; rag-train = NQ train + HotpotQA "
        "train with top-k retrieved contexts (the paper's training mixtures). Rows follow hrpo.data's schema "
        "(id, question, gold, task, ...) plus 'source'.",
    )
    build.add_argument("name", choices=["mmlu-train", "rag-train"])
    build.add_argument("--out", required=True, help="output jsonl path")
    build.add_argument(
        "--data_dir",
        default=None,
        help="local data dir (layout of ../shared/data); default: $HRPO_DATA_DIR, else the Hugging Face Hub",
    )
    build.add_argument(
        "--index",
        default=None,
        help="FAISS index dir for retrieval.attach (rag-train); "
        "without it the input rows must already carry 'contexts'",
    )
    build.add_argument("--topk", type=int, default=3, help="passages per question (default 3, as the paper)")
    build.add_argument(
        "--skip_bad_rows",
        action="store_true",
        help="skip malformed rows (reports the count) instead of stopping at the first one",
    )
    build.add_argument(
        "--max_rows_per_source",
        type=int,
        default=None,
        help="keep only the first N rows of each source (smoke tests)",
    )
    build.set_defaults(func=run_build)
    check = sub.add_parser(
        "check",
        help="load every benchmark split from a data dir and print its row count (or why it is missing)",
        description="Load every benchmark/split known to hrpo.data and print the row counts, so a local data "
        "directory can be checked before training or evaluation.",
    )
    check.add_argument(
        "--data_dir", default=None, help="local data dir (default: $HRPO_DATA_DIR, else the hub)"
    )
    check.add_argument("--skip_bad_rows", action="store_true", help="count malformed rows instead of failing")
    check.set_defaults(func=run_check)
    return parser


def run_build(args: argparse.Namespace) -> int:
    from hrpo.data.build import build_merged, write_jsonl
    from hrpo.data.rows import DataSourceError, MalformedRowError

    try:
        rows, policy = build_merged(
            args.name,
            data_dir=args.data_dir,
            index_dir=args.index,
            topk=args.topk,
            skip_bad_rows=args.skip_bad_rows,
            max_rows_per_source=args.max_rows_per_source,
        )
    except (DataSourceError, MalformedRowError) as err:
        print(f"error: {err}")
        return 2
    n = write_jsonl(rows, args.out)
    by_source: dict[str, int] = {}
    for r in rows:
        by_source[r["source"]] = by_source.get(r["source"], 0) + 1
    parts = ", ".join(f"{k} {v}" for k, v in by_source.items())
    print(f"wrote {n} rows to {args.out} ({parts})")
    if policy.skip:
        print(f"skipped {len(policy.skipped)} malformed row(s)")
        for where, reason in policy.skipped[:10]:
            print(f"  {where}: {reason}")
    return 0


def run_check(args: argparse.Namespace) -> int:
    from hrpo.data import BENCHMARKS, BadRowPolicy, load_benchmark, resolve_data_dir
    from hrpo.data.rows import DataSourceError, MalformedRowError

    try:
        if resolve_data_dir(args.data_dir) is None:
            print("error: check reads a local directory (--data_dir or HRPO_DATA_DIR); it never downloads")
            return 2
    except DataSourceError as err:
        print(f"error: {err}")
        return 2
    missing = 0
    print(f"{'benchmark':14s} {'split':16s} {'rows':>7s}  note")
    for name, bench in BENCHMARKS.items():
        for split in bench.splits:
            policy = BadRowPolicy(skip=args.skip_bad_rows)
            try:
                rows = load_benchmark(name, split, data_dir=args.data_dir, policy=policy)
            except (DataSourceError, MalformedRowError) as err:
                missing += 1
                print(f"{name:14s} {split:16s} {'-':>7s}  {str(err).split('. ')[0]}")
                continue
            note = "eval split" if split == bench.eval_split else ""
            if policy.skipped:
                note += f" ({len(policy.skipped)} malformed rows skipped)"
            print(f"{name:14s} {split:16s} {len(rows):7d}  {note}".rstrip())
    print(f"{missing} split(s) missing or unreadable" if missing else "all splits found")
    return 1 if missing else 0


def main(argv: list[str] | None = None) -> int:
    return run_action(build_parser(), argv)
