"""Issue 15 item 6: hostile input. A fixed-seed series of 3,000 requests in 12 families against the in-process
server (tiny MiniLM index): every answer of the app is a 4xx with a JSON ``{"error": str}`` body, or a 200 with
the correct result for a valid request; never a 5xx, never a hang (every client has a timeout), no error logged
by the server; afterwards a valid request is still answered correctly.

Requests that are not HTTP at all (raw-socket families) never reach the app: uvicorn's parser answers those with
its own plain-text 400 or closes the connection; the test accepts exactly that (still no 5xx, no hang).

Runtime: about 30-40 s on 2 busy CPU cores (3 cases wait out the 2 s body timeout on purpose).
Reproduce the figures: ``pytest -s -q tests/retrieval/test_server_fuzz.py`` (the summary is printed).
"""

from __future__ import annotations

import json
import logging
import random
import socket
import string
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import httpx
import pytest

from hrpo.retrieval.server import BackgroundServer, Limits, create_app

SEED = 15
N_REQUESTS = 3000
CLIENT_TIMEOUT_S = 10.0  # any wait longer than this is a hang
WORKERS = 8
LIMITS = Limits(max_queries=16, max_topk=20, max_body_bytes=16_384, max_query_chars=500, body_timeout_s=2.0)
WORDS = ["music", "film", "painting", "river", "king", "war", "science", "city", "novel", "opera", "ship"]
WRONG_VALUES = [None, True, False, 0, -1, 7, 2.5, 1e308, "", "3", "yes", [], [1], ["a"], {}, {"a": 1}]


@dataclass
class Case:
    """One request: over httpx (``method``/``path``/``body``/``headers``) or, with ``raw``, bytes on a socket."""

    family: str
    method: str = "POST"
    path: str = "/retrieve"
    body: bytes | Iterator[bytes] | None = None  # an iterator is sent chunked (no Content-Length)
    headers: dict[str, str] = field(default_factory=lambda: {"content-type": "application/json"})
    raw: bytes | None = None
    half_close: bool = True  # raw: shut our side after sending (else the server waits for the rest)
    valid: dict | None = None  # a valid /retrieve request: its answer is checked against in-process search
    expect: int | None = None  # exact status where the family pins it


def _json(obj) -> bytes:
    return json.dumps(obj).encode()


def _valid_request(rng: random.Random) -> dict:
    n = rng.choice([1, 1, 2, 3, 5, 8, LIMITS.max_queries])
    queries = [" ".join(rng.choices(WORDS, k=rng.randint(1, 4))) for _ in range(n)]
    req: dict = {"queries": queries}
    if rng.random() < 0.8:
        req["topk"] = rng.choice([None, rng.randint(1, LIMITS.max_topk)])
    if rng.random() < 0.8:
        req["return_scores"] = rng.random() < 0.5
    return req


# ---------------------------------------------------------------------------------------------- the families


def random_bytes(rng: random.Random) -> Case:
    body = rng.randbytes(rng.randint(0, 2000))
    ctype = rng.choice([{"content-type": "application/json"}, {}])
    return Case("random_bytes", body=body, headers=ctype)


def invalid_utf8(rng: random.Random) -> Case:
    bad = rng.choice([b"\xff", b"\xc3\x28", b"\xed\xa0\x80", b"\xf8\x88\x80\x80\x80", b"\x80", b"\xe2\x82"])
    template = rng.choice([b'{"queries": ["a%sb"]}', b'{"queries": ["ok"], "topk": %s}', b"%s", b'{"%s": 1}'])
    if rng.random() < 0.4:  # valid bytes, invalid Unicode: a lone surrogate escape inside a query
        surrogate = rng.choice([b"\\ud800", b"\\udfff", b"x\\udbff", b"\\ud83d"])
        return Case("invalid_utf8", body=b'{"queries": ["' + surrogate + b'"]}', expect=422)
    return Case("invalid_utf8", body=template.replace(b"%s", bad))


def deep_nesting(rng: random.Random) -> Case:
    depth = rng.choice([64, 500, 990, 1000, 3000, 8000])  # the largest fit the 16 KiB limit, too
    opener, closer = rng.choice([(b"[", b"]"), (b'{"a":', b"}")])
    nested = opener * depth + b"1" + closer * depth
    where = rng.choice(["top", "queries", "query", "topk", "extra"])
    body = {
        "top": nested,
        "queries": b'{"queries": ' + nested + b"}",
        "query": b'{"queries": [' + nested + b"]}",
        "topk": b'{"queries": ["a"], "topk": ' + nested + b"}",
        "extra": b'{"queries": ["a"], "return_scores": ' + nested + b"}",
    }[where]
    return Case("deep_nesting", body=body)


def huge_arrays(rng: random.Random) -> Case:
    n = rng.choice([17, 100, 1000, 5000, 100_000])
    item = rng.choice([b'"q"', b"1", b"null", b"[]"])
    field_ = rng.choice([b"queries", b"topk", b"return_scores"])
    body = b'{"' + field_ + b'": [' + b",".join([item] * n) + b"]}"
    return Case("huge_arrays", body=body, expect=413 if len(body) > LIMITS.max_body_bytes else None)


def wrong_types(rng: random.Random) -> Case:
    req = _valid_request(rng)
    target = rng.choice(["queries", "query", "topk", "return_scores", "body", "unknown_field"])
    value = rng.choice(WRONG_VALUES)
    if target == "queries":
        req["queries"] = value if not (isinstance(value, list) and value and value[0] == "a") else [1]
    elif target == "query":
        bad = value if not (isinstance(value, str) and value.strip()) else 5
        req["queries"][rng.randrange(len(req["queries"]))] = bad
    elif target == "topk":
        req["topk"] = rng.choice(
            [v for v in WRONG_VALUES if v is not None and not (type(v) is int and v > 0)]
        )
    elif target == "return_scores":
        req["return_scores"] = value if not isinstance(value, bool) else "true"
    elif target == "unknown_field":
        req[rng.choice(["top_k", "query", "k", "", "queries "])] = value
        return Case("wrong_types", body=_json(req), expect=422)
    else:
        return Case("wrong_types", body=_json(value), expect=422)
    return Case("wrong_types", body=_json(req), expect=422)


def nan_infinity(rng: random.Random) -> Case:
    const = rng.choice([b"NaN", b"Infinity", b"-Infinity", b"1e999", b"-1e999", b"nan", b"inf"])
    template = rng.choice(
        [
            b'{"queries": ["a"], "topk": %s}',
            b'{"queries": [%s]}',
            b'{"queries": ["a"], "return_scores": %s}',
            b"%s",
        ]
    )
    return Case("nan_infinity", body=template.replace(b"%s", const))


def topk_edges(rng: random.Random) -> Case:
    ints = [b"0", b"-1", b"-100", b"21", b"100", b"1000000", b"9" * 30, b"9" * 5000, b"-" + b"9" * 5000]
    others = [b"2.5", b"3.0", b"1e2", b"-0.0", b"1E400", b"true", b'"5"', b"[3]", b"{}"]
    value = rng.choice(ints + others)
    return Case("topk_edges", body=b'{"queries": ["music"], "topk": ' + value + b"}", expect=422)


def empty_queries(rng: random.Random) -> Case:
    blank = rng.choice(["", " ", "\t\n", "\u3000", "\u00a0\u2003", "\r\n \r\n"])
    queries = rng.choice([[blank], ["ok", blank], [], [blank] * 16])
    return Case("empty_queries", body=_json({"queries": queries, "topk": 2}), expect=422)


def oversized(rng: random.Random) -> Case:
    kind = rng.choice(["body", "query_chars", "chunked", "declared"])
    if kind == "body":
        return Case("oversized", body=_json({"queries": ["x" * 400] * 41}), expect=413)
    if kind == "query_chars":
        return Case("oversized", body=_json({"queries": ["y" * (LIMITS.max_query_chars + 1)]}), expect=413)
    if kind == "declared":  # a Content-Length over the limit is refused before any byte is read
        big = rng.choice([16_385, 10**9, 10**19, 10**30])  # h11 itself refuses lengths of 21+ digits
        raw = f"POST /retrieve HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {big}\r\n\r\n"
        return Case(
            "oversized", raw=raw.encode() + b'{"queries": ["a"]}', expect=413 if big < 10**20 else None
        )
    big = b'{"queries": ["' + b"z" * 20_000 + b'"]}'  # chunked: no Content-Length to refuse it by
    return Case("oversized", body=iter([big[i : i + 4096] for i in range(0, len(big), 4096)]), expect=413)


def content_types(rng: random.Random) -> Case:
    """Non-JSON media types are 415; JSON ones (any case, parameters, +json) are served."""
    wrong = ["text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x"]
    wrong += ["application/xml", "", "json", "application/jsonx", "*/*", "text/json"]
    right = ["application/json; charset=utf-8", "APPLICATION/JSON", "application/vnd.api+json"]
    ctype = rng.choice(wrong + right)
    req = _valid_request(rng)
    if ctype not in right:
        return Case("content_types", body=_json(req), headers={"content-type": ctype}, expect=415)
    if rng.random() < 0.3:
        return Case("content_types", body=b"queries=a&topk=3", headers={"content-type": ctype}, expect=400)
    return Case("content_types", body=_json(req), headers={"content-type": ctype}, valid=req, expect=200)


def paths_methods(rng: random.Random) -> Case:
    method = rng.choice(["GET", "PUT", "DELETE", "PATCH", "OPTIONS", "HEAD", "TRACE", "BREW", "POST"])
    paths = [
        "/retrieve",
        "/health",
        "/",
        "/retrieve/",
        "/RETRIEVE",
        "/docs",
        "/openapi.json",
        "/../etc/passwd",
    ]
    paths += [
        "/%ff%fe",
        "/" + "a" * 3000,
        "/retrieve?topk=3",
        "/" + "".join(rng.choices(string.ascii_letters, k=12)),
    ]
    path = rng.choice(paths)
    if (method, path.split("?")[0]) in {("POST", "/retrieve"), ("GET", "/health")}:
        method = "PUT"
    return Case("paths_methods", method=method, path=path, body=b"{}" if method in ("POST", "PUT") else None)


def raw_protocol(rng: random.Random) -> Case:
    """Bytes that are not (valid) HTTP, and lying Content-Lengths, over a plain socket."""
    good = b'{"queries": ["music"], "topk": 2}'
    head = b"POST /retrieve HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
    kind = rng.choice(["garbage", "bad_length", "two_lengths", "short_length", "bad_chunks", "big_header"])
    if kind == "garbage":
        return Case("raw_protocol", raw=rng.randbytes(rng.randint(1, 3000)))
    if kind == "bad_length":
        value = rng.choice([b"abc", b"-5", b"1e3", b"0x10", b" ", b"12 34", b"\xff"])
        return Case("raw_protocol", raw=head + b"Content-Length: " + value + b"\r\n\r\n" + good)
    if kind == "two_lengths":
        return Case("raw_protocol", raw=head + b"Content-Length: 33\r\nContent-Length: 5\r\n\r\n" + good)
    if kind == "short_length":  # declares fewer bytes than it sends: the cut body is not JSON
        return Case("raw_protocol", raw=head + b"Content-Length: 10\r\n\r\n" + good, expect=400)
    if kind == "bad_chunks":
        return Case("raw_protocol", raw=head + b"Transfer-Encoding: chunked\r\n\r\nzz\r\nabc\r\n0\r\n\r\n")
    return Case("raw_protocol", raw=head + b"X-Pad: " + b"p" * 70_000 + b"\r\n\r\n" + good)


def valid(rng: random.Random) -> Case:
    req = _valid_request(rng)
    return Case("valid", body=_json(req), valid=req, expect=200)


FAMILIES: list[tuple[Callable[[random.Random], Case], int]] = [  # (family, weight)
    (random_bytes, 3),
    (invalid_utf8, 2),
    (deep_nesting, 2),
    (huge_arrays, 2),
    (wrong_types, 4),
    (nan_infinity, 2),
    (topk_edges, 2),
    (empty_queries, 2),
    (oversized, 2),
    (content_types, 2),
    (paths_methods, 3),
    (raw_protocol, 2),
    (valid, 1),
]


def lying_length_cases() -> list[Case]:
    """Content-Length promises more than is sent and the client stalls: 408 after ``body_timeout_s``."""
    head = (
        b"POST /retrieve HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 200\r\n\r\n"
    )
    return [Case("lying_length", raw=head + b'{"queries": [', half_close=False, expect=408) for _ in range(3)]


def make_cases(n: int, seed: int) -> list[Case]:
    rng = random.Random(seed)
    funcs, weights = zip(*FAMILIES, strict=True)
    cases = [rng.choices(funcs, weights)[0](rng) for _ in range(n - 3)] + lying_length_cases()
    rng.shuffle(cases)
    return cases


# ---------------------------------------------------------------------------------------------- running them


def _raw_exchange(port: int, case: Case) -> tuple[str, bytes, bytes]:
    """Send ``case.raw``; -> (status or "closed", headers, body). Raises ``TimeoutError`` on a hang."""
    with socket.create_connection(("127.0.0.1", port), timeout=CLIENT_TIMEOUT_S) as sock:
        try:
            sock.sendall(case.raw)
            if case.half_close:
                sock.shutdown(socket.SHUT_WR)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the server answered and closed before taking everything: read what it said
        data = b""
        try:
            while True:
                chunk = sock.recv(65536)
                if not chunk:
                    break
                data += chunk
                head, sep, body = data.partition(b"\r\n\r\n")
                if sep:
                    length = next(
                        (
                            int(line.split(b":", 1)[1])
                            for line in head.split(b"\r\n")
                            if line.lower().startswith(b"content-length:")
                        ),
                        None,
                    )
                    if length is not None and len(body) >= length:
                        break
        except ConnectionResetError:
            pass
    if not data:
        return "closed", b"", b""
    head, _, body = data.partition(b"\r\n\r\n")
    return head.split(b" ", 2)[1].decode(), head, body


class Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_hostile_requests_get_4xx_json_never_5xx_or_hang(tiny_retriever):
    cases = make_cases(N_REQUESTS, SEED)
    # The answers valid requests must get, computed before the server runs (same batches as the server's).
    expected = {
        i: _ids(tiny_retriever.search(c.valid["queries"], c.valid.get("topk") or 3))
        for i, c in enumerate(cases)
        if c.valid is not None
    }
    app = create_app(tiny_retriever, LIMITS, default_topk=3, info={"index": "tiny"})
    records = Records()
    loggers = [logging.getLogger(name) for name in ("uvicorn", "uvicorn.error", "hrpo.retrieval.server")]
    with BackgroundServer(app) as srv:
        for lg in loggers:
            lg.addHandler(records)

        def worker(w: int) -> list[tuple[int, str, str | None]]:
            # Several clients at once: on a loaded machine each round trip waits on the scheduler.
            with httpx.Client(base_url=srv.url, timeout=CLIENT_TIMEOUT_S) as client:
                return [
                    (i, *run_case(client, srv.port, cases[i], expected.get(i)))
                    for i in range(w, len(cases), WORKERS)
                ]

        try:
            with ThreadPoolExecutor(WORKERS) as pool:
                answers = [a for part in pool.map(worker, range(WORKERS)) for a in part]
            # afterwards the server still answers a valid request correctly
            after = {"queries": ["opera composer", "space film"], "topk": 3, "return_scores": True}
            resp = httpx.post(srv.url + "/retrieve", json=after, timeout=CLIENT_TIMEOUT_S)
            assert resp.status_code == 200, resp.text
            got = [[d["document"]["id"] for d in per_q] for per_q in resp.json()["result"]]
            assert got == _ids(tiny_retriever.search(after["queries"], 3))
            health = httpx.get(srv.url + "/health", timeout=CLIENT_TIMEOUT_S).json()
            assert health == {"status": "ok", "index": "tiny"}
        finally:
            for lg in loggers:
                lg.removeHandler(records)

    statuses = Counter(status for _, status, _ in answers)
    per_family: dict[str, Counter] = {}
    for i, status, _ in answers:
        per_family.setdefault(cases[i].family, Counter())[status] += 1
    print(f"\n{len(answers)} requests, seed {SEED}; status histogram: {dict(sorted(statuses.items()))}")
    for family, counts in sorted(per_family.items()):
        print(f"  {family:14s} {sum(counts.values()):5d}  {dict(sorted(counts.items()))}")
    failures = [f"#{i} {cases[i].family}: {problem}" for i, _, problem in sorted(answers) if problem]
    assert not failures, f"{len(failures)} bad answers:\n" + "\n".join(failures[:30])
    assert len(answers) == N_REQUESTS
    assert not any(s.startswith("5") or s == "hang" for s in statuses), statuses
    errors = [r.getMessage() for r in records.records if r.levelno >= logging.ERROR]
    assert not errors, f"the server logged errors: {errors[:5]}"
    # the capture works: uvicorn's warnings for the raw non-HTTP bytes are in it
    assert any("Invalid HTTP request" in r.getMessage() for r in records.records)
    assert statuses["200"] >= 50 and len(per_family) == len(FAMILIES) + 1  # the series did exercise all


def _ids(hits) -> list[list[str]]:
    return [[h.id for h in per_q] for per_q in hits]


def run_case(
    client: httpx.Client, port: int, case: Case, expected: list[list[str]] | None
) -> tuple[str, str | None]:
    """Send one case -> (status, problem or None); ``expected``: the ids a valid request must get."""
    if case.raw is not None:
        try:
            status, head, body = _raw_exchange(port, case)
        except TimeoutError:
            return "hang", f"no answer within {CLIENT_TIMEOUT_S} s"
        if status == "closed":
            ok = case.expect is None and case.family == "raw_protocol"
            return status, None if ok else "connection closed without an answer"
        if b"application/json" in head.lower():
            problem = _check_json_error(int(status), body, case)
        elif status == "400" and case.expect is None:
            problem = None  # uvicorn's parser refused bytes that are not HTTP (its text/plain 400)
        else:
            problem = f"status {status} without a JSON error body: {head[:200]!r}"
        return status, problem
    try:
        resp = client.request(case.method, case.path, content=case.body, headers=case.headers)
    except httpx.TimeoutException:
        return "hang", f"no answer within {CLIENT_TIMEOUT_S} s"
    status = str(resp.status_code)
    if case.valid is not None:
        if resp.status_code != 200:
            return status, f"valid request refused: {resp.text[:200]}"
        got = [
            [d["document"]["id"] if "document" in d else d["id"] for d in q] for q in resp.json()["result"]
        ]
        return status, None if got == expected else f"result {got[:2]} != in-process search {expected[:2]}"
    if case.method == "HEAD":
        return status, None if 400 <= resp.status_code < 500 else f"HEAD got {status}"
    if "application/json" not in resp.headers.get("content-type", ""):
        return status, f"status {status} with content-type {resp.headers.get('content-type')!r}"
    return status, _check_json_error(resp.status_code, resp.content, case)


def _check_json_error(status: int, body: bytes, case: Case) -> str | None:
    if not 400 <= status < 500:
        return f"status {status} for a bad request: {body[:200]!r}"
    if case.expect is not None and status != case.expect:
        return f"status {status}, expected {case.expect}: {body[:200]!r}"
    try:
        message = json.loads(body)["error"]
    except (ValueError, KeyError, TypeError):
        return f"status {status} body is not {{'error': ...}}: {body[:200]!r}"
    return None if isinstance(message, str) and message else f"empty error message: {body[:200]!r}"
