"""Retrievers with one interface: ``search(queries, topk) -> list[list[Hit]]``, best first.

* :class:`DenseRetriever` -- encoder + FAISS shards (merged top-k), optional faiss-gpu sharding over all GPUs.
* :class:`BM25Retriever` -- bm25s over the same rows.
* :class:`HybridRetriever` -- reciprocal-rank fusion (RRF, Cormack et al. 2009) of the two.

Documents come back in the wiki-18 ``contents`` form (``"Title"\\ntext``), as Search-R1's server returns them.
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np

from .docstore import DocStore
from .encoders import Encoder, EncoderMismatchError, EncoderSpec, check_compatible, resolve_spec
from .index import (
    META_FILE,
    IndexDirectoryError,
    load_offsets,
    load_shards,
    read_meta,
    rebuild_hint,
    set_search_params,
)

METHODS = ("dense", "bm25", "hybrid")


@dataclass(frozen=True)
class Hit:
    """One retrieved passage: corpus ``row``, its ``id`` and ``contents`` and the retriever's ``score``."""

    row: int
    id: str
    contents: str
    score: float

    def document(self) -> dict[str, str]:
        """Search-R1's document object."""
        return {"id": self.id, "contents": self.contents}


class Retriever(Protocol):
    def search(self, queries: list[str], topk: int = 3) -> list[list[Hit]]: ...


def merge_topk(parts: list[tuple[np.ndarray, np.ndarray]], k: int) -> tuple[np.ndarray, np.ndarray]:
    """Merge per-shard ``(scores (q, k_i), rows (q, k_i))`` into the global top-``k`` by score (desc)."""
    scores = np.concatenate([s for s, _ in parts], axis=1)
    rows = np.concatenate([r for _, r in parts], axis=1)
    scores = np.where(rows < 0, -np.inf, scores)  # FAISS pads missing results with id -1
    order = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    return np.take_along_axis(scores, order, 1), np.take_along_axis(rows, order, 1)


def _docstore(index_dir: str | os.PathLike, meta: dict, corpus: str | os.PathLike | None) -> DocStore:
    """The documents of ``index_dir``: its checked ``offsets.npy`` over the recorded (or given) corpus."""
    offsets = load_offsets(index_dir, meta)
    return DocStore(Path(corpus or meta["corpus"]["path"]), offsets)  # CorpusError if missing or changed


def _load_encoder(spec: EncoderSpec, device: str | None, index_dir: str) -> Encoder:
    """:class:`Encoder` of ``spec``; a model that cannot be loaded raises naming it and the index."""
    try:
        return Encoder(spec, device=device)
    except (OSError, ValueError) as err:  # transformers: missing folder/files, unreadable weights or config
        gist = str(err).strip().splitlines()[0][:300] if str(err).strip() else type(err).__name__
        raise IndexDirectoryError(
            f"encoder {spec.model!r} of index {index_dir} cannot be loaded ({gist}); make it available (the "
            f"encoder recorded in {META_FILE}), or {rebuild_hint(index_dir)}"
        ) from None


def _hits(store: DocStore, scores: np.ndarray, rows: np.ndarray) -> list[list[Hit]]:
    out = []
    for srow, rrow in zip(scores, rows, strict=True):
        hits = []
        for s, r in zip(srow, rrow, strict=True):
            if r >= 0:
                d = store.get(int(r))
                hits.append(Hit(int(r), d["id"], d["contents"], float(s)))
        out.append(hits)
    return out


def to_all_gpus(index):
    """Shard ``index`` over every visible GPU with faiss-gpu (fp16 storage); returns it unchanged on CPU builds.

    Not exercised by the test suite (no GPU here); follows faiss's ``index_cpu_to_all_gpus`` sharding mode.
    """
    import faiss

    if not hasattr(faiss, "GpuMultipleClonerOptions") or faiss.get_num_gpus() == 0:
        warnings.warn("use_gpu requested but faiss has no GPUs here; searching on CPU", stacklevel=2)
        return index
    co = faiss.GpuMultipleClonerOptions()
    co.shard = True  # split the vectors over GPUs instead of replicating them
    co.useFloat16 = True
    return faiss.index_cpu_to_all_gpus(index, co=co)


class DenseRetriever:
    """Encoder + FAISS index directory. ``encoder`` None means the one recorded in ``meta.json``."""

    def __init__(
        self,
        index_dir: str | os.PathLike,
        encoder: str | EncoderSpec | None = None,
        device: str | None = None,
        nprobe: int | None = None,
        ef_search: int | None = None,
        mmap: bool = False,
        use_gpu: bool = False,
        corpus: str | os.PathLike | None = None,
        batch_size: int = 64,
    ) -> None:
        self.index_dir = str(index_dir)
        # Cheap file checks first (meta, offsets + corpus ends, shard sizes/counts/dims), then the encoder.
        self.meta = read_meta(index_dir)
        self.docs = _docstore(index_dir, self.meta, corpus)
        built = self.meta["encoder"]
        if encoder is None:
            spec = EncoderSpec.from_dict(built)
        else:
            spec = (
                resolve_spec(encoder, max_length=built.get("max_length", 256))
                if isinstance(encoder, str)
                else encoder
            )
            check_compatible(built, spec, None, self.index_dir)  # before loading any weights
        self.shards = load_shards(index_dir, self.meta, mmap=mmap)
        self.encoder = _load_encoder(spec, device, self.index_dir)
        if encoder is None and built.get("fingerprint") not in (None, self.encoder.fingerprint):
            raise EncoderMismatchError(
                f"{Path(index_dir) / META_FILE} records encoder {spec.model!r} with weight fingerprint "
                f"{built.get('fingerprint')}, but {spec.model!r} now loads weights {self.encoder.fingerprint}: "
                f"the model changed or {META_FILE} was edited since the build; restore that model, or "
                f"{rebuild_hint(index_dir)}"
            )
        check_compatible(built, spec, self.encoder.fingerprint, self.index_dir)
        if self.encoder.dim != self.meta["dim"]:
            raise EncoderMismatchError(
                f"encoder {spec.model!r} gives {self.encoder.dim}-d vectors; index {index_dir} holds {self.meta['dim']}-d"
            )
        for index, _ in self.shards:
            set_search_params(index, nprobe=nprobe, ef_search=ef_search)
        if use_gpu:
            self.shards = [(to_all_gpus(index), start) for index, start in self.shards]
        self.batch_size = batch_size

    def search_vectors(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """(q, dim) float32 query vectors -> (scores, global rows), each (q, k); rows -1 where fewer exist."""
        parts = []
        for index, start in self.shards:
            scores, ids = index.search(np.ascontiguousarray(queries, dtype=np.float32), k)
            parts.append((scores, np.where(ids >= 0, ids + start, -1)))
        return parts[0] if len(parts) == 1 else merge_topk(parts, k)

    def encode_queries(self, queries: list[str]) -> np.ndarray:
        return self.encoder.encode(list(queries), "query", self.batch_size)

    def search(self, queries: list[str], topk: int = 3) -> list[list[Hit]]:
        scores, rows = self.search_vectors(self.encode_queries(queries), topk)
        return _hits(self.docs, scores, rows)


class BM25Retriever:
    """BM25 (bm25s) over the rows of an index directory built with ``--bm25``."""

    def __init__(
        self, index_dir: str | os.PathLike, corpus: str | os.PathLike | None = None, mmap: bool = False
    ) -> None:
        from .bm25 import BM25_DIR, BM25Index

        self.meta = read_meta(index_dir)
        self.docs = _docstore(index_dir, self.meta, corpus)
        folder = Path(index_dir) / BM25_DIR
        if not folder.is_dir():
            raise IndexDirectoryError(
                f"no BM25 index in {index_dir} ({folder} is missing); rebuild with `hrpo retrieval build ... "
                f"--bm25`, or search with --method dense"
            )
        try:
            self.bm25 = BM25Index(index_dir, mmap=mmap)
        except Exception as err:  # bm25s/numpy/json raise their own types for missing or cut-short files
            raise IndexDirectoryError(
                f"the BM25 index {folder} cannot be read ({type(err).__name__}: {str(err)[:200]}): it is "
                f"incomplete or damaged; rebuild with `hrpo retrieval build ... --bm25`"
            ) from None
        if self.bm25.count != self.meta["count"]:
            raise IndexDirectoryError(
                f"the BM25 index {folder} holds {self.bm25.count} documents but the index holds "
                f"{self.meta['count']}: it belongs to another build; rebuild with `hrpo retrieval build ... --bm25`"
            )

    def search_rows(self, queries: list[str], k: int) -> tuple[np.ndarray, np.ndarray]:
        return self.bm25.search(list(queries), k)

    def search(self, queries: list[str], topk: int = 3) -> list[list[Hit]]:
        scores, rows = self.search_rows(queries, topk)
        return _hits(self.docs, scores, rows)


def rrf(rankings: list[np.ndarray], k: int, k_rrf: int = 60) -> tuple[np.ndarray, np.ndarray]:
    """Reciprocal-rank fusion of per-query row rankings (each (q, depth), -1 = none) -> top-``k`` (scores, rows)."""
    nq = rankings[0].shape[0]
    scores = np.full((nq, k), -np.inf, dtype=np.float32)
    rows = np.full((nq, k), -1, dtype=np.int64)
    for qi in range(nq):
        fused: dict[int, float] = {}
        for ranking in rankings:
            for rank, r in enumerate(ranking[qi], start=1):
                if r >= 0:
                    fused[int(r)] = fused.get(int(r), 0.0) + 1.0 / (k_rrf + rank)
        # ties broken by row so results are deterministic
        best = sorted(fused.items(), key=lambda kv: (-kv[1], kv[0]))[:k]
        for j, (r, s) in enumerate(best):
            rows[qi, j], scores[qi, j] = r, s
    return scores, rows


class HybridRetriever:
    """Dense + BM25 fused by RRF over each one's top ``depth`` (scores are RRF sums, not similarities)."""

    def __init__(self, dense: DenseRetriever, bm25: BM25Retriever, depth: int = 50, k_rrf: int = 60) -> None:
        self.dense, self.bm25, self.depth, self.k_rrf = dense, bm25, depth, k_rrf
        self.docs = dense.docs

    def search(self, queries: list[str], topk: int = 3) -> list[list[Hit]]:
        depth = max(self.depth, topk)
        _, dense_rows = self.dense.search_vectors(self.dense.encode_queries(queries), depth)
        _, bm25_rows = self.bm25.search_rows(queries, depth)
        scores, rows = rrf([dense_rows, bm25_rows], topk, self.k_rrf)
        return _hits(self.docs, scores, rows)


def load_retriever(index_dir: str | os.PathLike, method: str = "dense", **dense_kwargs) -> Retriever:
    """A retriever over ``index_dir``: ``dense``, ``bm25`` or ``hybrid`` (kwargs go to :class:`DenseRetriever`)."""
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    corpus = dense_kwargs.get("corpus")
    if method == "bm25":
        return BM25Retriever(index_dir, corpus=corpus)
    dense = DenseRetriever(index_dir, **dense_kwargs)
    if method == "dense":
        return dense
    return HybridRetriever(dense, BM25Retriever(index_dir, corpus=corpus))
