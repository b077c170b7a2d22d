"""C-MOVE / C-GET policy (archive/services/retrieve.py) without a network.

``Counts`` (PS3.4 C.4.2.1.4 / C.4.3.1.4 final statuses), ``proposals`` (the
contexts a C-MOVE sub-association offers), ``convert`` (the transcoding seam),
the C-GET provider with a real index, real stored files and a fake channel
(the caller's association) whose C-STORE answers are chosen per instance, and the
C-MOVE provider with fake connectors (``Connect``) in place of the driver's SCU.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import struct
import threading
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

import msgspec
import pytest

from archive.dicom.dataset import Element, decode_dataset, encode_dataset
from archive.dicom.dimse import CGetRq, CGetRsp, CMoveRq, CMoveRsp, CStoreRq, CStoreRsp
from archive.index import Index, InstanceRow, StoredInstance
from archive.services import retrieve
from archive.services.base import Cancel, Request, Response, StoreTarget, SubAssociationError
from archive.services.retrieve import (
    FAILED_SOP_INSTANCE_UID_LIST,
    Connect,
    Counts,
    FileSource,
    MoveSettings,
    NotConvertible,
    Retriever,
    c_get_provider,
    c_move_provider,
    convert,
    proposals,
)
from archive.store import DatasetReader, scan_file
from tests.index import run
from tests.interop.qrhelpers import CT_IMAGE, MR_IMAGE, STUDY_ROOT_GET, build_corpus
from tests.interop.storehelpers import split_part10

T = TypeVar("T")

ELE = "1.2.840.10008.1.2.1"
ILE = "1.2.840.10008.1.2"
EBE = "1.2.840.10008.1.2.2"
DEFLATED = "1.2.840.10008.1.2.1.99"
RLE = "1.2.840.10008.1.2.5"
STUDY_ROOT_MOVE = "1.2.840.10008.5.1.4.1.2.2.2"


# ---- Counts ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("completed", "failed", "warning", "cancelled", "status"),
    [
        (3, 0, 0, False, 0x0000),
        (0, 0, 0, False, 0x0000),  # nothing selected: success, no sub-operations
        (2, 1, 0, False, 0xB000),
        (0, 1, 1, False, 0xB000),
        (2, 0, 1, False, 0xB000),
        (0, 3, 0, False, 0xA702),
        (1, 0, 0, True, 0xFE00),
        (0, 2, 0, True, 0xFE00),
    ],
)
def test_final_status_table(
    completed: int, failed: int, warning: int, cancelled: bool, status: int
) -> None:
    counts = Counts(remaining=0, completed=completed, failed=failed, warning=warning)
    assert counts.final_status(cancelled) == status


def test_record_sorts_statuses_into_counts() -> None:
    counts = Counts(remaining=5)
    counts.record("1.1", 0x0000)
    counts.record("1.2", 0xB000)  # C-STORE warning: coercion of data elements
    counts.record("1.3", 0xA700)
    counts.record("1.4", None)  # not sent at all
    assert (counts.remaining, counts.completed, counts.warning, counts.failed) == (1, 1, 1, 2)
    assert counts.failed_uids == ["1.3", "1.4"]


# ---- proposals / convert -------------------------------------------------------------------


def row(uid: str, sop_class: str = CT_IMAGE, ts: str = ELE) -> InstanceRow:
    return InstanceRow(uid, "1.2", "1.2.1", sop_class, f"i/{uid}.dcm", 1, "0" * 64, ts)


def test_proposals_one_context_per_class_and_stored_syntax() -> None:
    rows = [
        row("1", CT_IMAGE, ELE),
        row("2", CT_IMAGE, ELE),
        row("3", CT_IMAGE, ILE),
        row("4", MR_IMAGE, RLE),
        row("5", MR_IMAGE, EBE),
        row("6", MR_IMAGE, DEFLATED),
    ]
    # Each stored syntax alone: offered beside another native one, the acceptor
    # may pick the one we cannot send (DCMTK, pynetdicom and Orthanc take Explicit).
    # Then one Explicit/Implicit LE context per class with native data, for the
    # transcoder to come (issue 4: "and Explicit VR LE / Implicit VR LE for
    # uncompressed data").
    assert proposals(rows) == [
        (CT_IMAGE, [ELE]),
        (CT_IMAGE, [ILE]),
        (MR_IMAGE, [RLE]),
        (MR_IMAGE, [EBE]),
        (MR_IMAGE, [DEFLATED]),
        (CT_IMAGE, [ELE, ILE]),
        (MR_IMAGE, [ELE, ILE]),
    ]


def test_proposals_capped_at_128_contexts() -> None:
    rows = [row(str(n), f"1.2.3.{n}") for n in range(200)]
    contexts = proposals(rows)
    assert len(contexts) == 128
    assert [c[0] for c in contexts] == [f"1.2.3.{n}" for n in range(128)]


@dataclass(frozen=True)
class Context:
    id: int
    abstract_syntax: str
    transfer_syntax: str


def test_convert_picks_the_context_of_the_stored_syntax() -> None:
    contexts = [Context(1, CT_IMAGE, ILE), Context(3, CT_IMAGE, ELE), Context(5, MR_IMAGE, ELE)]
    context, filtered = convert(row("1", CT_IMAGE, ELE), contexts)
    assert context == contexts[1]

    async def chunks() -> AsyncIterator[memoryview]:
        yield memoryview(b"abc")

    source = chunks()
    assert filtered(source) is source  # the identity filter: no transcoding yet


def test_convert_without_a_context_for_the_class() -> None:
    with pytest.raises(NotConvertible) as info:
        convert(row("1", MR_IMAGE, ELE), [Context(1, CT_IMAGE, ELE)])
    assert str(info.value) == f"the destination accepted no context for SOP class {MR_IMAGE}"
    assert info.value.code == "retrieve.transfer_syntax"


def test_convert_without_the_stored_syntax() -> None:
    with pytest.raises(NotConvertible) as info:
        convert(row("1", CT_IMAGE, RLE), [Context(1, CT_IMAGE, ELE), Context(3, CT_IMAGE, ILE)])
    assert str(info.value) == (
        f"the destination does not accept transfer syntax {RLE} for SOP class {CT_IMAGE} "
        "(no transcoding yet)"
    )


# ---- the C-GET provider -----------------------------------------------------------------


class Files:
    """InstanceFiles over a folder; ``run`` calls in place (the test owns the loop)."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def path(self, relative: str) -> Path:
        return self.root / relative

    async def run(self, fn: Callable[..., T], *args: object) -> T:
        return fn(*args)


@dataclass
class Channel:
    """The caller's association as a StoreTarget: answers per SOP Instance UID."""

    contexts: Sequence[Context]
    answers: dict[str, int] = field(default_factory=dict)
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
    #: After this many stores the association fails (C-MOVE: the peer aborts).
    abort_after: int | None = None

    def store_contexts(self) -> Sequence[Context]:
        return self.contexts

    def next_message_id(self) -> int:
        self.last_id += 1
        return self.last_id

    async def store(
        self, context_id: int, command: CStoreRq, chunks: AsyncIterator[bytes | memoryview]
    ) -> CStoreRsp:
        if len(self.received) == self.abort_after:
            raise SubAssociationError("the peer aborted")
        self.in_flight += 1
        self.most_in_flight = max(self.most_in_flight, self.in_flight)
        data = b"".join([bytes(c) async for c in chunks])
        await asyncio.sleep(0.01)  # the peer storing it
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
        )


@pytest.fixture(scope="module")
def corpus_files(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[StoredInstance]]:
    """Study A1 of the Q/R corpus (3 Explicit + 2 Implicit VR LE CT) as stored files."""
    root = tmp_path_factory.mktemp("store")
    corpus = build_corpus(root / "i")
    stored = []
    for instance in corpus.of_study("A1"):
        scanned = scan_file(instance.path)
        stored.append(
            StoredInstance(
                attrs=scanned.attrs,
                path=str(instance.path.relative_to(root)),
                size=scanned.size,
                digest=scanned.digest,
                transfer_syntax_uid=scanned.meta.transfer_syntax_uid,
                source_ae="TEST",
                received_at=0.0,
            )
        )
    return root, stored


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


def get(
    corpus_files: tuple[Path, list[StoredInstance]],
    tmp_path: Path,
    channel: Channel,
    *,
    level: str = "STUDY",
    uid: str | None = None,
    cancel_after: int | None = None,
) -> list[Response]:
    """The C-GET provider's responses; ``cancel_after`` stores, the caller cancels."""
    root, stored = corpus_files

    async def go() -> list[Response]:
        async with indexed(tmp_path, stored) as index:
            cancel = Cancel()
            channel.cancel, channel.cancel_after = cancel, cancel_after
            command = CGetRq(message_id=3, affected_sop_class_uid=STUDY_ROOT_GET)
            req = retrieve_request(
                command,
                level,
                uid or stored[0].attrs.study_instance_uid,
                channel=channel,
                cancel=cancel,
            )
            return [r async for r in c_get_provider(index, Files(root))(req)]

    return run(go())


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


def test_get_all_completed_bytes_as_stored(
    corpus_files: tuple[Path, list[StoredInstance]], tmp_path: Path
) -> None:
    root, stored = corpus_files
    channel = Channel([Context(1, CT_IMAGE, ELE), Context(3, CT_IMAGE, ILE)])
    responses = get(corpus_files, tmp_path, channel)
    assert counts(responses[-1]) == (0x0000, None, 5, 0, 0)
    assert responses[-1].dataset is None
    for item in stored:
        data = split_part10((root / item.path).read_bytes())[1]
        assert channel.received[item.attrs.sop_instance_uid] == data
    # Each instance went on the context of its own transfer syntax.
    by_uid = {c.affected_sop_instance_uid: cx for cx, c in channel.commands}
    for item in stored:
        assert by_uid[item.attrs.sop_instance_uid] == (1 if item.transfer_syntax_uid == ELE else 3)
    assert [c.message_id for _, c in channel.commands] == [1, 2, 3, 4, 5]
    assert all(c.move_originator_ae is None for _, c in channel.commands)


@pytest.mark.parametrize("window", [2, 3, 8])
def test_get_with_an_asynchronous_operations_window(
    corpus_files: tuple[Path, list[StoredInstance]], tmp_path: Path, window: int
) -> None:
    """With a window agreed, sub-operations overlap, never more than the window (each
    worker also holds the next instance read ahead, so five instances keep at most
    three busy); each instance goes exactly once."""
    root, stored = corpus_files
    channel = Channel([Context(1, CT_IMAGE, ELE), Context(3, CT_IMAGE, ILE)], window=window)
    responses = get(corpus_files, tmp_path, channel)
    assert counts(responses[-1]) == (0x0000, None, 5, 0, 0)
    assert 2 <= channel.most_in_flight <= window
    assert sorted(c.affected_sop_instance_uid for _, c in channel.commands) == sorted(
        s.attrs.sop_instance_uid for s in stored
    )
    for item in stored:
        data = split_part10((root / item.path).read_bytes())[1]
        assert channel.received[item.attrs.sop_instance_uid] == data
    assert sorted(c.message_id for _, c in channel.commands) == [1, 2, 3, 4, 5]


def test_get_statuses_per_suboperation(
    corpus_files: tuple[Path, list[StoredInstance]], tmp_path: Path
) -> None:
    _, stored = corpus_files
    explicit = [s.attrs.sop_instance_uid for s in stored if s.transfer_syntax_uid == ELE]
    implicit = [s.attrs.sop_instance_uid for s in stored if s.transfer_syntax_uid == ILE]
    channel = Channel(
        [Context(1, CT_IMAGE, ELE)],  # Implicit VR instances have no context
        answers={explicit[0]: 0xA700, explicit[1]: 0xB007},
    )
    responses = get(corpus_files, tmp_path, channel)
    assert counts(responses[-1]) == (0xB000, None, 1, 3, 1)
    assert sorted(failed_uids(responses[-1])) == sorted([explicit[0], *implicit])
    final = responses[-1].command
    assert isinstance(final, CGetRsp)
    assert final.has_dataset
    assert sorted(channel.received) == sorted(explicit)


def test_get_all_failed_is_a702_with_the_list(
    corpus_files: tuple[Path, list[StoredInstance]], tmp_path: Path
) -> None:
    _, stored = corpus_files
    channel = Channel([Context(1, MR_IMAGE, ELE)])
    responses = get(corpus_files, tmp_path, channel)
    assert counts(responses[-1]) == (0xA702, None, 0, 5, 0)
    assert sorted(failed_uids(responses[-1])) == sorted(s.attrs.sop_instance_uid for s in stored)
    assert channel.received == {}


def test_get_cancelled_reports_remaining(
    corpus_files: tuple[Path, list[StoredInstance]], tmp_path: Path
) -> None:
    channel = Channel([Context(1, CT_IMAGE, ELE), Context(3, CT_IMAGE, ILE)])
    responses = get(corpus_files, tmp_path, channel, cancel_after=2)
    # PS3.4 C.4.3.1.4: after a cancel the final response carries Remaining too.
    assert counts(responses[-1]) == (0xFE00, 3, 2, 0, 0)
    assert len(channel.received) == 2
    assert responses[-1].dataset is None


def test_get_cancelled_with_a_window_counts_what_was_in_flight(
    corpus_files: tuple[Path, list[StoredInstance]], tmp_path: Path
) -> None:
    """Sub-operations already in flight when the cancel arrives finish and count as
    completed; none starts after it; the rest are Remaining (PS3.4 C.4.3.1.4)."""
    channel = Channel([Context(1, CT_IMAGE, ELE), Context(3, CT_IMAGE, ILE)], window=3)
    responses = get(corpus_files, tmp_path, channel, cancel_after=2)
    status, remaining, completed, failed, warning = counts(responses[-1])
    assert status == 0xFE00
    assert completed == len(channel.received)
    assert 2 <= completed <= 4  # the two, and those in flight beside them
    assert remaining == 5 - completed
    assert (failed, warning) == (0, 0)


def test_get_nothing_selected_is_success(
    corpus_files: tuple[Path, list[StoredInstance]], tmp_path: Path
) -> None:
    channel = Channel([Context(1, CT_IMAGE, ELE)])
    responses = get(corpus_files, tmp_path, channel, uid="9.9.9")
    assert [counts(r) for r in responses] == [(0x0000, None, 0, 0, 0)]


def test_get_without_the_unique_key_is_a900(
    corpus_files: tuple[Path, list[StoredInstance]], tmp_path: Path
) -> None:
    """SERIES level with only a Study Instance UID: the level's unique key is missing."""
    channel = Channel([Context(1, CT_IMAGE, ELE)])
    root, stored = corpus_files

    async def go() -> list[Response]:
        async with await Index.open(tmp_path / "index.sqlite", durability="fast") as index:
            data = encode_dataset(
                [
                    Element(0x00080052, "CS", b"SERIES"),
                    Element(0x0020000D, "UI", stored[0].attrs.study_instance_uid.encode()),
                ],
                ELE,
            )
            command = CGetRq(message_id=3, affected_sop_class_uid=STUDY_ROOT_GET)
            req = retrieve_request(command, "STUDY", "1")
            req = Request(
                **{
                    **{f: getattr(req, f) for f in req.__struct_fields__},
                    "identifier": data,
                    "channel": channel,
                }
            )
            return [r async for r in c_get_provider(index, Files(root))(req)]

    responses = run(go())
    assert len(responses) == 1
    final = responses[0].command
    assert isinstance(final, CGetRsp)
    assert final.status == 0xA900
    assert channel.received == {}


def test_move_to_unknown_destination_is_a801(
    corpus_files: tuple[Path, list[StoredInstance]], tmp_path: Path
) -> None:
    root, stored = corpus_files

    async def go() -> list[Response]:
        async with await Index.open(tmp_path / "index.sqlite", durability="fast") as index:
            command = CMoveRq(
                message_id=4, affected_sop_class_uid=STUDY_ROOT_MOVE, move_destination="NOWHERE"
            )
            req = retrieve_request(command, "STUDY", stored[0].attrs.study_instance_uid)
            settings = MoveSettings(peers={"KNOWN": ("127.0.0.1", 1)})
            provider = c_move_provider(index, Files(root), settings, Unreachable())
            return [r async for r in provider(req)]

    responses = asyncio.run(asyncio.wait_for(go(), 20))
    assert len(responses) == 1
    final = responses[0].command
    assert isinstance(final, CMoveRsp)
    assert final.status == 0xA801
    assert final.error_comment == "move destination 'NOWHERE' unknown"
    assert final.message_id_being_responded_to == 4


class Unreachable:
    """A Connect whose destination nobody listens on."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, tuple[str, int]]] = []

    @contextlib.asynccontextmanager
    async def __call__(
        self,
        called_ae: str,
        address: tuple[str, int],
        contexts: Sequence[tuple[str, Sequence[str]]],
    ) -> AsyncIterator[StoreTarget]:
        self.calls.append((called_ae, address))
        raise SubAssociationError(f"cannot connect to {address[0]}:{address[1]}")
        yield  # pragma: no cover


class Reachable:
    """A Connect opening ``channels`` in turn, one per sub-association."""

    def __init__(self, channels: Sequence[Channel]) -> None:
        self.channels = list(channels)
        self.calls: list[tuple[str, tuple[str, int], list[tuple[str, list[str]]]]] = []
        self.closed: list[BaseException | None] = []

    @contextlib.asynccontextmanager
    async def __call__(
        self,
        called_ae: str,
        address: tuple[str, int],
        contexts: Sequence[tuple[str, Sequence[str]]],
    ) -> AsyncIterator[StoreTarget]:
        self.calls.append((called_ae, address, [(a, list(ts)) for a, ts in contexts]))
        channel = self.channels.pop(0)
        try:
            yield channel
        except BaseException as exc:
            self.closed.append(exc)
            raise
        self.closed.append(None)


def move(
    corpus_files: tuple[Path, list[StoredInstance]],
    tmp_path: Path,
    connect: Connect,
    *,
    associations: int = 1,
) -> list[Response]:
    """The C-MOVE provider's responses for study A1 to destination KNOWN."""
    root, stored = corpus_files

    async def go() -> list[Response]:
        async with indexed(tmp_path, stored) as index:
            command = CMoveRq(
                message_id=4, affected_sop_class_uid=STUDY_ROOT_MOVE, move_destination="KNOWN"
            )
            req = retrieve_request(
                command, "STUDY", stored[0].attrs.study_instance_uid, cancel=Cancel()
            )
            settings = MoveSettings(peers={"KNOWN": ("127.0.0.1", 1)}, associations=associations)
            provider = c_move_provider(index, Files(root), settings, connect)
            return [r async for r in provider(req)]

    return run(go())


def test_move_sends_on_the_connected_association(
    corpus_files: tuple[Path, list[StoredInstance]], tmp_path: Path
) -> None:
    _, stored = corpus_files
    channel = Channel([Context(1, CT_IMAGE, ELE), Context(3, CT_IMAGE, ILE)])
    connect = Reachable([channel])
    responses = move(corpus_files, tmp_path, connect)
    assert counts(responses[-1]) == (0x0000, None, 5, 0, 0)
    assert connect.calls == [
        ("KNOWN", ("127.0.0.1", 1), [(CT_IMAGE, [ELE]), (CT_IMAGE, [ILE]), (CT_IMAGE, [ELE, ILE])])
    ]
    assert connect.closed == [None]  # released, not aborted
    assert sorted(channel.received) == sorted(s.attrs.sop_instance_uid for s in stored)
    # Move Originator (PS3.7 9.3.1.1): the C-MOVE's caller and message id.
    assert {(c.move_originator_ae, c.move_originator_message_id) for _, c in channel.commands} == {
        ("GETSCU", 4)
    }


def test_move_when_nobody_listens_is_a702(
    corpus_files: tuple[Path, list[StoredInstance]],
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """No association could be opened: every sub-operation fails (A702, the UID list)."""
    _, stored = corpus_files
    connect = Unreachable()
    with caplog.at_level(logging.WARNING, logger="archive.retrieve"):
        responses = move(corpus_files, tmp_path, connect, associations=2)
    assert counts(responses[-1]) == (0xA702, None, 0, 5, 0)
    assert sorted(failed_uids(responses[-1])) == sorted(s.attrs.sop_instance_uid for s in stored)
    assert connect.calls == [("KNOWN", ("127.0.0.1", 1))] * 2
    assert "C-MOVE: cannot associate with KNOWN: cannot connect to 127.0.0.1:1" in caplog.messages
    assert "5 sub-operation(s) not performed: no association to the destination" in (
        caplog.messages
    )


def test_move_association_lost_fails_the_rest(
    corpus_files: tuple[Path, list[StoredInstance]],
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The association ends during the third C-STORE: two completed, three failed
    (B000), the association aborted, and the WARNING line says it ended."""
    _, stored = corpus_files
    channel = Channel([Context(1, CT_IMAGE, ELE), Context(3, CT_IMAGE, ILE)], abort_after=2)
    connect = Reachable([channel])
    with caplog.at_level(logging.WARNING, logger="archive.retrieve"):
        responses = move(corpus_files, tmp_path, connect)
    assert counts(responses[-1]) == (0xB000, None, 2, 3, 0)
    uids = {s.attrs.sop_instance_uid for s in stored}
    assert len(channel.received) == 2
    assert set(failed_uids(responses[-1])) == uids - set(channel.received)
    assert len(connect.closed) == 1
    assert isinstance(connect.closed[0], SubAssociationError)  # aborted, not released
    assert "C-MOVE: association with KNOWN ended: the peer aborted" in caplog.messages


def test_get_with_a_missing_file_fails_that_suboperation_only(
    corpus_files: tuple[Path, list[StoredInstance]], tmp_path: Path
) -> None:
    """The file is read (ahead) before its C-STORE-RQ goes out: nothing half-sent."""
    root, stored = corpus_files
    lost = stored[1]
    broken = [msgspec.structs.replace(s, path="instances/gone.dcm") if s is lost else s
              for s in stored]  # fmt: skip
    channel = Channel([Context(1, CT_IMAGE, ELE), Context(3, CT_IMAGE, ILE)])
    responses = get((root, broken), tmp_path, channel)
    assert counts(responses[-1]) == (0xB000, None, 4, 1, 0)
    assert failed_uids(responses[-1]) == [lost.attrs.sop_instance_uid]
    assert lost.attrs.sop_instance_uid not in channel.received
    assert len(channel.commands) == 4


def test_get_with_an_empty_file_fails_that_suboperation_only(
    corpus_files: tuple[Path, list[StoredInstance]], tmp_path: Path
) -> None:
    """A stored file cut to nothing (power loss under durability = "fast") is no
    Part 10 file: its sub-operation fails, the C-GET goes on."""
    root, stored = corpus_files
    empty = tmp_path / "instances" / "empty.dcm"
    empty.parent.mkdir()
    empty.write_bytes(b"")
    lost = stored[2]
    broken = [msgspec.structs.replace(s, path=str(empty)) if s is lost else s for s in stored]
    channel = Channel([Context(1, CT_IMAGE, ELE), Context(3, CT_IMAGE, ILE)])
    responses = get((root, broken), tmp_path, channel)
    assert counts(responses[-1]) == (0xB000, None, 4, 1, 0)
    assert failed_uids(responses[-1]) == [lost.attrs.sop_instance_uid]
    assert len(channel.commands) == 4


def test_get_pending_responses_carry_the_counts(
    corpus_files: tuple[Path, list[StoredInstance]],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Pending C-GET-RSPs (at most one per PENDING_INTERVAL): remaining falls and
    every response adds up to the total (PS3.4 C.4.3.1.4)."""
    monkeypatch.setattr(retrieve, "PENDING_INTERVAL", 0.001)
    channel = SlowChannel([Context(1, CT_IMAGE, ELE), Context(3, CT_IMAGE, ILE)])
    responses = get(corpus_files, tmp_path, channel)
    assert counts(responses[-1]) == (0x0000, None, 5, 0, 0)
    pendings = [counts(r) for r in responses[:-1]]
    assert len(pendings) >= 3  # one per sub-operation, bar the last
    assert all(p[0] == 0xFF00 for p in pendings)
    remaining = [p[1] for p in pendings]
    assert remaining == sorted(remaining, reverse=True)  # type: ignore[type-var]
    assert len(set(remaining)) == len(remaining)
    assert all(p[1] + p[2] + p[3] + p[4] == 5 for p in pendings)  # type: ignore[operator]


class SlowChannel(Channel):
    """A peer that takes 20 ms per C-STORE: the provider reports between them."""

    async def store(
        self, context_id: int, command: CStoreRq, chunks: AsyncIterator[bytes | memoryview]
    ) -> CStoreRsp:
        await asyncio.sleep(0.02)
        return await super().store(context_id, command, chunks)


def test_each_file_is_closed_once(
    corpus_files: tuple[Path, list[StoredInstance]],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    closed: list[str] = []
    real = FileSource._closed

    def spy(self: FileSource, read: asyncio.Future[memoryview]) -> None:
        closed.append(str(self.reader.path))
        real(self, read)

    monkeypatch.setattr(FileSource, "_closed", spy)
    channel = Channel([Context(1, CT_IMAGE, ELE), Context(3, CT_IMAGE, ILE)])
    responses = get(corpus_files, tmp_path, channel)
    assert counts(responses[-1]) == (0x0000, None, 5, 0, 0)
    assert len(closed) == 5
    assert len(set(closed)) == 5


def test_cancelled_read_closes_the_file_after_the_read(
    corpus_files: tuple[Path, list[StoredInstance]],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A sub-operation cancelled while a chunk is read in the I/O pool: a read there
    cannot be stopped, so the file is closed once it ends, never under it (its
    descriptor could meanwhile be another file's)."""
    root, stored = corpus_files
    source = stored[0]
    big = tmp_path / "big.dcm"
    # Data Set Trailing Padding (FFFC,FFFC) OB: a data set of several chunks.
    padding = struct.pack("<HH2sHI", 0xFFFC, 0xFFFC, b"OB", 0, 300_000) + bytes(300_000)
    big.write_bytes((root / source.path).read_bytes() + padding)
    monkeypatch.setattr(retrieve, "CHUNK", 1 << 16)  # the least a reader takes
    events: list[str] = []
    closed = asyncio.Event()
    real_close = DatasetReader.close

    def close(self: DatasetReader) -> None:
        events.append("close")
        closed.set()  # on the loop's thread: the reader is closed from callbacks
        real_close(self)

    monkeypatch.setattr(DatasetReader, "close", close)
    started, gate = threading.Event(), threading.Event()

    class GatedFiles(Files):
        """Runs calls in a real thread pool; the first chunk after the first one
        waits for ``gate``."""

        def __init__(self, root: Path, pool: ThreadPoolExecutor) -> None:
            super().__init__(root)
            self.pool = pool

        async def run(self, fn: Callable[..., T], *args: object) -> T:
            def call() -> T:
                if getattr(fn, "__name__", "") == "next" and not started.is_set():
                    started.set()
                    gate.wait(10)
                    result = fn(*args)
                    events.append("read end")
                    return result
                return fn(*args)

            return await asyncio.get_running_loop().run_in_executor(self.pool, call)

    row = InstanceRow(
        source.attrs.sop_instance_uid,
        source.attrs.study_instance_uid,
        source.attrs.series_instance_uid,
        source.attrs.sop_class_uid,
        str(big),
        big.stat().st_size,
        source.digest,
        source.transfer_syntax_uid,
    )

    async def scenario() -> list[str]:
        with ThreadPoolExecutor(2) as pool:
            try:
                retriever = Retriever(
                    GatedFiles(root, pool), [row], None, priority=0, originator=None
                )
                channel = Channel([Context(1, CT_IMAGE, ELE), Context(3, CT_IMAGE, ILE)])
                task = asyncio.ensure_future(retriever.run(channel))
                await asyncio.get_running_loop().run_in_executor(None, started.wait, 10)
                task.cancel()
                with pytest.raises(asyncio.CancelledError):
                    await task
                for _ in range(5):
                    await asyncio.sleep(0)  # any close callback already due runs now
                before = list(events)
                gate.set()
                await closed.wait()
                return before
            finally:
                gate.set()

    assert run(scenario()) == []  # nothing closed while the read was in the pool
    assert events == ["read end", "close"]


def test_get_closed_early_stops_its_workers_at_once(
    corpus_files: tuple[Path, list[StoredInstance]],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The driver closes the provider after a pending response (the association
    went away): the sub-operations stop then, not when the GC gets to them."""
    monkeypatch.setattr(retrieve, "PENDING_INTERVAL", 0.001)
    root, stored = corpus_files
    channel = SlowChannel([Context(1, CT_IMAGE, ELE), Context(3, CT_IMAGE, ILE)])

    async def go() -> list[asyncio.Task[object]]:
        async with indexed(tmp_path, stored) as index:
            command = CGetRq(message_id=3, affected_sop_class_uid=STUDY_ROOT_GET)
            req = retrieve_request(
                command, "STUDY", stored[0].attrs.study_instance_uid, channel=channel
            )
            responses = c_get_provider(index, Files(root))(req)
            assert isinstance(responses, AsyncGenerator)
            first = await anext(responses)
            assert counts(first)[0] == 0xFF00
            await responses.aclose()
            return [
                task
                for task in asyncio.all_tasks()
                if task.get_coro().__qualname__ == "Retriever.run" and not task.done()
            ]

    assert run(go()) == []
