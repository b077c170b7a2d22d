"""Ingest's refusals of what only ``archive import`` can hand it: values read from a
file's File Meta that a negotiated association could not carry. Each is refused
with a status, nothing written, and the next store goes on."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from pynetdicom.dsutils import encode

from archive.config import parse_config
from archive.dicom.dimse import Status
from archive.dicom.uids import EXPLICIT_VR_LE
from archive.node import Storage
from tests.store.helpers import make_dataset


async def _fragments(data: bytes) -> AsyncIterator[memoryview]:
    yield memoryview(data)


@pytest.mark.parametrize(
    ("sop_class", "transfer_syntax", "source_ae", "status"),
    [
        ("1.2.840.10008.5.1.4.1.1.2." + "1" * 45, EXPLICIT_VR_LE, "IMPORT", 0x0122),
        ("1.2.840.10008.5.1.4.1.1.\u00e92", EXPLICIT_VR_LE, "IMPORT", 0x0122),
        (None, "1.2.3.4.5", "IMPORT", 0xC000),  # a private transfer syntax
        (None, EXPLICIT_VR_LE, "CAF\u00c9", 0xC000),  # Source AE Title not ASCII
    ],
    ids=["class-too-long", "class-not-ascii", "private-ts", "ae-not-ascii"],
)
def test_file_meta_values_a_store_cannot_write_are_refused(
    tmp_path: Path, sop_class: str | None, transfer_syntax: str, source_ae: str, status: int
) -> None:
    root = tmp_path / "data"
    ds = make_dataset(pixel_bytes=100)
    good = make_dataset(pixel_bytes=100)

    async def main() -> list[int]:
        storage = await Storage(parse_config(f'[node]\ndata_dir = "{root}"\n')).open()
        try:
            assert storage.ingest is not None
            statuses = []
            for item, cls, ts, ae in (
                (ds, sop_class or str(ds.SOPClassUID), transfer_syntax, source_ae),
                (good, str(good.SOPClassUID), EXPLICIT_VR_LE, "IMPORT"),
            ):
                data = encode(item, False, True)
                assert data is not None
                outcome = await storage.ingest.ingest(
                    sop_class_uid=cls,
                    sop_instance_uid=str(item.SOPInstanceUID),
                    transfer_syntax=ts,
                    source_ae=ae,
                    fragments=_fragments(data),
                )
                statuses.append(outcome.status)
            return statuses
        finally:
            await storage.close()

    assert asyncio.run(asyncio.wait_for(main(), 30)) == [status, Status.SUCCESS]
    files = sorted(p.name for p in (root / "instances").rglob("*.dcm"))
    assert files == [f"{good.SOPInstanceUID}.dcm"]
    assert [p for p in (root / "tmp").iterdir() if p.name.endswith(".part")] == []
