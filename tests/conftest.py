"""Fixtures shared by the tests."""

import pytest
from helpers import random_interactions


@pytest.fixture
def X_small():
    return random_interactions()
