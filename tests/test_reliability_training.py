"""Training survives crashes: kill -9 at random moments, a full disk while saving, resuming the wrong setup.

* :func:`test_kill_9_series_ends_in_the_uninterrupted_state`: ``hrpo train`` (tiny Llama, ``save_steps=1``,
  ``save_total_limit=2``) is SIGKILLed ``KILLS`` times -- during rollouts, backward passes and checkpoint writes --
  and resumed with ``--resume_from_checkpoint latest`` each time; the final adapter, gate and optimizer state must
  be bit-equal to an uninterrupted run with the same seed. Every launch (the uninterrupted one too) is a separate
  process running ``hrpo train``'s ``main``, forked from one interpreter that imported torch/TRL once
  (:class:`hrpo.testing.ForkedCommands`): 10 fresh interpreters would cost 10 x 5-15 s of imports alone.
* disk full: a writer raising ``OSError(ENOSPC)`` mid-save gives :class:`CheckpointSaveError`, the previous
  checkpoint stays intact and ``latest`` resumes from it; ``save_total_limit`` never deletes the last complete
  checkpoint before the new one is complete.
* a resume with another base model, hidden size, LoRA rank, hybrid flag, delimiter or world size is refused,
  naming the field and both values, before any weights are loaded.

Runtime here (2 loaded cores): the kill series ~60-80 s, the rest ~25 s.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import random
import shutil
import signal
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from hrpo.checkpoint import (
    COMPLETE_MARKER,
    RUN_CONFIG,
    CheckpointMismatchError,
    CheckpointSaveError,
    latest_complete,
    staging_dir,
)
from hrpo.testing import (
    PROBE_LOG,
    PROBE_PAUSE_SAVE,
    ForkedCommands,
    make_tiny_trainer,
    read_probe,
    save_tiny_llama,
    smollm2_tokenizer,
    write_toy_rows,
)

# ------------------------------------------------------------------------------------------- kill -9 series

KILLS = 8  # SIGKILLs per series (fixed seed): at least 2 during rollouts, 2 during backward, 2 mid-save
MAX_STEPS = 10  # each kill costs at most one step (save_steps=1), so the last launch still has steps to run
SEED = 15
# Every file a complete checkpoint holds (besides the tokenizer and the model card).
CHECKPOINT_FILES = ("adapter_config.json", "adapter_model.safetensors", "hrpo_gate.json", "hrpo_gate.safetensors",
                    RUN_CONFIG, "optimizer.pt", "scheduler.pt", "rng_state.pth", "trainer_state.json",
                    COMPLETE_MARKER)  # fmt: skip
# What the fork server imports once instead of every launch (hrpo train's own imports).
PRELOAD = ("hrpo.cli", "hrpo.commands.train", "hrpo.trainer", "hrpo.rewards", "hrpo.data.build", "hrpo.prompts",
           "datasets", "deepspeed", "trl.scripts", "transformers.models.llama.modeling_llama")  # fmt: skip


def train_argv(model: Path, rows: Path, out: Path) -> list[str]:
    return [
        "train", "--model_name_or_path", str(model), "--dtype", "float32", "--task", "file", "--train_file",
        str(rows), "--output_dir", str(out), "--use_cpu", "true", "--bf16", "false", "--max_steps", str(MAX_STEPS),
        "--per_device_train_batch_size", "4", "--num_generations", "4", "--max_completion_length", "8",
        "--lora_r", "4", "--lora_alpha", "8", "--lora_target_modules", "q_proj", "v_proj", "--learning_rate",
        "1e-3", "--save_steps", "1", "--save_total_limit", "2", "--logging_steps", "1", "--log_completions",
        "false", "--report_to", "none", "--seed", "0",
    ]  # fmt: skip


def checkpoint_problems(out: Path) -> list[str]:
    """What is wrong with any folder published under a ``checkpoint-N`` name (each must be complete and load)."""
    problems = []
    for folder in sorted(out.glob("checkpoint-*")):
        missing = [name for name in CHECKPOINT_FILES if not (folder / name).is_file()]
        if missing:
            problems.append(f"{folder.name} lacks {missing}")
            continue
        try:
            load_file(folder / "adapter_model.safetensors")
            load_file(folder / "hrpo_gate.safetensors")
            torch.load(folder / "optimizer.pt", weights_only=True)
            state = json.loads((folder / "trainer_state.json").read_text())
        except Exception as err:  # any unreadable file is a partial checkpoint
            problems.append(f"{folder.name}: {type(err).__name__}: {err}")
            continue
        if f"checkpoint-{state['global_step']}" != folder.name:
            problems.append(f"{folder.name} holds the state of step {state['global_step']}")
    return problems


def newest_step(out: Path) -> int:
    """The step of the newest folder under a ``checkpoint-N`` name (0: none), found without the marker."""
    return max((int(p.name.split("-")[1]) for p in out.glob("checkpoint-*")), default=0)


def wait_for(probe: Path, event: str, step: int, pid: int, timeout: float = 120.0) -> bool:
    """Wait until the probe logged ``event`` at ``step`` (True) or the process ended (False)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if any(e["event"] == event and e["step"] == step for e in read_probe(probe)):
            return True
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        time.sleep(0.01)
    raise AssertionError(f"no {event} event at step {step} after {timeout} s (see {probe})")


def phase_seconds(probes: list[Path]) -> dict[str, float]:
    """Median duration of the rollout and backward phases (rollout -> backward -> save events of one step) in the
    launches so far; 0.05 s before any was measured."""
    spans: dict[str, list[float]] = {"rollout": [], "backward": []}
    for probe in probes:
        times = {(e["event"], e["step"]): e["t"] for e in read_probe(probe)}
        for (event, step), t in times.items():
            after = {"rollout": ("backward", step), "backward": ("save", step)}.get(event)
            if after in times:
                spans[event].append(times[after] - t)
    return {k: sorted(v)[len(v) // 2] if v else 0.05 for k, v in spans.items()}


def phase_of(events: list[dict]) -> str:
    """Where the process was when killed: the last event's phase (``save-paused`` is mid-save)."""
    if not events:
        return "startup"
    last = events[-1]["event"]
    return {"save-paused": "save", "saved": "after save"}.get(last, last)


def assert_same_state(ours: Path, reference: Path) -> None:
    """Adapter, gate (final folders) and optimizer state (last checkpoint) are bit-equal."""
    for name in ("adapter_model.safetensors", "hrpo_gate.safetensors"):
        a, b = load_file(ours / name), load_file(reference / name)
        assert a.keys() == b.keys(), name
        unequal = [key for key in a if not torch.equal(a[key], b[key])]
        assert not unequal, f"{name}: {unequal} differ from the uninterrupted run"
    last = f"checkpoint-{MAX_STEPS}"
    a = torch.load(ours / last / "optimizer.pt", weights_only=True)
    b = torch.load(reference / last / "optimizer.pt", weights_only=True)
    assert a["param_groups"] == b["param_groups"]
    assert a["state"].keys() == b["state"].keys()
    for index, slots in a["state"].items():
        for slot, value in slots.items():
            assert torch.equal(value, b["state"][index][slot]), f"optimizer state {index}/{slot} differs"
    # The same steps were trained, once each: the per-step losses and rewards of the two runs are identical.
    logs = [
        [(h["step"], h["loss"], h["reward"]) for h in json.loads((d / last / "trainer_state.json").read_text())
         ["log_history"] if "loss" in h]
        for d in (ours, reference)
    ]  # fmt: skip
    assert logs[0] == logs[1] and [s for s, _, _ in logs[0]] == list(range(1, MAX_STEPS + 1))


@pytest.mark.slow
def test_kill_9_series_ends_in_the_uninterrupted_state(tmp_path):
    """KILLS SIGKILLs at random moments (fixed seed), each followed by ``--resume_from_checkpoint latest``.

    Asserted at every kill: no folder under a ``checkpoint-N`` name is partial (all files present and loadable);
    the newest complete checkpoint is at most one step behind the step that was killed (a crash costs at most
    one save interval, also with ``save_total_limit=2`` rotating); a mid-save kill left its partial files only in
    the staging folder. At every resume: it starts from the newest complete checkpoint (the message and the first
    step it trains). At the end: bit-equality with the uninterrupted run. Tolerance 0: on CPU with one thread the
    same ops on the same inputs in the same order give the same bits, so any difference means a step was lost,
    repeated or resumed from other state (RNG, data position, optimizer moments).
    """
    model = save_tiny_llama(tmp_path / "model")
    rows = write_toy_rows(tmp_path / "toy.jsonl")
    reference_out, out = tmp_path / "reference", tmp_path / "killed"
    rng = random.Random(SEED)
    targets = ["rollout", "backward", "save"] * 3
    rng.shuffle(targets)
    hit: list[str] = []  # the phase each kill landed in
    resumes: list[tuple[int, int]] = []  # (newest complete step before the launch, step the launch started)
    partial_staged = 0
    with ForkedCommands("hrpo.cli:main", PRELOAD, cwd=tmp_path) as commands:
        # The uninterrupted run, launched like every other one.
        commands.start(train_argv(model, rows, reference_out), tmp_path / "reference.log")
        assert commands.wait() == 0, (tmp_path / "reference.log").read_text()[-5000:]
        for launch in range(KILLS + 1):
            resumed = newest_step(out)  # every checkpoint-N folder is complete (checked after each kill)
            argv = train_argv(model, rows, out) + (["--resume_from_checkpoint", "latest"] if resumed else [])
            probe, log = tmp_path / f"probe-{launch}.jsonl", tmp_path / f"launch-{launch}.log"
            final = launch == KILLS
            target = None if final else targets[launch]
            # Step 2 at first, so that every later launch has a checkpoint to resume from.
            step = min(resumed + 1 + rng.randint(0, 1), MAX_STEPS) if resumed else 2
            env = {PROBE_LOG: str(probe)}
            if target == "save":
                env[PROBE_PAUSE_SAVE] = str(step)  # pause mid-write: the kill lands inside the save
            pid = commands.start(argv, log, setup="hrpo.testing:install_trainer_probe", **env)
            if not final:
                event = "save-paused" if target == "save" else target
                assert wait_for(probe, event, step, pid), f"launch {launch} ended:\n{log.read_text()[-3000:]}"
                if target != "save":  # a random moment in (or just after) that phase: at most ~1 step lost
                    seconds = phase_seconds([tmp_path / f"probe-{i}.jsonl" for i in range(launch)])
                    time.sleep(rng.uniform(0.0, 0.9 * seconds[target]))
                os.kill(pid, signal.SIGKILL)
            code = commands.wait()
            events, text = read_probe(probe), log.read_text()
            if resumed:  # it started from the newest complete checkpoint: its message and its first step
                assert f"hrpo: resuming from {out / f'checkpoint-{resumed}'}" in text, text[-3000:]
                first = next(e["step"] for e in events if e["event"] == "rollout")
                assert first == resumed + 1, (resumed, first)
                resumes.append((resumed, first))
            if final:
                assert code == 0, text[-5000:]
                break
            assert code == -signal.SIGKILL, text[-3000:]
            hit.append(phase_of(events))
            killed = max((e["step"] for e in events if e["event"] in ("rollout", "backward")), default=0)
            assert not checkpoint_problems(out), checkpoint_problems(out)
            assert newest_step(out) >= killed - 1, (newest_step(out), killed)
            if target == "save":
                staged = staging_dir(out) / f"checkpoint-{step}"
                assert staged.is_dir() and not (staged / COMPLETE_MARKER).exists()
                assert not (out / f"checkpoint-{step}").exists()  # the partial save was never published
                partial_staged += 1
        # The same command resuming with another LoRA rank: one error naming the field, no traceback, no training.
        argv = [*train_argv(model, rows, out), "--resume_from_checkpoint", "latest", "--lora_r", "8"]
        commands.start(argv, tmp_path / "mismatch.log")
        text = (tmp_path / "mismatch.log").read_text() if commands.wait() == 2 else "(exit code != 2)"
        assert "hrpo train: error: cannot resume from " in text and "Traceback" not in text, text[-3000:]
        assert "  lora_r: the checkpoint has 4, this run has 8" in text
    assert not staging_dir(out).exists()  # the next save removed what the killed saves had staged
    assert_same_state(out, reference_out)
    counts = {phase: hit.count(phase) for phase in dict.fromkeys(hit)}
    print(
        f"\nkill -9 series (seed {SEED}): {len(hit)} SIGKILLs, by phase {counts}; {partial_staged} left a partial "
        f"staged save, 0 partial checkpoint folders published; {len(resumes)} resumes, each from the newest "
        f"complete checkpoint {[r for r, _ in resumes]}; final adapter, gate and optimizer state bit-equal to the "
        "uninterrupted run"
    )
    assert len(hit) == KILLS and counts.get("save", 0) >= 2 and partial_staged >= 2


# ------------------------------------------------------------------------------------------- in-process runs


@pytest.fixture(scope="module")
def tokenizer():
    return smollm2_tokenizer()


def tiny_trainer(tokenizer, out: Path, name: str = "tiny/llama-a", hidden_size: int = 64, lora_r: int = 4,
                 **overrides):  # fmt: skip
    """:func:`hrpo.testing.make_tiny_trainer`'s run, on a model named ``name`` with its own width and LoRA rank,
    saving every step into ``out``."""
    settings = {"output_dir": str(out), "max_completion_length": 8, "save_strategy": "steps", "save_steps": 1,
                "report_to": "none"}  # fmt: skip
    return make_tiny_trainer(
        tokenizer, out, name=name, hidden_size=hidden_size, lora_r=lora_r, **{**settings, **overrides}
    )


def digest(folder: Path) -> dict[str, str]:
    return {
        p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir()) if p.is_file()
    }


def _disk_full_at(step: int):
    def raise_enospc(*args, **kwargs):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), f"checkpoint-{step}")

    return raise_enospc


@pytest.mark.parametrize("writer", ["torch.save (training args, optimizer)", "safetensors (gate)"])
def test_disk_full_while_saving_keeps_the_previous_checkpoint(writer, tokenizer, tmp_path, monkeypatch):
    out = tmp_path / "run"
    trainer = tiny_trainer(tokenizer, out)
    original = trainer._save_checkpoint

    def save(model, trial):  # the disk fills up while checkpoint-2 is being written
        if trainer.state.global_step == 2:
            if writer.startswith("torch"):
                monkeypatch.setattr(torch, "save", _disk_full_at(2))
            else:
                import safetensors.torch

                monkeypatch.setattr(safetensors.torch, "save_file", _disk_full_at(2))
        before = digest(out / "checkpoint-1") if trainer.state.global_step == 2 else None
        try:
            return original(model, trial)
        finally:
            monkeypatch.undo()
            if before is not None:
                assert digest(out / "checkpoint-1") == before  # the previous checkpoint, byte for byte

    trainer._save_checkpoint = save
    with pytest.raises(CheckpointSaveError) as caught:
        trainer.train()
    message = str(caught.value)
    assert "saving checkpoint-2" in message and "No space left on device" in message
    assert f"the newest complete checkpoint is still {out / 'checkpoint-1'}" in message
    assert "--resume_from_checkpoint latest" in message
    assert caught.value.__cause__.errno == errno.ENOSPC
    assert sorted(p.name for p in out.glob("checkpoint-*")) == ["checkpoint-1"]  # nothing partial published
    assert not staging_dir(out).exists()
    assert not checkpoint_problems(out)

    resumed = tiny_trainer(tokenizer, out)
    seen = []

    def load(path, model=None):
        seen.append(path)
        type(resumed)._load_from_checkpoint(resumed, path, model)

    resumed._load_from_checkpoint = load
    resumed.train(resume_from_checkpoint="latest")
    assert seen == [str(out / "checkpoint-1")] and resumed.state.global_step == 3
    assert not checkpoint_problems(out)


def test_save_total_limit_deletes_only_after_the_new_checkpoint_is_complete(tokenizer, tmp_path, monkeypatch):
    import hrpo.trainer

    out = tmp_path / "run"
    trainer = tiny_trainer(tokenizer, out, save_total_limit=1)
    seen = []
    mark = hrpo.trainer.write_complete_marker

    def marker(
        folder, step
    ):  # the new checkpoint is written but not yet marked: the old one must still be there
        seen.append((step, latest_complete(out)))
        return mark(folder, step)

    monkeypatch.setattr(hrpo.trainer, "write_complete_marker", marker)
    trainer.train()
    assert seen == [(1, None), (2, str(out / "checkpoint-1")), (3, str(out / "checkpoint-2"))]
    assert sorted(p.name for p in out.glob("checkpoint-*")) == ["checkpoint-3"]  # then rotated to the limit
    assert not checkpoint_problems(out)


# ------------------------------------------------------------------------------------------- setup mismatch


@pytest.fixture(scope="module")
def one_step_checkpoint(tokenizer, tmp_path_factory) -> Path:
    """checkpoint-1 of the reference setup: tiny/llama-a, hidden 64, LoRA r 4, hybrid, '####', 1 process."""
    out = tmp_path_factory.mktemp("mismatch") / "run"
    tiny_trainer(tokenizer, out, max_steps=1).train()
    return out / "checkpoint-1"


MISMATCHES = {
    "base_model": ({"name": "tiny/llama-b"}, "'tiny/llama-a'", "'tiny/llama-b'"),
    "hidden_size": ({"hidden_size": 32}, "64", "32"),
    "lora_r": ({"lora_r": 8}, "4", "8"),
    "hybrid": ({"hybrid": False}, "True", "False"),
    "delimiter": ({"delimiter": "The answer is"}, "'####'", "'The answer is'"),
    # One process cannot become two in a unit test: the checkpoint claims it was trained by two.
    "world_size": ({}, "2", "1"),
}


@pytest.mark.parametrize("field", sorted(MISMATCHES))
def test_resume_with_another_setup_is_refused_before_weights_load(
    field, tokenizer, one_step_checkpoint, tmp_path
):
    change, saved, current = MISMATCHES[field]
    checkpoint = tmp_path / "run" / "checkpoint-1"
    shutil.copytree(one_step_checkpoint, checkpoint)
    if field == "world_size":
        run = json.loads((checkpoint / RUN_CONFIG).read_text())
        assert run["world_size"] == 1
        (checkpoint / RUN_CONFIG).write_text(json.dumps({**run, "world_size": 2}))
    trainer = tiny_trainer(tokenizer, tmp_path / "run", **change)
    loads = []
    trainer._load_from_checkpoint = lambda *args, **kwargs: loads.append(args)
    with pytest.raises(CheckpointMismatchError) as caught:
        trainer.train(resume_from_checkpoint="latest")
    message = str(caught.value)
    assert f"  {field}: the checkpoint has {saved}, this run has {current}" in message, message
    assert str(checkpoint) in message and "another --output_dir" in message
    assert loads == [] and trainer.state.global_step == 0  # refused before any weights were read


def test_resume_with_the_same_setup_passes_the_check(tokenizer, one_step_checkpoint, tmp_path):
    """The check itself does not refuse everything: the unchanged setup passes it."""
    from hrpo.checkpoint import check_resume_compatible

    trainer = tiny_trainer(tokenizer, tmp_path / "run")
    check_resume_compatible(one_step_checkpoint, trainer._resume_identity())
