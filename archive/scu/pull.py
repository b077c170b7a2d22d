"""``archive pull``: bring studies from a peer archive into this node (PS3.4 C.4.2).

A C-FIND at STUDY level (Study Root) lists the studies matching the keys, then
one C-MOVE per study asks the peer to send it to our own AE title, on the same
association. The peer must know our AE title as a move destination (its
configuration maps AE titles to host and port, PS3.4 C.4.2.1.2); our node must be
running and reachable by it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import msgspec

from archive.dicom.dimse import Status
from archive.dicom.query_keys import Level, QueryModel
from archive.scu.identifier import (
    NUMBER_OF_STUDY_RELATED_INSTANCES,
    STUDY_INSTANCE_UID,
    QueryKey,
    build_identifier,
    with_return_keys,
)
from archive.scu.query import (
    QR_TRANSFER_SYNTAXES,
    SOP_CLASSES,
    FindResult,
    Interrupt,
    QueryOptions,
    RetrieveResult,
    find_on,
    move_on,
    open_association,
)


@dataclass(slots=True)
class PullReport:
    """The outcome of a pull: the studies found and each one's C-MOVE result."""

    find: FindResult = field(default_factory=FindResult)
    studies: list[str] = field(default_factory=list)
    moves: dict[str, RetrieveResult] = field(default_factory=dict)
    cancelled: bool = False
    #: C-FIND matches without a Study Instance UID: nothing to ask a C-MOVE for.
    without_uid: int = 0
    #: Completed, failed and warning counts of the moves that have ended, and the
    #: move in progress: the totals shown after every response cost O(1), not
    #: O(studies) (a migration pulls thousands of studies).
    _settled: list[int] = field(default_factory=lambda: [0, 0, 0])
    _current: RetrieveResult | None = None

    def moving(self, uid: str, result: RetrieveResult) -> None:
        self.moves[uid] = result
        self._current = result

    def moved(self, uid: str, result: RetrieveResult) -> None:
        self.moves[uid] = result
        self._current = None
        self._settled[0] += result.completed
        self._settled[1] += result.failed
        self._settled[2] += result.warning

    @property
    def completed(self) -> int:
        return self._settled[0] + (self._current.completed if self._current else 0)

    @property
    def failed(self) -> int:
        return self._settled[1] + (self._current.failed if self._current else 0)

    @property
    def warning(self) -> int:
        return self._settled[2] + (self._current.warning if self._current else 0)

    @property
    def ok(self) -> bool:
        return (
            self.find.status == Status.SUCCESS
            and not self.cancelled
            and not self.without_uid
            and len(self.moves) == len(self.studies)
            and all(r.ok for r in self.moves.values())
        )


async def pull_studies(
    options: QueryOptions,
    keys: Sequence[QueryKey],
    our_ae: str,
    *,
    terms: Sequence[str] = (),
    on_progress: Callable[[PullReport, int | None], None] | None = None,
    interrupt: Interrupt | None = None,
    timeout: float | None = None,
) -> PullReport:
    """Find the studies matching ``keys`` (Study Root, STUDY level), then C-MOVE each
    to ``our_ae`` (PS3.4 C.4.2), one after the other on one association.

    ``on_progress(report, total)`` is called after each response; ``total`` is the
    expected instance count, from Number of Study Related Instances and then from
    each C-MOVE's own counts. Stops at the first Move Destination Unknown (0xA801):
    the others would fail alike.
    """
    wanted = with_return_keys(keys, (STUDY_INSTANCE_UID, NUMBER_OF_STUDY_RELATED_INSTANCES))
    identifier = build_identifier(wanted, Level.STUDY, terms)
    report = PullReport()
    expected: dict[str, int | None] = {}

    def on_match(match: dict[str, Any]) -> None:
        uid = _first(match, STUDY_INSTANCE_UID)
        if not isinstance(uid, str) or not uid:
            report.without_uid += 1
        elif uid not in expected:
            report.studies.append(uid)
            count = _first(match, NUMBER_OF_STUDY_RELATED_INSTANCES)
            expected[uid] = count if isinstance(count, int) else None

    def plus(a: int | None, b: int | None) -> int | None:
        return None if a is None or b is None else a + b

    study_root = msgspec.structs.replace(options, model=QueryModel.STUDY_ROOT)
    find_class, move_class, _ = SOP_CLASSES[QueryModel.STUDY_ROOT]
    contexts = [(find_class, QR_TRANSFER_SYNTAXES), (move_class, QR_TRANSFER_SYNTAXES)]
    async with await open_association(study_root, contexts, interrupt=interrupt) as assoc:
        report.find = await find_on(assoc, find_class, identifier, on_match, interrupt)
        if report.find.status != Status.SUCCESS or report.find.cancelled:
            report.cancelled = report.find.cancelled
            return report
        # The expected total: the moves done (their own counts), the one under way
        # (its counts once known, else the C-FIND's Number of Study Related
        # Instances) and those to come (the C-FIND's); None if any is unknown.
        later: list[int | None] = [0]
        for uid in reversed(report.studies[1:]):
            later.append(plus(later[-1], expected[uid]))
        later.reverse()
        done: int | None = 0
        for index, uid in enumerate(report.studies):
            if interrupt is not None and interrupt.is_set:
                break

            def progress(
                result: RetrieveResult,
                uid: str = uid,
                others: int | None = plus(done, later[index]),
            ) -> None:
                report.moving(uid, result)
                if on_progress is not None:
                    now = result.total if result.total is not None else expected[uid]
                    on_progress(report, plus(others, now))

            study = build_identifier([QueryKey(STUDY_INSTANCE_UID, "UI", uid)], Level.STUDY)
            result = await move_on(assoc, move_class, study, our_ae, progress, interrupt, timeout)
            report.moved(uid, result)
            done = plus(done, result.total if result.total is not None else expected[uid])
            if result.cancelled or result.status == Status.MOVE_DESTINATION_UNKNOWN:
                break
    report.cancelled = interrupt is not None and interrupt.is_set
    return report


def _first(match: dict[str, Any], tag: int) -> object:
    values = match.get(f"{tag:08X}", {}).get("Value") or [None]
    return values[0]
