"""Malformed PDUs and unsendable records: the exact error each one gives (PS3.8 9.3).

Received malformations raise RemoteProtocolError carrying the A-ABORT (source,
reason) to send; unsendable local values raise LocalProtocolError. The fuzz
tests check that nothing else ever escapes the decoder.
"""

from __future__ import annotations

import contextlib
import struct

import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from archive.dicom.errors import (
    AbortReason,
    AbortSource,
    LocalProtocolError,
    RejectReason,
    RejectResult,
    RejectSource,
    RemoteProtocolError,
)
from archive.dicom.ul.codec import decode, decode_body, encode, parse_header
from archive.dicom.ul.pdata import Pdv
from archive.dicom.ul.pdu import (
    AAbort,
    AAssociateAc,
    AAssociateRj,
    AAssociateRq,
    AsyncOperationsWindow,
    ContextResult,
    PDataTf,
    Pdu,
    PresentationContextAc,
    PresentationContextRq,
    RoleSelection,
    SopClassCommonExtended,
    UserIdentityRq,
    UserInformation,
)
from tests.dicom.strategies import pdus
from tests.dicom.test_codec_vectors import VECTORS

INVALID = (AbortSource.SERVICE_PROVIDER, AbortReason.INVALID_PDU_PARAMETER)
UNRECOGNIZED_PDU = (AbortSource.SERVICE_PROVIDER, AbortReason.UNRECOGNIZED_PDU)

APP_CONTEXT = b"1.2.840.10008.3.1.1.1"
VERIFICATION = b"1.2.840.10008.1.1"
IMPLICIT_LE = b"1.2.840.10008.1.2"


def item(item_type: int, value: bytes) -> bytes:
    return struct.pack(">BxH", item_type, len(value)) + value


def pdu(pdu_type: int, body: bytes) -> bytes:
    return struct.pack(">BxL", pdu_type, len(body)) + body


def fixed(called: bytes = b"ANY-SCP", calling: bytes = b"ECHOSCU") -> bytes:
    """Protocol version 1, reserved, AE titles, 32 reserved bytes."""
    return b"\x00\x01\x00\x00" + called.ljust(16) + calling.ljust(16) + bytes(32)


def context_rq(context_id: int = 1, *subs: bytes) -> bytes:
    if not subs:
        subs = (item(0x30, VERIFICATION), item(0x40, IMPLICIT_LE))
    return item(0x20, bytes((context_id, 0, 0, 0)) + b"".join(subs))


def context_ac(context_id: int = 1, result: int = 0, *subs: bytes) -> bytes:
    if not subs:
        subs = (item(0x40, IMPLICIT_LE),)
    return item(0x21, bytes((context_id, 0, result, 0)) + b"".join(subs))


def user_info(*subs: bytes) -> bytes:
    if not subs:
        subs = (item(0x51, b"\x00\x00\x40\x00"),)
    return item(0x50, b"".join(subs))


def rq(*items: bytes, head: bytes | None = None) -> bytes:
    if not items:
        items = (item(0x10, APP_CONTEXT), context_rq(), user_info())
    return pdu(0x01, (fixed() if head is None else head) + b"".join(items))


def ac(*items: bytes) -> bytes:
    if not items:
        items = (item(0x10, APP_CONTEXT), context_ac(), user_info())
    return pdu(0x02, fixed() + b"".join(items))


def rq_with_user_info(*subs: bytes) -> bytes:
    return rq(item(0x10, APP_CONTEXT), context_rq(), user_info(*subs))


def test_builders_make_valid_pdus() -> None:
    """The helpers below only break what each case says they break."""
    assert isinstance(decode(rq()), AAssociateRq)
    assert isinstance(decode(ac()), AAssociateAc)


def assert_remote(data: bytes, abort: tuple[AbortSource, AbortReason] = INVALID) -> None:
    with pytest.raises(RemoteProtocolError) as info:
        decode(data)
    assert info.value.abort == abort
    assert info.value.reject is None


# ---- PDU header and fixed-size PDUs --------------------------------------------------


@pytest.mark.parametrize("pdu_type", [0x00, 0x08, 0x10, 0x50, 0xFF])
def test_unknown_pdu_type(pdu_type: int) -> None:
    data = pdu(pdu_type, b"\x00\x00\x00\x00")
    with pytest.raises(RemoteProtocolError) as info:
        parse_header(b"xx" + data, 2)
    assert info.value.abort == UNRECOGNIZED_PDU
    assert_remote(data, UNRECOGNIZED_PDU)
    with pytest.raises(RemoteProtocolError) as info:
        decode_body(pdu_type, memoryview(data)[6:])
    assert info.value.abort == UNRECOGNIZED_PDU


@pytest.mark.parametrize("data", [b"", b"\x05", b"\x05\x00\x00\x00\x00"])
def test_shorter_than_a_header(data: bytes) -> None:
    assert_remote(data)


@pytest.mark.parametrize(
    "data",
    [
        b"\x05\x00\x00\x00\x00\x04\x00\x00\x00",  # one byte missing
        b"\x05\x00\x00\x00\x00\x04\x00\x00\x00\x00\x00",  # one byte extra
        b"\x05\x00\xff\xff\xff\xff\x00\x00\x00\x00",  # absurd length
    ],
)
def test_length_does_not_match_the_bytes(data: bytes) -> None:
    assert_remote(data)


@pytest.mark.parametrize("pdu_type", [0x03, 0x05, 0x06, 0x07])
@pytest.mark.parametrize("size", [0, 3, 5, 10])
def test_fixed_size_pdu_with_wrong_length(pdu_type: int, size: int) -> None:
    assert_remote(pdu(pdu_type, bytes(size)))


def test_fixed_size_pdus_ignore_reserved_bytes() -> None:
    """Reserved fields are not tested on receipt (PS3.8 Tables 9-21, 9-24, 9-25, 9-26)."""
    assert decode(pdu(0x03, b"\xff\x01\x02\x01")) == AAssociateRj(1, 2, 1)
    assert decode(pdu(0x07, b"\xff\xff\x02\x01")) == AAbort(2, 1)
    assert type(decode(pdu(0x05, b"\xff" * 4))).__name__ == "AReleaseRq"
    assert type(decode(pdu(0x06, b"\xff" * 4))).__name__ == "AReleaseRp"


@pytest.mark.parametrize(
    "body",
    [
        b"",  # no PDV at all
        b"\x00\x00\x00\x02\x01",  # truncated PDV header
        b"\x00\x00\x00\x09\x01\x03abc",  # PDV overruns the PDU
        b"\x00\x00\x00\x01\x01",  # PDV shorter than its own header
        b"\x00\x00\x00\x03\x02\x03a",  # even presentation context ID
    ],
)
def test_malformed_p_data(body: bytes) -> None:
    assert_remote(pdu(0x04, body))


# ---- A-ASSOCIATE-RQ/AC structure ---------------------------------------------------


def test_association_shorter_than_fixed_fields() -> None:
    assert_remote(pdu(0x01, fixed()[:67]))
    assert_remote(pdu(0x02, fixed()[:40]))


@pytest.mark.parametrize(
    ("name", "data"),
    [
        (
            "truncated item header",
            rq(item(0x10, APP_CONTEXT), context_rq(), user_info(), b"\x10\x00"),
        ),
        ("item overruns PDU", rq(item(0x10, APP_CONTEXT), context_rq(), user_info()[:-1])),
        ("no application context", rq(context_rq(), user_info())),
        (
            "two application contexts",
            rq(item(0x10, APP_CONTEXT), item(0x10, APP_CONTEXT), context_rq(), user_info()),
        ),
        ("no presentation context", rq(item(0x10, APP_CONTEXT), user_info())),
        ("no user information", rq(item(0x10, APP_CONTEXT), context_rq())),
        (
            "two user information items",
            rq(item(0x10, APP_CONTEXT), context_rq(), user_info(), user_info()),
        ),
        ("empty application context", rq(item(0x10, b""), context_rq(), user_info())),
        ("non-ASCII application context", rq(item(0x10, b"1.2\xff"), context_rq(), user_info())),
        (
            "context item too short",
            rq(item(0x10, APP_CONTEXT), item(0x20, b"\x01\x00\x00"), user_info()),
        ),
        ("even context ID", rq(item(0x10, APP_CONTEXT), context_rq(2), user_info())),
        ("context ID 0", rq(item(0x10, APP_CONTEXT), context_rq(0), user_info())),
        (
            "repeated context ID",
            rq(item(0x10, APP_CONTEXT), context_rq(3), context_rq(3), user_info()),
        ),
        (
            "no abstract syntax",
            rq(item(0x10, APP_CONTEXT), context_rq(1, item(0x40, IMPLICIT_LE)), user_info()),
        ),
        (
            "no transfer syntax",
            rq(item(0x10, APP_CONTEXT), context_rq(1, item(0x30, VERIFICATION)), user_info()),
        ),
        (
            "two abstract syntaxes",
            rq(
                item(0x10, APP_CONTEXT),
                context_rq(
                    1, item(0x30, VERIFICATION), item(0x30, VERIFICATION), item(0x40, IMPLICIT_LE)
                ),
                user_info(),
            ),
        ),
        (
            "sub-item overruns its context",
            rq(
                item(0x10, APP_CONTEXT),
                item(0x20, b"\x01\x00\x00\x00" + item(0x30, VERIFICATION)[:-1]),
                user_info(),
            ),
        ),
        (
            "truncated sub-item header",
            rq(
                item(0x10, APP_CONTEXT),
                item(
                    0x20,
                    b"\x01\x00\x00\x00"
                    + item(0x30, VERIFICATION)
                    + item(0x40, IMPLICIT_LE)
                    + b"\x40",
                ),
                user_info(),
            ),
        ),
        (
            "empty transfer syntax",
            rq(
                item(0x10, APP_CONTEXT),
                context_rq(1, item(0x30, VERIFICATION), item(0x40, b"")),
                user_info(),
            ),
        ),
        (
            "non-ASCII abstract syntax",
            rq(
                item(0x10, APP_CONTEXT),
                context_rq(1, item(0x30, b"1.2.\x80"), item(0x40, IMPLICIT_LE)),
                user_info(),
            ),
        ),
    ],
)
def test_malformed_associate_rq(name: str, data: bytes) -> None:
    assert_remote(data)


@pytest.mark.parametrize(
    ("field", "reason"),
    [
        ("called", RejectReason.CALLED_AE_NOT_RECOGNIZED),
        ("calling", RejectReason.CALLING_AE_NOT_RECOGNIZED),
    ],
)
def test_non_ascii_ae_title_in_rq_may_be_rejected(field: str, reason: RejectReason) -> None:
    """While the RQ is examined the driver may answer with A-ASSOCIATE-RJ instead of A-ABORT."""
    bad = "STÖRE".encode("latin-1")
    head = fixed(called=bad) if field == "called" else fixed(calling=bad)
    with pytest.raises(RemoteProtocolError) as info:
        decode(rq(item(0x10, APP_CONTEXT), context_rq(), user_info(), head=head))
    assert info.value.abort == INVALID
    assert info.value.reject == (RejectResult.PERMANENT, RejectSource.SERVICE_USER, reason)


@pytest.mark.parametrize(
    ("name", "data"),
    [
        ("no application context", ac(context_ac(), user_info())),
        (
            "two application contexts",
            ac(item(0x10, APP_CONTEXT), item(0x10, APP_CONTEXT), context_ac(), user_info()),
        ),
        ("no presentation context", ac(item(0x10, APP_CONTEXT), user_info())),
        ("no user information", ac(item(0x10, APP_CONTEXT), context_ac())),
        (
            "two user information items",
            ac(item(0x10, APP_CONTEXT), context_ac(), user_info(), user_info()),
        ),
        (
            "context item too short",
            ac(item(0x10, APP_CONTEXT), item(0x21, b"\x01\x00"), user_info()),
        ),
        ("even context ID", ac(item(0x10, APP_CONTEXT), context_ac(4), user_info())),
        (
            "repeated context ID",
            ac(item(0x10, APP_CONTEXT), context_ac(1), context_ac(1), user_info()),
        ),
        ("result 5", ac(item(0x10, APP_CONTEXT), context_ac(1, 5), user_info())),
        (
            "accepted without transfer syntax",
            ac(item(0x10, APP_CONTEXT), context_ac(1, 0, item(0x55, b"x")), user_info()),
        ),
        (
            "accepted with empty transfer syntax",
            ac(item(0x10, APP_CONTEXT), context_ac(1, 0, item(0x40, b"")), user_info()),
        ),
        (
            "accepted with non-ASCII transfer syntax",
            ac(item(0x10, APP_CONTEXT), context_ac(1, 0, item(0x40, b"\xff")), user_info()),
        ),
        (
            "two transfer syntaxes",
            ac(
                item(0x10, APP_CONTEXT),
                context_ac(1, 0, item(0x40, IMPLICIT_LE), item(0x40, IMPLICIT_LE)),
                user_info(),
            ),
        ),
        (
            "sub-item overruns its context",
            ac(
                item(0x10, APP_CONTEXT),
                item(0x21, b"\x01\x00\x00\x00\x40\x00\x00\x05ab"),
                user_info(),
            ),
        ),
        (
            "truncated sub-item header",
            ac(item(0x10, APP_CONTEXT), item(0x21, b"\x01\x00\x00\x00\x40\x00"), user_info()),
        ),
        ("truncated item header", ac(item(0x10, APP_CONTEXT), context_ac(), user_info(), b"\x50")),
        ("item overruns PDU", ac(item(0x10, APP_CONTEXT), context_ac(), user_info()[:-2])),
    ],
)
def test_malformed_associate_ac(name: str, data: bytes) -> None:
    assert_remote(data)


def test_rejected_ac_context_transfer_syntax_is_not_tested() -> None:
    """PS3.8 9.3.3.2: a rejected context's transfer syntax "shall not be tested"."""
    pdu_ = decode(
        ac(item(0x10, APP_CONTEXT), context_ac(1, 1, item(0x40, b"\xff\xfe")), user_info())
    )
    assert isinstance(pdu_, AAssociateAc)
    assert pdu_.contexts == (PresentationContextAc(1, ContextResult.USER_REJECTION, ""),)


# ---- user information sub-items (PS3.7 D.3.3) ----------------------------------------

_UID = b"1.2.840.10008.5.1.4.1.1.2"


@pytest.mark.parametrize(
    ("name", "subs"),
    [
        ("truncated sub-item header", (item(0x51, b"\x00\x00\x40\x00"), b"\x52\x00")),
        ("sub-item overruns user information", (item(0x52, b"1.2.3")[:-1],)),
        ("max length of 3 bytes", (item(0x51, b"\x00\x40\x00"),)),
        ("max length of 5 bytes", (item(0x51, b"\x00\x00\x00\x40\x00"),)),
        ("two max lengths", (item(0x51, b"\x00\x00\x40\x00"), item(0x51, b"\x00\x00\x40\x00"))),
        ("two implementation class UIDs", (item(0x52, b"1.2"), item(0x52, b"1.2"))),
        ("empty implementation class UID", (item(0x52, b""),)),
        ("non-ASCII implementation class UID", (item(0x52, b"1.2.\xc3\xa9"),)),
        ("non-ASCII version name", (item(0x55, b"V\xe9"),)),
        ("two version names", (item(0x55, b"A"), item(0x55, b"B"))),
        ("async window of 2 bytes", (item(0x53, b"\x00\x01"),)),
        ("two async windows", (item(0x53, b"\x00\x01\x00\x01"), item(0x53, b"\x00\x01\x00\x01"))),
        ("role UID overruns", (item(0x54, b"\x00\x30" + _UID + b"\x00\x01"),)),
        ("role without role bytes", (item(0x54, b"\x00\x19" + _UID),)),
        ("role with extra byte", (item(0x54, b"\x00\x19" + _UID + b"\x00\x01\x00"),)),
        ("role value 2", (item(0x54, b"\x00\x19" + _UID + b"\x02\x01"),)),
        ("role UID length field truncated", (item(0x54, b"\x00"),)),
        ("extended UID overruns", (item(0x56, b"\x00\x40" + _UID),)),
        ("extended empty UID", (item(0x56, b"\x00\x00\x01"),)),
        (
            "common extended service UID overruns",
            (item(0x57, b"\x00\x19" + _UID + b"\x00\x11" + b"1.2"),),
        ),
        (
            "common extended trailing bytes",
            (item(0x57, b"\x00\x03" + b"1.2" + b"\x00\x03" + b"1.2" + b"\x00\x00" + b"x"),),
        ),
        (
            "common extended related UID overruns",
            (
                item(
                    0x57,
                    b"\x00\x03"
                    + b"1.2"
                    + b"\x00\x03"
                    + b"1.2"
                    + b"\x00\x05"
                    + b"\x00\x05"
                    + b"1.2",
                ),
            ),
        ),
        ("identity too short", (item(0x58, b"\x01"),)),
        ("identity primary overruns", (item(0x58, b"\x01\x00\x00\x09abc\x00\x00"),)),
        ("identity without secondary length", (item(0x58, b"\x01\x00\x00\x03abc"),)),
        ("identity with trailing bytes", (item(0x58, b"\x01\x00\x00\x01a\x00\x00z"),)),
        ("identity positive response 2", (item(0x58, b"\x01\x02\x00\x01a\x00\x00"),)),
        (
            "two identities",
            (item(0x58, b"\x01\x00\x00\x01a\x00\x00"), item(0x58, b"\x01\x00\x00\x01a\x00\x00")),
        ),
        ("identity AC response overruns", (item(0x59, b"\x00\x09abc"),)),
        ("identity AC trailing bytes", (item(0x59, b"\x00\x01ab"),)),
        ("identity AC empty", (item(0x59, b""),)),
    ],
)
def test_malformed_user_information(name: str, subs: tuple[bytes, ...]) -> None:
    assert_remote(rq_with_user_info(*subs))


def test_common_extended_without_related_field_is_accepted() -> None:
    """Some peers omit the related-classes length when there are none."""
    pdu_ = decode(rq_with_user_info(item(0x57, b"\x00\x03" + b"1.2" + b"\x00\x03" + b"1.3")))
    assert isinstance(pdu_, AAssociateRq)
    assert pdu_.user_info.common_extended == (SopClassCommonExtended("1.2", "1.3"),)


def test_unknown_sub_items_may_repeat_and_are_kept_in_order() -> None:
    pdu_ = decode(rq_with_user_info(item(0x70, b"a"), item(0x5A, b""), item(0x70, b"b")))
    assert isinstance(pdu_, AAssociateRq)
    assert pdu_.user_info == UserInformation(unknown=((0x70, b"a"), (0x5A, b""), (0x70, b"b")))


# ---- encoding unsendable values ------------------------------------------------------

_CTX = PresentationContextRq(1, "1.2.840.10008.1.1", ("1.2.840.10008.1.2",))
_RQ = AAssociateRq("ANY-SCP", "ECHOSCU", (_CTX,), UserInformation(16384, "1.2.3"))
_AC = AAssociateAc(
    "ANY-SCP",
    "ECHOSCU",
    (PresentationContextAc(1, ContextResult.ACCEPTANCE, "1.2.840.10008.1.2"),),
    UserInformation(16384),
)
_replace = msgspec.structs.replace


def _ui(**fields: object) -> AAssociateRq:
    return _replace(_RQ, user_info=UserInformation(**fields))  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("name", "record"),
    [
        ("AE title of 17", _replace(_RQ, called_ae="A" * 17)),
        ("empty AE title", _replace(_RQ, calling_ae="")),
        ("blank AE title", _replace(_RQ, calling_ae="   ")),
        ("AE title with backslash", _replace(_RQ, called_ae="A\\B")),
        ("AE title with leading space", _replace(_RQ, called_ae=" AE")),
        ("AE title with control character", _replace(_RQ, called_ae="A\nB")),
        ("non-ASCII AE title", _replace(_RQ, called_ae="STÖRE")),
        ("UID of 65", _replace(_RQ, application_context="1." + "2" * 63)),
        ("UID with a letter", _replace(_RQ, application_context="1.2.a")),
        ("empty UID", _replace(_RQ, contexts=(_replace(_CTX, abstract_syntax=""),))),
        ("padded UID", _replace(_RQ, contexts=(_replace(_CTX, abstract_syntax="1.2\x00"),))),
        ("even context ID", _replace(_RQ, contexts=(_replace(_CTX, id=2),))),
        ("context ID 257", _replace(_RQ, contexts=(_replace(_CTX, id=257),))),
        ("context ID -1", _replace(_RQ, contexts=(_replace(_CTX, id=-1),))),
        ("repeated context ID", _replace(_RQ, contexts=(_CTX, _CTX))),
        (
            "context without transfer syntax",
            _replace(_RQ, contexts=(_replace(_CTX, transfer_syntaxes=()),)),
        ),
        ("no context", _replace(_RQ, contexts=())),
        ("protocol version 65536", _replace(_RQ, protocol_version=0x10000)),
        ("max length 2**32", _ui(max_length=2**32)),
        ("max length -1", _ui(max_length=-1)),
        ("async window 65536", _ui(async_ops=AsyncOperationsWindow(0x10000, 1))),
        ("version name of 17", _ui(implementation_version_name="V" * 17)),
        ("empty version name", _ui(implementation_version_name="")),
        ("bad role UID", _ui(roles=(RoleSelection("x", True, False),))),
        ("identity type 256", _ui(user_identity_rq=UserIdentityRq(256, False, b"u"))),
        ("identity field of 65536", _ui(user_identity_rq=UserIdentityRq(1, False, bytes(0x10000)))),
        ("unknown sub-item type 256", _ui(unknown=((256, b""),))),
        ("unknown sub-item of 65536 bytes", _ui(unknown=((0x70, bytes(0x10000)),))),
        (
            "AC accepted without transfer syntax",
            _replace(_AC, contexts=(PresentationContextAc(1, ContextResult.ACCEPTANCE, ""),)),
        ),
        ("AC result 5", _replace(_AC, contexts=(PresentationContextAc(1, 5, "1.2"),))),  # type: ignore[arg-type]
        ("AC no context", _replace(_AC, contexts=())),
        ("AC AE title of 17", _replace(_AC, called_ae="B" * 17)),
        ("RJ result 3", AAssociateRj(3, 1, 1)),
        ("RJ source 4", AAssociateRj(1, 4, 1)),
        ("RJ reason 4 from the user", AAssociateRj(1, 1, 4)),
        ("RJ reason 3 from ACSE", AAssociateRj(1, 2, 3)),
        ("A-ABORT source 1", AAbort(1, 0)),
        ("A-ABORT reason 3", AAbort(2, 3)),
        ("A-ABORT reason 7", AAbort(2, 7)),
        ("P-DATA without PDV", PDataTf(())),
        ("PDV context ID 2", PDataTf((Pdv(2, 0, memoryview(b"x")),))),
        ("PDV control 4", PDataTf((Pdv(1, 4, memoryview(b"x")),))),
        (
            "second PDV context ID 0",
            PDataTf((Pdv(1, 0, memoryview(b"x")), Pdv(0, 2, memoryview(b"")))),
        ),
    ],
)
def test_unsendable_values(name: str, record: Pdu) -> None:
    with pytest.raises(LocalProtocolError):
        encode(record)


def test_encoding_something_that_is_not_a_pdu() -> None:
    with pytest.raises(LocalProtocolError):
        encode(UserInformation())  # type: ignore[arg-type]


# ---- fuzz: parse or RemoteProtocolError, nothing else --------------------------------


def _decode_or_remote_error(data: bytes) -> None:
    abort = None
    try:
        result = decode(data)
    except RemoteProtocolError as exc:
        abort = exc.abort
    if abort is None:
        assert isinstance(result, Pdu.__args__)
    else:
        assert abort in (INVALID, UNRECOGNIZED_PDU)


_FUZZ = settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
# Mutations of whole valid PDUs cost more per example: fewer of them.
_MUTATE = settings(_FUZZ, max_examples=200)


@_FUZZ
@given(st.binary(max_size=200))
def test_fuzz_arbitrary_bytes(data: bytes) -> None:
    _decode_or_remote_error(data)


@_FUZZ
@given(st.integers(1, 7), st.binary(max_size=300))
def test_fuzz_bodies_behind_a_valid_header(pdu_type: int, body: bytes) -> None:
    _decode_or_remote_error(pdu(pdu_type, body))


@_FUZZ
@given(
    st.integers(1, 2), st.lists(st.tuples(st.integers(0, 255), st.binary(max_size=40)), max_size=8)
)
def test_fuzz_association_items(pdu_type: int, items: list[tuple[int, bytes]]) -> None:
    """Well-framed items of arbitrary type and content after valid fixed fields."""
    body = fixed() + b"".join(item(t, v) for t, v in items)
    _decode_or_remote_error(pdu(pdu_type, body))


_VALID = st.one_of(st.sampled_from([data for _, data, _ in VECTORS]), pdus.map(encode))


@_MUTATE
@given(_VALID, st.data())
def test_fuzz_byte_flips(data: bytes, draw: st.DataObject) -> None:
    buf = bytearray(data)
    for _ in range(draw.draw(st.integers(1, 4))):
        index = draw.draw(st.integers(0, len(buf) - 1))
        buf[index] = draw.draw(st.integers(0, 255))
    _decode_or_remote_error(bytes(buf))


@_MUTATE
@given(_VALID, st.data())
def test_fuzz_truncations(data: bytes, draw: st.DataObject) -> None:
    cut = draw.draw(st.integers(0, len(data) - 1))
    _decode_or_remote_error(data[:cut])
    # The header still claims the old length: decode the short body as the driver would.
    if cut >= 6:
        with contextlib.suppress(RemoteProtocolError):
            decode_body(data[0], memoryview(data)[6:cut])


@_MUTATE
@given(_VALID, st.data())
def test_fuzz_length_fields(data: bytes, draw: st.DataObject) -> None:
    """Overwrite a 2-byte item length or the 4-byte PDU length with an arbitrary value."""
    buf = bytearray(data)
    if draw.draw(st.booleans()) or len(buf) < 8:
        buf[2:6] = draw.draw(st.integers(0, 2**32 - 1)).to_bytes(4, "big")
    else:
        index = draw.draw(st.integers(6, len(buf) - 2))
        buf[index : index + 2] = draw.draw(st.integers(0, 0xFFFF)).to_bytes(2, "big")
    _decode_or_remote_error(bytes(buf))
    with contextlib.suppress(RemoteProtocolError):
        decode_body(buf[0], memoryview(buf)[6:])
