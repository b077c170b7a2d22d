"""Crash test: SIGKILL ``archive serve`` under concurrent ingest, restart, lose nothing.

``archive serve`` (strict durability, its own data folder, a free port) runs as a
child process. Four associations of our own SCU (one asyncio loop in a thread of
the test) send distinct generated instances of 5-50 KB without pause, reconnecting
whenever the server is gone, and record every instance whose C-STORE got Success
with the exact bytes sent. The server is killed with SIGKILL after a random
0.2-1.5 s, five times, restarted on the same folder each time. After a last clean
start: every acknowledged instance is present, byte-identical after the File Meta
and indexed with the SHA-256 of its data set; nothing temporary is visible; the
index and the files agree both ways.

The seed is printed on failure; set ARCHIVE_CRASH_SEED to replay a run's timing.
"""

from __future__ import annotations

import asyncio
import os
import random
import signal
import threading
import time
from pathlib import Path

from archive.dicom.dimse import CStoreRq
from archive.dicom.uids import EXPLICIT_VR_LE, IMPLICIT_VR_LE
from archive.errors import ArchiveError
from archive.net import Timeouts, associate
from tests.interop.conftest import stop
from tests.store.helpers import (
    CT_IMAGE,
    HOST,
    SUCCESS,
    all_rows,
    chunked,
    encode_dataset,
    files_under,
    fixed_port,
    instance_files,
    leftovers,
    make_dataset,
    serve,
    sha256,
    split_part10,
    stored_path,
)

ROUNDS = 5
CLIENTS = 4
TIMEOUTS = Timeouts(artim=5, network=10, dimse=10, connect=2)


class Ingest:
    """Four SCU associations sending until told to stop; what was acknowledged."""

    def __init__(self, port: int, seed: int) -> None:
        self.port = port
        self.seed = seed
        self.acknowledged: dict[str, bytes] = {}
        self.attempted = 0
        self.failures: dict[str, int] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=lambda: asyncio.run(self._main()), daemon=True)
        self._lock = threading.Lock()

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(30)
        assert not self._thread.is_alive(), "ingest clients did not stop"

    def count(self) -> int:
        with self._lock:
            return len(self.acknowledged)

    async def _main(self) -> None:
        await asyncio.gather(*(self._client(n) for n in range(CLIENTS)))

    async def _client(self, n: int) -> None:
        rng = random.Random(self.seed * 100 + n)
        syntax = (EXPLICIT_VR_LE, IMPLICIT_VR_LE)[n % 2]
        contexts = [(CT_IMAGE, [syntax])]
        while not self._stop.is_set():
            try:
                async with await associate(
                    HOST,
                    self.port,
                    calling_ae=f"CRASH{n}",
                    called_ae="ARCHIVE",
                    contexts=contexts,
                    timeouts=TIMEOUTS,
                ) as assoc:
                    context = assoc.negotiated.context_for(CT_IMAGE)
                    assert context is not None
                    while not self._stop.is_set():
                        ds = make_dataset(
                            pixel_bytes=rng.randint(4_000, 48_000), seed=rng.getrandbits(32)
                        )
                        data = encode_dataset(ds, syntax)
                        uid = str(ds.SOPInstanceUID)
                        rq = CStoreRq(
                            message_id=assoc.next_message_id(),
                            affected_sop_class_uid=CT_IMAGE,
                            affected_sop_instance_uid=uid,
                        )
                        self.attempted += 1
                        rsp = await assoc.store(context.id, rq, chunked(data, 8192))
                        if rsp.status == SUCCESS:
                            with self._lock:
                                self.acknowledged[uid] = data
                        else:
                            key = f"{rsp.status:#06x}"
                            self.failures[key] = self.failures.get(key, 0) + 1
            except (ArchiveError, OSError):
                await asyncio.sleep(0.02)  # the server is down: try again


def test_sigkill_under_ingest_loses_nothing(tmp_path: Path) -> None:
    seed = int(os.environ.get("ARCHIVE_CRASH_SEED", time.time_ns() % 1_000_000))
    rng = random.Random(seed)
    why = f"(ARCHIVE_CRASH_SEED={seed}, server log {tmp_path / 'serve.log'})"
    root = tmp_path / "data"
    log = tmp_path / "serve.log"
    port = fixed_port()
    ingest = Ingest(port, seed)
    per_round: list[int] = []
    proc = serve(root, port, log)
    ingest.start()
    try:
        for _round in range(ROUNDS):
            before = ingest.count()
            # Wait for traffic first, so the kill lands mid-ingest, not mid-start-up.
            deadline = time.monotonic() + 10
            while ingest.count() == before and time.monotonic() < deadline:
                time.sleep(0.01)
            time.sleep(rng.uniform(0.2, 1.5))
            proc.send_signal(signal.SIGKILL)
            proc.wait(10)
            per_round.append(ingest.count() - before)
            proc = serve(root, port, log)
    finally:
        ingest.stop()
        stop(proc)

    acknowledged = ingest.acknowledged
    assert all(n > 0 for n in per_round), f"a round acknowledged nothing: {per_round} {why}"
    assert ingest.failures == {}, f"failure statuses: {ingest.failures} {why}"

    # The last clean start: recovery has run; nothing temporary is visible.
    proc = serve(root, port, log)
    try:
        assert leftovers(root) == [], why
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(20)
        finally:
            stop(proc)
    assert leftovers(root) == [], why
    assert files_under(root, "*.part", "*.new", "*.tmp") == [], why

    rows = all_rows(root)
    lost = [uid for uid in acknowledged if uid not in rows]
    assert lost == [], f"{len(lost)} acknowledged instance(s) not indexed {why}"
    for uid, sent in acknowledged.items():
        path = stored_path(root, uid)
        assert path.exists(), f"{uid} acknowledged, no file {why}"
        blob = path.read_bytes()
        meta, offset = split_part10(blob)
        assert meta[0x0003][1].rstrip(b"\0").decode() == uid
        assert blob[offset:] == sent, f"{uid}: stored data set differs from what was sent {why}"
        _, size, digest = rows[uid]
        assert digest == sha256(sent), why
        assert size == len(blob), why

    # Index and files agree both ways, acknowledged or not.
    on_disk = {p.relative_to(root).as_posix(): p for p in instance_files(root)}
    indexed = {path: (uid, size, digest) for uid, (path, size, digest) in rows.items()}
    assert sorted(set(on_disk) - set(indexed)) == [], f"files without a row {why}"
    assert sorted(set(indexed) - set(on_disk)) == [], f"rows without a file {why}"
    for relative, (uid, size, digest) in indexed.items():
        blob = on_disk[relative].read_bytes()
        _, offset = split_part10(blob)
        assert len(blob) == size, f"{uid}: size differs from its row {why}"
        assert sha256(blob[offset:]) == digest, f"{uid}: digest differs from its row {why}"
    assert len(rows) >= len(acknowledged)
