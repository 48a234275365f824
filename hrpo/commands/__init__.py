"""The verbs of the ``hrpo`` command, one module each (see :mod:`hrpo.cli`).

Each module has ``build_parser()`` and ``main(argv: list[str] | None = None) -> int`` and keeps heavy imports
(torch, transformers, lm-eval, faiss) inside functions, so ``hrpo <verb> --help`` starts fast. A verb parses
flags and calls the library (``hrpo.*``, ``hrpo.retrieval``); library modules never import a verb.
"""

from __future__ import annotations

import argparse


def run_action(parser: argparse.ArgumentParser, argv: list[str] | None) -> int:
    """Parse ``argv`` for a verb with actions (``hrpo data build``, ``hrpo retrieval search``, ...).

    Each action's parser sets ``func`` (called with the parsed namespace, returns the exit code); without an
    action the verb's help is printed.
    """
    args = parser.parse_args(argv)
    if not hasattr(args, "func"):
        parser.print_help()
        return 0
    return int(args.func(args) or 0)
