"""Fixtures for the decoding tests; helpers live in decode_testkit.py."""

import pytest
from decode_testkit import tiny_vocab


@pytest.fixture
def vocab():
    return tiny_vocab()


@pytest.fixture(autouse=True)
def _single_thread(one_thread):  # every test here: see test/conftest.py
    yield
