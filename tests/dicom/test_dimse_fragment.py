"""Fragmentation of outgoing messages to the peer's maximum PDU length (PS3.8 9.3.5, E.2)."""

from __future__ import annotations

import struct

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from archive.dicom.dimse import (
    UNLIMITED_PDU,
    CEchoRq,
    CEchoRsp,
    CGetRsp,
    Command,
    CommandReceived,
    CStoreRq,
    DatasetFragment,
    MessageAssembler,
    command_pdus,
    dataset_pdus,
    encode_command,
    message_pdus,
)
from archive.dicom.errors import LocalProtocolError
from archive.dicom.ul.pdata import MCH_COMMAND, MCH_LAST, Pdv, decode_p_data, encode_p_data

ECHO = CEchoRq(message_id=1, affected_sop_class_uid="1.2.840.10008.1.1")
STORE = CStoreRq(
    message_id=7,
    affected_sop_class_uid="1.2.840.10008.5.1.4.1.1.2",
    affected_sop_instance_uid="1.2.826.0.1.3680043.8.498.12345678901234567890",
)
# A long command, so small limits split the command set too.
LONG = CGetRsp(
    message_id_being_responded_to=4,
    status=0xC000,
    affected_sop_class_uid="1.2.840.10008.5.1.4.1.2.2.3",
    number_of_remaining_suboperations=0,
    number_of_completed_suboperations=10,
    number_of_failed_suboperations=2,
    number_of_warning_suboperations=0,
    offending_element=(0x00100010, 0x00100020, 0x0020000D),
    error_comment="x" * 64,
)


def split_stream(chunks: list[bytes | memoryview], max_pdu: int) -> list[Pdv]:
    """Parse what a transport would write; check every PDU against the limit."""
    stream = b"".join(bytes(c) for c in chunks)
    limit = max_pdu or UNLIMITED_PDU
    pdvs: list[Pdv] = []
    offset = 0
    while offset < len(stream):
        pdu_type, reserved, length = struct.unpack_from(">BBL", stream, offset)
        assert (pdu_type, reserved) == (0x04, 0)
        assert 6 <= length <= limit  # PS3.8 9.3.5: the variable field
        body = memoryview(stream)[offset + 6 : offset + 6 + length]
        assert len(body) == length
        items = decode_p_data(body)
        if len(items) == 2:
            # A small message: its whole command set, then its whole data set.
            first, second = items
            assert (first.is_command, first.is_last) == (True, True)
            assert (second.is_command, second.is_last) == (False, True)
        else:
            assert len(items) == 1  # otherwise one PDV per PDU
        pdvs.extend(items)
        offset += 6 + length
    return pdvs


def reassemble(pdvs: list[Pdv]) -> tuple[Command, bytes | None]:
    asm = MessageAssembler()
    command: Command | None = None
    data: bytes | None = None
    for item in pdvs:
        event = asm.receive(item)
        if isinstance(event, CommandReceived):
            command = event.command
        elif isinstance(event, DatasetFragment):
            data = (data or b"") + event.data
    assert command is not None
    assert not asm.expecting_dataset
    return command, data


def check_control_bits(pdvs: list[Pdv], last: bool = True) -> None:
    commands = [p for p in pdvs if p.is_command]
    datasets = [p for p in pdvs if not p.is_command]
    assert pdvs[: len(commands)] == commands  # command set first
    assert [p.is_last for p in commands] == [False] * (len(commands) - 1) + [True]
    if datasets:
        assert [p.is_last for p in datasets] == [False] * (len(datasets) - 1) + [last]


# --- the hot path ------------------------------------------------------------


def test_small_command_is_one_bytes_object() -> None:
    pdus = command_pdus(1, ECHO, 16384)
    assert len(pdus) == 1
    assert type(pdus[0]) is bytes
    assert pdus[0] == encode_p_data(1, MCH_COMMAND | MCH_LAST, encode_command(ECHO))


def test_c_echo_rsp_exact_bytes() -> None:
    rsp = CEchoRsp(
        message_id_being_responded_to=1, status=0, affected_sop_class_uid="1.2.840.10008.1.1"
    )
    (pdu,) = message_pdus(3, rsp, None, 0)
    raw = encode_command(rsp)
    assert pdu == (
        b"\x04\x00"
        + (len(raw) + 6).to_bytes(4, "big")  # P-DATA-TF, reserved, PDU length
        + (len(raw) + 2).to_bytes(4, "big")  # PDV item length
        + b"\x03\x03"  # context 3; MCH: command | last
        + raw
    )


def test_small_message_is_one_pdu_of_two_pdvs() -> None:
    rsp = CGetRsp(message_id_being_responded_to=2, status=0xFF00, has_dataset=True)
    data = b"\x08\x00\x52\x00\x06\x00STUDY "
    (pdu,) = message_pdus(5, rsp, data, 16384)
    raw = encode_command(rsp)
    assert pdu == (
        b"\x04\x00"
        + (len(raw) + len(data) + 12).to_bytes(4, "big")
        + (len(raw) + 2).to_bytes(4, "big")
        + b"\x05\x03"  # command | last
        + raw
        + (len(data) + 2).to_bytes(4, "big")
        + b"\x05\x02"  # data set, last
        + data
    )
    assert reassemble(decode_p_data(memoryview(pdu)[6:])) == (rsp, data)


def test_small_message_over_the_limit_is_split() -> None:
    rsp = CGetRsp(message_id_being_responded_to=2, status=0xFF00, has_dataset=True)
    data = b"x" * 100
    raw = encode_command(rsp)
    # One byte short of room for both PDVs: command and data set go separately.
    pdus = message_pdus(5, rsp, data, len(raw) + len(data) + 11)
    assert [len(decode_p_data(memoryview(p)[6:])) for p in _whole(pdus)] == [1, 1]


def _whole(chunks: list[bytes | memoryview]) -> list[bytes]:
    stream = b"".join(bytes(c) for c in chunks)
    out, offset = [], 0
    while offset < len(stream):
        length = struct.unpack_from(">L", stream, offset + 2)[0]
        out.append(stream[offset : offset + 6 + length])
        offset += 6 + length
    return out


def test_command_exactly_filling_a_pdu() -> None:
    raw = encode_command(ECHO)
    assert len(command_pdus(1, ECHO, len(raw) + 6)) == 1
    pdus = command_pdus(1, ECHO, len(raw) + 5)
    assert len(pdus) == 2
    assert all(type(p) is bytes for p in pdus)
    pdvs = split_stream(list(pdus), len(raw) + 5)
    check_control_bits(pdvs)
    assert reassemble(pdvs) == (ECHO, None)


# --- data sets: no copies ----------------------------------------------------


def test_dataset_pdus_are_headers_and_views() -> None:
    data = bytes(range(256)) * 40
    out = dataset_pdus(5, data, True, 1000)
    headers, views = out[0::2], out[1::2]
    assert all(type(h) is bytes and len(h) == 12 for h in headers)
    assert all(isinstance(v, memoryview) and v.obj is data for v in views)
    assert b"".join(views) == data
    assert [len(v) for v in views] == [994] * 10 + [len(data) - 9940]
    pdvs = split_stream(out, 1000)
    assert [p.control for p in pdvs] == [0] * 10 + [MCH_LAST]
    assert {p.context_id for p in pdvs} == {5}


def test_dataset_not_last_has_no_last_bit() -> None:
    pdvs = split_stream(dataset_pdus(1, bytes(5000), False, 1024), 1024)
    assert [p.control for p in pdvs] == [0] * 5


def test_dataset_views_of_a_memoryview_slice() -> None:
    buffer = bytearray(b"ab" * 3000)
    view = memoryview(buffer)[100:5100]
    out = dataset_pdus(1, view, True, 2000)
    assert all(v.obj is buffer for v in out[1::2])  # type: ignore[union-attr]
    assert b"".join(out[1::2]) == bytes(view)


def test_dataset_from_a_non_byte_memoryview() -> None:
    words = memoryview(bytearray(64)).cast("H")
    out = dataset_pdus(1, words, True, 40)
    assert b"".join(out[1::2]) == bytes(64)
    assert [len(v) for v in out[1::2]] == [34, 30]


def test_empty_dataset() -> None:
    assert dataset_pdus(1, b"", False, 100) == []
    (header,) = dataset_pdus(1, b"", True, 100)
    assert header == b"\x04\x00\x00\x00\x00\x06\x00\x00\x00\x02\x01\x02"
    assert split_stream([header], 100)[0].control == MCH_LAST


def test_fragments_are_even_when_possible() -> None:
    out = dataset_pdus(1, bytes(100), True, 6 + 15)
    assert [len(v) for v in out[1::2]] == [14] * 7 + [2]
    # A 7-byte limit leaves one data byte per PDU: odd, but legal.
    out = dataset_pdus(1, b"abc", True, 7)
    assert [bytes(v) for v in out[1::2]] == [b"a", b"b", b"c"]


def test_unlimited_is_capped() -> None:
    data = bytes(2 * UNLIMITED_PDU + 10)
    out = dataset_pdus(1, data, True, 0)
    assert [len(v) for v in out[1::2]] == [UNLIMITED_PDU - 6] * 2 + [22]
    assert len(split_stream(out, 0)) == 3


@pytest.mark.parametrize("max_pdu", [1, 2, 5, 6])
def test_limit_too_small_for_any_data(max_pdu: int) -> None:
    with pytest.raises(LocalProtocolError, match=f"maximum PDU length {max_pdu} leaves no room"):
        dataset_pdus(1, b"x", True, max_pdu)
    with pytest.raises(LocalProtocolError, match="leaves no room"):
        command_pdus(1, ECHO, max_pdu)


# --- whole messages ----------------------------------------------------------


def test_message_pdus_checks_has_dataset() -> None:
    with pytest.raises(
        LocalProtocolError, match=r"CStoreRq.has_dataset is True but a data set was not given"
    ):
        message_pdus(1, STORE, None, 0)
    with pytest.raises(
        LocalProtocolError, match=r"CEchoRq.has_dataset is False but a data set was given"
    ):
        message_pdus(1, ECHO, b"", 0)


def test_message_with_empty_dataset() -> None:
    pdvs = split_stream(message_pdus(1, STORE, b"", 0), 0)
    assert [p.control for p in pdvs] == [MCH_COMMAND | MCH_LAST, MCH_LAST]
    assert reassemble(pdvs) == (STORE, b"")


_MESSAGES = st.sampled_from([(ECHO, None), (STORE, True), (LONG, None), (LONG, True)])


@settings(max_examples=300, deadline=None)
@given(
    _MESSAGES,
    st.one_of(st.just(0), st.integers(16, 10000)),
    st.binary(max_size=20000),
    st.sampled_from([1, 7, 129, 255]),
)
def test_messages_round_trip_through_the_assembler(
    message: tuple[Command, bool | None], max_pdu: int, data: bytes, context_id: int
) -> None:
    command, has_data = message
    if has_data:
        command = msgspec.structs.replace(command, has_dataset=True)
    dataset = data if has_data else None
    out = message_pdus(context_id, command, dataset, max_pdu)
    pdvs = split_stream(out, max_pdu)
    assert {p.context_id for p in pdvs} == {context_id}
    check_control_bits(pdvs)
    assert reassemble(pdvs) == (command, dataset)
    limit = (max_pdu or UNLIMITED_PDU) - 6
    assert len([p for p in pdvs if p.is_command]) == max(
        1, -(-len(encode_command(command)) // (limit & ~1))
    )


@settings(max_examples=200, deadline=None)
@given(st.integers(16, 10000), st.binary(max_size=20000), st.booleans())
def test_dataset_pdus_bound_and_bits(max_pdu: int, data: bytes, last: bool) -> None:
    out = dataset_pdus(3, data, last, max_pdu)
    if not data and not last:
        assert out == []
        return
    pdvs = split_stream(out, max_pdu)
    assert b"".join(p.data for p in pdvs) == data
    assert [p.is_last for p in pdvs] == [False] * (len(pdvs) - 1) + [last]
    assert not any(p.is_command for p in pdvs)
    assert all(len(p.data) % 2 == 0 for p in pdvs[:-1])


def test_small_message_counts_bytes_of_a_wide_memoryview() -> None:
    """A data set handed over as a view of 16-bit items: lengths are in bytes."""
    rsp = CGetRsp(message_id_being_responded_to=2, status=0xFF00, has_dataset=True)
    data = memoryview(bytes(range(40))).cast("H")  # 20 items, 40 bytes
    (pdu,) = message_pdus(5, rsp, data, 16384)
    assert reassemble(decode_p_data(memoryview(pdu)[6:])) == (rsp, bytes(range(40)))
