"""``hrpo demo``: train, retrieve, evaluate and tabulate on assets from PyPI packages (see :mod:`hrpo.demo`).

hrpo demo                                   # SmolLM2-135M-Instruct, ~12 minutes on 2 CPU cores
hrpo demo --smoke --output_dir demo-smoke   # a tiny random model, ~3 minutes (part of the tests)
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="hrpo demo",
        description="Run the whole pipeline on real assets from PyPI packages: a short HRPO run of "
        "SmolLM2-135M-Instruct on generated arithmetic problems, a FAISS index over Wikipedia summaries, "
        "lm-eval of the base and trained models on GSM8K test items and a small RAG task, and the leaderboard.",
    )
    parser.add_argument("--output_dir", help="where everything goes (default: ./hrpo-demo-<date-time>)")
    parser.add_argument(
        "--smoke", action="store_true", help="tiny model, 2 steps, 2 items: checks the pipeline"
    )
    parser.add_argument("--train_steps", type=int, help="HRPO optimizer steps (default 10; smoke 2)")
    parser.add_argument("--eval_items", type=int, help="GSM8K and RAG items evaluated per model (default 20)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from hrpo.demo import DemoSettings, run

    settings = DemoSettings.smoke_test() if args.smoke else DemoSettings()
    settings.train_steps = args.train_steps or settings.train_steps
    settings.eval_items = args.eval_items or settings.eval_items
    settings.rag_questions = max(settings.rag_questions, settings.eval_items if not args.smoke else 0)
    out = Path(args.output_dir or f"hrpo-demo-{time.strftime('%Y%m%d-%H%M%S')}").resolve()
    run(settings, out)
    return 0
