"""``hrpo train``: train with HRPO (or plain GRPO with ``--hybrid false``) on TRL + DeepSpeed.

    hrpo train --config configs/gsm8k.yaml [--key value ...]

Launchers (the same entry, as ``python -m hrpo.train``, which calls :func:`main` here)::

    hrpo train --config configs/gsm8k.yaml                                   # one GPU or CPU
    deepspeed --num_gpus 8 --module hrpo.train --config configs/gsm8k.yaml --deepspeed ds_configs/zero2.json
    accelerate launch --config_file ds_configs/accelerate_zero2.yaml -m hrpo.train --config configs/gsm8k.yaml
    torchrun --nproc_per_node 2 -m hrpo.train --config configs/gsm8k.yaml --deepspeed ds_configs/zero3.json

Flags are TRL-style: a YAML ``--config`` gives defaults and any ``--key value`` overrides it. Three groups of
flags are parsed together (:func:`build_parser`): :class:`HRPOScriptArguments` (data),
:class:`hrpo.config.HRPOConfig` (training, ``GRPOConfig`` + HRPO) and :class:`hrpo.config.HRPOModelConfig`
(model, dtype, LoRA).

The authors' flags (``--model_name``, ``--group_size``, ``--residual_r_min``, ... of their ``hrpo_*.py``) are
rewritten to ours before parsing, one notice line each on stderr (:mod:`hrpo.authors_flags`). Training data:
a benchmark's train split, ``--task arithmetic`` (generated problems, ``--arithmetic_level`` / ``_rows``), or a
jsonl file; ``--format_shaping_weight`` adds :mod:`hrpo.shaping`'s reward (default off).
"""

from __future__ import annotations

import argparse
import io
import os
import sys
from dataclasses import dataclass, field
from typing import Any

# Kinds of training data: a benchmark loader (hrpo.data) or a jsonl file built by `hrpo data build`.
TASK_BENCHMARKS = {"gsm8k": "gsm8k", "math": "math"}


@dataclass
class HRPOScriptArguments:
    """What to train on."""

    task: str = field(
        default="gsm8k",
        metadata={
            "help": "Training data: 'gsm8k' or 'math' (benchmark train split via hrpo.data), 'arithmetic' "
            "(generated word problems of hrpo.data.arithmetic, train split: --arithmetic_level, "
            "--arithmetic_rows), or 'file' to read --train_file (e.g. the merged mmlu/rag sets written by "
            "`hrpo data build`)."
        },
    )
    train_file: str | None = field(
        default=None,
        metadata={"help": "jsonl of hrpo.data rows (id, question, gold, task, ...) for task=file."},
    )
    data_dir: str | None = field(
        default=None,
        metadata={
            "help": "Local benchmark folder (layout of ../shared/data); default $HRPO_DATA_DIR, else the hub."
        },
    )
    max_train_samples: int | None = field(
        default=None, metadata={"help": "Use only the first N training rows."}
    )
    reward_compat: str = field(
        default="fixed",
        metadata={
            "help": "'fixed' answer parsers (default) or 'original' to reproduce the released code's quirks."
        },
    )
    math_verify: bool | None = field(
        default=None,
        metadata={
            "help": "MATH: also accept symbolic equivalence (math-verify). Unset = the scorer's default (on under "
            "reward_compat=fixed, off under original)."
        },
    )
    context_topk: int = field(default=3, metadata={"help": "RAG rows: how many contexts go into the prompt."})
    arithmetic_level: str = field(
        default="0",
        metadata={
            "help": "task=arithmetic: difficulty levels of hrpo.data.arithmetic, e.g. '0' (single-digit + and -, "
            "the mix calibrated for SmolLM2-135M: benchmark/README.md), '0,1' (each problem's level drawn from "
            "the list), or 'default' (the module's original four-template mix). Levels: 0-3."
        },
    )
    arithmetic_rows: int = field(
        default=1000,
        metadata={
            "help": "task=arithmetic: how many distinct problems to generate from its train split (the test "
            "split's questions never appear); the same --arithmetic_seed gives the same rows."
        },
    )
    arithmetic_seed: int = field(
        default=0,
        metadata={
            "help": "task=arithmetic: seed of the problem generator (benchmark/learning.py's --data_seed)."
        },
    )
    format_shaping_weight: float = field(
        default=0.0,
        metadata={
            "help": "Weight of hrpo.shaping's format-shaping reward (1 for exactly one delimiter and one "
            "parseable, unhedged answer, correct or not), added to the paper's reward in TRAINING; 0 (default) "
            "= off, the paper's reward only. Logged as rewards/format_shaping_reward/mean; the paper's reward "
            "stays rewards/<task>_reward/mean. For models that rarely write one clean '#### answer' (e.g. 0.25)."
        },
    )


def _maybe_init_cpu_deepspeed(argv: list[str]) -> bool:
    """On CPU, DeepSpeed must use gloo and be initialised before TrainingArguments sets up devices.

    Returns True when it did so (a DeepSpeed run on a machine without CUDA).
    """
    wants_ds = "--deepspeed" in argv or any(a.startswith("--deepspeed=") for a in argv)
    config = next((argv[i + 1] for i, a in enumerate(argv[:-1]) if a == "--config"), None)
    if not wants_ds and config and os.path.isfile(config):
        import yaml

        with open(config) as handle:
            wants_ds = bool((yaml.safe_load(handle) or {}).get("deepspeed"))
    if not wants_ds or "WORLD_SIZE" not in os.environ:
        return False
    import torch

    if torch.cuda.is_available():
        return False
    os.environ.setdefault("DS_ACCELERATOR", "cpu")
    import deepspeed

    deepspeed.init_distributed(dist_backend="gloo")
    return True


def load_training_rows(script_args: HRPOScriptArguments) -> list[dict[str, Any]]:
    """Rows of the chosen training data (hrpo.data schema)."""
    if script_args.task == "file":
        if not script_args.train_file:
            raise ValueError("task=file needs --train_file (a jsonl written by `hrpo data build ...`)")
        from hrpo.data.build import read_rows

        rows = read_rows(script_args.train_file)
    elif script_args.task in TASK_BENCHMARKS:
        from hrpo.data import load_benchmark

        rows = load_benchmark(TASK_BENCHMARKS[script_args.task], "train", data_dir=script_args.data_dir)
    elif script_args.task == "arithmetic":
        rows = arithmetic_training_rows(script_args)
    else:
        raise ValueError(
            f"unknown task {script_args.task!r}: use gsm8k, math, arithmetic or file (with --train_file)"
        )
    if script_args.max_train_samples:
        rows = rows[: script_args.max_train_samples]
    if not rows:
        raise ValueError("the training data is empty")
    return rows


def arithmetic_training_rows(script_args: HRPOScriptArguments) -> list[dict[str, Any]]:
    """``--arithmetic_rows`` generated problems of the train split at ``--arithmetic_level`` (hrpo.data rows)."""
    from hrpo.data.arithmetic import arithmetic_rows, parse_levels

    if script_args.arithmetic_rows < 1:
        raise ValueError(f"--arithmetic_rows must be >= 1, got {script_args.arithmetic_rows}")
    try:
        levels = parse_levels(script_args.arithmetic_level)
    except ValueError as err:
        raise ValueError(f"--arithmetic_level {script_args.arithmetic_level!r}: {err}") from None
    return arithmetic_rows(
        script_args.arithmetic_rows, "train", seed=script_args.arithmetic_seed, level=levels
    )


def build_reward_funcs(script_args: HRPOScriptArguments, rows: list[dict[str, Any]], delimiter: str) -> list:
    """The paper's reward and the logged format rate, plus the format-shaping reward when its weight is > 0."""
    from hrpo.rewards import make_reward_funcs

    tasks = {r.get("task") for r in rows}
    task = tasks.pop() if len(tasks) == 1 else None
    funcs = make_reward_funcs(
        task, delimiter=delimiter, compat=script_args.reward_compat, math_verify=script_args.math_verify
    )
    weight = script_args.format_shaping_weight
    if weight < 0:
        raise ValueError(f"--format_shaping_weight must be >= 0 (0 = off), got {weight}")
    if weight > 0:
        if task is None:
            raise ValueError(
                "--format_shaping_weight needs a training set of one task (the shaping reward parses answers "
                f"as that task's scorer does); these rows mix {sorted(str(t) for t in tasks)}"
            )
        from hrpo.shaping import make_format_shaping_reward

        funcs.append(make_format_shaping_reward(weight, task=task, delimiter=delimiter))
    return funcs


def build_dataset(rows: list[dict[str, Any]], delimiter: str, topk: int):
    """A ``datasets.Dataset`` with TRL's conversational ``prompt`` column plus the scoring columns."""
    from datasets import Dataset

    from hrpo.prompts import add_prompt_column

    return Dataset.from_list(add_prompt_column([dict(r) for r in rows], delimiter=delimiter, topk=topk))


def summarize(trainer, model_args, rows: int) -> str:
    """Start-up summary: model, trainable parameters per optimizer group, prompts/completions per step."""
    args = trainer.args
    lines = [f"model: {model_args.model_name_or_path} (hybrid={'on' if args.hybrid else 'off'})"]
    for group in trainer.parameter_groups():
        count = sum(p.numel() for p in group["params"])
        lines.append(
            f"  {group['name']:7s} {count:>12,d} params  lr {group['lr']:g}  wd {group['weight_decay']:g}"
        )
    completions = args.per_device_train_batch_size * args.world_size * args.gradient_accumulation_steps
    lines.append(
        f"per optimizer step: {completions // args.num_generations} prompts x {args.num_generations} completions = "
        f"{completions} completions; {rows} training prompts; max {args.max_completion_length} new tokens"
    )
    weights = args.reward_weights or [1.0] * len(trainer.reward_funcs)
    names = [getattr(f, "__name__", type(f).__name__) for f in trainer.reward_funcs]
    lines.append(
        "rewards (weight): " + ", ".join(f"{n} ({w:g})" for n, w in zip(names, weights, strict=False))
    )
    return "\n".join(lines)


class _HelpFormatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    """Defaults in each flag's help (HfArgumentParser's choice) and the epilog's line breaks kept."""


def build_parser():
    """TRL's parser over the three flag groups (``hrpo train --help`` prints it, the authors' aliases last)."""
    from trl import TrlParser

    from hrpo.authors_flags import TRAIN_FLAGS, help_text
    from hrpo.config import HRPOConfig, HRPOModelConfig

    return TrlParser(
        (HRPOScriptArguments, HRPOConfig, HRPOModelConfig),
        prog="hrpo train",
        epilog=help_text(TRAIN_FLAGS),
        formatter_class=_HelpFormatter,
    )


def main(argv: list[str] | None = None) -> int:
    from hrpo.authors_flags import TRAIN_FLAGS, AuthorsFlagError, translate

    # The authors' flags (--group_size, --model_name, ...) become ours, each with a notice (rank 0 prints).
    notices = sys.stderr if os.environ.get("RANK", "0") == "0" else io.StringIO()
    try:
        argv = translate(list(sys.argv[1:] if argv is None else argv), TRAIN_FLAGS, "hrpo train", notices)
    except AuthorsFlagError as err:
        print(f"hrpo train: error: {err}", file=sys.stderr)
        return 2
    if _maybe_init_cpu_deepspeed(argv) and not any(a.startswith("--use_cpu") for a in argv):
        # Without it accelerate would look for GPUs, see one process, and reject the batch sizes.
        print("hrpo train: DeepSpeed without CUDA -> running on CPU (--use_cpu true)", flush=True)
        argv += ["--use_cpu", "true"]
    from trl import get_peft_config

    from hrpo.rewards import reward_weights
    from hrpo.trainer import HRPOTrainer

    parser = build_parser()
    script_args, training_args, model_args = parser.parse_args_and_config(argv)
    if not model_args.model_name_or_path:
        parser.error("--model_name_or_path is required (a hub id or a local model folder)")

    try:
        rows = load_training_rows(script_args)
        reward_funcs = build_reward_funcs(script_args, rows, training_args.delimiter)
    except ValueError as err:  # bad data flags: one line, not TrlParser's page-long usage
        print(f"hrpo train: error: {err}", file=sys.stderr)
        return 2
    dataset = build_dataset(rows, training_args.delimiter, script_args.context_topk)
    if training_args.reward_weights is None:
        training_args.reward_weights = reward_weights(reward_funcs)
    training_args.model_init_kwargs = {**(training_args.model_init_kwargs or {}), "dtype": model_args.dtype}

    trainer = HRPOTrainer(
        model=model_args.model_name_or_path,
        reward_funcs=reward_funcs,
        args=training_args,
        train_dataset=dataset,
        peft_config=get_peft_config(model_args),
    )
    if trainer.accelerator.is_main_process:
        print(summarize(trainer, model_args, len(rows)), flush=True)
    from hrpo.checkpoint import CheckpointMismatchError, CheckpointSaveError, IncompleteCheckpointError

    try:
        trainer.train(resume_from_checkpoint=training_args.resume_from_checkpoint)
    except (CheckpointMismatchError, IncompleteCheckpointError, CheckpointSaveError) as err:
        # The message says what is wrong and what to do: one error, not a traceback through Trainer.
        print(f"hrpo train: error: {err}", file=sys.stderr)
        return 1 if isinstance(err, CheckpointSaveError) else 2
    trainer.save_model(training_args.output_dir)
    if trainer.accelerator.is_main_process:
        print(f"saved the trained adapter, gate and run config to {training_args.output_dir}", flush=True)
    return 0
