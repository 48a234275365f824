"""Training step time (issue 3): stock TRL ``GRPOTrainer`` (HF generation) vs ``HRPOTrainer`` hybrid on, one run.

Command used for ``benchmark/README.md`` (from the repo root, in the README's ``.venv``, 2 CPU threads, fp32)::

    . .venv/bin/activate && export HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TRL_EXPERIMENTAL_SILENCE=1
    python benchmark/train_speed.py --models smollm2,tiny --steps 3 --threads 1 --json benchmark/train_speed.json

(``--threads 1`` because the machine was shared: with 2 threads and 5+ other busy processes OpenMP oversubscription
made step times erratic, 53-121 s per tiny-model step in a trial run.)

Protocol. Both trainers get the same model (a fresh copy each), the same LoRA (r 32 / alpha 64 on the seven
projections), the same prompts (GSM8K test questions with the HRPO chat prompt, ``hrpo.prompts.add_prompt_column``;
both samplers are seeded with ``--seed`` so each step draws the same prompts), the same reward functions
(``hrpo.rewards.make_reward_funcs("gsm8k")``), G = 4, 4 prompts per optimizer step (16 completions),
``max_completion_length`` 64, temperature 0.5, top-k 50, ``loss_type="grpo"``, beta 0.005 (``--beta``; with beta > 0
both compute reference log-probs with the adapter disabled), TRL's defaults otherwise (gradient checkpointing on).

* ``a`` -- ``trl.GRPOTrainer`` with ``trl.GRPOConfig``: rollouts by HF ``model.generate`` (sampling).
* ``b`` -- ``hrpo.trainer.HRPOTrainer`` with ``HRPOConfig(hybrid=True)``: rollouts by ``hybrid_generate``, loss forward
  on hybrid inputs rebuilt with the current gate, three optimizer groups.
* ``c`` -- ``b`` with ``length_buckets=False`` (TRL's fixed row chunks over the padded batch; ``--modes b,c`` times
  the length buckets). ``--micro_batches N`` splits the 16 completions of a step into N micro-batches
  (``gradient_accumulation_steps``): the reference forward then runs in N chunks and the loss in N forwards.

``--recipe configs/cpu_smollm2.yaml`` (issue 12, item 3) times the shipped CPU recipe instead: the YAML parsed
through ``TrlParser`` as ``hrpo train --config`` parses it, its task (generated arithmetic), rewards, LoRA, G and
lengths, on SmolLM2 (``--models`` is ignored). Its modes (``--modes``, default ``trl,recipe``) differ only in the
speed knobs the recipe sets and share the seed, so the first steps sample the same prompts and (up to the
recipe's LoRA dropout draws) the same completions; the completion-length column shows the work each step did:

* ``before`` -- ``trl`` with the rollout on transformers' ``DynamicCache`` (``preallocate_cache=False``): the
  step as it was before issue 12's item 3 and issue 14's KV cache;
* ``trl``    -- TRL's defaults for those knobs: ``gradient_checkpointing=True``, ``length_buckets=False``;
* ``gc``     -- the recipe with gradient checkpointing back on (isolates that knob);
* ``recipe`` -- the recipe as shipped (gradient checkpointing off, length buckets on).

Each (model, mode) trains ``1 + --steps`` optimizer steps; the first is a warm-up and is excluded; the table shows
the median of the rest (pooled over ``--rounds``; the mode order alternates between rounds). A step is timed from
``on_step_begin`` to ``on_step_end`` (rollout, rewards, reference log-probs, loss forward, backward, optimizer).
The breakdown wraps the trainers' methods by name (the code under test is not changed):

* rollout   -- ``_generate_single_turn`` (HF generate in ``a``; the hybrid decode loop in ``b``);
* reward    -- ``_calculate_rewards``;
* ref/old   -- the rest of ``_generate_and_score_completions`` (reference log-probs, advantages, tokenisation);
* loss fwd  -- ``compute_loss`` (policy forward: plain tokens in ``a``, hybrid replay in ``b``);
* backward  -- ``accelerator.backward``;
* other     -- the remainder (clipping, optimizer and scheduler step, logging).

The machine may be shared: every step also records this process's CPU time and the CPU time of all other
processes (``/proc/stat``), reported as "other cores busy" so contention is visible next to the timings, and
"CPU s" (this process's CPU seconds per step), which is less sensitive than wall time to other processes.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import torch

REPO_ROOT = Path(__file__).resolve().parents[1]
GSM8K_DIR = REPO_ROOT.parent / "shared" / "data"

MODES = {
    "a": "a  TRL GRPOTrainer, HF generate",
    "b": "b  HRPOTrainer, hybrid on",
    "c": "c  HRPOTrainer, hybrid on, length_buckets off",
    "before": "recipe, TRL defaults, DynamicCache rollouts",
    "trl": "recipe, TRL defaults (gradient checkpointing on, length buckets off)",
    "gc": "recipe, gradient checkpointing on",
    "recipe": "recipe as shipped (checkpointing off, buckets on)",
}
TRL_SPEED_DEFAULTS = ["--gradient_checkpointing", "true", "--length_buckets", "false"]
RECIPE_MODES = {  # --recipe modes: the overrides on top of the YAML ("before" also swaps the KV cache)
    "before": TRL_SPEED_DEFAULTS,
    "trl": TRL_SPEED_DEFAULTS,
    "gc": ["--gradient_checkpointing", "true"],
    "recipe": [],
}
COMPARISONS = (  # (numerator mode, denominator mode, what the ratio shows), printed when both ran
    ("c", "b", "length buckets, (c) off / (b) on"),
    ("before", "recipe", "step time before/recipe (before / after)"),
    ("trl", "recipe", "step time trl/recipe (before / after)"),
    ("gc", "recipe", "step time gc/recipe (before / after)"),
)
RATIO_PARTS = ("wall", "cpu", "rollout", "ref/old", "loss fwd", "backward")
PARTS = ("rollout", "reward", "ref/old", "loss fwd", "backward", "other")
TARGET = 1.15


def system_busy_seconds() -> float:
    """CPU seconds all processes have spent busy since boot (``/proc/stat``; 0.0 where unavailable)."""
    try:
        fields_ = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    except (OSError, ValueError):
        return 0.0
    idle = fields_[3] + fields_[4]
    return (sum(fields_[:8]) - idle) / os.sysconf("SC_CLK_TCK")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Per-optimizer-step time of TRL GRPOTrainer vs HRPOTrainer (hybrid on); see the docstring.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument(
        "--models",
        default="tiny,smollm2",
        help="comma-separated: 'tiny' (seeded 2-layer Llama, hidden 64, SmolLM2's 49k vocab; hrpo.testing.build_tiny_model) "
        "and/or 'smollm2' (SmolLM2-135M-Instruct from hrpo.assets, fp32)",
    )
    parser.add_argument(
        "--steps", type=int, default=3, help="timed optimizer steps per mode (after 1 warm-up)"
    )
    parser.add_argument("--rounds", type=int, default=1, help="repeat both modes; order alternates per round")
    parser.add_argument(
        "--prompts_per_step", type=int, default=4, help="GSM8K prompts per optimizer step (not with --recipe)"
    )
    parser.add_argument("--num_generations", type=int, default=4, help="G (not with --recipe)")
    parser.add_argument(
        "--max_completion_length", type=int, default=64, help="new tokens per completion (not with --recipe)"
    )
    parser.add_argument(
        "--beta",
        type=float,
        default=0.005,
        help="KL coefficient (0 skips reference log-probs; not with --recipe)",
    )
    parser.add_argument("--threads", type=int, default=2, help="torch intra-op threads")
    parser.add_argument("--seed", type=int, default=0, help="training seed (prompt order and sampling)")
    parser.add_argument(
        "--modes",
        default=None,
        help="comma-separated subset of a,b,c (default a,b); with --recipe a subset of before,trl,gc,recipe "
        "(default trl,recipe)",
    )
    parser.add_argument(
        "--recipe",
        type=Path,
        default=None,
        help="time this YAML recipe (e.g. configs/cpu_smollm2.yaml) on SmolLM2 instead of the GSM8K setup",
    )
    parser.add_argument(
        "--micro_batches",
        type=int,
        default=1,
        help="gradient_accumulation_steps: the step's completions in this many micro-batches (not with --recipe)",
    )
    parser.add_argument("--json", dest="json_out", default=None, help="write the raw numbers to this file")
    return parser.parse_args(argv)


def load_model(name: str, tokenizer):
    from transformers import AutoModelForCausalLM

    from hrpo import assets

    if name == "tiny":
        from hrpo.testing import build_tiny_model

        model = build_tiny_model("llama", vocab_size=len(tokenizer), seed=1)
        model.config.architectures = ["LlamaForCausalLM"]
        model.generation_config.eos_token_id = tokenizer.eos_token_id
        model.generation_config.pad_token_id = tokenizer.pad_token_id
        return model
    if name == "smollm2":
        return AutoModelForCausalLM.from_pretrained(assets.smollm2_path(), dtype=torch.float32)
    raise ValueError(f"unknown model {name!r}: tiny or smollm2")


class StepTimer:
    """Per-step wall time, parts (by wrapped method), CPU use; a ``TrainerCallback`` plus method wrappers."""

    def __init__(self) -> None:
        self.steps: list[dict[str, float]] = []
        self._parts: dict[str, float] = defaultdict(float)
        self._start = (0.0, 0.0, 0.0)

    def wrap(self, owner: Any, method: str, part: str) -> None:
        original = getattr(owner, method)
        parts = self._parts

        def timed(*args: Any, **kwargs: Any) -> Any:
            start = time.perf_counter()
            try:
                return original(*args, **kwargs)
            finally:
                parts[part] += time.perf_counter() - start

        setattr(owner, method, timed)

    def callback(self):
        from transformers import TrainerCallback

        timer = self

        class _Callback(TrainerCallback):
            def on_step_begin(self, args, state, control, **kwargs):
                timer._parts.clear()
                timer._start = (time.perf_counter(), time.process_time(), system_busy_seconds())

            def on_step_end(self, args, state, control, **kwargs):
                wall = time.perf_counter() - timer._start[0]
                own_cpu = time.process_time() - timer._start[1]
                busy = system_busy_seconds() - timer._start[2]
                parts = dict(timer._parts)
                row = {
                    "wall": wall,
                    "cpu": own_cpu,
                    "other_cores": max(busy - own_cpu, 0.0) / wall,
                }
                row["rollout"] = parts.get("rollout", 0.0)
                row["reward"] = parts.get("reward", 0.0)
                row["ref/old"] = parts.get("score", 0.0) - row["rollout"] - row["reward"]
                row["loss fwd"] = parts.get("loss fwd", 0.0)
                row["backward"] = parts.get("backward", 0.0)
                row["other"] = wall - sum(row[p] for p in PARTS[:-1])
                timer.steps.append(row)

        return _Callback()


def build_trainer(mode: str, model_name: str, tokenizer, dataset, args: argparse.Namespace, out: str):
    from peft import LoraConfig
    from trl import GRPOConfig, GRPOTrainer

    from hrpo.config import DEFAULT_LORA_TARGETS, HRPOConfig
    from hrpo.rewards import make_reward_funcs, reward_weights
    from hrpo.trainer import HRPOTrainer

    reward_funcs = make_reward_funcs("gsm8k")
    common = {
        "output_dir": out,
        "max_steps": 1 + args.steps,
        "per_device_train_batch_size": args.prompts_per_step * args.num_generations // args.micro_batches,
        "gradient_accumulation_steps": args.micro_batches,
        "num_generations": args.num_generations,
        "max_completion_length": args.max_completion_length,
        "temperature": 0.5,
        "top_k": 50,
        "beta": args.beta,
        "loss_type": "grpo",
        "scale_rewards": "group",
        "learning_rate": 5e-6,
        "weight_decay": 0.1,
        "adam_beta2": 0.99,
        "max_grad_norm": 0.1,
        "reward_weights": reward_weights(reward_funcs),
        "use_cpu": True,
        "bf16": False,
        "seed": args.seed,
        "save_strategy": "no",
        "logging_steps": 1,
        "log_completions": False,
        "report_to": "none",
        "disable_tqdm": True,
    }
    if mode == "a":
        config, trainer_cls = GRPOConfig(**common), GRPOTrainer
    else:
        config, trainer_cls = HRPOConfig(**common, hybrid=True, length_buckets=mode == "b"), HRPOTrainer
    trainer = trainer_cls(
        model=load_model(model_name, tokenizer),
        reward_funcs=reward_funcs,
        args=config,
        train_dataset=dataset,
        processing_class=tokenizer,
        peft_config=LoraConfig(
            r=32, lora_alpha=64, lora_dropout=0.0, target_modules=list(DEFAULT_LORA_TARGETS)
        ),
    )
    return trainer


def build_recipe_trainer(mode: str, args: argparse.Namespace, out: str):
    """An ``HRPOTrainer`` from ``args.recipe`` as ``hrpo train --config`` builds it, plus the mode's overrides."""
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import get_peft_config

    from hrpo import assets
    from hrpo.commands.train import build_dataset, build_parser, build_reward_funcs, load_training_rows
    from hrpo.rewards import reward_weights
    from hrpo.trainer import HRPOTrainer

    model_path = str(assets.smollm2_path())
    overrides = ["--output_dir", out, "--model_name_or_path", model_path, "--max_steps", str(1 + args.steps)]
    overrides += ["--save_strategy", "no", "--report_to", "none", "--log_completions", "false"]
    overrides += ["--disable_tqdm", "true", "--use_cpu", "true", "--seed", str(args.seed)]
    script_args, config, model_args = build_parser().parse_args_and_config(
        ["--config", str(args.recipe), *overrides, *RECIPE_MODES[mode]]
    )
    rows = load_training_rows(script_args)
    funcs = build_reward_funcs(script_args, rows, config.delimiter)
    config.reward_weights = reward_weights(funcs)
    trainer = HRPOTrainer(
        model=AutoModelForCausalLM.from_pretrained(model_path, dtype=torch.float32),
        reward_funcs=funcs,
        args=config,
        train_dataset=build_dataset(rows, config.delimiter, script_args.context_topk),
        processing_class=AutoTokenizer.from_pretrained(model_path),
        peft_config=get_peft_config(model_args),
    )
    if mode == "before":  # the decode loop's KV cache as it was: DynamicCache (same tokens, bit for bit)
        decode_config = trainer._decode_config
        trainer._decode_config = lambda: dataclasses.replace(decode_config(), preallocate_cache=False)
    return trainer


def run_mode(mode: str, model_name: str, tokenizer, dataset, args: argparse.Namespace) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix=f"train_speed_{model_name}_{mode}_") as out:
        if args.recipe is not None:
            trainer = build_recipe_trainer(mode, args, out)
        else:
            trainer = build_trainer(mode, model_name, tokenizer, dataset, args, out)
        timer = StepTimer()
        timer.wrap(trainer, "_generate_single_turn", "rollout")
        timer.wrap(trainer, "_calculate_rewards", "reward")
        timer.wrap(trainer, "_generate_and_score_completions", "score")
        timer.wrap(trainer, "compute_loss", "loss fwd")
        timer.wrap(trainer.accelerator, "backward", "backward")
        trainer.add_callback(timer.callback())
        trainer.train()
        logs = [h for h in trainer.state.log_history if "loss" in h]
    steps = timer.steps
    for row, log in zip(steps, logs, strict=True):
        row["completion_len"] = log.get("completions/mean_length", float("nan"))
        row["reward_mean"] = log.get("reward", float("nan"))
        row["embeds_ratio"] = log.get("hybrid/embeds_ratio", float("nan"))
    return {"mode": mode, "steps": steps}


def median_row(rows: list[dict[str, float]]) -> dict[str, float]:
    return {key: statistics.median(r[key] for r in rows) for key in rows[0]}


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")
    torch.set_num_threads(args.threads)
    from datasets import Dataset
    from transformers import AutoTokenizer

    from hrpo import assets
    from hrpo.data import load_benchmark
    from hrpo.prompts import add_prompt_column

    tokenizer = dataset = None  # --recipe builds its own from the YAML
    if args.recipe is None:
        tokenizer = AutoTokenizer.from_pretrained(assets.smollm2_path())
        tokenizer.padding_side = "left"
        rows = load_benchmark("gsm8k", "test", data_dir=GSM8K_DIR)
        needed = args.prompts_per_step * (1 + args.steps)
        dataset = Dataset.from_list(add_prompt_column([dict(r) for r in rows[: max(needed, 16)]]))
    allowed = RECIPE_MODES if args.recipe is not None else ("a", "b", "c")
    modes = [m for m in (args.modes or ("trl,recipe" if args.recipe else "a,b")).split(",") if m]
    unknown = [m for m in modes if m not in allowed]
    if unknown:
        raise SystemExit(f"train_speed.py: unknown mode(s) {unknown}; choose from {', '.join(allowed)}")
    if args.recipe is not None:
        args.models = "smollm2"
        setup = f"recipe {args.recipe} (its G, batch, lengths, task and rewards)"
    else:
        setup = (
            f"{args.prompts_per_step} prompts x G={args.num_generations}, max {args.max_completion_length} "
            f"new tokens, beta {args.beta}, {args.micro_batches} micro-batches"
        )
    print(
        f"torch {torch.__version__}, {args.threads} threads, {platform.processor() or platform.machine()}, "
        f"{os.cpu_count()} cores; {setup}; 1 warm-up + {args.steps} timed steps",
        flush=True,
    )
    results: dict[str, dict[str, list[dict[str, float]]]] = {}
    for model_name in [m for m in args.models.split(",") if m]:
        results[model_name] = {m: [] for m in modes}
        for round_index in range(args.rounds):
            order = modes if round_index % 2 == 0 else modes[::-1]
            for mode in order:
                start = time.perf_counter()
                out = run_mode(mode, model_name, tokenizer, dataset, args)
                timed = out["steps"][1:]  # drop the warm-up step
                results[model_name][mode].extend(timed)
                walls = ", ".join(f"{r['wall']:.2f}" for r in out["steps"])
                print(
                    f"  {model_name} {mode} round {round_index}: steps {walls} s "
                    f"(warm-up first; {time.perf_counter() - start:.0f} s with setup)",
                    flush=True,
                )

    header = (
        f"| model | mode | step s (median) | CPU s | {' | '.join(PARTS)} | completion len | other cores busy |\n"
        f"|---|---|---|---|{'---|' * len(PARTS)}---|---|"
    )
    lines = [header]
    ratios = {}
    for model_name, per_mode in results.items():
        medians = {m: median_row(rows_) for m, rows_ in per_mode.items() if rows_}
        for mode, med in medians.items():
            parts = " | ".join(f"{med[p]:.2f}" for p in PARTS)
            lines.append(
                f"| {model_name} | {MODES[mode]} | {med['wall']:.2f} | {med['cpu']:.2f} | {parts} | {med['completion_len']:.0f} | "
                f"{med['other_cores']:.1f} |"
            )
        if "a" in medians and "b" in medians:
            ratios[model_name] = {
                "wall": medians["b"]["wall"] / medians["a"]["wall"],
                "cpu": medians["b"]["cpu"] / medians["a"]["cpu"],
            }
        for num, den, _ in COMPARISONS:
            if num in medians and den in medians:
                ratios[f"{model_name} {num}/{den}"] = {
                    part: medians[num][part] / max(medians[den][part], 1e-9) for part in RATIO_PARTS
                }
    print("\n".join(lines))
    labels = {f"{num}/{den}": label for num, den, label in COMPARISONS}
    for model_name, ratio in ratios.items():
        name, _, pair = model_name.partition(" ")
        if pair:
            speedups = ", ".join(f"{part} {value:.2f}x" for part, value in ratio.items())
            print(f"{name}: {labels[pair]}, median: {speedups}")
            continue
        verdict = "meets" if ratio["wall"] <= TARGET else "misses"
        print(
            f"{model_name}: (b)/(a) median step time = {ratio['wall']:.2f} ({verdict} the <= {TARGET} target); "
            f"median process CPU time per step = {ratio['cpu']:.2f}"
        )
    if args.json_out:
        Path(args.json_out).write_text(
            json.dumps({"args": vars(args), "results": results, "ratios": ratios}, indent=2, default=str)
            + "\n"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
