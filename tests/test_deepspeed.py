"""DeepSpeed ZeRO-2 / ZeRO-3 with 2 CPU processes (torchrun, gloo, DS_ACCELERATOR=cpu, torch AdamW).

Each test launches ``torchrun --nproc_per_node 2 -m hrpo.train ... --deepspeed ds_configs/zeroN.json`` for 2 steps
with ``per_device_train_batch_size 2`` (2 processes x 2 = 4 completions = one group of G=4 per step) and compares
it with ONE process running the same global batch (``per_device_train_batch_size 4``).

What is compared, and why it can be compared exactly:

* Rollouts are sampled with ``--top_k 1``: the sampling distribution is the argmax token with probability 1, so
  the decode is deterministic whatever the random stream. With ordinary sampling the two runs CANNOT match: every
  rank is seeded identically (``--seed 0``), so rank 1 draws the same uniforms as rank 0 for its two rows, while
  the single process draws 4 different ones per decode step -- different completions, different loss.
* With identical completions inside the group the advantages are 0, so the first-step loss is beta x KL between
  the hybrid policy forward (stored latents replayed through the current gate, LoRA on) and the reference
  (plain tokens, LoRA off). That exercises the HRPO-specific parts: rollout latents surviving TRL's split across
  ranks, the replay with the DeepSpeed-wrapped gate, and the reference forward with the adapter disabled.
* ``--warmup_steps 0`` makes step 1 update the weights (lr > 0), so step 2's loss and grad norm also check that
  the DeepSpeed optimizer step over the three parameter groups matches the single-process torch AdamW step.

Tolerance: everything runs in fp32; each rank's forward is the single-process forward on half the rows, so the
loss differs only by matmul blocking of a batch of 2 vs 4 (observed: bit-identical). Gradients are averaged by
DeepSpeed's all-reduce in a different summation order (observed: grad-norm relative difference ~4e-8, gate weights
~1e-8 apart after 2 Adam steps of lr 1e-4). We allow 1e-5 relative on losses / grad norms and 1e-6 absolute on the
saved weights: orders of magnitude above rounding, orders below any real bug (a missing all-reduce or a gate left
out of the optimizer moves the step-2 numbers by >1e-3 relative; a wrong group split changes the loss outright).
The KL (and so the loss) also gets an absolute floor of 1e-7 (times beta for the loss): here the KL is ~4e-4 from
per-token log-ratios x ~ 0.02, and fp32 resolves the k3 term ``exp(x) - x - 1`` only to ~1e-7 absolute (the ulp
of exp(x) ~ 1), so once step 1's all-reduce order has moved any weight by one ulp, step 2's KL may differ by
~1e-8 absolute = 4e-5 relative (observed under ZeRO-3 with the raw-logit loss). A skipped optimizer step moves
it by ~1e-6 absolute, still ten times the floor.

ZeRO-3 also checks that the gate's parameters are gathered wherever it runs outside the engine's forward
(rollouts, the hybrid replay in the loss, saving): the gate calls its Linear submodules, whose ZeRO-3 hooks
gather their partitioned weights.

The bf16 tests (ZeRO-2 and ZeRO-3, 2 processes) run ``hrpo.train`` with ``--bf16 true`` through an entry script
that inspects the gate on every rank after training: the engine holds its parameters in bf16, yet the forward
computes from the optimizer's fp32 master copies (the fresh run's master equals the exact fp32 init, a 1e-4
change of Lambda -- below bf16's step there -- moves the output), and the saved gate file holds those fp32 values.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from hrpo.testing import free_port, output_tail, run_command, save_tiny_llama, write_toy_rows
from tests.conftest import REPO_ROOT

pytestmark = pytest.mark.slow


LAUNCH_TIMEOUT = 300
REL = 1e-5
WEIGHT_ATOL = 1e-6
BETA = 0.005  # HRPOConfig's default, used by these runs: loss = BETA * KL when the advantages are 0
KL_ATOL = 1e-7  # absolute floor on the KL: fp32 resolution of exp(x) - x - 1 near x = 0 (ulp of 1.0 = 1.2e-7)


def train_flags(workdir: Path, out: Path, per_device: int) -> list[str]:
    return [
        "--model_name_or_path", str(workdir / "model"),
        "--task", "file",
        "--train_file", str(workdir / "toy.jsonl"),
        "--output_dir", str(out),
        "--max_steps", "2",
        "--per_device_train_batch_size", str(per_device),
        "--num_generations", "4",
        "--max_completion_length", "8",
        "--seed", "0",
        "--top_k", "1",
        "--warmup_steps", "0",
        "--use_cpu", "true",  # DeepSpeed on CPU: without it accelerate sees 1 process (see module docstring)
        "--bf16", "false",
        "--dtype", "float32",
        "--lora_r", "4",
        "--lora_alpha", "8",
        "--lora_target_modules", "q_proj", "v_proj",
        "--save_steps", "2",
        "--log_completions", "false",
        "--report_to", "none",
    ]  # fmt: skip


def run(cmd: list[str], cwd: Path, **env: str) -> subprocess.CompletedProcess:
    return run_command(cmd, cwd, LAUNCH_TIMEOUT, **env)


def launch_deepspeed(workdir: Path, out: Path, stage: int, entry: list[str] | None = None):
    cmd = [
        sys.executable, "-m", "torch.distributed.run",
        "--nproc_per_node", "2",
        "--master_port", str(free_port()),
        *(entry or ["-m", "hrpo.train"]),
        *train_flags(workdir, out, per_device=2),
        "--deepspeed", str(REPO_ROOT / "ds_configs" / f"zero{stage}.json"),
    ]  # fmt: skip
    return run(cmd, cwd=workdir, DS_ACCELERATOR="cpu")


def loss_logs(out: Path) -> dict[int, dict]:
    state = json.loads((out / "checkpoint-2" / "trainer_state.json").read_text())
    return {h["step"]: h for h in state["log_history"] if "loss" in h}


@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("ds")
    save_tiny_llama(folder / "model")
    write_toy_rows(folder / "toy.jsonl")
    return folder


@pytest.fixture(scope="module")
def single(workdir) -> Path:
    """The single-process reference run: same global batch (4 completions, one group) per step."""
    out = workdir / "single"
    proc = run([sys.executable, "-m", "hrpo.train", *train_flags(workdir, out, per_device=4)], cwd=workdir)
    assert proc.returncode == 0, output_tail(proc)
    return out


def check_against_single(out: Path, single: Path, proc: subprocess.CompletedProcess) -> None:
    assert proc.returncode == 0, output_tail(proc)
    # Really DeepSpeed with 2 ranks: a ZeRO checkpoint with one optimizer-state shard per rank.
    ds_folder = out / "checkpoint-2" / "global_step2"
    shards = sorted(p.name for p in ds_folder.glob("*optim_states.pt"))
    assert [s[:16] for s in shards] == ["zero_pp_rank_0_m", "zero_pp_rank_1_m"], shards
    assert (out / "checkpoint-2" / "hrpo_checkpoint_complete.json").is_file()
    assert "per optimizer step: 1 prompts x 4 completions = 4 completions" in proc.stdout

    ds_logs, ref_logs = loss_logs(out), loss_logs(single)
    assert sorted(ds_logs) == sorted(ref_logs) == [1, 2]
    first, ref_first = ds_logs[1], ref_logs[1]
    assert first["frac_reward_zero_std"] == 1.0  # deterministic group: advantages 0, loss = beta * KL
    assert ref_first["loss"] > 0 and ref_first["kl"] > 0
    # The first-step loss equals the single-process run's.
    assert first["loss"] == pytest.approx(ref_first["loss"], rel=REL, abs=1e-12)
    floor = {"kl": KL_ATOL, "loss": BETA * KL_ATOL}  # k3's fp32 resolution, see the module docstring
    for step in (1, 2):
        for key in ("loss", "kl", "grad_norm", "hybrid/embeds_ratio", "hybrid/hidden_ratio", "entropy",
                    "learning_rate", "completions/mean_length"):  # fmt: skip
            expected = pytest.approx(ref_logs[step][key], rel=REL, abs=floor.get(key, 1e-12))
            assert ds_logs[step][key] == expected, (step, key)
    # Step 2 is not vacuous: without step 1's update (all lr 0) step 2's loss is 1.8948e-06 instead of 1.9006e-06
    # (3e-3 relative; KL 1.2e-6 absolute), so a skipped or wrong DeepSpeed optimizer step fails the check above.

    # The final output directory loads back outside DeepSpeed.
    from peft import PeftModel
    from safetensors.torch import load_file
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from hrpo.checkpoint import load_gate

    gate = load_gate(out, hidden_size=64)
    ref_gate = load_gate(single, hidden_size=64)
    for name, tensor in gate.state_dict().items():
        torch.testing.assert_close(tensor, ref_gate.state_dict()[name], atol=WEIGHT_ATOL, rtol=0)
    adapter, ref_adapter = (
        load_file(out / "adapter_model.safetensors"),
        load_file(single / "adapter_model.safetensors"),
    )
    assert sorted(adapter) == sorted(ref_adapter)
    for name in adapter:
        torch.testing.assert_close(adapter[name], ref_adapter[name], atol=WEIGHT_ATOL, rtol=0)
    assert any(adapter[n].abs().max() > 0 for n in adapter if "lora_B" in n)  # trained, not the zero init

    base = AutoModelForCausalLM.from_pretrained(out.parent / "model")
    model = PeftModel.from_pretrained(base, out).eval()
    tokenizer = AutoTokenizer.from_pretrained(out.parent / "model")
    ids = tokenizer("What is 3 plus 3?", return_tensors="pt").input_ids
    with torch.no_grad():
        logits = model(input_ids=ids).logits
    assert torch.isfinite(logits).all()
    run_config = json.loads((out / "hrpo_run.json").read_text())
    assert run_config["hybrid"] is True and run_config["args"]["deepspeed"].endswith(".json")


def test_zero2_two_processes_match_single_process(workdir, single):
    out = workdir / "zero2"
    proc = launch_deepspeed(workdir, out, stage=2)
    check_against_single(out, single, proc)


def test_zero3_two_processes_match_single_process(workdir, single):
    out = workdir / "zero3"
    proc = launch_deepspeed(workdir, out, stage=3)
    check_against_single(out, single, proc)


# --------------------------------------------------------------------------- bf16: the gate stays fp32

BF16_ENTRY = '''
"""hrpo.train under DeepSpeed bf16, then checks of the gate on every rank (written to <output_dir>/gate_rank<r>.json)."""
import json
import sys

import torch

import hrpo.trainer as hrpo_trainer

first_sync = {}
original_sync = hrpo_trainer.HRPOTrainer._sync_gate_master
original_train = hrpo_trainer.HRPOTrainer.train


def sync(self):
    original_sync(self)
    if not first_sync and self.gate.has_fp32_master:  # the fresh run's master is the exact fp32 init
        first_sync.update(
            exact_init=all(torch.equal(v.cpu(), self._gate_init[k]) for k, v in self.gate.fp32_state_dict().items())
        )


def train(self, *args, **kwargs):
    output = original_train(self, *args, **kwargs)
    from deepspeed.utils import safe_get_full_fp32_param

    gate = self.gate
    self._sync_gate_master()  # a collective: every rank
    master = gate.fp32_state_dict()
    engine = {n: safe_get_full_fp32_param(p) for n, p in gate.named_parameters()}
    gen = torch.Generator().manual_seed(0)
    e = 0.05 * torch.randn(3, 5, gate.hidden_size, generator=gen)
    h = torch.randn(3, 5, gate.hidden_size, generator=gen)
    with torch.no_grad():
        base, a_mean, _ = gate(e, h)
        nudged = dict(master, Lambda=master["Lambda"] + 1e-4)
        gate.set_fp32_master(nudged)
        moved, _, _ = gate(e, h)
        gate.set_fp32_master(master)
        back, _, _ = gate(e, h)
    report = {
        **first_sync,
        "param_dtypes": sorted({str(p.dtype) for p in gate.parameters()}),
        "master_dtypes": sorted({str(v.dtype) for v in master.values()}),
        "master_is_engine_fp32": all(torch.equal(master[n].flatten(), engine[n].float().flatten()) for n in master),
        "a_dtype": str(a_mean.dtype),
        "mix_change_after_1e-4": (moved - base).abs().max().item(),
        "restored_exactly": torch.equal(back, base),
        "bf16_would_see_no_change": bool(
            torch.equal(master["Lambda"].bfloat16(), (master["Lambda"] + 1e-4).bfloat16())
        ),
    }
    with open(f"{self.args.output_dir}/gate_rank{self.accelerator.process_index}.json", "w") as handle:
        json.dump(report, handle)
    return output


hrpo_trainer.HRPOTrainer._sync_gate_master = sync
hrpo_trainer.HRPOTrainer.train = train
from hrpo.train import main  # noqa: E402

sys.exit(main())
'''


@pytest.mark.parametrize("stage", [2, 3])
def test_bf16_gate_stays_fp32_in_forward_and_saved_file(workdir, stage):
    """DeepSpeed bf16 casts every parameter, the gate's too; the gate must still compute from, and save, fp32.

    Lambda ~ 7-9 has a bf16 step of 0.03-0.06: a 1e-4 change would vanish in a bf16 forward. Here it moves the mix.
    """
    from safetensors.torch import load_file

    out = workdir / f"bf16_zero{stage}"
    entry = workdir / "bf16_entry.py"
    entry.write_text(BF16_ENTRY)
    cmd = [
        sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", str(free_port()),
        str(entry), *train_flags(workdir, out, per_device=2),
        "--deepspeed", str(REPO_ROOT / "ds_configs" / f"zero{stage}.json"),
    ]  # fmt: skip
    cmd[cmd.index("--bf16") + 1] = "true"
    proc = run(cmd, cwd=workdir, DS_ACCELERATOR="cpu")
    assert proc.returncode == 0, output_tail(proc)
    reports = [json.loads((out / f"gate_rank{r}.json").read_text()) for r in (0, 1)]
    for report in reports:
        assert report["param_dtypes"] == ["torch.bfloat16"]  # what the engine did to the module
        assert report["exact_init"] is True  # the engine's bf16 rounding of the init was undone
        assert report["master_dtypes"] == ["torch.float32"] and report["master_is_engine_fp32"]
        assert report["a_dtype"] == "torch.float32"
        assert report["mix_change_after_1e-4"] > 0 and report["bf16_would_see_no_change"]
        assert report["restored_exactly"]
    saved = load_file(out / "hrpo_gate.safetensors")
    assert {t.dtype for t in saved.values()} == {torch.float32}
    # The saved Lambda is the fp32 master, not the bf16 copy (which would round-trip through bf16 unchanged).
    assert not torch.equal(saved["Lambda"], saved["Lambda"].bfloat16().float())
