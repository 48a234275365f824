"""Session fixtures for the retrieval tests: a real MiniLM index over ~1.8k shared-corpus passages, built once.

Encoding is the slow part (~30 passages/s on 2 CPU cores), so every test that needs real embeddings shares
this one index (and its saved embeddings, which round-trip tests rebuild from without re-encoding).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

# The first 100 IRCoT HotpotQA questions have their gold and distractor paragraphs in hotpotqa-ircot-0..992;
# add wiki-18 and 2Wiki paragraphs as further distractors from other sources. ~1.8k passages, ~60 s to encode.
N_QUESTIONS = 100
IRCOT_MAX = 1000
N_FLASHRAG = 500
N_2WIKI = 300


@pytest.fixture(scope="session")
def subset_corpus(shared_data: Path, tmp_path_factory) -> Path:
    """A jsonl subset of the shared corpus (id,title,text,source), written under pytest's tmp dir."""
    keep = []
    quota = {"wiki18-flashrag": N_FLASHRAG, "2wiki-hipporag": N_2WIKI}
    with open(shared_data / "wiki_corpus" / "corpus.jsonl") as f:
        for line in f:
            prefix, num = json.loads(line)["id"].rsplit("-", 1)
            if prefix == "hotpotqa-ircot":
                take = int(num) < IRCOT_MAX
            else:
                take = quota.get(prefix, 0) > 0
                quota[prefix] = quota.get(prefix, 0) - int(take)
            if take:
                keep.append(line)
    path = tmp_path_factory.mktemp("corpus") / "subset.jsonl"
    path.write_text("".join(keep))
    return path


@pytest.fixture(scope="session")
def hotpot_questions(shared_data: Path) -> list[dict]:
    """The first N_QUESTIONS IRCoT HotpotQA questions: ``{"question_id", "question", "gold": [ids]}``."""
    gold = json.loads(
        (shared_data / "hotpotqa" / "ircot_dev_subsampled_500.gold_passage_ids.json").read_text()
    )
    rows = []
    with open(shared_data / "hotpotqa" / "ircot_dev_subsampled_500.jsonl") as f:
        for line in f:
            q = json.loads(line)
            rows.append(
                {
                    "question_id": q["question_id"],
                    "question": q["question_text"],
                    "gold": gold[q["question_id"]],
                }
            )
            if len(rows) == N_QUESTIONS:
                break
    return rows


@pytest.fixture(scope="session")
def minilm_index(subset_corpus: Path, tmp_path_factory) -> Path:
    """Flat MiniLM index (+ BM25, + saved embeddings) over :func:`subset_corpus`."""
    from hrpo.retrieval.bm25 import build_bm25
    from hrpo.retrieval.encoders import resolve_spec
    from hrpo.retrieval.index import build_index

    out = tmp_path_factory.mktemp("index") / "minilm_flat"
    build_index(
        subset_corpus, out, resolve_spec("minilm"), factory="Flat", save_embeddings=True, show_progress=False
    )
    build_bm25(subset_corpus, out, show_progress=False)
    return out


@pytest.fixture(scope="session")
def dense_retriever(minilm_index: Path):
    from hrpo.retrieval.search import DenseRetriever

    return DenseRetriever(minilm_index)


@pytest.fixture(scope="session")
def tiny_index(tmp_path_factory) -> Path:
    """Flat MiniLM index over 64 offline Wikipedia summaries (no shared data; a few seconds to encode)."""
    from hrpo.retrieval.encoders import resolve_spec
    from hrpo.retrieval.index import build_index
    from hrpo.testing import write_wiki_corpus

    root = tmp_path_factory.mktemp("tiny")
    corpus = write_wiki_corpus(root / "wiki64.jsonl", n=64)
    out = root / "minilm_flat"
    build_index(corpus, out, resolve_spec("minilm"), factory="Flat", show_progress=False)
    return out


@pytest.fixture(scope="session")
def tiny_retriever(tiny_index: Path):
    from hrpo.retrieval.search import DenseRetriever

    return DenseRetriever(tiny_index)
