"""HTTP retrieval server with Search-R1's API (FastAPI + uvicorn).

``POST /retrieve`` takes ``{"queries": [str, ...], "topk": 3, "return_scores": true}`` and answers
``{"result": [[{"document": {"id", "contents"}, "score": float}, ...], ...]}`` (one list per query, best
first); with ``return_scores`` false each inner item is the bare document, as in Search-R1. ``GET /health``
reports the index. Errors are 4xx with ``{"error": message}``. Run it with ``hrpo retrieval serve``.

Searches run one at a time behind a lock: on a few CPU cores concurrent torch/faiss calls only fight over
the same threads, and the event loop stays free to reject bad requests while a search runs. (FastAPI is
imported at module level because it resolves the endpoint annotations from this module's globals.)
"""

from __future__ import annotations

import hmac
import json
import socket
import threading
from dataclasses import dataclass
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from .search import Retriever


@dataclass(frozen=True)
class Limits:
    """Request limits: queries per request, top-k, body bytes, characters per query."""

    max_queries: int = 512
    max_topk: int = 100
    max_body_bytes: int = 1 << 20
    max_query_chars: int = 4096


class BadRequest(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status, self.message = status, message


def parse_request(body: bytes, limits: Limits, default_topk: int) -> tuple[list[str], int, bool]:
    """Validate a ``/retrieve`` body -> ``(queries, topk, return_scores)``; raises :class:`BadRequest`."""
    try:
        obj = json.loads(body)
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise BadRequest(400, f"body is not valid JSON: {err}") from None
    if not isinstance(obj, dict):
        raise BadRequest(422, "body must be a JSON object with a 'queries' list")
    queries = obj.get("queries")
    if not isinstance(queries, list) or not queries:
        raise BadRequest(422, "'queries' must be a non-empty list of strings")
    if len(queries) > limits.max_queries:
        raise BadRequest(413, f"{len(queries)} queries in one request; the limit is {limits.max_queries}")
    for i, q in enumerate(queries):
        if not isinstance(q, str) or not q.strip():
            raise BadRequest(422, f"queries[{i}] must be a non-empty string, got {json.dumps(q)[:80]}")
        if len(q) > limits.max_query_chars:
            raise BadRequest(
                413, f"queries[{i}] has {len(q)} characters; the limit is {limits.max_query_chars}"
            )
    topk = obj.get("topk", default_topk)
    if topk is None:  # Search-R1 clients send null to mean "server default"
        topk = default_topk
    if isinstance(topk, bool) or not isinstance(topk, int) or not 1 <= topk <= limits.max_topk:
        raise BadRequest(
            422, f"'topk' must be an integer in [1, {limits.max_topk}], got {json.dumps(topk)[:40]}"
        )
    return_scores = obj.get("return_scores", False)
    if not isinstance(return_scores, bool):
        raise BadRequest(422, "'return_scores' must be true or false")
    return queries, topk, return_scores


def create_app(
    retriever: Retriever,
    limits: Limits | None = None,
    default_topk: int = 3,
    api_key: str | None = None,
    info: dict[str, Any] | None = None,
):
    """The FastAPI app. With ``api_key`` set, requests need header ``X-API-Key: <key>`` (else 401)."""
    limits = limits or Limits()
    lock = threading.Lock()
    app = FastAPI(title="hrpo retrieval", docs_url=None, redoc_url=None)

    def error(status: int, message: str) -> JSONResponse:
        return JSONResponse({"error": message}, status_code=status)

    def authorised(request: Request) -> bool:
        if api_key is None:
            return True
        given = request.headers.get("x-api-key", "")
        return hmac.compare_digest(given.encode(), api_key.encode())

    def run_search(queries: list[str], topk: int):
        with lock:
            return retriever.search(queries, topk)

    @app.get("/health")
    async def health(request: Request):
        if not authorised(request):
            return error(401, "missing or wrong X-API-Key header")
        return {"status": "ok", **(info or {})}

    @app.post("/retrieve")
    async def retrieve(request: Request):
        if not authorised(request):
            return error(401, "missing or wrong X-API-Key header")
        declared = request.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > limits.max_body_bytes:
            return error(413, f"body of {declared} bytes; the limit is {limits.max_body_bytes}")
        body = b""
        async for (
            chunk
        ) in request.stream():  # counts bytes, so a missing/lying Content-Length cannot bypass it
            body += chunk
            if len(body) > limits.max_body_bytes:
                return error(413, f"body larger than the limit of {limits.max_body_bytes} bytes")
        try:
            queries, topk, return_scores = parse_request(body, limits, default_topk)
        except BadRequest as err:
            return error(err.status, err.message)
        hits = await run_in_threadpool(run_search, queries, topk)
        if return_scores:
            result = [[{"document": h.document(), "score": h.score} for h in per_q] for per_q in hits]
        else:
            result = [[h.document() for h in per_q] for per_q in hits]
        return {"result": result}

    return app


def bind_socket(host: str = "127.0.0.1", port: int = 0) -> socket.socket:
    """A listening TCP socket; ``port=0`` lets the OS pick a free port (read it with ``getsockname()``)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(128)
    return sock


class BackgroundServer:
    """uvicorn running ``app`` in a thread on an already-bound socket; ``stop()`` shuts it down.

    Used by tests and the benchmark (an ephemeral port on 127.0.0.1); ``serve`` is the foreground variant.
    """

    def __init__(self, app, host: str = "127.0.0.1", port: int = 0) -> None:
        import uvicorn

        self.sock = bind_socket(host, port)
        self.port = self.sock.getsockname()[1]
        self.url = f"http://{host}:{self.port}"
        config = uvicorn.Config(app, log_level="warning", access_log=False, lifespan="off")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]}, daemon=True)

    def start(self, timeout: float = 30.0) -> BackgroundServer:
        import time

        self.thread.start()
        deadline = time.monotonic() + timeout
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("uvicorn did not start")
            time.sleep(0.02)
        return self

    def stop(self, timeout: float = 10.0) -> None:
        self.server.should_exit = True
        self.thread.join(timeout)
        self.sock.close()

    def __enter__(self) -> BackgroundServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def serve(app, host: str = "127.0.0.1", port: int = 8000) -> None:
    """Serve ``app`` in the foreground until interrupted."""
    import uvicorn

    uvicorn.run(app, host=host, port=port, log_level="info")
