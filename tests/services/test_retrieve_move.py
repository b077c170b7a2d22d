"""The C-MOVE provider (archive/services/retrieve.py) without a network.

Fake connectors (``Connect``) in place of the driver's SCU: one whose destination
nobody listens on, one that opens fake channels whose C-STORE answers are chosen
per instance; a real index and real stored files, as for C-GET.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import shutil
import struct
import time
from collections.abc import AsyncIterator, Sequence
from pathlib import Path

import msgspec
import pytest

from archive.dicom.dimse import CMoveRq, CMoveRsp
from archive.dicom.reencode import ToImplicit
from archive.index import Index, StoredInstance
from archive.services.base import Cancel, Response, StoreTarget, SubAssociationError
from archive.services.contexts import ConversionFailed
from archive.services.retrieve import Connect, MoveSettings, c_move_provider
from tests.index import run
from tests.interop.qrhelpers import CT_IMAGE, dataset_bytes
from tests.services.retrievehelpers import (
    ELE,
    ILE,
    Channel,
    Context,
    Files,
    counts,
    failed_uids,
    indexed,
    retrieve_request,
)

STUDY_ROOT_MOVE = "1.2.840.10008.5.1.4.1.2.2.2"


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
    """A Connect opening ``channels`` in turn, one per sub-association; a None
    among them is an association refused. Each takes ``delay`` seconds to open."""

    def __init__(
        self,
        channels: Sequence[Channel | None],
        delay: float = 0.0,
        release_fails: set[int] | frozenset[int] = frozenset(),
    ) -> None:
        self.channels = list(channels)
        self.delay = delay
        #: id() of the channels whose release fails after their last store.
        self.release_fails = release_fails
        self.calls: list[tuple[str, tuple[str, int], list[tuple[str, list[str]]]]] = []
        self.closed: list[BaseException | None] = []
        #: The channels in the order their associations ended.
        self.closed_channels: list[Channel] = []

    @contextlib.asynccontextmanager
    async def __call__(
        self,
        called_ae: str,
        address: tuple[str, int],
        contexts: Sequence[tuple[str, Sequence[str]]],
    ) -> AsyncIterator[StoreTarget]:
        self.calls.append((called_ae, address, [(a, list(ts)) for a, ts in contexts]))
        channel = self.channels.pop(0)
        await asyncio.sleep(self.delay)
        if channel is None:
            raise SubAssociationError("association rejected")
        try:
            yield channel
        except BaseException as exc:
            self.closed.append(exc)
            self.closed_channels.append(channel)
            raise
        self.closed.append(None)
        self.closed_channels.append(channel)
        if id(channel) in self.release_fails:
            raise SubAssociationError("the peer aborted instead of releasing")


def move(
    corpus_files: tuple[Path, list[StoredInstance]],
    tmp_path: Path,
    connect: Connect,
    *,
    associations: int = 1,
    cancel: Cancel | None = None,
    cancel_at: float | None = None,
    timeout: float = 20.0,
) -> list[Response]:
    """The C-MOVE provider's responses for study A1 to destination KNOWN;
    ``cancel`` is set ``cancel_at`` seconds after the move starts, if given."""
    root, stored = corpus_files
    cancel = cancel or Cancel()

    async def go() -> list[Response]:
        async with indexed(tmp_path, stored) as index:
            command = CMoveRq(
                message_id=4, affected_sop_class_uid=STUDY_ROOT_MOVE, move_destination="KNOWN"
            )
            req = retrieve_request(
                command, "STUDY", stored[0].attrs.study_instance_uid, cancel=cancel
            )
            settings = MoveSettings(peers={"KNOWN": ("127.0.0.1", 1)}, associations=associations)
            provider = c_move_provider(index, Files(root), settings, connect)
            if cancel_at is not None:
                asyncio.get_running_loop().call_later(cancel_at, cancel.set)
            return [r async for r in provider(req)]

    return run(go(), timeout=timeout)


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


def test_a_lost_association_fails_only_its_own_sub_operation(
    corpus_files: tuple[Path, list[StoredInstance]], tmp_path: Path
) -> None:
    """Two associations; the first ends during its third C-STORE. Each worker holds
    only the next file ahead, so the other association sends the rest: one failed,
    four completed (a worker holding several files would leave them to fail)."""
    channels = [
        Channel([Context(1, CT_IMAGE, ELE), Context(3, CT_IMAGE, ILE)], abort_after=2),
        Channel([Context(1, CT_IMAGE, ELE), Context(3, CT_IMAGE, ILE)]),
    ]
    responses = move(corpus_files, tmp_path, Reachable(channels), associations=2)
    assert counts(responses[-1]) == (0xB000, None, 4, 1, 0)
    assert [len(c.received) for c in channels] == [2, 2]


def test_rows_put_back_by_a_lost_association_go_on_another(
    corpus_files: tuple[Path, list[StoredInstance]], tmp_path: Path
) -> None:
    """The first association holds two files (the one it sends, the next opened
    ahead) and is lost 0.3 s into its first C-STORE, long after the second sent
    the other three and found the queue empty. The second worker released its
    association then, not held it idle; it waits for what the first puts back and
    sends it on a new one: one failed, four completed, not two failed."""
    contexts = [Context(1, CT_IMAGE, ELE), Context(3, CT_IMAGE, ILE)]
    channels = [
        Channel(contexts, abort_after=0, abort_stall=0.3),
        Channel(contexts),
        Channel(contexts),
    ]
    connect = Reachable(channels)
    responses = move(corpus_files, tmp_path, connect, associations=2)
    assert counts(responses[-1]) == (0xB000, None, 4, 1, 0)
    assert [len(c.received) for c in channels] == [0, 3, 1]
    # Released (None: closed without error) before the first was lost.
    assert connect.closed[0] is None
    assert isinstance(connect.closed[1], SubAssociationError)
    assert connect.closed[2:] == [None]


def test_an_association_is_released_once_the_queue_is_empty(
    corpus_files: tuple[Path, list[StoredInstance]], tmp_path: Path
) -> None:
    """Two associations, one slow to store: the fast one, done with the queue, is
    released at once rather than held open until the slow one ends; nothing is
    put back, so no other association is opened."""
    contexts = [Context(1, CT_IMAGE, ELE), Context(3, CT_IMAGE, ILE)]
    slow = Channel(contexts, store_seconds=0.2)
    fast = Channel(contexts)
    spare = Channel(contexts)
    connect = Reachable([slow, fast, spare])
    responses = move(corpus_files, tmp_path, connect, associations=2)
    assert counts(responses[-1]) == (0x0000, None, 5, 0, 0)
    assert connect.closed_channels == [fast, slow]
    assert connect.closed == [None, None]
    assert len(connect.calls) == 2


def test_rows_put_back_take_one_new_association_not_one_per_idle_worker(
    corpus_files: tuple[Path, list[StoredInstance]], tmp_path: Path
) -> None:
    """Three associations; the first is lost 0.3 s into its first C-STORE and puts
    back the file it held ahead, when the other two have emptied the queue and
    been released. One of them opens an association for it, not both."""
    contexts = [Context(1, CT_IMAGE, ELE), Context(3, CT_IMAGE, ILE)]
    channels = [Channel(contexts, abort_after=0, abort_stall=0.3)]
    channels += [Channel(contexts) for _ in range(4)]
    connect = Reachable(channels, delay=0.05)
    responses = move(corpus_files, tmp_path, connect, associations=3)
    assert counts(responses[-1]) == (0xB000, None, 4, 1, 0)
    assert len(connect.calls) == 4
    assert len(channels[3].received) == 1
    assert connect.channels == [channels[4]]  # never asked for


def test_a_refused_association_for_rows_put_back_leaves_them_to_the_next_worker(
    corpus_files: tuple[Path, list[StoredInstance]], tmp_path: Path
) -> None:
    """As above, but the association opened for the row put back is refused: the
    other idle worker tries in its turn and sends it."""
    contexts = [Context(1, CT_IMAGE, ELE), Context(3, CT_IMAGE, ILE)]
    lost = Channel(contexts, abort_after=0, abort_stall=0.3)
    others = [Channel(contexts) for _ in range(3)]
    connect = Reachable([lost, others[0], others[1], None, others[2]])
    responses = move(corpus_files, tmp_path, connect, associations=3)
    assert counts(responses[-1]) == (0xB000, None, 4, 1, 0)
    assert len(others[2].received) == 1
    assert connect.closed[-1] is None


def test_a_failed_release_does_not_end_the_worker(
    corpus_files: tuple[Path, list[StoredInstance]], tmp_path: Path
) -> None:
    """The second association sends its files, then its release fails (the peer
    aborts instead of answering the A-RELEASE-RQ): every sub-operation on it was
    answered, so its worker still opens a new association for the row the first,
    lost later, puts back."""
    contexts = [Context(1, CT_IMAGE, ELE), Context(3, CT_IMAGE, ILE)]
    lost = Channel(contexts, abort_after=0, abort_stall=0.3)
    second, third = Channel(contexts), Channel(contexts)
    connect = Reachable([lost, second, third], release_fails={id(second)})
    responses = move(corpus_files, tmp_path, connect, associations=2)
    assert counts(responses[-1]) == (0xB000, None, 4, 1, 0)
    assert [len(c.received) for c in (lost, second, third)] == [0, 3, 1]


def test_a_cancel_wakes_a_worker_waiting_for_rows(
    corpus_files: tuple[Path, list[StoredInstance]], tmp_path: Path
) -> None:
    """The C-CANCEL comes while the second association waits for what the first, to
    be lost at 1 s, may put back: the waiter stops, nothing more is sent, and the
    final response is Cancel with the row put back as remaining. (The second
    has 0.5 s to send its three: 0.15 s was too short on a loaded machine.)"""
    cancel = Cancel()
    contexts = [Context(1, CT_IMAGE, ELE), Context(3, CT_IMAGE, ILE)]
    channels = [
        Channel(contexts, abort_after=0, abort_stall=1.0, cancel=cancel),
        Channel(contexts, cancel=cancel),
    ]
    responses = move(corpus_files, tmp_path, Reachable(channels), associations=2,
                     cancel=cancel, cancel_at=0.5, timeout=10)  # fmt: skip
    assert channels[1].begun_after_cancel == []
    assert [len(c.received) for c in channels] == [0, 3]
    assert counts(responses[-1]) == (0xFE00, 1, 3, 1, 0)


class Hung:
    """A Connect whose destination accepts the connection and never answers."""

    def __init__(self) -> None:
        self.attempts = 0
        self.stopped = 0

    @contextlib.asynccontextmanager
    async def __call__(
        self,
        called_ae: str,
        address: tuple[str, int],
        contexts: Sequence[tuple[str, Sequence[str]]],
    ) -> AsyncIterator[StoreTarget]:
        self.attempts += 1
        try:
            await asyncio.sleep(3600)  # ARTIM, in the driver
        except asyncio.CancelledError:
            self.stopped += 1
            raise
        yield  # type: ignore[misc]  # pragma: no cover


def test_a_cancel_stops_the_association_attempts_at_once(
    corpus_files: tuple[Path, list[StoredInstance]], tmp_path: Path
) -> None:
    """A C-CANCEL while the sub-associations are still being opened, to a
    destination that never answers: the attempts stop, and the final response is
    Cancel with every sub-operation remaining, at once; it waited for the
    attempts to time out (ARTIM, 30 s by default)."""
    hung = Hung()
    started = time.monotonic()
    responses = move(corpus_files, tmp_path, hung, associations=2, cancel_at=0.1, timeout=10)
    elapsed = time.monotonic() - started
    assert counts(responses[-1]) == (0xFE00, 5, 0, 0, 0)
    assert (hung.attempts, hung.stopped) == (2, 2)
    assert elapsed < 5.0  # without the stop: the 10 s bound of move() runs out


def test_explicit_vr_instances_go_converted_to_an_implicit_only_destination(
    corpus_files: tuple[Path, list[StoredInstance]], tmp_path: Path
) -> None:
    """The destination took CT in Implicit VR LE alone: the three Explicit VR
    instances go on that context converted, the two Implicit VR ones as stored."""
    root, stored = corpus_files
    channel = Channel([Context(1, CT_IMAGE, ILE)])
    responses = move(corpus_files, tmp_path, Reachable([channel]))
    assert counts(responses[-1]) == (0x0000, None, 5, 0, 0)
    assert {context for context, _ in channel.commands} == {1}
    for item in stored:
        body = dataset_bytes(root / item.path)
        if item.transfer_syntax_uid == ELE:
            conversion = ToImplicit()
            body = conversion.feed(body) + conversion.close()
        assert channel.received[item.attrs.sop_instance_uid] == body


def test_a_stored_data_set_the_conversion_cannot_follow_fails_alone(
    corpus_files: tuple[Path, list[StoredInstance]],
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """An Explicit VR file whose data set cannot be followed (an item longer than
    its sequence, after Pixel Data: the C-STORE that took it read no further) is
    half sent when that shows: its association is aborted, that sub-operation
    fails, and the rest go on a new association."""
    source, stored = corpus_files
    root = tmp_path / "store"
    shutil.copytree(source, root)
    bad = next(i for i in stored if i.transfer_syntax_uid == ELE)
    with (root / bad.path).open("ab") as f:
        f.write(struct.pack("<HH2s2xL", 0x7FE1, 0x1010, b"SQ", 16))
        f.write(struct.pack("<HHL", 0xFFFE, 0xE000, 100) + bytes(8))
    rows = [msgspec.structs.replace(i, size=i.size + 28) if i is bad else i for i in stored]
    channels = [Channel([Context(1, CT_IMAGE, ILE)]), Channel([Context(1, CT_IMAGE, ILE)])]
    connect = Reachable(channels)
    with caplog.at_level(logging.INFO, logger="archive.retrieve"):
        responses = move((root, rows), tmp_path, connect)
    assert counts(responses[-1]) == (0xB000, None, 4, 1, 0)
    assert failed_uids(responses[-1]) == [bad.attrs.sop_instance_uid]
    received = {**channels[0].received, **channels[1].received}
    assert set(received) == {i.attrs.sop_instance_uid for i in stored} - {
        bad.attrs.sop_instance_uid
    }
    assert isinstance(connect.closed[0], ConversionFailed)  # aborted, not released
    assert connect.closed[1:] == [None]
    assert (
        f"sub-operation for instance {bad.attrs.sop_instance_uid} failed while it was sent:"
        " cannot be sent as Implicit VR Little Endian: the element at byte 864 runs past its"
        " container"
    ) in caplog.messages
    # One WARNING says it all; the abort of its association is an INFO line.
    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert len([m for m in warnings if "runs past its container" in m]) == 1, warnings
    assert (
        "C-MOVE: association with KNOWN aborted after a file failed while sent;"
        " the others go on a new one"
    ) in caplog.messages
