"""Group 4: the HTTP server end to end on 127.0.0.1 (ephemeral port): results, bad requests, limits, API key,
and 8 concurrent clients x 50 requests all answered while the server keeps serving. The fuzz series and the
sustained load are in test_server_fuzz.py and test_server_load.py."""

from __future__ import annotations

import hmac
import json
import logging
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from hrpo.retrieval.server import BackgroundServer, Limits, create_app

LIMITS = Limits(max_queries=16, max_topk=20, max_body_bytes=4096, max_query_chars=500)
QUERIES = ["Who portrayed Corliss Archer in Kiss and Tell?", "Which lobbyist worked for Genentech?"]


@pytest.fixture(scope="module")
def server(dense_retriever):
    app = create_app(dense_retriever, LIMITS, default_topk=3, info={"index": "test"})
    with BackgroundServer(app, "127.0.0.1", 0) as srv:
        yield srv


@pytest.fixture()
def client(server):
    with httpx.Client(base_url=server.url, timeout=60.0) as c:
        yield c


@pytest.fixture(scope="module")
def tiny_client(tiny_retriever):
    """A server over the 64-passage index (no shared data), for the tests that need no particular results."""
    with (
        BackgroundServer(create_app(tiny_retriever, LIMITS)) as srv,
        httpx.Client(base_url=srv.url, timeout=60.0) as c,
    ):
        yield c


def test_health_and_results_match_in_process_search(client, dense_retriever):
    assert client.get("/health").json()["status"] == "ok"
    resp = client.post("/retrieve", json={"queries": QUERIES, "topk": 4, "return_scores": True})
    assert resp.status_code == 200
    result = resp.json()["result"]
    expected = dense_retriever.search(QUERIES, 4)
    assert len(result) == 2 and all(len(r) == 4 for r in result)
    for got, want in zip(result, expected, strict=True):
        assert [item["document"] for item in got] == [h.document() for h in want]
        assert [item["score"] for item in got] == pytest.approx([h.score for h in want], abs=1e-5)
    doc = result[0][0]["document"]
    assert set(doc) == {"id", "contents"} and doc["contents"].startswith('"')


def test_search_r1_defaults_and_no_scores(client):
    """topk omitted or null -> server default (3); return_scores false -> bare documents, as Search-R1."""
    for body in ({"queries": QUERIES[:1]}, {"queries": QUERIES[:1], "topk": None, "return_scores": False}):
        result = client.post("/retrieve", json=body).json()["result"]
        assert len(result[0]) == 3 and set(result[0][0]) == {"id", "contents"}


BAD_BODIES = [
    (b"{not json", 400),
    (b"\xff\xfe", 400),
    (b"[1, 2]", 422),
    (b"{}", 422),
    (json.dumps({"queries": []}).encode(), 422),
    (json.dumps({"queries": "one string"}).encode(), 422),
    (json.dumps({"queries": ["ok", ""]}).encode(), 422),
    (json.dumps({"queries": ["   "]}).encode(), 422),
    (json.dumps({"queries": ["ok", 7]}).encode(), 422),
    (json.dumps({"queries": [None]}).encode(), 422),
    (json.dumps({"queries": ["ok"], "topk": 0}).encode(), 422),
    (json.dumps({"queries": ["ok"], "topk": -2}).encode(), 422),
    (json.dumps({"queries": ["ok"], "topk": "3"}).encode(), 422),
    (json.dumps({"queries": ["ok"], "topk": 2.5}).encode(), 422),
    (json.dumps({"queries": ["ok"], "topk": True}).encode(), 422),
    (json.dumps({"queries": ["ok"], "topk": 21}).encode(), 422),
    (json.dumps({"queries": ["ok"], "return_scores": "yes"}).encode(), 422),
    (json.dumps({"queries": ["q"] * 17}).encode(), 413),  # oversized batch
    (json.dumps({"queries": ["x" * 501]}).encode(), 413),  # oversized query
    (json.dumps({"queries": ["x" * 400] * 11}).encode(), 413),  # body over 4096 bytes
]


@pytest.mark.parametrize(("body", "status"), BAD_BODIES)
def test_bad_requests_get_4xx_with_message_and_server_keeps_serving(client, body, status):
    resp = client.post("/retrieve", content=body, headers={"content-type": "application/json"})
    assert resp.status_code == status, resp.text
    assert isinstance(resp.json()["error"], str) and resp.json()["error"]
    assert client.post("/retrieve", json={"queries": QUERIES[:1], "topk": 1}).status_code == 200


def test_body_limit_holds_without_content_length(client):
    """A chunked upload (no Content-Length) is cut off at the byte limit too."""

    def chunks():
        for _ in range(20):
            yield b" " * 1024

    resp = client.post("/retrieve", content=chunks(), headers={"content-type": "application/json"})
    assert resp.status_code == 413


@pytest.mark.timeout(180)
def test_concurrent_clients_all_answered(server, dense_retriever):
    """8 threads x 50 requests (every 5th one malformed): each gets its correct status and answer."""
    good = {q: [h.id for h in dense_retriever.search([q], 2)[0]] for q in QUERIES}

    def worker(t: int) -> list[bool]:
        ok = []
        with httpx.Client(base_url=server.url, timeout=60.0) as c:
            for i in range(50):
                if i % 5 == 4:
                    r = c.post(
                        "/retrieve", content=b'{"queries": [', headers={"content-type": "application/json"}
                    )
                    ok.append(r.status_code == 400)
                else:
                    q = QUERIES[(t + i) % 2]
                    r = c.post("/retrieve", json={"queries": [q], "topk": 2, "return_scores": True})
                    ok.append(
                        r.status_code == 200
                        and [d["document"]["id"] for d in r.json()["result"][0]] == good[q]
                    )
        return ok

    with ThreadPoolExecutor(8) as pool:
        results = [ok for per_thread in pool.map(worker, range(8)) for ok in per_thread]
    assert len(results) == 400 and all(results)
    assert httpx.get(server.url + "/health", timeout=10).json()["status"] == "ok"


KEY = "hrpo-key-Q7vX2mK9"
WRONG_KEY = "hrpo-key-WRONG-4f1c"


class _FailingRetriever:
    """The real retriever, except that the query "server fault" raises (a server-side bug on purpose)."""

    def __init__(self, inner) -> None:
        self.inner = inner

    def search(self, queries, topk=3):
        if "server fault" in queries:
            raise RuntimeError("index shard went away")
        return self.inner.search(queries, topk)


class _Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))  # message + traceback, as a log file would hold them


def test_api_key_guards_every_route_but_health_and_never_leaks(tiny_retriever, monkeypatch):
    """With a key: /health open (status only), everything else 401 without the right key, including unknown
    paths; the comparison goes through hmac.compare_digest; neither key appears in any answer or log line
    (uvicorn at debug level with its access log, and a server fault's traceback)."""
    compared = []
    real_compare = hmac.compare_digest
    monkeypatch.setattr(hmac, "compare_digest", lambda a, b: compared.append(1) or real_compare(a, b))
    app = create_app(_FailingRetriever(tiny_retriever), LIMITS, api_key=KEY, info={"index": "secret/path"})
    records = _Records()
    bodies: list[str] = []
    srv = BackgroundServer(app, log_level="debug", access_log=True)
    loggers = [logging.getLogger(n) for n in ("uvicorn", "uvicorn.error", "uvicorn.access", "hrpo")]
    for lg in loggers:
        lg.addHandler(records)
    try:
        with srv, httpx.Client(base_url=srv.url, timeout=60.0) as c:

            def call(method, path, key, **kw):
                headers = {} if key is None else {"X-API-Key": key}
                resp = c.request(method, path, headers=headers, **kw)
                bodies.append(resp.text + json.dumps(dict(resp.headers)))
                return resp

            body = {"queries": QUERIES[:1], "topk": 2}
            for key in (None, "", WRONG_KEY, KEY.upper(), KEY + "x", KEY[:-1]):
                assert call("POST", "/retrieve", key, json=body).status_code == 401
                assert call("GET", "/nope", key).status_code == 401
                assert call("DELETE", "/retrieve", key).status_code == 401
                assert call("GET", "/health", key).json() == {"status": "ok"}  # open, but no index details
            error = call("POST", "/retrieve", WRONG_KEY, json=body).json()["error"]
            assert error == "missing or wrong X-API-Key header"
            ok = call("POST", "/retrieve", KEY, json=body)
            assert ok.status_code == 200
            assert [d["id"] for d in ok.json()["result"][0]] == [
                h.id for h in tiny_retriever.search(QUERIES[:1], 2)[0]
            ]
            assert call("GET", "/health", KEY).json() == {"status": "ok", "index": "secret/path"}
            assert call("GET", "/nope", KEY).status_code == 404
            assert call("DELETE", "/retrieve", KEY).status_code == 405
            fault = call("POST", "/retrieve", KEY, json={"queries": ["server fault"]})
            assert fault.status_code == 500 and fault.json() == {
                "error": "search failed (logged by the server)"
            }
    finally:
        for lg in loggers:
            lg.removeHandler(records)
    assert compared, "the key must be compared with hmac.compare_digest"
    assert len(compared) >= 6 * 3 + 8  # once per guarded request (and per /health asking for details)
    logs = "\n".join(records.lines)
    assert (
        '"POST /retrieve HTTP/1.1" 401' in logs and '"POST /retrieve HTTP/1.1" 200' in logs
    )  # access log on
    assert "index shard went away" in logs and "Traceback" in logs  # the server fault was logged in full
    for secret in (KEY, WRONG_KEY, KEY[:-1]):
        assert secret not in logs, "an API key appeared in the server log"
        assert not any(secret in b for b in bodies), "an API key appeared in an answer"


def test_api_key_with_non_ascii_characters(tiny_retriever):
    """The header's raw bytes are compared with the key's UTF-8 bytes (no latin-1 round trip)."""
    app = create_app(tiny_retriever, LIMITS, api_key="clé-ü")
    with BackgroundServer(app) as srv, httpx.Client(base_url=srv.url, timeout=60.0) as c:
        body = {"queries": QUERIES[:1]}
        assert c.post("/retrieve", json=body, headers={"X-API-Key": "clé-ü".encode()}).status_code == 200
        assert c.post("/retrieve", json=body, headers={"X-API-Key": "cle-u"}).status_code == 401


def test_unknown_routes_and_methods_answer_json(tiny_client):
    """Routing errors use the same {"error"} body and name the routes; no redirects for trailing slashes."""
    for method, path, status in [
        ("GET", "/nope", 404),
        ("POST", "/retrieve/", 404),
        ("GET", "/retrieve", 405),
        ("POST", "/health", 405),
        ("GET", "/docs", 404),
        ("GET", "/openapi.json", 404),
    ]:
        resp = tiny_client.request(method, path)
        assert resp.status_code == status, (method, path, resp.text)
        assert "GET /health, POST /retrieve" in resp.json()["error"]
    assert tiny_client.get("/retrieve").headers["allow"] == "POST"


@pytest.mark.parametrize(
    ("body", "status", "fragment"),
    [
        (b'{"queries": ' + b"[" * 2000 + b"]" * 2000 + b"}", 400, "nested too deeply"),
        (b'{"queries": ["a"], "topk": ' + b"9" * 4000 + b"}", 422, "4000 digits"),
        (b'{"queries": ["\\ud800"]}', 422, "lone UTF-16 surrogate at character 0"),
        (b'{"queries": ["a"], "topk": NaN}', 400, "NaN is not a JSON number"),
        (b'{"queries": ["a"], "top_k": 5}', 422, 'unknown field(s) "top_k"'),
    ],
)
def test_inputs_that_crashed_the_old_server(tiny_client, body, status, fragment):
    """The causes of the outside series' 500s: RecursionError, int digit limit, a tokenizer's TypeError."""
    resp = tiny_client.post("/retrieve", content=body, headers={"content-type": "application/json"})
    assert resp.status_code == status and fragment in resp.json()["error"], resp.text


def test_wrong_content_type_is_415(tiny_client):
    body = json.dumps({"queries": QUERIES[:1]})
    resp = tiny_client.post("/retrieve", content=body, headers={"content-type": "text/plain"})
    assert resp.status_code == 415 and "application/json" in resp.json()["error"]
    assert tiny_client.post("/retrieve", content=body).status_code == 200  # no content-type at all is fine
