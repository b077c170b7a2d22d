"""Which presentation contexts a retrieve proposes, and which one each instance
goes out on (C-MOVE and C-GET sub-operations, ``retrieve.py``).

An instance goes out as stored when the destination accepts that; one stored in
Explicit VR Little Endian also goes to a destination that takes Implicit VR
Little Endian only (the default every SCP must accept, PS3.5 10.1), converted as
it is sent (``archive/dicom/reencode.py``: headers change, values do not), and
a Deflated one inflated or an Explicit VR Big Endian one swapped, in either
(``store/sources.py``, ``sendable_as``).
Transcoding (compressed syntaxes) plugs in at :func:`convert` too, whose filter
stands for it.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Callable, Iterable, Sequence
from functools import partial

from archive.dicom.uids import EXPLICIT_VR_LE, IMPLICIT_VR_LE, NATIVE_TRANSFER_SYNTAXES
from archive.dicom.ul.negotiation import MAX_CONTEXTS
from archive.errors import ArchiveError
from archive.index import InstanceRow
from archive.services.base import StoreContext
from archive.store.sources import reencoded, sendable_as

#: What a data set's chunks go through on their way to the destination.
Filter = Callable[[AsyncGenerator[memoryview, None]], AsyncGenerator[memoryview, None]]


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
    context offering Explicit and Implicit VR Little Endian: an Explicit VR
    instance goes on it converted when the destination took Implicit VR there
    and refused the stored syntax, a Deflated one inflated, a Big Endian one
    swapped (:func:`convert`).
    At most 128 contexts (PS3.8 9.3.2.2): the stored-syntax contexts come first,
    and pairs beyond the limit are not proposed (their instances fail).
    """
    pairs: dict[tuple[str, str], None] = {}
    for row in rows:
        pairs.setdefault((row.sop_class_uid, row.transfer_syntax_uid), None)
    result = [(sop_class, [ts]) for sop_class, ts in pairs]
    native = dict.fromkeys(c for c, ts in pairs if ts in NATIVE_TRANSFER_SYNTAXES)
    result += [(sop_class, [EXPLICIT_VR_LE, IMPLICIT_VR_LE]) for sop_class in native]
    return result[:MAX_CONTEXTS]


def convert(row: InstanceRow, contexts: Sequence[StoreContext]) -> tuple[StoreContext, Filter]:
    """The context to send ``row`` on and the filter its data set goes through.

    The stored syntax first (the identity filter), then the others it can be
    sent in (:func:`~archive.store.sources.sendable_as`: inflated, swapped to
    Little Endian, or in Implicit VR Little Endian). Raises :class:`NotConvertible` with the reason.
    """
    ours = [c for c in contexts if c.abstract_syntax == row.sop_class_uid]
    if not ours:
        raise NotConvertible(
            f"the destination accepted no context for SOP class {row.sop_class_uid}"
        )
    stored = row.transfer_syntax_uid
    for sent in sendable_as(stored):
        for context in ours:
            if context.transfer_syntax == sent:
                return context, partial(
                    reencoded, stored=stored, sent=sent, failed=ConversionFailed
                )
    raise NotConvertible(
        f"the destination does not accept transfer syntax {stored} "
        f"for SOP class {row.sop_class_uid} (no transcoding yet)"
    )


class ConversionFailed(OSError):
    """A stored data set the conversion cannot follow, found while it was sent.

    An OSError, as a file that cannot be read mid-send is: the sub-operation
    fails and its association, holding half a message, is aborted."""
