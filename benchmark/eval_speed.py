"""Evaluation speed (issue 5): stock lm-eval ``hf`` vs the ``hrpo`` model (latent on), same tasks, model, batch.

Commands (from the root of a clone, with the README's ``.venv``; task data from ``../shared/data``; fp32)::

    . .venv/bin/activate && export HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 OMP_NUM_THREADS=2
    # issue 14's target: SmolLM2, >= 32 items, 256 new tokens
    python benchmark/eval_speed.py --models smollm2 --tasks hrpo_gsm8k --limit 32 --batch_size 32 \
        --max_gen_toks 256 --reps 2 --json eval_speed.json
    # issue 5's smaller run, tiny model included
    python benchmark/eval_speed.py --models tiny,smollm2 --tasks hrpo_gsm8k --limit 8 --batch_size 8 \
        --max_gen_toks 32 --reps 2 --json eval_speed.json

Protocol: each model is loaded once per adapter (``HFLM`` and ``HRPOLM`` from the same folder, fp32, CPU);
``hrpo`` gets a gate (the tiny model: a strong gate with a large latent share; SmolLM2: a freshly initialised
gate), latent on, greedy tokens with the tau=0.5 top-50 latent. Each repeat runs ``simple_evaluate`` (chat
template, local data from ``../shared/data``, ``max_gen_toks`` override) once per adapter, interleaved, after one
untimed warm-up call each. Reported per adapter: the median wall time of ``simple_evaluate`` and the decoded
positions per second (batch rows x decode steps of every ``_model_generate`` call, counted by wrapping it),
per wall second and per CPU second of the process (``time.process_time``; steadier when other jobs share the
machine). The ratios are hrpo / hf of decoded positions per second and of items per second, also as the
median of the per-repeat ratios (each interleaved pair ran under the same machine load). Items/s is the
throughput a user sees; decoded positions count the padded ``B x steps`` of every call (rows that ``hrpo``
dropped from the batch after stopping still count), and hybrid and plain decoding may stop at different points.
Each run also records the load average and the CPU cores other processes used meanwhile (``/proc/stat``).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))
DATA_DIR = REPO_ROOT.parent / "shared" / "data"


def tiny_model_dir(root: Path) -> tuple[Path, int]:
    """The tests' tiny Qwen2 (hidden 64, 2 layers, full Qwen2.5 vocabulary) saved with Qwen's tokenizer."""
    from transformers import AutoTokenizer

    from hrpo import assets
    from hrpo.testing import save_tiny_qwen2

    tokenizer = AutoTokenizer.from_pretrained(assets.qwen2_tokenizer_path())
    return save_tiny_qwen2(root / "tiny", tokenizer), 64


def build_gate(name: str, hidden: int):
    from hrpo.gate import GateConfig, ThinkingGate
    from hrpo.testing import strong_gate

    if name == "tiny":
        return strong_gate(hidden)
    return ThinkingGate(GateConfig(hidden), torch.Generator().manual_seed(0))


def system_busy_seconds() -> float:
    """CPU seconds all processes have spent busy since boot (``/proc/stat``; 0.0 where unavailable)."""
    try:
        values = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    except (OSError, ValueError):
        return 0.0
    return (sum(values[:8]) - values[3] - values[4]) / os.sysconf("SC_CLK_TCK")


class PositionCounter:
    """Wraps ``_model_generate`` of one LM instance to count decoded positions (rows x steps)."""

    def __init__(self, lm: Any) -> None:
        self.positions = 0
        inner = lm._model_generate

        def counted(context, *args, **kwargs):
            out = inner(context, *args, **kwargs)
            self.positions += out.shape[0] * (out.shape[1] - context.shape[1])
            return out

        lm._model_generate = counted


def run_once(
    lm: Any, counter: PositionCounter, args: argparse.Namespace, task_manager: Any
) -> dict[str, float]:
    from lm_eval import simple_evaluate

    counter.positions = 0
    busy_start = system_busy_seconds()
    start, cpu_start = time.perf_counter(), time.process_time()
    result = simple_evaluate(
        model=lm,
        tasks=args.tasks.split(","),
        task_manager=task_manager,
        limit=args.limit,
        apply_chat_template=True,
        bootstrap_iters=0,
        gen_kwargs={"max_gen_toks": args.max_gen_toks},
    )
    wall, cpu = time.perf_counter() - start, time.process_time() - cpu_start
    items = sum(int(r.get("sample_len", 0)) for r in result["results"].values())
    foreign = max(0.0, system_busy_seconds() - busy_start - cpu) / wall
    return {
        "wall_s": wall,
        "cpu_s": cpu,
        "positions": counter.positions,
        "items": items,
        "other_cores": foreign,
        "load1": os.getloadavg()[0],
    }


def bench_model(name: str, args: argparse.Namespace, root: Path) -> dict[str, Any]:
    from lm_eval.models.huggingface import HFLM
    from lm_eval.tasks import TaskManager

    from hrpo import assets
    from hrpo.lm_eval_adapter import HRPOLM, base_hidden_size

    if name == "tiny":
        folder, hidden = tiny_model_dir(root)
    else:
        folder = assets.smollm2_path()
        hidden = base_hidden_size(str(folder))
    common = {"pretrained": str(folder), "dtype": "float32", "device": "cpu", "batch_size": args.batch_size}
    lms = {"hf": HFLM(**common), "hrpo": HRPOLM(gate=build_gate(name, hidden), **common)}
    counters = {key: PositionCounter(lm) for key, lm in lms.items()}
    tm = TaskManager(
        include_path=str(REPO_ROOT / "tasks"), include_defaults=False, metadata={"data_dir": str(DATA_DIR)}
    )
    warm = argparse.Namespace(**{**vars(args), "limit": 2, "max_gen_toks": 4})
    for key, lm in lms.items():
        run_once(lm, counters[key], warm, tm)
    runs: dict[str, list[dict[str, float]]] = {key: [] for key in lms}
    for rep in range(args.reps):
        for key, lm in lms.items():
            runs[key].append(run_once(lm, counters[key], args, tm))
            print(f"[{name}] rep {rep} {key}: {runs[key][-1]}", flush=True)
    summary: dict[str, Any] = {"model": name, "runs": runs}
    for key, rows in runs.items():
        summary[key] = {
            "wall_s_median": statistics.median(r["wall_s"] for r in rows),
            "pos_per_s_median": statistics.median(r["positions"] / r["wall_s"] for r in rows),
            "items_per_s_median": statistics.median(r["items"] / r["wall_s"] for r in rows),
            "pos_per_cpu_s_median": statistics.median(r["positions"] / r["cpu_s"] for r in rows),
            "positions": rows[0]["positions"],
        }
    summary["ratio_pos_per_s"] = summary["hrpo"]["pos_per_s_median"] / summary["hf"]["pos_per_s_median"]
    summary["ratio_items_per_s"] = summary["hrpo"]["items_per_s_median"] / summary["hf"]["items_per_s_median"]
    summary["ratio_pos_per_cpu_s"] = (
        summary["hrpo"]["pos_per_cpu_s_median"] / summary["hf"]["pos_per_cpu_s_median"]
    )
    # Repeats are interleaved, so each pair shares the machine's load of its moment: the median pair ratio.
    pairs = list(zip(runs["hf"], runs["hrpo"], strict=True))
    summary["ratio_paired_median"] = statistics.median(
        (b["positions"] / b["wall_s"]) / (a["positions"] / a["wall_s"]) for a, b in pairs
    )
    item_pairs = [(b["items"] / b["wall_s"]) / (a["items"] / a["wall_s"]) for a, b in pairs]
    summary["ratio_items_paired"] = {
        "median": statistics.median(item_pairs),
        "min": min(item_pairs),
        "max": max(item_pairs),
    }
    return summary


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", default="tiny,smollm2")
    parser.add_argument("--tasks", default="hrpo_gsm8k")
    parser.add_argument("--limit", type=int, default=16)
    parser.add_argument("--batch_size", type=int, default=8)
    parser.add_argument("--max_gen_toks", type=int, default=64)
    parser.add_argument("--reps", type=int, default=2)
    parser.add_argument("--json", help="write the summary here")
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "2")))
    import hrpo.lm_eval_adapter  # noqa: F401  (registers `hrpo`)

    summaries = []
    with tempfile.TemporaryDirectory() as tmp:
        os.environ["HF_DATASETS_CACHE"] = str(Path(tmp) / "datasets")
        for name in args.models.split(","):
            summaries.append(bench_model(name, args, Path(tmp)))
    header = f"{'model':10s} {'adapter':8s} {'wall s':>8s} {'pos/s':>8s} {'pos/cpu-s':>9s} {'items/s':>8s}"
    print(f"\n{header} {'positions':>9s}")
    for s in summaries:
        for key in ("hf", "hrpo"):
            r = s[key]
            print(
                f"{s['model']:10s} {key:8s} {r['wall_s_median']:8.1f} {r['pos_per_s_median']:8.1f} "
                f"{r['pos_per_cpu_s_median']:9.1f} {r['items_per_s_median']:8.3f} {r['positions']:9d}"
            )
        print(
            f"{s['model']:10s} ratio hrpo/hf: pos/s {s['ratio_pos_per_s']:.2f}, items/s {s['ratio_items_per_s']:.2f}, "
            f"pos/cpu-s {s['ratio_pos_per_cpu_s']:.2f}, paired median {s['ratio_paired_median']:.2f}; "
            f"items/s paired median {s['ratio_items_paired']['median']:.2f} "
            f"({s['ratio_items_paired']['min']:.2f}-{s['ratio_items_paired']['max']:.2f})"
        )
    if args.json:
        config = {k: v for k, v in vars(args).items() if k != "json"} | {"load_average": os.getloadavg()}
        Path(args.json).write_text(json.dumps({"config": config, "models": summaries}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
