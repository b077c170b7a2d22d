"""Byte codec of the seven upper-layer PDUs, PS3.8 9.3 (user information: PS3.7 D.3.3).

Theory of operation: a PDU is a 6-byte header (type, reserved, uint32 length)
and a variable field of ``length`` bytes. The driver reads the header with
:func:`parse_header`, waits for the body, and hands it to :func:`decode_body`;
:func:`decode` does both for one whole PDU. P-DATA-TF bodies go to the no-copy
PDV splitter in :mod:`archive.dicom.ul.pdata`. An association PDU body is copied
once to ``bytes`` and decoded once as latin-1, so that every string field is a
slice of that text (see :mod:`archive.dicom.ul.items`).

Rules applied on receipt (PS3.8 9.3.1 and the field tables of 9.3.2-9.3.8):

* Reserved fields are "sent with a value 00H but not tested to this value when
  received": never checked. The AE title fields of an A-ASSOCIATE-AC are
  reserved too, so they are decoded but never rejected.
* "Items of unrecognized types shall be ignored and skipped": an item of a type
  the PDU does not define (at the top level of an A-ASSOCIATE-RQ/AC or inside a
  presentation context) is skipped, so UNRECOGNIZED_PDU_PARAMETER is never
  raised. Unknown user-information sub-items are kept (PS3.7 D.3.3) instead.
* Item order is not enforced on receipt; items are sent in ascending order.
* Any length that overruns its parent, children that do not exactly fill their
  parent, a missing or repeated single item, or a fixed-size PDU of the wrong
  size raise :class:`RemoteProtocolError` with A-ABORT (service provider,
  invalid PDU parameter); an unknown PDU type raises it with (service
  provider, unrecognized PDU).

The codec decides nothing: a wrong protocol version, an unknown abstract syntax
or an unexpected user-identity form are decoded as sent, for policy to judge.
"""

from __future__ import annotations

import struct

from archive.dicom.errors import (
    AbortReason,
    AbortSource,
    LocalProtocolError,
    RejectReason,
    RejectResult,
    RejectSource,
    RemoteProtocolError,
)
from archive.dicom.ul.items import (
    USER_INFORMATION,
    ae_bytes,
    check_range,
    decode_user_information,
    encode_user_information,
    invalid,
    is_ae_title,
    item,
    read_uid,
    uid_bytes,
    walk_items,
)
from archive.dicom.ul.pdata import decode_p_data, encode_p_data
from archive.dicom.ul.pdu import (
    AAbort,
    AAssociateAc,
    AAssociateRj,
    AAssociateRq,
    AReleaseRp,
    AReleaseRq,
    ContextResult,
    PDataTf,
    Pdu,
    PduType,
    PresentationContextAc,
    PresentationContextRq,
    UserInformation,
)

__all__ = ["HEADER_LENGTH", "decode", "decode_body", "encode", "parse_header"]

HEADER_LENGTH = 6
_HEADER = struct.Struct(">BxL")
_U16 = struct.Struct(">H")
_PDV_HEADER = struct.Struct(">LBB")
#: Protocol version, reserved, called AE, calling AE, 32 reserved bytes (PS3.8 9.3.2).
_ASSOCIATE_FIXED = 68

#: Item types of PS3.8 9.3.2.1-9.3.3.2.1.
APPLICATION_CONTEXT_ITEM = 0x10
PRESENTATION_CONTEXT_RQ_ITEM = 0x20
PRESENTATION_CONTEXT_AC_ITEM = 0x21
ABSTRACT_SYNTAX_ITEM = 0x30
TRANSFER_SYNTAX_ITEM = 0x40

_CONTEXT_RESULTS = tuple(ContextResult)
#: PDUs whose variable field is exactly 4 bytes (PS3.8 9.3.4, 9.3.6-9.3.8).
_FIXED_BODY_PDUS = frozenset(
    {PduType.A_ASSOCIATE_RJ, PduType.A_RELEASE_RQ, PduType.A_RELEASE_RP, PduType.A_ABORT}
)
#: A-ASSOCIATE-RJ reason values defined for each source, PS3.8 Table 9-21.
_REJECT_REASONS: dict[int, frozenset[int]] = {
    RejectSource.SERVICE_USER: frozenset({1, 2, 3, 7}),
    RejectSource.SERVICE_PROVIDER_ACSE: frozenset({1, 2}),
    RejectSource.SERVICE_PROVIDER_PRESENTATION: frozenset({1, 2}),
}
#: A-ABORT sources and reasons that may be sent, PS3.8 Table 9-26 (1 and 3 are reserved).
_ABORT_SOURCES = frozenset({AbortSource.SERVICE_USER, AbortSource.SERVICE_PROVIDER})
_ABORT_REASONS = frozenset(AbortReason) - {AbortReason.RESERVED}
_RELEASE_RQ = bytes((PduType.A_RELEASE_RQ, 0, 0, 0, 0, 4, 0, 0, 0, 0))
_RELEASE_RP = bytes((PduType.A_RELEASE_RP, 0, 0, 0, 0, 4, 0, 0, 0, 0))


def parse_header(buf: bytes | bytearray | memoryview, offset: int = 0) -> tuple[int, int]:
    """(pdu_type, length) of the 6-byte PDU header at ``offset``, PS3.8 9.3.1.

    The caller guarantees 6 bytes are available. An unknown PDU type raises
    :class:`RemoteProtocolError` with A-ABORT (service provider, unrecognized PDU).
    """
    pdu_type, length = _HEADER.unpack_from(buf, offset)
    if not PduType.A_ASSOCIATE_RQ <= pdu_type <= PduType.A_ABORT:
        raise _unrecognized_pdu(pdu_type)
    return pdu_type, length


def decode_body(pdu_type: int, body: memoryview) -> Pdu:
    """Decode one PDU's variable field (the ``length`` bytes after its header).

    P-DATA-TF PDVs are views into ``body``. Any malformation raises
    :class:`RemoteProtocolError` carrying the A-ABORT PS3.8 prescribes.
    """
    if pdu_type == PduType.P_DATA_TF:
        return PDataTf(tuple(decode_p_data(body)))
    if pdu_type == PduType.A_ASSOCIATE_RQ:
        return _decode_associate_rq(body)
    if pdu_type == PduType.A_ASSOCIATE_AC:
        return _decode_associate_ac(body)
    if pdu_type in _FIXED_BODY_PDUS:
        if len(body) != 4:
            raise invalid(f"PDU type 0x{pdu_type:02x} with a {len(body)}-byte field, not 4")
        if pdu_type == PduType.A_RELEASE_RQ:
            return AReleaseRq()
        if pdu_type == PduType.A_RELEASE_RP:
            return AReleaseRp()
        if pdu_type == PduType.A_ABORT:
            # PS3.8 Table 9-26: bytes 7-8 reserved, 9 source, 10 reason/diag.
            return AAbort(body[2], body[3])
        # PS3.8 Table 9-21: byte 7 reserved, 8 result, 9 source, 10 reason/diag.
        return AAssociateRj(body[1], body[2], body[3])
    raise _unrecognized_pdu(pdu_type)


def decode(buf: bytes | bytearray | memoryview) -> Pdu:
    """Decode exactly one whole PDU, header included; missing or extra bytes are an error."""
    view = memoryview(buf)
    if len(view) < HEADER_LENGTH:
        raise invalid(f"{len(view)} bytes are too few for a PDU header")
    pdu_type, length = parse_header(view)
    if len(view) - HEADER_LENGTH != length:
        raise invalid(f"PDU length {length} but {len(view) - HEADER_LENGTH} bytes follow")
    return decode_body(pdu_type, view[HEADER_LENGTH:])


def _unrecognized_pdu(pdu_type: int) -> RemoteProtocolError:
    return RemoteProtocolError(
        f"unrecognized PDU type 0x{pdu_type:02x}",
        abort=(AbortSource.SERVICE_PROVIDER, AbortReason.UNRECOGNIZED_PDU),
    )


def _fixed_fields(raw: bytes, text: str) -> tuple[int, str, str]:
    """Protocol version and the two AE title fields, stripped of padding (PS3.5 6.2)."""
    if len(raw) < _ASSOCIATE_FIXED:
        raise invalid(f"association PDU of {len(raw)} bytes is shorter than its fixed fields")
    (version,) = _U16.unpack_from(raw, 0)
    return version, text[4:20].strip(" "), text[20:36].strip(" ")


def _decode_associate_rq(body: memoryview) -> AAssociateRq:
    """A-ASSOCIATE-RQ variable field, PS3.8 9.3.2."""
    raw = bytes(body)
    text = raw.decode("latin-1")
    version, called, calling = _fixed_fields(raw, text)
    for title, reason in (
        (called, RejectReason.CALLED_AE_NOT_RECOGNIZED),
        (calling, RejectReason.CALLING_AE_NOT_RECOGNIZED),
    ):
        if title and not is_ae_title(title):
            raise RemoteProtocolError(
                f"AE title {title!r} is not an AE value (PS3.5 6.2)",
                abort=(AbortSource.SERVICE_PROVIDER, AbortReason.INVALID_PDU_PARAMETER),
                reject=(RejectResult.PERMANENT, RejectSource.SERVICE_USER, reason),
            )
    app_context: str | None = None
    user_info: UserInformation | None = None
    contexts: list[PresentationContextRq] = []
    ids: set[int] = set()
    for item_type, value, stop in walk_items(raw, _ASSOCIATE_FIXED, len(raw), "item"):
        if item_type == PRESENTATION_CONTEXT_RQ_ITEM:
            # Inline rather than a helper: an RQ may carry >100 of these.
            if stop - value < 4:
                raise invalid(f"presentation context item of {stop - value} bytes")
            context_id = raw[value]
            if not context_id & 1 or context_id in ids:
                raise invalid(f"presentation context ID {context_id} is even or repeated")
            ids.add(context_id)
            abstract: str | None = None
            syntaxes: list[str] = []
            for sub_type, sub_value, sub_stop in walk_items(raw, value + 4, stop, _SUB_ITEM):
                if sub_type == TRANSFER_SYNTAX_ITEM:
                    syntaxes.append(read_uid(text, sub_value, sub_stop, "transfer syntax"))
                elif sub_type == ABSTRACT_SYNTAX_ITEM:
                    if abstract is not None:
                        raise invalid(f"presentation context {context_id}: two abstract syntaxes")
                    abstract = read_uid(text, sub_value, sub_stop, "abstract syntax")
            if abstract is None or not syntaxes:
                raise invalid(f"presentation context {context_id} lacks a mandatory sub-item")
            contexts.append(PresentationContextRq(context_id, abstract, tuple(syntaxes)))
        else:
            app_context, user_info = _common_item(
                raw, text, item_type, value, stop, app_context, user_info
            )
    if app_context is None or user_info is None or not contexts:
        raise invalid("A-ASSOCIATE-RQ lacks a mandatory item")
    return AAssociateRq(called, calling, tuple(contexts), user_info, app_context, version)


def _decode_associate_ac(body: memoryview) -> AAssociateAc:
    """A-ASSOCIATE-AC variable field, PS3.8 9.3.3."""
    raw = bytes(body)
    text = raw.decode("latin-1")
    version, called, calling = _fixed_fields(raw, text)
    app_context: str | None = None
    user_info: UserInformation | None = None
    contexts: list[PresentationContextAc] = []
    ids: set[int] = set()
    for item_type, value, stop in walk_items(raw, _ASSOCIATE_FIXED, len(raw), "item"):
        if item_type == PRESENTATION_CONTEXT_AC_ITEM:
            context = _decode_context_ac(raw, text, value, stop)
            if context.id in ids:
                raise invalid(f"presentation context ID {context.id} is repeated")
            ids.add(context.id)
            contexts.append(context)
        else:
            app_context, user_info = _common_item(
                raw, text, item_type, value, stop, app_context, user_info
            )
    if app_context is None or user_info is None or not contexts:
        raise invalid("A-ASSOCIATE-AC lacks a mandatory item")
    return AAssociateAc(called, calling, tuple(contexts), user_info, app_context, version)


_SUB_ITEM = "presentation context sub-item"


def _common_item(
    raw: bytes,
    text: str,
    item_type: int,
    value: int,
    stop: int,
    app_context: str | None,
    user_info: UserInformation | None,
) -> tuple[str | None, UserInformation | None]:
    """The items an RQ and an AC share; any other type is skipped (PS3.8 9.3.1)."""
    if item_type == APPLICATION_CONTEXT_ITEM:
        if app_context is not None:
            raise invalid("two application context items")
        app_context = read_uid(text, value, stop, "application context name")
    elif item_type == USER_INFORMATION:
        if user_info is not None:
            raise invalid("two user information items")
        user_info = decode_user_information(raw, text, value, stop)
    return app_context, user_info


def _decode_context_ac(raw: bytes, text: str, value: int, stop: int) -> PresentationContextAc:
    """Presentation context item of an A-ASSOCIATE-AC (0x21), PS3.8 9.3.3.2."""
    if stop - value < 4:
        raise invalid(f"presentation context item of {stop - value} bytes")
    context_id = raw[value]
    result = raw[value + 2]
    if not context_id & 1:
        raise invalid(f"presentation context ID {context_id} is even")
    if result >= len(_CONTEXT_RESULTS):
        raise invalid(f"presentation context {context_id}: result/reason {result}")
    syntax: str | None = None
    for sub_type, sub_value, sub_stop in walk_items(raw, value + 4, stop, _SUB_ITEM):
        if sub_type == TRANSFER_SYNTAX_ITEM:
            if syntax is not None:
                raise invalid(f"presentation context {context_id}: two transfer syntaxes")
            syntax = text[sub_value:sub_stop].rstrip("\x00 ")
    if result == ContextResult.ACCEPTANCE:
        if not syntax or not syntax.isascii():
            raise invalid(f"accepted presentation context {context_id} lacks a transfer syntax")
    elif syntax is None or not syntax.isascii():
        # PS3.8 9.3.3.2: when not accepted the sub-item "shall not be tested".
        syntax = ""
    return PresentationContextAc(context_id, _CONTEXT_RESULTS[result], syntax)


def encode(pdu: Pdu) -> bytes:
    """The whole PDU, header included, PS3.8 9.3.

    Values that cannot be sent (an AE title that is empty or longer than 16, a
    UID that is not 1-64 digits and dots, an even presentation context ID, a
    value outside its field, ...) raise :class:`LocalProtocolError`.
    """
    if isinstance(pdu, PDataTf):
        return _encode_p_data(pdu)
    if isinstance(pdu, AAssociateRq):
        return _encode_associate_rq(pdu)
    if isinstance(pdu, AAssociateAc):
        return _encode_associate_ac(pdu)
    if isinstance(pdu, AReleaseRq):
        return _RELEASE_RQ
    if isinstance(pdu, AReleaseRp):
        return _RELEASE_RP
    if isinstance(pdu, AAssociateRj):
        if pdu.result not in (RejectResult.PERMANENT, RejectResult.TRANSIENT):
            raise LocalProtocolError(f"A-ASSOCIATE-RJ result {pdu.result!r}")
        reasons = _REJECT_REASONS.get(pdu.source)
        if reasons is None or pdu.reason not in reasons:
            raise LocalProtocolError(
                f"A-ASSOCIATE-RJ source {pdu.source!r} with reason {pdu.reason!r}"
            )
        return bytes((PduType.A_ASSOCIATE_RJ, 0, 0, 0, 0, 4, 0, pdu.result, pdu.source, pdu.reason))
    if isinstance(pdu, AAbort):
        if pdu.source not in _ABORT_SOURCES or pdu.reason not in _ABORT_REASONS:
            raise LocalProtocolError(f"A-ABORT source {pdu.source!r} reason {pdu.reason!r}")
        return bytes((PduType.A_ABORT, 0, 0, 0, 0, 4, 0, 0, pdu.source, pdu.reason))
    raise LocalProtocolError(f"{type(pdu).__name__} is not a PDU")


def _pdu(pdu_type: int, body: bytes) -> bytes:
    if len(body) > 0xFFFFFFFF:
        raise LocalProtocolError(f"PDU variable field of {len(body)} bytes is too long")
    return _HEADER.pack(pdu_type, len(body)) + body


def _check_context_id(context_id: int, ids: set[int]) -> int:
    if not (0 < context_id < 256 and context_id & 1) or context_id in ids:
        raise LocalProtocolError(
            f"presentation context ID {context_id!r} is even, repeated or >255"
        )
    ids.add(context_id)
    return context_id


def _associate_body(
    pdu: AAssociateRq | AAssociateAc, contexts: list[bytes], *, reserved_aes: bool
) -> bytes:
    version = check_range(pdu.protocol_version, 0, 0xFFFF, "protocol version")
    return b"".join(
        (
            _U16.pack(version),
            b"\x00\x00",
            ae_bytes(pdu.called_ae, "called AE title", allow_empty=reserved_aes),
            ae_bytes(pdu.calling_ae, "calling AE title", allow_empty=reserved_aes),
            bytes(32),
            item(
                APPLICATION_CONTEXT_ITEM, uid_bytes(pdu.application_context, "application context")
            ),
            *contexts,
            encode_user_information(pdu.user_info),
        )
    )


def _encode_associate_rq(pdu: AAssociateRq) -> bytes:
    """A-ASSOCIATE-RQ, PS3.8 9.3.2."""
    if not pdu.contexts:
        raise LocalProtocolError("A-ASSOCIATE-RQ without a presentation context")
    ids: set[int] = set()
    contexts = []
    for context in pdu.contexts:
        context_id = _check_context_id(context.id, ids)
        if not context.transfer_syntaxes:
            raise LocalProtocolError(f"presentation context {context_id} has no transfer syntax")
        value = [
            bytes((context_id, 0, 0, 0)),
            item(ABSTRACT_SYNTAX_ITEM, uid_bytes(context.abstract_syntax, "abstract syntax")),
        ]
        value.extend(
            item(TRANSFER_SYNTAX_ITEM, uid_bytes(uid, "transfer syntax"))
            for uid in context.transfer_syntaxes
        )
        contexts.append(item(PRESENTATION_CONTEXT_RQ_ITEM, b"".join(value)))
    return _pdu(PduType.A_ASSOCIATE_RQ, _associate_body(pdu, contexts, reserved_aes=False))


def _encode_associate_ac(pdu: AAssociateAc) -> bytes:
    """A-ASSOCIATE-AC, PS3.8 9.3.3; a rejected context carries an empty transfer syntax."""
    if not pdu.contexts:
        raise LocalProtocolError("A-ASSOCIATE-AC without a presentation context")
    ids: set[int] = set()
    contexts = []
    for context in pdu.contexts:
        context_id = _check_context_id(context.id, ids)
        result = check_range(context.result, 0, len(_CONTEXT_RESULTS) - 1, "context result")
        if result == ContextResult.ACCEPTANCE or context.transfer_syntax:
            syntax = uid_bytes(context.transfer_syntax, "transfer syntax")
        else:
            syntax = b""
        value = bytes((context_id, 0, result, 0)) + item(TRANSFER_SYNTAX_ITEM, syntax)
        contexts.append(item(PRESENTATION_CONTEXT_AC_ITEM, value))
    return _pdu(PduType.A_ASSOCIATE_AC, _associate_body(pdu, contexts, reserved_aes=True))


def _encode_p_data(pdu: PDataTf) -> bytes:
    """P-DATA-TF, PS3.8 9.3.5: one PDU header, then each PDV's header and data."""
    if not pdu.pdvs:
        raise LocalProtocolError("P-DATA-TF without a PDV")
    for pdv in pdu.pdvs:
        if not (0 < pdv.context_id < 256 and pdv.context_id & 1) or not 0 <= pdv.control <= 3:
            raise LocalProtocolError(
                f"PDV context ID {pdv.context_id!r} / control header {pdv.control!r} invalid"
            )
    if len(pdu.pdvs) == 1:
        pdv = pdu.pdvs[0]
        return encode_p_data(pdv.context_id, pdv.control, pdv.data)
    parts: list[bytes | memoryview] = []
    for pdv in pdu.pdvs:
        parts.append(_PDV_HEADER.pack(len(pdv.data) + 2, pdv.context_id, pdv.control))
        parts.append(pdv.data)
    body = b"".join(parts)
    return _pdu(PduType.P_DATA_TF, body)
