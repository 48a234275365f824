"""``hrpo plot`` / :mod:`hrpo.plotting` on real training states: the committed ``hrpo train`` runs in
``tests/fixtures/plot`` (``make_fixtures.py`` there) and a live 2-step run of the tiny trainer."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from matplotlib import colors as mcolors
from matplotlib import image as mimage

from hrpo import plotting
from hrpo.checkpoint import COMPLETE_MARKER
from hrpo.cli import main as cli_main
from hrpo.testing import make_tiny_trainer
from tests.conftest import REPO_ROOT

FIX = REPO_ROOT / "tests" / "fixtures" / "plot"
# Panel -> the key the shipped trainer and reward functions log it under (hrpo/trainer.py, hrpo/rewards.py, TRL).
LOGGED = {
    "reward": "rewards/gsm8k_reward/mean",
    "format": "rewards/format_reward/mean",
    "hedged": "gsm8k_reward/hedged",
    "zero_std": "frac_reward_zero_std",
    "kl": "kl",
    "length": "completions/mean_length",
    "hidden_ratio": "hybrid/hidden_ratio",
    "embeds_ratio": "hybrid/embeds_ratio",
}


def _history(path: Path) -> list[dict]:
    return json.loads(path.read_text())["log_history"]


def _expected(history: list[dict], key: str) -> tuple[list[int], list[float]]:
    rows = [(h["step"], h[key]) for h in history if key in h]
    return [s for s, _ in rows], [v for _, v in rows]


def _copy(tmp_path: Path) -> Path:
    dest = tmp_path / "fx"
    shutil.copytree(FIX, dest, ignore=shutil.ignore_patterns("*.py", "__pycache__"))
    return dest


def _has_colour(png: np.ndarray, colour: str, tol: float = 0.08) -> bool:
    rgb = np.asarray(mcolors.to_rgb(colour))
    return bool((np.abs(png[..., :3] - rgb).max(axis=-1) < tol).sum() > 50)


def test_series_equal_the_log_history_of_the_newest_checkpoint():
    runs = plotting.load_curves([FIX / "hrpo", FIX / "grpo"])
    assert [r.label for r in runs] == ["hrpo", "grpo"]
    for run, name in zip(runs, ["hrpo", "grpo"], strict=True):
        state = FIX / name / "checkpoint-3" / "trainer_state.json"  # 3 steps, not checkpoint-2's 2
        assert run.source == state
        history = _history(state)
        assert run.keys == LOGGED  # every panel found under the key the trainer really logs
        for panel, key in LOGGED.items():
            steps, values = run.series[panel]
            assert (steps, values) == _expected(history, key), (name, panel)
            assert steps == [1, 2, 3]
    # HRPO mixes latents (hidden ratio > 0); GRPO logs the ratios as pure tokens
    assert min(runs[0].series["hidden_ratio"][1]) > 0.05 and runs[1].series["hidden_ratio"][1] == [0.0] * 3
    assert runs[1].series["embeds_ratio"][1] == [1.0] * 3


def test_png_is_written_with_both_runs_drawn(tmp_path):
    runs = plotting.load_curves([FIX / "hrpo", FIX / "grpo"], labels=["HRPO", "GRPO"])
    out = plotting.plot_curves(runs, tmp_path / "sub" / "curves.png", title="tiny")
    png = mimage.imread(out)
    assert png.shape[:2] == (2 * 3.75 * 110, 4 * 5 * 110)  # 2 x 4 panels at 110 dpi
    assert (png[..., :3].min(axis=-1) < 0.9).mean() > 0.02  # not a blank canvas
    cycle = ["#1f77b4", "#ff7f0e"]  # matplotlib's first two colours: run 1 and run 2
    assert all(_has_colour(png, c) for c in cycle)


def test_a_metric_a_run_did_not_log_is_marked(tmp_path):
    fx = _copy(tmp_path)
    # a stock TRL GRPOTrainer run: no hybrid metrics, no hedged rate
    state = fx / "grpo" / "checkpoint-3" / "trainer_state.json"
    data = json.loads(state.read_text())
    for entry in data["log_history"]:
        for key in ("hybrid/hidden_ratio", "hybrid/embeds_ratio", "gsm8k_reward/hedged"):
            entry.pop(key, None)
    state.write_text(json.dumps(data))
    runs = plotting.load_curves([fx / "hrpo", fx / "grpo"])
    assert plotting.not_logged(runs) == {
        "hedged": ["grpo"],
        "hidden_ratio": ["grpo"],
        "embeds_ratio": ["grpo"],
    }
    assert plotting.not_logged(runs[1:]) == {
        "hedged": ["grpo"],
        "hidden_ratio": ["grpo"],
        "embeds_ratio": ["grpo"],
    }
    plotting.plot_curves(runs, tmp_path / "c.png")
    assert (tmp_path / "c.png").stat().st_size > 10_000


def test_reward_falls_back_to_the_total_when_no_reward_function_is_named():
    history = [{"step": 1, "reward": 0.5, "rewards/format_reward/mean": 1.0}, {"step": 2, "reward": 0.25}]
    run = plotting.run_curves(history, "x")
    assert run.keys["reward"] == "reward" and run.series["reward"] == ([1, 2], [0.5, 0.25])
    assert run.series["format"] == ([1], [1.0])


def test_the_state_file_is_found_and_bad_files_are_named(tmp_path, capsys):
    fx = _copy(tmp_path)
    # a bare log_history list (hrpo demo's train_history.json) is read as a state
    bare = tmp_path / "train_history.json"
    bare.write_text(json.dumps(_history(fx / "hrpo" / "checkpoint-3" / "trainer_state.json")))
    (from_list,) = plotting.load_curves([bare])
    assert (
        from_list.series == plotting.load_curves([fx / "hrpo"])[0].series and from_list.label == tmp_path.name
    )
    (tmp_path / "bad.json").write_text('{"log_history": 3}')
    with pytest.raises(plotting.CurvesError, match=r"bad\.json: no 'log_history' list"):
        plotting.load_curves([tmp_path / "bad.json"])
    run = fx / "hrpo"
    # the run folder's own state (trainer.save_state) wins a tie with the newest checkpoint
    shutil.copy(run / "checkpoint-3" / "trainer_state.json", run / "trainer_state.json")
    assert plotting.find_state(run) == run / "trainer_state.json"
    assert plotting.find_state(run / "checkpoint-2") == run / "checkpoint-2" / "trainer_state.json"
    # a newer checkpoint whose save was cut (no completion marker): skipped with a warning
    (run / "checkpoint-4").mkdir()
    (run / "checkpoint-4" / "trainer_state.json").write_text('{"global_step": 4,\n "log_history": [')
    assert plotting.find_state(run) == run / "trainer_state.json"
    assert "skipping an incomplete checkpoint" in capsys.readouterr().err
    # ... but a complete one that cannot be read is an error naming the file and the line
    (run / "checkpoint-4" / COMPLETE_MARKER).write_text("{}")
    with pytest.raises(
        plotting.CurvesError, match=r"checkpoint-4/trainer_state.json: not valid JSON \(line 2"
    ):
        plotting.find_state(run)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(plotting.CurvesError, match=r"no trainer_state\.json in this folder"):
        plotting.find_state(empty)


def test_cli_writes_the_png_and_reports_errors(tmp_path, capsys):
    out = tmp_path / "curves.png"
    code = cli_main(["plot", str(FIX / "hrpo"), str(FIX / "grpo"), "--labels", "HRPO", "GRPO", "--out", str(out),
                     "--panels", "reward", "hidden_ratio"])  # fmt: skip
    assert code == 0 and out.is_file()
    err = capsys.readouterr().err
    assert "HRPO: " in err and "checkpoint-3/trainer_state.json (3 logged steps)" in err
    png = mimage.imread(out)
    assert png.shape[:2] == (int(3.75 * 110), 2 * 5 * 110)  # two panels side by side
    assert cli_main(["plot", str(tmp_path / "nope"), "--out", str(tmp_path / "x.png")]) == 2
    assert "nope: no such run folder" in capsys.readouterr().err
    assert cli_main(["plot", str(FIX / "hrpo"), "--labels", "a", "b", "--out", str(tmp_path / "x.png")]) == 2
    assert "2 labels for 1 runs" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        cli_main(["plot", str(FIX / "hrpo"), "--panels", "loss"])
    assert "invalid choice: 'loss'" in capsys.readouterr().err


@pytest.mark.slow
def test_a_live_tiny_run_plots_its_own_log_history(smol_tokenizer, tmp_path):
    """A real 2-step HRPOTrainer run (~15 s): the curves read back from its checkpoint equal the trainer's
    in-memory log_history, for every panel the toy reward logs (no format/hedged functions there)."""
    trainer = make_tiny_trainer(smol_tokenizer, tmp_path, max_steps=2, save_strategy="steps", save_steps=1)
    trainer.train()
    (run,) = plotting.load_curves([tmp_path / "run"])
    assert run.source == tmp_path / "run" / "checkpoint-2" / "trainer_state.json"
    history = trainer.state.log_history
    expected = {**LOGGED, "reward": "rewards/contains_e/mean"}
    del expected["format"], expected["hedged"]
    assert run.keys == expected
    for panel, key in expected.items():
        assert run.series[panel] == _expected(history, key), panel
        assert run.series[panel][0] == [1, 2]
    assert plotting.not_logged([run]) == {"format": ["run"], "hedged": ["run"]}
    png = mimage.imread(plotting.plot_curves([run], tmp_path / "live.png"))
    assert _has_colour(png, "#1f77b4")
