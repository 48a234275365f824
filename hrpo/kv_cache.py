"""A KV cache for the decode loop that writes each step in place instead of re-concatenating the whole cache.

transformers' ``DynamicLayer.update`` appends a step with ``torch.cat([keys, new])``, so every decode step copies
every cached key and value once more: per layer ``B x H_kv x T x D`` read and written again, on top of the
attention reading them. For SmolLM2 at B = 32 and T ~ 300 that is ~0.9 GB of memory traffic per step, more than
reading the weights. :class:`PreallocatedLayer` holds one ``(B, H_kv, capacity, D)`` buffer per keys and values,
sized for the prompt plus ``max_new_tokens``, writes each step into its next columns and exposes ``keys`` /
``values`` as views of the filled columns. Attention reads exactly the tensors it read before, so the decode loop's
outputs are bit-identical (``tests/test_kv_cache.py``). Memory: from the first step, what a ``DynamicLayer`` holds
once every row reaches the cap (a ``DynamicLayer`` briefly holds two copies at each step while it concatenates).
Measured: ``benchmark/README.md``, issue 14.

Only plain full-attention layers (exactly ``DynamicLayer``) are replaced; sliding-window and other layer kinds keep
their own cache. Offloading (``DynamicCache(offloading=True)``) is not supported.
"""

from __future__ import annotations

import functools

import torch
from transformers import DynamicCache, PreTrainedConfig
from transformers.cache_utils import DynamicLayer


class PreallocatedLayer(DynamicLayer):
    """A ``DynamicLayer`` backed by a buffer of ``capacity`` positions (grows by doubling if a call exceeds it)."""

    def __init__(self, capacity: int) -> None:
        if capacity < 1:
            raise ValueError(f"capacity must be >= 1 position, got {capacity}")
        super().__init__()
        self.capacity = capacity
        self._key_buffer: torch.Tensor | None = None  # (B, H_kv, capacity, D)
        self._value_buffer: torch.Tensor | None = None  # (B, H_kv, capacity, D_v)
        self._length = 0  # filled positions

    def lazy_initialization(self, key_states: torch.Tensor, value_states: torch.Tensor) -> None:
        self.dtype, self.device = key_states.dtype, key_states.device
        batch, heads, _, dim = key_states.shape
        self._key_buffer = key_states.new_empty(batch, heads, self.capacity, dim)
        self._value_buffer = value_states.new_empty(
            batch, value_states.shape[1], self.capacity, value_states.shape[-1]
        )
        self._length = 0
        self.is_initialized = True
        self._publish()

    def update(
        self, key_states: torch.Tensor, value_states: torch.Tensor, *args, **kwargs
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Write ``(B, H_kv, n, D)`` new states after the filled columns; return the ``(B, H_kv, T + n, D)`` views."""
        if not self.is_initialized:
            self.lazy_initialization(key_states, value_states)
        end = self._length + key_states.shape[-2]
        if end > self._key_buffer.shape[-2]:
            self._grow(end)
        self._key_buffer[:, :, self._length : end] = key_states
        self._value_buffer[:, :, self._length : end] = value_states
        self._length = end
        self._publish()
        return self.keys, self.values

    def _grow(self, needed: int) -> None:
        # Only when a caller decodes past the capacity it asked for: one copy, then room for as many again.
        capacity = max(needed, 2 * self._key_buffer.shape[-2])
        for name in ("_key_buffer", "_value_buffer"):
            old = getattr(self, name)
            new = old.new_empty(*old.shape[:2], capacity, old.shape[-1])
            new[:, :, : self._length] = old[:, :, : self._length]
            setattr(self, name, new)

    def _publish(self) -> None:
        self.keys = self._key_buffer[:, :, : self._length]
        self.values = self._value_buffer[:, :, : self._length]

    def batch_select_indices(self, indices: torch.Tensor) -> None:
        """Keep the rows ``indices`` (compaction in :func:`hrpo.generation.hybrid_generate`)."""
        if self.is_initialized:
            self._key_buffer = self._key_buffer[indices]
            self._value_buffer = self._value_buffer[indices]
            self._publish()

    def batch_repeat_interleave(self, repeats: int) -> None:
        if self.is_initialized:
            self._key_buffer = self._key_buffer.repeat_interleave(repeats, dim=0)
            self._value_buffer = self._value_buffer.repeat_interleave(repeats, dim=0)
            self._publish()

    def reorder_cache(self, beam_idx: torch.LongTensor) -> None:
        if self.is_initialized:
            self._key_buffer = self._key_buffer.index_select(0, beam_idx.to(self._key_buffer.device))
            self._value_buffer = self._value_buffer.index_select(0, beam_idx.to(self._value_buffer.device))
            self._publish()

    def crop(self, tokens_to_remove: int) -> None:
        """Drop the last ``-tokens_to_remove`` positions (``DynamicLayer``'s convention: a negative count)."""
        if tokens_to_remove > 0:
            raise ValueError(f"crop takes a negative number of positions to remove, got {tokens_to_remove}")
        if tokens_to_remove == 0 or not self.is_initialized:
            return
        self._length = max(self._length - abs(tokens_to_remove), 0)
        self._publish()

    def reset(self) -> None:
        self._key_buffer = self._value_buffer = None
        self._length = 0
        super().reset()

    def offload(self) -> None:
        raise NotImplementedError("PreallocatedLayer does not support cache offloading")

    def prefetch(self) -> None:
        raise NotImplementedError("PreallocatedLayer does not support cache offloading")


def preallocated_cache(config: PreTrainedConfig | None, capacity: int) -> DynamicCache:
    """A ``DynamicCache`` for ``config`` whose full-attention layers hold ``capacity`` positions in place.

    ``config``: the model's config (its layer types decide which layers are replaced); None = every layer.

    ``capacity``: prompt length + new tokens of the call (positions per row; more is allowed, at a copy).
    """
    cache = DynamicCache(config=config)
    if cache.layers:
        cache.layers = [
            PreallocatedLayer(capacity) if type(layer) is DynamicLayer else layer for layer in cache.layers
        ]
    else:  # no layer types in the config: DynamicCache creates a layer per update, as here
        cache.layer_class_to_replicate = functools.partial(PreallocatedLayer, capacity)
    return cache
