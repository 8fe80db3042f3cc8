"""Request and response shapes of the HTTP service, and the OpenAPI document built from them.

Requests are validated by pydantic straight from the body bytes (strict types: ``"10"`` is
not a k, ``true`` is not an item id); responses are plain dicts serialised by ``json`` on the
hot path, their models only describe them in ``/openapi.json``.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StrictFloat,
    StrictInt,
    StringConstraints,
)

from .. import __version__

MAX_K = 1000  # items per answer
MAX_HISTORY = 10_000  # item ids per history or filter
MAX_BATCH = 10_000  # histories per batch request
MAX_ID_CHARS = 1024  # characters of a string item id

IntId = Annotated[int, Field(strict=True, ge=-(2 ** 63), le=2 ** 63 - 1)]
StrId = Annotated[str, StringConstraints(strict=True, min_length=1, max_length=MAX_ID_CHARS)]
ItemId = IntId | StrId
IdList = Annotated[list[ItemId], Field(max_length=MAX_HISTORY)]
OptionValue = StrictBool | StrictInt | StrictFloat
K = Annotated[int, Field(strict=True, ge=1, le=MAX_K, description="Items to return (capped at the catalogue size).")]
OPTIONS_DOC = ("The backend's query knobs, as `sparseidx query` takes them: sparse indexes `prune`, `candidates`, "
               "`query_dims`, `query_mass`, `budget`, `exclude_history`, `skip_unknown`; FAISS indexes "
               "`ef_search`, `nprobe`, `exclude_history`, `skip_unknown`. `threads` is the server's.")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class RecommendRequest(_Strict):
    """One user's history and what to return."""

    history: IdList = Field(description="Item ids the user interacted with (empty: the most popular items).")
    k: K = 10
    exclude: IdList | None = Field(None, description="Item ids never to return (unknown ids are ignored).")
    allow: IdList | None = Field(None, description="Return only these item ids (unknown ids are ignored).")
    options: dict[Annotated[str, StringConstraints(max_length=64)], OptionValue] = Field(
        default_factory=dict, max_length=16, description=OPTIONS_DOC)


class BatchRequest(_Strict):
    """Many users' histories answered by one search call (the engine's batch path)."""

    histories: Annotated[list[IdList], Field(min_length=1, max_length=MAX_BATCH)]
    k: K = 10
    exclude: IdList | Annotated[list[IdList], Field(max_length=MAX_BATCH)] | None = Field(
        None, description="Item ids never to return: one list for every user, or one list per user.")
    allow: IdList | Annotated[list[IdList], Field(max_length=MAX_BATCH)] | None = Field(
        None, description="Item ids to choose from: one list for every user, or one list per user.")
    options: dict[Annotated[str, StringConstraints(max_length=64)], OptionValue] = Field(
        default_factory=dict, max_length=16, description=OPTIONS_DOC)


class Recommendation(BaseModel):
    """Top items, best first; ``popular`` when an empty history was answered by popularity."""

    items: list[ItemId]
    scores: list[float]
    popular: bool


class RecommendResponse(Recommendation):
    """One answer and the build of the index that gave it."""

    build_id: str
    generation: int


class BatchResponse(BaseModel):
    """One answer per history, in order, all from one build."""

    results: list[Recommendation]
    build_id: str
    generation: int


class SparseEmbedding(BaseModel):
    """Non-zero dimensions of an item's embedding and their weights."""

    dims: list[int]
    weights: list[float]


class ItemResponse(BaseModel):
    """An item's embedding (sparse: its non-zeros; FAISS: the dense vector) and prior."""

    item_id: ItemId
    prior: float
    popularity: int | None
    embedding: SparseEmbedding | list[float] | None
    build_id: str
    generation: int


class InfoResponse(BaseModel):
    """The build being served and the service's limits."""

    index: dict
    build_id: str
    generation: int
    loaded_at: float
    worker_pid: int
    limits: dict


class Health(BaseModel):
    """Liveness or readiness."""

    status: str
    build_id: str | None = None
    generation: int | None = None


class Error(BaseModel):
    """Every 4xx/5xx answer: a code, a one-line message and where in the request the problem is."""

    error: str
    message: str
    where: str | None = None


_JSON = "application/json"


def _content(name: str) -> dict:
    return {_JSON: {"schema": {"$ref": f"#/components/schemas/{name}"}}}


def _answer(name: str, errors: tuple[int, ...]) -> dict:
    out = {"200": {"description": "OK", "content": _content(name)}}
    for status in errors:
        out[str(status)] = {"description": _ERRORS[status], "content": _content("Error")}
    return out


_ERRORS = {404: "Unknown route or item", 413: "Body too large", 422: "Malformed JSON, wrong types, unknown ids, "
           "values out of range", 503: "Overloaded, timed out, or no index loaded yet"}
_MODELS = (RecommendRequest, BatchRequest, RecommendResponse, BatchResponse, ItemResponse, InfoResponse, Health,
           Error)


def openapi() -> dict:
    """The OpenAPI 3.1 document of the service (schemas from the pydantic models)."""
    from pydantic.json_schema import models_json_schema

    _, defs = models_json_schema([(m, "validation" if m.__name__.endswith("Request") else "serialization")
                                  for m in _MODELS], ref_template="#/components/schemas/{model}")
    post = (413, 422, 503)
    return {
        "openapi": "3.1.0",
        "info": {"title": "sparseidx", "version": __version__,
                 "description": "Recommendations from a sparseidx index: score(x, i) = prior_i * <x E, V_i>."},
        "paths": {
            "/v1/recommend": {"post": {
                "summary": "Top-k items for one history", "operationId": "recommend",
                "requestBody": {"required": True, "content": _content("RecommendRequest")},
                "responses": _answer("RecommendResponse", post)}},
            "/v1/recommend/batch": {"post": {
                "summary": "Top-k items for many histories, one search call", "operationId": "recommendBatch",
                "requestBody": {"required": True, "content": _content("BatchRequest")},
                "responses": _answer("BatchResponse", post)}},
            "/v1/items/{item_id}": {"get": {
                "summary": "An item's embedding and prior", "operationId": "item",
                "parameters": [{"name": "item_id", "in": "path", "required": True,
                                "schema": {"type": "string", "minLength": 1, "maxLength": MAX_ID_CHARS}}],
                "responses": _answer("ItemResponse", (404, 422, 503))}},
            "/v1/info": {"get": {"summary": "The build being served", "operationId": "info",
                                 "responses": _answer("InfoResponse", (503,))}},
            "/healthz": {"get": {"summary": "Liveness", "operationId": "healthz",
                                 "responses": _answer("Health", ())}},
            "/readyz": {"get": {"summary": "Readiness: an index is loaded", "operationId": "readyz",
                                "responses": _answer("Health", (503,))}},
            "/metrics": {"get": {"summary": "Prometheus text exposition", "operationId": "metrics",
                                 "responses": {"200": {"description": "Prometheus text format 0.0.4",
                                                       "content": {"text/plain": {"schema": {"type": "string"}}}}}}},
        },
        "components": {"schemas": defs["$defs"]},
    }
