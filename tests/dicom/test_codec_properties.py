"""Round-trip properties of the upper-layer PDU codec (PS3.8 9.3)."""

from __future__ import annotations

import time

import msgspec
import pytest
from hypothesis import assume, given, settings

from archive.dicom.ul.codec import HEADER_LENGTH, decode, decode_body, encode, parse_header
from archive.dicom.ul.pdu import (
    AAssociateAc,
    AAssociateRq,
    PDataTf,
    Pdu,
    PresentationContextRq,
    UserInformation,
)
from tests.dicom.strategies import (
    a_associate_ac,
    a_associate_rq,
    pdus,
    user_information,
)
from tests.dicom.test_codec_vectors import VECTORS, pynetdicom_encode


def _comparable(pdu: Pdu) -> object:
    """``pdu`` with PDV data as bytes, so equality does not depend on memoryview identity."""
    if isinstance(pdu, PDataTf):
        return [(p.context_id, p.control, bytes(p.data)) for p in pdu.pdvs]
    return pdu


@settings(max_examples=200, deadline=None)
@given(pdus)
def test_round_trips(pdu: Pdu) -> None:
    """decode(encode(pdu)) == pdu, the header describes the PDU, encode(decode(b)) == b."""
    data = encode(pdu)
    decoded = decode(data)
    assert _comparable(decoded) == _comparable(pdu)
    assert encode(decoded) == data
    pdu_type, length = parse_header(data)
    assert length == len(data) - HEADER_LENGTH
    assert _comparable(decode_body(pdu_type, memoryview(data)[HEADER_LENGTH:])) == _comparable(pdu)


@pytest.mark.parametrize(("name", "data", "record"), VECTORS, ids=[v[0] for v in VECTORS])
def test_encode_inverts_decode_on_vectors(name: str, data: bytes, record: Pdu) -> None:
    assert encode(decode(data)) == data


def _pynetdicom_compatible(info: UserInformation) -> UserInformation:
    """``info`` narrowed to what pynetdicom's primitives accept.

    pynetdicom cannot build unknown sub-items, refuses a role selection with both
    roles off, and wants a secondary field exactly for identity type 2.
    """
    identity = info.user_identity_rq
    if identity is not None:
        secondary = (identity.secondary or b"x") if identity.identity_type == 2 else b""
        identity = msgspec.structs.replace(
            identity, primary=identity.primary or b"x", secondary=secondary
        )
    return msgspec.structs.replace(
        info,
        unknown=(),
        roles=tuple(r for r in info.roles if r.scu_role or r.scp_role),
        user_identity_rq=identity,
    )


@settings(max_examples=30, deadline=None)
@given(a_associate_rq, user_information.map(_pynetdicom_compatible))
def test_rq_bytes_match_pynetdicom(rq: AAssociateRq, info: UserInformation) -> None:
    """pynetdicom's encoder, as an oracle, gives the same bytes for arbitrary requests."""
    # pynetdicom drops repeated transfer syntaxes and always sends version 1.
    contexts = tuple(
        msgspec.structs.replace(c, transfer_syntaxes=tuple(dict.fromkeys(c.transfer_syntaxes)))
        for c in rq.contexts
    )
    rq = msgspec.structs.replace(rq, user_info=info, contexts=contexts, protocol_version=1)
    assert encode(rq) == pynetdicom_encode(rq)


@settings(max_examples=30, deadline=None)
@given(a_associate_ac, user_information.map(_pynetdicom_compatible))
def test_ac_bytes_match_pynetdicom(ac: AAssociateAc, info: UserInformation) -> None:
    """The same for acceptances whose contexts all carry a transfer syntax."""
    contexts = tuple(c for c in ac.contexts if c.transfer_syntax)  # pynetdicom needs one
    assume(contexts)
    ac = msgspec.structs.replace(
        ac,
        called_ae=ac.called_ae or "ANY-SCP",  # pynetdicom refuses empty AE titles
        calling_ae=ac.calling_ae or "ANY-SCU",
        user_info=info,
        contexts=contexts,
        protocol_version=1,
    )
    assert encode(ac) == pynetdicom_encode(ac)


def test_decoding_a_large_request_is_fast() -> None:
    """120 contexts of 3 transfer syntaxes each decode in well under 1 ms."""
    contexts = tuple(
        PresentationContextRq(
            2 * i + 1,
            f"1.2.840.10008.5.1.4.1.1.{i}",
            ("1.2.840.10008.1.2.1", "1.2.840.10008.1.2", "1.2.840.10008.1.2.4.50"),
        )
        for i in range(120)
    )
    rq = AAssociateRq("ANY-SCP", "STORESCU", contexts, UserInformation(16384, "1.2.3.4"))
    data = encode(rq)
    assert decode(data) == rq
    best = min(_time(data) for _ in range(5))
    assert best < 0.001, f"decode took {best * 1e6:.0f} us"


def _time(data: bytes) -> float:
    rounds = 20
    start = time.perf_counter()
    for _ in range(rounds):
        decode(data)
    return (time.perf_counter() - start) / rounds
