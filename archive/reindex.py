"""``archive reindex``: read indexed files' headers again and bring their rows up to date.

When a version of archive-node indexes more of each instance than the one before
(``archive/dicom/attributes.py`` HEADER_VERSION: 1 added the sequences C-FIND
matches on), the rows made before the upgrade lack those values: the migration
adds columns but cannot read files. This reads each such instance's header from
its file (only the header: :func:`archive.store.scan_header`, one or two 64 KiB
reads whatever the file's size) and writes its row again through the index's
writer (:meth:`archive.index.Index.refresh`: same path, size, digest and
receipt). A patient, study or series value is only filled where the level has
none: the one there is the latest received, which an older instance must not
undo. Where it has none (a column a migration added), the latest received
instance of the level that has one gives it, as ingest would have: the rows are
read from the latest received to the earliest (files read ``jobs`` at a time,
rows written in that order), and the values a level got from a later instance
are kept for the earlier ones. These writes are not journaled for recovery (no
file was written, and the old row and the new one are both valid), so a cut
during a reindex loses at most the last rows it wrote, which the next run writes
again.

By default only rows an older header version made are read (the index knows
which: ``instance.header_version``); ``everything`` reads all of them. Files are
never written, moved or removed: a row whose file is missing, unreadable, of
another size than indexed, or of another instance is left as it is and reported,
for ``archive check``. The content is not compared with the row's digest: that
would read every file whole. When no outdated row is left, the index's reindex
task is cleared and the server stops warning about it at start-up.

Offline, like ``archive check``: it takes the data folder's lock.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import TextIO

import msgspec

from archive.dicom.attributes import HEADER_VERSION, InstanceAttributes
from archive.dicom.filemeta import FileMetaError
from archive.dicom.header import HeaderError
from archive.dicom.query_keys import Level
from archive.errors import ArchiveError
from archive.index import LEVEL_FIELDS, StoredInstance, patient_key, refreshed
from archive.node import Storage
from archive.progress import Progress
from archive.store import scan_header

log = logging.getLogger("archive.reindex")

DEFAULT_JOBS = 8


class ReindexReport(msgspec.Struct, kw_only=True):
    """What a reindex read and wrote; paths are relative to the data folder."""

    #: Rows it set out to read.
    rows: int = 0
    #: Rows written again from their file's header.
    refreshed: int = 0
    missing_files: list[str] = msgspec.field(default_factory=list)
    unreadable_files: list[str] = msgspec.field(default_factory=list)
    #: Files whose size or SOP Instance UID is not the row's: changed on disk.
    changed_files: list[str] = msgspec.field(default_factory=list)
    #: Rows an older header version made, left after the run.
    outdated: int = 0
    seconds: float = 0.0

    @property
    def clean(self) -> bool:
        return not (self.missing_files or self.unreadable_files or self.changed_files)


async def reindex(
    storage: Storage,
    *,
    everything: bool = False,
    jobs: int = DEFAULT_JOBS,
    progress: bool | None = None,
    progress_stream: TextIO | None = None,
) -> ReindexReport:
    """Refresh the rows of outdated instances (or of all, ``everything``) from their files."""
    index = storage.index
    assert index is not None
    started = time.monotonic()
    older_than = None if everything else HEADER_VERSION
    receipts = [row async for row in index.instance_receipts(older_than=older_than)]
    # The latest received first; among those received at one time, the latest
    # committed (pk order, as listed).
    order = sorted(range(len(receipts)), key=lambda n: (receipts[n][2], n), reverse=True)
    rows = [receipts[n][:2] for n in order]
    report = ReindexReport(rows=len(rows))
    bar = Progress(len(rows), label="instances", stream=progress_stream, enabled=progress)
    pending = enumerate(rows)
    failures: list[ArchiveError] = []
    given = _Given()
    turn = 0
    turns = asyncio.Condition()

    def ready(seq: int) -> Callable[[], bool]:
        return lambda: turn == seq or bool(failures)

    async def worker() -> None:
        nonlocal turn
        for seq, (uid, path) in pending:
            if failures:
                return
            read: tuple[StoredInstance, InstanceAttributes, int] | int | None = None
            try:
                read = await _read(storage, uid, path, report)
            except ArchiveError as exc:  # the index failed: stop, say why
                failures.append(exc)
            # Rows are written in the order read (module docstring): the write
            # is queued in turn, its commit awaited after.
            async with turns:
                await turns.wait_for(ready(seq))
                write = None
                if isinstance(read, tuple) and not failures:
                    held, attrs, _ = read
                    item = refreshed(held, attrs, given.of(held))
                    given.note(held, item)
                    write = asyncio.ensure_future(index.refresh_merged(item))
                turn += 1
                turns.notify_all()
            if write is not None:
                try:
                    if await write:
                        report.refreshed += 1
                except ArchiveError as exc:
                    failures.append(exc)
            if failures:
                return
            bar.advance(1, read[2] if isinstance(read, tuple) else read or 0)

    try:
        async with asyncio.TaskGroup() as tg:
            for _ in range(max(1, min(jobs, len(rows)))):
                tg.create_task(worker())
    finally:
        bar.close()
    if failures:
        raise failures[0]
    report.outdated = await index.outdated()
    if report.outdated == 0:
        await index.reindexed()
    report.seconds = time.monotonic() - started
    log.info(
        "reindex: %d of %d row(s) refreshed in %.1f s; %d outdated left",
        report.refreshed,
        report.rows,
        report.seconds,
        report.outdated,
    )
    return report


async def _read(
    storage: Storage, uid: str, path: str, report: ReindexReport
) -> tuple[StoredInstance, InstanceAttributes, int] | int:
    """One row's record and the attributes its file's header holds now, to
    write; else the file's size (0 if not read): nothing to write."""
    index = storage.index
    assert index is not None
    try:
        scanned = await storage.files.run(scan_header, storage.files.path(path))
    except FileNotFoundError:
        report.missing_files.append(path)
        log.warning("reindex: the file of an indexed instance is missing: %s", path)
        return 0
    except (FileMetaError, HeaderError, OSError) as exc:
        report.unreadable_files.append(path)
        log.warning("reindex: cannot read %s (row left as it is): %s", path, exc)
        return 0
    held = await index.record(uid)
    if held is None or held.path != path:
        return scanned.size  # removed or replaced meanwhile: nothing to refresh
    if scanned.attrs.sop_instance_uid != uid or scanned.size != held.size:
        report.changed_files.append(path)
        log.warning("reindex: %s is not the file indexed (size or UID differs): left", path)
        return scanned.size
    return held, scanned.attrs, scanned.size


class _Given:
    """Level values this run has written, by level and entity, for the earlier
    instances of the same level read after (a level left empty by the index is
    filled by its latest received instance that has a value, as ingest would)."""

    def __init__(self) -> None:
        self._values: dict[tuple[Level, str], dict[str, object]] = {}

    @staticmethod
    def _keys(item: StoredInstance) -> dict[Level, str]:
        """Each level's key of ``item``'s entities."""
        attrs = item.attrs
        # The index's own key: a patient without an ID is one of its study.
        patient = patient_key(
            attrs.patient_id, attrs.issuer_of_patient_id, attrs.study_instance_uid
        )
        return {
            Level.PATIENT: patient,
            Level.STUDY: attrs.study_instance_uid,
            Level.SERIES: attrs.series_instance_uid,
        }

    def of(self, item: StoredInstance) -> dict[str, object]:
        given: dict[str, object] = {}
        for level_key in self._keys(item).items():
            given.update(self._values.get(level_key, {}))
        return given

    def note(self, held: StoredInstance, item: StoredInstance) -> None:
        """``item`` (``held`` refreshed) is written: the level values the index
        had none of are now its."""
        keys = self._keys(held)
        for name, level in LEVEL_FIELDS.items():
            value = getattr(item.attrs, name)
            if value not in ("", None) and getattr(held.attrs, name) in ("", None):
                self._values.setdefault((level, keys[level]), {}).setdefault(name, value)
