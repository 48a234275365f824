"""FAISS index directories: build (encode, train, chunked add, shards), ``meta.json``, load.

An index directory holds::

    meta.json            encoder spec + weight fingerprint, dim, count, factory, shards, corpus path/size/sha256
    offsets.npy          int64 (n + 1,): row -> byte offset of the passage in the corpus (the id map)
    shard_00.faiss ...   one FAISS index per contiguous row range (row ids are global: shard start + local id)
    embeddings.npy       optional float32 (n, dim) memmap, so another index type can be built without re-encoding

``meta.json`` is written last, so a directory without it is an interrupted build. Memory during a build is
bounded by the index itself plus one encode chunk and one add chunk; the embeddings go to a disk memmap.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import re
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from .corpus import iter_corpus, scan_corpus
from .encoders import Encoder, EncoderSpec

META_FILE = "meta.json"
OFFSETS_FILE = "offsets.npy"
EMBEDDINGS_FILE = "embeddings.npy"
FORMAT_VERSION = 1


def make_index(dim: int, factory: str):
    """An empty inner-product FAISS index from a factory string (``Flat``, ``HNSW32``, ``IVF4096,PQ64``, ...)."""
    import faiss

    try:
        return faiss.index_factory(dim, factory, faiss.METRIC_INNER_PRODUCT)
    except RuntimeError as err:
        raise ValueError(f"bad FAISS factory string {factory!r} for dim {dim}: {err}") from None


def default_train_size(factory: str, n: int) -> int:
    """Training sample: ~40 points per IVF list (FAISS warns below 39) and >= 10k for PQ/SQ codebooks."""
    m = re.search(r"IVF(\d+)", factory)
    want = max(10_000, 40 * int(m.group(1))) if m else 65_536
    return min(n, want)


def set_search_params(index, nprobe: int | None = None, ef_search: int | None = None) -> None:
    """Set IVF ``nprobe`` / HNSW ``efSearch`` through ParameterSpace (reaches inside OPQ/refine wrappers)."""
    import faiss

    ps = faiss.ParameterSpace()
    for name, value in (("nprobe", nprobe), ("efSearch", ef_search)):
        if value is not None:
            # ParameterSpace raises for a parameter the index type does not have; that is not an error here.
            with contextlib.suppress(RuntimeError):
                ps.set_index_parameter(index, name, value)


def shard_bounds(n: int, shards: int) -> list[tuple[int, int]]:
    """``shards`` contiguous ``[start, end)`` row ranges covering ``range(n)``, sizes differing by at most 1."""
    if shards < 1:
        raise ValueError("shards must be >= 1")
    edges = np.linspace(0, n, shards + 1).round().astype(int)
    return [(int(a), int(b)) for a, b in itertools.pairwise(edges)]


class ShardedWriter:
    """Routes globally numbered row chunks into per-shard indexes cloned from one (trained) template."""

    def __init__(self, template, bounds: list[tuple[int, int]]) -> None:
        import faiss

        self.bounds = bounds
        self.indexes = [faiss.clone_index(template) for _ in bounds]

    def add(self, start: int, vectors: np.ndarray) -> None:
        """Add ``vectors`` (m, dim) that are global rows ``start .. start + m``."""
        end = start + len(vectors)
        for (a, b), index in zip(self.bounds, self.indexes, strict=True):
            lo, hi = max(a, start), min(b, end)
            if lo < hi:
                index.add(np.ascontiguousarray(vectors[lo - start : hi - start], dtype=np.float32))

    def write(self, out_dir: Path) -> list[dict]:
        import faiss

        files = []
        for i, ((a, b), index) in enumerate(zip(self.bounds, self.indexes, strict=True)):
            name = f"shard_{i:02d}.faiss"
            faiss.write_index(index, str(out_dir / name))
            files.append({"file": name, "start": a, "end": b})
        return files


def train_template(dim: int, factory: str, sample: np.ndarray, ef_construction: int | None = None):
    """Empty index of ``factory``, trained on ``sample`` (m, dim) if the type needs training."""
    index = make_index(dim, factory)
    if ef_construction is not None:
        import faiss

        hnsw = getattr(faiss.downcast_index(index), "hnsw", None)
        if hnsw is not None:
            hnsw.efConstruction = ef_construction
    if not index.is_trained:
        index.train(np.ascontiguousarray(sample, dtype=np.float32))
    return index


def build_from_vectors(
    vectors: np.ndarray,
    factory: str,
    shards: int = 1,
    train_size: int | None = None,
    add_chunk: int = 65_536,
    ef_construction: int | None = None,
    seed: int = 0,
    show_progress: bool = False,
) -> ShardedWriter:
    """Index ``vectors`` (n, dim), possibly a read-only memmap, adding ``add_chunk`` rows at a time."""
    from tqdm.auto import tqdm

    n, dim = vectors.shape
    size = train_size or default_train_size(factory, n)
    rows = np.sort(np.random.default_rng(seed).choice(n, size=min(size, n), replace=False))
    probe = make_index(dim, factory)
    sample = vectors[rows] if not probe.is_trained else vectors[:0]
    writer = ShardedWriter(train_template(dim, factory, sample, ef_construction), shard_bounds(n, shards))
    for start in tqdm(range(0, n, add_chunk), desc=f"add {factory}", unit="chunk", disable=not show_progress):
        writer.add(start, np.asarray(vectors[start : start + add_chunk]))
    return writer


def _chunks(corpus: str, size: int, limit: int | None) -> Iterator[tuple[int, list[str]]]:
    """(first row, contents list) chunks of the streamed corpus."""
    buf: list[str] = []
    first = 0
    for p in iter_corpus(corpus, limit=limit):
        if not buf:
            first = p.row
        buf.append(p.contents)
        if len(buf) == size:
            yield first, buf
            buf = []
    if buf:
        yield first, buf


def build_index(
    corpus: str | os.PathLike,
    out_dir: str | os.PathLike,
    spec: EncoderSpec,
    factory: str = "Flat",
    shards: int = 1,
    save_embeddings: bool = True,
    batch_size: int = 64,
    encode_chunk: int = 8192,
    add_chunk: int = 65_536,
    train_size: int | None = None,
    ef_construction: int | None = None,
    limit: int | None = None,
    device: str | None = None,
    encoder: Encoder | None = None,
    show_progress: bool = True,
) -> dict:
    """Encode ``corpus`` with ``spec`` and write an index directory; returns its meta dict.

    Without ``save_embeddings``, index types that need training first encode a random training sample
    (``train_size`` passages, encoded twice overall) and then stream encode+add, so no (n, dim) array exists.
    """
    from tqdm.auto import tqdm

    t0 = time.perf_counter()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / META_FILE).unlink(missing_ok=True)
    offsets, sha = scan_corpus(corpus, limit=limit)
    n = len(offsets) - 1
    if n == 0:
        raise ValueError(f"corpus {corpus} has no passages")
    np.save(out / OFFSETS_FILE, offsets)
    enc = encoder or Encoder(spec, device=device)
    dim = enc.dim
    bar = tqdm(total=n, desc="encode passages", unit="psg", disable=not show_progress)

    if save_embeddings:
        emb = np.lib.format.open_memmap(out / EMBEDDINGS_FILE, mode="w+", dtype=np.float32, shape=(n, dim))
        for first, texts in _chunks(str(corpus), encode_chunk, limit):
            emb[first : first + len(texts)] = enc.encode(texts, "passage", batch_size, progress=bar)
        emb.flush()
        bar.close()
        del emb
        vectors = np.load(out / EMBEDDINGS_FILE, mmap_mode="r")
        writer = build_from_vectors(
            vectors, factory, shards, train_size, add_chunk, ef_construction, show_progress=show_progress
        )
    else:
        from .docstore import DocStore

        probe = make_index(dim, factory)
        sample = np.zeros((0, dim), np.float32)
        if not probe.is_trained:
            size = min(n, train_size or default_train_size(factory, n))
            rows = np.sort(np.random.default_rng(0).choice(n, size=size, replace=False))
            store = DocStore(corpus, offsets)
            texts = [store.get(int(r))["contents"] for r in rows]
            sample = enc.encode(texts, "passage", batch_size, show_progress=show_progress)
        writer = ShardedWriter(train_template(dim, factory, sample, ef_construction), shard_bounds(n, shards))
        for first, texts in _chunks(str(corpus), encode_chunk, limit):
            writer.add(first, enc.encode(texts, "passage", batch_size, progress=bar))
        bar.close()

    files = writer.write(out)
    meta = {
        "format_version": FORMAT_VERSION,
        "encoder": {**spec.to_dict(), "fingerprint": enc.fingerprint},
        "dim": dim,
        "count": n,
        "factory": factory,
        "metric": "inner_product",
        "shards": files,
        "corpus": {"path": str(Path(corpus).resolve()), "sha256": sha, "bytes_indexed": int(offsets[-1])},
        "embeddings": str((out / EMBEDDINGS_FILE).resolve()) if save_embeddings else None,
        "train_size": train_size,
        "build_seconds": round(time.perf_counter() - t0, 2),
        "faiss_version": _faiss_version(),
    }
    write_meta(out, meta)
    return meta


def rebuild_index(
    src_dir: str | os.PathLike,
    out_dir: str | os.PathLike,
    factory: str,
    shards: int = 1,
    train_size: int | None = None,
    add_chunk: int = 65_536,
    ef_construction: int | None = None,
    show_progress: bool = True,
) -> dict:
    """Build a new index type from the saved embeddings of ``src_dir`` (no re-encoding); returns its meta."""
    src = read_meta(src_dir)
    if not src.get("embeddings") or not Path(src["embeddings"]).is_file():
        raise FileNotFoundError(
            f"{src_dir} has no saved embeddings (build it with --save_embeddings to allow rebuilding)"
        )
    t0 = time.perf_counter()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / META_FILE).unlink(missing_ok=True)
    if Path(src_dir).resolve() != out.resolve():
        shutil.copyfile(Path(src_dir) / OFFSETS_FILE, out / OFFSETS_FILE)
    vectors = np.load(src["embeddings"], mmap_mode="r")
    writer = build_from_vectors(
        vectors, factory, shards, train_size, add_chunk, ef_construction, show_progress=show_progress
    )
    for old in out.glob("shard_*.faiss"):
        old.unlink()
    meta = {
        **src,
        "factory": factory,
        "shards": writer.write(out),
        "train_size": train_size,
        "build_seconds": round(time.perf_counter() - t0, 2),
        "faiss_version": _faiss_version(),
    }
    write_meta(out, meta)
    return meta


def write_meta(index_dir: str | os.PathLike, meta: dict) -> None:
    """Atomically write ``meta.json`` (its presence marks a complete index)."""
    path = Path(index_dir) / META_FILE
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(meta, indent=2) + "\n")
    os.replace(tmp, path)


def read_meta(index_dir: str | os.PathLike) -> dict:
    path = Path(index_dir) / META_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{index_dir} is not a finished index directory (no {META_FILE})")
    return json.loads(path.read_text())


def load_shards(index_dir: str | os.PathLike, meta: dict, mmap: bool = False) -> list[tuple[object, int]]:
    """``[(faiss index, global row offset), ...]``; ``mmap`` maps flat code storage from disk (IO_FLAG_MMAP_IFC)."""
    import faiss

    flags = faiss.IO_FLAG_MMAP_IFC if mmap else 0
    return [
        (faiss.read_index(str(Path(index_dir) / s["file"]), flags), int(s["start"])) for s in meta["shards"]
    ]


def _faiss_version() -> str:
    import faiss

    return faiss.__version__
