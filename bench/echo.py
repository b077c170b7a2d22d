"""C-ECHO benchmark: archive-node against pynetdicom's SCP and DCMTK's storescp.

Run: ``.venv/bin/python bench/echo.py [--quick] [--markdown PATH]``.

Each server runs as its own child process on a free 127.0.0.1 port, all three at
once. The client is always the same: our asyncio SCU (:func:`archive.net.associate`)
on uvloop, in this process. Measures:

* one association: C-ECHO round trips per second after a short warm-up;
* N concurrent associations: aggregate C-ECHOs per second, all associations echoing
  back to back over the same window (associations are opened before the window and
  released after it);
* idle: CPU of the server's process tree (% of one core) with no association, and
  with 100 associations held open doing nothing.

Rate measures run in rounds; each round gives every server one slice, in rotating
order, and the tables show the median over the rounds, so load from other work on
a shared machine hits all servers alike. Server and client CPU are read for every
slice (threads' schedstat nanoseconds for the server tree, ``os.times`` for us):
"server CPU µs per C-ECHO" is the figure that does not depend on the client.

storescp is single-process by default and serves one association at a time; the
comparison uses ``storescp --fork`` (one child per association, DCMTK's own answer to
concurrency) and the single-process behaviour is measured and reported on the side.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from importlib.metadata import version
from pathlib import Path

# Run as a script, so this folder is sys.path[0] and its helpers import as `common`.
from common import (
    DCMTK_ENV,
    HOST,
    Child,
    cpu_between,
    cpu_ns,
    machine,
    markdown_table,
    plain_table,
    running,
)
from leanecho import lean_echo_rate

from archive.net import (
    ECHO_CONTEXTS,
    AssociationError,
    ClientAssociation,
    Timeouts,
    associate,
    run,
)

#: pynetdicom's Verification SCP: blocking start_server, enough room for the idle test.
PYNETDICOM_SCP = """
import sys
from pynetdicom import AE
from pynetdicom.sop_class import Verification
ae = AE(ae_title="PYNETDICOM")
ae.add_supported_context(Verification)
ae.maximum_associations = 500
ae.start_server(("127.0.0.1", int(sys.argv[1])), block=True)
"""

CALLING_AE = "BENCH"
SUCCESS = 0x0000
#: Associations being negotiated at once. pynetdicom listens with socketserver's
#: backlog of 5; more simultaneous SYNs would be dropped and retried a second later,
#: measuring TCP's retry timer instead of the server.
SETUP_CONCURRENCY = 5


@dataclass(frozen=True)
class Server:
    name: str
    argv: Sequence[str]
    called_ae: str
    env: dict[str, str] | None = None


@dataclass(frozen=True)
class Plan:
    """Rate measures run in ``rounds``, each giving every server one slice in turn."""

    rounds: int
    warmup: float
    one_slice: float
    many: int
    many_slice: float
    idle_assocs: int
    idle_settle: float
    idle_hold: float
    idle_empty_hold: float
    echoscu_repeat: int


FULL = Plan(5, 0.2, 1.0, 50, 1.0, 100, 1.0, 5.0, 2.0, 1000)
QUICK = Plan(3, 0.1, 0.4, 50, 0.4, 100, 0.5, 2.0, 0.5, 200)


@dataclass(frozen=True)
class Rate:
    """C-ECHO/s and the CPU (% of one core) the server tree and this client used meanwhile."""

    echoes: float
    server_cpu: float
    client_cpu: float
    #: Server CPU microseconds per C-ECHO: what the server spends, whoever waits.
    server_cost: float


def median_rate(slices: Sequence[Rate]) -> Rate:
    """Field-wise median over the rounds: robust to other work on a shared machine."""
    if not slices:
        return Rate(0.0, 0.0, 0.0, 0.0)
    return Rate(
        statistics.median(r.echoes for r in slices),
        statistics.median(r.server_cpu for r in slices),
        statistics.median(r.client_cpu for r in slices),
        statistics.median(r.server_cost for r in slices),
    )


@dataclass
class Results:
    one: list[Rate] = field(default_factory=list)
    many: list[Rate] = field(default_factory=list)
    many_established: int = 0
    idle_empty_cpu: float = 0.0
    idle_cpu: float = 0.0
    idle_seconds: float = 0.0
    idle_established: int = 0
    echoscu: list[float] = field(default_factory=list)
    lean: list[float] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def servers() -> list[Server]:
    archive = Path(sys.executable).with_name("archive")
    archive_argv = [str(archive)] if archive.exists() else [sys.executable, "-m", "archive.cli"]
    storescp = shutil.which("storescp")
    if storescp is None:
        raise SystemExit("storescp not found: apt-get install -y dcmtk")
    return [
        Server(
            "archive-node",
            [*archive_argv, "serve", "--host", HOST, "--port", "{port}", "--data", "{data}"],
            "ARCHIVE",
        ),
        Server("pynetdicom", [sys.executable, "-c", PYNETDICOM_SCP, "{port}"], "PYNETDICOM"),
        Server(
            "storescp",
            [storescp, "--fork", "-aet", "STORESCP", "-od", "{data}", "{port}"],
            "STORESCP",
            dict(DCMTK_ENV),
        ),
    ]


# ---- the client ---------------------------------------------------------------------------


async def _open(port: int, aec: str, timeout: float, gate: asyncio.Semaphore) -> ClientAssociation:
    timeouts = Timeouts(artim=timeout, connect=timeout, network=120.0, dimse=10.0)
    async with gate:
        return await associate(
            HOST,
            port,
            calling_ae=CALLING_AE,
            called_ae=aec,
            contexts=ECHO_CONTEXTS,
            timeouts=timeouts,
        )


async def _open_many(
    port: int, aec: str, count: int, timeout: float, concurrency: int = SETUP_CONCURRENCY
) -> tuple[list[ClientAssociation], list[str]]:
    gate = asyncio.Semaphore(concurrency)
    outcomes = await asyncio.gather(
        *(_open(port, aec, timeout, gate) for _ in range(count)), return_exceptions=True
    )
    opened = [o for o in outcomes if isinstance(o, ClientAssociation)]
    errors = [f"{type(o).__name__}: {o}" for o in outcomes if isinstance(o, BaseException)]
    for o in outcomes:
        if isinstance(o, BaseException) and not isinstance(o, AssociationError):
            for assoc in opened:
                assoc.abort()
            raise o
    return opened, errors


async def _close_all(assocs: Sequence[ClientAssociation]) -> None:
    async def close(assoc: ClientAssociation) -> None:
        try:
            async with asyncio.timeout(10):
                await assoc.release()
        except (TimeoutError, AssociationError):
            assoc.abort()

    await asyncio.gather(*(close(a) for a in assocs))


async def _echo_until(assoc: ClientAssociation, start: asyncio.Event, end: list[float]) -> int:
    await start.wait()
    count = 0
    deadline = end[0]
    while time.perf_counter() < deadline:
        status = await assoc.echo()
        if status != SUCCESS:
            raise RuntimeError(f"C-ECHO status 0x{status:04X}")
        count += 1
    return count


class CpuMeter:
    """CPU of the server's process tree and of this process over one window."""

    def __init__(self, server_pid: int) -> None:
        self.pid = server_pid
        self.server = cpu_ns(server_pid)
        self.client = _own_cpu()
        self.start = time.perf_counter()

    def rate(self, count: int) -> Rate:
        elapsed = time.perf_counter() - self.start
        server = cpu_between(self.server, cpu_ns(self.pid))
        client = _own_cpu() - self.client
        cost = 1e6 * server / count if count else 0.0
        return Rate(count / elapsed, 100 * server / elapsed, 100 * client / elapsed, cost)


def _own_cpu() -> float:
    times = os.times()
    return times.user + times.system


async def one_association(child: Child, aec: str, warmup: float, duration: float) -> Rate:
    """C-ECHOs per second on one association, after ``warmup`` seconds of the same."""
    assoc = await _open(child.port, aec, 10.0, asyncio.Semaphore(1))
    async with assoc:
        end = time.perf_counter() + warmup
        while time.perf_counter() < end:
            await assoc.echo()
        count = 0
        meter = CpuMeter(child.pid)
        end = meter.start + duration
        while time.perf_counter() < end:
            if await assoc.echo() != SUCCESS:
                raise RuntimeError("C-ECHO failed")
            count += 1
        return meter.rate(count)


async def many_associations(
    child: Child,
    aec: str,
    count: int,
    duration: float,
    setup_timeout: float,
    concurrency: int = SETUP_CONCURRENCY,
) -> tuple[Rate, int, list[str]]:
    """Aggregate C-ECHO/s over ``count`` associations echoing in the same window."""
    assocs, errors = await _open_many(child.port, aec, count, setup_timeout, concurrency)
    try:
        start = asyncio.Event()
        end = [0.0]
        tasks = [asyncio.create_task(_echo_until(a, start, end)) for a in assocs]
        meter = CpuMeter(child.pid)
        end[0] = meter.start + duration
        start.set()
        counts = await asyncio.gather(*tasks)
        rate = meter.rate(sum(counts))
    finally:
        await _close_all(assocs)
    return rate, len(assocs), errors


async def idle_cpu(
    child: Child, aec: str, count: int, settle: float, hold: float
) -> tuple[float, float, int]:
    """CPU % of one core used by the server tree while ``count`` associations sit idle."""
    assocs, _ = await _open_many(child.port, aec, count, 10.0) if count else ([], [])
    try:
        await asyncio.sleep(settle)  # let per-association threads/children start
        before, t0 = cpu_ns(child.pid), time.perf_counter()
        await asyncio.sleep(hold)
        after, t1 = cpu_ns(child.pid), time.perf_counter()
    finally:
        await _close_all(assocs)
    seconds = cpu_between(before, after)
    return 100.0 * seconds / (t1 - t0), seconds, len(assocs)


def echoscu_rate(port: int, aec: str, repeat: int) -> float | None:
    """DCMTK echoscu as the client: C-ECHO/s for one process, start to exit."""
    echoscu = shutil.which("echoscu")
    if echoscu is None:
        return None
    argv = [echoscu, "-aet", CALLING_AE, "-aec", aec, "--repeat", str(repeat), HOST, str(port)]
    t0 = time.perf_counter()
    done = subprocess.run(argv, env=DCMTK_ENV, capture_output=True, timeout=120, check=False)
    elapsed = time.perf_counter() - t0
    if done.returncode != 0:
        raise RuntimeError(f"echoscu failed: {done.stdout!r} {done.stderr!r}")
    return repeat / elapsed


# ---- the run ------------------------------------------------------------------------------


def measure(plan: Plan, work: Path) -> dict[str, Results]:
    """All servers run at once; each rate measure gives them slices in rotating order."""
    specs = servers()
    results = {spec.name: Results() for spec in specs}
    with contextlib.ExitStack() as stack:
        children: list[tuple[Server, Child]] = []
        for spec in specs:
            data = work / f"{spec.name}-data"
            data.mkdir()
            argv = [arg.replace("{data}", str(data)) for arg in spec.argv]
            child = stack.enter_context(running(spec.name, argv, log_dir=work, env=spec.env))
            print(f"  {spec.name}: pid {child.pid}, port {child.port}", flush=True)
            children.append((spec, child))
        for r in range(plan.rounds):
            order = children[r % len(children) :] + children[: r % len(children)]
            print(f"  round {r + 1}/{plan.rounds}", flush=True)
            for spec, child in order:
                one = run(
                    one_association(child, spec.called_ae, plan.warmup, plan.one_slice), "uvloop"
                )
                results[spec.name].one.append(one)
                _show(f"{spec.name}, one", one)
            for spec, child in order:
                many, established, errors = run(
                    many_associations(child, spec.called_ae, plan.many, plan.many_slice, 10.0),
                    "uvloop",
                )
                results[spec.name].many.append(many)
                results[spec.name].many_established = established
                if errors:
                    results[spec.name].notes.append(
                        f"{len(errors)} association(s) failed: {errors[0]}"
                    )
                _show(f"{spec.name}, {established}", many)
            for spec, child in order:
                lean = lean_echo_rate(HOST, child.port, CALLING_AE, spec.called_ae, plan.one_slice)
                results[spec.name].lean.append(lean)
                print(f"    {spec.name}, one, lean client: {lean:,.0f} echo/s", flush=True)
            for spec, child in order:
                rate = echoscu_rate(child.port, spec.called_ae, plan.echoscu_repeat)
                if rate is not None:
                    results[spec.name].echoscu.append(rate)
        for spec, child in children:
            res = results[spec.name]
            res.idle_empty_cpu, _, _ = run(
                idle_cpu(child, spec.called_ae, 0, plan.idle_settle, plan.idle_empty_hold),
                "uvloop",
            )
            res.idle_cpu, res.idle_seconds, res.idle_established = run(
                idle_cpu(child, spec.called_ae, plan.idle_assocs, plan.idle_settle, plan.idle_hold),
                "uvloop",
            )
            print(
                f"    {spec.name} idle CPU {res.idle_empty_cpu:.1f} % (no association),"
                f" {res.idle_cpu:.1f} % ({res.idle_established} associations,"
                f" {1000 * res.idle_seconds:.1f} ms of CPU)",
                flush=True,
            )
    return results


def _show(label: str, rate: Rate) -> None:
    print(
        f"    {label:<16} {rate.echoes:8.0f} echo/s  (server CPU {rate.server_cpu:.0f} %,"
        f" client CPU {rate.client_cpu:.0f} %)",
        flush=True,
    )


def storescp_single_process(plan: Plan, work: Path) -> str:
    """What plain (non-forking) storescp does with ``plan.many`` concurrent associations."""
    storescp = shutil.which("storescp")
    assert storescp is not None
    data = work / "storescp-single-data"
    data.mkdir()
    argv = [storescp, "-aet", "STORESCP", "-od", str(data), "{port}"]
    with running("storescp-single", argv, log_dir=work, env=DCMTK_ENV) as child:
        rate, established, errors = run(
            # All requested at once: one at a time would wait 2 s for each refusal.
            many_associations(child, "STORESCP", plan.many, 2 * plan.many_slice, 2.0, plan.many),
            "uvloop",
        )
    kinds = sorted({e.split(":", 1)[0] for e in errors})
    return (
        f"storescp without --fork, {plan.many} associations requested at once:"
        f" {established} established within 2 s ({len(errors)} timed out or failed:"
        f" {', '.join(kinds) or 'none'}); {rate.echoes:.0f} echo/s aggregate. It negotiates and"
        " serves one association at a time, so the others wait in the listen backlog"
        " until it is released."
    )


def _pct(x: float) -> str:
    return f"{x:.1f}" if x >= 10 else f"{x:.2f}"


def _ratio(a: float, b: float) -> str:
    return f"{a / b:.1f}x" if b > 0 else "n/a"


def table(results: dict[str, Results], plan: Plan) -> tuple[list[str], list[list[str]]]:
    ra, rp, rs = results["archive-node"], results["pynetdicom"], results["storescp"]
    a1, p1, s1 = median_rate(ra.one), median_rate(rp.one), median_rate(rs.one)
    am, pm, sm = median_rate(ra.many), median_rate(rp.many), median_rate(rs.many)
    header = [
        "measure", "archive-node", "pynetdicom", "storescp --fork",
        "archive/pynetdicom", "archive/storescp",
    ]  # fmt: skip

    def rate_row(label: str, x: float, y: float, z: float) -> list[str]:
        return [label, f"{x:,.0f}", f"{y:,.0f}", f"{z:,.0f}", _ratio(x, y), _ratio(x, z)]

    def cpu_row(label: str, x: float, y: float, z: float) -> list[str]:
        return [label, _pct(x), _pct(y), _pct(z), _ratio(x, y), _ratio(x, z)]

    def cost_row(label: str, x: Rate, y: Rate, z: Rate) -> list[str]:
        costs = [r.server_cost for r in (x, y, z)]
        return [label, *(f"{c:.0f}" for c in costs), _ratio(*costs[:2]), _ratio(costs[0], costs[2])]

    rows = [
        rate_row(
            "C-ECHO/s, one association, lean blocking client",
            statistics.median(ra.lean),
            statistics.median(rp.lean),
            statistics.median(rs.lean),
        ),
        rate_row("C-ECHO/s, one association, asyncio SCU", a1.echoes, p1.echoes, s1.echoes),
        cpu_row("  server CPU % meanwhile", a1.server_cpu, p1.server_cpu, s1.server_cpu),
        cpu_row("  client CPU % meanwhile", a1.client_cpu, p1.client_cpu, s1.client_cpu),
        cost_row("  server CPU µs per C-ECHO", a1, p1, s1),
        rate_row(f"C-ECHO/s, {plan.many} associations", am.echoes, pm.echoes, sm.echoes),
        cpu_row("  server CPU % meanwhile", am.server_cpu, pm.server_cpu, sm.server_cpu),
        cpu_row("  client CPU % meanwhile", am.client_cpu, pm.client_cpu, sm.client_cpu),
        cost_row("  server CPU µs per C-ECHO", am, pm, sm),
        cpu_row("idle CPU %, no association", ra.idle_empty_cpu, rp.idle_empty_cpu,
                rs.idle_empty_cpu),
        cpu_row(f"idle CPU %, {plan.idle_assocs} associations", ra.idle_cpu, rp.idle_cpu,
                rs.idle_cpu),
    ]  # fmt: skip
    if ra.echoscu and rp.echoscu and rs.echoscu:
        rows.append(
            rate_row(
                f"C-ECHO/s, echoscu --repeat {plan.echoscu_repeat} as client",
                statistics.median(ra.echoscu),
                statistics.median(rp.echoscu),
                statistics.median(rs.echoscu),
            )
        )
    return header, rows


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="C-ECHO benchmark against pynetdicom and DCMTK")
    parser.add_argument("--quick", action="store_true", help="short windows (under ~40 s)")
    parser.add_argument("--markdown", type=Path, help="also write the markdown report here")
    args = parser.parse_args(argv)
    plan = QUICK if args.quick else FULL
    info = machine()
    info["loop"] = f"uvloop {version('uvloop')} (client and archive-node)"
    info["peers"] = (
        f"pynetdicom {version('pynetdicom')}, DCMTK storescp/echoscu 3.6.7 (TCP_NODELAY=1)"
    )
    info["load average"] = f"start {os.getloadavg()[0]:.2f}"
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="archive-bench-") as tmp:
        work = Path(tmp)
        results = measure(plan, work)
        single = storescp_single_process(plan, work)
    end_load = os.getloadavg()[0]
    info["load average"] += f", end {end_load:.2f} (1 min; other work on the machine skews figures)"
    header, rows = table(results, plan)
    ours, theirs = results["archive-node"], results["pynetdicom"]
    ours_one, theirs_one = statistics.median(ours.lean), statistics.median(theirs.lean)
    one_ok = ours_one >= 20 * theirs_one
    scu_one, scu_theirs = median_rate(ours.one).echoes, median_rate(theirs.one).echoes
    idle = ours
    checks = [
        f"one association >= 20x pynetdicom (lean client): {'yes' if one_ok else 'NO'}"
        f" ({_ratio(ours_one, theirs_one)}; with our asyncio SCU as client"
        f" {_ratio(scu_one, scu_theirs)})",
        f"archive-node idle with {plan.idle_assocs} associations:"
        f" {1000 * idle.idle_seconds:.2f} ms of CPU in {plan.idle_hold:g} s"
        f" ({idle.idle_cpu:.3f} % of one core)",
    ]
    notes = [single] + [f"{name}: {n}" for name, r in results.items() for n in r.notes]
    print()
    print(plain_table(header, rows))
    print()
    for line in checks + notes:
        print(f"- {line}")
    report = "\n".join(
        [
            f"Measured {info['date']} ({'--quick' if args.quick else 'full run'},"
            f" {time.perf_counter() - started:.0f} s)",
            "",
            *(f"- {key}: {value}" for key, value in info.items() if key != "date"),
            "",
            markdown_table(header, rows),
            "",
            *(f"- {line}" for line in checks + notes),
            "",
        ]
    )
    print()
    print(report)
    if args.markdown is not None:
        args.markdown.write_text(report)
        print(f"markdown written to {args.markdown}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
