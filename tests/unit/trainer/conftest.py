from __future__ import annotations

import pytest
import torch

from .fakes import MemoryStore


@pytest.fixture(autouse=True)
def _one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture
def store() -> MemoryStore:
    return MemoryStore()


@pytest.fixture
def engine(tmp_path):
    from vigil.db import make_engine, migrate

    url = f"sqlite:///{tmp_path / 'v.db'}"
    migrate(url)
    return make_engine(url)


@pytest.fixture(scope="session")
def micro():
    from vigil.model.anomaly import AnomalyModel

    return AnomalyModel.create("vigil-micro")
