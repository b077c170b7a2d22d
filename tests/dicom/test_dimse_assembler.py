"""MessageAssembler: PDVs in, commands and uncopied data set fragments out (PS3.8 E.2)."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from archive.dicom.dimse import (
    MAX_COMMAND_LENGTH,
    CEchoRq,
    CFindRsp,
    Command,
    CommandReceived,
    CStoreRq,
    DatasetFragment,
    MessageAssembler,
    NActionRq,
    encode_command,
)
from archive.dicom.errors import AbortReason, AbortSource, RemoteProtocolError
from archive.dicom.ul.pdata import MCH_COMMAND, MCH_LAST, Pdv, decode_p_data

DIMSE_ABORT = (AbortSource.SERVICE_USER, AbortReason.NOT_SPECIFIED)
CMD = MCH_COMMAND
CMD_LAST = MCH_COMMAND | MCH_LAST
DATA = 0
DATA_LAST = MCH_LAST

STORE = CStoreRq(
    message_id=7,
    affected_sop_class_uid="1.2.840.10008.5.1.4.1.1.2",
    affected_sop_instance_uid="1.2.3.4.5.6.7.8.9",
    move_originator_ae="MOVESCU",
    move_originator_message_id=3,
)
ECHO = CEchoRq(message_id=1, affected_sop_class_uid="1.2.840.10008.1.1")
DATASET = bytes(range(256)) * 9 + b"tail"


def pdv(context_id: int, control: int, data: bytes | bytearray | memoryview) -> Pdv:
    return Pdv(context_id, control, memoryview(data))


def split(data: bytes, cuts: list[int]) -> list[bytes]:
    """``data`` cut at the given offsets (sorted, deduplicated, clamped)."""
    points = sorted({min(c, len(data)) for c in cuts} | {0, len(data)})
    parts = [data[a:b] for a, b in itertools.pairwise(points)]
    return parts or [b""]


def message_pdvs(
    context_id: int,
    command: Command,
    dataset: bytes | None,
    cmd_cuts: list[int],
    ds_cuts: list[int],
) -> list[Pdv]:
    raw = encode_command(command)
    parts = split(raw, cmd_cuts)
    pdvs = [pdv(context_id, CMD, p) for p in parts[:-1]] + [pdv(context_id, CMD_LAST, parts[-1])]
    if dataset is not None:
        dparts = split(dataset, ds_cuts)
        pdvs += [pdv(context_id, DATA, p) for p in dparts[:-1]]
        pdvs.append(pdv(context_id, DATA_LAST, dparts[-1]))
    return pdvs


def run(assembler: MessageAssembler, pdvs: list[Pdv]) -> tuple[CommandReceived, bytes, int]:
    """Feed PDVs; return the command event, the joined data set and the fragment count."""
    received: CommandReceived | None = None
    data = b""
    fragments = 0
    for i, item in enumerate(pdvs):
        event = assembler.receive(item)
        if isinstance(event, CommandReceived):
            assert received is None
            received = event
        elif isinstance(event, DatasetFragment):
            assert received is not None
            assert isinstance(event.data, memoryview)
            assert event.last == (i == len(pdvs) - 1)
            data += event.data
            fragments += 1
        else:
            assert event is None
            assert received is None  # only command fragments are buffered
    assert received is not None
    assert not assembler.expecting_dataset
    return received, data, fragments


# --- whole, many pieces, random pieces ---------------------------------------


def test_single_pdv_each() -> None:
    asm = MessageAssembler()
    received, data, fragments = run(asm, message_pdvs(1, STORE, DATASET, [], []))
    assert received == CommandReceived(1, STORE, encode_command(STORE))
    assert data == DATASET
    assert fragments == 1


def test_many_small_pdvs() -> None:
    asm = MessageAssembler()
    raw = encode_command(STORE)
    pdvs = message_pdvs(3, STORE, DATASET, list(range(len(raw))), list(range(0, len(DATASET), 7)))
    received, data, fragments = run(asm, pdvs)
    assert received.command == STORE
    assert received.raw == raw
    assert received.context_id == 3
    assert data == DATASET
    assert fragments == len(range(0, len(DATASET), 7))


def test_command_without_dataset() -> None:
    asm = MessageAssembler()
    event = asm.receive(pdv(5, CMD_LAST, encode_command(ECHO)))
    assert event == CommandReceived(5, ECHO, encode_command(ECHO))
    assert not asm.expecting_dataset


def test_buffered_command_fragments_return_none() -> None:
    asm = MessageAssembler()
    raw = encode_command(ECHO)
    assert asm.receive(pdv(1, CMD, raw[:10])) is None
    assert asm.receive(pdv(1, CMD, raw[10:20])) is None
    assert not asm.expecting_dataset
    assert asm.receive(pdv(1, CMD_LAST, raw[20:])) == CommandReceived(1, ECHO, raw)


_CASES = st.sampled_from(
    [
        (STORE, DATASET),
        (STORE, b""),
        (ECHO, None),
        (
            CFindRsp(message_id_being_responded_to=2, status=0xFF00, has_dataset=True),
            b"\x08\x00\x52\x00\x06\x00\x00\x00STUDY ",
        ),
        (
            NActionRq(
                message_id=8,
                requested_sop_class_uid="1.2.840.10008.1.20.1",
                requested_sop_instance_uid="1.2.840.10008.1.20.1.1",
                action_type_id=1,
                has_dataset=True,
            ),
            bytes(1000),
        ),
    ]
)
_CUTS = st.lists(st.integers(0, 2400), max_size=12)


@settings(max_examples=300, deadline=None)
@given(_CASES, _CUTS, _CUTS, st.sampled_from([1, 3, 255]))
def test_random_splits_give_the_same_message(
    case: tuple[Command, bytes | None], cmd_cuts: list[int], ds_cuts: list[int], context_id: int
) -> None:
    command, dataset = case
    asm = MessageAssembler()
    received, data, _ = run(asm, message_pdvs(context_id, command, dataset, cmd_cuts, ds_cuts))
    assert received == CommandReceived(context_id, command, encode_command(command))
    assert data == (dataset or b"")
    # Ready for the next message, on any context.
    received, _, _ = run(asm, message_pdvs(7, ECHO, None, [5], []))
    assert received.command == ECHO


def test_empty_last_fragments_are_fine() -> None:
    asm = MessageAssembler()
    raw = encode_command(STORE)
    assert asm.receive(pdv(1, CMD, raw)) is None
    assert isinstance(asm.receive(pdv(1, CMD_LAST, b"")), CommandReceived)
    assert asm.expecting_dataset
    first = asm.receive(pdv(1, DATA, b"abcd"))
    assert first is not None
    assert not first.last  # type: ignore[union-attr]
    end = asm.receive(pdv(1, DATA_LAST, b""))
    assert isinstance(end, DatasetFragment)
    assert end.last
    assert bytes(end.data) == b""
    assert not asm.expecting_dataset


def test_expecting_dataset_follows_the_message() -> None:
    asm = MessageAssembler()
    assert not asm.expecting_dataset
    asm.receive(pdv(1, CMD_LAST, encode_command(STORE)))
    assert asm.expecting_dataset
    asm.receive(pdv(1, DATA, b"xx"))
    assert asm.expecting_dataset
    asm.receive(pdv(1, DATA_LAST, b"yy"))
    assert not asm.expecting_dataset


# --- no copies ---------------------------------------------------------------


def test_fragments_are_views_of_the_receive_buffer() -> None:
    # A real P-DATA-TF variable field holding two PDVs, split by the UL codec.
    body = bytearray(
        (2 + 10).to_bytes(4, "big")
        + bytes([1, DATA])
        + b"0123456789"
        + (2 + 4).to_bytes(4, "big")
        + bytes([1, DATA_LAST])
        + b"WXYZ"
    )
    asm = MessageAssembler()
    asm.receive(pdv(1, CMD_LAST, encode_command(STORE)))
    first, second = (asm.receive(p) for p in decode_p_data(memoryview(body)))
    assert isinstance(first, DatasetFragment)
    assert isinstance(second, DatasetFragment)
    assert first.data.obj is body
    assert second.data.obj is body
    body[6] = ord("#")  # the first payload byte, changed in place
    assert bytes(first.data) == b"#123456789"
    assert bytes(second.data) == b"WXYZ"
    assert (first.last, second.last) == (False, True)


def test_command_fragments_survive_buffer_reuse() -> None:
    # Command fragments are copied: the receive buffer is reused for the next PDU.
    raw = encode_command(ECHO)
    buffer = bytearray(raw)
    asm = MessageAssembler()
    assert asm.receive(pdv(1, CMD, memoryview(buffer)[:20])) is None
    buffer[:] = bytes(len(buffer))
    event = asm.receive(pdv(1, CMD_LAST, raw[20:]))
    assert isinstance(event, CommandReceived)
    assert event.command == ECHO
    assert event.raw == raw


# --- sequence violations -----------------------------------------------------


def _rejected(asm: MessageAssembler, item: Pdv, match: str) -> None:
    with pytest.raises(RemoteProtocolError, match=match) as info:
        asm.receive(item)
    assert info.value.abort == DIMSE_ABORT


def test_dataset_without_command() -> None:
    _rejected(
        MessageAssembler(), pdv(1, DATA, b"x"), "data set PDV without a command announcing one"
    )
    _rejected(MessageAssembler(), pdv(1, DATA_LAST, b""), "data set PDV without a command")


def test_dataset_after_command_without_dataset() -> None:
    asm = MessageAssembler()
    asm.receive(pdv(1, CMD_LAST, encode_command(ECHO)))
    _rejected(asm, pdv(1, DATA_LAST, b"x"), "data set PDV without a command announcing one")


def test_dataset_between_command_fragments() -> None:
    asm = MessageAssembler()
    asm.receive(pdv(1, CMD, encode_command(STORE)[:10]))
    _rejected(asm, pdv(1, DATA, b"x"), "data set PDV without a command announcing one")


def test_dataset_after_its_last_fragment() -> None:
    asm = MessageAssembler()
    run(asm, message_pdvs(1, STORE, DATASET, [], []))
    _rejected(asm, pdv(1, DATA, b"x"), "data set PDV without a command announcing one")


def test_command_while_dataset_expected() -> None:
    asm = MessageAssembler()
    asm.receive(pdv(1, CMD_LAST, encode_command(STORE)))
    _rejected(
        asm,
        pdv(1, CMD_LAST, encode_command(ECHO)),
        "command PDV while a data set is still expected",
    )
    asm = MessageAssembler()
    asm.receive(pdv(1, CMD_LAST, encode_command(STORE)))
    asm.receive(pdv(1, DATA, b"part"))
    _rejected(asm, pdv(1, CMD, b"\0"), "command PDV while a data set is still expected")


def test_context_change_inside_command() -> None:
    asm = MessageAssembler()
    asm.receive(pdv(1, CMD, encode_command(ECHO)[:8]))
    _rejected(
        asm,
        pdv(3, CMD_LAST, encode_command(ECHO)[8:]),
        "context 3 in the middle of a message on context 1",
    )


def test_context_change_between_command_and_dataset() -> None:
    asm = MessageAssembler()
    asm.receive(pdv(1, CMD_LAST, encode_command(STORE)))
    _rejected(asm, pdv(3, DATA_LAST, b"x"), "context 3 in the middle of a message on context 1")


def test_context_change_inside_dataset() -> None:
    asm = MessageAssembler()
    asm.receive(pdv(5, CMD_LAST, encode_command(STORE)))
    asm.receive(pdv(5, DATA, b"x"))
    _rejected(asm, pdv(7, DATA_LAST, b"y"), "context 7 in the middle of a message on context 5")


def test_command_over_cap() -> None:
    asm = MessageAssembler()
    chunk = bytes(16 * 1024)
    for _ in range(MAX_COMMAND_LENGTH // len(chunk)):
        assert asm.receive(pdv(1, CMD, chunk)) is None
    _rejected(asm, pdv(1, CMD_LAST, b"\0"), f"command set longer than {MAX_COMMAND_LENGTH} bytes")


def test_single_command_fragment_over_cap() -> None:
    _rejected(
        MessageAssembler(),
        pdv(1, CMD_LAST, bytes(MAX_COMMAND_LENGTH + 1)),
        "command set longer than",
    )


def test_command_at_cap_is_decoded() -> None:
    # Exactly the cap is allowed; the padding is an unknown (ignored) element.
    raw = encode_command(ECHO)
    filler = MAX_COMMAND_LENGTH - len(raw) - 8
    padded = (
        raw
        + (0).to_bytes(2, "little")
        + (0x7777).to_bytes(2, "little")
        + filler.to_bytes(4, "little")
        + bytes(filler)
    )
    assert len(padded) == MAX_COMMAND_LENGTH
    event = MessageAssembler().receive(pdv(1, CMD_LAST, padded))
    assert isinstance(event, CommandReceived)
    assert event.command == ECHO


def test_broken_command_raises_dimse_abort() -> None:
    _rejected(
        MessageAssembler(),
        pdv(1, CMD_LAST, b"\x08\x00\x16\x00\x00\x00\x00\x00"),
        "outside command group",
    )
