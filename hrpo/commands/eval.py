"""``hrpo eval`` (also ``python -m hrpo.eval``): lm-evaluation-harness with the ``hrpo`` model and the tasks.

This registers :class:`hrpo.lm_eval_adapter.HRPOLM` and then runs lm-eval's own CLI (``lm-eval run``) with::

    --model hrpo --model_args checkpoint=DIR,... --include_path <hrpo.tasks> --apply_chat_template
    --log_samples --output_path <DIR or --output_path> --metadata {"data_dir": ..., "delimiter": ...}

Examples (from any directory)::

    hrpo eval --checkpoint_path runs/gsm8k --tasks hrpo_stem --batch_size 32 --data_dir ../shared/data
    hrpo eval --model_args pretrained=Qwen/Qwen2.5-1.5B-Instruct,dtype=bfloat16 --tasks hrpo_gsm8k \\
        --output_path out/base                               # a base model: no checkpoint, plain decoding
    hrpo eval --checkpoint_path runs/gsm8k --tasks hrpo_gsm8k --limit 10 --gen_kwargs max_gen_toks=128
    accelerate launch -m hrpo.eval --checkpoint_path runs/gsm8k --tasks hrpo_stem   # data parallel, as `hf`

Outputs (lm-eval's layout): ``<output>/<model name>/results_<time>.json`` (metrics per task and group, the
hybrid settings under ``hrpo``) and ``samples_<task>_<time>.jsonl`` (prompt, response, metrics per item).

Every flag not listed in ``--help`` goes to lm-eval unchanged (``--gen_kwargs``, ``--device``, ``--seed``,
``--num_fewshot``, ``--write_out``, ...). ``--model_args`` and ``--metadata`` are merged with what this command
adds (yours win). ``--use_cache PATH`` gets the digest of the hybrid settings appended, so runs with another
checkpoint, latent mode, tau, top-k or delimiter never reuse cached responses.
"""

from __future__ import annotations

import argparse
import json
import sys
from contextlib import contextmanager
from importlib import resources
from pathlib import Path
from typing import Any


def tasks_dir() -> Path:
    """The lm-eval task folder: the repository's ``tasks/`` in a checkout, ``hrpo/tasks`` in an installed wheel."""
    folder = resources.files("hrpo.tasks")
    if not isinstance(folder, Path):  # lm-eval walks a real folder; a zipped install has none
        raise RuntimeError(f"hrpo.tasks is not a folder on disk ({folder!r}); install hrpo unzipped")
    return folder


MODEL_ARGS_HELP = """\
model_args of the hrpo model (key=value, comma separated; or a JSON object):
  pretrained=PATH|ID   base model (default: base_model in the checkpoint's hrpo_run.json)
  checkpoint=DIR       set by --checkpoint_path
  latent=on|off        hybrid latent inputs while thinking (default on; off = plain token decoding)
  temperature=TAU      tau of the latent (default: the checkpoint's hrpo_gate.json decoding block, else 0.5)
  top_k=K, top_p=P     truncation of the latent's distribution (default: checkpoint, else 50 / 1.0)
  delimiter=STR        answer delimiter that ends thinking (default: checkpoint, else ####)
  greedy=true|false    set by --greedy/--no-greedy (default: follow the task, i.e. greedy)
  merge_lora=false     keep the LoRA adapter unmerged
  dtype=..., device=..., max_length=..., any other lm-eval `hf` argument
Eval decodes greedy tokens while the latent is still built from the tau-tempered top-k distribution (paper)."""


def build_parser() -> argparse.ArgumentParser:
    from lm_eval._cli.utils import MergeDictAction

    from hrpo.authors_flags import EVAL_FLAGS, help_text

    parser = argparse.ArgumentParser(
        prog="hrpo eval",
        description="Evaluate an HRPO checkpoint (or a base model) with lm-evaluation-harness: registers the "
        "`hrpo` model (hybrid latent decoding) and runs lm-eval's own CLI on hrpo's tasks (the repository's tasks/). Results JSON and "
        "per-sample JSONL are written into the checkpoint folder (or --output_path).",
        epilog=MODEL_ARGS_HELP + "\n\n" + help_text(EVAL_FLAGS) + "\n\n" + __doc__.split("\n\n", 1)[1],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--checkpoint_path",
        help="training output or checkpoint-N folder (LoRA adapter + gate); a checkpoint of the authors' code "
        "(gate in the adapter's modules_to_save) is converted into <folder>/hrpo_converted first",
    )
    parser.add_argument(
        "--tasks", required=True, help="comma-separated tasks/groups, e.g. hrpo_stem,hrpo_gsm8k"
    )
    parser.add_argument("--batch_size", default="8", help="generation batch size (default 8)")
    parser.add_argument(
        "--greedy",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="--greedy: argmax tokens; --no-greedy: sample at tau (default: as the task says, i.e. greedy)",
    )
    parser.add_argument("--limit", type=float, help="items per task (a count, or a fraction if < 1)")
    parser.add_argument(
        "--data_dir", help="local benchmark data folder (layout of ../shared/data; see tasks/)"
    )
    parser.add_argument(
        "--output_path", help="where results go (default: the checkpoint folder, else ./eval_results)"
    )
    parser.add_argument("--model_args", nargs="+", action=MergeDictAction, help="see below")
    parser.add_argument(
        "--metadata", nargs="+", action=MergeDictAction, help="task options (tasks/README.md)"
    )
    parser.add_argument("--use_cache", help="sqlite response cache path prefix (hybrid settings appended)")
    return parser


def lm_eval_argv(args: argparse.Namespace, passthrough: list[str]) -> list[str]:
    """The ``lm-eval run`` arguments for parsed ``hrpo eval`` flags (validates the checkpoint, loads nothing)."""
    from hrpo.lm_eval_adapter import base_hidden_size, cache_path_for, check_gate_fits, resolve_settings

    model_args: dict[str, Any] = {}
    if args.checkpoint_path:
        model_args["checkpoint"] = str(Path(args.checkpoint_path).resolve())
    if args.greedy is not None:
        model_args["greedy"] = args.greedy
    model_args.update(args.model_args or {})
    if not args.checkpoint_path and "pretrained" not in model_args and "checkpoint" not in model_args:
        raise ValueError(
            "pass --checkpoint_path DIR, or --model_args pretrained=<base model> to evaluate one"
        )

    keys = ("pretrained", "checkpoint", "temperature", "top_k", "top_p", "delimiter", "greedy")
    settings = resolve_settings(**{k: model_args.get(k) for k in keys}, latent=model_args.get("latent", True))
    check_gate_fits(settings, base_hidden_size(settings.pretrained))
    # The resolved base model names lm-eval's output subfolder (instead of a random name).
    model_args.setdefault("pretrained", settings.pretrained)

    metadata: dict[str, Any] = {"delimiter": settings.delimiter}  # the prompt names the delimiter in use
    if args.data_dir:
        metadata["data_dir"] = str(Path(args.data_dir).resolve())
    metadata.update(args.metadata or {})
    output = args.output_path or settings.checkpoint or "eval_results"

    argv = ["run", "--model", "hrpo", "--model_args", json.dumps(model_args), "--tasks", args.tasks]
    argv += [
        "--batch_size",
        str(args.batch_size),
        "--include_path",
        str(tasks_dir()),
        "--apply_chat_template",
    ]
    argv += ["--log_samples", "--output_path", str(output), "--metadata", json.dumps(metadata)]
    if args.limit is not None:
        argv += ["--limit", f"{args.limit:g}"]
    if args.use_cache:
        argv += ["--use_cache", cache_path_for(args.use_cache, settings)]
    return argv + passthrough


@contextmanager
def _argv(argv: list[str]):
    """lm-eval's CLI reads ``sys.argv``; set it for the call only."""
    saved = sys.argv
    sys.argv = ["lm-eval", *argv]
    try:
        yield
    finally:
        sys.argv = saved


def use_authors_checkpoint(args: argparse.Namespace) -> None:
    """If ``--checkpoint_path`` is a checkpoint of the authors' code, convert it and evaluate the conversion.

    The converted folder is ``<folder>/hrpo_converted`` (reused while the source is unchanged); ``--model_args
    pretrained=...`` names the base model when the folder name and adapter config are not the right one.
    """
    from hrpo.authors_layout import is_authors_checkpoint

    if not args.checkpoint_path or not is_authors_checkpoint(args.checkpoint_path):
        return
    from hrpo.authors_checkpoint import convert_authors_checkpoint, describe_conversion
    from hrpo.authors_layout import convert_command

    pretrained = (args.model_args or {}).get("pretrained")
    try:
        converted = convert_authors_checkpoint(args.checkpoint_path, base_model=pretrained)
    except PermissionError as err:
        raise OSError(
            f"cannot write the converted checkpoint into {args.checkpoint_path} ({err}); convert it elsewhere "
            f"and pass that folder: {convert_command(args.checkpoint_path, 'DESTINATION')}"
        ) from err
    print(
        f"hrpo eval: {args.checkpoint_path} is a checkpoint of the authors' code (gate in modules_to_save); "
        f"evaluating its conversion {converted}: {describe_conversion(converted)}",
        file=sys.stderr,
        flush=True,
    )
    args.checkpoint_path = str(converted)


def main(argv: list[str] | None = None) -> int:
    from hrpo.authors_flags import EVAL_FLAGS, AuthorsFlagError, translate

    raw = list(sys.argv[1:] if argv is None else argv)
    try:  # the eval_*.py flags (--greedy True, --eval_examples N) become ours, each with a notice
        raw = translate(raw, EVAL_FLAGS, "hrpo eval")
    except AuthorsFlagError as err:
        print(f"hrpo eval: error: {err}", file=sys.stderr)
        return 2
    parser = build_parser()
    args, passthrough = parser.parse_known_args(raw)
    from hrpo.checkpoint import GateCheckpointError

    try:
        use_authors_checkpoint(args)
        lm_argv = lm_eval_argv(args, passthrough)
    except (GateCheckpointError, ValueError, OSError) as err:
        print(f"hrpo eval: error: {err}", file=sys.stderr)
        return 2

    from lm_eval.__main__ import cli_evaluate

    import hrpo.lm_eval_adapter  # noqa: F401  (registers the `hrpo` model with lm-eval)

    with _argv(lm_argv):
        cli_evaluate()
    return 0
