"""The Query/Retrieve commands of ``archive``: find, move, get, pull.

Argument parsing, output and exit statuses only; the SCU work is in
:mod:`archive.scu.query`, :mod:`archive.scu.get` and :mod:`archive.scu.pull`.
Exit statuses are those of the rest of the CLI (:mod:`archive.cli`): 0 success
(a C-FIND with no match included), 1 usage or configuration, 2 association (or
Q/R SOP class) rejected, 3 aborted or refused, 4 timeout, 5 a failure or warning
status, 130 interrupted (Ctrl-C: C-CANCEL sent). Peer resolution and the failure
statuses are shared with ``archive echo`` (:func:`archive.cli.target`,
:func:`archive.cli.report_failure`).
"""

from __future__ import annotations

import argparse
import functools
import json
import logging
import sys
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any, Protocol

from archive.cli import (
    EXIT_FAILED_STATUS,
    EXIT_INTERRUPTED,
    EXIT_OK,
    Parser,
    address,
    port_number,
    report_failure,
    target,
)
from archive.config import Config, Peer, check_ae_title, load_config, with_overrides
from archive.dicom.dataset import Element
from archive.dicom.dimse import Status
from archive.dicom.query_keys import Level, QueryModel
from archive.errors import ArchiveError
from archive.net import run
from archive.node import Node
from archive.progress import SubOperationBar
from archive.scu import (
    Interrupt,
    PullReport,
    QueryKey,
    QueryOptions,
    RetrieveResult,
    build_identifier,
    character_set,
    check_level,
    columns,
    find_matches,
    get_instances,
    interruptible,
    level_of,
    move_instances,
    parse_keys,
    pull_studies,
    table,
    with_defaults,
)

_LEVELS = [level.value for level in Level]


# ---- parsers ---------------------------------------------------------------------------


def _common(parser: argparse.ArgumentParser, *, peer_only: bool = False) -> None:
    if peer_only:
        parser.add_argument("target", metavar="PEER", help="a configured AE title or AET@HOST:PORT")
    else:
        parser.add_argument("target", metavar="PEER|HOST")
        parser.add_argument("port", type=port_number, nargs="?", metavar="PORT")
    parser.add_argument("--config", type=Path, help="TOML configuration file")
    parser.add_argument("--aet", help="our (calling) AE title (default: node.ae_title)")
    parser.add_argument("--aec", help="the called AE title (default: the peer's, or ANY-SCP)")
    parser.add_argument("--timeout", type=float, default=30.0, help="seconds for each step")
    parser.add_argument(
        "-k",
        "--key",
        action="append",
        default=[],
        metavar="KEY[=VALUE]",
        help="Keyword=value (matching key), Keyword (return key), or a tag: "
        "(0010,0020)=x, 00100020=x; repeatable; sequence keys are not supported",
    )
    parser.add_argument(
        "--charset",
        metavar="TERMS",
        help="Specific Character Set of the values, e.g. 'ISO_IR 100' "
        "(default: none, or ISO_IR 192 when a value is not ASCII)",
    )
    if peer_only:
        return
    model = parser.add_mutually_exclusive_group()
    model.add_argument(
        "-P",
        "--patient-root",
        dest="model",
        action="store_const",
        const=QueryModel.PATIENT_ROOT,
        help="Patient Root information model (needed for PATIENT level)",
    )
    model.add_argument(
        "-S",
        "--study-root",
        dest="model",
        action="store_const",
        const=QueryModel.STUDY_ROOT,
        help="Study Root information model (the default)",
    )
    parser.set_defaults(model=QueryModel.STUDY_ROOT)
    parser.add_argument(
        "-L",
        "--level",
        type=str.upper,
        choices=_LEVELS,
        default="STUDY",
        help="Query/Retrieve Level (default STUDY)",
    )


def add_qr_parsers(commands: argparse._SubParsersAction[Parser]) -> None:
    """Add ``find``, ``move``, ``get`` and ``pull`` to the ``archive`` command."""
    target = "PEER is a configured peer's AE title or AET@HOST:PORT; or give HOST PORT "
    target += "(called AE title ANY-SCP unless --aec)."
    p = commands.add_parser(
        "find",
        help="C-FIND a remote AE (Query SCU), like findscu",
        description=f"{target} With matching keys only, the level's usual return keys "
        "are added (--no-default-keys to send only yours). Output: a table on a terminal "
        "(or with --table), else JSON in the DICOM JSON model (PS3.18 F.2).",
    )
    _common(p)
    out = p.add_mutually_exclusive_group()
    out.add_argument("--json", action="store_true", help="print a JSON array (DICOM JSON model)")
    out.add_argument("--table", action="store_true", help="print a table even when piped")
    p.add_argument(
        "--no-default-keys", action="store_true", help="do not add the level's return keys"
    )

    p = commands.add_parser(
        "move",
        help="C-MOVE from a remote AE to a destination AE (Retrieve SCU)",
        description=f"{target} The keys name what to move (e.g. -k StudyInstanceUID=...).",
    )
    _common(p)
    p.add_argument("--dest", required=True, metavar="AET", help="the Move Destination AE title")
    _response_timeout(p)

    p = commands.add_parser(
        "get",
        help="C-GET from a remote AE into a folder (Retrieve SCU)",
        description=f"{target} Each instance is written as DIR/<SOPInstanceUID>.dcm.",
    )
    _common(p)
    p.add_argument("--out", type=Path, default=Path("."), metavar="DIR", help="default: .")
    p.add_argument(
        "--sop-class",
        action="append",
        default=[],
        metavar="UID",
        help="also accept this storage SOP class (repeatable)",
    )
    p.add_argument(
        "--transfer-syntax",
        action="append",
        default=[],
        metavar="UID",
        help="offer only these transfer syntaxes, in this order (repeatable)",
    )
    _response_timeout(p)

    p = commands.add_parser(
        "pull",
        help="bring studies from a peer archive into this node (C-FIND then C-MOVE)",
        description="Finds the studies matching the keys on PEER (Study Root), then asks "
        "PEER to C-MOVE each to our AE title (--aet, default node.ae_title). PEER must "
        "know our AE title as a move destination, with this node's host and port; our "
        "node must be running (archive serve), or use --serve.",
    )
    _common(p, peer_only=True)
    p.add_argument("--serve", action="store_true", help="run our node during the pull")
    # dest listen_port: args.port is the peer's port of HOST PORT (cli.target)
    p.add_argument(
        "--port",
        dest="listen_port",
        metavar="PORT",
        type=int,
        help="with --serve: listen port (overrides node.port)",
    )
    p.add_argument("--host", help="with --serve: listen address (overrides node.host)")
    p.add_argument("--data", help="with --serve: data folder (overrides node.data_dir)")
    _response_timeout(p)


def _response_timeout(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--response-timeout",
        type=float,
        metavar="SECONDS",
        help="wait this long for each C-MOVE/C-GET response (default: --timeout); "
        "some peers send no pending responses while they work",
    )


# ---- running ---------------------------------------------------------------------------


def run_qr(args: argparse.Namespace) -> int:
    """Run ``archive find/move/get/pull``; returns the exit status."""
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.WARNING)
    try:
        config = load_config(args.config) if args.config else Config()
        return _COMMANDS[args.command](args, config)
    except ArchiveError as exc:  # usage (1), rejected (2), aborted (3), timeout (4)
        return report_failure(f"archive {args.command}", exc)


def _options(args: argparse.Namespace, config: Config) -> tuple[QueryOptions, Peer]:
    peer, calling, called, timeouts = target(args, config)
    options = QueryOptions(
        host=peer.host,
        port=peer.port,
        calling_ae=calling,
        called_ae=called,
        model=getattr(args, "model", QueryModel.STUDY_ROOT),
        timeouts=timeouts,
        max_pdu_length=config.association.max_pdu_length,
    )
    return options, peer


def _identifier(
    args: argparse.Namespace, *, defaults: bool = False
) -> tuple[list[QueryKey], list[Element]]:
    """The ``-k`` keys (and the level's return keys if ``defaults``) and their identifier."""
    keys = parse_keys(args.key)
    level = level_of(keys, Level(args.level))
    check_level(level, args.model)
    if defaults:
        keys = with_defaults(keys, level)
    return keys, build_identifier(keys, level, character_set(keys, args.charset))


def _find(args: argparse.Namespace, config: Config) -> int:
    options, _ = _options(args, config)
    keys, identifier = _identifier(args, defaults=not args.no_default_keys)
    rows: list[dict[str, Any]] = []
    try:
        result = run(
            interruptible(lambda i: find_matches(options, identifier, rows.append, interrupt=i)),
            config.node.loop,
        )
    except ArchiveError:
        # Aborted or timed out part-way: the matches received are still answers.
        if rows:
            _print_matches(args, keys, rows)
        raise
    _print_matches(args, keys, rows)
    if result.cancelled:
        print(f"archive find: interrupted ({_final(result.status)})", file=sys.stderr)
        return EXIT_INTERRUPTED
    if result.status != Status.SUCCESS:
        print(f"archive find: {result.describe()}", file=sys.stderr)
        return EXIT_FAILED_STATUS
    return EXIT_OK


def _print_matches(args: argparse.Namespace, keys: Sequence[QueryKey], rows: list[Any]) -> None:
    if args.table or (not args.json and sys.stdout.isatty()):
        for line in table(columns(keys), rows):
            print(line)
        print(f"{len(rows)} match(es)")
    else:
        print(json.dumps(rows, indent=2, ensure_ascii=False))


def _final(status: int | None) -> str:
    """What became of an operation we sent a C-CANCEL-RQ for."""
    if status is None:
        return "C-CANCEL sent, no answer: association aborted"
    return f"C-CANCEL sent; final status 0x{status:04X}"


class _Retrieve(Protocol):
    """:func:`move_instances` or :func:`get_instances` with all but these arguments bound."""

    def __call__(
        self,
        *,
        on_progress: Callable[[RetrieveResult], None],
        interrupt: Interrupt,
        timeout: float | None,
    ) -> Awaitable[RetrieveResult]: ...


def _retrieve(
    args: argparse.Namespace,
    config: Config,
    retrieve: _Retrieve,
    summary: Callable[[RetrieveResult], None],
) -> RetrieveResult:
    """Run a C-MOVE or C-GET: a bar on the terminal, Ctrl-C as C-CANCEL; then
    ``summary`` of the result, also of what the responses had said when the
    association fails part-way (before the error goes up)."""
    seen: RetrieveResult | None = None
    try:
        with SubOperationBar() as bar:

            def progress(result: RetrieveResult) -> None:
                nonlocal seen
                seen = result
                bar.update(result.completed, result.failed, result.warning, result.total)

            result = run(
                interruptible(
                    lambda i: retrieve(
                        on_progress=progress, interrupt=i, timeout=args.response_timeout
                    )
                ),
                config.node.loop,
            )
    except ArchiveError:
        if seen is not None:
            summary(seen)
        raise
    summary(result)
    return result


def _retrieve_exit(command: str, result: RetrieveResult, destination: str | None) -> int:
    for uid in result.failed_uids:
        print(f"  failed: {uid}")
    if result.cancelled:
        print(f"{command}: interrupted ({_final(result.status)})", file=sys.stderr)
        return EXIT_INTERRUPTED
    if result.status == Status.MOVE_DESTINATION_UNKNOWN and destination:
        print(
            f"{command}: the peer does not know {destination} as a move destination",
            file=sys.stderr,
        )
    return EXIT_OK if result.ok else EXIT_FAILED_STATUS


def _move(args: argparse.Namespace, config: Config) -> int:
    options, peer = _options(args, config)
    check_ae_title("--dest", args.dest)
    _, identifier = _identifier(args)
    line = f"C-MOVE from {options.called_ae}@{address(peer)} to {args.dest}"

    def summary(result: RetrieveResult) -> None:
        print(f"{line}: {result.describe()}")

    move = functools.partial(move_instances, options, identifier, args.dest)
    result = _retrieve(args, config, move, summary)
    return _retrieve_exit("archive move", result, args.dest)


def _get(args: argparse.Namespace, config: Config) -> int:
    options, peer = _options(args, config)
    _, identifier = _identifier(args)
    extra: dict[str, Any] = {"sop_classes": args.sop_class}
    if args.transfer_syntax:
        extra["transfer_syntaxes"] = args.transfer_syntax
    line = f"C-GET from {options.called_ae}@{address(peer)}"

    def summary(result: RetrieveResult) -> None:
        print(f"{line}: {result.describe()}")
        print(f"wrote {result.written} file(s) to {args.out}")

    get = functools.partial(get_instances, options, identifier, args.out, **extra)
    result = _retrieve(args, config, get, summary)
    return _retrieve_exit("archive get", result, None)


def _pull(args: argparse.Namespace, config: Config) -> int:
    options, peer = _options(args, config)
    our_ae = options.calling_ae
    keys = parse_keys(args.key)
    terms = character_set(keys, args.charset)
    if args.serve:
        config = with_overrides(
            config, ae_title=our_ae, port=args.listen_port, host=args.host, data_dir=args.data
        )
    bar = SubOperationBar()

    def progress(report: PullReport, total: int | None) -> None:
        prefix = f"study {len(report.moves)}/{len(report.studies)}  "
        bar.update(report.completed, report.failed, report.warning, total, prefix)

    async def main(interrupt: Interrupt) -> PullReport:
        async def once() -> PullReport:
            return await pull_studies(
                options,
                keys,
                our_ae,
                terms=terms,
                on_progress=progress,
                interrupt=interrupt,
                timeout=args.response_timeout,
            )

        if not args.serve:
            return await once()
        async with Node(config) as node:
            print(f"receiving as {our_ae} on port {node.port}", file=sys.stderr, flush=True)
            return await once()

    with bar:
        report = run(interruptible(main), config.node.loop)
    return _pull_summary(report, options.called_ae, address(peer), our_ae)


def _pull_summary(report: PullReport, called: str, address: str, our_ae: str) -> int:
    find = report.find
    if find.cancelled or (find.status is not None and find.status != Status.SUCCESS):
        if find.cancelled:
            print("archive pull: interrupted (C-CANCEL sent)", file=sys.stderr)
            return EXIT_INTERRUPTED
        print(f"archive pull: {find.describe()}", file=sys.stderr)
        return EXIT_FAILED_STATUS
    if not report.studies:
        if report.without_uid:
            print(f"{report.without_uid} match(es) on {called}@{address}, none with a Study"
                  " Instance UID: nothing pulled")  # fmt: skip
            return EXIT_FAILED_STATUS
        print(f"no matching studies on {called}@{address}")
        return EXIT_OK
    moved = sum(1 for r in report.moves.values() if r.ok)
    print(
        f"pulled {moved} of {len(report.studies)} study(ies) from {called}@{address} to "
        f"{our_ae}: completed {report.completed}, failed {report.failed},"
        f" warning {report.warning} instance(s)"
    )
    for uid, result in report.moves.items():
        if not result.ok:
            print(f"  study {uid}: {result.describe()}")
            for failed in result.failed_uids:
                print(f"    failed: {failed}")
    for uid in report.studies:
        if uid not in report.moves:
            print(f"  study {uid}: not asked for")
    if report.without_uid:
        print(f"  {report.without_uid} match(es) without a Study Instance UID: not pulled")
    fix = (
        f"add {our_ae} with this node's host and port to its configuration"
        " (e.g. Orthanc's DicomModalities)"
    )
    if any(r.status == Status.MOVE_DESTINATION_UNKNOWN for r in report.moves.values()):
        print(
            f"archive pull: {called} does not know {our_ae} as a move destination: {fix}",
            file=sys.stderr,
        )
    elif any(_refused_outright(r) for r in report.moves.values()):
        # Some peers (Orthanc 1.10) answer an unknown destination with 0xC000.
        print(
            f"archive pull: hint: if {called} does not know {our_ae} as a move destination, {fix}",
            file=sys.stderr,
        )
    if report.cancelled:
        print("archive pull: interrupted (C-CANCEL sent)", file=sys.stderr)
        return EXIT_INTERRUPTED
    return EXIT_OK if report.ok else EXIT_FAILED_STATUS


def _refused_outright(result: RetrieveResult) -> bool:
    """A failed C-MOVE that never started a sub-operation."""
    done = result.completed + result.failed + result.warning
    return result.status is not None and not result.ok and done == 0 and not result.cancelled


_COMMANDS: dict[str, Callable[[argparse.Namespace, Config], int]] = {
    "find": _find,
    "move": _move,
    "get": _get,
    "pull": _pull,
}
