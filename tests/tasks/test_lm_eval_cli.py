"""The stock ``lm_eval`` CLI runs an hrpo task with ``--model hf`` from an unrelated working directory.

The task folder is the one ``hrpo eval`` passes (:func:`hrpo.commands.eval.tasks_dir`: ``tasks/`` here, ``hrpo/tasks``
in an installed wheel, where tests/test_packaging.py runs it).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pytest

from hrpo.commands.eval import tasks_dir
from hrpo.testing import build_tiny_model


@pytest.mark.slow
def test_stock_cli_with_hf_model_and_chat_template(shared_data, qwen_tokenizer, tmp_path):
    model = build_tiny_model("qwen2", vocab_size=151936)
    model.save_pretrained(tmp_path / "model")
    qwen_tokenizer.save_pretrained(tmp_path / "model")
    lm_eval = shutil.which("lm_eval") or shutil.which("lm-eval")
    cmd = [lm_eval] if lm_eval else [sys.executable, "-m", "lm_eval"]
    cmd += [
        "run", "--model", "hf", "--model_args", f"pretrained={tmp_path / 'model'},dtype=float32",
        "--device", "cpu", "--batch_size", "2", "--include_path", str(tasks_dir()),
        "--tasks", "hrpo_gsm8k", "--limit", "2", "--apply_chat_template", "--gen_kwargs", "max_gen_toks=4",
        "--metadata", json.dumps({"data_dir": str(shared_data)}), "--log_samples", "--output_path", str(tmp_path / "out"),
    ]  # fmt: skip
    env = {
        **os.environ,
        "HF_HUB_OFFLINE": "1",
        "HF_DATASETS_OFFLINE": "1",
        "HF_DATASETS_CACHE": str(tmp_path),
    }
    proc = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    samples = next((tmp_path / "out").glob("*/samples_hrpo_gsm8k_*.jsonl")).read_text().splitlines()
    first = json.loads(samples[0])
    prompt = first["arguments"]["gen_args_0"]["arg_0"]
    assert prompt.startswith("<|im_start|>system\nA conversation between User and Assistant.")
    assert prompt.endswith("<|im_end|>\n<|im_start|>assistant\n") and first["target"] == "18"
    assert len(samples) == 2 and "exact_match" in first
