"""C-FIND's index reads alone, in this process: ``Index.find_rows`` on the 1M index.

Run: ``.venv/bin/python bench/find_index.py [--rounds 40] [--seed 1]``, once per
version to compare (alternate them: this VM's runs drift), e.g. with
``PYTHONPATH`` pointing at an exported tree of each.

No network and no DICOM encoding: what a change to ``archive/index`` does to a
query's reads. Per round, the five study-level kinds of ``find.py`` (values
drawn from the index itself), one series' images, and once per run every study
(limit 10,001, as ``[query] max_matches`` asks). For each kind: the time to the
whole answer and to its first page (when the first responses could leave), p50
and p90 in ms, and the median number of matches. The index is a copy of the
cached 1M-instance one (``indexgen.py``; built on first use, ~10 min).
"""

from __future__ import annotations

import argparse
import asyncio
import random
import shutil
import sqlite3
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import indexgen
from datasets import CACHE

from archive.dicom.dataset import Element
from archive.dicom.dictionary import tag_for_keyword
from archive.dicom.query import Query, QueryModel, parse_identifier
from archive.dicom.query_keys import KEYS
from archive.index import Index

RETURN_KEYS = (
    "StudyInstanceUID", "StudyDate", "StudyTime", "AccessionNumber", "PatientName", "PatientID",
    "StudyID", "StudyDescription", "ModalitiesInStudy", "NumberOfStudyRelatedInstances",
)  # fmt: skip


def query(level: str, keys: Sequence[tuple[str, str]]) -> Query:
    elements = [Element(0x00080052, "CS", level.encode())]
    for keyword, value in keys:
        tag = tag_for_keyword(keyword)
        assert tag is not None
        elements.append(Element(tag, KEYS[tag].vr, value.encode()))
    return parse_identifier(elements, QueryModel.STUDY_ROOT)


def plan(db: Path, rounds: int, seed: int) -> list[tuple[str, Query]]:
    with sqlite3.connect(db) as conn:
        studies = conn.execute(
            "SELECT p.patient_id, p.patient_name, s.study_date, s.accession_number,"
            " s.study_instance_uid FROM study AS s JOIN patient AS p ON p.pk = s.patient_pk"
        ).fetchall()
        series = [row[0] for row in conn.execute("SELECT series_instance_uid FROM series")]
    rng = random.Random(seed)
    found: list[tuple[str, Query]] = []
    for _ in range(rounds):
        patient_id, name, date, accession, uid = rng.choice(studies)
        for kind, value in (
            ("PatientID", patient_id),
            ("PatientName", name.split("^")[0] + "*"),
            ("StudyDate", f"{date}-{date[:6]}28"),
            ("AccessionNumber", accession),
            ("StudyInstanceUID", uid),
        ):
            keys = [(kind, value), *((k, "") for k in RETURN_KEYS if k != kind)]
            found.append((kind, query("STUDY", keys)))
        images = [("SeriesInstanceUID", rng.choice(series)), ("SOPInstanceUID", "")]
        found.append(("series images", query("IMAGE", images)))
    found.append(("every study", query("STUDY", [("StudyInstanceUID", "")])))
    return found


async def measure(db: Path, queries: list[tuple[str, Query]]) -> dict[str, list[tuple[float, ...]]]:
    out: dict[str, list[tuple[float, ...]]] = {}
    async with await Index.open(db) as index:
        for kind, q in queries:
            start = time.perf_counter()
            first = None
            matches = 0
            async for rows in index.find_rows(q, limit=10_001):
                if first is None:
                    first = time.perf_counter() - start
                matches += len(rows)
            total = time.perf_counter() - start
            out.setdefault(kind, []).append((total, first or total, matches))
    return out


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=40)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args(argv)
    cached = indexgen.ensure_index(1_000_000, CACHE) / "index.sqlite"
    with tempfile.TemporaryDirectory(dir=CACHE) as tmp:
        db = Path(tmp) / "index.sqlite"
        shutil.copy(cached, db)
        results = asyncio.run(measure(db, plan(db, args.rounds, args.seed)))
    print(
        f"{'query':16s} {'matches':>7s} {'total p50':>9s} {'p90':>7s} {'first p50':>9s} {'p90':>7s}"
    )
    for kind, values in results.items():
        totals = sorted(v[0] * 1000 for v in values)
        firsts = sorted(v[1] * 1000 for v in values)

        def at(data: list[float], q: float) -> float:
            return data[min(len(data) - 1, int(q * len(data)))]

        print(
            f"{kind:16s} {statistics.median(v[2] for v in values):7.0f}"
            f" {at(totals, 0.5):9.2f} {at(totals, 0.9):7.2f}"
            f" {at(firsts, 0.5):9.2f} {at(firsts, 0.9):7.2f}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
