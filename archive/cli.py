"""The ``archive`` command: serve, echo, config check.

Entry points only: build the objects of the layers below from the config and
flags, run them, and turn outcomes into exit statuses and one-line messages.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
import sys
from collections.abc import Sequence
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import NoReturn

from archive.config import Config, load_config, with_overrides
from archive.dicom.dimse import Status
from archive.errors import ArchiveError, ConfigError
from archive.importer import import_files
from archive.index import Index, Stats
from archive.net import (
    ECHO_CONTEXTS,
    AssociationAborted,
    AssociationRejected,
    AssociationTimeout,
    Timeouts,
    associate,
    run,
)
from archive.node import Node, Storage
from archive.progress import human_bytes
from archive.reconcile import CheckReport, check
from archive.scu import Cause, Report, StoreOptions, send_files

log = logging.getLogger("archive")

#: Exit statuses of ``archive echo`` (and later SCU commands).
EXIT_OK = 0
EXIT_USAGE = 1
EXIT_REJECTED = 2
EXIT_ABORTED = 3
EXIT_TIMEOUT = 4
EXIT_FAILED_STATUS = 5


def _version() -> str:
    try:
        return version("archive-node")
    except PackageNotFoundError:  # pragma: no cover - running from a bare tree
        return "0+unknown"


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error exits 1 (EXIT_USAGE): 2 means "rejected" here."""

    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="archive", description="archive-node DICOM archive")
    parser.add_argument("--version", action="version", version=f"archive-node {_version()}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log at DEBUG level")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    serve = commands.add_parser("serve", help="run the node (SCP) until SIGTERM or SIGINT")
    serve.add_argument("--config", type=Path, help="TOML configuration file")
    serve.add_argument("--port", type=int, help="listen port (overrides node.port)")
    serve.add_argument("--host", help="listen address (overrides node.host)")
    serve.add_argument("--aet", help="our AE title (overrides node.ae_title)")
    serve.add_argument("--data", help="data folder (overrides node.data_dir)")

    echo = commands.add_parser("echo", help="C-ECHO a remote AE (Verification SCU)")
    echo.add_argument("host")
    echo.add_argument("port", type=int)
    echo.add_argument("--aet", default="ARCHIVE", help="our (calling) AE title")
    echo.add_argument("--aec", default="ANY-SCP", help="the called AE title")
    echo.add_argument("--timeout", type=float, default=30.0, help="seconds for each step")
    echo.add_argument("-n", "--repeat", type=int, default=1, help="C-ECHOs on the association")

    config = commands.add_parser("config", help="configuration tools")
    config_commands = config.add_subparsers(dest="config_command", required=True)
    check = config_commands.add_parser("check", help="validate a configuration file")
    check.add_argument("file", type=Path)
    _add_ingest_parsers(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.command == "serve":
            return _serve(args)
        if args.command == "echo":
            return _echo(args)
        if args.command == "store":
            return _store(args)
        if args.command == "import":
            return _import(args)
        if args.command == "stats":
            return _stats(args)
        if args.command == "check":
            return _check(args)
        if args.command == "config":
            load_config(args.file)
            print(f"{args.file}: OK")
            return EXIT_OK
    except ConfigError as exc:
        print(f"archive: configuration error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    raise AssertionError(args.command)  # pragma: no cover - argparse requires a command


# ---- serve ------------------------------------------------------------------------------


def _serve(args: argparse.Namespace) -> int:
    config = load_config(args.config) if args.config else Config()
    config = with_overrides(
        config, port=args.port, ae_title=args.aet, data_dir=args.data, host=args.host
    )
    level = logging.DEBUG if args.verbose else getattr(logging, config.node.log_level)
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    Path(config.node.data_dir).mkdir(parents=True, exist_ok=True)
    run(serve(config), config.node.loop)
    return EXIT_OK


async def serve(config: Config) -> None:
    """Serve until SIGTERM or SIGINT, then shut down within the grace period."""
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    # Handlers first: whoever reads the "listening" line may signal at once.
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        running = await Node(config).start()
        server = running.server
        assert server is not None
        node = config.node
        loop_name = type(loop).__module__.split(".")[0]
        print(
            f"archive-node {_version()} listening on {node.host}:{server.port}"
            f" as {node.ae_title} (data in {node.data_dir}, {loop_name} loop)",
            flush=True,
        )
        await stop.wait()
        log.info(
            "shutting down: %d open association(s), grace %gs",
            server.active,
            node.shutdown_grace,
        )
        await running.stop()
        log.info("stopped")
    finally:
        for sig in (signal.SIGTERM, signal.SIGINT):
            with contextlib.suppress(Exception):
                loop.remove_signal_handler(sig)


# ---- echo -------------------------------------------------------------------------------


def _echo(args: argparse.Namespace) -> int:
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.WARNING)
    t = args.timeout
    timeouts = Timeouts(artim=t, network=t, dimse=t, connect=t)
    try:
        status = run(_echo_once(args, timeouts))
    except AssociationRejected as exc:
        print(f"archive echo: association rejected: {exc}", file=sys.stderr)
        return EXIT_REJECTED
    except AssociationTimeout as exc:
        print(f"archive echo: timed out: {exc}", file=sys.stderr)
        return EXIT_TIMEOUT
    except AssociationAborted as exc:
        print(f"archive echo: {exc}", file=sys.stderr)
        return EXIT_ABORTED
    except ArchiveError as exc:
        print(f"archive echo: {exc}", file=sys.stderr)
        return EXIT_ABORTED
    if status != Status.SUCCESS:
        print(f"archive echo: C-ECHO status 0x{status:04X}", file=sys.stderr)
        return EXIT_FAILED_STATUS
    print(f"C-ECHO to {args.aec}@{args.host}:{args.port}: Success")
    return EXIT_OK


async def _echo_once(args: argparse.Namespace, timeouts: Timeouts) -> int:
    async with await associate(
        args.host,
        args.port,
        calling_ae=args.aet,
        called_ae=args.aec,
        contexts=ECHO_CONTEXTS,
        timeouts=timeouts,
    ) as assoc:
        status: int = Status.SUCCESS
        for _ in range(max(1, args.repeat)):
            status = await assoc.echo()
            if status != Status.SUCCESS:
                break
        return int(status)


# ---- store, import, stats ---------------------------------------------------------------


def _add_ingest_parsers(commands: argparse._SubParsersAction[_Parser]) -> None:
    store = commands.add_parser(
        "store", help="send DICOM files and folders to a remote AE (Storage SCU)"
    )
    store.add_argument("host")
    store.add_argument("port", type=int)
    store.add_argument("paths", nargs="+", metavar="PATH", help="files or folders (recursive)")
    store.add_argument("--aet", default="ARCHIVE", help="our (calling) AE title")
    store.add_argument("--aec", default="ANY-SCP", help="the called AE title")
    store.add_argument("-j", "--jobs", type=int, default=1, help="concurrent associations")
    store.add_argument("--timeout", type=float, default=30.0, help="seconds for each step")
    store.add_argument(
        "--max-pdu", type=int, default=65536, help="Maximum Length we receive (PS3.8 D.1)"
    )

    imp = commands.add_parser(
        "import", help="import DICOM files and folders into the data folder (offline)"
    )
    imp.add_argument("paths", nargs="+", metavar="PATH", help="files or folders (recursive)")
    imp.add_argument("--config", type=Path, help="TOML configuration file")
    imp.add_argument("--data", help="data folder (overrides node.data_dir)")
    imp.add_argument("-j", "--jobs", type=int, default=4, help="concurrent ingests")

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
        help="index unindexed files, drop rows without a file, remove unreadable files",
    )


def _store(args: argparse.Namespace) -> int:
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.WARNING)
    for flag, title in (("--aet", args.aet), ("--aec", args.aec)):
        if not 1 <= len(title.strip(" ")) <= 16 or len(title) > 16:
            print(f"archive store: {flag} {title!r} is not 1 to 16 characters", file=sys.stderr)
            return EXIT_USAGE
    if args.jobs < 1 or args.timeout <= 0 or not 0 <= args.max_pdu <= 0xFFFFFFFF:
        print("archive store: -j, --timeout and --max-pdu must be positive", file=sys.stderr)
        return EXIT_USAGE
    t = args.timeout
    options = StoreOptions(
        host=args.host,
        port=args.port,
        calling_ae=args.aet,
        called_ae=args.aec,
        jobs=args.jobs,
        timeouts=Timeouts(artim=t, network=t, dimse=t, connect=t),
        max_pdu_length=args.max_pdu,
    )
    report = run(send_files(args.paths, options))
    print(report.summary("sent"))
    return _ingest_exit(report, "store")


def _import(args: argparse.Namespace) -> int:
    config = load_config(args.config) if args.config else Config()
    config = with_overrides(config, data_dir=args.data)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.WARNING)
    if args.jobs < 1:
        print("archive import: -j must be at least 1", file=sys.stderr)
        return EXIT_USAGE
    report = run(import_files(args.paths, config, jobs=args.jobs), config.node.loop)
    print(report.summary("imported"))
    return _ingest_exit(report, "import")


def _ingest_exit(report: Report, command: str) -> int:
    """Exit status of a store/import run: the worst thing that happened to a file."""
    if not any(r.sop_instance_uid for r in report.results):
        print(f"archive {command}: no DICOM instances found", file=sys.stderr)
        return EXIT_USAGE
    worst = report.worst()
    if worst is None:
        return EXIT_OK
    return {
        Cause.REJECTED: EXIT_REJECTED,
        Cause.NETWORK: EXIT_ABORTED,
        Cause.TIMEOUT: EXIT_TIMEOUT,
    }.get(worst, EXIT_FAILED_STATUS)


def _stats(args: argparse.Namespace) -> int:
    import msgspec

    from archive.node import INDEX_FILE

    config = load_config(args.config) if args.config else Config()
    config = with_overrides(config, data_dir=args.data)
    path = Path(config.node.data_dir) / INDEX_FILE
    if not path.is_file():
        print(f"archive stats: no index at {path}", file=sys.stderr)
        return EXIT_USAGE
    stats = run(_read_stats(path), config.node.loop)
    if args.json:
        print(msgspec.json.encode(stats).decode())
        return EXIT_OK
    for name in ("patients", "studies", "series", "instances"):
        print(f"{name:<10} {getattr(stats, name)}")
    print(f"{'bytes':<10} {human_bytes(stats.bytes)} ({stats.bytes})")
    return EXIT_OK


async def _read_stats(path: Path) -> Stats:
    index = await Index.open(path, readers=1)
    try:
        return await index.stats()
    finally:
        await index.close()


def _check(args: argparse.Namespace) -> int:
    """``archive check``: exit 0 when files and index agree (or were repaired), else 5."""
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.WARNING)
    config = load_config(args.config) if args.config else Config()
    config = with_overrides(config, data_dir=args.data)
    report = run(_run_check(config, args.repair), config.node.loop)
    print(f"{report.files} instance file(s), {report.rows} index row(s)")
    for label, paths in (
        ("files without an index row", report.unindexed_files),
        ("unreadable files", report.unreadable_files),
        ("superseded versions", report.superseded_files),
        ("rows whose file is missing", report.missing_files),
    ):
        if paths:
            done = " (repaired)" if report.repaired else ""
            print(f"{label}{done}: {len(paths)}")
            for path in paths[:20]:
                print(f"  {path}")
    if report.clean:
        print("files and index agree")
        return EXIT_OK
    return EXIT_OK if report.repaired else EXIT_FAILED_STATUS


async def _run_check(config: Config, repair: bool) -> CheckReport:
    storage = await Storage(config).open()
    try:
        return await check(storage, repair=repair)
    finally:
        await storage.close()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
