"""C-MOVE and C-GET of a 300-instance CT study: archive-node, Orthanc, dcmqrscp and qrscp.

Run: ``.venv/bin/python bench/retrieve.py [--quick] [--markdown PATH]``.

Data: one study of 300 CT Image Storage instances, 512 x 512 x 16 bit (~0.5 MB each,
Explicit VR Little Endian), three series, made by ``datasets.py`` (cached). Each server
is started on a fresh folder and loaded with ``storescu`` (one association), then all
four run side by side while the rounds rotate among them:

- C-MOVE of the study (Study Root, STUDY level) to ``DEST``: one DCMTK
  ``storescp --fork`` (TCP_NODELAY=1) writing into a tmpfs folder, the same destination
  for every server; after each move its files are counted (must be 300) and removed.
- C-GET of the study on the caller's association: our SCU (``ClientAssociation.get``)
  whose C-STORE handler reads every fragment, counts the bytes and answers Success,
  run as ``archive get`` runs (``archive.net.run``: uvloop, the allocator set up).

The clock runs from the C-MOVE/C-GET-RQ to the final response (the associations are
opened before); instances/s and MB/s (10^6 bytes of files) per round, the median shown.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import datasets
import qr_servers as qr
from common import DCMTK_ENV, HOST, Child, machine, markdown_table, publish, running, work_folder

from archive.dicom.dimse import CStoreRq
from archive.dicom.ul.pdu import RoleSelection
from archive.net import Timeouts, run

#: One study of 300 instances in three series (uid digit 3: apart from the other kinds).
STUDY = datasets.Kind("ctstudy", 3, 512, 512, studies=1, series_per_study=3)
INSTANCES = 300
CT_IMAGE_STORAGE = datasets.CT_IMAGE_STORAGE
STUDY_UID = f"{datasets.UID_ROOT}.{STUDY.uid_code}.1.{10**7}"
TIMEOUTS = Timeouts(artim=30.0, network=300.0, dimse=300.0, connect=10.0)
MB = 1e6
#: Issue 4: C-MOVE and C-GET at least twice Orthanc's instances/s.
TARGET_OVER_ORTHANC = 2.0


@dataclass(frozen=True)
class Peer:
    name: str
    called_ae: str
    argv: Callable[[Path, int], list[str]]
    env: dict[str, str] | None
    startup: float = 20.0


def peers() -> list[Peer]:
    dest = qr.DEST_AE
    return [
        Peer("archive-node", "ARCHIVE",
             lambda d, p: qr.archive_argv(d, [f"{dest}@{HOST}:{p}"]), None),
        Peer("Orthanc", "ORTHANC",
             lambda d, p: qr.orthanc_qr_argv(d, {"dest": (dest, HOST, p)}), dict(DCMTK_ENV),
             60.0),
        Peer("dcmqrscp", "DCMQRSCP",
             lambda d, p: qr.dcmqrscp_argv(d, {dest: (HOST, p)}), dict(DCMTK_ENV)),
        Peer("qrscp", "QRSCP",
             lambda d, p: qr.qrscp_argv(d, {dest: (HOST, p)}), qr.qrscp_env()),
    ]  # fmt: skip


@dataclass
class Result:
    server: str
    move: list[float] = field(default_factory=list)
    get: list[float] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)


def _identifier() -> bytes:
    return qr.identifier([("QueryRetrieveLevel", "STUDY"), ("StudyInstanceUID", STUDY_UID)])


async def c_move(port: int, called_ae: str) -> tuple[float, str]:
    """One C-MOVE of the study to DEST: (seconds, problem or "")."""
    async with qr.qr_association(port, called_ae, qr.STUDY_ROOT_MOVE, TIMEOUTS) as (assoc, cid):
        started = time.perf_counter()
        last = None
        async for rsp, _ in assoc.move(cid, _identifier(), qr.DEST_AE, timeout=300.0):
            last = rsp
        seconds = time.perf_counter() - started
    if last is None:
        return seconds, "C-MOVE: no final response"
    if last.status != 0:
        return seconds, f"C-MOVE final status {last.status:#06x}"
    done = last.number_of_completed_suboperations
    # Some SCPs leave the counts out of the final Success response (PS3.4 C.4.2.1.6).
    if done is not None and done != INSTANCES:
        return seconds, f"C-MOVE completed {done} of {INSTANCES}"
    return seconds, ""


async def c_get(port: int, called_ae: str) -> tuple[float, str]:
    """One C-GET of the study, every instance read to the end and discarded."""
    received = [0, 0]

    async def on_store(_rq: CStoreRq, _ts: str, fragments: AsyncIterator[memoryview]) -> int:
        async for fragment in fragments:
            received[1] += len(fragment)
        received[0] += 1
        return 0

    association = qr.qr_association(
        port, called_ae, qr.STUDY_ROOT_GET, TIMEOUTS, storage=[CT_IMAGE_STORAGE],
        roles=[RoleSelection(CT_IMAGE_STORAGE, scu_role=False, scp_role=True)],
        max_pdu_length=262144,
        # As `archive get` does: up to 8 sub-operations before their responses, for
        # an SCP that negotiates a window (ours); the others answer (1, 1) or nothing.
        async_ops=(1, 8),
    )  # fmt: skip
    async with association as (assoc, cid):
        started = time.perf_counter()
        last = None
        async for rsp, _ in assoc.get(cid, _identifier(), on_store, timeout=300.0):
            last = rsp
        seconds = time.perf_counter() - started
    if last is None:
        return seconds, "C-GET: no final response"
    if last.status != 0:
        return seconds, f"C-GET final status {last.status:#06x}"
    if received[0] != INSTANCES:
        return seconds, f"C-GET delivered {received[0]} of {INSTANCES}"
    return seconds, ""


def _dest_files(folder: Path) -> int:
    return sum(1 for p in folder.iterdir() if p.is_file())


def _clear(folder: Path) -> None:
    for p in folder.iterdir():
        p.unlink()


def load(child: Child, peer: Peer, data: datasets.DataSet) -> str:
    code = qr.storescu(child.port, peer.called_ae, [data.root], 1)
    return f"storescu exit {code}" if code else ""


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="C-MOVE / C-GET benchmark")
    parser.add_argument("--quick", action="store_true", help="3 rounds instead of 5")
    parser.add_argument("--rounds", type=int)
    parser.add_argument("--servers", help="comma list: archive-node,Orthanc,dcmqrscp,qrscp")
    parser.add_argument("--markdown", type=Path, help="also write the markdown report here")
    args = parser.parse_args(argv)
    rounds = args.rounds or (3 if args.quick else 5)
    started = time.perf_counter()
    info = machine()
    info["load average"] = f"start {os.getloadavg()[0]:.2f}"
    work = work_folder(datasets.CACHE / "qr-runs" / "retrieve")
    data = datasets.ensure(STUDY, INSTANCES)
    chosen = [p for p in peers() if not args.servers or p.name in args.servers.split(",")]
    shm = Path("/dev/shm") if Path("/dev/shm").is_dir() else None
    dest_dir = Path(tempfile.mkdtemp(prefix="archive-bench-dest-", dir=shm))
    results = {p.name: Result(p.name) for p in chosen}
    try:
        with contextlib.ExitStack() as stack:
            dest = stack.enter_context(
                running("dest", qr.storescp_argv(dest_dir), log_dir=work, env=DCMTK_ENV)
            )
            children: dict[str, Child] = {}
            for peer in chosen:
                folder = work / peer.name
                folder.mkdir()
                child = stack.enter_context(
                    running(peer.name, peer.argv(folder, dest.port), log_dir=work, env=peer.env,
                            startup=peer.startup)
                )  # fmt: skip
                t0 = time.perf_counter()
                problem = load(child, peer, data)
                print(f"  {peer.name}: loaded {INSTANCES} in {time.perf_counter() - t0:.1f} s"
                      f" {problem}", flush=True)  # fmt: skip
                if problem:
                    results[peer.name].problems.append(problem)
                children[peer.name] = child
            for turn in range(rounds):
                order = chosen[turn % len(chosen) :] + chosen[: turn % len(chosen)]
                for peer in order:
                    result, child = results[peer.name], children[peer.name]
                    seconds, problem = run(c_move(child.port, peer.called_ae))
                    arrived = _dest_files(dest_dir)
                    _clear(dest_dir)
                    if not problem and arrived != INSTANCES:
                        problem = f"destination got {arrived} files of {INSTANCES}"
                    if problem:
                        result.problems.append(problem)
                    else:
                        result.move.append(seconds)
                    get_seconds, get_problem = run(c_get(child.port, peer.called_ae))
                    if get_problem:
                        result.problems.append(get_problem)
                    else:
                        result.get.append(get_seconds)
                    print(f"  round {turn + 1} {peer.name:12} C-MOVE {_rate(seconds)}"
                          f" {problem}  C-GET {_rate(get_seconds)} {get_problem}",
                          flush=True)  # fmt: skip
    finally:
        shutil.rmtree(dest_dir, ignore_errors=True)
        # 158 MB per server; the logs stay in ``work``.
        for peer in chosen:
            shutil.rmtree(work / peer.name, ignore_errors=True)
    info["load average"] += f", end {os.getloadavg()[0]:.2f}"
    header, rows, verdicts = report(list(results.values()), data)
    problems = [f"{r.server}: {p}" for r in results.values() for p in r.problems]
    text = "\n".join([
        f"Measured {info['date']} ({'--quick' if args.quick else 'full run'},"
        f" {time.perf_counter() - started:.0f} s, {rounds} rounds, median shown)",
        "",
        *(f"- {k}: {v}" for k, v in info.items() if k != "date"),
        f"- data: {INSTANCES} instances x {data.file_size:,} B ="
        f" {INSTANCES * data.file_size / MB:.0f} MB, one study",
        "",
        markdown_table(header, rows),
        "",
        *(f"- {v}" for v in verdicts),
        *(f"- problem: {p}" for p in problems),
        "",
    ])  # fmt: skip
    publish([(header, rows)], text, args.markdown)
    return 1 if problems else 0


def _rate(seconds: float) -> str:
    return f"{INSTANCES / seconds:7.1f}/s" if seconds > 0 else "-"


def report(
    results: Sequence[Result], data: datasets.DataSet
) -> tuple[list[str], list[list[str]], list[str]]:
    header = ["server", "C-MOVE inst/s", "C-MOVE MB/s", "C-GET inst/s", "C-GET MB/s",
              "C-MOVE vs Orthanc", "C-GET vs Orthanc"]  # fmt: skip
    size = data.file_size * INSTANCES / MB

    def rate(times: list[float]) -> float:
        return INSTANCES / statistics.median(times) if times else 0.0

    orthanc = next((r for r in results if r.server == "Orthanc"), None)
    rows: list[list[str]] = []
    verdicts: list[str] = []
    for r in results:
        move, get = rate(r.move), rate(r.get)
        cells = [r.server]
        for value, times in ((move, r.move), (get, r.get)):
            cells += [f"{value:,.1f}" if times else "FAILED",
                      f"{size / statistics.median(times):,.1f}" if times else "-"]  # fmt: skip
        for op, value in (("C-MOVE", move), ("C-GET", get)):
            theirs = rate(orthanc.move if op == "C-MOVE" else orthanc.get) if orthanc else 0.0
            if value and theirs:
                cells.append(f"{value / theirs:.2f}x")
                if r.server == "archive-node":
                    ok = "met" if value / theirs >= TARGET_OVER_ORTHANC else "**missed**"
                    verdicts.append(f"{op}: archive-node {value / theirs:.2f}x Orthanc"
                                    f" (target >= {TARGET_OVER_ORTHANC:g}x: {ok})")  # fmt: skip
            else:
                cells.append("n/a")
        rows.append(cells)
    return header, rows, verdicts


if __name__ == "__main__":
    sys.exit(main())
