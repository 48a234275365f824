"""Length buckets for the training forward: score a padded rollout batch in micro-batches of similar length.

A rollout batch is ``(B, P + C)``: prompts left padded to ``P``, completions right padded to ``C``. Scoring it in
one forward pays every layer for every pad column. Sorting the rows by real length and cutting them into
micro-batches lets each micro-batch drop the columns that are padding in all of its rows: leading prompt pads
and trailing completion pads. Dropping a column that every row masks changes nothing a real token sees (its
key is masked out of every query, and position ids count real tokens only), so per-token log-probs are the
same up to float rounding; the replay invariant holds (``tests/test_bucketing.py``).

:func:`plan_buckets` makes the plan; :func:`bucketed_replay_logprobs` is :func:`hrpo.generation.replay_logprobs`
run bucket by bucket; ``HRPOTrainer._get_per_token_logps_and_entropies`` scores its policy and reference forwards
through :func:`plan_buckets` (``HRPOConfig.length_buckets``). Whether this pays is measured in
``benchmark/README.md`` (rollout speed, bucketing; training step time).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from transformers import PreTrainedModel

from hrpo.gate import ThinkingGate
from hrpo.generation import Rollout, hybrid_inputs_embeds, position_ids_from_mask
from hrpo.latent import token_logprobs


@dataclass(frozen=True)
class Bucket:
    """Rows scored together and the columns they need."""

    rows: torch.Tensor | slice  # (b,) long: rows of the full batch (HRPOTrainer's fixed chunks: a slice)
    prompt_start: int  # first prompt column any of these rows uses (columns before it are all padding)
    completion_len: int  # completion columns any of these rows uses (columns after it are all padding)


def plan_buckets(
    prompt_mask: torch.Tensor, completion_mask: torch.Tensor, rows_per_bucket: int
) -> list[Bucket]:
    """Buckets of at most ``rows_per_bucket`` rows, sorted by real length, each trimmed to its own extent.

    ``prompt_mask`` ``(B, P)`` left padded, ``completion_mask`` ``(B, C)`` right padded. Rows are ordered by
    prompt + completion length (longest first), so that rows of similar length share a bucket. The number of
    buckets is ``ceil(B / rows_per_bucket)`` whatever the lengths (the same on every rank of a ZeRO-3 run).
    """
    if rows_per_bucket < 1:
        raise ValueError(f"rows_per_bucket must be >= 1, got {rows_per_bucket}")
    # Extents, not counts: a row uses prompt columns from its first set one on and completion columns up to its
    # last set one (the same as the counts for contiguous masks; never cuts a real token of a gappy one).
    prompt = prompt_mask.detach().cpu().bool()
    completion = completion_mask.detach().cpu().bool()
    width, completion_width = prompt.shape[1], completion.shape[1]
    zero = torch.zeros(prompt.shape[0], dtype=torch.long)
    prompt_len = torch.where(prompt, torch.arange(width, 0, -1), 0).amax(1) if width else zero  # (B,)
    completion_len = (
        torch.where(completion, torch.arange(1, completion_width + 1), 0).amax(1)
        if completion_width
        else zero
    )  # (B,)
    order = torch.argsort(prompt_len + completion_len, descending=True, stable=True)
    buckets = []
    for start in range(0, len(order), rows_per_bucket):
        rows = order[start : start + rows_per_bucket]
        buckets.append(
            Bucket(
                rows=rows.to(prompt_mask.device),
                # Keep the column before the completion: it predicts the first completion token.
                prompt_start=min(width - int(prompt_len[rows].max()), max(width - 1, 0)),
                completion_len=max(1, int(completion_len[rows].max())),
            )
        )
    return buckets


def padded_tokens(prompt_mask: torch.Tensor, completion_mask: torch.Tensor, buckets: list[Bucket]) -> int:
    """Token positions the buckets' forwards process (the unbucketed batch: ``B * (P + C)``)."""
    width = prompt_mask.shape[1]
    return sum(len(b.rows) * (width - b.prompt_start + b.completion_len) for b in buckets)


def bucketed_replay_logprobs(
    model: PreTrainedModel,
    gate: ThinkingGate | None,
    rollout: Rollout,
    temperature: float,
    rows_per_bucket: int,
    hybrid: bool = True,
) -> torch.Tensor:
    """:func:`hrpo.generation.replay_logprobs`, one forward per bucket; ``(B, C)``, 0 outside the mask."""
    batch, completion_width = rollout.completion_ids.shape
    out = torch.zeros(batch, completion_width, dtype=torch.float32, device=rollout.completion_ids.device)
    for bucket in plan_buckets(rollout.prompt_mask, rollout.completion_mask, rows_per_bucket):
        rows, c = bucket.rows, bucket.completion_len
        completion_ids = rollout.completion_ids[rows, :c]  # (b, c)
        completion_mask = rollout.completion_mask[rows, :c]
        input_ids = torch.cat([rollout.prompt_ids[rows, bucket.prompt_start :], completion_ids], dim=1)
        mask = torch.cat([rollout.prompt_mask[rows, bucket.prompt_start :], completion_mask], dim=1)
        latent = {
            key: None if (value := getattr(rollout, key)) is None else value[rows, :c]
            for key in ("latent_ids", "latent_probs", "latents")
        }
        embeds, _, _ = hybrid_inputs_embeds(
            model, gate if hybrid else None, input_ids, rollout.thinking_mask[rows, :c], **latent
        )
        logits = model(
            inputs_embeds=embeds,
            attention_mask=mask,
            position_ids=position_ids_from_mask(mask),
            logits_to_keep=c + 1,
        ).logits[:, :-1, :]  # (b, c, V)
        out[rows, :c] = token_logprobs(logits, completion_ids, temperature) * completion_mask
    return out
