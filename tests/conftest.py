"""Fixtures shared by the tests."""

import atexit
import os
import shutil
import tempfile

import pytest
from helpers import random_interactions

# verified checksums are remembered in a cache of the tests' own (inherited by the CLIs they start)
os.environ["SPARSEIDX_CACHE_DIR"] = tempfile.mkdtemp(prefix="sparseidx-test-cache-")
atexit.register(shutil.rmtree, os.environ["SPARSEIDX_CACHE_DIR"], True)


@pytest.fixture
def X_small():
    return random_interactions()
