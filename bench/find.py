"""C-FIND latency at study level: archive-node from 10k to 1M instances, and against peers.

Run: ``.venv/bin/python bench/find.py [--quick] [--markdown PATH]``.

Five study-level queries (Study Root), each value drawn from the synthetic population
(``indexgen.py``) so that every query has matches: an existing Patient ID, a surname
prefix (``SMITH*``), a one-month Study Date range, an existing Accession Number, an
existing Study Instance UID. The client is ours (``archive.net.associate``), in this
process, one association per server; the five kinds are interleaved (one of each per
round) so that drifts in load hit them alike; latency is from the C-FIND-RQ sent to the
final response received, so it includes every pending response.

1. archive-node on bulk-loaded indexes of 10k, 100k and 1M instances (cached in
   bench/.cache/qrindex-*), then on a copy of the 1M index while four storescu
   processes ingest the small data set of the ingest benchmark into the same node.
2. archive-node, Orthanc and qrscp holding the same 50k instances (the same studies
   written as files and stored into each: cached in bench/.cache/qr-*), same client.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import random
import shutil
import sqlite3
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import datasets
import indexgen
import qr_servers as qr
from common import DCMTK_ENV, machine, markdown_table, publish, running, work_folder

from archive.net import Timeouts

CACHE = datasets.CACHE
KINDS = ("PatientID", "PatientName", "StudyDate", "AccessionNumber", "StudyInstanceUID")
#: What every query asks back, whatever it matches on.
RETURN_KEYS = (
    "StudyInstanceUID", "StudyDate", "StudyTime", "AccessionNumber", "PatientName", "PatientID",
    "StudyID", "StudyDescription", "ModalitiesInStudy", "NumberOfStudyRelatedInstances",
)  # fmt: skip
TIMEOUTS = Timeouts(artim=30.0, network=120.0, dimse=120.0, connect=10.0)
TARGET_ALONE_MS = 10.0
TARGET_INGEST_MS = 50.0
#: The warm-up queries' seed: not one the measured plans use (7, 11), so the warm-up
#: does not leave the very rows of the first measured queries in the page cache.
WARMUP_SEED = 3
WARMUP_ROUNDS = 2


def queries(population: Sequence[indexgen.Study], count: int, seed: int) -> list[tuple[str, bytes]]:
    """``count`` rounds of the five kinds, values drawn from ``population``."""
    rng = random.Random(seed)
    found: list[tuple[str, bytes]] = []
    for _ in range(count):
        for kind in KINDS:
            study = rng.choice(population)
            if kind == "PatientID":
                value = study.patient_id
            elif kind == "PatientName":
                value = study.patient_name.split("^")[0] + "*"
            elif kind == "StudyDate":
                start = time.strptime(study.date, "%Y%m%d")
                end = time.localtime(time.mktime(start) + 30 * 86400 + 7200)
                value = f"{study.date}-{time.strftime('%Y%m%d', end)}"
            elif kind == "AccessionNumber":
                value = study.accession
            else:
                value = study.uid
            keys = [("QueryRetrieveLevel", "STUDY"), (kind, value)]
            keys += [(k, "") for k in RETURN_KEYS if k != kind]
            found.append((kind, qr.identifier(keys)))
    return found


@dataclass
class Series:
    """The latencies of one server at one size, per query kind."""

    label: str
    seconds: dict[str, list[float]] = field(default_factory=lambda: {k: [] for k in KINDS})
    matches: dict[str, list[int]] = field(default_factory=lambda: {k: [] for k in KINDS})
    problems: list[str] = field(default_factory=list)
    note: str = ""

    def p(self, kind: str, fraction: float) -> float:
        return 1000 * qr.percentile(self.seconds[kind], fraction)

    def mean_matches(self, kind: str) -> float:
        got = self.matches[kind]
        return sum(got) / len(got) if got else float("nan")


@dataclass(frozen=True)
class Plan:
    """The measured queries and the warm-up ones, drawn from one population."""

    measured: list[tuple[str, bytes]]
    warmup: list[tuple[str, bytes]]

    @classmethod
    def of(cls, population: Sequence[indexgen.Study], rounds: int, seed: int) -> Plan:
        return cls(
            queries(population, rounds, seed), queries(population, WARMUP_ROUNDS, WARMUP_SEED)
        )


async def run_queries(
    port: int, called_ae: str, plan: Plan, label: str, budget: float,
    keep_going: Callable[[], bool] = lambda: True, cycle: bool = False,
) -> Series:  # fmt: skip
    """Send ``plan`` on one association; stop early after ``budget`` s or when told.

    ``cycle``: start ``plan`` over until told to stop or out of time (under ingest).
    """
    result = Series(label)
    measured = plan.measured
    async with qr.qr_association(port, called_ae, qr.STUDY_ROOT_FIND, TIMEOUTS) as (assoc, cid):
        for _kind, query in plan.warmup:
            await qr.timed_find(assoc, cid, query)
        deadline = time.perf_counter() + budget
        total = len(measured) * (1000 if cycle else 1)
        for n in range(total):
            kind, query = measured[n % len(measured)]
            # Whole rounds only, so that every kind has as many samples.
            if n % len(KINDS) == 0 and (time.perf_counter() > deadline or not keep_going()):
                if not cycle:
                    result.note = f"stopped after {n // len(KINDS)} rounds"
                break
            seconds, matches, status = await qr.timed_find(assoc, cid, query)
            if status != 0:
                result.problems.append(f"{kind}: final status 0x{status:04X}")
                continue
            if matches == 0:
                result.problems.append(f"{kind}: no match")
            result.seconds[kind].append(seconds)
            result.matches[kind].append(matches)
    return result


# ---- archive-node -------------------------------------------------------------------------


def ours(folder: Path, plan: Plan, label: str, budget: float, work: Path) -> Series:
    with running(label, qr.archive_argv(folder), log_dir=work) as child:
        return asyncio.run(run_queries(child.port, "ARCHIVE", plan, label, budget))


def _instances(index: Path) -> int:
    with contextlib.closing(sqlite3.connect(f"file:{index}?mode=ro", uri=True)) as conn:
        return int(conn.execute("SELECT instances FROM totals").fetchone()[0])


def ours_under_ingest(cached: Path, plan: Plan, budget: float, work: Path) -> tuple[Series, str]:
    """The 1M index copied, four storescu sending the small data set meanwhile."""
    folder = work / "ingest-1m"
    folder.mkdir(parents=True)
    (folder / "instances").mkdir()
    shutil.copyfile(cached / "index.sqlite", folder / "index.sqlite")
    small = datasets.ensure(datasets.SMALL, 5000)
    label = "archive-node-1M-ingest"
    try:
        with running(label, qr.archive_argv(folder), log_dir=work) as child:
            before = _instances(folder / "index.sqlite")
            if before != _instances(cached / "index.sqlite"):
                raise RuntimeError(f"the copied index holds {before} instances")
            procs = qr.start_storescu(child.port, "ARCHIVE", small.parts, 4)
            try:
                time.sleep(1.0)  # the four associations are open and sending
                t0, at0 = time.perf_counter(), _instances(folder / "index.sqlite")
                series = asyncio.run(
                    run_queries(child.port, "ARCHIVE", plan, "1M + 4 ingesting", budget,
                                keep_going=lambda: all(p.poll() is None for p in procs),
                                cycle=True)
                )  # fmt: skip
                seconds, at1 = time.perf_counter() - t0, _instances(folder / "index.sqlite")
                overlap = all(p.poll() is None for p in procs)
                codes = [p.wait(timeout=600) for p in procs]
            finally:
                for proc in procs:
                    if proc.poll() is None:
                        proc.kill()
                        proc.wait()
            stored = _instances(folder / "index.sqlite") - before
        rate = (at1 - at0) / seconds
        how = (
            f"ingest meanwhile: {rate:,.0f} instances/s over the {seconds:.1f} s of queries"
            f" ({'still ingesting at the end' if overlap else 'ingest ended first: window cut'});"
            f" {stored:,} of {small.count:,} stored in all, storescu exit {max(codes)}"
        )
        if stored != small.count or max(codes) != 0:
            series.problems.append(f"ingest stored {stored} of {small.count}")
        return series, how
    finally:
        shutil.rmtree(folder, ignore_errors=True)


# ---- peers at 50k -------------------------------------------------------------------------


def ensure_orthanc(count: int, files: Path, work: Path) -> Path:
    """Orthanc's storage and index holding ``files``, stored once with storescu x4, cached."""

    def build(tmp: Path) -> str:
        print(f"  loading Orthanc with {count:,} instances (storescu x4, once) ...", flush=True)
        t0 = time.perf_counter()
        with running("orthanc-load", qr.orthanc_qr_argv(tmp), log_dir=work, env=DCMTK_ENV,
                     startup=60) as child:  # fmt: skip
            code = qr.storescu(child.port, "ORTHANC", sorted(files.iterdir()), 4)
            stored = qr.orthanc_count(tmp)
        if code != 0 or stored != count:
            raise RuntimeError(f"Orthanc stored {stored} of {count} (storescu exit {code})")
        return f"{time.perf_counter() - t0:.0f}"

    return datasets.cached(CACHE / f"qr-orthanc-{count}-v{indexgen.FORMAT_VERSION}", build)


def ensure_qrscp(count: int, files: Path) -> Path:
    def build(tmp: Path) -> str:
        print(f"  loading qrscp's database with {count:,} instances (once) ...", flush=True)
        t0 = time.perf_counter()
        loaded = qr.load_qrscp(tmp, files)
        if loaded != count:
            raise RuntimeError(f"qrscp indexed {loaded} of {count}")
        return f"{time.perf_counter() - t0:.0f}"

    return datasets.cached(CACHE / f"qr-qrscp-{count}-v{indexgen.FORMAT_VERSION}", build)


# ---- report -------------------------------------------------------------------------------


def _cell(series: Series, kind: str) -> str:
    if not series.seconds[kind]:
        return "FAILED"
    return f"{series.p(kind, 0.5):.2f} / {series.p(kind, 0.99):.2f}"


def curve_table(runs: Sequence[Series]) -> tuple[list[str], list[list[str]]]:
    header = ["query", *(f"{s.label} p50 / p99 ms" for s in runs), "matches per query"]
    rows = []
    for kind in KINDS:
        matches = " / ".join(f"{s.mean_matches(kind):,.1f}" for s in runs)
        rows.append([kind, *(_cell(s, kind) for s in runs), matches])
    return header, rows


def verdicts(alone: Series | None, ingest: Series | None, small: Series | None) -> list[str]:
    lines = []
    for kind in KINDS:
        if alone is not None and alone.seconds[kind]:
            p99 = alone.p(kind, 0.99)
            ok = "met" if p99 < TARGET_ALONE_MS else "**missed**"
            flat = ""
            if small is not None and small.seconds[kind]:
                flat = f"; p99 {small.label} -> {alone.label}: x{p99 / small.p(kind, 0.99):.2f}"
            lines.append(f"{kind}: p99 {p99:.2f} ms alone at {alone.label} (target < "
                         f"{TARGET_ALONE_MS:g} ms: {ok}){flat}")  # fmt: skip
        if ingest is not None and ingest.seconds[kind]:
            p99 = ingest.p(kind, 0.99)
            ok = "met" if p99 < TARGET_INGEST_MS else "**missed**"
            lines.append(f"{kind}: p99 {p99:.2f} ms during ingest (target < "
                         f"{TARGET_INGEST_MS:g} ms: {ok})")  # fmt: skip
    return lines


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="C-FIND latency benchmark")
    parser.add_argument("--quick", action="store_true", help="50 rounds instead of 200")
    parser.add_argument("--markdown", type=Path, help="also write the markdown report here")
    parser.add_argument("--sizes", default="10000,100000,1000000", help="archive-node index sizes")
    parser.add_argument("--peer-size", type=int, default=50_000, help="instances in the peers")
    parser.add_argument("--rounds", type=int, help="rounds of the five queries (default 200)")
    parser.add_argument("--no-ingest", action="store_true", help="skip the run under ingest")
    parser.add_argument("--no-peers", action="store_true", help="skip Orthanc and qrscp")
    args = parser.parse_args(argv)
    rounds = args.rounds or (50 if args.quick else 200)
    budget = 20.0 if args.quick else 60.0
    started = time.perf_counter()
    work = work_folder(CACHE / "qr-runs" / "find")
    info = machine()
    info["load average"] = f"start {os.getloadavg()[0]:.2f}"
    sizes = [int(s) for s in args.sizes.split(",")]
    curve: list[Series] = []
    problems: list[str] = []
    notes: list[str] = []
    for size in sizes:
        t0 = time.perf_counter()
        folder = indexgen.ensure_index(size, CACHE)
        population = indexgen.studies(size)
        print(f"index {size:,}: {len(population):,} studies ({time.perf_counter() - t0:.1f} s)",
              flush=True)  # fmt: skip
        plan = Plan.of(population, rounds, seed=7)
        series = ours(folder, plan, _size_label(size), budget, work)
        curve.append(series)
        _show(series)
        if size == max(sizes) and not args.no_ingest:
            series, how = ours_under_ingest(folder, plan, budget, work)
            curve.append(series)
            notes.append(how)
            _show(series)
            print(f"  {how}", flush=True)
    side: list[Series] = []
    if not args.no_peers:
        count = args.peer_size
        files = indexgen.ensure_files(count, CACHE)
        population = indexgen.studies(count)
        plan = Plan.of(population, rounds, seed=11)
        side.append(ours(indexgen.ensure_index(count, CACHE), plan, "archive-node", budget, work))
        _show(side[-1])
        orthanc = ensure_orthanc(count, files, work)
        with running("orthanc", qr.orthanc_qr_argv(orthanc), log_dir=work, env=DCMTK_ENV,
                     startup=60) as child:  # fmt: skip
            side.append(asyncio.run(run_queries(child.port, "ORTHANC", plan, "Orthanc", budget)))
        _show(side[-1])
        qrscp = ensure_qrscp(count, files)
        with running("qrscp", qr.qrscp_argv(qrscp), log_dir=work, env=qr.qrscp_env()) as child:
            side.append(asyncio.run(run_queries(child.port, "QRSCP", plan, "qrscp", budget)))
        _show(side[-1])
    for series in (*curve, *side):
        problems += [f"{series.label}: {p}" for p in series.problems[:5]]
        if series.note:
            notes.append(f"{series.label}: {series.note}")
    info["load average"] += f", end {os.getloadavg()[0]:.2f}"
    alone = next((s for s in curve if s.label == _size_label(max(sizes))), None)
    ingest = next((s for s in curve if "ingest" in s.label), None)
    smallest = curve[0] if len(curve) > 1 else None
    header, rows = curve_table(curve)
    sections = [
        f"Measured {info['date']} ({'--quick' if args.quick else 'full run'},"
        f" {time.perf_counter() - started:.0f} s; {rounds} rounds of the five queries, or"
        f" as many as {budget:g} s allow per server)",
        "",
        *(f"- {k}: {v}" for k, v in info.items() if k != "date"),
        "",
        "archive-node, latency from C-FIND-RQ to the final response, p50 / p99 in ms:",
        "",
        markdown_table(header, rows),
        "",
        *(f"- {line}" for line in verdicts(alone, ingest, smallest)),
    ]
    tables = [(header, rows)]
    if side:
        sheader, srows = curve_table(side)
        ratios = [f"p50 Orthanc / ours x{_ratio(side, 1, k)}, qrscp / ours x{_ratio(side, 2, k)}"
                  for k in KINDS]  # fmt: skip
        sections += [
            "",
            f"Side by side, {args.peer_size:,} instances in each server, same client and queries"
            " (qrscp answers one response per matching *instance*):",
            "",
            markdown_table(sheader, srows),
            "",
            *(f"- {k}: {r}" for k, r in zip(KINDS, ratios, strict=True)),
        ]
        tables.append((sheader, srows))
    sections += ["", *(f"- {n}" for n in notes), *(f"- problem: {p}" for p in problems), ""]
    publish(tables, "\n".join(sections), args.markdown)
    return 1 if problems else 0


def _ratio(side: Sequence[Series], i: int, kind: str) -> str:
    if len(side) <= i or not side[0].seconds[kind] or not side[i].seconds[kind]:
        return "n/a"
    return f"{side[i].p(kind, 0.5) / side[0].p(kind, 0.5):.1f}"


def _size_label(size: int) -> str:
    return f"{size // 1_000_000}M" if size % 1_000_000 == 0 else f"{size // 1000}k"


def _show(series: Series) -> None:
    cells = ", ".join(f"{k} {_cell(series, k)}" for k in KINDS)
    print(f"  {series.label}: {cells} {series.note} {series.problems[:3] or ''}", flush=True)


if __name__ == "__main__":
    sys.exit(main())
