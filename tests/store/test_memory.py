"""Memory: a 1 GiB multi-frame instance is ingested with the server's RSS growing < 100 MB.

``archive serve`` runs as a child process; its VmRSS is read from /proc before the
C-STORE and its VmHWM (peak RSS since start) after, so a transient peak during the
transfer counts too. The test process never holds the data set either: a small
header built with pydicom is followed by a 1 GiB Pixel Data value generated 1 MiB
at a time and hashed on the way, streamed by our SCU (one chunk of lookahead).
The stored file is then checked against that digest and size, and removed.
"""

from __future__ import annotations

import asyncio
import hashlib
import random
import struct
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from pydicom import Dataset

from archive.dicom.dimse import CStoreRq
from archive.dicom.uids import EXPLICIT_VR_LE
from archive.net import Timeouts, associate
from tests.interop.conftest import free_port
from tests.store.helpers import (
    HOST,
    MULTIFRAME_GRAYSCALE_WORD_SC,
    SUCCESS,
    all_rows,
    encode_dataset,
    leftovers,
    make_dataset,
    pid_rss,
    serve,
    split_part10,
    stored_path,
    terminate,
)

GiB = 1 << 30
MiB = 1 << 20
#: The issue's bound on RSS growth while ingesting the 1 GiB instance.
MAX_GROWTH = 100 * 1000 * 1000
ROWS, COLUMNS, FRAMES = 512, 512, 2048  # 16-bit: 512 KiB a frame, 1 GiB in all


def header() -> tuple[Dataset, bytes]:
    """The data set up to and including the Pixel Data element header (Explicit VR LE)."""
    ds = make_dataset(sop_class=MULTIFRAME_GRAYSCALE_WORD_SC, modality="OT")
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.NumberOfFrames = FRAMES
    ds.Rows = ROWS
    ds.Columns = COLUMNS
    ds.BitsAllocated = 16
    ds.BitsStored = 16
    ds.HighBit = 15
    ds.PixelRepresentation = 0
    assert GiB == ROWS * COLUMNS * FRAMES * 2
    # (7FE0,0010) OW, 2 reserved bytes, 32-bit length (PS3.5 7.1.2).
    pixel = struct.pack("<HH2s2xL", 0x7FE0, 0x0010, b"OW", GiB)
    return ds, encode_dataset(ds, EXPLICIT_VR_LE) + pixel


async def generated(head: bytes, digest: Any, sent: list[int]) -> AsyncIterator[bytes]:
    block = random.Random(3).randbytes(MiB)
    digest.update(head)
    sent[0] += len(head)
    yield head
    for n in range(GiB // MiB):
        chunk = n.to_bytes(8, "little") + block[8:]
        digest.update(chunk)
        sent[0] += len(chunk)
        yield chunk


def test_one_gib_instance_with_flat_rss(tmp_path: Path) -> None:
    root = tmp_path / "data"
    port = free_port()
    # Strict durability (the default): one flush of the 1 GiB is fast enough here.
    proc = serve(root, port, tmp_path / "serve.log")
    try:
        ds, head = header()
        digest = hashlib.sha256()
        sent = [0]
        rss_before, _ = pid_rss(proc.pid)

        async def send() -> int:
            async with await associate(
                HOST,
                port,
                calling_ae="BIGSCU",
                called_ae="ARCHIVE",
                contexts=[(MULTIFRAME_GRAYSCALE_WORD_SC, [EXPLICIT_VR_LE])],
                timeouts=Timeouts(artim=10, network=60, dimse=60, connect=5),
            ) as assoc:
                context = assoc.negotiated.context_for(MULTIFRAME_GRAYSCALE_WORD_SC)
                assert context is not None
                rq = CStoreRq(
                    message_id=1,
                    affected_sop_class_uid=MULTIFRAME_GRAYSCALE_WORD_SC,
                    affected_sop_instance_uid=ds.SOPInstanceUID,
                )
                rsp = await assoc.store(context.id, rq, generated(head, digest, sent))
                return rsp.status

        assert asyncio.run(send()) == SUCCESS
        rss_after, hwm = pid_rss(proc.pid)
        growth = hwm - rss_before
        assert growth < MAX_GROWTH, (
            f"server RSS grew by {growth / 1e6:.1f} MB (VmRSS {rss_before / 1e6:.1f} MB before,"
            f" VmHWM {hwm / 1e6:.1f} MB, VmRSS {rss_after / 1e6:.1f} MB after)"
        )
    finally:
        terminate(proc)

    assert sent[0] == len(head) + GiB
    path = stored_path(root, ds.SOPInstanceUID)
    try:
        with path.open("rb") as f:
            _, offset = split_part10(f.read(4096))
            f.seek(offset)
            on_disk = hashlib.sha256()
            while block := f.read(8 * MiB):
                on_disk.update(block)
        size = path.stat().st_size
        assert size == offset + sent[0]
        assert on_disk.hexdigest() == digest.hexdigest()
        rows = all_rows(root)
        assert rows[ds.SOPInstanceUID][1:] == (size, digest.hexdigest())
        assert leftovers(root) == []
    finally:
        path.unlink(missing_ok=True)
