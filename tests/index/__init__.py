"""Helpers shared by the index tests: record factories, a bounded runner, raw reads.

Raw reads use a fresh :mod:`sqlite3` connection on purpose: they see only what is
committed to the file, independently of the index's own connections.
"""

from __future__ import annotations

import asyncio
import sqlite3
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
