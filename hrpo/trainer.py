"""HRPOTrainer: TRL's ``GRPOTrainer`` with hybrid rollouts and a hybrid policy forward.

What differs from ``GRPOTrainer`` (everything else -- sampling groups, rewards, advantages, the GRPO loss, KL,
logging, DeepSpeed/accelerate plumbing, checkpoints -- is inherited):

1. ``_generate_single_turn``: rollouts come from :func:`hrpo.generation.hybrid_generate` (weights gathered under
   ZeRO-3 by TRL's ``unwrap_model_for_generation``); the thinking mask and compact latents of each rollout are
   kept and attached to the batch in ``_generate_and_score_completions``, where they survive TRL's shuffle/split.
2. ``_get_per_token_logps_and_entropies``: every forward gets the rollout's attention mask AND matching position
   ids (TRL passes none, so left-padded rows would be shifted). Inside ``_compute_loss`` the hybrid inputs are
   rebuilt from the stored latents with the CURRENT gate (gradients to the gate); every other call -- the
   reference log-probs with the LoRA adapter disabled -- uses plain token inputs, as the paper does.
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
   refuses a checkpoint without it.

``hybrid=False`` skips the gate entirely and trains plain GRPO through the same loop and loss.
"""

from __future__ import annotations

import functools
import json
import os
import re
import types
from contextlib import nullcontext
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from accelerate.utils import is_peft_model
from transformers.integrations.deepspeed import is_deepspeed_zero3_enabled
from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR
from trl import GRPOTrainer
from trl.extras.profiling import profiling_context
from trl.kernels import ChunkedLogProbFunction
from trl.models import unwrap_model_for_generation
from trl.trainer.utils import FusedCausalLMOutput, maybe_gather_lm_head_ctx, pad

from hrpo.checkpoint import load_gate, save_gate
from hrpo.config import HRPOConfig
from hrpo.gate import GateConfig, ThinkingGate
from hrpo.generation import (
    DecodeConfig,
    Rollout,
    hybrid_generate,
    hybrid_inputs_embeds,
    position_ids_from_mask,
)
from hrpo.latent import SamplingConfig

COMPLETE_MARKER = "hrpo_checkpoint_complete.json"
RUN_CONFIG = "hrpo_run.json"
_REPLAY_KEYS = ("thinking_mask", "latent_ids", "latent_probs", "latents")


class IncompleteCheckpointError(ValueError):
    """A checkpoint folder was not completely written (the run died while saving it)."""


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


class HRPOTrainer(GRPOTrainer):
    """GRPO with hybrid latent reasoning (see module docstring for the overridden seams)."""

    def __init__(self, *args: Any, gate: ThinkingGate | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        config: HRPOConfig = self.args
        dense = config.hybrid and config.top_k == 0 and not config.ds3_gather_for_generation
        if dense and is_deepspeed_zero3_enabled():
            raise ValueError(
                "top_k=0 (dense latents) under DeepSpeed ZeRO-3 needs ds3_gather_for_generation=True: the "
                "rollout reads the whole embedding matrix, which ZeRO-3 keeps partitioned"
            )
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
        self._replay: dict[str, torch.Tensor] | None = None
        self._replay_gap: list[torch.Tensor] = []
        self._last_rollout: Rollout | None = None

    # ------------------------------------------------------------------ rollouts
    def _decode_config(self) -> DecodeConfig:
        args: HRPOConfig = self.args
        return DecodeConfig(
            max_new_tokens=args.max_completion_length,
            sampling=SamplingConfig(temperature=args.temperature, top_k=args.top_k, top_p=args.top_p),
            hybrid=args.hybrid,
            delimiter=args.delimiter,
            eos_token_ids=tuple(self.eos_token_ids),
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
        self._last_rollout = rollout
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
        output = super()._generate_and_score_completions(inputs)
        rollout, self._last_rollout = self._last_rollout, None
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
        if self.gate is not None:
            self._replay = {k: inputs[k] for k in (*_REPLAY_KEYS, "sampling_per_token_logps") if k in inputs}
            self._replay["completion_mask"] = inputs["completion_mask"]
        self._replay_gap = []
        # The rollout's log-probs are at the sampling temperature and serve only the replay check. TRL would use
        # them for off-policy masking against the loss log-probs (another temperature by default); HRPO is
        # on-policy (num_iterations=1, no vLLM), so TRL's fallback -- the detached current log-probs -- is exact.
        inputs = {k: v for k, v in inputs.items() if k != "sampling_per_token_logps"}
        try:
            loss = super()._compute_loss(model, inputs)
        finally:
            self._replay = None
        if self._replay_gap:
            # Max |log p(loss forward) - log p(rollout)|: ~1e-6 in fp32 when replay is exact (on-policy).
            gap = self.accelerator.gather(torch.stack(self._replay_gap).max()[None]).max()
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
        replay = self._replay
        batch_size = batch_size or input_ids.size(0)
        logps, entropies, aux = [], [], []
        for start in range(0, input_ids.size(0), batch_size):
            ids = input_ids[start : start + batch_size]
            mask = attention_mask[start : start + batch_size]
            model_inputs: dict[str, Any] = {
                "attention_mask": mask,
                "position_ids": position_ids_from_mask(mask),
            }
            check_replay = bool(replay) and "sampling_per_token_logps" in replay
            if replay:
                thinking = replay["thinking_mask"][start : start + batch_size]
                gate = unwrapped.hrpo_gate
                embeds, _, _ = hybrid_inputs_embeds(
                    unwrapped,
                    gate,
                    ids,
                    thinking,
                    *(
                        replay[k][start : start + batch_size] if k in replay else None
                        for k in _REPLAY_KEYS[1:]
                    ),
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
            labels[:, :-logits_to_keep] = -100
            with self.accelerator.autocast():
                outputs = model(**model_inputs, labels=labels, fused_lm_head=True)
            chunk_logps = outputs.log_probs[:, -logits_to_keep:]
            logps.append(chunk_logps)
            if check_replay:
                # Like with like: this forward's log-probs at the sampling temperature vs the rollout's.
                replayed = outputs.sampling_log_probs[:, -logits_to_keep:]
                rollout_logps = replay["sampling_per_token_logps"][start : start + batch_size]
                valid = replay["completion_mask"][start : start + batch_size].bool()
                gap = (replayed.float() - rollout_logps).abs().masked_fill(~valid, 0.0)
                self._replay_gap.append(gap.max())
            if compute_entropy:
                entropies.append(outputs.entropy[:, -logits_to_keep:])
            if compute_aux_loss:
                aux.append(outputs.aux_loss)
        return (
            torch.cat(logps),
            torch.cat(entropies) if compute_entropy else None,
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
                    args: HRPOConfig = self.args
                    decoding = {"delimiter": args.delimiter, "temperature": args.temperature, "top_k": args.top_k,
                                "top_p": args.top_p}  # fmt: skip
                    save_gate(self.gate, output_dir, decoding=decoding)
        if self.args.should_save:
            self._write_run_config(Path(output_dir))

    def _write_run_config(self, folder: Path) -> None:
        model = self.accelerator.unwrap_model(self.model)
        base = getattr(getattr(model, "config", None), "_name_or_path", None)
        run = {
            "base_model": base,
            "hybrid": self.args.hybrid,
            "peft": hasattr(model, "peft_config"),
            "args": {
                k: v
                for k, v in asdict(self.args).items()
                if isinstance(v, (str, int, float, bool, type(None)))
            },
        }
        folder.mkdir(parents=True, exist_ok=True)
        (folder / RUN_CONFIG).write_text(json.dumps(run, indent=2) + "\n")

    def _save_checkpoint(self, model, trial) -> None:
        super()._save_checkpoint(model, trial)
        if self.args.should_save:
            folder = (
                Path(self._get_output_dir(trial=trial)) / f"{PREFIX_CHECKPOINT_DIR}-{self.state.global_step}"
            )
            # Written last: a folder without it was interrupted mid-save and is never resumed from.
            (folder / COMPLETE_MARKER).write_text(json.dumps({"global_step": self.state.global_step}) + "\n")

    def _load_from_checkpoint(self, resume_from_checkpoint: str, model=None) -> None:
        super()._load_from_checkpoint(resume_from_checkpoint, model)
        # DeepSpeed restores the whole engine (gate included); otherwise only the adapter was loaded.
        if self.gate is not None and not self.is_deepspeed_enabled:
            saved = load_gate(resume_from_checkpoint, hidden_size=self.gate.hidden_size)
            self.gate.load_state_dict(saved.state_dict())

    def train(self, resume_from_checkpoint: str | bool | None = None, **kwargs: Any):
        if resume_from_checkpoint == "latest" or resume_from_checkpoint is True:
            resume_from_checkpoint = latest_complete_checkpoint(self.args.output_dir)
            if resume_from_checkpoint is None:
                raise IncompleteCheckpointError(
                    f"resume_from_checkpoint=latest but {self.args.output_dir} holds no complete checkpoint"
                )
        elif resume_from_checkpoint:
            check_checkpoint_complete(resume_from_checkpoint)
        return super().train(resume_from_checkpoint=resume_from_checkpoint, **kwargs)


def check_checkpoint_complete(folder: str | os.PathLike) -> None:
    """Raise :class:`IncompleteCheckpointError` unless ``folder`` is a completely written checkpoint."""
    path = Path(folder)
    if not path.is_dir():
        raise IncompleteCheckpointError(f"checkpoint {path} does not exist")
    if not (path / COMPLETE_MARKER).is_file():
        raise IncompleteCheckpointError(
            f"checkpoint {path} is incomplete ({COMPLETE_MARKER} missing): the run stopped while saving it. Resume "
            "from an earlier checkpoint, or pass --resume_from_checkpoint latest to pick the newest complete one."
        )


def latest_complete_checkpoint(output_dir: str | os.PathLike) -> str | None:
    """The newest ``checkpoint-N`` in ``output_dir`` that was completely written, or None."""
    folder = Path(output_dir)
    if not folder.is_dir():
        return None
    steps = []
    for child in folder.iterdir():
        match = re.fullmatch(rf"{PREFIX_CHECKPOINT_DIR}-(\d+)", child.name)
        if match and (child / COMPLETE_MARKER).is_file():
            steps.append((int(match.group(1)), child))
    return str(max(steps)[1]) if steps else None
