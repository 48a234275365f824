"""Documents by FAISS row, read from the corpus file through saved byte offsets.

Holding 21M wiki-18 passages as Python strings costs ~15 GB; an int64 offset per passage costs 168 MB and a
read per hit is a page-cache hit on a warm server. ``os.pread`` needs no shared file position, so lookups are
safe from many server threads at once.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

import numpy as np

from .corpus import CorpusError, parse_record


class DocStore:
    """``get(row) -> {"id", "contents"}`` for rows of a corpus scanned by :func:`retrieval.corpus.scan_corpus`."""

    def __init__(self, corpus_path: str | os.PathLike, offsets: np.ndarray, check: bool = True) -> None:
        """``check``: read the first and last record now, so a corpus that changed since the build (edited,
        truncated, another file) fails at load with :class:`CorpusError` rather than on some later search."""
        self.path = Path(corpus_path)
        self.offsets = np.asarray(offsets, dtype=np.int64)  # (n + 1,)
        if not self.path.is_file():
            raise CorpusError(
                f"corpus {self.path} (recorded in the index's meta.json) not found; pass the corpus the "
                "index was built from with --corpus"
            )
        size = self.path.stat().st_size
        if int(self.offsets[-1]) > size:
            raise CorpusError(
                f"corpus {self.path} is {size} bytes but the index expects at least {int(self.offsets[-1])}: "
                "it is cut short or not the file the index was built from; pass the original with --corpus, "
                "or rebuild the index over this file"
            )
        self._fd = os.open(self.path, os.O_RDONLY)
        if check and len(self):
            for row in {0, len(self) - 1}:
                try:
                    self.get(row)
                except CorpusError as err:
                    raise CorpusError(
                        f"{err} -- row {row} of the index does not start a record in {self.path}: the corpus "
                        "changed since the build; pass the original with --corpus, or rebuild the index"
                    ) from None

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def get(self, row: int) -> dict[str, str]:
        """The document at FAISS row ``row`` in Search-R1's shape ``{"id": ..., "contents": ...}``."""
        if not 0 <= row < len(self):
            raise IndexError(f"row {row} outside corpus of {len(self)} passages")
        start, end = int(self.offsets[row]), int(self.offsets[row + 1])
        raw = os.pread(self._fd, end - start, start)
        pid, contents = parse_record(raw, f"{self.path}@byte{start}", whole_line=False)
        return {"id": pid, "contents": contents}

    def get_many(self, rows: list[int]) -> list[dict[str, str]]:
        return [self.get(r) for r in rows]

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def __del__(self) -> None:  # best effort; fds are also freed at exit
        with contextlib.suppress(Exception):
            self.close()
