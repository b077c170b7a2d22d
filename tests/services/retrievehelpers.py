"""Fakes and readers shared by the retrieve service tests (archive/services/retrieve.py).

Accepted presentation contexts, a fake ``InstanceFiles`` over a folder, a fake
channel (a peer's association as a ``StoreTarget``) whose C-STORE answers are
chosen per instance, C-GET/C-MOVE requests, an index of the stored corpus, and
readers of the final responses' counts and Failed SOP Instance UID List. Used by
``test_retrieve_service``, ``test_retrieve_get`` and ``test_retrieve_move``;
holds no tests itself.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

from archive.dicom.dataset import Element, decode_dataset, encode_dataset
from archive.dicom.dimse import CGetRq, CGetRsp, CMoveRq, CMoveRsp, CStoreRq, CStoreRsp
from archive.index import Index, StoredInstance
from archive.services.base import Cancel, Request, Response, SubAssociationError
from archive.services.retrieve import FAILED_SOP_INSTANCE_UID_LIST

T = TypeVar("T")

ELE = "1.2.840.10008.1.2.1"
ILE = "1.2.840.10008.1.2"


@dataclass(frozen=True)
class Context:
    id: int
    abstract_syntax: str
    transfer_syntax: str


class Files:
    """InstanceFiles over a folder; ``run`` calls in place (the test owns the loop)."""

    def __init__(self, root: Path, *, local: bool = True) -> None:
        self.root = root
        self.local = local

    def path(self, relative: str) -> Path:
        return self.root / relative

    async def run(self, fn: Callable[..., T], *args: object) -> T:
        return fn(*args)


@dataclass
class Channel:
    """The caller's association as a StoreTarget: answers per SOP Instance UID."""

    contexts: Sequence[Context]
    answers: dict[str, int] = field(default_factory=dict)
    #: Error Comment (0000,0902) of the answer, per SOP Instance UID.
    comments: dict[str, str] = field(default_factory=dict)
    received: dict[str, bytes] = field(default_factory=dict)
    commands: list[tuple[int, CStoreRq]] = field(default_factory=list)
    last_id: int = 0
    #: Set after this many stores: the caller's C-CANCEL-RQ arriving mid-retrieve.
    cancel: Cancel | None = None
    cancel_after: int | None = None
    #: The negotiated asynchronous operations window, and the most seen in flight.
    window: int = 1
    in_flight: int = 0
    most_in_flight: int = 0
    #: After this many stores the association fails (C-MOVE: the peer aborts),
    #: ``abort_stall`` seconds into the next one.
    abort_after: int | None = None
    abort_stall: float = 0.0
    #: How long the peer takes to store each instance.
    store_seconds: float = 0.01
    #: Sub-operations begun once the cancel had been set (none should be).
    begun_after_cancel: list[str] = field(default_factory=list)

    def store_contexts(self) -> Sequence[Context]:
        return self.contexts

    def next_message_id(self) -> int:
        self.last_id += 1
        return self.last_id

    async def store(
        self, context_id: int, command: CStoreRq, chunks: AsyncIterator[bytes | memoryview]
    ) -> CStoreRsp:
        if len(self.received) == self.abort_after:
            await asyncio.sleep(self.abort_stall)
            raise SubAssociationError("the peer aborted")
        if self.cancel is not None and self.cancel.requested:
            self.begun_after_cancel.append(command.affected_sop_instance_uid)
        self.in_flight += 1
        self.most_in_flight = max(self.most_in_flight, self.in_flight)
        data = b"".join([bytes(c) async for c in chunks])
        await asyncio.sleep(self.store_seconds)  # the peer storing it
        self.in_flight -= 1
        uid = command.affected_sop_instance_uid
        self.commands.append((context_id, command))
        self.received[uid] = data
        if self.cancel is not None and len(self.received) == self.cancel_after:
            self.cancel.set()
        return CStoreRsp(
            message_id_being_responded_to=command.message_id,
            status=self.answers.get(uid, 0x0000),
            affected_sop_class_uid=command.affected_sop_class_uid,
            affected_sop_instance_uid=uid,
            error_comment=self.comments.get(uid),
        )


def retrieve_request(command: CGetRq | CMoveRq, level: str, uid: str, **extra: object) -> Request:
    tag = 0x0020000D if level == "STUDY" else 0x0020000E
    data = encode_dataset(
        [Element(0x00080052, "CS", level.encode()), Element(tag, "UI", uid.encode())], ELE
    )
    return Request(
        command=command,
        context_id=1,
        abstract_syntax=command.affected_sop_class_uid,
        transfer_syntax=ELE,
        calling_ae="GETSCU",
        called_ae="ARCHIVE",
        peer_host="127.0.0.1",
        identifier=data,
        **extra,  # type: ignore[arg-type]
    )


@contextlib.asynccontextmanager
async def indexed(tmp_path: Path, stored: list[StoredInstance]) -> AsyncIterator[Index]:
    """An index of ``stored`` (the corpus), closed on the way out."""
    async with await Index.open(tmp_path / "index.sqlite", durability="fast") as index:
        for item in stored:
            await index.add(item)
        yield index


def counts(response: Response) -> tuple[int, int | None, int | None, int | None, int | None]:
    c = response.command
    assert isinstance(c, CGetRsp | CMoveRsp)
    return (
        c.status,
        c.number_of_remaining_suboperations,
        c.number_of_completed_suboperations,
        c.number_of_failed_suboperations,
        c.number_of_warning_suboperations,
    )


def failed_uids(response: Response) -> list[str]:
    assert response.dataset is not None
    elements = decode_dataset(response.dataset, ELE)
    assert [e.tag for e in elements] == [FAILED_SOP_INSTANCE_UID_LIST]
    value = elements[0].value
    assert isinstance(value, bytes)
    return value.rstrip(b"\0").decode().split("\\")
