"""The ``archive`` command line as a user runs it: exit statuses and messages.

Each test runs the installed console script (``.venv/bin/archive``, or
``python -m archive.cli`` when it is missing) in a subprocess with a timeout.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from pynetdicom import AE, evt

from archive.cli import (
    EXIT_ABORTED,
    EXIT_FAILED_STATUS,
    EXIT_OK,
    EXIT_REJECTED,
    EXIT_TIMEOUT,
    EXIT_USAGE,
)
from archive.dicom.uids import IMPLICIT_VR_LE, VERIFICATION
from archive.net import AssociationTimeout, Timeouts, associate
from tests.conftest import RunningNode

_SCRIPT = Path(sys.executable).with_name("archive")
ARCHIVE = [str(_SCRIPT)] if _SCRIPT.exists() else [sys.executable, "-m", "archive.cli"]


def archive(*args: str, timeout: float = 20.0) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*ARCHIVE, *args], capture_output=True, text=True, timeout=timeout, check=False
    )


def free_port() -> int:
    """A port nothing listens on (bound then released; nobody else races us on lo)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def mute_listener() -> Iterator[int]:
    """A socket that listens (the kernel completes the handshake) and never answers."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(8)
        yield int(sock.getsockname()[1])


def test_exit_statuses_are_distinct() -> None:
    assert (EXIT_OK, EXIT_USAGE, EXIT_REJECTED, EXIT_ABORTED, EXIT_TIMEOUT) == (0, 1, 2, 3, 4)
    assert EXIT_FAILED_STATUS == 5


def test_echo_success(node: RunningNode) -> None:
    done = archive("echo", "--aec", "ARCHIVE", node.host, str(node.port))
    assert (done.returncode, done.stderr) == (0, "")
    assert done.stdout == f"C-ECHO to ARCHIVE@127.0.0.1:{node.port}: Success\n"


def test_echo_repeated(node: RunningNode) -> None:
    done = archive("echo", "-n", "20", "--aec", "ARCHIVE", node.host, str(node.port))
    assert (done.returncode, done.stderr) == (0, "")
    assert done.stdout.endswith(": Success\n")


def test_echo_rejected(node: RunningNode) -> None:
    done = archive("echo", "--aec", "SOMEONE-ELSE", node.host, str(node.port))
    assert done.returncode == 2
    assert done.stdout == ""
    assert done.stderr == (
        "archive echo: association rejected: "
        "rejected-permanent, service user: called AE title not recognized\n"
    )


def test_echo_calling_ae_rejected(node_factory: Callable[..., RunningNode]) -> None:
    node = node_factory(toml='[association]\naccepted_calling_aes = ["FRIEND"]\n')
    done = archive("echo", "--aet", "STRANGER", "--aec", "ARCHIVE", node.host, str(node.port))
    assert done.returncode == 2
    assert done.stderr.endswith("service user: calling AE title not recognized\n")
    done = archive("echo", "--aet", "FRIEND", "--aec", "ARCHIVE", node.host, str(node.port))
    assert done.returncode == 0


def test_echo_connection_refused() -> None:
    port = free_port()
    done = archive("echo", "--timeout", "5", "127.0.0.1", str(port))
    assert done.returncode == 3
    assert done.stderr.startswith(f"archive echo: cannot connect to 127.0.0.1:{port}: ")
    assert "refused" in done.stderr.lower()


def test_echo_timeout_when_nobody_answers() -> None:
    with mute_listener() as port:
        start = time.monotonic()
        done = archive("echo", "--timeout", "1", "127.0.0.1", str(port))
        elapsed = time.monotonic() - start
    assert done.returncode == 4
    assert done.stderr == "archive echo: timed out: no association response within 1 s\n"
    assert 1.0 <= elapsed < 10.0


def test_associate_gives_up_on_a_silent_peer_after_one_artim() -> None:
    """No A-ASSOCIATE-AC within ARTIM: A-ABORT and close, not another ARTIM waiting
    in Sta13 for a peer that answers nothing to close (a C-MOVE to a hung
    destination took twice the timeout, and its C-CANCEL with it)."""

    timeouts = Timeouts(artim=2.0, network=2.0, dimse=2.0, connect=2.0)
    contexts = [(VERIFICATION, [IMPLICIT_VR_LE])]

    async def attempt(port: int) -> float:
        start = time.monotonic()
        with pytest.raises(AssociationTimeout, match="no association response within 2 s"):
            await associate("127.0.0.1", port, calling_ae="SCU", called_ae="ANY",
                            contexts=contexts, timeouts=timeouts)  # fmt: skip
        return time.monotonic() - start

    with mute_listener() as port:
        elapsed = asyncio.run(attempt(port))
    assert 2.0 <= elapsed < 3.5


def echo_against_pyscp(on_echo: Callable[[Any], Any]) -> subprocess.CompletedProcess[str]:
    """``archive echo`` against a pynetdicom Verification SCP answering with ``on_echo``."""
    ae = AE(ae_title="PYSCP")
    ae.add_supported_context(VERIFICATION)
    server = ae.start_server(
        ("127.0.0.1", 0), block=False, evt_handlers=[(evt.EVT_C_ECHO, on_echo)]
    )
    assert server is not None
    assert server.socket is not None
    try:
        port = server.socket.getsockname()[1]
        return archive("echo", "--aec", "PYSCP", "--timeout", "5", "127.0.0.1", str(port))
    finally:
        server.shutdown()


def test_echo_failure_status() -> None:
    """A C-ECHO answered with a non-Success status: exit 5 and the status in hex."""
    done = echo_against_pyscp(lambda event: 0x0122)
    assert done.returncode == 5
    assert done.stderr == "archive echo: C-ECHO status 0x0122\n"


def test_echo_aborted_by_peer() -> None:
    """The peer aborts in the middle of the C-ECHO: exit 3 with the abort's values."""

    def abort(event: Any) -> None:
        event.assoc.abort()

    done = echo_against_pyscp(abort)
    assert done.returncode == 3
    assert done.stderr == "archive echo: association aborted by the peer (source 0, reason 0)\n"


def test_version() -> None:
    done = archive("--version")
    assert done.returncode == 0
    assert done.stdout == "archive-node 0.1.0\n"


def test_config_check_good(tmp_path: Path) -> None:
    path = tmp_path / "good.toml"
    path.write_text(
        '[node]\nae_title = "PACS"\nport = 11112\n\n'
        "[association]\nmax_pdu_length = 16384\n\n"
        '[[peers]]\nae_title = "CT1"\nhost = "10.0.0.5"\n'
    )
    done = archive("config", "check", str(path))
    assert (done.returncode, done.stderr) == (0, "")
    assert done.stdout == f"{path}: OK\n"


def test_output_to_a_closed_pipe_ends_quietly(tmp_path: Path) -> None:
    """``archive ... | head -1``: the reader gone, exit 141 (as SIGPIPE would end
    it) without a traceback on stderr."""
    path = tmp_path / "good.toml"
    path.write_text('[node]\nae_title = "PACS"\n')
    read, write = os.pipe()
    os.close(read)
    try:
        done = subprocess.run(
            [*ARCHIVE, "config", "check", str(path)],
            stdout=write,
            stderr=subprocess.PIPE,
            text=True,
            timeout=20,
            check=False,
        )
    finally:
        os.close(write)
    assert (done.returncode, done.stderr) == (141, "")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "[association]\nmax_pdu_length = 100\n",
            "association.max_pdu_length: must be between 4096 and 16777216, got 100",
        ),
        (
            "[timeouts]\nartim = 0\n",
            "timeouts.artim: must be > 0 seconds, got 0.0",
        ),
        (
            '[node]\nport = "104"\n',
            "node.port: expected an integer, got a string",
        ),
        (
            '[[peers]]\nae_title = "CT1"\nhost = "a"\n\n[[peers]]\nae_title = "CT1"\nhost = "b"\n',
            "peers[1].ae_title: duplicate AE title 'CT1' (also peers[0])",
        ),
    ],
    ids=["range", "zero-timeout", "type", "duplicate-peer"],
)
def test_config_check_bad(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(text)
    done = archive("config", "check", str(path))
    assert done.returncode == 1
    assert done.stdout == ""
    assert done.stderr == f"archive: configuration error: {message}\n"


def test_config_check_unknown_key(tmp_path: Path) -> None:
    path = tmp_path / "bad.toml"
    path.write_text("[association]\nmax_pdu = 16384\n")
    done = archive("config", "check", str(path))
    assert done.returncode == 1
    assert done.stderr.startswith(
        "archive: configuration error: association.max_pdu: unknown key (known keys: "
    )
    assert "max_pdu_length" in done.stderr


def test_config_check_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "absent.toml"
    done = archive("config", "check", str(path))
    assert done.returncode == 1
    assert done.stderr == (
        f"archive: configuration error: cannot read {path}: No such file or directory\n"
    )


def test_no_command_is_a_usage_error() -> None:
    done = archive()
    # EXIT_USAGE, not argparse's 2, which is EXIT_REJECTED here: a script can
    # tell a typo from a rejection.
    assert done.returncode == 1
    assert "usage: archive" in done.stderr


def test_message_ids_wrap_within_us_range() -> None:
    """Message ID is a US (PS3.7 E.1): after 65535 comes 1, never 0 or 65536."""
    from archive.net.association import MessageIds
    from archive.net.client import ClientAssociation

    client = ClientAssociation.__new__(ClientAssociation)
    client._message_ids = MessageIds(last=65534)
    assert [client.next_message_id() for _ in range(3)] == [65535, 1, 2]
