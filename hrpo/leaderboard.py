"""One leaderboard table from lm-eval results files: the paper's benchmark columns, one row per run.

Input: the ``results_*.json`` files that lm-eval 0.4.x writes (``lm_eval --output_path``), from our ``hrpo_*``
tasks or from stock lm-eval tasks (``gsm8k``, ``arc_challenge``, ``mmlu_stem``, ``mmlu``, ``nq_open``, ``triviaqa``; see
:data:`TASK_METRICS`). Columns follow the paper's Tables 1-2: Knowledge (NQ, TriviaQA, HotpotQA, 2Wiki,
Bamboogle; exact match) and STEM (GSM8K, MATH, MATH500, MMLU-ST, ARC-C; accuracy), each with a group average;
STEM also has a column MMLU (``hrpo_mmlu``, all 57 subjects) after MMLU-ST, which is not one of the paper's
five and in no average. The columns, their tasks and metrics come from the registry :mod:`hrpo.benchmarks`.
Any other lm-eval task in the results (e.g. our generic ``hrpo_qa_file``) gets a column of its own in a third
group, **Other**, which exists only when some row has such a task (see :func:`other_metric`).

Conventions (also printed as the table's footnote):

* scores are **percentages** with one decimal (the paper prints fractions: .720 = 72.0), ``±`` is lm-eval's
  standard error in the same unit;
* a benchmark a run did not evaluate is missing (``–``; an empty cell in CSV), never 0;
* a group average is the unweighted mean of its five benchmarks and exists only when all five are present;
  its ``±`` is ``sqrt(sum se^2) / 5`` (independent benchmarks);
* an Other column is labelled with the task name without ``hrpo_`` and shows ``exact_match,none`` if the
  task reports it, else the task's first metric with a stderr (the footnote names each column's metric); the
  group has no average. lm-eval group entries are skipped, and so are the tasks of :data:`TASK_METRICS` and
  the members of its groups (``mmlu_stem``'s subtasks);
* result files of the same run (same model, model args, generation kwargs and ``limit``) are merged into one
  row; for a benchmark present in several, the newest file wins.

Run metadata comes from the results' ``config``: the ``hrpo`` model records the method, τ, ``r_min``, seed and
base model under ``config.hrpo`` (:meth:`hrpo.lm_eval_adapter.HRPOLM.get_model_info`). Otherwise (stock ``hf``, or
results of an older adapter) ``model_args`` ``checkpoint=`` or
``pretrained=``/``peft=`` pointing at a folder with ``hrpo_run.json`` gives the method (``hybrid`` true = HRPO,
false = GRPO), τ (``args.temperature``), ``r_min`` (``hrpo_gate.json``, else ``args.r_min``), the training seed
and the base model; explicit ``method``/``tau``/``temperature``/``r_min``/``latent`` model args override them.
Without a run file the model is a ``base`` model. ``latent=off`` marks hybrid decoding switched off.

**pass@k** (``--metric pass@K``, :func:`parse_metric`): the table then shows, instead of greedy accuracy, the
``pass@K`` of the sampled variants ``hrpo_<key>_passk`` (registry rows with ``passk``: GSM8K and MATH500), one
column each (no group averages: the variants cover two of the five), and the decoding column says ``sampled
n=<repeats>``. Reference rows (greedy) cannot join such a table.

Reference rows are the paper's published numbers (``hrpo/resources/paper_results.json``, with its source).

Imports go one way: this module (results -> runs -> table columns) <- :mod:`hrpo.leaderboard_render` (md, LaTeX,
CSV, HTML and the bar chart) <- :mod:`hrpo.commands.leaderboard` (``hrpo leaderboard``).
"""

from __future__ import annotations

import datetime as dt
import json
import math
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from importlib import resources
from pathlib import Path
from typing import Any

from hrpo import benchmarks as registry
from hrpo.benchmarks import Benchmark
from hrpo.checkpoint import GATE_CONFIG, RUN_CONFIG

RUN_FILE = RUN_CONFIG  # hrpo.checkpoint owns the folder's file names
GATE_FILE = GATE_CONFIG
MISSING = "–"


GROUPS: dict[str, str] = {key: g.title for key, g in registry.GROUPS.items()}
GROUP_SHORT: dict[str, str] = {key: g.short for key, g in registry.GROUPS.items()}
OTHER = "other"
"""Group of the columns for tasks outside the paper's ten; not in :data:`GROUPS` (it has no fixed columns)."""
OTHER_TITLE = "Other"
OTHER_PREFIX = "other:"
"""``Run.scores`` key of a task outside the paper's ten: this prefix + the lm-eval task name."""
OTHER_METRIC = "exact_match,none"
DEFAULT_METRIC = "exact_match"
"""The metric of the paper's tables: greedy accuracy / exact match of the ``hrpo_<key>`` tasks."""
PASSK_TASKS: dict[str, str] = {b.passk_task_name: b.key for b in registry.passk() if b.passk_task_name}
"""lm-eval task of a sampled pass@k variant -> its benchmark key (column) under ``--metric pass@K``."""
BENCHMARKS: tuple[Benchmark, ...] = registry.columns()
"""The fixed columns (registry rows with a group), grouped in the order of :data:`GROUPS`."""

# lm-eval task name -> (benchmark key, metric key). Earlier entries win when a file holds several for one column:
# our hrpo_* tasks first, then stock lm-eval tasks (their own prompts and scoring; closest to the paper's column).
TASK_METRICS: dict[str, tuple[str, str]] = {
    **{b.task_name: (b.key, b.metric_key) for b in BENCHMARKS},
    **{task: (b.key, metric) for b in BENCHMARKS for task, metric in b.stock},
}

FOOTNOTE = (
    "Scores in % (the paper prints fractions: .720 = 72.0); ± = standard error (lm-eval). "
    "– = not evaluated (never 0). Avg = unweighted mean of the group's five benchmarks of the paper, shown only "
    "when all five are present; its ± = sqrt(sum se²)/5. "
    f"{', '.join(b.label for b in BENCHMARKS if not b.paper)}: not one of the paper's benchmarks, in no average "
    "(MMLU = all 57 subjects, micro average). τ = latent/sampling temperature, r_min = Λ-init lower bound, "
    "seed = training seed, date = evaluation start (UTC). "
    "ref rows = published numbers of arXiv 2505.18454 (no stderr); its P-T1/P-T2 HRPO rows are the per-dataset "
    "best over the r_min/τ sweep, so a single-config run compares with the P-T3/P-T7/P-T8 rows."
)


class LeaderboardError(ValueError):
    """A results file or reference name that cannot be used, with the reason."""


def parse_metric(text: str) -> str:
    """``exact_match`` (the default: greedy accuracy) or ``pass@K`` (K a positive integer), else an error."""
    text = str(text).strip()
    if text == DEFAULT_METRIC or re.fullmatch(r"pass@[1-9]\d*", text):
        return text
    ks = ", ".join(f"pass@{k}" for k in registry.PASSK_KS)
    raise LeaderboardError(
        f"unknown metric {text!r}: use {DEFAULT_METRIC} (greedy accuracy, the paper's tables) or pass@K of the "
        f"sampled hrpo_*_passk tasks ({ks})"
    )


def is_passk(metric: str) -> bool:
    return metric.startswith("pass@")


@dataclass(frozen=True)
class Score:
    value: float
    """Fraction in [0, 1]."""
    stderr: float | None = None
    metric: str | None = None
    """lm-eval metric key (``exact_match,none``) of an Other column's score; None for the paper's columns."""


@dataclass
class Run:
    label: str
    model: str
    method: str
    tau: float | None = None
    r_min: float | None = None
    decoding: str = "greedy"
    seed: int | None = None
    date: str | None = None
    scores: dict[str, Score] = field(default_factory=dict)
    """Benchmark key (or :data:`OTHER_PREFIX` + task name) -> score."""
    reference: bool = False
    printed_avg: dict[str, float] = field(default_factory=dict)
    """Reference rows only: the paper's printed group averages."""
    files: list[Path] = field(default_factory=list)
    identity: str = ""
    timestamp: float = 0.0
    metric: str = DEFAULT_METRIC
    """What the scores are: ``exact_match`` (the paper's columns) or ``pass@K`` (see :func:`parse_metric`)."""

    def average(self, group: str) -> Score | None:
        """Group mean over the five benchmarks, or None unless all five are present."""
        keys = [b.key for b in registry.members(group)]
        if any(k not in self.scores for k in keys):
            return None
        if group in self.printed_avg:
            return Score(self.printed_avg[group])
        values = [self.scores[k] for k in keys]
        errs = [s.stderr for s in values]
        stderr = math.sqrt(sum(e * e for e in errs)) / len(keys) if all(e is not None for e in errs) else None  # type: ignore[operator]
        return Score(sum(s.value for s in values) / len(keys), stderr)


# ---------------------------------------------------------------------------------------------- reading


def find_results(paths: Iterable[str | Path]) -> list[Path]:
    """Files as given; folders searched recursively for ``results_*.json`` (sorted)."""
    found: list[Path] = []
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            hits = sorted(path.rglob("results_*.json"))
            if not hits:
                raise LeaderboardError(f"{path}: no results_*.json files below this folder")
            found.extend(hits)
        elif path.is_file():
            found.append(path)
        else:
            raise LeaderboardError(f"{path}: no such file or folder")
    return list(dict.fromkeys(p.resolve() for p in found))


def _parse_args(model_args: Any) -> dict[str, Any]:
    if isinstance(model_args, dict):
        return dict(model_args)
    if not model_args:
        return {}
    out: dict[str, Any] = {}
    for part in str(model_args).split(","):
        key, sep, value = part.partition("=")
        if sep:
            out[key.strip()] = value.strip()
    return out


def _float(value: Any) -> float | None:
    if isinstance(value, bool) or value is None:
        return None
    try:
        out = float(value)
    except (TypeError, ValueError):
        return None
    return out if math.isfinite(out) else None


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _find_dir(value: Any, results_file: Path) -> Path | None:
    """A local folder named by a model arg: as given (absolute or from the cwd), else relative to the results
    file's folder or one of its parents."""
    if not isinstance(value, str) or not value:
        return None
    path = Path(value).expanduser()
    candidates = [path] if path.is_absolute() else [path, *(parent / path for parent in results_file.parents)]
    return next((c for c in candidates if c.is_dir()), None)


def _short_model(name: Any) -> str:
    text = str(name or "?").rstrip("/")
    return text.rsplit("/", 1)[-1] or text


def _off(value: Any) -> bool:
    return str(value).strip().lower() in ("off", "false", "0", "no", "none")


def _date(data: dict[str, Any], path: Path) -> tuple[str | None, float]:
    stamp = _float(data.get("date"))
    if stamp is None:  # fall back to the file name lm-eval gives it: results_2026-11-22T04-31-29.923174.json
        match = re.search(r"(\d{4}-\d{2}-\d{2})T(\d{2})-(\d{2})-(\d{2})", path.name)
        if not match:
            return None, 0.0
        when = dt.datetime.fromisoformat(f"{match[1]}T{match[2]}:{match[3]}:{match[4]}")
        return when.strftime("%Y-%m-%d %H:%M"), when.timestamp()
    return dt.datetime.fromtimestamp(stamp, dt.UTC).strftime("%Y-%m-%d %H:%M"), stamp


def _decoding(gen_kwargs: Any, latent: bool, sampled: bool = False) -> str:
    kwargs = _parse_args(gen_kwargs)
    sampled = sampled or str(kwargs.get("do_sample", "")).lower() == "true"
    temperature = _float(kwargs.get("temperature"))
    text = f"sampled T={temperature:g}" if sampled and temperature else "sampled" if sampled else "greedy"
    return f"{text}+latent" if latent else text


def _stderr_key(metric: str) -> str:
    name, _, filt = metric.partition(",")
    return f"{name}_stderr,{filt}"


def other_metric(entry: dict[str, Any], metric: str = DEFAULT_METRIC) -> str | None:
    """The metric key an Other column shows for a task's results entry: :data:`OTHER_METRIC` if it has a
    value, else the first ``<metric>,<filter>`` key with a value and a stderr key (None: nothing to show).
    Under ``pass@K`` only ``pass@K,none`` counts."""
    if is_passk(metric):
        return f"{metric},none" if _float(entry.get(f"{metric},none")) is not None else None
    if _float(entry.get(OTHER_METRIC)) is not None:
        return OTHER_METRIC
    for key, value in entry.items():
        name, sep, _ = key.partition(",")
        if sep and not name.endswith("_stderr") and _float(value) is not None and _stderr_key(key) in entry:
            return key
    return None


def _known_tasks(results: dict[str, Any]) -> set[str]:
    """Tasks that get no Other column: lm-eval group entries, the tasks of :data:`TASK_METRICS` and the
    members (recursively) of its groups, e.g. the ``mmlu_*`` subtasks of ``mmlu_stem``."""
    raw = results.get("group_subtasks")
    # some lm-eval versions also list plain tasks here, with no subtasks: only a non-empty list makes a group
    subtasks = (
        {k: list(v) for k, v in raw.items() if isinstance(v, list) and v} if isinstance(raw, dict) else {}
    )
    known = {*TASK_METRICS, *PASSK_TASKS, *(results.get("groups") or {}), *subtasks}
    todo = [t for t in TASK_METRICS if t in subtasks]
    seen = set(todo)
    while todo:
        for task in subtasks[todo.pop()]:
            known.add(task)
            if task in subtasks and task not in seen:
                seen.add(task)
                todo.append(task)
    return known


def _column_metrics(metric: str) -> dict[str, tuple[str, str]]:
    """lm-eval task -> (benchmark key, metric key) of the fixed columns under ``metric``."""
    if is_passk(metric):
        return {task: (key, f"{metric},none") for task, key in PASSK_TASKS.items()}
    return TASK_METRICS


def read_scores(results: dict[str, Any], metric: str = DEFAULT_METRIC) -> dict[str, Score]:
    """Benchmark key -> score from an lm-eval ``results`` (and ``groups``) mapping, and
    :data:`OTHER_PREFIX` + task name -> score (with its metric) for any other task (see :func:`other_metric`).
    Under ``pass@K`` the benchmark columns come from the ``hrpo_<key>_passk`` tasks (:data:`PASSK_TASKS`)."""
    tables = {**(results.get("groups") or {}), **(results.get("results") or {})}
    scores: dict[str, Score] = {}
    for task, (key, metric_key) in _column_metrics(metric).items():
        entry = tables.get(task)
        if key in scores or not isinstance(entry, dict):
            continue
        value = _float(entry.get(metric_key))
        if value is None:
            continue
        scores[key] = Score(value, _float(entry.get(_stderr_key(metric_key))))
    known = _known_tasks(results)
    for task, entry in (results.get("results") or {}).items():
        if task in known or not isinstance(entry, dict) or (shown := other_metric(entry, metric)) is None:
            continue
        scores[OTHER_PREFIX + task] = Score(
            _float(entry[shown]), _float(entry.get(_stderr_key(shown))), shown
        )
    return scores


def _sampled_decoding(data: dict[str, Any], scores: dict[str, Score], latent: bool) -> str:
    """The decoding column of a pass@K row: ``sampled n=<repeats>`` of its sampled tasks (``T=`` when the
    task or the command line set a temperature; else the model's tau sampled), ``+latent`` for HRPO."""
    configs = data.get("configs") or {}
    present = data.get("results") or {}
    tasks = [t for t in PASSK_TASKS if t in present] + [
        k.removeprefix(OTHER_PREFIX) for k in scores if k.startswith(OTHER_PREFIX)
    ]
    repeats = dict.fromkeys(str(configs.get(t, {}).get("repeats", "?")) for t in tasks)
    temps = dict.fromkeys(
        f"{t:g}"
        for task in tasks
        if (t := _float((configs.get(task, {}).get("generation_kwargs") or {}).get("temperature")))
    )
    text = (
        "sampled"
        + (f" T={'/'.join(temps)}" if temps else "")
        + (f" n={'/'.join(repeats)}" if repeats else "")
    )
    return f"{text}+latent" if latent else text


def load_run(path: str | Path, metric: str = DEFAULT_METRIC) -> Run:
    """One results file as a row (not yet merged with other files of the same run); ``metric`` picks what
    the scores are (:func:`parse_metric`)."""
    path = Path(path)
    data = _read_json(path)
    if data is None or not isinstance(data.get("results"), dict):
        raise LeaderboardError(f"{path}: not an lm-eval results file (no 'results' mapping)")
    config = data.get("config") or {}
    source = str(config.get("model") or data.get("model_source") or "?")
    args = _parse_args(config.get("model_args"))
    for block in (config.get("hrpo"), data.get("hrpo")):  # resolved adapter settings, if recorded: fill gaps
        if isinstance(block, dict):
            args = {**{k: v for k, v in block.items() if isinstance(v, (str, int, float, bool))}, **args}
    # The hrpo model records its run (method, tau, r_min, seed, base_model) in the results; only other models
    # (stock hf on a training output) need the folder's run file.
    recorded = next(
        (b for b in (config.get("hrpo"), data.get("hrpo")) if isinstance(b, dict) and "method" in b), {}
    )
    run_dir = None
    for key in () if recorded else ("checkpoint", "peft", "pretrained", "model", "path"):
        folder = _find_dir(args.get(key), path)
        if folder is not None and (folder / RUN_FILE).is_file():
            run_dir = folder
            break
    run_cfg = _read_json(run_dir / RUN_FILE) if run_dir else None
    gate = (_read_json(run_dir / GATE_FILE) or {}) if run_dir else {}
    train = (run_cfg or {}).get("args") or {}
    method = ("HRPO" if run_cfg.get("hybrid") else "GRPO") if run_cfg is not None else "base"
    method = str(args.get("method") or method)
    hybrid = method.upper() == "HRPO"
    tau = _float(args.get("tau", args.get("temperature")))
    if tau is None and run_cfg is not None:
        tau = _float((gate.get("decoding") or {}).get("temperature", train.get("temperature")))
    r_min = _float(args.get("r_min"))
    if r_min is None and hybrid:
        r_min = _float((gate.get("gate") or {}).get("r_min", train.get("r_min")))
    latent = hybrid and not _off(args.get("latent", "on"))
    model = recorded.get("base_model") or (run_cfg.get("base_model") if run_cfg else None)
    model = model or args.get("pretrained") or data.get("model_name") or source
    named = args.get("checkpoint") or args.get("peft") or args.get("pretrained") or data.get("model_name")
    label = _short_model(named or source)
    if hybrid and not latent:
        label += " [latent off]"
    if config.get("limit"):
        label += f" [limit {_float(config['limit']) or config['limit']:g}]"
    date, stamp = _date(data, path)
    identity = json.dumps(
        [source, sorted((str(k), str(v)) for k, v in args.items()), _parse_args(config.get("gen_kwargs")),
         config.get("limit")],
        sort_keys=True,
    )  # fmt: skip
    seed = recorded.get("seed", train.get("seed"))
    scores = read_scores(data, metric)
    decoding = _decoding(config.get("gen_kwargs"), latent, sampled=_off(args.get("greedy", "on")))
    if is_passk(metric):
        decoding = _sampled_decoding(data, scores, latent)
    return Run(
        label=label,
        model=_short_model(model),
        method=method,
        tau=tau,
        r_min=r_min,
        decoding=decoding,
        seed=int(seed) if isinstance(seed, int) else None,
        date=date,
        scores=scores,
        files=[path],
        identity=identity,
        timestamp=stamp,
        metric=metric,
    )


def merge_runs(runs: Sequence[Run]) -> list[Run]:
    """One row per run identity, in order of first appearance; the newest file wins a shared benchmark."""
    merged: dict[str, Run] = {}
    for run in sorted(runs, key=lambda r: r.timestamp):
        if run.identity not in merged:
            merged[run.identity] = replace(run, scores=dict(run.scores), files=list(run.files))
            continue
        row = merged[run.identity]
        if is_passk(run.metric) and " n=" in run.decoding:  # n comes from the files with sampled tasks
            row.decoding = run.decoding
        row.scores.update(run.scores)
        row.files.extend(run.files)
        row.date, row.timestamp = run.date, run.timestamp
    order = {run.identity: i for i, run in reversed(list(enumerate(runs)))}
    return sorted(merged.values(), key=lambda r: order[r.identity])


def load_runs(paths: Iterable[str | Path], metric: str = DEFAULT_METRIC) -> list[Run]:
    return merge_runs([load_run(p, metric) for p in find_results(paths)])


# ---------------------------------------------------------------------------------------------- references


def paper_results() -> dict[str, Any]:
    return json.loads(resources.files("hrpo").joinpath("resources", "paper_results.json").read_text())


def reference_names() -> list[str]:
    refs = paper_results()["references"]
    return [*refs, *(f"{name}:{s}" for name, ref in refs.items() for s in ref["sets"])]


def load_references(names: Iterable[str]) -> list[Run]:
    """``NAME`` (its default sets: the main tables and the Λ-init sweep) or ``NAME:SET`` (main, lambda, tau,
    sampled) from ``paper_results.json``, as reference rows."""
    refs = paper_results()["references"]
    rows: list[Run] = []
    for name in names:
        key, _, only = name.lower().partition(":")
        if key not in refs or (only and only not in refs[key]["sets"]):
            raise LeaderboardError(f"unknown reference {name!r}; known: {', '.join(reference_names())}")
        ref = refs[key]
        for set_name in [only] if only else ref["default_sets"]:
            block = ref["sets"][set_name]
            for row in block["rows"]:
                method = row["method"]
                tag = " (best of sweep)" if row.get("best_of_sweep") else ""
                hybrid = method == "HRPO" and "sampled" not in block["decoding"]
                rows.append(
                    Run(
                        label=f"ref {block['table']}{tag}",
                        model=ref["model"],
                        method=method,
                        tau=_float(row.get("tau")),
                        r_min=_float(row.get("r_min")),
                        decoding=block["decoding"] + ("+latent" if hybrid else ""),
                        scores={k: Score(float(v)) for k, v in row["scores"].items()},
                        reference=True,
                        printed_avg=dict(row.get("printed_avg") or {}),
                        identity=f"ref:{key}:{set_name}:{method}:{row.get('tau')}:{row.get('r_min')}",
                    )
                )
    return rows


# ---------------------------------------------------------------------------------------------- columns

META_COLUMNS: tuple[str, ...] = ("run", "model", "method", "τ", "r_min", "decoding", "seed", "date")
_CSV_META: tuple[str, ...] = ("tau", "reference")  # the CSV's own names besides META_COLUMNS


def other_columns(runs: Sequence[Run]) -> dict[str, str]:
    """Scores key -> label of the Other columns: each task outside the paper's ten that some row has, sorted
    by label. The label is the task name without ``hrpo_``; the full name if that label is taken."""
    tasks = sorted(
        {k.removeprefix(OTHER_PREFIX) for run in runs for k in run.scores if k.startswith(OTHER_PREFIX)}
    )
    short = [t.removeprefix("hrpo_") for t in tasks]
    taken = {
        *META_COLUMNS,
        *_CSV_META,
        *(b.label for b in BENCHMARKS),
        *(f"{g} avg" for g in GROUP_SHORT.values()),
    }
    labels: dict[str, str] = {}
    for task, label in zip(tasks, short, strict=True):
        if label in taken or short.count(label) > 1:
            label = task if task not in taken else f"{OTHER_PREFIX}{task}"
        taken.add(label)
        labels[OTHER_PREFIX + task] = label
    return dict(sorted(labels.items(), key=lambda item: item[1]))


def table_metric(runs: Sequence[Run]) -> str:
    """The one metric of the (non-reference) rows; :class:`LeaderboardError` if rows of several are mixed."""
    metrics = {run.metric for run in runs if not run.reference}
    if len(metrics) > 1:
        raise LeaderboardError(f"rows of different metrics in one table: {', '.join(sorted(metrics))}")
    if is_passk(next(iter(metrics), DEFAULT_METRIC)) and any(run.reference for run in runs):
        raise LeaderboardError(
            "the paper's reference rows are greedy accuracy; they cannot share a pass@K table (drop --reference)"
        )
    return next(iter(metrics), DEFAULT_METRIC)


def score_columns(runs: Sequence[Run] = ()) -> list[tuple[str, str, str]]:
    """(group, key, label) per score column; ``key`` is a benchmark key, ``avg`` or an Other column's scores
    key. The Other group (after Knowledge and STEM) appears only when some run has a task outside the ten.
    Under ``pass@K`` only the benchmarks with a pass@k variant have a column, and there are no averages."""
    cols: list[tuple[str, str, str]] = []
    if is_passk(table_metric(runs)):
        cols = [(b.group, b.key, b.label) for b in BENCHMARKS if b.passk and b.group]
        return cols + [(OTHER, key, label) for key, label in other_columns(runs).items()]
    for group in GROUPS:
        cols += [(group, b.key, b.label) for b in BENCHMARKS if b.group == group]
        cols.append((group, "avg", f"{GROUP_SHORT[group]} avg"))
    cols += [(OTHER, key, label) for key, label in other_columns(runs).items()]
    return cols


def column_groups(cols: Sequence[tuple[str, str, str]], metric: str = DEFAULT_METRIC) -> dict[str, str]:
    """Group -> title, in the order of ``cols`` (``STEM (pass@8)`` under a pass@K metric)."""
    if is_passk(metric):
        return {g: f"{GROUP_SHORT[g]} ({metric})" if g in GROUPS else OTHER_TITLE for g, _, _ in cols}
    return {g: GROUPS.get(g, OTHER_TITLE) for g, _, _ in cols}


def cell_score(run: Run, group: str, key: str) -> Score | None:
    return run.average(group) if key == "avg" else run.scores.get(key)


def column_metrics(runs: Sequence[Run], cols: Sequence[tuple[str, str, str]]) -> dict[str, str]:
    """Other column label -> the metric(s) its scores are (``/``-joined if rows differ)."""
    out = {}
    for group, key, label in cols:
        if group == OTHER:
            metrics = dict.fromkeys(s.metric for run in runs if (s := run.scores.get(key)) and s.metric)
            out[label] = "/".join(metrics)
    return out


def footnote(runs: Sequence[Run] = (), cols: Sequence[tuple[str, str, str]] | None = None) -> str:
    """:data:`FOOTNOTE`, plus a sentence naming each Other column's metric when there are any."""
    other = column_metrics(runs, score_columns(runs) if cols is None else cols)
    metric = table_metric(runs)
    if is_passk(metric):
        return _passk_footnote(metric)
    if not other:
        return FOOTNOTE
    metrics = ", ".join(f"{label} = {metric}" for label, metric in other.items())
    return (
        f"{FOOTNOTE} Other = lm-eval tasks outside the paper's ten, one column each (task name without hrpo_), "
        f"no average; metric = {OTHER_METRIC} if the task reports it, else its first metric with a stderr: "
        f"{metrics}."
    )


def _passk_footnote(metric: str) -> str:
    tasks = ", ".join(PASSK_TASKS)
    return (
        f"Scores = {metric} in % of the sampled tasks {tasks} (n = repeats samples per problem at the model's "
        "τ, the latent on for HRPO; unbiased estimator 1 - C(n-c,k)/C(n,k) of Chen et al. 2021, averaged over "
        "problems; a hedged answer is wrong); ± = standard error over problems (lm-eval). – = not evaluated "
        "(never 0). No group averages (the variants cover two of the paper's benchmarks). Other = lm-eval tasks "
        f"outside them reporting {metric}. τ = latent/sampling temperature, r_min = Λ-init lower bound, seed = "
        "training seed, date = evaluation start (UTC)."
    )
