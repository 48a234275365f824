"""The ``hrpo`` lm-eval model (issue 5, tests 1-2): plain mode equals stock ``hf``; hybrid mode equals the core loop."""

from __future__ import annotations

import json

import pytest
from lm_eval import simple_evaluate
from lm_eval.models.huggingface import HFLM
from lm_eval.models.utils import postprocess_generated_text
from lm_eval.tasks import TaskManager

from hrpo.checkpoint import load_gate, save_gate
from hrpo.generation import DecodeConfig, hybrid_generate
from hrpo.latent import SamplingConfig
from hrpo.lm_eval_adapter import HRPOLM
from hrpo.testing import save_tiny_qwen2, strong_gate
from tests.conftest import REPO_ROOT

TASKS = ["hrpo_gsm8k", "hrpo_arc_challenge"]
MAX_GEN_TOKS = 12


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory, qwen_tokenizer):
    return save_tiny_qwen2(tmp_path_factory.mktemp("tiny") / "model", qwen_tokenizer)


@pytest.fixture(scope="module")
def gate_checkpoint(tmp_path_factory, model_dir):
    """A gate-only training output: changed gate, decoding block, hrpo_run.json naming the base model."""
    folder = tmp_path_factory.mktemp("ckpt")
    save_gate(
        strong_gate(64), folder, decoding={"delimiter": "####", "temperature": 0.7, "top_k": 20, "top_p": 1.0}
    )
    (folder / "hrpo_run.json").write_text(
        json.dumps({"base_model": str(model_dir), "hybrid": True, "args": {}})
    )
    return folder


@pytest.fixture(scope="module")
def task_manager(shared_data, tmp_path_factory):
    return TaskManager(
        include_path=str(REPO_ROOT / "tasks"), include_defaults=False, metadata={"data_dir": str(shared_data)}
    )


def evaluate(lm, task_manager, tasks=TASKS, limit=3):
    return simple_evaluate(
        model=lm,
        tasks=tasks,
        task_manager=task_manager,
        limit=limit,
        apply_chat_template=True,
        log_samples=True,
        bootstrap_iters=0,
        gen_kwargs={"max_gen_toks": MAX_GEN_TOKS},
    )


def responses(result, task):
    return {s["doc_id"]: s["resps"][0][0] for s in result["samples"][task]}


def test_latent_off_equals_stock_hf_sample_by_sample(model_dir, task_manager):
    common = {"pretrained": str(model_dir), "dtype": "float32", "device": "cpu", "batch_size": 2}
    stock = evaluate(HFLM(**common), task_manager)
    ours = evaluate(HRPOLM(latent="off", **common), task_manager)
    for task in TASKS:
        theirs, mine = stock["samples"][task], ours["samples"][task]
        assert len(mine) == len(theirs) == 3
        for a, b in zip(theirs, mine, strict=True):
            assert a["doc_id"] == b["doc_id"] and a["arguments"] == b["arguments"]
            assert a["resps"] == b["resps"] and a["filtered_resps"] == b["filtered_resps"]
            assert (a["exact_match"], a["format"]) == (b["exact_match"], b["format"])
        assert ours["results"][task] == stock["results"][task]
        assert any(r.strip() for r in responses(ours, task).values())  # it really generated text


def test_changed_gate_changes_generations_and_equals_the_core_loop(gate_checkpoint, task_manager):
    hybrid = HRPOLM(checkpoint=str(gate_checkpoint), dtype="float32", device="cpu", batch_size=4)
    plain = HRPOLM(checkpoint=str(gate_checkpoint), latent="off", dtype="float32", device="cpu", batch_size=4)
    s = hybrid.settings
    assert (s.latent, s.temperature, s.top_k, s.delimiter) == (True, 0.7, 20, "####")  # from hrpo_gate.json
    assert not plain.settings.latent and plain.gate is None
    assert plain.settings.identity != s.identity and plain.cache_path("c") != hybrid.cache_path("c")

    got = evaluate(hybrid, task_manager, ["hrpo_gsm8k"], limit=4)
    base = evaluate(plain, task_manager, ["hrpo_gsm8k"], limit=4)
    assert responses(got, "hrpo_gsm8k") != responses(base, "hrpo_gsm8k")

    # The same prompts through hybrid_generate directly: one batch in generate_until's (longest-first) order.
    samples = got["samples"]["hrpo_gsm8k"]
    contexts = sorted((x["arguments"][0][0] for x in samples), key=lambda c: (-len(hybrid.tok_encode(c)), c))
    until = [*samples[0]["arguments"][0][1]["until"], "<|endoftext|>"]
    ids, mask = hybrid.tok_batch_encode(contexts)
    config = DecodeConfig(
        max_new_tokens=MAX_GEN_TOKS,
        sampling=SamplingConfig(temperature=0.7, top_k=20, greedy=True),
        hybrid=True,
        delimiter="####",
        stop_strings=tuple(until),
    )
    gate = load_gate(gate_checkpoint, hidden_size=64)
    rollout = hybrid_generate(hybrid.model, ids, mask, gate, config, hybrid.tokenizer)
    assert rollout.thinking_mask.any()
    expected = {
        context: postprocess_generated_text(hybrid.tok_decode(row.tolist()), until, None)
        for context, row in zip(contexts, rollout.completion_ids, strict=True)
    }
    for x in samples:
        assert x["resps"][0][0] == expected[x["arguments"][0][0]]


def test_settings_come_from_the_checkpoint_info_and_explicit_values_win(gate_checkpoint, model_dir):
    from hrpo.lm_eval_adapter import resolve_settings

    s = resolve_settings(checkpoint=str(gate_checkpoint))
    assert (s.pretrained, s.method, s.tau, s.r_min, s.top_k) == (str(model_dir), "HRPO", 0.7, 0.3, 20)
    assert s.run_info() == {
        "method": "HRPO",
        "tau": 0.7,
        "r_min": 0.3,
        "seed": None,
        "base_model": str(model_dir),
    }
    mine = resolve_settings(checkpoint=str(gate_checkpoint), temperature=0.9, top_k=5)
    assert (mine.temperature, mine.top_k, mine.delimiter) == (0.9, 5, "####")
    base = resolve_settings(pretrained=str(model_dir))
    assert (base.method, base.tau, base.r_min, base.latent) == ("base", 0.5, None, False)
    with pytest.raises(ValueError, match="top_k must be >= 0"):
        resolve_settings(pretrained=str(model_dir), top_k=-1)


def test_model_info_records_the_run_for_the_leaderboard(model_dir):
    lm = HRPOLM(pretrained=str(model_dir), dtype="float32", device="cpu", latent="off")
    info = lm.get_model_info()["hrpo"]
    assert {k: info[k] for k in ("method", "tau", "r_min", "seed", "base_model")} == {
        "method": "base",
        "tau": 0.5,
        "r_min": None,
        "seed": None,
        "base_model": str(model_dir),
    }
    assert info["latent"] is False and info["pretrained"] == str(model_dir)
