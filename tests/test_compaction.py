"""Finished rows leave the batch without changing what any row produces (issue 14).

Tiny random models rarely emit their real EOS, so each test first decodes without stopping and then declares
some of the tokens it produced as stop ids: rows then stop at different steps, and the run with compaction
drops them from the KV cache while the reference run (``compact_fraction=None``) keeps every row to the end.
"""

from __future__ import annotations

import pytest
import torch
from transformers import DynamicCache

from hrpo.gate import GateConfig, ThinkingGate
from hrpo.generation import DecodeConfig, hybrid_generate, replay_logprobs
from hrpo.latent import SamplingConfig, sparse_latents
from hrpo.testing import MIXED_LENGTH_PROMPTS, decode_batch, encode

PROMPTS = list(MIXED_LENGTH_PROMPTS)
SAMPLED = SamplingConfig(temperature=0.7, top_k=50, top_p=0.95)
GREEDY = SamplingConfig(greedy=True)


def gate_for(model) -> ThinkingGate:
    # The paper's most latent-heavy init: hybrid inputs matter, but the tiny model does not turn chaotic.
    return ThinkingGate(GateConfig(model.config.hidden_size, r_min=0.95), torch.Generator().manual_seed(3))


def stop_ids_from(completion_ids: torch.Tensor, steps: list[int]) -> tuple[int, ...]:
    """Tokens that rows produced at ``steps`` (row i at ``steps[i]``): as stop ids they end rows early."""
    return tuple(dict.fromkeys(int(completion_ids[row, step]) for row, step in enumerate(steps)))


class SelectCounter:
    """Counts ``DynamicCache.batch_select_indices`` calls (how often the batch was compacted)."""

    def __init__(self, monkeypatch):
        self.calls: list[int] = []
        original = DynamicCache.batch_select_indices

        def counted(cache, indices):
            self.calls.append(len(indices))
            return original(cache, indices)

        monkeypatch.setattr(DynamicCache, "batch_select_indices", counted)


def decode(model, tokenizer, enc, gate, sampling, hybrid, eos=(), compact=0.0, seed=0, max_new=24, **kw):
    return decode_batch(
        model, tokenizer, enc, gate, seed, max_new_tokens=max_new, sampling=sampling, hybrid=hybrid,
        eos_token_ids=eos, compact_fraction=compact, **kw,
    )  # fmt: skip


def assert_same_rollout(got, want, embedding):
    """Tokens, masks and stop reasons exactly; floats to what a different batch size does to a matmul.

    A forward over fewer rows may round differently (BLAS picks its blocking by row count), and with hybrid
    inputs that 1e-7 feeds back into the next step, so recorded floats agree to ~1e-5 relative, as they do
    between a row decoded alone and in a batch. (Replay against a rollout's own log-probs is exact: tested below.)
    """
    for name in ("completion_ids", "completion_mask", "thinking_mask", "stop_reason"):
        assert torch.equal(getattr(got, name), getattr(want, name)), name
    for name in ("logprobs", "embeds_ratio", "hidden_ratio"):
        torch.testing.assert_close(getattr(got, name), getattr(want, name), rtol=1e-4, atol=1e-5)
    slots = want.thinking_mask
    if want.latent_ids is not None:  # as latents h: near-tied top-k entries may swap places
        with torch.no_grad():
            got_h, want_h = (
                sparse_latents(r.latent_ids[slots], r.latent_probs[slots], embedding) for r in (got, want)
            )
        torch.testing.assert_close(got_h, want_h, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("arch", ["tiny_qwen2", "tiny_llama"])
@pytest.mark.parametrize("hybrid", [True, False])
@pytest.mark.parametrize("sampling", [GREEDY, SAMPLED], ids=["greedy", "sampled"])
def test_compaction_changes_no_output(arch, hybrid, sampling, request, monkeypatch):
    model, tokenizer = request.getfixturevalue(arch)
    enc = encode(tokenizer, PROMPTS)
    assert len(set(enc.attention_mask.sum(1).tolist())) >= 5  # padded, mixed prompt lengths
    gate = gate_for(model)
    free = decode(model, tokenizer, enc, gate, sampling, hybrid, compact=None)
    eos = stop_ids_from(free.completion_ids, [3, 9, 1, 15, 6, 12])
    counter = SelectCounter(monkeypatch)
    reference = decode(model, tokenizer, enc, gate, sampling, hybrid, eos=eos, compact=None)
    assert counter.calls == []
    lengths = reference.completion_mask.sum(1)
    assert len(set(lengths.tolist())) >= 3 and int(lengths.min()) < reference.completion_ids.shape[1]
    if hybrid:
        assert reference.thinking_mask.any()
    for fraction in (0.0, 0.5):
        counter.calls.clear()
        compacted = decode(model, tokenizer, enc, gate, sampling, hybrid, eos=eos, compact=fraction)
        assert counter.calls, "the batch was never compacted"
        assert_same_rollout(compacted, reference, model.get_input_embeddings())


def test_compaction_with_stop_strings_and_replay(tiny_qwen2, monkeypatch):
    """Rows ended by stop strings leave the batch too, and the replay of a compacted rollout stays exact."""
    model, tokenizer = tiny_qwen2
    enc = encode(tokenizer, PROMPTS)
    gate = gate_for(model)
    free = decode(model, tokenizer, enc, gate, SAMPLED, True, compact=None, max_new=32)
    texts = [tokenizer.decode(free.completion_ids[row, : 4 + 3 * row]) for row in range(len(PROMPTS))]
    stops = tuple(dict.fromkeys(text[-3:] for text in texts if len(text) >= 3))
    counter = SelectCounter(monkeypatch)
    want = decode(model, tokenizer, enc, gate, SAMPLED, True, compact=None, max_new=32, stop_strings=stops)
    got = decode(model, tokenizer, enc, gate, SAMPLED, True, compact=0.0, max_new=32, stop_strings=stops)
    assert counter.calls
    assert (want.stop_reason == 1).sum() >= 2  # STOP_STRING
    assert_same_rollout(got, want, model.get_input_embeddings())
    replayed = replay_logprobs(model, gate, got, temperature=SAMPLED.temperature)
    assert (replayed - got.logprobs * got.completion_mask).abs().max() < 1e-5


@pytest.mark.parametrize("arch", ["tiny_qwen2", "tiny_llama"])
def test_a_rows_samples_do_not_depend_on_the_other_rows(arch, request):
    """Same prompt and row seed: the same sampled tokens, whatever else is (or stops) in the batch."""
    model, tokenizer = request.getfixturevalue(arch)
    gate = gate_for(model)
    config = DecodeConfig(max_new_tokens=24, sampling=SAMPLED)
    target = PROMPTS[2]

    def sampled(prompts, seeds):
        enc = encode(tokenizer, prompts)
        rollout = hybrid_generate(
            model, enc.input_ids, enc.attention_mask, gate, config, tokenizer, row_seeds=seeds
        )
        return rollout.completion_ids[prompts.index(target)]

    alone = sampled([target], [1234])
    assert torch.equal(sampled([PROMPTS[0], target, PROMPTS[3]], [7, 1234, 9]), alone)
    assert torch.equal(sampled([PROMPTS[4], PROMPTS[1], PROMPTS[5], target], [5, 6, 8, 1234]), alone)
    assert torch.equal(sampled([PROMPTS[0], target, PROMPTS[3]], [70, 1234, 90]), alone)  # other seeds
    assert not torch.equal(sampled([target], [4321]), alone)  # the seed matters


def test_seeds_come_from_the_generator(tiny_llama):
    model, tokenizer = tiny_llama
    enc = encode(tokenizer, PROMPTS[:3])
    first = decode(model, tokenizer, enc, None, SAMPLED, False, seed=5)
    again = decode(model, tokenizer, enc, None, SAMPLED, False, seed=5)
    other = decode(model, tokenizer, enc, None, SAMPLED, False, seed=6)
    assert torch.equal(first.completion_ids, again.completion_ids)
    assert not torch.equal(first.completion_ids, other.completion_ids)
    torch.manual_seed(3)  # no generator: torch's global RNG picks the seeds
    config = DecodeConfig(max_new_tokens=24, sampling=SAMPLED, hybrid=False)
    a = hybrid_generate(model, enc.input_ids, enc.attention_mask, None, config, tokenizer)
    torch.manual_seed(3)
    b = hybrid_generate(model, enc.input_ids, enc.attention_mask, None, config, tokenizer)
    assert torch.equal(a.completion_ids, b.completion_ids)
    with pytest.raises(ValueError, match="row_seeds"):
        hybrid_generate(model, enc.input_ids, enc.attention_mask, None, config, tokenizer, row_seeds=[1])


def test_bad_compact_fraction():
    with pytest.raises(ValueError, match="compact_fraction"):
        DecodeConfig(compact_fraction=1.5)
