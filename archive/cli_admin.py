"""The data folder's maintenance commands: ``archive stats``, ``check`` and ``reindex``.

Entry points only, like ``cli.py``: they open the data folder (``check`` and
``reindex`` take its lock, so they run while no server uses it; ``stats`` reads
the index without writing, beside a running node too), run the layer below and
turn its report into lines and an exit status.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

import msgspec

from archive.cli import EXIT_ABORTED, EXIT_FAILED_STATUS, EXIT_OK, EXIT_USAGE, Parser
from archive.config import Config, load_config, with_overrides
from archive.index import Index, IndexReadError, SchemaOutdatedError, Stats, peek_stats
from archive.net import run
from archive.node import INDEX_FILE, Storage
from archive.progress import human_bytes
from archive.reconcile import CheckReport, check
from archive.reindex import DEFAULT_JOBS, ReindexReport, reindex
from archive.store import (
    INSTANCES,
    LOCK_FILE,
    QUARANTINE,
    DataFolderInUse,
    lock_data_folder,
    unlock_data_folder,
)

__all__ = ["add_admin_parsers", "run_admin"]

#: Paths listed per kind of problem; the rest is counted.
_LISTED = 20


class StatsReport(Stats, frozen=True, kw_only=True):
    """``archive stats --json``: the counts, and rows an older version indexed."""

    outdated: int = 0


def add_admin_parsers(commands: argparse._SubParsersAction[Parser]) -> None:
    """Add ``stats``, ``check`` and ``reindex`` to the ``archive`` command."""
    stats = commands.add_parser("stats", help="counts of what the archive holds")
    stats.add_argument("--config", type=Path, help="TOML configuration file")
    stats.add_argument("--data", help="data folder (overrides node.data_dir)")
    stats.add_argument("--json", action="store_true", help="print one JSON object")

    chk = commands.add_parser(
        "check", help="compare the instance files with the index (and repair with --repair)"
    )
    chk.add_argument("--config", type=Path, help="TOML configuration file")
    chk.add_argument("--data", help="data folder (overrides node.data_dir)")
    chk.add_argument(
        "--repair",
        action="store_true",
        help="index unindexed files, drop rows without a file, remove non-DICOM files",
    )
    chk.add_argument(
        "--verify",
        action="store_true",
        help="also read every indexed file whole and compare its size and SHA-256 with the index",
    )
    chk.add_argument(
        "-j",
        "--jobs",
        type=int,
        default=DEFAULT_JOBS,
        help="files read at once with --verify (the store reads 16 at most)",
    )

    rei = commands.add_parser(
        "reindex",
        help="read indexed files' headers again, to fill values an older version did not index",
    )
    rei.add_argument("--config", type=Path, help="TOML configuration file")
    rei.add_argument("--data", help="data folder (overrides node.data_dir)")
    rei.add_argument(
        "--all",
        action="store_true",
        dest="everything",
        help="every instance, not only those an older version indexed",
    )
    rei.add_argument("-j", "--jobs", type=int, default=DEFAULT_JOBS, help="files read at once")


def run_admin(args: argparse.Namespace) -> int:
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.WARNING)
    config = load_config(args.config) if args.config else Config()
    config = with_overrides(config, data_dir=args.data)
    if args.command == "stats":
        return _stats(config, args.json)
    if args.jobs < 1:
        print(f"archive {args.command}: -j must be at least 1", file=sys.stderr)
        return EXIT_USAGE
    if args.command == "check":
        return _check(config, args.repair, args.verify, args.jobs)
    return _reindex(config, args.everything, args.jobs)


def _stats(config: Config, as_json: bool) -> int:
    root = Path(config.node.data_dir)
    path = root / INDEX_FILE
    if not path.is_file():
        print(f"archive stats: no index at {path}", file=sys.stderr)
        return EXIT_USAGE
    try:
        counts, outdated = _peek(root, path, config)
    except DataFolderInUse as exc:
        print(f"archive stats: {exc.__cause__}, and {exc}", file=sys.stderr)
        return EXIT_ABORTED
    except IndexReadError as exc:
        print(f"archive stats: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except OSError as exc:
        print(f"archive stats: cannot read {path}: {exc}", file=sys.stderr)
        return EXIT_USAGE
    stats = StatsReport(**msgspec.structs.asdict(counts), outdated=outdated)
    if as_json:
        print(msgspec.json.encode(stats).decode())
        return EXIT_OK
    for name in ("patients", "studies", "series", "instances"):
        print(f"{name:<10} {getattr(stats, name)}")
    print(f"{'bytes':<10} {human_bytes(stats.bytes)} ({stats.bytes})")
    if stats.outdated:
        print(f"{stats.outdated} instance(s) indexed by an older version: run archive reindex")
    return EXIT_OK


def _peek(root: Path, path: Path, config: Config) -> tuple[Stats, int]:
    """The index's counts, read only (a node may be serving the folder). An index
    older than this code is migrated first, as by any opener, but only while no
    other process (an older node) holds the folder: else DataFolderInUse, caused
    by the SchemaOutdatedError."""
    try:
        return peek_stats(path)
    except SchemaOutdatedError as outdated:
        try:
            lock = lock_data_folder(root)
        except DataFolderInUse as exc:
            raise exc from outdated
    try:
        run(_migrate(path), config.node.loop)
        return peek_stats(path)
    finally:
        unlock_data_folder(lock)


async def _migrate(path: Path) -> None:
    index = await Index.open(path, readers=1)  # the writer migrates it
    await index.close()


def _check(config: Config, repair: bool, verify: bool, jobs: int) -> int:
    """``archive check``: exit 0 when files and index agree (or were repaired), else 5.

    A file that cannot be read at all, or whose content is not what was stored
    (``--verify``), cannot be repaired: it keeps the exit status at 5 whatever
    ``--repair`` did. A folder with no index is no archive (a mistyped
    ``--data``): refused, unless a repair is to index the ``instances/`` there.
    """
    root = Path(config.node.data_dir)
    if _not_an_archive(root) and not (repair and (root / INSTANCES).is_dir()):
        print(f"archive check: no archive at {root} (no {INDEX_FILE})", file=sys.stderr)
        return EXIT_USAGE
    report = run(_run_check(config, repair, verify, jobs), config.node.loop)
    print(f"{report.files} instance file(s), {report.rows} index row(s)")
    if verify:
        print(f"{report.verified} file(s) read whole and compared with the index")
    for label, paths in (
        ("files without an index row", report.unindexed_files),
        ("superseded versions", report.superseded_files),
        ("rows whose file is missing", report.missing_files),
    ):
        _list(f"{label}{' (repaired)' if report.repaired else ''}", paths)
    moved = f" (moved to {QUARANTINE}/)" if report.repaired else ""
    _list(f"unreadable files{moved}", report.unreadable_files)
    _list(
        "other versions kept (the version indexed is missing or not as stored)",
        report.kept_versions,
    )
    _list("files that cannot be read (left in place)", report.inaccessible_files)
    _list("files whose content differs from the index (left as they are)", report.altered_files)
    if report.clean:
        print("files and index agree")
        return EXIT_OK
    return EXIT_OK if report.repaired and not report.beyond_repair else EXIT_FAILED_STATUS


async def _run_check(config: Config, repair: bool, verify: bool, jobs: int) -> CheckReport:
    storage = await Storage(config).open()
    try:
        return await check(storage, repair=repair, verify=verify, jobs=jobs)
    finally:
        await storage.close()


def _reindex(config: Config, everything: bool, jobs: int) -> int:
    """``archive reindex``: exit 0 when every row read was refreshed, else 5."""
    root = Path(config.node.data_dir)
    if _not_an_archive(root):
        print(f"archive reindex: no archive at {root} (no {INDEX_FILE})", file=sys.stderr)
        return EXIT_USAGE
    report = run(_run_reindex(config, everything, jobs), config.node.loop)
    print(f"{report.refreshed} of {report.rows} instance(s) refreshed in {report.seconds:.1f} s")
    for label, paths in (
        ("rows whose file is missing", report.missing_files),
        ("unreadable files", report.unreadable_files),
        ("files that are not the one indexed", report.changed_files),
    ):
        _list(label, paths)
    if report.outdated:
        print(f"{report.outdated} instance(s) still indexed by an older version")
    if not report.clean:
        print("rows left as they were: see archive check")
        return EXIT_FAILED_STATUS
    return EXIT_OK


async def _run_reindex(config: Config, everything: bool, jobs: int) -> ReindexReport:
    storage = await Storage(config).open()
    try:
        return await reindex(storage, everything=everything, jobs=jobs)
    finally:
        await storage.close()


def _not_an_archive(root: Path) -> bool:
    """Whether ``root`` is plainly no data folder (a mistyped ``--data``): missing
    where its parent is a folder, or a folder holding nothing an archive makes.
    Anything else (a file, a folder another process holds) is for the opening of
    the data folder to name."""
    if root.is_dir():
        return not any((root / name).exists() for name in (INDEX_FILE, LOCK_FILE, INSTANCES))
    return not root.exists() and root.parent.is_dir()


def _list(label: str, paths: list[str]) -> None:
    if paths:
        print(f"{label}: {len(paths)}")
        for path in paths[:_LISTED]:
            print(f"  {path}")
