"""``hrpo plot``: training curves of one or more runs, overlaid, in one PNG.

hrpo plot runs/gsm8k-hrpo runs/gsm8k-grpo --out curves.png            # HRPO vs GRPO, labels = folder names
hrpo plot runs/a/checkpoint-500 runs/b --labels HRPO GRPO --out curves.png
hrpo plot runs/a --panels reward hidden_ratio --out fig4.png            # the paper's Fig. 4 and the reward
"""

from __future__ import annotations

import argparse
import sys

from hrpo.plotting import PANEL_NAMES


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="hrpo plot",
        description="Read each run's trainer_state.json (the run folder's own, or its newest checkpoint-N/'s: "
        "the one with the most steps) and draw its log_history per optimizer step: reward, format rate, hedged "
        "rate, fraction of zero-std groups, KL, completion length, hybrid/hidden_ratio (the paper's Fig. 4) and "
        "hybrid/embeds_ratio. Several runs are overlaid; a metric a run did not log is marked 'not logged'.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=__doc__.split("\n\n", 1)[1],
    )
    parser.add_argument(
        "runs",
        nargs="+",
        metavar="RUN_DIR",
        help="training output folders (or checkpoint-N folders, trainer_state.json files, or JSON lists of log "
        "entries such as hrpo demo's hrpo-checkpoint/train_history.json)",
    )
    parser.add_argument("--out", default="curves.png", help="PNG to write (default: curves.png)")
    parser.add_argument(
        "--labels", nargs="+", default=None, help="legend label per run, in order (default: the folder names)"
    )
    parser.add_argument(
        "--panels",
        nargs="+",
        default=list(PANEL_NAMES),
        choices=PANEL_NAMES,
        metavar="PANEL",
        help=f"panels to draw, in order (default: all): {', '.join(PANEL_NAMES)}",
    )
    parser.add_argument("--title", default=None, help="figure title (default: none)")
    parser.add_argument("--dpi", type=int, default=110, help="resolution of the PNG (dots per inch)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from hrpo.plotting import CurvesError, load_curves, panels_by_name, plot_curves

    try:
        panels = panels_by_name(args.panels)
        runs = load_curves(args.runs, args.labels, panels)
        out = plot_curves(runs, args.out, panels, title=args.title, dpi=args.dpi)
    except CurvesError as err:
        print(f"hrpo plot: error: {err}", file=sys.stderr)
        return 2
    for run in runs:
        steps = max((len(s) for s, _ in run.series.values()), default=0)
        absent = [p.name for p in panels if p.name not in run.series]
        note = f"; not logged: {', '.join(absent)}" if absent else ""
        print(f"{run.label}: {run.source} ({steps} logged steps{note})", file=sys.stderr)
    print(f"curves: {out}", file=sys.stderr)
    return 0
