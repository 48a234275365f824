"""``hrpo data build`` (merged training sets) and QA contexts through the retrieval contract."""

from __future__ import annotations

import json
import re

import pytest

from hrpo.cli import main
from hrpo.data import build
from hrpo.data.build import ensure_contexts, read_rows
from hrpo.data.rows import DataSourceError


@pytest.fixture
def fake_retrieval(monkeypatch):
    """A stand-in for the default retriever (``hrpo.retrieval.attach``) that records its calls."""
    calls = []

    def attach_contexts(rows, index_dir, topk=3, question_field="question"):
        calls.append((len(rows), str(index_dir), topk, question_field))
        return [
            {**r, "contexts": [f'"Doc {i}"\npassage {i} for {r[question_field]}' for i in range(topk)]}
            for r in rows
        ]

    monkeypatch.setattr(build, "attach_with_index", attach_contexts)
    return calls


def _aux_csv(root, n=5):
    folder = root / "mmlu" / "auxiliary_train"
    folder.mkdir(parents=True)
    lines = [f'"Aux question {i}?",w,x,y,z,{"ABCD"[i % 4]}' for i in range(n)]
    (folder / "race.csv").write_text("\n".join(lines) + "\n")


def test_build_mmlu_train_merges_aux_and_arc_train(shared_data, tmp_path, capsys):
    data = tmp_path / "data"
    data.mkdir()
    (data / "arc_challenge").symlink_to(
        shared_data / "arc_challenge"
    )  # real ARC train, aux train is synthetic
    _aux_csv(data)
    out = tmp_path / "mmlu_train.jsonl"
    assert main(["data", "build", "mmlu-train", "--data_dir", str(data), "--out", str(out)]) == 0
    rows = read_rows(out)
    assert len(rows) == 5 + 1119
    assert [r["source"] for r in (rows[0], rows[-1])] == ["mmlu/auxiliary_train", "arc_challenge/train"]
    assert all(r["task"] == "multiple_choice" and r["gold"] in "ABCDE" for r in rows)
    assert set(rows[0]) == set(rows[-1])  # one column set for datasets.Dataset.from_list
    assert "wrote 1124 rows" in capsys.readouterr().out
    # a malformed aux row stops the build, or is skipped and reported under --skip_bad_rows
    with (data / "mmlu" / "auxiliary_train" / "race.csv").open("a") as fh:
        fh.write("only,three,columns\n")
    assert main(["data", "build", "mmlu-train", "--data_dir", str(data), "--out", str(out)]) == 2
    assert "race.csv:6" in capsys.readouterr().out
    args = ["data", "build", "mmlu-train", "--data_dir", str(data), "--out", str(out), "--skip_bad_rows"]
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert (
        "wrote 1124 rows" in printed and "skipped 1 malformed row(s)" in printed and "race.csv:6" in printed
    )


def _rag_sources(root, with_contexts=False):
    nq = root / "nq_open" / "NQ-open.train.jsonl"
    nq.parent.mkdir(parents=True)
    nq_rows = [{"question": f"nq q{i}", "answer": [f"a{i}"]} for i in range(3)]
    if with_contexts:
        nq_rows = [{**r, "contexts": ['"T"\nctx']} for r in nq_rows]
    nq.write_text("\n".join(json.dumps(r) for r in nq_rows))
    hp = root / "hotpotqa" / "hotpot_train_v1.1.json"
    hp.parent.mkdir(parents=True)
    hp_rows = [
        {"_id": f"h{i}", "question": f"hp q{i}", "answer": "yes", "type": "comparison"} for i in range(2)
    ]
    if with_contexts:
        hp_rows = [{**r, "contexts": [{"title": "P", "text": "para"}]} for r in hp_rows]
    hp.write_text(json.dumps(hp_rows))


def test_build_rag_train_without_index_or_contexts_fails_clearly(tmp_path, capsys):
    _rag_sources(tmp_path)
    code = main(
        ["data", "build", "rag-train", "--data_dir", str(tmp_path), "--out", str(tmp_path / "o.jsonl")]
    )
    assert code == 2
    msg = capsys.readouterr().out
    assert "5 QA rows" in msg and "no 'contexts'" in msg and "--index" in msg
    assert not (tmp_path / "o.jsonl").exists()


def test_build_rag_train_keeps_existing_contexts(tmp_path):
    _rag_sources(tmp_path, with_contexts=True)
    out = tmp_path / "rag.jsonl"
    assert main(["data", "build", "rag-train", "--data_dir", str(tmp_path), "--out", str(out)]) == 0
    rows = read_rows(out)
    assert [r["source"] for r in rows] == ["nq/train"] * 3 + ["hotpotqa/train"] * 2
    assert rows[0]["contexts"] == ['"T"\nctx'] and rows[-1]["contexts"] == ['"P"\npara']
    assert rows[-1]["gold"] == ["yes"] and rows[-1]["id"] == "hotpotqa/train/h1"


def test_build_rag_train_with_index_uses_retrieval(tmp_path, fake_retrieval):
    _rag_sources(tmp_path)
    out = tmp_path / "rag.jsonl"
    args = ["data", "build", "rag-train", "--data_dir", str(tmp_path), "--out", str(out), "--index", "IDX"]
    assert main([*args, "--topk", "2"]) == 0
    assert fake_retrieval == [(5, "IDX", 2, "question")]
    rows = read_rows(out)
    assert len(rows) == 5 and rows[3]["contexts"] == [
        '"Doc 0"\npassage 0 for hp q0',
        '"Doc 1"\npassage 1 for hp q0',
    ]


def test_ensure_contexts_only_retrieves_missing_rows(fake_retrieval, monkeypatch):
    monkeypatch.delenv("HRPO_INDEX_DIR", raising=False)
    rows = [{"id": "a", "question": "q1", "contexts": ['"X"\nkeep']}, {"id": "b", "question": "q2"}]
    out = ensure_contexts(rows, index_dir="IDX")
    assert out[0]["contexts"] == ['"X"\nkeep'] and len(out[1]["contexts"]) == 3
    assert fake_retrieval == [(1, "IDX", 3, "question")] and "contexts" not in rows[1]  # inputs not modified
    assert ensure_contexts(rows, closed_book=True)[1]["contexts"] == []
    with pytest.raises(DataSourceError, match="'b'"):
        ensure_contexts(rows)


def test_data_check_lists_every_split(shared_data, capsys, monkeypatch):
    assert main(["data", "check", "--data_dir", str(shared_data)]) == 1  # 4 training sources are absent
    out = capsys.readouterr().out
    assert re.search(r"gsm8k\s+test\s+1319\s+eval split", out)
    assert re.search(r"2wiki\s+dev\s+12576", out) and re.search(r"nq\s+train\s+-\s+data file not found", out)
    assert "4 split(s) missing" in out
    monkeypatch.delenv("HRPO_DATA_DIR", raising=False)
    assert main(["data", "check"]) == 2 and "never downloads" in capsys.readouterr().out
