"""Batch recommendations and the Gram matrix on a Dask cluster (the optional extra ``sparseidx[dask]``).

``recommend`` answers every user of a histories dataset (a directory of Parquet or text
files, one partition per file) on the workers and writes one Parquet file per partition;
``gram`` forms X^T X and the item counts of an interactions dataset larger than one
machine's memory, for ``Cholesky.fit_gram``. ``scheduler`` is ``local:N`` (N worker
processes on this machine), ``tcp://HOST:PORT`` (a running ``dask scheduler``) or a
``distributed.Client``. Dask is imported only when a job starts.
"""

from __future__ import annotations

from .cluster import connect, parse_scheduler
from .gram import GramResult, gram
from .recommend import RESULTS_DIR, recommend

__all__ = ["RESULTS_DIR", "GramResult", "connect", "gram", "parse_scheduler", "recommend"]
