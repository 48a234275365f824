"""Coming from the authors' scripts (issue 16 item 5): their flags as aliases, their checkpoints converted.

The authors' flags below are copied from the argparse blocks of Yueeeeeeee/HRPO's ``hrpo_gsm8k.py``,
``hrpo_math.py``, ``hrpo_mmlu.py``, ``hrpo_rag.py`` and ``eval_*.py`` (with ``hrpo_gsm8k.py``'s defaults). The
authors' checkpoint is built here with real PEFT from a tiny Qwen2 carrying their three gate submodules, so key
names, dtypes, ``modules_to_save`` and folder names are what their ``GRPOTrainer`` saves.
"""

from __future__ import annotations

import io
import json
import math
import os

import pytest
import torch
from torch import nn

from hrpo.authors_flags import EVAL_FLAGS, NONE, RENAMED, SAME, TRAIN_FLAGS, AuthorsFlagError, translate

# flag -> hrpo_gsm8k.py's default (hrpo_math/mmlu/rag differ only in defaults, and add --dataset_root)
AUTHORS_TRAIN = {
    "lora_rank": "32", "lr": "5e-6", "beta": "0.005", "residual_r_min": "0.99", "residual_r_max": "0.999",
    "lr_residual_gate": "1e-4", "lr_residual_Lambda": "1e-3", "weight_decay": "0.1", "warmup_ratio": "0.1",
    "lr_scheduler_type": "cosine", "optimizer": "paged_adamw_8bit", "max_grad_norm": "0.1", "group_size": "4",
    "temperature": "0.5", "gradient_accumulation_steps": "4", "per_device_train_batch_size": "8",
    "max_prompt_length": "1024", "max_completion_length": "1024", "model_name": "Qwen/Qwen2.5-1.5B-Instruct",
    "seed": "42",
}  # fmt: skip
AUTHORS_TRAIN_EXTRA = {"dataset_root"}  # hrpo_math.py, hrpo_mmlu.py, hrpo_rag.py
AUTHORS_EVAL = {"greedy", "batch_size", "checkpoint_path", "eval_examples"}  # eval_rag.py adds eval_examples


def parse_train(argv: list[str]):
    from hrpo.commands.train import build_parser

    notices = io.StringIO()
    translated = translate(argv, TRAIN_FLAGS, "hrpo train", notices)
    script, config, model = build_parser().parse_args_and_config([*translated, "--use_cpu", "true"])
    return script, config, model, notices.getvalue().splitlines()


# --------------------------------------------------------------------------------------------- the tables


def test_the_tables_hold_every_authors_flag_and_point_at_real_flags():
    from hrpo.commands.eval import build_parser as eval_parser
    from hrpo.commands.train import HRPOScriptArguments
    from hrpo.config import HRPOConfig, HRPOModelConfig

    assert set(TRAIN_FLAGS) == set(AUTHORS_TRAIN) | AUTHORS_TRAIN_EXTRA
    assert set(EVAL_FLAGS) == AUTHORS_EVAL
    ours = set()
    for cls in (HRPOScriptArguments, HRPOConfig, HRPOModelConfig):
        ours |= set(cls.__dataclass_fields__)
    for flag in TRAIN_FLAGS.values():
        assert flag.kind in (SAME, RENAMED, NONE)
        if flag.kind != NONE or flag.ours:
            assert flag.ours in ours, flag.name
        assert (flag.kind == SAME) == (flag.name == flag.ours), flag.name
        # A renamed flag must not already be one of ours (it would shadow it).
        assert flag.kind == SAME or flag.name not in ours, flag.name
    eval_options = {opt.lstrip("-") for action in eval_parser()._actions for opt in action.option_strings}
    for flag in EVAL_FLAGS.values():
        assert flag.ours in eval_options, flag.name


def test_train_help_lists_the_authors_flags():
    from hrpo.commands.train import build_parser

    text = build_parser().format_help()
    for name in TRAIN_FLAGS:
        assert f"--{name} " in text, name
    assert "--group_size                   --> --num_generations" in text


# --------------------------------------------------------------------------------------------- hrpo train


def test_the_readme_command_maps_with_one_notice_per_renamed_flag():
    """The authors' README command: --model_name Qwen/Qwen2.5-3B-Instruct --residual_r_min 0.98 --group_size 8."""
    argv = ["--model_name", "Qwen/Qwen2.5-3B-Instruct", "--residual_r_min", "0.98", "--group_size", "8"]
    argv += ["--temperature", "0.7", "--output_dir", "x"]
    _, config, model, notices = parse_train(argv)
    assert model.model_name_or_path == "Qwen/Qwen2.5-3B-Instruct"
    assert (config.r_min, config.num_generations, config.temperature) == (0.98, 8, 0.7)
    assert notices == [
        "hrpo train: --model_name is the authors' name; using --model_name_or_path Qwen/Qwen2.5-3B-Instruct",
        "hrpo train: --residual_r_min is the authors' name; using --r_min 0.98",
        "hrpo train: --group_size is the authors' name; using --num_generations 8",
    ]  # --temperature is ours too: no notice


def test_every_authors_flag_with_its_default_lands_on_the_same_setting(tmp_path):
    """hrpo_gsm8k.py's full default command line, flag by flag (the optimizer aside: bitsandbytes is absent)."""
    values = dict(AUTHORS_TRAIN, optimizer="adamw_torch")
    argv = [token for name, value in values.items() for token in (f"--{name}", value)]
    _, config, model, notices = parse_train([*argv, "--output_dir", str(tmp_path)])
    assert model.model_name_or_path == "Qwen/Qwen2.5-1.5B-Instruct"
    assert (model.lora_r, model.lora_alpha) == (32, 64)  # the scripts' lora_alpha = 2 x rank
    assert (config.learning_rate, config.beta) == (5e-6, 0.005)
    assert (config.r_min, config.r_max) == (0.99, 0.999)
    assert (config.gate_learning_rate, config.lambda_learning_rate) == (1e-4, 1e-3)
    assert (config.weight_decay, config.warmup_steps, config.max_grad_norm) == (0.1, 0.1, 0.1)
    assert (config.lr_scheduler_type.value, config.optim.value) == ("cosine", "adamw_torch")
    assert (config.num_generations, config.temperature, config.seed) == (4, 0.5, 42)
    assert (config.per_device_train_batch_size, config.gradient_accumulation_steps) == (8, 4)
    assert config.max_completion_length == 1024  # the scripts' 1,024, not our Table 5 default (512)
    renamed = [n for n in values if TRAIN_FLAGS[n].kind != SAME]
    assert len(notices) == len(renamed)
    for line, name in zip(notices, renamed, strict=True):
        assert line.startswith(f"hrpo train: --{name} is the authors'"), line
    assert "--lora_r 32 --lora_alpha 64" in notices[renamed.index("lora_rank")]
    assert "ignoring --max_prompt_length 1024" in notices[renamed.index("max_prompt_length")]


def test_equals_form_explicit_alpha_and_negative_values():
    out = translate(["--lora_rank=8", "--lora_alpha", "4", "--lr", "-1e-5"], TRAIN_FLAGS, "t", io.StringIO())
    assert out == ["--lora_r", "8", "--lora_alpha", "4", "--learning_rate", "-1e-5"]
    # After "--" nothing is rewritten.
    assert translate(["--", "--group_size", "2"], TRAIN_FLAGS, "t", io.StringIO()) == [
        "--",
        "--group_size",
        "2",
    ]


@pytest.mark.parametrize(
    ("argv", "words"),
    [
        (
            ["--group_size", "8", "--num_generations", "4"],
            "--group_size (the authors' name for --num_generations)",
        ),
        (["--group_size"], "needs a value"),
        (["--lora_rank", "big"], "--lora_rank needs an integer"),
        (["--warmup_ratio", "1.5"], "a ratio must be in [0, 1)"),
        (["--dataset_root", "/nonexistent/MATH"], "no such folder"),
    ],
)
def test_unmappable_values_are_errors_that_say_what_to_pass(argv, words):
    with pytest.raises(AuthorsFlagError, match=None) as caught:
        translate(argv, TRAIN_FLAGS, "hrpo train", io.StringIO())
    assert words in str(caught.value)


def test_dataset_root_math_tree_save_to_disk_and_other_folders(tmp_path):
    math_tree = tmp_path / "data" / "math"
    (math_tree / "train" / "algebra").mkdir(parents=True)
    notices = io.StringIO()
    out = translate(["--dataset_root", str(math_tree)], TRAIN_FLAGS, "hrpo train", notices)
    assert out == ["--data_dir", str(tmp_path / "data"), "--task", "math"]  # hrpo_math.py's task
    assert f"using --data_dir {tmp_path / 'data'} --task math" in notices.getvalue()
    out = translate(["--task", "file", "--dataset_root", str(math_tree)], TRAIN_FLAGS, "t", io.StringIO())
    assert out == ["--task", "file", "--data_dir", str(tmp_path / "data")]  # an explicit --task is kept

    upper = tmp_path / "MATH"  # the scripts' default ../MATH: our loader wants <data_dir>/math/train
    (upper / "train").mkdir(parents=True)
    with pytest.raises(AuthorsFlagError, match="folder named 'math'"):
        translate(["--dataset_root", str(upper)], TRAIN_FLAGS, "hrpo train", io.StringIO())

    merged = tmp_path / "MMLU_Train_Merged"  # Dataset.save_to_disk output
    merged.mkdir()
    (merged / "state.json").write_text("{}")
    with pytest.raises(AuthorsFlagError, match="hrpo data build mmlu-train"):
        translate(["--dataset_root", str(merged)], TRAIN_FLAGS, "hrpo train", io.StringIO())


def test_train_command_reports_alias_errors_in_one_line(capsys):
    from hrpo.commands.train import main

    assert main(["--group_size", "8", "--num_generations", "4"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("hrpo train: error: --group_size") and "Traceback" not in err


# --------------------------------------------------------------------------------------------- hrpo eval


def test_eval_flags_of_the_authors_scripts():
    from hrpo.commands.eval import build_parser

    notices = io.StringIO()
    argv = ["--checkpoint_path", "ck", "--batch_size", "32", "--greedy", "False", "--eval_examples", "5"]
    out = translate([*argv, "--tasks", "hrpo_nq"], EVAL_FLAGS, "hrpo eval", notices)
    assert out == [
        "--checkpoint_path",
        "ck",
        "--batch_size",
        "32",
        "--no-greedy",
        "--limit",
        "5",
        "--tasks",
        "hrpo_nq",
    ]
    args, rest = build_parser().parse_known_args(out)
    assert (args.checkpoint_path, args.batch_size, args.greedy, args.limit, rest) == (
        "ck",
        "32",
        False,
        5.0,
        [],
    )
    lines = notices.getvalue().splitlines()
    assert lines[0].startswith("hrpo eval: --greedy False is the authors' form; using --no-greedy")
    assert "type=bool" in lines[0]  # their scripts read '--greedy False' as True: said out loud
    assert lines[1].startswith("hrpo eval: --eval_examples is the authors' name; using --limit 5")
    assert translate(["--greedy", "True"], EVAL_FLAGS, "e", io.StringIO()) == ["--greedy"]
    assert translate(["--greedy", "--tasks", "t"], EVAL_FLAGS, "e", io.StringIO()) == [
        "--greedy",
        "--tasks",
        "t",
    ]
    with pytest.raises(AuthorsFlagError, match="--greedy 'maybe'"):
        translate(["--greedy", "maybe"], EVAL_FLAGS, "e", io.StringIO())


# ------------------------------------------------------------------------------ the authors' checkpoint


class AuthorsLambda(nn.Module):
    """Their ``ThinkingResidualLambda`` (modeling_qwen2.py), reimplemented from the formulas."""

    c = 8.0

    def __init__(self, hidden_size: int) -> None:
        super().__init__()
        self.Lambda = nn.Parameter(torch.randn(hidden_size))

    def reset_lambda_parameters(self, r_min: float, r_max: float) -> None:
        with torch.no_grad():
            nn.init.uniform_(self.Lambda, a=r_min, b=r_max)
            self.Lambda.data.copy_(-torch.log((self.Lambda ** (-1.0 / self.c)) - 1))

    def forward(self, r_t: torch.Tensor) -> torch.Tensor:
        return torch.exp(-self.c * nn.functional.softplus(-self.Lambda, beta=1, threshold=20) * r_t)


def authors_mix(inner: nn.Module, embeds: torch.Tensor, residual: torch.Tensor) -> torch.Tensor:
    """Their ``Qwen2Model.thinking_residual`` (eps 1e-8), on the PEFT-wrapped submodules."""
    r_t = torch.sigmoid(inner.thinking_residual_gate_r(embeds))
    i_t = torch.sigmoid(inner.thinking_residual_gate_i(embeds))
    a_t = inner.thinking_residual_Lambda(r_t)
    return a_t * embeds + torch.sqrt(1 - a_t.pow(2) + 1e-8) * (i_t * residual)


RUN_NAME = "tiny-qwen2-gsm8k-group8-lora4-rmin0.98-temp0.7"


@pytest.fixture(scope="module")
def authors_checkpoint(tmp_path_factory, qwen_tokenizer):
    """``experiments/<run name>/checkpoint-2`` as their hrpo_gsm8k.py + GRPOTrainer save it, and their model."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    from hrpo.authors_layout import AUTHORS_MODULES
    from hrpo.testing import save_tiny_qwen2

    root = tmp_path_factory.mktemp("authors")
    base = save_tiny_qwen2(root / "base", qwen_tokenizer)
    model = AutoModelForCausalLM.from_pretrained(base)
    d = model.config.hidden_size
    torch.manual_seed(3)
    inner = model.model
    inner.thinking_residual_gate_r = nn.Linear(d, d)
    inner.thinking_residual_gate_i = nn.Linear(d, d)
    inner.thinking_residual_Lambda = AuthorsLambda(d)
    inner.thinking_residual_Lambda.reset_lambda_parameters(r_min=0.98, r_max=0.999)
    lora = LoraConfig(
        r=4,
        lora_alpha=8,
        target_modules=["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
        modules_to_save=list(AUTHORS_MODULES),
        init_lora_weights=False,  # a trained adapter: B != 0, so it changes the logits
    )
    peft_model = get_peft_model(model, lora)
    wrapped = peft_model.base_model.model.model
    for name in (
        "thinking_residual_gate_r",
        "thinking_residual_gate_i",
    ):  # unsloth: the embedding dtype (bf16)
        getattr(wrapped, name).modules_to_save.default.to(torch.bfloat16)
    folder = root / "experiments" / RUN_NAME / "checkpoint-2"
    peft_model.save_pretrained(folder)
    qwen_tokenizer.save_pretrained(folder)
    (folder / "trainer_state.json").write_text(json.dumps({"global_step": 2, "log_history": []}))
    return folder, base, peft_model


def test_the_fixture_has_the_authors_key_names_and_dtypes(authors_checkpoint):
    from safetensors import safe_open

    folder, _, _ = authors_checkpoint
    config = json.loads((folder / "adapter_config.json").read_text())
    assert config["modules_to_save"] == [
        "thinking_residual_gate_r",
        "thinking_residual_gate_i",
        "thinking_residual_Lambda",
    ]
    with safe_open(folder / "adapter_model.safetensors", "pt") as f:
        dtypes = {k: f.get_slice(k).get_dtype() for k in f.keys() if "thinking_residual" in k}  # noqa: SIM118
    prefix = "base_model.model.model."
    assert dtypes == {
        prefix + "thinking_residual_gate_r.weight": "BF16",
        prefix + "thinking_residual_gate_r.bias": "BF16",
        prefix + "thinking_residual_gate_i.weight": "BF16",
        prefix + "thinking_residual_gate_i.bias": "BF16",
        prefix + "thinking_residual_Lambda.Lambda": "F32",
    }


def test_folder_name_parsing_as_their_eval_scripts(authors_checkpoint):
    from hrpo.authors_layout import authors_base_model, parse_run_path

    folder, base, _ = authors_checkpoint
    run = parse_run_path(folder)
    assert (run.model, run.task, run.group_size, run.lora_rank) == ("tiny-qwen2", "gsm8k", 8, 4)
    assert (run.r_min, run.temperature, run.step, run.base_model) == (0.98, 0.7, 2, None)
    assert authors_base_model(folder) == (str(base), "adapter_config.json base_model_name_or_path")
    qwen = parse_run_path("/x/Qwen2.5-3B-Instruct-math-group8-lora32-rmin0.95-temp0.5/checkpoint-250")
    assert (qwen.base_model, qwen.task, qwen.temperature) == ("Qwen/Qwen2.5-3B-Instruct", "math", 0.5)
    assert parse_run_path("/x/runs/gsm8k") is None


def test_converted_checkpoint_reproduces_the_authors_gate_and_adapter(authors_checkpoint, tmp_path):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    from hrpo.authors_checkpoint import SOURCE_FILE, convert_authors_checkpoint
    from hrpo.checkpoint import CheckpointInfo, load_gate

    folder, base, authors_model = authors_checkpoint
    out = convert_authors_checkpoint(folder, tmp_path / "converted")
    info = CheckpointInfo.read(out)
    assert (info.base_model, info.method, info.tau, info.r_min) == (str(base), "HRPO", 0.7, 0.98)
    assert info.has_gate and info.has_adapter and info.peft
    assert (info.decoding.delimiter, info.decoding.top_k) == ("####", 50)
    assert json.loads((out / "adapter_config.json").read_text())["modules_to_save"] is None

    # The gate: their bf16 linears / fp32 Lambda, exactly, in fp32.
    gate = load_gate(out, hidden_size=64)
    wrapped = authors_model.base_model.model.model
    theirs = {
        "gate_r.weight": wrapped.thinking_residual_gate_r.modules_to_save.default.weight,
        "gate_r.bias": wrapped.thinking_residual_gate_r.modules_to_save.default.bias,
        "gate_i.weight": wrapped.thinking_residual_gate_i.modules_to_save.default.weight,
        "gate_i.bias": wrapped.thinking_residual_gate_i.modules_to_save.default.bias,
        "Lambda": wrapped.thinking_residual_Lambda.modules_to_save.default.Lambda,
    }
    for name, tensor in gate.state_dict().items():
        assert tensor.dtype == torch.float32 and torch.equal(tensor, theirs[name].detach().float()), name
    # ... and the same mix: their exp(-c softplus(-Lambda) r) is our sigmoid(Lambda)^(c r).
    torch.manual_seed(0)
    embeds, latents = torch.randn(3, 5, 64), torch.randn(3, 5, 64)
    with torch.no_grad():
        for name in ("thinking_residual_gate_r", "thinking_residual_gate_i"):
            getattr(wrapped, name).modules_to_save.default.float()
        expected = authors_mix(wrapped, embeds, latents)
        mixed, _, _ = gate(embeds, latents)
    torch.testing.assert_close(mixed, expected, rtol=1e-5, atol=1e-6)
    assert not torch.allclose(mixed, embeds, atol=1e-3)  # the latent share is not negligible

    # The adapter on a stock model: the authors' model's logits (their extra modules do not enter the forward).
    ids = torch.tensor([[1, 5, 9, 200, 17]])
    stock = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(base), out).eval()
    with torch.no_grad():
        torch.testing.assert_close(stock(ids).logits, authors_model.eval()(ids).logits, rtol=1e-5, atol=1e-5)
        plain = AutoModelForCausalLM.from_pretrained(base)(ids).logits
    assert not torch.allclose(plain, stock(ids).logits, atol=1e-4)  # the adapter did something

    # A second conversion of the unchanged source reuses the first (no file rewritten).
    stamp = (out / "hrpo_gate.safetensors").stat().st_mtime_ns
    assert convert_authors_checkpoint(folder, out) == out
    assert (out / "hrpo_gate.safetensors").stat().st_mtime_ns == stamp
    source = json.loads((out / SOURCE_FILE).read_text())
    assert source["temperature_from"] == "the folder name" and source["source"] == str(folder.resolve())


def test_the_authors_folder_is_recognised_from_its_json_alone(authors_checkpoint, tmp_path):
    """Detection reads adapter_config.json only (no tensors); the refusal names what it found and the fix."""
    from hrpo.authors_layout import authors_refusal, convert_command, is_authors_checkpoint

    folder, _, _ = authors_checkpoint
    assert is_authors_checkpoint(folder)
    message = authors_refusal(folder)
    assert "checkpoint of the authors' code" in message
    assert "thinking_residual_gate_r, thinking_residual_gate_i, thinking_residual_Lambda" in message
    assert convert_command(folder) in message
    ours = tmp_path / "ours"
    ours.mkdir()
    (ours / "adapter_config.json").write_text(json.dumps({"peft_type": "LORA", "modules_to_save": None}))
    assert not is_authors_checkpoint(ours) and authors_refusal(ours) is None
    assert not is_authors_checkpoint(tmp_path / "missing")


def test_checkpoint_info_refuses_an_unconverted_authors_folder(authors_checkpoint):
    """lm_eval --model hrpo / the leaderboard read folders through CheckpointInfo: no silent gate-less adapter."""
    from hrpo.authors_layout import convert_command
    from hrpo.checkpoint import CheckpointInfo, GateCheckpointError

    folder, _, _ = authors_checkpoint
    with pytest.raises(GateCheckpointError, match="checkpoint of the authors' code") as err:
        CheckpointInfo.read(folder)
    assert convert_command(folder) in str(err.value)


def test_broken_authors_checkpoints_say_what_is_missing(authors_checkpoint, tmp_path):
    from safetensors.torch import load_file, save_file

    from hrpo.authors_checkpoint import AuthorsCheckpointError, convert_authors_checkpoint

    folder, _, _ = authors_checkpoint
    broken = tmp_path / RUN_NAME / "checkpoint-2"
    broken.mkdir(parents=True)
    (broken / "adapter_config.json").write_text((folder / "adapter_config.json").read_text())
    tensors = load_file(folder / "adapter_model.safetensors")
    del tensors["base_model.model.model.thinking_residual_Lambda.Lambda"]
    save_file(tensors, broken / "adapter_model.safetensors")
    with pytest.raises(AuthorsCheckpointError, match=r"lacks the tensors thinking_residual_Lambda\.Lambda"):
        convert_authors_checkpoint(broken)
    (broken / "adapter_model.safetensors").unlink()
    with pytest.raises(AuthorsCheckpointError, match="no adapter weights"):
        convert_authors_checkpoint(broken)
    with pytest.raises(AuthorsCheckpointError, match="not a checkpoint of the authors' code"):
        convert_authors_checkpoint(tmp_path)


@pytest.mark.slow  # ~50 s on the shared 2-core machine: lm-eval start-up and one tiny-model decode
def test_hrpo_eval_with_the_authors_eval_flags_on_their_checkpoint(
    authors_checkpoint, shared_data, tmp_path, capsys, monkeypatch
):
    """`hrpo eval --checkpoint_path <theirs> --batch_size 2 --greedy True`: converted, then evaluated with the
    gate on and the folder name's tau."""
    from hrpo.cli import main as hrpo_main

    monkeypatch.setenv("HF_DATASETS_CACHE", str(tmp_path / "hf_datasets"))
    folder, _, _ = authors_checkpoint
    argv = ["eval", "--checkpoint_path", str(folder), "--batch_size", "2", "--greedy", "True"]
    argv += ["--tasks", "hrpo_gsm8k", "--limit", "1", "--data_dir", str(shared_data), "--device", "cpu"]
    argv += ["--model_args", "dtype=float32", "--gen_kwargs", "max_gen_toks=4"]
    assert hrpo_main(argv) == 0
    err = capsys.readouterr().err
    assert "hrpo eval: --greedy True is the authors' form; using --greedy" in err
    converted = folder / "hrpo_converted"
    assert (
        f"is a checkpoint of the authors' code (gate in modules_to_save); evaluating its conversion {converted}"
        in err
    )
    [results_file] = converted.glob("*/results_*.json")
    results = json.loads(results_file.read_text())
    hybrid = results["config"]["hrpo"]
    assert hybrid["latent"] and hybrid["gate_in_checkpoint"] and hybrid["adapter_in_checkpoint"]
    assert math.isclose(hybrid["tau"], 0.7) and hybrid["method"] == "HRPO"
    assert results["config"]["model_args"]["checkpoint"] == str(converted.resolve())
    assert results["results"]["hrpo_gsm8k"]["sample_len"] == 1
    assert os.path.isdir(folder)  # the source is left as it was, beside the conversion


# ------------------------------------------------------------------------------------------- the README


def readme_table_commands() -> list[tuple[str, list[str]]]:
    """(authors' command, our `hrpo ...` commands) of each row of the README's authors' table."""
    import re

    from tests.conftest import REPO_ROOT

    text = (REPO_ROOT / "README.md").read_text()
    section = text.split("## Coming from the authors' scripts", 1)[1].split("\n## ", 1)[0]
    rows = []
    for line in section.splitlines():
        if line.startswith("| `python "):
            cells = line.split(" | ")
            ours = [c for c in re.findall(r"`([^`]+)`", cells[1]) if c.startswith("hrpo ")]
            rows.append((re.findall(r"`([^`]+)`", cells[0])[0], ours))
    return rows


def test_readme_table_covers_every_script_and_its_commands_parse(tmp_path):
    import shlex

    from hrpo.commands.eval import build_parser as eval_parser
    from tests.conftest import REPO_ROOT

    rows = readme_table_commands()
    scripts = {authors.split()[1] for authors, _ in rows}
    assert scripts == {
        "hrpo_gsm8k.py", "hrpo_math.py", "hrpo_mmlu.py", "hrpo_rag.py",
        "eval_gsm8k.py", "eval_math.py", "eval_mmlust.py", "eval_arcc.py", "eval_rag.py",
    }  # fmt: skip
    task_names = {p.stem for p in (REPO_ROOT / "tasks").glob("hrpo_*.yaml")}
    for authors, ours in rows:
        assert ours, authors
        for command in ours:
            argv = shlex.split(command)
            if argv[1] == "train":
                if "--config" in argv:
                    assert (REPO_ROOT / argv[argv.index("--config") + 1]).is_file(), command
                _, config, model, _ = parse_train([*argv[2:], "--output_dir", str(tmp_path)])
                if "hrpo_gsm8k.py" in authors:  # the authors' README command, mapped
                    assert (model.model_name_or_path, config.r_min, config.num_generations) == (
                        "Qwen/Qwen2.5-3B-Instruct", 0.98, 8)  # fmt: skip
            elif argv[1] == "eval":
                args, rest = eval_parser().parse_known_args(
                    translate(argv[2:], EVAL_FLAGS, "e", io.StringIO())
                )
                assert not rest, command
                assert set(args.tasks.split(",")) <= task_names, command
                if "eval_rag.py" in authors:
                    assert args.limit == 500
            else:
                assert argv[1] == "data", command
