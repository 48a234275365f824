"""``load_benchmark("gsm8k", "test")``: the loader of every benchmark of :mod:`hrpo.benchmarks` that has one.

Names are the registry keys (the lm-eval task names without the ``hrpo_`` prefix). The registry row names the
loader function, its splits and the split the paper evaluates on, so callers (tasks/utils.py, ``hrpo data
build``, trainers) never hard-code file names.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from types import ModuleType

from hrpo import benchmarks
from hrpo.data import qa, stem
from hrpo.data.rows import BadRowPolicy, Row

Loader = Callable[..., list[Row]]

# the modules a registry ``loader`` ("stem.load_gsm8k") may name
_MODULES: dict[str, ModuleType] = {"stem": stem, "qa": qa}

BENCHMARKS: dict[str, benchmarks.Benchmark] = {
    key: b for key, b in benchmarks.BENCHMARKS.items() if b.loader is not None
}
"""The registry rows that have a loader (every benchmark but ``qa_file``, whose rows come from a given file)."""


def loader(name: str) -> Loader:
    """The loader function of benchmark ``name``, e.g. :func:`hrpo.data.stem.load_gsm8k`."""
    bench = benchmarks.get(name)
    if bench.loader is None:
        raise KeyError(f"benchmark {name!r} has no loader: its rows come from a file you pass")
    module, _, function = bench.loader.partition(".")
    return getattr(_MODULES[module], function)


def load_benchmark(
    name: str,
    split: str | None = None,
    data_dir: str | os.PathLike | None = None,
    skip_bad_rows: bool = False,
    policy: BadRowPolicy | None = None,
) -> list[Row]:
    """Rows of ``name``/``split`` (default: the paper's eval split) from ``data_dir``, ``HRPO_DATA_DIR`` or the hub.

    Malformed rows raise :class:`~hrpo.data.rows.MalformedRowError` naming file and line, unless
    ``skip_bad_rows`` (or a ``policy`` with ``skip=True``, whose ``skipped`` list then holds them).
    """
    if name not in BENCHMARKS:
        raise KeyError(f"unknown benchmark {name!r}; known: {', '.join(BENCHMARKS)}")
    policy = policy if policy is not None else BadRowPolicy(skip=skip_bad_rows)
    return loader(name)(split or BENCHMARKS[name].eval_split, data_dir=data_dir, policy=policy)
