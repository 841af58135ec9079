"""Fixtures of the training tests (helpers live in train_testkit.py)."""

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from train_testkit import finish, start_toy  # noqa: E402


@pytest.fixture(scope="session")
def toy_runner():
    return start_toy, finish
