"""Damaged index directories and corpora are refused with one clear error (issue 15, items 4 and 5).

Item 4: one parametrized test over FAISS shards, ``meta.json``, the docstore (``offsets.npy`` + corpus), BM25
and corpus files at build time; each case asserts the exception type, the file named, what to do, and that
project code raised it (no library traceback chained). Item 5: a build killed with SIGKILL at seeded moments
(``hrpo retrieval build`` in a subprocess) leaves a folder that loading refuses, and rerunning the same command
resumes from the saved embedding chunks and ends equal to an uninterrupted build.

Everything runs on a tiny random BERT encoder (32-d, 1 layer, MiniLM's tokenizer) and synthetic passages:
no shared data, about 10 s for the corrupt cases.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from hrpo.retrieval.bm25 import build_bm25
from hrpo.retrieval.corpus import CorpusError
from hrpo.retrieval.encoders import EncoderMismatchError, resolve_spec
from hrpo.retrieval.index import (
    EMBEDDINGS_FILE,
    META_FILE,
    OFFSETS_FILE,
    STATE_FILE,
    IndexDirectoryError,
    build_index,
    read_meta,
    rebuild_index,
    write_meta,
)
from hrpo.retrieval.search import load_retriever
from hrpo.testing import REPO_ROOT, assert_project_error, subprocess_env

WORDS = [
    "river",
    "mountain",
    "king",
    "queen",
    "war",
    "peace",
    "film",
    "music",
    "science",
    "history",
    "city",
    "ocean",
    "forest",
    "storm",
]
N_PASSAGES = 40
SHARD = "shard_00.faiss"


def write_corpus(path: Path, n: int, seed: int = 0) -> Path:
    """``n`` synthetic ``{id, title, text}`` passages whose lengths all differ (so no two lines are the same size)."""
    rng = random.Random(seed)
    lines = []
    for i in range(n):
        text = " ".join(rng.choice(WORDS) for _ in range(6 + i % 37)) + f" number {i}"
        lines.append(json.dumps({"id": f"p{i}", "title": f"Passage {i}", "text": text}) + "\n")
    path.write_text("".join(lines))
    return path


def save_tiny_encoder(folder: Path, seed: int) -> Path:
    """A random 1-layer, 32-d BERT with MiniLM's tokenizer: a real HF encoder folder that encodes in ms."""
    import torch
    from transformers import AutoTokenizer, BertConfig, BertModel

    from hrpo.assets import minilm_path

    torch.manual_seed(seed)
    config = BertConfig(
        hidden_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=128,
    )
    BertModel(config).save_pretrained(folder)
    AutoTokenizer.from_pretrained(minilm_path()).save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def encoders(tmp_path_factory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("encoders")
    return save_tiny_encoder(root / "enc", 0), save_tiny_encoder(root / "other", 1)


@pytest.fixture(scope="module")
def pristine(encoders, tmp_path_factory) -> Path:
    """A complete Flat index (+ BM25, + embeddings) over :data:`N_PASSAGES` passages."""
    root = tmp_path_factory.mktemp("pristine")
    corpus = write_corpus(root / "corpus.jsonl", N_PASSAGES)
    out = root / "index"
    build_index(corpus, out, resolve_spec(str(encoders[0]), max_length=64), show_progress=False)
    build_bm25(corpus, out, show_progress=False)
    return out


# ---- the mutations: each takes (index dir, its own corpus copy, the encoders) --------------------------------


def edit_meta(edit):
    def run(d: Path, corpus: Path, enc) -> None:
        meta = json.loads((d / META_FILE).read_text())
        edit(meta, enc)
        (d / META_FILE).write_text(json.dumps(meta))

    return run


def cut(name: str, keep):
    def run(d: Path, corpus: Path, enc) -> None:
        path = d / name if name != "corpus" else corpus
        data = path.read_bytes()
        path.write_bytes(data[: keep(len(data))])

    return run


def write_bytes(name: str, data: bytes | None):
    def run(d: Path, corpus: Path, enc) -> None:
        path = d / name if name != "corpus" else corpus
        path.unlink() if data is None else path.write_bytes(data)

    return run


def garble(name: str):
    def run(d: Path, corpus: Path, enc) -> None:
        size = (d / name).stat().st_size
        (d / name).write_bytes(np.random.default_rng(0).integers(0, 256, size, dtype=np.uint8).tobytes())

    return run


def foreign_shard(d: Path, corpus: Path, enc) -> None:
    """A valid FAISS file of another build (10 vectors), its size recorded, so only the counts disagree."""
    import faiss

    index = faiss.IndexFlatIP(32)
    index.add(np.random.default_rng(0).standard_normal((10, 32)).astype(np.float32))
    faiss.write_index(index, str(d / SHARD))
    edit_meta(lambda m, e: m["shards"][0].update(bytes=(d / SHARD).stat().st_size))(d, corpus, enc)


def offsets_edit(fn):
    def run(d: Path, corpus: Path, enc) -> None:
        np.save(d / OFFSETS_FILE, fn(np.load(d / OFFSETS_FILE)))

    return run


def reverse_corpus(d: Path, corpus: Path, enc) -> None:
    """Same bytes, other order: the size check passes, the record boundaries do not."""
    corpus.write_text("".join(reversed(corpus.read_text().splitlines(keepends=True))))


def bm25_cut(d: Path, corpus: Path, enc) -> None:
    biggest = max((d / "bm25").glob("*.npy"), key=lambda p: p.stat().st_size)
    biggest.write_bytes(biggest.read_bytes()[:20])


def set_encoder(which: str):
    def edit(meta: dict, enc) -> None:
        meta["encoder"]["model"] = str(enc[1]) if which == "other" else str(enc[0].parent / "missing")

    return edit


GOOD = '{"id": "a", "title": "A", "text": "x"}\n'
# name -> (mutation or corpus bytes for a build, action, error type, message parts ("{d}" = index dir))
CASES = {
    # FAISS shard files
    "shard_cut_in_half": (cut(SHARD, lambda n: n // 2), "dense", IndexDirectoryError, [SHARD, "cut short"]),
    "shard_cut_by_one_byte": (cut(SHARD, lambda n: n - 1), "dense", IndexDirectoryError, [SHARD, "cut short"]),
    "shard_cut_by_one_byte_mmap": (cut(SHARD, lambda n: n - 1), "mmap", IndexDirectoryError, [SHARD, "cut short"]),
    "shard_empty": (write_bytes(SHARD, b""), "dense", IndexDirectoryError, [SHARD, "cut short"]),
    "shard_garbled": (garble(SHARD), "dense", IndexDirectoryError, [SHARD, "cannot be read by FAISS"]),
    "shard_missing": (write_bytes(SHARD, None), "dense", IndexDirectoryError, [SHARD, "is missing"]),
    "shard_of_another_build": (foreign_shard, "dense", IndexDirectoryError, [SHARD, "holds 10 vectors", "40"]),
    # meta.json
    "meta_missing": (write_bytes(META_FILE, None), "dense", IndexDirectoryError, ["interrupted"]),
    "meta_cut_short": (cut(META_FILE, lambda n: n // 2), "dense", IndexDirectoryError, [META_FILE, "not valid JSON"]),
    "meta_not_utf8": (write_bytes(META_FILE, b'{"dim": "\xff"}'), "dense", IndexDirectoryError, ["not UTF-8"]),
    "meta_not_object": (write_bytes(META_FILE, b"[1]"), "dense", IndexDirectoryError, ["a JSON object"]),
    "meta_count_too_big": (
        edit_meta(lambda m, e: m.update(count=41)), "dense", IndexDirectoryError, ["cover 40 rows", "'count' is 41"],
    ),
    "meta_count_and_shard_grown": (
        edit_meta(lambda m, e: (m.update(count=45), m["shards"][0].update(end=45))), "dense",
        IndexDirectoryError, [OFFSETS_FILE, "maps 40 documents", "holds 45 vectors"],
    ),
    "meta_dim_wrong": (
        edit_meta(lambda m, e: m.update(dim=64)), "dense", IndexDirectoryError, [SHARD, "dim 32", "dim 64"],
    ),
    "meta_dim_string": (
        edit_meta(lambda m, e: m.update(dim="32")), "dense", IndexDirectoryError, ["field 'dim'", "'32'"],
    ),
    "meta_shards_not_list": (
        edit_meta(lambda m, e: m.update(shards=SHARD)), "dense", IndexDirectoryError, ["field 'shards'"],
    ),
    "meta_shard_gap": (
        edit_meta(lambda m, e: m["shards"][0].update(start=5)), "dense", IndexDirectoryError, ["shards[0]"],
    ),
    "meta_format_version_2": (
        edit_meta(lambda m, e: m.update(format_version=2)), "dense", IndexDirectoryError, ["format_version"],
    ),
    "meta_encoder_other_weights": (
        edit_meta(set_encoder("other")), "dense", EncoderMismatchError, ["weight fingerprint", "edited"],
    ),
    "meta_encoder_missing": (
        edit_meta(set_encoder("missing")), "dense", IndexDirectoryError, ["cannot be loaded", "missing"],
    ),
    # docstore: offsets.npy and the corpus it points into
    "offsets_fewer_rows": (
        offsets_edit(lambda o: o[:-5]), "dense", IndexDirectoryError, [OFFSETS_FILE, "maps 35 documents"],
    ),
    "offsets_cut_short": (cut(OFFSETS_FILE, lambda n: n - 16), "dense", IndexDirectoryError, [OFFSETS_FILE]),
    "offsets_missing": (write_bytes(OFFSETS_FILE, None), "dense", IndexDirectoryError, [OFFSETS_FILE, "missing"]),
    "offsets_not_increasing": (
        offsets_edit(lambda o: o[::-1].copy()), "dense", IndexDirectoryError, ["not increasing"],
    ),
    "corpus_cut_mid_line": (cut("corpus", lambda n: n - 30), "dense", CorpusError, ["corpus.jsonl", "cut short"]),
    "corpus_emptied": (write_bytes("corpus", b""), "dense", CorpusError, ["corpus.jsonl", "0 bytes"]),
    "corpus_reordered": (reverse_corpus, "dense", CorpusError, ["corpus.jsonl", "changed since the build"]),
    "corpus_missing": (write_bytes("corpus", None), "dense", CorpusError, ["corpus.jsonl", "not found"]),
    # BM25
    "bm25_missing": (lambda d, c, e: shutil.rmtree(d / "bm25"), "bm25", IndexDirectoryError, ["--bm25"]),
    "bm25_cut_short": (bm25_cut, "bm25", IndexDirectoryError, ["bm25", "cannot be read", "--bm25"]),
    # saved embeddings, for --from_index rebuilds
    "embeddings_cut_short": (
        cut(EMBEDDINGS_FILE, lambda n: n // 2), "rebuild", IndexDirectoryError, [EMBEDDINGS_FILE, "cut short"],
    ),
    # corpus files at build time (the encoder named does not exist: the corpus must fail before it is loaded)
    "build_corpus_empty": (b"", "build", CorpusError, ["holds no passages"]),
    "build_corpus_blank_lines": (b"\n\n  \n", "build", CorpusError, ["holds no passages"]),
    "build_corpus_not_utf8": (
        (GOOD * 2 + '{"id": "b", "title": "B", "text": "caf\xe9"}\n').encode("latin-1"), "build", CorpusError,
        [":3: not UTF-8 (byte 0xe9", "iconv"],
    ),
    "build_corpus_cut_mid_line": ((GOOD * 3)[:-12].encode(), "build", CorpusError, [":3: not valid JSON", "cut short"]),
    "build_corpus_record_without_id": (
        (GOOD + '{"title": "B", "text": "y"}\n').encode(), "build", CorpusError, [":2:", "'id'"],
    ),
    "build_corpus_missing": (None, "build", CorpusError, ["does not exist"]),
}  # fmt: skip


def test_pristine_index_loads(pristine):
    """The control: the untouched copy loads for every method, so each refusal below comes from its damage."""
    for method in ("dense", "bm25", "hybrid"):
        hits = load_retriever(pristine, method).search(["river king number 3"], topk=3)[0]
        assert len(hits) == 3 and all(h.id.startswith("p") for h in hits)


@pytest.mark.parametrize("case", sorted(CASES))
def test_corrupt_index_refused(pristine, encoders, tmp_path, case):
    mutate, action, error, parts = CASES[case]
    corpus = tmp_path / "corpus.jsonl"
    if action == "build":
        if mutate is not None:
            corpus.write_bytes(mutate)
        spec = resolve_spec(str(encoders[0]), max_length=64)
        spec = type(spec)(**{**spec.to_dict(), "model": str(tmp_path / "no-such-encoder")})
        with pytest.raises(error) as excinfo:
            build_index(corpus, tmp_path / "out", spec, show_progress=False)
        assert_project_error(excinfo, str(corpus), *parts)
        assert not (tmp_path / "out" / META_FILE).exists()
        return
    d = shutil.copytree(pristine, tmp_path / "index")
    shutil.copyfile(pristine.parent / "corpus.jsonl", corpus)
    meta = read_meta(d)
    meta["corpus"]["path"], meta["embeddings"] = str(corpus), str(d / EMBEDDINGS_FILE)
    write_meta(d, meta)
    mutate(d, corpus, encoders)
    with pytest.raises(error) as excinfo:
        if action == "rebuild":
            rebuild_index(d, tmp_path / "rebuilt", "Flat", show_progress=False)
        else:
            load_retriever(
                d, "dense" if action == "mmap" else action, **({"mmap": True} if action == "mmap" else {})
            )
    msg = assert_project_error(excinfo, *parts)
    assert str(d) in msg or str(corpus) in msg, msg
    assert any(
        hint in msg for hint in ("hrpo retrieval build", "--corpus", "--bm25", "restore", "rebuild")
    ), msg


# ---- item 5: kill -9 during a build --------------------------------------------------------------------------

KILL_PASSAGES = 6000
KILL_CHUNK = 250  # 24 encode chunks; a kill loses at most the chunk in flight


def _build_cmd(corpus: Path, out: Path, encoder: Path) -> list[str]:
    return [sys.executable, "-m", "hrpo.cli", "retrieval", "build", "--corpus", str(corpus), "--out", str(out),
            "--encoder", str(encoder), "--max_length", "64", "--encode_chunk", str(KILL_CHUNK)]  # fmt: skip


def _rows_done(out: Path) -> int:
    try:
        return int(json.loads((out / STATE_FILE).read_text())["rows_done"])
    except (OSError, ValueError, KeyError):
        return 0


def _kill_when(cmd: list[str], ready, timeout: float = 300) -> tuple[str, int]:
    """Start ``cmd``, SIGKILL it as soon as ``ready()`` holds (polled every 5 ms); returns (phase, rows done)."""
    env = {**subprocess_env(), "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(cmd, cwd=REPO_ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + timeout
    while not ready() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.005)
    if proc.poll() is not None:
        return "finished", -1
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    return "killed", proc.returncode


@pytest.mark.slow
def test_killed_build_is_refused_and_rerun_resumes(encoders, tmp_path, caplog, capsys, record_property):
    """SIGKILL ``hrpo retrieval build`` (a subprocess) at a seeded random encode chunk, then again once every
    passage is encoded (while FAISS builds and writes the index). After each kill the folder is refused by
    :func:`load_retriever` (what ``search`` and ``serve`` load through) and progress never goes back by more
    than the chunk in flight. Rerunning the same command (in-process, to spare a third interpreter start)
    resumes from the saved chunks, and its embeddings are bitwise equal to an uninterrupted build's: the same
    code encodes the same chunks, one thread everywhere."""
    import torch

    from hrpo.commands.retrieval import main as retrieval_main

    corpus = write_corpus(tmp_path / "corpus.jsonl", KILL_PASSAGES, seed=1)
    out, ref = tmp_path / "killed", tmp_path / "reference"
    chunk = random.Random(15).randrange(1, KILL_PASSAGES // KILL_CHUNK - 1)
    moments = [
        (f"encode chunk {chunk}", lambda: _rows_done(out) >= chunk * KILL_CHUNK),
        ("all encoded: FAISS build/write", lambda: _rows_done(out) >= KILL_PASSAGES),
    ]
    log, previous = [], 0
    for label, ready in moments:
        phase, code = _kill_when(_build_cmd(corpus, out, encoders[0]), ready)
        done = _rows_done(out)
        log.append(f"{label}: {phase} at {done}/{KILL_PASSAGES} rows")
        assert phase == "killed" and code == -signal.SIGKILL, log
        with pytest.raises(IndexDirectoryError, match="interrupted"):
            load_retriever(out, "dense")
        # the command line: an error message and exit code 2 (serve starts no server)
        for verb in (["search", "--query", "river"], ["serve", "--port", "1"]):
            assert retrieval_main([verb[0], "--index", str(out), *verb[1:]]) == 2
            assert "its build was interrupted" in capsys.readouterr().err
        assert done >= previous, f"progress went back: {log}"
        previous = done
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as in the subprocesses, so float reductions run in the same order
    try:
        with caplog.at_level("WARNING", logger="hrpo.retrieval.index"):
            assert retrieval_main(_build_cmd(corpus, out, encoders[0])[4:]) == 0
        build_index(corpus, ref, resolve_spec(str(encoders[0]), max_length=64), encode_chunk=KILL_CHUNK,
                    show_progress=False)  # fmt: skip
    finally:
        torch.set_num_threads(threads)
    assert f"resuming an interrupted build, {previous} of {KILL_PASSAGES}" in caplog.text
    assert not (out / STATE_FILE).exists() and read_meta(out)["count"] == KILL_PASSAGES
    np.testing.assert_array_equal(np.load(out / EMBEDDINGS_FILE), np.load(ref / EMBEDDINGS_FILE))
    queries = ["river king number 7", "storm ocean film", "peace music number 4000"]
    got = [[h.id for h in q] for q in load_retriever(out, "dense").search(queries, 5)]
    want = [[h.id for h in q] for q in load_retriever(ref, "dense").search(queries, 5)]
    assert got == want
    record_property("kills", "; ".join(log))
    print("\n".join(log))


def test_stale_build_state_restarts_cleanly(encoders, tmp_path, caplog):
    """A leftover ``build_state.json`` of another build (other corpus) is not resumed from: the rebuild starts
    afresh and equals a clean build; the same build's state is resumed (rows before it are kept as saved)."""
    spec = resolve_spec(str(encoders[0]), max_length=64)
    corpus = write_corpus(tmp_path / "corpus.jsonl", N_PASSAGES)
    clean = build_index(corpus, tmp_path / "clean", spec, encode_chunk=10, show_progress=False)
    out = tmp_path / "out"
    build_index(write_corpus(tmp_path / "other.jsonl", N_PASSAGES, seed=3), out, spec, encode_chunk=10,
                show_progress=False)  # fmt: skip
    state = {
        "corpus_sha256": "another corpus",
        "count": N_PASSAGES,
        "dim": 32,
        "encoder": {},
        "encode_chunk": 10,
    }
    (out / STATE_FILE).write_text(json.dumps({**state, "rows_done": 20}))
    (out / META_FILE).unlink()
    with caplog.at_level("WARNING", logger="hrpo.retrieval.index"):
        build_index(corpus, out, spec, encode_chunk=10, show_progress=False)
    assert "starting afresh" in caplog.text and "resuming" not in caplog.text
    want = np.load(tmp_path / "clean" / EMBEDDINGS_FILE)
    np.testing.assert_array_equal(np.load(out / EMBEDDINGS_FILE), want)
    # the same build interrupted after 20 rows: those rows are reused as saved (marked here), the rest encoded
    saved = {**state, "corpus_sha256": clean["corpus"]["sha256"], "encoder": clean["encoder"]}
    (out / STATE_FILE).write_text(json.dumps({**saved, "rows_done": 20}))
    (out / META_FILE).unlink()
    emb = np.load(out / EMBEDDINGS_FILE, mmap_mode="r+")
    emb[:20] = 0.5
    emb[20:] = 0.0
    emb.flush()
    del emb
    caplog.clear()
    with caplog.at_level("WARNING", logger="hrpo.retrieval.index"):
        build_index(corpus, out, spec, encode_chunk=10, show_progress=False)
    assert f"20 of {N_PASSAGES} passages already encoded" in caplog.text
    got = np.load(out / EMBEDDINGS_FILE)
    assert (got[:20] == 0.5).all()
    np.testing.assert_array_equal(got[20:], want[20:])


def test_in_place_rebuild_interrupted_before_meta_is_refused_then_completes(pristine, tmp_path, monkeypatch):
    """``--from_index X --out X`` (a new index type in place) killed after the new shards are written but
    before ``meta.json``: the old meta no longer matches the shards, so loading refuses the folder; rerunning
    the same rebuild (which still finds the embeddings through the old meta) completes it."""
    import hrpo.retrieval.index as index_module

    d = shutil.copytree(pristine, tmp_path / "index")
    meta = read_meta(d)
    meta["embeddings"] = str(d / EMBEDDINGS_FILE)
    write_meta(d, meta)

    def killed(*args, **kwargs):
        raise KeyboardInterrupt("killed before meta.json")

    monkeypatch.setattr(index_module, "write_meta", killed)
    with pytest.raises(KeyboardInterrupt):
        rebuild_index(d, d, "HNSW32", shards=2, show_progress=False)
    monkeypatch.undo()
    with pytest.raises(IndexDirectoryError) as excinfo:
        load_retriever(d, "dense")
    assert_project_error(excinfo, SHARD, "cut short or damaged")
    rebuild_index(d, d, "HNSW32", shards=2, show_progress=False)
    assert read_meta(d)["factory"] == "HNSW32" and sorted(p.name for p in d.glob("shard_*.faiss")) == [
        "shard_00.faiss",
        "shard_01.faiss",
    ]
    hits = load_retriever(d, "dense", ef_search=64).search(["river king number 3"], topk=3)[0]
    assert len(hits) == 3
