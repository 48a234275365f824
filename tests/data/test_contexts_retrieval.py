"""QA contexts through the real retrieval module (issue 6's ``attach_contexts``) into the HRPO RAG prompt."""

from __future__ import annotations

import json

import pytest

from hrpo.data import ensure_contexts, load_benchmark
from hrpo.prompts import user_message


@pytest.mark.slow
def test_real_index_contexts_reach_the_prompt(shared_data, tmp_path):
    from hrpo.retrieval.encoders import resolve_spec
    from hrpo.retrieval.index import build_index

    # a 40-passage corpus whose first passage answers the question below
    lines = (shared_data / "wiki_corpus" / "corpus.jsonl").read_text(encoding="utf-8").splitlines()[:39]
    gold = {
        "id": "gold",
        "title": "Bamboo Town",
        "text": "The mayor of Bamboo Town is Alice Example.",
        "source": "t",
    }
    corpus = tmp_path / "corpus.jsonl"
    corpus.write_text("\n".join([json.dumps(gold), *lines]) + "\n", encoding="utf-8")
    build_index(corpus, tmp_path / "index", resolve_spec(), show_progress=False)

    rows = [
        {"id": "q", "question": "Who is the mayor of Bamboo Town?", "gold": ["Alice Example"], "task": "qa"}
    ]
    rows += load_benchmark("bamboogle", data_dir=shared_data)[:2]
    out = ensure_contexts(rows, index_dir=tmp_path / "index", topk=3)
    assert all(len(r["contexts"]) == 3 for r in out)
    assert out[0]["contexts"][0] == '"Bamboo Town"\nThe mayor of Bamboo Town is Alice Example.'
    message = user_message(out[0])
    assert message.startswith(
        "Context (which may or may not be relevant):\nBamboo Town::::The mayor of Bamboo Town is Alice Example.\n"
    )
    assert message.count("::::") == 3 and message.endswith("\nQuestion: Who is the mayor of Bamboo Town?")
