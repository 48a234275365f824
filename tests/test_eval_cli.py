"""``hrpo eval`` (issue 5, tests 3-4): end to end on a saved tiny checkpoint, early errors, a SmolLM2 smoke run."""

from __future__ import annotations

import json

import pytest
import torch
import transformers

from hrpo.checkpoint import GateCheckpointError, save_gate
from hrpo.cli import main as hrpo_main
from hrpo.gate import GateConfig, ThinkingGate
from hrpo.testing import save_tiny_qwen2, strong_gate

TASKS = ["hrpo_gsm8k", "hrpo_arc_challenge"]


def write_run_config(folder, base_model) -> None:
    run = {"base_model": str(base_model), "hybrid": True, "peft": True, "args": {"temperature": 0.5}}
    (folder / "hrpo_run.json").write_text(json.dumps(run))


@pytest.fixture(scope="module")
def lora_checkpoint(tmp_path_factory, qwen_tokenizer):
    """A training output as HRPOTrainer writes it: PEFT LoRA adapter, gate files, hrpo_run.json."""
    from peft import LoraConfig, get_peft_model

    root = tmp_path_factory.mktemp("run")
    base = save_tiny_qwen2(root / "base", qwen_tokenizer)
    model = transformers.AutoModelForCausalLM.from_pretrained(base)
    lora = LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], init_lora_weights=False)
    ckpt = root / "output"
    get_peft_model(model, lora).save_pretrained(ckpt)
    save_gate(
        strong_gate(64), ckpt, decoding={"delimiter": "####", "temperature": 0.5, "top_k": 50, "top_p": 1.0}
    )
    write_run_config(ckpt, base)
    return ckpt


@pytest.fixture
def datasets_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_DATASETS_CACHE", str(tmp_path / "hf_datasets"))


def refuse_weight_loading(monkeypatch) -> None:
    """From here on, any attempt to load model weights fails the test."""

    def refuse(*args, **kwargs):
        raise AssertionError("model weights were loaded before the checkpoint was validated")

    monkeypatch.setattr(transformers.AutoModelForCausalLM, "from_pretrained", refuse)
    monkeypatch.setattr(transformers.PreTrainedModel, "from_pretrained", refuse)


def test_hrpo_eval_end_to_end_and_clear_errors_before_loading(
    lora_checkpoint, shared_data, datasets_cache, tmp_path, capsys, monkeypatch
):
    argv = ["eval", "--checkpoint_path", str(lora_checkpoint), "--tasks", ",".join(TASKS), "--limit", "2"]
    argv += ["--batch_size", "2", "--data_dir", str(shared_data), "--device", "cpu"]
    argv += ["--model_args", "dtype=float32", "--gen_kwargs", "max_gen_toks=8"]  # the last two pass through
    assert hrpo_main(argv) == 0

    [results_file] = lora_checkpoint.glob("*/results_*.json")
    results = json.loads(results_file.read_text())
    for task in TASKS:
        assert {"exact_match,none", "format,none"} <= set(results["results"][task])
        assert results["results"][task]["sample_len"] == 2
        [samples_file] = results_file.parent.glob(f"samples_{task}_*.jsonl")
        rows = [json.loads(line) for line in samples_file.read_text().splitlines()]
        assert len(rows) == 2 and all("exact_match" in r and "format" in r for r in rows)
        assert rows[0]["arguments"]["gen_args_0"]["arg_0"].startswith("<|im_start|>system\n")  # chat template
    config = results["config"]
    assert config["model"] == "hrpo" and config["model_args"]["checkpoint"] == str(lora_checkpoint)
    hybrid = config["hrpo"]
    assert hybrid["latent"] and hybrid["adapter_in_checkpoint"] and hybrid["gate_in_checkpoint"]
    assert results["configs"]["hrpo_gsm8k"]["generation_kwargs"]["max_gen_toks"] == 8

    # The results file alone places the run on the leaderboard (the folder's run file is not read).
    from hrpo import leaderboard

    assert (hybrid["method"], hybrid["tau"], hybrid["r_min"], hybrid["base_model"]) == (
        "HRPO", 0.5, 0.3, str(lora_checkpoint.parent / "base"))  # fmt: skip
    run_file = lora_checkpoint / "hrpo_run.json"
    kept = run_file.read_text()
    run_file.unlink()
    try:
        row = leaderboard.load_run(results_file)
    finally:
        run_file.write_text(kept)
    assert (row.method, row.tau, row.r_min, row.model) == ("HRPO", 0.5, 0.3, "base")

    # Bad checkpoints: a clear message and exit code 2 from the command, an exception from the adapter, and no
    # model weights loaded on the way.
    from hrpo.lm_eval_adapter import HRPOLM

    refuse_weight_loading(monkeypatch)
    capsys.readouterr()

    def run(folder) -> str:
        assert hrpo_main(["eval", "--checkpoint_path", str(folder), "--tasks", "hrpo_gsm8k"]) == 2
        return capsys.readouterr().err

    assert "does not exist" in run(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    assert "holds no HRPO gate" in run(tmp_path / "empty")

    mismatched = tmp_path / "mismatched"
    save_gate(ThinkingGate(GateConfig(hidden_size=32)), mismatched)
    write_run_config(mismatched, lora_checkpoint.parent / "base")
    err = run(mismatched)
    assert "hidden size 32" in err and "hidden size 64" in err
    with pytest.raises(GateCheckpointError, match="hidden size 32"):
        HRPOLM(checkpoint=str(mismatched), device="cpu")
    with pytest.raises(GateCheckpointError, match="does not exist"):
        HRPOLM(pretrained=str(lora_checkpoint.parent / "base"), checkpoint=str(tmp_path / "missing"))


@pytest.mark.slow
def test_smollm2_on_ten_gsm8k_items(tmp_path, shared_data, datasets_cache):
    """SmolLM2 through ``hrpo eval`` (latent on): every logged score is the scorer's on the logged completion,
    and the adapter with ``latent=off`` writes exactly what stock ``hf`` writes on the same ten items."""
    from lm_eval import simple_evaluate
    from lm_eval.models.huggingface import HFLM
    from lm_eval.tasks import TaskManager

    from hrpo import rewards
    from hrpo.answers import DEFAULT_DELIMITER
    from hrpo.assets import smollm2_path
    from hrpo.commands.eval import tasks_dir
    from hrpo.lm_eval_adapter import HRPOLM

    base = smollm2_path()
    ckpt = (
        tmp_path / "smol_gate"
    )  # a gate-only checkpoint: freshly initialised gate, base model from run json
    save_gate(ThinkingGate(GateConfig(hidden_size=576), torch.Generator().manual_seed(0)), ckpt)
    write_run_config(ckpt, base)
    argv = [
        "eval",
        "--checkpoint_path",
        str(ckpt),
        "--tasks",
        "hrpo_gsm8k",
        "--limit",
        "10",
        "--batch_size",
        "10",
    ]
    argv += ["--data_dir", str(shared_data), "--device", "cpu", "--model_args", "dtype=float32"]
    argv += ["--gen_kwargs", "max_gen_toks=32"]
    assert hrpo_main(argv) == 0
    [results_file] = ckpt.glob("*/results_*.json")
    results = json.loads(results_file.read_text())
    assert results["config"]["hrpo"]["latent"]
    scores = results["results"]["hrpo_gsm8k"]
    assert scores["sample_len"] == 10
    [samples_file] = results_file.parent.glob("samples_hrpo_gsm8k_*.jsonl")
    rows = [json.loads(line) for line in samples_file.read_text().splitlines()]
    assert sorted(r["doc_id"] for r in rows) == list(range(10))
    for row in rows:
        [completion] = row["filtered_resps"]
        assert completion.strip(), row["doc_id"]  # it really wrote something
        doc = row["doc"]
        rescored = rewards.eval_metrics(
            doc,
            completion,
            delimiter=doc.get("delimiter") or DEFAULT_DELIMITER,
            compat=doc.get("compat") or "fixed",
            math_verify=doc.get("math_verify"),
        )
        assert {k: row[k] for k in ("exact_match", "format", "hedged")} == rescored, row["doc_id"]
    for metric in ("exact_match", "format", "hedged"):
        assert scores[f"{metric},none"] == pytest.approx(sum(r[metric] for r in rows) / 10, abs=1e-12)

    # latent=off: the adapter's plain path is stock HFLM, completion by completion, on the real model.
    manager = TaskManager(
        include_path=str(tasks_dir()), include_defaults=False, metadata={"data_dir": str(shared_data)}
    )

    def evaluate(lm):
        out = simple_evaluate(model=lm, tasks=["hrpo_gsm8k"], task_manager=manager, limit=10, bootstrap_iters=0,
                              apply_chat_template=True, log_samples=True, gen_kwargs={"max_gen_toks": 32})  # fmt: skip
        return sorted(out["samples"]["hrpo_gsm8k"], key=lambda r: r["doc_id"]), out["results"]["hrpo_gsm8k"]

    common = {"dtype": "float32", "device": "cpu", "batch_size": 10}
    stock, stock_scores = evaluate(HFLM(pretrained=str(base), **common))
    plain, plain_scores = evaluate(HRPOLM(checkpoint=str(ckpt), latent="off", **common))
    assert len(stock) == len(plain) == 10
    for a, b in zip(stock, plain, strict=True):
        assert a["doc_id"] == b["doc_id"] and a["arguments"] == b["arguments"]
        assert a["resps"] == b["resps"] and a["filtered_resps"] == b["filtered_resps"], a["doc_id"]
        assert (a["exact_match"], a["format"]) == (b["exact_match"], b["format"])
    assert plain_scores == stock_scores
    # the latent-on run (its samples file) saw the same prompts
    assert {r["doc_id"]: r["arguments"]["gen_args_0"]["arg_0"] for r in rows} == {
        r["doc_id"]: r["arguments"][0][0] for r in stock
    }
