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

    @property
    def completed(self) -> int:
        return sum(r.completed for r in self.moves.values())

    @property
    def failed(self) -> int:
        return sum(r.failed for r in self.moves.values())

    @property
    def warning(self) -> int:
        return sum(r.warning for r in self.moves.values())

    @property
    def ok(self) -> bool:
        return (
            self.find.status == Status.SUCCESS
            and not self.cancelled
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
    wanted = {key.tag for key in keys}
    extra = [
        QueryKey(tag, vr, None)
        for tag, vr in ((STUDY_INSTANCE_UID, "UI"), (NUMBER_OF_STUDY_RELATED_INSTANCES, "IS"))
        if tag not in wanted
    ]
    identifier = build_identifier([*keys, *extra], Level.STUDY, terms)
    report = PullReport()
    expected: dict[str, int | None] = {}

    def on_match(match: dict[str, Any]) -> None:
        uid = _first(match, STUDY_INSTANCE_UID)
        if isinstance(uid, str) and uid not in expected:
            report.studies.append(uid)
            count = _first(match, NUMBER_OF_STUDY_RELATED_INSTANCES)
            expected[uid] = count if isinstance(count, int) else None

    def total() -> int | None:
        # A study's own C-MOVE counts, once known, beat the C-FIND's estimate.
        known = [report.moves[uid].total if uid in report.moves else None for uid in report.studies]
        counts = [
            k if k is not None else expected[uid]
            for k, uid in zip(known, report.studies, strict=True)
        ]
        return None if None in counts else sum(c for c in counts if c is not None)

    study_root = msgspec.structs.replace(options, model=QueryModel.STUDY_ROOT)
    find_class, move_class, _ = SOP_CLASSES[QueryModel.STUDY_ROOT]
    contexts = [(find_class, QR_TRANSFER_SYNTAXES), (move_class, QR_TRANSFER_SYNTAXES)]
    async with await open_association(study_root, contexts) as assoc:
        report.find = await find_on(assoc, find_class, identifier, on_match, interrupt)
        if report.find.status != Status.SUCCESS or report.find.cancelled:
            report.cancelled = report.find.cancelled
            return report
        for uid in report.studies:
            if interrupt is not None and interrupt.is_set:
                break

            def progress(result: RetrieveResult, uid: str = uid) -> None:
                report.moves[uid] = result
                if on_progress is not None:
                    on_progress(report, total())

            study = build_identifier([QueryKey(STUDY_INSTANCE_UID, "UI", uid)], Level.STUDY)
            result = await move_on(assoc, move_class, study, our_ae, progress, interrupt, timeout)
            report.moves[uid] = result
            if result.cancelled or result.status == Status.MOVE_DESTINATION_UNKNOWN:
                break
    report.cancelled = interrupt is not None and interrupt.is_set
    return report


def _first(match: dict[str, Any], tag: int) -> object:
    values = match.get(f"{tag:08X}", {}).get("Value") or [None]
    return values[0]
