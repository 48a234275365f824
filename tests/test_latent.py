"""Step distributions, sampling and the latent h = (p @ E) / ||p||_2."""

import pytest
import torch

from hrpo.latent import (
    SamplingConfig,
    choose_tokens,
    chosen_logprobs,
    dense_latents,
    row_uniforms,
    sparse_latents,
    step_distribution,
    token_logprobs,
)


def test_top_k_distribution_is_the_tempered_truncated_softmax():
    torch.manual_seed(0)
    logits = torch.randn(3, 100)
    dist = step_distribution(logits, SamplingConfig(temperature=0.5, top_k=10))
    assert dist.ids.shape == (3, 10)
    expected_ids = logits.topk(10).indices
    assert torch.equal(dist.ids, expected_ids)
    expected = torch.softmax(logits.gather(-1, expected_ids) / 0.5, -1)
    torch.testing.assert_close(dist.probs, expected)


def test_top_p_keeps_smallest_nucleus():
    logits = torch.log(torch.tensor([[0.5, 0.3, 0.15, 0.05]]))
    dist = step_distribution(logits, SamplingConfig(temperature=1.0, top_k=4, top_p=0.8))
    torch.testing.assert_close(dist.probs, torch.tensor([[0.625, 0.375, 0.0, 0.0]]))
    dense = step_distribution(logits, SamplingConfig(temperature=1.0, top_k=0, top_p=0.8))
    torch.testing.assert_close(dense.probs, torch.tensor([[0.625, 0.375, 0.0, 0.0]]))


def test_inverse_cdf_sampling_is_unbiased_and_seeded():
    logits = torch.log(torch.tensor([0.1, 0.2, 0.3, 0.4])).repeat(20000, 1)
    dist = step_distribution(logits, SamplingConfig(temperature=1.0, top_k=0))
    draws = choose_tokens(logits, dist, greedy=False, generator=torch.Generator().manual_seed(0))
    freq = torch.bincount(draws, minlength=4).float() / draws.numel()
    torch.testing.assert_close(freq, torch.tensor([0.1, 0.2, 0.3, 0.4]), atol=0.012, rtol=0)
    again = choose_tokens(logits, dist, greedy=False, generator=torch.Generator().manual_seed(0))
    assert torch.equal(draws, again)


def test_zero_probability_tokens_are_never_drawn():
    logits = torch.log(torch.tensor([[0.6, 0.3, 0.1]])).repeat(5000, 1)
    dist = step_distribution(logits, SamplingConfig(temperature=1.0, top_k=3, top_p=0.5))
    draws = choose_tokens(logits, dist, greedy=False, generator=torch.Generator().manual_seed(1))
    assert set(draws.tolist()) == {0}


def test_sparse_latent_equals_dense_formula():
    torch.manual_seed(0)
    embedding = torch.nn.Embedding(50, 8)
    logits = torch.randn(4, 50)
    sparse = step_distribution(logits, SamplingConfig(temperature=0.7, top_k=5))
    p = torch.zeros(4, 50).scatter(-1, sparse.ids, sparse.probs)
    expected = (p @ embedding.weight) / p.norm(dim=-1, keepdim=True)
    with torch.no_grad():
        got = sparse_latents(sparse.ids, sparse.probs, embedding, chunk_size=3)
    torch.testing.assert_close(got, expected)
    torch.testing.assert_close(dense_latents(p, embedding.weight), expected)


def test_one_hot_distribution_gives_the_token_embedding():
    embedding = torch.nn.Embedding(10, 4)
    ids, probs = torch.tensor([[7, 1]]), torch.tensor([[1.0, 0.0]])
    with torch.no_grad():
        torch.testing.assert_close(sparse_latents(ids, probs, embedding), embedding.weight[7:8])


def test_token_logprobs_are_tempered_full_softmax():
    logits = torch.randn(2, 3, 11)
    tokens = torch.randint(0, 11, (2, 3))
    expected = torch.log_softmax(logits / 0.5, -1).gather(-1, tokens[..., None]).squeeze(-1)
    torch.testing.assert_close(token_logprobs(logits, tokens, 0.5), expected)


@pytest.mark.parametrize("kwargs", [{"temperature": 0.0}, {"top_k": -1}, {"top_p": 0.0}, {"top_p": 1.5}])
def test_bad_sampling_config(kwargs):
    with pytest.raises(ValueError):
        SamplingConfig(**kwargs)


@pytest.mark.parametrize("top_k", [50, 0])
@pytest.mark.parametrize("top_p", [1.0, 0.9])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_log_normalizer_gives_the_full_softmax_logprob(top_k, top_p, dtype):
    """The sampler's normaliser reproduces token_logprobs (the replay's formula) for any chosen token."""
    torch.manual_seed(0)
    logits = (torch.randn(5, 3000) * 4).to(dtype)
    config = SamplingConfig(temperature=0.7, top_k=top_k, top_p=top_p)
    for workspace in (None, torch.empty(5, 3000)):
        dist = step_distribution(logits, config, log_normalizer=True, workspace=workspace)
        expected = torch.logsumexp(logits.float() / 0.7, dim=-1)
        torch.testing.assert_close(dist.log_normalizer, expected, rtol=0, atol=2e-6)
        tokens = choose_tokens(logits, dist, greedy=False, uniforms=torch.rand(5))
        torch.testing.assert_close(
            chosen_logprobs(logits, tokens, dist.log_normalizer, 0.7),
            token_logprobs(logits, tokens, 0.7),
            rtol=0,
            atol=2e-6,
        )
    assert step_distribution(logits, config).log_normalizer is None


def test_sparse_distribution_of_bf16_logits_is_fp32():
    logits = torch.randn(2, 100).to(torch.bfloat16)
    dist = step_distribution(
        logits, SamplingConfig(top_k=10), log_normalizer=True, workspace=torch.empty(2, 100)
    )
    assert dist.probs.dtype == torch.float32 and dist.log_normalizer.dtype == torch.float32
    torch.testing.assert_close(dist.probs, torch.softmax(logits.float().topk(10).values / 0.5, -1))


def test_row_uniforms_are_per_row_streams():
    both = row_uniforms([3, 7], 6)
    assert both.shape == (2, 6) and both.dtype == torch.float32
    assert torch.equal(row_uniforms([7], 6)[0], both[1])  # a row's stream ignores the other rows
    assert torch.equal(row_uniforms([3], 4)[0], both[0, :4])  # and the step count
    assert torch.equal(both[0], torch.rand(6, generator=torch.Generator().manual_seed(3)))


def test_given_uniforms_decide_the_draw():
    logits = torch.log(torch.tensor([[0.1, 0.2, 0.3, 0.4]])).repeat(3, 1)
    dist = step_distribution(logits, SamplingConfig(temperature=1.0, top_k=0))
    draws = choose_tokens(logits, dist, greedy=False, uniforms=torch.tensor([0.05, 0.25, 0.95]))
    assert draws.tolist() == [0, 1, 3]
    sparse = step_distribution(logits, SamplingConfig(temperature=1.0, top_k=4))  # ids sorted: 3, 2, 1, 0
    assert choose_tokens(logits, sparse, False, uniforms=torch.tensor([0.05, 0.45, 0.95])).tolist() == [
        3,
        2,
        0,
    ]


def test_distribution_rows_can_be_selected():
    dist = step_distribution(torch.randn(4, 30), SamplingConfig(top_k=5), log_normalizer=True)
    part = dist.select(torch.tensor([2, 0]))
    assert torch.equal(part.ids, dist.ids[[2, 0]]) and torch.equal(
        part.log_normalizer, dist.log_normalizer[[2, 0]]
    )
