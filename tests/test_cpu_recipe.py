"""configs/cpu_smollm2.yaml, the shipped CPU recipe (issue 12): it parses as `hrpo train --config` parses it."""

from __future__ import annotations

import re
import shlex

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
    assert (
        script.task == "arithmetic" and script.train_file is None
    )  # rows generated, no jsonl to write first
    assert (script.arithmetic_level, script.arithmetic_seed, script.format_shaping_weight) == ("0", 0, 0.0)
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


def test_recipe_trains_on_the_learning_benchmarks_rows_one_pass_over_them(tmp_path):
    """task=arithmetic rows: train split, level 0, exactly max_steps x prompts per step (each prompt seen once),
    the same rows benchmark/learning.py trains on (its --mix 0 / --data_seed 0 defaults), none from the test split."""
    from hrpo.data.arithmetic import arithmetic_rows
    from hrpo.train import load_training_rows

    script, config, _ = parse("--output_dir", str(tmp_path / "run"))
    rows = load_training_rows(script)
    steps_times_prompts = config.max_steps * config.per_device_train_batch_size // config.num_generations
    assert len(rows) == steps_times_prompts == 60
    assert rows == arithmetic_rows(steps_times_prompts, "train", seed=0, level=0)
    assert all(r["task"] == "gsm8k" and re.fullmatch(r"-?\d+", r["gold"]) for r in rows)
    assert all(r["id"].startswith("arith-L0-train-") for r in rows)
    # Level 0 is single-digit + and -: every gold is in [0, 18].
    assert all(0 <= int(r["gold"]) <= 18 for r in rows)
    held_out = {r["question"] for r in arithmetic_rows(200, "test", seed=0, level=0)}
    assert not held_out & {r["question"] for r in rows}


def test_recipe_header_has_no_data_step_and_its_train_command_parses(tmp_path):
    """The header's command is the whole recipe: no jsonl to write first, and it parses as written."""
    text = RECIPE.read_text()
    assert 'python -c "from hrpo.data' not in text and "train_file" not in text
    lines = [ln.removeprefix("#").strip() for ln in text.splitlines() if ln.startswith("#   ")]
    command = " ".join(ln.removesuffix("\\").strip() for ln in lines)
    argv = shlex.split(command)
    assert argv[:4] == ["hrpo", "train", "--config", "configs/cpu_smollm2.yaml"]
    script, _, model = parse("--output_dir", str(tmp_path), *argv[4:])
    assert script.task == "arithmetic" and model.model_name_or_path  # the $(...) model path is one argument


def test_arithmetic_flags_and_format_shaping_through_the_train_command(tmp_path, capsys):
    """--arithmetic_level/--arithmetic_rows pick the rows; --format_shaping_weight adds hrpo.shaping's reward
    with its weight; bad values are one-line errors from `hrpo train`, not tracebacks."""
    from hrpo.commands.train import build_reward_funcs, load_training_rows, main
    from hrpo.data.arithmetic import arithmetic_rows
    from hrpo.rewards import reward_weights

    script, _, _ = parse("--output_dir", str(tmp_path), "--arithmetic_level", "0+2", "--arithmetic_rows", "7")
    rows = load_training_rows(script)
    assert rows == arithmetic_rows(7, "train", seed=0, level=[0, 2])
    assert [f.__name__ for f in build_reward_funcs(script, rows, "####")] == ["gsm8k_reward", "format_reward"]

    script, _, _ = parse("--output_dir", str(tmp_path), "--format_shaping_weight", "0.25")
    funcs = build_reward_funcs(script, load_training_rows(script), "####")
    assert [f.__name__ for f in funcs] == ["gsm8k_reward", "format_reward", "format_shaping_reward"]
    assert reward_weights(funcs) == [1.0, 0.0, 0.25]
    assert funcs[2](["so #### 9", "#### 7 #### 8"], gold=["7", "7"]) == [1.0, 0.0]  # format, not correctness

    for flag, value, words in [
        ("--arithmetic_level", "5", "--arithmetic_level '5': arithmetic levels must be among"),
        ("--arithmetic_rows", "0", "--arithmetic_rows must be >= 1"),
        ("--format_shaping_weight", "-1", "--format_shaping_weight must be >= 0"),
    ]:
        argv = [
            "--config",
            str(RECIPE),
            "--output_dir",
            str(tmp_path),
            "--model_name_or_path",
            "unused",
            flag,
            value,
        ]
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert err.startswith("hrpo train: error: ") and words in err and "Traceback" not in err


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
