"""The hybrid decode loop: equality with HF generate, exact replay, batch invariance, delimiter handling."""

from __future__ import annotations

import pytest
import torch

from hrpo.gate import GateConfig, ThinkingGate
from hrpo.generation import (
    STOP_EOS,
    STOP_LENGTH,
    STOP_STRING,
    DecodeConfig,
    hybrid_generate,
    replay_logprobs,
)
from hrpo.latent import SamplingConfig
from hrpo.testing import encode, scripted_causal_lm, strong_gate

PROMPTS = [
    "Natalia sold clips to 48 of her friends in April, and then she sold half as many clips in May.",
    "Hi",
    "What is 7 times 8? Think step by step, then give the answer after ####.",
    "Tell me a story.",
]


def greedy(hybrid: bool, max_new_tokens: int = 24, **sampling) -> DecodeConfig:
    return DecodeConfig(
        max_new_tokens=max_new_tokens, hybrid=hybrid, sampling=SamplingConfig(greedy=True, **sampling)
    )


@pytest.mark.parametrize("arch", ["tiny_qwen2", "tiny_llama"])
def test_gate_off_greedy_equals_hf_generate(arch, request):
    model, tokenizer = request.getfixturevalue(arch)
    enc = encode(tokenizer, PROMPTS)
    assert len(set(enc.attention_mask.sum(1).tolist())) == len(PROMPTS)  # different prompt lengths
    expected = model.generate(**enc, do_sample=False, max_new_tokens=24)[:, enc.input_ids.shape[1] :]
    for gate in (None, strong_gate(model.config.hidden_size)):  # hybrid=False ignores any gate
        rollout = hybrid_generate(model, enc.input_ids, enc.attention_mask, gate, greedy(False), tokenizer)
        got = rollout.completion_ids
        # generate pads finished rows with pad_token_id, as we do
        assert torch.equal(got, expected[:, : got.shape[1]])
        assert not rollout.thinking_mask.any()


@pytest.mark.parametrize("arch", ["tiny_qwen2", "tiny_llama"])
@pytest.mark.parametrize("top_k", [50, 0])
def test_replay_logprobs_equal_sampled_logprobs(arch, top_k, request):
    model, tokenizer = request.getfixturevalue(arch)
    gate = strong_gate(model.config.hidden_size)
    enc = encode(tokenizer, PROMPTS)
    config = DecodeConfig(
        max_new_tokens=32, sampling=SamplingConfig(temperature=0.7, top_k=top_k, top_p=0.95)
    )
    rollout = hybrid_generate(
        model, enc.input_ids, enc.attention_mask, gate, config, tokenizer, torch.Generator().manual_seed(0)
    )
    assert rollout.thinking_mask.sum() > 0.5 * rollout.completion_mask.sum()
    assert (rollout.latent_ids is not None) == (top_k > 0)
    replayed = replay_logprobs(model, gate, rollout, temperature=0.7)
    diff = (replayed - rollout.logprobs * rollout.completion_mask).abs().max().item()
    assert diff < 1e-4
    # Plain-token inputs (the reference convention) give different log-probs when the gate mixes strongly.
    plain = replay_logprobs(model, gate, rollout, temperature=0.7, hybrid=False)
    assert (plain - replayed).abs().max() > 1e-2
    replayed.sum().backward()
    for name, p in gate.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name
    gate.zero_grad()


def test_hybrid_inputs_change_the_output(tiny_qwen2):
    model, tokenizer = tiny_qwen2
    enc = encode(tokenizer, PROMPTS)
    plain = hybrid_generate(model, enc.input_ids, enc.attention_mask, None, greedy(False), tokenizer)
    mixed = hybrid_generate(
        model, enc.input_ids, enc.attention_mask, strong_gate(64), greedy(True), tokenizer
    )
    assert not torch.equal(plain.completion_ids, mixed.completion_ids)
    assert mixed.thinking_mask.any()
    assert (mixed.embeds_ratio[mixed.thinking_mask] < 1).all()
    assert (mixed.embeds_ratio[~mixed.thinking_mask] == 1).all()


@pytest.mark.parametrize("arch", ["tiny_qwen2", "tiny_llama"])
def test_batch_invariance_hybrid_greedy(arch, request):
    model, tokenizer = request.getfixturevalue(arch)
    # The paper's most latent-heavy init (r_min 0.95). With a far stronger gate, a random tiny model turns
    # chaotic and 1e-6 batch rounding differences grow into different tokens after ~15 steps.
    gate = ThinkingGate(GateConfig(model.config.hidden_size, r_min=0.95), torch.Generator().manual_seed(3))
    enc = encode(tokenizer, PROMPTS)
    batch = hybrid_generate(model, enc.input_ids, enc.attention_mask, gate, greedy(True), tokenizer)
    assert batch.thinking_mask.sum() > 20
    for row, prompt in enumerate(PROMPTS):
        alone_enc = encode(tokenizer, [prompt])
        alone = hybrid_generate(
            model, alone_enc.input_ids, alone_enc.attention_mask, gate, greedy(True), tokenizer
        )
        n = int(alone.completion_mask.sum())
        assert torch.equal(alone.completion_ids[0, :n], batch.completion_ids[row, :n])
        assert torch.equal(alone.thinking_mask[0, :n], batch.thinking_mask[row, :n])


def test_latent_storage_is_compact(tiny_qwen2):
    model, tokenizer = tiny_qwen2
    enc = encode(tokenizer, PROMPTS[:2])
    rollout = hybrid_generate(
        model, enc.input_ids, enc.attention_mask, strong_gate(64), greedy(True, 4), tokenizer
    )
    assert rollout.latent_ids.shape == (2, 4, 50) and rollout.latent_ids.dtype == torch.int32
    assert rollout.latent_bytes_per_token() == 400
    dense = hybrid_generate(
        model, enc.input_ids, enc.attention_mask, strong_gate(64), greedy(True, 4, top_k=0), tokenizer
    )
    assert dense.latents.shape == (2, 4, 64) and dense.latent_bytes_per_token() == 256


def test_delimiter_split_sticky_and_only_thinking_tokens_are_hybrid(qwen_tokenizer):
    tok = qwen_tokenizer
    t = lambda s: tok.convert_tokens_to_ids(tok.tokenize(s))[0]  # noqa: E731
    eos = tok.convert_tokens_to_ids("<|im_end|>")
    script = [
        [t("Let"), t("##"), t("##"), t("5"), t(" more"), eos],  # split delimiter at token 3
        [t(" ####"), t("7"), t("##"), eos],  # fused delimiter first; later "##" changes nothing
        [t("no"), t(" answer"), t(" here"), t(" at"), t(" all"), t(" ok")],  # never answers: length stop
    ]
    model = scripted_causal_lm(script, len(tok), eos=eos, pad=tok.pad_token_id)
    gate = ThinkingGate(GateConfig(16, r_min=0.3, r_max=0.5))
    ids = torch.tensor([[1, 2, 3]] * 3)
    rollout = hybrid_generate(model, ids, torch.ones_like(ids), gate, greedy(True, 6), tok)
    assert rollout.completion_ids[0].tolist() == script[0]
    assert rollout.thinking_mask.tolist() == [
        [True, True, False, False, False, False],
        [False, False, False, False, False, False],
        [True, True, True, True, True, True],
    ]
    assert rollout.completion_mask[1].tolist() == [1, 1, 1, 1, 0, 0]
    assert rollout.completion_ids[1, 4:].tolist() == [tok.pad_token_id] * 2
    assert rollout.stop_reason.tolist() == [STOP_EOS, STOP_EOS, STOP_LENGTH]
    # What the model was fed at decode step k is token k's input: hybrid exactly where the mask says. Finished
    # rows leave the batch (NaN: not fed): row 1 stops at step 3, so it is not fed after that.
    for k, fed in enumerate(model.fed):
        plain = model.embed(rollout.completion_ids[:, k])
        present = ~fed.isnan().any(-1)
        differs = (fed - plain).abs().amax(-1) > 1e-6
        assert (differs & present).tolist() == (rollout.thinking_mask[:, k] & present).tolist()
    assert [int(f.isnan().any(-1).sum()) for f in model.fed] == [0, 0, 0, 1, 1]


def test_stop_strings_end_rows(qwen_tokenizer):
    tok = qwen_tokenizer
    t = lambda s: tok.convert_tokens_to_ids(tok.tokenize(s))[0]  # noqa: E731
    script = [[t("A"), t(" Question"), t(":"), t(" B")], [t("x")] * 5]
    model = scripted_causal_lm(
        script, len(tok), eos=tok.convert_tokens_to_ids("<|im_end|>"), pad=tok.pad_token_id
    )
    ids = torch.tensor([[1, 2]] * 2)
    config = DecodeConfig(
        max_new_tokens=5, hybrid=False, stop_strings=("Question:",), sampling=SamplingConfig(greedy=True)
    )
    rollout = hybrid_generate(model, ids, torch.ones_like(ids), None, config, tok)
    assert rollout.completion_mask.tolist() == [[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]]
    assert rollout.stop_reason.tolist() == [STOP_STRING, STOP_LENGTH]


def test_all_model_eos_ids_stop(tiny_qwen2):
    """Qwen has two EOS ids; whichever is chosen ends the row."""
    from hrpo.generation import resolve_eos_ids

    model, tokenizer = tiny_qwen2
    assert set(resolve_eos_ids(model, tokenizer)) == {151645, 151643}
