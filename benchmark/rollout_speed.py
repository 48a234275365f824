"""Rollout speed (issue 2): HF ``generate`` vs our decode loop with hybrid off and on, same model, one run.

Commands (from the root of a clone, with the README's ``.venv``; fp32, 2 CPU threads as the anchors; GSM8K
questions are read from ``../shared/data/gsm8k/test.jsonl`` when present, else the packaged copy)::

    . .venv/bin/activate && export HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 OMP_NUM_THREADS=2
    # fixed length: every row decodes exactly new_tokens (hybrid on vs off in the same loop, vs HF generate)
    python benchmark/rollout_speed.py --models tiny,smollm2 --batches 8,32 --new_tokens 128 --reps 3 \
        --profile --json rollout_speed.json
    # realistic rollouts (issue 14): HRPO prompts, EOS on, 256 max tokens, B=32, T=0.5 sampling
    python benchmark/rollout_speed.py --realistic --models smollm2 --reps 3 --json rollout_realistic.json

The numbers in ``benchmark/README.md`` were taken on a shared, overloaded machine with ``--threads 1
--smollm2_reps 2`` (2 threads under foreign load wasted CPU in thread synchronisation); see that section.
``python benchmark/rollout_speed.py --report rollout_speed.json`` reprints the tables of a saved run.

Protocol (as the anchors, section 1 of ``../shared/docs/anchor_baselines.md``): prompts are the first B GSM8K
test questions through the model's chat template, left padded; every mode decodes exactly ``new_tokens`` tokens per row
(``generate`` gets ``min_new_tokens = max_new_tokens``, our loop gets ``eos_token_ids=()``); one short warm-up
call per mode; modes interleaved within each repeat; tokens/s = B * new_tokens / wall time of the whole call,
prefill included. Sampling at temperature 0.5 everywhere.

Modes:

* ``a``  -- ``model.generate(do_sample=True, temperature=0.5, top_k=0, top_p=1.0)``: full-softmax multinomial.
* ``b``  -- :func:`hrpo.generation.hybrid_generate` with ``hybrid=False`` and the default ``top_k=50``.
* ``b0`` -- the same with ``top_k=0`` (full softmax, inverse CDF): the sampler-for-sampler match of ``a``.
* ``c``  -- ``hybrid=True``, default :class:`hrpo.gate.ThinkingGate`, default latent ``top_k=50``.
* ``c0`` -- ``hybrid=True`` with ``top_k=0``: the dense latent ``(p @ E) / ||p||`` of the paper's Eq. 3.

Realistic mode (``--realistic``, issue 14): the first B GSM8K test questions as HRPO prompts (system prompt +
question through the chat template), EOS on, ``--realistic_tokens`` (256) max new tokens, sampling at T=0.5 with
top-k 50 in every mode, so rows stop where they stop. Modes (``--realistic_modes``): ``hf`` =
``model.generate(do_sample=True, temperature=0.5, top_k=50, top_p=1.0)`` with the same EOS ids; ``off`` / ``on``
= our loop, hybrid off / on (default compaction); ``on_keep`` = hybrid on without compaction
(``compact_fraction=None``); ``on@F`` = hybrid on with ``compact_fraction=F`` (the threshold sweep); ``on_dyn`` =
hybrid on with transformers' ``DynamicCache`` instead of the preallocated cache (``preallocate_cache=False``). Metric:
tokens kept per second = tokens up to and including each row's EOS (or the cap) / wall time of the call; row
steps forwarded are counted by wrapping the model's forward. Modes are interleaved in every repeat; the table
gives the median and the min-max spread, and per-repeat (paired) ratios.

``--profile`` adds, after the timed repeats, one instrumented call per loop mode that splits the time of a call
into the model forward and the helper functions ``hybrid_generate`` calls (wrapped by name; the code under test
is not changed). Those calls are not part of the timing table.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import platform
import statistics
import sys
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

REPO_ROOT = Path(__file__).resolve().parents[1]
GSM8K_TEST = REPO_ROOT.parent / "shared" / "data" / "gsm8k" / "test.jsonl"
TEMPERATURE = 0.5
ALL_MODES = ("a", "b", "b0", "c", "c0")
MODE_LABELS = {
    "a": "a  HF generate (full softmax, multinomial)",
    "b": "b  loop, hybrid off, top_k=50",
    "b0": "b0 loop, hybrid off, top_k=0",
    "c": "c  loop, hybrid on, top_k=50 latent",
    "c0": "c0 loop, hybrid on, top_k=0 dense latent",
}
# (numerator, denominator, target or None): ratios of median tokens/s.
RATIOS: tuple[tuple[str, str, float | None], ...] = (
    ("c", "a", 1.0),
    ("c", "b", 0.9),
    ("b", "a", None),
    ("b0", "a", None),
    ("c0", "a", None),
    ("c0", "b0", None),
    ("c0", "c", None),
)


@dataclass
class Bench:
    """A model with its tokenizer, gate and the names used in the report."""

    name: str
    model: torch.nn.Module
    tokenizer: Any
    gate: torch.nn.Module
    hidden_size: int
    vocab_size: int
    reps: int


@dataclass
class Timing:
    """Wall times of one (model, batch, mode) cell and what the calls produced."""

    seconds: list[float] = field(default_factory=list)
    cpu_seconds: list[float] = field(default_factory=list)
    foreign_cores: list[float] = field(default_factory=list)
    new_tokens: int = 0
    thinking_share: float | None = None
    latent_bytes_per_token: int | None = None


def system_busy_seconds() -> float:
    """CPU seconds all processes have spent busy since boot (``/proc/stat``; 0.0 where unavailable)."""
    try:
        fields_ = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    except (OSError, ValueError):
        return 0.0
    idle = fields_[3] + fields_[4]  # idle + iowait
    return (sum(fields_[:8]) - idle) / os.sysconf("SC_CLK_TCK")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Tokens/s of HF generate vs hrpo's decode loop (hybrid off/on); see the module docstring.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument(
        "--models",
        default="tiny,smollm2",
        help="comma-separated: 'tiny' (seeded 2-layer Qwen2, hidden 64, real 151,936-token Qwen vocab, "
        "hrpo.testing.build_tiny_model) and/or 'smollm2' (SmolLM2-135M-Instruct, fp32)",
    )
    parser.add_argument("--batches", default="8,32", help="comma-separated batch sizes (prompts per call)")
    parser.add_argument(
        "--new_tokens", type=int, default=128, help="tokens decoded per row in every mode (no early stop)"
    )
    parser.add_argument(
        "--reps", type=int, default=3, help="timed repeats per cell (median and min reported)"
    )
    parser.add_argument(
        "--smollm2_reps", type=int, default=None, help="override --reps for SmolLM2 only (it is slow)"
    )
    parser.add_argument("--modes", default=",".join(ALL_MODES), help="comma-separated subset of a,b,b0,c,c0")
    parser.add_argument(
        "--warmup_tokens", type=int, default=4, help="new tokens of the warm-up call per mode"
    )
    parser.add_argument(
        "--threads", type=int, default=2, help="torch intra-op threads (torch.set_num_threads)"
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of the sampling RNG and the gate init")
    parser.add_argument(
        "--profile",
        action="store_true",
        help="after timing, one instrumented call per loop mode: per-step ms in forward, sampler, latent, ...",
    )
    parser.add_argument(
        "--realistic",
        action="store_true",
        help="realistic rollouts instead: HRPO prompts, EOS on, sampling; tokens kept per second",
    )
    parser.add_argument("--realistic_batch", type=int, default=32, help="prompts per call in --realistic")
    parser.add_argument("--realistic_tokens", type=int, default=256, help="max new tokens in --realistic")
    parser.add_argument(
        "--realistic_modes",
        default="hf,off,on,on_keep",
        help="comma-separated: hf, off, on, on_keep, on_dyn (hybrid on, DynamicCache), on@F (hybrid on with "
        "compact_fraction=F)",
    )
    parser.add_argument(
        "--bucketing",
        action="store_true",
        help="with --realistic: after the timing, score one hybrid rollout with the padded replay forward and "
        "with length buckets (hrpo.bucketing), interleaved",
    )
    parser.add_argument(
        "--bucket_rows", default="8", help="comma-separated rows per micro-batch for --bucketing"
    )
    parser.add_argument("--json", dest="json_out", default=None, help="write the raw numbers to this file")
    parser.add_argument(
        "--report",
        default=None,
        metavar="JSON",
        help="measure nothing: print the tables of a JSON file written by an earlier --json run",
    )
    args = parser.parse_args(argv)
    args.model_list = [m.strip() for m in args.models.split(",") if m.strip()]
    args.batch_list = [int(b) for b in args.batches.split(",") if b.strip()]
    args.mode_list = [m.strip() for m in args.modes.split(",") if m.strip()]
    for name in args.model_list:
        if name not in ("tiny", "smollm2"):
            parser.error(f"unknown model {name!r}")
    for mode in args.mode_list:
        if mode not in ALL_MODES:
            parser.error(f"unknown mode {mode!r}")
    args.realistic_list = [m.strip() for m in args.realistic_modes.split(",") if m.strip()]
    for mode in args.realistic_list:
        if mode not in ("hf", "off", "on", "on_keep", "on_dyn") and not mode.startswith("on@"):
            parser.error(f"unknown realistic mode {mode!r}")
    if args.new_tokens < 1 or args.reps < 1:
        parser.error("--new_tokens and --reps must be >= 1")
    return args


def gsm8k_questions(count: int) -> list[str]:
    """The first ``count`` GSM8K test questions (shared data folder, else the packaged copy)."""
    path = GSM8K_TEST
    if not path.exists():
        from hrpo.assets import gsm8k_test_path

        path = gsm8k_test_path()
    questions: list[str] = []
    with path.open() as handle:
        for line in handle:
            questions.append(json.loads(line)["question"])
            if len(questions) == count:
                break
    return questions


def chat_batch(tokenizer: Any, questions: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
    """Questions as user turns through the chat template, left padded: ``(input_ids, attention_mask)``."""
    texts = [
        tokenizer.apply_chat_template(
            [{"role": "user", "content": q}], tokenize=False, add_generation_prompt=True
        )
        for q in questions
    ]
    tokenizer.padding_side = "left"
    enc = tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=False)
    return enc["input_ids"], enc["attention_mask"]


def load_bench(name: str, args: argparse.Namespace) -> Bench:
    """Build the model, tokenizer and a freshly initialised default gate."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from hrpo import assets
    from hrpo.gate import GateConfig, ThinkingGate

    if name == "tiny":
        from hrpo.testing import build_tiny_model

        tokenizer = AutoTokenizer.from_pretrained(assets.qwen2_tokenizer_path())
        model = build_tiny_model("qwen2", vocab_size=151936, seed=0)
        model.generation_config.eos_token_id = [tokenizer.convert_tokens_to_ids("<|im_end|>"), 151643]
        model.generation_config.pad_token_id = tokenizer.pad_token_id
        reps = args.reps
    else:
        path = assets.smollm2_path()
        tokenizer = AutoTokenizer.from_pretrained(path)
        model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32).eval()
        reps = args.smollm2_reps or args.reps
    hidden = int(model.config.hidden_size)
    gate = ThinkingGate(
        GateConfig(hidden_size=hidden), generator=torch.Generator().manual_seed(args.seed)
    ).eval()
    return Bench(name, model, tokenizer, gate, hidden, int(model.config.vocab_size), reps)


def run_mode(
    bench: Bench, mode: str, input_ids: torch.Tensor, attention_mask: torch.Tensor, new_tokens: int, seed: int
) -> tuple[float, Any]:
    """One call of ``mode``; returns (wall seconds, Rollout or generate output)."""
    from hrpo.generation import DecodeConfig, hybrid_generate
    from hrpo.latent import SamplingConfig

    if mode == "a":
        torch.manual_seed(seed)
        with torch.no_grad():
            start = time.perf_counter()
            out = bench.model.generate(
                input_ids=input_ids,
                attention_mask=attention_mask,
                do_sample=True,
                temperature=TEMPERATURE,
                top_k=0,
                top_p=1.0,
                min_new_tokens=new_tokens,
                max_new_tokens=new_tokens,
                pad_token_id=bench.tokenizer.pad_token_id,
            )
            seconds = time.perf_counter() - start
        if out.shape[1] != input_ids.shape[1] + new_tokens:
            raise RuntimeError(
                f"generate produced {out.shape[1] - input_ids.shape[1]} tokens, not {new_tokens}"
            )
        return seconds, out
    config = DecodeConfig(
        max_new_tokens=new_tokens,
        sampling=SamplingConfig(temperature=TEMPERATURE, top_k=0 if mode.endswith("0") else 50),
        hybrid=mode.startswith("c"),
        eos_token_ids=(),
    )
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        start = time.perf_counter()
        rollout = hybrid_generate(
            bench.model, input_ids, attention_mask, bench.gate, config, bench.tokenizer, generator
        )
        seconds = time.perf_counter() - start
    if rollout.completion_ids.shape != (input_ids.shape[0], new_tokens) or not bool(
        rollout.completion_mask.all()
    ):
        raise RuntimeError(f"mode {mode}: not every row decoded {new_tokens} tokens")
    return seconds, rollout


class StepProfiler:
    """Accumulates wall time per component of ``hybrid_generate`` by wrapping the names it calls."""

    def __init__(self) -> None:
        self.totals: dict[str, float] = defaultdict(float)
        self.calls: dict[str, int] = defaultdict(int)
        self._depth = 0

    def wrap(self, label: str, fn: Callable[..., Any]) -> Callable[..., Any]:
        def timed(*args: Any, **kwargs: Any) -> Any:
            if self._depth:  # nested inside another timed component: count it there
                return fn(*args, **kwargs)
            self._depth += 1
            start = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                self.totals[label] += time.perf_counter() - start
                self.calls[label] += 1
                self._depth -= 1

        return timed

    @contextmanager
    def attached(self, bench: Bench) -> Iterator[None]:
        """Wrap the helpers in ``hrpo.generation``'s namespace, the model forward and the gate forward."""
        generation = importlib.import_module("hrpo.generation")
        names = {
            "step_distribution": "sampler: scale + top-k/softmax (step_distribution)",
            "choose_tokens": "sampler: inverse-CDF draw (choose_tokens)",
            "token_logprobs": "full-vocab log_softmax (token_logprobs)",
            "chosen_logprobs": "log-prob of the chosen token (chosen_logprobs)",
            "step_latents": "latent h (step_latents)",
        }
        names = {name: label for name, label in names.items() if hasattr(generation, name)}
        saved = {name: getattr(generation, name) for name in names}
        watcher_cls = generation.SubstringWatcher
        model_forward, gate_forward = bench.model.forward, bench.gate.forward
        profiler = self
        cache_cls = importlib.import_module("transformers").DynamicCache
        select = cache_cls.batch_select_indices

        class TimedWatcher(watcher_cls):  # type: ignore[misc, valid-type]
            scan = profiler.wrap("delimiter scan (SubstringWatcher.scan)", watcher_cls.scan)

        try:
            for name, label in names.items():
                setattr(generation, name, self.wrap(label, saved[name]))
            generation.SubstringWatcher = TimedWatcher
            prefill = self.wrap("model prefill (first forward, amortised)", model_forward)
            decode = self.wrap("model forward (decode steps)", model_forward)

            def forward(*args: Any, **kwargs: Any) -> Any:
                first = not self.calls["model prefill (first forward, amortised)"]
                return (prefill if first else decode)(*args, **kwargs)

            bench.model.forward = forward
            bench.gate.forward = self.wrap("gate mix (ThinkingGate)", gate_forward)
            cache_cls.batch_select_indices = self.wrap(
                "compaction (DynamicCache.batch_select_indices)", select
            )
            yield
        finally:
            cache_cls.batch_select_indices = select
            for name, fn in saved.items():
                setattr(generation, name, fn)
            generation.SubstringWatcher = watcher_cls
            del bench.model.forward, bench.gate.forward  # back to the class methods


def profile_mode(
    bench: Bench, mode: str, input_ids: torch.Tensor, attention_mask: torch.Tensor, new_tokens: int, seed: int
) -> dict[str, float]:
    """One instrumented loop call: ms per decode step (call time / new_tokens) of each component."""
    profiler = StepProfiler()
    with profiler.attached(bench):
        seconds, _ = run_mode(bench, mode, input_ids, attention_mask, new_tokens, seed)
    per_step = {label: 1000 * total / new_tokens for label, total in profiler.totals.items()}
    per_step["other (loop bookkeeping, embedding, stack, isin, where)"] = 1000 * seconds / new_tokens - sum(
        per_step.values()
    )
    per_step["TOTAL call / new_tokens"] = 1000 * seconds / new_tokens
    return per_step


LAST_ROLLOUT: dict[str, Any] = {}


class RowCounter:
    """Counts row-steps the model is run for (batch rows of every forward call after the prefill)."""

    def __init__(self, model: torch.nn.Module) -> None:
        self.model, self.rows, self.calls = model, 0, 0
        self.inner = model.forward

    def __enter__(self) -> RowCounter:
        def counted(*args: Any, **kwargs: Any) -> Any:
            first = kwargs.get("input_ids")
            embeds = kwargs.get("inputs_embeds")
            batch = (first if first is not None else embeds if embeds is not None else args[0]).shape[0]
            self.calls += 1
            if self.calls > 1:
                self.rows += batch
            return self.inner(*args, **kwargs)

        self.model.forward = counted
        return self

    def __exit__(self, *exc: Any) -> None:
        self.model.forward = self.inner  # the profiler's wrapper, if one was installed
        if self.inner == type(self.model).forward.__get__(self.model):
            del self.model.forward


def hrpo_chat_batch(tokenizer: Any, questions: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
    """Questions as HRPO prompts (system prompt + user turn through the chat template), left padded."""
    from hrpo.prompts import SYSTEM_PROMPT

    texts = [
        tokenizer.apply_chat_template(
            [{"role": "system", "content": SYSTEM_PROMPT}, {"role": "user", "content": q}],
            tokenize=False,
            add_generation_prompt=True,
        )
        for q in questions
    ]
    tokenizer.padding_side = "left"
    enc = tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=False)
    return enc["input_ids"], enc["attention_mask"]


def kept_lengths(new_ids: torch.Tensor, eos: tuple[int, ...]) -> torch.Tensor:
    """``(B,)`` tokens up to and including each row's first EOS (all of them where none)."""
    hit = torch.isin(new_ids, torch.tensor(eos))  # (B, C)
    capped = torch.full((new_ids.shape[0],), new_ids.shape[1], dtype=torch.long)
    return torch.where(hit.any(1), hit.long().argmax(1) + 1, capped)


def run_realistic_mode(
    bench: Bench, mode: str, input_ids: torch.Tensor, attention_mask: torch.Tensor, max_new: int, seed: int
) -> dict[str, Any]:
    """One realistic call: wall s, tokens kept, row-steps forwarded, rows at the cap, thinking share."""
    from dataclasses import fields

    from hrpo.generation import DecodeConfig, hybrid_generate, resolve_eos_ids
    from hrpo.latent import SamplingConfig

    eos = resolve_eos_ids(bench.model, bench.tokenizer)
    thinking = None
    with torch.no_grad(), RowCounter(bench.model) as counter:
        if mode == "hf":
            torch.manual_seed(seed)
            start = time.perf_counter()
            out = bench.model.generate(
                input_ids=input_ids,
                attention_mask=attention_mask,
                do_sample=True,
                temperature=TEMPERATURE,
                top_k=50,
                top_p=1.0,
                max_new_tokens=max_new,
                eos_token_id=list(eos),
                pad_token_id=bench.tokenizer.pad_token_id,
            )
            seconds = time.perf_counter() - start
            lengths = kept_lengths(out[:, input_ids.shape[1] :], eos)
        else:
            extra: dict[str, Any] = {}
            has_compaction = "compact_fraction" in {f.name for f in fields(DecodeConfig)}
            if mode == "on_keep" and has_compaction:
                extra["compact_fraction"] = None
            elif mode.startswith("on@") and has_compaction:
                extra["compact_fraction"] = float(mode[3:])
            elif mode == "on_dyn":
                extra["preallocate_cache"] = False
            config = DecodeConfig(
                max_new_tokens=max_new,
                sampling=SamplingConfig(temperature=TEMPERATURE, top_k=50),
                hybrid=mode != "off",
                eos_token_ids=eos,
                **extra,
            )
            generator = torch.Generator().manual_seed(seed)
            start = time.perf_counter()
            rollout = hybrid_generate(
                bench.model, input_ids, attention_mask, bench.gate, config, bench.tokenizer, generator
            )
            seconds = time.perf_counter() - start
            lengths = rollout.completion_mask.sum(1)
            thinking = float(rollout.thinking_mask.sum() / rollout.completion_mask.sum())
            if mode == "on":
                LAST_ROLLOUT[bench.name] = rollout  # --bucketing scores it
    return {
        "seconds": seconds,
        "kept": int(lengths.sum()),
        "row_steps": counter.rows + input_ids.shape[0],  # + the token chosen from the prefill's logits
        "at_cap": int((lengths >= max_new).sum()),
        "min_len": int(lengths.min()),
        "steps": int(lengths.max()),
        "thinking_share": thinking,
    }


def run_realistic(args: argparse.Namespace) -> int:
    """``--realistic``: interleaved repeats of every mode per model; table of kept tok/s and paired ratios."""
    results: dict[str, Any] = {
        "settings": {
            "realistic": True,
            "batch": args.realistic_batch,
            "max_new_tokens": args.realistic_tokens,
            "modes": args.realistic_list,
            "reps": args.reps,
            "threads": torch.get_num_threads(),
            "temperature": TEMPERATURE,
            "top_k": 50,
            "torch": torch.__version__,
        },
        "models": {},
    }
    questions = gsm8k_questions(args.realistic_batch)
    for name in args.model_list:
        bench = load_bench(name, args)
        input_ids, attention_mask = hrpo_chat_batch(bench.tokenizer, questions)
        print(
            f"\n=== realistic {name}: B={input_ids.shape[0]}, padded prompt {input_ids.shape[1]}, "
            f"max new {args.realistic_tokens}, {bench.reps} repeats, load {os.getloadavg()} ===",
            flush=True,
        )
        for mode in args.realistic_list:  # warm-up
            run_realistic_mode(bench, mode, input_ids, attention_mask, args.warmup_tokens, args.seed)
        runs: dict[str, list[dict[str, Any]]] = {mode: [] for mode in args.realistic_list}
        for rep in range(bench.reps):
            for mode in args.realistic_list:
                cpu_start, busy_start = time.process_time(), system_busy_seconds()
                run = run_realistic_mode(
                    bench, mode, input_ids, attention_mask, args.realistic_tokens, args.seed + rep
                )
                cpu = time.process_time() - cpu_start
                run["cpu_seconds"] = cpu
                run["foreign_cores"] = max(0.0, system_busy_seconds() - busy_start - cpu) / run["seconds"]
                run["load1"] = os.getloadavg()[0]
                run["kept_tok_s"] = run["kept"] / run["seconds"]
                runs[mode].append(run)
                print(
                    f"  rep {rep + 1} {mode:>8}: {run['seconds']:7.1f} s, kept {run['kept']:5d} "
                    f"({run['kept_tok_s']:6.1f} tok/s), row-steps {run['row_steps']}, at cap {run['at_cap']}, "
                    f"shortest {run['min_len']}, other procs {run['foreign_cores']:.2f} cores, "
                    f"load {run['load1']:.2f}",
                    flush=True,
                )
        results["models"][name] = runs
        if args.bucketing:
            results.setdefault("bucketing", {})[name] = measure_bucketing(
                bench, input_ids, attention_mask, args
            )
        if args.profile:
            results.setdefault("profiles", {})[name] = {}
            for mode in (m for m in args.realistic_list if m != "hf"):
                profiler = StepProfiler()
                with profiler.attached(bench):
                    run = run_realistic_mode(
                        bench, mode, input_ids, attention_mask, args.realistic_tokens, args.seed
                    )
                steps = run["steps"]
                per_step = {label: 1000 * total / steps for label, total in profiler.totals.items()}
                per_step["other (loop bookkeeping, embedding, stack, isin, where)"] = 1000 * run[
                    "seconds"
                ] / steps - sum(per_step.values())
                per_step["TOTAL call / steps"] = 1000 * run["seconds"] / steps
                per_step["(loop steps)"] = float(steps)
                per_step["(rows forwarded per step, mean)"] = run["row_steps"] / steps
                results["profiles"][name][mode] = per_step
        if args.json_out:
            Path(args.json_out).write_text(json.dumps(results, indent=2) + "\n")
        del bench
    realistic_report(results)
    realistic_profiles(results)
    if args.json_out:
        Path(args.json_out).write_text(json.dumps(results, indent=2) + "\n")
        print(f"\nraw numbers written to {args.json_out}")
    return 0


def realistic_report(results: dict[str, Any]) -> None:
    """Median and min-max kept tok/s per mode; paired (same-repeat) ratios against hf and off."""
    print("\n## Realistic rollouts: tokens kept per second (median, min-max over repeats)")
    print(
        "| model | mode | reps | kept tok/s median (min-max) | wall s median | kept / row-steps | rows at cap "
        f"| thinking share | other procs, cores (max) |\n|{'---|' * 9}"
    )
    for name, runs in results["models"].items():
        for mode, rows in runs.items():
            rates = [r["kept_tok_s"] for r in rows]
            share = rows[0]["thinking_share"]
            print(
                f"| {name} | {mode} | {len(rows)} | **{statistics.median(rates):.1f}** ({min(rates):.1f}-"
                f"{max(rates):.1f}) | {statistics.median(r['seconds'] for r in rows):.1f} | "
                f"{statistics.median(r['kept'] / r['row_steps'] for r in rows):.2f} | "
                f"{statistics.median(r['at_cap'] for r in rows)} | {'-' if share is None else f'{share:.2f}'} | "
                f"{max(r['foreign_cores'] for r in rows):.2f} |"
            )
    print(f"\n| model | ratio | paired median (min-max) | ratio of medians |\n|{'---|' * 4}")
    for name, runs in results["models"].items():
        for num in runs:
            for den in ("hf", "off", "on_keep", "on_dyn"):
                if (
                    den == num
                    or den not in runs
                    or num == "hf"
                    or (den in ("on_keep", "on_dyn") and num == "off")
                ):
                    continue
                paired = [
                    a["kept_tok_s"] / b["kept_tok_s"] for a, b in zip(runs[num], runs[den], strict=True)
                ]
                medians = statistics.median(r["kept_tok_s"] for r in runs[num]) / statistics.median(
                    r["kept_tok_s"] for r in runs[den]
                )
                print(
                    f"| {name} | {num}/{den} | **{statistics.median(paired):.2f}** ({min(paired):.2f}-"
                    f"{max(paired):.2f}) | {medians:.2f} |"
                )


def measure_bucketing(
    bench: Bench, input_ids: torch.Tensor, attention_mask: torch.Tensor, args: argparse.Namespace
) -> dict[str, Any]:
    """Replay-forward time of one realistic hybrid rollout: padded micro-batches vs length buckets.

    ``padded R``: rows in rollout order, ``R`` per forward, each over the full ``(R, P + C)`` (what a trainer
    chunking the padded batch does); ``bucketed R``: rows sorted by length, ``R`` per forward, each trimmed to
    its own columns (:func:`hrpo.bucketing.bucketed_replay_logprobs`). No gradients (the reference forward).
    """
    from hrpo.bucketing import bucketed_replay_logprobs, padded_tokens, plan_buckets
    from hrpo.generation import DecodeConfig, hybrid_generate, replay_logprobs
    from hrpo.latent import SamplingConfig

    rollout = LAST_ROLLOUT.get(bench.name)  # the last timed `on` call's rollout, else a fresh one
    if rollout is None:
        config = DecodeConfig(
            max_new_tokens=args.realistic_tokens, sampling=SamplingConfig(temperature=TEMPERATURE, top_k=50)
        )
        rollout = hybrid_generate(
            bench.model, input_ids, attention_mask, bench.gate, config, bench.tokenizer,
            torch.Generator().manual_seed(args.seed),
        )  # fmt: skip
    real = int(rollout.attention_mask.sum())
    sizes = [int(r) for r in args.bucket_rows.split(",") if r.strip()]

    def padded(rows: int) -> torch.Tensor:
        parts = []
        for start in range(0, rollout.prompt_ids.shape[0], rows):
            part = slice(start, start + rows)
            sub = type(rollout)(
                **{k: (v[part] if isinstance(v, torch.Tensor) else v) for k, v in vars(rollout).items()}
            )
            parts.append(replay_logprobs(bench.model, bench.gate, sub, TEMPERATURE))
        return torch.cat(parts)

    out: dict[str, Any] = {
        "real_tokens": real,
        "padded_tokens": int(rollout.input_ids.numel()),
        "shape": list(rollout.input_ids.shape),
        "runs": {},
    }
    for rows in sizes:
        buckets = plan_buckets(rollout.prompt_mask, rollout.completion_mask, rows)
        out[f"bucketed_tokens_{rows}"] = padded_tokens(rollout.prompt_mask, rollout.completion_mask, buckets)
    with torch.no_grad():
        for rep in range(args.reps):
            for rows in sizes:
                for kind in ("padded", "bucketed"):
                    start = time.perf_counter()
                    if kind == "padded":
                        logps = padded(rows)
                    else:
                        logps = bucketed_replay_logprobs(bench.model, bench.gate, rollout, TEMPERATURE, rows)
                    seconds = time.perf_counter() - start
                    gap = float((logps - rollout.logprobs * rollout.completion_mask).abs().max())
                    out["runs"].setdefault(f"{kind} {rows}", []).append(
                        {"seconds": seconds, "replay_gap": gap}
                    )
                    print(
                        f"  bucketing rep {rep + 1} {kind} {rows}: {seconds:6.1f} s, replay gap {gap:.1e}, "
                        f"load {os.getloadavg()[0]:.2f}",
                        flush=True,
                    )
    print(
        f"  tokens: real {real}, padded {out['padded_tokens']}, "
        + ", ".join(f"bucketed {r}: {out[f'bucketed_tokens_{r}']}" for r in sizes)
    )
    for rows in sizes:
        pad, buck = out["runs"][f"padded {rows}"], out["runs"][f"bucketed {rows}"]
        paired = [a["seconds"] / b["seconds"] for a, b in zip(pad, buck, strict=True)]
        print(
            f"  speed-up of bucketing, {rows} rows per forward: paired median {statistics.median(paired):.2f} "
            f"({min(paired):.2f}-{max(paired):.2f}); positions ratio "
            f"{out['padded_tokens'] / out[f'bucketed_tokens_{rows}']:.2f}"
        )
    return out


def realistic_profiles(results: dict[str, Any]) -> None:
    """Per-step profile tables of a realistic run (ms per loop step; one instrumented call per mode)."""
    for name, profiles in results.get("profiles", {}).items():
        modes = list(profiles)
        labels = list(dict.fromkeys(label for p in profiles.values() for label in p))
        labels.sort(key=lambda label: label.startswith(("other", "TOTAL", "(")))
        print(
            f"\nrealistic profile {name} (ms per step)\n| component | {' | '.join(modes)} |\n|---|{'---|' * len(modes)}"
        )
        for label in labels:
            print(f"| {label} | {' | '.join(f'{profiles[m].get(label, 0.0):.2f}' for m in modes)} |")


def fmt_ratio(value: float, target: float | None) -> str:
    if target is None:
        return f"{value:.2f}"
    return f"{value:.2f} (target >= {target:.1f}: {'MET' if value >= target else 'MISSED'})"


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.report:
        saved = json.loads(Path(args.report).read_text())
        args.model_list = list(dict.fromkeys(c["model"] for c in saved["cells"]))
        args.batch_list = list(dict.fromkeys(c["batch"] for c in saved["cells"]))
        print(f"tables of {args.report} (settings: {saved['settings']})")
        report(saved, args)
        return 0
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    torch.set_num_threads(args.threads)
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    if args.realistic:
        return run_realistic(args)

    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} intra-op threads, fp32, "
        f"{os.cpu_count()} CPUs, {platform.processor() or platform.machine()}; "
        f"{args.new_tokens} new tokens/row, T={TEMPERATURE}, modes {','.join(args.mode_list)}",
        flush=True,
    )
    results: dict[str, Any] = {
        "settings": {
            **{k: v for k, v in vars(args).items() if k not in ("model_list", "batch_list", "mode_list")},
            "torch": torch.__version__,
            "threads": torch.get_num_threads(),
            "temperature": TEMPERATURE,
        },
        "cells": [],
        "storage": [],
        "profiles": [],
    }
    questions = gsm8k_questions(max(args.batch_list))
    for name in args.model_list:
        bench = load_bench(name, args)
        print(
            f"\n=== {name}: {type(bench.model).__name__}, hidden {bench.hidden_size}, vocab {bench.vocab_size}, "
            f"{sum(p.numel() for p in bench.model.parameters()) / 1e6:.1f}M params, {bench.reps} repeats ===",
            flush=True,
        )
        for batch in args.batch_list:
            input_ids, attention_mask = chat_batch(bench.tokenizer, questions[:batch])
            print(
                f"B={batch}: padded prompt length {input_ids.shape[1]}, real lengths "
                f"{int(attention_mask.sum(1).min())}-{int(attention_mask.sum(1).max())}; "
                f"load avg before {os.getloadavg()[0]:.2f}",
                flush=True,
            )
            for mode in args.mode_list:  # warm-up
                run_mode(bench, mode, input_ids, attention_mask, args.warmup_tokens, args.seed)
            timings = {mode: Timing(new_tokens=batch * args.new_tokens) for mode in args.mode_list}
            for rep in range(bench.reps):
                for mode in args.mode_list:
                    cpu_start, busy_start = time.process_time(), system_busy_seconds()
                    seconds, out = run_mode(
                        bench, mode, input_ids, attention_mask, args.new_tokens, args.seed + rep
                    )
                    cpu = time.process_time() - cpu_start
                    foreign = max(0.0, system_busy_seconds() - busy_start - cpu) / seconds
                    timing = timings[mode]
                    timing.seconds.append(seconds)
                    timing.cpu_seconds.append(cpu)
                    timing.foreign_cores.append(foreign)
                    if mode != "a":
                        timing.thinking_share = float(out.thinking_mask.float().mean())
                        if mode.startswith("c"):
                            timing.latent_bytes_per_token = out.latent_bytes_per_token()
                    print(
                        f"  rep {rep + 1} {mode:>2}: {seconds:7.2f} s  {timing.new_tokens / seconds:8.1f} tok/s"
                        f"  (own cpu/wall {cpu / seconds:.2f}, other processes {foreign:.2f} cores)",
                        flush=True,
                    )
            print(f"  load avg after {os.getloadavg()[0]:.2f}")
            for mode, timing in timings.items():
                results["cells"].append(
                    {
                        "model": name,
                        "batch": batch,
                        "prompt_len": int(input_ids.shape[1]),
                        "mode": mode,
                        "seconds": timing.seconds,
                        "cpu_seconds": timing.cpu_seconds,
                        "foreign_cores": timing.foreign_cores,
                        "tokens": timing.new_tokens,
                        "tok_s_median": timing.new_tokens / statistics.median(timing.seconds),
                        "tok_s_best": timing.new_tokens / min(timing.seconds),
                        "thinking_share": timing.thinking_share,
                        "latent_bytes_per_token": timing.latent_bytes_per_token,
                    }
                )
            if args.profile:
                for mode in (m for m in args.mode_list if m != "a"):
                    per_step = profile_mode(
                        bench, mode, input_ids, attention_mask, args.new_tokens, args.seed
                    )
                    results["profiles"].append(
                        {"model": name, "batch": batch, "mode": mode, "ms_per_step": per_step}
                    )
            if args.json_out:  # partial results survive an interrupted run
                Path(args.json_out).write_text(json.dumps(results, indent=2) + "\n")
        for mode in ("c", "c0"):
            stored = [
                c["latent_bytes_per_token"]
                for c in results["cells"]
                if c["model"] == name and c["mode"] == mode
            ]
            if stored and stored[0] is not None:
                results["storage"].append(
                    {
                        "model": name,
                        "mode": mode,
                        "hidden_size": bench.hidden_size,
                        "latent_bytes_per_token": stored[0],
                        "full_fp32_bytes_per_token": 4 * bench.hidden_size,
                        "saving": 4 * bench.hidden_size / stored[0],
                    }
                )
        del bench

    report(results, args)
    if args.json_out:
        Path(args.json_out).write_text(json.dumps(results, indent=2) + "\n")
        print(f"\nraw numbers written to {args.json_out}")
    return 0


def report(results: dict[str, Any], args: argparse.Namespace) -> None:
    """Print the table, the ratios, the storage and (if measured) the per-step profiles."""
    cells = {(c["model"], c["batch"], c["mode"]): c for c in results["cells"]}
    for c in (
        cells.values()
    ):  # tokens per second of this process's own CPU time (robust to other load at 1 thread)
        c["cpu_tok_s_median"] = c["tokens"] / statistics.median(c["cpu_seconds"])
        c["cpu_tok_s_best"] = c["tokens"] / min(c["cpu_seconds"])
    print(
        "\n## Tokens/s (B * new_tokens / wall time incl. prefill); own-CPU tok/s = B * new_tokens / process CPU s"
    )
    print(
        "| model | B | mode | wall s min / med | tok/s best / med | own-CPU tok/s best / med | thinking share "
        f"| other procs, cores (max) |\n|{'---|' * 8}"
    )
    for c in results["cells"]:
        share = "-" if c["thinking_share"] is None else f"{c['thinking_share']:.2f}"
        print(
            f"| {c['model']} | {c['batch']} | {MODE_LABELS[c['mode']]} | {min(c['seconds']):.2f} / "
            f"{statistics.median(c['seconds']):.2f} | {c['tok_s_best']:.1f} / **{c['tok_s_median']:.1f}** "
            f"| {c['cpu_tok_s_best']:.1f} / {c['cpu_tok_s_median']:.1f} | {share} | {max(c['foreign_cores']):.2f} |"
        )
    print("\n## Ratios of median tok/s (wall), of best tok/s (wall), and of median own-CPU tok/s")
    print(f"| model | B | ratio | median (wall) | best (wall) | median (own CPU) |\n|{'---|' * 6}")
    for model in args.model_list:
        for batch in args.batch_list:
            for num, den, target in RATIOS:
                if (model, batch, num) in cells and (model, batch, den) in cells:
                    top, bottom = cells[model, batch, num], cells[model, batch, den]
                    med = top["tok_s_median"] / bottom["tok_s_median"]
                    best = top["tok_s_best"] / bottom["tok_s_best"]
                    cpu = top["cpu_tok_s_median"] / bottom["cpu_tok_s_median"]
                    print(
                        f"| {model} | {batch} | {num}/{den} | {fmt_ratio(med, target)} | {best:.2f} "
                        f"| {fmt_ratio(cpu, target)} |"
                    )
    if results["storage"]:
        print("\n## Latent storage per completion token")
        print(
            f"| model | mode | D | stored bytes/token | full D-dim fp32 (4*D) | full / stored |\n|{'---|' * 6}"
        )
        for s in results["storage"]:
            print(
                f"| {s['model']} | {s['mode']} | {s['hidden_size']} | {s['latent_bytes_per_token']} | "
                f"{s['full_fp32_bytes_per_token']} | {s['saving']:.2f}x |"
            )
    if results["profiles"]:
        print("\n## Per-step profile (one instrumented call per loop mode, ms per generated token step)")
        for model in args.model_list:
            for batch in args.batch_list:
                profiles = {
                    p["mode"]: p["ms_per_step"]
                    for p in results["profiles"]
                    if (p["model"], p["batch"]) == (model, batch)
                }
                if not profiles:
                    continue
                labels = list(dict.fromkeys(label for p in profiles.values() for label in p))
                labels.sort(key=lambda label: label.startswith(("other", "TOTAL")))
                modes = list(profiles)
                print(f"\n{model} B={batch}\n| component | {' | '.join(modes)} |\n|---|{'---|' * len(modes)}")
                for label in labels:
                    values = " | ".join(f"{profiles[m].get(label, 0.0):.2f}" for m in modes)
                    print(f"| {label} | {values} |")


if __name__ == "__main__":
    sys.exit(main())
