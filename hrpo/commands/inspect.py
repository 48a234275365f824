"""``hrpo inspect``: the latent lens -- decode with a checkpoint and write one HTML page of every token.

hrpo inspect --checkpoint_path runs/gsm8k --prompt "What is 7 times 8?"
hrpo inspect --checkpoint_path runs/gsm8k --task hrpo_gsm8k --index 17 --data_dir ../shared/data
hrpo inspect --checkpoint_path runs/gsm8k --rows my_rows.jsonl --out lens.html --json lens.json

Greedy tokens by default (as ``hrpo eval``), with the latent built from the checkpoint's tau-tempered top-k
distribution; the same prompts are also decoded with the latent off, side by side. The page is self-contained
(open it offline); the terminal gets a per-prompt summary.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="hrpo inspect",
        description="The latent lens: decode prompts with a checkpoint (greedy by default, the latent on and off) "
        "and write one self-contained HTML page: every completion token coloured by its hidden ratio "
        "sqrt(1 - a^2), the #### boundary, per token the latent's top tokens, the nearest vocabulary tokens of "
        "the embedding actually fed back, and a, and per completion a plot of the hidden ratio along positions.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=__doc__.split("\n\n", 1)[1],
    )
    parser.add_argument(
        "--checkpoint_path", help="training output or checkpoint-N folder (LoRA adapter and/or gate)"
    )
    parser.add_argument(
        "--pretrained", help="base model path or hub id (default: the one the checkpoint names)"
    )
    source = parser.add_argument_group("what to decode (one of)")
    source.add_argument(
        "--prompt",
        action="append",
        default=[],
        help="a question, sent as the user turn of the HRPO chat prompt; repeatable",
    )
    source.add_argument("--task", help="a benchmark task, e.g. hrpo_gsm8k (or gsm8k); rows chosen by --index")
    source.add_argument("--rows", help="a jsonl of rows: question, task (default --kind), optional gold, "
                        "choices, contexts")  # fmt: skip
    parser.add_argument(
        "--index",
        type=int,
        nargs="+",
        help="row numbers (0-based) of --task or --rows (default: 0 for --task, every row of --rows)",
    )
    parser.add_argument("--split", help="split of --task (default: the benchmark's eval split)")
    parser.add_argument(
        "--data_dir", help="local benchmark data folder (layout of ../shared/data) for --task"
    )
    parser.add_argument(
        "--index_dir",
        help="FAISS index folder (hrpo retrieval build) giving QA rows without contexts their top-3",
    )
    parser.add_argument(
        "--closed_book", action="store_true", help="QA rows without contexts get none (not a paper setting)"
    )
    parser.add_argument(
        "--kind",
        default="gsm8k",
        choices=["gsm8k", "math", "multiple_choice", "qa"],
        help="prompt and scorer for --prompt and for --rows lines without a task (default gsm8k)",
    )
    parser.add_argument(
        "--gold",
        action="append",
        help="gold answer of each --prompt, in order, to score it (default: unscored)",
    )
    parser.add_argument("--out", default="inspect.html", help="HTML page to write (default inspect.html)")
    parser.add_argument("--json", help="also write the per-token records as JSON here")
    decoding = parser.add_argument_group("decoding (defaults: the checkpoint's settings, greedy)")
    decoding.add_argument(
        "--max_new_tokens", type=int, help="completion length cap (default: the task's, else 512)"
    )
    decoding.add_argument("--temperature", type=float, help="tau of the latent (and of sampling)")
    decoding.add_argument("--top_k", type=int, help="top-k of the latent's distribution (0 = full softmax)")
    decoding.add_argument("--top_p", type=float, help="nucleus truncation of that distribution")
    decoding.add_argument("--delimiter", help="answer delimiter that ends thinking (default ####)")
    decoding.add_argument(
        "--sample", action="store_true", help="sample tokens at tau instead of greedy (seeded by --seed)"
    )
    decoding.add_argument("--seed", type=int, default=0, help="seed of the row streams when sampling")
    parser.add_argument("--top", type=int, default=5, help="latent top tokens kept per token (default 5)")
    parser.add_argument(
        "--nearest", type=int, default=5, help="nearest vocabulary tokens kept per token (default 5)"
    )
    parser.add_argument("--batch_size", type=int, default=8, help="prompts decoded together (default 8)")
    parser.add_argument(
        "--dtype", default="float32", choices=["float32", "bfloat16", "float16"], help="model dtype"
    )
    parser.add_argument("--device", default="cpu", help="torch device, e.g. cpu or cuda (default cpu)")
    return parser


def _rows_from_file(path: str, kind: str) -> list[dict[str, Any]]:
    """Rows of a user jsonl; a bad line raises MalformedRowError naming ``path:line``."""
    from hrpo.data.rows import BadRowPolicy, RowError, need_str, read_jsonl
    from hrpo.rewards import TASKS

    def convert(raw: Any, index: int) -> dict[str, Any]:
        question = need_str(raw, "question")
        task = raw.get("task", kind)
        if task not in TASKS:
            raise RowError(f"field 'task' is {task!r}; use one of {', '.join(TASKS)}")
        if task == "multiple_choice" and not isinstance(raw.get("choices"), list):
            raise RowError("a multiple_choice row needs a 'choices' list")
        return {**raw, "id": str(raw.get("id", f"row {index}")), "question": question, "task": task}

    file = Path(path)
    if not file.is_file():
        raise FileNotFoundError(f"--rows {path}: no such file")
    return read_jsonl(file, convert, BadRowPolicy())


def _select(rows: list[dict[str, Any]], index: list[int] | None, where: str) -> list[dict[str, Any]]:
    if index is None:
        return rows
    bad = [i for i in index if not 0 <= i < len(rows)]
    if bad:
        raise ValueError(
            f"--index {bad[0]} is out of range: {where} has {len(rows)} rows (0..{len(rows) - 1})"
        )
    return [rows[i] for i in index]


def select_rows(args: argparse.Namespace) -> tuple[list[dict[str, Any]], int | None]:
    """The rows to decode (QA rows with their contexts) and the task's generation length (None: not a task)."""
    rows, length = _chosen_rows(args)
    qa = [i for i, r in enumerate(rows) if r["task"] == "qa"]
    if qa:  # the knowledge tasks' prompts hold top-3 passages, as hrpo eval gives them
        from hrpo.data.build import ensure_contexts

        with_contexts = ensure_contexts(
            [rows[i] for i in qa], index_dir=args.index_dir, closed_book=args.closed_book
        )
        for i, row in zip(qa, with_contexts, strict=True):
            rows[i] = row
    return rows, length


def _chosen_rows(args: argparse.Namespace) -> tuple[list[dict[str, Any]], int | None]:
    given = sum(bool(x) for x in (args.prompt, args.task, args.rows))
    if given != 1:
        raise ValueError("pass exactly one of --prompt TEXT, --task NAME (with --index) or --rows FILE.jsonl")
    if args.gold and not args.prompt:
        raise ValueError("--gold scores --prompt questions; rows of --task and --rows carry their own gold")
    if args.prompt:
        golds = args.gold or [None] * len(args.prompt)
        if len(golds) != len(args.prompt):
            raise ValueError(
                f"{len(golds)} --gold for {len(args.prompt)} --prompt: give one per prompt, in order"
            )
        rows = [
            {
                "id": f"prompt {i + 1}",
                "question": p,
                "task": args.kind,
                "gold": g if args.kind != "qa" else [g],
            }
            for i, (p, g) in enumerate(zip(args.prompt, golds, strict=True))
        ]
        return rows, None
    if args.rows:
        return _select(_rows_from_file(args.rows, args.kind), args.index, args.rows), None
    from hrpo import benchmarks
    from hrpo.data import load_benchmark

    key = args.task.removeprefix(benchmarks.PREFIX)
    bench = benchmarks.get(key)
    if bench.loader is None:
        raise ValueError(f"--task {args.task} reads its rows from a file: pass that file as --rows instead")
    split = args.split or bench.eval_split
    rows = load_benchmark(key, split, data_dir=args.data_dir)
    return _select(rows, args.index if args.index is not None else [0], f"{bench.task_name} {split}"), (
        bench.max_gen_toks
    )


def summary_lines(pairs) -> list[str]:
    """The terminal summary: per prompt, both sides' lengths, answer, score and hidden ratio."""
    lines = []
    for on, off in pairs:
        lines.append(f"== {on.prompt.label}: {on.prompt.question[:100]!r}")
        for name, r in (("latent on ", on), ("latent off", off)):
            score = "-" if r.correct is None else ("correct" if r.correct else "wrong")
            lines.append(
                f"  {name}: {len(r.tokens):4d} tokens, thinking {r.thinking_length:4d}, answer {r.answer[:40]!r}, "
                f"{score}, mean hidden ratio {r.mean_hidden_ratio:.4f}, nearest differs {r.differs_count}"
            )
        shown = [t for t in on.tokens if t.nearest_differs][:5]
        for t in shown:
            lines.append(
                f"    pos {t.position}: chose {t.token!r}, fed embedding nearest to {t.nearest[0].text!r}"
            )
    return lines


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from hrpo.checkpoint import GateCheckpointError
    from hrpo.data.rows import DataSourceError, MalformedRowError

    try:
        return _run(args)
    except (
        GateCheckpointError,
        MalformedRowError,
        DataSourceError,
        FileNotFoundError,
        ValueError,
        KeyError,
    ) as err:
        message = err.args[0] if isinstance(err, KeyError) and err.args else err
        print(f"hrpo inspect: error: {message}", file=sys.stderr)
        return 2


def _run(args: argparse.Namespace) -> int:
    if not args.checkpoint_path and not args.pretrained:
        raise ValueError("pass --checkpoint_path DIR (or --pretrained MODEL for a base model without a gate)")
    rows, task_length = select_rows(args)
    from hrpo import lens
    from hrpo.decoding import DecodingSettings
    from hrpo.lens_html import render_page

    if args.checkpoint_path:
        loaded = lens.load_checkpoint(args.checkpoint_path, args.pretrained, args.dtype, args.device)
    else:
        loaded = _load_base(args.pretrained, args.dtype, args.device)
    settings: DecodingSettings = loaded.decoding.override(
        temperature=args.temperature, top_k=args.top_k, top_p=args.top_p, delimiter=args.delimiter
    )
    max_new = args.max_new_tokens or task_length or 512
    config = settings.decode_config(
        max_new,
        hybrid=True,
        greedy=not args.sample,
        stop_strings=lens.EVAL_STOP_STRINGS,
        record_logprobs=False,
    )
    if loaded.gate is None:
        print(
            "hrpo inspect: no gate in the checkpoint: both sides decode with plain token inputs",
            file=sys.stderr,
        )
    items = [lens.prompt_from_row(r, loaded.tokenizer, settings.delimiter) for r in rows]
    pairs = lens.compare_latent(
        loaded.model,
        loaded.tokenizer,
        loaded.gate,
        items,
        config,
        progress=True,
        top=args.top,
        nearest=args.nearest,
        batch_size=args.batch_size,
        seed=args.seed,
    )
    shown = {
        "checkpoint": args.checkpoint_path or "-",
        "base model": loaded.info.base_model if loaded.info is not None else args.pretrained,
        "method": loaded.info.method if loaded.info is not None else "base",
        "tokens": "sampled" if args.sample else "greedy",
        "tau": settings.temperature,
        "top_k": settings.top_k,
        "top_p": settings.top_p,
        "delimiter": settings.delimiter,
        "max_new_tokens": max_new,
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(
        render_page(pairs, title="hrpo inspect: the latent lens", settings=shown), encoding="utf-8"
    )
    if args.json:
        records = [{"latent_on": a.to_dict(), "latent_off": b.to_dict()} for a, b in pairs]
        Path(args.json).write_text(json.dumps({"settings": shown, "prompts": records}, indent=1) + "\n")
    print("\n".join(summary_lines(pairs)))
    print(f"wrote {out}" + (f" and {args.json}" if args.json else ""))
    return 0


def _load_base(pretrained: str, dtype: str, device: str):
    """A base model without a checkpoint: no gate, the default decoding settings."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from hrpo.decoding import DecodingSettings
    from hrpo.lens import LoadedCheckpoint

    model = AutoModelForCausalLM.from_pretrained(pretrained, dtype=getattr(torch, dtype)).to(device).eval()
    return LoadedCheckpoint(model, AutoTokenizer.from_pretrained(pretrained), None, None, DecodingSettings())
