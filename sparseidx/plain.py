"""Plain Python values from numpy ones, for JSON output."""

from __future__ import annotations

import numpy as np


def plain(value):
    """A numpy scalar as the Python value it holds; anything else as it is."""
    return value.item() if isinstance(value, np.generic) else value


def json_default(obj):
    """``json.dumps(..., default=json_default)``: numpy scalars and arrays as plain values and lists."""
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")
