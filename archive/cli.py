"""The ``archive`` command: serve, echo, peers, store, import, config check; find,
move, get and pull are in ``cli_qr.py``, stats, check and reindex in ``cli_admin.py``.

Entry points only: build the objects of the layers below from the config and
flags, run them, and turn outcomes into exit statuses and one-line messages.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import signal
import sys
from collections.abc import Sequence
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import NoReturn

from archive.config import (
    MAX_PDU_LENGTH_RANGE,
    Config,
    Peer,
    check_ae_title,
    load_config,
    with_overrides,
)
from archive.dicom.dimse import Status
from archive.errors import ArchiveError, ConfigError
from archive.importer import DEFAULT_JOBS, import_files
from archive.net import (
    ECHO_CONTEXTS,
    AssociationRejected,
    AssociationTimeout,
    Timeouts,
    associate,
    run,
)
from archive.node import Node
from archive.peers import merge_peers, parse_peer, resolve_peer
from archive.scu import (
    Cause,
    Interrupted,
    Kind,
    NotSupported,
    QueryKeyError,
    Report,
    StoreOptions,
    interruptible,
    send_files,
    text_table,
)

log = logging.getLogger("archive")

#: Exit statuses of every command. 3 also covers a data folder another archive
#: process holds (import, check, serve beside a running node).
EXIT_OK = 0
EXIT_USAGE = 1
EXIT_REJECTED = 2
EXIT_ABORTED = 3
EXIT_TIMEOUT = 4
EXIT_FAILED_STATUS = 5
#: After Ctrl-C (128 + SIGINT, as shells report it).
EXIT_INTERRUPTED = 130
#: The reader of our output went away (``| head``): 128 + SIGPIPE, as a tool
#: that the signal ended reports it.
EXIT_BROKEN_PIPE = 141


def _version() -> str:
    try:
        return version("archive-node")
    except PackageNotFoundError:  # pragma: no cover - running from a bare tree
        return "0+unknown"


class Parser(argparse.ArgumentParser):
    """argparse, but a usage error exits 1 (EXIT_USAGE): 2 means "rejected" here."""

    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message}\n")


def port_number(text: str) -> int:
    """A peer's TCP port, 1 to 65535 (an argparse type). Out of range it is a usage
    error: the socket layer may take it modulo 65536 and call another service."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid port {text!r}") from None
    if not 1 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"port {value} is not between 1 and 65535")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="archive", description="archive-node DICOM archive")
    parser.add_argument("--version", action="version", version=f"archive-node {_version()}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log at DEBUG level")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    serve = commands.add_parser("serve", help="run the node (SCP) until SIGTERM or SIGINT")
    serve.add_argument("--config", type=Path, help="TOML configuration file")
    serve.add_argument("--port", type=int, help="listen port (overrides node.port)")
    serve.add_argument("--host", help="listen address (overrides node.host)")
    serve.add_argument("--aet", help="our AE title (overrides node.ae_title)")
    serve.add_argument("--data", help="data folder (overrides node.data_dir)")
    serve.add_argument(
        "--peer",
        action="append",
        default=[],
        metavar="AET@HOST:PORT",
        help="add a peer (repeatable; replaces a configured peer of the same AE title)",
    )

    echo = commands.add_parser(
        "echo",
        help="C-ECHO a remote AE (Verification SCU)",
        description="PEER is a configured peer's AE title or AET@HOST:PORT; "
        "or give HOST PORT (called AE title ANY-SCP unless --aec).",
    )
    echo.add_argument("target", metavar="PEER|HOST")
    echo.add_argument("port", type=port_number, nargs="?", metavar="PORT")
    echo.add_argument("--config", type=Path, help="TOML configuration file (its [[peers]])")
    echo.add_argument("--aet", help="our (calling) AE title (default: node.ae_title)")
    echo.add_argument("--aec", help="the called AE title (default: the peer's, or ANY-SCP)")
    echo.add_argument("--timeout", type=float, default=30.0, help="seconds for each step")
    echo.add_argument("-n", "--repeat", type=int, default=1, help="C-ECHOs on the association")

    peers = commands.add_parser("peers", help="list the configured peers (and C-ECHO them)")
    peers.add_argument("--config", type=Path, help="TOML configuration file")
    peers.add_argument("--echo", action="store_true", help="C-ECHO every peer, in parallel")
    peers.add_argument("--aet", help="our (calling) AE title (default: node.ae_title)")
    peers.add_argument(
        "--timeout", type=float, default=10.0, help="seconds for each step of each C-ECHO"
    )

    config = commands.add_parser("config", help="configuration tools")
    config_commands = config.add_subparsers(dest="config_command", required=True)
    check = config_commands.add_parser("check", help="validate a configuration file")
    check.add_argument("file", type=Path)
    _add_ingest_parsers(commands)
    # Imported here: archive.cli_qr and cli_admin build on this module's exit statuses.
    from archive.cli_admin import add_admin_parsers
    from archive.cli_qr import add_qr_parsers

    add_qr_parsers(commands)
    add_admin_parsers(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.command == "serve":
            return _serve(args)
        if args.command == "echo":
            return _echo(args)
        if args.command == "peers":
            return _peers(args)
        if args.command == "store":
            return _store(args)
        if args.command == "import":
            return _import(args)
        if args.command in ("stats", "check", "reindex"):
            from archive.cli_admin import run_admin

            return run_admin(args)
        if args.command in ("find", "move", "get", "pull"):
            from archive.cli_qr import run_qr

            return run_qr(args)
        if args.command == "config":
            load_config(args.file)
            print(f"{args.file}: OK")
            return EXIT_OK
    except ConfigError as exc:
        print(f"archive: configuration error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except ArchiveError as exc:  # e.g. DataFolderInUse: a one-line reason, no traceback
        return report_failure(f"archive {args.command}", exc)
    except BrokenPipeError:
        # Nobody reads what follows: no traceback, and nothing more for the
        # interpreter's last flush to fail on.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_BROKEN_PIPE
    raise AssertionError(args.command)  # pragma: no cover - argparse requires a command


# ---- serve ------------------------------------------------------------------------------


def _serve(args: argparse.Namespace) -> int:
    config = load_config(args.config, peers_to_come=bool(args.peer)) if args.config else Config()
    config, replaced = merge_peers(config, [parse_peer(text, "--peer") for text in args.peer])
    config = with_overrides(
        config, port=args.port, ae_title=args.aet, data_dir=args.data, host=args.host
    )
    level = logging.DEBUG if args.verbose else getattr(logging, config.node.log_level)
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for old, new in replaced:
        log.warning(
            "--peer %s@%s replaces the configured peer %s@%s",
            new.ae_title,
            address(new),
            old.ae_title,
            address(old),
        )
    try:
        run(serve(config), config.node.loop)
    except OSError as exc:  # e.g. the port is taken: a one-line reason, no traceback
        host, port = config.node.host, config.node.port
        print(f"archive serve: cannot listen on {host}:{port}: {exc.strerror or exc}",
              file=sys.stderr)  # fmt: skip
        return EXIT_ABORTED
    return EXIT_OK


async def serve(config: Config) -> None:
    """Serve until SIGTERM or SIGINT, then shut down within the grace period."""
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    # Handlers first: whoever reads the "listening" line may signal at once.
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        running = await _start_unless_stopped(Node(config), stop)
        if running is None:
            log.info("stopped during start-up")
            return
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


async def _start_unless_stopped(node: Node, stop: asyncio.Event) -> Node | None:
    """Start ``node``; None if ``stop`` is set first (SIGINT or SIGTERM while the
    start-up recovery reads back what was in flight: it may read large files).
    Recovery may be cut short anywhere: each step is crash-safe (``Storage.recover``),
    and a cancelled start closes what it opened."""
    starting = asyncio.ensure_future(node.start())
    stopping = asyncio.ensure_future(stop.wait())
    try:
        await asyncio.wait({starting, stopping}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        stopping.cancel()
    if starting.done():
        return starting.result()
    starting.cancel()
    try:
        return await starting  # it finished after all: the caller stops it at once
    except asyncio.CancelledError:
        return None


# ---- echo, peers ------------------------------------------------------------------------


def target(args: argparse.Namespace, config: Config) -> tuple[Peer, str, str, Timeouts]:
    """The peer of ``echo``, ``find``, ``move``, ``get`` or ``pull``, from its flags.

    ``PEER`` (``args.target`` without ``args.port``: a configured AE title or
    AET@HOST:PORT) or ``HOST PORT``; our (calling) and the called AE title, both
    checked like the config file's; and ``--timeout`` for every step. Returns
    (peer, calling, called, timeouts); raises ConfigError.
    """
    port: int | None = getattr(args, "port", None)
    if port is None:
        peer = resolve_peer(config, args.target, "PEER")
    else:
        peer = Peer(ae_title=args.aec or "ANY-SCP", host=args.target, port=port)
    calling = args.aet or config.node.ae_title
    called = args.aec or peer.ae_title
    for flag, title in (("--aet", calling), ("--aec", called)):
        check_ae_title(flag, title)
    if args.timeout <= 0:
        raise ConfigError("--timeout", "must be positive")
    t = args.timeout
    return peer, calling, called, Timeouts(artim=t, network=t, dimse=t, connect=t)


def _echo(args: argparse.Namespace) -> int:
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.WARNING)
    config = load_config(args.config) if args.config else Config()
    try:
        peer, calling, called, timeouts = target(args, config)
    except ConfigError as exc:
        hint = "; or give HOST PORT" if exc.key == "PEER" else ""
        print(f"archive echo: {exc}{hint}", file=sys.stderr)
        return EXIT_USAGE
    try:
        status = run(
            echo_peer(
                peer, calling_ae=calling, called_ae=called, timeouts=timeouts, repeat=args.repeat
            ),
            config.node.loop,
        )
    except ArchiveError as exc:
        return report_failure("archive echo", exc)
    except KeyboardInterrupt:  # asyncio.run cancelled the echo: the association is closed
        print("archive echo: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    if status != Status.SUCCESS:
        print(f"archive echo: C-ECHO status 0x{status:04X}", file=sys.stderr)
        return EXIT_FAILED_STATUS
    print(f"C-ECHO to {called}@{address(peer)}: Success")
    return EXIT_OK


async def echo_peer(
    peer: Peer,
    *,
    calling_ae: str,
    timeouts: Timeouts,
    called_ae: str | None = None,
    repeat: int = 1,
) -> int:
    """C-ECHO ``peer`` ``repeat`` times on one association (PS3.7 9.1.5).

    Returns the last status (the first non-success one ends the loop); raises
    the :class:`AssociationError` of a rejected, aborted or timed-out association.
    ``called_ae`` defaults to the peer's AE title.
    """
    async with await associate(
        peer.host,
        peer.port,
        calling_ae=calling_ae,
        called_ae=called_ae or peer.ae_title,
        contexts=ECHO_CONTEXTS,
        timeouts=timeouts,
    ) as assoc:
        status: int = Status.SUCCESS
        for _ in range(max(1, repeat)):
            status = await assoc.echo()
            if status != Status.SUCCESS:
                break
        return int(status)


def failure(exc: ArchiveError) -> tuple[int, str]:
    """Exit status and one-line reason of a command that ``exc`` ended."""
    if isinstance(exc, AssociationRejected):
        return EXIT_REJECTED, f"association rejected: {exc}"
    if isinstance(exc, AssociationTimeout):
        return EXIT_TIMEOUT, f"timed out: {exc}"
    if isinstance(exc, Interrupted):  # Ctrl-C before the association was accepted
        return EXIT_INTERRUPTED, str(exc)
    if isinstance(exc, NotSupported):  # the Q/R SOP class rejected
        return EXIT_REJECTED, str(exc)
    if isinstance(exc, (ConfigError, QueryKeyError)):
        return EXIT_USAGE, str(exc)
    # An aborted or refused association, a data folder in use, ...
    return EXIT_ABORTED, str(exc)


def report_failure(command: str, exc: ArchiveError) -> int:
    """Print ``<command>: <reason>`` on stderr; the exit status for ``exc``."""
    code, message = failure(exc)
    print(f"{command}: {message}", file=sys.stderr)
    return code


def address(peer: Peer) -> str:
    """``host:port``, an IPv6 host in brackets."""
    host = f"[{peer.host}]" if ":" in peer.host else peer.host
    return f"{host}:{peer.port}"


def _peers(args: argparse.Namespace) -> int:
    """``archive peers``: the peer table; with --echo, exit 5 if any C-ECHO failed."""
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.WARNING)
    config = load_config(args.config) if args.config else Config()
    if args.timeout <= 0:
        print("archive peers: --timeout must be positive", file=sys.stderr)
        return EXIT_USAGE
    if not config.peers:
        print("no peers configured")
        return EXIT_OK
    rows = [[p.ae_title, p.host, str(p.port)] for p in config.peers]
    header = ["AE TITLE", "HOST", "PORT"]
    worst = EXIT_OK
    if args.echo:
        calling = args.aet or config.node.ae_title
        outcomes = run(_echo_all(config.peers, calling, args.timeout), config.node.loop)
        for row, (code, message) in zip(rows, outcomes, strict=True):
            row.append(message)
            worst = worst or code
        header.append("C-ECHO")
    for line in text_table(header, rows, right={2}):
        print(line)
    return EXIT_FAILED_STATUS if worst else EXIT_OK


async def _echo_all(peers: Sequence[Peer], calling_ae: str, step: float) -> list[tuple[int, str]]:
    """C-ECHO every peer at once; each step (connect, associate, C-ECHO) gets ``step`` s."""
    # The steps' own timeouts bound each peer; no outer cancel scope, because a
    # cancelled associate() would leave its half-open transport to the GC.
    timeouts = Timeouts(artim=step, network=step, dimse=step, connect=step)

    async def one(peer: Peer) -> tuple[int, str]:
        try:
            status = await echo_peer(peer, calling_ae=calling_ae, timeouts=timeouts)
        except ArchiveError as exc:
            return failure(exc)
        if status != Status.SUCCESS:
            return EXIT_FAILED_STATUS, f"C-ECHO status 0x{status:04X}"
        return EXIT_OK, "OK"

    async with asyncio.TaskGroup() as group:
        tasks = [group.create_task(one(peer)) for peer in peers]
    return [task.result() for task in tasks]


# ---- store, import, stats ---------------------------------------------------------------


def _add_ingest_parsers(commands: argparse._SubParsersAction[Parser]) -> None:
    store = commands.add_parser(
        "store", help="send DICOM files and folders to a remote AE (Storage SCU)"
    )
    store.add_argument("host")
    store.add_argument("port", type=port_number)
    store.add_argument("paths", nargs="+", metavar="PATH", help="files or folders (recursive)")
    store.add_argument("--aet", default="ARCHIVE", help="our (calling) AE title")
    store.add_argument("--aec", default="ANY-SCP", help="the called AE title")
    store.add_argument("-j", "--jobs", type=int, default=1, help="concurrent associations")
    store.add_argument("--timeout", type=float, default=30.0, help="seconds for each step")
    store.add_argument(
        "--max-pdu",
        type=int,
        default=65536,
        help="Maximum Length we receive (PS3.8 D.1): 0 (no limit) or"
        f" {MAX_PDU_LENGTH_RANGE[0]} to {MAX_PDU_LENGTH_RANGE[1]}",
    )

    imp = commands.add_parser(
        "import", help="import DICOM files and folders into the data folder (offline)"
    )
    imp.add_argument("paths", nargs="+", metavar="PATH", help="files or folders (recursive)")
    imp.add_argument("--config", type=Path, help="TOML configuration file")
    imp.add_argument("--data", help="data folder (overrides node.data_dir)")
    imp.add_argument(
        "-j", "--jobs", type=int, default=DEFAULT_JOBS, help="files in flight at once (16)"
    )


def _store(args: argparse.Namespace) -> int:
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.WARNING)
    for flag, title in (("--aet", args.aet), ("--aec", args.aec)):
        try:
            check_ae_title(flag, title)  # the config file's rules (PS3.5 6.2)
        except ConfigError as exc:
            print(f"archive store: {exc}", file=sys.stderr)
            return EXIT_USAGE
    low, high = MAX_PDU_LENGTH_RANGE  # the config file's association.max_pdu_length
    for wrong, message in (
        (args.jobs < 1, f"-j must be at least 1, got {args.jobs}"),
        (args.timeout <= 0, f"--timeout must be positive, got {args.timeout:g}"),
        (
            # 0 is "no limit" (PS3.8 D.1), as the UL machine takes it; anything
            # else in the range the config file allows, which peers can work with.
            args.max_pdu != 0 and not low <= args.max_pdu <= high,
            f"--max-pdu must be 0 (no limit) or {low} to {high}, got {args.max_pdu}",
        ),
    ):
        if wrong:
            print(f"archive store: {message}", file=sys.stderr)
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
    report = run(interruptible(lambda i: send_files(args.paths, options, interrupt=i)))
    print_summary(report, "sent")
    return _ingest_exit(report, "store")


def _import(args: argparse.Namespace) -> int:
    config = load_config(args.config) if args.config else Config()
    config = with_overrides(config, data_dir=args.data)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.WARNING)
    if args.jobs < 1:
        print("archive import: -j must be at least 1", file=sys.stderr)
        return EXIT_USAGE
    report = run(
        interruptible(lambda i: import_files(args.paths, config, jobs=args.jobs, interrupt=i)),
        config.node.loop,
    )
    print_summary(report, "imported")
    return _ingest_exit(report, "import")


def print_summary(report: Report, verb: str) -> None:
    """The summary on stdout, whatever its encoding: file names are escaped when
    not valid in the file system's (:func:`archive.scu.files.shown_path`), and
    anything else stdout cannot encode (a reason quoting an exception's text) is
    escaped here rather than ending the run with no summary at all."""
    text = report.summary(verb)
    encoding = sys.stdout.encoding or "utf-8"
    print(text.encode(encoding, "backslashreplace").decode(encoding))


def _ingest_exit(report: Report, command: str) -> int:
    """Exit status of a store/import run: the worst thing that happened to a file,
    or EXIT_INTERRUPTED after Ctrl-C, as for every command."""
    if report.interrupted:
        print(f"archive {command}: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    if not report.instances and not report.count(Kind.FAILED):
        # Only skipped files: nothing to send. A file that failed (cut, not
        # readable, a dangling link) is a failure, whatever else was found.
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


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
