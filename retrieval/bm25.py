"""BM25 over the same corpus rows as the dense index, with ``bm25s`` (sparse matrices, numpy scoring).

The BM25 index lives in ``<index_dir>/bm25/`` and shares the dense index's row numbering and offsets, so hits
resolve to documents through the same :class:`retrieval.docstore.DocStore`. bm25s keeps the token lists of the
whole corpus in memory while indexing: fine for millions of passages, about 10-20 GB at wiki-18's 21M.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from .corpus import iter_corpus

BM25_DIR = "bm25"


def _tokenize(texts: list[str], ids: bool, show_progress: bool = False):
    import bm25s

    return bm25s.tokenize(texts, stopwords="en", return_ids=ids, show_progress=show_progress)


def build_bm25(
    corpus: str | os.PathLike,
    index_dir: str | os.PathLike,
    limit: int | None = None,
    show_progress: bool = True,
) -> Path:
    """Index ``corpus`` (first ``limit`` passages) with BM25 into ``index_dir/bm25``; returns that folder."""
    import bm25s

    texts = [p.contents for p in iter_corpus(corpus, limit=limit)]
    model = bm25s.BM25()
    model.index(_tokenize(texts, ids=True, show_progress=show_progress), show_progress=show_progress)
    out = Path(index_dir) / BM25_DIR
    model.save(str(out), show_progress=False)
    return out


class BM25Index:
    """Loaded BM25 scorer: ``search(queries, k) -> (scores (q, k) float32, rows (q, k) int64)``, -1 = no hit."""

    def __init__(self, index_dir: str | os.PathLike, mmap: bool = False) -> None:
        import bm25s

        folder = Path(index_dir) / BM25_DIR
        if not folder.is_dir():
            raise FileNotFoundError(f"no BM25 index in {index_dir} (build with --bm25)")
        self.model = bm25s.BM25.load(str(folder), mmap=mmap, show_progress=False)
        self.count = int(self.model.scores["num_docs"])

    def search(self, queries: list[str], k: int) -> tuple[np.ndarray, np.ndarray]:
        k_eff = min(k, self.count)
        rows, scores = self.model.retrieve(
            _tokenize(queries, ids=False), k=k_eff, show_progress=False, n_threads=1
        )
        rows = np.asarray(rows, dtype=np.int64)
        scores = np.asarray(scores, dtype=np.float32)
        rows[scores <= 0] = -1  # bm25s pads queries with no matching term with score-0 rows: not hits
        if k_eff < k:
            pad = ((0, 0), (0, k - k_eff))
            rows = np.pad(rows, pad, constant_values=-1)
            scores = np.pad(scores, pad, constant_values=-np.inf)
        return scores, rows
