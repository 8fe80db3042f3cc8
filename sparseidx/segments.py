"""Item segments from dominant dimensions, ranked for a user by the same index.

Each item's segment is its dominant embedding dimension with its sign (signed
argmax |V_i|), so segments partition the items. A segment x dims matrix S (the
normalised mean of its members' embeddings) scores segments for a user vector
u = x E as <u, S_s>; items within a segment rank by the index's own score.
Names come from a title file (``item_id<TAB>title``) or the most popular members.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from .data import show_id
from .errors import DataError
from .factors import Factors


@dataclass
class Segments:
    """``dim``/``sign`` per segment, ``of_item`` (segment index per item), ``sizes``, ``matrix`` S, ``names``,
    and the index's ``factors`` they were made from."""

    dim: np.ndarray
    sign: np.ndarray
    of_item: np.ndarray
    sizes: np.ndarray
    matrix: sp.csr_matrix
    names: list[str]
    factors: Factors


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


def item_segments(index, titles: dict[str, str] | None = None, name_members: int = 3) -> Segments:
    """Segment every item of a sparse index by its signed dominant dimension."""
    if index.backend != "sparse":
        raise DataError("segments need a sparse index (dominant dimensions of sparse item embeddings)")
    factors = index.to_factors()
    V = factors.embeddings
    n = V.shape[0]
    has = np.diff(V.indptr) > 0
    dim = np.full(n, -1, dtype=np.int64)
    sign = np.zeros(n, dtype=np.int8)
    if has.any():
        absV = abs(V)
        best = np.asarray(absV.argmax(axis=1)).ravel()
        dim[has] = best[has]
        sign[has] = np.where(np.asarray(V[np.flatnonzero(has), best[has]]).ravel() >= 0, 1, -1)
    keys = dim * 2 + (sign > 0)  # items without embedding entries form one segment (dim -1)
    uniq, of_item = np.unique(keys, return_inverse=True)
    sizes = np.bincount(of_item, minlength=len(uniq))
    member = sp.csr_matrix((np.ones(n), (of_item, np.arange(n))), shape=(len(uniq), n))
    S = sp.csr_matrix(sp.diags(1.0 / sizes) @ member @ V)
    norms = np.sqrt(np.asarray(S.multiply(S).sum(axis=1)).ravel())
    S = sp.csr_matrix(sp.diags(np.where(norms > 0, 1.0 / np.maximum(norms, 1e-30), 0.0)) @ S)
    seg_dim = np.where(uniq >= 0, uniq // 2, -1)
    seg_sign = np.where(uniq >= 0, np.where(uniq % 2 == 1, 1, -1), 0).astype(np.int8)
    pop = np.asarray(index.popularity) if index.popularity is not None else np.zeros(n)
    order = np.lexsort((np.arange(n), -pop, of_item))  # members by segment, most popular first
    starts = np.r_[0, np.cumsum(sizes)[:-1]]
    names = []
    for s in range(len(uniq)):
        members = order[starts[s]: starts[s] + min(name_members, sizes[s])]
        labels = [titles.get(str(index.item_ids[i]), show_id(index.item_ids[i])) if titles else
                  show_id(index.item_ids[i]) for i in members]
        names.append(", ".join(labels))
    return Segments(seg_dim, seg_sign, of_item, sizes, S, names, factors)


def rank_segments(index, segments: Segments, history, n_segments: int = 5, k: int = 5) -> list[dict]:
    """The user's top segments (score <u, S_s>) and the top k items of each, history excluded."""
    if n_segments < 1 or k < 1:
        raise DataError("--segments and -k must be at least 1")
    Q = index.histories_matrix([history])
    u = sp.csr_matrix(Q @ segments.factors.encoder)
    seg_scores = np.asarray((segments.matrix @ u.T).todense()).ravel()
    item_scores = np.asarray((segments.factors.embeddings @ u.T).todense()).ravel() * segments.factors.priors
    item_scores[Q.indices] = -np.inf
    out = []
    for s in np.argsort(-seg_scores, kind="stable")[:n_segments]:
        members = np.flatnonzero(segments.of_item == s)
        members = members[np.isfinite(item_scores[members])]
        top = members[np.lexsort((members, -item_scores[members]))][:k]
        out.append({"segment": int(s), "dim": int(segments.dim[s]), "sign": int(segments.sign[s]),
                    "size": int(segments.sizes[s]), "name": segments.names[s], "score": float(seg_scores[s]),
                    "items": [{"item_id": index.item_ids[i], "score": float(item_scores[i])} for i in top]})
    return out
