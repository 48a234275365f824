"""The authors' command-line flags (``hrpo_*.py`` / ``eval_*.py`` of Yueeeeeeee/HRPO) as aliases of ours.

One table per command: :data:`TRAIN_FLAGS` (``hrpo train``, from the argparse flags of ``hrpo_gsm8k.py``,
``hrpo_math.py``, ``hrpo_mmlu.py``, ``hrpo_rag.py``) and :data:`EVAL_FLAGS` (``hrpo eval``, from ``eval_gsm8k.py``,
``eval_math.py``, ``eval_mmlust.py``, ``eval_arcc.py``, ``eval_rag.py``). :func:`translate` rewrites an argv before
the command parses it and prints one notice line per rewritten flag on stderr, e.g.::

    hrpo train: --group_size is the authors' name; using --num_generations 8

Every flag of those scripts is in a table, in one of three kinds:

* ``same``: our flag has the same name and meaning (``--beta``, ``--temperature``, ``--batch_size``, ...);
  nothing is rewritten and nothing printed;
* ``renamed``: rewritten to our flag (``--group_size`` -> ``--num_generations``), possibly with a converted value
  (``--lora_rank 32`` -> ``--lora_r 32 --lora_alpha 64``: the scripts tie alpha to 2 x rank);
* ``no equivalent``: dropped with a notice saying why (``--max_prompt_length``: prompts are not cut), or refused
  with an error saying what to pass instead (``--dataset_root`` pointing at a ``Dataset.save_to_disk`` folder).

Where defaults differ (the scripts' 1,024-token lengths vs the paper's Table 5) is README material: the flags
that a user passes keep their meaning, defaults stay the paper's.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

SAME, RENAMED, NONE = "same", "renamed", "no equivalent"


class AuthorsFlagError(ValueError):
    """An authors' flag whose value cannot be mapped (the message says what to pass instead)."""


# A value converter: the authors' value -> (our argv tokens, notice text after "using"). ``given`` holds the flag
# names (no dashes) present on the command line, for converters that depend on other flags.
Converter = Callable[[str, set[str]], tuple[list[str], str]]


@dataclass(frozen=True)
class AuthorsFlag:
    """One flag of the authors' scripts and what it becomes here."""

    name: str
    """The flag without dashes, as the scripts spell it (``group_size``)."""
    kind: str
    """:data:`SAME`, :data:`RENAMED` or :data:`NONE`."""
    ours: str | None
    """Our flag (no dashes) for same/renamed; None when there is no equivalent."""
    scripts: str
    """Which of the authors' scripts define it (README table)."""
    note: str = ""
    """What differs (units, semantics): shown in ``--help`` and, for a plain rename, in the notice."""
    convert: Converter | None = None
    """Custom value mapping (default: ``--ours VALUE``)."""
    takes_value: bool = True
    """False for flags that may stand alone (``--greedy``)."""

    def translate(self, value: str | None, given: set[str]) -> tuple[list[str], str | None]:
        """``(tokens, notice)`` for this flag with ``value``; a ``same`` flag returns itself and no notice."""
        if self.kind == SAME:
            return [f"--{self.name}", *([] if value is None else [value])], None
        if self.convert is not None:
            tokens, used = self.convert(value or "", given)
        else:
            tokens, used = [f"--{self.ours}", value or ""], f"--{self.ours} {value}"
        if self.kind == NONE and not tokens:
            return [], f"--{self.name} is the authors' flag and has no equivalent here: {used}"
        extra = (
            f" ({self.note})" if self.note and self.convert is None else ""
        )  # converters explain themselves
        if self.ours == self.name:  # same name, other value syntax (--greedy True)
            return tokens, f"--{self.name} {value} is the authors' form; using {used}{extra}"
        return tokens, f"--{self.name} is the authors' name; using {used}{extra}"


# --------------------------------------------------------------------------------------------- converters


def _lora_rank(value: str, given: set[str]) -> tuple[list[str], str]:
    try:
        rank = int(value)
    except ValueError:
        raise AuthorsFlagError(f"--lora_rank needs an integer rank, got {value!r}") from None
    if "lora_alpha" in given:  # an explicit alpha wins over the scripts' alpha = 2 x rank
        return ["--lora_r", str(rank)], f"--lora_r {rank} (--lora_alpha as given)"
    return ["--lora_r", str(rank), "--lora_alpha", str(2 * rank)], (
        f"--lora_r {rank} --lora_alpha {2 * rank} (the authors' scripts set alpha = 2 x rank)"
    )


def _warmup_ratio(value: str, given: set[str]) -> tuple[list[str], str]:
    try:
        ratio = float(value)
    except ValueError:
        raise AuthorsFlagError(f"--warmup_ratio needs a number in [0, 1), got {value!r}") from None
    if not 0.0 <= ratio < 1.0:
        raise AuthorsFlagError(
            f"--warmup_ratio {value}: a ratio must be in [0, 1) (here --warmup_steps takes it: a value < 1 is a "
            "ratio of the total steps, >= 1 a step count); pass --warmup_steps N for a step count"
        )
    return [
        "--warmup_steps",
        f"{ratio:g}",
    ], f"--warmup_steps {ratio:g} (a value < 1 is a ratio of total steps)"


def _max_prompt_length(value: str, given: set[str]) -> tuple[list[str], str]:
    return [], (
        f"ignoring --max_prompt_length {value}: TRL 1.16 has no prompt cut, prompts are kept whole (README, "
        "'Where this package deviates': prompt length); keep prompts within the model's context"
    )


def _dataset_root(value: str, given: set[str]) -> tuple[list[str], str]:
    """MATH's official tree -> ``--data_dir`` (its parent); a merged ``save_to_disk`` folder -> refused."""
    root = Path(value)
    if not root.is_dir():
        raise AuthorsFlagError(
            f"--dataset_root {value}: no such folder. hrpo reads benchmark files from --data_dir (the layout of "
            "../shared/data: <data_dir>/math/train/<subject>/<n>.json or math/train.jsonl) and merged training "
            "sets from --task file --train_file <jsonl written by `hrpo data build`>"
        )
    if (root / "state.json").is_file() or (root / "dataset_info.json").is_file():
        raise AuthorsFlagError(
            f"--dataset_root {value} is a `datasets` save_to_disk folder (the authors' merged MMLU/RAG training "
            "set). hrpo trains on a jsonl of its own rows instead: run `hrpo data build mmlu-train --out "
            "data/mmlu_train.jsonl` (or `rag-train --index DIR`) and pass --task file --train_file that file "
            "(configs/mmlu.yaml and configs/rag.yaml do)"
        )
    if (root / "train").is_dir() and root.name == "math":
        data_dir = root.parent
        task = [] if "task" in given else ["--task", "math"]  # the script (hrpo_math.py) chose the task there
        used = f"--data_dir {data_dir}{' --task math' if task else ''} (the folder that holds math/train/)"
        return ["--data_dir", str(data_dir), *task], used
    if (root / "train").is_dir():
        raise AuthorsFlagError(
            f"--dataset_root {value} looks like the official MATH tree (train/<subject>/<n>.json). hrpo finds it "
            "as <data_dir>/math/train: put (or link) the tree at a folder named 'math' and pass its parent as "
            "--data_dir, e.g. `ln -s $(realpath "
            f"{value}) data/math` and `--task math --data_dir data`"
        )
    raise AuthorsFlagError(
        f"--dataset_root {value} is neither the MATH tree (train/<subject>/<n>.json) nor a save_to_disk folder. "
        "Pass --data_dir (benchmark files in the layout of ../shared/data) or --task file --train_file JSONL"
    )


def _greedy(value: str, given: set[str]) -> tuple[list[str], str]:
    """The scripts declare ``--greedy`` with ``type=bool``: any value, "False" included, means greedy."""
    word = value.strip().lower()
    if word in ("true", "1", "yes"):
        return ["--greedy"], "--greedy"
    if word in ("false", "0", "no"):
        return ["--no-greedy"], (
            "--no-greedy (sampling at tau; note that the authors' scripts parse --greedy with type=bool, so "
            "there '--greedy False' still decoded greedily)"
        )
    raise AuthorsFlagError(f"--greedy {value!r}: use --greedy, --no-greedy, or --greedy true/false")


def _eval_examples(value: str, given: set[str]) -> tuple[list[str], str]:
    return ["--limit", value], (
        f"--limit {value} (lm-eval takes the first {value} items; eval_rag.py took {value} after shuffling with "
        "seed 42)"
    )


# ------------------------------------------------------------------------------------------------- tables

_TRAIN = "hrpo_*.py"
TRAIN_FLAGS: dict[str, AuthorsFlag] = {
    f.name: f
    for f in [
        AuthorsFlag("model_name", RENAMED, "model_name_or_path", _TRAIN),
        AuthorsFlag(
            "lora_rank",
            RENAMED,
            "lora_r",
            _TRAIN,
            "also --lora_alpha 2 x rank, as the scripts",
            convert=_lora_rank,
        ),
        AuthorsFlag("lr", RENAMED, "learning_rate", _TRAIN, "the LoRA weights' peak learning rate"),
        AuthorsFlag("beta", SAME, "beta", _TRAIN),
        AuthorsFlag("residual_r_min", RENAMED, "r_min", _TRAIN),
        AuthorsFlag("residual_r_max", RENAMED, "r_max", _TRAIN),
        AuthorsFlag("lr_residual_gate", RENAMED, "gate_learning_rate", _TRAIN),
        AuthorsFlag("lr_residual_Lambda", RENAMED, "lambda_learning_rate", _TRAIN),
        AuthorsFlag("weight_decay", SAME, "weight_decay", _TRAIN),
        AuthorsFlag(
            "warmup_ratio", RENAMED, "warmup_steps", _TRAIN, "a value < 1 is a ratio", convert=_warmup_ratio
        ),
        AuthorsFlag("lr_scheduler_type", SAME, "lr_scheduler_type", _TRAIN),
        AuthorsFlag(
            "optimizer",
            RENAMED,
            "optim",
            _TRAIN,
            "HF optimizer names; the scripts' default paged_adamw_8bit needs bitsandbytes, ours is adamw_torch",
        ),
        AuthorsFlag("max_grad_norm", SAME, "max_grad_norm", _TRAIN),
        AuthorsFlag("group_size", RENAMED, "num_generations", _TRAIN),
        AuthorsFlag("temperature", SAME, "temperature", _TRAIN),
        AuthorsFlag("gradient_accumulation_steps", SAME, "gradient_accumulation_steps", _TRAIN),
        AuthorsFlag(
            "per_device_train_batch_size",
            SAME,
            "per_device_train_batch_size",
            _TRAIN,
            "counted in completions, in both (TRL 0.15.2 there, TRL 1.16 here)",
        ),
        AuthorsFlag(
            "max_prompt_length",
            NONE,
            None,
            _TRAIN,
            "ignored with a notice: prompts are not cut here",
            convert=_max_prompt_length,
        ),
        AuthorsFlag("max_completion_length", SAME, "max_completion_length", _TRAIN),
        AuthorsFlag(
            "dataset_root",
            NONE,
            "data_dir",
            "hrpo_math.py, hrpo_mmlu.py, hrpo_rag.py",
            "a folder named math/ with the MATH tree -> --data_dir <its parent>; a save_to_disk set -> error "
            "(use `hrpo data build` and --task file --train_file)",
            convert=_dataset_root,
        ),
        AuthorsFlag("seed", SAME, "seed", _TRAIN),
    ]
}
"""Every argparse flag of the authors' training scripts (all four define the same set but ``--dataset_root``)."""

_EVAL = "eval_*.py"
EVAL_FLAGS: dict[str, AuthorsFlag] = {
    f.name: f
    for f in [
        AuthorsFlag(
            "checkpoint_path",
            SAME,
            "checkpoint_path",
            _EVAL,
            "an authors' checkpoint folder is recognised and converted (hrpo.authors_checkpoint)",
        ),
        AuthorsFlag("batch_size", SAME, "batch_size", _EVAL),
        AuthorsFlag(
            "greedy",
            RENAMED,
            "greedy",
            _EVAL,
            "--greedy true/false -> --greedy / --no-greedy",
            _greedy,
            False,
        ),
        AuthorsFlag("eval_examples", RENAMED, "limit", "eval_rag.py", "the first N items", _eval_examples),
    ]
}
"""Every argparse flag of the authors' evaluation scripts."""


# ---------------------------------------------------------------------------------------------- translate


def _split(token: str) -> tuple[str, str | None]:
    name, eq, value = token[2:].partition("=")
    return name, (value if eq else None)


def _is_value(token: str) -> bool:
    """A token that is a flag's value, not the next flag (negative numbers are values)."""
    if not token.startswith("-"):
        return True
    try:
        float(token)
    except ValueError:
        return False
    return True


def translate(argv: Sequence[str], table: dict[str, AuthorsFlag], prog: str, stream=None) -> list[str]:
    """``argv`` with the authors' flags of ``table`` rewritten to ours; one notice per rewrite on ``stream``.

    Raises :class:`AuthorsFlagError` for a value that cannot be mapped, a flag without its value, or an
    authors' flag given together with the flag it maps to.
    """
    stream = sys.stderr if stream is None else stream
    given = {_split(t)[0] for t in argv if t.startswith("--")}
    out: list[str] = []
    notices: list[str] = []
    i = 0
    while i < len(argv):
        token = argv[i]
        i += 1
        if token == "--":  # everything after belongs to someone else
            out += argv[i - 1 :]
            break
        name, value = _split(token) if token.startswith("--") else (None, None)
        flag = table.get(name or "")
        if flag is None or flag.kind == SAME:
            out.append(token)
            continue
        if value is None and i < len(argv) and _is_value(argv[i]):
            value, i = argv[i], i + 1
        if value is None and not flag.takes_value and flag.ours == flag.name:
            out.append(token)  # the bare form is ours too (--greedy)
            continue
        if value is None and flag.takes_value:
            raise AuthorsFlagError(f"the authors' flag --{name} needs a value (--{name} VALUE)")
        if flag.ours and flag.ours != flag.name and flag.ours in given:
            raise AuthorsFlagError(
                f"--{name} (the authors' name for --{flag.ours}) and --{flag.ours} are both given; keep one"
            )
        tokens, notice = flag.translate(value, given)
        out += tokens
        if notice:
            notices.append(f"{prog}: {notice}")
    for line in notices:
        print(line, file=stream, flush=True)
    return out


def help_text(table: dict[str, AuthorsFlag]) -> str:
    """The alias table for a command's ``--help`` epilog."""
    lines = [
        "Flags of the authors' scripts (Yueeeeeeee/HRPO) are accepted and mapped, with a notice on stderr:"
    ]
    for flag in table.values():
        target = {SAME: f"same as ours (--{flag.ours})", RENAMED: f"--> --{flag.ours}"}.get(flag.kind)
        target = target or "no equivalent"
        note = f"; {flag.note}" if flag.note else ""
        lines.append(f"  --{flag.name:28s} {target}{note}")
    return "\n".join(lines)
