"""C-MOVE / C-GET policy (archive/services/retrieve.py): the parts without a provider.

``Counts`` (PS3.4 C.4.2.1.4 / C.4.3.1.4 final statuses), ``proposals`` (the
contexts a C-MOVE sub-association offers) and ``convert`` (the transcoding seam).
The providers are tested in ``test_retrieve_get`` and ``test_retrieve_move``.
"""

from __future__ import annotations

import asyncio
import struct
from collections.abc import AsyncGenerator, AsyncIterator

import pytest

from archive.dicom.dataset import decode_dataset
from archive.index import InstanceRow
from archive.services.contexts import NotConvertible, convert, proposals
from archive.services.retrieve import Counts, Retriever
from tests.interop.qrhelpers import CT_IMAGE, MR_IMAGE
from tests.services.retrievehelpers import ELE, ILE, Context

EBE = "1.2.840.10008.1.2.2"
DEFLATED = "1.2.840.10008.1.2.1.99"
RLE = "1.2.840.10008.1.2.5"


# ---- Counts ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("completed", "failed", "warning", "cancelled", "status"),
    [
        (3, 0, 0, False, 0x0000),
        (0, 0, 0, False, 0x0000),  # nothing selected: success, no sub-operations
        (2, 1, 0, False, 0xB000),
        (0, 1, 1, False, 0xB000),
        (2, 0, 1, False, 0xB000),
        (0, 3, 0, False, 0xA702),
        (1, 0, 0, True, 0xFE00),
        (0, 2, 0, True, 0xFE00),
    ],
)
def test_final_status_table(
    completed: int, failed: int, warning: int, cancelled: bool, status: int
) -> None:
    counts = Counts(remaining=0, completed=completed, failed=failed, warning=warning)
    assert counts.final_status(cancelled) == status


def test_record_sorts_statuses_into_counts() -> None:
    counts = Counts(remaining=5)
    counts.record("1.1", 0x0000)
    counts.record("1.2", 0xB000)  # C-STORE warning: coercion of data elements
    counts.record("1.3", 0xA700)
    counts.record("1.4", None)  # not sent at all
    assert (counts.remaining, counts.completed, counts.warning, counts.failed) == (1, 1, 1, 2)
    assert counts.failed_uids == ["1.3", "1.4"]


# ---- proposals / convert -------------------------------------------------------------------


def row(uid: str, sop_class: str = CT_IMAGE, ts: str = ELE) -> InstanceRow:
    return InstanceRow(uid, "1.2", "1.2.1", sop_class, f"i/{uid}.dcm", 1, "0" * 64, ts)


@pytest.mark.parametrize(("syntax", "listed"), [(ILE, 3000), (ELE, 1008)])
def test_the_failed_list_holds_every_uid_that_fits_and_says_what_it_left_out(
    syntax: str, listed: int
) -> None:
    """3,000 failed 64-character UIDs: all in Implicit VR (a 32-bit length); in
    Explicit VR as many as a UI value's 16-bit length holds, the Error Comment
    saying how many were left out. It stopped at 16 bits in both, silently."""
    uids = [f"1.2.{n:060d}" for n in range(3000)]
    retriever = Retriever(None, [], None, priority=0, originator=None)  # type: ignore[arg-type]
    retriever.counts = Counts(remaining=0, failed=3000, failed_uids=uids)
    dataset, comment = retriever.failed_list(syntax)
    assert dataset is not None
    (element,) = decode_dataset(dataset, syntax)
    assert element.tag == 0x00080058
    assert bytes(element.value).rstrip(b"\0").decode().split("\\") == uids[:listed]  # type: ignore[arg-type]
    assert comment == (
        None if listed == 3000 else f"Failed SOP Instance UID List: {3000 - listed} UIDs left out"
    )


def test_proposals_one_context_per_class_and_stored_syntax() -> None:
    rows = [
        row("1", CT_IMAGE, ELE),
        row("2", CT_IMAGE, ELE),
        row("3", CT_IMAGE, ILE),
        row("4", MR_IMAGE, RLE),
        row("5", MR_IMAGE, EBE),
        row("6", MR_IMAGE, DEFLATED),
    ]
    # Each stored syntax alone: offered beside another native one, the acceptor
    # may pick the one we cannot send (DCMTK, pynetdicom and Orthanc take Explicit).
    # Then one Explicit/Implicit LE context per class with native data, for the
    # transcoder to come (issue 4: "and Explicit VR LE / Implicit VR LE for
    # uncompressed data").
    assert proposals(rows) == [
        (CT_IMAGE, [ELE]),
        (CT_IMAGE, [ILE]),
        (MR_IMAGE, [RLE]),
        (MR_IMAGE, [EBE]),
        (MR_IMAGE, [DEFLATED]),
        (CT_IMAGE, [ELE, ILE]),
        (MR_IMAGE, [ELE, ILE]),
    ]


def test_proposals_capped_at_128_contexts() -> None:
    rows = [row(str(n), f"1.2.3.{n}") for n in range(200)]
    contexts = proposals(rows)
    assert len(contexts) == 128
    assert [c[0] for c in contexts] == [f"1.2.3.{n}" for n in range(128)]


def test_convert_picks_the_context_of_the_stored_syntax() -> None:
    contexts = [Context(1, CT_IMAGE, ILE), Context(3, CT_IMAGE, ELE), Context(5, MR_IMAGE, ELE)]
    context, filtered = convert(row("1", CT_IMAGE, ELE), contexts)
    assert context == contexts[1]

    async def chunks() -> AsyncIterator[memoryview]:
        yield memoryview(b"abc")

    source = chunks()
    assert filtered(source) is source  # the identity filter: no transcoding yet


def test_convert_takes_implicit_vr_for_an_explicit_vr_instance_if_it_must() -> None:
    """Only when the stored syntax has no context: then the filter converts."""
    contexts = [Context(1, CT_IMAGE, RLE), Context(3, CT_IMAGE, ILE)]
    context, filtered = convert(row("1", CT_IMAGE, ELE), contexts)
    assert context == contexts[1]
    body = struct.pack("<HH2sH", 0x0008, 0x0060, b"CS", 2) + b"CT"

    async def chunks() -> AsyncGenerator[memoryview, None]:
        yield memoryview(body[:5])
        yield memoryview(body[5:])

    async def sent() -> bytes:
        return b"".join([bytes(c) async for c in filtered(chunks())])

    assert asyncio.run(sent()) == struct.pack("<HHL", 0x0008, 0x0060, 2) + b"CT"
    # An Implicit VR instance has no way into Explicit VR (no transcoding yet).
    with pytest.raises(NotConvertible):
        convert(row("2", CT_IMAGE, ILE), [Context(1, CT_IMAGE, ELE)])


def test_convert_takes_explicit_vr_le_for_a_deflated_or_big_endian_instance() -> None:
    deflated = "1.2.840.10008.1.2.1.99"
    contexts = [Context(1, CT_IMAGE, ILE), Context(3, CT_IMAGE, ELE)]
    context, _ = convert(row("1", CT_IMAGE, deflated), contexts)
    assert context == contexts[1]  # inflated is Explicit VR: no conversion beyond it
    context, _ = convert(row("1", CT_IMAGE, deflated), contexts[:1])
    assert context == contexts[0]
    context, _ = convert(row("1", CT_IMAGE, deflated), [*contexts, Context(5, CT_IMAGE, deflated)])
    assert context.id == 5
    big = "1.2.840.10008.1.2.2"
    context, _ = convert(row("2", CT_IMAGE, big), contexts)
    assert context == contexts[1]  # swapped to Little Endian, as Explicit VR


def test_convert_without_a_context_for_the_class() -> None:
    with pytest.raises(NotConvertible) as info:
        convert(row("1", MR_IMAGE, ELE), [Context(1, CT_IMAGE, ELE)])
    assert str(info.value) == f"the destination accepted no context for SOP class {MR_IMAGE}"
    assert info.value.code == "retrieve.transfer_syntax"


def test_convert_without_the_stored_syntax() -> None:
    with pytest.raises(NotConvertible) as info:
        convert(row("1", CT_IMAGE, RLE), [Context(1, CT_IMAGE, ELE), Context(3, CT_IMAGE, ILE)])
    assert str(info.value) == (
        f"the destination does not accept transfer syntax {RLE} for SOP class {CT_IMAGE} "
        "(no transcoding yet)"
    )


def test_the_failed_list_leaves_out_what_is_no_uid() -> None:
    """A row an older version's ``archive check --repair`` indexed may hold a SOP
    Instance UID that is none (not even ASCII): the final response lists the
    others instead of failing to encode (every C-MOVE/C-GET of the study ended
    in an internal-error abort)."""
    uids = ["1.2.3", "1.2.3\x00\x08ZZNAME", "9.\u00fc", "1.2.4"]
    retriever = Retriever(None, [], None, priority=0, originator=None)  # type: ignore[arg-type]
    retriever.counts = Counts(remaining=0, failed=4, failed_uids=uids)
    dataset, comment = retriever.failed_list(ELE)
    assert dataset is not None
    (element,) = decode_dataset(dataset, ELE)
    assert bytes(element.value).rstrip(b"\0").decode().split("\\") == ["1.2.3", "1.2.4"]  # type: ignore[arg-type]
    assert comment == "Failed SOP Instance UID List: 2 UIDs left out"
