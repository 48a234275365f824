"""Save and load a :class:`~hrpo.gate.ThinkingGate` beside a PEFT adapter or a full model.

A gate lives in two files in the checkpoint folder:

* ``hrpo_gate.safetensors``: ``gate_r.weight (D, D)``, ``gate_r.bias (D,)``, ``gate_i.*``, ``Lambda (D,)``, fp32
  (under DeepSpeed bf16 the optimizer's fp32 master values, never the engine's bf16 copy);
* ``hrpo_gate.json``: ``{"format": "hrpo-thinking-gate", "format_version": 1, "gate": {hidden_size, c, r_min,
  r_max, eps}, "decoding": {delimiter, temperature, top_k, top_p}}``; the decoding block records how the
  checkpoint was trained so evaluation can default to the same settings.

Loading checks everything it can before touching tensors and says what is wrong: not a gate, an unknown
version, missing or mis-shaped tensors, or a hidden size that does not match the model.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from hrpo.gate import GateConfig, ThinkingGate

GATE_WEIGHTS = "hrpo_gate.safetensors"
GATE_CONFIG = "hrpo_gate.json"
GATE_FORMAT = "hrpo-thinking-gate"
GATE_FORMAT_VERSION = 1


class GateCheckpointError(ValueError):
    """A gate checkpoint is missing, malformed, or does not fit the model."""


def _atomic_write(path: Path, write) -> None:
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    os.close(fd)
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def save_gate(
    gate: ThinkingGate, directory: str | os.PathLike, decoding: dict[str, Any] | None = None
) -> Path:
    """Write the gate's weights and config into ``directory`` (created if needed); returns the folder."""
    folder = Path(directory)
    folder.mkdir(parents=True, exist_ok=True)
    # fp32_state_dict: the fp32 master values when an engine holds the parameters in bf16 (see hrpo.gate).
    tensors = {
        name: t.detach().to("cpu", torch.float32).contiguous() for name, t in gate.fp32_state_dict().items()
    }
    meta = {
        "format": GATE_FORMAT,
        "format_version": GATE_FORMAT_VERSION,
        "gate": gate.config.to_dict(),
        "decoding": dict(decoding or {}),
    }
    _atomic_write(
        folder / GATE_WEIGHTS, lambda tmp: save_file(tensors, tmp, metadata={"format": GATE_FORMAT})
    )
    _atomic_write(folder / GATE_CONFIG, lambda tmp: Path(tmp).write_text(json.dumps(meta, indent=2) + "\n"))
    return folder


def has_gate(directory: str | os.PathLike) -> bool:
    """Whether ``directory`` holds a gate config file."""
    return (Path(directory) / GATE_CONFIG).is_file()


def read_gate_config(directory: str | os.PathLike, hidden_size: int | None = None) -> dict[str, Any]:
    """Validate and return the gate JSON of a checkpoint folder, without loading any tensor.

    With ``hidden_size`` (the model's), a mismatch raises :class:`GateCheckpointError` naming both sizes.
    """
    folder = Path(directory)
    if not folder.is_dir():
        raise GateCheckpointError(f"checkpoint folder {folder} does not exist")
    config_path = folder / GATE_CONFIG
    if not config_path.is_file():
        raise GateCheckpointError(
            f"{folder} holds no HRPO gate ({GATE_CONFIG} is missing); point at a training output or checkpoint "
            "folder, or evaluate without a checkpoint to use the base model"
        )
    try:
        meta = json.loads(config_path.read_text())
    except json.JSONDecodeError as err:
        raise GateCheckpointError(f"{config_path} is not valid JSON: {err}") from err
    if not isinstance(meta, dict) or meta.get("format") != GATE_FORMAT:
        raise GateCheckpointError(f"{config_path} is not an HRPO gate file (expected format '{GATE_FORMAT}')")
    if meta.get("format_version") != GATE_FORMAT_VERSION:
        raise GateCheckpointError(
            f"{config_path} has gate format version {meta.get('format_version')}; this hrpo reads version "
            f"{GATE_FORMAT_VERSION}"
        )
    try:
        GateConfig(**meta["gate"])
    except (KeyError, TypeError, ValueError) as err:
        raise GateCheckpointError(f"{config_path} has an invalid 'gate' block: {err}") from err
    saved = meta["gate"]["hidden_size"]
    if hidden_size is not None and saved != hidden_size:
        raise GateCheckpointError(
            f"the gate in {folder} has hidden size {saved} but the model's embeddings have hidden size "
            f"{hidden_size}: it was trained for a different base model"
        )
    if not (folder / GATE_WEIGHTS).is_file():
        raise GateCheckpointError(
            f"{folder} has {GATE_CONFIG} but no {GATE_WEIGHTS}: the checkpoint is incomplete"
        )
    return meta


def load_gate(
    directory: str | os.PathLike, hidden_size: int | None = None, device: torch.device | str = "cpu"
) -> ThinkingGate:
    """Load the gate saved in ``directory``; ``hidden_size`` (the model's) is checked when given."""
    meta = read_gate_config(directory, hidden_size)
    gate = ThinkingGate(GateConfig(**meta["gate"]))
    path = Path(directory) / GATE_WEIGHTS
    try:
        tensors = load_file(path)
    except Exception as err:  # safetensors raises its own error types for truncated/garbled files
        raise GateCheckpointError(f"{path} is not a readable safetensors file: {err}") from err
    expected = {name: tuple(p.shape) for name, p in gate.state_dict().items()}
    found = {name: tuple(t.shape) for name, t in tensors.items()}
    if expected != found:
        raise GateCheckpointError(f"{path} holds tensors {found}, expected {expected} for this gate config")
    gate.load_state_dict(tensors)
    return gate.to(device)
