"""FAISS retrieval for HRPO's RAG tasks: build indexes, search (dense, BM25, fused), serve, attach contexts.

The repository folder ``retrieval/`` installs as the package ``hrpo.retrieval`` (import it by that name; in a
checkout the folder name ``retrieval`` also imports, as a second copy). Its modules import each other
relatively and never import the rest of ``hrpo``: model names are hub ids or folders, and short aliases such as
``minilm`` come from an entry point (see :func:`hrpo.retrieval.encoders.model_path`). The command line over it
is ``hrpo retrieval`` (:mod:`hrpo.commands.retrieval`).

Modules, one job each:

* :mod:`hrpo.retrieval.corpus` -- stream a jsonl corpus (``id,title,text`` or ``id,contents``), byte offsets, checksum.
* :mod:`hrpo.retrieval.docstore` -- fetch documents by row from the corpus file through saved byte offsets.
* :mod:`hrpo.retrieval.encoders` -- HF encoders (mean/CLS pooling, L2 norm, e5 prefixes), length-sorted batches.
* :mod:`hrpo.retrieval.index` -- FAISS index build (factory strings, training, chunked adds, shards), meta, load.
* :mod:`hrpo.retrieval.search` -- dense, BM25 and reciprocal-rank-fused retrievers with one ``search`` method.
* :mod:`hrpo.retrieval.server` -- FastAPI app with Search-R1's ``POST /retrieve`` and ``GET /health``.
* :mod:`hrpo.retrieval.attach` -- add top-k ``contexts`` to QA rows (:func:`hrpo.retrieval.attach.attach_contexts`).

Heavy libraries (torch, faiss, transformers, bm25s) are imported inside functions so that importing this
package, and ``hrpo --help``, stays fast.
"""
