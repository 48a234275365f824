"""Contracts with the libraries HRPO hooks into: a version bump that changes them fails here, in one place.

* Every private (or overridden) method/function of TRL, transformers, lm-eval and DeepSpeed that HRPO overrides or
  calls has its signature pinned (``inspect.signature`` against the string recorded for the versions in
  ``constraints.txt``); the hook order HRPOTrainer's hand-offs rely on is checked in TRL's source.
* Every ``GRPOConfig`` field (``dataclasses.fields``) is classified as handled (it reaches a seam HRPO overrides
  or depends on -- rollout, loss forward, optimizer, checkpoints, devices -- and HRPO honours it), rejected
  (``hrpo.config.REJECTED_FIELDS``: refused by name unless at its default) or irrelevant (read only by inherited
  machinery HRPO does not touch: logging, hub, evaluation scheduling, data loading). A new field fails the test
  until someone decides which it is.

When a bump breaks this test: read the new TRL/transformers/lm-eval code of the method named in the failure,
adapt ``hrpo/trainer.py`` / ``hrpo/lm_eval_adapter.py`` / ``hrpo/config.py`` / ``hrpo/kv_cache.py``, re-record the signature here, and
move the upper bounds in ``pyproject.toml``.
"""

from __future__ import annotations

import dataclasses
import importlib
import inspect

import pytest
from trl import GRPOConfig

from hrpo.config import REJECTED_FIELDS, HRPOConfig

# "module:qualified.name" -> str(inspect.signature(...)) under the pinned versions.
SIGNATURES = {
    "trl.trainer.grpo_trainer:GRPOTrainer._generate_single_turn": "(self, prompt_ids, images, multimodal_fields, num_generations, has_tool_images=False)",
    "trl.trainer.grpo_trainer:GRPOTrainer._generate_and_score_completions": "(self, inputs: list[dict[str, torch.Tensor | typing.Any]]) -> dict[str, torch.Tensor | typing.Any]",
    "trl.trainer.grpo_trainer:GRPOTrainer._compute_loss": "(self, model, inputs)",
    "trl.trainer.grpo_trainer:GRPOTrainer._get_per_token_logps_and_entropies": "(self, model, input_ids, attention_mask, logits_to_keep, batch_size=None, compute_entropy=False, compute_aux_loss=False, pixel_values=None, image_grid_thw=None, num_images=None, pixel_attention_mask=None, spatial_shapes=None, num_tiles=None, image_sizes=None, token_type_ids=None, mm_token_type_ids=None, image_position_ids=None) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]",
    "trl.trainer.grpo_trainer:GRPOTrainer._save_checkpoint": "(self, model, trial)",
    "transformers.trainer:Trainer._load_from_checkpoint": "(self, resume_from_checkpoint: str, model: torch.nn.modules.module.Module | None = None) -> None",
    "transformers.trainer:Trainer._get_output_dir": "(self, trial: 'optuna.Trial | dict[str, Any] | None') -> str",
    "transformers.trainer:Trainer._save_rng_state": "(self, output_dir: str) -> None",
    "transformers.trainer:Trainer.save_model": "(self, output_dir: str | None = None, _internal_call: bool = False) -> None",
    "transformers.trainer:Trainer.create_optimizer": "(self, model=None) -> torch.optim.optimizer.Optimizer",
    "transformers.trainer:Trainer.train": "(self, resume_from_checkpoint: str | bool | None = None, trial: 'optuna.Trial | dict[str, Any] | None' = None, ignore_keys_for_eval: list[str] | None = None) -> transformers.trainer_utils.TrainOutput",
    "transformers.trainer:Trainer.get_decay_parameter_names": "(self, model: torch.nn.modules.module.Module) -> list[str]",
    "transformers.trainer:Trainer.get_optimizer_cls_and_kwargs": "(args: transformers.training_args.TrainingArguments, model: transformers.modeling_utils.PreTrainedModel | None = None) -> tuple[typing.Any, typing.Any]",
    "trl.models:unwrap_model_for_generation": "(model: 'DistributedDataParallel | DeepSpeedEngine', accelerator: 'Accelerator', gather_deepspeed3_params: bool = True, generation_kwargs: dict | None = None, gradient_checkpointing_kwargs: dict | None = None)",
    "trl.extras.profiling:profiling_context": "(trainer: transformers.trainer.Trainer, name: str) -> trl.extras.profiling.ProfilingContext",
    "trl.trainer.utils:pad": "(tensors: list[torch.Tensor], padding_value: int = 0, padding_side: str = 'right', pad_to_multiple_of: int | None = None) -> torch.Tensor",
    "trl.trainer.utils:maybe_gather_lm_head_ctx": "(*params: torch.nn.parameter.Parameter)",
    "trl.trainer.utils:add_fused_lm_head": "(model: transformers.modeling_utils.PreTrainedModel, temperature: float = 1.0, cast_lm_head_to_fp32: bool = False, outputs: tuple[str, ...] = ('log_probs',)) -> None",
    "trl.kernels:ChunkedLogProbFunction.forward": "(ctx, hidden: 'torch.Tensor', weight: 'torch.Tensor', bias: 'torch.Tensor | None', targets: 'torch.Tensor', temperature: 'float', chunk_size: 'int', final_logit_softcapping: 'float | None' = None, logit_scale: 'float' = 1.0, outputs: 'tuple[str, ...]' = ('entropy', 'log_sum_sq_probs', 'mean_logits', 'is_top1')) -> 'tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None, torch.Tensor | None, torch.Tensor | None]'",
    "trl.trainer.utils:FusedCausalLMOutput": "(loss: torch.Tensor | None = None, log_probs: torch.Tensor | None = None, entropy: torch.Tensor | None = None, log_sum_sq_probs: torch.Tensor | None = None, mean_logits: torch.Tensor | None = None, is_top1: torch.Tensor | None = None, label_mask: torch.Tensor | None = None, aux_loss: torch.Tensor | None = None) -> None",
    "lm_eval.models.huggingface:HFLM.__init__": "(self, pretrained: 'str | transformers.PreTrainedModel', backend: \"Literal['default', 'causal', 'seq2seq']\" = 'default', revision: 'str | None' = 'main', subfolder: 'str' = '', tokenizer: 'str | transformers.PreTrainedTokenizer | transformers.PreTrainedTokenizerFast | None' = None, truncation: 'bool | None' = False, logits_cache: 'bool' = True, max_length: 'int | None' = None, device: 'str | None' = 'cuda', dtype: 'str | torch.dtype | None' = 'auto', softmax_dtype: 'str | torch.dtype | None' = None, mixed_precision_dtype: 'str | torch.dtype | None' = None, batch_size: 'int | str | None' = 1, max_batch_size: 'int | None' = 64, trust_remote_code: 'bool | None' = False, use_fast_tokenizer: 'bool | None' = True, add_bos_token: 'bool | None' = None, prefix_token_id: 'int | None' = None, parallelize: 'bool | None' = False, max_memory_per_gpu: 'int | str | None' = None, max_cpu_memory: 'int | str | None' = None, offload_folder: 'str | os.PathLike | None' = './offload', tp_plan: 'str | dict | None' = None, peft: 'str | None' = None, delta: 'str | None' = None, autogptq: 'bool | str | None' = False, gptqmodel: 'bool | None' = False, gguf_file: 'str | None' = None, think_end_token: 'str | int | None' = None, enable_thinking: 'bool | None' = None, chat_template_args: 'dict[str, Any] | None' = None, **kwargs) -> 'None'",
    "lm_eval.models.huggingface:HFLM._create_model": "(self, pretrained: 'str', revision: 'str | None' = 'main', dtype: 'str | torch.dtype | None' = 'auto', trust_remote_code: 'bool | None' = False, parallelize: 'bool | None' = False, gpus: 'int | None' = None, max_memory_per_gpu: 'int | str | None' = None, max_cpu_memory: 'int | str | None' = None, offload_folder: 'str | None' = './offload', tp_plan: 'str | dict | None' = None, peft: 'str | None' = None, delta: 'str | None' = None, autogptq: 'bool | str | None' = False, gptqmodel: 'bool | None' = False, gguf_file: 'str | None' = None, quantization_config: 'AutoQuantizationConfig | None' = None, subfolder: 'str' = '', **kwargs) -> 'None'",
    "lm_eval.models.huggingface:HFLM._model_generate": "(self, context, max_length: 'int', stop: 'list[str]', **generation_kwargs) -> 'torch.Tensor'",
    "lm_eval.models.huggingface:HFLM.get_model_info": "(self) -> 'dict'",
    "lm_eval.api.model:LM.set_cache_hook": "(self, cache_hook: 'CacheHook') -> None",
    "lm_eval.__main__:cli_evaluate": "() -> None",
    "lm_eval._cli.utils:MergeDictAction.__init__": "(self, option_strings, dest, nargs=None, const=None, default=None, type=None, choices=None, required=False, help=None, metavar=None)",
    "transformers.cache_utils:CacheLayerMixin.__init__": "(self, **kwargs)",
    "transformers.cache_utils:DynamicLayer.lazy_initialization": "(self, key_states: torch.Tensor, value_states: torch.Tensor) -> None",
    "transformers.cache_utils:DynamicLayer.update": "(self, key_states: torch.Tensor, value_states: torch.Tensor, *args, **kwargs) -> tuple[torch.Tensor, torch.Tensor]",
    "transformers.cache_utils:DynamicLayer.batch_select_indices": "(self, indices: torch.Tensor) -> None",
    "transformers.cache_utils:DynamicLayer.batch_repeat_interleave": "(self, repeats: int) -> None",
    "transformers.cache_utils:CacheLayerMixin.reorder_cache": "(self, beam_idx: torch.LongTensor) -> None",
    "transformers.cache_utils:DynamicLayer.crop": "(self, tokens_to_remove: int) -> None",
    "transformers.cache_utils:DynamicLayer.reset": "(self) -> None",
    "transformers.cache_utils:CacheLayerMixin.offload": "(self)",
    "transformers.cache_utils:CacheLayerMixin.prefetch": "(self)",
    "transformers.cache_utils:DynamicCache.__init__": "(self, ddp_cache_data: collections.abc.Iterable[tuple[torch.Tensor | None, ...]] | None = None, config: transformers.configuration_utils.PreTrainedConfig | None = None, offloading: bool = False, offload_only_non_sliding: bool = False)",
    "deepspeed.utils:safe_get_full_fp32_param": "(param)",
    "deepspeed.utils:safe_set_full_fp32_param": "(param, value)",
}

# The overrides of HRPOTrainer / HRPOLM that replace a library method (each must be pinned above).
OVERRIDES = {
    "hrpo.trainer:HRPOTrainer": ("trl.trainer.grpo_trainer:GRPOTrainer", "transformers.trainer:Trainer"),
    "hrpo.lm_eval_adapter:HRPOLM": ("lm_eval.models.huggingface:HFLM",),
    "hrpo.kv_cache:PreallocatedLayer": ("transformers.cache_utils:DynamicLayer",),
}


def resolve(name: str):
    module, qualname = name.split(":")
    obj = importlib.import_module(module)
    for part in qualname.split("."):
        obj = getattr(obj, part)
    return obj


@pytest.mark.parametrize("name", sorted(SIGNATURES))
def test_library_signature_is_the_recorded_one(name):
    assert str(inspect.signature(resolve(name))) == SIGNATURES[name], (
        f"{name} changed its signature: re-read it and adapt HRPO's override/call before re-recording it"
    )


@pytest.mark.parametrize("subclass", sorted(OVERRIDES))
def test_every_override_is_pinned(subclass):
    cls = resolve(subclass)
    parents = [resolve(p) for p in OVERRIDES[subclass]]
    missing = []
    for name, value in vars(cls).items():
        if not callable(value) or (cls.__name__ == "HRPOTrainer" and name == "__init__"):
            continue  # HRPOTrainer.__init__ passes every argument through to GRPOTrainer's
        base = next((b for parent in parents for b in parent.__mro__ if name in vars(b)), None)
        if base is not None and f"{base.__module__}:{base.__qualname__}.{name}" not in SIGNATURES:
            missing.append(f"{base.__module__}:{base.__qualname__}.{name}")
    assert not missing, f"{subclass} overrides {missing} without a pinned signature in SIGNATURES"


def test_the_hook_order_the_hand_offs_rely_on():
    """HRPOTrainer's hand-offs: rollout _generate_single_turn -> _generate_and_score_completions (through
    _generate); replay _compute_loss -> exactly one _get_per_token_logps_and_entropies (the policy forward)."""
    from trl import GRPOTrainer

    assert "self._generate(" in inspect.getsource(GRPOTrainer._generate_and_score_completions)
    assert "self._generate_single_turn(" in inspect.getsource(GRPOTrainer._generate)
    assert inspect.getsource(GRPOTrainer._compute_loss).count("self._get_per_token_logps_and_entropies(") == 1
    init = inspect.getsource(GRPOTrainer.__init__)
    for attribute in ("self._metrics", "self.eos_token_ids", "self._tokenizer"):  # read by HRPOTrainer
        assert attribute in init or attribute in inspect.getsource(GRPOTrainer), attribute


# ---------------------------------------------------------------------------------------------- GRPOConfig fields

HANDLED = {
    # rollout (hrpo.generation through HRPOTrainer._generate_single_turn)
    "num_generations", "num_generations_eval", "max_completion_length", "temperature", "top_p", "top_k",
    "generation_batch_size", "steps_per_generation", "chat_template_kwargs", "mask_truncated_completions",
    "gradient_checkpointing", "gradient_checkpointing_kwargs", "activation_checkpointing",
    "activation_checkpointing_kwargs", "seed",
    # loss (TRL's loss over HRPO's loss head and hybrid forward)
    "beta", "num_iterations", "epsilon", "delta", "epsilon_high", "sapo_temperature_neg", "sapo_temperature_pos",
    "vespo_k_pos", "vespo_lambda_pos", "vespo_k_neg", "vespo_lambda_neg", "importance_sampling_level",
    "loss_type", "scale_rewards", "reward_weights", "multi_objective_aggregation", "top_entropy_quantile",
    "entropy_coef", "use_adaptive_entropy", "entropy_coef_min", "entropy_coef_max", "entropy_coef_delta",
    "entropy_target", "use_bias_correction_kl", "cast_lm_head_to_fp32", "sync_ref_model", "ref_model_mixup_alpha",
    "ref_model_sync_steps", "disable_dropout", "model_init_kwargs", "trust_remote_code",
    # optimizer (HRPOTrainer.create_optimizer / parameter_groups) and schedule
    "learning_rate", "weight_decay", "optim", "optim_args", "adam_beta1", "adam_beta2", "adam_epsilon",
    "optim_target_modules", "lr_scheduler_type", "lr_scheduler_kwargs", "warmup_steps", "max_grad_norm",
    "gradient_accumulation_steps", "per_device_train_batch_size", "max_steps", "num_train_epochs",
    # precision, devices, distribution (gate fp32 masters, ZeRO-3 gathering, DDP graph)
    "bf16", "fp16", "tf32", "deepspeed", "use_cpu", "local_rank", "accelerator_config", "ddp_backend",
    "ddp_timeout", "ddp_find_unused_parameters", "ddp_bucket_cap_mb", "ddp_broadcast_buffers", "ddp_static_graph",
    # checkpoints (HRPOTrainer.save_model / _save_checkpoint / _load_from_checkpoint / train)
    "output_dir", "save_strategy", "save_steps", "save_total_limit", "save_only_model", "save_on_each_node",
    "resume_from_checkpoint", "enable_jit_checkpoint", "restore_callback_states_from_checkpoint",
    "ignore_data_skip",
}  # fmt: skip

IRRELEVANT = {
    # logging and reporting
    "log_completions", "log_multimodal", "num_completions_to_print", "log_unique_prompts",
    "log_completions_hub_repo", "logging_strategy", "logging_steps", "logging_first_step", "log_on_each_node",
    "logging_nan_inf_filter", "include_num_input_tokens_seen", "log_level", "log_level_replica", "disable_tqdm",
    "report_to", "run_name", "project", "trackio_space_id", "trackio_bucket_id", "trackio_static_space_id",
    "skip_memory_metrics", "debug",
    # hub
    "push_to_hub", "hub_token", "hub_private_repo", "hub_model_id", "hub_strategy", "hub_always_push",
    "hub_revision",
    # evaluation scheduling and metrics
    "eval_strategy", "eval_steps", "eval_delay", "per_device_eval_batch_size", "prediction_loss_only",
    "eval_on_start", "eval_do_concat_batches", "eval_use_gather_object", "eval_accumulation_steps",
    "include_for_metrics", "batch_eval_metrics", "bf16_full_eval", "fp16_full_eval", "load_best_model_at_end",
    "metric_for_best_model", "greater_is_better", "do_train", "do_eval", "do_predict",
    # data loading and sampling (TRL's repeat sampler, untouched)
    "shuffle_dataset", "dataloader_drop_last", "dataloader_num_workers", "dataloader_pin_memory",
    "dataloader_persistent_workers", "dataloader_prefetch_factor", "dataloader_multiprocessing_context",
    "dataloader_in_order", "remove_unused_columns", "label_names", "train_sampling_strategy", "length_column_name",
    "data_seed", "full_determinism",
    # Trainer features that never reach HRPO's seams (supervised losses, compile, memory knobs)
    "label_smoothing_factor", "neftune_noise_alpha", "average_tokens_across_devices", "torch_compile",
    "torch_compile_backend", "torch_compile_mode", "liger_kernel_config", "use_cache", "torch_empty_cache_steps",
    "auto_find_batch_size",
}  # fmt: skip


def test_every_grpo_config_field_is_classified_once():
    names = [f.name for f in dataclasses.fields(GRPOConfig)]
    rejected = set(REJECTED_FIELDS)
    groups = {"handled": HANDLED, "rejected": rejected, "irrelevant": IRRELEVANT}
    for a, b in [("handled", "rejected"), ("handled", "irrelevant"), ("rejected", "irrelevant")]:
        assert not groups[a] & groups[b], f"in both {a} and {b}: {sorted(groups[a] & groups[b])}"
    unclassified = sorted(set(names) - HANDLED - rejected - IRRELEVANT)
    assert not unclassified, (
        f"GRPOConfig fields nobody classified (new in this TRL/transformers?): {unclassified}"
    )
    stale = sorted((HANDLED | rejected | IRRELEVANT) - set(names))
    assert not stale, f"classified fields GRPOConfig no longer has: {stale}"


def _another_value(default):
    if isinstance(default, bool):
        return not default
    if isinstance(default, (int, float)):
        return default + 1
    if isinstance(default, str):
        return default + "_other"
    return 1  # a None default


@pytest.mark.parametrize("name", sorted(REJECTED_FIELDS))
def test_every_rejected_field_is_refused_by_name(name, tmp_path):
    accepted = REJECTED_FIELDS[name][0]
    value = _another_value(accepted[-1] if accepted[-1] is not None else accepted[0])
    settings = {"output_dir": str(tmp_path), "use_cpu": True, "per_device_train_batch_size": 4, name: value}
    with pytest.raises(ValueError, match=rf"^{name}=.* is not supported by HRPOTrainer: "):
        HRPOConfig(**settings)
    for ok in accepted:  # the accepted values pass (the defaults)
        if ok is not None and not isinstance(ok, (list, dict)):
            HRPOConfig(**{**settings, name: ok})


# Distributions whose private APIs hrpo uses (SIGNATURES above): pyproject.toml must bound them from above.
PRIVATE_API_DISTRIBUTIONS = ("transformers", "trl", "lm-eval", "deepspeed")


def test_private_api_dependencies_have_upper_bounds_that_admit_the_tested_versions():
    import tomllib
    from importlib.metadata import version
    from pathlib import Path

    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name

    pyproject = tomllib.loads((Path(__file__).parents[1] / "pyproject.toml").read_text())
    requirements = {
        canonicalize_name(r.name): r for r in map(Requirement, pyproject["project"]["dependencies"])
    }
    for name in PRIVATE_API_DISTRIBUTIONS:
        requirement = requirements[canonicalize_name(name)]
        assert any(spec.operator in ("<", "<=", "==", "~=") for spec in requirement.specifier), (
            f"{name} has no upper bound in pyproject.toml but hrpo uses its private API"
        )
        assert requirement.specifier.contains(version(name)), (
            f"installed {name} {version(name)} outside {requirement}"
        )


def test_checkpoint_saves_go_through_get_output_dir():
    """HRPOTrainer stages a checkpoint by overriding _get_output_dir during _save_checkpoint (atomic saves): the
    folder, the rotation and the RNG state (where the kill -9 test pauses a save) must all derive from it."""
    from transformers import Trainer

    source = inspect.getsource(Trainer._save_checkpoint)
    for needle in ("run_dir = self._get_output_dir(trial=trial)", "output_dir = os.path.join(run_dir, ",
                   "output_dir=run_dir", "self._save_rng_state(output_dir)"):  # fmt: skip
        assert needle in source, needle
