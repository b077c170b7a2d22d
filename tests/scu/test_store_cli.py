"""``archive store`` as a command: its flags, an interrupted run, a file the peer
aborts on."""

from __future__ import annotations

from pathlib import Path

import pytest

from archive.cli import main
from archive.config import MAX_PDU_LENGTH_RANGE
from tests.conftest import RunningNode
from tests.test_cli_store import make_instance, stored_path

LOW, HIGH = MAX_PDU_LENGTH_RANGE


@pytest.mark.parametrize("value", ["-1", "1", "12", str(LOW - 1), str(HIGH + 1)])
def test_max_pdu_outside_the_range_is_a_usage_error(
    value: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """1 or 12 were accepted, and made an association no peer could use."""
    assert main(["store", "--max-pdu", value, "127.0.0.1", "104", "somewhere"]) == 1
    assert capsys.readouterr().err == (
        f"archive store: --max-pdu must be 0 (no limit) or {LOW} to {HIGH}, got {value}\n"
    )


@pytest.mark.parametrize("value", [0, LOW, HIGH])
def test_max_pdu_in_the_range_is_used(
    value: int, node: RunningNode, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "a.dcm"
    uid = make_instance(path)
    argv = ["store", "--max-pdu", str(value), "--aec", "ARCHIVE", node.host, str(node.port)]
    assert main([*argv, str(path)]) == 0, capsys.readouterr()
    assert stored_path(node.config.node.data_dir, uid).exists()


@pytest.mark.parametrize(
    ("flag", "value", "message"),
    [("-j", "0", "-j must be at least 1"), ("--timeout", "0", "--timeout must be positive")],
)
def test_jobs_and_timeout_say_what_is_wrong(
    flag: str, value: str, message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["store", flag, value, "127.0.0.1", "104", "somewhere"]) == 1
    assert capsys.readouterr().err == f"archive store: {message}, got {value}\n"
