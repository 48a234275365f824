"""The ``hrpo`` command: ``hrpo <verb> ARGS...`` runs ``hrpo.commands.<verb>.main(ARGS)``.

Every verb is one module of :mod:`hrpo.commands` with the same two functions: ``build_parser()`` (its
``argparse``/``TrlParser``, ``prog="hrpo <verb>"``) and ``main(argv) -> int`` (parse ``argv``, run, return the exit
code). This module only maps verb names to those modules: it imports a verb's module when that verb runs, and
every token after the verb (``--help`` included) goes to the verb's own parser unchanged.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from hrpo import __version__

# Verb -> one-line help, in the order ``hrpo --help`` shows them; the module is hrpo.commands.<verb>.
VERBS: dict[str, str] = {
    "train": "train a model with HRPO (or plain GRPO with --hybrid false) on TRL + DeepSpeed",
    "eval": "evaluate a checkpoint (or base model) on the hrpo_* lm-eval tasks with hybrid latent decoding",
    "demo": "run the whole pipeline on SmolLM2 on a CPU (~12 min): train, evaluate base vs HRPO with CIs, leaderboard",
    "info": "print the installed stack versions and offline asset locations",
    "retrieval": "FAISS retrieval: build | search | serve | attach",
    "data": "build the merged training sets (MMLU aux + ARC-C train, NQ + HotpotQA train with contexts)",
    "leaderboard": "tabulate lm-eval results (ours and stock) as the paper's Knowledge/STEM table, with a plot",
    "plot": "draw training curves (reward, format, KL, hidden ratio, ...) of one or more runs into one PNG",
    "inspect": "the latent lens: decode with a checkpoint and write an HTML page of every token's hybrid input",
}


def verb_module(verb: str):
    """The module of a verb (imported on demand, so ``hrpo --help`` loads no verb)."""
    return importlib.import_module(f"hrpo.commands.{verb}")


def build_parser() -> argparse.ArgumentParser:
    """The top-level parser: ``--help``, ``--version`` and the list of verbs (their flags are their own)."""
    parser = argparse.ArgumentParser(
        prog="hrpo",
        description=(
            "Hybrid Reasoning Policy Optimization: train LLMs to reason with gated latent embeddings (TRL + "
            "DeepSpeed), evaluate them with lm-evaluation-harness, and serve FAISS retrieval contexts."
        ),
        epilog="Run `hrpo <command> --help` for the flags of a command.",
    )
    parser.add_argument("--version", action="version", version=f"hrpo {__version__}")
    subparsers = parser.add_subparsers(title="commands", metavar="<command>", dest="verb")
    for verb, help_line in VERBS.items():
        subparsers.add_parser(verb, help=help_line, add_help=False)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in VERBS:
        return int(verb_module(argv[0]).main(argv[1:]) or 0)
    parser = build_parser()
    parser.parse_args(argv)  # --help, --version, or an error naming the valid commands
    parser.print_help()
    return 0


if __name__ == "__main__":
    sys.exit(main())
