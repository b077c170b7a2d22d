"""Once an instance's index commit is under way, its file stays with its row.

A C-STORE whose task is cancelled while its index commit is pending.

The task of an operation is cancelled when its association ends (A-ABORT, a lost
connection, shutdown). Once the last fragment is in, the file is placed and the
add is queued to the index writer, which commits it whatever the caller does. So
the ingest must see that commit through: were it to clean up as if nothing had
been stored, the committed row would name a file it had just removed.
"""

from __future__ import annotations

import asyncio
import copy
import errno
import hashlib
import os
import sqlite3
import threading
from collections.abc import AsyncIterator, Coroutine
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest
from pynetdicom.dsutils import encode

from archive.config import parse_config
from archive.dicom.uids import EXPLICIT_VR_LE
from archive.node import Storage
from archive.services.store import Outcome
from archive.store import FileStore, relative_path
from tests.store.helpers import make_dataset


def _encoded(ds: Any) -> bytes:
    """The data set as an SCU puts it on the wire (Explicit VR Little Endian)."""
    data = encode(ds, False, True)
    assert data is not None
    return data


def _ingest(storage: Storage, ds: Any, data: bytes) -> Coroutine[Any, Any, Outcome]:
    """The node's ingest of ``data`` (``ds`` encoded) in one fragment, as from MODALITY."""
    assert storage.ingest is not None

    async def fragments() -> AsyncIterator[memoryview]:
        yield memoryview(data)

    return storage.ingest.ingest(
        sop_class_uid=str(ds.SOPClassUID),
        sop_instance_uid=str(ds.SOPInstanceUID),
        transfer_syntax=EXPLICIT_VR_LE,
        source_ae="MODALITY",
        fragments=fragments(),
    )


def test_a_store_cancelled_while_its_commit_is_queued_keeps_file_and_row(tmp_path: Path) -> None:
    root = tmp_path / "data"
    config = parse_config(f'[node]\ndata_dir = "{root}"\n')
    ds = make_dataset(pixel_bytes=2_000)
    data = _encoded(ds)
    uid = str(ds.SOPInstanceUID)

    async def main() -> list[tuple[str, int]]:
        storage = await Storage(config).open()
        try:
            assert storage.index is not None
            assert storage.ingest is not None
            stalled, go_on = threading.Event(), threading.Event()

            def stall(conn: sqlite3.Connection) -> None:
                stalled.set()
                go_on.wait(10)

            # The writer thread waits inside a probe: the add queues behind it.
            probe = asyncio.ensure_future(storage.index._writer.on_connection(stall))
            await asyncio.get_running_loop().run_in_executor(None, stalled.wait, 10)

            store = asyncio.ensure_future(_ingest(storage, ds, data))
            writer_queue = storage.index._writer._queue
            for _ in range(1000):  # until the file is placed and its add queued
                if writer_queue.qsize():
                    break
                await asyncio.sleep(0.005)
            assert writer_queue.qsize() == 1
            assert (root / relative_path(uid)).exists()
            store.cancel()  # the association is gone
            go_on.set()
            await probe
            await asyncio.wait({store}, timeout=10)
            assert store.done()
            assert store.cancelled()  # passed on, once the commit is through
            with closing(sqlite3.connect(root / "index.sqlite")) as conn:
                rows: list[tuple[str, int]] = list(conn.execute("SELECT path, size FROM instance"))
            return rows
        finally:
            await storage.close()

    rows = asyncio.run(asyncio.wait_for(main(), 30))
    # The add was queued before the cancel, so it was committed: its file must stay.
    path = root / relative_path(uid)
    assert path.exists(), "the committed row names a removed file"
    assert rows == [(relative_path(uid), path.stat().st_size)]
    assert path.read_bytes().endswith(data)
    assert [p.name for p in (root / "tmp").iterdir() if p.name.endswith(".part")] == []


def test_a_replacement_whose_old_version_cannot_go_is_stored(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """duplicates = "replace": the index names the new version once it commits; a
    failure to remove the old one after that must not discard the new one. The
    marker stays, and the next start removes the old version."""
    root = tmp_path / "data"
    config = parse_config(f'[node]\ndata_dir = "{root}"\n[store]\nduplicates = "replace"\n')
    first = make_dataset(pixel_bytes=1_000)
    second = copy.deepcopy(first)
    second.PatientName = "Other^Content"
    uid = str(first.SOPInstanceUID)

    def failing(self: FileStore, uid: str, keep: str) -> None:
        raise OSError(errno.EIO, os.strerror(errno.EIO))

    async def main() -> None:
        storage = await Storage(config).open()
        try:
            assert (await _ingest(storage, first, _encoded(first))).status == 0
            with monkeypatch.context() as patch:
                patch.setattr(FileStore, "_remove_other_versions_sync", failing)
                assert (await _ingest(storage, second, _encoded(second))).status == 0
        finally:
            await storage.close()

    asyncio.run(asyncio.wait_for(main(), 30))
    with closing(sqlite3.connect(root / "index.sqlite")) as conn:
        ((path,),) = conn.execute("SELECT path FROM instance").fetchall()
    assert path != relative_path(uid)  # the replacement, beside the first version
    assert (root / path).read_bytes().endswith(_encoded(second))
    assert (root / relative_path(uid)).exists()  # left, as the log says
    assert [p for p in (root / "tmp").iterdir() if p.name.endswith(".part")]  # the marker

    async def reopen() -> None:
        storage = await Storage(config).open()  # recovery
        await storage.close()

    asyncio.run(asyncio.wait_for(reopen(), 30))
    assert (root / path).read_bytes().endswith(_encoded(second))
    assert not (root / relative_path(uid)).exists()
    assert [p for p in (root / "tmp").iterdir() if p.name.endswith(".part")] == []


def test_a_store_arriving_while_another_waits_for_the_uid_waits_too(tmp_path: Path) -> None:
    """duplicates = "replace": A stores a version while B waits for the UID's lock;
    C arrives after A is done, while B runs. The lock's entry once went from the
    table as A released it, before B had taken it, so C made a new lock and ran
    beside B: each removed the other's file, and the row named a file that was
    gone (both answered Success)."""
    root = tmp_path / "data"
    config = parse_config(f'[node]\ndata_dir = "{root}"\n[store]\nduplicates = "replace"\n')
    first = make_dataset(pixel_bytes=1_000)
    versions = []
    for name in ("A^A", "B^B", "C^C"):
        version = copy.deepcopy(first)
        version.PatientName = name
        versions.append(version)

    async def main() -> list[int]:
        storage = await Storage(config).open()
        try:
            assert (await _ingest(storage, first, _encoded(first))).status == 0
            a_done = asyncio.Event()

            async def a() -> Outcome:
                try:
                    return await _ingest(storage, versions[0], _encoded(versions[0]))
                finally:
                    a_done.set()

            async def c() -> Outcome:
                await a_done.wait()  # B has been handed the lock, or is about to be
                return await _ingest(storage, versions[2], _encoded(versions[2]))

            b = _ingest(storage, versions[1], _encoded(versions[1]))
            outcomes = await asyncio.gather(a(), b, c())
            return [outcome.status for outcome in outcomes]
        finally:
            await storage.close()

    assert asyncio.run(asyncio.wait_for(main(), 30)) == [0, 0, 0]
    with closing(sqlite3.connect(root / "index.sqlite")) as conn:
        ((path, digest),) = conn.execute("SELECT path, digest FROM instance").fetchall()
    assert (root / path).exists(), "the row names a removed file"
    assert (root / path).read_bytes().endswith(_encoded(versions[2]))  # the last one in
    assert digest == hashlib.sha256(_encoded(versions[2])).hexdigest()
    files = [p for p in (root / "instances").rglob("*.dcm")]
    assert files == [root / path]
