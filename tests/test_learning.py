"""Learning sanity: a tiny model learns a toy reward with HRPOTrainer, hybrid on and off (issue 3, test 2).

Task: 16 prompts "Write word number i."; reward 1 if the completion (6 tokens) contains a target token, else 0.
The target is the third most likely first token of the untrained seeded tiny Llama (SmolLM2's vocabulary) under
the sampling distribution (tau 0.5, top-k 50), so the initial reward is low but not zero (~2-5 % of completions):
the within-group reward variance GRPO needs exists from the first steps. LoRA lr 1e-2 (constant), beta 0, 30 steps
of 2 prompts x G=4. Everything is seeded (model init, gate init, sampling, data order); one thread, so the float
reductions and hence the sampled tokens do not depend on the thread count. Observed on a 2-core machine: mean
reward 0.03 -> 1.00 (hybrid on) and 0.05 -> 1.00 (off) between the first and last 5 steps, 35-45 s per run.
"""

from __future__ import annotations

import pytest
import torch
from datasets import Dataset
from peft import LoraConfig

from hrpo.config import HRPOConfig
from hrpo.gate import GateConfig, ThinkingGate
from hrpo.testing import build_tiny_model
from hrpo.trainer import HRPOTrainer

pytestmark = pytest.mark.slow

STEPS = 30
TEMPERATURE = 0.5
TOP_K = 50
PROMPTS = [[{"role": "user", "content": f"Write word number {i}."}] for i in range(16)]


@pytest.fixture
def one_thread():
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def tiny_model(tokenizer):
    model = build_tiny_model("llama", vocab_size=len(tokenizer), seed=1)
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    return model


def pick_target(model, tokenizer) -> int:
    """Third most likely first completion token (mean over the first 8 prompts) under tau / top-k sampling."""
    batch = tokenizer.apply_chat_template(
        PROMPTS[:8], add_generation_prompt=True, padding=True, return_tensors="pt", return_dict=True
    )
    with torch.no_grad():
        logits = model(**batch).logits[:, -1].float() / TEMPERATURE
    values, ids = logits.topk(TOP_K, dim=-1)
    probs = torch.zeros_like(logits).scatter(-1, ids, values.softmax(-1)).mean(0)
    return int(probs.topk(3).indices[2])


def train_toy(tokenizer, tmp_path, hybrid: bool, steps: int = STEPS) -> tuple[HRPOTrainer, list[float], int]:
    model = tiny_model(tokenizer)
    target = pick_target(model, tokenizer)

    def contains_target(completions, completion_ids, **kwargs):
        return [float(target in ids) for ids in completion_ids]

    args = HRPOConfig(
        output_dir=str(tmp_path / f"run-{hybrid}"),
        max_steps=steps,
        per_device_train_batch_size=8,  # 2 prompts x G=4
        num_generations=4,
        max_completion_length=6,
        temperature=TEMPERATURE,
        top_k=TOP_K,
        hybrid=hybrid,
        r_min=0.9,
        learning_rate=1e-2,
        gate_learning_rate=1e-3,
        beta=0.0,
        warmup_steps=0,
        lr_scheduler_type="constant",
        use_cpu=True,
        bf16=False,
        seed=0,
        save_strategy="no",
        log_completions=False,
        report_to="none",
        disable_tqdm=True,
    )
    trainer = HRPOTrainer(
        model=model,
        reward_funcs=[contains_target],
        args=args,
        train_dataset=Dataset.from_list([{"prompt": p} for p in PROMPTS]),
        processing_class=tokenizer,
        peft_config=LoraConfig(r=8, lora_alpha=16, target_modules=["q_proj", "k_proj", "v_proj", "o_proj"]),
    )
    trainer.train()
    logs = [h for h in trainer.state.log_history if "reward" in h]
    assert [h["step"] for h in logs] == list(range(1, steps + 1))
    return trainer, [h["reward"] for h in logs], target


@pytest.mark.parametrize("hybrid", [True, False], ids=["hybrid-on", "hybrid-off"])
def test_tiny_model_learns_toy_reward(smol_tokenizer, tmp_path, one_thread, hybrid):
    trainer, rewards, target = train_toy(smol_tokenizer, tmp_path, hybrid)
    first, last = sum(rewards[:5]) / 5, sum(rewards[-5:]) / 5
    message = f"target {target} ({smol_tokenizer.decode([target])!r}); rewards per step {rewards}"
    assert max(rewards[:5]) > 0.0 and first < 0.25, (
        "the toy task should start hard but not impossible: " + message
    )
    assert last >= first + 0.5 and last >= 0.75, message
    logs = [h for h in trainer.state.log_history if "reward" in h]
    if hybrid:
        # Training really ran in hybrid mode, and the gate trained along with the LoRA weights.
        assert all(h["hybrid/thinking_fraction"] > 0.5 for h in logs)
        assert all(h["hybrid/embeds_ratio"] < 1.0 for h in logs)
        fresh = ThinkingGate(GateConfig(64, 8.0, 0.9, 0.999), torch.Generator().manual_seed(0))  # the init
        assert not torch.equal(trainer.gate.Lambda.detach().cpu(), fresh.Lambda)
        assert not torch.equal(trainer.gate.gate_r.weight.detach().cpu(), fresh.gate_r.weight)
    else:
        assert trainer.gate is None
        assert all(h["hybrid/thinking_fraction"] == 0.0 for h in logs)


def test_toy_run_is_deterministic(smol_tokenizer, tmp_path, one_thread):
    """Same seed, same rewards step by step (hybrid on; 5 steps of the run above)."""
    _, first, _ = train_toy(smol_tokenizer, tmp_path / "a", hybrid=True, steps=5)
    _, second, _ = train_toy(smol_tokenizer, tmp_path / "b", hybrid=True, steps=5)
    assert first == second
