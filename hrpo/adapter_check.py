"""Does a saved PEFT LoRA adapter fit a model? Checked from the adapter's files alone, before PEFT loads it.

PEFT loading an adapter saved on another base model fails deep inside ``torch.nn.Module.load_state_dict``
("size mismatch for base_model.model...lora_A.weight ...") or, for another architecture, inside its module
matching. :func:`check_adapter_fits` reads ``adapter_config.json`` and the tensor *shapes* in the safetensors
header (no tensor data) and compares them with the model's modules, so the error names the folder, the first
module that does not fit, both shapes and the base model the adapter was saved for.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from hrpo.checkpoint import ADAPTER_CONFIG, GateCheckpointError

ADAPTER_WEIGHTS = "adapter_model.safetensors"  # PEFT's (safe_serialization, its default)
_PEFT_PREFIX = "base_model.model."
_LORA_SUFFIXES = {".lora_A.weight": "A", ".lora_B.weight": "B"}


def read_adapter_config(folder: str | os.PathLike) -> dict[str, Any]:
    """The validated ``adapter_config.json`` of ``folder`` (a dict with ``peft_type`` and a positive ``r``)."""
    path = Path(folder) / ADAPTER_CONFIG
    fix = "save the adapter again (model.save_pretrained) or use another checkpoint"
    try:
        config = json.loads(path.read_bytes().decode("utf-8"))
    except FileNotFoundError:
        raise GateCheckpointError(f"{path} not found: {folder} holds no PEFT adapter") from None
    except UnicodeDecodeError as err:
        raise GateCheckpointError(f"{path}: not UTF-8 at byte {err.start}; {fix}") from None
    except json.JSONDecodeError as err:
        raise GateCheckpointError(
            f"{path}:{err.lineno}: not valid JSON ({err.msg} at column {err.colno}); {fix}"
        ) from None
    if not isinstance(config, dict):
        raise GateCheckpointError(f"{path}: expected a JSON object, got {type(config).__name__}; {fix}")
    if not isinstance(config.get("peft_type"), str):
        raise GateCheckpointError(
            f"{path}: field 'peft_type' must be a string, got {config.get('peft_type')!r}; {fix}"
        )
    r = config.get("r")
    if config["peft_type"] == "LORA" and (isinstance(r, bool) or not isinstance(r, int) or r < 1):
        raise GateCheckpointError(f"{path}: field 'r' must be a positive integer, got {r!r}; {fix}")
    return config


def adapter_shapes(folder: str | os.PathLike) -> dict[str, tuple[int, ...]]:
    """Tensor name -> shape from ``adapter_model.safetensors``'s header (a cut-short file fails here)."""
    from safetensors import safe_open

    path = Path(folder) / ADAPTER_WEIGHTS
    try:
        with safe_open(str(path), framework="pt") as f:
            return {name: tuple(f.get_slice(name).get_shape()) for name in f.keys()}  # noqa: SIM118
    except Exception as err:  # safetensors raises its own error types for truncated/garbled files
        raise GateCheckpointError(
            f"{path} is not a readable safetensors file ({err}): it is cut short or damaged; save the adapter "
            "again or use another checkpoint"
        ) from None


def check_adapter_fits(folder: str | os.PathLike, model: Any) -> None:
    """Raise :class:`~hrpo.checkpoint.GateCheckpointError` unless the LoRA adapter in ``folder`` fits ``model``.

    ``model`` is the plain (not PEFT-wrapped) transformers model. Every ``lora_A`` ``(r, in_features)`` and
    ``lora_B`` ``(out_features, r)`` must sit on a module of ``model`` with those feature sizes. A folder
    with only ``adapter_model.bin`` (pickled, no header to read) is checked for its config only.
    """
    config = read_adapter_config(folder)
    if not (Path(folder) / ADAPTER_WEIGHTS).is_file():
        return
    base = config.get("base_model_name_or_path")
    saved_for = f"base model {base!r}" if base else "a base model it does not record"
    remedy = f"pretrained={base!r}" if base else "the base model it was trained on"
    name = getattr(getattr(model, "config", None), "_name_or_path", None) or type(model).__name__
    modules = dict(model.named_modules())
    for key, shape in adapter_shapes(folder).items():
        suffix = next((s for s in _LORA_SUFFIXES if key.endswith(s)), None)
        if suffix is None:
            continue  # modules_to_save copies and embedding LoRA: PEFT's own checks apply
        target = key[: -len(suffix)].removeprefix(_PEFT_PREFIX)
        module = modules.get(target)
        if module is None:
            raise GateCheckpointError(
                f"the LoRA adapter in {folder} (saved for {saved_for}) targets module {target!r}, "
                f"which the model {name!r} does not have: it belongs to another architecture; evaluate it with "
                f"{remedy} or use a checkpoint trained on this model"
            )
        want_in, want_out = getattr(module, "in_features", None), getattr(module, "out_features", None)
        got = shape[1] if _LORA_SUFFIXES[suffix] == "A" else shape[0]
        want = want_in if _LORA_SUFFIXES[suffix] == "A" else want_out
        if want is not None and (len(shape) != 2 or got != want):
            side = "in_features" if _LORA_SUFFIXES[suffix] == "A" else "out_features"
            raise GateCheckpointError(
                f"the LoRA adapter in {folder} was saved for {saved_for}: its {key} has shape "
                f"{shape} ({side} {got}), but {target} of the model {name!r} has {side} {want}. The adapter "
                f"belongs to another base model; evaluate it with {remedy} or use a checkpoint "
                "trained on this model"
            )
