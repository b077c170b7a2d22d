"""Shared plumbing of the benchmarks: server children, CPU accounting, tables.

Not collected by pytest (no ``test_`` prefix). Every child is started in its own
session (so a Ctrl-C at the terminal reaches only the benchmark, which then
stops the children itself) and is stopped by PID: its descendants first (a
forking server's per-association children), then the server, SIGTERM then SIGKILL.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import platform
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

HOST = "127.0.0.1"

#: DCMTK 3.6.7 as packaged by Debian leaves Nagle's algorithm on unless this is set,
#: which makes every DCMTK round trip wait for a delayed ACK (~40 ms).
DCMTK_ENV: Mapping[str, str] = {**os.environ, "TCP_NODELAY": "1"}


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listened on a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        port: int = sock.getsockname()[1]
        return port


def work_folder(path: Path) -> Path:
    """``path`` emptied, with ext4's top-directory flag when it can be set; a new folder in it.

    This disk is ext4 without a journal: there, each new inode skips every inode
    of its block group freed in the last minute or more (``recently_deleted``),
    so right after a mass deletion (the last run's folders) each file creation
    costs 0.4-0.7 ms instead of 10 us, in the kernel, for whichever server runs
    next. With ``chattr +T`` the folders made in ``path`` (one per run) are
    spread over block groups as top-level ones are, away from the freed inodes:
    every server then meets the disk as a fresh data disk would be.

    Returned is a folder of a new name inside ``path``: ext4 starts its search
    for a top-level folder's block group from a hash of the name, so the same
    name would land where the last benchmark's folders were just deleted.
    """
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(parents=True)
    with contextlib.suppress(OSError):
        subprocess.run(["chattr", "+T", str(path)], check=False, capture_output=True)
    fresh = path / f"{os.getpid()}-{time.time_ns()}"
    fresh.mkdir()
    return fresh


# ---- /proc accounting ---------------------------------------------------------------------


def _stat_fields(pid: int) -> list[str] | None:
    """Fields of /proc/PID/stat after the command name (field 3 onwards), or None."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return raw[raw.rindex(")") + 2 :].split()


def descendants(pid: int) -> list[int]:
    """Live descendants of ``pid`` (children first), from the ppid field of /proc/*/stat."""
    parents: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        fields = _stat_fields(int(entry))
        if fields is not None:
            parents.setdefault(int(fields[1]), []).append(int(entry))
    found: list[int] = []
    todo = [pid]
    while todo:
        children = parents.get(todo.pop(), [])
        found.extend(children)
        todo.extend(children)
    return found


def cpu_ns(pid: int) -> dict[tuple[int, int], int]:
    """CPU nanoseconds run so far by every thread of ``pid`` and of its live descendants.

    From /proc/PID/task/TID/schedstat (nanoseconds), not /proc/PID/stat: the latter
    counts in 10 ms clock ticks per process, so fifty forked children that each
    run 5 ms in a window would all read 0. A thread that exits inside a window
    loses its time; the benchmark opens and closes associations outside windows.
    """
    found: dict[tuple[int, int], int] = {}
    for proc in (pid, *descendants(pid)):
        try:
            tids = os.listdir(f"/proc/{proc}/task")
        except OSError:
            continue
        for tid in tids:
            try:
                raw = Path(f"/proc/{proc}/task/{tid}/schedstat").read_text()
            except OSError:
                continue
            found[(proc, int(tid))] = int(raw.split()[0])
    return found


def cpu_between(
    before: Mapping[tuple[int, int], int], after: Mapping[tuple[int, int], int]
) -> float:
    """CPU seconds spent between two :func:`cpu_ns` snapshots of one process tree."""
    return sum(ns - before.get(key, 0) for key, ns in after.items()) / 1e9


# ---- children -----------------------------------------------------------------------------


@dataclass
class Child:
    """A server we started: its command, PID (via ``proc``), port and log file."""

    name: str
    proc: subprocess.Popen[bytes]
    port: int
    log: Path

    @property
    def pid(self) -> int:
        return self.proc.pid

    def log_text(self) -> str:
        try:
            return self.log.read_text("utf-8", "replace")
        except OSError:
            return ""


def wait_listening(child: Child, timeout: float) -> None:
    """Poll connect() until the child's port accepts, the child dies, or the deadline."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if child.proc.poll() is not None:
            raise RuntimeError(
                f"{child.name} exited with {child.proc.returncode}:\n{child.log_text()}"
            )
        try:
            with socket.create_connection((HOST, child.port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.02)
    raise TimeoutError(
        f"{child.name}: nothing listening on {HOST}:{child.port} after {timeout:g} s"
    )


def stop_child(child: Child, grace: float = 5.0) -> None:
    """Stop ``child`` and its descendants, each by PID: SIGTERM, then SIGKILL after ``grace``."""
    for pid in reversed(descendants(child.pid)):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    if child.proc.poll() is None:
        child.proc.send_signal(signal.SIGTERM)
        try:
            child.proc.wait(grace)
        except subprocess.TimeoutExpired:
            child.proc.kill()
            try:
                child.proc.wait(30.0)
            except subprocess.TimeoutExpired:
                print(f"warning: {child.name} (pid {child.pid}) survived SIGKILL", file=sys.stderr)


@contextlib.contextmanager
def running(
    name: str,
    argv_for_port: Sequence[str],
    *,
    log_dir: Path,
    env: Mapping[str, str] | None = None,
    startup: float = 15.0,
) -> Iterator[Child]:
    """Start ``argv`` (``{port}`` replaced by a free port), wait until it listens, stop it after.

    A port taken between probe and bind makes the child exit; that is retried.
    """
    last_error: Exception | None = None
    for attempt in range(3):
        port = free_port()
        argv = [arg.replace("{port}", str(port)) for arg in argv_for_port]
        log = log_dir / f"{name}-{attempt}.log"
        with log.open("wb") as sink:
            proc = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=sink,
                stderr=subprocess.STDOUT,
                env=dict(env) if env is not None else None,
                start_new_session=True,
            )
        child = Child(name, proc, port, log)
        try:
            wait_listening(child, startup)
        except RuntimeError as exc:
            stop_child(child)
            last_error = exc
            continue
        except BaseException:
            stop_child(child)
            raise
        try:
            yield child
        finally:
            stop_child(child)
        return
    raise RuntimeError(f"{name} did not start") from last_error


# ---- reporting ----------------------------------------------------------------------------


def machine() -> dict[str, str]:
    """What the figures were measured on."""
    model = "unknown"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return {
        "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "cpus": str(os.cpu_count()),
        "cpu": model,
        "kernel": platform.release(),
        "python": f"{platform.python_implementation()} {sys.version.split()[0]}",
    }


def plain_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    widths = [max(len(row[i]) for row in (header, *rows)) for i in range(len(header))]

    def line(cells: Sequence[str]) -> str:
        first = cells[0].ljust(widths[0])
        rest = (cell.rjust(width) for cell, width in zip(cells[1:], widths[1:], strict=True))
        return "  ".join((first, *rest))

    return "\n".join([line(header), "  ".join("-" * w for w in widths), *map(line, rows)])


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    lines = [
        "| " + " | ".join(header) + " |",
        "|" + "|".join(["---"] + ["---:"] * (len(header) - 1)) + "|",
    ]
    lines.extend("| " + " | ".join(row) + " |" for row in rows)
    return "\n".join(lines)


def publish(
    tables: Sequence[tuple[Sequence[str], Sequence[Sequence[str]]]],
    report: str,
    markdown: Path | None,
) -> None:
    """Print ``tables`` as plain text, then ``report``; write ``report`` to ``markdown``."""
    print()
    for header, rows in tables:
        print(plain_table(header, rows))
        print()
    print(report)
    if markdown is not None:
        markdown.write_text(report)
        print(f"markdown written to {markdown}")
