"""Compiled query path: encode, prune, accumulate over posting lists, mask, top-k.

One exact query costs about P x 1 ns (P postings touched, scatter-add into a dense
accumulator) plus a selection pass over the 64-item blocks that were touched (all of
them once a query plans n_items / 8 postings or more): a vectorised pass scores a
block and takes its maximum, and only blocks whose maximum reaches the kk-th largest
block maximum are offered item by item to the heap.
Approximate queries skip low-impact postings (|u_d * v| below ``prune`` times the
query's largest possible contribution; lists are impact ordered, so each list is
cut at a prefix), list the items they touch (or mark their blocks, once they are
many), keep the best ``candidates`` items by approximate score and rescore them
exactly from the forward index (item rows of V).
A pruned query reads short prefixes of hundreds of lists and a few dozen item rows,
so its cost is cache misses and branch mispredictions more than postings: list
heads and rows are prefetched ahead of use, and the touched lists (dimensions,
items) are appended to without a branch.
Per-thread scratch (accumulator, block flags, user vector) is reused across the
queries a thread answers and reset only where it was written.
Every loop that runs once per entry (encoder row, posting, rescored row) indexes with
unsigned integers: item and dimension ids arrive as uint32 views and positions as
uint64, so numba emits no negative-index wraparound code there. Mixing uint64 with a
signed integer gives float64 in numba, so those loops use the unsigned constants below.
"""

from __future__ import annotations

import os
from typing import NamedTuple

import numba as nb
import numpy as np

from .prefetch import prefetch

BLOCK_SHIFT = 6  # item blocks of 64 for touched tracking and block maxima
PREFETCH = 8  # posting lists fetched ahead of the one being scanned
SWITCH_SHIFT = 2  # pruned queries mark blocks, not items, once they touched n_items / 4
RADIX_BITS = 8  # _top_by_weight's histograms: 256 buckets of a float32's exponent, then of its mantissa
LINE = 16  # 4-byte entries per 64-byte cache line
DENSE_SHIFT = 3  # exact queries planning n_items / 8 postings or more skip block marks: every block is visited
NEG_INF = np.float32(-np.inf)
U1 = np.uint64(1)
U2 = np.uint64(2)
U3 = np.uint64(3)
U4 = np.uint64(4)
U_BLOCK_SHIFT = np.uint32(BLOCK_SHIFT)
U_EXPONENT_SHIFT = np.uint32(23)
U_MANTISSA_SHIFT = np.uint32(23 - RADIX_BITS)
U_RADIX_MASK = np.uint32((1 << RADIX_BITS) - 1)


class Queries(NamedTuple):
    """A batch of histories as CSR rows over the index's items."""

    indptr: np.ndarray  # int64 (n + 1)
    items: np.ndarray  # uint32 item indices
    weights: np.ndarray  # float32


class Arrays(NamedTuple):
    """The index as the kernels read it: encoder rows, posting lists, priors, forward rows (ids as uint32)."""

    e_indptr: np.ndarray
    e_dims: np.ndarray
    e_w: np.ndarray
    v_indptr: np.ndarray
    v_items: np.ndarray
    v_w: np.ndarray
    max_abs: np.ndarray
    priors: np.ndarray
    f_indptr: np.ndarray
    f_dims: np.ndarray
    f_w: np.ndarray


class Settings(NamedTuple):
    """One batch's query settings (0 = knob unset)."""

    k: int
    query_dims: int
    query_mass: float
    budget: int
    prune: np.float32
    candidates: int  # items rescored exactly (0: none)
    exclude_history: bool
    vectors: bool  # query rows are user vectors u (dims, weights), not histories to encode


class Filters(NamedTuple):
    """Items a batch may not return: ``blocked`` for every query (size 0: none), plus per-query lists.

    ``ex_*``: CSR rows of items excluded per query; ``al_*``: CSR rows of the only items
    each query may return (sorted), read when ``per_query_allow`` (one row for all the
    queries when ``al_shared``).
    """

    blocked: np.ndarray  # uint8 (n_items,) or (0,)
    ex_indptr: np.ndarray  # int64 (n + 1)
    ex_items: np.ndarray  # uint32
    al_indptr: np.ndarray  # int64 (n + 1, or 2 when shared)
    al_items: np.ndarray  # uint32
    per_query_allow: bool
    al_shared: bool


class Output(NamedTuple):
    """Answer rows and per-query statistics (postings scanned, items with a non-zero score, entries read)."""

    scores: np.ndarray  # float32 (n, k)
    ids: np.ndarray  # int64 (n, k)
    stats: np.ndarray  # int64 (3, n)


class Scratch(NamedTuple):
    """One thread's query buffers, zeroed where they are accumulated into and reset after each query."""

    u: np.ndarray  # the user vector, float32 (n_dims)
    dim_mark: np.ndarray  # dimensions listed in ``dims``
    dims: np.ndarray  # touched dimensions
    keep: np.ndarray  # dimensions kept by the query knobs
    limit: np.ndarray  # postings scanned of each kept dimension
    bounds: np.ndarray  # |u_d| max|V_d| of each kept dimension
    visit: np.ndarray  # kept dimensions above the pruning threshold
    acc: np.ndarray  # item scores, float32 (n_items)
    block_mark: np.ndarray  # touched 64-item blocks
    item_mark: np.ndarray  # items already offered (zeros pass)
    touched: np.ndarray  # touched items, or marked blocks
    hs: np.ndarray  # candidate heap: scores
    hi: np.ndarray  # candidate heap: items
    rs: np.ndarray  # rescored heap: scores
    ri: np.ndarray  # rescored heap: items
    sbuf: np.ndarray  # item scores of marked blocks
    bkey: np.ndarray  # block maxima
    gate: np.ndarray  # items of the query's own allow list
    no_items: np.ndarray  # an empty uint32 array: the filter lists of a query that has none


class Gate(NamedTuple):
    """What one query may return, besides items masked in the accumulator (history, exclusions)."""

    blocked: np.ndarray  # Filters.blocked
    allowed: np.ndarray  # Scratch.gate, read when ``use_allowed``
    allow_row: np.ndarray  # the query's allow list, sorted
    use_allowed: bool
    any: bool  # some item is blocked or an allow list applies


def compiled(kernel) -> bool:
    """Whether a numba kernel is compiled in this process or cached on disk (False: its first call compiles)."""
    if kernel.signatures:
        return True
    index = getattr(getattr(getattr(kernel, "_cache", None), "_cache_file", None), "_index_path", None)
    return index is None or os.path.exists(index)


@nb.njit(cache=True, inline="always")
def _better(s1, i1, s2, i2):
    """Ranking order: higher score first, then lower item index (no branch)."""
    return (s1 > s2) | ((s1 == s2) & (i1 < i2))


# The heap helpers are inlined into their callers: a call costs as much as a short sift.
@nb.njit(cache=True, inline="always")
def _sift_down(hs, hi, size, pos):
    # min-heap on the ranking order: the root is the worst kept candidate; the entry at
    # ``pos`` moves down a hole, the worse child of each level chosen without a branch
    s = hs[pos]
    i = hi[pos]
    while True:
        c = 2 * pos + 1
        if c >= size:
            break
        r = c + 1
        if r < size:
            c = r if _better(hs[c], hi[c], hs[r], hi[r]) else c
        if not _better(s, i, hs[c], hi[c]):
            break
        hs[pos] = hs[c]
        hi[pos] = hi[c]
        pos = c
    hs[pos] = s
    hi[pos] = i


@nb.njit(cache=True, inline="always")
def _heapify(hs, hi, size):
    for pos in range(size // 2 - 1, -1, -1):
        _sift_down(hs, hi, size, pos)


@nb.njit(cache=True, inline="always")
def _offer(hs, hi, size, k, s, i):
    """Offer candidate (s, i) to the ``size`` kept of at most k; returns the new size. The kept are in
    arrival order until k are held, from then on a heap whose root is the worst kept."""
    if size < k:
        hs[size] = s
        hi[size] = i
        if size + 1 == k:
            _heapify(hs, hi, k)
        return size + 1
    if _better(s, i, hs[0], hi[0]):
        hs[0] = s
        hi[0] = i
        _sift_down(hs, hi, size, 0)
    return size


@nb.njit(cache=True, inline="always")
def _reaching_bucket(hist, above, target):
    """The highest bucket at which ``above`` plus the weights from the top down reach target (-1: none),
    and the weight of the buckets above it added to ``above``."""
    for bucket in range(hist.shape[0] - 1, -1, -1):
        if above + hist[bucket] >= target:
            return bucket, above
        above += hist[bucket]
    return -1, above


@nb.njit(cache=True)
def _top_by_weight(keys, weights, n, target, out):
    """The best of keys[:n] (non-negative; larger first, ties: lower position first) until their weights reach target.

    Writes their positions into ``out``, the lowest ranked last, and returns how
    many (all n when the weights fall short of target). Two 256-bucket histograms
    of the keys' bits (exponent, then the top mantissa bits) find the bucket where
    the weights reach target in O(n); only the keys in that bucket are sorted.
    """
    bits = keys[:n].view(np.uint32)  # non-negative float32: the bits order as the values
    hist = np.zeros(1 << RADIX_BITS, dtype=np.int64)
    for t in range(n):
        hist[bits[t] >> U_EXPONENT_SHIFT] += weights[t]
    top, above = _reaching_bucket(hist, 0, target)  # above: weight of the keys ranked above the bucket
    if top < 0:
        for t in range(n):
            out[t] = t
        return n
    hist[:] = 0
    for t in range(n):
        if bits[t] >> U_EXPONENT_SHIFT == top:
            hist[(bits[t] >> U_MANTISSA_SHIFT) & U_RADIX_MASK] += weights[t]
    bucket, above = _reaching_bucket(hist, above, target)
    top = (top << RADIX_BITS) | bucket
    c = 0
    group = np.empty(n, dtype=np.int64)
    n_group = 0
    for t in range(n):
        prefix = np.int64(bits[t] >> U_MANTISSA_SHIFT)
        out[c] = t
        c += prefix > top
        group[n_group] = t
        n_group += prefix == top
    order = np.argsort(-keys[group[:n_group]], kind="mergesort")  # stable: equal keys keep position order
    for r in range(n_group):
        t = group[order[r]]
        out[c] = t
        c += 1
        above += weights[t]
        if above >= target:
            break
    return c


@nb.njit(cache=True)
def _select_dims(u, dims, nd, max_abs, v_indptr, query_dims, query_mass, budget, keep, limit):
    """Choose which touched dimensions to scan and how many postings of each.

    Writes the kept dimensions into ``keep`` and their posting limits into
    ``limit``; returns how many were kept. Exact when no knob is set.
    """
    if query_dims <= 0 and query_mass <= 0.0 and budget <= 0:
        for j in range(nd):
            d = dims[j]
            keep[j] = d
            limit[j] = v_indptr[d + 1] - v_indptr[d]
        return nd
    mags = np.empty(nd, dtype=np.float32)
    for j in range(nd):
        mags[j] = abs(u[dims[j]])
    # kept positions: the top query_dims by |u_d|, cut to the strongest holding query_mass of sum |u_d|
    n_keep = nd
    if query_mass > 0.0 and query_mass < 1.0:
        kept = np.argsort(-mags, kind="mergesort")  # stable: equal magnitudes keep position order
        if query_dims > 0 and query_dims < n_keep:
            n_keep = query_dims
        total = 0.0
        for j in range(nd):
            total += mags[j]
        mass = 0.0
        for t in range(n_keep):
            mass += mags[kept[t]]
            if mass >= query_mass * total:
                n_keep = t + 1
                break
    elif query_dims > 0 and query_dims < nd:
        kept = np.empty(nd, dtype=np.int64)
        n_keep = _top_by_weight(mags, np.ones(nd, dtype=np.int64), nd, query_dims, kept)
    else:
        kept = np.arange(nd)
    if budget <= 0:
        for t in range(n_keep):
            d = dims[kept[t]]
            keep[t] = d
            limit[t] = v_indptr[d + 1] - v_indptr[d]
        return n_keep
    # budget: whole lists of the dimensions with the largest possible contribution |u_d| * max|V_d| (ties:
    # earlier kept position first) until the budget is spent; the last of them is cut to what is left
    bounds = np.empty(n_keep, dtype=np.float32)
    lengths = np.empty(n_keep, dtype=np.int64)
    for t in range(n_keep):
        d = dims[kept[t]]
        bounds[t] = mags[kept[t]] * max_abs[d]
        lengths[t] = v_indptr[d + 1] - v_indptr[d]
    chosen = np.empty(n_keep, dtype=np.int64)
    n_out = _top_by_weight(bounds, lengths, n_keep, budget, chosen)
    left = budget
    for r in range(n_out):
        t = chosen[r]
        take = lengths[t] if lengths[t] < left else left
        keep[r] = dims[kept[t]]
        limit[r] = take
        left -= take
    return n_out


@nb.njit(cache=True)
def _accumulate_pruned(u, keep, limit, n_keep, whole, max_abs, v_indptr, v_items, v_w, prune, bounds, visit,
                       acc, touched, block_mark, switch):
    """Scatter-add only postings with |u_d * v| >= prune * max_d |u_d| max|V_d|, listing touched items.

    ``whole``: scan the kept lists to their end (``limit`` unused). Each dimension's
    bound |u_d| max|V_d| is computed once (into ``bounds``); lists below the
    threshold are skipped without touching them. An item is listed when a posting
    finds its score at 0: a first touch, or (rarely) a sum back at exactly 0, so an
    item may be listed twice and the selection takes each once. Once ``switch``
    items are listed, the rest of the scan marks item blocks instead and the listed
    items are handed over to their blocks. Returns (postings scanned, items listed,
    or -1 when the touched items are in ``block_mark``).
    """
    top = np.float32(0.0)
    for j in range(n_keep):
        d = keep[j]
        bound = abs(u[d]) * max_abs[d]
        bounds[j] = bound
        if bound > top:
            top = bound
    tau = prune * top
    # the lists to visit, as positions in ``keep`` (``limit`` is indexed alike)
    n_visit = 0
    for j in range(n_keep):
        visit[n_visit] = j
        n_visit += (bounds[j] >= tau) & (bounds[j] != 0.0)
    postings = 0
    n_touched = np.uint64(0)
    for t in range(n_visit):
        # a list's head is a cache miss: fetch the one PREFETCH lists ahead
        if t + PREFETCH < n_visit:
            ahead = v_indptr[keep[visit[t + PREFETCH]]]
            prefetch(v_w, ahead)
            prefetch(v_items, ahead)
        j = visit[t]
        d = keep[j]
        ud = u[d]
        cut = tau / abs(ud)
        start = v_indptr[d]
        p = np.uint64(start)
        stop = np.uint64(v_indptr[d + 1] if whole else start + limit[j])
        if n_touched < switch:
            while p < stop:
                w = v_w[p]
                if abs(w) < cut:
                    break
                i = v_items[p]
                # branch-free append of first touches (``touched`` has room for one more); testing the
                # score itself, not a flag array, spares a load that waits on the previous posting's store
                a = acc[i]
                touched[n_touched] = i
                n_touched += np.uint64(a == 0.0)
                acc[i] = a + ud * w
                p += U1
        else:  # many items touched: mark their blocks instead, cheaper per posting and to select from
            while p < stop:
                w = v_w[p]
                if abs(w) < cut:
                    break
                i = v_items[p]
                acc[i] += ud * w
                block_mark[i >> U_BLOCK_SHIFT] = 1
                p += U1
        postings += np.int64(p) - start
    if n_touched < switch:
        return postings, np.int64(n_touched)
    for t in range(n_touched):  # hand the listed items over to the blocks
        block_mark[touched[t] >> U_BLOCK_SHIFT] = 1
    return postings, np.int64(-1)


@nb.njit(cache=True)
def _accumulate(u, keep, limit, n_keep, v_indptr, v_items, v_w, acc, block_mark):
    """Scatter-add the chosen posting-list prefixes; returns postings.

    A query planning n_items / 8 postings or more touches nearly every 64-item
    block: it marks them all at once. A sparser one marks each posting's block.
    """
    planned = 0
    for j in range(n_keep):
        planned += limit[j]
    dense = planned >= acc.shape[0] >> DENSE_SHIFT
    for j in range(n_keep):
        d = keep[j]
        ud = u[d]
        start = np.uint64(v_indptr[d])
        stop = start + np.uint64(limit[j])
        if dense:
            for p in range(start, stop):
                acc[v_items[p]] += ud * v_w[p]
        else:
            for p in range(start, stop):
                i = v_items[p]
                acc[i] += ud * v_w[p]
                block_mark[i >> U_BLOCK_SHIFT] = 1
    if dense:
        block_mark[:] = 1
    return planned


@nb.njit(cache=True, inline="always")
def _selectable(g, i):
    """Whether the gate lets item i be returned."""
    return (g.blocked.shape[0] == 0 or g.blocked[i] == 0) and (not g.use_allowed or g.allowed[i] != 0)


@nb.njit(cache=True)
def _offer_zeros(hs, hi, size, kk, acc, skip, g):
    """Untouched items score 0: offer them in index order while one can still enter the heap.

    Under a per-query allow list only its items are visited (they are sorted).
    """
    if size == kk and hs[0] > 0.0:
        return size
    if g.use_allowed:
        for t in range(g.allow_row.shape[0]):
            i = np.int64(g.allow_row[t])
            if skip[i] != 0 or acc[i] == NEG_INF or (g.blocked.shape[0] > 0 and g.blocked[i] != 0):
                continue
            if size == kk and not _better(np.float32(0.0), i, hs[0], hi[0]):
                break
            size = _offer(hs, hi, size, kk, np.float32(0.0), i)
        return size
    for i in range(acc.shape[0]):
        if skip[i] != 0 or acc[i] == NEG_INF or (g.any and g.blocked[i] != 0):
            continue
        if size == kk and not _better(np.float32(0.0), i, hs[0], hi[0]):
            break
        size = _offer(hs, hi, size, kk, np.float32(0.0), i)
    return size


@nb.njit(cache=True, inline="always")
def _row_dot(u, f_indptr, f_dims, f_w, i):
    """<u, V_i> over item i's forward row."""
    q = np.uint64(f_indptr[i])
    stop = np.uint64(f_indptr[i + 1])
    # four running sums: one would make every entry wait for the previous addition
    s0 = s1 = s2 = s3 = np.float32(0.0)
    while q + U4 <= stop:
        s0 += u[f_dims[q]] * f_w[q]
        s1 += u[f_dims[q + U1]] * f_w[q + U1]
        s2 += u[f_dims[q + U2]] * f_w[q + U2]
        s3 += u[f_dims[q + U3]] * f_w[q + U3]
        q += U4
    while q < stop:
        s0 += u[f_dims[q]] * f_w[q]
        q += U1
    return (s0 + s1) + (s2 + s3)


@nb.njit(cache=True)
def _rescore(hs, hi, size, u, f_indptr, f_dims, f_w, priors, k, rs, ri):
    """Exact scores prior_i * <u, V_i> of the ``size`` candidates in (hs, hi); top k into (rs, ri).

    Returns (kept, forward entries read).
    """
    out = 0
    entries = 0
    for t in range(size):  # the candidates' rows are cache misses: ask for all at once
        i = hi[t]
        for p in range(f_indptr[i], f_indptr[i + 1], LINE):
            prefetch(f_dims, p)
            prefetch(f_w, p)
    for t in range(size):
        i = hi[t]
        entries += f_indptr[i + 1] - f_indptr[i]
        out = _offer(rs, ri, out, k, _row_dot(u, f_indptr, f_dims, f_w, i) * priors[i], i)
    return out, entries


@nb.njit(cache=True)
def _select_touched(acc, priors, touched, n_touched, no_skip, hs, hi, kk, g):
    """Top-kk of the listed items the gate lets through into the heap (hs, hi), then untouched zeros if
    room; resets them.

    Each listed item's score is consumed (set to -inf) as it is offered, so an item
    listed twice is offered once and the zeros pass skips it. ``no_skip`` is an
    all-zero flag array. Returns (heap size, items with a non-zero score).
    """
    size = 0
    nonzero = 0
    for t in range(n_touched):
        i = touched[t]
        a = acc[i]
        acc[i] = NEG_INF
        if a == NEG_INF or (g.any and not _selectable(g, i)):  # masked, listed before, or filtered out
            continue
        s = a * priors[i]
        nonzero += s != 0.0
        # test against the heap's worst first: most items fail it, and the call is costly
        if size < kk or _better(s, i, hs[0], hi[0]):
            size = _offer(hs, hi, size, kk, s, i)
    if size < kk or hs[0] <= 0.0:
        size = _offer_zeros(hs, hi, size, kk, acc, no_skip, g)
    for t in range(n_touched):
        acc[touched[t]] = 0.0
    return size, nonzero


@nb.njit(cache=True)
def _select_blocks(acc, priors, block_mark, blocks, item_mark, hs, hi, kk, sbuf, bkey, g):
    """Top-kk of the items in marked blocks that the gate lets through into the heap (hs, hi), then
    untouched zeros if room; resets them.

    ``blocks``, ``sbuf`` (scores) and ``bkey`` (block maxima) are scratch. Returns
    (heap size, items with a non-zero score).
    """
    n_items = acc.shape[0]
    nonzero = 0
    n_blocks = 0
    for b in range(block_mark.shape[0]):
        blocks[n_blocks] = b
        n_blocks += block_mark[b] != 0
    skey = sbuf.view(np.int32)
    for t in range(n_blocks):
        lo = blocks[t] << BLOCK_SHIFT
        hi_ = min(n_items, lo + (1 << BLOCK_SHIFT))
        a_blk = acc[lo:hi_]
        p_blk = priors[lo:hi_]
        s_blk = sbuf[lo:hi_]
        nz = 0
        for j in range(a_blk.shape[0]):
            a = a_blk[j]
            s = a * p_blk[j] + np.float32(0.0)  # + 0: no -0.0, whose key sorts below +0.0
            s_blk[j] = NEG_INF if a == NEG_INF else s
            nz += (s != 0.0) & (a != NEG_INF)
        nonzero += nz
        if g.any:  # filtered out: as if masked
            for j in range(a_blk.shape[0]):
                if not _selectable(g, lo + j):
                    s_blk[j] = NEG_INF
        # block maximum over order-preserving integer keys of the float scores: vectorises
        k_blk = skey[lo:hi_]
        m = np.int32(-2147483648)
        for j in range(k_blk.shape[0]):
            b = k_blk[j]
            key = b ^ ((b >> 31) & np.int32(0x7FFFFFFF))
            m = max(m, key)
        bkey[t] = m
    # the kk-th largest block maximum bounds the kk-th best score from below: blocks and items under it cannot enter
    floor_key = np.int32(-2147483648)
    if n_blocks >= kk:
        floor_key = np.partition(bkey[:n_blocks], n_blocks - kk)[n_blocks - kk]
    size = 0
    for t in range(n_blocks):
        if bkey[t] < floor_key:
            continue
        lo = blocks[t] << BLOCK_SHIFT
        hi_ = min(n_items, lo + (1 << BLOCK_SHIFT))
        for i in range(lo, hi_):
            b = skey[i]
            if (b ^ ((b >> 31) & np.int32(0x7FFFFFFF))) < floor_key:
                continue
            s = sbuf[i]
            if s == NEG_INF:
                continue
            if size < kk or _better(s, i, hs[0], hi[0]):
                size = _offer(hs, hi, size, kk, s, i)
    if size < kk or hs[0] <= 0.0:
        # items of unmarked blocks are untouched; those of marked blocks were all offered
        for t in range(n_blocks):
            lo = blocks[t] << BLOCK_SHIFT
            item_mark[lo:min(n_items, lo + (1 << BLOCK_SHIFT))] = 1
        size = _offer_zeros(hs, hi, size, kk, acc, item_mark, g)
        for t in range(n_blocks):
            lo = blocks[t] << BLOCK_SHIFT
            item_mark[lo:min(n_items, lo + (1 << BLOCK_SHIFT))] = 0
    for t in range(n_blocks):
        b = blocks[t]
        block_mark[b] = 0
        lo = b << BLOCK_SHIFT
        acc[lo:min(n_items, lo + (1 << BLOCK_SHIFT))] = 0.0
    return size, nonzero


@nb.njit(cache=True, inline="always")
def _mask(items, acc, block_mark, mark_blocks):
    """Items a query may not return, whatever their score: -inf in the accumulator (blocks marked for reset)."""
    for h in range(items.shape[0]):
        i = items[h]
        acc[i] = NEG_INF
        if mark_blocks:
            block_mark[i >> U_BLOCK_SHIFT] = 1


@nb.njit(cache=True)
def _answer(q_items, q_weights, excluded, allow_row, ix, st, blocked, per_query_allow, sc, out_scores, out_ids):
    """Answer one query into out_scores/out_ids (length k).

    ``q_items``/``q_weights``: the history, or the user vector's dimensions and
    values when ``st.vectors``. ``excluded``: this query's excluded items; ``allow_row``: the only items it may
    return when ``per_query_allow``; ``blocked``: items no query may return (size 0:
    none). Returns (postings scanned, items with a non-zero score, entries read in
    all: encoder rows + postings + rescored rows). Exact path: the scatter-add marks
    the 64-item block of every posting without a branch (or, for a query planning
    many postings, every block at once) and the selection visits marked blocks.
    Pruned path: touched items are listed and only they are visited, or, past
    n_items / 4 of them, their blocks are marked as on the exact path. With
    ``candidates`` > 0 that many items are kept by approximate score and rescored;
    filters apply before, so the candidates are all items the query may return.
    """
    e_indptr, e_dims, e_w = ix.e_indptr, ix.e_dims, ix.e_w
    u, dim_mark, dims, acc, block_mark = sc.u, sc.dim_mark, sc.dims, sc.acc, sc.block_mark
    k, candidates = st.k, st.candidates
    # 1. encode u = x E, listing the touched dimensions without a branch (``dims`` has room for one more)
    n_listed = np.uint64(0)
    entries = 0
    if st.vectors:  # the row is u itself
        for h in range(q_items.shape[0]):
            d = q_items[h]
            dims[n_listed] = d
            n_listed += U1 - dim_mark[d]
            dim_mark[d] = 1
            u[d] += q_weights[h]
    else:
        for h in range(q_items.shape[0]):  # the history's encoder rows are cache misses: ask for all at once
            j = q_items[h]
            for p in range(e_indptr[j], e_indptr[j + 1], LINE):
                prefetch(e_dims, p)
                prefetch(e_w, p)
        for h in range(q_items.shape[0]):
            j = q_items[h]
            w = q_weights[h]
            entries += e_indptr[j + 1] - e_indptr[j]
            for p in range(np.uint64(e_indptr[j]), np.uint64(e_indptr[j + 1])):
                d = e_dims[p]
                dims[n_listed] = d
                n_listed += U1 - dim_mark[d]
                dim_mark[d] = 1
                u[d] += w * e_w[p]
    nd = np.int64(n_listed)
    if per_query_allow and _allowed_are_fewer(dims, nd, ix.v_indptr, allow_row, ix.f_indptr):
        # scoring the allowed items from their rows reads fewer entries than the posting lists: exact
        if st.exclude_history:
            _mask(q_items, acc, block_mark, False)
        _mask(excluded, acc, block_mark, False)
        size, nonzero, read = _score_rows(sc.hs, sc.hi, u, allow_row, acc, blocked, ix.f_indptr, ix.f_dims, ix.f_w,
                                          ix.priors, k)
        if st.exclude_history:
            for h in range(q_items.shape[0]):
                acc[q_items[h]] = 0.0
        for h in range(excluded.shape[0]):
            acc[excluded[h]] = 0.0
        _sorted_out(sc.hs, sc.hi, size, k, out_scores, out_ids)
        _reset_u(u, dim_mark, dims, nd)
        return 0, nonzero, entries + read
    if per_query_allow:
        for t in range(allow_row.shape[0]):
            sc.gate[allow_row[t]] = 1
    g = Gate(blocked, sc.gate, allow_row, per_query_allow, per_query_allow or blocked.shape[0] > 0)
    # 2. prune the query, 3. accumulate over the posting lists
    whole = st.query_dims <= 0 and st.query_mass <= 0.0 and st.budget <= 0
    kk = candidates if candidates > 0 else k
    switch = np.uint64(acc.shape[0] >> SWITCH_SHIFT)
    if st.prune > 0.0:
        if whole:  # every touched dimension, every list to its end: no selection pass
            postings, n_touched = _accumulate_pruned(u, dims, sc.limit, nd, True, ix.max_abs, ix.v_indptr,
                                                     ix.v_items, ix.v_w, st.prune, sc.bounds, sc.visit, acc,
                                                     sc.touched, block_mark, switch)
        else:
            n_keep = _select_dims(u, dims, nd, ix.max_abs, ix.v_indptr, st.query_dims, st.query_mass, st.budget,
                                  sc.keep, sc.limit)
            postings, n_touched = _accumulate_pruned(u, sc.keep, sc.limit, n_keep, False, ix.max_abs, ix.v_indptr,
                                                     ix.v_items, ix.v_w, st.prune, sc.bounds, sc.visit, acc,
                                                     sc.touched, block_mark, switch)
        # 4. mask the history and the exclusions, 5. top-kk over the touched items
        listed = n_touched >= 0
        if st.exclude_history:
            _mask(q_items, acc, block_mark, not listed)
        _mask(excluded, acc, block_mark, not listed)
        if listed:
            size, nonzero = _select_touched(acc, ix.priors, sc.touched, n_touched, sc.item_mark, sc.hs, sc.hi, kk, g)
        else:
            size, nonzero = _select_blocks(acc, ix.priors, block_mark, sc.touched, sc.item_mark, sc.hs, sc.hi, kk,
                                           sc.sbuf, sc.bkey, g)
    else:
        n_keep = _select_dims(u, dims, nd, ix.max_abs, ix.v_indptr, st.query_dims, st.query_mass, st.budget,
                              sc.keep, sc.limit)
        postings = _accumulate(u, sc.keep, sc.limit, n_keep, ix.v_indptr, ix.v_items, ix.v_w, acc, block_mark)
        if st.exclude_history:
            _mask(q_items, acc, block_mark, True)
        _mask(excluded, acc, block_mark, True)
        # the list of marked blocks reuses ``touched``
        size, nonzero = _select_blocks(acc, ix.priors, block_mark, sc.touched, sc.item_mark, sc.hs, sc.hi, kk,
                                       sc.sbuf, sc.bkey, g)
    if st.exclude_history:
        for h in range(q_items.shape[0]):
            acc[q_items[h]] = 0.0
    for h in range(excluded.shape[0]):
        acc[excluded[h]] = 0.0
    if per_query_allow:
        for t in range(allow_row.shape[0]):
            sc.gate[allow_row[t]] = 0
    entries += postings
    hs, hi = sc.hs, sc.hi
    if candidates > 0:
        size, rescored = _rescore(hs, hi, size, u, ix.f_indptr, ix.f_dims, ix.f_w, ix.priors, k, sc.rs, sc.ri)
        entries += rescored
        for r in range(size):
            hs[r] = sc.rs[r]
            hi[r] = sc.ri[r]
    # 6. sort the kept candidates best first, 7. reset the user vector
    _sorted_out(hs, hi, size, k, out_scores, out_ids)
    _reset_u(u, dim_mark, dims, nd)
    return postings, nonzero, entries


@nb.njit(cache=True, inline="always")
def _sorted_out(hs, hi, size, k, out_scores, out_ids):
    """Empty the kept (hs, hi) of ``size`` into the answer row best first; pad to k with -1 / -inf."""
    if size < k:
        _heapify(hs, hi, size)  # fewer than k were offered: still in arrival order
    for r in range(size - 1, -1, -1):
        out_scores[r] = hs[0]
        out_ids[r] = hi[0]
        hs[0] = hs[r]
        hi[0] = hi[r]
        _sift_down(hs, hi, r, 0)
    for r in range(size, k):
        out_scores[r] = NEG_INF
        out_ids[r] = -1


@nb.njit(cache=True, inline="always")
def _reset_u(u, dim_mark, dims, nd):
    for j in range(nd):
        d = dims[j]
        u[d] = 0.0
        dim_mark[d] = 0


@nb.njit(cache=True)
def _allowed_are_fewer(dims, nd, v_indptr, allow_row, f_indptr):
    """Whether the allowed items' rows hold fewer entries than the posting lists of the touched dimensions."""
    postings = 0
    for j in range(nd):
        d = dims[j]
        postings += v_indptr[d + 1] - v_indptr[d]
    entries = 0
    for t in range(allow_row.shape[0]):
        i = allow_row[t]
        entries += f_indptr[i + 1] - f_indptr[i]
        if entries >= postings:
            return False
    return True


@nb.njit(cache=True)
def _score_rows(hs, hi, u, items, acc, blocked, f_indptr, f_dims, f_w, priors, k):
    """Exact scores prior_i * <u, V_i> of ``items`` (skipping those masked in ``acc`` or blocked); top k into
    the heap (hs, hi). Returns (heap size, items with a non-zero score, forward entries read)."""
    size = 0
    nonzero = 0
    entries = 0
    for t in range(items.shape[0]):
        if t + PREFETCH < items.shape[0]:  # rows are cache misses: fetch the one PREFETCH items ahead
            ahead = f_indptr[items[t + PREFETCH]]
            prefetch(f_dims, ahead)
            prefetch(f_w, ahead)
        i = items[t]
        if acc[i] == NEG_INF or (blocked.shape[0] > 0 and blocked[i] != 0):
            continue
        s = _row_dot(u, f_indptr, f_dims, f_w, i)
        entries += f_indptr[i + 1] - f_indptr[i]
        s = s * priors[i] + np.float32(0.0)
        nonzero += s != 0.0
        size = _offer(hs, hi, size, k, s, np.int64(i))
    return size, nonzero, entries


@nb.njit(cache=True)
def new_scratch(n_items, n_dims, k, candidates):
    """Per-thread buffers for ``_answer``, zeroed where they are accumulated into."""
    n_blocks = (n_items >> BLOCK_SHIFT) + 1
    kk = max(k, candidates)
    return Scratch(np.zeros(n_dims, dtype=np.float32), np.zeros(n_dims, dtype=np.uint8),
                   np.empty(n_dims + 1, dtype=np.uint32), np.empty(n_dims, dtype=np.uint32),
                   np.empty(n_dims, dtype=np.int64), np.empty(n_dims, dtype=np.float32),
                   np.empty(n_dims + 1, dtype=np.int32),
                   np.zeros(n_items, dtype=np.float32),
                   np.zeros(n_blocks, dtype=np.uint8), np.zeros(n_items, dtype=np.uint8),
                   # touched items: a pruned query lists below n_items >> SWITCH_SHIFT before a list, at most
                   # n_items in it, plus the spare slot of the branch-free append; the same buffer lists marked blocks
                   np.empty(n_items + (n_items >> SWITCH_SHIFT) + n_blocks + 1, dtype=np.uint32),
                   np.empty(kk, dtype=np.float32), np.empty(kk, dtype=np.int64),
                   np.empty(k, dtype=np.float32), np.empty(k, dtype=np.int64),
                   np.empty(n_items, dtype=np.float32), np.empty(n_blocks, dtype=np.int32),
                   np.zeros(n_items, dtype=np.uint8), np.empty(0, dtype=np.uint32))


@nb.njit(cache=True)
def search_range(sc, start, stop, step, q, ix, st, fl, out):
    """Answer queries start, start + step, ... below stop (rows of ``q``) on one thread.

    ``sc`` is this thread's ``new_scratch``; ``out.stats`` rows receive postings
    scanned, items with a non-zero score and entries read. Returns how many of the
    histories were empty: they read nothing, and their answer rows are left for the
    caller to fill.
    """
    empty = 0
    for r in range(start, stop, step):
        a, b = q.indptr[r], q.indptr[r + 1]
        if a == b:
            empty += 1
            out.stats[:, r] = 0
            continue
        # views of the shared filter arrays only when the query has lists: a view is an atomic reference
        # count update on the parent, which the threads of a batch would contend for on every query
        excluded = fl.ex_items[fl.ex_indptr[r]:fl.ex_indptr[r + 1]] if fl.ex_indptr[r + 1] > fl.ex_indptr[r] \
            else sc.no_items
        ra = 0 if fl.al_shared else r
        allow_row = fl.al_items[fl.al_indptr[ra]:fl.al_indptr[ra + 1]] if fl.per_query_allow else sc.no_items
        p, nz, ent = _answer(q.items[a:b], q.weights[a:b], excluded, allow_row, ix, st, fl.blocked,
                             fl.per_query_allow, sc, out.scores[r], out.ids[r])
        out.stats[0, r] = p
        out.stats[1, r] = nz
        out.stats[2, r] = ent
    return empty


@nb.njit(parallel=True, cache=True)
def search_parallel(n_chunks, q, ix, st, fl, out):
    """Answer all queries in parallel, results in input order; returns how many histories were empty.

    Chunk c answers queries c, c + n_chunks, c + 2 n_chunks, ...: interleaving keeps the
    chunks' work even when query cost drifts along the input (histories sorted by user,
    say), which contiguous ranges under static scheduling do not.
    """
    n_q = q.indptr.shape[0] - 1
    empty = 0
    for c in nb.prange(n_chunks):
        sc = new_scratch(ix.priors.shape[0], ix.v_indptr.shape[0] - 1, st.k, st.candidates)
        empty += search_range(sc, c, n_q, n_chunks, q, ix, st, fl, out)
    return empty


@nb.njit(cache=True)
def popular_answers(rows, ranked, popularity, fl, gate, k, scores, ids):
    """Answer the empty histories ``rows`` by the most popular items each may return (score = count).

    ``ranked``: all items by popularity, most popular first; ``gate``: an all-zero
    uint8 scratch array over the items, left all zero.
    """
    for t in range(rows.shape[0]):
        r = rows[t]
        excluded = fl.ex_items[fl.ex_indptr[r]:fl.ex_indptr[r + 1]]
        ra = 0 if fl.al_shared else r
        allow_row = fl.al_items[fl.al_indptr[ra]:fl.al_indptr[ra + 1]]
        for h in range(excluded.shape[0]):
            gate[excluded[h]] |= 1
        if fl.per_query_allow:
            for h in range(allow_row.shape[0]):
                gate[allow_row[h]] |= 2
        want = 2 if fl.per_query_allow else 0
        n = 0
        for j in range(ranked.shape[0]):
            if n == k:
                break
            i = ranked[j]
            if gate[i] != want or (fl.blocked.shape[0] > 0 and fl.blocked[i] != 0):
                continue
            scores[r, n] = popularity[i]
            ids[r, n] = i
            n += 1
        for j in range(n, k):
            scores[r, j] = NEG_INF
            ids[r, j] = -1
        for h in range(excluded.shape[0]):
            gate[excluded[h]] = 0
        for h in range(allow_row.shape[0]):
            gate[allow_row[h]] = 0


@nb.njit(cache=True)
def impact_order(indptr, items, weights):
    """Reorder each posting list by |weight| descending (ties by item index), in place."""
    n = indptr.shape[0] - 1
    for d in range(n):
        a, b = indptr[d], indptr[d + 1]
        if b - a < 2:
            continue
        seg_w = weights[a:b].copy()
        seg_i = items[a:b].copy()
        order = np.argsort(-np.abs(seg_w), kind="mergesort")
        for t in range(b - a):
            weights[a + t] = seg_w[order[t]]
            items[a + t] = seg_i[order[t]]
