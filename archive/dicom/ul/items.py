"""User Information item (0x50) and its sub-items: byte codec (PS3.8 9.3.2.3, PS3.7 D.3.3).

Also the field-level primitives the PDU codec in :mod:`archive.dicom.ul.codec`
shares with it: item headers, UID and AE-title checks, and the error factory.

Theory of operation: the decoder works on a PDU's variable field held twice, as
``raw`` (bytes, for ``struct.unpack_from`` and binary values) and ``text`` (the
same bytes decoded once as latin-1, so that every string field is a cheap slice
of ``text`` checked with :meth:`str.isascii` instead of a fresh decode). Every
offset is checked against the end of the enclosing item before it is read, so a
malformed item raises :class:`RemoteProtocolError` and nothing else. This module
is not the state machine and applies no policy: it decodes what was sent.
"""

from __future__ import annotations

import re
import struct
from collections.abc import Iterator

from archive.dicom.errors import (
    AbortReason,
    AbortSource,
    LocalProtocolError,
    RemoteProtocolError,
)
from archive.dicom.ul.pdu import (
    AsyncOperationsWindow,
    RoleSelection,
    SopClassCommonExtended,
    SopClassExtended,
    UserIdentityAc,
    UserIdentityRq,
    UserInformation,
)

#: Item header: type, reserved, uint16 length (PS3.8 9.3.2.2 and following).
ITEM_HEADER = struct.Struct(">BxH")
_U16 = struct.Struct(">H")
_U32_ITEM = struct.Struct(">BxHL")
_U16_U16_ITEM = struct.Struct(">BxHHH")

#: User-data sub-item types, PS3.7 D.3.3 and PS3.8 D.1.
MAXIMUM_LENGTH = 0x51
IMPLEMENTATION_CLASS_UID = 0x52
ASYNC_OPERATIONS_WINDOW = 0x53
ROLE_SELECTION = 0x54
IMPLEMENTATION_VERSION_NAME = 0x55
SOP_CLASS_EXTENDED = 0x56
SOP_CLASS_COMMON_EXTENDED = 0x57
USER_IDENTITY_RQ = 0x58
USER_IDENTITY_AC = 0x59
USER_INFORMATION = 0x50

_UID = re.compile(r"[0-9.]{1,64}")
# AE VR, PS3.5 6.2: default repertoire without backslash or control characters.
_AE = re.compile(r"[ -\[\]-~]{1,16}")
_PADDING = "\x00 "


def invalid(message: str) -> RemoteProtocolError:
    """The error for a malformed PDU field: A-ABORT (service provider, invalid PDU parameter)."""
    return RemoteProtocolError(
        message, abort=(AbortSource.SERVICE_PROVIDER, AbortReason.INVALID_PDU_PARAMETER)
    )


def read_uid(text: str, start: int, end: int, what: str) -> str:
    """A non-empty UID field of ``text[start:end]``, trailing NUL/space padding removed.

    PS3.8 Annex F forbids padding UIDs in PDU items, but peers that follow the
    PS3.5 9.1 dataset rule send a trailing NUL: it is accepted and dropped.
    """
    value = text[start:end].rstrip(_PADDING)
    if not value or not value.isascii():
        raise invalid(f"{what} is empty or not ASCII")
    return value


def uid_bytes(value: str, what: str) -> bytes:
    """Encode a UID for a PDU item: 1-64 of ``0-9`` and ``.``, unpadded (PS3.8 Annex F)."""
    if not _UID.fullmatch(value):
        raise LocalProtocolError(f"{what} {value!r} is not a UID of 1-64 digits and dots")
    return value.encode("ascii")


def is_ae_title(value: str) -> bool:
    """1-16 characters of the default repertoire, no backslash or control character."""
    return _AE.fullmatch(value) is not None


def ae_bytes(value: str, what: str, *, allow_empty: bool = False) -> bytes:
    """Encode an AE title as its 16-byte space-padded field (PS3.8 9.3.2, PS3.5 6.2)."""
    if allow_empty and value == "":
        return b" " * 16
    if not _AE.fullmatch(value) or value.strip() != value or not value:
        raise LocalProtocolError(
            f"{what} {value!r} is not 1-16 AE characters without leading/trailing spaces"
        )
    return value.encode("ascii").ljust(16)


def check_range(value: int, low: int, high: int, what: str) -> int:
    """``value`` if ``low <= value <= high``, else LocalProtocolError."""
    if not low <= value <= high:
        raise LocalProtocolError(f"{what} {value!r} is outside {low}..{high}")
    return value


def item(item_type: int, value: bytes) -> bytes:
    """An item or sub-item: header (type, reserved 00H, uint16 length) then ``value``."""
    if len(value) > 0xFFFF:
        raise LocalProtocolError(f"item 0x{item_type:02x} value of {len(value)} bytes is too long")
    return ITEM_HEADER.pack(item_type, len(value)) + value


def _u16_prefixed(value: bytes, what: str) -> bytes:
    if len(value) > 0xFFFF:
        raise LocalProtocolError(f"{what} of {len(value)} bytes is too long")
    return _U16.pack(len(value)) + value


def _u16_field(raw: bytes, offset: int, end: int, what: str) -> tuple[int, int]:
    """(start, stop) of a uint16-length-prefixed field at ``offset`` inside ``end``."""
    if offset + 2 > end:
        raise invalid(f"{what} length field overruns its sub-item")
    (length,) = _U16.unpack_from(raw, offset)
    start = offset + 2
    if start + length > end:
        raise invalid(f"{what} of {length} bytes overruns its sub-item")
    return start, start + length


def walk_items(raw: bytes, start: int, end: int, what: str) -> Iterator[tuple[int, int, int]]:
    """(type, value start, value end) of each item filling ``raw[start:end]`` exactly.

    The one bounds check of every item and sub-item list (PS3.8 9.3.1): a header
    cut short or a length that overruns its parent is an invalid PDU parameter.
    """
    unpack = ITEM_HEADER.unpack_from
    offset = start
    while offset < end:
        if offset + 4 > end:
            raise invalid(f"truncated {what} header")
        item_type, length = unpack(raw, offset)
        value = offset + 4
        stop = value + length
        if stop > end:
            raise invalid(f"{what} 0x{item_type:02x} of {length} bytes overruns its parent")
        yield item_type, value, stop
        offset = stop


def decode_user_information(raw: bytes, text: str, start: int, end: int) -> UserInformation:
    """Decode the sub-items of a User Information item occupying ``raw[start:end]``.

    Sub-items may come in any order (PS3.8 9.3.2.3 note). Sub-items defined as
    single (maximum length, implementation class UID and version name, async
    operations window, user identity) may not repeat. Unknown types are kept in
    ``unknown`` so that a round trip loses nothing.
    """
    max_length: int | None = None
    class_uid: str | None = None
    version_name: str | None = None
    async_ops: AsyncOperationsWindow | None = None
    identity_rq: UserIdentityRq | None = None
    identity_ac: UserIdentityAc | None = None
    roles: list[RoleSelection] = []
    extended: list[SopClassExtended] = []
    common: list[SopClassCommonExtended] = []
    unknown: list[tuple[int, bytes]] = []
    seen: set[int] = set()
    for sub_type, value, stop in walk_items(raw, start, end, "user information sub-item"):
        offset = value - 4
        length = stop - value
        if sub_type in seen:
            raise invalid(f"user information sub-item 0x{sub_type:02x} appears twice")
        if sub_type == MAXIMUM_LENGTH:
            if length != 4:
                raise invalid(f"maximum length sub-item of length {length}, not 4")
            max_length = _U32_ITEM.unpack_from(raw, offset)[2]
            seen.add(sub_type)
        elif sub_type == IMPLEMENTATION_CLASS_UID:
            class_uid = read_uid(text, value, stop, "implementation class UID")
            seen.add(sub_type)
        elif sub_type == IMPLEMENTATION_VERSION_NAME:
            version_name = text[value:stop].rstrip(_PADDING)
            if not version_name.isascii():
                raise invalid("implementation version name is not ASCII")
            seen.add(sub_type)
        elif sub_type == ASYNC_OPERATIONS_WINDOW:
            if length != 4:
                raise invalid(f"asynchronous operations window sub-item of length {length}")
            _, _, invoked, performed = _U16_U16_ITEM.unpack_from(raw, offset)
            async_ops = AsyncOperationsWindow(invoked, performed)
            seen.add(sub_type)
        elif sub_type == ROLE_SELECTION:
            roles.append(_decode_role(raw, text, value, stop))
        elif sub_type == SOP_CLASS_EXTENDED:
            a, b = _u16_field(raw, value, stop, "extended negotiation SOP class UID")
            uid = read_uid(text, a, b, "extended negotiation SOP class UID")
            extended.append(SopClassExtended(uid, raw[b:stop]))
        elif sub_type == SOP_CLASS_COMMON_EXTENDED:
            common.append(_decode_common_extended(raw, text, value, stop))
        elif sub_type == USER_IDENTITY_RQ:
            identity_rq = _decode_identity_rq(raw, value, stop)
            seen.add(sub_type)
        elif sub_type == USER_IDENTITY_AC:
            a, b = _u16_field(raw, value, stop, "user identity server response")
            if b != stop:
                raise invalid("user identity AC sub-item is longer than its response")
            identity_ac = UserIdentityAc(raw[a:b])
            seen.add(sub_type)
        else:
            unknown.append((sub_type, raw[value:stop]))
    return UserInformation(
        max_length=max_length,
        implementation_class_uid=class_uid,
        implementation_version_name=version_name,
        async_ops=async_ops,
        roles=tuple(roles),
        extended=tuple(extended),
        common_extended=tuple(common),
        user_identity_rq=identity_rq,
        user_identity_ac=identity_ac,
        unknown=tuple(unknown),
    )


def _role_flag(value: int, what: str) -> bool:
    # PS3.7 D.3.3.4 defines only 0 (non-support) and 1 (support).
    if value > 1:
        raise invalid(f"{what} role value {value} is neither 0 nor 1")
    return value == 1


def _decode_role(raw: bytes, text: str, value: int, stop: int) -> RoleSelection:
    """SCP/SCU Role Selection sub-item body, PS3.7 D.3.3.4."""
    a, b = _u16_field(raw, value, stop, "role selection SOP class UID")
    if b + 2 != stop:
        raise invalid("role selection sub-item length does not match its fields")
    uid = read_uid(text, a, b, "role selection SOP class UID")
    return RoleSelection(uid, _role_flag(raw[b], "SCU"), _role_flag(raw[b + 1], "SCP"))


def _decode_common_extended(raw: bytes, text: str, value: int, stop: int) -> SopClassCommonExtended:
    """SOP Class Common Extended Negotiation sub-item body, PS3.7 D.3.3.6.

    Byte 2 of this sub-item is its version (0), not a reserved byte; like a
    reserved field it is not tested on receipt.
    """
    a, b = _u16_field(raw, value, stop, "common extended SOP class UID")
    sop_class = read_uid(text, a, b, "common extended SOP class UID")
    a, b = _u16_field(raw, b, stop, "common extended service class UID")
    service_class = read_uid(text, a, b, "common extended service class UID")
    # The related-classes field is optional on the wire (absent = empty).
    related: list[str] = []
    if b < stop:
        a, b = _u16_field(raw, b, stop, "related general SOP class identification")
        if b != stop:
            raise invalid("common extended sub-item length does not match its fields")
        offset = a
        while offset < b:
            ra, rb = _u16_field(raw, offset, b, "related general SOP class UID")
            related.append(read_uid(text, ra, rb, "related general SOP class UID"))
            offset = rb
    return SopClassCommonExtended(sop_class, service_class, tuple(related))


def _decode_identity_rq(raw: bytes, value: int, stop: int) -> UserIdentityRq:
    """User Identity Negotiation sub-item body (request form), PS3.7 D.3.3.7.1."""
    if value + 2 > stop:
        raise invalid("user identity RQ sub-item is too short")
    identity_type = raw[value]
    positive = raw[value + 1]
    a, b = _u16_field(raw, value + 2, stop, "user identity primary field")
    sa, sb = _u16_field(raw, b, stop, "user identity secondary field")
    if sb != stop:
        raise invalid("user identity RQ sub-item length does not match its fields")
    if positive > 1:
        raise invalid(f"user identity positive-response-requested value {positive}")
    return UserIdentityRq(identity_type, positive == 1, raw[a:b], raw[sa:sb])


def encode_user_information(info: UserInformation) -> bytes:
    """The whole User Information item (0x50) for ``info``, PS3.8 9.3.2.3.

    Known sub-items go out in ascending type order, as some older peers expect
    (PS3.8 9.3.2.3 note); unknown ones follow in their recorded order.
    """
    parts: list[bytes] = []
    if info.max_length is not None:
        check_range(info.max_length, 0, 0xFFFFFFFF, "maximum length received")
        parts.append(_U32_ITEM.pack(MAXIMUM_LENGTH, 4, info.max_length))
    if info.implementation_class_uid is not None:
        uid = uid_bytes(info.implementation_class_uid, "implementation class UID")
        parts.append(item(IMPLEMENTATION_CLASS_UID, uid))
    if info.async_ops is not None:
        invoked = check_range(info.async_ops.max_invoked, 0, 0xFFFF, "max operations invoked")
        performed = check_range(info.async_ops.max_performed, 0, 0xFFFF, "max operations performed")
        parts.append(_U16_U16_ITEM.pack(ASYNC_OPERATIONS_WINDOW, 4, invoked, performed))
    for role in info.roles:
        uid = uid_bytes(role.sop_class_uid, "role selection SOP class UID")
        flags = bytes((int(role.scu_role), int(role.scp_role)))
        parts.append(item(ROLE_SELECTION, _U16.pack(len(uid)) + uid + flags))
    if info.implementation_version_name is not None:
        name = info.implementation_version_name
        if not (0 < len(name) <= 16 and name.isascii() and name.rstrip(_PADDING) == name):
            raise LocalProtocolError(f"implementation version name {name!r} is not 1-16 ASCII")
        parts.append(item(IMPLEMENTATION_VERSION_NAME, name.encode("ascii")))
    for ext in info.extended:
        uid = uid_bytes(ext.sop_class_uid, "extended negotiation SOP class UID")
        parts.append(item(SOP_CLASS_EXTENDED, _U16.pack(len(uid)) + uid + bytes(ext.info)))
    for common in info.common_extended:
        parts.append(_encode_common_extended(common))
    if info.user_identity_rq is not None:
        rq = info.user_identity_rq
        head = bytes((check_range(rq.identity_type, 0, 255, "user identity type"),))
        body = (
            head
            + bytes((int(rq.positive_response_requested),))
            + _u16_prefixed(bytes(rq.primary), "user identity primary field")
            + _u16_prefixed(bytes(rq.secondary), "user identity secondary field")
        )
        parts.append(item(USER_IDENTITY_RQ, body))
    if info.user_identity_ac is not None:
        response = _u16_prefixed(
            bytes(info.user_identity_ac.server_response), "user identity server response"
        )
        parts.append(item(USER_IDENTITY_AC, response))
    for sub_type, value in info.unknown:
        check_range(sub_type, 0, 255, "user information sub-item type")
        parts.append(item(sub_type, bytes(value)))
    return item(USER_INFORMATION, b"".join(parts))


def _encode_common_extended(common: SopClassCommonExtended) -> bytes:
    """SOP Class Common Extended Negotiation sub-item, PS3.7 D.3.3.6 (version 0)."""
    sop_class = uid_bytes(common.sop_class_uid, "common extended SOP class UID")
    service = uid_bytes(common.service_class_uid, "common extended service class UID")
    related = b"".join(
        _u16_prefixed(uid_bytes(uid, "related general SOP class UID"), "related UID")
        for uid in common.related_general_sop_classes
    )
    body = (
        _u16_prefixed(sop_class, "SOP class UID")
        + _u16_prefixed(service, "service class UID")
        + _u16_prefixed(related, "related general SOP class identification")
    )
    # item() writes 00H in byte 2, which for this sub-item is the version field.
    return item(SOP_CLASS_COMMON_EXTENDED, body)
