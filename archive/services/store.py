"""Storage Service Class SCP: C-STORE (PS3.4 Annex B), and the ingest path behind it.

:class:`Ingest` takes one instance as a stream of data set fragments and makes it
durable: the file written (behind the receiver, see ``archive/store/writer.py``),
linked into place and flushed, the index row committed (group commit), and only
then a status. ``archive import`` uses the same path, so the network and the
offline importer follow one set of rules.

Committing the row while the file is flushed (and a row-ahead marker for
recovery) was tried and measured: slower on CT instances here (the WAL's sync
queues behind the file's on the one disk, and the marker costs a folder sync
first), no clear gain on small ones, so the row waits for the file.

Statuses (PS3.4 B.2.3, PS3.7 C):
- 0x0000 Success: stored; also for a duplicate with identical content (nothing is
  rewritten) and, under ``keep`` (the default), for a duplicate with different
  content, which is not stored: the archive keeps what it acknowledged first, as
  dcm4chee and Orthanc do by default. A WARNING log line records it.
- ``replace``: a different duplicate replaces the file and its row (Success). The
  new file is placed beside the old one and the old one removed only after the
  index commit, so a failed replacement leaves the instance held intact.
- ``reject``: a different duplicate fails with 0x0111 Duplicate SOP Instance
  (PS3.7 C.4.x general failure), with an error comment.
- 0xA700 Refused, Out of Resources: disk full, I/O error, index failure. On a
  full disk, an instance held already is still answered as above when no new
  file is needed (identical content; other content under ``keep`` or ``reject``).
- 0xA900 / 0xC000 from :mod:`archive.dicom.header`: a data set that does not match
  the command or lacks its Study or Series Instance UID (A900), or that cannot be
  parsed or lacks its SOP Class or Instance UID (C000).
- 0x0117 Invalid SOP Instance: an Affected SOP Instance UID that is not a UID.
- 0x0122 (also from the server, for a class not the context's) and 0xC000 for
  File Meta values only ``archive import`` can hand over (see ``ingest``).
Whatever fails, the part file is removed: nothing half-written stays. A file
that cannot be removed (EIO, EROFS) is logged and left to the next start's
recovery; that error never replaces the status (``FileWriter.discard``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator
from typing import Literal, Protocol

import msgspec

from archive.dicom.dimse import CStoreRq, CStoreRsp, Status
from archive.dicom.filemeta import FileMeta, encode_file_meta
from archive.dicom.header import HeaderError, HeaderReader, InstanceAttributes
from archive.dicom.store_request import check_store_request
from archive.dicom.uids import shown_uid, usable_uid
from archive.errors import ArchiveError
from archive.index import DuplicateInstanceError, StoredInstance
from archive.services.base import DatasetInterrupted, Provider, Request, Response
from archive.store import StoreError

log = logging.getLogger("archive.store")

DuplicatePolicy = Literal["keep", "replace", "reject"]


class Writer(Protocol):
    relative: str
    size: int
    digest: str

    async def write(self, fragment: memoryview) -> None: ...
    async def finish_and_place(self) -> bool: ...
    async def place(self, *, replace: bool = False) -> str: ...
    async def unplace(self) -> None: ...
    def release(self) -> object: ...
    async def discard(self) -> None: ...


class Files(Protocol):
    def begin(self, sop_instance_uid: str, file_meta: bytes) -> Writer: ...
    async def remove(self, relative: str) -> None: ...
    async def missing(self, relative: str) -> bool: ...
    async def remove_other_versions(self, sop_instance_uid: str, keep: str) -> None: ...


class Held(Protocol):
    """An instance the index already holds."""

    @property
    def digest(self) -> str: ...
    @property
    def path(self) -> str: ...


class Index(Protocol):
    async def add(self, item: StoredInstance) -> None: ...
    async def replace(self, item: StoredInstance) -> Held | None: ...
    async def instance(self, sop_instance_uid: str) -> Held | None: ...
    def check_writable(self) -> None: ...


class Outcome(msgspec.Struct, frozen=True):
    status: int
    comment: str = ""
    #: The tag at fault, for the response's Offending Element (0000,0901).
    offending: int | None = None
    #: A Success that wrote nothing: the UID is held with the same content
    #: ("identical"), or with other content that ``keep`` kept ("kept");
    #: ``archive import`` counts them apart.
    held: Literal["", "identical", "kept"] = ""


#: Success with this C-STORE's file indexed (new, or a replacement): its part file
#: is kept. Compared by identity.
STORED = Outcome(Status.SUCCESS)


class Ingest:
    """Durable ingest of instances into the file store and the index."""

    def __init__(
        self,
        files: Files,
        index: Index,
        *,
        duplicates: DuplicatePolicy = "keep",
    ) -> None:
        self.files = files
        self.index = index
        self.duplicates = duplicates
        #: One per SOP Instance UID being committed: its stores take turns.
        self._claims: dict[str, _Claim] = {}

    async def ingest(
        self,
        *,
        sop_class_uid: str,
        sop_instance_uid: str,
        transfer_syntax: str,
        source_ae: str,
        fragments: AsyncIterator[memoryview],
    ) -> Outcome:
        """Store one instance from its data set fragments; the status to answer."""
        opened = _open(sop_class_uid, sop_instance_uid, transfer_syntax, source_ae)
        if isinstance(opened, Outcome):
            await _drain(fragments)
            return _refused(sop_instance_uid, opened)
        header, meta = opened
        # A usable UID names a file (the store's own check in begin() passes).
        writer = self.files.begin(sop_instance_uid, meta)
        placed = False
        try:
            async for fragment in fragments:
                header.feed(fragment)
                await writer.write(fragment)
            attrs = header.finish()
            check_store_request(attrs, sop_class_uid, sop_instance_uid)
            # From here the index may commit the row whatever becomes of this task
            # (the writer does not withdraw a queued add): the commit runs to its
            # end even if the association goes, so that its file is kept with
            # its row, and the cancellation is passed on after.
            commit = asyncio.ensure_future(self._commit(writer, attrs, transfer_syntax, source_ae))
            try:
                outcome = await asyncio.shield(commit)
            except asyncio.CancelledError:
                while not commit.done():  # bounded: the writer answers every add
                    with contextlib.suppress(asyncio.CancelledError):
                        await asyncio.wait({commit})
                error = None if commit.cancelled() else commit.exception()
                if error is not None:
                    log.error("instance %s not stored: %s", sop_instance_uid, error)
                placed = not commit.cancelled() and error is None and commit.result() is STORED
                raise
            placed = outcome is STORED
            return outcome
        except HeaderError as exc:
            await _drain(fragments)
            return _refused(sop_instance_uid, Outcome(exc.status, str(exc), exc.offending))
        except ArchiveError as exc:
            if isinstance(exc, DatasetInterrupted):
                raise
            log.error("instance %s not stored: %s", sop_instance_uid, exc)
            return Outcome(Status.OUT_OF_RESOURCES, str(exc))
        finally:
            if not placed:
                await writer.discard()

    async def _commit(
        self,
        writer: Writer,
        attrs: InstanceAttributes,
        transfer_syntax: str,
        source_ae: str,
    ) -> Outcome:
        uid = attrs.sop_instance_uid
        claim = self._claims.get(uid)
        if claim is None:
            claim = self._claims[uid] = _Claim()
        claim.users += 1
        try:
            async with claim.lock:
                # Optimistic: most instances are new. Write the tail, link and
                # flush in one trip to the I/O pool and add the row; only when
                # either finds the UID taken do the duplicate rules run.
                try:
                    placed = await writer.finish_and_place()
                except StoreError as exc:
                    if not exc.no_space:
                        raise
                    return await self._without_space(writer, uid, exc)
                if placed:
                    try:
                        await self.index.add(self._item(writer, attrs, transfer_syntax, source_ae))
                    except DuplicateInstanceError:
                        await writer.unplace()  # held, as a replacement, elsewhere
                    else:
                        writer.release()
                        return STORED
                return await self._duplicate(writer, attrs, transfer_syntax, source_ae)
        finally:
            # The entry goes with its last user: one free but with a waiter
            # about to take it must stay, or a store arriving meanwhile would
            # make a lock of its own and run beside that waiter.
            claim.users -= 1
            if not claim.users:
                del self._claims[uid]

    async def _duplicate(
        self,
        writer: Writer,
        attrs: InstanceAttributes,
        transfer_syntax: str,
        source_ae: str,
    ) -> Outcome:
        """The UID is taken (or its first place is): PS3.4-minded duplicate rules."""
        uid = attrs.sop_instance_uid
        held = await self.index.instance(uid)
        if held is not None:
            answer = await self._answer_held(uid, held, writer.digest)
            if answer is not None:
                return answer
        # A replacement, or a file nobody indexed at the first place (debris of
        # an older failure): either way the new version goes beside it, and the
        # other versions go once the index points at the new one.
        path = await writer.place(replace=True)
        item = self._item(writer, attrs, transfer_syntax, source_ae)
        if held is not None:
            await self.index.replace(item)
        else:
            await self.index.add(item)
        # Before the marker goes: should this not complete, recovery finishes it.
        try:
            await self.files.remove_other_versions(uid, keep=path)
        except (OSError, ArchiveError) as exc:
            # The index names the new version: it is stored, and must not be
            # discarded. The marker stays, so the next start removes the rest.
            log.warning("instance %s replaced; an earlier version is left: %s", uid, exc)
            return STORED
        writer.release()
        return STORED

    async def _answer_held(self, uid: str, held: Held, digest: str) -> Outcome | None:
        """The duplicate rules' answer for content ``digest`` of an instance the
        index holds; None if this copy is to be stored (a replacement, or the
        held file is missing)."""
        # Success on what a reader sees is safe: a row is visible from its
        # commit, before the flush of its batch (flush = "batch"), but the
        # store that added it holds this UID's lock until its batch is flushed.
        # Unless that flush failed: then nothing is acknowledged any more.
        self.index.check_writable()
        if await self.files.missing(held.path):
            # The index holds nothing but a row (a file deleted by hand, lost
            # with a disk): whatever the policy, this copy is to be stored in
            # its place. Resending is how a modality repairs a missing image.
            log.warning("instance %s: its stored file is missing; storing this copy", uid)
            return None
        if held.digest == digest:
            return _IDENTICAL
        if self.duplicates == "keep":
            log.warning("instance %s already held with other content: kept", uid)
            return _KEPT
        if self.duplicates == "reject":
            return _refused(
                uid,
                Outcome(
                    Status.DUPLICATE_SOP_INSTANCE,
                    "SOP Instance UID already held with other content",
                ),
            )
        return None

    async def _without_space(self, writer: Writer, uid: str, error: StoreError) -> Outcome:
        """The disk filled up under this store, yet all of it was received and
        hashed (``archive/store/writer.py``, "Disk full"): an instance held
        already is answered as the duplicate rules answer it when they need no
        new file (identical content; other content under ``keep`` or
        ``reject``), so that a modality's retries of what the archive holds do
        not stay stuck while the disk is full. Anything else: ``error`` (0xA700)."""
        held = await self.index.instance(uid)
        answer = None if held is None else await self._answer_held(uid, held, writer.digest)
        if answer is None:
            raise error
        return answer

    @staticmethod
    def _item(
        writer: Writer, attrs: InstanceAttributes, transfer_syntax: str, source_ae: str
    ) -> StoredInstance:
        return StoredInstance(
            attrs=attrs,
            path=writer.relative,
            size=writer.size,
            digest=writer.digest,
            transfer_syntax_uid=transfer_syntax,
            source_ae=source_ae,
            received_at=time.time(),
        )


def _open(
    sop_class_uid: str, sop_instance_uid: str, transfer_syntax: str, source_ae: str
) -> tuple[HeaderReader, bytes] | Outcome:
    """The header reader and the File Meta of a store, or why it is refused before
    anything is written.

    An Affected SOP Instance UID that breaks the construction rules (PS3.5 9.1)
    gets 0117 Invalid SOP Instance (PS3.7 C.5). The rest cannot fail for a
    C-STORE (the association negotiated the class and transfer syntax, and
    checked the AE titles), but can for ``archive import``, which takes them from
    a file's File Meta: 0122 for a class that is no UID, C000 for a transfer
    syntax the reader does not know or values that are not ASCII.
    """
    if not usable_uid(sop_instance_uid):
        return Outcome(
            Status.INVALID_OBJECT_INSTANCE, "Affected SOP Instance UID is not a valid UID"
        )
    if not usable_uid(sop_class_uid):
        return Outcome(Status.SOP_CLASS_NOT_SUPPORTED, "SOP Class UID is not a valid UID")
    try:
        header = HeaderReader(transfer_syntax)
        meta = FileMeta(
            media_storage_sop_class_uid=sop_class_uid,
            media_storage_sop_instance_uid=sop_instance_uid,
            transfer_syntax_uid=transfer_syntax,
            source_application_entity_title=source_ae,
        )
        return header, encode_file_meta(meta)
    except HeaderError as exc:
        return Outcome(exc.status, str(exc), exc.offending)
    except UnicodeEncodeError:
        return Outcome(Status.CANNOT_UNDERSTAND, "File Meta values are not ASCII")


class _Claim:
    """The lock of one SOP Instance UID, and how many stores hold or await it."""

    __slots__ = ("lock", "users")

    def __init__(self) -> None:
        self.lock = asyncio.Lock()
        self.users = 0


#: Duplicates that need no new file: answered Success, the part file discarded.
_IDENTICAL = Outcome(Status.SUCCESS, held="identical")
_KEPT = Outcome(Status.SUCCESS, held="kept")


def _refused(sop_instance_uid: str, outcome: Outcome) -> Outcome:
    """Log a store refused for what was sent (not for want of resources), and
    return its outcome: the SCU's operator has the status, the node's the why."""
    log.warning(
        "instance %s refused, status 0x%04X: %s",
        shown_uid(sop_instance_uid),
        outcome.status,
        outcome.comment,
    )
    return outcome


async def _drain(fragments: AsyncIterator[memoryview]) -> None:
    """Consume the rest of a data set we will not store (the peer still sends it)."""
    async for _ in fragments:
        pass


def c_store_provider(ingest: Ingest) -> Provider:
    """The C-STORE provider bound to ``ingest`` (an async generator function)."""

    async def c_store(request: Request) -> AsyncIterator[Response]:
        command = request.command
        assert isinstance(command, CStoreRq)
        if request.dataset is None:
            # Command Data Set Type (0000,0800) said none: PS3.7 9.3.1.1 requires one.
            outcome = _refused(
                command.affected_sop_instance_uid,
                Outcome(Status.CANNOT_UNDERSTAND, "C-STORE-RQ without a data set"),
            )
        else:
            outcome = await ingest.ingest(
                sop_class_uid=command.affected_sop_class_uid,
                sop_instance_uid=command.affected_sop_instance_uid,
                transfer_syntax=request.transfer_syntax,
                source_ae=request.calling_ae,
                fragments=request.dataset,
            )
        yield Response(
            CStoreRsp(
                message_id_being_responded_to=command.message_id,
                affected_sop_class_uid=command.affected_sop_class_uid,
                affected_sop_instance_uid=command.affected_sop_instance_uid,
                status=outcome.status,
                offending_element=None if outcome.offending is None else (outcome.offending,),
                error_comment=outcome.comment[:64] if outcome.comment else None,
            )
        )

    return c_store
