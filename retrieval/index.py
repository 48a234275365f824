"""FAISS index directories: build (encode, train, chunked add, shards), ``meta.json``, load.

An index directory holds::

    meta.json            encoder spec + weight fingerprint, dim, count, factory, shards, corpus path/size/sha256
    offsets.npy          int64 (n + 1,): row -> byte offset of the passage in the corpus (the id map)
    shard_00.faiss ...   one FAISS index per contiguous row range (row ids are global: shard start + local id)
    embeddings.npy       optional float32 (n, dim) memmap, so another index type can be built without re-encoding

``meta.json`` is the completion marker: a build removes it first and writes it last (atomically), so a
directory without it is an interrupted build, which :func:`read_meta` (and so ``search``/``serve``) refuses.
While encoding, ``build_state.json`` records how many rows of ``embeddings.npy`` are done (after each encode
chunk); rerunning the same build resumes from there, and any other build restarts cleanly. Loading checks
``meta.json`` against the files (shard sizes in bytes, vector counts and dims, the offsets) and raises
:class:`IndexDirectoryError` naming the file and the command that rebuilds it. Memory during a build is
bounded by the index itself plus one encode chunk and one add chunk; the embeddings go to a disk memmap.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import logging
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
STATE_FILE = "build_state.json"
BM25_DIR = "bm25"  # retrieval.bm25's folder; a rebuild removes a stale one (index must not import bm25s)
FORMAT_VERSION = 1
logger = logging.getLogger(__name__)


class IndexDirectoryError(ValueError):
    """An index directory that is unfinished, damaged or inconsistent with its ``meta.json``; the message names
    the file (and field) and says how to rebuild."""


def rebuild_hint(index_dir: str | os.PathLike) -> str:
    """What to run to (re)create ``index_dir``."""
    return (
        f"re-run `hrpo retrieval build --corpus CORPUS --out {index_dir}` (a rerun of an interrupted build "
        "resumes from its saved embeddings)"
    )


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
            tmp = out_dir / f".{name}.tmp"
            faiss.write_index(index, str(tmp))
            os.replace(tmp, out_dir / name)
            # the size lets load detect a shard cut short (FAISS itself reads some truncations without error)
            files.append({"file": name, "start": a, "end": b, "bytes": (out_dir / name).stat().st_size})
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
    (out / META_FILE).unlink(missing_ok=True)  # from here on the folder is refused until it is complete
    shutil.rmtree(out / BM25_DIR, ignore_errors=True)  # a previous build's BM25 would not match
    offsets, sha = scan_corpus(corpus, limit=limit)
    n = len(offsets) - 1
    np.save(out / OFFSETS_FILE, offsets)
    enc = encoder or Encoder(spec, device=device)
    dim = enc.dim
    bar = tqdm(total=n, desc="encode passages", unit="psg", disable=not show_progress)

    if save_embeddings:
        state = {
            "corpus_sha256": sha,
            "count": n,
            "dim": dim,
            "encoder": {**spec.to_dict(), "fingerprint": enc.fingerprint},
            "encode_chunk": encode_chunk,
        }
        done = _resumable_rows(out, state)
        if done:
            logger.warning(
                "%s: resuming an interrupted build, %d of %d passages already encoded", out, done, n
            )
        emb = np.lib.format.open_memmap(
            out / EMBEDDINGS_FILE, mode="r+" if done else "w+", dtype=np.float32, shape=(n, dim)
        )
        bar.update(done)
        for first, texts in _chunks(str(corpus), encode_chunk, limit):
            if first + len(texts) <= done:
                continue  # encoded before the interruption (chunk boundaries depend only on encode_chunk)
            emb[first : first + len(texts)] = enc.encode(texts, "passage", batch_size, progress=bar)
            emb.flush()
            _write_json(out / STATE_FILE, {**state, "rows_done": first + len(texts)})
        bar.close()
        del emb
        vectors = np.load(out / EMBEDDINGS_FILE, mmap_mode="r")
        writer = build_from_vectors(
            vectors, factory, shards, train_size, add_chunk, ef_construction, show_progress=show_progress
        )
    else:
        from .docstore import DocStore

        (out / STATE_FILE).unlink(missing_ok=True)  # nothing to resume from: this build restarts
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
    (out / STATE_FILE).unlink(missing_ok=True)  # after meta: a kill in between leaves a complete index
    return meta


def _resumable_rows(out: Path, state: dict) -> int:
    """Rows of ``out/embeddings.npy`` an interrupted build of the same corpus, encoder and chunking already
    wrote (0: start afresh). Anything unreadable or different means a clean restart, never a mixed file."""
    path, emb_path = out / STATE_FILE, out / EMBEDDINGS_FILE
    try:
        saved = json.loads(path.read_text())
        done = int(saved.pop("rows_done"))
        shape = np.load(emb_path, mmap_mode="r").shape
    except (OSError, ValueError, KeyError, TypeError, AttributeError, EOFError):
        path.unlink(missing_ok=True)
        return 0
    if saved != state or shape != (state["count"], state["dim"]) or not 0 < done <= state["count"]:
        logger.warning("%s: a previous build's state does not match this build; starting afresh", out)
        path.unlink(missing_ok=True)
        return 0
    return done


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
        raise IndexDirectoryError(
            f"{src_dir} has no saved embeddings (build it with --save_embeddings to allow rebuilding)"
        )
    try:
        vectors = np.load(src["embeddings"], mmap_mode="r")
    except (OSError, ValueError, EOFError) as err:
        raise IndexDirectoryError(
            f"{src['embeddings']} cannot be read ({err}): it is cut short or damaged; {rebuild_hint(src_dir)}"
        ) from None
    if vectors.shape != (src["count"], src["dim"]):
        raise IndexDirectoryError(
            f"{src['embeddings']} holds {vectors.shape} but {src_dir}/{META_FILE} says ({src['count']}, "
            f"{src['dim']}); {rebuild_hint(src_dir)}"
        )
    t0 = time.perf_counter()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    in_place = Path(src_dir).resolve() == out.resolve()
    if not in_place:
        (out / META_FILE).unlink(missing_ok=True)
        shutil.copyfile(Path(src_dir) / OFFSETS_FILE, out / OFFSETS_FILE)
        shutil.rmtree(out / BM25_DIR, ignore_errors=True)  # a previous index's BM25 there would not match
    # In place, the old meta.json stays until the new one replaces it: a kill in between leaves shards that
    # do not match it (byte sizes, counts), which loading refuses, and a rerun of the same command still
    # finds the embeddings through it.
    writer = build_from_vectors(
        vectors, factory, shards, train_size, add_chunk, ef_construction, show_progress=show_progress
    )
    files = writer.write(out)
    meta = {
        **src,
        "factory": factory,
        "shards": files,
        "train_size": train_size,
        "build_seconds": round(time.perf_counter() - t0, 2),
        "faiss_version": _faiss_version(),
    }
    write_meta(out, meta)
    keep = {f["file"] for f in files}
    for old in out.glob("shard_*.faiss"):  # shards of the previous index beyond the new count
        if old.name not in keep:
            old.unlink()
    return meta


def _write_json(path: Path, obj: dict) -> None:
    """Write ``obj`` to ``path`` atomically (a temporary file renamed over it)."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(obj, indent=2) + "\n")
    os.replace(tmp, path)


def write_meta(index_dir: str | os.PathLike, meta: dict) -> None:
    """Atomically write ``meta.json`` (its presence marks a complete index)."""
    _write_json(Path(index_dir) / META_FILE, meta)


def read_meta(index_dir: str | os.PathLike) -> dict:
    """The validated ``meta.json`` of a finished index; :class:`IndexDirectoryError` for anything else."""
    folder = Path(index_dir)
    path = folder / META_FILE
    if not folder.is_dir():
        raise IndexDirectoryError(f"index directory {folder} does not exist; {rebuild_hint(folder)}")
    if not path.is_file():
        state = folder / STATE_FILE
        why = (
            "its build was interrupted"
            if state.is_file() or any(folder.glob("*.npy"))
            else "it holds no index (or its build was interrupted)"
        )
        raise IndexDirectoryError(f"{folder} is not a finished index directory (no {META_FILE}: {why}); "
                                  f"{rebuild_hint(folder)}")  # fmt: skip
    try:
        meta = json.loads(path.read_bytes().decode("utf-8"))
    except UnicodeDecodeError as err:
        raise IndexDirectoryError(f"{path}: not UTF-8 at byte {err.start}; {rebuild_hint(folder)}") from None
    except json.JSONDecodeError as err:
        raise IndexDirectoryError(
            f"{path}:{err.lineno}: not valid JSON ({err.msg} at column {err.colno}); {rebuild_hint(folder)}"
        ) from None
    validate_meta(meta, path)
    return meta


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def validate_meta(meta, path: Path) -> None:
    """Types and internal consistency of a ``meta.json``; raises :class:`IndexDirectoryError` naming the field."""
    hint = rebuild_hint(path.parent)

    def bad(field: str, want: str, got) -> IndexDirectoryError:
        return IndexDirectoryError(f"{path}: field {field!r} must be {want}, got {got!r}; {hint}")

    if not isinstance(meta, dict):
        raise bad("(top level)", "a JSON object", type(meta).__name__)
    for key, want in (("dim", "a positive integer"), ("count", "a positive integer")):
        if not _is_int(meta.get(key)) or meta[key] < 1:
            raise bad(key, want, meta.get(key))
    if meta.get("format_version", FORMAT_VERSION) != FORMAT_VERSION:
        raise bad("format_version", str(FORMAT_VERSION), meta.get("format_version"))
    if not isinstance(meta.get("factory"), str):
        raise bad("factory", "a FAISS factory string", meta.get("factory"))
    encoder = meta.get("encoder")
    if not isinstance(encoder, dict) or not isinstance(encoder.get("model"), str):
        raise bad("encoder", "an object with a string 'model'", encoder)
    corpus = meta.get("corpus")
    if not isinstance(corpus, dict) or not isinstance(corpus.get("path"), str):
        raise bad("corpus", "an object with a string 'path'", corpus)
    shards = meta.get("shards")
    if not isinstance(shards, list) or not shards:
        raise bad("shards", "a non-empty list", shards)
    expect_start = 0
    for i, shard in enumerate(shards):
        if not (
            isinstance(shard, dict)
            and isinstance(shard.get("file"), str)
            and _is_int(shard.get("start"))
            and _is_int(shard.get("end"))
        ):
            raise bad(f"shards[{i}]", "an object with 'file' (string), 'start' and 'end' (integers)", shard)
        if shard["start"] != expect_start or shard["end"] < shard["start"]:
            raise bad(f"shards[{i}]", f"a row range starting at {expect_start}", shard)
        expect_start = shard["end"]
    if expect_start != meta["count"]:
        raise IndexDirectoryError(
            f"{path}: the shards cover {expect_start} rows but 'count' is {meta['count']}; {hint}"
        )


def load_offsets(index_dir: str | os.PathLike, meta: dict) -> np.ndarray:
    """``offsets.npy`` (int64 (count + 1,), non-decreasing): the row -> corpus byte map, checked against meta."""
    path = Path(index_dir) / OFFSETS_FILE
    hint = rebuild_hint(index_dir)
    try:
        offsets = np.load(path, allow_pickle=False)
    except FileNotFoundError:
        raise IndexDirectoryError(f"{path} is missing (the row -> document map); {hint}") from None
    except (OSError, ValueError, EOFError) as err:
        raise IndexDirectoryError(
            f"{path} cannot be read ({err}): it is cut short or damaged; {hint}"
        ) from None
    count = meta["count"]
    if offsets.ndim != 1 or not np.issubdtype(offsets.dtype, np.integer):
        raise IndexDirectoryError(
            f"{path} holds {offsets.dtype} {offsets.shape}, not a 1-d integer array; {hint}"
        )
    if len(offsets) != count + 1:
        raise IndexDirectoryError(
            f"{path} maps {len(offsets) - 1} documents but the index holds {count} vectors ({META_FILE} "
            f"'count'): the docstore does not match the index; {hint}"
        )
    if len(offsets) > 1 and (offsets[0] < 0 or np.any(np.diff(offsets) <= 0)):
        raise IndexDirectoryError(f"{path}: byte offsets are not increasing: the file is damaged; {hint}")
    recorded = meta["corpus"].get("bytes_indexed")
    if _is_int(recorded) and int(offsets[-1]) != recorded:
        raise IndexDirectoryError(
            f"{path} ends at byte {int(offsets[-1])} but {META_FILE} records {recorded} corpus bytes; {hint}"
        )
    return offsets.astype(np.int64, copy=False)


def load_shards(index_dir: str | os.PathLike, meta: dict, mmap: bool = False) -> list[tuple[object, int]]:
    """``[(faiss index, global row offset), ...]``; ``mmap`` maps flat code storage from disk (IO_FLAG_MMAP_IFC).

    Each shard is checked before and after FAISS reads it: its byte size (when ``meta.json`` records one),
    that FAISS can read it, its vector count (``end - start``) and its dimension (``meta["dim"]``).
    """
    import faiss

    flags = faiss.IO_FLAG_MMAP_IFC if mmap else 0
    hint = rebuild_hint(index_dir)
    out = []
    for s in meta["shards"]:
        path = Path(index_dir) / s["file"]
        if not path.is_file():
            raise IndexDirectoryError(f"{path} is missing (listed in {META_FILE}); {hint}")
        size = path.stat().st_size
        if _is_int(s.get("bytes")) and size != s["bytes"]:
            raise IndexDirectoryError(
                f"{path} is {size} bytes but was written with {s['bytes']}: it is cut short or damaged; {hint}"
            )
        try:
            index = faiss.read_index(str(path), flags)
        except RuntimeError as err:  # FAISS's message is a C++ assertion; keep only its gist
            gist = re.sub(r"^Error in .*? at \S+:\d+: (Error: )?", "", str(err).strip().splitlines()[-1])[
                :200
            ]
            raise IndexDirectoryError(
                f"{path} cannot be read by FAISS ({gist}): it is cut short or damaged; {hint}"
            ) from None
        want = s["end"] - s["start"]
        if index.ntotal != want or index.d != meta["dim"]:
            raise IndexDirectoryError(
                f"{path} holds {index.ntotal} vectors of dim {index.d} but {META_FILE} says {want} of dim "
                f"{meta['dim']}: the index and its {META_FILE} do not match; {hint}"
            )
        out.append((index, int(s["start"])))
    return out


def _faiss_version() -> str:
    import faiss

    return faiss.__version__
