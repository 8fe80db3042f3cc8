"""Item segments from dominant latent dimensions, ranked for a user (Compressed ELSA's method).

Each item with an embedding falls into the group of its dominant dimension with its sign
(signed argmax |V_i|). Groups may be merged into segments by a merge file: the paper merges
groups whose generated names are alike, which the index alone cannot compute, so the merges are
an input (``name<TAB>+12 -305 +77`` lines); groups no line names stay segments of their own. A
segment s is the set K_s of its signed dimensions; for a user u = x E it scores
(1 / sqrt|K_s|) * sum over (d, sign) in K_s of sign * u_d (the authors' indicator matrix, rows
normalised), only segments scoring above 0 are offered, and items within a segment rank by the
index's own score. Indexes whose dimensions are items, not latent factors, are refused.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from .data import show_id
from .errors import DataError
from .factors import Factors

# models whose embedding has one dimension per item: every group would hold about one item
ONE_DIMENSION_PER_ITEM = {"chol": "Cholesky", "sansa": "SANSA"}
SIGNED_DIM = re.compile(r"[+-][0-9]{1,9}")


@dataclass
class Segments:
    """``keys`` (the signed dimensions of each segment, coded 2*dim + (sign > 0)), ``of_item`` (segment
    per item, -1 for items without an embedding), ``sizes``, the indicator ``matrix`` (segments x dims),
    ``names``, and the index's ``factors`` they were made from."""

    keys: list[np.ndarray]
    of_item: np.ndarray
    sizes: np.ndarray
    matrix: sp.csr_matrix
    names: list[str]
    factors: Factors

    def signed_dims(self, s: int) -> list[str]:
        """Segment s's dimensions as ``+12`` / ``-305``."""
        return [("+" if key % 2 else "-") + str(key // 2) for key in self.keys[s].tolist()]


def read_titles(path: str) -> dict[str, str]:
    """``item_id<TAB>title`` lines as a dict keyed by the id's text."""
    titles = {}
    with open(path, encoding="utf-8") as fh:
        for n, line in enumerate(fh, 1):
            line = line.rstrip("\n")
            if not line:
                continue
            if "\t" not in line:
                raise DataError(f"{path}, line {n}: expected 'item_id<TAB>title'")
            key, title = line.split("\t", 1)
            titles[key] = title
    return titles


def read_merges(path: str) -> list[tuple[str, np.ndarray, str]]:
    """``name<TAB>+12 -305 ...`` lines (``#`` comments, blank lines skipped) as (name, keys, where)."""
    merges = []
    with open(path, encoding="utf-8") as fh:
        for n, line in enumerate(fh, 1):
            line = line.rstrip("\n")
            if not line.strip() or line.startswith("#"):
                continue
            where = f"{path}, line {n}"
            name, _, dims = line.partition("\t")
            tokens = dims.split()
            if not name.strip() or not tokens:
                raise DataError(f"{where}: expected 'name<TAB>signed dimensions', for example 'Fantasy\\t+12 -305'")
            bad = next((t for t in tokens if not SIGNED_DIM.fullmatch(t)), None)
            if bad is not None:
                raise DataError(f"{where}: {bad[:40]!r} is not a signed dimension; write +12 or -305")
            keys = np.array([2 * int(t[1:]) + (t[0] == "+") for t in tokens], dtype=np.int64)
            merges.append((name.strip(), keys, where))
    return merges


def check_latent(index) -> None:
    """Refuse an index whose dimensions are not latent factors (segments would be single items)."""
    if index.backend != "sparse":
        raise DataError("segments need a sparse index (dominant dimensions of sparse item embeddings)")
    model = index.manifest.get("model")
    if model in ONE_DIMENSION_PER_ITEM:
        why = f"a {ONE_DIMENSION_PER_ITEM[model]} index has one dimension per item"
    elif index.n_dims >= index.n_items:
        why = f"it has as many dimensions as items ({index.n_dims:,} for {index.n_items:,})"
    else:
        return
    raise DataError(f"segments need latent-factor dimensions and {why}, so every segment would hold "
                    "about one item; build a Compressed ELSA index (--model celsa) for segments")


def item_segments(index, titles: dict[str, str] | None = None, merges=None, name_members: int = 3) -> Segments:
    """Group every item of a latent-factor sparse index by its signed dominant dimension, then merge.

    ``merges`` is ``read_merges``'s list; a segment without a name from it is named after its most
    popular members (``titles`` maps item ids to titles for that)."""
    check_latent(index)
    factors = index.to_factors()
    V = factors.embeddings
    n, d = V.shape
    has = np.flatnonzero(np.diff(V.indptr) > 0)
    best = np.asarray(abs(V).argmax(axis=1)).ravel()[has]
    positive = np.asarray(V[has, best]).ravel() >= 0
    key = np.full(n, -1, dtype=np.int64)
    key[has] = 2 * best + positive
    merges = list(merges or [])
    segment_of_key = np.full(2 * d, -1, dtype=np.int64)
    for s, (name, keys, where) in enumerate(merges):
        if keys.max() >= 2 * d:
            raise DataError(f"{where}: dimension {keys.max() // 2} is out of range (the index has {d:,})")
        if len(np.unique(keys // 2)) < len(keys):
            raise DataError(f"{where}: a dimension is listed twice or with both signs (their indicators cancel)")
        taken = keys[segment_of_key[keys] >= 0]
        if len(taken):
            raise DataError(f"{where}: dimension {('+' if taken[0] % 2 else '-')}{taken[0] // 2} is already in "
                            f"segment {merges[segment_of_key[taken[0]]][0]!r}; a group joins one segment")
        segment_of_key[keys] = s
    present = np.unique(key[has])
    alone = present[segment_of_key[present] < 0]
    segment_of_key[alone] = len(merges) + np.arange(len(alone))
    seg_keys = [keys for _, keys, _ in merges] + list(alone.reshape(-1, 1))
    of_item = np.where(key >= 0, segment_of_key[np.maximum(key, 0)], -1)
    sizes = np.bincount(of_item[of_item >= 0], minlength=len(seg_keys))
    lengths = np.array([len(k) for k in seg_keys], dtype=np.int64)
    flat = np.concatenate(seg_keys) if seg_keys else np.zeros(0, dtype=np.int64)
    rows = np.repeat(np.arange(len(seg_keys)), lengths)
    values = np.where(flat % 2 == 1, 1.0, -1.0) / np.sqrt(np.repeat(lengths, lengths))
    B = sp.csr_matrix((values, (rows, flat // 2)), shape=(len(seg_keys), d))
    names = [name for name, _, _ in merges] + member_names(index, of_item, sizes, titles, name_members)[len(merges):]
    return Segments(seg_keys, of_item, sizes, B, names, factors)


def member_names(index, of_item, sizes, titles, name_members: int) -> list[str]:
    """Each segment named after its ``name_members`` most popular members (titles when given)."""
    n = len(of_item)
    pop = np.asarray(index.popularity) if index.popularity is not None else np.zeros(n)
    members = np.flatnonzero(of_item >= 0)
    order = members[np.lexsort((members, -pop[members], of_item[members]))]  # by segment, most popular first
    starts = np.r_[0, np.cumsum(sizes)[:-1]]
    show = (lambda i: titles.get(str(index.item_ids[i]), show_id(index.item_ids[i]))) if titles else \
        (lambda i: show_id(index.item_ids[i]))
    return [", ".join(show(i) for i in order[start: start + min(name_members, size)])
            for start, size in zip(starts.tolist(), sizes.tolist())]


def rank_segments(index, segments: Segments, history, n_segments: int = 5, k: int = 5) -> list[dict]:
    """The user's top segments scoring above 0 and the top k items of each, history excluded."""
    if n_segments < 1 or k < 1:
        raise DataError("--segments and -k must be at least 1")
    Q = index.histories_matrix([history])
    u = sp.csr_matrix(Q @ segments.factors.encoder)
    seg_scores = np.asarray((segments.matrix @ u.T).todense()).ravel()
    item_scores = np.asarray((segments.factors.embeddings @ u.T).todense()).ravel() * segments.factors.priors
    item_scores[Q.indices] = -np.inf
    offered = np.flatnonzero((seg_scores > 0) & (segments.sizes > 0))
    out = []
    for s in offered[np.lexsort((offered, -seg_scores[offered]))][:n_segments]:
        members = np.flatnonzero(segments.of_item == s)
        members = members[np.isfinite(item_scores[members])]
        top = members[np.lexsort((members, -item_scores[members]))][:k]
        out.append({"segment": int(s), "dims": segments.signed_dims(s), "size": int(segments.sizes[s]),
                    "name": segments.names[s], "score": float(seg_scores[s]),
                    "items": [{"item_id": index.item_ids[i], "score": float(item_scores[i])} for i in top]})
    return out
