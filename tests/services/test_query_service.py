"""The C-FIND provider (archive/services/query.py) over a real index, without a network.

A fake :class:`Request` carries the identifier; responses are collected as the
provider yields them, so a C-CANCEL can be "received" after any of them.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from pathlib import Path

import pytest

from archive.dicom.dataset import Element, decode_dataset, encode_dataset
from archive.dicom.dimse import CFindRq, CFindRsp
from archive.index import Index, IndexReadError
from archive.services.base import Cancel, Request, Response
from archive.services.query import FindSettings, c_find_provider
from tests.index import make_instance, run

STUDY_ROOT_FIND = "1.2.840.10008.5.1.4.1.2.2.1"
PATIENT_ROOT_FIND = "1.2.840.10008.5.1.4.1.2.1.1"
ELE = "1.2.840.10008.1.2.1"
ILE = "1.2.840.10008.1.2"

LEVEL = 0x00080052
RETRIEVE_AE_TITLE = 0x00080054
SOP_INSTANCE_UID = 0x00080018
STUDY_INSTANCE_UID = 0x0020000D
SERIES_INSTANCE_UID = 0x0020000E
PATIENT_NAME = 0x00100010


def identifier(level: bytes | None, *extra: Element, ts: str = ELE) -> bytes:
    elements = [Element(SOP_INSTANCE_UID, "UI", b"")]
    if level is not None:
        elements.append(Element(LEVEL, "CS", level))
    return encode_dataset([*elements, *extra], ts)


def request(
    data: bytes,
    *,
    abstract: str = STUDY_ROOT_FIND,
    ts: str = ELE,
    cancel: Cancel | None = None,
) -> Request:
    return Request(
        command=CFindRq(message_id=7, affected_sop_class_uid=abstract),
        context_id=1,
        abstract_syntax=abstract,
        transfer_syntax=ts,
        calling_ae="FINDSCU",
        called_ae="ARCHIVE",
        peer_host="127.0.0.1",
        identifier=data,
        cancel=cancel,
    )


async def _index(tmp_path: Path, count: int) -> Index:
    index = await Index.open(tmp_path / "index.sqlite", durability="fast")
    for n in range(1, count + 1):
        await index.add(make_instance(n, study="1.2.3"))
    return index


def find(
    tmp_path: Path,
    req: Request,
    *,
    count: int = 5,
    settings: FindSettings | None = None,
    cancel_after: int | None = None,
) -> list[Response]:
    async def go() -> list[Response]:
        async with await _index(tmp_path, count) as index:
            provider = c_find_provider(index, settings or FindSettings(retrieve_ae="ARCHIVE"))
            out: list[Response] = []
            async for response in provider(req):
                out.append(response)
                if cancel_after is not None and len(out) == cancel_after:
                    assert req.cancel is not None
                    req.cancel.set()
            return out

    return run(go())


def statuses(responses: Sequence[Response]) -> list[int]:
    commands = [r.command for r in responses]
    assert all(isinstance(c, CFindRsp) for c in commands)
    return [c.status for c in commands if isinstance(c, CFindRsp)]


def uids(responses: Sequence[Response], ts: str = ELE) -> list[str]:
    out = []
    for response in responses:
        if response.dataset is None:
            continue
        for element in decode_dataset(response.dataset, ts):
            if element.tag == SOP_INSTANCE_UID:
                assert isinstance(element.value, bytes)
                out.append(element.value.rstrip(b"\0").decode())
    return out


@pytest.mark.parametrize("ts", [ELE, ILE])
def test_all_matches_pending_then_success(tmp_path: Path, ts: str) -> None:
    responses = find(tmp_path, request(identifier(b"IMAGE", ts=ts), ts=ts), count=4)
    assert statuses(responses) == [0xFF00] * 4 + [0x0000]
    assert sorted(uids(responses, ts)) == [f"1.2.3.1.{n}" for n in range(1, 5)]
    final = responses[-1]
    assert final.dataset is None
    assert isinstance(final.command, CFindRsp)
    assert final.command.message_id_being_responded_to == 7
    assert final.command.affected_sop_class_uid == STUDY_ROOT_FIND
    assert final.command.error_comment is None
    for pending in responses[:-1]:
        assert isinstance(pending.command, CFindRsp)
        assert pending.command.has_dataset
        # Each identifier holds the level, the Retrieve AE Title and the unique
        # keys above (PS3.4 C.4.1.1.3.2).
        tags = [e.tag for e in decode_dataset(pending.dataset or b"", ts)]
        assert tags == [
            SOP_INSTANCE_UID,
            LEVEL,
            RETRIEVE_AE_TITLE,
            STUDY_INSTANCE_UID,
            SERIES_INSTANCE_UID,
        ]


def test_cancel_after_two_is_fe00(tmp_path: Path) -> None:
    req = request(identifier(b"IMAGE"), cancel=Cancel())
    responses = find(tmp_path, req, count=10, cancel_after=2)
    assert statuses(responses) == [0xFF00, 0xFF00, 0xFE00]
    assert responses[-1].dataset is None


def test_cancel_after_the_last_match_is_still_fe00(tmp_path: Path) -> None:
    req = request(identifier(b"IMAGE"), cancel=Cancel())
    responses = find(tmp_path, req, count=3, cancel_after=3)
    assert statuses(responses) == [0xFF00] * 3 + [0xFE00]


def test_max_matches_ends_with_a700_and_a_comment(tmp_path: Path) -> None:
    responses = find(
        tmp_path, request(identifier(b"IMAGE")), count=5, settings=FindSettings(max_matches=3)
    )
    assert statuses(responses) == [0xFF00] * 3 + [0xA700]
    final = responses[-1].command
    assert isinstance(final, CFindRsp)
    assert final.error_comment == "more than 3 matches: narrow the query"


def test_max_matches_exactly_reached_is_success(tmp_path: Path) -> None:
    responses = find(
        tmp_path, request(identifier(b"IMAGE")), count=3, settings=FindSettings(max_matches=3)
    )
    assert statuses(responses) == [0xFF00] * 3 + [0x0000]


def test_max_matches_zero_is_unlimited(tmp_path: Path) -> None:
    responses = find(
        tmp_path, request(identifier(b"IMAGE")), count=6, settings=FindSettings(max_matches=0)
    )
    assert statuses(responses) == [0xFF00] * 6 + [0x0000]


@pytest.mark.parametrize(
    ("data", "abstract", "status", "offending"),
    [
        (identifier(None), STUDY_ROOT_FIND, 0xA900, LEVEL),  # no Query/Retrieve Level
        (identifier(b"BOGUS"), STUDY_ROOT_FIND, 0xA900, LEVEL),
        (identifier(b"PATIENT"), STUDY_ROOT_FIND, 0xA900, LEVEL),  # not in Study Root
        (b"\x08\x00\x52\x00CS\xff\xff", STUDY_ROOT_FIND, 0xC000, None),  # truncated element
        (identifier(b"IMAGE"), "1.2.3.4", 0x0122, None),  # not a Q/R information model
        # A key below the level (hierarchical query), in a sequence or not.
        (identifier(b"STUDY", Element(0x00080060, "CS", b"MR")), STUDY_ROOT_FIND, 0xA900,
         0x00080060),
        (identifier(b"STUDY", Element(0x00400275, "SQ", ((Element(0x00401001, "SH", b"RP"),),))),
         STUDY_ROOT_FIND, 0xA900, 0x00400275),
        # Values that are no value of their VR.
        (identifier(b"STUDY", Element(0x00080020, "DA", b"2024-01-01")), STUDY_ROOT_FIND, 0xC000,
         0x00080020),
        (identifier(b"STUDY", Element(0x00080030, "TM", b"25h")), STUDY_ROOT_FIND, 0xC000,
         0x00080030),
        (identifier(b"SERIES", Element(0x00200011, "IS", b"one")), STUDY_ROOT_FIND, 0xC000,
         0x00200011),
        # Below the level and no value of its VR: below the level first.
        (identifier(b"STUDY", Element(0x00200011, "IS", b"one")), STUDY_ROOT_FIND, 0xA900,
         0x00200011),
        # Inside a sequence key: the sequence is named.
        (identifier(b"STUDY", Element(0x00081032, "SQ", (
            (Element(0x00080100, "SH", b"A"),), (Element(0x00080100, "SH", b"B"),)))),
         STUDY_ROOT_FIND, 0xA900, 0x00081032),
    ],
)  # fmt: skip
def test_bad_identifier(
    tmp_path: Path, data: bytes, abstract: str, status: int, offending: int | None
) -> None:
    """A900 and C000 name the key at fault as the Offending Element (0000,0901)
    beside the Error Comment (PS3.4 Table C.4-1), where there is one."""
    responses = find(tmp_path, request(data, abstract=abstract))
    assert statuses(responses) == [status]
    final = responses[0].command
    assert isinstance(final, CFindRsp)
    assert final.message_id_being_responded_to == 7
    assert final.error_comment
    assert len(final.error_comment) <= 64
    assert final.offending_element == (None if offending is None else (offending,))
    assert responses[0].dataset is None


def test_an_index_that_cannot_be_read_fails_the_query(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """SQLite failing mid-query ended in an aborted association (review): the
    C-FIND fails with C000, Unable to process (PS3.4 Table C.4-1), instead."""

    async def broken(
        self: Index, query: object, *, limit: int | None = None
    ) -> AsyncIterator[list[object]]:
        raise IndexReadError("the index could not be read: database disk image is malformed")
        yield []  # an async generator, as find_rows is

    monkeypatch.setattr(Index, "find_rows", broken)
    responses = find(tmp_path, request(identifier(b"IMAGE")))
    assert statuses(responses) == [0xC000]
    final = responses[-1].command
    assert isinstance(final, CFindRsp)
    assert final.error_comment == "the index could not be read"


def test_unmatchable_key_with_a_value_gives_ff01(tmp_path: Path) -> None:
    """A key the index does not hold, with a value: Pending Warning (PS3.4 C.4.1.1.4)."""
    other = Element(0x00181030, "LO", b"PROTOCOL")  # Protocol Name: not in the index
    responses = find(tmp_path, request(identifier(b"IMAGE", other)), count=2)
    assert statuses(responses) == [0xFF01, 0xFF01, 0x0000]


def test_patient_root_patient_level(tmp_path: Path) -> None:
    data = encode_dataset(
        [
            Element(LEVEL, "CS", b"PATIENT"),
            Element(0x00100020, "LO", b""),
            Element(PATIENT_NAME, "PN", b""),
        ],
        ELE,
    )
    responses = find(tmp_path, request(data, abstract=PATIENT_ROOT_FIND), count=3)
    assert statuses(responses) == [0xFF00, 0x0000]
    elements = {e.tag: e.value for e in decode_dataset(responses[0].dataset or b"", ELE)}
    assert elements[0x00100020] == b"P1"
    assert elements[PATIENT_NAME] == b"Doe^John"
