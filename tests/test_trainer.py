"""HRPOTrainer on a tiny model: parameters move, metrics are logged, configs are validated, checkpoints."""

from __future__ import annotations

import json
import math

import pytest
import torch

from hrpo.checkpoint import COMPLETE_MARKER, IncompleteCheckpointError, latest_complete, load_gate
from hrpo.config import HRPOConfig
from hrpo.testing import build_tiny_model, make_tiny_trainer, toy_prompt_dataset
from hrpo.trainer import HandOff, HandOffError, batch_key
from tests.conftest import REPO_ROOT


@pytest.mark.slow
def test_three_steps_move_every_group_and_log_metrics(smol_tokenizer, tmp_path):
    trainer = make_tiny_trainer(smol_tokenizer, tmp_path)
    groups = {g["name"]: [p.detach().clone() for p in g["params"]] for g in trainer.parameter_groups()}
    assert set(groups) == {"policy", "gate", "lambda"}
    assert trainer.gate.Lambda.dtype == torch.float32
    trainer.train()
    for group in trainer.parameter_groups():
        moved = [
            not torch.equal(p, old) for p, old in zip(group["params"], groups[group["name"]], strict=True)
        ]
        assert all(moved), f"{group['name']}: {moved.count(False)} parameters did not change"
    assert all(len(g["params"]) > 0 for g in trainer.parameter_groups())
    logs = [h for h in trainer.state.log_history if "loss" in h]
    assert len(logs) == 3 and all(math.isfinite(h["loss"]) for h in logs)
    for key in ["reward", "rewards/contains_e/mean", "completions/mean_length", "kl", "frac_reward_zero_std",
                "hybrid/embeds_ratio", "hybrid/hidden_ratio", "hybrid/hidden_ratio_mean", "hybrid/thinking_fraction",
                "hybrid/replay_logp_gap"]:  # fmt: skip
        assert key in logs[-1], key
    assert 0.5 < logs[0]["hybrid/embeds_ratio"] < 1.0
    # The authors' sqrt(1 - mean_D(a)^2) per slot exceeds mean_D(sqrt(1 - a^2)) (concavity) and, averaged over
    # slots, stays below sqrt(1 - (slot mean of a)^2).
    for h in logs:
        assert (
            h["hybrid/hidden_ratio_mean"]
            < h["hybrid/hidden_ratio"]
            <= math.sqrt(1 - h["hybrid/embeds_ratio"] ** 2)
        )
    # The loss forward rebuilt the rollout's exact inputs: same log-probs as at sampling (fp32).
    assert all(h["hybrid/replay_logp_gap"] < 1e-4 for h in logs)
    # Three optimizer groups with their own peak learning rates.
    lrs = {g["name"]: g["initial_lr"] for g in trainer.optimizer.param_groups}
    assert lrs == {"policy": 1e-3, "gate": 1e-4, "lambda": 1e-3}


@pytest.mark.slow
def test_hybrid_off_is_plain_grpo(smol_tokenizer, tmp_path):
    trainer = make_tiny_trainer(smol_tokenizer, tmp_path, hybrid=False, max_steps=1)
    assert trainer.gate is None and not hasattr(trainer.model, "hrpo_gate")
    trainer.train()
    log = next(h for h in trainer.state.log_history if "loss" in h)
    assert log["hybrid/thinking_fraction"] == 0.0
    assert [g["name"] for g in trainer.parameter_groups()] == ["policy"]


@pytest.mark.slow
def test_checkpoints_hold_gate_and_marker_and_resume_continues(smol_tokenizer, tmp_path):
    trainer = make_tiny_trainer(smol_tokenizer, tmp_path, max_steps=3, save_strategy="steps", save_steps=1)
    trainer.train()
    run = tmp_path / "run"
    for step in (1, 2, 3):
        folder = run / f"checkpoint-{step}"
        assert (folder / COMPLETE_MARKER).is_file()
        assert (folder / "adapter_config.json").is_file() and (folder / "optimizer.pt").is_file()
        assert json.loads((folder / "hrpo_run.json").read_text())["hybrid"] is True
    gate = load_gate(run / "checkpoint-3", hidden_size=64)
    assert torch.equal(gate.Lambda, trainer.gate.Lambda.detach().cpu())
    assert latest_complete(run) == str(run / "checkpoint-3")

    # A checkpoint interrupted mid-save (no marker) is refused; `latest` skips it.
    (run / "checkpoint-3" / COMPLETE_MARKER).unlink()
    assert latest_complete(run) == str(run / "checkpoint-2")
    resumed = make_tiny_trainer(smol_tokenizer, tmp_path, max_steps=3, save_strategy="no")
    with pytest.raises(IncompleteCheckpointError, match="incomplete"):
        resumed.train(resume_from_checkpoint=str(run / "checkpoint-3"))

    # Resume from step 1: steps 2 and 3 run again with the same schedule (LR) as the uninterrupted run.
    resumed = make_tiny_trainer(smol_tokenizer, tmp_path, max_steps=3, save_strategy="no")
    output = resumed.train(resume_from_checkpoint=str(run / "checkpoint-1"))
    assert output.global_step == 3
    original = {h["step"]: h for h in trainer.state.log_history if "loss" in h}
    again = {h["step"]: h for h in resumed.state.log_history if "loss" in h}
    assert sorted(again) == [1, 2, 3] and again[1] == original[1]  # step 1 restored, not re-run
    for step in (2, 3):
        assert again[step]["learning_rate"] == pytest.approx(original[step]["learning_rate"])
    with pytest.raises(IncompleteCheckpointError, match="no complete checkpoint"):
        make_tiny_trainer(smol_tokenizer, tmp_path / "empty", save_strategy="no").train(
            resume_from_checkpoint="latest"
        )


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"num_iterations": 2}, "strictly on-policy"),
        ({"per_device_train_batch_size": 6, "num_generations": 4}, "not a multiple of num_generations"),
        ({"r_min": 1.2}, "0 < r_min <= r_max < 1"),
        ({"r_min": 0.0}, "0 < r_min <= r_max < 1"),
        ({"use_vllm": True}, "vLLM"),
        ({"loss_temperature": "hot"}, "loss_temperature"),
        ({"loss_temperature": 0.0}, "loss_temperature must be > 0"),
        (
            {"deepspeed": "ds_configs/zero3.json", "top_k": 0, "ds3_gather_for_generation": False},
            "ds3_gather_for_generation=True",
        ),
    ],
)
def test_config_validation(overrides, message, tmp_path, monkeypatch):
    monkeypatch.chdir(REPO_ROOT)
    settings = {"output_dir": str(tmp_path), "use_cpu": True, "per_device_train_batch_size": 4, **overrides}
    with pytest.raises(ValueError, match=message):
        HRPOConfig(**settings)


def test_config_defaults_follow_the_paper(tmp_path):
    config = HRPOConfig(output_dir=str(tmp_path), use_cpu=True, per_device_train_batch_size=4)
    assert (config.beta, config.loss_type, config.scale_rewards, config.temperature) == (
        0.005,
        "grpo",
        "group",
        0.5,
    )
    assert (config.learning_rate, config.gate_learning_rate, config.lambda_learning_rate) == (
        5e-6,
        1e-4,
        1e-3,
    )
    assert (config.weight_decay, config.max_grad_norm, config.adam_beta2, config.warmup_steps) == (
        0.1,
        0.1,
        0.99,
        0.1,
    )
    assert (config.r_min, config.r_max, config.top_k, config.num_iterations) == (0.99, 0.999, 50, 1)
    # The loss as the authors ran it: raw-logit log-probs, plain k3 KL.
    assert (config.loss_temperature, config.effective_loss_temperature, config.use_bias_correction_kl) == (
        1.0,
        1.0,
        False,
    )


@pytest.mark.parametrize(("value", "parsed", "effective"), [("sampling", "sampling", 0.5), ("0.7", 0.7, 0.7),
                                                           (1, 1.0, 1.0), ("1.0", 1.0, 1.0)])  # fmt: skip
def test_loss_temperature_values(value, parsed, effective, tmp_path):
    config = HRPOConfig(
        output_dir=str(tmp_path), use_cpu=True, per_device_train_batch_size=4, loss_temperature=value
    )
    assert config.loss_temperature == parsed and config.effective_loss_temperature == effective


def test_rollouts_get_checkpointing_kwargs_and_log_the_authors_hidden_ratio(
    smol_tokenizer, tmp_path, monkeypatch
):
    import hrpo.trainer as trainer_module

    seen = {}
    original = trainer_module.unwrap_model_for_generation

    def recording(*args, **kwargs):
        seen.update(kwargs)
        return original(*args, **kwargs)

    monkeypatch.setattr(trainer_module, "unwrap_model_for_generation", recording)
    trainer = make_tiny_trainer(smol_tokenizer, tmp_path, gradient_checkpointing=True,
                           gradient_checkpointing_kwargs={"use_reentrant": False})  # fmt: skip
    kept = []
    generate = trainer._generate_single_turn

    def keep_rollout(*args, **kwargs):
        result = generate(*args, **kwargs)
        kept.append(trainer._last_rollout.peek())
        return result

    trainer._generate_single_turn = keep_rollout
    trainer.model.train()
    torch.manual_seed(0)
    trainer._generate_and_score_completions([dict(toy_prompt_dataset(1)[0]) for _ in range(4)])
    assert seen["gradient_checkpointing_kwargs"] == {"use_reentrant": False}
    (rollout,) = kept
    slots = rollout.thinking_mask
    assert slots.any()
    a = rollout.embeds_ratio[slots]  # mean_D(a) per hybrid slot
    metrics = trainer._metrics["train"]
    assert metrics["hybrid/hidden_ratio"][-1] == pytest.approx(torch.sqrt(1 - a**2).mean().item(), rel=1e-6)
    assert metrics["hybrid/hidden_ratio_mean"][-1] == pytest.approx(
        rollout.hidden_ratio[slots].mean().item(), rel=1e-6
    )


def test_gate_stays_in_the_graph_without_thinking_slots(smol_tokenizer, tmp_path):
    """DDP needs a gradient for every parameter: a micro-batch without hybrid slots still reaches the gate."""
    trainer = make_tiny_trainer(smol_tokenizer, tmp_path)
    ids = torch.randint(0, 1000, (2, 9))
    mask = torch.ones_like(ids)
    replay = {
        "thinking_mask": torch.zeros(2, 4, dtype=torch.bool),
        "latent_ids": torch.zeros(2, 4, 50, dtype=torch.int32),
        "latent_probs": torch.full((2, 4), 1.0).unsqueeze(-1).expand(2, 4, 50) / 50,
        "completion_mask": torch.ones(2, 4),
    }
    trainer._replay.put(replay, batch_key(ids, mask))
    logps, _, _ = trainer._get_per_token_logps_and_entropies(trainer.model, ids, mask, logits_to_keep=4)
    assert not trainer._replay.pending and trainer._replay_gap.take(batch_key(ids, mask)) == []
    logps.sum().backward()
    for name, p in trainer.gate.named_parameters():
        assert p.grad is not None, name
        assert torch.count_nonzero(p.grad) == 0, name  # weighted by zero: the loss is unchanged


def test_weight_decay_skips_biases_and_norms_but_not_the_gate(smol_tokenizer, tmp_path):
    """As the authors' patch.py: HF's decay split for the policy; gate weights, biases and Lambda all decayed."""
    full = make_tiny_trainer(smol_tokenizer, tmp_path / "full", peft=False, beta=0.0)
    groups = {g["name"]: g for g in full.parameter_groups()}
    assert list(groups) == ["policy", "policy_no_decay", "gate", "lambda"]
    names = {id(p): n for n, p in full.model.named_parameters()}
    no_decay = {names[id(p)] for p in groups["policy_no_decay"]["params"]}
    assert no_decay and all("norm" in n or "bias" in n for n in no_decay)
    assert "model.norm.weight" in no_decay and not any(
        "norm" in names[id(p)] for p in groups["policy"]["params"]
    )
    assert groups["policy_no_decay"]["weight_decay"] == 0.0
    assert {n.rsplit(".", 1)[-1] for n in (names[id(p)] for p in groups["gate"]["params"])} == {
        "weight",
        "bias",
    }
    assert (
        groups["gate"]["weight_decay"]
        == groups["lambda"]["weight_decay"]
        == groups["policy"]["weight_decay"]
        == 0.1
    )
    lora = make_tiny_trainer(smol_tokenizer, tmp_path / "lora")
    assert [g["name"] for g in lora.parameter_groups()] == [
        "policy",
        "gate",
        "lambda",
    ]  # LoRA-only: unchanged


def test_loss_head_gives_raw_logit_and_sampling_log_probs_from_one_forward():
    """install_loss_head: log-probs at loss_temperature (grad) and at tau (replay check), the signature kept."""
    import inspect

    from trl.trainer.utils import add_fused_lm_head

    from hrpo.trainer import install_loss_head

    model = build_tiny_model("llama", vocab_size=1000, seed=3)
    add_fused_lm_head(model, temperature=0.5, outputs=("log_probs", "entropy"))  # what TRL does
    install_loss_head(model, loss_temperature=1.0, sampling_temperature=0.5)
    assert "logits_to_keep" in inspect.signature(model.forward).parameters  # generate() still sees it
    ids = torch.randint(0, 1000, (2, 7), generator=torch.Generator().manual_seed(0))
    labels = ids.masked_fill(torch.arange(7) < 3, -100)
    out = model(input_ids=ids, labels=labels, fused_lm_head=True, sampling_log_probs=True)
    logits = model(input_ids=ids).logits[:, :-1].float()
    scored = labels[:, 1:] != -100

    def at(temperature):
        return torch.log_softmax(logits / temperature, -1).gather(-1, ids[:, 1:, None]).squeeze(-1)[scored]

    torch.testing.assert_close(out.log_probs[scored], at(1.0), atol=1e-5, rtol=0)
    torch.testing.assert_close(out.sampling_log_probs[scored], at(0.5), atol=1e-5, rtol=0)
    assert not torch.allclose(out.log_probs[scored], at(0.5), atol=1e-3)
    assert out.log_probs[~scored].abs().max() == 0 and out.log_probs.requires_grad
    assert not out.sampling_log_probs.requires_grad


def test_hand_off_is_taken_once_by_its_own_batch():
    ids = torch.tensor([[0, 5, 6], [7, 8, 9]])
    mask = torch.tensor([[0, 1, 1], [1, 1, 1]])
    hand = HandOff("rollout", "_generate_single_turn", "_generate_and_score_completions")
    with pytest.raises(HandOffError, match="found no value from _generate_single_turn"):
        hand.take(batch_key(ids, mask))
    hand.put("value", batch_key(ids, mask))
    with pytest.raises(HandOffError, match="second value"):
        hand.put("again", batch_key(ids, mask))
    assert hand.take(batch_key(ids, mask)) == "value" and not hand.pending
    hand.put("value", batch_key(ids, mask))
    other = ids.flip(0), mask.flip(0)  # same shape and tokens, other rows order: another batch
    with pytest.raises(HandOffError, match="another batch"):
        hand.take(batch_key(*other))
    assert not hand.pending  # a refused value is not handed out later
    assert batch_key(ids.masked_fill(mask == 0, 3), mask) == batch_key(ids, mask)  # padding ids do not count


def test_a_rollout_of_another_batch_is_refused(smol_tokenizer, tmp_path):
    """TRL's batch must hold the rollout's completions: a stale or foreign rollout fails loudly."""
    trainer = make_tiny_trainer(smol_tokenizer, tmp_path)
    trainer.model.train()
    generate = trainer._generate_single_turn

    def swap_rows(*args, **kwargs):
        completion_ids, logprobs = generate(*args, **kwargs)
        rollout = trainer._last_rollout.peek()
        rollout.completion_ids = rollout.completion_ids.roll(1, dims=1)  # not what TRL was handed
        return completion_ids, logprobs

    trainer._generate_single_turn = swap_rows
    torch.manual_seed(0)
    with pytest.raises(HandOffError, match="other completion tokens"):
        trainer._generate_and_score_completions([dict(toy_prompt_dataset(1)[0]) for _ in range(4)])


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"pad_to_multiple_of": 8}, "pad_to_multiple_of"),
        ({"generation_kwargs": {"top_k": 5}}, "generation_kwargs"),
        ({"cache_implementation": "static"}, "cache_implementation"),
        ({"use_transformers_paged": True}, "use_transformers_paged"),
        ({"use_transformers_continuous_batching": True}, "use_transformers_continuous_batching"),
        ({"vllm_mode": "server"}, "vllm_mode"),
        ({"use_liger_kernel": True}, "use_liger_kernel"),
        ({"fsdp": "full_shard"}, "fsdp"),
        ({"ds3_gather_for_generation": False}, "ds3_gather_for_generation"),
        ({"off_policy_mask_threshold": 0.5}, "off_policy_mask_threshold"),
        ({"min_p": 0.1}, "min_p"),
        ({"repetition_penalty": 1.1}, "repetition_penalty"),
    ],
)
def test_ignored_grpo_fields_are_refused_by_name(overrides, field, tmp_path):
    settings = {"output_dir": str(tmp_path), "use_cpu": True, "per_device_train_batch_size": 4, **overrides}
    with pytest.raises(ValueError, match=rf"^{field}=.* is not supported by HRPOTrainer: "):
        HRPOConfig(**settings)


def test_decoding_settings_come_from_the_config(tmp_path):
    from hrpo.decoding import DecodingSettings

    config = HRPOConfig(output_dir=str(tmp_path), use_cpu=True, per_device_train_batch_size=4, top_k=20)
    assert config.decoding == DecodingSettings(delimiter="####", temperature=0.5, top_k=20, top_p=1.0)
    defaults = HRPOConfig(output_dir=str(tmp_path), use_cpu=True, per_device_train_batch_size=4)
    assert defaults.decoding == DecodingSettings()  # one set of defaults
    decode = config.decoding.decode_config(12, hybrid=True, eos_token_ids=(2,))
    assert (decode.sampling.temperature, decode.sampling.top_k, decode.delimiter, decode.max_new_tokens) == (
        0.5,
        20,
        "####",
        12,
    )
