"""HRPOTrainer: TRL's ``GRPOTrainer`` with hybrid rollouts and a hybrid policy forward.

What differs from ``GRPOTrainer`` (everything else -- sampling groups, rewards, advantages, the GRPO loss, KL,
logging, DeepSpeed/accelerate plumbing, checkpoints -- is inherited):

1. ``_generate_single_turn``: rollouts come from :func:`hrpo.generation.hybrid_generate` (weights gathered under
   ZeRO-3 by TRL's ``unwrap_model_for_generation``); the thinking mask and compact latents of each rollout are
   kept and attached to the batch in ``_generate_and_score_completions``, where they survive TRL's shuffle/split.
2. ``_get_per_token_logps_and_entropies``: every forward gets the rollout's attention mask AND matching position
   ids (TRL passes none, so left-padded rows would be shifted). Inside ``_compute_loss`` the hybrid inputs are
   rebuilt from the stored latents with the CURRENT gate (gradients to the gate); every other call -- the
   reference log-probs with the LoRA adapter disabled -- uses plain token inputs, as the paper does. With
   ``length_buckets`` (default) TRL's fixed row chunks become length buckets (:func:`hrpo.bucketing.plan_buckets`:
   rows sorted by length, each chunk cut to the columns its rows use): the same number of forwards (ZeRO-3's
   collectives stay in lockstep across ranks), the same log-probs up to float rounding, scattered back in row
   order.
3. The loss's LM head (:func:`install_loss_head`): TRL fuses its head at the sampling temperature; HRPO's runs at
   ``loss_temperature`` (1.0 = raw logits, the authors' loss) for the policy AND reference log-probs, and also
   returns, from the same hidden states and without gradient, the log-probs at the sampling temperature, which
   the replay check compares with the rollout's (like with like). The KL is the plain k3 by default
   (``use_bias_correction_kl=False``).
4. ``create_optimizer``: parameter groups LoRA/base (weights decayed; biases and norm weights not, as HF's
   ``get_decay_parameter_names``), gate linears and Lambda (all decayed, as the authors), own peak learning rates.
5. Under DeepSpeed bf16/fp16 the gate computes from the optimizer's fp32 master values (refreshed after every
   optimizer step, see :mod:`hrpo.gate`), and the saved gate holds them.
6. Checkpoints also hold the gate (``hrpo_gate.*``), the run config and a completion marker written last; resuming
   refuses a checkpoint without it. Saves are atomic (written into a staging folder, renamed into place, rotated
   after) and a resume must match the run's setup. The folder's layout belongs to :mod:`hrpo.checkpoint`.

Hand-offs between TRL's hooks (the rollout from ``_generate_single_turn`` to ``_generate_and_score_completions``,
the replay inputs from ``_compute_loss`` to the policy forward, the replay gaps back) go through :class:`HandOff`:
each value is taken exactly once, by the batch it was made for (shape and token checksum), or a clear error says
which hook TRL no longer calls as HRPO expects. ``tests/test_contracts.py`` pins the hooks' signatures.

``hybrid=False`` skips the gate entirely and trains plain GRPO through the same loop and loss.
"""

from __future__ import annotations

import functools
import shutil
import types
from contextlib import nullcontext
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Generic, TypeVar

import torch
from accelerate.utils import is_peft_model
from transformers.integrations.deepspeed import is_deepspeed_zero3_enabled
from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR
from trl import GRPOTrainer
from trl.extras.profiling import profiling_context
from trl.kernels import ChunkedLogProbFunction
from trl.models import unwrap_model_for_generation
from trl.trainer.utils import FusedCausalLMOutput, maybe_gather_lm_head_ctx, pad

from hrpo.bucketing import Bucket, plan_buckets
from hrpo.checkpoint import (  # noqa: F401  (COMPLETE_MARKER ... latest_complete_checkpoint: the old import path)
    COMPLETE_MARKER,
    RUN_CONFIG,
    CheckpointSaveError,
    IncompleteCheckpointError,
    check_checkpoint_complete,
    check_resume_compatible,
    latest_complete,
    latest_complete_checkpoint,
    load_gate,
    publish_checkpoint,
    rotate_complete_checkpoints,
    save_gate,
    staging_dir,
    write_complete_marker,
    write_run_info,
)
from hrpo.config import HRPOConfig
from hrpo.gate import GateConfig, ThinkingGate
from hrpo.generation import (
    DecodeConfig,
    Rollout,
    hybrid_generate,
    hybrid_inputs_embeds,
    position_ids_from_mask,
)

_REPLAY_KEYS = ("thinking_mask", "latent_ids", "latent_probs", "latents")

T = TypeVar("T")


class HandOffError(RuntimeError):
    """A value passed between two of TRL's hooks is missing, stale or belongs to another batch."""


def batch_key(ids: torch.Tensor, mask: torch.Tensor) -> tuple[tuple[int, ...], int]:
    """``(shape, checksum)`` of a token batch ``(B, L)``: the ids where ``mask`` is set, weighted by position."""
    weights = torch.arange(1, ids.numel() + 1, device=ids.device).view_as(ids) % 65521 + 1
    checksum = int((ids.long() * mask.long() * weights).sum().item())
    return tuple(ids.shape), checksum


class HandOff(Generic[T]):
    """One value passed from one hook to the next: put once, taken once, by the batch it was made for.

    ``put(value, key)`` refuses to overwrite a value nobody took; ``take(key)`` refuses when there is none or when
    ``key`` (:func:`batch_key` of the batch at hand) differs from the one it was put with. Either means TRL calls
    its hooks in another order than HRPO relies on (see ``tests/test_contracts.py``).
    """

    def __init__(self, name: str, producer: str, consumer: str) -> None:
        self.name, self.producer, self.consumer = name, producer, consumer
        self._value: T | None = None
        self._key: Any = None

    @property
    def pending(self) -> bool:
        return self._value is not None

    def put(self, value: T, key: Any) -> None:
        if self._value is not None:
            raise HandOffError(
                f"{self.name}: {self.producer} produced a second value before {self.consumer} took the first one "
                "(the trainer's hooks are called in an order HRPOTrainer does not support)"
            )
        self._value, self._key = value, key

    def take(self, key: Any) -> T:
        value, expected = self._value, self._key
        self._value = self._key = None
        if value is None:
            raise HandOffError(
                f"{self.name}: {self.consumer} found no value from {self.producer} (TRL no longer calls "
                f"{self.producer} before {self.consumer} for this batch)"
            )
        if key != expected:
            raise HandOffError(
                f"{self.name}: {self.consumer} got the value {self.producer} made for another batch (batch "
                f"shape/checksum {key} != {expected})"
            )
        return value

    def peek(self) -> T | None:
        """The pending value, not taken (for inspection)."""
        return self._value

    def discard(self) -> None:
        self._value = self._key = None


def _gathered(params: list[torch.nn.Parameter]):
    """Gather ZeRO-3 partitioned parameters (collective); a no-op context otherwise."""
    if any(hasattr(p, "ds_id") for p in params):
        import deepspeed

        return deepspeed.zero.GatheredParameters(params, modifier_rank=None)
    from contextlib import nullcontext

    return nullcontext()


# Vocabulary columns per LM-head tile (TRL's value): the (tokens, V) logits are never materialised.
_HEAD_CHUNK = 32768


@dataclass
class LossHeadOutput(FusedCausalLMOutput):
    """TRL's fused-head output plus ``sampling_log_probs`` ``(B, L-1)``: log-probs at the sampling temperature,
    no gradient, filled only when asked for (the replay check)."""

    sampling_log_probs: torch.Tensor | None = None


def install_loss_head(
    model: torch.nn.Module,
    loss_temperature: float,
    sampling_temperature: float,
    cast_lm_head_to_fp32: bool = False,
) -> None:
    """Put HRPO's fused LM head on ``model`` (a causal LM that TRL's ``add_fused_lm_head`` already patched).

    ``model(..., labels=labels, fused_lm_head=True)`` then returns per-token log-probs and entropies at
    ``loss_temperature`` (gradient flows), chunked over the vocabulary so the logits are never materialised;
    with ``sampling_log_probs=True`` also the log-probs at ``sampling_temperature`` of the SAME forward (one
    more no-grad pass over the LM head only). Calls without ``fused_lm_head`` (generation) are unchanged.
    """
    previous = model.forward  # TRL's patched forward: it passes non-fused calls to the model's own forward
    text_config = model.config.get_text_config()
    for name in ("logit_scale", "output_multiplier", "lm_head_multiplier", "logits_scaling"):
        if getattr(text_config, name, None) not in (None, 1, 1.0):
            raise NotImplementedError(
                f"HRPO's loss head does not support models with a {name} on their logits"
            )
    softcap = getattr(text_config, "final_logit_softcapping", None)

    # Keep the model's signature: generate() inspects it (logits_to_keep support, kwargs validation).
    @functools.wraps(type(model).forward)
    def forward(self, *args, fused_lm_head=False, labels=None, sampling_log_probs=False, **kwargs):
        if not fused_lm_head:
            return previous(*args, labels=labels, **kwargs)
        if kwargs.get("output_router_logits") or getattr(text_config, "output_router_logits", False):
            raise NotImplementedError("HRPO's loss head does not compute the MoE router aux loss")
        kwargs["use_cache"] = False
        hidden = self.base_model(*args, **kwargs).last_hidden_state[:, :-1]  # (B, L-1, D)
        targets = labels[:, 1:]  # (B, L-1): position t predicts token t+1
        head = self.get_output_embeddings()
        hidden, targets = hidden.to(head.weight.device), targets.to(head.weight.device)
        mask = targets != -100
        flat = hidden[mask]  # (N, D): only the scored positions go through the head
        autocast = nullcontext()
        if cast_lm_head_to_fp32:
            flat = flat.float()
            autocast = torch.autocast(flat.device.type, enabled=False)
        weight, bias = head.weight, head.bias
        with autocast, maybe_gather_lm_head_ctx(weight, bias):
            logps, entropy, *_ = ChunkedLogProbFunction.apply(
                flat, weight, bias, targets[mask], loss_temperature, _HEAD_CHUNK, softcap, 1.0,
                ("log_probs", "entropy"),
            )  # fmt: skip
            at_sampling = None
            if sampling_log_probs and sampling_temperature == loss_temperature:
                at_sampling = logps.detach()
            elif sampling_log_probs:
                with torch.no_grad():
                    at_sampling = ChunkedLogProbFunction.apply(
                        flat.detach(), weight, bias, targets[mask], sampling_temperature, _HEAD_CHUNK, softcap,
                        1.0, ("log_probs",),
                    )[0]  # fmt: skip

        def scatter(x: torch.Tensor | None) -> torch.Tensor | None:
            # masked_scatter keeps an all-masked micro-batch connected to the graph (a differentiable zero).
            return None if x is None else x.new_zeros(mask.shape).masked_scatter(mask, x)

        log_probs = scatter(logps)
        return LossHeadOutput(
            loss=-log_probs.sum() / mask.sum().clamp(min=1),
            log_probs=log_probs,
            entropy=scatter(entropy),
            label_mask=mask,
            sampling_log_probs=scatter(at_sampling),
        )

    model.forward = types.MethodType(forward, model)


def _fit_columns(tensor: torch.Tensor, width: int) -> torch.Tensor:
    """Pad (zeros) or cut ``tensor`` along dim 1 to ``width`` columns."""
    if tensor.shape[1] >= width:
        return tensor[:, :width]
    pad_shape = (tensor.shape[0], width - tensor.shape[1], *tensor.shape[2:])
    return torch.cat([tensor, tensor.new_zeros(pad_shape)], dim=1)


def _gate_anchor(gate: ThinkingGate, embeds: torch.Tensor) -> torch.Tensor:
    """A scalar computed by the gate from one position: weighted by 0, it keeps every gate parameter in the graph
    of a micro-batch without thinking slots (DDP expects gradients for all parameters; under ZeRO-3 every rank
    then calls the gate, whose parameter gathering is a collective, the same number of times)."""
    probe = embeds[:1, :1]  # (1, 1, D)
    mixed, _, _ = gate(probe, torch.ones_like(probe, dtype=torch.float32))
    return mixed.float().sum().to(embeds.dtype)


def _unbucket(parts: list[torch.Tensor], buckets: list[Bucket], width: int) -> torch.Tensor:
    """``(B, width)`` from per-bucket ``(b, c)`` values: zero past each bucket's ``c``, rows back in batch order."""
    if all(isinstance(b.rows, slice) for b in buckets):  # fixed chunks, in order, full width
        return torch.cat(parts)
    padded = torch.cat([torch.nn.functional.pad(x, (0, width - x.shape[1])) for x in parts])
    order = torch.cat([b.rows for b in buckets])
    return padded[torch.argsort(order)]  # a gather: gradients flow back to each bucket's forward


class HRPOTrainer(GRPOTrainer):
    """GRPO with hybrid latent reasoning (see module docstring for the overridden seams)."""

    def __init__(self, *args: Any, gate: ThinkingGate | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        config: HRPOConfig = self.args
        # TRL fused the loss head at the sampling temperature; HRPO's uses loss_temperature (see module doc).
        loss_t = config.effective_loss_temperature
        policy = self.model.get_base_model() if is_peft_model(self.model) else self.model
        install_loss_head(policy, loss_t, config.temperature, config.cast_lm_head_to_fp32)
        if self.ref_model is not None:
            install_loss_head(self.ref_model, loss_t, config.temperature, config.cast_lm_head_to_fp32)
        self.gate: ThinkingGate | None = None
        if config.hybrid:
            hidden = self.model.get_input_embeddings().embedding_dim
            if gate is None and config.gate_checkpoint:
                gate = load_gate(config.gate_checkpoint, hidden_size=hidden)
            if gate is None:
                generator = torch.Generator().manual_seed(config.seed)
                gate = ThinkingGate(GateConfig(hidden, config.gate_c, config.r_min, config.r_max), generator)
            # A submodule of the trained model, so Trainer/accelerate/DeepSpeed optimise, shard and save it.
            self.model.hrpo_gate = gate.to(self.args.device)
            self.gate = gate
        # The exact fp32 gate, put back into DeepSpeed's fp32 master copy if its engine rounds it (bf16/fp16).
        self._gate_init = (
            {k: v.detach().cpu().clone() for k, v in self.gate.state_dict().items()} if self.gate else None
        )
        self._gate_master_step: int | None = None
        if self.gate is not None and is_deepspeed_zero3_enabled() and (config.bf16 or config.fp16):
            # ZeRO-3 flattens the model, loaded by zero.Init in the training dtype, into one-dtype partitions and
            # does not cast modules added afterwards: the gate joins in that dtype. It still computes from fp32
            # (the optimizer's master copy, set before the first rollout by _sync_gate_master).
            self.gate.to(torch.bfloat16 if config.bf16 else torch.float16)
        # Hand-offs between TRL's hooks (see the module docstring).
        self._last_rollout: HandOff[Rollout] = HandOff(
            "rollout", "_generate_single_turn", "_generate_and_score_completions"
        )
        self._replay: HandOff[dict[str, torch.Tensor]] = HandOff(
            "replay inputs", "_compute_loss", "_get_per_token_logps_and_entropies"
        )
        self._replay_gap: HandOff[list[torch.Tensor]] = HandOff(
            "replay gaps", "_get_per_token_logps_and_entropies", "_compute_loss"
        )
        self._loss_forwards: int | None = (
            None  # policy forwards inside the running _compute_loss (None: none runs)
        )

    # ------------------------------------------------------------------ rollouts
    def _decode_config(self) -> DecodeConfig:
        args: HRPOConfig = self.args
        return args.decoding.decode_config(
            args.max_completion_length, hybrid=args.hybrid, eos_token_ids=tuple(self.eos_token_ids)
        )

    def _generate_single_turn(
        self, prompt_ids, images, multimodal_fields, num_generations, has_tool_images=False
    ):
        if images is not None or multimodal_fields or self.tools:
            raise NotImplementedError("HRPOTrainer supports text-only prompts without tools")
        device = self.accelerator.device
        rows = [torch.tensor(ids) for ids in prompt_ids]
        input_ids = pad(rows, padding_value=self._tokenizer.pad_token_id, padding_side="left").to(device)
        attention_mask = pad([torch.ones_like(r) for r in rows], padding_value=0, padding_side="left").to(
            device
        )
        with (
            profiling_context(self, "hybrid_generate"),
            unwrap_model_for_generation(
                self.model_wrapped,
                self.accelerator,
                gather_deepspeed3_params=self.args.ds3_gather_for_generation,
                gradient_checkpointing_kwargs=self.args.gradient_checkpointing_kwargs,
            ) as unwrapped,
            torch.no_grad(),
        ):
            gate = getattr(unwrapped, "hrpo_gate", None)
            rollout = hybrid_generate(
                unwrapped, input_ids, attention_mask, gate, self._decode_config(), self._tokenizer
            )
        self._last_rollout.put(rollout, batch_key(input_ids, attention_mask))
        lengths = rollout.completion_mask.sum(1).tolist()
        completion_ids = [
            row[:n].tolist() for row, n in zip(rollout.completion_ids.cpu(), lengths, strict=True)
        ]
        logprobs = [row[:n].tolist() for row, n in zip(rollout.logprobs.cpu(), lengths, strict=True)]
        return completion_ids, logprobs

    def _sync_gate_master(self) -> None:
        """Under DeepSpeed bf16/fp16, give the gate the optimizer's fp32 master values (see :mod:`hrpo.gate`).

        A collective under ZeRO: every rank calls it at the same points (before each rollout, when saving).
        Refreshed once per optimizer step; the first call of a fresh run first writes the exact fp32 init back
        into the master copy, which the engine built from its rounded bf16 cast.
        """
        gate = self.gate
        if gate is None or not self.is_deepspeed_enabled:
            return
        params = dict(gate.named_parameters())
        if all(p.dtype == torch.float32 for p in params.values()):
            return  # fp32 engine: the parameters are the master values
        step = int(getattr(self.model_wrapped, "global_steps", self.state.global_step))
        if self._gate_master_step == step:
            return
        from deepspeed.utils import safe_get_full_fp32_param, safe_set_full_fp32_param

        if self._gate_master_step is None and self._gate_init is not None and self.state.global_step == 0:
            init = {k: v.to(self.accelerator.device) for k, v in self._gate_init.items()}
            if torch.distributed.is_available() and torch.distributed.is_initialized():
                # Rank 0's init, as the engine broadcast it (the gate linears' default init draws from the
                # global RNG, whose state may differ between ranks).
                for tensor in init.values():
                    torch.distributed.broadcast(tensor, src=0)
            self._gate_init = {k: v.cpu() for k, v in init.items()}
            for name, p in params.items():
                safe_set_full_fp32_param(p, init[name])
        values = {}
        for name, p in params.items():
            value = safe_get_full_fp32_param(p)
            if value is None:
                raise RuntimeError(
                    f"DeepSpeed holds the gate parameter {name} in {p.dtype} but exposes no fp32 master copy of it"
                )
            values[name] = value.detach().clone()
        gate.set_fp32_master(values)
        self._gate_master_step = step

    def _generate_and_score_completions(self, inputs):
        self._sync_gate_master()
        self._last_rollout.discard()  # a rollout left by an interrupted step belongs to no batch
        output = super()._generate_and_score_completions(inputs)
        rollout = self._last_rollout.take(batch_key(output["prompt_ids"], output["prompt_mask"]))
        _check_completions(rollout, output["completion_ids"])
        mode = "train" if self.model.training else "eval"
        width = output["completion_ids"].shape[1]
        device = output["completion_ids"].device
        output["thinking_mask"] = _fit_columns(rollout.thinking_mask, width).to(device)
        for key in ("latent_ids", "latent_probs", "latents"):
            value = getattr(rollout, key)
            if value is not None:
                output[key] = _fit_columns(value, width).to(device)
        # Gate ratios over hybrid slots of all processes (1 / 0 when nothing was hybrid). embeds_ratio is
        # mean_D(a) per slot; hidden_ratio is the authors' sqrt(1 - mean_D(a)^2) per slot (what they log and the
        # paper's Fig. 4 plots); hidden_ratio_mean is mean_D(sqrt(1 - a^2)) per slot (smaller, by Jensen).
        slots = rollout.thinking_mask
        a_mean = rollout.embeds_ratio[slots].float()
        authors_hidden = torch.sqrt((1.0 - a_mean * a_mean).clamp(min=0.0))
        stats = torch.stack(
            [a_mean.sum(), authors_hidden.sum(), rollout.hidden_ratio[slots].sum(), slots.sum().float(),
             rollout.completion_mask.sum().float()]
        ).to(device)  # fmt: skip
        total = self.accelerator.reduce(stats, reduction="sum")
        count, any_slot = total[3].clamp(min=1.0), bool(total[3] > 0)
        metrics = self._metrics[mode]
        metrics["hybrid/embeds_ratio"].append((total[0] / count).item() if any_slot else 1.0)
        metrics["hybrid/hidden_ratio"].append((total[1] / count).item() if any_slot else 0.0)
        metrics["hybrid/hidden_ratio_mean"].append((total[2] / count).item() if any_slot else 0.0)
        metrics["hybrid/thinking_fraction"].append((total[3] / total[4].clamp(min=1.0)).item())
        return output

    # ------------------------------------------------------------------ forward / loss
    def _compute_loss(self, model, inputs):
        self._replay.discard()
        self._replay_gap.discard()
        key = batch_key(
            torch.cat([inputs["prompt_ids"], inputs["completion_ids"]], dim=1),
            torch.cat([inputs["prompt_mask"], inputs["completion_mask"]], dim=1),
        )
        if self.gate is not None:
            replay = {k: inputs[k] for k in (*_REPLAY_KEYS, "sampling_per_token_logps") if k in inputs}
            replay["completion_mask"] = inputs["completion_mask"]
            self._replay.put(replay, key)
            self._loss_forwards = 0
        # The rollout's log-probs are at the sampling temperature and serve only the replay check. TRL would use
        # them for off-policy masking against the loss log-probs (another temperature by default); HRPO is
        # on-policy (num_iterations=1, no vLLM), so TRL's fallback -- the detached current log-probs -- is exact.
        inputs = {k: v for k, v in inputs.items() if k != "sampling_per_token_logps"}
        try:
            loss = super()._compute_loss(model, inputs)
            if self._replay.pending:
                raise HandOffError(
                    "replay inputs: TRL's _compute_loss did not compute the policy log-probs through "
                    "_get_per_token_logps_and_entropies, so the loss never saw the hybrid inputs"
                )
        finally:
            self._replay.discard()
            self._loss_forwards = None
        gaps = self._replay_gap.take(key) if self._replay_gap.pending else []
        if gaps:
            # Max |log p(loss forward) - log p(rollout)|: ~1e-6 in fp32 when replay is exact (on-policy).
            gap = self.accelerator.gather(torch.stack(gaps).max()[None]).max()
            mode = "train" if self.model.training else "eval"
            self._metrics[mode]["hybrid/replay_logp_gap"].append(gap.item())
        return loss

    def _get_per_token_logps_and_entropies(
        self,
        model,
        input_ids,
        attention_mask,
        logits_to_keep,
        batch_size=None,
        compute_entropy=False,
        compute_aux_loss=False,
        **multimodal,
    ):
        if any(v is not None for v in multimodal.values()):
            raise NotImplementedError("HRPOTrainer supports text-only models")
        unwrapped = self.accelerator.unwrap_model(model)
        # The policy forward of _compute_loss takes the replay inputs put there for this very batch; every other
        # call (reference log-probs while scoring) finds none and uses plain token inputs.
        if self._loss_forwards is not None:
            self._loss_forwards += 1
            if self._loss_forwards > 1:
                raise HandOffError(
                    "replay inputs: TRL's _compute_loss ran a second forward through "
                    "_get_per_token_logps_and_entropies; HRPOTrainer supports exactly one (the policy's)"
                )
        key = batch_key(input_ids, attention_mask) if self._replay.pending else None
        replay = self._replay.take(key) if key is not None else None
        gaps: list[torch.Tensor] = []
        batch, width = input_ids.shape
        prompt_width = width - logits_to_keep
        batch_size = batch_size or batch
        if self.args.length_buckets:
            # Rows sorted by length, each micro-batch cut to its own columns; as many forwards as the fixed chunks.
            buckets = plan_buckets(
                attention_mask[:, :prompt_width], attention_mask[:, prompt_width:], batch_size
            )
        else:
            buckets = [
                Bucket(rows=slice(start, start + batch_size), prompt_start=0, completion_len=logits_to_keep)
                for start in range(0, batch, batch_size)
            ]
        logps, entropies, aux = [], [], []
        for bucket in buckets:
            rows, c = bucket.rows, bucket.completion_len
            columns = slice(bucket.prompt_start, prompt_width + c)
            ids = input_ids[rows, columns]
            mask = attention_mask[rows, columns]
            # Cutting columns that are padding in every row of the bucket keeps each real token's position.
            model_inputs: dict[str, Any] = {
                "attention_mask": mask,
                "position_ids": position_ids_from_mask(mask),
            }
            check_replay = bool(replay) and "sampling_per_token_logps" in replay
            if replay:
                thinking = replay["thinking_mask"][rows, :c]
                gate = unwrapped.hrpo_gate
                embeds, _, _ = hybrid_inputs_embeds(
                    unwrapped,
                    gate,
                    ids,
                    thinking,
                    *(replay[k][rows, :c] if k in replay else None for k in _REPLAY_KEYS[1:]),
                )
                if not bool(thinking.any()):
                    embeds = embeds + 0.0 * _gate_anchor(gate, embeds)
                model_inputs["inputs_embeds"] = embeds
            else:
                model_inputs["input_ids"] = ids
            if compute_aux_loss:
                model_inputs["output_router_logits"] = True
            if check_replay:
                model_inputs["sampling_log_probs"] = True
            labels = ids.masked_fill(mask == 0, -100)
            labels[:, :-c] = -100
            with self.accelerator.autocast():
                outputs = model(**model_inputs, labels=labels, fused_lm_head=True)
            logps.append(outputs.log_probs[:, -c:])
            if check_replay:
                # Like with like: this forward's log-probs at the sampling temperature vs the rollout's.
                replayed = outputs.sampling_log_probs[:, -c:]
                rollout_logps = replay["sampling_per_token_logps"][rows, :c]
                valid = replay["completion_mask"][rows, :c].bool()
                gap = (replayed.float() - rollout_logps).abs().masked_fill(~valid, 0.0)
                gaps.append(gap.max())
            if compute_entropy:
                entropies.append(outputs.entropy[:, -c:])
            if compute_aux_loss:
                aux.append(outputs.aux_loss)
        if replay is not None:
            self._replay_gap.put(gaps, key)
        return (
            _unbucket(logps, buckets, logits_to_keep),
            _unbucket(entropies, buckets, logits_to_keep) if compute_entropy else None,
            torch.stack(aux).mean() if compute_aux_loss else None,
        )

    # ------------------------------------------------------------------ optimizer
    def parameter_groups(self) -> list[dict[str, Any]]:
        """Optimizer groups with their peak learning rates and weight decay (the authors' ``patch.py`` split).

        ``policy`` (LoRA or base weights, decayed), ``policy_no_decay`` (biases and norm weights, HF's
        ``get_decay_parameter_names``; only present when such parameters train, i.e. not for plain LoRA), ``gate``
        (both gate linears, weights AND biases decayed, as the authors) and ``lambda`` (decayed).
        """
        args: HRPOConfig = self.args
        gate_ids = {id(p) for p in self.gate.parameters()} if self.gate is not None else set()
        decay_names = set(self.get_decay_parameter_names(self.model))
        main, no_decay = [], []
        for name, p in self.model.named_parameters():
            if p.requires_grad and id(p) not in gate_ids:
                (main if name in decay_names else no_decay).append(p)
        groups = [
            {"params": main, "lr": args.learning_rate, "weight_decay": args.weight_decay, "name": "policy"}
        ]
        if no_decay:
            groups.append({"params": no_decay, "lr": args.learning_rate, "weight_decay": 0.0,
                           "name": "policy_no_decay"})  # fmt: skip
        if self.gate is not None:
            linears = [*self.gate.gate_r.parameters(), *self.gate.gate_i.parameters()]
            groups.append(
                {
                    "params": linears,
                    "lr": args.gate_learning_rate,
                    "weight_decay": args.weight_decay,
                    "name": "gate",
                }
            )
            groups.append(
                {"params": [self.gate.Lambda], "lr": args.lambda_learning_rate, "weight_decay": args.weight_decay,
                 "name": "lambda"}
            )  # fmt: skip
        return groups

    def create_optimizer(self, model=None):
        if self.optimizer is None:
            optimizer_cls, optimizer_kwargs = self.get_optimizer_cls_and_kwargs(self.args, self.model)
            optimizer_kwargs = {k: v for k, v in optimizer_kwargs.items() if k not in ("lr", "weight_decay")}
            self.optimizer = optimizer_cls(self.parameter_groups(), **optimizer_kwargs)
        return self.optimizer

    # ------------------------------------------------------------------ checkpoints
    def save_model(self, output_dir: str | None = None, _internal_call: bool = False) -> None:
        super().save_model(output_dir, _internal_call)
        output_dir = output_dir or self.args.output_dir
        if self.gate is not None:
            self._sync_gate_master()  # the fp32 values to save under DeepSpeed bf16 (a collective)
            with _gathered(list(self.gate.parameters())):  # collective under ZeRO-3: every rank enters
                if self.args.should_save:
                    save_gate(self.gate, output_dir, decoding=self.args.decoding)
        if self.args.should_save:
            self._write_run_config(Path(output_dir))

    def _write_run_config(self, folder: Path) -> None:
        model = self.accelerator.unwrap_model(self.model)
        args: HRPOConfig = self.args
        write_run_info(
            folder,
            base_model=getattr(getattr(model, "config", None), "_name_or_path", None),
            hybrid=args.hybrid,
            peft=hasattr(model, "peft_config"),
            decoding=args.decoding,
            args=asdict(args),
            hidden_size=model.get_input_embeddings().embedding_dim,
            world_size=args.world_size,
        )

    def _get_output_dir(self, trial) -> str:
        # While _save_checkpoint runs, Trainer writes checkpoint-N under the staging folder (see there).
        staging = getattr(self, "_hrpo_staging", None)
        return staging if staging is not None else super()._get_output_dir(trial)

    def _save_checkpoint(self, model, trial) -> None:
        """TRL's/transformers' save, into ``.hrpo-staging/checkpoint-N``, then marked complete and renamed into
        place; old checkpoints are rotated only after that (:mod:`hrpo.checkpoint`, "atomic saves").

        A failure while writing (a full disk) removes the staged folder and raises :class:`CheckpointSaveError`;
        the previous checkpoints are untouched, so ``--resume_from_checkpoint latest`` resumes from the newest.
        """
        self._hrpo_staging = None
        run_dir = Path(self._get_output_dir(trial=trial))
        name = f"{PREFIX_CHECKPOINT_DIR}-{self.state.global_step}"
        staging = staging_dir(run_dir)
        if self.args.should_save:
            shutil.rmtree(staging, ignore_errors=True)  # what a crashed save left behind
        self.accelerator.wait_for_everyone()  # every rank writes its part (DeepSpeed shards) into the staging
        self._hrpo_staging = str(staging)
        try:
            super()._save_checkpoint(model, trial)  # transformers' rotation runs inside the staging: a no-op
        except Exception as err:
            if self.args.should_save:
                shutil.rmtree(staging, ignore_errors=True)
            previous = latest_complete(run_dir)
            raise CheckpointSaveError(
                f"saving {name} into {staging} failed ({type(err).__name__}: {err}). Nothing was published: the "
                f"newest complete checkpoint is still {previous or 'none (no checkpoint was completed yet)'}. Free "
                "disk space (or fix the cause) and rerun with --resume_from_checkpoint latest."
            ) from err
        finally:
            self._hrpo_staging = None
        self.accelerator.wait_for_everyone()
        if self.args.should_save:
            staged = staging / name
            write_complete_marker(staged, self.state.global_step)
            publish_checkpoint(staged, run_dir / name)
            shutil.rmtree(staging, ignore_errors=True)
            best = self.state.best_model_checkpoint
            if best and Path(best).parent == staging:  # recorded while the folder was still staged
                self.state.best_model_checkpoint = str(run_dir / Path(best).name)
            rotate_complete_checkpoints(
                run_dir, self.args.save_total_limit, keep=(self.state.best_model_checkpoint,)
            )
        self.accelerator.wait_for_everyone()  # no rank moves on before the checkpoint is published

    def _resume_identity(self) -> dict[str, Any]:
        """This run's :data:`hrpo.checkpoint.RESUME_FIELDS` (what a checkpoint it resumes must match)."""
        model = self.accelerator.unwrap_model(self.model)
        args: HRPOConfig = self.args
        peft_config = getattr(model, "peft_config", None)
        return {
            "base_model": getattr(getattr(model, "config", None), "_name_or_path", None),
            "hidden_size": model.get_input_embeddings().embedding_dim,
            "lora_r": peft_config[model.active_adapter].r if peft_config else None,
            "hybrid": bool(args.hybrid),
            "delimiter": args.decoding.delimiter,
            "world_size": args.world_size,
        }

    def _load_from_checkpoint(self, resume_from_checkpoint: str, model=None) -> None:
        super()._load_from_checkpoint(resume_from_checkpoint, model)
        # DeepSpeed restores the whole engine (gate included); otherwise only the adapter was loaded.
        if self.gate is not None and not self.is_deepspeed_enabled:
            saved = load_gate(resume_from_checkpoint, hidden_size=self.gate.hidden_size)
            self.gate.load_state_dict(saved.state_dict())

    def train(self, resume_from_checkpoint: str | bool | None = None, **kwargs: Any):
        """Trainer.train; ``resume_from_checkpoint="latest"`` (or True) picks the newest COMPLETE checkpoint, an
        explicit folder must be complete, and either must match this run's setup (checked before any weights
        load: :func:`hrpo.checkpoint.check_resume_compatible`)."""
        if resume_from_checkpoint == "latest" or resume_from_checkpoint is True:
            resume_from_checkpoint = latest_complete(self.args.output_dir)
            if resume_from_checkpoint is None:
                raise IncompleteCheckpointError(
                    f"resume_from_checkpoint=latest but {self.args.output_dir} holds no complete checkpoint"
                )
        elif resume_from_checkpoint:
            check_checkpoint_complete(resume_from_checkpoint)
        if resume_from_checkpoint:
            check_resume_compatible(resume_from_checkpoint, self._resume_identity())
            if self.args.should_save:
                print(f"hrpo: resuming from {resume_from_checkpoint}", flush=True)
        return super().train(resume_from_checkpoint=resume_from_checkpoint, **kwargs)


def _check_completions(rollout: Rollout, completion_ids: torch.Tensor) -> None:
    """The batch TRL built from a rollout holds that rollout's completions, row by row (else raise)."""
    rows, width = completion_ids.shape
    if rollout.completion_ids.shape[0] != rows:
        raise HandOffError(
            f"rollout: {rollout.completion_ids.shape[0]} rows decoded but TRL's batch has {rows}"
        )
    mask = _fit_columns(rollout.completion_mask, width).bool().to(completion_ids.device)
    decoded = _fit_columns(rollout.completion_ids, width).to(completion_ids.device)
    if not torch.equal(decoded[mask], completion_ids[mask]):
        raise HandOffError("rollout: TRL's batch holds other completion tokens than the rollout decoded")
