"""The checkpoint folder: every file HRPO writes beside a PEFT adapter or a full model, and their readers.

One module owns the folder's layout (a training output or a ``checkpoint-N`` folder):

* ``hrpo_gate.safetensors``: ``gate_r.weight (D, D)``, ``gate_r.bias (D,)``, ``gate_i.*``, ``Lambda (D,)``, fp32
  (under DeepSpeed bf16 the optimizer's fp32 master values, never the engine's bf16 copy);
* ``hrpo_gate.json``: ``{"format": "hrpo-thinking-gate", "format_version": 1, "gate": {hidden_size, c, r_min,
  r_max, eps}, "decoding": {delimiter, temperature, top_k, top_p}}``;
* ``hrpo_run.json``: the run: ``{"base_model", "hybrid", "peft", "decoding": {...}, "args": {scalar HRPOConfig
  fields}}`` (:func:`write_run_info`); the decoding block is the run's :class:`hrpo.decoding.DecodingSettings`,
  so evaluation defaults to what the checkpoint was trained with;
* ``hrpo_checkpoint_complete.json``: ``{"global_step": N}``, written last into a ``checkpoint-N`` folder
  (:func:`write_complete_marker`): a folder without it was interrupted mid-save and is never resumed from
  (:func:`check_checkpoint_complete`, :func:`latest_complete`).

Saves are atomic: a checkpoint is written into ``<output_dir>/.hrpo-staging/checkpoint-N`` (:func:`staging_dir`),
marked complete, synced to disk and renamed into place (:func:`publish_checkpoint`), so a crash or a full disk never
leaves a partial folder under a ``checkpoint-N`` name; only then are old checkpoints rotated away
(:func:`rotate_complete_checkpoints`: ``save_total_limit`` counts complete checkpoints and never deletes the newest).
Resuming checks the run's identity first (:func:`check_resume_compatible`: base model, hidden size, LoRA rank,
hybrid flag, delimiter, world size) and refuses a mismatch before any tensor is read.

:meth:`CheckpointInfo.read` reads all of it (no tensors) into one object: base model, method, peft, tau, r_min,
seed, decoding settings. Loading checks everything it can before touching tensors and says what is wrong: not a
gate, an unknown version, missing or mis-shaped tensors, or a hidden size that does not match the model.

Torch and safetensors are imported only by the functions that read or write tensors, so reading a folder's
metadata (the leaderboard) stays light.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hrpo.decoding import DecodingSettings

if TYPE_CHECKING:
    import torch

    from hrpo.gate import ThinkingGate

GATE_WEIGHTS = "hrpo_gate.safetensors"
GATE_CONFIG = "hrpo_gate.json"
GATE_FORMAT = "hrpo-thinking-gate"
GATE_FORMAT_VERSION = 1
RUN_CONFIG = "hrpo_run.json"
COMPLETE_MARKER = "hrpo_checkpoint_complete.json"
ADAPTER_CONFIG = "adapter_config.json"  # PEFT's
MODEL_CONFIG = "config.json"  # transformers'
CHECKPOINT_PREFIX = "checkpoint"  # transformers.trainer_utils.PREFIX_CHECKPOINT_DIR (tests/test_contracts.py)
STAGING = ".hrpo-staging"  # hidden: never matches checkpoint-N, so nothing resumes from or rotates it


class GateCheckpointError(ValueError):
    """A gate checkpoint is missing, malformed, or does not fit the model."""


class IncompleteCheckpointError(ValueError):
    """A checkpoint folder was not completely written (the run died while saving it)."""


class CheckpointMismatchError(ValueError):
    """A checkpoint belongs to another setup (base model, LoRA rank, ...) than the run resuming from it."""


class CheckpointSaveError(OSError):
    """Writing a checkpoint failed (e.g. the disk is full); nothing partial was published."""


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
    gate: ThinkingGate,
    directory: str | os.PathLike,
    decoding: DecodingSettings | dict[str, Any] | None = None,
) -> Path:
    """Write the gate's weights and config into ``directory`` (created if needed); returns the folder."""
    import torch
    from safetensors.torch import save_file

    if isinstance(decoding, DecodingSettings):
        decoding = decoding.to_dict()
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
        meta = json.loads(config_path.read_bytes().decode("utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise GateCheckpointError(
            f"{config_path} is not valid JSON: {err}; restore it from a good copy or use another checkpoint"
        ) from None
    if not isinstance(meta, dict) or meta.get("format") != GATE_FORMAT:
        raise GateCheckpointError(
            f"{config_path} is not an HRPO gate file (expected format '{GATE_FORMAT}'); point at a folder "
            "written by hrpo train, or use another checkpoint"
        )
    if meta.get("format_version") != GATE_FORMAT_VERSION:
        raise GateCheckpointError(
            f"{config_path} has gate format version {meta.get('format_version')}; this hrpo reads version "
            f"{GATE_FORMAT_VERSION}"
        )
    from dataclasses import fields

    from hrpo.gate import GateConfig

    # Field types first, so a hand-edited or foreign file names the field instead of failing inside GateConfig.
    fix = "restore the file from a good copy of the checkpoint, or use another checkpoint"
    block = meta.get("gate")
    if not isinstance(block, dict):
        raise GateCheckpointError(f"{config_path}: field 'gate' must be an object, got {block!r}; {fix}")
    for f in fields(GateConfig):
        value = block.get(f.name)
        integral = f.name == "hidden_size"
        if f.name in block and (
            isinstance(value, bool) or not isinstance(value, int if integral else (int, float))
        ):
            want = "an integer" if integral else "a number"
            raise GateCheckpointError(
                f"{config_path}: field 'gate.{f.name}' must be {want}, got {value!r}; {fix}"
            )
    if not isinstance(meta.get("decoding", {}), dict):
        raise GateCheckpointError(
            f"{config_path}: field 'decoding' must be an object, got {meta['decoding']!r}; {fix}"
        )
    try:
        GateConfig(**meta["gate"])
    except (KeyError, TypeError, ValueError) as err:
        raise GateCheckpointError(f"{config_path} has an invalid 'gate' block: {err}; {fix}") from None
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
    from safetensors.torch import load_file

    from hrpo.gate import GateConfig, ThinkingGate

    meta = read_gate_config(directory, hidden_size)
    gate = ThinkingGate(GateConfig(**meta["gate"]))
    path = Path(directory) / GATE_WEIGHTS
    try:
        tensors = load_file(path)
    except Exception as err:  # safetensors raises its own error types for truncated/garbled files
        raise GateCheckpointError(
            f"{path} is not a readable safetensors file ({err}): it is cut short or damaged (the run may "
            "have died while saving); resume or evaluate from another checkpoint"
        ) from None
    expected = {name: tuple(p.shape) for name, p in gate.state_dict().items()}
    found = {name: tuple(t.shape) for name, t in tensors.items()}
    if expected != found:
        raise GateCheckpointError(
            f"{path} holds tensors {found}, expected {expected} for this gate config: the weights and "
            f"{GATE_CONFIG} do not belong together; use another checkpoint"
        )
    bad = [name for name, t in tensors.items() if not t.is_floating_point() or not bool(t.isfinite().all())]
    if bad:
        raise GateCheckpointError(
            f"{path}: tensors {bad} are not finite floats: the file is damaged; use another checkpoint"
        )
    gate.load_state_dict(tensors)
    return gate.to(device)


# ---------------------------------------------------------------------------------------------- run info


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise GateCheckpointError(f"cannot read {path}: {err}") from err
    return data if isinstance(data, dict) else {}


def write_run_info(
    directory: str | os.PathLike,
    base_model: str | None,
    hybrid: bool,
    peft: bool,
    decoding: DecodingSettings,
    args: dict[str, Any],
    hidden_size: int | None = None,
    world_size: int | None = None,
) -> Path:
    """Write ``hrpo_run.json`` (the trainer calls it on every save); ``args`` keeps its scalar values only.

    ``hidden_size`` (the model's embedding width) and ``world_size`` (training processes) are what a resume is
    checked against (:func:`check_resume_compatible`) besides the base model, hybrid flag and delimiter.
    """
    folder = Path(directory)
    folder.mkdir(parents=True, exist_ok=True)
    run = {
        "base_model": base_model,
        "hybrid": bool(hybrid),
        "peft": bool(peft),
        "decoding": decoding.to_dict(),
        "args": {k: v for k, v in args.items() if isinstance(v, (str, int, float, bool, type(None)))},
    }
    if hidden_size is not None:
        run["hidden_size"] = int(hidden_size)
    if world_size is not None:
        run["world_size"] = int(world_size)
    path = folder / RUN_CONFIG
    _atomic_write(path, lambda tmp: Path(tmp).write_text(json.dumps(run, indent=2) + "\n"))
    return path


@dataclass(frozen=True)
class CheckpointInfo:
    """What a checkpoint folder says about itself, from its JSON files only (no tensors read)."""

    folder: Path
    base_model: str | None
    """The model the adapter/gate belongs to: ``hrpo_run.json``'s, else the adapter's, else the folder itself
    when it holds full weights."""
    hybrid: bool | None
    """``hrpo_run.json``'s ``hybrid`` (True = HRPO, False = GRPO); None without a run file."""
    peft: bool
    decoding: DecodingSettings
    """The trained decoding settings (run file's block, else the gate's, else the run's args, else defaults)."""
    args: dict[str, Any] = field(default_factory=dict)
    """The run's scalar training arguments (``hrpo_run.json`` ``args``)."""
    gate: dict[str, Any] | None = None
    """The validated ``hrpo_gate.json`` (``gate`` and ``decoding`` blocks), None without a gate."""
    has_run_info: bool = False
    has_adapter: bool = False
    has_full_model: bool = False

    @property
    def has_gate(self) -> bool:
        return self.gate is not None

    @property
    def method(self) -> str:
        """``HRPO`` / ``GRPO`` from the run file, ``base`` for a folder without one."""
        return "base" if self.hybrid is None else ("HRPO" if self.hybrid else "GRPO")

    @property
    def tau(self) -> float:
        return self.decoding.temperature

    @property
    def r_min(self) -> float | None:
        """The gate's init r_min (the gate file's, else the run's args); None for GRPO and base models."""
        if not self.hybrid and not self.has_gate:
            return None
        value = (self.gate or {}).get("gate", {}).get("r_min", self.args.get("r_min"))
        return None if value is None else float(value)

    @property
    def seed(self) -> int | None:
        seed = self.args.get("seed")
        return seed if isinstance(seed, int) and not isinstance(seed, bool) else None

    @classmethod
    def read(cls, directory: str | os.PathLike, require_weights: bool = True) -> CheckpointInfo:
        """Read a checkpoint folder; raise :class:`GateCheckpointError` when it is missing or unusable.

        ``require_weights``: the folder must hold a gate, an adapter or a model (what evaluation needs).
        """
        folder = Path(directory)
        if not folder.is_dir():
            raise GateCheckpointError(f"checkpoint folder {folder} does not exist")
        from hrpo.authors_layout import authors_refusal  # the authors' layout needs converting first

        if message := authors_refusal(folder):
            raise GateCheckpointError(message)
        names = (ADAPTER_CONFIG, MODEL_CONFIG, GATE_CONFIG)
        if require_weights and not any((folder / name).is_file() for name in names):
            nested = sorted(p.name for p in folder.glob(f"{CHECKPOINT_PREFIX}-*") if p.is_dir())
            hint = f"; it has {', '.join(nested)}: pass one of those" if nested else ""
            raise GateCheckpointError(
                f"{folder} holds no HRPO gate ({GATE_CONFIG}), LoRA adapter ({ADAPTER_CONFIG}) or model "
                f"({MODEL_CONFIG}){hint}"
            )
        gate = read_gate_config(folder) if has_gate(folder) else None
        run = _read_json(folder / RUN_CONFIG) if (folder / RUN_CONFIG).is_file() else None
        adapter = _read_json(folder / ADAPTER_CONFIG) if (folder / ADAPTER_CONFIG).is_file() else {}
        full_model = (folder / MODEL_CONFIG).is_file() and not adapter
        args = dict((run or {}).get("args") or {})
        base = (run or {}).get("base_model")
        if full_model:
            base = str(folder)
        base = base or adapter.get("base_model_name_or_path")
        try:
            decoding = DecodingSettings.from_dict(
                args, (gate or {}).get("decoding"), (run or {}).get("decoding")
            )
        except (TypeError, ValueError) as err:
            raise GateCheckpointError(f"{folder} records invalid decoding settings: {err}") from err
        return cls(
            folder=folder,
            base_model=None if base is None else str(base),
            hybrid=None if run is None else bool(run.get("hybrid")),
            peft=bool(adapter) or bool((run or {}).get("peft")),
            decoding=decoding,
            args=args,
            gate=gate,
            has_run_info=run is not None,
            has_adapter=bool(adapter),
            has_full_model=full_model,
        )


# ---------------------------------------------------------------------------------------------- completion


def write_complete_marker(directory: str | os.PathLike, global_step: int) -> Path:
    """Mark a ``checkpoint-N`` folder as completely written; call it after everything else is saved."""
    path = Path(directory) / COMPLETE_MARKER
    path.write_text(json.dumps({"global_step": int(global_step)}) + "\n")
    return path


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


def _complete_checkpoints(output_dir: Path) -> list[tuple[int, Path]]:
    """``(step, folder)`` of every completely written ``checkpoint-N`` in ``output_dir``, oldest first."""
    found = []
    for child in output_dir.iterdir() if output_dir.is_dir() else ():
        match = re.fullmatch(rf"{CHECKPOINT_PREFIX}-(\d+)", child.name)
        if match and (child / COMPLETE_MARKER).is_file():
            found.append((int(match.group(1)), child))
    return sorted(found)


def latest_complete(output_dir: str | os.PathLike) -> str | None:
    """The newest ``checkpoint-N`` in ``output_dir`` that was completely written, or None."""
    complete = _complete_checkpoints(Path(output_dir))
    return str(complete[-1][1]) if complete else None


latest_complete_checkpoint = latest_complete  # the name hrpo.trainer exported


# ---------------------------------------------------------------------------------------------- atomic saves


def staging_dir(output_dir: str | os.PathLike) -> Path:
    """Where checkpoints of ``output_dir`` are written before :func:`publish_checkpoint` renames them into place.

    Inside ``output_dir`` (same filesystem, so the rename is atomic) and hidden; what a crashed save leaves there
    is never resumed from and is removed by the next save.
    """
    return Path(output_dir) / STAGING


def _fsync(path: Path, directory: bool = False) -> None:
    fd = os.open(path, os.O_RDONLY | (getattr(os, "O_DIRECTORY", 0) if directory else 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def publish_checkpoint(staged: str | os.PathLike, final: str | os.PathLike) -> Path:
    """Sync the completely written folder ``staged`` to disk and rename it to ``final`` (same filesystem).

    A folder already at ``final`` (a checkpoint of an abandoned timeline, or an incomplete folder from an older
    hrpo) is first moved aside and deleted afterwards, so ``final`` only ever names a complete checkpoint.
    The files are fsynced before the rename and the parent after it: a power cut leaves the old or the new
    folder, never a renamed folder with unwritten data.
    """
    staged, final = Path(staged), Path(final)
    for root, dirs, files in os.walk(staged):
        for name in files:
            _fsync(Path(root) / name)
        for name in dirs:
            _fsync(Path(root) / name, directory=True)
    _fsync(staged, directory=True)
    aside = None
    if final.exists():
        aside = staged.with_name(f"replaced-{final.name}")
        shutil.rmtree(aside, ignore_errors=True)
        os.replace(final, aside)
    os.replace(staged, final)
    _fsync(final.parent, directory=True)
    if aside is not None:
        shutil.rmtree(aside, ignore_errors=True)
    return final


def rotate_complete_checkpoints(
    output_dir: str | os.PathLike,
    save_total_limit: int | None,
    keep: tuple[str | os.PathLike | None, ...] = (),
) -> list[Path]:
    """Delete the oldest complete checkpoints beyond ``save_total_limit``; returns the deleted folders.

    Call it only after the newest checkpoint was published: the newest complete checkpoint and ``keep`` (the
    best model's) are never deleted, and folders without a completion marker neither count nor get deleted.
    """
    if not save_total_limit or save_total_limit <= 0:
        return []
    complete = [folder for _, folder in _complete_checkpoints(Path(output_dir))]
    protected = {Path(p).resolve() for p in keep if p} | ({complete[-1].resolve()} if complete else set())
    excess = len(complete) - max(save_total_limit, len(protected))
    deleted = []
    for folder in complete:
        if len(deleted) >= excess:
            break
        if folder.resolve() not in protected:
            shutil.rmtree(folder, ignore_errors=True)
            deleted.append(folder)
    return deleted


# ---------------------------------------------------------------------------------------------- resume checks

RESUME_FIELDS = ("base_model", "hidden_size", "lora_r", "hybrid", "delimiter", "world_size")
"""What must be the same for a run to resume a checkpoint (:func:`check_resume_compatible`)."""


def resume_identity(directory: str | os.PathLike) -> dict[str, Any]:
    """The :data:`RESUME_FIELDS` a checkpoint folder records (JSON only); a field it does not record is absent.

    ``lora_r`` is the adapter's rank (None for a folder without an adapter: full weights); ``hidden_size`` comes
    from the run file, else the gate file.
    """
    folder = Path(directory)
    run = _read_json(folder / RUN_CONFIG) if (folder / RUN_CONFIG).is_file() else {}
    found: dict[str, Any] = {}
    for name in ("base_model", "hidden_size", "hybrid", "world_size"):
        if name in run:
            found[name] = run[name]
    if "delimiter" in (run.get("decoding") or {}):
        found["delimiter"] = run["decoding"]["delimiter"]
    if "hidden_size" not in found and has_gate(folder):
        found["hidden_size"] = read_gate_config(folder)["gate"]["hidden_size"]
    if (folder / ADAPTER_CONFIG).is_file():
        found["lora_r"] = _read_json(folder / ADAPTER_CONFIG).get("r")
    elif run:
        found["lora_r"] = None
    return found


def _same(field_name: str, saved: Any, current: Any) -> bool:
    # The same local model folder may be named by another (relative, symlinked) path.
    folders = field_name == "base_model" and all(
        isinstance(v, str) and os.path.isdir(v) for v in (saved, current)
    )
    return os.path.realpath(saved) == os.path.realpath(current) if folders else saved == current


def check_resume_compatible(directory: str | os.PathLike, current: dict[str, Any]) -> None:
    """Raise :class:`CheckpointMismatchError` naming every field (with both values) where the checkpoint in
    ``directory`` and the resuming run (``current``: :data:`RESUME_FIELDS` -> value) differ.

    Fields the checkpoint does not record (older hrpo versions) are not checked. Reads JSON only: call it before
    any weights are loaded.
    """
    saved = resume_identity(directory)
    wrong = [
        f"  {name}: the checkpoint has {saved[name]!r}, this run has {current[name]!r}"
        for name in RESUME_FIELDS
        if name in saved and name in current and not _same(name, saved[name], current[name])
    ]
    if wrong:
        raise CheckpointMismatchError(
            f"cannot resume from {directory}: it was trained with another setup\n" + "\n".join(wrong) + "\n"
            "Resume with the checkpoint's settings (--model_name_or_path, --lora_r, --hybrid, --delimiter, the "
            "number of processes), or train the new setup into another --output_dir."
        )
