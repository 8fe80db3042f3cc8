"""Prometheus text exposition of the service's own counters (no client library needed).

Each worker process counts its own requests; every sample carries the worker's pid, so a
scrape through the shared port sees one worker (see docs/serve.md, Metrics).
"""

from __future__ import annotations

import bisect
import os
from collections import defaultdict

# latency buckets in seconds: 100 us to 10 s
BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0)


class Metrics:
    """Request counts by route and status, latency histograms by route, errors by code."""

    def __init__(self):
        self.requests: dict[tuple[str, str, int], int] = defaultdict(int)
        self.errors: dict[tuple[str, str], int] = defaultdict(int)
        self.buckets: dict[str, list[int]] = defaultdict(lambda: [0] * (len(BUCKETS) + 1))
        self.sums: dict[str, float] = defaultdict(float)

    def observe(self, route: str, method: str, status: int, seconds: float) -> None:
        """Count one answered request and its latency."""
        self.requests[(route, method, status)] += 1
        self.buckets[route][bisect.bisect_left(BUCKETS, seconds)] += 1
        self.sums[route] += seconds

    def error(self, route: str, code: str) -> None:
        """Count one error answer by its code (e.g. ``unknown_item``, ``overloaded``)."""
        self.errors[(route, code)] += 1

    def render(self, generation: int | None, build_id: str | None, pending: int) -> str:
        """The Prometheus text format 0.0.4 of everything counted so far."""
        pid = os.getpid()
        out = ["# HELP sparseidx_requests_total Requests answered, by route, method and status.",
               "# TYPE sparseidx_requests_total counter"]
        for (route, method, status), n in sorted(self.requests.items()):
            out.append(f'sparseidx_requests_total{{route="{route}",method="{method}",status="{status}",'
                       f'pid="{pid}"}} {n}')
        out += ["# HELP sparseidx_request_seconds Request latency in the worker, by route.",
                "# TYPE sparseidx_request_seconds histogram"]
        for route, counts in sorted(self.buckets.items()):
            total = 0
            for bound, n in zip((*BUCKETS, "+Inf"), counts):
                total += n
                out.append(f'sparseidx_request_seconds_bucket{{route="{route}",le="{bound}",pid="{pid}"}} {total}')
            out.append(f'sparseidx_request_seconds_sum{{route="{route}",pid="{pid}"}} {self.sums[route]:.6f}')
            out.append(f'sparseidx_request_seconds_count{{route="{route}",pid="{pid}"}} {total}')
        out += ["# HELP sparseidx_errors_total Error answers, by route and error code.",
                "# TYPE sparseidx_errors_total counter"]
        for (route, code), n in sorted(self.errors.items()):
            out.append(f'sparseidx_errors_total{{route="{route}",code="{code}",pid="{pid}"}} {n}')
        out += ["# HELP sparseidx_queue_pending Searches queued or running in this worker.",
                "# TYPE sparseidx_queue_pending gauge", f'sparseidx_queue_pending{{pid="{pid}"}} {pending}',
                "# HELP sparseidx_index_generation Builds served by this worker so far (1 = the first).",
                "# TYPE sparseidx_index_generation gauge"]
        if generation is not None:
            out += [f'sparseidx_index_generation{{pid="{pid}"}} {generation}',
                    "# HELP sparseidx_index_info The build being served.", "# TYPE sparseidx_index_info gauge",
                    f'sparseidx_index_info{{build_id="{_label(build_id)}",pid="{pid}"}} 1']
        return "\n".join(out) + "\n"


def _label(value) -> str:
    """A Prometheus label value, escaped."""
    return str(value).replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
