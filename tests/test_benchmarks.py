"""The benchmark registry (:mod:`hrpo.benchmarks`) against everything that repeats a part of it: each task YAML
(litgpt-style: every file is read and compared with its row), the group YAMLs, the loaders' split checks and the
leaderboard's columns. Reads only files and the registry; no data, no lm-eval run."""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Any

import pytest
import yaml

from hrpo import benchmarks as registry
from hrpo import leaderboard as lb
from hrpo.data import loaders
from hrpo.data.rows import TASKS
from tests.conftest import REPO_ROOT, require_shared_data

TASKS_DIR = REPO_ROOT / "tasks"


class _Loader(yaml.SafeLoader):
    """PyYAML with lm-eval's ``!function module.name`` tag kept as the string ``module.name``."""


_Loader.add_constructor("!function", lambda loader, node: loader.construct_scalar(node))


def load_task_yaml(path: Path) -> dict[str, Any]:
    """A task YAML as lm-eval 0.4.13 merges it: each ``include`` first (recursively), then the file's own keys,
    which win (a shallow update, as ``lm_eval.tasks._yaml_loader.load_yaml`` does)."""
    cfg = yaml.load(path.read_text(), Loader=_Loader)
    includes = cfg.pop("include", [])
    merged: dict[str, Any] = {}
    for inc in includes if isinstance(includes, list) else [includes]:
        merged.update(load_task_yaml(path.parent / inc))
    merged.update(cfg)
    return merged


def _yamls() -> dict[str, dict[str, Any]]:
    return {p.stem: load_task_yaml(p) for p in sorted(TASKS_DIR.glob("hrpo_*.yaml"))}


TASK_ROWS = registry.tasks()


def test_every_yaml_is_a_registry_task_or_group():
    yamls = _yamls()
    groups = {name for name, cfg in yamls.items() if "group" in cfg}
    assert groups == {g.task_name for g in registry.GROUPS.values()}
    assert set(yamls) - groups == {b.task_name for b in TASK_ROWS} | {
        b.passk_task_name for b in registry.passk()
    }, "one YAML per registry row with task=True, and one per pass@k variant (passk=True)"


@pytest.mark.parametrize("bench", TASK_ROWS, ids=[b.key for b in TASK_ROWS])
def test_task_yaml_agrees_with_its_row(bench: registry.Benchmark):
    cfg = load_task_yaml(TASKS_DIR / f"{bench.task_name}.yaml")
    assert cfg["task"] == bench.task_name
    # the only benchmark-specific input to the code, and the one dataset function every task shares
    assert cfg["dataset_kwargs"] == {"benchmark": bench.key}
    assert cfg["custom_dataset"] == "utils.custom_dataset"
    assert cfg["test_split"] == bench.eval_split
    assert cfg.get("tag", []) == ([registry.GROUPS[bench.group].tag] if bench.paper else [])
    gen = cfg["generation_kwargs"]
    assert gen["max_gen_toks"] == bench.max_gen_toks
    assert gen["do_sample"] is False and gen["temperature"] == 0.0  # eval is greedy (the paper's Table 5)
    assert [m["metric"] for m in cfg["metric_list"]] == [*bench.metrics, *bench.subject_metrics]
    for m in cfg["metric_list"]:  # the macro average over subjects is the one custom aggregation
        assert m["aggregation"] == ("utils.macro_mean" if m["metric"] == "macro_exact_match" else "mean"), m
    for m in cfg["metric_list"]:  # only the hedged rate is a lower-is-better metric
        assert m["higher_is_better"] is (m["metric"] != "hedged"), m
    assert cfg["output_type"] == "generate_until" and cfg["num_fewshot"] == 0


@pytest.mark.parametrize("group", list(registry.GROUPS.values()), ids=list(registry.GROUPS))
def test_group_yaml_agrees_with_the_registry(group: registry.Group):
    cfg = load_task_yaml(TASKS_DIR / f"{group.task_name}.yaml")
    assert cfg["group"] == group.task_name
    assert cfg["task"] == [b.task_name for b in registry.members(group.key)]
    aggregate = cfg["aggregate_metric_list"]
    assert [m["metric"] for m in aggregate] == list(group.aggregate)
    assert all(m["aggregation"] == "mean" and m["weight_by_size"] is False for m in aggregate)


def test_every_yaml_hook_exists_in_utils():
    import importlib.util

    spec = importlib.util.spec_from_file_location("hrpo_tasks_utils", TASKS_DIR / "utils.py")
    utils = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(utils)
    for name, cfg in _yamls().items():
        for key, value in cfg.items():
            if isinstance(value, str) and value.startswith("utils."):
                assert callable(getattr(utils, value.removeprefix("utils."), None)), (name, key, value)


@pytest.mark.parametrize("bench", list(registry.BENCHMARKS.values()), ids=list(registry.BENCHMARKS))
def test_row_is_consistent(bench: registry.Benchmark):
    assert bench.eval_split in bench.splits
    assert bench.prompt in TASKS
    assert bench.metrics[0] == "exact_match"
    base = registry.QA_METRICS if bench.prompt == "qa" else registry.ANSWER_METRICS
    assert bench.metrics == ((*base, "macro_exact_match") if bench.subjects else base)
    assert bench.group is None or bench.group in registry.GROUPS
    assert not bench.paper or bench.group is not None
    assert not bench.stock or bench.group is not None, "a stock task needs a column to land in"


@pytest.mark.parametrize("bench", list(loaders.BENCHMARKS.values()), ids=list(loaders.BENCHMARKS))
def test_loader_checks_the_registry_splits(bench: registry.Benchmark):
    load = loaders.loader(bench.key)
    assert inspect.getmodule(load).__name__ == f"hrpo.data.{bench.loader.partition('.')[0]}"
    assert inspect.signature(load).parameters["split"].default == bench.eval_split
    with pytest.raises(
        ValueError, match=f"{bench.key} has no split 'nope'; choose one of {', '.join(bench.splits)}"
    ):
        load("nope")


def test_groups_have_the_papers_five_and_columns_follow_the_registry():
    for key in registry.GROUPS:
        assert len(registry.members(key)) == 5
    assert registry.columns() == lb.BENCHMARKS
    assert list(lb.GROUPS) == list(registry.GROUPS)
    for bench in registry.columns():
        assert lb.TASK_METRICS[bench.task_name] == (bench.key, f"{bench.metrics[0]},none")
        for task, metric in bench.stock:
            assert lb.TASK_METRICS[task] == (bench.key, metric)
    keys = list(lb.TASK_METRICS)  # our task precedes a stock task of the same column ("earlier wins")
    for bench in registry.columns():
        for task, _ in bench.stock:
            assert keys.index(bench.task_name) < keys.index(task)


def test_unknown_benchmark_names_the_known_ones():
    with pytest.raises(KeyError, match="known: gsm8k, math"):
        registry.get("gsm9k")
    with pytest.raises(KeyError, match="no loader"):
        loaders.loader("qa_file")


def test_missing_shared_data_skips_locally_but_fails_under_ci(tmp_path, monkeypatch):
    absent = tmp_path / "no-data"
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception, match="not found"):
        require_shared_data(absent)
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="CI must provide it"):
        require_shared_data(absent)
    assert require_shared_data(tmp_path) == tmp_path


def test_the_registry_is_plain_data():
    """Everything may import the registry, so it imports nothing of the project, lm-eval or the leaderboard."""
    import ast

    tree = ast.parse((REPO_ROOT / "hrpo" / "benchmarks.py").read_text())
    imported = {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names}
    imported |= {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
    assert imported <= {"__future__", "dataclasses"}, imported
