"""Every user answered once: a 64-bit key per user id, and the users that come back.

A batch job answers each history where it finds it. A user whose lines are apart in a file, or
in two partitions of a dataset, would get one answer per place, each from part of its history.
The jobs keep a key per answered user (the id itself for integer ids, a 64-bit FNV-1a hash of
the UTF-8 bytes for string ids), look for keys that repeat, and compare the ids behind a repeated
key exactly (two strings may share a hash) before refusing the output.
"""

from __future__ import annotations

import numba as nb
import numpy as np
import pyarrow as pa

_FNV_OFFSET = np.uint64(0xCBF29CE484222325)
_FNV_PRIME = np.uint64(0x100000001B3)


def keys(user_ids) -> np.ndarray:
    """uint64 keys of user ids: integer ids as they are, string ids hashed (FNV-1a 64 of their UTF-8 bytes)."""
    ids = np.asarray(user_ids)
    if ids.dtype.kind in "iu":
        return ids.astype(np.int64).view(np.uint64)
    arr = pa.array(ids, type=pa.large_string())
    _, offsets, data = arr.buffers()
    offsets = np.frombuffer(offsets, dtype=np.int64, count=len(arr) + 1, offset=arr.offset * 8)
    data = np.frombuffer(data, dtype=np.uint8) if data is not None else np.zeros(0, dtype=np.uint8)
    return _fnv1a(offsets, data)


@nb.njit(cache=True)
def _fnv1a(offsets, data):
    out = np.empty(offsets.shape[0] - 1, dtype=np.uint64)
    for i in range(out.shape[0]):
        h = _FNV_OFFSET
        for p in range(offsets[i], offsets[i + 1]):
            h = (h ^ np.uint64(data[p])) * _FNV_PRIME
        out[i] = h
    return out


def repeated(parts: list[np.ndarray]) -> np.ndarray:
    """The keys found more than once across ``parts`` (arrays of keys), sorted."""
    every = np.sort(np.concatenate(parts)) if parts else np.zeros(0, dtype=np.uint64)
    return np.unique(every[1:][every[1:] == every[:-1]])


def split_user(part_keys: list[np.ndarray], ids_of) -> tuple[object, list[int]] | None:
    """(user id, indices of the parts holding it) of the first user found in two of the parts whose keys are
    ``part_keys``, the ids behind a repeated key compared exactly (``ids_of(i)``: part i's user ids, each once);
    None when every user is in one part."""
    twice = repeated(part_keys)
    if not len(twice):
        return None
    holders = [i for i, k in enumerate(part_keys) if np.isin(twice, k).any()]
    users = named_twice(np.concatenate([ids_of(i) for i in holders]), twice)
    if not users:
        return None
    first = keys(np.asarray(users[:1]))
    return users[0], [i for i in holders if np.isin(first, part_keys[i]).any()]


def named_twice(user_ids, candidates: np.ndarray) -> list:
    """The user ids among ``user_ids`` that occur more than once and whose key is in ``candidates``."""
    ids = np.asarray(user_ids)
    suspects = ids[np.isin(keys(ids), candidates)]
    values, counts = np.unique(suspects, return_counts=True)
    return values[counts > 1].tolist()
