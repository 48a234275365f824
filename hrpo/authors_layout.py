"""Recognising a checkpoint written by the authors' code (Yueeeeeeee/HRPO), from its JSON files and path only.

Their ``hrpo_*.py`` scripts train with forked transformers/unsloth whose ``Qwen2Model`` / ``LlamaModel`` carry the
gate as three submodules, ``thinking_residual_gate_r`` and ``thinking_residual_gate_i`` (``nn.Linear(D, D)``) and
``thinking_residual_Lambda`` (a module holding the ``(D,)`` parameter ``Lambda``; ``a = exp(-c softplus(-Lambda)
r)`` with c = 8, i.e. our ``sigmoid(Lambda)^(c r)``). PEFT saves them as ``modules_to_save`` beside the LoRA
weights, so a checkpoint of theirs is a plain PEFT folder (HF Trainer's ``checkpoint-N``, every 250 steps)::

    experiments/<model>-<task>-group<G>-lora<r>-rmin<r_min>-temp<tau>/checkpoint-<N>/
        adapter_config.json        # "modules_to_save": ["thinking_residual_gate_r", ..._gate_i, ..._Lambda]
        adapter_model.safetensors  # base_model.model.model.layers.*.lora_A/B.weight (bf16) and
                                   # base_model.model.model.thinking_residual_gate_r.weight (D, D) / .bias (D,)
                                   # (bf16: unsloth casts the gate linears to the embedding dtype),
                                   # ..._gate_i.weight / .bias, ..._Lambda.Lambda (D,) (fp32)
        trainer_state.json, training_args.bin, optimizer.pt, scheduler.pt, rng_state.pth, tokenizer files

Their ``eval_*.py`` read the base model and tau from that path (``Qwen2.5-1.5B-Instruct`` in it, ``-temp0.5``);
:func:`parse_run_path` does the same. No tensors are read here, so :mod:`hrpo.checkpoint` can call
:func:`authors_refusal` while it reads a folder's metadata; the conversion is :mod:`hrpo.authors_checkpoint`.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

AUTHORS_MODULES = ("thinking_residual_gate_r", "thinking_residual_gate_i", "thinking_residual_Lambda")
"""The gate's submodule names in the authors' models (and in their ``modules_to_save``)."""
GATE_KEYS = {
    "thinking_residual_gate_r.weight": "gate_r.weight",
    "thinking_residual_gate_r.bias": "gate_r.bias",
    "thinking_residual_gate_i.weight": "gate_i.weight",
    "thinking_residual_gate_i.bias": "gate_i.bias",
    "thinking_residual_Lambda.Lambda": "Lambda",
}
"""Authors' tensor name (after PEFT's ``base_model.model.model.`` prefix) -> :class:`hrpo.gate.ThinkingGate`'s."""
GATE_C = 8.0
"""``ThinkingResidualLambda.c`` in their modeling files (also our default)."""
KNOWN_BASE_MODELS = (
    "Qwen/Qwen2.5-1.5B-Instruct",
    "Qwen/Qwen2.5-3B-Instruct",
    "meta-llama/Llama-3.2-1B-Instruct",
    "meta-llama/Llama-3.2-3B-Instruct",
)
"""The models their scripts name; ``eval_*.py`` pick the one whose name appears in the checkpoint path."""
ADAPTER_CONFIG = "adapter_config.json"  # PEFT's
ADAPTER_WEIGHTS = ("adapter_model.safetensors", "adapter_model.bin")  # PEFT's, newest format first
RUN_NAME = re.compile(
    r"(?P<model>.+)-(?P<task>gsm8k|math|mmlu|rag)-group(?P<group_size>\d+)-lora(?P<lora_rank>\d+)"
    r"-rmin(?P<r_min>\d[\d.eE-]*)-temp(?P<temperature>\d[\d.eE-]*)"
)
"""The experiment folder name their training scripts build (``exp_name``)."""


def _adapter_config(folder: Path) -> dict[str, Any] | None:
    path = folder / ADAPTER_CONFIG
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None  # hrpo.checkpoint reports an unreadable adapter config itself
    return data if isinstance(data, dict) else None


def authors_modules_in(folder: str | os.PathLike) -> list[str]:
    """The authors' gate modules that ``folder``'s adapter config saves (``modules_to_save``); [] if none."""
    config = _adapter_config(Path(folder)) or {}
    saved = config.get("modules_to_save") or []
    return [m for m in saved if isinstance(m, str) and m.startswith("thinking_residual")]


def is_authors_checkpoint(folder: str | os.PathLike) -> bool:
    """Whether ``folder`` is a PEFT adapter saved by the authors' code (the gate in ``modules_to_save``)."""
    return bool(authors_modules_in(folder))


def convert_command(folder: str | os.PathLike, destination: str | None = None) -> str:
    """The documented one-liner that converts ``folder`` (into ``destination``; printed in refusals)."""
    where = f", '{destination}'" if destination else ""
    return (
        'python -c "from hrpo.authors_checkpoint import convert_authors_checkpoint as c; '
        f"print(c('{folder}'{where}))\""
    )


def authors_refusal(folder: str | os.PathLike) -> str | None:
    """A message saying what was found and how to convert it, for an authors' checkpoint; None otherwise."""
    modules = authors_modules_in(folder)
    if not modules:
        return None
    return (
        f"{folder} is a checkpoint of the authors' code (Yueeeeeeee/HRPO): a LoRA adapter with the gate saved "
        f"as modules_to_save ({', '.join(modules)}) instead of hrpo_gate.*. `hrpo eval --checkpoint_path "
        f"{folder}` converts it; for other uses convert it first: {convert_command(folder)}"
    )


@dataclass(frozen=True)
class AuthorsRun:
    """What the authors' experiment folder name says about the run (their eval scripts read it the same way)."""

    name: str
    """The experiment folder name, e.g. ``Qwen2.5-1.5B-Instruct-gsm8k-group8-lora32-rmin0.98-temp0.5``."""
    model: str
    """The model part of the name (``model_name.split('/')[-1]``)."""
    task: str
    group_size: int
    lora_rank: int
    r_min: float
    temperature: float
    step: int | None
    """``N`` of a ``checkpoint-N`` folder, None for another folder."""

    @property
    def base_model(self) -> str | None:
        """The hub id among :data:`KNOWN_BASE_MODELS` that the name names, as ``eval_*.py`` choose it."""
        found = [m for m in KNOWN_BASE_MODELS if m.split("/")[-1] == self.model]
        return found[0] if found else None


def parse_run_path(folder: str | os.PathLike) -> AuthorsRun | None:
    """The run encoded in ``folder``'s path (the folder itself or a parent); None when no part matches."""
    path = Path(folder).resolve()
    step_match = re.fullmatch(r"checkpoint-(\d+)", path.name)
    for part in (path, *path.parents):
        match = RUN_NAME.fullmatch(part.name)
        if match:
            try:
                return AuthorsRun(
                    name=part.name,
                    model=match["model"],
                    task=match["task"],
                    group_size=int(match["group_size"]),
                    lora_rank=int(match["lora_rank"]),
                    r_min=float(match["r_min"]),
                    temperature=float(match["temperature"]),
                    step=int(step_match.group(1)) if step_match else None,
                )
            except ValueError:
                return None
    return None


def authors_base_model(folder: str | os.PathLike) -> tuple[str | None, str]:
    """``(base model, where it came from)``: the path (as their eval scripts), else the adapter config.

    The adapter config usually names unsloth's mirror (``unsloth/Qwen2.5-1.5B-Instruct``, the same weights),
    because their unsloth maps hub ids to it; the path names the model their eval scripts loaded.
    """
    run = parse_run_path(folder)
    if run is not None and run.base_model:
        return run.base_model, f"the folder name ({run.name})"
    base = (_adapter_config(Path(folder)) or {}).get("base_model_name_or_path")
    return (str(base), f"{ADAPTER_CONFIG} base_model_name_or_path") if base else (None, "nowhere")
