"""Sustained load on the retrieval server over loopback: K concurrent clients for T seconds of valid batched
requests against ``hrpo retrieval serve`` (a subprocess, as deployed). Bounded: it stops after T seconds (or
``--max_requests``) by itself.

Run from the repository root in the README's ``.venv``::

    python benchmark/server_load.py                              # 64-passage MiniLM index built in a temp dir
    python benchmark/server_load.py --index indexes/wiki_minilm --clients 16 --seconds 60 --batch 32

It prints requests served, errors (a non-200, a timeout or an answer that differs from the server's first
answer to the same batch), p50/p99 latency and the server process's RSS before and after the timed run (after a
warm-up at the same concurrency). The same measurement, with fixed K=8, T=10 s, is the test
``tests/retrieval/test_server_load.py``. Exit status 1 if any request failed.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import threading
from pathlib import Path

import psutil

from hrpo.testing import retrieval_server, run_load, write_wiki_corpus

QUERIES = [
    "who discovered penicillin",
    "classical music of the 20th century",
    "science fiction film by Stanley Kubrick",
    "pointillist painting by Georges Seurat",
    "an opera composer",
    "a war in Europe",
    "a river in Africa",
    "a novel about a whale",
    "a space mission to the moon",
    "the capital of France",
    "a famous physicist",
    "an ancient empire",
]


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )
    p.add_argument(
        "--index",
        default=None,
        help="index directory to serve (default: build a 64-passage one in a temp dir)",
    )
    p.add_argument("--clients", type=int, default=8, help="K: concurrent clients, each one request at a time")
    p.add_argument("--seconds", type=float, default=10.0, help="T: length of the timed run")
    p.add_argument(
        "--warmup", type=float, default=2.0, help="seconds of the same load before RSS is first read"
    )
    p.add_argument("--batch", type=int, default=4, help="queries per request")
    p.add_argument("--topk", type=int, default=3, help="passages per query")
    p.add_argument("--max_requests", type=int, default=1_000_000, help="stop after this many requests in all")
    p.add_argument("--json_out", default=None, help="also write the report as JSON here")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if min(args.clients, args.batch, args.topk) < 1 or args.seconds <= 0:
        print("error: --clients, --batch and --topk must be >= 1 and --seconds > 0", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="server_load_") as tmp:
        index = Path(args.index) if args.index else _tiny_index(Path(tmp))
        with retrieval_server(index, Path(tmp) / "server.log", "--max_topk", str(max(args.topk, 100))) as (
            url,
            proc,
        ):
            report, rss = _measure(url + "/retrieve", psutil.Process(proc.pid), args)
    growth = (rss[1] - rss[0]) / 2**20
    print(
        f"{report.summary()}\nserver RSS {rss[0] / 2**20:.1f} -> {rss[1] / 2**20:.1f} MiB ({growth:+.1f} MiB)"
    )
    for sample in report.error_samples:
        print(f"  error: {sample}")
    if args.json_out:
        out = {
            "clients": args.clients, "seconds": round(report.seconds, 2), "batch": args.batch, "topk": args.topk,
            "served": report.served, "errors": report.errors, "p50_ms": round(report.percentile(50), 2),
            "p99_ms": round(report.percentile(99), 2), "rss_before_mib": round(rss[0] / 2**20, 1),
            "rss_after_mib": round(rss[1] / 2**20, 1), "index": str(args.index or "64-passage wiki (temp)"),
        }  # fmt: skip
        Path(args.json_out).write_text(json.dumps(out, indent=2) + "\n")
    return 1 if report.errors else 0


def _tiny_index(tmp: Path) -> Path:
    from hrpo.retrieval.encoders import resolve_spec
    from hrpo.retrieval.index import build_index

    corpus = write_wiki_corpus(tmp / "wiki64.jsonl", n=64)
    build_index(corpus, tmp / "index", resolve_spec("minilm"), factory="Flat")
    return tmp / "index"


def _measure(url: str, server: psutil.Process, args: argparse.Namespace):
    """Warm-up, RSS, timed run, RSS. Answers must equal the server's first answer to the same batch."""
    first: dict[tuple[str, ...], list] = {}
    lock = threading.Lock()

    def payload(client: int, i: int) -> dict:
        start = (client * 5 + i * args.batch) % len(QUERIES)
        return {
            "queries": [QUERIES[(start + j) % len(QUERIES)] for j in range(args.batch)],
            "topk": args.topk,
        }

    def consistent(body: dict, answer: dict) -> bool:
        ids = [[d["id"] for d in per_q] for per_q in answer["result"]]
        with lock:
            return first.setdefault(tuple(body["queries"]), ids) == ids

    warm = run_load(url, payload, args.clients, args.warmup, consistent)
    before = server.memory_info().rss
    report = run_load(url, payload, args.clients, args.seconds, consistent, max_requests=args.max_requests)
    report.errors += warm.errors  # a failure during the warm-up counts too
    report.error_samples = (warm.error_samples + report.error_samples)[:5]
    return report, (before, server.memory_info().rss)


if __name__ == "__main__":
    sys.exit(main())
