"""Retrieval benchmark on the shared corpus: encode speed, index types, retrieval quality, server overhead.

Run from the repository root in the README's ``.venv``, with the shared data in ``../shared/data`` (about
15-20 minutes on 2 CPU cores for the full 21,536-passage corpus)::

    python benchmark/retrieval_bench.py --json_out retrieval_bench.json
    python benchmark/retrieval_bench.py --max_passages 3000   # quick run on a prefix of the corpus

It measures, in one run and against baselines measured in the same run:

1. passage encoding: ``hrpo.retrieval.encoders.Encoder`` vs ``SentenceTransformer.encode`` of the same model on the
   same texts (ratio, target >= 1.0);
2. build time (from saved embeddings), bytes per passage, search QPS at batch 32 and recall@10 against Flat for
   Flat, HNSW32, IVF-PQ and IVF-SQ8;
3. HotpotQA-500 gold-passage recall@1/3/10 and NQ-open dev / Bamboogle answer-string hit@1/3/10 for dense,
   BM25 and RRF-fused retrieval;
4. ``POST /retrieve`` over real HTTP vs in-process ``search`` at batch 32 (ratio, target >= 0.8);
5. a memory projection for 21M x 768-d passages (wiki-18 with e5-base-v2) per index type.

The MiniLM embeddings and indexes are kept in ``--work_dir`` (outside the repository); ``--reuse`` skips the
full-corpus encode when a previous run left them there.
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import string
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "data"
WIKI18_PASSAGES = 21_015_324  # DPR psgs_w100 (wiki-18) as used by FlashRAG / Search-R1
E5_DIM = 768


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--data_dir", default=str(SHARED), help="shared benchmark data folder")
    p.add_argument("--work_dir", default="/tmp/hrpo_retrieval_bench", help="where embeddings and indexes go")
    p.add_argument("--max_passages", type=int, default=None, help="use only the first N corpus passages")
    p.add_argument(
        "--sources",
        nargs="+",
        default=None,
        help="keep only these id prefixes, each PREFIX=N (first N) or PREFIX=all, e.g. hotpotqa-ircot=all "
        "wiki18-sr1traj=2000; the subset goes to --work_dir (a quicker run that keeps every HotpotQA passage)",
    )
    p.add_argument("--encode_sample", type=int, default=1000, help="passages in the encoder-vs-ST comparison")
    p.add_argument("--encode_reps", type=int, default=2, help="alternating repeats of that comparison")
    p.add_argument(
        "--factories",
        nargs="+",
        default=["HNSW32", "IVF256,PQ48", "IVF256,SQ8"],
        help="index types besides Flat",
    )
    p.add_argument("--nprobe", type=int, default=16, help="IVF lists probed")
    p.add_argument("--ef_search", type=int, default=64, help="HNSW efSearch")
    p.add_argument(
        "--server_batches", type=int, default=20, help="batches of 32 NQ queries for the server test"
    )
    p.add_argument(
        "--server_reps", type=int, default=5, help="alternating repeats of in-process vs HTTP (median)"
    )
    p.add_argument("--reuse", action="store_true", help="reuse the Flat index + embeddings in --work_dir")
    p.add_argument("--json_out", default=None, help="also write all numbers to this JSON file")
    return p.parse_args()


def read_jsonl(path: Path) -> list[dict]:
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def normalize(text: str) -> str:
    """SQuAD-style answer normalisation: lowercase, drop punctuation and articles, squeeze spaces."""
    text = text.lower()
    text = "".join(ch for ch in text if ch not in set(string.punctuation))
    text = re.sub(r"\b(a|an|the)\b", " ", text)
    return " ".join(text.split())


def hit_rates(contents: list[list[str]], answers: list[list[str]], ks=(1, 3, 10)) -> dict[str, float]:
    """Share of questions with a normalised gold answer inside one of the top-k normalised passages."""
    out = {}
    for k in ks:
        hits = 0
        for docs, golds in zip(contents, answers, strict=True):
            text = [normalize(d) for d in docs[:k]]
            gold = [normalize(g) for g in golds if normalize(g)]
            hits += any(g in t for g in gold for t in text)
        out[f"hit@{k}"] = round(hits / len(answers), 4)
    return out


def gold_recall(ids: list[list[str]], gold: list[list[str]], ks=(1, 3, 10)) -> dict[str, float]:
    """Share of gold passages found in the top-k (HotpotQA has 2 per question), micro-averaged."""
    total = sum(len(g) for g in gold)
    return {
        f"recall@{k}": round(sum(len(set(i[:k]) & set(g)) for i, g in zip(ids, gold, strict=True)) / total, 4)
        for k in ks
    }


def subset_corpus(corpus: Path, sources: list[str], out: Path) -> Path:
    """Write the passages whose id prefix is listed (first N per prefix, or all) to ``out``."""
    quota = {}
    for item in sources:
        prefix, _, n = item.partition("=")
        quota[prefix] = None if n in ("", "all") else int(n)
    kept = dict.fromkeys(quota, 0)
    with open(corpus) as f, open(out, "w") as g:
        for line in f:
            prefix = json.loads(line)["id"].rsplit("-", 1)[0]
            if prefix in quota and (quota[prefix] is None or kept[prefix] < quota[prefix]):
                kept[prefix] += 1
                g.write(line)
    print("subset:", kept, flush=True)
    return out


def timed(fn, *args, **kwargs):
    t0 = time.perf_counter()
    out = fn(*args, **kwargs)
    return out, time.perf_counter() - t0


def bench_encode(args, texts: list[str]) -> dict:
    """Our Encoder vs SentenceTransformer.encode (batch 64, normalised), alternating, same texts."""
    from sentence_transformers import SentenceTransformer

    from hrpo.retrieval.encoders import Encoder, model_path, resolve_spec

    ours = Encoder(resolve_spec("minilm"), device="cpu")
    st = SentenceTransformer(model_path("minilm"), device="cpu")
    st.max_seq_length = ours.spec.max_length
    ours.encode(texts[:64])
    st.encode(texts[:64], batch_size=64, normalize_embeddings=True)
    t_ours, t_st = [], []
    for _ in range(args.encode_reps):
        a, t = timed(ours.encode, texts, "passage", 64)
        t_ours.append(t)
        b, t = timed(st.encode, texts, batch_size=64, normalize_embeddings=True)
        t_st.append(t)
    cos = float(np.min(np.sum(a * b, axis=1)))
    ours_pps, st_pps = len(texts) / statistics.median(t_ours), len(texts) / statistics.median(t_st)
    return {
        "passages": len(texts),
        "reps": args.encode_reps,
        "ours_passages_per_s": round(ours_pps, 2),
        "st_passages_per_s": round(st_pps, 2),
        "ratio_ours_over_st": round(ours_pps / st_pps, 3),
        "min_cosine_ours_vs_st": round(cos, 6),
    }


def dir_bytes(index_dir: Path, meta: dict) -> int:
    return sum((index_dir / s["file"]).stat().st_size for s in meta["shards"])


def search_qps(retriever, qvecs: np.ndarray, k: int = 10, batch: int = 32) -> tuple[float, np.ndarray]:
    """Vector-only search QPS at ``batch`` (best of 3 passes) and the (q, k) rows of the last pass."""
    retriever.search_vectors(qvecs[:batch], k)  # warm-up
    best, rows = 0.0, None
    for _ in range(3):
        t0 = time.perf_counter()
        rows = np.concatenate(
            [retriever.search_vectors(qvecs[s : s + batch], k)[1] for s in range(0, len(qvecs), batch)]
        )
        best = max(best, len(qvecs) / (time.perf_counter() - t0))
    return best, rows


def projection() -> list[dict]:
    """Memory for 21M x 768-d float32 vectors per index type: codes + ids + graph links + coarse centroids."""
    n, d = WIKI18_PASSAGES, E5_DIM
    nlist = 65_536
    rows = [
        ("Flat (the anchors' e5_Flat.index)", "Flat", 4 * d, 0),
        ("Flat, fp16 scalar quantizer", "SQfp16", 2 * d, 0),
        ("HNSW32 over float32", "HNSW32", 4 * d + 32 * 2 * 4, 0),
        ("HNSW32 over SQ8", "HNSW32,SQ8", d + 32 * 2 * 4, 0),
        ("IVF-Flat", f"IVF{nlist},Flat", 4 * d + 8, nlist * d * 4),
        ("IVF-SQ8", f"IVF{nlist},SQ8", d + 8, nlist * d * 4),
        ("IVF-PQ 96 bytes", f"IVF{nlist},PQ96", 96 + 8, nlist * d * 4),
        ("OPQ + IVF-PQ 64 bytes", f"OPQ64,IVF{nlist},PQ64", 64 + 8, nlist * d * 4 + d * d * 4),
    ]
    out = []
    for label, factory, per_vec, fixed in rows:
        out.append(
            {
                "index": label,
                "factory": factory,
                "bytes_per_passage": per_vec,
                "GB": round((n * per_vec + fixed) / 1e9, 1),
            }
        )
    return out


def main() -> None:
    args = parse_args()
    import torch

    from hrpo.retrieval.bm25 import build_bm25
    from hrpo.retrieval.corpus import iter_corpus
    from hrpo.retrieval.encoders import resolve_spec
    from hrpo.retrieval.index import build_index, read_meta, rebuild_index
    from hrpo.retrieval.search import BM25Retriever, DenseRetriever, rrf
    from hrpo.retrieval.server import BackgroundServer, create_app

    data = Path(args.data_dir)
    corpus = data / "wiki_corpus" / "corpus.jsonl"
    work = Path(args.work_dir)
    work.mkdir(parents=True, exist_ok=True)
    results: dict = {
        "threads": torch.get_num_threads(),
        "max_passages": args.max_passages,
        "sources": args.sources,
    }
    if args.sources:
        corpus = subset_corpus(corpus, args.sources, work / "corpus_subset.jsonl")

    # 1. Encoder vs sentence-transformers on the same passages.
    sample = [p.contents for p in iter_corpus(corpus, limit=args.encode_sample)]
    results["encode"] = bench_encode(args, sample)
    print("encode:", results["encode"], flush=True)

    # 2. Full Flat build (encode + add, embeddings saved), BM25, then other types from the saved embeddings.
    flat_dir = work / "flat"
    reuse = args.reuse and (flat_dir / "meta.json").is_file()
    if reuse:
        meta = read_meta(flat_dir)
        reuse = meta["count"] == (args.max_passages or meta["count"]) and meta.get("embeddings")
    if not reuse:
        meta, secs = timed(
            build_index, corpus, flat_dir, resolve_spec("minilm"), "Flat", limit=args.max_passages
        )
        results["corpus_encode"] = {
            "passages": meta["count"],
            "seconds": round(secs, 1),
            "passages_per_s": round(meta["count"] / secs, 2),
        }
        _, secs = timed(build_bm25, corpus, flat_dir, limit=args.max_passages, show_progress=False)
        results["bm25_build_seconds"] = round(secs, 1)
    meta = read_meta(flat_dir)
    n = meta["count"]
    print("corpus:", n, "passages;", results.get("corpus_encode"), flush=True)

    dense = DenseRetriever(flat_dir, device="cpu")
    bm25 = BM25Retriever(flat_dir)
    hotpot = read_jsonl(data / "hotpotqa" / "ircot_dev_subsampled_500.jsonl")
    gold_map = json.loads((data / "hotpotqa" / "ircot_dev_subsampled_500.gold_passage_ids.json").read_text())
    nq = read_jsonl(data / "nq_open" / "NQ-open.dev.jsonl")
    bamboogle = read_jsonl(data / "bamboogle" / "test.jsonl")
    sets = {
        "hotpotqa500": ([q["question_text"] for q in hotpot], [gold_map[q["question_id"]] for q in hotpot]),
        "nq_open_dev": ([q["question"] for q in nq], [q["answer"] for q in nq]),
        "bamboogle": ([q["question"] for q in bamboogle], [q["golden_answers"] for q in bamboogle]),
    }
    qvecs = {}
    for name, (questions, _) in sets.items():
        qvecs[name], secs = timed(dense.encode_queries, questions)
        print(f"encoded {len(questions)} {name} queries in {secs:.1f} s", flush=True)

    # Index types: build from embeddings, size, vector-search QPS at batch 32, recall@10 vs Flat (NQ queries).
    flat_qps, flat_rows = search_qps(dense, qvecs["nq_open_dev"])
    types = [
        {
            "factory": "Flat",
            "params": "exact",
            "build_s_from_embeddings": None,
            "bytes_per_passage": round(dir_bytes(flat_dir, meta) / n, 1),
            "qps_batch32": round(flat_qps, 1),
            "recall@10_vs_flat": 1.0,
        }
    ]
    for factory in args.factories:
        out_dir = work / re.sub(r"[^A-Za-z0-9]+", "_", factory)
        m, secs = timed(rebuild_index, flat_dir, out_dir, factory, show_progress=False)
        r = DenseRetriever(out_dir, device="cpu", nprobe=args.nprobe, ef_search=args.ef_search)
        r.encoder = dense.encoder  # share the loaded encoder object; only vector search is timed here
        qps, rows = search_qps(r, qvecs["nq_open_dev"])
        recall = float(np.mean([len(set(a) & set(b)) / 10 for a, b in zip(rows, flat_rows, strict=True)]))
        params = f"nprobe {args.nprobe}" if "IVF" in factory else f"efSearch {args.ef_search}"
        types.append(
            {
                "factory": factory,
                "params": params,
                "build_s_from_embeddings": round(secs, 2),
                "bytes_per_passage": round(dir_bytes(out_dir, m) / n, 1),
                "qps_batch32": round(qps, 1),
                "recall@10_vs_flat": round(recall, 4),
            }
        )
        print("index:", types[-1], flush=True)
    results["index_types"] = types

    # 3. Quality: dense (Flat), BM25, RRF fusion of each one's top 50.
    quality: dict = {}
    for name, (questions, golds) in sets.items():
        _, d_rows = dense.search_vectors(qvecs[name], 50)
        _, b_rows = bm25.search_rows(questions, 50)
        _, f_rows = rrf([d_rows, b_rows], 10)
        for method, rows in (("dense", d_rows[:, :10]), ("bm25", b_rows[:, :10]), ("fused", f_rows)):
            docs = [[dense.docs.get(int(r)) for r in row if r >= 0] for row in rows]
            if name == "hotpotqa500":
                score = gold_recall([[d["id"] for d in ds] for ds in docs], golds)
            else:
                score = hit_rates([[d["contents"] for d in ds] for ds in docs], golds)
            quality.setdefault(name, {})[method] = score
        print("quality:", name, quality[name], flush=True)
    results["quality"] = quality

    # 4. Server over HTTP vs in-process, batches of 32 NQ questions, top-3 with scores (alternating repeats).
    import httpx

    batches = [sets["nq_open_dev"][0][s : s + 32] for s in range(0, 32 * args.server_batches, 32)]
    with BackgroundServer(create_app(dense)) as srv, httpx.Client(base_url=srv.url, timeout=120) as client:
        client.post("/retrieve", json={"queries": batches[0], "topk": 3, "return_scores": True})
        dense.search(batches[0], 3)
        t_in, t_http = [], []
        for _ in range(args.server_reps):
            _, t = timed(lambda: [dense.search(b, 3) for b in batches])
            t_in.append(t)
            _, t = timed(
                lambda: [
                    client.post(
                        "/retrieve", json={"queries": b, "topk": 3, "return_scores": True}
                    ).raise_for_status()
                    for b in batches
                ]
            )
            t_http.append(t)
    nqueries = 32 * len(batches)
    qps_in, qps_http = nqueries / statistics.median(t_in), nqueries / statistics.median(t_http)
    results["server"] = {
        "queries": nqueries,
        "batch": 32,
        "topk": 3,
        "in_process_qps": round(qps_in, 1),
        "http_qps": round(qps_http, 1),
        "ratio_http_over_in_process": round(qps_http / qps_in, 3),
        "per_rep_ratios": [round(a / b, 3) for a, b in zip(t_in, t_http, strict=True)],
    }
    print("server:", results["server"], flush=True)

    # 5. Projection to wiki-18 (21M x 768) per index type.
    results["projection_21M_x_768"] = projection()
    print_report(results)
    if args.json_out:
        Path(args.json_out).write_text(json.dumps(results, indent=2) + "\n")


def print_report(r: dict) -> None:
    e = r["encode"]
    print("\n## Markdown summary\n")
    print(
        f"Encode ({e['passages']} passages, batch 64, {r['threads']} threads): ours {e['ours_passages_per_s']} psg/s vs "
        f"sentence-transformers {e['st_passages_per_s']} psg/s -> **ratio {e['ratio_ours_over_st']}** "
        f"(min cosine {e['min_cosine_ours_vs_st']})"
    )
    if "corpus_encode" in r:
        c = r["corpus_encode"]
        print(
            f"Full build (encode + Flat add): {c['passages']} passages in {c['seconds']} s = {c['passages_per_s']} psg/s; "
            f"BM25 build {r.get('bm25_build_seconds')} s"
        )
    print(
        "\n| index | search params | build s (from embeddings) | bytes/passage | QPS @ batch 32 | recall@10 vs Flat |"
    )
    print("|---|---|---|---|---|---|")
    for t in r["index_types"]:
        print(
            f"| {t['factory']} | {t['params']} | {t['build_s_from_embeddings']} | {t['bytes_per_passage']} | {t['qps_batch32']} | {t['recall@10_vs_flat']} |"
        )
    print("\n| set | metric | dense | BM25 | fused (RRF) |")
    print("|---|---|---|---|---|")
    for name, per in r["quality"].items():
        for metric in per["dense"]:
            print(
                f"| {name} | {metric} | {per['dense'][metric]} | {per['bm25'][metric]} | {per['fused'][metric]} |"
            )
    s = r["server"]
    print(
        f"\nServer: {s['http_qps']} QPS over HTTP vs {s['in_process_qps']} in process ({s['queries']} queries, batch 32, "
        f"top-3) -> **ratio {s['ratio_http_over_in_process']}**"
    )
    print("\n| index (21M x 768) | factory | bytes/passage | GB |")
    print("|---|---|---|---|")
    for p in r["projection_21M_x_768"]:
        print(f"| {p['index']} | {p['factory']} | {p['bytes_per_passage']} | {p['GB']} |")


if __name__ == "__main__":
    main()
