"""HTTP retrieval server with Search-R1's API (FastAPI + uvicorn).

``POST /retrieve`` takes ``{"queries": [str, ...], "topk": 3, "return_scores": true}`` and answers
``{"result": [[{"document": {"id", "contents"}, "score": float}, ...], ...]}`` (one list per query, best
first); with ``return_scores`` false each inner item is the bare document, as in Search-R1. ``GET /health``
reports the index. Every error the app answers is JSON ``{"error": message}``: a 4xx for a client fault (the
body is validated completely before anything uses it), a logged 500 only for a fault of the server itself.
Run it with ``hrpo retrieval serve``.

Searches run one at a time behind a lock: on a few CPU cores concurrent torch/faiss calls only fight over
the same threads, and the event loop stays free to reject bad requests and to read slow bodies while a
search runs. (FastAPI is imported at module level because it resolves the endpoint annotations from this
module's globals.)
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
import socket
import threading
from dataclasses import dataclass
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect

from .search import Retriever

log = logging.getLogger(__name__)

ROUTES = "GET /health, POST /retrieve"
REQUEST_KEYS = ("queries", "topk", "return_scores")
OPEN_PATHS = frozenset({"/health"})  # answered without the API key (liveness probes)
MAX_INT_DIGITS = 20  # longer JSON integers are refused before Python converts them (CPython caps at 4300)
GRACEFUL_SHUTDOWN_S = 5.0  # uvicorn waits this long for open requests on shutdown, then closes them


@dataclass(frozen=True)
class Limits:
    """Request limits: queries per request, top-k, body bytes, characters per query, seconds to send a body.

    ``body_timeout_s`` bounds how long one request may take to upload its body (a client trickling bytes, or
    one whose ``Content-Length`` promises more than it sends, gets 408 and its connection closed).
    """

    max_queries: int = 512
    max_topk: int = 100
    max_body_bytes: int = 1 << 20
    max_query_chars: int = 4096
    body_timeout_s: float = 30.0


class BadRequest(Exception):
    """A client fault: answered with ``status`` and ``{"error": message}``."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status, self.message = status, message


def _describe(value: Any) -> str:
    """A short, safe description of a JSON value for an error message (containers by type, never dumped)."""
    if isinstance(value, (dict, list)):
        return f"a JSON {'object' if isinstance(value, dict) else 'array'}"
    text = json.dumps(value, ensure_ascii=True)  # scalars only: no recursion, no unencodable characters
    return text if len(text) <= 40 else text[:37] + "..."


def _parse_int(digits: str) -> int:
    n = len(digits.lstrip("-"))
    if n > MAX_INT_DIGITS:
        raise BadRequest(422, f"a number in the body has {n} digits; the fields take small integers")
    return int(digits)


def _refuse_constant(name: str) -> None:
    raise BadRequest(400, f"body is not valid JSON: {name} is not a JSON number (RFC 8259)")


def _loads(body: bytes) -> Any:
    """Strict JSON: no NaN/Infinity, no giant integers; nesting too deep for Python's parser is a 400."""
    try:
        return json.loads(body, parse_int=_parse_int, parse_constant=_refuse_constant)
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise BadRequest(400, f"body is not valid UTF-8 JSON: {err}") from None
    except RecursionError:
        raise BadRequest(400, "body is not usable JSON: nested too deeply") from None


def parse_request(body: bytes, limits: Limits, default_topk: int) -> tuple[list[str], int, bool]:
    """Validate a ``/retrieve`` body -> ``(queries, topk, return_scores)``; raises :class:`BadRequest`."""
    obj = _loads(body)
    if not isinstance(obj, dict):
        raise BadRequest(422, f"body must be a JSON object with a 'queries' list, got {_describe(obj)}")
    unknown = sorted(set(obj) - set(REQUEST_KEYS))
    if unknown:
        names = ", ".join(json.dumps(k, ensure_ascii=True)[:40] for k in unknown[:5])
        raise BadRequest(422, f"unknown field(s) {names}; the fields are {', '.join(REQUEST_KEYS)}")
    queries = obj.get("queries")
    if not isinstance(queries, list) or not queries:
        got = "nothing" if queries is None else _describe(queries)
        raise BadRequest(422, f"'queries' must be a non-empty list of strings, got {got}")
    if len(queries) > limits.max_queries:
        raise BadRequest(413, f"{len(queries)} queries in one request; the limit is {limits.max_queries}")
    for i, q in enumerate(queries):
        if not isinstance(q, str) or not q.strip():
            raise BadRequest(422, f"queries[{i}] must be a non-empty string, got {_describe(q)}")
        if len(q) > limits.max_query_chars:
            raise BadRequest(
                413, f"queries[{i}] has {len(q)} characters; the limit is {limits.max_query_chars}"
            )
        try:  # JSON's \ud800-style escapes can smuggle in lone surrogates, which tokenizers cannot take
            q.encode("utf-8")
        except UnicodeEncodeError as err:
            raise BadRequest(
                422, f"queries[{i}] has a lone UTF-16 surrogate at character {err.start}; send valid Unicode"
            ) from None
    topk = obj.get("topk", default_topk)
    if topk is None:  # Search-R1 clients send null to mean "server default"
        topk = default_topk
    if isinstance(topk, bool) or not isinstance(topk, int) or not 1 <= topk <= limits.max_topk:
        raise BadRequest(422, f"'topk' must be an integer in [1, {limits.max_topk}], got {_describe(topk)}")
    return_scores = obj.get("return_scores", False)
    if not isinstance(return_scores, bool):
        raise BadRequest(422, f"'return_scores' must be true or false, got {_describe(return_scores)}")
    return queries, topk, return_scores


async def read_body(request: Request, limits: Limits) -> bytes:
    """The request body, refused (413) past ``max_body_bytes`` and (408) when slower than ``body_timeout_s``.

    Bytes are counted as they arrive, so a missing or lying ``Content-Length`` cannot bypass the limit.
    """
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limits.max_body_bytes:
        raise BadRequest(413, f"body of {declared[:40]} bytes; the limit is {limits.max_body_bytes}")
    content_type = request.headers.get("content-type")
    if content_type is not None:
        media = content_type.split(";", 1)[0].strip().lower()
        if media != "application/json" and not media.endswith("+json"):
            raise BadRequest(415, f"content-type {content_type[:60]!r}; send application/json (or none)")
    body = bytearray()
    try:
        async with asyncio.timeout(limits.body_timeout_s):
            async for chunk in request.stream():
                body += chunk
                if len(body) > limits.max_body_bytes:
                    raise BadRequest(413, f"body larger than the limit of {limits.max_body_bytes} bytes")
    except TimeoutError:
        raise BadRequest(
            408, f"body not complete after {limits.body_timeout_s:g} s ({len(body)} bytes arrived)"
        ) from None
    except ClientDisconnect:  # nobody is left to read the answer; keep it a 4xx all the same
        raise BadRequest(400, "client disconnected before the body was complete") from None
    return bytes(body)


def _error(status: int, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status, headers=headers)


def _digest(key: bytes) -> bytes:
    # Comparing fixed-length digests keeps hmac.compare_digest's time independent of the key's length, too.
    return hashlib.sha256(key).digest()


def key_matches(scope, want: bytes) -> bool:
    """Whether the request's ``X-API-Key`` header (raw bytes) hashes to ``want``; constant-time comparison."""
    given = next((v for k, v in scope.get("headers", []) if k == b"x-api-key"), b"")
    return hmac.compare_digest(_digest(given), want)


class ApiKeyMiddleware:
    """ASGI middleware: every path but :data:`OPEN_PATHS` needs header ``X-API-Key`` equal to the key (else 401).

    It runs before routing, so without the key unknown paths are 401 as well (no probing for routes). The
    header's raw bytes are compared with the key's UTF-8 bytes in constant time; neither is ever logged.
    """

    def __init__(self, app, want: bytes) -> None:
        self.app, self.want = app, want

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] == "http" and scope["path"] not in OPEN_PATHS and not key_matches(scope, self.want):
            response = _error(401, "missing or wrong X-API-Key header", {"WWW-Authenticate": "X-API-Key"})
            await response(scope, receive, send)
            return
        await self.app(scope, receive, send)


def create_app(
    retriever: Retriever,
    limits: Limits | None = None,
    default_topk: int = 3,
    api_key: str | None = None,
    info: dict[str, Any] | None = None,
):
    """The FastAPI app. With ``api_key`` set, every route but ``/health`` needs header ``X-API-Key: <key>``.

    ``/health`` always answers ``{"status": "ok"}``; the ``info`` fields (index path, method) are added only
    for a caller that may see them (no key configured, or the right key sent).
    """
    limits = limits or Limits()
    want = None if api_key is None else _digest(api_key.encode("utf-8"))
    lock = threading.Lock()
    app = FastAPI(
        title="hrpo retrieval", docs_url=None, redoc_url=None, openapi_url=None, redirect_slashes=False
    )

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException):
        # Routing's 404/405 (and any HTTPException) in this server's error format, with their headers (Allow).
        where = f"{request.method[:20]} {request.url.path[:200]}"
        message = f"{exc.detail}: {where}; the routes are {ROUTES}"
        return _error(exc.status_code, message, dict(exc.headers or {}))

    @app.exception_handler(Exception)
    async def server_fault(request: Request, exc: Exception):
        # Last resort for a bug in this server (client faults never get here): JSON 500; Starlette then
        # re-raises, so uvicorn logs the traceback. No request data (headers, body) goes into the message.
        return _error(500, "internal server error (logged by the server)")

    def run_search(queries: list[str], topk: int):
        with lock:
            return retriever.search(queries, topk)

    @app.get("/health")
    async def health(request: Request):
        may_see = want is None or key_matches(request.scope, want)
        return {"status": "ok", **((info or {}) if may_see else {})}

    @app.post("/retrieve")
    async def retrieve(request: Request):
        try:
            body = await read_body(request, limits)
            queries, topk, return_scores = parse_request(body, limits, default_topk)
        except BadRequest as err:
            return _error(err.status, err.message)
        try:
            hits = await run_in_threadpool(run_search, queries, topk)
        except Exception:  # a valid request that the retriever failed on: the server's fault
            log.exception("search failed for %d queries, topk %d", len(queries), topk)
            return _error(500, "search failed (logged by the server)")
        if return_scores:
            result = [[{"document": h.document(), "score": h.score} for h in per_q] for per_q in hits]
        else:
            result = [[h.document() for h in per_q] for per_q in hits]
        return {"result": result}

    if want is not None:
        app.add_middleware(ApiKeyMiddleware, want=want)
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

    def __init__(
        self,
        app,
        host: str = "127.0.0.1",
        port: int = 0,
        log_level: str = "warning",
        access_log: bool = False,
    ) -> None:
        import uvicorn

        self.sock = bind_socket(host, port)
        self.port = self.sock.getsockname()[1]
        self.url = f"http://{host}:{self.port}"
        config = uvicorn.Config(
            app,
            log_level=log_level,
            access_log=access_log,
            lifespan="off",
            timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_S,
        )
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
    """Serve ``app`` in the foreground until interrupted (access log on; it never shows headers or bodies)."""
    import uvicorn

    uvicorn.run(app, host=host, port=port, log_level="info", timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_S)
