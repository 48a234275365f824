"""The sampled pass@k variants (``tasks/hrpo_*_passk.yaml``) through lm-eval: every sample reaches the metric,
pass@k equals brute force over the known per-sample correctness, hedged answers are wrong, the registry and the
YAMLs agree, and the ``hrpo`` adapter samples them at the checkpoint's tau with the latent on."""

from __future__ import annotations

import collections
import itertools
import json

import pytest
from lm_eval import simple_evaluate
from lm_eval.tasks import TaskManager

from hrpo import benchmarks
from hrpo.checkpoint import save_gate
from hrpo.lm_eval_adapter import HRPOLM
from hrpo.rewards import eval_metrics
from hrpo.testing import save_tiny_qwen2, scripted_eval_lm, strong_gate
from tests.conftest import REPO_ROOT

PASSK = [b.passk_task_name for b in benchmarks.passk()]


@pytest.fixture(scope="module")
def task_manager(shared_data):
    meta = {"data_dir": str(shared_data)}
    return TaskManager(include_path=str(REPO_ROOT / "tasks"), include_defaults=False, metadata=meta)


def brute_force(correct: list[bool], k: int) -> float:
    subsets = list(itertools.combinations(correct, k))
    return sum(any(s) for s in subsets) / len(subsets)


def test_registry_and_yamls_agree(task_manager):
    assert PASSK == ["hrpo_gsm8k_passk", "hrpo_math500_passk"]
    tasks = task_manager.load(PASSK)["tasks"]
    for bench in benchmarks.passk():
        cfg = tasks[bench.passk_task_name].config
        assert cfg.dataset_kwargs == {"benchmark": bench.key} and cfg.test_split == bench.eval_split
        assert cfg.repeats == benchmarks.PASSK_REPEATS >= max(benchmarks.PASSK_KS)
        assert [m["metric"] for m in cfg.metric_list] == list(benchmarks.PASSK_METRICS)
        gen = cfg.generation_kwargs
        # sampled; no temperature of its own, so the hrpo adapter samples at the checkpoint's tau
        assert gen["do_sample"] is True and "temperature" not in gen
        assert gen["max_gen_toks"] == bench.max_gen_toks
        assert cfg.filter_list == [{"name": "none", "filter": []}]  # keeps every sample
        assert not cfg.tag  # not a member of the greedy hrpo_stem group


def _scripted(plans: dict[int, list[str]]):
    """An LM whose j-th response to doc i is ``plans[i][j]`` with ``{gold}`` filled in."""
    seen: collections.Counter = collections.Counter()
    order: dict[str, int] = {}

    def answer(doc: dict) -> str:
        i = order.setdefault(doc["id"], len(order))
        j = seen[doc["id"]]
        seen[doc["id"]] += 1
        return plans[i][j].format(gold=doc["gold"], wrong=int(doc["gold"].replace(",", "")) + 1)

    return scripted_eval_lm(answer), seen


def test_pass_at_k_from_known_per_sample_correctness(task_manager):
    n = benchmarks.PASSK_REPEATS
    plans = {
        0: ["{gold}" if j in (3, 7, 11) else "{wrong}" for j in range(n)],  # 3 of 16 right
        1: ["{wrong}"] * n,  # never
        2: ["{gold} or {wrong}"] * (n - 1) + ["{gold}"],  # hedged 15 times (wrong), right once
        3: ["{gold}"] * n,  # always
    }
    correct = {i: [p == "{gold}" for p in plan] for i, plan in plans.items()}
    lm, seen = _scripted(plans)
    out = simple_evaluate(
        model=lm, tasks=["hrpo_gsm8k_passk"], task_manager=task_manager, limit=4, bootstrap_iters=0,
        log_samples=True,
    )  # fmt: skip
    assert sorted(seen.values()) == [n] * 4  # every doc sampled n times
    res = out["results"]["hrpo_gsm8k_passk"]
    for k in benchmarks.PASSK_KS:
        expected = sum(brute_force(c, k) for c in correct.values()) / 4
        assert res[f"pass@{k},none"] == pytest.approx(expected, rel=1e-12), k
    assert res["pass@1,none"] == pytest.approx((3 + 0 + 1 + 16) / (4 * n))
    assert res["hedged,none"] == pytest.approx(15 / (4 * n)) and res["format,none"] == 1.0
    for sample in out["samples"]["hrpo_gsm8k_passk"]:  # per doc: all n responses scored, none dropped
        assert len(sample["filtered_resps"][0]) == n
        assert sample["pass@1"] == pytest.approx(sum(correct[sample["doc_id"]]) / n)


def test_fewer_samples_report_only_the_k_they_allow(task_manager):
    task = task_manager.load(["hrpo_gsm8k_passk"])["tasks"]["hrpo_gsm8k_passk"]
    task.config.repeats = 4  # the Python way to another n (the YAML way: include + repeats, tasks/README.md)
    lm, seen = _scripted({0: ["{gold}", "{wrong}", "{wrong}", "{wrong}"], 1: ["{wrong}"] * 4})
    res = simple_evaluate(model=lm, tasks=[task], task_manager=task_manager, limit=2, bootstrap_iters=0)[
        "results"
    ]["hrpo_gsm8k_passk"]
    assert sorted(seen.values()) == [4, 4]
    assert res["pass@1,none"] == pytest.approx(1 / 8) and res["pass@2,none"] == pytest.approx(0.25)
    assert res["pass@4,none"] == pytest.approx(0.5) and "pass@8,none" not in res


@pytest.mark.slow
def test_the_hrpo_adapter_samples_at_tau_with_the_latent(task_manager, tmp_path, qwen_tokenizer):
    """A tiny Qwen2 with a gate trained at tau 0.7 / top-k 20 (~15 s): the task's gen_kwargs give a sampled,
    hybrid decode at that tau; the n samples of a doc differ; per-doc pass@k equals re-scoring its samples."""
    model = save_tiny_qwen2(tmp_path / "model", qwen_tokenizer)
    ckpt = tmp_path / "ckpt"
    save_gate(
        strong_gate(64), ckpt, decoding={"delimiter": "####", "temperature": 0.7, "top_k": 20, "top_p": 1.0}
    )
    (ckpt / "hrpo_run.json").write_text(json.dumps({"base_model": str(model), "hybrid": True, "args": {}}))
    lm = HRPOLM(checkpoint=str(ckpt), dtype="float32", device="cpu", batch_size=16)
    task = task_manager.load(["hrpo_gsm8k_passk"])["tasks"]["hrpo_gsm8k_passk"]
    config = lm.decode_config(12, ["<|im_end|>"], dict(task.config.generation_kwargs))
    assert config.hybrid and not config.sampling.greedy
    assert (config.sampling.temperature, config.sampling.top_k) == (0.7, 20)
    task.config.repeats = 8
    out = simple_evaluate(
        model=lm, tasks=[task], task_manager=task_manager, limit=2, bootstrap_iters=0, log_samples=True,
        apply_chat_template=True,
        gen_kwargs={"max_gen_toks": 12},
    )  # fmt: skip
    for sample in out["samples"]["hrpo_gsm8k_passk"]:
        texts = sample["filtered_resps"][0]
        assert len(texts) == 8 and len(set(texts)) > 1  # sampled, not 8 copies of one greedy answer
        correct = [eval_metrics(sample["doc"], t)["exact_match"] for t in texts]
        for k in (1, 2, 4, 8):
            assert sample[f"pass@{k}"] == pytest.approx(brute_force([bool(c) for c in correct], k))
