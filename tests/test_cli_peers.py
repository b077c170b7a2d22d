"""``archive peers``, ``archive echo PEER`` and ``archive serve --peer``.

The CLI runs in-process (``main([...])``); the peers are our own node on
127.0.0.1, a port nothing listens on (connection refused) and a socket that
listens but never answers (timeout).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from archive import cli
from archive.cli import (
    EXIT_ABORTED,
    EXIT_FAILED_STATUS,
    EXIT_OK,
    EXIT_REJECTED,
    EXIT_USAGE,
    main,
)
from archive.config import Config, Peer
from tests.conftest import RunningNode

HOST = "127.0.0.1"


def refused_port() -> int:
    """A port nothing listens on: bound, never listened, released."""
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def silent_port(events: list[str] | None = None, name: str = "") -> Iterator[int]:
    """A listening socket that never answers an A-ASSOCIATE-RQ.

    With ``events``, a thread accepts one connection and appends ``"<name>
    accepted"``, then ``"<name> closed"`` once the caller has given up on it.
    """
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        sock.listen(8)

        def watch() -> None:
            assert events is not None
            conn, _ = sock.accept()
            with conn:
                events.append(f"{name} accepted")
                with contextlib.suppress(OSError):
                    while conn.recv(65536):
                        pass
                events.append(f"{name} closed")

        thread = threading.Thread(target=watch, daemon=True) if events is not None else None
        if thread is not None:
            thread.start()
        yield int(sock.getsockname()[1])
        if thread is not None:
            thread.join(10)  # a bound, not a measurement: the caller has closed by now


def write_peers(path: Path, *peers: tuple[str, str, int], ae_title: str = "ARCHIVE") -> Path:
    text = f'[node]\nae_title = "{ae_title}"\n'
    for title, host, port in peers:
        text += f'[[peers]]\nae_title = "{title}"\nhost = "{host}"\nport = {port}\n'
    path.write_text(text, encoding="utf-8")
    return path


# ---- archive peers ----------------------------------------------------------------------


def test_peers_lists_the_table(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = write_peers(
        tmp_path / "a.toml",
        ("PACS2", "10.0.0.5", 104),
        ("MY LONG AE TITLE", "ct1.example.org", 11112),
        ("V6", "::1", 4242),
    )
    assert main(["peers", "--config", str(config)]) == EXIT_OK
    assert capsys.readouterr().out == (
        "AE TITLE          HOST              PORT\n"
        "PACS2             10.0.0.5           104\n"
        "MY LONG AE TITLE  ct1.example.org  11112\n"
        "V6                ::1               4242\n"
    )


def test_peers_none_configured(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["peers"]) == EXIT_OK
    assert capsys.readouterr().out == "no peers configured\n"


def test_peers_echo_all_succeed(
    node: RunningNode, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = write_peers(tmp_path / "a.toml", ("ARCHIVE", HOST, node.port))
    assert main(["peers", "--config", str(config), "--echo", "--timeout", "5"]) == EXIT_OK
    assert capsys.readouterr().out == (
        f"AE TITLE  HOST        PORT  C-ECHO\nARCHIVE   127.0.0.1  {node.port:>5}  OK\n"
    )


def test_peers_echo_reports_each_failure_in_parallel(
    node: RunningNode, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    dead = refused_port()
    events: list[str] = []
    with silent_port(events, "SILENT") as silent, silent_port(events, "SILENT2") as silent2:
        config = write_peers(
            tmp_path / "a.toml",
            ("ARCHIVE", HOST, node.port),
            ("WRONG", HOST, node.port),  # our node checks the called AE title
            ("DEAD", HOST, dead),
            ("SILENT", HOST, silent),
            ("SILENT2", HOST, silent2),
        )
        code = main(["peers", "--config", str(config), "--echo", "--timeout", "1.5"])
    assert code == EXIT_FAILED_STATUS
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["AE", "TITLE", "HOST", "PORT", "C-ECHO"]
    rows = {line.split()[0]: line.split(None, 3)[3] for line in lines[1:]}
    assert rows["ARCHIVE"] == "OK"
    assert rows["WRONG"] == (
        "association rejected: rejected-permanent, service user: called AE title not recognized"
    )
    assert rows["DEAD"] == f"cannot connect to {HOST}:{dead}: Connection refused"
    assert rows["SILENT"] == "timed out: no association response within 1.5 s"
    assert rows["SILENT2"] == rows["SILENT"]
    assert list(rows) == ["ARCHIVE", "WRONG", "DEAD", "SILENT", "SILENT2"]  # configured order
    # In parallel: both silent peers were called before the first was given up
    # (one after the other, the second would be called only once the first closed).
    assert sorted(events[:2]) == ["SILENT accepted", "SILENT2 accepted"]
    assert sorted(events[2:]) == ["SILENT closed", "SILENT2 closed"]


def test_peers_echo_uses_node_ae_title_as_calling(
    node_factory: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    strict = node_factory(toml='[association]\naccepted_calling_aes = ["FRIEND"]\n')
    config = write_peers(tmp_path / "a.toml", ("ARCHIVE", HOST, strict.port), ae_title="FRIEND")
    assert main(["peers", "--config", str(config), "--echo"]) == EXIT_OK
    capsys.readouterr()
    assert main(["peers", "--config", str(config), "--echo", "--aet", "STRANGER"]) == (
        EXIT_FAILED_STATUS
    )
    assert "calling AE title not recognized" in capsys.readouterr().out


def test_peers_bad_timeout(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["peers", "--echo", "--timeout", "0"]) == EXIT_USAGE
    assert capsys.readouterr().err == "archive peers: --timeout must be positive\n"


# ---- archive echo PEER ---------------------------------------------------------------------


def test_echo_configured_peer(
    node: RunningNode, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = write_peers(tmp_path / "a.toml", ("ARCHIVE", HOST, node.port))
    assert main(["echo", "--config", str(config), "ARCHIVE"]) == EXIT_OK
    assert capsys.readouterr().out == f"C-ECHO to ARCHIVE@{HOST}:{node.port}: Success\n"


def test_echo_aet_at_host_port(node: RunningNode, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["echo", f"ARCHIVE@{HOST}:{node.port}", "-n", "3"]) == EXIT_OK
    assert capsys.readouterr().out == f"C-ECHO to ARCHIVE@{HOST}:{node.port}: Success\n"


def test_echo_peer_called_ae_is_the_peers(
    node: RunningNode, capsys: pytest.CaptureFixture[str]
) -> None:
    # The peer's AE title is what we call; --aec still overrides it.
    assert main(["echo", f"OTHER@{HOST}:{node.port}"]) == EXIT_REJECTED
    assert capsys.readouterr().err == (
        "archive echo: association rejected: rejected-permanent, service user: "
        "called AE title not recognized\n"
    )
    assert main(["echo", "--aec", "ARCHIVE", f"OTHER@{HOST}:{node.port}"]) == EXIT_OK


def test_echo_ipv6_peer_is_parsed(capsys: pytest.CaptureFixture[str]) -> None:
    # Nothing listens there: what matters is that [::1] was taken as the host.
    port = refused_port()
    code = main(["echo", "--timeout", "2", f"X@[::1]:{port}"])
    err = capsys.readouterr().err
    assert code == EXIT_ABORTED
    assert "::1" in err
    assert "not AET@HOST:PORT" not in err


def test_echo_host_port_still_works(node: RunningNode, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["echo", "--aec", "ARCHIVE", HOST, str(node.port)]) == EXIT_OK
    assert capsys.readouterr().out == f"C-ECHO to ARCHIVE@{HOST}:{node.port}: Success\n"
    # without --aec the called AE title is ANY-SCP, as before
    assert main(["echo", HOST, str(node.port)]) == EXIT_REJECTED


def test_echo_unknown_peer(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = write_peers(tmp_path / "a.toml", ("PACS2", "10.0.0.5", 104))
    assert main(["echo", "--config", str(config), "PACS3"]) == EXIT_USAGE
    assert capsys.readouterr().err == (
        "archive echo: PEER: 'PACS3' is not a configured peer (peers: PACS2) "
        "nor AET@HOST:PORT (IPv6 as AET@[::1]:104); or give HOST PORT\n"
    )


def test_echo_bad_peer_syntax(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["echo", "PACS@host:99999"]) == EXIT_USAGE
    assert capsys.readouterr().err == (
        "archive echo: PEER: 'PACS@host:99999': port must be between 1 and 65535, got 99999; "
        "or give HOST PORT\n"
    )


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--aet", "A\\B"], "--aet: must not contain a backslash"),
        (["--aec", "ABCDEFGHIJKLMNOPQ"], "--aec: must be 1 to 16 characters, got 17"),
        (["--aet", " LEADING"], "--aet: must not have leading or trailing spaces"),
        (["--timeout", "0"], "--timeout: must be positive"),
        (["--timeout", "-1"], "--timeout: must be positive"),
    ],
)
def test_echo_validates_its_flags_like_find(
    flags: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    # Checked before any connection: nothing listens on the refused port.
    assert main(["echo", *flags, f"ARCHIVE@{HOST}:{refused_port()}"]) == EXIT_USAGE
    err = capsys.readouterr().err
    assert err.startswith(f"archive echo: {message}")
    assert err.count("\n") == 1
    assert "or give HOST PORT" not in err


def test_echo_uses_the_configured_loop(
    node: RunningNode,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    kinds: list[str] = []
    real = cli.run

    def recording_run(main: Any, kind: str = "auto") -> Any:
        kinds.append(kind)
        return real(main, kind)

    monkeypatch.setattr(cli, "run", recording_run)
    config = tmp_path / "a.toml"
    config.write_text('[node]\nloop = "asyncio"\n', encoding="utf-8")
    argv = ["echo", "--config", str(config), f"ARCHIVE@{HOST}:{node.port}"]
    assert main(argv) == EXIT_OK
    assert kinds == ["asyncio"]


def test_resolve_peer_is_the_shared_helper() -> None:
    # The future find/move/pull commands take their PEER argument through it.
    assert cli.resolve_peer(Config(), "A@h:1") == Peer(ae_title="A", host="h", port=1)


# ---- archive serve --peer ------------------------------------------------------------------


@pytest.fixture
def served(monkeypatch: pytest.MonkeyPatch) -> list[Config]:
    """Make ``archive serve`` record its final Config instead of serving."""
    configs: list[Config] = []

    async def fake_serve(config: Config) -> None:
        configs.append(config)

    def fake_run(main: Any, kind: str = "auto") -> None:
        asyncio.run(main)

    monkeypatch.setattr(cli, "serve", fake_serve)
    monkeypatch.setattr(cli, "run", fake_run)
    return configs


def test_serve_peer_flags(
    served: list[Config], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    config = write_peers(tmp_path / "a.toml", ("PACS2", "10.0.0.5", 104), ("CT", "ct1", 104))
    argv = ["serve", "--config", str(config), "--data", str(tmp_path / "d")]
    argv += ["--peer", "ORTHANC@127.0.0.1:4242", "--peer", "PACS2@[::1]:11112"]
    with caplog.at_level(logging.WARNING, logger="archive"):
        assert main(argv) == EXIT_OK
    (final,) = served
    # cli.serve was replaced, so this is the config serve() would have got
    assert final.peers == (
        Peer(ae_title="PACS2", host="::1", port=11112),
        Peer(ae_title="CT", host="ct1", port=104),
        Peer(ae_title="ORTHANC", host="127.0.0.1", port=4242),
    )
    assert [r.getMessage() for r in caplog.records if r.name == "archive"] == [
        "--peer PACS2@[::1]:11112 replaces the configured peer PACS2@10.0.0.5:104"
    ]


def test_serve_bad_peer(
    served: list[Config], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["serve", "--data", str(tmp_path / "d"), "--peer", "ORTHANC@127.0.0.1"]
    assert main(argv) == EXIT_USAGE
    assert served == []
    assert capsys.readouterr().err == (
        "archive: configuration error: --peer: 'ORTHANC@127.0.0.1' is not "
        "AET@HOST:PORT (IPv6 as AET@[::1]:104): no ':PORT'\n"
    )


def test_serve_same_peer_twice(
    served: list[Config], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["serve", "--data", str(tmp_path / "d"), "--peer", "A@h:1", "--peer", "A@g:2"]
    assert main(argv) == EXIT_USAGE
    assert capsys.readouterr().err == (
        "archive: configuration error: peers: AE title 'A' is given twice on the command line\n"
    )
