"""Convert a checkpoint of the authors' code (Yueeeeeeee/HRPO) into hrpo's checkpoint folder.

Their folder (layout: :mod:`hrpo.authors_layout`) is a PEFT adapter whose weights file also holds the gate,
saved as ``modules_to_save`` of their forked model (``thinking_residual_gate_r/_gate_i`` linears in bf16,
``thinking_residual_Lambda.Lambda`` in fp32). :func:`convert_authors_checkpoint` writes a folder that
:class:`hrpo.checkpoint.CheckpointInfo`, ``hrpo eval`` and the lm-eval ``hrpo`` model read like one of ours:

* ``adapter_model.safetensors`` + ``adapter_config.json``: the LoRA tensors unchanged (same names, dtypes), the
  gate modules removed from the tensors and from ``modules_to_save`` (a stock model has no such modules);
* ``hrpo_gate.safetensors`` + ``hrpo_gate.json``: the gate in fp32 under our names (``Lambda`` means the same:
  their ``exp(-c softplus(-Lambda) r)`` is our ``sigmoid(Lambda)^(c r)``, c = 8), with the decoding settings;
* ``hrpo_run.json``: base model, ``hybrid: true``, and what the folder name says (G, LoRA rank, r_min, tau);
* ``hrpo_authors_source.json``: the source folder, where base model and tau came from, and a fingerprint of
  the source files (a second conversion of an unchanged source reuses the first).

From Python or a shell::

    python -c "from hrpo.authors_checkpoint import convert_authors_checkpoint as c; print(c('experiments/Qwen2.5-1.5B-Instruct-gsm8k-group8-lora32-rmin0.98-temp0.5/checkpoint-250'))"

``hrpo eval --checkpoint_path <their folder>`` calls it itself (into ``<folder>/hrpo_converted``).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hrpo.authors_layout import (
    ADAPTER_CONFIG,
    ADAPTER_WEIGHTS,
    AUTHORS_MODULES,
    GATE_C,
    GATE_KEYS,
    authors_base_model,
    authors_modules_in,
    parse_run_path,
)
from hrpo.checkpoint import GateCheckpointError, save_gate, write_run_info
from hrpo.decoding import DecodingSettings

if TYPE_CHECKING:
    import torch

CONVERTED_DIR = "hrpo_converted"
"""Default output: a subfolder of the authors' checkpoint (their eval scripts also write into that folder)."""
SOURCE_FILE = "hrpo_authors_source.json"
DEFAULT_R_MAX = 0.999  # every script's --residual_r_max default; the folder name does not record it


class AuthorsCheckpointError(GateCheckpointError):
    """An authors' checkpoint that cannot be converted (the message says what was found)."""


@dataclass(frozen=True)
class AuthorsGate:
    """The gate tensors of an authors' checkpoint under our names, fp32, and what the file held."""

    tensors: dict[str, torch.Tensor]
    hidden_size: int
    source_dtypes: dict[str, str]
    """Our name -> the dtype stored in their file (``bfloat16`` linears, ``float32`` Lambda)."""


def _weights_file(folder: Path) -> Path:
    for name in ADAPTER_WEIGHTS:
        if (folder / name).is_file():
            return folder / name
    raise AuthorsCheckpointError(
        f"{folder} has an authors' {ADAPTER_CONFIG} but no adapter weights ({' or '.join(ADAPTER_WEIGHTS)}): "
        "the checkpoint is incomplete"
    )


def _load_tensors(path: Path) -> dict[str, torch.Tensor]:
    import torch
    from safetensors.torch import load_file

    try:
        if path.suffix == ".safetensors":
            return load_file(path)
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # safetensors / torch raise their own types for truncated or garbled files
        raise AuthorsCheckpointError(f"{path} is not a readable adapter weights file: {err}") from err


def split_gate(tensors: dict[str, torch.Tensor], source: Path) -> tuple[AuthorsGate, dict[str, torch.Tensor]]:
    """``(gate, the other tensors)`` of an authors' adapter state dict; errors name what is missing or wrong."""
    import torch

    found: dict[str, str] = {}  # our name -> their full key
    for key in tensors:
        for suffix, ours in GATE_KEYS.items():
            if key == suffix or key.endswith("." + suffix):
                if ours in found:
                    raise AuthorsCheckpointError(
                        f"{source} holds two tensors for {suffix}: {found[ours]}, {key}"
                    )
                found[ours] = key
    missing = [suffix for suffix, ours in GATE_KEYS.items() if ours not in found]
    if missing:
        raise AuthorsCheckpointError(
            f"{source} lists the gate in modules_to_save but lacks the tensors {', '.join(missing)} (found gate "
            f"tensors: {', '.join(sorted(found.values())) or 'none'}); the checkpoint is incomplete"
        )
    gate = {ours: tensors[key] for ours, key in found.items()}
    d = int(gate["Lambda"].shape[0]) if gate["Lambda"].dim() == 1 else -1
    expected = {"gate_r.weight": (d, d), "gate_r.bias": (d,), "gate_i.weight": (d, d), "gate_i.bias": (d,)}
    expected["Lambda"] = (d,)
    shapes = {name: tuple(t.shape) for name, t in gate.items()}
    if d <= 0 or shapes != expected:
        raise AuthorsCheckpointError(f"{source}: gate tensors have shapes {shapes}, expected {expected}")
    rest = {k: v for k, v in tensors.items() if k not in set(found.values())}
    return (
        AuthorsGate(
            tensors={name: t.to(torch.float32).contiguous() for name, t in gate.items()},
            hidden_size=d,
            source_dtypes={name: str(t.dtype).removeprefix("torch.") for name, t in gate.items()},
        ),
        rest,
    )


def read_authors_gate(folder: str | os.PathLike) -> AuthorsGate:
    """The gate of an authors' checkpoint folder (fp32, our names)."""
    path = _weights_file(Path(folder))
    return split_gate(_load_tensors(path), path)[0]


def _fingerprint(folder: Path) -> dict[str, Any]:
    files = [folder / ADAPTER_CONFIG, _weights_file(folder)]
    return {p.name: {"size": p.stat().st_size, "mtime_ns": p.stat().st_mtime_ns} for p in files}


def _atomic_text(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def convert_authors_checkpoint(
    source: str | os.PathLike,
    destination: str | os.PathLike | None = None,
    base_model: str | None = None,
    temperature: float | None = None,
    r_min: float | None = None,
) -> Path:
    """Write hrpo's layout of the authors' checkpoint ``source`` into ``destination``; returns that folder.

    ``destination`` defaults to ``<source>/hrpo_converted``. ``base_model``, ``temperature`` (tau) and ``r_min``
    default to what the folder name says (as their eval scripts read it), the base model else to the adapter
    config's. Raises :class:`AuthorsCheckpointError` when ``source`` is not an authors' checkpoint or is broken.
    """
    src = Path(source)
    if not src.is_dir():
        raise AuthorsCheckpointError(f"checkpoint folder {src} does not exist")
    if not authors_modules_in(src):
        raise AuthorsCheckpointError(
            f"{src} is not a checkpoint of the authors' code: its {ADAPTER_CONFIG} is missing or does not list "
            f"the gate modules ({', '.join(AUTHORS_MODULES)}) in modules_to_save"
        )
    dst = Path(destination) if destination is not None else src / CONVERTED_DIR
    run = parse_run_path(src)
    base_source = "given"
    if base_model is None:
        base_model, base_source = authors_base_model(src)
    if base_model is None:
        raise AuthorsCheckpointError(
            f"{src}: no base model found; pass base_model= (a hub id or a model folder)"
        )
    tau_source = "given" if temperature is not None else ("the folder name" if run else "the default")
    tau = (
        temperature
        if temperature is not None
        else (run.temperature if run else DecodingSettings().temperature)
    )
    init_r_min = r_min if r_min is not None else (run.r_min if run else None)
    settings = {"base_model": base_model, "temperature": tau, "r_min": init_r_min}
    fingerprint = _fingerprint(src)
    marker = dst / SOURCE_FILE
    if marker.is_file():
        try:
            previous = json.loads(marker.read_text())
        except (OSError, json.JSONDecodeError):
            previous = {}
        if previous.get("fingerprint") == fingerprint and previous.get("settings") == settings:
            return dst  # the same source converted with the same settings: reuse

    from safetensors.torch import save_file

    from hrpo.gate import GateConfig, ThinkingGate

    weights = _weights_file(src)
    gate, rest = split_gate(_load_tensors(weights), weights)
    config = json.loads((src / ADAPTER_CONFIG).read_text())
    others = [m for m in config.get("modules_to_save") or [] if m not in AUTHORS_MODULES]
    config["modules_to_save"] = others or None
    config["base_model_name_or_path"] = base_model

    dst.mkdir(parents=True, exist_ok=True)
    tmp = dst / f".adapter_model.{os.getpid()}.tmp"
    save_file({k: v.contiguous() for k, v in rest.items()}, str(tmp), metadata={"format": "pt"})
    os.replace(tmp, dst / "adapter_model.safetensors")
    _atomic_text(dst / ADAPTER_CONFIG, json.dumps(config, indent=2) + "\n")

    # r_min/r_max only describe the init (the trained Lambda is loaded over it); keep what the run used.
    gate_config = GateConfig(
        hidden_size=gate.hidden_size,
        c=GATE_C,
        r_min=init_r_min if init_r_min is not None else GateConfig(hidden_size=1).r_min,
        r_max=DEFAULT_R_MAX,
    )
    module = ThinkingGate(gate_config)
    module.load_state_dict(gate.tensors)
    decoding = DecodingSettings(temperature=tau)  # their delimiter (####) and HF's default top-k 50, top-p 1
    save_gate(module, dst, decoding=decoding)
    args: dict[str, Any] = {"temperature": tau, "r_min": gate_config.r_min, "r_max": gate_config.r_max}
    if run is not None:
        args.update(num_generations=run.group_size, lora_r=run.lora_rank, task=run.task)
        if run.step is not None:
            args["global_step"] = run.step
    args["converted_from"] = str(src.resolve())
    write_run_info(dst, base_model, hybrid=True, peft=True, decoding=decoding, args=args)
    source_info = {
        "source": str(src.resolve()),
        "format": "Yueeeeeeee/HRPO (PEFT adapter, gate in modules_to_save)",
        "base_model_from": base_source,
        "temperature_from": tau_source,
        "gate_dtypes_in_source": gate.source_dtypes,
        "settings": settings,
        "fingerprint": fingerprint,
    }
    _atomic_text(marker, json.dumps(source_info, indent=2) + "\n")
    return dst


def describe_conversion(folder: str | os.PathLike) -> str:
    """One line for a converted folder: where base model and tau came from (``hrpo eval`` prints it)."""
    info = json.loads((Path(folder) / SOURCE_FILE).read_text())
    settings = info["settings"]
    dtypes = "/".join(sorted(set(info["gate_dtypes_in_source"].values())))
    return (
        f"base model {settings['base_model']} (from {info['base_model_from']}), tau {settings['temperature']:g} "
        f"(from {info['temperature_from']}), gate {dtypes} -> fp32"
    )
