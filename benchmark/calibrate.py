"""Calibrate the arithmetic task to a model: how often does the BASE model earn the paper's reward?

GRPO/HRPO learn only from groups whose G completions do not all get the same reward. This script samples, for
each candidate problem mix (difficulty levels of :mod:`hrpo.data.arithmetic`), G completions per prompt from
SmolLM2-135M-Instruct (:mod:`hrpo.assets`) with the HRPO system prompt (:mod:`hrpo.prompts`), tau 0.5 / top-k 50
sampling through the decode loop the trainer uses (:func:`hrpo.generation.hybrid_generate`; hybrid off = the base
model; ``--hybrid`` feeds an untrained gate's mix, ~ the base at init), and reports per mix, with 95 % Wilson
intervals: the sampled pass rate (reward = correct AND exactly one ``####``, :func:`hrpo.rewards.score`), the
correct rate (format ignored), the format rate, the hedged rate, the share of groups with nonzero reward std,
the truncation rate (completions that hit the token cap) and the mean completion length; plus the wall time.

    python benchmark/calibrate.py --mixes 0,1,2,3,default --prompts 24 --group 8 --max_new_tokens 128 \\
        --json benchmark/results/calibration.json

Problems come from the TRAIN split (this calibrates the training mix; the held-out split stays unseen).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")

import torch


def sample_mix(model, tokenizer, gate, rows, args) -> dict:
    """G sampled completions for each row; per-completion scores and per-group reward spread."""
    from hrpo.generation import STOP_LENGTH, DecodeConfig, hybrid_generate
    from hrpo.latent import SamplingConfig
    from hrpo.prompts import build_messages, render_prompt
    from hrpo.rewards import score

    config = DecodeConfig(
        max_new_tokens=args.max_new_tokens,
        sampling=SamplingConfig(temperature=args.temperature, top_k=args.top_k),
        hybrid=args.hybrid,
        record_logprobs=False,
    )
    items = [
        (i, g) for i in range(len(rows)) for g in range(args.group)
    ]  # prompt-major: groups stay together
    out = {k: [] for k in ("reward", "correct", "format", "hedged", "truncated", "length")}
    texts = []
    for start in range(0, len(items), args.batch):
        chunk = items[start : start + args.batch]
        prompts = [render_prompt(build_messages(rows[i]), tokenizer) for i, _ in chunk]
        enc = tokenizer(
            prompts, return_tensors="pt", padding=True, padding_side="left", add_special_tokens=False
        )
        seeds = [args.seed * 1_000_003 + 1000 * i + g for i, g in chunk]
        rollout = hybrid_generate(
            model, enc.input_ids, enc.attention_mask, gate, config, tokenizer, row_seeds=seeds
        )
        lengths = rollout.completion_mask.sum(1).tolist()
        for (i, _), ids, n, stop in zip(
            chunk, rollout.completion_ids, lengths, rollout.stop_reason.tolist(), strict=True
        ):
            text = tokenizer.decode(ids[:n], skip_special_tokens=True)
            s = score(text, rows[i]["gold"], "gsm8k")
            out["reward"].append(s.reward)
            out["correct"].append(float(s.correct))
            out["format"].append(float(s.format_ok))
            out["hedged"].append(float(s.hedged))
            out["truncated"].append(float(stop == STOP_LENGTH))
            out["length"].append(int(n))
            texts.append(text)
    groups = [out["reward"][k : k + args.group] for k in range(0, len(items), args.group)]
    out["group_signal"] = [float(len(set(g)) > 1) for g in groups]
    out["examples"] = texts[: args.group]  # one group, for eyeballing
    return out


def summarize(name: str, raw: dict, seconds: float) -> dict:
    from hrpo.stats import proportion

    row = {"mix": name, "completions": len(raw["reward"]), "groups": len(raw["group_signal"])}
    for key in ("reward", "correct", "format", "hedged", "truncated", "group_signal"):
        row[key] = proportion(raw[key]).to_dict()
    lengths = raw["length"]
    row["length_mean"] = statistics.fmean(lengths)
    row["length_sem"] = statistics.stdev(lengths) / len(lengths) ** 0.5 if len(lengths) > 1 else 0.0
    row["seconds"] = seconds
    return row


def fmt(p: dict) -> str:
    return f"{p['rate']:.3f} [{p['low']:.2f}, {p['high']:.2f}]"


def print_table(rows: list[dict]) -> None:
    print(
        "\n| mix | n (groups) | pass rate (reward) | correct (format ignored) | format (one ####) | hedged | "
        "groups with reward std > 0 | truncated at cap | mean length (tokens) | wall s |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['mix']} | {r['completions']} ({r['groups']}) | {fmt(r['reward'])} | {fmt(r['correct'])} | "
            f"{fmt(r['format'])} | {fmt(r['hedged'])} | {fmt(r['group_signal'])} | {fmt(r['truncated'])} | "
            f"{r['length_mean']:.1f} ± {r['length_sem']:.1f} | {r['seconds']:.0f} |"
        )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--mixes",
        default="0,1,2,3,default",
        help="comma-separated mixes; a mix is a level (0-3), levels joined by '+' (e.g. 0+1), or 'default'",
    )
    parser.add_argument("--prompts", type=int, default=24, help="prompts per mix (train split)")
    parser.add_argument("--group", type=int, default=8, help="completions per prompt (G)")
    parser.add_argument("--max_new_tokens", type=int, default=128, help="completion token cap")
    parser.add_argument("--temperature", type=float, default=0.5, help="tau (sampling and latent)")
    parser.add_argument("--top_k", type=int, default=50, help="top-k of the sampling distribution")
    parser.add_argument("--hybrid", action="store_true", help="hybrid decoding with an untrained gate")
    parser.add_argument("--r_min", type=float, default=0.99, help="gate init (with --hybrid)")
    parser.add_argument("--batch", type=int, default=32, help="completions per decode call")
    parser.add_argument("--seed", type=int, default=0, help="seed of the problems and of the sampling")
    parser.add_argument(
        "--threads", type=int, default=1, help="torch threads (1: faster than 2 on a shared 2-core machine)"
    )
    parser.add_argument("--json", type=Path, default=None, help="write all numbers here")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)

    from transformers import AutoModelForCausalLM, AutoTokenizer

    from hrpo import assets
    from hrpo.data.arithmetic import arithmetic_rows
    from hrpo.gate import GateConfig, ThinkingGate

    path = assets.smollm2_path()
    tokenizer = AutoTokenizer.from_pretrained(path)
    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32).eval()
    gate = None
    if args.hybrid:
        gate = ThinkingGate(
            GateConfig(model.config.hidden_size, r_min=args.r_min), torch.Generator().manual_seed(args.seed)
        )
    load_before = os.getloadavg()
    print(f"load average before: {load_before}; threads {args.threads}; hybrid {args.hybrid}", flush=True)
    results, raws = [], {}
    for name in args.mixes.split(","):
        level = None if name == "default" else name.replace("+", ",")
        rows = arithmetic_rows(args.prompts, "train", seed=args.seed, level=level)
        start = time.perf_counter()
        raw = sample_mix(model, tokenizer, gate, rows, args)
        seconds = time.perf_counter() - start
        results.append(summarize(name, raw, seconds))
        raws[name] = raw
        r = results[-1]
        print(
            f"[{name}] pass {fmt(r['reward'])} format {fmt(r['format'])} signal {fmt(r['group_signal'])} "
            f"truncated {fmt(r['truncated'])} len {r['length_mean']:.0f} ({seconds:.0f} s; load {os.getloadavg()[0]:.1f})",
            flush=True,
        )
        print("   e.g.", repr(raw["examples"][0][:300]), flush=True)
    load_after = os.getloadavg()
    print_table(results)
    print(f"\nload average before {load_before}, after {load_after}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        payload = {
            "args": {k: str(v) for k, v in vars(args).items()},
            "load_before": load_before,
            "load_after": load_after,
            "results": results,
            "examples": {k: v["examples"] for k, v in raws.items()},
        }
        args.json.write_text(json.dumps(payload, indent=2))
        print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
