"""The thinking gate: a learned per-dimension mix of a sampled token's embedding and a latent embedding.

For the embedding ``e`` of the sampled token and the latent ``h`` built from the distribution it was sampled
from (:mod:`hrpo.latent`), HRPO feeds the next step (paper Eq. 4, authors' code)::

    r = sigmoid(W_r e + b_r)                 # (..., D), depends on e only
    i = sigmoid(W_i e + b_i)                 # (..., D)
    a = sigmoid(Lambda) ** (c * r)           # (..., D), in (0, 1); c = 8
    x = a * e + sqrt(1 - a**2 + eps) * (i * h)

Conventions and choices (see ``README.md`` / "Deviations"):

* ``a = sigmoid(Lambda)^(c*r)`` is the code's ``exp(-c * softplus(-Lambda) * r)`` written in closed form; the
  paper writes ``softplus(Lambda)``, i.e. ``Lambda_paper = -Lambda_here``. Shrinking ``Lambda`` toward 0 raises
  the latent share, so weight decay on ``Lambda`` pushes toward more latent reasoning.
* ``Lambda`` is initialised so that ``sigmoid(Lambda)^c ~ U[r_min, r_max]`` per dimension, i.e.
  ``Lambda = logit(u^(1/c))``; with ``r ~ 0.5`` at init, ``a ~ sqrt(u)``.
* The gate linears use PyTorch's default ``nn.Linear`` init, ``U(-1/sqrt(D), 1/sqrt(D))`` for weights and
  biases, which is what the paper's appendix states (the authors' code most likely got N(0, 0.02) weights and
  zero biases through transformers' missing-key init). Either way ``W e`` is small, so ``r ~ i ~ 0.5``.
* All gate parameters are fp32 and the gate computes in fp32 whatever the model dtype; the mixed embedding is
  cast back to the token embedding's dtype.
* Under DeepSpeed bf16/fp16 the engine casts every module parameter (the gate's too) to bf16 when it is built;
  only its optimizer keeps an fp32 master copy. Lambda ~ 7-9 has a bf16 step of 0.03-0.06, so computing from the
  bf16 copy would move ``a`` in jumps of up to 3 % and lose small updates. :meth:`ThinkingGate.set_fp32_master`
  therefore hands the gate the optimizer's fp32 master values (the trainer refreshes them after every optimizer
  step): the forward uses those exact fp32 values while the gradient still flows to the engine's parameters (a
  straight-through identity), so the optimizer step is unchanged and nothing is ever computed from bf16 weights.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
from torch import nn
from torch.nn import functional as F


@dataclass(frozen=True)
class GateConfig:
    """Shape and initialisation of a :class:`ThinkingGate`."""

    hidden_size: int
    """D, the model's embedding width."""
    c: float = 8.0
    """Exponent scale of the gate (8, from Griffin's RG-LRU as in the paper)."""
    r_min: float = 0.99
    """Lower end of the U[r_min, r_max] init of sigmoid(Lambda)^c; smaller means more latent at init."""
    r_max: float = 0.999
    """Upper end of the init range."""
    eps: float = 1e-8
    """Added under the square root of ``1 - a^2`` so its gradient stays finite as a -> 1."""

    def __post_init__(self) -> None:
        if self.hidden_size <= 0:
            raise ValueError(f"hidden_size must be positive, got {self.hidden_size}")
        if not 0.0 < self.r_min <= self.r_max < 1.0:
            raise ValueError(
                f"need 0 < r_min <= r_max < 1 for the Lambda init, got r_min={self.r_min}, r_max={self.r_max}"
            )
        if self.c <= 0:
            raise ValueError(f"c must be positive, got {self.c}")

    def to_dict(self) -> dict:
        return asdict(self)


class _MasterValue(torch.autograd.Function):
    """Forward: the fp32 ``master`` value; backward: the gradient goes to ``param`` (any dtype) unchanged."""

    @staticmethod
    def forward(ctx, param: torch.Tensor, master: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        ctx.param_dtype = param.dtype
        return master.clone()

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor, None]:  # type: ignore[override]
        return grad.to(ctx.param_dtype), None


def _fp32_value(param: torch.Tensor, master: torch.Tensor | None) -> torch.Tensor:
    """``param`` as fp32 for the forward: its fp32 master copy when one is set, else ``param.float()``."""
    if master is None:
        return param.float()
    if not (torch.is_grad_enabled() and param.requires_grad):
        return master  # no gradient to route: the parameter (maybe a ZeRO-3 shard) is not needed
    if master.shape != param.shape:
        raise RuntimeError(
            f"gate fp32 master of shape {tuple(master.shape)} does not fit the parameter {tuple(param.shape)} "
            "(under ZeRO-3 the gate must be called as a module so its parameters are gathered)"
        )
    return _MasterValue.apply(param, master)


class _Fp32Linear(nn.Linear):
    """``nn.Linear`` that computes in fp32, from its fp32 master values when the gate has them."""

    def __init__(self, features: int) -> None:
        super().__init__(features, features, dtype=torch.float32)
        self.fp32_master: dict[str, torch.Tensor] | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        master = self.fp32_master or {}
        weight = _fp32_value(self.weight, master.get("weight"))
        bias = _fp32_value(self.bias, master.get("bias"))
        return F.linear(x.float(), weight, bias)


class ThinkingGate(nn.Module):
    """Mixes token embeddings with latent embeddings (see module docstring for the math).

    Parameters: ``gate_r`` and ``gate_i`` (``nn.Linear(D, D)``) and ``Lambda`` (``(D,)``), all fp32.
    """

    def __init__(self, config: GateConfig, generator: torch.Generator | None = None) -> None:
        super().__init__()
        self.config = config
        d = config.hidden_size
        self.gate_r = _Fp32Linear(d)
        self.gate_i = _Fp32Linear(d)
        self.Lambda = nn.Parameter(torch.empty(d, dtype=torch.float32))
        self._lambda_master: torch.Tensor | None = None
        self.reset_lambda(generator=generator)

    @property
    def hidden_size(self) -> int:
        return self.config.hidden_size

    @torch.no_grad()
    def reset_lambda(
        self, r_min: float | None = None, r_max: float | None = None, generator: torch.Generator | None = None
    ) -> None:
        """Draw ``u ~ U[r_min, r_max]`` per dimension and set ``Lambda = logit(u^(1/c))``."""
        r_min = self.config.r_min if r_min is None else r_min
        r_max = self.config.r_max if r_max is None else r_max
        u = torch.empty(self.hidden_size, dtype=torch.float64).uniform_(r_min, r_max, generator=generator)
        root = u ** (1.0 / self.config.c)
        self.Lambda.copy_(torch.log(root / (1.0 - root)).to(self.Lambda.dtype))

    # ------------------------------------------------------------------ fp32 master values
    def set_fp32_master(self, values: dict[str, torch.Tensor] | None) -> None:
        """Compute the forward from these fp32 values (``state_dict`` names) instead of the parameters.

        For engines that keep the parameters in bf16/fp16 (DeepSpeed): pass the optimizer's fp32 master copies
        after each optimizer step. Gradients still reach the parameters. ``None`` goes back to the parameters.
        """
        if values is None:
            self.gate_r.fp32_master = self.gate_i.fp32_master = self._lambda_master = None
            return
        expected = [name for name, _ in self.named_parameters()]
        if set(values) != set(expected):
            raise ValueError(f"fp32 master values for {sorted(values)}, expected {sorted(expected)}")
        d = self.hidden_size
        shapes = {"Lambda": (d,), "weight": (d, d), "bias": (d,)}
        fixed = {
            name: v.detach().to(torch.float32).reshape(shapes[name.rsplit(".", 1)[-1]])
            for name, v in values.items()
        }
        self.gate_r.fp32_master = {"weight": fixed["gate_r.weight"], "bias": fixed["gate_r.bias"]}
        self.gate_i.fp32_master = {"weight": fixed["gate_i.weight"], "bias": fixed["gate_i.bias"]}
        self._lambda_master = fixed["Lambda"]

    @property
    def has_fp32_master(self) -> bool:
        return self._lambda_master is not None

    def fp32_state_dict(self) -> dict[str, torch.Tensor]:
        """The gate's values in fp32 (the master copies when set): what checkpoints store."""
        if not self.has_fp32_master:
            return {name: t.detach().float() for name, t in self.state_dict().items()}
        assert self.gate_r.fp32_master is not None and self.gate_i.fp32_master is not None
        return {
            "gate_r.weight": self.gate_r.fp32_master["weight"],
            "gate_r.bias": self.gate_r.fp32_master["bias"],
            "gate_i.weight": self.gate_i.fp32_master["weight"],
            "gate_i.bias": self.gate_i.fp32_master["bias"],
            "Lambda": self._lambda_master,
        }

    def _lambda(self) -> torch.Tensor:
        return _fp32_value(self.Lambda, self._lambda_master)

    def mix_coefficient(self, token_embeds: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Return ``(a, i)`` for token embeddings ``(..., D)``; both ``(..., D)`` fp32."""
        x = token_embeds.float()
        # Call the submodules (not F.linear on their weights): DeepSpeed ZeRO-3 gathers a module's partitioned
        # parameters in that module's own forward hooks.
        r = torch.sigmoid(self.gate_r(x))
        i = torch.sigmoid(self.gate_i(x))
        # log a = c * r * log(sigmoid(Lambda)); logsigmoid is stable for large |Lambda|.
        a = torch.exp(self.config.c * r * F.logsigmoid(self._lambda()))
        return a, i

    def forward(
        self, token_embeds: torch.Tensor, latents: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Mix ``token_embeds`` and ``latents`` (both ``(..., D)``).

        Returns ``(mixed, embeds_ratio, hidden_ratio)``: ``mixed`` is ``(..., D)`` in ``token_embeds.dtype``;
        the ratios are ``(...)`` fp32: the mean over D of ``a`` and of ``sqrt(1 - a^2)``.
        """
        if token_embeds.shape[-1] != self.hidden_size or latents.shape[-1] != self.hidden_size:
            raise ValueError(
                f"gate of hidden size {self.hidden_size} got token embeddings {tuple(token_embeds.shape)} "
                f"and latents {tuple(latents.shape)}"
            )
        a, i = self.mix_coefficient(token_embeds)
        latent_scale = torch.sqrt(1.0 - a * a + self.config.eps)
        mixed = a * token_embeds.float() + latent_scale * (i * latents.float())
        return mixed.to(token_embeds.dtype), a.mean(-1), latent_scale.mean(-1)

    @torch.no_grad()
    def init_ratios(self) -> tuple[float, float]:
        """Expected ``(embeds_ratio, hidden_ratio)`` when ``r = 0.5`` (gate linears near zero)."""
        lam = self._lambda_master if self._lambda_master is not None else self.Lambda.float()
        a = torch.exp(self.config.c * 0.5 * F.logsigmoid(lam))
        return float(a.mean()), float(torch.sqrt(1 - a * a).mean())

    def extra_repr(self) -> str:
        return f"hidden_size={self.hidden_size}, c={self.config.c}, r_min={self.config.r_min}, r_max={self.config.r_max}"


def lambda_for(u: float, c: float = 8.0) -> float:
    """The Lambda whose ``sigmoid(Lambda)^c`` equals ``u`` (e.g. 6.68 for u=0.99, c=8)."""
    root = u ** (1.0 / c)
    return math.log(root / (1.0 - root))
