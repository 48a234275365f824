"""Training curves as pictures: per-step metrics of one or more runs from their ``trainer_state.json``.

A run folder is what ``hrpo train`` (or any Hugging Face ``Trainer``) writes: ``trainer_state.json`` in the
folder itself (after ``trainer.save_state()``) and/or in each ``checkpoint-N/``. Its ``log_history`` holds one
entry per logging step; :func:`find_state` picks the state file with the most steps (the newest checkpoint
normally), :func:`run_curves` turns its entries into one series per panel, and :func:`plot_curves` draws the
series of several runs overlaid (HRPO vs GRPO), one panel per metric, into a PNG (matplotlib, Agg backend).

The panels (:data:`PANELS`) and the logged keys they read (:mod:`hrpo.trainer`, :mod:`hrpo.rewards`, TRL):

==============  ==============================================================================================
reward          ``rewards/<first reward function>/mean`` (``rewards/gsm8k_reward/mean``: the paper's reward,
                correct AND one ``####``), else TRL's weighted total ``reward``
format          ``rewards/format_reward/mean`` (exactly one ``####``)
hedged          ``<task>_reward/hedged`` (share of answers holding several different candidates)
zero_std        ``frac_reward_zero_std`` (groups without reward signal)
kl              ``kl`` (k3 estimator to the reference)
length          ``completions/mean_length`` (tokens)
hidden_ratio    ``hybrid/hidden_ratio`` (the paper's Fig. 4)
embeds_ratio    ``hybrid/embeds_ratio``
==============  ==============================================================================================

A panel whose metric a run did not log says so ("not logged: <run>") instead of drawing nothing silently.
"""

from __future__ import annotations

import json
import math
import re
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hrpo.checkpoint import CHECKPOINT_PREFIX, COMPLETE_MARKER

STATE_FILE = (
    "trainer_state.json"  # transformers.trainer_callback.TRAINER_STATE_NAME (written by every Trainer)
)
NOT_LOGGED = "not logged"


class CurvesError(ValueError):
    """A run folder or state file that cannot be plotted, with the reason and what to do."""


@dataclass(frozen=True)
class Panel:
    """One subplot: the first of ``keys`` that a run logged, else the first key matching ``pattern``."""

    name: str
    title: str
    keys: tuple[str, ...] = ()
    pattern: str | None = None
    """A regular expression (full match) tried when none of ``keys`` is logged."""
    fallback: tuple[str, ...] = ()
    """Keys tried last (after ``pattern``)."""

    def resolve(self, logged: Sequence[str]) -> str | None:
        """The key this panel reads from a run that logged ``logged`` (in logging order), or None."""
        for key in self.keys:
            if key in logged:
                return key
        if self.pattern is not None:
            regex = re.compile(self.pattern)
            for key in logged:
                if regex.fullmatch(key):
                    return key
        return next((key for key in self.fallback if key in logged), None)


# The task reward: the first reward function's mean that is not one of the logged-only helpers.
_TASK_REWARD = r"rewards/(?!format_reward/|format_shaping_reward/)[^/]+/mean"

PANELS: tuple[Panel, ...] = (
    Panel("reward", "reward (task reward function, mean)", pattern=_TASK_REWARD, fallback=("reward",)),
    Panel("format", "format rate (exactly one ####)", keys=("rewards/format_reward/mean",)),
    Panel("hedged", "hedged rate (several different answers)", pattern=r"[^/]+_reward/hedged"),
    Panel("zero_std", "fraction of groups with zero reward std", keys=("frac_reward_zero_std",)),
    Panel("kl", "KL to the reference (k3)", keys=("kl",)),
    Panel("length", "mean completion length (tokens)", keys=("completions/mean_length",)),
    Panel("hidden_ratio", "hybrid/hidden_ratio (latent share, Fig. 4)", keys=("hybrid/hidden_ratio",)),
    Panel("embeds_ratio", "hybrid/embeds_ratio (token share)", keys=("hybrid/embeds_ratio",)),
)
PANEL_NAMES: tuple[str, ...] = tuple(p.name for p in PANELS)


@dataclass
class RunCurves:
    """The series of one run, ready to draw: panel name -> ``(steps, values)``, equal to the log entries."""

    label: str
    source: Path | None = None
    """The ``trainer_state.json`` read (None for a history passed in directly)."""
    series: dict[str, tuple[list[int], list[float]]] = field(default_factory=dict)
    keys: dict[str, str] = field(default_factory=dict)
    """Panel name -> the logged key its series comes from; a panel absent here was not logged."""
    color: str | None = None
    alpha: float = 1.0


# ---------------------------------------------------------------------------------------------- reading


def _step_of(folder: Path) -> int | None:
    match = re.fullmatch(rf"{CHECKPOINT_PREFIX}-(\d+)", folder.name)
    return int(match.group(1)) if match else None


def read_state(path: Path) -> dict[str, Any]:
    """A ``trainer_state.json`` as a dict with a ``log_history`` list (a file holding just that list, such as
    ``hrpo demo``'s ``train_history.json``, is read as one); :class:`CurvesError` names the file (and the line
    and column of a JSON error) otherwise."""
    try:
        text = path.read_text()
    except OSError as err:
        raise CurvesError(f"{path}: cannot read ({err.strerror})") from None
    try:
        state = json.loads(text)
    except json.JSONDecodeError as err:
        raise CurvesError(
            f"{path}: not valid JSON (line {err.lineno}, column {err.colno}: {err.msg}); the file was cut or "
            "edited -- point hrpo plot at another checkpoint or run folder"
        ) from None
    if isinstance(state, list) and all(isinstance(e, dict) for e in state):  # a bare log_history list
        return {"global_step": max((int(e.get("step") or 0) for e in state), default=0), "log_history": state}
    if not isinstance(state, dict) or not isinstance(state.get("log_history"), list):
        raise CurvesError(
            f"{path}: no 'log_history' list -- not a trainer_state.json written by a Hugging Face Trainer"
        )
    return state


def find_state(run: str | Path) -> Path:
    """The state file of ``run``: a ``trainer_state.json`` given directly, else the one (in the folder or a
    ``checkpoint-N/``) with the highest ``global_step`` -- the folder's own wins a tie. A checkpoint without the
    completion marker whose state cannot be read (a save that was cut) is skipped with a warning."""
    path = Path(run)
    if path.is_file():
        return path
    if not path.is_dir():
        raise CurvesError(f"{path}: no such run folder or trainer_state.json")
    checkpoints = sorted(
        (c for c in path.iterdir() if c.is_dir() and _step_of(c) is not None), key=_step_of, reverse=True
    )
    candidates = [path / STATE_FILE, *(c / STATE_FILE for c in checkpoints)]
    best: tuple[int, int, Path] | None = None  # (global_step, preference, path)
    for rank, candidate in enumerate(candidates):
        if not candidate.is_file():
            continue
        try:
            state = read_state(candidate)
        except CurvesError as err:
            if rank > 0 and not (candidate.parent / COMPLETE_MARKER).is_file():
                print(f"hrpo plot: warning: skipping an incomplete checkpoint: {err}", file=sys.stderr)
                continue
            raise
        key = (int(state.get("global_step") or 0), -rank, candidate)
        if best is None or key[:2] > best[:2]:
            best = key
    if best is None:
        raise CurvesError(
            f"{path}: no {STATE_FILE} in this folder or its {CHECKPOINT_PREFIX}-N/ folders; a run writes it with "
            "each checkpoint (--save_steps N) or on trainer.save_state()"
        )
    return best[2]


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value) if math.isfinite(value) else None


def run_curves(
    history: Sequence[dict[str, Any]],
    label: str,
    panels: Sequence[Panel] = PANELS,
    source: Path | None = None,
    color: str | None = None,
    alpha: float = 1.0,
) -> RunCurves:
    """The series of each panel from ``log_history`` entries: ``(entry["step"], entry[key])`` for every entry
    that has a step and a finite number under the panel's key, in logging order."""
    logged = list(dict.fromkeys(k for entry in history for k in entry))
    curves = RunCurves(label=label, source=source, color=color, alpha=alpha)
    for panel in panels:
        key = panel.resolve(logged)
        if key is None:
            continue
        points = [
            (int(entry["step"]), value)
            for entry in history
            if "step" in entry and (value := _number(entry.get(key))) is not None
        ]
        if points:
            curves.keys[panel.name] = key
            curves.series[panel.name] = ([s for s, _ in points], [v for _, v in points])
    return curves


def load_curves(
    runs: Sequence[str | Path], labels: Sequence[str] | None = None, panels: Sequence[Panel] = PANELS
) -> list[RunCurves]:
    """:func:`run_curves` of each run folder (or state file); labels default to the folder names."""
    if labels is not None and len(labels) != len(runs):
        raise CurvesError(f"{len(labels)} labels for {len(runs)} runs; give one label per run")
    out = []
    for i, run in enumerate(runs):
        state_path = find_state(run)
        path = Path(run)
        default = path.parent.name if path.is_file() else path.resolve().name
        label = labels[i] if labels is not None else default
        out.append(run_curves(read_state(state_path)["log_history"], label, panels, source=state_path))
    return out


def panels_by_name(names: Sequence[str]) -> list[Panel]:
    """The :data:`PANELS` named, in the order given; :class:`CurvesError` lists the names otherwise."""
    known = {p.name: p for p in PANELS}
    unknown = [n for n in names if n not in known]
    if unknown:
        raise CurvesError(f"unknown panel(s) {', '.join(unknown)}; choose from {', '.join(PANEL_NAMES)}")
    return [known[n] for n in names]


def not_logged(runs: Sequence[RunCurves], panels: Sequence[Panel] = PANELS) -> dict[str, list[str]]:
    """Panel name -> labels of the runs without that metric (panels every run logged are left out)."""
    out = {}
    for panel in panels:
        missing = [run.label for run in runs if panel.name not in run.series]
        if missing:
            out[panel.name] = missing
    return out


# ---------------------------------------------------------------------------------------------- drawing


def plot_curves(
    runs: Sequence[RunCurves],
    out: str | Path,
    panels: Sequence[Panel] = PANELS,
    title: str | None = None,
    dpi: int = 110,
) -> Path:
    """One PNG: a panel per metric (at most 3 per row up to six panels, else 4), every run overlaid (marker per logged
    step; colour from the run or matplotlib's cycle), "not logged: <runs>" where runs lack the metric."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    if not runs:
        raise CurvesError("no runs to plot")
    ncols = min(len(panels), 3 if len(panels) <= 6 else 4)
    nrows = math.ceil(len(panels) / ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(5 * ncols, 3.75 * nrows), squeeze=False)
    cycle = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    legend_ax = None
    absent = not_logged(runs, panels)
    for ax, panel in zip(axes.flat, panels, strict=False):
        for i, run in enumerate(runs):
            if panel.name not in run.series:
                continue
            steps, values = run.series[panel.name]
            ax.plot(steps, values, marker="o", ms=3, color=run.color or cycle[i % len(cycle)], alpha=run.alpha,
                    label=run.label)  # fmt: skip
            legend_ax = legend_ax or ax
        if missing := absent.get(panel.name):
            text = NOT_LOGGED if len(missing) == len(runs) else f"{NOT_LOGGED}: {', '.join(missing)}"
            ax.text(0.5, 0.5, text, transform=ax.transAxes, ha="center", va="center", color="#888888",
                    fontsize=10 if len(missing) == len(runs) else 8, wrap=True)  # fmt: skip
        ax.set(xlabel="optimizer step", title=panel.title)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # steps are whole numbers
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(panels) :]:
        ax.set_visible(False)
    if legend_ax is not None:
        legend_ax.legend(fontsize=8)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=dpi)
    plt.close(fig)
    return out
