"""Leaderboard of lm-eval results: the same command as ``hrpo leaderboard`` (see ``hrpo leaderboard --help``).

python benchmark/leaderboard.py eval/ runs/*/ --reference qwen2.5-1.5b --out leaderboard.md --plot leaderboard.png
"""

from __future__ import annotations

import sys

from hrpo.commands.leaderboard import main

if __name__ == "__main__":
    sys.exit(main(prog="benchmark/leaderboard.py"))
