"""Batched hybrid decoding with a KV cache (:func:`hybrid_generate`) and its exact replay (:func:`replay_logprobs`).

One loop serves RL rollouts and evaluation. Per step, for each row still in its *thinking* phase, the input
embedding of the token just chosen is ``gate(E[y], h)`` with ``h`` the latent of the distribution ``y`` was drawn
from (:mod:`hrpo.latent`); prompt tokens and answer-phase tokens use plain ``E[y]``. Thinking ends, for good,
once the generated text contains the answer delimiter (``####``), the token completing it included.

What the loop does that ``model.generate`` does not: it feeds ``inputs_embeds`` each step, samples by inverse
CDF (no ``torch.multinomial``), and records what the training forward needs to rebuild the exact inputs
(:class:`Rollout`): thinking mask, compact latents, per-token log-probs and gate ratios. With the gate off and
greedy choice it reproduces ``generate`` token for token (same left padding, attention mask and position ids).

Finished rows leave the batch. Once enough rows have stopped (EOS or a stop string;
:attr:`DecodeConfig.compact_fraction`), they are dropped from the KV cache (``DynamicCache.batch_select_indices``)
and from every per-row tensor; each step writes its results into the full-batch ``Rollout`` at the rows still
decoding. Rows whose thinking has ended get no latent or gate work. None of this changes what a row produces:
greedy rollouts are token-identical with and without compaction, and so are sampled ones, because each row
draws its uniforms from its own stream (``row_seeds``; see :func:`hybrid_generate`). The KV cache writes each
step in place into a buffer sized for the whole call (:mod:`hrpo.kv_cache`) instead of concatenating a copy of
itself per step; that too changes no output.

An optional ``observer`` sees every step (:class:`StepView`: chosen tokens, their distribution, the exact
embeddings fed back, the gate ratios) without changing it; the latent lens (:mod:`hrpo.lens`) is built on it.

Replay rebuilds the inputs with the CURRENT gate parameters (gradients reach ``W_r``, ``W_i``, ``Lambda``; none
flow through the stored latents) and uses the same attention mask and position ids as the rollout.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, fields
from typing import NamedTuple

import torch
from transformers import DynamicCache, PreTrainedModel, PreTrainedTokenizerBase

from hrpo.gate import ThinkingGate
from hrpo.kv_cache import preallocated_cache
from hrpo.latent import (
    SamplingConfig,
    StepDistribution,
    choose_tokens,
    chosen_logprobs,
    row_uniforms,
    sparse_latents,
    step_distribution,
    step_latents,
    token_logprobs,
)
from hrpo.text_watch import SubstringWatcher

STOP_EOS, STOP_STRING, STOP_LENGTH = 0, 1, 2


@dataclass(frozen=True)
class DecodeConfig:
    """Everything that decides what the decode loop produces."""

    max_new_tokens: int = 512
    """Completion length cap (tokens)."""
    sampling: SamplingConfig = field(default_factory=SamplingConfig)
    """Temperature, top-k, top-p and greedy choice (see :class:`hrpo.latent.SamplingConfig`)."""
    hybrid: bool = True
    """Feed gated hybrid embeddings while thinking; False gives plain token decoding (the GRPO baseline)."""
    delimiter: str = "####"
    """Answer delimiter: thinking ends once the generated text contains it."""
    stop_strings: tuple[str, ...] = ()
    """A row stops once its generated text contains one of these (the completing token is kept)."""
    eos_token_ids: tuple[int, ...] | None = None
    """Stop ids; None = every EOS id of the model's generation config and the tokenizer; () = never stop early."""
    record_logprobs: bool = True
    """Fill ``Rollout.logprobs`` (the RL loss needs them); False leaves zeros and skips a full-vocab log-softmax
    per step, which evaluation does not need."""
    compact_fraction: float | None = 0.0
    """Speed only (outputs never change): drop finished rows from the batch once they are at least this
    fraction of the rows still in it (0.0 = as soon as one row finishes; None = never). See
    ``benchmark/README.md`` for the measurement behind the default."""
    preallocate_cache: bool = True
    """Speed only (outputs never change): write each step's keys and values into a buffer sized for the prompt
    plus ``max_new_tokens`` (:mod:`hrpo.kv_cache`) instead of transformers' ``DynamicCache``, which copies the
    whole cache at every step. False = ``DynamicCache``."""

    def __post_init__(self) -> None:
        if self.max_new_tokens < 1:
            raise ValueError(f"max_new_tokens must be >= 1, got {self.max_new_tokens}")
        if self.compact_fraction is not None and not 0.0 <= self.compact_fraction <= 1.0:
            raise ValueError(f"compact_fraction must be in [0, 1] or None, got {self.compact_fraction}")
        if self.hybrid and not self.delimiter:
            raise ValueError("hybrid decoding needs a non-empty answer delimiter (e.g. '####')")


@dataclass
class Rollout:
    """A decoded batch: everything the loss needs to replay it. ``B`` rows, ``P`` prompt and ``C`` new tokens.

    ``thinking_mask[b, k]`` is True when completion token ``k`` was fed back as a hybrid embedding. Latents are
    stored compactly as the sampling distribution's ``(latent_ids, latent_probs)`` when it is top-k truncated,
    else as dense ``latents``; they are filled at hybrid slots only (zeros elsewhere: nothing reads them).
    """

    prompt_ids: torch.Tensor  # (B, P) long, left padded
    prompt_mask: torch.Tensor  # (B, P) long
    completion_ids: torch.Tensor  # (B, C) long, pad after the stop
    completion_mask: torch.Tensor  # (B, C) long, 1 up to and including the stop token
    thinking_mask: torch.Tensor  # (B, C) bool
    logprobs: torch.Tensor  # (B, C) fp32, log softmax(logits / tau) of each chosen token
    embeds_ratio: torch.Tensor  # (B, C) fp32, mean_D(a) at hybrid slots, 1 elsewhere
    hidden_ratio: torch.Tensor  # (B, C) fp32, mean_D(sqrt(1 - a^2)) at hybrid slots, 0 elsewhere
    stop_reason: torch.Tensor  # (B,) long: STOP_EOS, STOP_STRING or STOP_LENGTH
    latent_ids: torch.Tensor | None = None  # (B, C, K) int32
    latent_probs: torch.Tensor | None = None  # (B, C, K) fp32
    latents: torch.Tensor | None = None  # (B, C, D) fp32 (top_k = 0 only)

    def to(self, device: torch.device | str) -> Rollout:
        moved = {
            f.name: (v.to(device) if isinstance(v := getattr(self, f.name), torch.Tensor) else v)
            for f in fields(self)
        }
        return Rollout(**moved)

    @property
    def input_ids(self) -> torch.Tensor:
        """``(B, P + C)`` prompt and completion ids."""
        return torch.cat([self.prompt_ids, self.completion_ids], dim=1)

    @property
    def attention_mask(self) -> torch.Tensor:
        """``(B, P + C)``: the mask the rollout attended with, for every scored position."""
        return torch.cat([self.prompt_mask, self.completion_mask], dim=1)

    def latent_bytes_per_token(self) -> int:
        """Bytes stored per completion token for its latent."""
        if self.latent_ids is not None and self.latent_probs is not None:
            k = self.latent_ids.shape[-1]
            return k * (self.latent_ids.element_size() + self.latent_probs.element_size())
        if self.latents is not None:
            return self.latents.shape[-1] * self.latents.element_size()
        return 0


class StepView(NamedTuple):
    """What one decode step chose and will feed back, for an observer of :func:`hybrid_generate` (the lens).

    ``n`` rows still in the batch; ``rows`` maps them to rows of the full batch. Tensors are the loop's own (do
    not modify them); ``inputs_embeds`` is exactly what the next forward receives for each row's chosen token.
    """

    step: int  # completion position k (0-based)
    rows: torch.Tensor  # (n,) long: full-batch row of each batch row
    tokens: torch.Tensor  # (n,) long: chosen token (pad for rows already stopped)
    live: torch.Tensor  # (n,) bool: the row had not stopped before this step
    hybrid: torch.Tensor  # (n,) bool: the token is fed back as a hybrid embedding
    logits: torch.Tensor  # (n, V): the logits the token was chosen from
    dist: StepDistribution | None  # the sampling distribution p (None for plain greedy without log-probs)
    inputs_embeds: torch.Tensor  # (n, D) model dtype: the input embedding fed for the chosen token
    embeds_ratio: torch.Tensor  # (n,) fp32: mean_D(a) at hybrid rows, 1 elsewhere
    hidden_ratio: torch.Tensor  # (n,) fp32: mean_D(sqrt(1 - a^2)) at hybrid rows, 0 elsewhere


def position_ids_from_mask(attention_mask: torch.Tensor) -> torch.Tensor:
    """Positions that skip left padding (as HF ``generate``): ``cumsum(mask) - 1``, 0 on pads. ``(B, L)``."""
    positions = attention_mask.long().cumsum(-1) - 1
    return positions.masked_fill(attention_mask == 0, 0)


def resolve_eos_ids(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase | None) -> tuple[int, ...]:
    """All EOS ids of the model's generation config plus the tokenizer's (e.g. Qwen's im_end and endoftext)."""
    ids: list[int] = []
    for source in (getattr(model, "generation_config", None), tokenizer):
        value = getattr(source, "eos_token_id", None) if source is not None else None
        for token_id in [value] if isinstance(value, int) else list(value or []):
            if token_id is not None and token_id not in ids:
                ids.append(int(token_id))
    if not ids:
        raise ValueError(
            "no EOS token id found on the model's generation_config or the tokenizer; pass eos_token_ids"
        )
    return tuple(ids)


def _pad_id(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase | None, eos: Sequence[int]) -> int:
    for value in (
        getattr(tokenizer, "pad_token_id", None),
        getattr(model.generation_config, "pad_token_id", None),
    ):
        if isinstance(value, int):
            return value
    if not eos:
        raise ValueError("no pad token id on the tokenizer or generation config, and no EOS id to pad with")
    return int(eos[0])


def default_row_seeds(batch: int, generator: torch.Generator | None = None) -> list[int]:
    """One seed per row, drawn from ``generator`` (else torch's global RNG, so ``torch.manual_seed`` fixes it)."""
    device = generator.device if generator is not None else "cpu"
    return torch.randint(0, 2**62, (batch,), generator=generator, device=device).tolist()


def _should_compact(finished: int, rows: int, fraction: float | None) -> bool:
    """Drop ``finished`` of the ``rows`` in the batch now? (Never all: the loop ends then.)"""
    return fraction is not None and 0 < finished < rows and finished >= fraction * rows


@torch.no_grad()
def hybrid_generate(
    model: PreTrainedModel,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    gate: ThinkingGate | None,
    config: DecodeConfig,
    tokenizer: PreTrainedTokenizerBase | None = None,
    generator: torch.Generator | None = None,
    row_seeds: Sequence[int] | None = None,
    observer: Callable[[StepView], None] | None = None,
) -> Rollout:
    """Decode a left-padded batch ``(B, P)``; see the module docstring.

    ``tokenizer`` is needed for the delimiter and stop strings (text detection). ``gate=None`` or
    ``config.hybrid=False`` decodes with plain token embeddings.

    Sampling randomness: row ``b`` draws its step-``k`` uniform from its own stream, seeded ``row_seeds[b]``
    (:func:`hrpo.latent.row_uniforms`), so its tokens depend on its prompt, its seed and the model only --
    not on the other rows nor on compaction. Without ``row_seeds`` the seeds are drawn from ``generator``
    (else from torch's global RNG): the same generator state gives the same rollout. Greedy draws nothing.

    ``observer`` (default None: nothing extra is computed) is called once per step with a :class:`StepView`
    after the step's inputs are built, before the next forward; it must not change what it is handed.
    """
    sampling = config.sampling
    hybrid = config.hybrid and gate is not None
    device = input_ids.device
    batch, prompt_len = input_ids.shape
    eos = config.eos_token_ids if config.eos_token_ids is not None else resolve_eos_ids(model, tokenizer)
    eos_ids = torch.tensor(eos, dtype=torch.long, device=device)
    pad_id = _pad_id(model, tokenizer, eos)
    if (hybrid or config.stop_strings) and tokenizer is None:
        raise ValueError("hybrid decoding and stop strings need the tokenizer to detect text")
    if row_seeds is not None and len(row_seeds) != batch:
        raise ValueError(f"row_seeds has {len(row_seeds)} seeds for a batch of {batch} rows")
    delimiter_watch = SubstringWatcher(tokenizer, [config.delimiter]) if hybrid else None
    stop_watch = SubstringWatcher(tokenizer, list(config.stop_strings)) if config.stop_strings else None
    window = max([w.window for w in (delimiter_watch, stop_watch) if w is not None], default=1)
    max_new = config.max_new_tokens
    uniforms = None  # (B, C) fp32: row b's uniform for step k
    if not sampling.greedy:
        seeds = list(row_seeds) if row_seeds is not None else default_row_seeds(batch, generator)
        uniforms = row_uniforms(seeds, max_new, device)

    embedding = model.get_input_embeddings()
    full_mask = torch.cat([attention_mask.long(), attention_mask.new_ones(batch, max_new)], dim=1)
    positions = position_ids_from_mask(attention_mask)
    cache = (
        preallocated_cache(model.config, prompt_len + max_new)
        if config.preallocate_cache
        else DynamicCache(config=model.config)
    )
    out = model(
        input_ids=input_ids,
        attention_mask=full_mask[:, :prompt_len],
        position_ids=positions,
        past_key_values=cache,
        use_cache=True,
        logits_to_keep=1,
    )
    logits = out.logits[:, -1, :]  # (n, V) for the n rows still in the batch
    workspace = (
        torch.empty(logits.shape, dtype=torch.float32, device=device) if config.record_logprobs else None
    )

    # Per-row state of the rows still in the batch (n of them); `active` maps them to rows of the full batch.
    active = torch.arange(batch, device=device)  # (n,)
    active_cpu = torch.arange(batch)  # (n,)
    next_position = positions[:, -1] + 1  # (n,)
    thinking = torch.full((batch,), hybrid, dtype=torch.bool, device=device)  # (n,)
    finished = torch.zeros(batch, dtype=torch.bool, device=device)  # (n,) stopped but not yet dropped

    # Full-batch results (B, C); rows that have left keep these fill values, which are what a finished row
    # would write anyway (pad, invalid, not thinking, log-prob 0, ratios 1 / 0).
    tokens = torch.full((batch, max_new), pad_id, dtype=torch.long, device=device)
    valid = torch.zeros(batch, max_new, dtype=torch.bool, device=device)
    think_slots = torch.zeros(batch, max_new, dtype=torch.bool, device=device)
    logps = torch.zeros(batch, max_new, dtype=torch.float32, device=device)
    e_ratio = torch.ones(batch, max_new, dtype=torch.float32, device=device)
    h_ratio = torch.zeros(batch, max_new, dtype=torch.float32, device=device)
    history = torch.full((batch, max_new), pad_id, dtype=torch.long)  # CPU copy for the text watchers
    stop_reason = torch.full((batch,), STOP_LENGTH, dtype=torch.long)
    # Latents of hybrid slots only: per step (full-batch rows, step, values), scattered at the end.
    latent_parts: list[tuple[torch.Tensor, int, torch.Tensor, torch.Tensor | None]] = []
    sparse = sampling.top_k > 0
    need_dist = hybrid or config.record_logprobs or not sampling.greedy

    steps = 0
    for step in range(max_new):
        steps = step + 1
        # Plain greedy decoding without log-probs (evaluation, latent off) needs no distribution at all.
        dist = (
            step_distribution(
                logits,
                sampling,
                log_normalizer=config.record_logprobs,
                workspace=_rows(workspace, len(active)),
            )
            if need_dist
            else None
        )
        step_u = None if uniforms is None else uniforms[active, step]  # (n,)
        chosen = choose_tokens(logits, dist, sampling.greedy, uniforms=step_u)
        chosen = chosen.masked_fill(finished, pad_id)  # (n,)
        live = ~finished
        tokens[active, step] = chosen
        valid[active, step] = live
        if config.record_logprobs:
            logp = chosen_logprobs(logits, chosen, dist.log_normalizer, sampling.temperature)
            logps[active, step] = logp.masked_fill(finished, 0.0)
        chosen_cpu = chosen.cpu()
        history[active_cpu, step] = chosen_cpu
        recent = history[active_cpu, max(0, steps - window) : steps]  # (n, <= window): all the watchers need

        if delimiter_watch is not None:
            thinking &= ~delimiter_watch.scan(recent, (thinking & live).cpu()).to(device)
        hybrid_now = thinking & live  # (n,)
        token_embeds = embedding(chosen[:, None])  # (n, 1, D)
        if hybrid and bool(hybrid_now.any()):
            mix_rows = hybrid_now.nonzero().squeeze(-1)  # (m,) rows of the batch that get hybrid inputs
            mix_dist = dist.select(mix_rows)
            latents = step_latents(mix_dist, embedding)  # (m, D) fp32
            latent_parts.append(
                (
                    active[mix_rows],
                    step,
                    mix_dist.ids if sparse else latents,
                    mix_dist.probs if sparse else None,
                )
            )
            mixed, a_mean, h_mean = gate(token_embeds[mix_rows, 0], latents)  # (m, D), (m,), (m,)
            token_embeds = token_embeds.index_put((mix_rows,), mixed[:, None])
            think_slots[active[mix_rows], step] = True
            e_ratio[active[mix_rows], step] = a_mean
            h_ratio[active[mix_rows], step] = h_mean
        if observer is not None:
            observer(
                StepView(
                    step,
                    active,
                    chosen,
                    live,
                    hybrid_now,
                    logits,
                    dist,
                    token_embeds[:, 0],
                    e_ratio[active, step],
                    h_ratio[active, step],
                )
            )

        hit_eos = torch.isin(chosen, eos_ids) & live
        finished |= hit_eos
        if stop_watch is not None:
            hit_stop = stop_watch.scan(recent, (~finished).cpu())  # (n,) CPU
            stop_reason[active_cpu[hit_stop]] = STOP_STRING
            finished |= hit_stop.to(device)
        stop_reason[active_cpu[hit_eos.cpu()]] = STOP_EOS
        done = int(finished.sum())
        if done == len(active) or step == max_new - 1:
            break
        if _should_compact(done, len(active), config.compact_fraction):
            keep = (~finished).nonzero().squeeze(-1)  # (n',)
            cache.batch_select_indices(keep)
            active, active_cpu = active[keep], active_cpu[keep.cpu()]
            token_embeds, full_mask, next_position = token_embeds[keep], full_mask[keep], next_position[keep]
            thinking, finished = thinking[keep], finished[keep]
        out = model(
            inputs_embeds=token_embeds,
            attention_mask=full_mask[:, : prompt_len + step + 1],
            position_ids=next_position[:, None],
            past_key_values=cache,
            use_cache=True,
        )
        logits = out.logits[:, -1, :]
        next_position = next_position + 1

    latent_ids = latent_probs = dense = None
    if hybrid:
        width = min(sampling.top_k, logits.shape[-1]) if sparse else embedding.embedding_dim
        store = torch.zeros(batch, steps, width, dtype=torch.float32, device=device)
        ids_store = torch.zeros(batch, steps, width, dtype=torch.int32, device=device) if sparse else None
        for rows, step, values, probs in latent_parts:
            if sparse:
                ids_store[rows, step] = values.to(torch.int32)
                store[rows, step] = probs
            else:
                store[rows, step] = values
        latent_ids, latent_probs, dense = (ids_store, store, None) if sparse else (None, None, store)

    return Rollout(
        prompt_ids=input_ids,
        prompt_mask=attention_mask.long(),
        completion_ids=tokens[:, :steps],
        completion_mask=valid[:, :steps].long(),
        thinking_mask=think_slots[:, :steps],
        logprobs=logps[:, :steps],
        embeds_ratio=e_ratio[:, :steps],
        hidden_ratio=h_ratio[:, :steps],
        stop_reason=stop_reason,
        latent_ids=latent_ids,
        latent_probs=latent_probs,
        latents=dense,
    )


def _rows(tensor: torch.Tensor | None, n: int) -> torch.Tensor | None:
    """The first ``n`` rows of a scratch tensor (the batch shrinks as rows finish)."""
    return None if tensor is None else tensor[:n]


def hybrid_inputs_embeds(
    model: PreTrainedModel,
    gate: ThinkingGate | None,
    input_ids: torch.Tensor,
    thinking_mask: torch.Tensor,
    latent_ids: torch.Tensor | None = None,
    latent_probs: torch.Tensor | None = None,
    latents: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
    """Input embeddings ``(B, L, D)`` of ``input_ids`` ``(B, L)`` with hybrid slots rebuilt by the current gate.

    ``thinking_mask`` ``(B, C)`` marks slots among the LAST ``C`` positions; the stored latent tensors are
    ``(B, C, K)`` or ``(B, C, D)``. Returns ``(embeds, embeds_ratio, hidden_ratio)``, the ratios ``(N,)`` over
    the ``N`` hybrid slots (None when there are none). Gradients reach the gate, not the latents.
    """
    embedding = model.get_input_embeddings()
    embeds = embedding(input_ids)
    if gate is None or not bool(thinking_mask.any()):
        return embeds, None, None
    offset = input_ids.shape[1] - thinking_mask.shape[1]
    rows, cols = thinking_mask.nonzero(as_tuple=True)
    with torch.no_grad():
        if latent_ids is not None and latent_probs is not None:
            h = sparse_latents(latent_ids[rows, cols], latent_probs[rows, cols], embedding)  # (N, D)
        elif latents is not None:
            h = latents[rows, cols].float()
        else:
            raise ValueError("thinking slots present but the rollout holds no latents")
    mixed, a_mean, h_mean = gate(embeds[rows, cols + offset], h)
    embeds = embeds.index_put((rows, cols + offset), mixed)
    return embeds, a_mean, h_mean


def replay_logprobs(
    model: PreTrainedModel,
    gate: ThinkingGate | None,
    rollout: Rollout,
    temperature: float,
    hybrid: bool = True,
) -> torch.Tensor:
    """Per-token log-probs ``(B, C)`` of the rollout's completion under the CURRENT model and gate.

    Same attention mask and position ids as the rollout; ``hybrid=False`` gives plain token inputs (HRPO's
    reference-model convention). Positions outside ``completion_mask`` are 0.
    """
    input_ids = rollout.input_ids
    attention_mask = rollout.attention_mask
    embeds, _, _ = hybrid_inputs_embeds(
        model,
        gate if hybrid else None,
        input_ids,
        rollout.thinking_mask,
        rollout.latent_ids,
        rollout.latent_probs,
        rollout.latents,
    )
    completion_len = rollout.completion_ids.shape[1]
    out = model(
        inputs_embeds=embeds,
        attention_mask=attention_mask,
        position_ids=position_ids_from_mask(attention_mask),
        logits_to_keep=completion_len + 1,
    )
    logits = out.logits[:, :-1, :]  # (B, C, V): position P-1+k predicts completion token k
    logps = token_logprobs(logits, rollout.completion_ids, temperature)
    return logps * rollout.completion_mask
