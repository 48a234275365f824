"""Group 4: the HTTP server end to end on 127.0.0.1 (ephemeral port): results, bad requests, limits, API key,
and 8 concurrent clients x 50 requests all answered while the server keeps serving."""

from __future__ import annotations

import json
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


def test_api_key_required_when_configured(dense_retriever):
    app = create_app(dense_retriever, LIMITS, api_key="s3cret")
    with BackgroundServer(app) as srv, httpx.Client(base_url=srv.url, timeout=60.0) as c:
        body = {"queries": QUERIES[:1]}
        assert c.post("/retrieve", json=body).status_code == 401
        assert c.post("/retrieve", json=body, headers={"X-API-Key": "wrong"}).status_code == 401
        assert c.get("/health").status_code == 401
        assert c.post("/retrieve", json=body, headers={"X-API-Key": "s3cret"}).status_code == 200
