"""DIMSE command set codec: round trips, tolerance, errors, fuzz and statuses.

Round trips and agreement with the pydicom oracle over arbitrary commands
(hypothesis); what a decoder tolerates from peers (PS3.7 6.3.1); every decode error
as ``RemoteProtocolError`` with a DIMSE abort and every encode error as
``LocalProtocolError``; fuzzing; status categories (PS3.7 Annex C). The golden
vectors are tested in ``test_dimse_vectors``.
"""

from __future__ import annotations

import struct
from typing import Any

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from archive.dicom.dimse import (
    CEchoRq,
    CEchoRsp,
    CFindRsp,
    CMoveRq,
    Command,
    CommandField,
    CStoreRsp,
    Status,
    StatusCategory,
    category,
    decode_command,
    encode_command,
)
from archive.dicom.errors import LocalProtocolError, RemoteProtocolError
from tests.dicom.dimse_vectors import (
    C_CANCEL_RQ,
    C_ECHO_RQ,
    C_ECHO_RSP,
    C_FIND_RQ,
    C_MOVE_RQ,
    C_STORE_RQ,
    DIMSE_ABORT,
    MESSAGE_TYPES,
    N_ACTION_RQ,
    N_EVENT_REPORT_RQ,
    VECTORS,
    element,
    oracle_encode,
    us,
)

# --- round trips -------------------------------------------------------------

_UID = st.text(alphabet="0123456789.", max_size=64)
_AE = st.text(
    alphabet=st.characters(min_codepoint=0x20, max_codepoint=0x7E, exclude_characters="\\"),
    max_size=16,
).filter(lambda s: s == s.strip(" "))
_LO = st.text(
    alphabet=st.characters(min_codepoint=0x20, max_codepoint=0xFF, exclude_characters="\\"),
    max_size=64,
).filter(lambda s: s == s.strip(" "))
_US = st.integers(0, 0xFFFF)
_TAGS = st.lists(st.integers(0, 0xFFFFFFFF), min_size=1, max_size=4).map(tuple)


def _field_strategy(name: str) -> st.SearchStrategy[Any]:
    if name.endswith("_uid"):
        return _UID
    if name in ("move_destination", "move_originator_ae"):
        return _AE
    if name == "error_comment":
        return _LO
    if name == "offending_element":
        return _TAGS
    if name == "has_dataset":
        return st.booleans()
    return _US


def _command_strategy(cls: type[Any]) -> st.SearchStrategy[Command]:
    kwargs = {}
    for field in msgspec.structs.fields(cls):
        base = _field_strategy(field.name)
        kwargs[field.name] = st.none() | base if field.default is None else base
    return st.builds(cls, **kwargs)


COMMANDS = st.one_of([_command_strategy(cls) for cls in MESSAGE_TYPES])


@settings(max_examples=400, deadline=None)
@given(COMMANDS)
def test_decode_inverts_encode(cmd: Command) -> None:
    raw = encode_command(cmd)
    assert len(raw) % 2 == 0
    assert struct.unpack_from("<L", raw, 8)[0] == len(raw) - 12  # group length
    assert decode_command(raw) == cmd


@settings(max_examples=150, deadline=None)
@given(COMMANDS)
def test_encode_agrees_with_oracle(cmd: Command) -> None:
    assert encode_command(cmd) == oracle_encode(cmd)


# --- tolerance ---------------------------------------------------------------

ECHO_BODY = (
    element(0x0002, b"1.2.840.10008.1.1\0")
    + us(0x0100, 0x0030)
    + us(0x0110, 1)
    + us(0x0800, 0x0101)
)
ECHO = CEchoRq(message_id=1, affected_sop_class_uid="1.2.840.10008.1.1")


def test_absent_group_length_is_accepted() -> None:
    assert decode_command(ECHO_BODY) == ECHO


def test_wrong_group_length_value_is_ignored() -> None:
    assert decode_command(element(0x0000, struct.pack("<L", 3)) + ECHO_BODY) == ECHO


def test_unknown_and_retired_tags_are_ignored() -> None:
    raw = (
        element(0x0001, struct.pack("<L", 1234))  # retired Length to End
        + ECHO_BODY
        + element(0x4000, b"ABCD")  # retired Dialog Receiver
        + element(0x5010, b"X ")  # retired Message Set ID
        + element(0xFFFE, b"")  # unknown
    )
    assert decode_command(raw) == ECHO


def test_known_tags_foreign_to_the_message_are_ignored() -> None:
    # Priority and Move Destination mean nothing in a C-ECHO-RQ.
    raw = ECHO_BODY + us(0x0700, 2) + element(0x0600, b"XY")
    assert decode_command(raw) == ECHO


def test_elements_out_of_order_are_accepted() -> None:
    raw = us(0x0800, 0x0101) + us(0x0110, 1) + element(0x0002, b"1.2.840.10008.1.1\0")
    assert decode_command(raw + us(0x0100, 0x0030)) == ECHO


def test_padding_variants_are_stripped() -> None:
    raw = (
        element(0x0002, b"1.2.840.10008.5.1.4.1.2.2.2 ")  # UID space-padded by the peer
        + us(0x0100, 0x0021)
        + us(0x0110, 5)
        + element(0x0600, b" ARCHIVE\0\0")  # leading space, NUL padded
        + us(0x0700, 0)
        + us(0x0800, 0x0102)  # any value but 0x0101 means a data set follows
    )
    cmd = decode_command(raw)
    assert cmd == CMoveRq(
        message_id=5,
        affected_sop_class_uid="1.2.840.10008.5.1.4.1.2.2.2",
        move_destination="ARCHIVE",
    )


def test_non_ascii_text_is_kept_byte_exact() -> None:
    # Latin-1 both ways: a peer's stray byte is echoed back as sent, never an error.
    raw = (
        element(0x0002, b"1.2.\xe9\0")
        + us(0x0100, 0x8030)
        + us(0x0120, 1)
        + us(0x0800, 0x0101)
        + us(0x0900, 0)
        + element(0x0902, b"caf\xe9s ")
    )
    cmd = decode_command(raw)
    assert isinstance(cmd, CEchoRsp)
    assert cmd.affected_sop_class_uid == "1.2.\xe9"
    assert cmd.error_comment == "caf\xe9s"
    assert encode_command(cmd)[12:] == raw


def test_empty_text_value_is_empty_string() -> None:
    raw = element(0x0002, b"") + us(0x0100, 0x0030) + us(0x0110, 1) + us(0x0800, 0x0101)
    assert decode_command(raw) == CEchoRq(message_id=1, affected_sop_class_uid="")


# --- decode errors -----------------------------------------------------------


def _assert_rejected(raw: bytes, match: str) -> None:
    with pytest.raises(RemoteProtocolError, match=match) as info:
        decode_command(raw)
    assert info.value.abort == DIMSE_ABORT
    assert info.value.reject is None


def test_truncated_element_header() -> None:
    _assert_rejected(ECHO_BODY + b"\0\0\0", "truncated element header at offset 56")


def test_value_overruns_buffer() -> None:
    _assert_rejected(C_ECHO_RQ[:-1], r"\(0000,0800\) value length 2 overruns")
    _assert_rejected(element(0x0002, b"1.2")[:-1], r"\(0000,0002\) value length 3 overruns")


def test_undefined_length_overruns() -> None:
    raw = struct.pack("<HHL", 0, 0x0902, 0xFFFFFFFF) + ECHO_BODY
    _assert_rejected(raw, r"value length 4294967295 overruns")


def test_tag_outside_group_0000() -> None:
    raw = ECHO_BODY + struct.pack("<HHL", 0x0008, 0x0016, 2) + b"1\0"
    _assert_rejected(raw, r"\(0008,0016\) is outside command group 0000")


def test_no_command_field() -> None:
    _assert_rejected(element(0x0002, b"1.2\0") + us(0x0110, 1), r"no Command Field")
    _assert_rejected(b"", r"no Command Field")


@pytest.mark.parametrize("field", [0x0000, 0x0002, 0x0110, 0x0150, 0x0FFE, 0x8FFF, 0xFFFF])
def test_unknown_command_field(field: int) -> None:
    raw = element(0x0002, b"1.2\0") + us(0x0100, field) + us(0x0110, 1) + us(0x0800, 0x0101)
    _assert_rejected(raw, f"unknown Command Field 0x{field:04X}")


@pytest.mark.parametrize(
    ("vector", "missing", "name"),
    [
        (C_ECHO_RQ, 0x0002, "affected_sop_class_uid"),
        (C_ECHO_RQ, 0x0110, "message_id"),
        (C_ECHO_RQ, 0x0800, "has_dataset"),
        (C_ECHO_RSP, 0x0120, "message_id_being_responded_to"),
        (C_ECHO_RSP, 0x0900, "status"),
        (C_STORE_RQ, 0x0700, "priority"),
        (C_STORE_RQ, 0x1000, "affected_sop_instance_uid"),
        (C_FIND_RQ, 0x0700, "priority"),
        (C_MOVE_RQ, 0x0600, "move_destination"),
        (C_CANCEL_RQ, 0x0120, "message_id_being_responded_to"),
        (N_EVENT_REPORT_RQ, 0x1002, "event_type_id"),
        (N_ACTION_RQ, 0x0003, "requested_sop_class_uid"),
        (N_ACTION_RQ, 0x1001, "requested_sop_instance_uid"),
        (N_ACTION_RQ, 0x1008, "action_type_id"),
    ],
)
def test_missing_mandatory_field(vector: bytes, missing: int, name: str) -> None:
    kept = b""
    offset = 12  # past the group length
    while offset < len(vector):
        _, tag_element, length = struct.unpack_from("<HHL", vector, offset)
        if tag_element != missing:
            kept += vector[offset : offset + 8 + length]
        offset += 8 + length
    cls = type(decode_command(vector)).__name__
    _assert_rejected(kept, rf"{cls} lacks mandatory \(0000,{missing:04X}\) {name}")


def test_optional_fields_may_be_absent() -> None:
    raw = us(0x0100, 0x8001) + us(0x0120, 7) + us(0x0800, 0x0101) + us(0x0900, 0xA700)
    assert decode_command(raw) == CStoreRsp(message_id_being_responded_to=7, status=0xA700)


@pytest.mark.parametrize("length", [0, 1, 3, 4])
def test_us_value_of_wrong_length(length: int) -> None:
    raw = element(0x0002, b"1.2\0") + us(0x0100, 0x0030) + us(0x0800, 0x0101)
    _assert_rejected(
        raw + element(0x0110, b"\1" * length), rf"\(0000,0110\) US has value length {length}"
    )


def test_command_field_of_wrong_length() -> None:
    _assert_rejected(element(0x0100, b"\x30\0\0\0"), r"\(0000,0100\) US has value length 4")


@pytest.mark.parametrize("length", [0, 2, 3, 8])
def test_group_length_of_wrong_length(length: int) -> None:
    _assert_rejected(
        element(0x0000, b"\0" * length) + ECHO_BODY, rf"\(0000,0000\) UL has value length {length}"
    )


@pytest.mark.parametrize("length", [0, 2, 6])
def test_at_value_of_wrong_length(length: int) -> None:
    raw = us(0x0100, 0x8001) + us(0x0120, 7) + us(0x0800, 0x0101) + us(0x0900, 0xC000)
    _assert_rejected(
        raw + element(0x0901, b"\x10\0" * (length // 2)),
        rf"\(0000,0901\) AT has value length {length}",
    )


def test_wrong_length_in_an_ignored_element_is_ignored() -> None:
    # Only the elements the message type defines are interpreted.
    assert decode_command(ECHO_BODY + element(0x0900, b"\0\0\0\0")) == ECHO


# --- fuzz --------------------------------------------------------------------


def _decode_or_reject(raw: bytes) -> None:
    error: RemoteProtocolError | None = None
    try:
        result = decode_command(raw)
    except RemoteProtocolError as exc:
        error = exc
    if error is not None:
        assert error.abort == DIMSE_ABORT
    else:
        assert isinstance(result, MESSAGE_TYPES_TUPLE)


MESSAGE_TYPES_TUPLE = tuple(MESSAGE_TYPES)


@settings(max_examples=500, deadline=None)
@given(st.binary(max_size=256))
def test_fuzz_arbitrary_bytes(raw: bytes) -> None:
    _decode_or_reject(raw)


_ELEMENT_NUMBERS = st.sampled_from(
    [
        0x0000,
        0x0001,
        0x0002,
        0x0003,
        0x0100,
        0x0110,
        0x0120,
        0x0600,
        0x0700,
        0x0800,
        0x0900,
        0x0901,
        0x0902,
        0x0903,
        0x1000,
        0x1001,
        0x1002,
        0x1008,
        0x1020,
        0x1021,
        0x1022,
        0x1023,
        0x1030,
        0x1031,
        0x5010,
    ]
)
_FUZZ_ELEMENT = st.one_of(
    st.builds(element, _ELEMENT_NUMBERS, st.binary(max_size=12)),
    st.builds(us, st.just(0x0100), st.sampled_from([int(f) for f in CommandField])),
    st.builds(us, st.sampled_from([0x0800, 0x0110, 0x0120, 0x0900, 0x0700]), _US),
)


@settings(max_examples=500, deadline=None)
@given(st.lists(_FUZZ_ELEMENT, max_size=14).map(b"".join))
def test_fuzz_well_framed_elements(raw: bytes) -> None:
    _decode_or_reject(raw)


@settings(max_examples=500, deadline=None)
@given(
    st.sampled_from([v for v, _ in VECTORS]),
    st.lists(st.tuples(st.integers(0, 300), st.integers(0, 255)), min_size=1, max_size=4),
    st.integers(0, 300),
)
def test_fuzz_mutated_vectors(vector: bytes, flips: list[tuple[int, int]], cut: int) -> None:
    raw = bytearray(vector)
    for position, value in flips:
        raw[position % len(raw)] = value
    _decode_or_reject(bytes(raw[: len(raw) - cut % len(raw)]))
    _decode_or_reject(bytes(raw))


# --- encode errors -----------------------------------------------------------


@pytest.mark.parametrize(
    ("cmd", "match"),
    [
        (CEchoRq(message_id=0x10000, affected_sop_class_uid="1.2"), "cannot encode CEchoRq"),
        (CEchoRq(message_id=-1, affected_sop_class_uid="1.2"), "cannot encode CEchoRq"),
        (
            CEchoRsp(message_id_being_responded_to=1, status=0, error_comment="\u20ac"),
            "cannot encode CEchoRsp",
        ),
        (
            CStoreRsp(message_id_being_responded_to=1, status=0xC000, offending_element=()),
            r"\(0000,0901\) AT needs at least one tag",
        ),
        (
            CStoreRsp(message_id_being_responded_to=1, status=0xC000, offending_element=(1 << 32,)),
            "cannot encode CStoreRsp",
        ),
    ],
)
def test_unencodable_values(cmd: Command, match: str) -> None:
    with pytest.raises(LocalProtocolError, match=match):
        encode_command(cmd)


def test_encode_rejects_non_command() -> None:
    with pytest.raises(LocalProtocolError, match="not a DIMSE command record: str"):
        encode_command("C-ECHO")  # type: ignore[arg-type]


def test_has_dataset_encodings() -> None:
    # PS3.7 E.1: 0x0101 means no data set; we send 0x0001 otherwise.
    assert encode_command(ECHO)[-2:] == b"\x01\x01"
    assert encode_command(msgspec.structs.replace(ECHO, has_dataset=True))[-2:] == b"\x01\x00"


def test_records_are_frozen_and_hashable() -> None:
    with pytest.raises(AttributeError):
        ECHO.message_id = 2  # type: ignore[misc]
    assert hash(ECHO) == hash(CEchoRq(message_id=1, affected_sop_class_uid="1.2.840.10008.1.1"))


# --- status ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "expected"),
    [
        (0x0000, StatusCategory.SUCCESS),
        (0xFF00, StatusCategory.PENDING),
        (0xFF01, StatusCategory.PENDING),
        (0xFE00, StatusCategory.CANCEL),
        (0x0001, StatusCategory.WARNING),
        (0x0107, StatusCategory.WARNING),
        (0x0116, StatusCategory.WARNING),
        (0xB000, StatusCategory.WARNING),
        (0xB006, StatusCategory.WARNING),
        (0xB007, StatusCategory.WARNING),
        (0xBFFF, StatusCategory.WARNING),
        (0xA700, StatusCategory.FAILURE),
        (0xA7FF, StatusCategory.FAILURE),
        (0xA701, StatusCategory.FAILURE),
        (0xA702, StatusCategory.FAILURE),
        (0xA801, StatusCategory.FAILURE),
        (0xA900, StatusCategory.FAILURE),
        (0xA9FF, StatusCategory.FAILURE),
        (0xC000, StatusCategory.FAILURE),
        (0xCFFF, StatusCategory.FAILURE),
        (0x0110, StatusCategory.FAILURE),
        (0x0111, StatusCategory.FAILURE),
        (0x0112, StatusCategory.FAILURE),
        (0x0117, StatusCategory.FAILURE),
        (0x0118, StatusCategory.FAILURE),
        (0x0119, StatusCategory.FAILURE),
        (0x0122, StatusCategory.FAILURE),
        (0x0124, StatusCategory.FAILURE),
        (0x0210, StatusCategory.FAILURE),
        (0x0211, StatusCategory.FAILURE),
        (0x0212, StatusCategory.FAILURE),
        (0x0213, StatusCategory.FAILURE),
        (0xFF02, StatusCategory.FAILURE),  # undefined: never mistaken for a good one
        (0x0002, StatusCategory.FAILURE),
        (0xFE01, StatusCategory.FAILURE),
    ],
)
def test_status_category(status: int, expected: StatusCategory) -> None:
    assert category(status) is expected


def test_status_values() -> None:
    assert int(Status.MOVE_DESTINATION_UNKNOWN) == 0xA801
    assert int(Status.OUT_OF_RESOURCES_SUBOPERATIONS) == 0xA702
    assert int(Status.DUPLICATE_SOP_INSTANCE) == 0x0111
    assert Status(0xB000).name == "COERCION_OF_DATA_ELEMENTS"  # the C-GET/C-MOVE name is an alias
    assert Status["SUBOPERATIONS_COMPLETE_WITH_FAILURES"] == 0xB000
    assert {category(s) for s in Status} == set(StatusCategory)


def test_status_categories_agree_with_pynetdicom() -> None:
    from pynetdicom.status import code_to_category

    for status in range(0x10000):
        theirs = code_to_category(status)
        if theirs != "Unknown":
            assert category(status).value == theirs.lower(), hex(status)


def test_a_reused_buffer_is_decoded_afresh() -> None:
    """Decoded command sets are remembered by their bytes, never by the buffer:
    a receive buffer refilled with another command decodes to that command."""
    first = CFindRsp(message_id_being_responded_to=1, status=0xFF00, has_dataset=True)
    second = CFindRsp(message_id_being_responded_to=2, status=0xFF00, has_dataset=True)
    buffer = bytearray(encode_command(first))
    assert decode_command(buffer) == first
    buffer[:] = encode_command(second)
    assert decode_command(memoryview(buffer)) == second
    assert decode_command(encode_command(first)) == first
    # Encoding is remembered by value: equal records, equal bytes.
    assert encode_command(CFindRsp(message_id_being_responded_to=2, status=0xFF00,
                                   has_dataset=True)) == bytes(buffer)  # fmt: skip
