"""Query/Retrieve C-FIND SCP (PS3.4 C.4.1), answered from the index alone.

The identifier is decoded (:mod:`archive.dicom.dataset`) and parsed into a query
(:mod:`archive.dicom.query`); the index streams the matching records, and each
becomes a pending response (0xFF00) as soon as it is read: nothing is gathered
first. Statuses (PS3.4 Table C.4-1):

- 0xFF00 Pending for each match (0xFF01 when an optional key with a value could
  not be matched on: one the index does not hold, or a sequence item); 0x0000
  Success at the end;
- 0xFE00 Cancel once the peer's C-CANCEL-RQ arrives: no further match is sent;
- 0xA900 Identifier does not match SOP Class (e.g. no or a wrong Query/Retrieve
  Level); 0xC000 Unable to process (an identifier we cannot decode);
- 0xA700 Refused: Out of Resources when a query matches more than
  ``query.max_matches`` records: the matches up to the limit have been sent as
  pending responses, and the error comment says to narrow the query.

:func:`parse_request` is shared with C-MOVE and C-GET.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncGenerator, AsyncIterator, Sequence
from contextlib import aclosing
from typing import Literal, Protocol

import msgspec

from archive.dicom.dataset import DatasetError, decode_dataset
from archive.dicom.dimse import CFindRq, CFindRsp, Command, Status
from archive.dicom.query import Query, QueryError, information_model, parse_identifier
from archive.dicom.query_response import response_encoder
from archive.index import RECORD_KEYWORDS, IndexReadError
from archive.services.base import Provider, Request, Response, failure

log = logging.getLogger("archive.query")


class FindIndex(Protocol):
    def find_rows(
        self, query: Query, *, limit: int | None = None
    ) -> AsyncGenerator[list[Sequence[object]], None]: ...


class QueryFailure(msgspec.Struct, frozen=True):
    """Why an identifier cannot be answered: the status and the Error Comment."""

    status: int
    comment: str
    #: The key at fault, sent as the Offending Element (0000,0901).
    offending: int | None = None


class FindSettings(msgspec.Struct, frozen=True, kw_only=True):
    #: Matches sent at most (0 = no limit); past it the query ends with 0xA700.
    max_matches: int = 10000
    #: Case-insensitive person name matching (off: PS3.4 C.2.2.2.1 is case-sensitive).
    fold_person_names: bool = False
    #: An empty Required Key matches any value (PS3.4 C.2.2.1.2).
    match_unknown: bool = True
    #: Our AE title, for Retrieve AE Title (0008,0054) in responses.
    retrieve_ae: str = ""


def parse_request(
    request: Request,
    purpose: Literal["find", "retrieve"],
    *,
    fold_person_names: bool = False,
    match_unknown: bool = True,
) -> Query | QueryFailure:
    """The request's identifier as a query, or a :class:`QueryFailure`."""
    model = information_model(request.abstract_syntax)
    if model is None:
        return QueryFailure(Status.SOP_CLASS_NOT_SUPPORTED, "not a Q/R information model")
    try:
        elements = decode_dataset(request.identifier or b"", request.transfer_syntax)
        return parse_identifier(
            elements,
            model[0],
            purpose=purpose,
            fold_person_names=fold_person_names,
            match_unknown=match_unknown,
            # Extended negotiation (PS3.4 C.5.1.1), byte 1 (FIND only): combined
            # date-time matching. Byte 0 asks nothing of the parser: relational
            # queries are never agreed (negotiation.py), and a retrieve's keys
            # above its level are never required.
            combined_date_time=purpose == "find" and request.extended[1:2] == b"\x01",
        )
    except QueryError as exc:
        return QueryFailure(exc.status, str(exc), exc.offending)
    except DatasetError as exc:
        return QueryFailure(exc.status, str(exc))


def query_failure(command: Command, problem: QueryFailure) -> Response:
    response = failure(command, problem.status, problem.comment, problem.offending)
    assert response is not None
    return response


async def _each_row(
    index: FindIndex, query: Query, limit: int
) -> AsyncGenerator[Sequence[object], None]:
    """The index's matches one row at a time, one more than ``limit`` (0: all) so
    that going past it shows; closed, it ends the index's read at once."""
    async with aclosing(index.find_rows(query, limit=limit + 1 if limit else None)) as pages:
        async for rows in pages:
            for row in rows:
                yield row


def c_find_provider(index: FindIndex, settings: FindSettings) -> Provider:
    """The C-FIND SCP bound to ``index``."""

    async def c_find(request: Request) -> AsyncIterator[Response]:
        command = request.command
        assert isinstance(command, CFindRq)
        started = time.monotonic()
        query = parse_request(
            request,
            "find",
            fold_person_names=settings.fold_person_names,
            match_unknown=settings.match_unknown,
        )
        if isinstance(query, QueryFailure):
            yield query_failure(command, query)
            return
        limit = settings.max_matches
        sent = 0
        status = int(Status.SUCCESS)
        comment: str | None = None
        # FF01 when a key with a value was not matched on (one we do not hold, a
        # sequence item's we do not hold), PS3.4 C.4.1.1.4.
        pending = CFindRsp(
            message_id_being_responded_to=command.message_id,
            affected_sop_class_uid=command.affected_sop_class_uid,
            status=Status.PENDING_WARNING if query.unsupported else Status.PENDING,
            has_dataset=True,
        )  # the same for every match: built once
        encode = response_encoder(
            query,
            request.transfer_syntax,
            retrieve_ae=settings.retrieve_ae,
            columns=("pk", *RECORD_KEYWORDS[query.level]),
        )
        try:
            # aclosing: a break (cancel, the limit) ends the index's read now, not at GC.
            async with aclosing(_each_row(index, query, limit)) as rows:
                async for row in rows:
                    if request.cancel is not None and request.cancel.requested:
                        status = int(Status.CANCEL)
                        break
                    if limit and sent == limit:
                        status = int(Status.OUT_OF_RESOURCES)
                        comment = f"more than {limit} matches: narrow the query"
                        break
                    sent += 1
                    yield Response(pending, encode(row))
        except IndexReadError as exc:
            # Failed: Unable to process (PS3.4 Table C.4-1), not an aborted association.
            log.warning("C-FIND %s level: %s", query.level, exc)
            status, comment = int(Status.CANNOT_UNDERSTAND), "the index could not be read"
        if status == Status.SUCCESS and request.cancel is not None and request.cancel.requested:
            status = int(Status.CANCEL)
        log.info(
            "C-FIND %s level: %d match(es) in %.1f ms, status %#06x",
            query.level,
            sent,
            (time.monotonic() - started) * 1000,
            status,
        )
        yield Response(msgspec.structs.replace(pending, status=status, error_comment=comment,
                                               has_dataset=False))  # fmt: skip

    return c_find
