"""The preallocated KV cache (:mod:`hrpo.kv_cache`): same states as ``DynamicLayer``, no copy per step, same rollouts.

The decode loop's outputs must not depend on the cache: rollouts with ``preallocate_cache`` on and off are compared
bit for bit (tokens, masks, and every recorded float), on padded batches of mixed prompt lengths, hybrid on and off,
greedy and sampled, with rows leaving the batch, in fp32 and bf16.
"""

from __future__ import annotations

import copy

import pytest
import torch
from transformers import DynamicCache, Qwen2Config
from transformers.cache_utils import DynamicLayer, DynamicSlidingWindowLayer

from hrpo.gate import GateConfig, ThinkingGate
from hrpo.kv_cache import PreallocatedLayer, preallocated_cache
from hrpo.latent import SamplingConfig
from hrpo.testing import MIXED_LENGTH_PROMPTS, decode_batch, encode

ROLLOUT_FIELDS = (
    "completion_ids", "completion_mask", "thinking_mask", "stop_reason", "logprobs", "embeds_ratio",
    "hidden_ratio", "latent_ids", "latent_probs",
)  # fmt: skip


def states(batch: int, length: int, seed: int, dtype=torch.float32) -> tuple[torch.Tensor, torch.Tensor]:
    """Random ``(batch, 2 heads, length, 4)`` keys and ``(batch, 2, length, 3)`` values (head dims may differ)."""
    generator = torch.Generator().manual_seed(seed)
    keys = torch.randn(batch, 2, length, 4, generator=generator).to(dtype)
    values = torch.randn(batch, 2, length, 3, generator=generator).to(dtype)
    return keys, values


def fill(layer, steps: list[int], batch: int = 3, dtype=torch.float32) -> None:
    for index, length in enumerate(steps):
        layer.update(*states(batch, length, seed=index, dtype=dtype))


def assert_same_states(layer, reference) -> None:
    assert layer.get_seq_length() == reference.get_seq_length()
    assert torch.equal(layer.keys, reference.keys) and torch.equal(layer.values, reference.values)


@pytest.mark.parametrize("capacity", [64, 5])  # 5: the prefill alone overflows it, then every step grows it
def test_updates_return_what_dynamic_layer_returns(capacity):
    layer, reference = PreallocatedLayer(capacity), DynamicLayer()
    for index, length in enumerate([4, 1, 1, 2, 1]):
        got = layer.update(*states(3, length, seed=index))
        want = reference.update(*states(3, length, seed=index))
        assert torch.equal(got[0], want[0]) and torch.equal(got[1], want[1])
        assert_same_states(layer, reference)
    assert layer.get_mask_sizes(1) == reference.get_mask_sizes(1)


def test_steps_write_in_place_instead_of_copying_the_cache():
    """The point of the layer: within its capacity, a step neither reallocates nor copies the cached states."""
    layer = PreallocatedLayer(capacity=16)
    layer.update(*states(2, 6, seed=0))
    pointers = (layer.keys.data_ptr(), layer.values.data_ptr())
    before = layer.keys.clone()
    for seed in range(1, 11):  # 6 + 10 = 16 positions: the buffer is full
        layer.update(*states(2, 1, seed=seed))
        assert (layer.keys.data_ptr(), layer.values.data_ptr()) == pointers
    assert torch.equal(layer.keys[:, :, :6], before)
    layer.update(*states(2, 1, seed=99))  # 16 -> 17 positions: one copy into a doubled buffer
    assert layer.keys.data_ptr() != pointers[0] and layer._key_buffer.shape[-2] == 32
    assert torch.equal(layer.keys[:, :, :6], before)


def test_row_selection_crop_repeat_reorder_and_reset_match_dynamic_layer():
    layer, reference = PreallocatedLayer(32), DynamicLayer()
    for target in (layer, reference):
        fill(target, [5, 1, 1], batch=4)
    keep = torch.tensor([3, 1])
    layer.batch_select_indices(keep)
    reference.batch_select_indices(keep)
    assert_same_states(layer, reference)
    for target in (layer, reference):  # the selected rows go on decoding
        target.update(*states(2, 1, seed=7))
    assert_same_states(layer, reference)
    layer.crop(-2)
    reference.crop(-2)
    assert_same_states(layer, reference)
    with pytest.raises(ValueError, match="negative"):
        layer.crop(3)
    layer.batch_repeat_interleave(2)
    reference.batch_repeat_interleave(2)
    assert_same_states(layer, reference)
    order = torch.tensor([3, 0, 2, 1])
    layer.reorder_cache(order)
    reference.reorder_cache(order)
    assert_same_states(layer, reference)
    layer.reset()
    assert layer.get_seq_length() == 0 and not layer.is_initialized
    fill(layer, [2, 1])  # usable again, with a new batch size
    assert layer.get_seq_length() == 3 and layer.keys.shape[0] == 3


def test_dtype_and_device_follow_the_first_states():
    layer = PreallocatedLayer(8)
    fill(layer, [3, 1], dtype=torch.bfloat16)
    assert layer.keys.dtype == layer.values.dtype == torch.bfloat16
    assert layer.keys.device == torch.device("cpu")


def test_bad_capacity_and_offloading_are_refused():
    with pytest.raises(ValueError, match="capacity"):
        PreallocatedLayer(0)
    with pytest.raises(NotImplementedError, match="offloading"):
        PreallocatedLayer(4).offload()


def test_only_full_attention_layers_are_replaced():
    config = Qwen2Config(
        num_hidden_layers=3,
        layer_types=["full_attention", "sliding_attention", "full_attention"],
        sliding_window=4,
        use_sliding_window=True,
    )
    assert [type(layer) for layer in DynamicCache(config=config).layers] == [
        DynamicLayer, DynamicSlidingWindowLayer, DynamicLayer
    ]  # fmt: skip
    cache = preallocated_cache(config, capacity=12)
    assert isinstance(cache, DynamicCache)
    assert [type(layer) for layer in cache.layers] == [
        PreallocatedLayer, DynamicSlidingWindowLayer, PreallocatedLayer
    ]  # fmt: skip
    assert all(layer.capacity == 12 for layer in cache.layers if isinstance(layer, PreallocatedLayer))


def test_a_config_without_layer_types_gets_preallocated_layers_on_demand():
    cache = preallocated_cache(None, capacity=6)  # DynamicCache then creates a layer at each new layer index
    assert cache.layers == []
    cache.update(*states(1, 2, seed=0), layer_idx=0)
    cache.update(*states(1, 2, seed=1), layer_idx=1)
    assert [type(layer) for layer in cache.layers] == [PreallocatedLayer, PreallocatedLayer]
    assert cache.layers[1].capacity == 6 and cache.get_seq_length(1) == 2


def make_gate(model) -> ThinkingGate:
    gate = ThinkingGate(GateConfig(model.config.hidden_size, r_min=0.95), torch.Generator().manual_seed(3))
    return gate.to(model.dtype)


def decode(model, tokenizer, enc, gate, sampling, hybrid, preallocate, eos=()):
    return decode_batch(
        model, tokenizer, enc, gate, max_new_tokens=20, sampling=sampling, hybrid=hybrid, eos_token_ids=eos,
        preallocate_cache=preallocate,
    )  # fmt: skip


def assert_identical(got, want) -> None:
    for name in ROLLOUT_FIELDS:
        a, b = getattr(got, name), getattr(want, name)
        assert (a is None) == (b is None), name
        if a is not None:
            assert torch.equal(a, b), f"{name} differs by {(a.float() - b.float()).abs().max()}"


@pytest.mark.parametrize("arch", ["tiny_qwen2", "tiny_llama"])
@pytest.mark.parametrize("hybrid", [True, False])
@pytest.mark.parametrize("greedy", [True, False], ids=["greedy", "sampled"])
def test_rollouts_are_bit_identical_with_and_without_preallocation(arch, hybrid, greedy, request):
    model, tokenizer = request.getfixturevalue(arch)
    enc, gate = encode(tokenizer, list(MIXED_LENGTH_PROMPTS)), make_gate(model)
    sampling = SamplingConfig(greedy=True) if greedy else SamplingConfig(temperature=0.7, top_k=50)
    free = decode(model, tokenizer, enc, gate, sampling, hybrid, preallocate=False)
    # Tokens the rows produced early, declared as stop ids: rows stop at different steps and leave the batch.
    eos = tuple(dict.fromkeys(int(free.completion_ids[row, step]) for row, step in enumerate([3, 9, 1, 12])))
    want = decode(model, tokenizer, enc, gate, sampling, hybrid, preallocate=False, eos=eos)
    lengths = want.completion_mask.sum(1)
    assert len(set(lengths.tolist())) >= 3, "rows should stop at different steps"
    assert_identical(decode(model, tokenizer, enc, gate, sampling, hybrid, preallocate=True, eos=eos), want)


def test_bf16_rollouts_are_bit_identical_with_and_without_preallocation(tiny_llama):
    model, tokenizer = tiny_llama
    model = copy.deepcopy(model).to(torch.bfloat16)  # a copy: the fixture is shared
    enc, gate = encode(tokenizer, list(MIXED_LENGTH_PROMPTS)), make_gate(model)
    sampling = SamplingConfig(temperature=0.7, top_k=50)
    want = decode(model, tokenizer, enc, gate, sampling, True, preallocate=False)
    assert want.thinking_mask.any()
    got = decode(model, tokenizer, enc, gate, sampling, True, preallocate=True)
    assert got.embeds_ratio.dtype == torch.float32  # the loop records fp32 whatever the model dtype
    assert_identical(got, want)
