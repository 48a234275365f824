"""ThinkingGate math, initialisation and dtypes (spec 1.3)."""

import math

import pytest
import torch
from torch.nn import functional as F

from hrpo.gate import GateConfig, ThinkingGate, lambda_for


def reference_mix(gate: ThinkingGate, e: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
    """The authors' form: a = exp(-c * softplus(-Lambda) * r)."""
    r = torch.sigmoid(gate.gate_r(e))
    i = torch.sigmoid(gate.gate_i(e))
    a = torch.exp(-gate.config.c * F.softplus(-gate.Lambda) * r)
    return a * e + torch.sqrt(1 - a**2 + 1e-8) * (i * h)


def test_mix_matches_the_original_softplus_form():
    torch.manual_seed(0)
    gate = ThinkingGate(GateConfig(hidden_size=32, r_min=0.5, r_max=0.9))
    e, h = torch.randn(5, 7, 32), torch.randn(5, 7, 32)
    mixed, a_mean, h_mean = gate(e, h)
    torch.testing.assert_close(mixed, reference_mix(gate, e, h), rtol=1e-5, atol=1e-6)
    assert a_mean.shape == (5, 7) and h_mean.shape == (5, 7)


def test_lambda_init_is_uniform_in_r_range_and_fp32():
    gate = ThinkingGate(
        GateConfig(hidden_size=4096, r_min=0.99, r_max=0.999), torch.Generator().manual_seed(0)
    )
    assert gate.Lambda.dtype == torch.float32
    u = torch.sigmoid(gate.Lambda.double()) ** 8
    assert u.min() >= 0.99 - 1e-6 and u.max() <= 0.999 + 1e-6
    # Uniform on [0.99, 0.999]: mean 0.9945, std 0.009/sqrt(12).
    assert abs(u.mean().item() - 0.9945) < 3e-4
    assert abs(u.std().item() - 0.009 / math.sqrt(12)) < 3e-4
    assert lambda_for(0.99) == pytest.approx(6.68, abs=0.01)
    assert lambda_for(0.999) == pytest.approx(8.99, abs=0.01)


def test_gate_stays_fp32_when_fed_bf16():
    gate = ThinkingGate(GateConfig(hidden_size=16))
    e = torch.randn(3, 16, dtype=torch.bfloat16)
    mixed, a_mean, _ = gate(e, torch.randn(3, 16))
    assert mixed.dtype == torch.bfloat16 and a_mean.dtype == torch.float32
    assert all(p.dtype == torch.float32 for p in gate.parameters())


@pytest.mark.parametrize(
    ("r_min", "embeds", "hidden"), [(0.99, 0.9973, 0.074), (0.98, 0.9947, 0.103), (0.95, 0.9872, 0.160)]
)
def test_ratios_at_init_match_spec(r_min, embeds, hidden):
    """Spec 1.3: mean a and sqrt(1 - mean(a)^2) at init, r ~ 0.5 since W e is small at init."""
    gate = ThinkingGate(GateConfig(hidden_size=2048, r_min=r_min), torch.Generator().manual_seed(1))
    torch.manual_seed(2)
    e = 0.02 * torch.randn(64, 2048)  # embedding-scale inputs
    _, a_mean, h_mean = gate(e, torch.randn(64, 2048))
    a = a_mean.mean().item()
    assert a == pytest.approx(embeds, abs=1.5e-3)
    assert math.sqrt(1 - a * a) == pytest.approx(hidden, abs=0.01)
    # hidden_ratio is the per-dimension mean of sqrt(1 - a^2): below sqrt(1 - mean(a)^2) by Jensen.
    assert h_mean.mean().item() < math.sqrt(1 - a * a)
    assert gate.init_ratios()[0] == pytest.approx(embeds, abs=1.5e-3)


def test_gate_limits():
    gate = ThinkingGate(GateConfig(hidden_size=8))
    e, h = torch.randn(4, 8), torch.randn(4, 8)
    with torch.no_grad():
        gate.Lambda.fill_(60.0)  # a -> 1: token embedding only (up to sqrt(eps) * i * h)
    mixed, a_mean, _ = gate(e, h)
    assert torch.allclose(a_mean, torch.ones(4))
    assert (mixed - e).abs().max() <= 1e-4 * h.abs().max() + 1e-6
    with torch.no_grad():
        gate.Lambda.fill_(-60.0)  # a -> 0: the gated latent only
    mixed, _, h_mean = gate(e, h)
    i = torch.sigmoid(gate.gate_i(e))
    torch.testing.assert_close(mixed, i * h)
    assert torch.allclose(h_mean, torch.ones(4))


def test_gradients_reach_all_gate_parameters():
    gate = ThinkingGate(GateConfig(hidden_size=8, r_min=0.5, r_max=0.9))
    mixed, _, _ = gate(torch.randn(3, 8), torch.randn(3, 8))
    mixed.square().sum().backward()
    for name, p in gate.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name


@pytest.mark.parametrize(
    "kwargs",
    [
        {"hidden_size": 0},
        {"hidden_size": 8, "r_min": 0.0},
        {"hidden_size": 8, "r_min": 0.999, "r_max": 0.99},
        {"hidden_size": 8, "r_max": 1.0},
    ],
)
def test_bad_config_rejected(kwargs):
    with pytest.raises(ValueError):
        GateConfig(**kwargs)


def test_fp32_master_values_drive_a_low_precision_gate(tmp_path):
    """What DeepSpeed bf16 leaves: bf16 parameters plus fp32 master copies. The forward must use the masters."""
    from hrpo.checkpoint import load_gate, save_gate

    torch.manual_seed(0)
    exact = ThinkingGate(GateConfig(hidden_size=16, r_min=0.9), torch.Generator().manual_seed(3))
    masters = {k: v.clone() for k, v in exact.state_dict().items()}
    low = ThinkingGate(GateConfig(hidden_size=16, r_min=0.9))
    low.load_state_dict(masters)
    low.to(torch.bfloat16)  # what the engine does to every module parameter
    e, h = 0.1 * torch.randn(4, 16), torch.randn(4, 16)
    rounded, _, _ = low(e, h)
    reference, _, _ = exact(e, h)
    assert not torch.equal(rounded, reference)  # computing from the bf16 copy loses the fp32 values
    low.set_fp32_master(masters)
    mixed, a_mean, _ = low(e, h)
    assert torch.equal(mixed, reference) and a_mean.dtype == torch.float32
    # A 1e-4 change of Lambda, invisible in bf16 (step 0.03-0.06 near 7-9), moves the output.
    assert torch.equal((masters["Lambda"] + 1e-4).bfloat16(), masters["Lambda"].bfloat16())
    low.set_fp32_master({**masters, "Lambda": masters["Lambda"] + 1e-4})
    assert not torch.equal(low(e, h)[0], reference)
    low.set_fp32_master(masters)
    # Gradients reach the (bf16) parameters, equal to the fp32 gate's up to bf16 rounding of the gradient.
    low(e, h)[0].square().sum().backward()
    exact(e, h)[0].square().sum().backward()
    for (name, p), (_, q) in zip(low.named_parameters(), exact.named_parameters(), strict=True):
        assert p.grad is not None and p.grad.dtype == torch.bfloat16, name
        torch.testing.assert_close(p.grad.float(), q.grad, rtol=1e-2, atol=1e-3)
    # Saved files hold the fp32 masters, not the bf16 copy.
    save_gate(low, tmp_path)
    loaded = load_gate(tmp_path)
    for name, tensor in loaded.state_dict().items():
        assert tensor.dtype == torch.float32 and torch.equal(tensor, masters[name]), name
    with pytest.raises(ValueError, match="expected"):
        low.set_fp32_master({"Lambda": masters["Lambda"]})
