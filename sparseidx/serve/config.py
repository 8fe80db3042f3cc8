"""The service's settings, shared by every worker (passed to them as JSON in the environment)."""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass

CONFIG_ENV = "SPARSEIDX_SERVE_CONFIG"


@dataclass
class ServeConfig:
    """What every worker needs to build the same service."""

    index: str
    watch_interval: float = 0.5  # seconds between checks for a replaced index
    max_pending: int = 256  # searches queued or running per worker
    timeout: float = 10.0  # seconds a request may wait for its answer
    batch_threads: int = 1  # threads of one batch request's search
    max_body: int = 4 << 20  # bytes
    verbosity: int = 1  # 0 warnings, 1 info, 2 debug

    def to_env(self) -> None:
        """Put this configuration in the environment, for workers started by uvicorn."""
        os.environ[CONFIG_ENV] = json.dumps(asdict(self))

    @classmethod
    def from_env(cls) -> ServeConfig:
        """The configuration ``to_env`` stored."""
        return cls(**json.loads(os.environ[CONFIG_ENV]))
