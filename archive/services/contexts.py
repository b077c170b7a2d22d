"""Which presentation contexts a retrieve proposes, and which one each instance
goes out on (C-MOVE and C-GET sub-operations, ``retrieve.py``).

Today an instance goes out only as stored; transcoding plugs in at
:func:`convert`, whose filter stands for it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterable, Sequence

from archive.dicom.uids import EXPLICIT_VR_LE, IMPLICIT_VR_LE, NATIVE_TRANSFER_SYNTAXES
from archive.dicom.ul.negotiation import MAX_CONTEXTS
from archive.errors import ArchiveError
from archive.index import InstanceRow
from archive.services.base import StoreContext


class NotConvertible(ArchiveError):
    """No accepted context can carry the instance as stored (and no transcoder yet)."""

    code = "retrieve.transfer_syntax"


def proposals(rows: Iterable[InstanceRow]) -> list[tuple[str, list[str]]]:
    """Presentation contexts for sending ``rows``.

    First one context per (SOP class, stored syntax), offering the stored
    transfer syntax alone: offered beside another native encoding, the acceptor
    may choose the one we cannot send as stored (DCMTK, pynetdicom and Orthanc
    all take Explicit VR when offered both, and an Implicit VR instance then had
    no context). Then, for each class with uncompressed instances, one more
    context offering Explicit and Implicit VR Little Endian, which
    :func:`convert` will use once transcoding arrives; today an instance only
    goes out on a context of its stored syntax. At most 128 contexts (PS3.8
    9.3.2.2): the stored-syntax contexts come first, and pairs beyond the limit
    are not proposed (their instances fail).
    """
    pairs: dict[tuple[str, str], None] = {}
    for row in rows:
        pairs.setdefault((row.sop_class_uid, row.transfer_syntax_uid), None)
    result = [(sop_class, [ts]) for sop_class, ts in pairs]
    native = dict.fromkeys(c for c, ts in pairs if ts in NATIVE_TRANSFER_SYNTAXES)
    result += [(sop_class, [EXPLICIT_VR_LE, IMPLICIT_VR_LE]) for sop_class in native]
    return result[:MAX_CONTEXTS]


def convert(
    row: InstanceRow, contexts: Sequence[StoreContext]
) -> tuple[StoreContext, Callable[[AsyncIterator[memoryview]], AsyncIterator[memoryview]]]:
    """The context to send ``row`` on and the filter its data set goes through.

    Today only the stored encoding goes out (the identity filter); a later issue
    plugs transcoding in here. Raises :class:`NotConvertible` with the reason.
    """
    offered = False
    for context in contexts:
        if context.abstract_syntax != row.sop_class_uid:
            continue
        offered = True
        if context.transfer_syntax == row.transfer_syntax_uid:
            return context, _identity
    if not offered:
        raise NotConvertible(
            f"the destination accepted no context for SOP class {row.sop_class_uid}"
        )
    raise NotConvertible(
        f"the destination does not accept transfer syntax {row.transfer_syntax_uid} "
        f"for SOP class {row.sop_class_uid} (no transcoding yet)"
    )


def _identity(chunks: AsyncIterator[memoryview]) -> AsyncIterator[memoryview]:
    return chunks
