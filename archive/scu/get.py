"""``archive get``: the C-GET SCU (PS3.4 C.4.3), writing each instance to a folder.

Theory of operation. The storage sub-operations arrive on our own association,
so storage contexts are proposed with the SCP role (PS3.7 D.3.3.4): one context
per SOP class of :data:`GET_SOP_CLASSES` (plus any asked for with
``--sop-class``), each offering every transfer syntax of
:data:`GET_TRANSFER_SYNTAXES`. The peer accepts one transfer syntax per class, so
it can send an instance only if it holds it in that syntax or can transcode;
``--transfer-syntax`` narrows or reorders the offer. One context per (class,
syntax) pair would cover more, but 128 contexts (PS3.8 9.3.2.2) would then allow
about ten classes. Each instance is streamed to ``.<uid>.<token>.part`` beside
its final name and renamed to ``<uid>.dcm`` once whole, never held in memory:
Part 10 with the File Meta built from the C-STORE-RQ and the context's transfer
syntax, followed by the data set exactly as received (as the node stores it).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import threading
from collections.abc import AsyncIterator, Callable, Sequence
from pathlib import Path
from typing import IO

from archive.dicom.dataset import Element
from archive.dicom.dimse import CGetRsp, CStoreRq, Status
from archive.dicom.filemeta import FileMeta, encode_file_meta
from archive.dicom.query_keys import QueryModel
from archive.dicom.uids import NATIVE_TRANSFER_SYNTAXES
from archive.dicom.ul.pdu import RoleSelection
from archive.scu.query import (
    QR_TRANSFER_SYNTAXES,
    SOP_CLASSES,
    Interrupt,
    QueryOptions,
    RetrieveResult,
    open_association,
    retrieve_on,
)
from archive.store import safe_uid

log = logging.getLogger("archive.scu.get")

#: Bytes of a received instance gathered before each trip to a writer thread.
WRITE_BATCH = 1 << 20
#: Sub-operations we let a C-GET SCP send before their responses (we answer in
#: order as each is written); an SCP without asynchronous operations sends one.
GET_WINDOW = 8

#: Storage SOP classes proposed for C-GET: the common image, SR, RT, presentation
#: state and document classes, well under the 128-context limit (PS3.8 9.3.2.2)
#: so that ``--sop-class`` can add more.
GET_SOP_CLASSES: tuple[str, ...] = tuple(
    "1.2.840.10008.5.1.4.1.1." + suffix
    for suffix in (
        "1",  # CR
        "1.1",  # DX for presentation
        "1.1.1",  # DX for processing
        "1.2",  # MG for presentation
        "1.2.1",  # MG for processing
        "1.3",  # intra-oral X-ray for presentation
        "2",  # CT
        "2.1",  # Enhanced CT
        "3.1",  # US multi-frame
        "4",  # MR
        "4.1",  # Enhanced MR
        "6.1",  # US
        "7",  # Secondary Capture
        "7.1",  # multi-frame single-bit SC
        "7.2",  # multi-frame grayscale byte SC
        "7.3",  # multi-frame grayscale word SC
        "7.4",  # multi-frame true color SC
        "11.1",  # Grayscale Softcopy Presentation State
        "12.1",  # XA
        "12.1.1",  # Enhanced XA
        "12.2",  # RF
        "13.1.3",  # Breast Tomosynthesis
        "20",  # NM
        "66",  # Raw Data
        "66.1",  # Spatial Registration
        "66.4",  # Segmentation
        "77.1.1.1",  # Video Endoscopic
        "77.1.4",  # VL Photographic
        "77.1.5.1",  # Ophthalmic Photography 8 bit
        "88.11",  # Basic Text SR
        "88.22",  # Enhanced SR
        "88.33",  # Comprehensive SR
        "88.59",  # Key Object Selection
        "88.67",  # X-Ray Radiation Dose SR
        "104.1",  # Encapsulated PDF
        "128",  # PET
        "130",  # Enhanced PET
        "481.1",  # RT Image
        "481.2",  # RT Dose
        "481.3",  # RT Structure Set
        "481.5",  # RT Plan
        "481.8",  # RT Ion Plan
    )
)
#: Transfer syntaxes offered in each C-GET storage context: the native ones, then
#: the compressed ones archives commonly hold (PS3.5 A.4), lossless first.
GET_TRANSFER_SYNTAXES: tuple[str, ...] = (
    *NATIVE_TRANSFER_SYNTAXES,
    "1.2.840.10008.1.2.4.70",  # JPEG Lossless SV1
    "1.2.840.10008.1.2.4.57",  # JPEG Lossless
    "1.2.840.10008.1.2.4.80",  # JPEG-LS Lossless
    "1.2.840.10008.1.2.4.90",  # JPEG 2000 Lossless
    "1.2.840.10008.1.2.5",  # RLE Lossless
    "1.2.840.10008.1.2.4.50",  # JPEG Baseline
    "1.2.840.10008.1.2.4.51",  # JPEG Extended
    "1.2.840.10008.1.2.4.81",  # JPEG-LS Near-Lossless
    "1.2.840.10008.1.2.4.91",  # JPEG 2000
)


def get_contexts(
    model: QueryModel,
    sop_classes: Sequence[str] = (),
    transfer_syntaxes: Sequence[str] = GET_TRANSFER_SYNTAXES,
) -> tuple[list[tuple[str, list[str]]], list[RoleSelection]]:
    """The C-GET context, one storage context per class, and the SCP role for each."""
    classes = list(dict.fromkeys([*GET_SOP_CLASSES, *sop_classes]))
    contexts = [(SOP_CLASSES[model][2], list(QR_TRANSFER_SYNTAXES))]
    contexts += [(uid, list(transfer_syntaxes)) for uid in classes]
    roles = [RoleSelection(uid, scu_role=False, scp_role=True) for uid in classes]
    return contexts, roles


class _PartFile:
    """One received instance on its way to ``<uid>.dcm``; blocking methods run in a thread.

    The file is created by the first write. A lock orders the methods: a
    :meth:`discard` waits for a write still running in its thread (one whose
    awaiting task was cancelled), and a write that starts after it does nothing,
    so no ``.part`` file or descriptor outlives a failed instance.
    """

    def __init__(self, folder: Path, uid: str) -> None:
        self.final = folder / f"{uid}.dcm"
        self.temp = folder / f".{uid}.{secrets.token_hex(4)}.part"
        self.file: IO[bytes] | None = None
        self._lock = threading.Lock()
        self._discarded = False

    def write(self, chunks: Sequence[bytes | memoryview]) -> None:
        with self._lock:
            self._write(chunks)

    def _write(self, chunks: Sequence[bytes | memoryview]) -> None:
        if self._discarded:
            return
        if self.file is None:
            self.file = self.temp.open("xb")
        self.file.writelines(chunks)

    def finish(self, chunks: Sequence[bytes | memoryview]) -> None:
        with self._lock:
            self._write(chunks)
            if self._discarded:
                return
            assert self.file is not None
            self.file.close()
            os.replace(self.temp, self.final)

    def discard(self) -> None:
        with self._lock:
            self._discarded = True
            # Best effort: the error being handled is the one worth reporting.
            with contextlib.suppress(OSError):
                if self.file is not None:
                    self.file.close()
                self.temp.unlink(missing_ok=True)


async def save_instance(
    folder: Path,
    request: CStoreRq,
    transfer_syntax: str,
    fragments: AsyncIterator[memoryview],
    *,
    source_ae: str = "",
) -> Path:
    """Stream one C-STORE data set to ``folder/<SOPInstanceUID>.dcm`` (Part 10).

    Written to a temporary name and renamed once whole: a reader never sees half a
    file. Raises OSError when the disk says no, ValueError for a SOP Instance UID
    that cannot be a file name.
    """
    uid = request.affected_sop_instance_uid
    if not safe_uid(uid):
        raise ValueError(f"SOP Instance UID {uid!r} is not usable as a file name")
    head = encode_file_meta(
        FileMeta(
            media_storage_sop_class_uid=request.affected_sop_class_uid,
            media_storage_sop_instance_uid=uid,
            transfer_syntax_uid=transfer_syntax,
            source_application_entity_title=source_ae,
        )
    )
    part = _PartFile(folder, uid)
    # The File Meta leads the first batch: an instance under WRITE_BATCH costs
    # one trip to a thread (create, write, close, rename).
    batch: list[bytes | memoryview] = [head]
    size = len(head)
    started = False
    try:
        async for fragment in fragments:
            # Fragments are views of received PDUs, which are never mutated.
            batch.append(fragment)
            size += len(fragment)
            if size >= WRITE_BATCH:
                started = True
                await asyncio.to_thread(part.write, batch)
                batch, size = [], 0
        started = True
        await asyncio.to_thread(part.finish, batch)
    except BaseException:
        if started:
            # In a thread, as a cancelled to_thread() may still be writing there;
            # shielded, so that a second cancellation does not leave the file.
            await asyncio.shield(asyncio.to_thread(part.discard))
        raise
    return part.final


async def get_instances(
    options: QueryOptions,
    identifier: Sequence[Element],
    folder: Path,
    *,
    sop_classes: Sequence[str] = (),
    transfer_syntaxes: Sequence[str] = GET_TRANSFER_SYNTAXES,
    on_progress: Callable[[RetrieveResult], None] | None = None,
    interrupt: Interrupt | None = None,
    timeout: float | None = None,
) -> RetrieveResult:
    """C-GET (PS3.4 C.4.3): each instance is written to ``folder`` as it arrives.

    Each sub-operation is answered Success (0x0000), or Out of Resources (0xA700)
    when the file could not be written. One of another class than its context's
    (0x0122) or whose SOP Instance UID is none (0x0117) the association refuses
    before it gets here (``archive.net.client``), so every UID here names a file.
    """
    contexts, roles = get_contexts(options.model, sop_classes, transfer_syntaxes)
    sop_class = contexts[0][0]
    result = RetrieveResult()
    await asyncio.to_thread(folder.mkdir, parents=True, exist_ok=True)

    async def on_store(
        request: CStoreRq, transfer_syntax: str, fragments: AsyncIterator[memoryview]
    ) -> int:
        try:
            await save_instance(
                folder, request, transfer_syntax, fragments, source_ae=options.called_ae
            )
        except OSError as exc:
            log.warning("cannot write %s: %s", request.affected_sop_instance_uid, exc)
            return int(Status.OUT_OF_RESOURCES)
        result.written += 1
        if on_progress is not None:  # a file written is progress, before any response says so
            on_progress(result)
        return int(Status.SUCCESS)

    # Sub-operations may come GET_WINDOW at a time if the peer can (PS3.7 D.3.3.3).
    async with await open_association(
        options, contexts, roles, (1, GET_WINDOW), interrupt=interrupt
    ) as assoc:

        def responses(context_id: int, data: bytes) -> AsyncIterator[tuple[CGetRsp, bytes | None]]:
            return assoc.get(context_id, data, on_store, timeout=timeout)

        return await retrieve_on(
            assoc, sop_class, identifier, responses, result, on_progress, interrupt
        )
