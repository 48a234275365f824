"""Length-bucketed replay: same log-probs as the one padded forward, fewer padded positions."""

from __future__ import annotations

import pytest
import torch

from hrpo.bucketing import bucketed_replay_logprobs, padded_tokens, plan_buckets
from hrpo.gate import GateConfig, ThinkingGate
from hrpo.generation import DecodeConfig, hybrid_generate, replay_logprobs
from hrpo.latent import SamplingConfig
from hrpo.testing import MIXED_LENGTH_PROMPTS

PROMPTS = list(MIXED_LENGTH_PROMPTS[:5])


def test_plan_sorts_by_length_and_trims_each_bucket():
    prompt_mask = torch.tensor([[0, 0, 1], [1, 1, 1], [0, 1, 1], [0, 0, 1]])
    completion_mask = torch.tensor([[1, 0, 0, 0], [1, 1, 1, 1], [1, 1, 0, 0], [1, 0, 0, 0]])
    buckets = plan_buckets(prompt_mask, completion_mask, rows_per_bucket=2)
    assert [b.rows.tolist() for b in buckets] == [[1, 2], [0, 3]]
    assert [(b.prompt_start, b.completion_len) for b in buckets] == [(0, 4), (2, 1)]
    assert padded_tokens(prompt_mask, completion_mask, buckets) == 2 * 7 + 2 * 2
    with pytest.raises(ValueError):
        plan_buckets(prompt_mask, completion_mask, 0)


@pytest.mark.parametrize("arch", ["tiny_qwen2", "tiny_llama"])
@pytest.mark.parametrize("top_k", [50, 0])
def test_bucketed_replay_equals_sampled_logprobs(arch, top_k, request):
    model, tokenizer = request.getfixturevalue(arch)
    tokenizer.padding_side = "left"
    enc = tokenizer(PROMPTS, return_tensors="pt", padding=True)
    gate = ThinkingGate(
        GateConfig(model.config.hidden_size, r_min=0.3, r_max=0.6), torch.Generator().manual_seed(0)
    )
    sampling = SamplingConfig(temperature=0.7, top_k=top_k)
    generator = torch.Generator().manual_seed(0)
    free = hybrid_generate(
        model, enc.input_ids, enc.attention_mask, gate, DecodeConfig(24, sampling, eos_token_ids=()), tokenizer,
        generator,
    )  # fmt: skip
    # Stop ids taken from what rows produced: completions of different lengths.
    eos = tuple(
        dict.fromkeys(int(free.completion_ids[row, step]) for row, step in enumerate([2, 20, 7, 12, 4]))
    )
    config = DecodeConfig(24, sampling, eos_token_ids=eos)
    rollout = hybrid_generate(
        model, enc.input_ids, enc.attention_mask, gate, config, tokenizer, torch.Generator().manual_seed(0)
    )
    assert len(set(rollout.completion_mask.sum(1).tolist())) >= 3
    full = replay_logprobs(model, gate, rollout, temperature=0.7)
    for rows_per_bucket in (1, 2, 5):
        bucketed = bucketed_replay_logprobs(model, gate, rollout, 0.7, rows_per_bucket)
        assert (bucketed - rollout.logprobs * rollout.completion_mask).abs().max() < 1e-5
        assert (bucketed - full).abs().max() < 1e-5
    plain = bucketed_replay_logprobs(model, gate, rollout, 0.7, 2, hybrid=False)
    torch.testing.assert_close(
        plain, replay_logprobs(model, gate, rollout, 0.7, hybrid=False), rtol=0, atol=1e-5
    )
    buckets = plan_buckets(rollout.prompt_mask, rollout.completion_mask, 2)
    assert padded_tokens(rollout.prompt_mask, rollout.completion_mask, buckets) < rollout.input_ids.numel()


def test_cut_columns_keep_each_tokens_position_id():
    """position_ids_from_mask on a bucket's columns = the full row's position ids (only all-pad columns are cut)."""
    from hrpo.generation import position_ids_from_mask

    gen = torch.Generator().manual_seed(0)
    prompt_len = torch.randint(0, 7, (9,), generator=gen)
    completion_len = torch.randint(0, 6, (9,), generator=gen)
    prompt_mask = (torch.arange(6)[None, :] >= 6 - prompt_len[:, None]).long()
    completion_mask = (torch.arange(5)[None, :] < completion_len[:, None]).long()
    mask = torch.cat([prompt_mask, completion_mask], dim=1)
    full = position_ids_from_mask(mask)
    for rows_per_bucket in (1, 2, 4, 9):
        buckets = plan_buckets(prompt_mask, completion_mask, rows_per_bucket)
        assert len(buckets) == -(-9 // rows_per_bucket)
        assert sorted(torch.cat([b.rows for b in buckets]).tolist()) == list(range(9))
        for b in buckets:
            columns = slice(b.prompt_start, 6 + b.completion_len)
            assert b.prompt_start <= 5  # the column before the completion stays
            cut = mask[b.rows, :]
            assert not cut[:, : b.prompt_start].any() and not cut[:, 6 + b.completion_len :].any()
            assert torch.equal(position_ids_from_mask(mask[b.rows, columns]), full[b.rows, columns])
