"""The lm-eval task folder (issue 4, test group 3): every YAML loads with stock lm-eval and builds requests on
local data; an oracle LM scores 1.0 on every task and group, a wrong LM 0.0; the chat prompt equals training's."""

from __future__ import annotations

import re

import pytest
from lm_eval import simple_evaluate
from lm_eval.tasks import TaskManager

from hrpo import benchmarks
from hrpo.prompts import build_messages, render_prompt
from hrpo.testing import scripted_eval_lm
from tests.conftest import REPO_ROOT

TASKS_DIR = REPO_ROOT / "tasks"
# the paper's tasks, from the registry (tests/test_benchmarks.py checks each YAML against its row)
STEM = [b.task_name for b in benchmarks.members("stem")]
KNOWLEDGE = [b.task_name for b in benchmarks.members("knowledge")]
LIMIT = 4


def _gold_text(doc: dict) -> str:
    return doc["gold"] if isinstance(doc["gold"], str) else doc["gold"][0]


def _wrong_text(doc: dict) -> str:
    """A plausible but wrong final answer for each task family."""
    gold = _gold_text(doc)
    if doc["task"] == "gsm8k":
        return str(int(gold.replace(",", "")) + 1)
    if doc["task"] == "multiple_choice":
        return "ABCDE"[("ABCDE".index(gold) + 1) % len(doc["choices"])]
    if doc["task"] == "math":
        return f"{gold}+1"
    return "qqqq zzzz"


@pytest.fixture(scope="module")
def task_manager(shared_data):
    # closed_book: the knowledge files carry no passages; retrieval is tested separately below.
    meta = {"data_dir": str(shared_data), "closed_book": True}
    return TaskManager(include_path=str(TASKS_DIR), include_defaults=False, metadata=meta)


def _run(lm, tm, tasks, **kw):
    return simple_evaluate(model=lm, tasks=tasks, task_manager=tm, limit=LIMIT, bootstrap_iters=0, **kw)


def test_every_yaml_is_indexed(task_manager):
    yamls = {p.stem for p in TASKS_DIR.glob("hrpo_*.yaml")}
    assert yamls == {
        *(b.task_name for b in benchmarks.tasks()),
        *(b.passk_task_name for b in benchmarks.passk()),  # sampled pass@k variants (test_passk_tasks.py)
        *(g.task_name for g in benchmarks.GROUPS.values()),
    }
    assert {*STEM, *KNOWLEDGE, "hrpo_stem", "hrpo_knowledge", "hrpo_qa_file"} <= yamls
    assert set(task_manager.all_tasks) >= yamls


def test_task_configs_and_requests(task_manager):
    tasks = task_manager.load([*STEM, *KNOWLEDGE])["tasks"]
    for name in [*STEM, *KNOWLEDGE]:
        task = tasks[name]
        cfg = task.config
        assert cfg.output_type == "generate_until" and cfg.num_fewshot == 0
        assert cfg.metadata["version"] == 1.0
        gen = cfg.generation_kwargs
        assert gen["max_gen_toks"] == benchmarks.get(name.removeprefix("hrpo_")).max_gen_toks
        assert gen["do_sample"] is False and "<|im_end|>" in gen["until"]
        metrics = {m["metric"] for m in cfg.metric_list}
        assert metrics == (
            {"exact_match", "format", "hedged", "f1"}
            if name in KNOWLEDGE
            else {"exact_match", "format", "hedged"}
        )
        task.build_all_requests(limit=2, rank=0, world_size=1)
        assert len(task.instances) == 2
        doc = task.instances[0].doc
        context = task.instances[0].args[0]
        assert context.startswith(doc["system_prompt"]) and "#### tag" in context
        assert context.endswith(task.doc_to_text(doc))


def test_oracle_scores_one_and_wrong_scores_zero_on_every_task_and_group(task_manager):
    groups = ["hrpo_stem", "hrpo_knowledge"]
    oracle = _run(scripted_eval_lm(_gold_text), task_manager, groups)["results"]
    wrong = _run(scripted_eval_lm(_wrong_text), task_manager, groups)["results"]
    for name in [*STEM, *KNOWLEDGE, *groups]:
        assert oracle[name]["exact_match,none"] == 1.0, name
        assert wrong[name]["exact_match,none"] == 0.0, name
    for name in STEM + KNOWLEDGE:
        assert oracle[name]["sample_len"] == LIMIT and oracle[name]["format,none"] == 1.0
    assert oracle["hrpo_knowledge"]["f1,none"] == 1.0 and wrong["hrpo_knowledge"]["f1,none"] == 0.0


def test_group_is_the_unweighted_mean_of_its_tasks(task_manager):
    # correct only on gsm8k: the STEM average must be 1/5 whatever the per-task sizes
    lm = scripted_eval_lm(lambda d: _gold_text(d) if d["task"] == "gsm8k" else _wrong_text(d))
    res = _run(lm, task_manager, ["hrpo_stem"])["results"]
    assert res["hrpo_stem"]["exact_match,none"] == pytest.approx(0.2)


def test_chat_prompt_equals_the_training_prompt(task_manager, qwen_tokenizer):
    lm = scripted_eval_lm(_gold_text, tokenizer=qwen_tokenizer)
    _run(lm, task_manager, ["hrpo_gsm8k", "hrpo_mmlu_stem", "hrpo_bamboogle"], apply_chat_template=True)
    assert len(lm.contexts) == 3 * LIMIT
    for _, doc, context, _ in lm.contexts:
        assert context == render_prompt(build_messages(doc), qwen_tokenizer)
        assert context.startswith("<|im_start|>system\nA conversation between User and Assistant.")


def test_compat_and_options_travel_through_metadata(shared_data):
    tm = TaskManager(
        include_path=str(TASKS_DIR),
        include_defaults=False,
        metadata={"data_dir": str(shared_data), "compat": "original", "delimiter": "<ans>"},
    )
    task = tm.load(["hrpo_gsm8k"])["tasks"]["hrpo_gsm8k"]
    doc = task.test_docs()[0]
    assert (doc["compat"], doc["delimiter"]) == ("original", "<ans>")
    assert "after the <ans> tag" in doc["system_prompt"]
    assert task.process_results(doc, [f"x <ans> {doc['gold']}"])["exact_match"] == 1.0
    # the doc's compat column decides the parser: original reads "1,234" as 234, fixed as 1234
    assert task.process_results({**doc, "gold": "1234"}, ["<ans> 1,234"])["exact_match"] == 0.0
    assert (
        task.process_results({**doc, "gold": "1234", "compat": "fixed"}, ["<ans> 1,234"])["exact_match"]
        == 1.0
    )


def test_knowledge_tasks_need_contexts_or_an_explicit_choice(shared_data, monkeypatch):
    monkeypatch.delenv("HRPO_INDEX_DIR", raising=False)
    tm = TaskManager(
        include_path=str(TASKS_DIR), include_defaults=False, metadata={"data_dir": str(shared_data)}
    )
    with pytest.raises(Exception, match=re.escape("index_dir")):
        tm.load(["hrpo_bamboogle"])


def test_knowledge_task_retrieves_top3_contexts_into_the_prompt(shared_data, monkeypatch):
    calls = []

    def attach_contexts(rows, index_dir, topk=3, question_field="question"):
        calls.append((len(rows), index_dir, topk))
        return [{**r, "contexts": [f'"Page {i}"\nFact {i}.' for i in range(5)]} for r in rows]

    monkeypatch.setattr("hrpo.data.build.attach_with_index", attach_contexts)
    meta = {"data_dir": str(shared_data), "index_dir": "/idx", "topk": 5}
    tm = TaskManager(include_path=str(TASKS_DIR), include_defaults=False, metadata=meta)
    task = tm.load(["hrpo_bamboogle"])["tasks"]["hrpo_bamboogle"]
    assert calls == [(125, "/idx", 5)]
    text = task.doc_to_text(task.test_docs()[0])
    assert text.startswith("Context (which may or may not be relevant):\nPage 0::::Fact 0.\n")
    assert text.count("::::") == 5 and text.endswith("\nQuestion: " + task.test_docs()[0]["question"])


def test_qa_file_task_scores_any_local_qa_rows(tmp_path):
    """hrpo_qa_file: a local jsonl of QA rows (with contexts) through the same prompt and scorer."""
    import json

    rows = [
        {"id": f"q{i}", "question": f"Who wrote book {i}?", "gold": [f"Author {i}", f"A{i}"],
         "contexts": [f'"Book {i}"\nBook {i} was written by Author {i}.']}
        for i in range(3)
    ]  # fmt: skip
    path = tmp_path / "qa.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    tm = TaskManager(include_path=str(TASKS_DIR), include_defaults=False, metadata={"qa_file": str(path)})
    lm = scripted_eval_lm(_gold_text)
    oracle = _run(lm, tm, ["hrpo_qa_file"])["results"]["hrpo_qa_file"]
    assert oracle["exact_match,none"] == 1.0 and oracle["f1,none"] == 1.0
    assert "Book 0::::Book 0 was written by Author 0." in lm.contexts[0][2]
    wrong = _run(scripted_eval_lm(_wrong_text), tm, ["hrpo_qa_file"])["results"]["hrpo_qa_file"]
    assert wrong["exact_match,none"] == 0.0


# ---- hrpo_mmlu: all 57 subjects, per-subject and micro/macro averages ------------------------------------


def test_mmlu_task_covers_the_57_subjects_of_the_test_set(shared_data):
    files = sorted(p.name.removesuffix("_test.csv") for p in (shared_data / "mmlu" / "test").glob("*.csv"))
    assert list(benchmarks.MMLU_SUBJECTS) == files and len(files) == 57
    tm = TaskManager(
        include_path=str(TASKS_DIR), include_defaults=False, metadata={"data_dir": str(shared_data)}
    )
    task = tm.load(["hrpo_mmlu"])["tasks"]["hrpo_mmlu"]
    docs = list(task.test_docs())
    assert len(docs) == 14042 and {d["subject"] for d in docs} == set(files)
    assert all(d["task"] == "multiple_choice" and d["per_subject"] for d in docs)
    assert "hrpo_mmlu" not in tm.load(["hrpo_stem"])["tasks"], "MMLU is not one of the paper's five"


def _mmlu_csv(folder, subject: str, n: int) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    lines = [f'"{subject} question {i}?",w,x,y,z,{"ABCD"[i % 4]}\n' for i in range(n)]
    (folder / f"{subject}_test.csv").write_text("".join(lines))


def test_mmlu_reports_per_subject_micro_and_macro(tmp_path):
    # 3 questions of anatomy (all right), 1 of virology (wrong): micro 3/4, macro (1 + 0) / 2
    _mmlu_csv(tmp_path / "mmlu" / "test", "anatomy", 3)
    _mmlu_csv(tmp_path / "mmlu" / "test", "virology", 1)
    lm = scripted_eval_lm(lambda d: _gold_text(d) if d["subject"] == "anatomy" else _wrong_text(d))
    tm = TaskManager(
        include_path=str(TASKS_DIR), include_defaults=False, metadata={"data_dir": str(tmp_path)}
    )
    res = simple_evaluate(model=lm, tasks=["hrpo_mmlu"], task_manager=tm, bootstrap_iters=0)["results"]
    out = res["hrpo_mmlu"]
    assert out["exact_match,none"] == pytest.approx(0.75)
    assert out["macro_exact_match,none"] == pytest.approx(0.5)
    assert (out["exact_match_anatomy,none"], out["exact_match_virology,none"]) == (1.0, 0.0)
    assert out["sample_len"] == 4
