"""``hrpo train``: HRPO/GRPO training; every token goes to the training entry :func:`hrpo.train.main`.

    hrpo train --config configs/gsm8k.yaml [--key value ...]

The same entry runs under the launchers as ``python -m hrpo.train`` (``deepspeed --module hrpo.train``,
``accelerate launch -m hrpo.train``, ``torchrun -m hrpo.train``; see the README).
"""

from __future__ import annotations


def build_parser():
    """TRL's parser over the three flag groups of :mod:`hrpo.train` (``hrpo train --help`` prints it)."""
    from trl import TrlParser

    from hrpo.config import HRPOConfig, HRPOModelConfig
    from hrpo.train import HRPOScriptArguments

    return TrlParser((HRPOScriptArguments, HRPOConfig, HRPOModelConfig), prog="hrpo train")


def main(argv: list[str] | None = None) -> int:
    from hrpo.train import main as train_main

    return train_main(argv)
