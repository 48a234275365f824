"""``hrpo retrieval build | search | serve | attach``: the command over the :mod:`hrpo.retrieval` library.

Examples (the shared 21.5k-passage corpus, offline MiniLM)::

    hrpo retrieval build --corpus ../shared/data/wiki_corpus/corpus.jsonl --out indexes/wiki_minilm --bm25
    hrpo retrieval build --from_index indexes/wiki_minilm --out indexes/wiki_hnsw --factory HNSW32
    hrpo retrieval search --index indexes/wiki_minilm --query "who discovered penicillin" --topk 3
    hrpo retrieval serve --index indexes/wiki_minilm --port 8000
    hrpo retrieval attach --index indexes/wiki_minilm --input in.jsonl --output out.jsonl --topk 3

Only argparse is imported at module level; torch, faiss and friends load inside the command functions. The
encoder name ``minilm`` is an alias that :mod:`hrpo.retrieval.encoders` resolves through hrpo's entry point
(:func:`hrpo.assets.minilm_path`); any other value is a folder or hub id.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

from hrpo.commands import run_action


def _positive(value: str) -> int:
    n = int(value)
    if n < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {n}")
    return n


def _seconds(value: str) -> float:
    t = float(value)
    if not t > 0:
        raise argparse.ArgumentTypeError(f"must be a positive number of seconds, got {value}")
    return t


def _add_retriever_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--index", required=True, help="index directory written by `hrpo retrieval build`")
    p.add_argument(
        "--method",
        choices=["dense", "bm25", "hybrid"],
        default="dense",
        help="dense (FAISS), bm25, or hybrid = reciprocal-rank fusion of both (bm25/hybrid need --bm25 at build)",
    )
    p.add_argument(
        "--encoder",
        default=None,
        help="query encoder; default: the one recorded in meta.json (a different one is refused)",
    )
    p.add_argument("--nprobe", type=_positive, default=None, help="IVF lists probed per query (IVF indexes)")
    p.add_argument("--ef_search", type=_positive, default=None, help="HNSW efSearch (HNSW indexes)")
    p.add_argument(
        "--mmap", action="store_true", help="memory-map flat index storage instead of reading it in"
    )
    p.add_argument("--gpu", action="store_true", help="shard the FAISS index over all GPUs (needs faiss-gpu)")
    p.add_argument("--device", default=None, help="torch device for the encoder (default: cuda if available)")
    p.add_argument(
        "--corpus", default=None, help="corpus path if it moved since the build (default: from meta.json)"
    )


def _load(args: argparse.Namespace):
    from hrpo.retrieval.search import load_retriever

    kwargs = {"corpus": args.corpus}
    if args.method != "bm25":
        kwargs.update(
            encoder=args.encoder,
            nprobe=args.nprobe,
            ef_search=args.ef_search,
            mmap=args.mmap,
            use_gpu=args.gpu,
            device=args.device,
        )
    return load_retriever(args.index, args.method, **kwargs)


def cmd_build(args: argparse.Namespace) -> int:
    from hrpo.retrieval.bm25 import build_bm25
    from hrpo.retrieval.encoders import resolve_spec
    from hrpo.retrieval.index import build_index, read_meta, rebuild_index

    if args.from_index:
        meta = rebuild_index(
            args.from_index,
            args.out,
            args.factory,
            args.shards,
            args.train_size,
            args.add_chunk,
            args.ef_construction,
        )
        corpus, limit = meta["corpus"]["path"], meta["count"]
    else:
        if not args.corpus:
            print("error: --corpus is required unless --from_index is given", file=sys.stderr)
            return 2
        spec = resolve_spec(
            args.encoder, args.pooling, args.query_prefix, args.passage_prefix, args.max_length
        )
        meta = build_index(
            args.corpus,
            args.out,
            spec,
            factory=args.factory,
            shards=args.shards,
            save_embeddings=args.save_embeddings,
            batch_size=args.batch_size,
            encode_chunk=args.encode_chunk,
            add_chunk=args.add_chunk,
            train_size=args.train_size,
            ef_construction=args.ef_construction,
            limit=args.max_passages,
            device=args.device,
        )
        corpus, limit = args.corpus, args.max_passages
    if args.bm25:
        build_bm25(corpus, args.out, limit=limit)
    meta = read_meta(args.out)
    print(
        f"index {args.out}: {meta['count']} passages, {meta['factory']}, {len(meta['shards'])} shard(s), "
        f"dim {meta['dim']}, built in {meta['build_seconds']} s"
    )
    return 0


def cmd_search(args: argparse.Namespace) -> int:
    queries = list(args.query or [])
    if args.queries_file:
        with open(args.queries_file) as f:
            queries += [line.strip() for line in f if line.strip()]
    if not queries:
        print("error: give --query and/or --queries_file", file=sys.stderr)
        return 2
    retriever = _load(args)
    results = []
    for start in range(0, len(queries), args.batch_size):
        batch = queries[start : start + args.batch_size]
        for q, hits in zip(batch, retriever.search(batch, args.topk), strict=True):
            results.append({"query": q, "hits": [{**h.document(), "score": h.score} for h in hits]})
    if args.json:
        for r in results:
            print(json.dumps(r, ensure_ascii=False))
    else:
        for r in results:
            print(f"# {r['query']}")
            for rank, h in enumerate(r["hits"], start=1):
                title, _, text = h["contents"].partition("\n")
                print(f"{rank:3d}. {h['score']:.4f}  {h['id']}  {title}  {text[:100]}")
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    from hrpo.retrieval.server import Limits, create_app, serve

    api_key = os.environ.get(args.api_key_env) if args.api_key_env else None
    if args.api_key_env and not api_key:
        print(f"error: --api_key_env {args.api_key_env} is set but that variable is empty", file=sys.stderr)
        return 2
    retriever = _load(args)
    limits = Limits(
        max_queries=args.max_queries,
        max_topk=args.max_topk,
        max_body_bytes=args.max_body_bytes,
        body_timeout_s=args.body_timeout_s,
    )
    app = create_app(retriever, limits, args.topk, api_key, info={"index": args.index, "method": args.method})
    serve(app, args.host, args.port)
    return 0


def cmd_attach(args: argparse.Namespace) -> int:
    from hrpo.retrieval.attach import attach_file

    n = attach_file(
        args.input, args.output, args.index, args.topk, args.question_field, args.batch_size, args.method
    )
    print(f"wrote {n} rows with {args.topk} contexts each to {args.output}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="hrpo retrieval",
        description="Build a FAISS (and optional BM25) index over a passage corpus, search it, serve it over HTTP "
        "with Search-R1's /retrieve API, or attach top-k contexts to QA rows.",
    )
    sub = parser.add_subparsers(title="commands", metavar="<command>")
    fmt = argparse.ArgumentDefaultsHelpFormatter

    b = sub.add_parser("build", help="encode a corpus and build a FAISS index directory", formatter_class=fmt)
    b.add_argument("--corpus", help="jsonl corpus: {id,title,text} or {id,contents} per line")
    b.add_argument("--out", required=True, help="index directory to write")
    b.add_argument(
        "--factory",
        default="Flat",
        help="FAISS factory string, inner product: Flat, HNSW32, HNSW64, IVF4096,Flat, IVF65536,PQ96, "
        "IVF65536,SQ8, OPQ96,IVF65536,PQ96, ...",
    )
    b.add_argument(
        "--encoder", default="minilm", help="HF hub id or folder; 'minilm' = offline all-MiniLM-L6-v2"
    )
    b.add_argument(
        "--pooling", choices=["mean", "cls"], default=None, help="default: from the model family/folder"
    )
    b.add_argument("--query_prefix", default=None, help="default: 'query: ' for e5 models, else empty")
    b.add_argument("--passage_prefix", default=None, help="default: 'passage: ' for e5 models, else empty")
    b.add_argument("--max_length", type=_positive, default=256, help="token limit per passage and query")
    b.add_argument("--shards", type=_positive, default=1, help="split rows into this many index files")
    b.add_argument(
        "--save_embeddings",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="keep embeddings.npy (n x dim float32) so --from_index can rebuild other types without encoding",
    )
    b.add_argument(
        "--from_index", default=None, help="rebuild from this index's saved embeddings (no encoding)"
    )
    b.add_argument("--batch_size", type=_positive, default=64, help="passages per encoder forward")
    b.add_argument("--encode_chunk", type=_positive, default=8192, help="passages read and encoded per chunk")
    b.add_argument("--add_chunk", type=_positive, default=65536, help="vectors added to FAISS per call")
    b.add_argument(
        "--train_size", type=_positive, default=None, help="training sample (default ~40 per IVF list)"
    )
    b.add_argument("--ef_construction", type=_positive, default=None, help="HNSW efConstruction (default 40)")
    b.add_argument("--bm25", action="store_true", help="also build a BM25 index (for --method bm25/hybrid)")
    b.add_argument("--max_passages", type=_positive, default=None, help="index only the first N passages")
    b.add_argument("--device", default=None, help="torch device for encoding (default: cuda if available)")
    b.set_defaults(func=cmd_build)

    s = sub.add_parser("search", help="print top-k passages for queries", formatter_class=fmt)
    _add_retriever_flags(s)
    s.add_argument("--query", action="append", help="a query (repeatable)")
    s.add_argument("--queries_file", default=None, help="text file with one query per line")
    s.add_argument("--topk", type=_positive, default=3, help="passages per query")
    s.add_argument("--batch_size", type=_positive, default=64, help="queries per search call")
    s.add_argument("--json", action="store_true", help="print one JSON object per query")
    s.set_defaults(func=cmd_search)

    v = sub.add_parser(
        "serve", help="serve POST /retrieve (Search-R1 API) and GET /health", formatter_class=fmt
    )
    _add_retriever_flags(v)
    v.add_argument("--host", default="127.0.0.1", help="bind address; use 0.0.0.0 only on a trusted network")
    v.add_argument("--port", type=int, default=8000, help="TCP port")
    v.add_argument("--topk", type=_positive, default=3, help="top-k when a request omits it")
    v.add_argument("--max_queries", type=_positive, default=512, help="queries per request limit (413 above)")
    v.add_argument("--max_topk", type=_positive, default=100, help="largest top-k accepted (422 above)")
    v.add_argument("--max_body_bytes", type=_positive, default=1 << 20, help="request body limit (413 above)")
    v.add_argument(
        "--body_timeout_s",
        type=_seconds,
        default=30.0,
        help="seconds a client may take to send its body (408 after, so a trickling client frees its slot)",
    )
    v.add_argument(
        "--api_key_env",
        default=None,
        help="name of an environment variable holding an API key; every route but /health then needs header "
        "X-API-Key (the key is never logged)",
    )
    v.set_defaults(func=cmd_serve)

    a = sub.add_parser(
        "attach", help="write a dataset copy whose rows carry top-k 'contexts'", formatter_class=fmt
    )
    _add_retriever_flags(a)
    a.add_argument("--input", required=True, help="dataset rows: .jsonl or a .json list")
    a.add_argument("--output", required=True, help="output .jsonl with a 'contexts' list per row")
    a.add_argument("--topk", type=_positive, default=3, help="contexts per row")
    a.add_argument("--question_field", default="question", help="row field holding the question")
    a.add_argument("--batch_size", type=_positive, default=64, help="questions per search call")
    a.set_defaults(func=cmd_attach)
    return parser


def main(argv: list[str] | None = None) -> int:
    try:
        return run_action(build_parser(), argv)
    except ValueError as err:
        # hrpo.retrieval's own errors (IndexDirectoryError, CorpusError, EncoderMismatchError) name the file
        # and the fix: print them, not a traceback. Checked by module so --help imports nothing heavy.
        if not type(err).__module__.startswith(("hrpo.retrieval", "retrieval.")):
            raise
        print(f"hrpo retrieval: error: {err}", file=sys.stderr)
        return 2
