"""Two versions of our node, alternating runs: is B faster than A, beyond the noise?

Full runs of ``ingest.py`` on this VM vary by a third from one to the next, so a
change to the ingest path is judged here instead: each of two git revisions is
checked out into a worktree of its own (its C extension built from its own
sources), and our node alone ingests the same sub-folders of a data set with
DCMTK ``storescu`` (as ``ingest.py`` runs it), one run per version in the order
A B, B A, A B, ... on a fresh data folder each time. The result is the median
of the pairs' B/A ratios, with the lowest and highest. Run:

    .venv/bin/python bench/ab.py REV_A REV_B [--data small|ct] [--assocs 4]
        [--pairs 10] [--parts 8] [--env-b ARCHIVE_NATIVE=0]

``REV_B`` may be ``WORKTREE`` for the uncommitted working tree. Every run is
checked: the instances sent must all be stored (files and index rows).
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import qr_servers as qr
from common import DCMTK_ENV, running
from datasets import CT, PARTS, SMALL, DataSet, ensure
from ingest import _archive_count

ROOT = Path(__file__).resolve().parent.parent
WORKTREE = "WORKTREE"


def checkout(rev: str, into: Path) -> Path:
    """The tree of ``rev`` with its extension built in place (the working tree as is)."""
    if rev == WORKTREE:
        return ROOT
    subprocess.run(
        ["git", "-C", str(ROOT), "worktree", "add", "--detach", "--quiet", str(into), rev],
        check=True,
    )
    subprocess.run(
        [sys.executable, "setup.py", "--quiet", "build_ext", "--inplace"],
        cwd=into, check=True, capture_output=True,
    )  # fmt: skip
    return into


def imported_from(code: Path, env: dict[str, str]) -> None:
    """Make sure the node run with ``env`` imports the package of ``code``."""
    probe = [sys.executable, "-c", "import archive.dicom.header as h; print(h.__file__)"]
    where = subprocess.run(probe, env=env, capture_output=True, text=True, check=True).stdout
    if not Path(where.strip()).is_relative_to(code):
        raise SystemExit(f"PYTHONPATH={code} imports {where.strip()}: is the package installed?")


def one_run(code: Path, env: dict[str, str], data: DataSet, parts: int, assocs: int,
            work: Path, label: str) -> float:  # fmt: skip
    """Instances per second of one run of the node in ``code``."""
    folder = work / label
    folder.mkdir()
    argv = [sys.executable, "-m", "archive.cli", "serve", "--host", qr.HOST,
            "--port", "{port}", "--data", str(folder)]  # fmt: skip
    sent_parts = data.parts[:parts]
    sent = sum(len(os.listdir(p)) for p in sent_parts)
    # PYTHONSAFEPATH: no current folder in front of PYTHONPATH (ours is the checkout).
    child_env = {**os.environ, **env, "PYTHONPATH": str(code), "PYTHONSAFEPATH": "1"}
    imported_from(code, child_env)
    with running(label, argv, log_dir=work, env=child_env) as child:
        argvs = qr.storescu_argvs(child.port, "ARCHIVE", sent_parts, assocs)
        started = time.perf_counter()
        quiet = {"stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL}
        clients = [subprocess.Popen(a, env=dict(DCMTK_ENV), **quiet) for a in argvs]
        for client in clients:
            client.wait(600)
        seconds = time.perf_counter() - started
    stored = _archive_count(folder)
    shutil.rmtree(folder, ignore_errors=True)
    if stored != sent:
        raise SystemExit(f"{label}: {stored} stored of {sent} (see {work})")
    return sent / seconds


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
    args = parser.parse_args(argv)
    if shutil.which("storescu") is None:
        raise SystemExit("storescu missing: apt-get install -y dcmtk")
    data = ensure(*((CT, 1000) if args.data == "ct" else (SMALL, 5000)))
    env_a, env_b = environment(args.env_a), environment(args.env_b)
    with tempfile.TemporaryDirectory(prefix="ab-", dir=ROOT / "bench" / ".cache") as tmp:
        work = Path(tmp)
        trees: list[Path] = []
        try:
            code_a = checkout(args.rev_a, work / "a")
            code_b = checkout(args.rev_b, work / "b")
            trees = [t for t in (code_a, code_b) if t != ROOT]
            rates: dict[str, list[float]] = {"A": [], "B": []}
            for i in range(args.pairs):
                order = ("A", "B") if i % 2 == 0 else ("B", "A")
                for side in order:
                    code, env = (code_a, env_a) if side == "A" else (code_b, env_b)
                    rate = one_run(code, env, data, args.parts, args.assocs, work, f"{side}{i}")
                    rates[side].append(rate)
                print(f"pair {i + 1}: A {rates['A'][-1]:.0f}/s  B {rates['B'][-1]:.0f}/s",
                      flush=True)  # fmt: skip
        finally:
            for tree in trees:
                subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force",
                                str(tree)], check=False)  # fmt: skip
    ratios = [b / a for a, b in zip(rates["A"], rates["B"], strict=True)]
    print(
        f"{args.data}, {args.assocs} association(s), {args.pairs} pairs:"
        f" A median {statistics.median(rates['A']):.0f}/s, B {statistics.median(rates['B']):.0f}/s;"
        f" B/A median {statistics.median(ratios):.3f} [{min(ratios):.3f}-{max(ratios):.3f}]"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
