"""Group 3: index directories round-trip (save, load, same results; rebuilt types without re-encoding), the
corpus formats agree, and a mismatched encoder is refused with a clear message."""

from __future__ import annotations

import json

import numpy as np
import pytest

from hrpo.retrieval.corpus import CorpusError, iter_corpus, make_contents
from hrpo.retrieval.encoders import EncoderMismatchError, EncoderSpec, resolve_spec
from hrpo.retrieval.index import build_index, read_meta, rebuild_index
from hrpo.retrieval.search import DenseRetriever

QUERIES = [
    "Which country is the Eiffel Tower in?",
    "Who directed the film Kiss and Tell?",
    "lobbyist for Genentech",
]


def ids(hits) -> list[list[str]]:
    return [[h.id for h in per_q] for per_q in hits]


def test_meta_records_what_load_needs(minilm_index, subset_corpus):
    meta = read_meta(minilm_index)
    assert meta["encoder"]["model"] == "minilm" and meta["encoder"]["pooling"] == "mean"
    assert meta["encoder"]["fingerprint"] and meta["dim"] == 384 and meta["factory"] == "Flat"
    assert meta["count"] == sum(1 for _ in iter_corpus(subset_corpus))
    assert len(meta["corpus"]["sha256"]) == 64 and meta["embeddings"]
    assert np.load(meta["embeddings"], mmap_mode="r").shape == (meta["count"], 384)


def test_reload_gives_same_results(minilm_index, dense_retriever):
    again = DenseRetriever(minilm_index)
    first, second = dense_retriever.search(QUERIES, 5), again.search(QUERIES, 5)
    assert ids(first) == ids(second)
    np.testing.assert_allclose([[h.score for h in q] for q in first], [[h.score for h in q] for q in second])
    assert all(h.contents.startswith('"') and "\n" in h.contents for q in first for h in q)


@pytest.mark.parametrize(
    ("factory", "shards", "params"),
    [("Flat", 2, {}), ("HNSW32", 1, {"ef_search": 128}), ("IVF16,Flat", 2, {"nprobe": 16})],
)
def test_rebuild_from_saved_embeddings(minilm_index, dense_retriever, tmp_path, factory, shards, params):
    """Other index types from embeddings.npy, no encoding; exact ones (Flat, IVF probing every list) match Flat."""
    meta = rebuild_index(minilm_index, tmp_path / "rebuilt", factory, shards=shards, show_progress=False)
    assert len(meta["shards"]) == shards and meta["encoder"] == read_meta(minilm_index)["encoder"]
    rebuilt = DenseRetriever(tmp_path / "rebuilt", **params)
    want, got = ids(dense_retriever.search(QUERIES, 5)), ids(rebuilt.search(QUERIES, 5))
    if factory == "HNSW32":  # approximate: the best hit must agree on these easy queries
        assert [g[0] for g in got] == [w[0] for w in want]
    else:
        assert got == want


def test_contents_and_title_text_corpora_agree(subset_corpus, tmp_path):
    """The wiki-18 ``{id, contents}`` layout indexes exactly like ``{id, title, text}`` (40 passages)."""
    rows = [json.loads(line) for line in subset_corpus.read_text().splitlines()[:40]]
    tt, ct = tmp_path / "tt.jsonl", tmp_path / "ct.jsonl"
    tt.write_text("".join(json.dumps(r) + "\n" for r in rows))
    ct.write_text(
        "".join(
            json.dumps({"id": r["id"], "contents": make_contents(r["title"], r["text"])}) + "\n" for r in rows
        )
    )
    spec = resolve_spec("minilm")
    build_index(tt, tmp_path / "a", spec, show_progress=False)
    build_index(ct, tmp_path / "b", spec, show_progress=False)
    a = np.load(tmp_path / "a" / "embeddings.npy")
    np.testing.assert_allclose(a, np.load(tmp_path / "b" / "embeddings.npy"), atol=1e-6)
    hits = DenseRetriever(tmp_path / "b").search([rows[7]["title"]], 1)[0]
    assert hits[0].id == rows[7]["id"] and hits[0].contents == f'"{rows[7]["title"]}"\n{rows[7]["text"]}'


def test_malformed_corpus_line_is_named(tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_text('{"id": "a", "title": "A", "text": "x"}\n\n{"id": "b", "title": "B"}\n')
    with pytest.raises(CorpusError, match=r"bad\.jsonl:3: .*'contents' or 'title'\+'text'"):
        list(iter_corpus(path))
    path.write_text('{"id": "a", "contents": "x"}\n{"id": "b", "contents": \n')
    with pytest.raises(CorpusError, match=r"bad\.jsonl:2: not valid JSON"):
        list(iter_corpus(path))


def test_mismatched_pooling_refused_before_loading(minilm_index):
    with pytest.raises(EncoderMismatchError, match=r"pooling: index 'mean' vs requested 'cls'.*rebuild"):
        DenseRetriever(minilm_index, encoder=EncoderSpec(model="minilm", pooling="cls"))


def test_different_weights_refused(minilm_index, tmp_path):
    """A different model (random BERT with MiniLM's tokenizer) is refused on its weight fingerprint."""
    import torch
    from transformers import AutoTokenizer, BertConfig, BertModel

    from hrpo.assets import minilm_path

    torch.manual_seed(0)
    cfg = BertConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64)
    BertModel(cfg).save_pretrained(tmp_path / "other")
    AutoTokenizer.from_pretrained(minilm_path()).save_pretrained(tmp_path / "other")
    with pytest.raises(
        EncoderMismatchError, match=r"built with encoder 'minilm'.*weights: index fingerprint"
    ):
        DenseRetriever(minilm_index, encoder=str(tmp_path / "other"))
