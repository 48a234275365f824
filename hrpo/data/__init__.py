"""Benchmark data for HRPO: one row schema (:mod:`hrpo.data.rows`), loaders for every benchmark of the registry
:mod:`hrpo.benchmarks` (hub or a local directory, :mod:`hrpo.data.sources`), and the merged training sets
(:mod:`hrpo.data.build`).

Typical use::

    from hrpo.data import load_benchmark
    rows = load_benchmark("gsm8k", "train", data_dir="../shared/data")
"""

from hrpo.data.build import build_merged, ensure_contexts, read_rows, write_jsonl
from hrpo.data.loaders import BENCHMARKS, load_benchmark
from hrpo.data.rows import BadRowPolicy, DataSourceError, MalformedRowError, Row
from hrpo.data.sources import ENV_DATA_DIR, resolve_data_dir

__all__ = [
    "BENCHMARKS",
    "ENV_DATA_DIR",
    "BadRowPolicy",
    "DataSourceError",
    "MalformedRowError",
    "Row",
    "build_merged",
    "ensure_contexts",
    "load_benchmark",
    "read_rows",
    "resolve_data_dir",
    "write_jsonl",
]
