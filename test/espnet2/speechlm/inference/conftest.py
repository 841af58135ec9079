"""Fixtures for the decoding tests; helpers live in decode_testkit.py."""

import pytest
import torch
from decode_testkit import tiny_vocab


@pytest.fixture
def vocab():
    return tiny_vocab()


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny models are faster single-threaded (and the CI box has 2 busy cores)."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)
