"""The Starlette application: routes, validation before any work, JSON errors, metrics.

Every answer is JSON (``/metrics`` aside). Anything wrong with a request is a 4xx with
``{"error": code, "message": one line, "where": place in the request}``; overload and
timeouts are 503 with ``Retry-After``; an unexpected failure is logged and answered by a
JSON 500 without a traceback.
"""

from __future__ import annotations

import json
import os
import time
from contextlib import asynccontextmanager

from pydantic import BaseModel, ValidationError
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from ..errors import DataError
from ..plain import json_default
from ..progress import enable, log
from . import schemas
from .config import ServeConfig
from .engine import Engine, Overloaded, TimedOut, UnknownIds, parse_options, recommend
from .generation import Holder
from .metrics import Metrics


class ApiError(Exception):
    """A request the service refuses: HTTP status, error code, message, where in the request."""

    def __init__(self, status: int, code: str, message: str, where: str | None = None):
        super().__init__(message)
        self.status, self.code, self.message, self.where = status, code, message, where


def app_from_env() -> _Instrumented:
    """The application of one worker, configured by ``ServeConfig.to_env`` (uvicorn's factory)."""
    return create_app(ServeConfig.from_env())


def create_app(config: ServeConfig) -> _Instrumented:
    """The service (an ASGI application) over the index at ``config.index``, opened now (errors propagate)."""
    enable(config.verbosity)
    holder = Holder(config.index, config.watch_interval, config.batch_threads)
    holder.load()
    engine = Engine(config.max_pending, config.timeout)
    metrics = Metrics()
    api = _Api(config, holder, engine, metrics)

    @asynccontextmanager
    async def lifespan(app):
        holder.start()
        try:
            yield
        finally:
            holder.stop()
            engine.close()

    routes = [Route("/v1/recommend", api.recommend, methods=["POST"]),
              Route("/v1/recommend/batch", api.batch, methods=["POST"]),
              Route("/v1/items/{item_id}", api.item, methods=["GET"]),
              Route("/v1/info", api.info, methods=["GET"]),
              Route("/healthz", api.healthz, methods=["GET"]),
              Route("/readyz", api.readyz, methods=["GET"]),
              Route("/metrics", api.metrics, methods=["GET"]),
              Route("/openapi.json", api.openapi, methods=["GET"])]
    app = Starlette(routes=routes, lifespan=lifespan, exception_handlers={HTTPException: api.http_error})
    return _Instrumented(app, metrics)


class _Api:
    """The endpoints, sharing the generation holder, the engine and the metrics of one worker."""

    def __init__(self, config: ServeConfig, holder: Holder, engine: Engine, metrics: Metrics):
        self.config, self.holder, self.engine, self.stats = config, holder, engine, metrics
        self._openapi = _json(schemas.openapi())

    async def recommend(self, request: Request) -> Response:
        """POST /v1/recommend: one history."""
        return await self._guard("/v1/recommend", self._recommend(request))

    async def batch(self, request: Request) -> Response:
        """POST /v1/recommend/batch: many histories, one search call."""
        return await self._guard("/v1/recommend/batch", self._batch(request))

    async def item(self, request: Request) -> Response:
        """GET /v1/items/{item_id}: the item's embedding and prior."""
        return await self._guard("/v1/items/{item_id}", self._item(request.path_params["item_id"]))

    async def info(self, request: Request) -> Response:
        """GET /v1/info: the build being served and the limits."""
        return await self._guard("/v1/info", self._info())

    async def healthz(self, request: Request) -> Response:
        """GET /healthz: the process answers."""
        return _response({"status": "ok"})

    async def readyz(self, request: Request) -> Response:
        """GET /readyz: an index is loaded and answers."""
        gen = self.holder.current
        if gen is None:
            return self._error("/readyz", ApiError(503, "not_ready", "no index loaded yet"))
        return _response({"status": "ready", "build_id": gen.build_id, "generation": gen.number})

    async def metrics(self, request: Request) -> Response:
        """GET /metrics: Prometheus text."""
        gen = self.holder.current
        text = self.stats.render(gen and gen.number, gen and gen.build_id, self.engine.pending)
        return Response(text, media_type="text/plain; version=0.0.4; charset=utf-8")

    async def openapi(self, request: Request) -> Response:
        """GET /openapi.json: the service's OpenAPI document."""
        return Response(self._openapi, media_type="application/json")

    async def http_error(self, request: Request, exc: HTTPException) -> Response:
        """Routing errors (unknown path, wrong method) as JSON."""
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "bad_request")
        message = {404: f"no route {request.url.path[:200]!r}; see /openapi.json",
                   405: f"{request.method} is not allowed here"}.get(exc.status_code, str(exc.detail))
        return self._error("other", ApiError(exc.status_code, code, message), exc.headers)

    # ---- the work behind the endpoints --------------------------------------------------------
    async def _recommend(self, request: Request) -> Response:
        req = _parse(schemas.RecommendRequest, await self._body(request))
        gen = self._generation()
        opts = _options(gen, req.options, 1)
        [answer] = await self.engine.run_small(recommend, gen, [req.history], req.k, opts, req.exclude, req.allow,
                                               "history")
        return _response({**answer, "build_id": gen.build_id, "generation": gen.number})

    async def _batch(self, request: Request) -> Response:
        req = _parse(schemas.BatchRequest, await self._body(request))
        gen = self._generation()
        opts = _options(gen, req.options, self.config.batch_threads)
        for name, given in (("exclude", req.exclude), ("allow", req.allow)):
            if given and isinstance(given[0], list) and len(given) != len(req.histories):
                raise ApiError(422, "invalid", f"{name} has {len(given)} lists for {len(req.histories)} histories; "
                               "give one list per history, or one flat list for all", f"body.{name}")
        answers = await self.engine.run(recommend, gen, req.histories, req.k, opts, req.exclude, req.allow,
                                        "histories")
        return _response({"results": answers, "build_id": gen.build_id, "generation": gen.number})

    async def _item(self, item_id: str) -> Response:
        gen = self._generation()
        if len(item_id) > schemas.MAX_ID_CHARS:
            raise ApiError(422, "invalid", f"an item id has at most {schemas.MAX_ID_CHARS} characters", "path.item_id")
        row = gen.item_row(item_id)
        if row is None:
            raise ApiError(404, "unknown_item", f"unknown item id {item_id[:100]!r}", "path.item_id")
        index = gen.index
        popularity = None if index.popularity is None else int(index.popularity[row])
        return _response({"item_id": index.item_ids[row], "prior": float(index.priors[row]),
                          "popularity": popularity, "embedding": gen.embedding(row), "build_id": gen.build_id,
                          "generation": gen.number})

    async def _info(self) -> Response:
        gen = self._generation()
        limits = {"max_k": schemas.MAX_K, "max_history": schemas.MAX_HISTORY, "max_batch": schemas.MAX_BATCH,
                  "max_body_bytes": self.config.max_body, "max_pending": self.config.max_pending,
                  "timeout_seconds": self.config.timeout, "batch_threads": self.config.batch_threads}
        return _response({"index": gen.index.info(), "build_id": gen.build_id, "generation": gen.number,
                          "loaded_at": gen.loaded_at, "worker_pid": os.getpid(), "limits": limits})

    def _generation(self):
        gen = self.holder.current
        if gen is None:
            raise ApiError(503, "not_ready", "no index loaded yet")
        return gen

    async def _body(self, request: Request) -> bytes:
        """The request body, refused past ``max_body`` bytes before it is read whole."""
        limit = self.config.max_body
        length = request.headers.get("content-length")
        if length is not None and (not length.isdigit() or int(length) > limit):
            raise ApiError(413 if length.isdigit() else 400, "too_large" if length.isdigit() else "bad_request",
                           f"the body must be at most {limit:,} bytes" if length.isdigit()
                           else "Content-Length is not a number", "header.content-length")
        chunks, size = [], 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise ApiError(413, "too_large", f"the body must be at most {limit:,} bytes", "body")
            chunks.append(chunk)
        return b"".join(chunks)

    async def _guard(self, route: str, work) -> Response:
        """Await the endpoint's work; every failure becomes a JSON error answer."""
        try:
            return await work
        except ApiError as exc:
            return self._error(route, exc)
        except UnknownIds as exc:
            return self._error(route, ApiError(422, "unknown_item", str(exc), exc.where))
        except DataError as exc:
            return self._error(route, ApiError(422, "invalid", str(exc), "body"))
        except Overloaded:
            return self._error(route, ApiError(503, "overloaded", f"more than {self.engine.max_pending} searches "
                                               "waiting in this worker; retry later"), {"Retry-After": "1"})
        except TimedOut:
            return self._error(route, ApiError(503, "timeout", f"no answer within {self.engine.timeout:g} s; "
                                               "retry later"), {"Retry-After": "1"})
        except Exception:  # noqa: BLE001 - answered as a JSON 500, logged with its traceback
            log.exception("unexpected error answering %s", route)
            return self._error(route, ApiError(500, "internal", "internal error; the server log has the details"))

    def _error(self, route: str, exc: ApiError, headers=None) -> Response:
        self.stats.error(route, exc.code)
        return _response({"error": exc.code, "message": exc.message, "where": exc.where}, exc.status, headers)


def _parse(model: type[BaseModel], body: bytes) -> BaseModel:
    """The request model from the body bytes, or a 422 naming the first problem and where it is."""
    if not body:
        raise ApiError(422, "invalid", "the body is empty; send a JSON object (see /openapi.json)", "body")
    try:
        return model.model_validate_json(body)
    except ValidationError as exc:
        errors = exc.errors(include_url=False, include_input=False)
        first = errors[0]
        where = _where(first["loc"])
        same = {e["type"]: e["msg"] for e in errors if _where(e["loc"]) == where}
        kind = "malformed_json" if first["type"] == "json_invalid" else "invalid"
        message = ("an item id is an integer or a non-empty string" if {"int_type", "string_type"} <= set(same)
                   else " or ".join(same.values()))
        raise ApiError(422, kind, message, where) from None


def _where(loc: tuple) -> str:
    """``body.history[3]`` from a pydantic location (the names of union branches left out)."""
    out = "body"
    for i, part in enumerate(loc):
        if isinstance(part, int):
            out += f"[{part}]"
        elif i and loc[i - 1] == "options":
            out += f"[{json.dumps(part)}]"
        elif part not in _BRANCHES and "[" not in part and "-" not in part:
            out += f".{part}"
    return out


_BRANCHES = {"int", "str", "float", "bool", "list", "dict", "none", "nullable"}


def _options(gen, options: dict, threads: int):
    try:
        return parse_options(gen, options, threads)
    except DataError as exc:
        raise ApiError(422, "invalid", str(exc), "body.options") from None


def _json(payload) -> bytes:
    return json.dumps(payload, default=json_default, separators=(",", ":"), allow_nan=False).encode()


def _response(payload, status: int = 200, headers=None) -> Response:
    return Response(_json(payload), status, headers, media_type="application/json")


class _Instrumented:
    """ASGI wrapper counting every HTTP answer's route, status and latency."""

    def __init__(self, app: Starlette, metrics: Metrics):
        self.app, self.metrics = app, metrics

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        start = time.perf_counter()
        status = 500

        async def sending(message):
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, sending)
        finally:
            self.metrics.observe(_route(scope.get("path", "")), scope.get("method", ""), status,
                                 time.perf_counter() - start)


_ROUTES = frozenset({"/v1/recommend", "/v1/recommend/batch", "/v1/info", "/healthz", "/readyz", "/metrics",
                     "/openapi.json"})


def _route(path: str) -> str:
    """The route template of a path (a bounded label set: unknown paths are 'other')."""
    if path in _ROUTES:
        return path
    if path.startswith("/v1/items/") and path.count("/") == 3:
        return "/v1/items/{item_id}"
    return "other"
