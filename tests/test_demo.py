"""`hrpo demo`: its recipe is the shipped CPU recipe, its report is computed from lm-eval's per-item samples (Wilson
intervals, paired bootstrap, the gain line), and `hrpo demo --smoke` runs the whole pipeline (RAG included) end to end."""

import json
import re
import subprocess
import sys

import numpy as np
import pytest
import yaml

from hrpo import demo
from hrpo.stats import paired_bootstrap, wilson
from tests.conftest import REPO_ROOT

GAIN_LINE = re.compile(
    r"^HRPO (raised|lowered|changed) (.+) reward from (\d\.\d\d) to (\d\.\d\d) "
    r"\(95% CI of the gain ([+-]\d\.\d\d)\.\.([+-]\d\.\d\d)\)(: the CI includes 0, so this run shows no clear gain)?$"
)
CI_CELL = re.compile(r"\d\.\d{3} \[\d\.\d{3}, \d\.\d{3}\]")

# configs/cpu_smollm2.yaml keys that are not training choices: data (the demo draws the same generated problems
# itself), paths, logging
NOT_COPIED = {"model_name_or_path", "task", "train_file", "arithmetic_level", "arithmetic_rows", "arithmetic_seed",
              "output_dir", "use_cpu", "bf16", "logging_steps", "log_completions", "save_steps", "report_to"}  # fmt: skip


def test_the_demo_trains_with_the_shipped_cpu_recipe():
    shipped = yaml.safe_load((REPO_ROOT / "configs" / "cpu_smollm2.yaml").read_text())
    assert set(demo.RECIPE_CHANGES) == {"stop_after", "format_shaping_weight"}
    assert int(shipped.get("arithmetic_level", demo.ARITHMETIC_LEVEL)) == demo.ARITHMETIC_LEVEL
    assert shipped.get("arithmetic_seed", 0) == 0
    # nothing left out, nothing added (shaping: the YAML's default-off weight, on in the demo's training)
    assert set(demo.DEMO_RECIPE) == set(shipped) - NOT_COPIED - {"format_shaping_weight"}
    for key, value in demo.DEMO_RECIPE.items():
        assert value == shipped[key], key
    # ... and it parses through TRL's parser into a validated HRPOConfig; the schedule stays the 30-step one
    settings = demo.DemoSettings(train_steps=5)
    config, model_args = demo.parse_training(demo.training_argv(REPO_ROOT / "m", REPO_ROOT / "out", settings))
    assert (
        (config.max_steps, config.warmup_steps)
        == (30, 0.1)
        == (shipped["max_steps"], shipped["warmup_steps"])
    )
    assert config.num_generations == 8 and config.per_device_train_batch_size == 16
    assert (config.learning_rate, config.gate_learning_rate, config.r_min) == (1e-4, 2e-3, 0.95)
    assert config.gradient_checkpointing is False and config.hybrid is True
    assert (model_args.lora_r, model_args.lora_alpha, model_args.dtype) == (32, 64, "float32")


def _write_samples(folder, task: str, exact_match: list[int], fmt: list[int], shuffle: bool = True) -> None:
    """An lm-eval samples file (the keys the report reads), rows in a scrambled order as lm-eval may write."""
    folder.mkdir(parents=True, exist_ok=True)
    order = list(range(len(exact_match)))
    if shuffle:
        order = order[::-1]
    with (folder / f"samples_{task}_2026-12-02T01-00-00.jsonl").open("w") as handle:
        for i in order:
            handle.write(json.dumps({"doc_id": i, "exact_match": float(exact_match[i]), "format": float(fmt[i]),
                                     "hedged": 0.0, "filtered_resps": ["..."]}) + "\n")  # fmt: skip


def test_report_is_computed_from_the_per_item_samples(tmp_path):
    n = 40
    rng = np.random.default_rng(1)
    base_em, base_fmt = rng.integers(0, 2, n), rng.integers(0, 2, n)
    hrpo_em, hrpo_fmt = np.maximum(base_em, rng.integers(0, 2, n)), np.ones(n, dtype=int)
    hrpo_em[0], hrpo_fmt[0] = 1, 0  # correct but two ####: accuracy 1, the paper's reward 0
    _write_samples(tmp_path / "eval" / "base" / "m", demo.ARITHMETIC_TASK, list(base_em), list(base_fmt))
    _write_samples(tmp_path / "eval" / "hrpo" / "m", demo.ARITHMETIC_TASK, list(hrpo_em), list(hrpo_fmt))
    same = [0] * 10  # GSM8K: both models score 0 on every item
    _write_samples(tmp_path / "eval" / "base" / "m", demo.GSM8K_TASK, same, same)
    _write_samples(tmp_path / "eval" / "hrpo" / "m", demo.GSM8K_TASK, same, same)
    settings = demo.DemoSettings(resamples=3000)

    text, payload = demo.report(tmp_path, settings)

    entry = payload["comparisons"][demo.ARITHMETIC_TASK]
    base_reward, hrpo_reward = base_em * base_fmt, hrpo_em * hrpo_fmt
    assert hrpo_reward[0] == 0 and entry["n"] == n
    for model, reward, correct in (("base", base_reward, base_em), ("HRPO", hrpo_reward, hrpo_em)):
        got = entry["reward"][model]
        assert got["k"] == reward.sum() and (got["low"], got["high"]) == pytest.approx(
            wilson(reward.sum(), n)
        )
        assert entry["correct"][model]["k"] == correct.sum()
    expected = paired_bootstrap(hrpo_reward, base_reward, 3000, seed=0)
    assert entry["reward"]["gain"] == expected.to_dict()
    assert expected.low > 0  # the synthetic HRPO is clearly better
    assert json.loads((tmp_path / "report.json").read_text())["comparisons"] == payload["comparisons"]
    assert (tmp_path / "report.md").read_text() == text
    lines = text.strip().splitlines()
    assert lines[-1] == (
        f"HRPO raised held-out reward from {base_reward.mean():.2f} to {hrpo_reward.mean():.2f} "
        f"(95% CI of the gain {expected.low:+.2f}..{expected.high:+.2f})"
    )
    gsm8k = GAIN_LINE.match(lines[-2])
    assert gsm8k and gsm8k[1] == "changed" and gsm8k[7]  # a zero gain is not called a gain
    rows = [line for line in lines if line.startswith("| ")]
    assert [r.split(" | ")[0] for r in rows] == [
        "| model",
        "| base",
        "| HRPO",
        "| HRPO - base (paired bootstrap)",
    ]
    assert len(CI_CELL.findall(rows[1])) == 4 and len(CI_CELL.findall(rows[2])) == 4


def test_report_refuses_unpaired_items_and_bad_samples(tmp_path):
    _write_samples(tmp_path / "base", demo.ARITHMETIC_TASK, [1, 0, 1], [1, 1, 1])
    _write_samples(tmp_path / "hrpo", demo.ARITHMETIC_TASK, [1, 0], [1, 1])
    base, hrpo = (demo.read_samples(tmp_path / name, demo.ARITHMETIC_TASK) for name in ("base", "hrpo"))
    assert base.doc_ids == [0, 1, 2] and base.reward == [1.0, 0.0, 1.0]  # sorted by doc_id
    with pytest.raises(ValueError, match="different items; evaluate both models on the same --limit"):
        demo.compare(base, hrpo, 100)
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / f"samples_{demo.ARITHMETIC_TASK}_x.jsonl").write_text('{"doc_id": 0, "format": 1}\n')
    with pytest.raises(ValueError, match=r"samples_hrpo_arithmetic_x\.jsonl:1: not an lm-eval sample"):
        demo.read_samples(bad, demo.ARITHMETIC_TASK)
    with pytest.raises(FileNotFoundError, match="no samples_hrpo_gsm8k_"):
        demo.read_samples(bad, demo.GSM8K_TASK)


def test_memory_warning_only_when_short():
    full, smoke = demo.DemoSettings(), demo.DemoSettings.smoke_test()
    assert demo.memory_warning(6.0, full).startswith("warning: only 6.0 GB of memory is available")
    assert "--lanes 1" in demo.memory_warning(6.0, full)
    assert demo.memory_warning(demo.TRAINING_MEMORY_GB, full) is None
    assert demo.memory_warning(None, full) is None and demo.memory_warning(1.0, smoke) is None


def _samples(folder, task):
    rows = [
        json.loads(line)
        for f in folder.rglob(f"samples_{task}_*.jsonl")
        for line in f.read_text().splitlines()
    ]
    return sorted(rows, key=lambda r: r["doc_id"])


@pytest.mark.slow
def test_demo_smoke_runs_the_whole_pipeline(tmp_path):
    out = tmp_path / "demo"
    proc = subprocess.run(
        [sys.executable, "-m", "hrpo.cli", "demo", "--smoke", "--output_dir", str(out)],  # RAG included
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    assert f"Everything is in {out}" in proc.stdout
    # Training (Python API) output usable by the evaluation adapter, and its per-step logs.
    for name in ["adapter_config.json", "hrpo_gate.json", "hrpo_gate.safetensors", "hrpo_run.json"]:
        assert (out / "hrpo-checkpoint" / name).is_file(), name
    history = json.loads((out / "hrpo-checkpoint" / "train_history.json").read_text())
    assert [h["step"] for h in history] == [1, 2]  # stopped after 2 steps of the recipe's 30 ...
    assert [h["learning_rate"] for h in history] == pytest.approx([0.0, 1e-4 / 3])  # ... on its 3-step warmup
    assert all(
        "rewards/gsm8k_reward/mean" in h and "rewards/format_shaping_reward/mean" in h for h in history
    )
    assert re.search(r"^step 2/2 \(lr 3.3e-05\): reward \(paper\) ", proc.stdout, re.M)
    assert json.loads((out / "rag" / "index" / "meta.json").read_text())["count"] == 40
    rows = [json.loads(line) for line in (out / "data" / "wiki_qa.jsonl").read_text().splitlines()]
    assert rows and all(len(r["contexts"]) == 3 and r["contexts"][0].startswith('"') for r in rows)
    # Both models on every task, the same items, logged per item.
    tasks = {demo.ARITHMETIC_TASK, demo.GSM8K_TASK, demo.RAG_TASK}
    for run in ["base", "hrpo"]:
        scores = {}
        for results in (out / "eval" / run).rglob("results_*.json"):
            scores.update(json.loads(results.read_text())["results"])
        assert tasks <= set(scores) and all("exact_match,none" in scores[t] for t in tasks), run
        for task in tasks:
            assert len(_samples(out / "eval" / run, task)) == (2 if task == demo.RAG_TASK else 6), (run, task)
    # The leaderboard: one row per model (the checkpoint's two evaluation processes merge), with an arithmetic column.
    table = (out / "leaderboard.md").read_text()
    assert table in proc.stdout
    body = [line for line in table.splitlines() if line.startswith("| ") and "[limit 6]" in line]
    assert len(body) == 2 and "| base |" in body[0] and "| HRPO |" in body[1]
    assert "arithmetic" in table and "GSM8K" in table
    for png in ("leaderboard.png", "curves.png"):
        assert (out / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", png
    assert (out / "hrpo-checkpoint" / "trainer_state.json").is_file()  # `hrpo plot` reads it
    # The report: CIs per model, the paired CI recomputed here from the logged per-item scores, the gain line last.
    report = json.loads((out / "report.json").read_text())
    assert (out / "report.md").read_text() in proc.stdout
    for task in (demo.ARITHMETIC_TASK, demo.GSM8K_TASK):
        base, hrpo = (_samples(out / "eval" / run, task) for run in ("base", "hrpo"))
        assert [r["doc_id"] for r in base] == [r["doc_id"] for r in hrpo] == list(range(6))
        reward = {
            name: [r["exact_match"] * r["format"] for r in rows]
            for name, rows in (("base", base), ("hrpo", hrpo))
        }
        entry = report["comparisons"][task]
        assert (
            entry["reward"]["gain"]
            == paired_bootstrap(reward["hrpo"], reward["base"], 2000, seed=0).to_dict()
        )
        assert entry["reward"]["base"]["k"] == sum(reward["base"]) and entry["n"] == 6
    lines = proc.stdout.strip().splitlines()
    assert GAIN_LINE.match(lines[-1]) and "held-out" in lines[-1]
    assert GAIN_LINE.match(lines[-2]) and "GSM8K" in lines[-2]
    assert len(CI_CELL.findall(proc.stdout)) >= 8
    assert "format-shaping reward (weight 0.25" in proc.stdout
    assert set(report["timings"]) >= {"train_s", "eval_base_s", "eval_hrpo_s", "total_s"}
    assert str(REPO_ROOT) not in str(out)  # everything went to the named output folder
