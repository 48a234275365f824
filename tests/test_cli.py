"""``hrpo <verb>``: one module per verb under hrpo.commands, each with ``build_parser()`` and ``main(argv)``."""

from __future__ import annotations

import importlib
import subprocess
import sys

import pytest

from hrpo.cli import VERBS, build_parser, main


@pytest.mark.parametrize("verb", list(VERBS))
def test_every_verb_is_a_module_with_build_parser_and_main(verb, capsys):
    module = importlib.import_module(f"hrpo.commands.{verb}")
    assert module.build_parser().prog == f"hrpo {verb}"
    with pytest.raises(SystemExit) as exit_:
        main([verb, "--help"])  # every token after the verb goes to the verb's own parser
    assert exit_.value.code == 0
    assert capsys.readouterr().out.startswith(f"usage: hrpo {verb}")


def test_top_level_help_lists_the_verbs_and_rejects_unknown_ones(capsys):
    assert main([]) == 0
    out = capsys.readouterr().out
    assert all(verb in out for verb in VERBS)
    with pytest.raises(SystemExit) as exit_:
        main(["no-such-verb"])
    assert exit_.value.code == 2 and "invalid choice" in capsys.readouterr().err
    assert build_parser().prog == "hrpo"


def test_module_entry_points_for_launchers():
    """``python -m hrpo.eval`` (accelerate launch) and ``python -m hrpo.cli`` are the same commands."""
    for argv, usage in [
        (["hrpo.eval", "--help"], "usage: hrpo eval"),
        (["hrpo.cli", "--help"], "usage: hrpo"),
    ]:
        proc = subprocess.run([sys.executable, "-m", *argv], capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0 and proc.stdout.startswith(usage), proc.stderr[-2000:]
