"""Plain DDP (torchrun, 2 CPU processes, gloo) with full fine-tuning and micro-batches without thinking slots.

DDP (``find_unused_parameters=False``, HF's choice for a full ``PreTrainedModel``) needs a gradient for every
parameter in every step. With ``--delimiter e`` every completion of the tiny model answers at its first token
(all first tokens contain an ``e``), so no position is hybrid; the gate must still take part in the graph (a
zero-weighted term), otherwise the second step fails with "Expected to have finished reduction in the prior
iteration".
"""

from __future__ import annotations

import json
import sys

import pytest

from hrpo.testing import free_port, output_tail, run_command, save_tiny_llama, write_toy_rows

LAUNCH_TIMEOUT = 300

pytestmark = pytest.mark.slow


def test_ddp_full_finetuning_without_thinking_slots(tmp_path):
    save_tiny_llama(tmp_path / "model")
    write_toy_rows(tmp_path / "toy.jsonl")
    out = tmp_path / "out"
    cmd = [
        sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", str(free_port()),
        "-m", "hrpo.train",
        "--model_name_or_path", str(tmp_path / "model"), "--task", "file", "--train_file", str(tmp_path / "toy.jsonl"),
        "--output_dir", str(out), "--max_steps", "2", "--per_device_train_batch_size", "2", "--num_generations", "4",
        "--max_completion_length", "8", "--seed", "0", "--top_k", "1", "--warmup_steps", "0", "--use_cpu", "true",
        "--bf16", "false", "--dtype", "float32", "--use_peft", "false", "--delimiter", "e",
        "--save_steps", "2", "--log_completions", "false", "--report_to", "none",
    ]  # fmt: skip
    proc = run_command(cmd, tmp_path, LAUNCH_TIMEOUT)
    assert proc.returncode == 0, output_tail(proc)
    state = json.loads((out / "checkpoint-2" / "trainer_state.json").read_text())
    logs = [h for h in state["log_history"] if "loss" in h]
    assert [h["step"] for h in logs] == [1, 2]
    assert all(h["hybrid/thinking_fraction"] == 0.0 for h in logs)  # really no hybrid slot anywhere
