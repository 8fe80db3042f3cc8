"""``sparseidx serve``: the real service (a ``sparseidx serve`` subprocess on loopback) against ``Index.search``."""

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from contextlib import contextmanager

import numpy as np
import pytest
from helpers import random_interactions
from hypothesis import HealthCheck, given, settings

from sparseidx import Index
from sparseidx.index.dense import DenseIndex
from sparseidx.index.deny import set_denied
from sparseidx.models.cholesky import fit_cholesky
from sparseidx.models.lowrank import fit_puresvd
from sparseidx.serve.config import ServeConfig

httpx = pytest.importorskip("httpx")  # the serve extra and schemathesis come with the test extra
pytest.importorskip("uvicorn")
pytest.importorskip("starlette")
schemathesis = pytest.importorskip("schemathesis")

N_USERS, N_ITEMS = 400, 300


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Service:
    """A ``sparseidx serve`` subprocess on 127.0.0.1 and a free port, stopped by ``stop``."""

    def __init__(self, index, *args):
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        cmd = [sys.executable, "-m", "sparseidx_cli.main", "-q", "serve", str(index), "--port", str(self.port), *args]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                                     start_new_session=True)
        self.client = httpx.Client(base_url=self.url, timeout=30)

    def wait_ready(self, seconds=90):
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"sparseidx serve exited {self.proc.returncode}: {self.proc.stderr.read()}")
            try:
                if self.client.get("/readyz").status_code == 200:
                    return self
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        raise AssertionError("sparseidx serve did not become ready")

    def stop(self):
        self.client.close()
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        stderr = self.proc.stderr.read()
        self.proc.stderr.close()
        assert "Traceback" not in stderr, stderr


@contextmanager
def services(*specs):
    """Start every service at once (their start-up overlaps), wait for all, stop all."""
    started = [Service(*spec) for spec in specs]
    try:
        yield [s.wait_ready() for s in started]
    finally:
        for s in started:
            s.stop()


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("serve")
    X = random_interactions(N_USERS, N_ITEMS, density=0.04, seed=5)
    builds = {l2: Index.build(fit_cholesky(X, l2=l2, k=30)) for l2 in (5.0, 50.0)}
    builds[5.0].write(root / "sparse.idx")
    builds[5.0].write(root / "swap.idx")
    DenseIndex.build(fit_puresvd(X, dims=16), "HNSW32,Flat").write(root / "dense.idx")
    return root, X, builds


@pytest.fixture(scope="module")
def servers(data):
    root = data[0]
    with services((root / "sparse.idx", "--max-body", "65536"), (root / "dense.idx",),
                  (root / "swap.idx", "--watch-interval", "0.05")) as (sparse, dense, swap):
        yield {"sparse": sparse, "dense": dense, "swap": swap}


def _histories(X, n=12):
    rows = [list(map(int, X[u].indices)) for u in range(n)]
    return rows + [[], rows[0][:1]]


def _expected(index, histories, k, options=None, exclude=None, allow=None):
    res = index.search_detailed(histories, k, options, exclude=exclude, allow=allow)
    out = []
    for q in range(len(histories)):
        valid = res.ids[q] >= 0
        out.append({"items": index.item_ids[res.ids[q][valid]].tolist(), "scores": res.scores[q][valid].tolist(),
                    "popular": bool(res.popular[q])})
    return out


def _answer(body):
    return {key: body[key] for key in ("items", "scores", "popular")}


@pytest.mark.parametrize("backend", ["sparse", "dense"])
def test_answers_equal_index_search(data, servers, backend):
    root, X, _ = data
    service = servers[backend]
    index = Index.open(root / f"{backend}.idx")
    options = ([{}, {"prune": 0.01}, {"prune": 0.003, "candidates": 400}] if backend == "sparse"
               else [{}, {"ef_search": 64}])
    histories = _histories(X)
    for opts in options:
        for k in (3, N_ITEMS + 5):
            want = _expected(index, histories, k, opts)
            for history, expected in zip(histories, want):
                r = service.client.post("/v1/recommend", json={"history": history, "k": min(k, 1000), "options": opts})
                assert r.status_code == 200, r.text
                assert _answer(r.json()) == expected
            r = service.client.post("/v1/recommend/batch", json={"histories": histories, "k": k, "options": opts})
            assert r.status_code == 200, r.text
            assert r.json()["results"] == want
    # filters: one flat list for all, or one list per history
    exclude, allow = [histories[1][0], 7], list(range(0, N_ITEMS, 3))
    want = _expected(index, histories, 10, exclude=exclude, allow=allow)
    r = service.client.post("/v1/recommend", json={"history": histories[2], "exclude": exclude, "allow": allow})
    assert _answer(r.json()) == want[2]
    per = [[h[0]] if h else [] for h in histories]
    r = service.client.post("/v1/recommend/batch", json={"histories": histories, "exclude": per})
    assert r.json()["results"] == _expected(index, histories, 10, exclude=per)


def test_answers_equal_the_query_command(data, servers):
    root, X, _ = data
    history = list(map(int, X[3].indices))
    out = subprocess.run([sys.executable, "-m", "sparseidx_cli.main", "-q", "query", str(root / "sparse.idx"),
                          "--history", *map(str, history), "-k", "7", "--prune", "0.01", "--json"],
                         capture_output=True, text=True, check=True)
    cli = json.loads(out.stdout)
    body = servers["sparse"].client.post("/v1/recommend", json={"history": history, "k": 7,
                                                                "options": {"prune": 0.01}}).json()
    assert body["items"] == [it["item_id"] for it in cli["items"]]
    assert np.allclose(body["scores"], [it["score"] for it in cli["items"]])


def test_items_info_health_metrics(data, servers):
    root = data[0]
    client = servers["sparse"].client
    index = Index.open(root / "sparse.idx")
    V = index.to_factors().embeddings.tocsr()
    for item in (0, 17, N_ITEMS - 1):
        body = client.get(f"/v1/items/{item}").json()
        row = V[item]
        assert body["item_id"] == item and body["prior"] == float(index.priors[item])
        assert body["embedding"] == {"dims": row.indices.tolist(), "weights": row.data.tolist()}
        assert body["popularity"] == int(index.popularity[item])
    dense = servers["dense"].client.get("/v1/items/3").json()
    assert len(dense["embedding"]) == 16 and dense["prior"] > 0
    info = client.get("/v1/info").json()
    assert info["build_id"] == index.manifest["build_id"] and info["generation"] == 1
    assert info["index"]["backend"] == "sparse" and info["index"]["n_items"] == N_ITEMS
    assert servers["dense"].client.get("/v1/info").json()["index"]["backend"] == "faiss"
    assert client.get("/healthz").json() == {"status": "ok"}
    assert client.get("/readyz").json()["build_id"] == index.manifest["build_id"]
    text = client.get("/metrics").text
    assert 'sparseidx_requests_total{route="/v1/items/{item_id}",method="GET",status="200"' in text
    assert "sparseidx_request_seconds_bucket" in text and "sparseidx_index_generation" in text
    assert f'build_id="{index.manifest["build_id"]}"' in text
    assert client.get("/openapi.json").json()["openapi"].startswith("3.1")


ERRORS = [  # (method, path, body bytes or JSON, status, error code, where)
    ("POST", "/v1/recommend", b'{"history": [1, 2', 422, "malformed_json", "body"),
    ("POST", "/v1/recommend", b"", 422, "invalid", "body"),
    ("POST", "/v1/recommend", [1, 2], 422, "invalid", "body"),
    ("POST", "/v1/recommend", {"history": "1 2"}, 422, "invalid", "body.history"),
    ("POST", "/v1/recommend", {"history": [1, True]}, 422, "invalid", "body.history[1]"),
    ("POST", "/v1/recommend", {"history": [1, 2.5]}, 422, "invalid", "body.history[1]"),
    ("POST", "/v1/recommend", {"history": [1, 2 ** 70]}, 422, "invalid", "body.history[1]"),
    ("POST", "/v1/recommend", {"history": [1], "k": "5"}, 422, "invalid", "body.k"),
    ("POST", "/v1/recommend", {"history": [1], "k": 0}, 422, "invalid", "body.k"),
    ("POST", "/v1/recommend", {"history": [1], "k": 1001}, 422, "invalid", "body.k"),
    ("POST", "/v1/recommend", {"history": [1], "colour": 1}, 422, "invalid", "body.colour"),
    ("POST", "/v1/recommend", {"history": [1, 5, 99999]}, 422, "unknown_item", "body.history[2]"),
    ("POST", "/v1/recommend", {"history": [1, "x"]}, 422, "unknown_item", "body.history[1]"),
    ("POST", "/v1/recommend", {"history": [1], "options": {"prune": "x"}}, 422, "invalid", 'body.options["prune"]'),
    ("POST", "/v1/recommend", {"history": [1], "options": {"prune": 2.0}}, 422, "invalid", "body.options"),
    ("POST", "/v1/recommend", {"history": [1], "options": {"colour": 1}}, 422, "invalid", "body.options"),
    ("POST", "/v1/recommend", {"history": [1], "options": {"ef_search": 8}}, 422, "invalid", "body.options"),
    ("POST", "/v1/recommend", {"history": [1], "options": {"threads": 8}}, 422, "invalid", "body.options"),
    ("POST", "/v1/recommend", {"history": [1], "exclude": 5}, 422, "invalid", "body.exclude"),
    ("POST", "/v1/recommend", {"history": list(range(20000))}, 413, "too_large", "header.content-length"),
    ("POST", "/v1/recommend/batch", {"histories": []}, 422, "invalid", "body.histories"),
    ("POST", "/v1/recommend/batch", {"histories": [[1], [2]], "exclude": [[1]]}, 422, "invalid", "body.exclude"),
    ("POST", "/v1/recommend/batch", {"histories": [[1], [2, 99999]]}, 422, "unknown_item", "body.histories[1][1]"),
    ("GET", "/v1/items/99999", None, 404, "unknown_item", "path.item_id"),
    ("GET", "/v1/items/abc", None, 404, "unknown_item", "path.item_id"),
    ("GET", "/v1/recommend", None, 405, "method_not_allowed", None),
    ("GET", "/nowhere", None, 404, "not_found", None),
]


@pytest.mark.parametrize("method, path, body, status, code, where", ERRORS)
def test_error_answers_say_what_and_where(servers, method, path, body, status, code, where):
    kwargs = {"content": body} if isinstance(body, bytes) else {} if body is None else {"json": body}
    r = servers["sparse"].client.request(method, path, **kwargs)
    assert r.status_code == status, r.text
    assert r.headers["content-type"] == "application/json"
    err = r.json()
    assert (err["error"], err["where"]) == (code, where), err
    assert err["message"] and "Traceback" not in r.text


def test_a_chunked_body_over_the_limit_is_refused(servers):
    def chunks():
        for _ in range(100):
            yield b" " * 1024

    r = servers["sparse"].client.post("/v1/recommend", content=chunks())
    assert r.status_code == 413 and r.json()["where"] == "body"


def _in_process(path, **config):
    """The service's application over ``path`` and an async client calling it in this process."""
    from sparseidx.serve.app import create_app

    app = create_app(ServeConfig(str(path), verbosity=0, **config))
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://serve")


def test_a_search_past_its_deadline_answers_503(data):
    async def run():
        async with _in_process(data[0] / "sparse.idx", timeout=1e-6) as client:
            r = await client.post("/v1/recommend/batch", json={"histories": [[1, 2]]})
            assert r.status_code == 503 and r.json()["error"] == "timeout" and r.headers["retry-after"] == "1"
            assert (await client.get("/v1/info")).status_code == 200  # no search, no deadline

    asyncio.run(run())


def test_overload_answers_503_from_a_bounded_queue(data):
    histories = [list(map(int, data[1][u].indices)) for u in range(N_USERS)] * 25

    async def run():
        async with _in_process(data[0] / "sparse.idx", max_pending=1) as client:
            big = client.post("/v1/recommend/batch", json={"histories": histories, "k": 100})
            small = [client.post("/v1/recommend", json={"history": [1, 2]}) for _ in range(5)]
            answers = await asyncio.gather(big, *small)
            statuses = [r.status_code for r in answers]
            assert statuses[0] == 200 and set(statuses) == {200, 503} and statuses.count(503) >= 3, statuses
            refused = answers[statuses.index(503)]
            assert refused.json()["error"] == "overloaded" and refused.headers["retry-after"] == "1"
            assert (await client.post("/v1/recommend", json={"history": [1, 2]})).status_code == 200
            metrics = (await client.get("/metrics")).text
            assert 'sparseidx_errors_total{route="/v1/recommend",code="overloaded"' in metrics

    asyncio.run(run())


def test_hot_swap_under_load_every_answer_from_one_build(data, servers):
    """build --overwrite three times while four clients keep asking: no failure, each answer from one build."""
    root, X, builds = data
    service, path = servers["swap"], root / "swap.idx"
    histories = _histories(X, 30)
    answers = {l2: _expected(build, histories, 10) for l2, build in builds.items()}
    assert answers[5.0] != answers[50.0]
    of_build = {Index.open(path).manifest["build_id"]: 5.0}  # build id -> the factors it was written from
    seen, stop = [], threading.Event()

    def client_loop(offset):
        with httpx.Client(base_url=service.url, timeout=30) as c:
            i = offset
            while not stop.is_set():
                q = i % len(histories)
                r = c.post("/v1/recommend", json={"history": histories[q]})
                seen.append((q, r.status_code, r.json()))
                i += 1

    threads = [threading.Thread(target=client_loop, args=(o,)) for o in range(4)]
    for t in threads:
        t.start()
    try:
        for l2 in (50.0, 5.0, 50.0):
            time.sleep(0.3)
            builds[l2].write(path, overwrite=True)
            build_id = Index.open(path).manifest["build_id"]
            of_build[build_id] = l2
            deadline = time.monotonic() + 20
            while seen[-1][2].get("build_id") != build_id and time.monotonic() < deadline:
                time.sleep(0.02)
            assert seen[-1][2].get("build_id") == build_id
    finally:
        stop.set()
        for t in threads:
            t.join()
    failed = [body for _, status, body in seen if status != 200]
    assert not failed, failed[:3]
    mixed = [body for q, _, body in seen if _answer(body) != answers[of_build[body["build_id"]]][q]]
    assert not mixed, mixed[:3]
    assert len(seen) > 100 and {body["build_id"] for _, _, body in seen} == set(of_build)
    info = service.client.get("/v1/info").json()
    assert info["build_id"] == build_id and info["generation"] == 4
    assert f'sparseidx_index_generation{{pid="{info["worker_pid"]}"}} 4' in service.client.get("/metrics").text


def test_a_deny_list_set_under_the_service_is_served_from_the_next_request_on(data, servers):
    """sparseidx deny replaces the directory with the same build and a new generation: the service switches."""
    root, X, builds = data
    service, path = servers["swap"], root / "swap.idx"
    history = _histories(X, 1)[0]
    before = service.client.post("/v1/recommend", json={"history": history, "k": 5}).json()
    generation = before["generation"]
    set_denied(str(path), [before["items"][0]])
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        after = service.client.post("/v1/recommend", json={"history": history, "k": 5}).json()
        if after["generation"] > generation:
            break
        time.sleep(0.02)
    assert after["generation"] == generation + 1 and after["build_id"] == before["build_id"]
    assert after["items"][:4] == before["items"][1:] and before["items"][0] not in after["items"]
    assert service.client.get("/v1/info").json()["index"]["denied_items"] == 1
    set_denied(str(path), [])


def test_connections_opened_at_once_are_spread_over_the_workers(data):
    """16 keep-alive clients connecting together: both workers serve some, each from a listening socket of its
    own (SO_REUSEPORT: the kernel spreads connections; one shared socket measured all 16 on one worker)."""
    import http.client

    with services((data[0] / "sparse.idx", "--workers", "2")) as [service]:
        with open("/proc/net/tcp") as fh:  # local address (hex ip:port), state 0A = LISTEN
            listening = [f for f in (line.split() for line in fh.readlines()[1:])
                         if f[3] == "0A" and int(f[1].split(":")[1], 16) == service.port]
        assert len(listening) == 2
        conns = [http.client.HTTPConnection("127.0.0.1", service.port, timeout=30) for _ in range(16)]
        for c in conns:
            c.connect()
        pids = []
        for c in conns:
            c.request("GET", "/v1/info")
            pids.append(json.loads(c.getresponse().read())["worker_pid"])
            c.close()
        assert len(set(pids)) == 2, pids


@pytest.mark.parametrize("workers", ["1", "2"])
def test_a_port_in_use_is_one_line(data, workers):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        res = subprocess.run([sys.executable, "-m", "sparseidx_cli.main", "serve", str(data[0] / "sparse.idx"),
                              "--port", str(port), "--workers", workers], capture_output=True, text=True, timeout=60)
    assert res.returncode == 1 and "Traceback" not in res.stderr
    assert f"cannot listen on 127.0.0.1:{port}: Address already in use; choose another --port" in res.stderr


def test_a_killed_worker_is_replaced_and_the_others_keep_serving(data):
    root = data[0]
    with services((root / "sparse.idx", "--workers", "2")) as [service]:
        pids = set()
        deadline = time.monotonic() + 30
        while len(pids) < 2 and time.monotonic() < deadline:
            with httpx.Client(base_url=service.url) as c:  # a new connection: any worker may take it
                pids.add(c.get("/v1/info").json()["worker_pid"])
        assert len(pids) == 2
        victim = pids.pop()
        os.kill(victim, signal.SIGKILL)
        for _ in range(30):  # every new connection is served by a live worker
            with httpx.Client(base_url=service.url) as c:
                assert c.post("/v1/recommend", json={"history": [1, 2]}).status_code == 200
        deadline, fresh = time.monotonic() + 60, set()
        while not (fresh - pids - {victim}) and time.monotonic() < deadline:
            with httpx.Client(base_url=service.url) as c:
                r = c.get("/v1/info")
                if r.status_code == 200:
                    fresh.add(r.json()["worker_pid"])
            time.sleep(0.05)
        assert fresh - pids - {victim}, "the killed worker was not replaced"


@pytest.mark.parametrize("mode", ["positive", "negative"])
def test_openapi_fuzzing_finds_no_server_error(servers, mode):
    """schemathesis against the service's own /openapi.json: no 5xx, answers as documented.

    Schema-valid requests may still be refused (unknown item ids, another backend's options),
    so its check that valid data is accepted is left out; a body over the size limit is refused
    with 413, a rejection like 422.
    """
    from schemathesis.specs.openapi.checks import positive_data_acceptance

    config = schemathesis.Config.from_dict(
        {"checks": {"negative_data_rejection": {"expected-statuses": ["400", "404", "405", "413", "422"]}}})
    schema = schemathesis.openapi.from_url(servers["sparse"].url + "/openapi.json", config=config)

    @given(case=schema.as_strategy(generation_mode=schemathesis.GenerationMode(mode)))
    @settings(max_examples=50, deadline=None, suppress_health_check=list(HealthCheck), database=None)
    def fuzz(case):
        case.call_and_validate(excluded_checks=[positive_data_acceptance])

    fuzz()
