"""``add(item, after=job)``: the row is written while its file is placed, and
committed only once the job says the file is in place."""

from __future__ import annotations

import asyncio
import threading
from concurrent.futures import Future
from pathlib import Path
from typing import Any

import pytest

from archive.index import Index, WithheldError
from tests.index import make_instance, query, run

IS_INDEXED = "SELECT count(*) FROM instance WHERE sop_instance_uid = ?"


def indexed(db: Path, n: int) -> bool:
    return query(db, IS_INDEXED, (make_instance(n).attrs.sop_instance_uid,)) == [(1,)]


async def one_batch(index: Index, *adds: Any) -> list[Any]:
    """Run the coroutines ``adds`` make from ``index`` as one batch: the writer is
    held by a probe until every one of them is queued."""
    release = threading.Event()
    probe = asyncio.ensure_future(index._writer.on_connection(lambda conn: release.wait(10)))
    await asyncio.sleep(0.05)  # the writer thread is in the probe
    tasks = [asyncio.ensure_future(add) for add in adds]
    await asyncio.sleep(0.05)  # all queued
    release.set()
    await probe
    return await asyncio.gather(*tasks, return_exceptions=True)


def test_the_row_is_committed_only_once_its_file_is_placed(tmp_path: Path) -> None:
    db = tmp_path / "index.db"
    job: Future[bool] = Future()

    async def main() -> None:
        async with await Index.open(db) as index:
            add = asyncio.ensure_future(index.add(make_instance(1), after=job))
            await asyncio.sleep(0.3)
            # Applied meanwhile, but not committed: nobody sees it yet.
            assert not add.done()
            assert not indexed(db, 1)
            job.set_result(True)
            await add
            assert indexed(db, 1)

    run(main())


@pytest.mark.parametrize("outcome", [False, OSError(28, "No space left on device")])
def test_an_add_whose_file_is_not_placed_is_left_out_of_its_batch(
    tmp_path: Path, outcome: bool | OSError
) -> None:
    db = tmp_path / "index.db"
    failing: Future[bool] = Future()
    placed: Future[bool] = Future()
    placed.set_result(True)
    if isinstance(outcome, OSError):
        failing.set_exception(outcome)
    else:
        failing.set_result(outcome)

    async def main() -> None:
        async with await Index.open(db) as index:
            results = await one_batch(
                index,
                index.add(make_instance(1), after=placed),
                index.add(make_instance(2), after=failing),
                index.add(make_instance(3)),
                index.remove([make_instance(4).attrs.sop_instance_uid]),
            )
            assert [results[0], results[2], results[3]] == [None, None, 0]
            assert isinstance(results[1], WithheldError)
            assert index.writer_stats.commits == 1  # the rest in one transaction
            assert index.writer_stats.largest_batch == 3

    run(main())
    assert [indexed(db, n) for n in (1, 2, 3)] == [True, False, True]
    # The aggregates count what was committed, not what was withheld.
    assert query(db, "SELECT number_of_instances FROM series") == [(2,)]


def test_a_batch_whose_every_file_failed_commits_nothing(tmp_path: Path) -> None:
    db = tmp_path / "index.db"
    taken: Future[bool] = Future()
    taken.set_result(False)

    async def main() -> None:
        async with await Index.open(db) as index:
            (result,) = await one_batch(index, index.add(make_instance(1), after=taken))
            assert isinstance(result, WithheldError)
            assert index.writer_stats.commits == 0
            await index.add(make_instance(1))  # the UID was not taken by it

    run(main())
    assert indexed(db, 1)
