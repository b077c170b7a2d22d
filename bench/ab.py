"""Two versions of our node, alternating runs: is B faster than A, beyond the noise?

Full runs of ``ingest.py`` on this VM vary by a third from one to the next, so a
change to the ingest path is judged here instead: each of two git revisions is
checked out into a worktree of its own (its C extension built from its own
sources), and our node alone ingests the same sub-folders of a data set with
DCMTK ``storescu`` (as ``ingest.py`` runs it), one run per version in the order
A B, B A, A B, ... on a fresh data folder each time. The result is the median
of the pairs' B/A ratios, with the lowest and highest. Run:

    .venv/bin/python bench/ab.py REV_A REV_B [--data small|ct] [--assocs 4]
        [--pairs 10] [--parts 8] [--env-b ARCHIVE_NATIVE=0] [--config-b FILE]

``REV_B`` may be ``WORKTREE`` for the uncommitted working tree. Every run is
checked: the instances sent must all be stored (files and index rows); a failed
run stops the comparison and keeps its folder (logs, data) under
bench/.cache/ab-runs until the next comparison. The runs' folders stay until the
end, in a folder made as ``ingest.py`` makes its own (``work_folder``): a folder
deleted between runs would make the next run's file creations pay for its freed
inodes. A first run, not counted, warms the disk up. ``--config-a``/``--config-b``
give a side a configuration file (``archive serve --config``): the same revision
twice with ``[store] durability = "fast"`` for B measures what the flushes cost.
The rate counts from the clients' start to the last one's exit, so short runs
(``--parts 1``) lean towards 1; the CPU is the node's, all its threads, meanwhile.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import NamedTuple

import qr_servers as qr
from common import DCMTK_ENV, cpu_ns, running, work_folder
from datasets import CT, PARTS, SMALL, DataSet, ensure
from ingest import archive_count

ROOT = Path(__file__).resolve().parent.parent
WORKTREE = "WORKTREE"


class RunFailed(SystemExit):
    """A run did not store all it was sent: its folder is kept for a look."""


def build(tree: Path) -> None:
    """Build the tree's extension in place; it must come out (``setup.py`` marks it
    optional, so a failed compile is only a warning there)."""
    done = subprocess.run(
        [sys.executable, "setup.py", "--quiet", "build_ext", "--inplace"],
        cwd=tree, capture_output=True, text=True, check=False,
    )  # fmt: skip
    if done.returncode != 0 or not list((tree / "archive").glob("_native*.so")):
        raise SystemExit(f"the C extension of {tree} did not build:\n{done.stderr[-2000:]}")


def checkout(rev: str, into: Path, trees: list[Path]) -> Path:
    """The tree of ``rev`` (``WORKTREE``: this checkout) with its extension built
    from its own sources; a worktree made is added to ``trees`` at once."""
    if rev == WORKTREE:
        build(ROOT)
        return ROOT
    subprocess.run(
        ["git", "-C", str(ROOT), "worktree", "add", "--detach", "--quiet", str(into), rev],
        check=True,
    )
    trees.append(into)
    build(into)
    return into


_PROBE = """
import archive.dicom.header as h, archive.native as n
print(h.__file__); print(getattr(n.EXTENSION, "__file__", ""))
"""


def imported_from(code: Path, env: dict[str, str]) -> None:
    """Make sure the node run with ``env`` imports the package of ``code``, and its
    extension (the venv's editable install would supply this checkout's)."""
    probe = [sys.executable, "-c", _PROBE]
    done = subprocess.run(probe, env=env, capture_output=True, text=True, check=True)
    for where in done.stdout.split():
        if not Path(where).is_relative_to(code):
            raise SystemExit(f"PYTHONPATH={code} imports {where}")


class Side(NamedTuple):
    """What one side runs: its checkout, environment and configuration file."""

    code: Path
    env: dict[str, str]
    config: Path | None


class Run(NamedTuple):
    rate: float  # instances per second
    cpu_ms: float  # the node's CPU per instance, all its threads, while the clients ran


def one_run(side: Side, data: DataSet, parts: int, assocs: int, work: Path, label: str) -> Run:
    """One run of the node of ``side``: its rate and CPU per instance."""
    folder = work / label
    folder.mkdir()
    argv = [sys.executable, "-m", "archive.cli", "serve", "--host", qr.HOST,
            "--port", "{port}", "--data", str(folder)]  # fmt: skip
    if side.config is not None:
        argv += ["--config", str(side.config)]
    code, env = side.code, side.env
    sent_parts = data.parts[:parts]
    sent = sum(len(os.listdir(p)) for p in sent_parts)
    # PYTHONSAFEPATH: no current folder in front of PYTHONPATH (ours is the checkout).
    child_env = {**os.environ, **env, "PYTHONPATH": str(code), "PYTHONSAFEPATH": "1"}
    imported_from(code, child_env)
    with running(label, argv, log_dir=work, env=child_env) as child:
        argvs = qr.storescu_argvs(child.port, "ARCHIVE", sent_parts, assocs)
        before = cpu_ns(child.pid)
        started = time.perf_counter()
        quiet = {"stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL}
        clients = [subprocess.Popen(a, env=dict(DCMTK_ENV), **quiet) for a in argvs]
        for client in clients:
            client.wait(600)
        seconds = time.perf_counter() - started
        after = cpu_ns(child.pid)
    cpu = sum(after.values()) - sum(before.get(thread, 0) for thread in after)
    stored = archive_count(folder)
    if stored != sent:
        raise RunFailed(f"{label}: {stored} stored of {sent} (its folder and logs kept in {work})")
    return Run(sent / seconds, cpu / 1e6 / sent)


def environment(pairs: Sequence[str]) -> dict[str, str]:
    out = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep:
            raise SystemExit(f"--env-a/--env-b take NAME=VALUE, not {pair!r}")
        out[name] = value
    return out


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("rev_a")
    parser.add_argument("rev_b", help=f"a revision, or {WORKTREE} for the working tree")
    parser.add_argument("--data", choices=("small", "ct"), default="small")
    parser.add_argument("--assocs", type=int, default=4)
    parser.add_argument("--pairs", type=int, default=10)
    parser.add_argument("--parts", type=int, default=8, help=f"sub-folders sent, of {PARTS}")
    parser.add_argument("--env-a", action="append", default=[], metavar="NAME=VALUE")
    parser.add_argument("--env-b", action="append", default=[], metavar="NAME=VALUE")
    parser.add_argument("--config-a", type=Path, metavar="FILE", help="archive serve --config")
    parser.add_argument("--config-b", type=Path, metavar="FILE", help="archive serve --config")
    args = parser.parse_args(argv)
    if args.pairs < 1 or not 1 <= args.parts <= PARTS or args.assocs < 1:
        parser.error(f"--pairs >= 1, --parts 1 to {PARTS}, --assocs >= 1")
    if shutil.which("storescu") is None:
        raise SystemExit("storescu missing: apt-get install -y dcmtk")
    for config in (args.config_a, args.config_b):
        if config is not None and not config.is_file():
            parser.error(f"no configuration file {config}")
    data = ensure(*((CT, 1000) if args.data == "ct" else (SMALL, 5000)))
    env_a, env_b = environment(args.env_a), environment(args.env_b)
    # SIGTERM (timeout, a CI runner) unwinds like Ctrl-C: the node stopped, the
    # worktrees removed.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    work = work_folder(ROOT / "bench" / ".cache" / "ab-runs")
    trees: list[Path] = []
    runs: dict[str, list[Run]] = {"A": [], "B": []}
    failed = False
    try:
        sides = {
            "A": Side(checkout(args.rev_a, work / "a", trees), env_a, args.config_a),
            "B": Side(checkout(args.rev_b, work / "b", trees), env_b, args.config_b),
        }
        # A first run on a fresh disk state is out of line with the rest: not counted.
        one_run(sides["A"], data, args.parts, args.assocs, work, "warm-up")
        for i in range(args.pairs):
            order = ("A", "B") if i % 2 == 0 else ("B", "A")
            for side in order:
                runs[side].append(one_run(sides[side], data, args.parts, args.assocs, work,
                                          f"{side}{i}"))  # fmt: skip
            a, b = runs["A"][-1], runs["B"][-1]
            print(f"pair {i + 1}: A {a.rate:.0f}/s ({a.cpu_ms:.2f} ms CPU/instance)"
                  f"  B {b.rate:.0f}/s ({b.cpu_ms:.2f})", flush=True)  # fmt: skip
    except RunFailed:
        failed = True
        raise
    finally:
        for tree in trees:
            subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(tree)],
                           check=False)  # fmt: skip
        if not failed:
            shutil.rmtree(work, ignore_errors=True)
    rates = {side: [run.rate for run in done] for side, done in runs.items()}
    cpu = {side: statistics.median(run.cpu_ms for run in done) for side, done in runs.items()}
    ratios = [b / a for a, b in zip(rates["A"], rates["B"], strict=True)]
    clients = min(args.assocs, args.parts)
    print(
        f"{args.data}, {clients} association(s), {args.pairs} pairs:"
        f" A median {statistics.median(rates['A']):.0f}/s ({cpu['A']:.2f} ms CPU/instance),"
        f" B {statistics.median(rates['B']):.0f}/s ({cpu['B']:.2f});"
        f" B/A median {statistics.median(ratios):.3f} [{min(ratios):.3f}-{max(ratios):.3f}]"
    )
    if args.pairs < 6:
        print("few pairs: single runs here spread by a third; take 10 or more")
    return 0


if __name__ == "__main__":
    sys.exit(main())
