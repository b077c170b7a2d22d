"""Golden byte vectors for the upper-layer PDU codec (PS3.8 9.3, PS3.7 D.3.3).

Each vector is written by hand: two hex digits per byte, ASCII runs in single
quotes, a comment on every field. Every length was counted by hand, so the
vectors are checked against pynetdicom's encoder too (an oracle only).
"""

from __future__ import annotations

import re
from typing import Any

import msgspec
import pytest
from pynetdicom import pdu as pyn_pdu
from pynetdicom import pdu_primitives as prim
from pynetdicom.presentation import PresentationContext

from archive.dicom.ul.codec import HEADER_LENGTH, decode, decode_body, encode, parse_header
from archive.dicom.ul.pdata import Pdv
from archive.dicom.ul.pdu import (
    AAbort,
    AAssociateAc,
    AAssociateRj,
    AAssociateRq,
    AReleaseRp,
    AReleaseRq,
    AsyncOperationsWindow,
    ContextResult,
    PDataTf,
    Pdu,
    PresentationContextAc,
    PresentationContextRq,
    RoleSelection,
    SopClassCommonExtended,
    SopClassExtended,
    UserIdentityAc,
    UserIdentityRq,
    UserInformation,
)

_TOKEN = re.compile(r"'([^']*)'|([0-9a-fA-F]{2})|(\S)")


def wire(text: str) -> bytes:
    """Bytes from a commented vector: hex byte pairs and 'ASCII' runs; '#' starts a comment."""
    out = bytearray()
    for line in text.splitlines():
        for ascii_run, hex_pair, junk in _TOKEN.findall(line.split("#", 1)[0]):
            assert not junk, f"stray {junk!r} in vector line {line!r}"
            out += (
                ascii_run.encode("ascii") if ascii_run or not hex_pair else bytes.fromhex(hex_pair)
            )
    return bytes(out)


VERIFICATION = "1.2.840.10008.1.1"
IMPLICIT_LE = "1.2.840.10008.1.2"
EXPLICIT_LE = "1.2.840.10008.1.2.1"
CT_IMAGE = "1.2.840.10008.5.1.4.1.1.2"
ENHANCED_CT = "1.2.840.10008.5.1.4.1.1.2.1"
STUDY_ROOT_FIND = "1.2.840.10008.5.1.4.1.2.2.1"
STORAGE_SERVICE = "1.2.840.10008.4.2"
DCMTK_UID = "1.2.276.0.7230010.3.0.3.6.8"
PYNETDICOM_UID = "1.2.826.0.1.3680043.9.3811.3.0.4"

# A-ASSOCIATE-RQ as DCMTK 3.6.8 echoscu sends it: ECHOSCU -> ANY-SCP, one context
# (1: Verification / Implicit VR LE), max PDU 16384, implementation class UID and
# version name.
ECHOSCU_RQ = wire("""
    01 00 000000cd                  # A-ASSOCIATE-RQ, reserved, PDU length 205
    0001 0000                       # protocol version 1, reserved
    'ANY-SCP         '              # called AE title, space padded to 16
    'ECHOSCU         '              # calling AE title
    00000000000000000000000000000000 00000000000000000000000000000000  # reserved 32
    10 00 0015 '1.2.840.10008.3.1.1.1'          # application context item (21)
    20 00 002e 01 00 00 00                      # presentation context 1 (46)
      30 00 0011 '1.2.840.10008.1.1'            # abstract syntax: Verification
      40 00 0011 '1.2.840.10008.1.2'            # transfer syntax: Implicit VR LE
    50 00 003a                                  # user information (58)
      51 00 0004 00004000                       # maximum length received 16384
      52 00 001b '1.2.276.0.7230010.3.0.3.6.8'  # implementation class UID (27)
      55 00 000f 'OFFIS_DCMTK_368'              # implementation version name (15)
""")
ECHOSCU_RQ_RECORD = AAssociateRq(
    called_ae="ANY-SCP",
    calling_ae="ECHOSCU",
    contexts=(PresentationContextRq(1, VERIFICATION, (IMPLICIT_LE,)),),
    user_info=UserInformation(
        max_length=16384,
        implementation_class_uid=DCMTK_UID,
        implementation_version_name="OFFIS_DCMTK_368",
    ),
)

# A-ASSOCIATE-AC answering ECHOSCU_RQ from a pynetdicom 3.0.4 SCP: context 1
# accepted with Implicit VR LE, max PDU 16382.
ECHO_AC = wire("""
    02 00 000000bc                  # A-ASSOCIATE-AC, PDU length 188
    0001 0000                       # protocol version 1, reserved
    'ANY-SCP         '              # reserved: called AE title of the RQ
    'ECHOSCU         '              # reserved: calling AE title of the RQ
    00000000000000000000000000000000 00000000000000000000000000000000  # reserved 32
    10 00 0015 '1.2.840.10008.3.1.1.1'          # application context item
    21 00 0019 01 00 00 00                      # presentation context 1, acceptance (25)
      40 00 0011 '1.2.840.10008.1.2'            # transfer syntax: Implicit VR LE
    50 00 003e                                  # user information (62)
      51 00 0004 00003ffe                       # maximum length received 16382
      52 00 0020 '1.2.826.0.1.3680043.9.3811.3.0.4'  # implementation class UID (32)
      55 00 000e 'PYNETDICOM_304'               # implementation version name (14)
""")
ECHO_AC_RECORD = AAssociateAc(
    called_ae="ANY-SCP",
    calling_ae="ECHOSCU",
    contexts=(PresentationContextAc(1, ContextResult.ACCEPTANCE, IMPLICIT_LE),),
    user_info=UserInformation(
        max_length=16382,
        implementation_class_uid=PYNETDICOM_UID,
        implementation_version_name="PYNETDICOM_304",
    ),
)

# A-ASSOCIATE-RQ from a storage SCU using every request sub-item of PS3.7 D.3.3:
# STORESCU -> STORESCP, context 1 CT Image Storage (Explicit LE, Implicit LE),
# context 3 Verification (Implicit LE); no PDU limit; async window 5/1; role
# selection for CT (SCP only); extended negotiation for Study Root FIND; common
# extended for CT (storage service, related Enhanced CT); user identity
# username "alice" + passcode "secret", positive response requested.
STORESCU_RQ = wire("""
    01 00 000001d4                  # A-ASSOCIATE-RQ, PDU length 468
    0001 0000                       # protocol version 1, reserved
    'STORESCP        '              # called AE title
    'STORESCU        '              # calling AE title
    00000000000000000000000000000000 00000000000000000000000000000000  # reserved 32
    10 00 0015 '1.2.840.10008.3.1.1.1'          # application context item
    20 00 004d 01 00 00 00                      # presentation context 1 (77)
      30 00 0019 '1.2.840.10008.5.1.4.1.1.2'    # abstract syntax: CT Image Storage (25)
      40 00 0013 '1.2.840.10008.1.2.1'          # transfer syntax: Explicit VR LE (19)
      40 00 0011 '1.2.840.10008.1.2'            # transfer syntax: Implicit VR LE
    20 00 002e 03 00 00 00                      # presentation context 3 (46)
      30 00 0011 '1.2.840.10008.1.1'            # abstract syntax: Verification
      40 00 0011 '1.2.840.10008.1.2'            # transfer syntax: Implicit VR LE
    50 00 00f0                                  # user information (240)
      51 00 0004 00000000                       # maximum length received: no limit
      52 00 0020 '1.2.826.0.1.3680043.9.3811.3.0.4'  # implementation class UID
      53 00 0004 0005 0001                      # async window: 5 invoked, 1 performed
      54 00 001d                                # SCP/SCU role selection (29)
        0019 '1.2.840.10008.5.1.4.1.1.2'        #   SOP class UID length 25, CT
        00 01                                   #   SCU role 0, SCP role 1
      55 00 000e 'PYNETDICOM_304'               # implementation version name
      56 00 001f                                # SOP class extended negotiation (31)
        001b '1.2.840.10008.5.1.4.1.2.2.1'      #   SOP class UID length 27, Study Root FIND
        01 01                                   #   application info: relational, dates
      57 00 004d                                # SOP class common extended, version 0 (77)
        0019 '1.2.840.10008.5.1.4.1.1.2'        #   SOP class UID: CT Image Storage
        0011 '1.2.840.10008.4.2'                #   service class UID: Storage (17)
        001d                                    #   related general SOP class id. length 29
          001b '1.2.840.10008.5.1.4.1.1.2.1'    #     Enhanced CT Image Storage (27)
      58 00 0011                                # user identity negotiation RQ (17)
        02 01                                   #   type 2 user+passcode, response requested
        0005 'alice'                            #   primary field
        0006 'secret'                           #   secondary field
""")
STORESCU_RQ_RECORD = AAssociateRq(
    called_ae="STORESCP",
    calling_ae="STORESCU",
    contexts=(
        PresentationContextRq(1, CT_IMAGE, (EXPLICIT_LE, IMPLICIT_LE)),
        PresentationContextRq(3, VERIFICATION, (IMPLICIT_LE,)),
    ),
    user_info=UserInformation(
        max_length=0,
        implementation_class_uid=PYNETDICOM_UID,
        implementation_version_name="PYNETDICOM_304",
        async_ops=AsyncOperationsWindow(5, 1),
        roles=(RoleSelection(CT_IMAGE, scu_role=False, scp_role=True),),
        extended=(SopClassExtended(STUDY_ROOT_FIND, b"\x01\x01"),),
        common_extended=(SopClassCommonExtended(CT_IMAGE, STORAGE_SERVICE, (ENHANCED_CT,)),),
        user_identity_rq=UserIdentityRq(2, True, b"alice", b"secret"),
    ),
)

# A-ASSOCIATE-AC answering STORESCU_RQ: context 1 accepted (Explicit LE),
# context 3 rejected abstract-syntax-not-supported with an empty transfer syntax
# sub-item; role selection echoed; max PDU 65534; user identity server response
# "token"; an unknown sub-item 0x5b kept as is.
STORESCP_AC = wire("""
    02 00 000000fc                  # A-ASSOCIATE-AC, PDU length 252
    0001 0000                       # protocol version 1, reserved
    'STORESCP        '              # reserved: called AE title of the RQ
    'STORESCU        '              # reserved: calling AE title of the RQ
    00000000000000000000000000000000 00000000000000000000000000000000  # reserved 32
    10 00 0015 '1.2.840.10008.3.1.1.1'          # application context item
    21 00 001b 01 00 00 00                      # presentation context 1, acceptance (27)
      40 00 0013 '1.2.840.10008.1.2.1'          # transfer syntax: Explicit VR LE
    21 00 0008 03 00 03 00                      # context 3, abstract syntax not supported
      40 00 0000                                # transfer syntax: empty, not significant
    50 00 0070                                  # user information (112)
      51 00 0004 0000fffe                       # maximum length received 65534
      52 00 0020 '1.2.826.0.1.3680043.9.3811.3.0.4'  # implementation class UID
      54 00 001d                                # SCP/SCU role selection (29)
        0019 '1.2.840.10008.5.1.4.1.1.2'        #   CT Image Storage
        00 01                                   #   SCU role 0, SCP role 1
      55 00 000e 'PYNETDICOM_304'               # implementation version name
      59 00 0007 0005 'token'                   # user identity AC: server response
      5b 00 0002 abcd                           # unknown sub-item, kept for round trip
""")
STORESCP_AC_RECORD = AAssociateAc(
    called_ae="STORESCP",
    calling_ae="STORESCU",
    contexts=(
        PresentationContextAc(1, ContextResult.ACCEPTANCE, EXPLICIT_LE),
        PresentationContextAc(3, ContextResult.ABSTRACT_SYNTAX_NOT_SUPPORTED, ""),
    ),
    user_info=UserInformation(
        max_length=65534,
        implementation_class_uid=PYNETDICOM_UID,
        implementation_version_name="PYNETDICOM_304",
        roles=(RoleSelection(CT_IMAGE, scu_role=False, scp_role=True),),
        user_identity_ac=UserIdentityAc(b"token"),
        unknown=((0x5B, b"\xab\xcd"),),
    ),
)

# A-ASSOCIATE-RJ: rejected-permanent, service user, called AE title not recognized.
RJ_CALLED_AE = wire("03 00 00000004  00 01 01 07  # reserved, result 1, source 1, reason 7")
# A-ASSOCIATE-RJ: rejected-transient, provider (presentation), local limit exceeded.
RJ_LIMIT = wire("03 00 00000004  00 02 03 02  # reserved, result 2, source 3, reason 2")

# C-ECHO-RQ command set (Implicit VR LE) in one PDV: context 1, command + last.
ECHO_COMMAND = wire("""
    0000 0000 04000000 38000000                    # (0000,0000) UL group length 56
    0000 0200 12000000 '1.2.840.10008.1.1' 00      # (0000,0002) UI affected SOP class, NUL pad
    0000 0001 02000000 3000                        # (0000,0100) US command field C-ECHO-RQ
    0000 1001 02000000 0100                        # (0000,0110) US message ID 1
    0000 0008 02000000 0101                        # (0000,0800) US no data set
""")
P_DATA_ECHO = (
    wire("""
    04 00 0000004a                  # P-DATA-TF, PDU length 74
    00000046 01 03                  # PDV length 70, context 1, MCH command + last
""")
    + ECHO_COMMAND
)
# P-DATA-TF with two data-set PDVs on context 3: a fragment, then the last one.
P_DATA_TWO = wire("""
    04 00 00000012                  # P-DATA-TF, PDU length 18
    00000006 03 00 deadbeef         # PDV length 6, context 3, MCH data, not last
    00000004 03 02 cafe             # PDV length 4, context 3, MCH data, last
""")

RELEASE_RQ = wire("05 00 00000004 00000000  # A-RELEASE-RQ, 4 reserved bytes")
RELEASE_RP = wire("06 00 00000004 00000000  # A-RELEASE-RP, 4 reserved bytes")
# A-ABORT from the service provider: invalid PDU parameter.
ABORT_PROVIDER = wire("07 00 00000004 0000 02 06  # reserved 2, source 2, reason 6")
# A-ABORT from the service user (reason not significant, sent as 0).
ABORT_USER = wire("07 00 00000004 0000 00 00  # reserved 2, source 0, reason 0")

VECTORS: list[tuple[str, bytes, Pdu]] = [
    ("echoscu-rq", ECHOSCU_RQ, ECHOSCU_RQ_RECORD),
    ("echo-ac", ECHO_AC, ECHO_AC_RECORD),
    ("storescu-rq", STORESCU_RQ, STORESCU_RQ_RECORD),
    ("storescp-ac", STORESCP_AC, STORESCP_AC_RECORD),
    ("rj-called-ae", RJ_CALLED_AE, AAssociateRj(1, 1, 7)),
    ("rj-limit", RJ_LIMIT, AAssociateRj(2, 3, 2)),
    ("p-data-echo", P_DATA_ECHO, PDataTf((Pdv(1, 3, memoryview(ECHO_COMMAND)),))),
    (
        "p-data-two",
        P_DATA_TWO,
        PDataTf((Pdv(3, 0, memoryview(b"\xde\xad\xbe\xef")), Pdv(3, 2, memoryview(b"\xca\xfe")))),
    ),
    ("release-rq", RELEASE_RQ, AReleaseRq()),
    ("release-rp", RELEASE_RP, AReleaseRp()),
    ("abort-provider", ABORT_PROVIDER, AAbort(2, 6)),
    ("abort-user", ABORT_USER, AAbort(0, 0)),
]
_IDS = [name for name, _, _ in VECTORS]


@pytest.mark.parametrize(("name", "data", "record"), VECTORS, ids=_IDS)
def test_decode_vector(name: str, data: bytes, record: Pdu) -> None:
    assert decode(data) == record


@pytest.mark.parametrize(("name", "data", "record"), VECTORS, ids=_IDS)
def test_encode_vector(name: str, data: bytes, record: Pdu) -> None:
    assert encode(record) == data


@pytest.mark.parametrize(("name", "data", "record"), VECTORS, ids=_IDS)
def test_header_then_body(name: str, data: bytes, record: Pdu) -> None:
    """The driver's path: parse_header on a buffer with more behind it, then decode_body."""
    buf = bytearray(b"\xff" * 3 + data + RELEASE_RQ)
    pdu_type, length = parse_header(buf, 3)
    assert (pdu_type, length) == (data[0], len(data) - HEADER_LENGTH)
    body = memoryview(buf)[3 + HEADER_LENGTH : 3 + HEADER_LENGTH + length]
    assert decode_body(pdu_type, body) == record


def test_p_data_is_not_copied() -> None:
    """PDV data are views into the caller's buffer (PS3.8 9.3.5, pdata contract)."""
    buf = bytearray(P_DATA_TWO)
    pdu = decode(buf)
    assert isinstance(pdu, PDataTf)
    buf[12] = 0x00  # first byte of the first PDV's data
    assert bytes(pdu.pdvs[0].data) == b"\x00\xad\xbe\xef"
    assert pdu.pdvs[1].is_last
    assert not pdu.pdvs[0].is_command


def test_p_data_with_data_longer_than_a_byte_string() -> None:
    data = bytes(range(256)) * 300
    record = PDataTf((Pdv(255, 1, memoryview(data)),))
    wire_bytes = encode(record)
    assert wire_bytes[:12] == bytes.fromhex("04 00 0001 2c06 0001 2c02 ff 01")
    assert bytes(decode(wire_bytes).pdvs[0].data) == data  # type: ignore[union-attr]


# Lenient receipt, PS3.8 9.3.1-9.3.3: reserved fields are not tested, unknown item
# types are skipped, UIDs may carry a trailing NUL (PS3.5 9.1 habit), leading
# spaces of an AE title are insignificant, items may come in any order.
ECHOSCU_RQ_SLOPPY = wire("""
    01 ff 000000e0                  # A-ASSOCIATE-RQ, reserved 0xff, PDU length 224
    0001 abcd                       # protocol version 1, reserved 0xabcd
    '  ANY-SCP       '              # called AE title with leading spaces
    'ECHOSCU         '              # calling AE title
    ffffffffffffffffffffffffffffffff ffffffffffffffffffffffffffffffff  # reserved 32
    50 ff 003a                                  # user information first, reserved 0xff
      51 00 0004 00004000                       # maximum length received 16384
      52 00 001b '1.2.276.0.7230010.3.0.3.6.8'  # implementation class UID
      55 00 000f 'OFFIS_DCMTK_368'              # implementation version name
    7f 00 0004 01020304                         # unknown item type 0x7f: skipped
    20 ee 0038 01 ee ee ee                      # presentation context 1 (56), reserved 0xee
      40 00 0012 '1.2.840.10008.1.2' 00         # transfer syntax before abstract, NUL pad
      31 00 0004 00000000                       # unknown sub-item 0x31: skipped
      30 00 0012 '1.2.840.10008.1.1' 00         # abstract syntax, NUL pad
    10 00 0016 '1.2.840.10008.3.1.1.1' 00       # application context last, NUL pad
""")


def test_lenient_receipt_decodes_like_the_clean_vector() -> None:
    assert decode(ECHOSCU_RQ_SLOPPY) == ECHOSCU_RQ_RECORD
    assert encode(decode(ECHOSCU_RQ_SLOPPY)) == ECHOSCU_RQ


def test_protocol_version_is_decoded_faithfully() -> None:
    """A wrong version is policy's business (A-ASSOCIATE-RJ), not a decode error."""
    data = bytearray(ECHOSCU_RQ)
    data[6:8] = b"\x00\x02"
    pdu = decode(bytes(data))
    assert isinstance(pdu, AAssociateRq)
    assert pdu.protocol_version == 2
    assert encode(pdu) == bytes(data)


def test_ac_reserved_ae_fields_are_not_tested() -> None:
    """PS3.8 9.3.3: the AC's AE title fields are reserved; junk there is accepted."""
    data = bytearray(ECHO_AC)
    data[10:42] = b"\xff" * 16 + b" " * 16
    pdu = decode(bytes(data))
    assert isinstance(pdu, AAssociateAc)
    assert pdu.calling_ae == ""
    assert pdu.contexts == ECHO_AC_RECORD.contexts


def test_rejected_context_without_transfer_syntax_sub_item() -> None:
    """Some peers omit the insignificant sub-item of a rejected context."""
    ctx = wire("21 00 0004 05 00 04 00  # presentation context 5, transfer syntaxes not supported")
    body = bytearray(ECHO_AC[HEADER_LENGTH:])
    body[122:122] = ctx  # after fixed fields (68), app context (25), context 1 (29)
    pdu = decode_body(2, memoryview(bytes(body)))
    assert isinstance(pdu, AAssociateAc)
    assert pdu.contexts[1] == PresentationContextAc(
        5, ContextResult.TRANSFER_SYNTAXES_NOT_SUPPORTED, ""
    )


# ---- pynetdicom as an oracle --------------------------------------------------------


def _pyn_user_info(info: UserInformation) -> list[object]:
    """The same user information as pynetdicom primitives, in ascending sub-item order."""
    items: list[object] = []
    item: Any  # pynetdicom primitives of several types
    if info.max_length is not None:
        item = prim.MaximumLengthNotification()
        item.maximum_length_received = info.max_length
        items.append(item)
    if info.implementation_class_uid is not None:
        item = prim.ImplementationClassUIDNotification()
        item.implementation_class_uid = info.implementation_class_uid
        items.append(item)
    if info.async_ops is not None:
        item = prim.AsynchronousOperationsWindowNegotiation()
        item.maximum_number_operations_invoked = info.async_ops.max_invoked
        item.maximum_number_operations_performed = info.async_ops.max_performed
        items.append(item)
    for role in info.roles:
        item = prim.SCP_SCU_RoleSelectionNegotiation()
        item.sop_class_uid = role.sop_class_uid
        item.scu_role = role.scu_role
        item.scp_role = role.scp_role
        items.append(item)
    if info.implementation_version_name is not None:
        item = prim.ImplementationVersionNameNotification()
        item.implementation_version_name = info.implementation_version_name
        items.append(item)
    for ext in info.extended:
        item = prim.SOPClassExtendedNegotiation()
        item.sop_class_uid = ext.sop_class_uid
        item.service_class_application_information = ext.info
        items.append(item)
    for common in info.common_extended:
        item = prim.SOPClassCommonExtendedNegotiation()
        item.sop_class_uid = common.sop_class_uid
        item.service_class_uid = common.service_class_uid
        item.related_general_sop_class_identification = list(common.related_general_sop_classes)
        items.append(item)
    for identity in (info.user_identity_rq, info.user_identity_ac):
        if identity is None:
            continue
        item = prim.UserIdentityNegotiation()
        if isinstance(identity, UserIdentityRq):
            item.user_identity_type = identity.identity_type
            item.positive_response_requested = identity.positive_response_requested
            item.primary_field = identity.primary
            item.secondary_field = identity.secondary
        else:
            item.server_response = identity.server_response
        items.append(item)
    assert not info.unknown, "pynetdicom cannot build unknown sub-items"
    return items


def pynetdicom_encode(record: AAssociateRq | AAssociateAc) -> bytes:
    """Encode ``record`` with pynetdicom's A_ASSOCIATE_RQ/AC built from primitives."""
    primitive = prim.A_ASSOCIATE()
    primitive.called_ae_title = record.called_ae
    primitive.calling_ae_title = record.calling_ae
    primitive.application_context_name = record.application_context
    primitive.user_information = _pyn_user_info(record.user_info)  # type: ignore[assignment]
    contexts = []
    for ctx in record.contexts:
        pc = PresentationContext()
        pc.context_id = ctx.id
        if isinstance(ctx, PresentationContextRq):
            pc.abstract_syntax = ctx.abstract_syntax
            for syntax in ctx.transfer_syntaxes:
                pc.add_transfer_syntax(syntax)
        else:
            pc.result = int(ctx.result)
            pc.add_transfer_syntax(ctx.transfer_syntax)
        contexts.append(pc)
    if isinstance(record, AAssociateRq):
        primitive.presentation_context_definition_list = contexts
        return bytes(pyn_pdu.A_ASSOCIATE_RQ(primitive).encode())
    primitive.presentation_context_definition_results_list = contexts
    return bytes(pyn_pdu.A_ASSOCIATE_AC(primitive).encode())


@pytest.mark.parametrize(
    ("data", "record"),
    [
        (ECHOSCU_RQ, ECHOSCU_RQ_RECORD),
        (ECHO_AC, ECHO_AC_RECORD),
        (STORESCU_RQ, STORESCU_RQ_RECORD),
    ],
    ids=["echoscu-rq", "echo-ac", "storescu-rq"],
)
def test_association_vectors_match_pynetdicom(data: bytes, record: AAssociateRq) -> None:
    assert pynetdicom_encode(record) == data


def test_storescp_ac_matches_pynetdicom_decoder() -> None:
    """pynetdicom cannot build an empty transfer syntax or unknown sub-items; let it read them."""
    # pynetdicom raises KeyError on an unknown sub-item: drop the trailing 0x5b one
    # (6 bytes) and shorten the PDU and user information lengths to match.
    data = bytearray(STORESCP_AC[:-6])
    data[2:6] = (252 - 6).to_bytes(4, "big")
    data[-106 - 2 : -106] = (112 - 6).to_bytes(2, "big")
    info = msgspec.structs.replace(STORESCP_AC_RECORD.user_info, unknown=())
    assert decode(bytes(data)) == msgspec.structs.replace(STORESCP_AC_RECORD, user_info=info)
    ac: Any = pyn_pdu.A_ASSOCIATE_AC()
    ac.decode(bytes(data))
    assert ac.pdu_length == len(data) - HEADER_LENGTH
    results = [(c.presentation_context_id, c.result_reason) for c in ac.presentation_context]
    assert results == [(1, 0), (3, 3)]
    assert ac.presentation_context[0].transfer_syntax == EXPLICIT_LE
    user = ac.user_information
    assert user.maximum_length == 65534
    assert user.implementation_class_uid == PYNETDICOM_UID
    assert user.implementation_version_name == "PYNETDICOM_304"
    assert user.user_identity.server_response == b"token"
    assert [r.sop_class_uid for r in user.role_selection.values()] == [CT_IMAGE]


@pytest.mark.parametrize(
    ("data", "pyn_type"),
    [
        (RJ_CALLED_AE, pyn_pdu.A_ASSOCIATE_RJ),
        (P_DATA_ECHO, pyn_pdu.P_DATA_TF),
        (P_DATA_TWO, pyn_pdu.P_DATA_TF),
        (RELEASE_RQ, pyn_pdu.A_RELEASE_RQ),
        (RELEASE_RP, pyn_pdu.A_RELEASE_RP),
        (ABORT_PROVIDER, pyn_pdu.A_ABORT_RQ),
    ],
    ids=["rj", "p-data-echo", "p-data-two", "release-rq", "release-rp", "abort"],
)
def test_other_vectors_round_trip_through_pynetdicom(data: bytes, pyn_type: type) -> None:
    pyn = pyn_type()
    pyn.decode(data)
    assert bytes(pyn.encode()) == data
