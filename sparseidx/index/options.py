"""Query settings of each backend, validated once where they are made (as FAISS's ``SearchParameters``).

An index takes its backend's options object, a mapping of the same names (from JSON, a
config file or the command line) or keyword knobs: ``index.search(H, 20, prune=0.003)``,
``index.search(H, 20, SparseSearchOptions(prune=0.003))`` and
``index.search(H, 20, {"prune": 0.003})`` are the same query. A new knob is a field here,
its use in the backend's engine, and its command-line option.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Mapping
from dataclasses import dataclass, fields, replace

from ..errors import DataError


@dataclass(frozen=True)
class SearchOptions:
    """Settings every backend takes.

    ``threads``: threads for a batch (default: all cores); ``exclude_history``: never
    return an item of the query's own history; ``skip_unknown``: drop history item ids
    the index does not know, with a warning, instead of failing; ``target_recall``:
    instead of the backend's knobs, the fastest setting whose recall@k against the exact
    answer reaches this (the index's own operating point when it was built for it,
    else calibrated once on the batch's histories).
    """

    threads: int | None = None
    exclude_history: bool = True
    skip_unknown: bool = False
    target_recall: float | None = None

    def __post_init__(self):
        for f in fields(self):
            object.__setattr__(self, f.name, _checked_type(f.name, getattr(self, f.name), f.type))
        self.check()

    def check(self) -> None:
        """Raise DataError for a value out of its range (types are checked by the constructor)."""
        _at_least("threads", self.threads, 1)
        if self.target_recall is not None:
            if not 0.0 < self.target_recall <= 1.0:
                raise DataError(f"target_recall must be in (0, 1], got {self.target_recall}")
            if self.knobs():
                raise DataError(f"give target_recall or the knobs ({', '.join(self.knobs())}), not both")

    def knobs(self) -> dict:
        """The backend's own knobs that are set (not the settings every backend takes)."""
        common = SearchOptions.names()
        return {name: value for name, value in self.changed().items() if name not in common}

    @classmethod
    def names(cls) -> tuple[str, ...]:
        """The knobs this backend takes."""
        return tuple(f.name for f in fields(cls))

    @classmethod
    def parse(cls, options=None, **knobs) -> "SearchOptions":
        """Options from an options object of this class, a mapping of knob names, and/or keyword knobs.

        Unknown names, another backend's knobs and values of the wrong type are refused
        with a DataError naming the knob.
        """
        if type(options) is cls and not knobs:  # the query path's usual case: an options object made once
            return options
        if isinstance(options, SearchOptions):
            if not isinstance(options, cls):
                raise DataError(f"{type(options).__name__} given to an index that takes {cls.__name__}")
            base, given = options, {}
        elif options is None or isinstance(options, Mapping):
            base, given = cls(), dict(options or {})
        else:
            raise DataError(f"search options must be a {cls.__name__} or a mapping of knob names, "
                            f"got {type(options).__name__}")
        given.update({k: v for k, v in knobs.items() if v is not None})
        if not given:
            return base
        unknown = [name for name in given if name not in cls.names()]
        if unknown:
            raise DataError(_unknown_message(cls, [str(u) for u in unknown]))
        return replace(base, **given)

    def changed(self) -> dict:
        """The knobs set to something else than their default (for reports)."""
        default = type(self)()
        return {f.name: getattr(self, f.name) for f in fields(self)
                if getattr(self, f.name) != getattr(default, f.name)}


@dataclass(frozen=True)
class SparseSearchOptions(SearchOptions):
    """Knobs of the sparse engine; none set means exact search.

    ``query_dims``: keep the m strongest dimensions of u = xE; ``query_mass``: keep
    the strongest dimensions holding this fraction of sum |u|; ``budget``: scan at most
    this many postings, highest impact first; ``prune``: skip postings whose
    contribution |u_d v| is below this fraction of the query's largest possible one;
    ``candidates``: rescore this many best approximate items exactly (default 2k with
    ``prune``).
    """

    query_dims: int | None = None
    query_mass: float | None = None
    budget: int | None = None
    prune: float | None = None
    candidates: int | None = None

    def check(self) -> None:
        """Raise DataError for a knob out of its range."""
        super().check()
        _at_least("query_dims", self.query_dims, 1)
        _at_least("budget", self.budget, 1, " posting")
        _at_least("candidates", self.candidates, 1)
        if self.query_mass is not None and not 0.0 < self.query_mass <= 1.0:
            raise DataError(f"query_mass must be in (0, 1], got {self.query_mass}")
        if self.prune is not None and not 0.0 <= self.prune < 1.0:
            raise DataError(f"prune must be in [0, 1), got {self.prune}")

    def rescored(self, k: int, n_items: int) -> int:
        """How many candidates a query with these options rescores exactly (0: none)."""
        if self.candidates is not None and self.candidates < k:
            raise DataError(f"candidates must be at least k ({k}) to rescore, got {self.candidates}")
        candidates = self.candidates if self.candidates is not None else (2 * k if self.prune else 0)
        return min(candidates, n_items)


@dataclass(frozen=True)
class FaissSearchOptions(SearchOptions):
    """Knobs of the FAISS backend: ``ef_search`` (HNSW candidate list) or ``nprobe`` (IVF lists probed)."""

    ef_search: int | None = None
    nprobe: int | None = None

    def check(self) -> None:
        """Raise DataError for a knob out of its range, or both knobs at once."""
        super().check()
        _at_least("ef_search", self.ef_search, 1)
        _at_least("nprobe", self.nprobe, 1)
        if self.ef_search is not None and self.nprobe is not None:
            raise DataError("give --ef-search (HNSW) or --nprobe (IVF), not both")


BACKEND_OPTIONS = {"sparse": SparseSearchOptions, "faiss": FaissSearchOptions}


def _unknown_message(cls, unknown: list[str]) -> str:
    """Why knobs are refused: another backend's (say which), or none at all (list the valid ones)."""
    names = ", ".join(unknown)
    shown = {"sparse": "sparse", "faiss": "FAISS"}
    for backend, other in BACKEND_OPTIONS.items():
        if other is not cls and all(name in other.names() for name in unknown):
            this = "sparse" if cls is SparseSearchOptions else "FAISS"
            flags = ", ".join("--" + n.replace("_", "-") for n in unknown)
            own = ", ".join(n for n in cls.names() if n not in SearchOptions.names())
            return (f"{flags} appl{'ies' if len(unknown) == 1 else 'y'} to {shown[backend]} indexes; "
                    f"this index is {this} (its knobs: {own})")
    return f"unknown search option(s) {names}; this index takes: {', '.join(cls.names())}"


def _checked_type(name: str, value, annotation: str):
    """``value`` as a plain bool, int or float; refuses the wrong type (a string, a float count, a bool
    as a number, NaN)."""
    if value is None and "None" in annotation:
        return None
    if annotation.startswith("bool"):
        ok, want, cast = isinstance(value, bool), "true or false", bool
    elif annotation.startswith("int"):
        ok, want, cast = isinstance(value, numbers.Integral) and not isinstance(value, bool), "an integer", int
    else:
        ok = (isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value))
        want, cast = "a finite number", float
    if not ok:
        raise DataError(f"search option {name} must be {want}, got {_shown(value)}")
    return cast(value)


def _shown(value) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:60] + "..."


def _at_least(name: str, value, low: int, unit: str = "") -> None:
    if value is not None and value < low:
        raise DataError(f"{name} must be at least {low}{unit}, got {value}")
