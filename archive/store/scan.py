"""Reading a stored (or to-be-imported) Part 10 file back: meta, index attributes, digest.

Blocking functions, meant for the store's I/O pool: recovery re-indexes placed
files with them, and the importer and ``archive store`` read files with them in
bounded chunks (never the whole file in memory).
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator

import msgspec

from archive.dicom.filemeta import MAX_META_LENGTH, FileMeta, decode_file_meta
from archive.dicom.header import HeaderReader, InstanceAttributes

CHUNK = 1 << 20


class ScannedFile(msgspec.Struct, frozen=True, kw_only=True):
    meta: FileMeta
    attrs: InstanceAttributes
    digest: str
    size: int


def read_meta(path: str | os.PathLike[str]) -> tuple[FileMeta, int]:
    """The File Meta Information of a Part 10 file and the data set's offset."""
    with open(path, "rb") as f:
        head = f.read(MAX_META_LENGTH)
    return decode_file_meta(head)


def dataset_chunks(
    path: str | os.PathLike[str], offset: int, chunk: int = CHUNK
) -> Iterator[bytes]:
    """The data set bytes of a file from ``offset``, ``chunk`` bytes at a time."""
    with open(path, "rb") as f:
        f.seek(offset)
        while block := f.read(chunk):
            yield block


def scan_file(path: str | os.PathLike[str]) -> ScannedFile:
    """Meta, index attributes, SHA-256 of the data set bytes and file size."""
    meta, offset = read_meta(path)
    reader = HeaderReader(meta.transfer_syntax_uid)
    digest = hashlib.sha256()
    for block in dataset_chunks(path, offset):
        reader.feed(block)
        digest.update(block)
    return ScannedFile(
        meta=meta,
        attrs=reader.finish(),
        digest=digest.hexdigest(),
        size=os.path.getsize(path),
    )
