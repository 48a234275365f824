"""Does HRPO learn on a real model, on a CPU? Base vs HRPO vs GRPO (hybrid off) on SmolLM2-135M-Instruct.

The experiment (issue 12):

* **Training**: the shipped CPU recipe (``configs/cpu_smollm2.yaml``, parsed through ``TrlParser`` exactly as
  ``hrpo train --config`` does) on generated arithmetic problems of the calibrated mix (``--mix``; see
  ``benchmark/calibrate.py``), train split. HRPO and GRPO get the same seed, rows, data order, LoRA init,
  optimizer, steps and decoding; the only difference is ``hybrid``. ``--seeds 0,1`` repeats both per seed.
* **Held-out evaluation**, greedy (the paper's eval; HRPO keeps the hybrid latent on with its trained gate, base
  and GRPO decode plain tokens): ``--test_items`` (>= 200) problems of the same mix from the test split, which
  is disjoint from training by construction, and ``--gsm8k_items`` (100) real GSM8K test items as a transfer
  check. Metrics per item: reward (correct AND exactly one ``####``, :func:`hrpo.rewards.score`), accuracy
  (correct, format ignored, as the paper's eval), format, hedged, truncated, length.
* **Statistics** (:mod:`hrpo.stats`): Wilson 95 % CIs of every rate; paired bootstrap 95 % CIs (items resampled)
  of each method's gain over base and of HRPO minus GRPO; with several seeds an item's score is its mean over
  seeds (the CI then covers item sampling, not seed-to-seed variance, which is reported per seed).
* **Curves** (read from the trainer's ``log_history``): per-step reward, format rate, fraction of zero-std
  groups, ``hybrid/hidden_ratio``, KL and completion length for both methods, in one PNG; all numbers in a JSON.

    python benchmark/learning.py --out benchmark/results/learning              # the full run (see README)
    python benchmark/learning.py --steps 2 --test_items 8 --gsm8k_items 4 --out /tmp/learning_smoke  # smoke

``--shaping_weight 0.25`` adds :mod:`hrpo.shaping`'s format-shaping reward to TRAINING (default off; the curves
and every held-out number stay the paper's reward). At the end it prints the measured time of each phase and,
from the measured step and per-item times, an estimate of the full default run's wall time (the smoke run's
batches are small, so the estimate errs high).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")

import torch

REPO = Path(__file__).resolve().parents[1]
DEFAULT_RECIPE = REPO / "configs" / "cpu_smollm2.yaml"
DEFAULT_MIX = "0"  # the calibrated training mix (benchmark/README.md, "Calibration (issue 12)")
FULL = {"steps": None, "test_items": 200, "gsm8k_items": 100}  # the full run (steps: the recipe's max_steps)
CURVES = [
    ("rewards/gsm8k_reward/mean", "reward (paper's: correct AND one ####)"),
    ("rewards/format_reward/mean", "format rate (exactly one ####)"),
    ("frac_reward_zero_std", "fraction of groups with zero reward std"),
    ("hybrid/hidden_ratio", "hybrid/hidden_ratio (latent share)"),
    ("kl", "KL to the reference (k3)"),
    ("completions/mean_length", "mean completion length (tokens)"),
]
METRICS = ("reward", "correct", "format", "hedged", "truncated")
RECIPE_KEYS = (
    "num_generations", "per_device_train_batch_size", "gradient_accumulation_steps", "max_completion_length",
    "max_steps", "learning_rate", "gate_learning_rate", "lambda_learning_rate", "beta", "temperature", "top_k",
    "r_min", "r_max", "lr_scheduler_type", "warmup_steps", "max_grad_norm", "weight_decay",
    "gradient_checkpointing", "loss_temperature",
)  # fmt: skip


def parse_recipe(recipe: Path, overrides: list[str]):
    """``(script_args, HRPOConfig, HRPOModelConfig)`` from the YAML, as ``hrpo train --config`` parses it."""
    from hrpo.commands.train import build_parser

    return build_parser().parse_args_and_config(["--config", str(recipe), *overrides])


def evaluate(model, tokenizer, gate, rows, hybrid: bool, max_new_tokens: int, batch: int) -> dict[str, list]:
    """Greedy per-item scores on ``rows`` (batched, rows sorted by prompt length to limit padding)."""
    from hrpo.generation import STOP_LENGTH, DecodeConfig, hybrid_generate
    from hrpo.latent import SamplingConfig
    from hrpo.prompts import build_messages, render_prompt
    from hrpo.rewards import score

    config = DecodeConfig(
        max_new_tokens=max_new_tokens,
        sampling=SamplingConfig(temperature=0.5, top_k=50, greedy=True),  # tau still shapes the latent
        hybrid=hybrid,
        record_logprobs=False,
    )
    prompts = [render_prompt(build_messages(r), tokenizer) for r in rows]
    order = sorted(range(len(rows)), key=lambda i: len(prompts[i]))
    out: dict[str, list] = {k: [None] * len(rows) for k in (*METRICS, "length", "completion")}
    was_training = model.training
    model.eval()
    for start in range(0, len(order), batch):
        idx = order[start : start + batch]
        enc = tokenizer(
            [prompts[i] for i in idx],
            return_tensors="pt",
            padding=True,
            padding_side="left",
            add_special_tokens=False,
        )
        rollout = hybrid_generate(model, enc.input_ids, enc.attention_mask, gate, config, tokenizer)
        lengths = rollout.completion_mask.sum(1).tolist()
        for i, ids, n, stop in zip(
            idx, rollout.completion_ids, lengths, rollout.stop_reason.tolist(), strict=True
        ):
            text = tokenizer.decode(ids[:n], skip_special_tokens=True)
            s = score(text, rows[i]["gold"], "gsm8k")
            for key, value in zip(
                METRICS, (s.reward, s.correct, s.format_ok, s.hedged, stop == STOP_LENGTH), strict=True
            ):
                out[key][i] = float(value)
            out["length"][i] = int(n)
            out["completion"][i] = text
    model.train(was_training)
    return out


def summarize_scores(scores: dict[str, list]) -> dict:
    from hrpo.stats import proportion

    summary = {key: proportion(scores[key]).to_dict() for key in METRICS}
    summary["length_mean"] = sum(scores["length"]) / len(scores["length"])
    return summary


def eval_sets(model, tokenizer, gate, hybrid, sets, args, timings, label) -> dict:
    results = {}
    for name, (rows, tokens) in sets.items():
        start = time.perf_counter()
        scores = evaluate(model, tokenizer, gate, rows, hybrid, tokens, args.eval_batch)
        seconds = time.perf_counter() - start
        timings.setdefault(f"eval_{name}_per_item_s", []).append(seconds / len(rows))
        examples = scores.pop("completion")[:20]  # keep the JSON small: per-item numbers, 20 texts
        results[name] = {
            "scores": scores,
            "summary": summarize_scores(scores),
            "seconds": seconds,
            "examples": examples,
        }
        s = results[name]["summary"]
        print(
            f"[{label}] {name}: reward {s['reward']['rate']:.3f} [{s['reward']['low']:.3f}, "
            f"{s['reward']['high']:.3f}] accuracy {s['correct']['rate']:.3f} format {s['format']['rate']:.3f} "
            f"truncated {s['truncated']['rate']:.3f} ({seconds:.0f} s, load {os.getloadavg()[0]:.1f})",
            flush=True,
        )
    return results


def train_method(name, hybrid, seed, args, train_rows, sets, timings) -> dict:
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import get_peft_config

    from hrpo.prompts import add_prompt_column
    from hrpo.rewards import make_reward_funcs, reward_weights
    from hrpo.trainer import HRPOTrainer

    out_dir = args.out / f"{name}-seed{seed}"
    overrides = ["--output_dir", str(out_dir), "--hybrid", str(hybrid).lower(), "--seed", str(seed)]
    overrides += ["--model_name_or_path", str(args.model), "--save_strategy", "no", "--report_to", "none"]
    overrides += ["--log_completions", "false", "--disable_tqdm", "true", "--use_cpu", "true"]
    if args.steps is not None:
        overrides += ["--max_steps", str(args.steps)]
    _, config, model_args = parse_recipe(args.recipe, overrides)
    funcs = make_reward_funcs("gsm8k", delimiter=config.delimiter)
    if args.shaping_weight > 0:  # default off; logged separately as rewards/format_shaping_reward/mean
        from hrpo.shaping import make_format_shaping_reward

        funcs.append(make_format_shaping_reward(args.shaping_weight, delimiter=config.delimiter))
    config.reward_weights = reward_weights(funcs)
    tokenizer = AutoTokenizer.from_pretrained(args.model)
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_pretrained(args.model, dtype=torch.float32)
    trainer = HRPOTrainer(
        model=model,
        reward_funcs=funcs,
        args=config,
        train_dataset=Dataset.from_list(add_prompt_column(train_rows, delimiter=config.delimiter)),
        processing_class=tokenizer,
        peft_config=get_peft_config(model_args),
    )
    start = time.perf_counter()
    trainer.train()
    seconds = time.perf_counter() - start
    timings.setdefault("train_step_s", []).append(seconds / config.max_steps)
    print(
        f"[{name} seed {seed}] trained {config.max_steps} steps in {seconds / 60:.1f} min "
        f"({seconds / config.max_steps:.0f} s/step)",
        flush=True,
    )
    history = [h for h in trainer.state.log_history if "reward" in h]
    evals = eval_sets(
        trainer.model, tokenizer, trainer.gate, hybrid, sets, args, timings, f"{name} seed {seed}"
    )
    result = {
        "hybrid": hybrid,
        "seed": seed,
        "steps": config.max_steps,
        "train_seconds": seconds,
        "history": history,
        "eval": evals,
    }
    del trainer, model
    return result, config


def compare(base: dict, runs: dict[str, list[dict]], sets: list[str], args) -> dict:
    """Paired bootstrap CIs: each method minus base, and HRPO minus GRPO (item scores averaged over seeds)."""
    import numpy as np

    from hrpo.stats import paired_bootstrap, proportion

    def item_mean(method: str, name: str, key: str) -> np.ndarray:
        return np.mean([np.asarray(r["eval"][name]["scores"][key]) for r in runs[method]], axis=0)

    table = {}
    for name in sets:
        for key in ("reward", "correct"):
            b = np.asarray(base[name]["scores"][key])
            entry = {"base": proportion(b).to_dict()}
            for method in runs:
                m = item_mean(method, name, key)
                entry[method] = {"mean": float(m.mean())}
                if len(runs[method]) == 1:
                    entry[method].update(proportion(m).to_dict())
                entry[f"{method}-base"] = paired_bootstrap(
                    m, b, args.resamples, seed=args.bootstrap_seed
                ).to_dict()
            if "HRPO" in runs and "GRPO" in runs:
                entry["HRPO-GRPO"] = paired_bootstrap(
                    item_mean("HRPO", name, key),
                    item_mean("GRPO", name, key),
                    args.resamples,
                    seed=args.bootstrap_seed,
                ).to_dict()
            table[f"{name}/{key}"] = entry
    return table


def plot(runs: dict[str, list[dict]], path: Path, title: str) -> None:
    """The CURVES panels of every method and seed, drawn by :func:`hrpo.plotting.plot_curves` (``hrpo plot``)."""
    from hrpo.plotting import Panel, plot_curves, run_curves

    colors = {"HRPO": "tab:red", "GRPO": "tab:blue"}
    panels = [Panel(key, label, keys=(key,)) for key, label in CURVES]
    curves = [
        run_curves(
            res["history"],
            f"{method} seed {res['seed']}",
            panels,
            color=colors.get(method),
            alpha=1.0 if k == 0 else 0.5,
        )
        for method, results in runs.items()
        for k, res in enumerate(results)
    ]
    plot_curves(curves, path, panels, title=title)


def gsm8k_rows(n: int, data_dir: Path | None) -> list[dict]:
    """The first ``n`` GSM8K test items, from ``data_dir`` (layout of ../shared/data) or the offline asset."""
    from hrpo import assets
    from hrpo.data import load_benchmark

    if data_dir is not None and (data_dir / "gsm8k" / "test.jsonl").exists():
        return load_benchmark("gsm8k", "test", data_dir=data_dir)[:n]
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "gsm8k").mkdir()
        shutil.copy(assets.gsm8k_test_path(), Path(tmp) / "gsm8k" / "test.jsonl")
        return load_benchmark("gsm8k", "test", data_dir=tmp)[:n]


def fmt_p(p: dict) -> str:
    return f"{p['rate']:.3f} [{p['low']:.3f}, {p['high']:.3f}]"


def fmt_d(d: dict) -> str:
    return f"{d['estimate']:+.3f} [{d['low']:+.3f}, {d['high']:+.3f}]"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--recipe", type=Path, default=DEFAULT_RECIPE, help="training recipe (YAML)")
    parser.add_argument(
        "--mix", default=DEFAULT_MIX, help="arithmetic levels trained and held out (e.g. 0, 0+1)"
    )
    parser.add_argument(
        "--steps", type=int, default=None, help="optimizer steps per method (default: recipe)"
    )
    parser.add_argument("--seeds", default="0", help="comma-separated training seeds (both methods per seed)")
    parser.add_argument(
        "--methods",
        default="HRPO,GRPO",
        help="subset of HRPO,GRPO (none: evaluate the base only, a part run for --merge)",
    )
    parser.add_argument(
        "--test_items", type=int, default=FULL["test_items"], help="held-out problems (>= 200)"
    )
    parser.add_argument("--gsm8k_items", type=int, default=FULL["gsm8k_items"], help="GSM8K test items")
    parser.add_argument(
        "--max_new_tokens", type=int, default=None, help="eval cap, arithmetic (default: recipe)"
    )
    parser.add_argument("--gsm8k_max_new_tokens", type=int, default=256, help="eval cap, GSM8K")
    parser.add_argument("--eval_batch", type=int, default=32, help="rows per greedy decode call")
    parser.add_argument("--data_seed", type=int, default=0, help="seed of the generated train/test problems")
    parser.add_argument("--data_dir", type=Path, default=REPO.parent / "shared" / "data", help="GSM8K folder")
    parser.add_argument("--resamples", type=int, default=10_000, help="bootstrap resamples")
    parser.add_argument("--bootstrap_seed", type=int, default=0)
    parser.add_argument(
        "--shaping_weight",
        type=float,
        default=0.0,
        help="weight of hrpo.shaping's format-shaping reward in training (0 = off: the paper's reward only); "
        "held-out metrics are always the paper's reward",
    )
    parser.add_argument("--threads", type=int, default=2, help="torch threads (use 1 on a busy machine)")
    parser.add_argument(
        "--skip_base",
        action="store_true",
        help="do not evaluate the base model (for a part run whose base comes from another part; see --merge)",
    )
    parser.add_argument(
        "--merge",
        type=Path,
        nargs="+",
        default=None,
        help="combine the learning.json files of part runs (e.g. --methods HRPO in one process and --methods "
        "GRPO --skip_base in another, 1 thread each: both cores busy, no OpenMP contention) into one report in "
        "--out; trains nothing",
    )
    parser.add_argument("--out", type=Path, default=REPO / "benchmark" / "results" / "learning")
    args = parser.parse_args(argv)
    if args.merge:
        return merge(args)
    torch.set_num_threads(args.threads)
    args.out.mkdir(parents=True, exist_ok=True)
    wall_start = time.perf_counter()
    load_before = os.getloadavg()

    from transformers import AutoModelForCausalLM, AutoTokenizer

    from hrpo import assets
    from hrpo.data.arithmetic import arithmetic_rows

    args.model = assets.smollm2_path()
    _, recipe, _ = parse_recipe(args.recipe, ["--output_dir", str(args.out), "--use_cpu", "true"])
    steps = args.steps if args.steps is not None else recipe.max_steps
    prompts_per_step = (
        recipe.per_device_train_batch_size * recipe.gradient_accumulation_steps // recipe.num_generations
    )
    level = None if args.mix == "default" else args.mix.replace("+", ",")
    train_rows = arithmetic_rows(steps * prompts_per_step, "train", seed=args.data_seed, level=level)
    sets = {
        "arithmetic": (
            arithmetic_rows(args.test_items, "test", seed=args.data_seed, level=level),
            args.max_new_tokens or recipe.max_completion_length,
        ),
        "gsm8k": (gsm8k_rows(args.gsm8k_items, args.data_dir), args.gsm8k_max_new_tokens),
    }
    print(
        f"mix {args.mix}: {len(train_rows)} train prompts ({steps} steps x {prompts_per_step} x G="
        f"{recipe.num_generations}), {len(sets['arithmetic'][0])} held-out, {len(sets['gsm8k'][0])} GSM8K; "
        f"threads {args.threads}, load {load_before}",
        flush=True,
    )
    timings: dict[str, list[float]] = {}
    tokenizer = AutoTokenizer.from_pretrained(args.model)
    base_model = AutoModelForCausalLM.from_pretrained(args.model, dtype=torch.float32)
    base = (
        None if args.skip_base else eval_sets(base_model, tokenizer, None, False, sets, args, timings, "base")
    )
    del base_model

    runs: dict[str, list[dict]] = {}
    seeds = [int(s) for s in args.seeds.split(",")]
    methods = [m for m in ("HRPO", "GRPO") if m in args.methods.split(",")]
    for seed in seeds:
        for method in methods:
            result, _ = train_method(method, method == "HRPO", seed, args, train_rows, sets, timings)
            runs.setdefault(method, []).append(result)

    wall = time.perf_counter() - wall_start
    payload = {
        "args": {k: str(v) for k, v in vars(args).items()},
        "recipe": {k: str(getattr(recipe, k)) for k in RECIPE_KEYS},
        "steps": steps,
        "prompts_per_step": prompts_per_step,
        "num_generations": recipe.num_generations,
        "full_steps": recipe.max_steps,
        "load_before": load_before,
        "load_after": os.getloadavg(),
        "wall_seconds": wall,
        "timings": timings,
        "base": base,
        "runs": runs,
    }
    (args.out / "learning.json").write_text(
        json.dumps(payload, indent=1)
    )  # first: nothing lost if report fails
    if base is None or not runs:  # a part run (--skip_base, or --methods none): report via --merge
        print(
            f"part run done in {wall / 60:.1f} min; wrote {args.out / 'learning.json'} (combine with --merge)"
        )
        return 0
    report(payload, args)
    return 0


def merge(args) -> int:
    """One report from part runs: the base of the part that has it, the runs of all, wall = the longest part."""
    parts = [json.loads(Path(p).read_text()) for p in args.merge]
    bases = [p["base"] for p in parts if p["base"] is not None]
    if len(bases) != 1:
        raise SystemExit(f"--merge needs exactly one part with a base evaluation, got {len(bases)}")
    payload = dict(next(p for p in parts if p["base"] is not None))
    payload["runs"] = {}
    payload["timings"] = {}
    for part in parts:
        if part["steps"] != payload["steps"] or part["recipe"] != payload["recipe"]:
            raise SystemExit(
                f"--merge: parts differ in steps or recipe ({part['steps']} vs {payload['steps']})"
            )
        for method, results in part["runs"].items():
            payload["runs"].setdefault(method, []).extend(results)
        for key, values in part["timings"].items():
            payload["timings"].setdefault(key, []).extend(values)
    payload["parts"] = [str(p) for p in args.merge]
    payload["part_args"] = [p["args"] for p in parts]  # e.g. --shaping_weight of the training parts
    if len({p["args"].get("shaping_weight") for p in parts if p["runs"]}) > 1:
        raise SystemExit("--merge: the training parts differ in --shaping_weight")
    trained = next((p for p in parts if p["runs"]), None)
    if trained is not None:  # the report's args: the training parts' (the base evaluation ignores shaping)
        payload["args"] = {**payload["args"], "shaping_weight": trained["args"].get("shaping_weight")}
    payload["wall_seconds"] = max(p["wall_seconds"] for p in parts)
    payload["load_before"] = [p["load_before"] for p in parts]
    payload["load_after"] = [p["load_after"] for p in parts]
    args.out.mkdir(parents=True, exist_ok=True)
    report(payload, args)
    return 0


def report(payload: dict, args) -> None:
    """Comparison table (paired bootstrap), full-run estimate, JSON and PNG in ``args.out``."""
    base, runs, timings = payload["base"], payload["runs"], payload["timings"]
    steps, prompts_per_step, full_steps = payload["steps"], payload["prompts_per_step"], payload["full_steps"]
    sets = list(base)
    comparison = compare(base, runs, sets, args)
    wall = payload["wall_seconds"]
    # Estimate of the full default run from the measured per-step and per-item times (same caps and batch).
    per = {k: sum(v) / len(v) for k, v in timings.items()}
    n_seeds = max(len(r) for r in runs.values())
    n_models = 1 + sum(len(r) for r in runs.values())
    estimate = (
        per.get("train_step_s", 0.0) * full_steps * sum(len(r) for r in runs.values())
        + per["eval_arithmetic_per_item_s"] * FULL["test_items"] * n_models
        + per["eval_gsm8k_per_item_s"] * FULL["gsm8k_items"] * n_models
    )
    payload = {**payload, "estimated_full_run_seconds": estimate, "comparison": comparison}
    (args.out / "learning.json").write_text(json.dumps(payload, indent=1))
    seeds = ",".join(sorted({str(r["seed"]) for results in runs.values() for r in results}))
    title = (
        f"SmolLM2-135M-Instruct, arithmetic mix {payload['args']['mix']}: HRPO vs GRPO, {steps} steps x "
        f"{prompts_per_step} prompts x G={payload['num_generations']}, seeds {seeds}"
    )
    plot(runs, args.out / "learning.png", title)

    print(
        "\n| eval set / metric | base | " + " | ".join(f"{m} | {m} - base" for m in runs) + " | HRPO - GRPO |"
    )
    print("|---|---|" + "---|---|" * len(runs) + "---|")
    for key, entry in comparison.items():
        cells = [fmt_p(entry["base"])]
        for m in runs:
            cells.append(fmt_p(entry[m]) if "rate" in entry[m] else f"{entry[m]['mean']:.3f}")
            cells.append(fmt_d(entry[f"{m}-base"]))
        cells.append(fmt_d(entry["HRPO-GRPO"]) if "HRPO-GRPO" in entry else "-")
        print(f"| {key} | " + " | ".join(cells) + " |")
    for method, results in runs.items():
        for res in results:
            rewards = [h["rewards/gsm8k_reward/mean"] for h in res["history"]]
            k = min(5, len(rewards))
            print(
                f"{method} seed {res['seed']}: training reward (paper's) first {k} steps {sum(rewards[:k]) / k:.3f}, "
                f"last {k} {sum(rewards[-k:]) / k:.3f}; zero-std groups "
                f"{sum(h.get('frac_reward_zero_std', 0.0) for h in res['history']) / len(rewards):.2f} on average"
            )
    print(
        f"\nwall time {wall / 60:.1f} min (load average before {payload['load_before']}, "
        f"after {payload['load_after']})"
    )
    print(
        f"measured: {per.get('train_step_s', 0.0):.1f} s per training step, "
        f"{per['eval_arithmetic_per_item_s']:.2f} s per held-out problem, "
        f"{per['eval_gsm8k_per_item_s']:.2f} s per GSM8K item"
    )
    print(
        f"estimated wall time of the full run ({full_steps} steps x {len(runs)} methods x {n_seeds} seed(s), "
        f"{FULL['test_items']} + {FULL['gsm8k_items']} eval items x {n_models} models), one process at this "
        f"machine's speed: {estimate / 60:.0f} min"
    )
    print(f"wrote {args.out / 'learning.json'} and {args.out / 'learning.png'}")


if __name__ == "__main__":
    raise SystemExit(main())
