"""Run configuration: :class:`HRPOConfig` (TRL's ``GRPOConfig`` + what HRPO needs) and the model/LoRA config.

> Parameters that HRPO adds: ``r_min``, ``r_max``, ``gate_c`` (gate init and exponent), ``delimiter``,
  ``hybrid`` (off = plain GRPO through the same code path), ``gate_learning_rate``, ``lambda_learning_rate``,
  ``loss_temperature`` (temperature of the log-probs in the loss and KL; 1.0 = raw logits, as the authors).
  The latent top-k is TRL's ``top_k``: the latent is built from the exact distribution tokens are sampled from.

> Defaults that differ from TRL's follow the paper (spec 3.3, Table 5 lengths for GSM8K): beta 0.005, per-sequence
  loss (``loss_type="grpo"``), group-std advantage scaling, temperature 0.5, top-k 50 (the released code's
  effective value), LoRA lr 5e-6 / gate 1e-4 / Lambda 1e-3, AdamW (0.9, 0.99), weight decay 0.1, cosine with 10 %
  warmup, gradient clipping 0.1, 512/512 prompt/completion tokens, G = 4; the loss as the authors ran it: raw-logit
  log-probs (``loss_temperature=1.0``) and the plain k3 KL (``use_bias_correction_kl=False``).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from trl import GRPOConfig, ModelConfig

# All seven projections, as the authors' code (the paper's Table 4 lists only query/key/value/dense).
DEFAULT_LORA_TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


@dataclass
class HRPOConfig(GRPOConfig):
    """``GRPOConfig`` with HRPO's gate, delimiter and per-group learning rates; paper defaults."""

    # --- HRPO ---
    hybrid: bool = field(
        default=True,
        metadata={
            "help": "Feed gated hybrid (token + latent) embeddings while thinking. False trains plain GRPO "
            "through the same code path (the paper's baseline)."
        },
    )
    r_min: float = field(
        default=0.99,
        metadata={
            "help": "Lower end of the Lambda init: sigmoid(Lambda)^c ~ U[r_min, r_max]. The main knob "
            "(paper sweeps 0.95/0.98/0.99); smaller = more latent at the start."
        },
    )
    r_max: float = field(default=0.999, metadata={"help": "Upper end of the Lambda init range."})
    gate_c: float = field(
        default=8.0, metadata={"help": "Gate exponent scale c in a = sigmoid(Lambda)^(c*r)."}
    )
    delimiter: str = field(
        default="####",
        metadata={"help": "Answer delimiter: thinking (hybrid inputs) ends once the completion contains it."},
    )
    gate_learning_rate: float = field(
        default=1e-4, metadata={"help": "Peak learning rate of the gate linears W_r, W_i (paper: 1e-4)."}
    )
    lambda_learning_rate: float = field(
        default=1e-3, metadata={"help": "Peak learning rate of Lambda (paper: 1e-3)."}
    )
    gate_checkpoint: str | None = field(
        default=None,
        metadata={"help": "Start from the gate saved in this folder instead of a fresh init."},
    )
    # Declared ``str`` for the command line (HfArgumentParser allows one type per flag); __post_init__ turns a
    # number into a float, so ``config.loss_temperature`` is a float or "sampling".
    loss_temperature: str = field(
        default="1.0",
        metadata={
            "help": "Temperature of the policy and reference log-probs in the loss and KL. 1.0 (default) = "
            "log-softmax of the raw logits, as the authors' loss (tau enters only sampling and the latent); "
            "'sampling' (= temperature) or another number divides the logits, as TRL >= 0.16 does."
        },
    )

    # --- paper defaults that differ from TRL's ---
    learning_rate: float = field(default=5e-6, metadata={"help": "Peak learning rate of the LoRA weights."})
    beta: float = field(
        default=0.005, metadata={"help": "KL coefficient (k3 estimator, reference = adapter off)."}
    )
    use_bias_correction_kl: bool = field(
        default=False,
        metadata={
            "help": "Multiply the KL term by TRL's gradient-carrying importance ratio (TRL's default). False "
            "(default) = the authors' plain k3 estimator exp(ref - logp) - (ref - logp) - 1."
        },
    )
    loss_type: str = field(
        default="grpo", metadata={"help": "TRL loss type; 'grpo' = per-sequence token mean."}
    )
    scale_rewards: str = field(default="group", metadata={"help": "Advantage scaling: group std (paper)."})
    temperature: float = field(
        default=0.5, metadata={"help": "tau: sampling temperature and latent temperature."}
    )
    top_k: int = field(
        default=50,
        metadata={
            "help": "Top-k of the sampling distribution, which is also the latent's p (0 = full softmax as "
            "in the paper's Eq. 3; 50 = the released code's effective value, ~free and compact)."
        },
    )
    num_generations: int = field(
        default=4, metadata={"help": "G, completions per prompt (4 GSM8K/RAG, 8 MATH/MMLU)."}
    )
    max_completion_length: int = field(
        default=512, metadata={"help": "Completion token cap (paper Table 5)."}
    )
    weight_decay: float = field(
        default=0.1,
        metadata={
            "help": "AdamW weight decay on the policy's weights (not biases or norm weights, as HF's "
            "get_decay_parameter_names) and on every gate parameter and Lambda (as the authors)."
        },
    )
    adam_beta2: float = field(default=0.99, metadata={"help": "AdamW beta2 (paper: 0.99)."})
    lr_scheduler_type: str = field(
        default="cosine", metadata={"help": "LR schedule, same multiplier for all groups."}
    )
    warmup_steps: float = field(
        default=0.1, metadata={"help": "Warmup: steps, or a ratio of total steps if < 1."}
    )
    max_grad_norm: float = field(default=0.1, metadata={"help": "Global gradient-norm clip (paper: 0.1)."})
    logging_steps: float = field(default=1, metadata={"help": "Log every N optimizer steps."})
    save_steps: float = field(default=250, metadata={"help": "Checkpoint every N optimizer steps."})
    save_total_limit: int | None = field(default=3, metadata={"help": "Keep at most this many checkpoints."})
    log_completions: bool = field(default=True, metadata={"help": "Log a table of sample completions."})
    num_completions_to_print: int | None = field(default=2, metadata={"help": "Completions shown per log."})

    def __post_init__(self) -> None:
        self.loss_temperature = parse_loss_temperature(self.loss_temperature)
        if self.num_iterations != 1:
            raise ValueError(
                f"num_iterations={self.num_iterations}: HRPO is strictly on-policy. Each rollout is used for exactly "
                "one gradient step (the stored latents are those of the current policy), so set num_iterations=1."
            )
        if not 0.0 < self.r_min <= self.r_max < 1.0:
            raise ValueError(
                f"need 0 < r_min <= r_max < 1 for the gate init, got r_min={self.r_min}, r_max={self.r_max}"
            )
        if self.hybrid and not self.delimiter:
            raise ValueError("hybrid=True needs a non-empty delimiter (the paper's '####')")
        if self.top_k < 0 or self.temperature <= 0:
            raise ValueError(
                f"need top_k >= 0 and temperature > 0, got top_k={self.top_k}, tau={self.temperature}"
            )
        if self.use_vllm:
            raise ValueError(
                "use_vllm=True is not supported: vLLM cannot feed per-step hybrid embeddings back"
            )
        if self.min_p is not None or self.repetition_penalty != 1.0:
            raise ValueError("min_p and repetition_penalty are not supported by the hybrid decode loop")
        self._check_groups()
        super().__post_init__()
        self._check_dense_latents_under_zero3()
        if self.gradient_accumulation_steps % self.steps_per_generation != 0:
            raise ValueError(
                f"steps_per_generation={self.steps_per_generation} does not divide gradient_accumulation_steps="
                f"{self.gradient_accumulation_steps}: some rollouts would be trained on after the policy moved, but "
                "HRPO is on-policy. Leave steps_per_generation/generation_batch_size unset."
            )

    @property
    def effective_loss_temperature(self) -> float:
        """The number the loss divides the logits by (``temperature`` when ``loss_temperature="sampling"``)."""
        return self.temperature if self.loss_temperature == "sampling" else float(self.loss_temperature)

    def _check_dense_latents_under_zero3(self) -> None:
        """Dense latents (top_k=0) read the whole embedding matrix, which ZeRO-3 keeps partitioned."""
        if not self.hybrid or self.top_k != 0 or self.ds3_gather_for_generation:
            return
        hf_ds = getattr(self, "hf_deepspeed_config", None)
        zero3 = bool(hf_ds is not None and hf_ds.is_zero3()) or (
            os.environ.get("ACCELERATE_USE_DEEPSPEED", "").lower() == "true"
            and os.environ.get("ACCELERATE_DEEPSPEED_ZERO_STAGE") == "3"
        )
        if zero3:
            raise ValueError(
                "top_k=0 (dense latents, p @ E over the full vocabulary) with DeepSpeed ZeRO-3 and "
                "ds3_gather_for_generation=False is not supported: the rollout would read a partitioned (empty) "
                "embedding matrix. Set ds3_gather_for_generation=True, or top_k > 0 (the default 50 stores sparse "
                "latents and calls the embedding module, which ZeRO-3 gathers)."
            )

    def _check_groups(self) -> None:
        """Every generation batch must hold whole prompt groups; say which knob to turn if not."""
        if self.generation_batch_size is not None or self.steps_per_generation is not None:
            return  # TRL checks these explicit settings itself
        world = int(os.environ.get("WORLD_SIZE", "1"))
        completions = self.per_device_train_batch_size * world * self.gradient_accumulation_steps
        if completions % self.num_generations != 0:
            raise ValueError(
                f"an optimizer step holds per_device_train_batch_size ({self.per_device_train_batch_size}, counted in "
                f"completions, not prompts) x processes ({world}) x gradient_accumulation_steps "
                f"({self.gradient_accumulation_steps}) = {completions} completions, which is not a multiple of "
                f"num_generations ({self.num_generations}). Change per_device_train_batch_size or "
                "gradient_accumulation_steps so that the product is a multiple of num_generations."
            )


def parse_loss_temperature(value: float | str) -> float | str:
    """``"sampling"`` or a positive float (numbers may come as strings from the command line / YAML)."""
    if isinstance(value, str) and value.strip().lower() == "sampling":
        return "sampling"
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ValueError(
            f"loss_temperature={value!r}: use a positive number (1.0 = raw logits, the authors' loss) or "
            "'sampling' (the sampling temperature, TRL's behaviour)"
        ) from None
    if not number > 0:
        raise ValueError(f"loss_temperature must be > 0 (1.0 = raw logits), got {value!r}")
    return number


@dataclass
class HRPOModelConfig(ModelConfig):
    """TRL's ``ModelConfig`` with the paper's LoRA defaults (r 32, alpha 64, dropout 0, all projections)."""

    use_peft: bool = field(
        default=True, metadata={"help": "Train a LoRA adapter (paper) instead of all weights."}
    )
    lora_r: int = field(default=32, metadata={"help": "LoRA rank (paper: 32)."})
    lora_alpha: int = field(default=64, metadata={"help": "LoRA alpha (paper: 64 = 2 x rank)."})
    lora_dropout: float = field(default=0.0, metadata={"help": "LoRA dropout (paper code: 0)."})
    lora_target_modules: list[str] | None = field(
        default_factory=lambda: list(DEFAULT_LORA_TARGETS),
        metadata={"help": "Modules that get LoRA (default: q,k,v,o,gate,up,down projections, as the code)."},
    )
