"""``sparseidx serve``: an HTTP recommendation service over an index, hot-swapped when the index is replaced.

Modules: ``app`` (Starlette routes, validation, JSON errors), ``engine`` (the compute thread,
bounded queue and deadlines), ``generation`` (the build being served and the switch to a new
one), ``metrics`` (Prometheus text), ``schemas`` (request/response models, OpenAPI), ``run``
(uvicorn and its workers). Needs the optional extra: ``pip install -e '.[serve]'``.
"""
