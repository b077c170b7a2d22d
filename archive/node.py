"""The composition root: one node's store, index, services and server, built from config.

``async with Node(config) as node:`` opens the data folder (file store, index),
recovers from a crash (makes every instance that was in flight agree with the
index: kept if its file and row match, removed otherwise), and starts listening;
leaving the block shuts the server down within the grace period and closes the
index after its last commit.
The CLI, the importer and the tests all build the node here, so they run the same
code the server does.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Callable, Sequence
from pathlib import Path
from types import TracebackType
from typing import Literal, TypeVar

from archive.config import Config
from archive.dicom.dimse import CFindRq, CGetRq, CMoveRq
from archive.dicom.filemeta import FileMetaError
from archive.dicom.header import HeaderError
from archive.dicom.ul.negotiation import default_acceptor_policy
from archive.index import Index, IndexOpenError, IndexWriteError, StoredInstance
from archive.net import AssociationError, Server, associate, timeouts_from
from archive.services import Ingest, StoreTarget, SubAssociationError, default_registry
from archive.services.base import Provider
from archive.services.query import FindSettings, c_find_provider
from archive.services.retrieve import Connect, MoveSettings, c_get_provider, c_move_provider
from archive.store import DataFolderError, FileStore, ScannedFile, digest_file, scan_file

log = logging.getLogger("archive.node")

INDEX_FILE = "index.sqlite"


def _folder_problem(root: Path, exc: OSError | IndexOpenError) -> str:
    """``node.data_dir: cannot use ROOT: reason (path)``, for a failed open
    (blocking: it may look at ``root``)."""
    if (
        isinstance(exc, FileExistsError | NotADirectoryError)
        and root.exists()
        and not root.is_dir()
    ):
        reason, where = "not a folder", ""
    elif isinstance(exc, OSError):
        reason = exc.strerror or str(exc)
        where = f" ({exc.filename})" if exc.filename and str(exc.filename) != str(root) else ""
    else:
        reason, where = f"index: {exc.__cause__ or exc}", ""
    return f"node.data_dir: cannot use {root}: {reason}{where}"


class Storage:
    """The data folder opened: file store, index and the ingest path over them."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.root = Path(config.node.data_dir)
        strict = config.store.durability == "strict"
        self.files = FileStore(
            self.root,
            durable=strict,
            batched=strict and config.store.flush == "batch",
            cache_new_files=config.store.cache_new_files,
        )
        self.index: Index | None = None
        self.ingest: Ingest | None = None

    async def open(self) -> Storage:
        """Open the store and the index, then recover. If any step fails, what was
        opened is closed (the folder's lock, the I/O pool, the index's threads)
        before the error goes on: a failed open leaves the folder free."""
        try:
            await self.files.open()
            flush = None
            # The index may be a link to another disk: flush that one too (a no-op
            # unless batched).
            await self.files.run(self.files.also_flush, self.root / INDEX_FILE)
            if self.files.batched:
                # Still batched: that disk can be flushed too. Otherwise the index
                # syncs its own commits (synchronous=FULL), like each file.
                flush = self.files.flush_all
            elif self.files.durable and self.config.store.flush == "batch":
                log.info("no syncfs for the data folder: each file is flushed on its own")
            self.index = await Index.open(
                self.root / INDEX_FILE,
                durability="strict" if self.files.durable else "fast",
                flush=flush,
            )
            self.ingest = Ingest(
                self.files,
                self.index,
                duplicates=_policy(self.config.store.duplicates),
            )
            await self.recover()
        except BaseException as exc:
            await self.close()
            if isinstance(exc, OSError | IndexOpenError):
                # Not a traceback, nor (serve) a "cannot listen": the folder named.
                problem = await asyncio.to_thread(_folder_problem, self.root, exc)
                raise DataFolderError(problem) from exc
            raise
        return self

    async def recover(self) -> None:
        """Make every instance in flight at the last stop agree with the index.

        The in-flight markers in ``tmp/`` (``archive/store/files.py``) are the
        only places a crash can leave a file and its row disagreeing: a file is
        linked to its final path before its flush and its index commit are
        known to have completed, and its marker goes only after both. Success
        is answered only once the file, its folder and the row are all durable,
        so for each marker:

        - the file was placed and the index row for that path exists: kept if
          the file reads back with the row's size and SHA-256 (the crash
          came after the commit, before the marker's removal); otherwise the
          row AND the file are removed, since a row whose file is short or
          different was never answered Success (the flush had not completed)
          and keeping a half file indexed would serve it;
        - the file was placed and no row names that path: removed (unless the
          UID is in the journal: then :meth:`_check_unflushed` decides). The row
          was never committed, so the instance was never acknowledged, and a
          file that is complete on disk cannot be told from one whose flush
          had not finished (a data set can end at any element boundary);
        - the file was not placed (the crash came before the link, or the link
          was lost) and the row names one of its paths where there is no such
          file: that row has no file and was never acknowledged either: removed;
        - otherwise only the marker goes.

        "No such file" is a stat's ENOENT only: a file that cannot be stat'ed
        (EIO, EACCES) may be an acknowledged instance, so the listing of the
        markers stops the start with a StoreError naming it, before anything
        is changed (``archive/store/inflight.py``).

        Each removal is done before the marker's, so a crash during recovery
        leaves the marker for the next one. A row dropped for a file that is not
        whole gives its place back to an earlier version still on disk (a
        replacement cut short). Then :meth:`_check_unflushed`, on the journal as
        it was at the start: recovery's own writes leave the journal alone until
        everything is done, so a crash during recovery finds it whole again.
        """
        assert self.index is not None
        # What survived the last stop is made durable before it is judged.
        await self.files.run(self.files.flush_all)
        journal = await self.index.unflushed()
        self.index.hold_journal(True)
        try:
            await self._check_markers(frozenset(journal))
            await self._check_unflushed(journal)
        finally:
            self.index.hold_journal(False)
        if journal:
            try:
                await self.index.clear_unflushed()
            except IndexWriteError as exc:
                # A full disk: the start's only write that repairs nothing. Left,
                # the journal is read again by the next start, which finds these
                # instances as this one did (and the node's first batch replaces
                # it); stopping here would leave the node, and its queries and
                # retrieves, down until space is freed.
                log.warning(
                    "recovery: the journal of the last batch could not be emptied (%s);"
                    " the next start checks its %d instance(s) again",
                    exc,
                    len(journal),
                )

    async def _check_markers(self, journaled: frozenset[str]) -> None:
        """The markers' rules (see :meth:`recover`). A placed file that no row names
        is left alone when its UID is in the journal: it may be the version an
        unflushed replacement was to replace (its own marker's removal lost to
        the cut), which :meth:`_check_unflushed` may have to index again."""
        assert self.index is not None
        found = await self.files.in_flight()
        removed = restored = 0
        for entry in found:
            row = await self.index.instance(entry.uid)
            ours = row if row is not None and row.path in entry.candidates else None
            if entry.placed is not None:
                if ours is not None and ours.path == entry.placed:
                    intact = await self._intact(entry.placed, ours.size, ours.digest)
                    if intact is None:
                        continue  # cannot be read: row and file left for archive check
                    if intact:
                        await self.files.remove_other_versions(entry.uid, keep=entry.placed)
                        continue
                    await self.index.remove([entry.uid])
                    removed += 1
                    await self.files.remove(entry.placed)
                    restored += await self._index_earlier_version(entry.uid)
                    continue
                if entry.uid in journaled:
                    continue  # decided with the journal, once its row is checked
                removed += 1
                await self.files.remove(entry.placed)
            elif ours is not None and ours.path not in entry.present:
                removed += 1
                await self.index.remove([entry.uid])
                restored += await self._index_earlier_version(entry.uid)
        await self.files.clear_in_flight(found)
        if found:
            log.info(
                "recovery: %d instance(s) in flight at the last stop, %d unacknowledged "
                "removed, %d earlier version(s) indexed again",
                len(found),
                removed,
                restored,
            )

    async def _check_unflushed(self, journal: list[str]) -> None:
        """Read back the instances of a batch whose flush may not have completed.

        Under ``flush = "batch"`` a batch is committed, then flushed with its
        files, then answered. A power cut during that flush can leave rows
        durable whose files are not (or not whole); they were never
        acknowledged. Under ``flush = "file"`` a COMMIT whose sync failed can
        come back the same way, its files discarded. The ``unflushed`` journal
        names that batch's instances
        (``archive/index/migrations/0002_unflushed.sql``); each whose file does
        not read back with its row's size and SHA-256 loses row and file, and
        one without a row (its row dropped already: by the markers' check, by
        a failed flush's take-back, or by a recovery cut short) gets an
        earlier version still on disk indexed again, if there is one.
        """
        assert self.index is not None
        dropped = restored = 0
        for uid in journal:
            row = await self.index.instance(uid)
            if row is not None:
                intact = await self._intact(row.path, row.size, row.digest)
                if intact is None:
                    continue  # cannot be read: row and file left for archive check
                if intact:
                    # Any other version left by the cut (a placed file the markers'
                    # check left for us) is superseded or was never acknowledged.
                    await self.files.remove_other_versions(uid, keep=row.path)
                    continue
                await self.index.remove([uid])
                await self.files.remove(row.path)
                dropped += 1
            restored += await self._index_earlier_version(uid)
        if dropped or restored:
            log.warning(
                "recovery: %d instance(s) of the last batch were not whole on disk "
                "(never acknowledged): removed; %d earlier version(s) indexed again",
                dropped,
                restored,
            )

    async def _index_earlier_version(self, uid: str) -> int:
        """A replacement was dropped: index the version it replaced, if still on disk.

        The old version goes only after the replacement's batch is flushed, so
        when that batch is the one cut short the old file is still there; without
        this it would be whole but unindexed. The oldest version that reads back
        wins: a version written after it was never acknowledged (its row was
        dropped, or taken back after a failed flush). There is no row left to
        compare it with, so "reads back" is by ingest's rule, which acknowledged
        it (:func:`_as_ingest_judged`). Returns 1 if one was indexed.
        """
        assert self.index is not None
        cut: list[str] = []
        for relative in await self.files.versions(uid):
            scanned = await self._read_back(_as_ingest_judged, relative)
            if scanned == "cut":
                cut.append(relative)
            elif scanned != "unreadable" and scanned.attrs.sop_instance_uid == uid:
                await self.index.add(stored_from_scan(scanned, relative))
                await self.files.remove_other_versions(uid, keep=relative)
                return 1
        for relative in cut:
            await self.files.remove(relative)
        return 0

    async def _intact(self, relative: str, size: int, digest: str) -> bool | None:
        """The file holds what its row says was acknowledged: this size, and this
        SHA-256 of its data set; None if it cannot be read at all (permissions,
        I/O error): maybe intact.

        The bytes are compared, not judged again: ingest acknowledged them by its
        own rule, which may have stored part of them unchecked (a Deflated data
        set too compressible to check past its header), and a stricter reading
        now would take an acknowledged instance for a cut one and remove it.
        """
        found = await self._read_back(digest_file, relative)
        if found == "unreadable":
            return None
        return found != "cut" and found.size == size and found.digest == digest

    async def _read_back(
        self, read: Callable[[str], _Read], relative: str
    ) -> _Read | Literal["cut", "unreadable"]:
        """Read a file for recovery: what ``read`` makes of it, "cut" (not a data
        set ingest would have taken, or not there at all, so never acknowledged)
        or "unreadable" (permissions, I/O error: maybe intact, so it must be left
        in place)."""
        try:
            return await self.files.run(read, self.files.path(relative))
        except (FileMetaError, HeaderError, FileNotFoundError) as exc:  # its link lost too
            log.warning("recovery: %s does not read back: %s", relative, exc)
            return "cut"
        except Exception as exc:  # OSError, or not understood: left for archive check
            log.warning("recovery: cannot read %s (left in place): %s", relative, exc)
            return "unreadable"

    async def close(self) -> None:
        """Close the index, then the store (and its lock). Idempotent."""
        index, self.index = self.index, None
        if index is not None:
            await index.close()
        # Waits for the I/O pool's last jobs (marker removals): not on the loop.
        await asyncio.to_thread(self.files.close)


class Node:
    """A running archive node."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.storage = Storage(config)
        self.server: Server | None = None

    async def start(self) -> Node:
        """Open the storage and listen. On any failure (the port taken, say) what
        was started is stopped before the error goes on."""
        try:
            await self.storage.open()
            assert self.storage.index is not None
            if await self.storage.index.reindex_needed():
                log.warning(
                    "the index holds instances indexed by an earlier version, without "
                    "the values added since (C-FIND sequence keys): stop the node and "
                    "run `archive reindex` to read their headers again"
                )
            registry = default_registry(
                self.storage.ingest, qr=qr_providers(self.config, self.storage)
            )
            self.server = Server(self.config, default_acceptor_policy(self.config), registry)
            await self.server.start()
        except BaseException:
            await self.stop(grace=0)
            raise
        return self

    @property
    def port(self) -> int:
        assert self.server is not None
        return self.server.port

    async def stop(self, grace: float | None = None) -> None:
        if self.server is not None:
            await self.server.shutdown(self.config.node.shutdown_grace if grace is None else grace)
        await self.storage.close()

    async def __aenter__(self) -> Node:
        return await self.start()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()


_Read = TypeVar("_Read")


def _as_ingest_judged(path: str) -> ScannedFile:
    """Scan a version with no row to compare it with (recovery indexing it again)
    by the rule ingest acknowledged it by: a Deflated data set past its header is
    checked within the C-STORE path's ratio, not to the end of its stream."""
    return scan_file(path, rest="bounded")


def stored_from_scan(scanned: ScannedFile, relative: str) -> StoredInstance:
    """The index row of a file found on disk (recovery, ``archive check``)."""
    return StoredInstance(
        attrs=scanned.attrs,
        path=relative,
        size=scanned.size,
        digest=scanned.digest,
        transfer_syntax_uid=scanned.meta.transfer_syntax_uid,
        source_ae=scanned.meta.source_application_entity_title,
        received_at=time.time(),
    )


def qr_providers(config: Config, storage: Storage) -> dict[type, Provider]:
    """C-FIND, C-MOVE and C-GET over the storage's index and files, per the config."""
    assert storage.index is not None
    find = FindSettings(
        max_matches=config.query.max_matches,
        fold_person_names=config.query.case_insensitive_names,
        match_unknown=config.query.match_unknown,
        retrieve_ae=config.node.ae_title,
    )
    move = MoveSettings(
        peers={peer.ae_title: (peer.host, peer.port) for peer in config.peers},
        associations=config.retrieve.move_associations,
    )
    return {
        CFindRq: c_find_provider(storage.index, find),
        CMoveRq: c_move_provider(storage.index, storage.files, move, move_connector(config)),
        CGetRq: c_get_provider(storage.index, storage.files),
    }


def move_connector(config: Config) -> Connect:
    """C-MOVE sub-associations over the driver's SCU, as ``config`` says: our AE
    title calling, our maximum PDU length and timeouts. The driver's errors become
    the services' :class:`SubAssociationError` (services sit below net)."""
    timeouts = timeouts_from(config)

    @contextlib.asynccontextmanager
    async def connect(
        called_ae: str,
        address: tuple[str, int],
        contexts: Sequence[tuple[str, Sequence[str]]],
    ) -> AsyncIterator[StoreTarget]:
        try:
            assoc = await associate(
                address[0],
                address[1],
                calling_ae=config.node.ae_title,
                called_ae=called_ae,
                contexts=contexts,
                max_pdu_length=config.association.max_pdu_length,
                timeouts=timeouts,
            )
        except AssociationError as exc:
            raise SubAssociationError(str(exc)) from exc
        try:
            async with assoc:  # an error inside aborts the association
                yield assoc
        except AssociationError as exc:
            raise SubAssociationError(str(exc)) from exc

    return connect


def _policy(value: str) -> Literal["keep", "replace", "reject"]:
    if value == "replace":
        return "replace"
    if value == "reject":
        return "reject"
    return "keep"
