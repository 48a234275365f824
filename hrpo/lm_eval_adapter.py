"""lm-evaluation-harness model ``hrpo``: HFLM with HRPO's hybrid latent decoding (paper section 3.4, spec 6).

:class:`HRPOLM` subclasses lm-eval's ``HFLM`` and overrides two seams only:

* model creation (``_create_model``): after HFLM loads the base model, the LoRA adapter of ``checkpoint`` is
  attached (merged by default, so decoding costs what the base model costs) and the thinking gate is loaded;
* ``_model_generate``: the batched call ``generate_until`` makes is served by
  :func:`hrpo.generation.hybrid_generate` -- greedy tokens whose input embeddings, while the model thinks, are
  the gated mix of the token embedding and the latent built from the tau-tempered top-k distribution (the
  paper's evaluation mode). ``until`` stop strings, ``max_gen_toks`` and batching are HFLM's.

Everything else -- tokenization, chat templates, batching, ``loglikelihood`` (plain token inputs),
accelerate data parallelism -- is inherited unchanged.

``model_args`` (``--model_args key=value,...``):

=============  ========================================================================================
pretrained     base model folder or hub id; default: the checkpoint's base model
               (:class:`hrpo.checkpoint.CheckpointInfo`: ``hrpo_run.json``, the full weights, or the adapter's)
checkpoint     training output / ``checkpoint-N`` folder: PEFT LoRA adapter and/or ``hrpo_gate.*``
latent         ``on``/``off`` (default on): hybrid inputs while thinking; off = plain token decoding
temperature    tau of the latent (and of sampling); default: the checkpoint's decoding settings, else 0.5
top_k, top_p   truncation of the latent's distribution; default: the checkpoint's decoding settings, else 50 / 1.0
delimiter      answer delimiter that ends thinking; default: the checkpoint's decoding settings, else ``####``
greedy         unset = follow the task (``do_sample``); true = always argmax; false = always sample at tau
merge_lora     merge the LoRA adapter into the weights (default true)
dtype, device  as for ``hf`` (any other ``hf`` argument works too, e.g. ``batch_size``, ``max_length``)
=============  ========================================================================================

Token choice: greedy unless the task's ``gen_kwargs`` ask for ``do_sample: true``; then tokens are sampled
(inverse CDF) at the task's ``temperature`` when it is > 0, else at tau, optionally with the task's
``top_k``/``top_p``; the latent always comes from the distribution the token was chosen from.

Python use::

    lm = HRPOLM(pretrained=model, tokenizer=tokenizer, gate=gate, temperature=0.5, batch_size=8)
    lm = HRPOLM(checkpoint="runs/gsm8k/checkpoint-500", dtype="bfloat16")
    lm_eval.simple_evaluate(model=lm, tasks=["hrpo_gsm8k"], task_manager=TaskManager(include_path="tasks"),
                            apply_chat_template=True)

A pre-built model object is used as given (a checkpoint's LoRA adapter, if any, is merged into it in place).

Response cache. lm-eval's ``--use_cache`` hashes only ``(context, gen_kwargs)`` of each request and keeps one
sqlite file per path, so the model's identity must live in the path: :meth:`HRPOLM.cache_path` (used by
``hrpo eval``) appends a digest of :attr:`HybridSettings.identity` (base model, checkpoint, latent, tau, top-k,
top-p, delimiter, greedy override). A cache file without that digest gets a warning.

Run info. :meth:`HRPOLM.get_model_info` records the resolved settings plus the run's ``method`` (HRPO / GRPO /
base), ``tau``, ``r_min``, ``seed`` and ``base_model`` under ``hrpo`` in lm-eval's results ``config``, so the
leaderboard reads results files only.

Errors. A missing checkpoint folder, a folder with neither gate, adapter nor model, or a gate whose hidden size
does not fit the base model (read from its ``config.json``) raise :class:`hrpo.checkpoint.GateCheckpointError`
before any weights load.
"""

from __future__ import annotations

import hashlib
import logging
import os
from dataclasses import asdict, dataclass
from typing import Any

import torch
from lm_eval.api.registry import register_model
from lm_eval.models.huggingface import HFLM

from hrpo.checkpoint import CheckpointInfo, GateCheckpointError, load_gate, read_gate_config
from hrpo.decoding import DecodingSettings
from hrpo.gate import ThinkingGate
from hrpo.generation import DecodeConfig, hybrid_generate

logger = logging.getLogger(__name__)

# Task gen_kwargs the decode loop does not implement; they are ignored with a warning.
_HANDLED_GEN_KWARGS = {"do_sample", "temperature", "top_k", "top_p"}


def parse_switch(value: Any, name: str) -> bool | None:
    """``on/off/true/false/1/0/yes/no`` (or a bool, or None) -> bool or None."""
    if value is None or isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("on", "true", "1", "yes"):
        return True
    if text in ("off", "false", "0", "no"):
        return False
    raise ValueError(f"{name} must be on/off (or true/false), got {value!r}")


@dataclass(frozen=True)
class HybridSettings:
    """Resolved decoding settings of an ``hrpo`` model; :attr:`identity` names them for response caches."""

    pretrained: str | None
    checkpoint: str | None
    latent: bool  # hybrid inputs will actually be used (requested and a gate is available)
    temperature: float
    top_k: int
    top_p: float
    delimiter: str
    greedy: bool | None  # None: the task's do_sample decides
    gate_in_checkpoint: bool
    adapter_in_checkpoint: bool
    # The run behind the checkpoint (not part of the identity: they follow from pretrained + checkpoint).
    method: str = "base"  # HRPO / GRPO (hrpo_run.json's hybrid) or base (no run file)
    r_min: float | None = None
    seed: int | None = None

    @property
    def base_model(self) -> str | None:
        return self.pretrained

    @property
    def tau(self) -> float:
        return self.temperature

    @property
    def decoding(self) -> DecodingSettings:
        return DecodingSettings(self.delimiter, self.temperature, self.top_k, self.top_p)

    def run_info(self) -> dict[str, Any]:
        """What the leaderboard needs to place a results file: method, tau, r_min, seed, base model."""
        return {"method": self.method, "tau": self.tau, "r_min": self.r_min, "seed": self.seed,
                "base_model": self.base_model}  # fmt: skip

    @property
    def identity(self) -> str:
        greedy = "task" if self.greedy is None else ("on" if self.greedy else "off")
        return (
            f"hrpo|pretrained={self.pretrained}|checkpoint={self.checkpoint}|latent={'on' if self.latent else 'off'}"
            f"|temperature={self.temperature}|top_k={self.top_k}|top_p={self.top_p}|delimiter={self.delimiter}"
            f"|greedy={greedy}"
        )

    @property
    def digest(self) -> str:
        return hashlib.sha256(self.identity.encode()).hexdigest()[:12]


def resolve_settings(
    pretrained: str | None = None,
    checkpoint: str | os.PathLike | None = None,
    latent: Any = True,
    temperature: float | None = None,
    top_k: int | None = None,
    top_p: float | None = None,
    delimiter: str | None = None,
    greedy: Any = None,
    gate_given: bool = False,
) -> HybridSettings:
    """Fill unset settings from the checkpoint's JSON files (no tensors read); explicit values win.

    Raises :class:`GateCheckpointError` for an unusable checkpoint folder and ``ValueError`` when no base model
    can be determined.
    """
    info = CheckpointInfo.read(checkpoint) if checkpoint else None
    if pretrained is None and info is not None:
        pretrained = info.base_model
    if pretrained is None:
        raise ValueError(
            "no base model: pass pretrained=<path or hub id> (or a checkpoint with hrpo_run.json)"
        )
    trained = info.decoding if info is not None else DecodingSettings()
    decoding = trained.override(temperature=temperature, top_k=top_k, top_p=top_p, delimiter=delimiter)
    want_latent = parse_switch(latent, "latent")
    gate_in_checkpoint = bool(info and info.has_gate)
    settings = HybridSettings(
        pretrained=str(pretrained),
        checkpoint=str(info.folder) if info is not None else None,
        latent=bool(want_latent) and (gate_in_checkpoint or gate_given),
        temperature=decoding.temperature,
        top_k=decoding.top_k,
        top_p=decoding.top_p,
        delimiter=decoding.delimiter,
        greedy=parse_switch(greedy, "greedy"),
        gate_in_checkpoint=gate_in_checkpoint,
        adapter_in_checkpoint=bool(info and info.has_adapter),
        method=info.method if info is not None else "base",
        r_min=info.r_min if info is not None else None,
        seed=info.seed if info is not None else None,
    )
    if want_latent and not settings.latent:
        logger.warning("latent=on but no gate (checkpoint without hrpo_gate.*): decoding with plain tokens")
    return settings


def base_hidden_size(pretrained: str, **config_kwargs: Any) -> int:
    """The base model's embedding width from its config alone (no weights)."""
    from transformers import AutoConfig

    config = AutoConfig.from_pretrained(pretrained, **config_kwargs)
    config = getattr(config, "text_config", None) or config
    return int(config.hidden_size)


def check_gate_fits(settings: HybridSettings, hidden_size: int) -> None:
    """Raise :class:`GateCheckpointError` if the checkpoint's gate was made for another hidden size."""
    if settings.gate_in_checkpoint and settings.checkpoint:
        read_gate_config(settings.checkpoint, hidden_size)


@register_model("hrpo")
class HRPOLM(HFLM):
    """``HFLM`` whose generation runs HRPO's hybrid decode loop (see the module docstring)."""

    def __init__(
        self,
        pretrained: str | torch.nn.Module | None = None,
        checkpoint: str | os.PathLike | None = None,
        latent: Any = True,
        temperature: float | None = None,
        top_k: int | None = None,
        top_p: float | None = None,
        delimiter: str | None = None,
        greedy: Any = None,
        gate: ThinkingGate | None = None,
        merge_lora: Any = True,
        **kwargs: Any,
    ) -> None:
        model_object = pretrained if isinstance(pretrained, torch.nn.Module) else None
        if kwargs.get("peft") and checkpoint:
            raise ValueError(
                "pass either peft= (plain adapter) or checkpoint= (HRPO training output), not both"
            )
        self.settings = resolve_settings(
            _object_name(model_object) if model_object is not None else pretrained,
            checkpoint,
            latent,
            temperature,
            top_k,
            top_p,
            delimiter,
            greedy,
            gate_given=gate is not None,
        )
        if model_object is not None:
            hidden = int(model_object.get_input_embeddings().weight.shape[-1])
        else:
            config_kwargs = {"trust_remote_code": bool(kwargs.get("trust_remote_code", False))}
            hidden = base_hidden_size(self.settings.pretrained, **config_kwargs)
        check_gate_fits(self.settings, hidden)  # before HFLM loads any weights
        if gate is not None and gate.hidden_size != hidden:
            raise GateCheckpointError(f"the gate has hidden size {gate.hidden_size}, the model {hidden}")
        self._merge_lora = bool(parse_switch(merge_lora, "merge_lora"))
        self._adapter_attached = False
        self._warned_kwargs: set[str] = set()

        super().__init__(
            pretrained=model_object if model_object is not None else self.settings.pretrained, **kwargs
        )
        if not self._adapter_attached:  # a model object skips _create_model
            self._attach_adapter()
        self.gate = self._load_gate(gate, hidden) if self.settings.latent else None
        logger.info("hrpo model: %s", self.settings.identity)

    # ------------------------------------------------------------------ model creation
    def _create_model(self, *args: Any, **kwargs: Any) -> None:
        super()._create_model(*args, **kwargs)
        self._attach_adapter()

    def _attach_adapter(self) -> None:
        self._adapter_attached = True
        if not self.settings.adapter_in_checkpoint:
            return
        from peft import PeftModel

        from hrpo.adapter_check import check_adapter_fits

        check_adapter_fits(self.settings.checkpoint, self._model)  # another model's adapter: clear error
        model = PeftModel.from_pretrained(self._model, self.settings.checkpoint)
        # Merged LoRA decodes at base-model cost and exposes the plain embedding the latent is built from.
        self._model = model.merge_and_unload() if self._merge_lora else model

    def _load_gate(self, gate: ThinkingGate | None, hidden: int) -> ThinkingGate:
        device = self.model.get_input_embeddings().weight.device
        if gate is None:
            gate = load_gate(self.settings.checkpoint, hidden_size=hidden)
        return gate.to(device).eval()

    # ------------------------------------------------------------------ generation
    def _model_generate(
        self, context: torch.Tensor, max_length: int, stop: list[str], **generation_kwargs: Any
    ) -> torch.Tensor:
        """Decode a left-padded batch ``(B, P)``; returns ``(B, P + C)`` ids as HF ``generate`` does."""
        attention_mask = generation_kwargs.pop("attention_mask", None)
        if attention_mask is None:
            attention_mask = torch.ones_like(context)
        config = self.decode_config(max_length - context.shape[1], stop, generation_kwargs)
        rollout = hybrid_generate(
            self.model, context, attention_mask, self.gate, config, self.tokenizer, generator=None
        )
        return torch.cat([context, rollout.completion_ids.to(context.device)], dim=1)

    def decode_config(self, max_new_tokens: int, stop: list[str], gen_kwargs: dict[str, Any]) -> DecodeConfig:
        """The :class:`DecodeConfig` for one batch: model settings plus the task's ``gen_kwargs``."""
        s = self.settings
        ignored = set(gen_kwargs) - _HANDLED_GEN_KWARGS - self._warned_kwargs
        if ignored:  # once per key, not once per batch
            logger.warning("hrpo model ignores these generation kwargs: %s", ", ".join(sorted(ignored)))
            self._warned_kwargs |= ignored
        sample = bool(gen_kwargs.get("do_sample", False)) if s.greedy is None else not s.greedy
        temperature, top_k, top_p = s.temperature, s.top_k, s.top_p
        if sample and s.greedy is None:  # the task asked for sampling: its own knobs win
            task_temperature = float(gen_kwargs.get("temperature") or 0.0)
            temperature = task_temperature if task_temperature > 0 else temperature
            top_k = int(gen_kwargs.get("top_k") or top_k)
            top_p = float(gen_kwargs.get("top_p") or top_p)
        return s.decoding.decode_config(
            max(1, int(max_new_tokens)),
            hybrid=self.gate is not None,
            greedy=not sample,
            sampling={"temperature": temperature, "top_k": top_k, "top_p": top_p},
            stop_strings=tuple(x for x in stop if x),
            record_logprobs=False,  # scores come from the text; skips a full-vocab log-softmax per step
        )

    # ------------------------------------------------------------------ bookkeeping
    def cache_path(self, base: str) -> str:
        """``base`` with the digest of the hybrid settings, for ``simple_evaluate(use_cache=...)``."""
        return cache_path_for(base, self.settings)

    def set_cache_hook(self, cache_hook: Any) -> None:
        filename = str(getattr(getattr(cache_hook, "dbdict", None), "filename", "") or "")
        if filename and self.settings.digest not in filename:
            logger.warning(
                "response cache %s is not keyed by the hybrid settings (lm-eval hashes only the request); use "
                "HRPOLM.cache_path() or `hrpo eval --use_cache` so other settings never reuse its responses",
                filename,
            )
        super().set_cache_hook(cache_hook)

    def get_model_info(self) -> dict:
        """HFLM's info plus ``hrpo``: the resolved settings and the run's method, tau, r_min, seed, base model."""
        return {**super().get_model_info(), "hrpo": {**asdict(self.settings), **self.settings.run_info()}}


def _object_name(model: torch.nn.Module) -> str:
    """A stable name for a pre-built model in the identity string (it has no path of its own)."""
    name = getattr(getattr(model, "config", None), "_name_or_path", None) or type(model).__name__
    return f"<object:{name}>"


def cache_path_for(base: str, settings: HybridSettings) -> str:
    """Append ``-hrpo-<digest>`` to a ``--use_cache`` path (lm-eval then adds ``_rank<N>.db``)."""
    return f"{base}-hrpo-{settings.digest}"
