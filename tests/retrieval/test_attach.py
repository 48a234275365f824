"""Group 5: attach writes ``contexts`` that the RAG prompt builder (``hrpo.prompts``) accepts, via the API and
via ``hrpo retrieval attach``."""

from __future__ import annotations

import json

import pytest

from hrpo.cli import main as hrpo_main
from hrpo.retrieval.attach import attach_contexts
from hrpo.retrieval.corpus import split_contents


def rows_from(questions: list[dict]) -> list[dict]:
    return [
        {"id": q["question_id"], "question": q["question"], "answers": ["x"], "task": "qa"} for q in questions
    ]


def test_attach_contexts_feed_the_rag_prompt(minilm_index, dense_retriever, hotpot_questions):
    prompts = pytest.importorskip("hrpo.prompts", reason="hrpo.prompts (the RAG prompt builder) not present")
    rows = rows_from(hotpot_questions[:12])
    before = json.dumps(rows)
    out = attach_contexts(rows, minilm_index, topk=3, batch_size=5)
    assert json.dumps(rows) == before, "input rows must not be modified"
    expected = dense_retriever.search([r["question"] for r in rows], 3)
    for row, new, hits in zip(rows, out, expected, strict=True):
        assert {k: v for k, v in new.items() if k != "contexts"} == row
        assert new["contexts"] == [h.contents for h in hits]
        for ctx in new["contexts"]:  # wiki-18 form: "Title"\ntext
            title, text = split_contents(ctx)
            assert title and text and ctx == f'"{title}"\n{text}'
        message = prompts.rag_message(new["question"], new["contexts"], topk=3)
        lines = message.splitlines()
        for ctx in new["contexts"]:
            title, text = split_contents(ctx)
            assert f"{title}::::{text.splitlines()[0]}" in lines
        assert lines[-1] == f"Question: {new['question']}"
        assert prompts.build_messages(new)[1]["content"] == message


def test_attach_rejects_rows_without_question(minilm_index):
    with pytest.raises(KeyError, match="row 1 has no field 'query'"):
        attach_contexts([{"query": "a"}, {"q": "b"}], minilm_index, question_field="query")


def test_cli_attach_writes_dataset_copy(minilm_index, hotpot_questions, tmp_path, capsys):
    src, dst = tmp_path / "in.jsonl", tmp_path / "out" / "with_ctx.jsonl"
    rows = rows_from(hotpot_questions[:4])
    src.write_text("".join(json.dumps(r) + "\n" for r in rows))
    args = ["retrieval", "attach", "--index", str(minilm_index), "--input", str(src), "--output", str(dst)]
    assert hrpo_main([*args, "--topk", "2", "--method", "hybrid"]) == 0
    out = [json.loads(line) for line in dst.read_text().splitlines()]
    assert [r["id"] for r in out] == [r["id"] for r in rows]
    assert all(len(r["contexts"]) == 2 and r["contexts"][0].startswith('"') for r in out)
    assert "wrote 4 rows" in capsys.readouterr().out
