"""Ctrl-C during ``archive store`` and ``archive import``: a real SIGINT to the
command in a child process, as a terminal sends it.

The first stops taking files and lets those in flight finish; the second stops
at once. Either way the summary of what was done is printed, stderr says
"interrupted" (no KeyboardInterrupt traceback) and the exit status is 130, as
for the Query/Retrieve commands. Every child is bounded by a timeout and killed
by its PID if it outlives it.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from archive.cli import EXIT_INTERRUPTED, main
from archive.scu import Interrupt, abortable
from tests.test_cli_store import PynetdicomScp, make_instance, pyscp_factory, stored_path

__all__ = ["pyscp_factory"]  # a fixture

ROOT = Path(__file__).resolve().parents[2]
#: Seconds a child may take to end after its last SIGINT.
EXIT_TIMEOUT = 20.0
#: ``archive`` from this tree, in a child; ``PATCH`` (Python source) runs first.
RUN_CLI = """\
import os, sys
exec(os.environ["NOTICE"])
exec(os.environ.get("PATCH", ""))
from archive.cli import main
sys.exit(main(sys.argv[1:]))
"""
#: Runs first in every child: each SIGINT the command takes in says "interrupt"
#: on stderr, so a test waits for the child to have heeded one rather than for
#: a while; ``NOTICED`` is set then too, for patches that wait for it.
NOTICE = """
import asyncio, sys
import archive.scu.query as query
NOTICED = []
real_set = query.Interrupt.set
def noticing_set(self):
    real_set(self)
    print("interrupt", file=sys.stderr, flush=True)
    for event in NOTICED:
        event.set()
query.Interrupt.set = noticing_set
def noticed():
    event = asyncio.Event()
    NOTICED.append(event)
    return event
"""


@pytest.fixture
def cli() -> Iterator[Callable[..., subprocess.Popen[str]]]:
    """``cli(args, patch="")`` starts ``archive ARGS`` in a child process."""
    children: list[subprocess.Popen[str]] = []

    def start(args: Sequence[str], patch: str = "") -> subprocess.Popen[str]:
        env = {**os.environ, "PYTHONPATH": str(ROOT), "NOTICE": NOTICE, "PATCH": patch}
        child = subprocess.Popen(
            [sys.executable, "-c", RUN_CLI, *args],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        children.append(child)
        return child

    yield start
    for child in children:
        if child.poll() is None:
            child.kill()
            child.communicate()


def interrupt(
    child: subprocess.Popen[str], times: int = 1, then: Callable[[], object] = lambda: None
) -> tuple[str, str]:
    """SIGINT ``times``, each once the last was heeded, ``then()``; the child's
    stdout and stderr."""
    for _ in range(times):
        child.send_signal(signal.SIGINT)
        wait_for(child, "interrupt")
    then()
    out, err = child.communicate(timeout=EXIT_TIMEOUT)
    return out, err


def assert_interrupted(
    child: subprocess.Popen[str], out: str, err: str, command: str, first: str, left: str
) -> None:
    assert "Traceback" not in err, err
    assert child.returncode == EXIT_INTERRUPTED, (out, err)
    lines = out.splitlines()
    assert lines[0].startswith(first), out
    assert lines[1] == left
    assert err.endswith(f"archive {command}: interrupted\n"), err


# ---- archive store ----------------------------------------------------------------------------


def test_store_ctrl_c_finishes_the_file_in_flight_and_sends_no_more(
    pyscp_factory: Callable[..., PynetdicomScp],
    cli: Callable[..., subprocess.Popen[str]],
    tmp_path: Path,
) -> None:
    folder = tmp_path / "in"
    for i in range(5):
        make_instance(folder / f"{i}.dcm")
    storing, answer = threading.Event(), threading.Event()

    def held(event: Any) -> int:
        storing.set()
        answer.wait(EXIT_TIMEOUT)  # answered once the child has heeded the SIGINT
        return 0

    scp = pyscp_factory(held)
    try:
        child = cli(["store", "--aec", "PYSCP", "127.0.0.1", str(scp.port), str(folder)])
        assert storing.wait(EXIT_TIMEOUT)
        out, err = interrupt(child, then=answer.set)
    finally:
        answer.set()
    first = "sent 1, failed 0, skipped 0 of 5 file(s); "
    assert_interrupted(child, out, err, "store", first, "interrupted: 4 file(s) not sent")
    assert len(scp.received) == 1
    assert len(scp.associations) == 1


def test_store_second_ctrl_c_aborts_at_once(
    pyscp_factory: Callable[..., PynetdicomScp],
    cli: Callable[..., subprocess.Popen[str]],
    tmp_path: Path,
) -> None:
    folder = tmp_path / "in"
    for i in range(3):
        make_instance(folder / f"{i}.dcm")
    storing, answer = threading.Event(), threading.Event()

    def stuck(event: Any) -> int:
        storing.set()
        answer.wait(EXIT_TIMEOUT)  # never answers while the test runs
        return 0

    scp = pyscp_factory(stuck)
    try:
        child = cli(["store", "--aec", "PYSCP", "127.0.0.1", str(scp.port), str(folder)])
        assert storing.wait(EXIT_TIMEOUT)
        started = time.monotonic()
        out, err = interrupt(child, times=2)
        assert time.monotonic() - started < 5  # not the 30 s DIMSE timeout
    finally:
        answer.set()
    first = "sent 0, failed 0, skipped 0 of 3 file(s); "
    assert_interrupted(child, out, err, "store", first, "interrupted: 3 file(s) not sent")


# ---- archive import ---------------------------------------------------------------------------

#: Each file's import reports itself done on stderr, then ends only once the
#: child has heeded a SIGINT (bounded).
SLOW_IMPORT = """
import asyncio, sys
import archive.importer as importer
real_import_one = importer.import_one
async def import_one(*args):
    heeded = noticed()
    result = await real_import_one(*args)
    print("imported one", file=sys.stderr, flush=True)
    await asyncio.wait_for(heeded.wait(), 20)
    return result
importer.import_one = import_one
"""
#: Each file's data set stalls after its first chunk, half ingested.
STALLED_IMPORT = """
import asyncio, sys
import archive.importer as importer
real_read_chunks = importer.read_chunks
async def read_chunks(*args):
    async for block in real_read_chunks(*args):
        yield block
        print("reading", file=sys.stderr, flush=True)
        await asyncio.sleep(60)
importer.read_chunks = read_chunks
"""


def wait_for(child: subprocess.Popen[str], line: str) -> None:
    assert child.stderr is not None
    assert child.stderr.readline() == line + "\n"  # bounded: the child's own timeout


def test_import_ctrl_c_finishes_the_file_in_flight_and_imports_no_more(
    cli: Callable[..., subprocess.Popen[str]],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    folder = tmp_path / "in"
    uids = [make_instance(folder / f"{i}.dcm") for i in range(5)]
    data = tmp_path / "data"
    child = cli(["import", "--data", str(data), "-j", "1", str(folder)], SLOW_IMPORT)
    wait_for(child, "imported one")
    out, err = interrupt(child)
    first = "imported 1, failed 0, skipped 0 of 5 file(s); "
    assert_interrupted(child, out, err, "import", first, "interrupted: 4 file(s) not imported")
    assert [stored_path(data, uid).exists() for uid in uids] == [True] + [False] * 4
    assert main(["check", "--data", str(data)]) == 0, capsys.readouterr()


def test_import_second_ctrl_c_leaves_no_half_imported_file(
    cli: Callable[..., subprocess.Popen[str]],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    folder = tmp_path / "in"
    for i in range(2):
        make_instance(folder / f"{i}.dcm")
    data = tmp_path / "data"
    child = cli(["import", "--data", str(data), "-j", "1", str(folder)], STALLED_IMPORT)
    wait_for(child, "reading")
    out, err = interrupt(child, times=2)
    first = "imported 0, failed 0, skipped 0 of 2 file(s); "
    assert_interrupted(child, out, err, "import", first, "interrupted: 2 file(s) not imported")
    assert list((data / "instances").rglob("*.dcm")) == []
    assert list((data / "tmp").iterdir()) == []
    assert main(["check", "--data", str(data)]) == 0, capsys.readouterr()


# ---- the helper --------------------------------------------------------------------------------


def test_abortable_runs_to_the_end_or_stops_at_the_second_interrupt() -> None:
    finished: list[float] = []

    async def work(seconds: float) -> None:
        await asyncio.sleep(seconds)
        finished.append(seconds)

    async def scenario() -> None:
        interrupt = Interrupt()
        await abortable(work(0), interrupt)
        interrupt.set()  # the first is the work's to heed: nothing is cancelled
        await abortable(work(0.01), interrupt)
        asyncio.get_running_loop().call_later(0.01, interrupt.set)
        await abortable(work(EXIT_TIMEOUT), interrupt)  # cancelled: returns at once
        assert finished == [0, 0.01]

    asyncio.run(asyncio.wait_for(scenario(), EXIT_TIMEOUT))
