"""`hrpo train` through the real command line, and the shipped run / DeepSpeed / accelerate configs.

The end-to-end test runs ``python -m hrpo.train`` in a subprocess on a tiny Llama saved to ``tmp_path`` (SmolLM2's
tokenizer, so the real chat template and reward parsers are used), with a YAML ``--config`` and CLI overrides.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from hrpo.testing import save_tiny_llama, subprocess_env
from tests.conftest import REPO_ROOT

ALL_CONFIGS = sorted((REPO_ROOT / "configs").glob("*.yaml"))
RECIPES = {"cpu_smollm2"}  # not a paper setting: tests/test_cpu_recipe.py checks it
CONFIGS = [p for p in ALL_CONFIGS if p.stem not in RECIPES]  # the paper's runs
GSM8K = REPO_ROOT / "configs" / "gsm8k.yaml"
DS_JSONS = sorted((REPO_ROOT / "ds_configs").glob("*.json"))
ACCELERATE_YAMLS = sorted((REPO_ROOT / "ds_configs").glob("accelerate_*.yaml"))


@pytest.fixture(scope="module")
def tiny_model_dir(tmp_path_factory) -> Path:
    return save_tiny_llama(tmp_path_factory.mktemp("tinyllama"))


# --------------------------------------------------------------------------- end to end


@pytest.mark.slow
def test_hrpo_train_end_to_end_with_yaml_and_cli_override(tiny_model_dir, tmp_path):
    out = tmp_path / "run"
    config = tmp_path / "run.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "model_name_or_path": str(tiny_model_dir),
                "dtype": "float32",
                "task": "arithmetic",  # generated rows (issue 12): level 0, 4 of them, no file to write
                "arithmetic_rows": 4,
                "output_dir": str(out),
                "use_cpu": True,
                "bf16": False,
                "max_steps": 5,  # overridden to 2 on the command line
                "per_device_train_batch_size": 4,
                "num_generations": 4,
                "max_completion_length": 8,
                "r_min": 0.95,  # from the YAML, not a default
                "lora_target_modules": ["q_proj", "v_proj"],
                "save_steps": 1,
                "log_completions": False,
                "report_to": "none",
                "seed": 0,
            }
        )
    )
    cmd = [sys.executable, "-m", "hrpo.train", "--config", str(config), "--max_steps", "2"]
    cmd += ["--lora_rank", "4", "--format_shaping_weight", "0.5"]  # an authors' flag; the default-off shaping
    proc = subprocess.run(
        cmd, cwd=tmp_path, env=subprocess_env(), capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]

    # Start-up summary names the model, the three optimizer groups and the effective batch.
    assert f"model: {tiny_model_dir} (hybrid=on)" in proc.stdout
    for group in ("policy", "gate", "lambda"):
        assert f"  {group}" in proc.stdout
    assert "1 prompts x 4 completions = 4 completions" in proc.stdout
    assert f"saved the trained adapter, gate and run config to {out}" in proc.stdout
    assert "rewards (weight): gsm8k_reward (1), format_reward (0), format_shaping_reward (0.5)" in proc.stdout
    notice = "hrpo train: --lora_rank is the authors' name; using --lora_r 4 --lora_alpha 8"
    assert notice in proc.stderr  # and the adapter below has r 4 / alpha 8 from it

    # The final folder: adapter + gate + run config, directly loadable by the evaluation side.
    for name in ("adapter_config.json", "adapter_model.safetensors", "hrpo_gate.json", "hrpo_gate.safetensors",
                 "hrpo_run.json"):  # fmt: skip
        assert (out / name).is_file(), name
    adapter = json.loads((out / "adapter_config.json").read_text())
    assert adapter["r"] == 4 and adapter["lora_alpha"] == 8
    assert sorted(adapter["target_modules"]) == ["q_proj", "v_proj"]
    run = json.loads((out / "hrpo_run.json").read_text())
    assert run["hybrid"] is True and run["peft"] is True
    assert run["base_model"] == str(tiny_model_dir)
    assert run["args"]["max_steps"] == 2  # CLI override wins over the YAML
    assert run["args"]["r_min"] == 0.95  # YAML wins over the default
    assert run["args"]["learning_rate"] == 5e-6  # untouched paper default
    gate_meta = json.loads((out / "hrpo_gate.json").read_text())
    assert gate_meta["gate"]["hidden_size"] == 64 and gate_meta["gate"]["r_min"] == 0.95
    assert gate_meta["decoding"]["delimiter"] == "####"

    # One checkpoint per step (save_steps 1), each completely written, none beyond the overridden max_steps.
    checkpoints = sorted(p.name for p in out.glob("checkpoint-*"))
    assert checkpoints == ["checkpoint-1", "checkpoint-2"]
    for step, name in enumerate(checkpoints, start=1):
        folder = out / name
        marker = json.loads((folder / "hrpo_checkpoint_complete.json").read_text())
        assert marker == {"global_step": step}
        for file in ("adapter_config.json", "hrpo_gate.safetensors", "hrpo_gate.json", "hrpo_run.json",
                     "optimizer.pt", "scheduler.pt", "trainer_state.json"):  # fmt: skip
            assert (folder / file).is_file(), f"{name}/{file}"
    state = json.loads((out / "checkpoint-2" / "trainer_state.json").read_text())
    assert state["global_step"] == 2 and state["max_steps"] == 2
    losses = [h for h in state["log_history"] if "loss" in h]
    assert [h["step"] for h in losses] == [1, 2]
    for key in ("reward", "kl", "hybrid/embeds_ratio", "rewards/gsm8k_reward/mean", "gsm8k_reward/accuracy",
                "rewards/format_shaping_reward/mean"):  # fmt: skip
        assert key in losses[0], key

    # The saved gate and adapter load back with the public loaders.
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    from hrpo.checkpoint import load_gate

    gate = load_gate(out, hidden_size=64)
    assert gate.Lambda.shape == (64,)
    base = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    model = PeftModel.from_pretrained(base, out)
    assert any("lora_A" in name for name, _ in model.named_parameters())


def hrpo_executable() -> list[str]:
    script = Path(sys.executable).with_name("hrpo")
    if script.is_file():
        return [str(script)]
    found = shutil.which("hrpo")
    return [found] if found else [sys.executable, "-m", "hrpo.cli"]


LAUNCHERS = [
    pytest.param("module", id="python -m hrpo.train"),
    pytest.param("hrpo", id="hrpo train"),
]


def train_command(launcher: str) -> list[str]:
    return [sys.executable, "-m", "hrpo.train"] if launcher == "module" else [*hrpo_executable(), "train"]


@pytest.mark.parametrize("launcher", LAUNCHERS)
def test_train_help_lists_hrpo_flags_with_help_text(launcher, tmp_path):
    proc = subprocess.run(
        [*train_command(launcher), "--help"],
        cwd=tmp_path,
        env=subprocess_env(),
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    text = " ".join(proc.stdout.split())  # argparse wraps help text; compare with single spaces
    assert text.startswith("usage: hrpo train")  # TrlParser(prog="hrpo train") under both launchers
    for flag, help_words in [
        ("--r_min", "Lower end of the Lambda init"),
        ("--r_max", "Upper end of the Lambda init range"),
        ("--gate_c", "Gate exponent scale c"),
        ("--gate_learning_rate", "Peak learning rate of the gate linears"),
        ("--lambda_learning_rate", "Peak learning rate of Lambda"),
        ("--hybrid", "plain GRPO through the same code path"),
        ("--delimiter", "Answer delimiter"),
        ("--gate_checkpoint", "Start from the gate saved in this folder"),
        ("--task", "Training data"),
        ("--train_file", "jsonl of hrpo.data rows"),
        ("--lora_r", "LoRA rank"),
        ("--deepspeed", None),
        ("--resume_from_checkpoint", None),
    ]:
        assert flag in text, flag
        if help_words:
            assert help_words in text, (flag, help_words)


def test_missing_model_is_a_clear_cli_error(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "hrpo.train", "--output_dir", str(tmp_path / "x"), "--use_cpu", "true"],
        cwd=tmp_path,
        env=subprocess_env(),
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert proc.returncode != 0
    assert "--model_name_or_path is required" in proc.stderr


# --------------------------------------------------------------------------- shipped configs

# The paper's settings per task (spec 3.3, Table 5), for Qwen2.5-1.5B-Instruct with LoRA.
PAPER = {
    "gsm8k": {"task": "gsm8k", "G": 4, "completions": 32, "max_completion_length": 512},
    "math": {"task": "math", "G": 8, "completions": 64, "max_completion_length": 1024},
    "mmlu": {"task": "file", "G": 8, "completions": 64, "max_completion_length": 512},
    "rag": {"task": "file", "G": 4, "completions": 64, "max_completion_length": 512},
}


def parse_config(path: Path, *extra: str):
    from hrpo.commands.train import build_parser

    parser = build_parser()
    # The configs are for GPUs (bf16); on a CPU-only machine TrainingArguments needs use_cpu to accept bf16.
    return parser.parse_args_and_config(["--config", str(path), "--use_cpu", "true", *extra])


def test_every_task_has_a_config():
    assert sorted(p.stem for p in CONFIGS) == sorted(PAPER)
    assert {p.stem for p in ALL_CONFIGS} - set(PAPER) == RECIPES


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.stem)
def test_shipped_config_parses_with_paper_settings(path, monkeypatch):
    from hrpo.commands.train import HRPOScriptArguments
    from hrpo.config import DEFAULT_LORA_TARGETS, HRPOConfig, HRPOModelConfig

    monkeypatch.delenv("WORLD_SIZE", raising=False)
    script, train, model = parse_config(path)
    assert isinstance(script, HRPOScriptArguments)
    assert isinstance(train, HRPOConfig)
    assert isinstance(model, HRPOModelConfig)
    paper = PAPER[path.stem]
    text = path.read_text()
    assert "paper" in text.splitlines()[0]  # the header names what it reproduces

    # Model and precision.
    assert model.model_name_or_path == "Qwen/Qwen2.5-1.5B-Instruct"
    assert model.dtype == "bfloat16" and train.bf16
    # LoRA r 32 / alpha 64 on all seven projections.
    assert model.use_peft and (model.lora_r, model.lora_alpha) == (32, 64)
    assert model.lora_target_modules == DEFAULT_LORA_TARGETS

    # Group size, completions per optimizer step on one process, lengths.
    assert script.task == paper["task"]
    assert train.num_generations == paper["G"]
    completions = train.per_device_train_batch_size * train.gradient_accumulation_steps
    assert completions == paper["completions"]
    assert train.max_completion_length == paper["max_completion_length"]
    prompts = completions // train.num_generations
    assert f"{prompts} prompts x G={train.num_generations} = {completions} completions" in text

    # Optimisation and objective (spec 3.3).
    assert (train.learning_rate, train.gate_learning_rate, train.lambda_learning_rate) == (5e-6, 1e-4, 1e-3)
    assert (train.beta, train.loss_type, train.scale_rewards, train.num_iterations) == (
        0.005,
        "grpo",
        "group",
        1,
    )
    assert (train.weight_decay, train.adam_beta2, train.max_grad_norm, train.warmup_steps) == (
        0.1,
        0.99,
        0.1,
        0.1,
    )
    assert str(train.lr_scheduler_type).lower().endswith("cosine")
    assert (train.temperature, train.top_k, train.r_min, train.r_max) == (0.5, 50, 0.99, 0.999)
    assert train.hybrid and train.delimiter == "####"

    if paper["task"] == "file":
        assert script.train_file and script.train_file.endswith(f"{path.stem}_train.jsonl")
        assert f"hrpo data build {path.stem}-train" in text  # says how to make the file
    if path.stem == "rag":
        assert script.context_topk == 3
        assert prompts == 16 and train.num_generations == 4


@pytest.mark.parametrize("path", [GSM8K], ids=lambda p: p.stem)
def test_cli_flag_overrides_shipped_config(path, monkeypatch):
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    _, train, model = parse_config(path, "--num_generations", "8", "--r_min", "0.95", "--lora_r", "16")
    assert (train.num_generations, train.r_min, model.lora_r) == (8, 0.95, 16)
    assert train.max_completion_length == 512  # everything else still from the YAML


def _expected_stage(name: str) -> int:
    """The ZeRO stage a file name announces: ``zero2`` -> 2, ``accelerate_zero3_offload`` -> 3."""
    return int(re.search(r"zero(\d)", name).group(1))


@pytest.mark.parametrize("path", DS_JSONS, ids=lambda p: p.name)
def test_deepspeed_json_is_valid_with_the_stage_in_its_name(path):
    config = json.loads(path.read_text())
    zero = config["zero_optimization"]
    assert zero["stage"] == _expected_stage(path.stem)
    # Batch, clipping and precision come from the hrpo train flags.
    for key in ("train_micro_batch_size_per_gpu", "gradient_accumulation_steps", "train_batch_size",
                "gradient_clipping"):  # fmt: skip
        assert config[key] == "auto", key
    assert config["bf16"]["enabled"] == "auto"
    # The optimizer (three parameter groups) and the schedule come from HRPOTrainer, not DeepSpeed.
    assert "optimizer" not in config and "scheduler" not in config
    offload = "offload" in path.stem
    assert ("offload_optimizer" in zero) == offload and ("offload_param" in zero) == offload
    if zero["stage"] == 3:
        assert zero["stage3_gather_16bit_weights_on_model_save"] is True  # a loadable final adapter


def test_deepspeed_configs_cover_zero2_zero3_and_offload():
    assert {p.name for p in DS_JSONS} >= {"zero2.json", "zero3.json", "zero3_offload.json"}


@pytest.mark.parametrize("path", ACCELERATE_YAMLS, ids=lambda p: p.name)
def test_accelerate_yaml_points_at_an_existing_json(path):
    config = yaml.safe_load(path.read_text())
    assert config["distributed_type"] == "DEEPSPEED"
    target = config["deepspeed_config"]["deepspeed_config_file"]
    json_path = REPO_ROOT / target  # paths are relative to the repository root (where you launch)
    assert json_path.is_file(), target
    assert json_path.stem == path.stem.removeprefix("accelerate_")
    stage = json.loads(json_path.read_text())["zero_optimization"]["stage"]
    assert stage == _expected_stage(path.stem)
    assert config["deepspeed_config"]["zero3_init_flag"] == (stage == 3)


def test_math_verify_defaults_to_the_scorers_choice(monkeypatch):
    """Unset --math_verify is None (the scorer decides: on under compat=fixed); true/false still parse."""
    import hrpo.train
    from hrpo.commands import train as command

    monkeypatch.delenv("WORLD_SIZE", raising=False)
    assert hrpo.train.main is command.main and hrpo.train.HRPOScriptArguments is command.HRPOScriptArguments
    script, _, _ = parse_config(GSM8K)
    assert script.math_verify is None
    script, _, _ = parse_config(GSM8K, "--math_verify", "false")
    assert script.math_verify is False
