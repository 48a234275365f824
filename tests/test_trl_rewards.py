"""The reward functions plug into TRL's GRPOTrainer as they are: columns as kwargs, names in the logs, and
the format reward logged with weight 0 (the optimised reward is correct AND one delimiter)."""

from __future__ import annotations

import pytest

from hrpo.data import load_benchmark
from hrpo.prompts import add_prompt_column
from hrpo.rewards import make_reward_funcs, reward_weights
from hrpo.testing import build_tiny_model


def test_grpo_trainer_step_logs_both_rewards(shared_data, qwen_tokenizer, tmp_path):
    import datasets
    from trl import GRPOConfig, GRPOTrainer

    rows = add_prompt_column(load_benchmark("gsm8k", "train", data_dir=shared_data)[:2])
    train = datasets.Dataset.from_list([{k: r[k] for k in ("prompt", "gold", "task", "id")} for r in rows])
    funcs = make_reward_funcs("gsm8k")
    seen: list[dict] = []

    def spy(completions, **kwargs):  # what TRL hands to reward functions
        seen.append({"completions": completions, **kwargs})
        return [0.0] * len(completions)

    config = GRPOConfig(
        output_dir=str(tmp_path),
        max_steps=1,
        per_device_train_batch_size=4,
        num_generations=2,
        max_completion_length=6,
        logging_steps=1,
        report_to="none",
        save_strategy="no",
        use_cpu=True,
        bf16=False,
        beta=0.0,
        loss_type="grpo",
        reward_weights=[*reward_weights(funcs), 0.0],
    )
    model = build_tiny_model("qwen2", vocab_size=151936)
    trainer = GRPOTrainer(
        model=model,
        reward_funcs=[*funcs, spy],
        args=config,
        train_dataset=train,
        processing_class=qwen_tokenizer,
    )
    trainer.train()
    logged = {k for entry in trainer.state.log_history for k in entry}
    assert {
        "rewards/gsm8k_reward/mean",
        "rewards/format_reward/mean",
        "gsm8k_reward/accuracy",
        "gsm8k_reward/hedged",
    } <= logged
    call = seen[0]
    assert isinstance(call["completions"][0], list) and call["completions"][0][0]["role"] == "assistant"
    assert sorted(set(call["gold"])) == sorted({r["gold"] for r in rows})
    # a random tiny model writes no '####': reward 0, and the weight-0 format reward adds nothing
    assert trainer.state.log_history[0]["reward"] == pytest.approx(0.0)
