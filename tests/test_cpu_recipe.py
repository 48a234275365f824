"""configs/cpu_smollm2.yaml, the shipped CPU recipe (issue 12): it parses as `hrpo train --config` parses it."""

from __future__ import annotations

import re
import shlex
import subprocess
import sys

import yaml

from tests.conftest import REPO_ROOT

RECIPE = REPO_ROOT / "configs" / "cpu_smollm2.yaml"


def parse(*overrides: str):
    from hrpo.commands.train import build_parser  # the parser `hrpo train --config` itself uses

    return build_parser().parse_args_and_config(["--config", str(RECIPE), *overrides])


def test_recipe_parses_through_trlparser_and_validates(tmp_path):
    from hrpo.config import HRPOConfig

    script, config, model = parse("--output_dir", str(tmp_path / "run"))
    assert isinstance(config, HRPOConfig)  # __post_init__ ran: HRPOConfig's own checks passed
    assert script.task == "file" and script.train_file.endswith(".jsonl")
    assert config.use_cpu and not config.bf16 and not config.gradient_checkpointing
    assert config.hybrid and config.num_iterations == 1
    completions = config.per_device_train_batch_size * config.gradient_accumulation_steps
    assert completions % config.num_generations == 0 and completions // config.num_generations == 2
    assert config.num_generations == 8
    assert (config.temperature, config.top_k, config.beta) == (0.5, 50, 0.005)
    # Issue 10's loss defaults stay in force: raw-logit log-probs and the plain k3 KL.
    assert config.effective_loss_temperature == 1.0 and not config.use_bias_correction_kl
    assert config.learning_rate < config.gate_learning_rate < config.lambda_learning_rate
    assert model.use_peft and (model.lora_r, model.lora_alpha) == (32, 64)
    assert model.dtype == "float32"


def test_every_recipe_key_is_a_known_flag():
    """TrlParser rejects unknown YAML keys; check that no key is silently ignored by a typo elsewhere."""
    from hrpo.config import HRPOConfig, HRPOModelConfig
    from hrpo.train import HRPOScriptArguments

    known = set()
    for cls in (HRPOScriptArguments, HRPOConfig, HRPOModelConfig):
        known |= set(cls.__dataclass_fields__)
    assert set(yaml.safe_load(RECIPE.read_text())) <= known


def test_command_line_overrides_the_recipe(tmp_path):
    _, config, _ = parse("--output_dir", str(tmp_path), "--max_steps", "3", "--hybrid", "false")
    assert config.max_steps == 3 and not config.hybrid


def test_the_data_command_in_the_header_writes_training_rows(tmp_path):
    """Step 1 of the header writes the jsonl that task=file / train_file reads (hrpo.train.load_training_rows)."""
    from hrpo.train import load_training_rows

    line = next(ln for ln in RECIPE.read_text().splitlines() if ln.startswith("#   python -c"))
    argv = shlex.split(line.removeprefix("#   "))
    subprocess.run([sys.executable, *argv[1:]], cwd=tmp_path, check=True, timeout=120)
    script, config, _ = parse("--output_dir", str(tmp_path / "run"))
    script.train_file = str(tmp_path / script.train_file)
    rows = load_training_rows(script)
    steps_times_prompts = config.max_steps * config.per_device_train_batch_size // config.num_generations
    assert len(rows) == steps_times_prompts
    assert all(r["task"] == "gsm8k" and re.fullmatch(r"-?\d+", r["gold"]) for r in rows)


def test_format_shaping_reward_is_separate_weighted_and_ignores_correctness():
    """hrpo.shaping (the recipe's optional shaping, off unless added): well-formed answers only, own weight."""
    import pytest

    from hrpo.rewards import make_reward_funcs, reward_weights
    from hrpo.shaping import DEFAULT_SHAPING_WEIGHT, make_format_shaping_reward

    shaping = make_format_shaping_reward()
    completions = ["3 + 4 = 7 #### 7", "so #### 9", "#### 7 #### 8", "#### 7 or 8", "#### ", "it is 7"]
    gold = ["7"] * len(completions)
    assert shaping(completions, gold=gold) == [1.0, 1.0, 0.0, 0.0, 0.0, 0.0]
    paper = make_reward_funcs("gsm8k")
    assert paper[0](completions, gold=gold) == [
        1.0,
        0.0,
        0.0,
        0.0,
        0.0,
        0.0,
    ]  # the paper's reward is unchanged
    assert reward_weights([*paper, shaping]) == [1.0, 0.0, DEFAULT_SHAPING_WEIGHT]
    assert shaping.__name__ == "format_shaping_reward"  # TRL logs rewards/format_shaping_reward/mean
    with pytest.raises(ValueError):
        make_format_shaping_reward(0.0)
