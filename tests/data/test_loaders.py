"""Loaders on the real files in ../shared/data (issue 4, test group 2) and malformed rows (group 4)."""

from __future__ import annotations

import json

import pytest

from hrpo.data import BENCHMARKS, BadRowPolicy, DataSourceError, MalformedRowError, load_benchmark
from hrpo.data.rows import LETTERS
from hrpo.data.stem import MMLU_STEM_SUBJECTS

# (benchmark, split, rows in ../shared/data) -- counts from ../shared/data/README.md
EXPECTED = [
    ("gsm8k", "train", 7473),
    ("gsm8k", "test", 1319),
    ("math", "test", 5000),
    ("math500", "test", 500),
    ("mmlu", "test", 14042),
    ("mmlu", "val", 1531),
    ("mmlu", "dev", 285),
    ("mmlu_stem", "test", 3018),
    ("arc_challenge", "test", 1172),
    ("arc_challenge", "dev", 299),
    ("arc_challenge", "train", 1119),
    ("nq", "test", 3610),
    ("triviaqa", "test", 1000),
    ("hotpotqa", "dev", 7405),
    ("hotpotqa", "dev_ircot500", 500),
    ("2wiki", "dev", 12576),
    ("bamboogle", "test", 125),
    ("arithmetic", "train", 200),  # generated (hrpo.data.arithmetic, level 0, seed 0), nothing read
    ("arithmetic", "test", 200),
]
# Splits whose source files are absent from ../shared/data (see its README, "Missing or partial").
ABSENT = [("math", "train"), ("mmlu", "auxiliary_train"), ("nq", "train"), ("hotpotqa", "train")]


def test_expected_table_covers_every_split():
    every = {(name, split) for name, b in BENCHMARKS.items() for split in b.splits}
    assert every == {(n, s) for n, s, _ in EXPECTED} | set(ABSENT)


@pytest.mark.parametrize(("name", "split", "count"), EXPECTED, ids=[f"{n}-{s}" for n, s, _ in EXPECTED])
def test_loader_reads_real_file(shared_data, name, split, count):
    rows = load_benchmark(name, split, data_dir=shared_data)
    assert len(rows) == count
    assert len({r["id"] for r in rows}) == count, "ids must be unique"
    for r in rows:
        assert isinstance(r["question"], str) and r["question"].strip()
        assert r["task"] in ("gsm8k", "math", "multiple_choice", "qa")
        if r["task"] == "qa":
            assert r["gold"] and all(isinstance(a, str) and a.strip() for a in r["gold"])
        else:
            assert isinstance(r["gold"], str) and r["gold"].strip()
        if r["task"] == "multiple_choice":
            assert r["gold"] in LETTERS[: len(r["choices"])]


@pytest.mark.parametrize(("name", "split"), ABSENT, ids=[f"{n}-{s}" for n, s in ABSENT])
def test_absent_file_error_names_path_and_remedy(shared_data, name, split):
    with pytest.raises(DataSourceError) as err:
        load_benchmark(name, split, data_dir=shared_data)
    msg = str(err.value)
    assert str(shared_data) in msg and "HRPO_DATA_DIR" in msg and "Hugging Face Hub" in msg


def test_offline_hub_error_names_the_local_file(monkeypatch, tmp_path):
    monkeypatch.delenv("HRPO_DATA_DIR", raising=False)
    monkeypatch.setenv("HF_DATASETS_CACHE", str(tmp_path))
    with pytest.raises(DataSourceError) as err:
        load_benchmark("gsm8k", "test")
    msg = str(err.value)
    assert "openai/gsm8k" in msg and "gsm8k/test.jsonl" in msg and "--data_dir" in msg


def test_env_var_selects_the_local_dir(shared_data, monkeypatch):
    monkeypatch.setenv("HRPO_DATA_DIR", str(shared_data))
    assert len(load_benchmark("bamboogle")) == 125
    monkeypatch.setenv("HRPO_DATA_DIR", str(shared_data / "nope"))
    with pytest.raises(DataSourceError, match="HRPO_DATA_DIR"):
        load_benchmark("bamboogle")


def test_gold_fields(shared_data):
    gsm = load_benchmark("gsm8k", "test", data_dir=shared_data)
    assert gsm[0]["gold"] == "18" and gsm[0]["solution"].endswith("#### 18")
    m500 = load_benchmark("math500", data_dir=shared_data)
    assert (
        m500[0]["gold"] == "\\left( 3, \\frac{\\pi}{2} \\right)"
        and m500[0]["id"] == "test/precalculus/807.json"
    )
    mmlu = load_benchmark("mmlu", "test", data_dir=shared_data)
    first = mmlu[0]  # abstract_algebra_test.csv line 1: ...,0,4,2,6,B
    assert (first["subject"], first["choices"], first["gold"]) == (
        "abstract_algebra",
        ["0", "4", "2", "6"],
        "B",
    )
    nq = load_benchmark("nq", data_dir=shared_data)
    assert nq[0]["gold"] == ["14 December 1972 UTC", "December 1972"]
    ircot = load_benchmark("hotpotqa", "dev_ircot500", data_dir=shared_data)
    assert len(ircot[0]["contexts"]) == 10 and ircot[0]["contexts"][0].startswith('"Meet Corliss Archer"\n')


def test_arc_numeric_labels_are_mapped_by_position(shared_data):
    rows = load_benchmark("arc_challenge", "test", data_dir=shared_data)
    numeric = [r for r in rows if r["gold_raw"].isdigit()]
    assert len(numeric) == 22  # 21 rows labelled 1-4 and one labelled 1-3
    for r in numeric:
        assert r["gold"] == LETTERS[int(r["gold_raw"]) - 1]
    assert {len(r["choices"]) for r in rows} == {3, 4, 5}


def test_mmlu_stem_file_is_the_stem_subset_of_mmlu_test(shared_data):
    stem = load_benchmark("mmlu_stem", data_dir=shared_data)
    full = load_benchmark("mmlu", "test", data_dir=shared_data)
    subset = [r for r in full if r["subject"] in MMLU_STEM_SUBJECTS]
    assert len(subset) == len(stem) == 3018
    key = lambda r: (r["question"].strip(), tuple(c.strip() for c in r["choices"]), r["gold"])  # noqa: E731
    assert sorted(map(key, stem)) == sorted(map(key, subset))


def test_math_official_tree_layout(tmp_path):
    folder = tmp_path / "math" / "train" / "algebra"
    folder.mkdir(parents=True)
    for i in (2, 10):
        problem = {
            "problem": f"p{i}",
            "level": "Level 1",
            "type": "Algebra",
            "solution": f"so $\\boxed{{{i}}}$",
        }
        (folder / f"{i}.json").write_text(json.dumps(problem))
    rows = load_benchmark("math", "train", data_dir=tmp_path)
    assert [r["gold"] for r in rows] == ["2", "10"]  # numeric file order, gold = last boxed


# ---- malformed rows: file and line in the error, or skipped and counted under the explicit flag -------------


def _write(path, text):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


GOOD_GSM = json.dumps({"question": "q", "answer": "work\n#### 3"})


@pytest.mark.parametrize(
    ("bad_line", "reason"),
    [
        (json.dumps({"answer": "#### 3"}), "question"),
        (json.dumps({"question": "q", "answer": "no final answer"}), "####"),
        ('{"question": "q", ', "invalid JSON"),
    ],
)
def test_malformed_jsonl_names_file_and_line(tmp_path, bad_line, reason):
    path = _write(tmp_path / "gsm8k" / "test.jsonl", f"{GOOD_GSM}\n\n{GOOD_GSM}\n{bad_line}\n{GOOD_GSM}\n")
    with pytest.raises(MalformedRowError) as err:
        load_benchmark("gsm8k", "test", data_dir=tmp_path)
    assert err.value.where == f"{path}:4"  # 1-based physical line (the blank line counts)
    assert reason in str(err.value)
    policy = BadRowPolicy(skip=True)
    rows = load_benchmark("gsm8k", "test", data_dir=tmp_path, policy=policy)
    assert len(rows) == 3 and [w for w, _ in policy.skipped] == [f"{path}:4"]


def test_malformed_mmlu_csv_wrong_choice_count_names_line(tmp_path):
    good = '"What is 1+1?",1,2,3,4,B\n'
    multi_line = '"A question\nspanning lines",a,b,c,d,A\n'
    path = _write(tmp_path / "mmlu" / "dev" / "toy_dev.csv", good + multi_line + "short,a,b,c,A\n" + good)
    with pytest.raises(MalformedRowError) as err:
        load_benchmark("mmlu", "dev", data_dir=tmp_path)
    assert err.value.where == f"{path}:4" and "6 CSV columns" in str(err.value)
    assert len(load_benchmark("mmlu", "dev", data_dir=tmp_path, skip_bad_rows=True)) == 3


def test_malformed_arc_unknown_label_names_line(tmp_path):
    def arc(key, labels="ABCD"):
        choices = [{"text": f"t{label}", "label": label} for label in labels]
        return json.dumps({"id": f"x{key}", "question": {"stem": "s", "choices": choices}, "answerKey": key})

    path = _write(
        tmp_path / "arc_challenge" / "ARC-Challenge-Test.jsonl",
        "\n".join([arc("B"), arc("3", "1234"), arc("E")]),
    )
    with pytest.raises(MalformedRowError) as err:
        load_benchmark("arc_challenge", "test", data_dir=tmp_path)
    assert err.value.where == f"{path}:3" and "'E'" in str(err.value)
    rows = load_benchmark("arc_challenge", "test", data_dir=tmp_path, skip_bad_rows=True)
    assert [(r["gold"], r["gold_raw"]) for r in rows] == [("B", "B"), ("C", "3")]


def test_malformed_json_list_names_item(tmp_path):
    items = [
        {"question": "q1", "answer": "a"},
        {"question": "q2", "answer": ""},
        {"question": "q3", "answer": "c"},
    ]
    path = _write(
        tmp_path / "2wikimultihopqa" / "2wikimultihopqa_dev_questions_and_answers.json", json.dumps(items)
    )
    with pytest.raises(MalformedRowError) as err:
        load_benchmark("2wiki", data_dir=tmp_path)
    assert err.value.where == f"{path}:item 1" and "answer" in str(err.value)


def test_malformed_mmlu_stem_answer_index(tmp_path):
    row = {"question": "q", "type": "anatomy", "choices": ["a", "b", "c", "d"], "answer": 2}
    bad = {**row, "answer": 7}
    three = {**row, "choices": ["a", "b", "c"]}
    path = _write(tmp_path / "mmlu_stem" / "test.jsonl", "\n".join(json.dumps(r) for r in (row, bad, three)))
    with pytest.raises(MalformedRowError, match=f"{path}:2: answer 7"):
        load_benchmark("mmlu_stem", data_dir=tmp_path)
    policy = BadRowPolicy(skip=True)
    assert len(load_benchmark("mmlu_stem", data_dir=tmp_path, policy=policy)) == 1
    assert [w for w, _ in policy.skipped] == [f"{path}:2", f"{path}:3"]
    assert "expected 4 choices, got 3" in policy.skipped[1][1]
