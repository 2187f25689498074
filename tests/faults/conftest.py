from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.faults.harness import PrivatePostgres, PrivateRedis, workdir


@pytest.fixture
def work() -> Iterator[Path]:
    with workdir() as d:
        yield d


@pytest.fixture
def private_redis(work: Path) -> Iterator[PrivateRedis]:
    r = PrivateRedis(work)
    r.start()
    yield r
    r.kill()


@pytest.fixture
def private_pg(work: Path) -> Iterator[PrivatePostgres]:
    pg = PrivatePostgres(work)
    pg.init()
    yield pg
    pg.stop()
