"""``hrpo leaderboard``: one table (and optionally a bar chart) from lm-eval results files.

hrpo leaderboard runs/eval/                                  # markdown to stdout
hrpo leaderboard runs/eval/ --format latex --out table.tex --plot leaderboard.png
hrpo leaderboard runs/eval/ --reference qwen2.5-1.5b         # beside the paper's 1.5B numbers
hrpo leaderboard results.json --reference qwen2.5-3b:tau --format csv
hrpo leaderboard runs/eval/ --metric pass@8                  # the sampled hrpo_*_passk tasks' pass@8
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

_SUFFIX_FORMAT = {".md": "md", ".tex": "latex", ".csv": "csv", ".html": "html", ".htm": "html"}


def build_parser(prog: str = "hrpo leaderboard") -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=prog,
        description="Read lm-eval results JSON files (or folders searched recursively for results_*.json) "
        "and write one table: a row per run (model, method HRPO/GRPO/base, tau, r_min, decoding, seed, date), "
        "columns NQ, TriviaQA, HotpotQA, 2Wiki, Bamboogle + avg | GSM8K, MATH, MATH500, MMLU-ST, MMLU, ARC-C + avg "
        "(MMLU = all 57 subjects, not in the average), "
        "then an 'Other' group with one column per extra task (e.g. hrpo_qa_file) when any run has one. "
        "Scores are percentages with their standard error; missing benchmarks are shown as missing, never 0; "
        "a group average needs all five benchmarks. Files of the same run are merged into one row.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=__doc__.split("\n\n", 1)[1],
    )
    parser.add_argument("results", nargs="+", metavar="RESULTS", help="results_*.json files or folders")
    parser.add_argument(
        "--format",
        choices=["md", "latex", "csv", "html"],
        default=None,
        help="table format (default: from the --out suffix .md/.tex/.csv/.html, else md)",
    )
    parser.add_argument("--out", default=None, help="write the table here instead of stdout")
    parser.add_argument("--plot", default=None, metavar="FILE.png", help="also save a grouped bar chart")
    parser.add_argument(
        "--reference",
        action="append",
        default=[],
        metavar="NAME",
        help="add the paper's published rows: qwen2.5-1.5b or qwen2.5-3b (main tables P-T1/P-T2 + the "
        "Lambda-init sweep), or NAME:SET with SET in main, lambda, tau, sampled; repeatable",
    )
    parser.add_argument(
        "--metric",
        default="exact_match",
        metavar="METRIC",
        help="what the cells show: exact_match (default: greedy accuracy of the hrpo_* tasks, the paper's "
        "tables) or pass@K (K = 1, 2, 4, 8: the unbiased pass@K of the sampled hrpo_gsm8k_passk / "
        "hrpo_math500_passk tasks, one column each, no averages; not with --reference)",
    )
    return parser


def main(argv: list[str] | None = None, prog: str = "hrpo leaderboard") -> int:
    """``hrpo leaderboard ARGS`` (and ``benchmark/leaderboard.py ARGS``, whose ``argv`` is ``sys.argv[1:]``)."""
    args = build_parser(prog).parse_args(argv)
    from hrpo import leaderboard
    from hrpo.leaderboard_render import plot, render

    fmt = args.format or (_SUFFIX_FORMAT.get(Path(args.out).suffix.lower(), "md") if args.out else "md")
    try:
        metric = leaderboard.parse_metric(args.metric)
        runs = leaderboard.load_runs(args.results, metric)
        runs += leaderboard.load_references(args.reference)
        table = render(runs, fmt)
    except leaderboard.LeaderboardError as err:
        print(f"hrpo leaderboard: error: {err}", file=sys.stderr)
        return 2
    for row in runs:
        if not row.reference and not row.scores:
            names = ", ".join(str(p) for p in row.files)
            if leaderboard.is_passk(metric):
                hint = f"no {metric} score (evaluate {', '.join(leaderboard.PASSK_TASKS)})"
            else:
                hint = "no task of the leaderboard's columns (pass@k results: add --metric pass@K)"
            print(f"hrpo leaderboard: warning: {names}: {hint}", file=sys.stderr)
    if args.out:
        out = Path(args.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(table)
        print(f"table: {out}", file=sys.stderr)
    else:
        sys.stdout.write(table)
    if args.plot:
        print(f"plot: {plot(runs, args.plot)}", file=sys.stderr)
    return 0
