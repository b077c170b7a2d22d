"""Hypothesis strategies for DICOM upper-layer values and every PDU record (PS3.8 9.3).

Shared by the tests under ``tests/dicom``: import them with
``from tests.dicom.strategies import ...``. Every
strategy yields values the codec can encode, so ``decode(encode(x)) == x``.
"""

from __future__ import annotations

import string

from hypothesis import strategies as st

from archive.dicom.ul import pdu
from archive.dicom.ul.pdata import Pdv

__all__ = [
    "a_abort",
    "a_associate_ac",
    "a_associate_rj",
    "a_associate_rq",
    "ae_titles",
    "context_ids",
    "p_data_tf",
    "pdus",
    "pdvs",
    "presentation_contexts_ac",
    "presentation_contexts_rq",
    "uids",
    "user_information",
]

# AE VR (PS3.5 6.2): printable ASCII without backslash.
_AE_ALPHABET = "".join(c for c in string.printable if c.isprintable() and c != "\\")

#: AE titles as decoded: 1-16 characters, no leading or trailing space.
ae_titles = st.text(_AE_ALPHABET, min_size=1, max_size=16).map(str.strip).filter(bool)

#: UIDs (PS3.5 9.1): dot-separated numbers without leading zeros, at most 64 characters.
uids = (
    st.lists(st.integers(0, 10**12), min_size=2, max_size=12)
    .map(lambda parts: ".".join(map(str, parts)))
    .filter(lambda uid: len(uid) <= 64)
)

#: Presentation context IDs: odd, 1..255 (PS3.8 9.3.2.2).
context_ids = st.integers(0, 127).map(lambda i: 2 * i + 1)

_KNOWN_SUB_ITEMS = frozenset(range(0x51, 0x5A))


def presentation_contexts_rq(
    max_size: int = 8,
) -> st.SearchStrategy[tuple[pdu.PresentationContextRq, ...]]:
    """A non-empty tuple of RQ presentation contexts with distinct IDs."""
    return st.lists(context_ids, min_size=1, max_size=max_size, unique=True).flatmap(
        lambda ids: st.tuples(
            *(
                st.builds(
                    pdu.PresentationContextRq,
                    st.just(i),
                    uids,
                    st.lists(uids, min_size=1, max_size=4).map(tuple),
                )
                for i in ids
            )
        )
    )


@st.composite
def _context_ac(draw: st.DrawFn, context_id: int) -> pdu.PresentationContextAc:
    result = draw(st.sampled_from(pdu.ContextResult))
    if result == pdu.ContextResult.ACCEPTANCE:
        syntax = draw(uids)
    else:
        syntax = draw(st.one_of(st.just(""), uids))
    return pdu.PresentationContextAc(context_id, result, syntax)


def presentation_contexts_ac(
    max_size: int = 8,
) -> st.SearchStrategy[tuple[pdu.PresentationContextAc, ...]]:
    """A non-empty tuple of AC presentation contexts with distinct IDs."""
    return st.lists(context_ids, min_size=1, max_size=max_size, unique=True).flatmap(
        lambda ids: st.tuples(*(_context_ac(i) for i in ids))
    )


_short_bytes = st.binary(max_size=40)

#: User Information items with any combination of sub-items (PS3.7 D.3.3).
user_information = st.builds(
    pdu.UserInformation,
    max_length=st.none() | st.integers(0, 0xFFFFFFFF),
    implementation_class_uid=st.none() | uids,
    implementation_version_name=st.none()
    | st.text(string.ascii_letters + string.digits + "_.-", min_size=1, max_size=16),
    async_ops=st.none()
    | st.builds(pdu.AsyncOperationsWindow, st.integers(0, 0xFFFF), st.integers(0, 0xFFFF)),
    roles=st.lists(
        st.builds(pdu.RoleSelection, uids, st.booleans(), st.booleans()), max_size=3
    ).map(tuple),
    extended=st.lists(st.builds(pdu.SopClassExtended, uids, _short_bytes), max_size=3).map(tuple),
    common_extended=st.lists(
        st.builds(
            pdu.SopClassCommonExtended,
            uids,
            uids,
            st.lists(uids, max_size=3).map(tuple),
        ),
        max_size=3,
    ).map(tuple),
    user_identity_rq=st.none()
    | st.builds(pdu.UserIdentityRq, st.integers(1, 5), st.booleans(), _short_bytes, _short_bytes),
    user_identity_ac=st.none() | st.builds(pdu.UserIdentityAc, _short_bytes),
    unknown=st.lists(
        st.tuples(st.integers(0, 255).filter(lambda t: t not in _KNOWN_SUB_ITEMS), _short_bytes),
        max_size=3,
    ).map(tuple),
)

a_associate_rq = st.builds(
    pdu.AAssociateRq,
    called_ae=ae_titles,
    calling_ae=ae_titles,
    contexts=presentation_contexts_rq(),
    user_info=user_information,
    application_context=st.one_of(st.just("1.2.840.10008.3.1.1.1"), uids),
    protocol_version=st.one_of(st.just(1), st.integers(0, 0xFFFF)),
)

# The AE title fields of an AC are reserved (PS3.8 9.3.3): empty is allowed.
a_associate_ac = st.builds(
    pdu.AAssociateAc,
    called_ae=st.just("") | ae_titles,
    calling_ae=st.just("") | ae_titles,
    contexts=presentation_contexts_ac(),
    user_info=user_information,
    application_context=st.one_of(st.just("1.2.840.10008.3.1.1.1"), uids),
    protocol_version=st.one_of(st.just(1), st.integers(0, 0xFFFF)),
)

# (source, reason) pairs of PS3.8 Table 9-21.
a_associate_rj = st.builds(
    lambda result, source_reason: pdu.AAssociateRj(result, *source_reason),
    st.sampled_from((1, 2)),
    st.sampled_from(((1, 1), (1, 2), (1, 3), (1, 7), (2, 1), (2, 2), (3, 1), (3, 2))),
)

a_abort = st.builds(pdu.AAbort, st.sampled_from((0, 2)), st.sampled_from((0, 1, 2, 4, 5, 6)))

#: PDVs whose data is a memoryview, as the decoder produces them (PS3.8 9.3.5.1).
pdvs = st.builds(
    Pdv,
    context_ids,
    st.integers(0, 3),
    st.binary(max_size=64).map(memoryview),
)

p_data_tf = st.lists(pdvs, min_size=1, max_size=5).map(lambda items: pdu.PDataTf(tuple(items)))

pdus: st.SearchStrategy[pdu.Pdu] = st.one_of(
    a_associate_rq,
    a_associate_ac,
    a_associate_rj,
    p_data_tf,
    st.just(pdu.AReleaseRq()),
    st.just(pdu.AReleaseRp()),
    a_abort,
)
