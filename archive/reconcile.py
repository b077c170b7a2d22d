"""A full check of the data folder: every file indexed, every row backed by its file.

Start-up recovery looks only at ``tmp/`` (what was in flight at a crash), which is
all a crash of this node can leave inconsistent. This module is the full sweep
for everything else: files copied in or deleted by hand, a restored backup, a
disk that lost blocks. ``archive check`` runs it; with ``repair`` it indexes
readable files that have no row (moving unreadable ones to ``quarantine/``: no
instance can be made of them, but they may be all someone has), removes rows
whose file is gone, and removes files that are an instance's superseded version
once the version indexed has been read whole and found as stored (else the
other version stays: it may be the only good copy).

A repair never runs on an ``instances/`` without a single file while the index
has rows: that is a disk not mounted far more often than every file lost, and
the repair would empty the index.

It holds the set of paths in memory (about 100 bytes per instance) and reads
every unindexed file once (with ``verify``, every indexed file too; without, the
first bytes of each, so that one that cannot be read is reported); the walk
itself is a directory listing.
"""

from __future__ import annotations

import asyncio
import logging
import os
from pathlib import Path

import msgspec

from archive.dicom.dimse import Status
from archive.dicom.filemeta import MAGIC, PREAMBLE_LENGTH, FileMetaError
from archive.dicom.header import HeaderError
from archive.dicom.store_request import check_store_request
from archive.dicom.uids import usable_uid
from archive.index import DuplicateInstanceError
from archive.node import Storage, stored_from_scan
from archive.reindex import DEFAULT_JOBS
from archive.store import INSTANCES, ScannedFile, StoreError, digest_file, scan_file

log = logging.getLogger("archive.reconcile")


class CheckReport(msgspec.Struct, kw_only=True):
    """What the sweep found (and, with repair, fixed)."""

    files: int = 0
    rows: int = 0
    unindexed_files: list[str] = msgspec.field(default_factory=list)
    unreadable_files: list[str] = msgspec.field(default_factory=list)
    superseded_files: list[str] = msgspec.field(default_factory=list)
    #: Other versions of an instance whose indexed file is missing, unreadable or
    #: not as stored: never removed, whatever ``repair`` says.
    kept_versions: list[str] = msgspec.field(default_factory=list)
    missing_files: list[str] = msgspec.field(default_factory=list)
    #: Files that cannot be read at all (permissions, I/O error): maybe intact,
    #: so left in place, and nothing here can repair them.
    inaccessible_files: list[str] = msgspec.field(default_factory=list)
    #: With verify: indexed files read whole (their count), and those whose size
    #: or digest is not the index's (nothing repairs them: the content is lost).
    verified: int = 0
    altered_files: list[str] = msgspec.field(default_factory=list)
    repaired: bool = False

    @property
    def clean(self) -> bool:
        return not (
            self.unindexed_files
            or self.unreadable_files
            or self.superseded_files
            or self.kept_versions
            or self.missing_files
            or self.inaccessible_files
            or self.altered_files
        )

    @property
    def beyond_repair(self) -> bool:
        """Something is wrong that ``repair`` does not fix."""
        return bool(self.inaccessible_files or self.altered_files or self.kept_versions)


def _walk(root: Path) -> set[str]:
    """Every ``.dcm`` under ``instances/``, relative to the data folder.

    A folder that cannot be listed (EIO, a link to an unmounted disk) ends the
    check with a StoreError: its files would otherwise count as missing, and
    ``--repair`` would remove the rows of instances that are there.
    """
    found: set[str] = set()
    base = root / INSTANCES

    def unlistable(exc: OSError) -> None:
        raise StoreError(f"cannot list {exc.filename}: {exc.strerror or exc}") from exc

    for folder, _, names in os.walk(base, onerror=unlistable):
        relative = Path(folder).relative_to(root).as_posix()
        found.update(f"{relative}/{name}" for name in names if name.endswith(".dcm"))
    return found


async def check(
    storage: Storage, *, repair: bool = False, verify: bool = False, jobs: int = DEFAULT_JOBS
) -> CheckReport:
    """Compare ``instances/`` with the index; fix the differences if ``repair``.

    With ``verify``, also read every indexed file whole, ``jobs`` at a time, and
    compare its size and SHA-256 with the index's: a file changed on disk (a bad
    block, a hand edit) is reported, and left as it is whatever ``repair`` says.
    """
    index = storage.index
    assert index is not None
    files = await storage.files.run(_walk, storage.root)
    rows: dict[str, str] = {}
    async for uid, path in index.instance_paths():
        rows[path] = uid
    if repair and rows and not files:
        raise StoreError(
            f"{storage.root / INSTANCES} holds no instance file for {len(rows)} index row(s):"
            " is its disk mounted? Nothing was repaired"
        )
    report = CheckReport(files=len(files), rows=len(rows), repaired=repair)
    report.missing_files = sorted(path for path in rows if path not in files)
    unindexed = sorted(path for path in files if path not in rows)
    if repair and report.missing_files:
        await index.remove([rows[path] for path in report.missing_files])
        log.warning("check: removed %d row(s) without a file", len(report.missing_files))
    for path in unindexed:
        try:
            scanned = _as_ingest_would(await storage.files.run(scan_file, storage.files.path(path)))
        except (FileMetaError, HeaderError) as exc:  # not an instance: never acknowledged
            report.unreadable_files.append(path)
            log.warning("check: unreadable %s: %s", path, exc)
            if repair:
                moved = await storage.files.set_aside(path)
                log.warning("check: %s moved to %s", path, moved)
            continue
        except OSError as exc:  # maybe intact (permissions, EIO): reported, never removed
            report.inaccessible_files.append(path)
            log.warning("check: cannot read %s (left in place): %s", path, exc)
            continue
        held = await index.instance(scanned.attrs.sop_instance_uid)
        if held is not None:  # another version is the indexed one
            if not await _indexed_intact(storage, scanned.attrs.sop_instance_uid, files):
                report.kept_versions.append(path)
                log.warning("check: %s kept: the version indexed is not as stored", path)
                continue
            report.superseded_files.append(path)
            if repair:
                await storage.files.remove(path)
            continue
        report.unindexed_files.append(path)
        if repair:
            try:
                await index.add(stored_from_scan(scanned, path))
            except DuplicateInstanceError:
                report.superseded_files.append(path)
                await storage.files.remove(path)
    if verify:
        await _verify(storage, files, report, jobs)
    else:
        present = sorted(path for path in rows if path in files)
        for path, error in await storage.files.run(_unopenable, storage.root, present):
            log.warning("check: cannot read %s (left in place): %s", path, error)
            report.inaccessible_files.append(path)
    return report


async def _indexed_intact(storage: Storage, uid: str, files: set[str]) -> bool:
    """Whether the file indexed for ``uid`` is there and reads whole as stored
    (size and digest): only then is another version of it superseded."""
    index = storage.index
    assert index is not None
    record = await index.record(uid)
    if record is None or record.path not in files:
        return False
    try:
        found = await storage.files.run(digest_file, storage.files.path(record.path))
    except (FileMetaError, OSError):
        return False
    return found.size == record.size and found.digest == record.digest


def _as_ingest_would(scanned: ScannedFile) -> ScannedFile:
    """``scanned``, if ingest would have stored it (its File Meta's UIDs as the
    command's); else the HeaderError ingest answered. A file this node wrote
    passes: one that does not was copied in, and indexed it would be served
    under a UID that names no instance (retrieves logging whatever the data
    set's damaged UID swallowed)."""
    meta = scanned.meta
    if not usable_uid(meta.media_storage_sop_instance_uid):
        raise HeaderError(
            "Media Storage SOP Instance UID is not a valid UID", Status.INVALID_OBJECT_INSTANCE
        )
    check_store_request(
        scanned.attrs, meta.media_storage_sop_class_uid, meta.media_storage_sop_instance_uid
    )
    return scanned


def _unopenable(root: Path, paths: list[str]) -> list[tuple[str, OSError]]:
    """Those of ``paths`` (indexed files that are there) whose first bytes cannot be
    read: a C-GET or C-MOVE of them would fail. Without ``verify`` this is all a
    check reads of them (an open and a read of the preamble each)."""
    failed = []
    for path in paths:
        try:
            fd = os.open(root / path, os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK)
            try:
                os.pread(fd, PREAMBLE_LENGTH + len(MAGIC), 0)
            finally:
                os.close(fd)
        except OSError as exc:
            failed.append((path, exc))
    return failed


async def _verify(storage: Storage, files: set[str], report: CheckReport, jobs: int) -> None:
    """Read each indexed file that is there whole, ``jobs`` at a time; note those
    that differ from the index, and those that cannot be read."""
    index = storage.index
    assert index is not None
    slots = asyncio.Semaphore(jobs)

    async def one(path: str, size: int, digest: str) -> None:
        # The bytes are compared with the row's, not parsed again: what ingest
        # acknowledged unchecked (a Deflated data set past its header) is as
        # stored even where a parse to the end of its stream would refuse it.
        try:
            scanned = await storage.files.run(digest_file, storage.files.path(path))
        except FileMetaError as exc:  # it was whole when indexed
            log.warning("check: %s no longer reads as a Part 10 file: %s", path, exc)
            report.altered_files.append(path)
            return
        except OSError as exc:
            log.warning("check: cannot read %s (left in place): %s", path, exc)
            report.inaccessible_files.append(path)
            return
        finally:
            slots.release()
        report.verified += 1
        if scanned.size != size or scanned.digest != digest:
            log.warning("check: %s differs from what was stored (size or digest)", path)
            report.altered_files.append(path)

    # A task group: should one read fail unexpectedly, the others are cancelled.
    async with asyncio.TaskGroup() as group:
        async for _, path, size, digest in index.instance_files():
            if path not in files:
                continue  # missing: reported as such
            await slots.acquire()
            group.create_task(one(path, size, digest))
    report.altered_files.sort()
    report.inaccessible_files.sort()
