"""Fixtures shared by the code tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from churnml.config import EngineConfig
from churnml.engine import open_engine
from churnml.engine.cluster import DaskEngine


@pytest.fixture(scope="module")
def engine() -> Iterator[DaskEngine]:
    """A LocalCluster of 2 single-thread workers and 5 customer partitions, one per test module."""
    pytest.importorskip("distributed")
    settings = EngineConfig(kind="dask", workers=2, threads_per_worker=1, memory_limit="2GiB", partitions=5)
    with open_engine(settings) as opened:
        assert isinstance(opened, DaskEngine)
        yield opened
