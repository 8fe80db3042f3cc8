"""The build being served, and the switch to a new build when the index directory is replaced.

``build --overwrite`` and ``sparseidx deny`` exchange the index directory atomically, so the
path names a new directory (a new inode) with a new ``manifest["generation"]`` (a new build, or
the same build with another deny list). A watcher thread stats the path
every ``interval`` seconds; on a change it opens the new build fully (checksums verified,
id lookup and item rows prepared) and only then makes it current. A request takes the
current ``Generation`` once and uses it throughout, so every answer comes from exactly one
build, and the old build stays mapped until its last request lets go of it.
"""

from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass, field

import numpy as np

from ..data import IdLookup
from ..errors import SparseIdxError
from ..index import Index
from ..progress import log


@dataclass
class Generation:
    """One opened build of the index: what a request reads, from start to end."""

    index: object
    number: int
    build_id: str
    key: tuple[int, int]  # (st_dev, st_ino) of the directory it was opened from
    loaded_at: float = field(default_factory=time.time)
    lookup: IdLookup | None = None
    rows: tuple | None = None  # sparse: CSR arrays of V's item rows, for /v1/items
    options: dict = field(default_factory=dict)  # parsed search options by request options

    @classmethod
    def open(cls, path: str, number: int, threads: int = 1) -> Generation:
        """Open the build at ``path``, prepare everything a request needs from it and run the engine once."""
        key = _key(path)
        index = Index.open(path)
        gen = cls(index, number, str(index.manifest.get("build_id", "")), key, lookup=IdLookup(index.item_ids))
        _warm(index, threads)
        return gen

    def item_row(self, item_id) -> int | None:
        """The internal index of an external id (a string from a URL is typed like the catalogue), or None."""
        where, found = self.lookup.lookup(np.array([item_id]))
        return int(where[0]) if found[0] else None

    def embedding(self, row: int):
        """The item's embedding: {dims, weights} (sparse) or the dense vector (FAISS), None if unavailable."""
        return self.index.item_embedding(row)


class Holder:
    """The current generation, replaced by a watcher thread when the index directory changes."""

    def __init__(self, path: str, interval: float = 0.5, threads: int = 1):
        self.path = os.path.abspath(path)
        self.interval = interval
        self.threads = threads
        self.current: Generation | None = None
        self._failed: tuple | None = None  # the directory whose open failed, not retried until it changes
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def load(self) -> Generation:
        """Open the index for the first time (errors propagate: the service does not start)."""
        self.current = Generation.open(self.path, 1, self.threads)
        return self.current

    def start(self) -> None:
        """Watch the index directory in a daemon thread."""
        self._thread = threading.Thread(target=self._watch, name="sparseidx-swap", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop watching."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def check(self) -> bool:
        """Switch to a new build if the directory was replaced; True when a switch happened."""
        try:
            key = _key(self.path)
        except OSError:
            return False  # between the two renames of a non-atomic swap, or removed: keep serving
        current = self.current
        if current is None or key == current.key or key == self._failed:
            return False
        try:
            gen = Generation.open(self.path, current.number + 1, self.threads)
        except (SparseIdxError, OSError) as exc:
            self._failed = key
            log.warning("keeping build %s: the replaced index at %s does not open: %s", current.build_id,
                        self.path, exc)
            return False
        if gen.index.info()["generation"] == current.index.info()["generation"]:
            current.key = gen.key  # the same build and deny list, moved
            return False
        self.current = gen
        log.info("serving build %s (generation %d) of %s", gen.build_id, gen.number, self.path)
        return True

    def _watch(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.check()
            except Exception:  # noqa: BLE001 - never let the watcher die: the old build keeps serving
                log.exception("index watcher: unexpected error; the current build keeps serving")


def _warm(index, threads: int) -> None:
    """Run every search path a request takes once: compiles the engine after an install, maps its pages."""
    if not index.n_items:
        return
    first = index.item_ids[0].item() if hasattr(index.item_ids[0], "item") else index.item_ids[0]
    histories = [[first]] + ([[]] if index.popularity is not None else [])
    for t in sorted({1, threads}):
        index.search_detailed(histories, 1, {"threads": t})
        index.search_detailed(histories, 1, {"threads": t}, exclude=[first], allow=[first])


def _key(path: str) -> tuple[int, int]:
    st = os.stat(path)
    return st.st_dev, st.st_ino
