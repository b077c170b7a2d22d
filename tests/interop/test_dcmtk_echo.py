"""C-ECHO interop with DCMTK 3.6.7: echoscu against our node, our SCU against storescp.

DCMTK is the reference peer here: it is what most modalities and PACS on the
wire behave like. echoscu's own options exercise negotiation from the
requestor's side (``--propose-ts`` offers 1..38 transfer syntaxes in one
context, ``--propose-pc`` 1..128 presentation contexts, ``--max-pdu`` its
Maximum Length Received, PS3.8 D.1); its log lines are asserted verbatim.
"""

from __future__ import annotations

import re
import subprocess
from collections.abc import Callable

import pytest

from tests.conftest import RunningNode
from tests.interop.conftest import (
    DCMTK_ENV,
    HOST,
    TOOL_TIMEOUT,
    StorescpFactory,
    archive_command,
    free_port,
    run_tool,
    stop,
)

pytestmark = pytest.mark.interop

SUCCESS = "Received Echo Response (Success)"
NO_CALLED_AE_CHECK = "[association]\ncheck_called_ae = false\n"


def accepted_transfer_syntaxes(output: str) -> list[str]:
    """The ``Accepted Transfer Syntax`` lines of echoscu's A-ASSOCIATE-AC dump (-d)."""
    return re.findall(r"Accepted Transfer Syntax: (\S+)", output)


def accepted_context_ids(output: str) -> list[int]:
    return [int(n) for n in re.findall(r"Context ID:\s+(\d+) \(Accepted\)", output)]


# ---- echoscu -> our node -----------------------------------------------------------------


def test_echoscu_default_called_ae_rejected(node: RunningNode, echoscu: str) -> None:
    # echoscu calls "ANY-SCP" by default; the node checks the called AE by default.
    rc, out = run_tool([echoscu, "-v", HOST, str(node.port)])
    assert rc != 0
    assert "Association Rejected" in out
    assert "Result: Rejected Permanent, Source: Service User" in out
    assert "Reason: Called AE Title Not Recognized" in out
    assert SUCCESS not in out


def test_echoscu_default_without_called_ae_check(
    node_factory: Callable[..., RunningNode], echoscu: str
) -> None:
    node = node_factory(toml=NO_CALLED_AE_CHECK)
    rc, out = run_tool([echoscu, "-v", HOST, str(node.port)])
    assert rc == 0, out
    assert out.count(SUCCESS) == 1
    assert "Releasing Association" in out


def test_echoscu_called_ae_matches(node: RunningNode, echoscu: str) -> None:
    rc, out = run_tool(
        [echoscu, "-v", "-aec", "ARCHIVE", "-aet", "MODALITY1", HOST, str(node.port)]
    )
    assert rc == 0, out
    assert "Association Accepted" in out
    assert out.count(SUCCESS) == 1


def test_echoscu_wrong_called_ae(node: RunningNode, echoscu: str) -> None:
    rc, out = run_tool([echoscu, "-aec", "NOT-ARCHIVE", HOST, str(node.port)])
    assert rc != 0
    assert "Association Rejected" in out
    assert "Reason: Called AE Title Not Recognized" in out


def test_echoscu_debug_shows_our_ac(node_factory: Callable[..., RunningNode], echoscu: str) -> None:
    node = node_factory(toml="[association]\nmax_pdu_length = 32768\n")
    rc, out = run_tool([echoscu, "-d", "-aec", "ARCHIVE", HOST, str(node.port)])
    assert rc == 0, out
    assert "Their Max PDU Receive Size:  32768" in out
    # DCMTK subtracts the PDV item header (4-byte length, context ID, header byte)
    # and P-DATA-TF's 6-byte PDU header from our Maximum Length Received.
    assert "Association Accepted (Max Send PDV: 32756)" in out
    assert "Responding Application Name: ARCHIVE" in out
    assert accepted_context_ids(out) == [1]
    assert accepted_transfer_syntaxes(out) == ["=LittleEndianImplicit"]
    assert out.count(SUCCESS) == 1


@pytest.mark.parametrize("max_pdu", [4096, 16384, 131072])
def test_echoscu_max_pdu_repeat(node: RunningNode, echoscu: str, max_pdu: int) -> None:
    rc, out = run_tool(
        [
            echoscu,
            "-v",
            "-aec",
            "ARCHIVE",
            "--max-pdu",
            str(max_pdu),
            "--repeat",
            "10",
            HOST,
            str(node.port),
        ]
    )
    assert rc == 0, out
    assert out.count(SUCCESS) == 10
    assert "Sending Echo Request (MsgID 10)" in out


@pytest.mark.parametrize("n_ts", [1, 2, 3, 38])
def test_echoscu_propose_ts(node: RunningNode, echoscu: str, n_ts: int) -> None:
    # echoscu proposes Implicit VR LE first; the node takes the requestor's first choice
    # among those it accepts (PS3.8 9.3.3.2 leaves the choice to the acceptor).
    rc, out = run_tool([echoscu, "-d", "-aec", "ARCHIVE", "-pts", str(n_ts), HOST, str(node.port)])
    assert rc == 0, out
    assert accepted_transfer_syntaxes(out) == ["=LittleEndianImplicit"]
    assert out.count(SUCCESS) == 1


@pytest.mark.parametrize("n_pc", [1, 2, 64, 128])
def test_echoscu_propose_pc(node: RunningNode, echoscu: str, n_pc: int) -> None:
    rc, out = run_tool([echoscu, "-d", "-aec", "ARCHIVE", "-ppc", str(n_pc), HOST, str(node.port)])
    assert rc == 0, out
    # Presentation context IDs are odd, 1..255 (PS3.8 9.3.2.2); every one is accepted.
    assert accepted_context_ids(out) == list(range(1, 2 * n_pc, 2))
    assert out.count(SUCCESS) == 1


def test_echoscu_all_contexts_all_syntaxes(node: RunningNode, echoscu: str) -> None:
    # The largest A-ASSOCIATE-RQ echoscu can build: 128 contexts x 38 transfer syntaxes.
    rc, out = run_tool(
        [echoscu, "-d", "-aec", "ARCHIVE", "-ppc", "128", "-pts", "38", HOST, str(node.port)]
    )
    assert rc == 0, out
    assert accepted_context_ids(out) == list(range(1, 256, 2))
    assert set(accepted_transfer_syntaxes(out)) == {"=LittleEndianImplicit"}
    assert out.count(SUCCESS) == 1


def test_echoscu_transfer_syntax_restricted(
    node_factory: Callable[..., RunningNode], echoscu: str
) -> None:
    node = node_factory(
        toml="[association]\naccept_all_transfer_syntaxes = false\n"
        'transfer_syntaxes = ["1.2.840.10008.1.2.1"]\n'
    )
    base = [echoscu, "-d", "-aec", "ARCHIVE"]
    rc, out = run_tool([*base, "-pts", "3", HOST, str(node.port)])
    assert rc == 0, out
    assert accepted_transfer_syntaxes(out) == ["=LittleEndianExplicit"]
    assert out.count(SUCCESS) == 1
    # Only Implicit VR LE proposed: the context is refused, nothing to echo on.
    rc, out = run_tool([*base, "-pts", "1", HOST, str(node.port)])
    assert rc != 0
    assert "No Acceptable Presentation Contexts" in out
    assert accepted_transfer_syntaxes(out) == []


def test_echoscu_abort_instead_of_release(node: RunningNode, echoscu: str) -> None:
    rc, out = run_tool([echoscu, "-v", "-aec", "ARCHIVE", "--abort", HOST, str(node.port)])
    assert rc == 0, out
    assert "Aborting Association" in out
    assert out.count(SUCCESS) == 1
    # The node is still serving after the A-ABORT.
    rc, out = run_tool([echoscu, "-v", "-aec", "ARCHIVE", HOST, str(node.port)])
    assert rc == 0, out


def test_echoscu_parallel(node: RunningNode, echoscu: str) -> None:
    procs: list[subprocess.Popen[bytes]] = []
    try:
        for i in range(10):
            procs.append(
                subprocess.Popen(
                    [
                        echoscu,
                        "-v",
                        "-aet",
                        f"SCU{i}",
                        "-aec",
                        "ARCHIVE",
                        "--repeat",
                        "20",
                        HOST,
                        str(node.port),
                    ],
                    stdin=subprocess.DEVNULL,
                    stdout=subprocess.PIPE,
                    stderr=subprocess.STDOUT,
                    env=DCMTK_ENV,
                )
            )
        results = [proc.communicate(timeout=TOOL_TIMEOUT) for proc in procs]
    finally:
        for proc in procs:
            stop(proc)
    for proc, (out, _) in zip(procs, results, strict=True):
        text = out.decode("utf-8", "replace")
        assert proc.returncode == 0, text
        assert text.count(SUCCESS) == 20


# ---- archive echo -> DCMTK storescp ------------------------------------------------------


def test_archive_echo_to_storescp(storescp_factory: StorescpFactory) -> None:
    scp = storescp_factory("-d")
    rc, out = run_tool(
        [
            *archive_command(),
            "echo",
            "--aet",
            "OURSCU",
            "--aec",
            scp.aet,
            "-n",
            "5",
            "--timeout",
            "10",
            HOST,
            str(scp.port),
        ]
    )
    assert rc == 0, out
    assert out.strip() == f"C-ECHO to {scp.aet}@{HOST}:{scp.port}: Success"
    stop(scp.proc)  # flushes its log
    log = scp.output()
    assert "Calling Application Name:    OURSCU" in log
    assert "Called Application Name:     STORESCP" in log
    assert log.count("Received Echo Request") == 5
    assert "Association Release" in log


# No "wrong called AE" case against storescp: DCMTK 3.6.7's storescp has no option
# to check the Called AE Title and accepts any (`archive echo --aec WRONG` gets
# Success). Our SCU's rejection path is exercised with `storescp --refuse` instead.


def test_archive_echo_rejected_by_storescp(storescp_factory: StorescpFactory) -> None:
    scp = storescp_factory("--refuse")
    rc, out = run_tool([*archive_command(), "echo", "--aec", scp.aet, HOST, str(scp.port)])
    assert rc == 2, out
    assert "association rejected" in out
    assert "rejected-permanent" in out
    assert "Success" not in out


def test_archive_echo_nothing_listening() -> None:
    port = free_port()
    rc, out = run_tool([*archive_command(), "echo", "--timeout", "5", HOST, str(port)])
    assert rc == 3, out
    assert "cannot connect" in out
    assert "Connection refused" in out
