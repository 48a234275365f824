"""The decoding settings of a run: one dataclass, built once from ``HRPOConfig``, written with every checkpoint.

:class:`DecodingSettings` holds what a checkpoint was trained to decode with -- the answer ``delimiter`` that
ends thinking, tau (``temperature``: sampling AND latent), ``top_k`` and ``top_p`` of the distribution the latent
is built from. The trainer builds it from its config (:meth:`DecodingSettings.from_config`) and writes it into
``hrpo_run.json`` (and the gate's ``decoding`` block, see :mod:`hrpo.checkpoint`); the lm-eval adapter reads it
back (:class:`hrpo.checkpoint.CheckpointInfo`) and overrides single values (:meth:`DecodingSettings.override`).

The decode loop's own configs are built from it in one place, :meth:`DecodingSettings.decode_config`. The value
rules (tau > 0, top_k >= 0, 0 < top_p <= 1, a non-empty delimiter for hybrid decoding) live once, in the core
(:class:`hrpo.latent.SamplingConfig`, :class:`hrpo.generation.DecodeConfig`); this class checks values by
building those, it does not restate them. Torch is imported only when a config is built.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields, replace
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from hrpo.generation import DecodeConfig
    from hrpo.latent import SamplingConfig


@dataclass(frozen=True)
class DecodingSettings:
    """How a checkpoint decodes; the defaults are :class:`hrpo.config.HRPOConfig`'s (the paper's)."""

    delimiter: str = "####"
    """Answer delimiter: thinking (hybrid inputs) ends once the completion contains it."""
    temperature: float = 0.5
    """tau: divides the logits for sampling and for the latent."""
    top_k: int = 50
    """Top-k of the sampling distribution, which is also the latent's (0 = full softmax)."""
    top_p: float = 1.0
    """Nucleus truncation of that distribution (1.0 = off)."""

    def __post_init__(self) -> None:
        # Normalise types (values may come from JSON / command lines), then let the core check the values.
        object.__setattr__(self, "delimiter", str(self.delimiter))
        object.__setattr__(self, "temperature", float(self.temperature))
        object.__setattr__(self, "top_k", int(self.top_k))
        object.__setattr__(self, "top_p", float(self.top_p))
        self.sampling_config()

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_config(cls, config: Any) -> DecodingSettings:
        """The settings of a training config (an :class:`hrpo.config.HRPOConfig` or anything with its fields)."""
        return cls(
            delimiter=config.delimiter, temperature=config.temperature, top_k=config.top_k, top_p=config.top_p
        )

    @classmethod
    def from_dict(cls, *blocks: dict[str, Any] | None) -> DecodingSettings:
        """Settings from JSON blocks, later blocks winning per key; unknown keys and ``None`` values ignored."""
        names = {f.name for f in fields(cls)}
        values: dict[str, Any] = {}
        for block in blocks:
            values.update({k: v for k, v in (block or {}).items() if k in names and v is not None})
        return cls(**values)

    def override(self, **values: Any) -> DecodingSettings:
        """A copy with the given values replaced; ``None`` keeps the current value."""
        return replace(self, **{k: v for k, v in values.items() if v is not None})

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    # ------------------------------------------------------------------ the decode loop's configs
    def sampling_config(self, greedy: bool = False, **changes: Any) -> SamplingConfig:
        """:class:`hrpo.latent.SamplingConfig` of these settings (``changes`` replace temperature/top_k/top_p)."""
        from hrpo.latent import SamplingConfig

        values = {"temperature": self.temperature, "top_k": self.top_k, "top_p": self.top_p, **changes}
        return SamplingConfig(greedy=greedy, **values)

    def decode_config(
        self,
        max_new_tokens: int,
        hybrid: bool,
        greedy: bool = False,
        sampling: dict[str, Any] | None = None,
        **options: Any,
    ) -> DecodeConfig:
        """:class:`hrpo.generation.DecodeConfig` of these settings: the one place both loops' configs are built.

        ``sampling`` replaces temperature/top_k/top_p for this call (a task's own sampling knobs); ``options``
        are the other ``DecodeConfig`` fields (``stop_strings``, ``eos_token_ids``, ``record_logprobs``, ...).
        """
        from hrpo.generation import DecodeConfig

        return DecodeConfig(
            max_new_tokens=max_new_tokens,
            sampling=self.sampling_config(greedy, **(sampling or {})),
            hybrid=hybrid,
            delimiter=self.delimiter,
            **options,
        )
