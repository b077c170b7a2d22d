"""The machine's ceilings for ingest: loopback TCP throughput and disk write rates.

Nothing here is DICOM. These bound what any C-STORE SCP can do on this machine:
the loopback rate bounds MB/s on the wire, the fsync'ed stream rate bounds MB/s of
durable writes, and the create+fsync rates bound durable instances/s for one writer
that syncs each file (and its directory) before answering.
"""

from __future__ import annotations

import os
import socket
import threading
import time
from pathlib import Path

CHUNK = 1 << 20
MB = 1e6


def loopback(seconds: float) -> float:
    """MB/s through one TCP connection on 127.0.0.1, 1 MiB send()s, recv_into a buffer.

    Sender and receiver are two threads of this process (both calls drop the GIL),
    so this is a floor on the kernel's loopback ceiling, not the ceiling itself.
    """
    with socket.create_server(("127.0.0.1", 0)) as listener:
        received = [0]

        def drain(conn: socket.socket) -> None:
            buffer = bytearray(CHUNK)
            view = memoryview(buffer)
            with conn:
                while n := conn.recv_into(view):
                    received[0] += n

        sender = socket.create_connection(listener.getsockname())
        conn, _ = listener.accept()
        reader = threading.Thread(target=drain, args=(conn,))
        reader.start()
        payload = memoryview(os.urandom(CHUNK))
        start = time.perf_counter()
        with sender:
            while time.perf_counter() - start < seconds:
                sender.sendall(payload)
            sender.shutdown(socket.SHUT_WR)
            reader.join()
        return received[0] / MB / (time.perf_counter() - start)


def stream(folder: Path, total_mb: int, sync_every_mb: int = 32) -> float:
    """MB/s writing ``total_mb`` MiB to one file, fsync every ``sync_every_mb`` and at the end."""
    path = folder / "ceiling-stream.bin"
    payload = os.urandom(CHUNK)
    start = time.perf_counter()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        for i in range(total_mb):
            os.write(fd, payload)
            if (i + 1) % sync_every_mb == 0:
                os.fsync(fd)
        os.fsync(fd)
    finally:
        os.close(fd)
    # Left for the benchmark's end, like the files below (see files()).
    return total_mb * CHUNK / MB / (time.perf_counter() - start)


def files(folder: Path, size: int, seconds: float, *, sync_dir: bool) -> float:
    """Files/s: create, write ``size`` bytes, fsync, close (and fsync the folder), serially."""
    where = folder / f"ceiling-files-{size}{'-dir' if sync_dir else ''}"
    where.mkdir()
    payload = os.urandom(size)
    dir_fd = os.open(where, os.O_RDONLY)
    count = 0
    start = time.perf_counter()
    try:
        while time.perf_counter() - start < seconds:
            fd = os.open(where / f"f{count}", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
            try:
                os.write(fd, payload)
                os.fsync(fd)
            finally:
                os.close(fd)
            if sync_dir:
                os.fsync(dir_fd)
            count += 1
        rate = count / (time.perf_counter() - start)
    finally:
        os.close(dir_fd)
    # Not deleted here: on this journal-less ext4 the thousands of inodes freed
    # would slow every file creation near them for minutes (recently_deleted),
    # i.e. the first server measured. The caller's work folder goes at the end.
    return rate


def measure(folder: Path, disk_mb: int, seconds: float) -> list[str]:
    """The ceilings in words, one line each; ``folder`` must be on the servers' disk."""
    small = files(folder, 5_000, seconds, sync_dir=False)
    small_dir = files(folder, 5_000, seconds, sync_dir=True)
    ct = files(folder, 525_000, seconds, sync_dir=True)
    return [
        f"loopback TCP, one connection (Python, 1 MiB send/recv_into): "
        f"{loopback(seconds):,.0f} MB/s",
        f"disk stream, {disk_mb} MiB with fsync every 32 MiB: {stream(folder, disk_mb):,.0f} MB/s",
        f"5 KB files created + fsync'ed, one after another: {small:,.0f}/s",
        f"5 KB files created + fsync'ed + directory fsync'ed: {small_dir:,.0f}/s",
        f"0.5 MB files created + fsync'ed + directory fsync'ed: {ct:,.0f}/s"
        f" ({ct * 0.525:,.0f} MB/s)",
    ]
