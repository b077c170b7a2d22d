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

import os
import random
import time
from pathlib import Path

from tests.interop.conftest import stop
from tests.store.helpers import (
    SUCCESS,
    CrashClients,
    StoreFn,
    all_rows,
    assert_index_and_files_agree,
    encode_dataset,
    fixed_port,
    make_dataset,
    serve,
    sha256,
    split_part10,
    start_clean_and_stop,
    stored_path,
)

ROUNDS = 5


class Ingest(CrashClients):
    """Four SCU associations sending distinct instances until told to stop; what
    was acknowledged."""

    def __init__(self, port: int, seed: int) -> None:
        super().__init__(port, seed)
        self.acknowledged: dict[str, bytes] = {}
        self.attempted = 0
        self.failures: dict[str, int] = {}

    def count(self) -> int:
        with self._lock:
            return len(self.acknowledged)

    async def store_one(self, rng: random.Random, syntax: str, store: StoreFn) -> None:
        ds = make_dataset(pixel_bytes=rng.randint(4_000, 48_000), seed=rng.getrandbits(32))
        data = encode_dataset(ds, syntax)
        uid = str(ds.SOPInstanceUID)
        self.attempted += 1
        status = await store(uid, data)
        if status == SUCCESS:
            with self._lock:
                self.acknowledged[uid] = data
        else:
            key = f"{status:#06x}"
            self.failures[key] = self.failures.get(key, 0) + 1


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
            per_round.append(ingest.kill_mid_ingest(proc, rng.uniform(0.2, 1.5)))
            proc = serve(root, port, log)
    finally:
        ingest.stop()
        stop(proc)

    acknowledged = ingest.acknowledged
    assert all(n > 0 for n in per_round), f"a round acknowledged nothing: {per_round} {why}"
    assert ingest.failures == {}, f"failure statuses: {ingest.failures} {why}"

    # The last clean start: recovery has run; nothing temporary is visible.
    start_clean_and_stop(root, port, log, why)

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
    assert_index_and_files_agree(root, rows, why)
    assert len(rows) >= len(acknowledged)
