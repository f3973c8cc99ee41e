"""What every test shares: one torch thread. The models here are tiny, they run fastest on one thread, and a
shared CPU punishes oversubscription."""
from __future__ import annotations

import pytest
import torch


@pytest.fixture(scope="session", autouse=True)
def one_torch_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
