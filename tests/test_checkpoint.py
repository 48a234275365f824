"""Gate save/load: exact round trip and clear errors."""

import json

import pytest
import torch

from hrpo.checkpoint import (
    GATE_CONFIG,
    GATE_WEIGHTS,
    GateCheckpointError,
    load_gate,
    read_gate_config,
    save_gate,
)
from hrpo.gate import GateConfig, ThinkingGate
from hrpo.generation import DecodeConfig, hybrid_generate
from hrpo.latent import SamplingConfig


def test_round_trip_reproduces_rollouts_exactly(tiny_qwen2, tmp_path):
    model, tokenizer = tiny_qwen2
    gate = ThinkingGate(GateConfig(64, r_min=0.5, r_max=0.9), torch.Generator().manual_seed(0))
    with torch.no_grad():
        gate.gate_r.weight.normal_()  # a trained-looking gate, far from init
    save_gate(gate, tmp_path, decoding={"delimiter": "####", "temperature": 0.5, "top_k": 50, "top_p": 1.0})
    loaded = load_gate(tmp_path, hidden_size=64)
    for name, tensor in gate.state_dict().items():
        assert torch.equal(tensor, loaded.state_dict()[name]), name
    assert loaded.config == gate.config
    enc = tokenizer(["Hello world", "What is 2+2?"], return_tensors="pt", padding=True)
    config = DecodeConfig(max_new_tokens=16, sampling=SamplingConfig(temperature=0.7))
    runs = [
        hybrid_generate(
            model, enc.input_ids, enc.attention_mask, g, config, tokenizer, torch.Generator().manual_seed(5)
        )
        for g in (gate, loaded)
    ]
    assert torch.equal(runs[0].completion_ids, runs[1].completion_ids)
    assert torch.equal(runs[0].logprobs, runs[1].logprobs)
    assert read_gate_config(tmp_path)["decoding"]["top_k"] == 50


def test_hidden_size_mismatch_is_explained(tmp_path):
    save_gate(ThinkingGate(GateConfig(64)), tmp_path)
    with pytest.raises(
        GateCheckpointError, match="hidden size 64 but the model's embeddings have hidden size 576"
    ):
        load_gate(tmp_path, hidden_size=576)


def test_not_a_gate(tmp_path):
    with pytest.raises(GateCheckpointError, match="does not exist"):
        load_gate(tmp_path / "nope")
    with pytest.raises(GateCheckpointError, match="holds no HRPO gate"):
        load_gate(tmp_path)
    (tmp_path / GATE_CONFIG).write_text(json.dumps({"model_type": "llama"}))
    with pytest.raises(GateCheckpointError, match="not an HRPO gate file"):
        load_gate(tmp_path)


def test_truncated_or_mismatched_weights(tmp_path):
    save_gate(ThinkingGate(GateConfig(8)), tmp_path)
    weights = tmp_path / GATE_WEIGHTS
    weights.write_bytes(weights.read_bytes()[:100])
    with pytest.raises(GateCheckpointError, match="not a readable safetensors file"):
        load_gate(tmp_path)
    save_gate(ThinkingGate(GateConfig(8)), tmp_path)
    meta = json.loads((tmp_path / GATE_CONFIG).read_text())
    meta["gate"]["hidden_size"] = 16  # config says 16, tensors are 8-wide
    (tmp_path / GATE_CONFIG).write_text(json.dumps(meta))
    with pytest.raises(GateCheckpointError, match="expected"):
        load_gate(tmp_path)
    (tmp_path / GATE_WEIGHTS).unlink()
    with pytest.raises(GateCheckpointError, match="incomplete"):
        load_gate(tmp_path)


def test_checkpoint_info_reads_what_the_writers_wrote(tmp_path):
    from hrpo.checkpoint import RUN_CONFIG, CheckpointInfo, write_run_info
    from hrpo.decoding import DecodingSettings

    decoding = DecodingSettings(delimiter="####", temperature=0.7, top_k=20)
    save_gate(ThinkingGate(GateConfig(8, r_min=0.95)), tmp_path, decoding=decoding)
    write_run_info(tmp_path, "base/model", hybrid=True, peft=True, decoding=decoding,
                   args={"seed": 3, "r_min": 0.95, "temperature": 0.7, "lora_target_modules": ["q_proj"]})  # fmt: skip
    run = json.loads((tmp_path / RUN_CONFIG).read_text())
    assert run["decoding"] == decoding.to_dict() and "lora_target_modules" not in run["args"]  # scalars only
    info = CheckpointInfo.read(tmp_path)
    assert (info.base_model, info.method, info.tau, info.r_min, info.seed) == (
        "base/model",
        "HRPO",
        0.7,
        0.95,
        3,
    )
    assert info.decoding == decoding and info.has_gate and info.has_run_info and not info.has_adapter

    grpo = tmp_path / "grpo"
    write_run_info(grpo, "base/model", hybrid=False, peft=True, decoding=DecodingSettings(), args={"seed": 1})
    (grpo / "config.json").write_text("{}")  # full weights: the folder is its own base model
    info = CheckpointInfo.read(grpo)
    assert (info.method, info.r_min, info.base_model, info.has_full_model) == ("GRPO", None, str(grpo), True)

    gate_only = tmp_path / "gate_only"  # no run file: decoding from the gate block, else the defaults
    save_gate(ThinkingGate(GateConfig(8)), gate_only, decoding={"top_k": 7})
    info = CheckpointInfo.read(gate_only)
    assert (info.method, info.decoding, info.base_model) == ("base", DecodingSettings(top_k=7), None)


def test_checkpoint_info_refuses_unusable_folders(tmp_path):
    from hrpo.checkpoint import CheckpointInfo

    with pytest.raises(GateCheckpointError, match="does not exist"):
        CheckpointInfo.read(tmp_path / "missing")
    (tmp_path / "checkpoint-5").mkdir()
    with pytest.raises(
        GateCheckpointError, match=r"holds no HRPO gate .* it has checkpoint-5: pass one of those"
    ):
        CheckpointInfo.read(tmp_path)


def test_completion_marker_and_latest_complete(tmp_path):
    from hrpo.checkpoint import (
        COMPLETE_MARKER,
        IncompleteCheckpointError,
        check_checkpoint_complete,
        latest_complete,
        write_complete_marker,
    )

    assert latest_complete(tmp_path / "nothing") is None
    for step in (2, 10, 11):
        (tmp_path / f"checkpoint-{step}").mkdir()
    for step in (2, 10):
        write_complete_marker(tmp_path / f"checkpoint-{step}", step)
    assert latest_complete(tmp_path) == str(tmp_path / "checkpoint-10")  # numeric order; 11 is incomplete
    assert json.loads((tmp_path / "checkpoint-10" / COMPLETE_MARKER).read_text()) == {"global_step": 10}
    check_checkpoint_complete(tmp_path / "checkpoint-2")
    with pytest.raises(IncompleteCheckpointError, match="incomplete"):
        check_checkpoint_complete(tmp_path / "checkpoint-11")
    with pytest.raises(IncompleteCheckpointError, match="does not exist"):
        check_checkpoint_complete(tmp_path / "checkpoint-99")


def test_checkpoint_metadata_reads_without_torch():
    """The leaderboard reads folders through hrpo.checkpoint: it must not pull in torch."""
    import subprocess
    import sys

    code = "import sys, hrpo.checkpoint; sys.exit('torch' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0


def _checkpoint(folder, step, complete=True):
    from hrpo.checkpoint import write_complete_marker

    path = folder / f"checkpoint-{step}"
    path.mkdir(parents=True)
    (path / "optimizer.pt").write_bytes(b"x" * step)
    if complete:
        write_complete_marker(path, step)
    return path


def test_rotation_counts_and_deletes_only_complete_checkpoints(tmp_path):
    from hrpo.checkpoint import rotate_complete_checkpoints

    for step in (1, 2, 3, 5):
        _checkpoint(tmp_path, step)
    _checkpoint(tmp_path, 9, complete=False)  # a partial folder (older hrpo): neither counted nor deleted
    assert rotate_complete_checkpoints(tmp_path, None) == []
    deleted = rotate_complete_checkpoints(tmp_path, 2, keep=(str(tmp_path / "checkpoint-1"),))
    # As transformers: the limit counts the kept (best) one, and the newest always survives.
    assert deleted == [tmp_path / "checkpoint-2", tmp_path / "checkpoint-3"]
    assert sorted(p.name for p in tmp_path.glob("checkpoint-*")) == [
        "checkpoint-1",
        "checkpoint-5",
        "checkpoint-9",
    ]
    rotate_complete_checkpoints(tmp_path, 1)
    assert sorted(p.name for p in tmp_path.glob("checkpoint-*")) == ["checkpoint-5", "checkpoint-9"]


def test_publish_renames_a_staged_checkpoint_over_a_stale_folder(tmp_path):
    from hrpo.checkpoint import COMPLETE_MARKER, latest_complete, publish_checkpoint, staging_dir

    stale = _checkpoint(tmp_path, 4, complete=False)
    (stale / "leftover.bin").write_bytes(b"old")
    staged = _checkpoint(staging_dir(tmp_path), 4)
    assert latest_complete(tmp_path) is None  # nothing inside the staging folder is ever taken
    assert publish_checkpoint(staged, stale) == stale
    assert not staged.exists() and not (stale / "leftover.bin").exists()
    assert (stale / COMPLETE_MARKER).is_file() and latest_complete(tmp_path) == str(stale)
    assert list(staging_dir(tmp_path).iterdir()) == []  # the stale folder moved aside was deleted


def test_resume_check_names_each_field_with_both_values(tmp_path):
    from hrpo.checkpoint import (
        CheckpointMismatchError,
        check_resume_compatible,
        resume_identity,
        write_run_info,
    )
    from hrpo.decoding import DecodingSettings

    model = tmp_path / "model"
    model.mkdir()
    write_run_info(tmp_path, str(model), hybrid=True, peft=True, decoding=DecodingSettings(), args={},
                   hidden_size=64, world_size=2)  # fmt: skip
    (tmp_path / "adapter_config.json").write_text(json.dumps({"r": 4}))
    saved = resume_identity(tmp_path)
    assert saved == {"base_model": str(model), "hidden_size": 64, "hybrid": True, "world_size": 2,
                     "delimiter": "####", "lora_r": 4}  # fmt: skip
    # The same model folder named by another path is the same base model.
    check_resume_compatible(tmp_path, {**saved, "base_model": str(tmp_path / "." / "model")})
    with pytest.raises(CheckpointMismatchError) as caught:
        check_resume_compatible(tmp_path, {**saved, "lora_r": 8, "world_size": 1})
    assert "  lora_r: the checkpoint has 4, this run has 8\n" in str(caught.value)
    assert "  world_size: the checkpoint has 2, this run has 1\n" in str(caught.value)
    assert "hidden_size" not in str(caught.value)
    # An older checkpoint that does not record a field is not checked on it.
    old = tmp_path / "old"
    write_run_info(old, "m", hybrid=True, peft=False, decoding=DecodingSettings(), args={})
    check_resume_compatible(old, {"world_size": 8, "hidden_size": 1, "base_model": "m", "lora_r": None})
