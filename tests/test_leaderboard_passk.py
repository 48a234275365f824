"""``hrpo leaderboard --metric pass@K``: the cells come from the sampled ``hrpo_*_passk`` tasks, on results
files written from real lm-eval runs (a scripted model with known per-sample correctness, GSM8K test rows)."""

from __future__ import annotations

import collections
import csv
import io
import itertools
import json
from pathlib import Path

import pytest
from lm_eval import simple_evaluate
from lm_eval.tasks import TaskManager

from hrpo import leaderboard as lb
from hrpo.cli import main as cli_main
from hrpo.testing import scripted_eval_lm
from tests.conftest import REPO_ROOT

N = 16
# per doc (limit 3): which of the 16 samples are right
PLAN = {0: {1, 5}, 1: set(), 2: set(range(N))}


def brute_force(correct: list[bool], k: int) -> float:
    subsets = list(itertools.combinations(correct, k))
    return sum(any(s) for s in subsets) / len(subsets)


def expected(k: int, plan: dict[int, set[int]] = PLAN, n: int = N) -> float:
    return sum(brute_force([j in right for j in range(n)], k) for right in plan.values()) / len(plan)


def _lm(plan: dict[int, set[int]]):
    seen: collections.Counter = collections.Counter()
    order: dict[str, int] = {}

    def answer(doc: dict) -> str:
        i, j = order.setdefault(doc["id"], len(order)), seen[doc["id"]]
        seen[doc["id"]] += 1
        return doc["gold"] if j in plan[i] else "-7"

    return scripted_eval_lm(answer)


def _write(folder: Path, out: dict, model: str, stamp: str) -> None:
    """A results file as lm-eval's tracker names it, with the run's model args (the scripted LM has none)."""
    out = {k: v for k, v in out.items() if k != "samples"}
    out["config"] = {**out["config"], "model": "hf", "model_args": f"pretrained={model}"}
    out.pop("date", None)  # the file name then gives the date
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"results_{stamp}.json").write_text(json.dumps(out, default=str))


@pytest.fixture(scope="module")
def results(shared_data, tmp_path_factory) -> Path:
    tm = TaskManager(
        include_path=str(REPO_ROOT / "tasks"), include_defaults=False, metadata={"data_dir": str(shared_data)}
    )
    root = tmp_path_factory.mktemp("passk")
    run = {"task_manager": tm, "limit": 3, "bootstrap_iters": 0}
    # model-a: a greedy file (2 of 3 right) and a pass@k file (n = 16) of the same run -> one row
    greedy = simple_evaluate(model=_lm({0: {0}, 1: {0}, 2: set()}), tasks=["hrpo_gsm8k"], **run)
    _write(root / "a", greedy, "model-a", "2026-12-01T10-00-00.000000")
    sampled = simple_evaluate(model=_lm(PLAN), tasks=["hrpo_gsm8k_passk"], **run)
    _write(root / "a", sampled, "model-a", "2026-12-01T11-00-00.000000")
    # model-b: pass@k only, n = 4 (so no pass@8)
    task = tm.load(["hrpo_gsm8k_passk"])["tasks"]["hrpo_gsm8k_passk"]
    task.config.repeats = 4
    few = simple_evaluate(model=_lm({0: {0}, 1: {0}, 2: {0}}), tasks=[task], **{**run, "task_manager": tm})
    _write(root / "b", few, "model-b", "2026-12-01T12-00-00.000000")
    return root


def _csv(argv: list[str], capsys) -> list[dict[str, str]]:
    assert cli_main(["leaderboard", *argv, "--format", "csv"]) == 0
    return list(csv.DictReader(io.StringIO(capsys.readouterr().out)))


def test_metric_picks_the_passk_tasks_column(results, capsys):
    rows = {r["run"]: r for r in _csv([str(results), "--metric", "pass@8"], capsys)}
    a, b = rows["model-a [limit 3]"], rows["model-b [limit 3]"]
    scored = [c for c in a if not c.endswith(" stderr")]
    assert scored[scored.index("reference") + 1 :] == ["GSM8K", "MATH500"]  # only the variants' columns
    assert float(a["GSM8K"]) == pytest.approx(100 * expected(8), abs=0.005)
    assert a["MATH500"] == "" and b["GSM8K"] == ""  # not evaluated / n = 4 < 8: missing, never 0
    assert a["decoding"] == "sampled n=16" and b["decoding"] == "sampled n=4"
    for k in (1, 2, 4):
        rows = {r["run"]: r for r in _csv([str(results), "--metric", f"pass@{k}"], capsys)}
        assert float(rows["model-a [limit 3]"]["GSM8K"]) == pytest.approx(100 * expected(k), abs=0.005), k
    assert float(rows["model-b [limit 3]"]["GSM8K"]) == 100.0  # pass@4 with one right sample in 4


def test_default_metric_is_the_greedy_task_and_passk_files_say_how_to_show_them(results, capsys):
    rows = {r["run"]: r for r in _csv([str(results)], capsys)}
    assert float(rows["model-a [limit 3]"]["GSM8K"]) == pytest.approx(100 * 2 / 3, abs=0.005)
    assert rows["model-a [limit 3]"]["decoding"] == "greedy"
    assert not [c for c in rows["model-a [limit 3]"] if "passk" in c]  # no Other column for the variants
    assert rows["model-b [limit 3]"]["GSM8K"] == ""
    assert cli_main(["leaderboard", str(results / "b")]) == 0
    assert "add --metric pass@K" in capsys.readouterr().err


def test_markdown_titles_plot_and_errors(results, capsys, tmp_path):
    runs = lb.load_runs([results], "pass@8")
    assert lb.score_columns(runs) == [("stem", "gsm8k", "GSM8K"), ("stem", "math500", "MATH500")]
    assert lb.column_groups(lb.score_columns(runs), "pass@8") == {"stem": "STEM (pass@8)"}
    assert (
        cli_main(["leaderboard", str(results), "--metric", "pass@8", "--plot", str(tmp_path / "p.png")]) == 0
    )
    out = capsys.readouterr().out
    assert out.startswith("**STEM (pass@8), %**: GSM8K, MATH500 (no avg)") and "Chen et al. 2021" in out
    assert (tmp_path / "p.png").stat().st_size > 10_000
    assert cli_main(["leaderboard", str(results), "--metric", "pass@8", "--reference", "qwen2.5-1.5b"]) == 2
    assert "cannot share a pass@K table" in capsys.readouterr().err
    assert cli_main(["leaderboard", str(results), "--metric", "top5"]) == 2
    assert "unknown metric 'top5'" in capsys.readouterr().err
    with pytest.raises(lb.LeaderboardError, match="rows of different metrics"):
        lb.score_columns([*lb.load_runs([results / "a"]), *lb.load_runs([results / "b"], "pass@4")])
