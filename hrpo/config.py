"""Run configuration: :class:`HRPOConfig` (TRL's ``GRPOConfig`` + what HRPO needs) and the model/LoRA config.

> Parameters that HRPO adds: ``r_min``, ``r_max``, ``gate_c`` (gate init and exponent), ``delimiter``,
  ``hybrid`` (off = plain GRPO through the same code path), ``gate_learning_rate``, ``lambda_learning_rate``,
  ``loss_temperature`` (temperature of the log-probs in the loss and KL; 1.0 = raw logits, as the authors),
  ``length_buckets`` (speed only: the training forwards skip all-padding columns).
  The latent top-k is TRL's ``top_k``: the latent is built from the exact distribution tokens are sampled from.

> Defaults that differ from TRL's follow the paper (spec 3.3, Table 5 lengths for GSM8K): beta 0.005, per-sequence
  loss (``loss_type="grpo"``), group-std advantage scaling, temperature 0.5, top-k 50 (the released code's
  effective value), LoRA lr 5e-6 / gate 1e-4 / Lambda 1e-3, AdamW (0.9, 0.99), weight decay 0.1, cosine with 10 %
  warmup, gradient clipping 0.1, 512/512 prompt/completion tokens, G = 4; the loss as the authors ran it: raw-logit
  log-probs (``loss_temperature=1.0``) and the plain k3 KL (``use_bias_correction_kl=False``).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, fields
from typing import Any

from trl import GRPOConfig, ModelConfig

from hrpo.decoding import DecodingSettings
from hrpo.gate import GateConfig

# All seven projections, as the authors' code (the paper's Table 4 lists only query/key/value/dense).
DEFAULT_LORA_TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]

_VLLM = "rollouts come from HRPO's hybrid decode loop (vLLM cannot feed per-step hybrid embeddings back)"
_GENERATE = "rollouts come from HRPO's hybrid decode loop, not transformers' generate"
_LOOP_KNOBS = "the hybrid decode loop takes only temperature, top_k, top_p and max_completion_length"

# GRPOConfig / TrainingArguments fields that HRPOTrainer's overrides would silently ignore or break: the values
# accepted (the defaults) and what to do instead. HRPOConfig refuses any other value, naming the field.
# tests/test_contracts.py classifies every GRPOConfig field as handled / rejected (this table) / irrelevant.
REJECTED_FIELDS: dict[str, tuple[tuple[Any, ...], str]] = {
    "use_vllm": ((False,), f"{_VLLM}; leave it off"),
    **{
        f.name: ((f.default,), f"{_VLLM}; the vllm_* settings have no effect, leave them at their defaults")
        for f in fields(GRPOConfig)
        if f.name.startswith("vllm_")
    },
    "min_p": (
        (None,),
        f"min_p and repetition_penalty are not supported by the hybrid decode loop ({_LOOP_KNOBS})",
    ),
    "repetition_penalty": (
        (1.0,),
        f"min_p and repetition_penalty are not supported by the hybrid decode loop ({_LOOP_KNOBS})",
    ),
    "generation_kwargs": ((None,), f"{_LOOP_KNOBS}; set those fields instead"),
    "cache_implementation": ((None,), "the hybrid decode loop keeps its own KV cache; leave it unset"),
    "use_transformers_continuous_batching": ((False,), f"{_GENERATE}; leave it off"),
    "transformers_continuous_batching_config": ((None,), f"{_GENERATE}; leave it unset"),
    "use_transformers_paged": ((False,), f"{_GENERATE}; leave it off"),
    "pad_to_multiple_of": (
        ("auto", None),
        "HRPO pads each rollout batch to its own lengths (the stored thinking masks and latents are aligned to "
        "them); leave it unset",
    ),
    "ds3_gather_for_generation": (
        (True,),
        "under DeepSpeed ZeRO-3 the hybrid decode loop needs the gathered weights: without them every forward is "
        "a collective, but each rank stops its loop when its own rows finish, so the ranks fall out of lockstep "
        "and hang (and dense latents, top_k=0, would read a partitioned embedding matrix). Set "
        "ds3_gather_for_generation=True (the default)",
    ),
    "fsdp": (
        (None, "", []),
        "HRPOTrainer runs on one device, DDP or DeepSpeed ZeRO-2/3 (ds_configs/); the rollout gathers sharded "
        "weights through DeepSpeed only. Use a DeepSpeed config instead of FSDP",
    ),
    "fsdp_config": ((None, {}), "FSDP is not supported (see fsdp); use a DeepSpeed config instead"),
    "parallelism_config": (
        (None,),
        "context/tensor parallelism splits the sequences the hybrid inputs are rebuilt over; leave it unset",
    ),
    "use_liger_kernel": (
        (False,),
        "Liger's kernels replace the model forward that carries HRPO's loss head; leave it off",
    ),
    "off_policy_mask_threshold": (
        (None,),
        "HRPO is on-policy (num_iterations=1, no vLLM): the mask would compare the loss log-probs with themselves "
        "and never trigger; leave it unset",
    ),
    "router_aux_loss_coef": ((None, 0.0), "HRPO's loss head does not compute the MoE router aux loss"),
    "max_tool_calling_iterations": ((None,), "HRPOTrainer supports text-only prompts without tools"),
}


def check_unsupported_fields(config: Any, resolved: bool = False) -> None:
    """Raise ``ValueError`` naming the first field of :data:`REJECTED_FIELDS` set to a value HRPO would ignore.

    ``resolved``: the check after ``TrainingArguments.__post_init__`` (which turns e.g. ``"auto"`` into a value).
    """
    for name, (accepted, advice) in REJECTED_FIELDS.items():
        value = getattr(config, name)
        if not any(value == ok and isinstance(value, bool) == isinstance(ok, bool) for ok in accepted):
            when = " (as resolved by TrainingArguments)" if resolved else ""
            raise ValueError(f"{name}={value!r}{when} is not supported by HRPOTrainer: {advice}.")


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
    length_buckets: bool = field(
        default=True,
        metadata={
            "help": "Score the policy and reference log-probs in micro-batches of rows sorted by length, each cut "
            "to the columns its rows use (no all-padding columns). Speed only: the same number of forwards as "
            "TRL's fixed chunks and the same log-probs, loss and gradients up to float rounding. False = TRL's "
            "fixed chunks over the full padded batch."
        },
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
        # Each value is checked once, by the class that owns its rule: the gate init range by GateConfig, the
        # decoding values by the decode loop's configs (built from the one DecodingSettings of this run).
        GateConfig(hidden_size=1, c=self.gate_c, r_min=self.r_min, r_max=self.r_max)
        self.decoding.decode_config(max_new_tokens=self.max_completion_length, hybrid=self.hybrid)
        check_unsupported_fields(self)
        self._check_groups()
        super().__post_init__()
        check_unsupported_fields(self, resolved=True)  # values TrainingArguments/GRPOConfig resolve ("auto")
        if self.gradient_accumulation_steps % self.steps_per_generation != 0:
            raise ValueError(
                f"steps_per_generation={self.steps_per_generation} does not divide gradient_accumulation_steps="
                f"{self.gradient_accumulation_steps}: some rollouts would be trained on after the policy moved, but "
                "HRPO is on-policy. Leave steps_per_generation/generation_batch_size unset."
            )

    @property
    def decoding(self) -> DecodingSettings:
        """The run's decoding settings (delimiter, tau, top-k, top-p): what rollouts use and checkpoints record."""
        return DecodingSettings.from_config(self)

    @property
    def effective_loss_temperature(self) -> float:
        """The number the loss divides the logits by (``temperature`` when ``loss_temperature="sampling"``)."""
        return self.temperature if self.loss_temperature == "sampling" else float(self.loss_temperature)

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
