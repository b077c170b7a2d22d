"""Helpers for running DCMTK tools and our CLI as subprocesses on 127.0.0.1.

Every child gets a timeout, and every long-lived child (storescp) is killed by
its PID in a ``finally``. DCMTK 3.6.7 as packaged by Debian leaves Nagle's
algorithm on unless ``TCP_NODELAY=1`` is in its environment, which turns each
request/response round trip into a 40 ms delayed-ACK wait: every DCMTK child
gets it.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Protocol

import pytest

from tests.conftest import require_tool

HOST = "127.0.0.1"
#: Seconds any one short-lived child may run before the test fails.
TOOL_TIMEOUT = 15.0
#: Seconds a server child gets to start listening.
LISTEN_TIMEOUT = 10.0

DCMTK_ENV = {**os.environ, "TCP_NODELAY": "1"}


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listened on a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        port: int = sock.getsockname()[1]
        return port


def wait_listening(port: int, proc: subprocess.Popen[bytes], timeout: float) -> None:
    """Poll connect() until ``port`` accepts, ``proc`` dies, or the deadline passes."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{proc.args!r} exited with {proc.returncode} before listening")
        try:
            with socket.create_connection((HOST, port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.02)
    raise TimeoutError(f"nothing listening on {HOST}:{port} after {timeout:g} s")


def run_tool(args: Sequence[str], timeout: float = TOOL_TIMEOUT) -> tuple[int, str]:
    """Run a child to completion; its exit status and stdout+stderr together."""
    done = subprocess.run(
        list(args),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env=DCMTK_ENV,
        timeout=timeout,
        check=False,
    )
    return done.returncode, done.stdout.decode("utf-8", "replace")


def dcmconv_implicit(path: Path, work: Path) -> Path:
    """``path`` converted by DCMTK's dcmconv to Implicit VR Little Endian, with
    undefined lengths and no group lengths (``+ti -e -g``): the data set our
    conversion (``archive/dicom/reencode.py``) must give, byte for byte."""
    out = work / f"{path.name}.dcmconv"
    code, text = run_tool([require_tool("dcmconv"), "+ti", "-e", "-g", str(path), str(out)])
    assert code == 0, text
    return out


def archive_command() -> list[str]:
    """Our ``archive`` console script from the running venv (or ``-m archive.cli``)."""
    script = Path(sys.executable).with_name("archive")
    if script.exists():
        return [str(script)]
    return [sys.executable, "-m", "archive.cli"]


def stop(proc: subprocess.Popen[bytes]) -> None:
    """Kill one child we started, by its PID, and reap it."""
    if proc.poll() is None:
        proc.kill()
    proc.wait(timeout=TOOL_TIMEOUT)


class Storescp:
    """A running DCMTK storescp: its port, AE title and log file."""

    def __init__(self, proc: subprocess.Popen[bytes], port: int, aet: str, log: Path) -> None:
        self.proc = proc
        self.port = port
        self.aet = aet
        self.log = log

    def output(self) -> str:
        return self.log.read_text("utf-8", "replace")


class StorescpFactory(Protocol):
    def __call__(self, *extra: str, aet: str = ...) -> Storescp: ...


@pytest.fixture
def echoscu() -> str:
    return require_tool("echoscu")


@pytest.fixture
def storescp_factory(tmp_path: Path) -> Iterator[StorescpFactory]:
    """``storescp_factory(*extra_args, aet=...)`` starts storescp; all are killed at teardown."""
    binary = require_tool("storescp")
    procs: list[subprocess.Popen[bytes]] = []

    def start(*extra: str, aet: str = "STORESCP") -> Storescp:
        out = tmp_path / f"storescp{len(procs)}"
        out.mkdir()
        log = tmp_path / f"storescp{len(procs)}.log"
        for _attempt in range(3):  # the free port may be taken between probe and bind
            port = free_port()
            with log.open("wb") as sink:
                proc = subprocess.Popen(
                    [binary, "-aet", aet, "-od", str(out), *extra, str(port)],
                    stdin=subprocess.DEVNULL,
                    stdout=sink,
                    stderr=subprocess.STDOUT,
                    env=DCMTK_ENV,
                )
            procs.append(proc)
            try:
                wait_listening(port, proc, LISTEN_TIMEOUT)
            except RuntimeError:
                continue
            return Storescp(proc, port, aet, log)
        raise RuntimeError(f"storescp did not start: {log.read_text('utf-8', 'replace')}")

    try:
        yield start
    finally:
        for proc in procs:
            stop(proc)
