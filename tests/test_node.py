"""The composition root (archive/node.py): a failed start leaves nothing behind.

A node that cannot listen, or a data folder whose index cannot be opened, must
raise at once and release what was opened before: the data folder's lock, the
store's I/O threads and the index's connections (their threads kept a failed
``archive serve`` from exiting).
"""

from __future__ import annotations

import asyncio
import errno
import os
import signal
import socket
import sqlite3
import threading
from pathlib import Path

import msgspec
import pytest

from archive.index import IndexOpenError
from archive.node import INDEX_FILE, Node, Storage
from archive.store.errors import DataFolderError
from archive.store.files import FileStore
from archive.store.lock import lock_data_folder, unlock_data_folder
from tests.conftest import make_config
from tests.index import run


def _threads() -> set[str]:
    """Threads still alive, bar the loop's default executor (asyncio.to_thread)."""
    return {t.name for t in threading.enumerate() if not t.name.startswith("asyncio_")}


def test_start_on_a_taken_port_raises_and_frees_the_data_folder(tmp_path: Path) -> None:
    before = _threads()
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        config = make_config(data_dir=str(tmp_path / "data"), port=taken.getsockname()[1])

        async def scenario() -> int:
            with pytest.raises(OSError, match="address already in use") as raised:
                await Node(config).start()
            assert raised.value.errno == errno.EADDRINUSE
            assert _threads() == before  # no I/O pool, no index connection left
            # The folder is free: a second node opens it (on a free port).
            free = msgspec.structs.replace(config.node, port=0)
            async with Node(msgspec.structs.replace(config, node=free)) as node:
                return node.port

        assert run(scenario()) > 0


def test_storage_whose_index_cannot_open_releases_the_folder(tmp_path: Path) -> None:
    root = tmp_path / "data"
    (root / INDEX_FILE).mkdir(parents=True)  # a folder where the index file should be
    before = _threads()

    async def scenario() -> None:
        with pytest.raises(DataFolderError, match="index: unable to open database file") as raised:
            await Storage(make_config(data_dir=str(root))).open()
        cause = raised.value.__cause__
        assert isinstance(cause, IndexOpenError)
        assert isinstance(cause.__cause__, sqlite3.OperationalError)

    run(scenario())
    assert _threads() == before
    unlock_data_folder(lock_data_folder(root))  # not DataFolderInUse


def test_an_index_on_a_disk_without_syncfs_syncs_its_own_commits(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """flush = "batch", but the index is on a filesystem syncfs cannot flush (a link
    to an old FUSE mount, say): the store falls back to a flush per file, and the
    index must then sync each commit itself (synchronous=FULL), not leave it to a
    batch flush that no longer happens."""
    real = FileStore.also_flush

    def also_flush(self: FileStore, path: str | os.PathLike[str]) -> None:
        if Path(path).name != INDEX_FILE:
            return real(self, path)

        def syncfs(fd: int) -> None:
            raise OSError(errno.ENOSYS, os.strerror(errno.ENOSYS))

        self._syncfs = syncfs  # as the index's own filesystem would answer
        self._add_flush_fd(str(Path(path).parent))

    monkeypatch.setattr(FileStore, "also_flush", also_flush)

    async def scenario() -> tuple[bool, bool, int]:
        storage = await Storage(make_config(data_dir=str(tmp_path / "data"))).open()
        try:
            assert storage.index is not None
            writer = storage.index._writer
            synchronous = await writer.on_connection(
                lambda conn: conn.execute("PRAGMA synchronous").fetchone()[0]
            )
            return storage.files.batched, writer._flush is None, synchronous
        finally:
            await storage.close()

    assert run(scenario()) == (False, True, 2)  # 2: FULL


def test_sigint_during_start_up_recovery_stops_the_start(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Ctrl-C while recovery reads back what was in flight (it may read large
    files) stops the start there, and the data folder is left free."""
    from archive import cli

    root = tmp_path / "data"
    recovering = threading.Event()

    async def endless_recovery(self: Storage) -> None:
        recovering.set()
        await asyncio.Event().wait()

    monkeypatch.setattr(Storage, "recover", endless_recovery)
    before = _threads()

    async def scenario() -> float:
        loop = asyncio.get_running_loop()
        loop.call_soon(lambda: threading.Thread(target=interrupt, daemon=True).start())
        started = loop.time()
        await asyncio.wait_for(cli.serve(make_config(data_dir=str(root), port=0)), 10)
        return loop.time() - started

    def interrupt() -> None:
        assert recovering.wait(10)
        os.kill(os.getpid(), signal.SIGINT)

    assert run(scenario()) < 5
    assert "listening" not in capsys.readouterr().out
    assert _threads() == before  # no I/O pool, no index connection left
    unlock_data_folder(lock_data_folder(root))  # not DataFolderInUse
