"""The distribution a decode step samples from, token choice, and the latent embedding built from it.

HRPO's latent for a step is ``h = (p @ E) / ||p||_2`` where ``p`` is the exact distribution the token was drawn
from and ``E`` the (frozen) input embedding matrix (paper Eq. 3). ``p`` is the tempered softmax, optionally
truncated to the top-k logits and then to the top-p nucleus (the order HF ``generate`` applies them), and
renormalised.

Latent top-k. The authors' code went through HF's default ``top_k=50`` without saying so, so its ``p`` had at
most 50 non-zeros; the paper's Eq. 3 shows a full softmax. Here ``top_k`` is explicit, and its default in
:class:`SamplingConfig` is **50**, reproducing the released code. It also makes the latent cheap and compact:
with ``top_k > 0`` the rollout stores only ``(ids, probs)`` of the ``K`` candidates (``K*(4+4)`` bytes per token:
400 B for K=50) and recomputes ``h`` from ``E`` when needed, instead of a ``D``-dim vector (``4*D`` bytes: 6 KB
for Qwen2.5-1.5B's D=1536, a 15x saving; 2.3 KB for SmolLM2's D=576, 5.8x). ``top_k=0`` gives the paper's full
softmax, stored as dense fp32 latents.

Sampling uses exact inverse-CDF draws over ``p``: one uniform per row and step, from a seedable generator or
given by the caller (:func:`row_uniforms`: one stream per row, so a row's draws do not depend on the other rows
of the batch); ``torch.multinomial`` draws one exponential per vocabulary entry and dominates decode time on CPU
(see ``benchmark/README.md``).

Vocabulary-sized work per step is kept to what the step needs: one ``topk`` over the raw logits (tau > 0 does
not change their order) for the sparse ``p``, or one softmax for the dense ``p``; when log-probs are recorded,
the full-vocabulary log-normaliser ``logsumexp(logits / tau)`` comes from one fused ``log_softmax`` (sparse) or
from the softmax already computed (dense), and the chosen token's log-prob is ``logit / tau - logsumexp``
(:func:`chosen_logprobs`). Everything that decides a token is fp32.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import NamedTuple

import torch


@dataclass(frozen=True)
class SamplingConfig:
    """How a decode step turns logits into ``p`` and a token."""

    temperature: float = 0.5
    """tau: divides the logits for sampling and for the latent (the paper uses one tau for both)."""
    top_k: int = 50
    """Keep the k largest logits (0 = full vocabulary, the paper's Eq. 3; 50 = the released code)."""
    top_p: float = 1.0
    """Nucleus: keep the smallest set of top tokens whose mass reaches top_p (1.0 = off)."""
    greedy: bool = False
    """Choose the argmax token; the latent still uses the tempered ``p`` (the paper's evaluation mode)."""

    def __post_init__(self) -> None:
        if self.temperature <= 0:
            raise ValueError(f"temperature must be > 0 (it also scales the latent), got {self.temperature}")
        if self.top_k < 0:
            raise ValueError(f"top_k must be >= 0 (0 = full vocabulary), got {self.top_k}")
        if not 0.0 < self.top_p <= 1.0:
            raise ValueError(f"top_p must be in (0, 1], got {self.top_p}")


class StepDistribution(NamedTuple):
    """``p`` for a batch of rows: sparse ``(ids, probs)`` of shape ``(B, K)`` or dense ``probs`` ``(B, V)``.

    ``log_normalizer`` ``(B,)`` fp32 is ``logsumexp(logits / tau)`` over the FULL vocabulary (the log-prob
    normaliser of :func:`token_logprobs`), when :func:`step_distribution` was asked for it.
    """

    ids: torch.Tensor | None
    probs: torch.Tensor
    log_normalizer: torch.Tensor | None = None

    @property
    def is_sparse(self) -> bool:
        return self.ids is not None

    def select(self, rows: torch.Tensor) -> StepDistribution:
        """The distribution of ``rows`` (an index ``(n,)``) only."""
        return StepDistribution(
            None if self.ids is None else self.ids[rows],
            self.probs[rows],
            None if self.log_normalizer is None else self.log_normalizer[rows],
        )


def _nucleus(sorted_probs: torch.Tensor, top_p: float) -> torch.Tensor:
    """Zero the tail of descending-sorted ``probs`` (B, K) beyond mass ``top_p``; renormalise. Keeps >= 1."""
    mass_before = sorted_probs.cumsum(-1) - sorted_probs
    kept = sorted_probs.masked_fill(mass_before >= top_p, 0.0)
    return kept / kept.sum(-1, keepdim=True)


def _scaled(logits: torch.Tensor, temperature: float, workspace: torch.Tensor | None) -> torch.Tensor:
    """``logits.float() / tau`` ``(B, V)``, written into ``workspace`` (fp32, same shape) when given.

    Bitwise the same values as :func:`token_logprobs` computes; the workspace saves a fresh vocabulary-sized
    allocation (page faults on CPU) per decode step.
    """
    if workspace is None:
        return logits.float() / temperature
    if logits.dtype != torch.float32:
        return workspace.copy_(logits).div_(temperature)  # upcast first: fp32 where it decides tokens
    return torch.div(logits, temperature, out=workspace)


def step_distribution(
    logits: torch.Tensor,
    config: SamplingConfig,
    log_normalizer: bool = False,
    workspace: torch.Tensor | None = None,
) -> StepDistribution:
    """``p`` from next-token logits ``(B, V)``; fp32, rows sum to 1; sparse ids sorted by probability.

    ``log_normalizer=True`` also returns ``logsumexp(logits / tau)`` ``(B,)`` over the full vocabulary (for
    :func:`chosen_logprobs`). ``workspace``: optional fp32 ``(B, V)`` scratch reused across calls.
    """
    tau = config.temperature
    if config.top_k > 0:
        # topk on the raw logits: dividing by tau > 0 keeps their order, so only K values need scaling.
        raw, ids = logits.topk(min(config.top_k, logits.shape[-1]), dim=-1)  # (B, K), descending
        values = raw.float() / tau
        probs = torch.softmax(values, dim=-1)
        if config.top_p < 1.0:
            probs = _nucleus(probs, config.top_p)
        lse = None
        if log_normalizer:
            # One fused log_softmax pass over V; at the top-1 token j, log p_j = s_j - lse exactly, and
            # log p_j is never tiny there, so lse = s_j - log p_j loses nothing.
            scaled = _scaled(logits, tau, workspace)
            top = ids[:, :1]
            lse = (scaled.gather(-1, top) - torch.log_softmax(scaled, dim=-1).gather(-1, top)).squeeze(-1)
        return StepDistribution(ids, probs, lse)
    scaled = _scaled(logits, tau, workspace)
    full = torch.softmax(scaled, dim=-1)  # (B, V)
    # The softmax is 1 / sum(exp(s - max)) at the max logit: lse = max - log(max p), no second pass over V.
    lse = scaled.amax(-1) - full.amax(-1).log() if log_normalizer else None
    probs = full
    if config.top_p < 1.0:
        sorted_probs, order = full.sort(dim=-1, descending=True)
        probs = torch.zeros_like(full).scatter_(-1, order, _nucleus(sorted_probs, config.top_p))
    return StepDistribution(None, probs, lse)


def row_uniforms(seeds: list[int], steps: int, device: torch.device | str = "cpu") -> torch.Tensor:
    """``(B, steps)`` fp32 uniforms in [0, 1): row ``b`` is the stream of ``torch.Generator`` seeded ``seeds[b]``.

    Inverse-CDF sampling needs one uniform per row and step; drawing them per row makes a row's tokens
    independent of which other rows share (or have left) the batch.
    """
    rows = [torch.rand(steps, generator=torch.Generator().manual_seed(int(s))) for s in seeds]
    return (torch.stack(rows) if rows else torch.zeros(0, steps)).to(device)


def choose_tokens(
    logits: torch.Tensor,
    dist: StepDistribution | None,
    greedy: bool,
    generator: torch.Generator | None = None,
    uniforms: torch.Tensor | None = None,
) -> torch.Tensor:
    """Token ids ``(B,)``: argmax of ``logits`` if ``greedy`` else an inverse-CDF draw from ``dist``.

    The draw uses ``uniforms`` ``(B,)`` in [0, 1) when given, else ``torch.rand`` from ``generator``.
    Greedy choice does not read ``dist`` (it may be None).
    """
    if greedy:
        return logits.argmax(dim=-1)
    if dist is None:
        raise ValueError("sampling needs the step distribution")
    probs = dist.probs
    cdf = probs.cumsum(dim=-1)
    if uniforms is None:
        u = torch.rand(probs.shape[0], 1, generator=generator, device=probs.device, dtype=cdf.dtype)
    else:
        u = uniforms.to(device=probs.device, dtype=cdf.dtype).reshape(-1, 1)
    # Scale by the row total so rounding in the cumsum can never push the draw past the last bucket.
    # right=True picks the first bucket whose cdf exceeds the draw, so zero-probability buckets (cut by top-p)
    # are never chosen; the clamp only guards the u*total == total rounding edge.
    index = torch.searchsorted(cdf, u * cdf[:, -1:], right=True).clamp_(max=probs.shape[-1] - 1)
    if dist.ids is not None:
        return dist.ids.gather(-1, index).squeeze(-1)
    return index.squeeze(-1)


def sparse_latents(
    ids: torch.Tensor,
    probs: torch.Tensor,
    embed: Callable[[torch.Tensor], torch.Tensor],
    chunk_size: int = 1024,
) -> torch.Tensor:
    """``h = sum_k p_k E[id_k] / ||p||_2`` for ``ids``, ``probs`` of shape ``(N, K)``; returns ``(N, D)`` fp32.

    ``embed`` is the model's input embedding module (calling it, rather than indexing its weight, keeps
    DeepSpeed ZeRO-3's parameter gathering in charge). Rows are processed in chunks so that the gathered
    ``(chunk, K, D)`` block stays small.
    """
    norms = probs.float().norm(dim=-1, keepdim=True)  # (N, 1)
    pieces = [embed(ids[:0].long()).float().sum(1)]  # (0, D): keeps N == 0 well-defined
    for start in range(0, ids.shape[0], chunk_size):
        rows = embed(ids[start : start + chunk_size].long()).float()  # (n, K, D)
        weights = probs[start : start + chunk_size].float()  # (n, K)
        pieces.append(torch.einsum("nk,nkd->nd", weights, rows))
    return torch.cat(pieces) / norms


def dense_latents(probs: torch.Tensor, embedding_weight: torch.Tensor) -> torch.Tensor:
    """``h = (p @ E) / ||p||_2`` for dense ``probs`` ``(N, V)`` and ``E`` ``(V, D)``; returns ``(N, D)`` fp32."""
    latents = probs.float() @ embedding_weight.float()
    return latents / probs.float().norm(dim=-1, keepdim=True)


def step_latents(
    dist: StepDistribution, embedding: torch.nn.Module, gathered_weight: torch.Tensor | None = None
) -> torch.Tensor:
    """The latent ``(B, D)`` fp32 of one decode step's distribution."""
    if dist.ids is not None:
        return sparse_latents(dist.ids, dist.probs, embedding)
    weight = embedding.weight if gathered_weight is None else gathered_weight
    return dense_latents(dist.probs, weight)


def token_logprobs(logits: torch.Tensor, tokens: torch.Tensor, temperature: float) -> torch.Tensor:
    """``log softmax(logits / tau)[token]`` in fp32: the log-prob TRL's GRPO loss uses for a token.

    ``logits`` ``(..., V)``, ``tokens`` ``(...)`` -> ``(...)``. This is the tempered full softmax, not the
    truncated sampling distribution, so that rollout and loss agree exactly.
    """
    scaled = logits.float() / temperature
    # x_y - logsumexp(x): the log-softmax at the chosen token without materialising a (..., V) output.
    return scaled.gather(-1, tokens.unsqueeze(-1)).squeeze(-1) - torch.logsumexp(scaled, dim=-1)


def chosen_logprobs(
    logits: torch.Tensor, tokens: torch.Tensor, log_normalizer: torch.Tensor, temperature: float
) -> torch.Tensor:
    """:func:`token_logprobs` of ``tokens`` ``(B,)`` given the step's ``log_normalizer`` ``(B,)``: ``(B,)`` fp32.

    ``logits[token] / tau - logsumexp(logits / tau)`` with the normaliser the sampler already computed.
    """
    picked = logits.gather(-1, tokens.unsqueeze(-1)).squeeze(-1).float() / temperature
    return picked - log_normalizer
