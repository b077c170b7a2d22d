"""Helpers shared by the index tests: record factories, a bounded runner, raw reads.

Raw reads use a fresh :mod:`sqlite3` connection on purpose: they see only what is
committed to the file, independently of the index's own connections.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections import Counter, defaultdict
from collections.abc import Coroutine
from contextlib import closing
from pathlib import Path
from typing import Any, TypeVar

from archive.dicom.attributes import InstanceAttributes
from archive.index import StoredInstance

T = TypeVar("T")

CT = "1.2.840.10008.5.1.4.1.1.2"
MR = "1.2.840.10008.5.1.4.1.1.4"
SR = "1.2.840.10008.5.1.4.1.1.88.11"
EXPLICIT_LE = "1.2.840.10008.1.2.1"


def run(coro: Coroutine[Any, Any, T], timeout: float = 20.0) -> T:
    """Run a test coroutine on a fresh loop with a deadline."""
    return asyncio.run(asyncio.wait_for(coro, timeout))


def make_instance(
    n: int,
    *,
    study: str = "1.2.3",
    series: str | None = None,
    patient_id: str = "P1",
    issuer: str = "",
    modality: str = "CT",
    sop_class: str = CT,
    size: int = 1000,
    **attrs: Any,
) -> StoredInstance:
    """A record for instance ``n`` of the given study/series (series defaults per study)."""
    series_uid = series if series is not None else f"{study}.1"
    values: dict[str, Any] = {
        "patient_id": patient_id,
        "issuer_of_patient_id": issuer,
        "patient_name": "Doe^John",
        "study_instance_uid": study,
        "series_instance_uid": series_uid,
        "modality": modality,
        "sop_class_uid": sop_class,
        "sop_instance_uid": f"{series_uid}.{n}",
        "instance_number": n,
    }
    values.update(attrs)
    return StoredInstance(
        attrs=InstanceAttributes(**values),
        path=f"data/{series_uid}/{n}.dcm",
        size=size,
        digest=f"{n:064x}",
        transfer_syntax_uid=EXPLICIT_LE,
        source_ae="MODALITY",
        received_at=1_700_000_000.0 + n,
    )


def query(db: Path, sql: str, parameters: tuple[object, ...] = ()) -> list[tuple[Any, ...]]:
    """Rows of ``sql`` read through a fresh, separate sqlite3 connection."""
    with closing(sqlite3.connect(db)) as conn:
        return conn.execute(sql, parameters).fetchall()


def execute(db: Path, sql: str) -> None:
    """Change the file behind the index's back (fault injection, version bumps)."""
    with closing(sqlite3.connect(db, isolation_level=None)) as conn:
        conn.execute(sql)


def aggregates(db: Path) -> dict[str, list[tuple[Any, ...]]]:
    """The aggregates the index keeps, level by level, by UID or patient key."""
    return {
        "series": query(
            db, "SELECT series_instance_uid, number_of_instances FROM series ORDER BY 1"
        ),
        "study": query(
            db,
            "SELECT study_instance_uid, number_of_series, number_of_instances,"
            " modalities_in_study, sop_classes_in_study FROM study ORDER BY 1",
        ),
        "study_sop_class": query(
            db,
            "SELECT st.study_instance_uid, c.sop_class_uid, c.instances FROM study_sop_class AS c"
            " JOIN study AS st ON st.pk = c.study_pk ORDER BY 1, 2",
        ),
        "patient": query(
            db,
            "SELECT patient_key, number_of_studies, number_of_series, number_of_instances"
            " FROM patient ORDER BY 1",
        ),
    }


def counted_aggregates(db: Path) -> dict[str, list[tuple[Any, ...]]]:
    """What :func:`aggregates` must say, counted here from the instance rows and the
    links they hold: an instance whose own study link is not its series' study is
    counted in neither, and a level with no instance left is not listed."""
    rows = query(
        db,
        "SELECT i.sop_class_uid, se.series_instance_uid, se.modality, st.study_instance_uid,"
        " p.patient_key FROM instance AS i JOIN series AS se ON se.pk = i.series_pk"
        " JOIN study AS st ON st.pk = i.study_pk AND st.pk = se.study_pk"
        " JOIN patient AS p ON p.pk = st.patient_pk",
    )
    series: Counter[str] = Counter()
    studies: dict[str, list[tuple[str, str, str]]] = defaultdict(list)
    patients: dict[str, list[tuple[str, str]]] = defaultdict(list)
    for sop_class, series_uid, modality, study_uid, patient_key in rows:
        series[series_uid] += 1
        studies[study_uid].append((series_uid, modality, sop_class))
        patients[patient_key].append((study_uid, series_uid))
    sop_classes = Counter((uid, c) for uid, held in studies.items() for _, _, c in held)
    return {
        "series": sorted(series.items()),
        "study": sorted(
            (
                uid,
                len({s for s, _, _ in held}),
                len(held),
                "\\".join(sorted({m for _, m, _ in held if m})),
                "\\".join(sorted({c for _, _, c in held})),
            )
            for uid, held in studies.items()
        ),
        "study_sop_class": sorted((*key, count) for key, count in sop_classes.items()),
        "patient": sorted(
            (key, len({st for st, _ in held}), len({se for _, se in held}), len(held))
            for key, held in patients.items()
        ),
    }
