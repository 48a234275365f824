"""Scorer speed (issue 11): time 10,000 GSM8K and 1,000 MATH scorings with ``hrpo.rewards.score``.

Completions are built from real test rows (``--data_dir``; GSM8K test, MATH test): the reference solution as reasoning, then
``#### `` and one of several tails in turn -- the gold as written, an equivalent spelling, a wrong value, a
hedge, trailing prose -- so the string rules, the hedge check and (for MATH) math-verify all run. Each
configuration is timed ``--repeats`` times; the median and the spread (min-max) are printed per call. MATH with
math-verify is timed with its answer cache cleared before every repeat (the cold cost; RL groups that repeat
an answer hit the cache) and with the worker process already started (its one-off start-up is printed
separately). The per-completion rollout time of ``benchmark/train_speed.json`` (if present) gives the ratio
that matters: a reward call must cost far less than generating the completion it scores.

    python benchmark/scorer_speed.py --data_dir ../shared/data --repeats 5
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

from hrpo.data import load_benchmark
from hrpo.rewards import score
from hrpo.scoring import gsm8k, verify

HERE = Path(__file__).resolve().parent


def gsm8k_cases(rows: list[dict], n: int) -> list[tuple[str, str]]:
    out = []
    for i in range(n):
        row = rows[i % len(rows)]
        body = row["solution"].rsplit("####", 1)[0].strip()
        g = row["gold"]
        v = int(gsm8k.gold_value(g))
        tail = [
            f"{g}",
            f"${v:,}.00",
            f"{v + 1}",
            f"{v} or {v + 1}",
            f"{v}\nSo the answer is {v} after {i % 7 + 2} steps.",
            f"The answer is **{v}** dollars.",
        ][i % 6]
        out.append((f"{body}\n#### {tail}", g))
    return out


def math_cases(rows: list[dict], n: int) -> list[tuple[str, str]]:
    out = []
    for i in range(n):
        row = rows[i % len(rows)]
        g = row["gold"]
        tail = [
            f"\\boxed{{{g}}}",
            f"${g}$",
            f"\\boxed{{{g}}} + 1",  # not equal: goes to math-verify
            "\\boxed{12345}",  # wrong: goes to math-verify
            f"{g} or 12345",  # hedge: no math-verify
        ][i % 5]
        out.append((f"{row['solution']}\n#### {tail}", g))
    return out


def time_it(fn: Callable[[], None], repeats: int, before: Callable[[], None] | None = None) -> list[float]:
    out = []
    for _ in range(repeats):
        if before:
            before()
        start = time.perf_counter()
        fn()
        out.append(time.perf_counter() - start)
    return out


def rollout_seconds_per_completion() -> dict[str, float]:
    """Median hybrid-rollout wall time per completion from ``train_speed.json`` (HRPOTrainer, mode b)."""
    path = HERE / "train_speed.json"
    if not path.exists():
        return {}
    data = json.loads(path.read_text())
    per_step = data["args"]["prompts_per_step"] * data["args"]["num_generations"]
    out = {}
    for model, modes in data["results"].items():
        if "b" in modes:
            out[model] = statistics.median(s["rollout"] for s in modes["b"]) / per_step
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data_dir", default=os.environ.get("HRPO_DATA_DIR", "../shared/data"))
    ap.add_argument("--gsm8k", type=int, default=10_000)
    ap.add_argument("--math", type=int, default=1_000)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--json", default=None, help="also write the raw timings here")
    args = ap.parse_args()

    print("load:", subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip())
    g_cases = gsm8k_cases(load_benchmark("gsm8k", "test", data_dir=args.data_dir), args.gsm8k)
    # the full MATH test set (5,000), so that 1,000 completions are all different (no math-verify cache hits)
    m_cases = math_cases(load_benchmark("math", "test", data_dir=args.data_dir), args.math)

    start = time.perf_counter()
    verify.equal("1", "1", timeout=120)  # start the math-verify worker (one-off, per process)
    startup = time.perf_counter() - start

    def run(cases: list[tuple[str, str]], task: str, **kw: object) -> Callable[[], None]:
        return lambda: [score(c, g, task, **kw) for c, g in cases] and None

    configs = [
        ("gsm8k fixed", len(g_cases), run(g_cases, "gsm8k"), None),
        ("gsm8k original", len(g_cases), run(g_cases, "gsm8k", compat="original"), None),
        (
            "math fixed, math-verify on, cold cache",
            len(m_cases),
            run(m_cases, "math"),
            verify._VERIFIER._cache.clear,
        ),
        ("math fixed, math-verify on, warm cache", len(m_cases), run(m_cases, "math"), None),
        ("math fixed, math-verify off", len(m_cases), run(m_cases, "math", math_verify=False), None),
        ("math original", len(m_cases), run(m_cases, "math", compat="original"), None),
    ]
    rollout = rollout_seconds_per_completion()
    results = {}
    print(f"math-verify worker start-up: {startup:.2f} s (once per process)")
    print(
        f"{'configuration':42s} {'calls':>6s} {'total s (median)':>17s} {'us/call median':>15s} {'spread us':>17s}"
    )
    for name, n, fn, before in configs:
        times = time_it(fn, args.repeats, before)
        med = statistics.median(times)
        results[name] = {"calls": n, "seconds": times}
        lo, hi = min(times) / n * 1e6, max(times) / n * 1e6
        print(f"{name:42s} {n:6d} {med:17.3f} {med / n * 1e6:15.1f} {f'{lo:.1f}-{hi:.1f}':>17s}")
    print(f"math-verify timeouts: {verify._VERIFIER.timeouts}")
    for model, sec in rollout.items():
        for name in ("gsm8k fixed", "math fixed, math-verify on, cold cache"):
            per_call = statistics.median(results[name]["seconds"]) / results[name]["calls"]
            print(f"{name} / {model} hybrid rollout per completion ({sec:.3f} s): {per_call / sec:.2e}")
    if args.json:
        Path(args.json).write_text(
            json.dumps(
                {"args": vars(args), "startup_s": startup, "results": results, "rollout": rollout}, indent=2
            )
        )


if __name__ == "__main__":
    main()
