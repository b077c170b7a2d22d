"""pynetdicom as the peer, both ways: its SCU against our SCP, our SCU against its SCP.

pynetdicom is the oracle here (it is used in tests only, never from archive/).
Our SCU runs in ``asyncio.run`` inside each test function; pynetdicom's SCP runs
in its own threads and is shut down in a ``finally``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from collections.abc import Callable, Coroutine, Iterator
from typing import Any

import pytest
from pynetdicom import AE, evt

from archive.config import Config
from archive.dicom.uids import EXPLICIT_VR_LE, IMPLICIT_VR_LE, VERIFICATION
from archive.dicom.ul.pdu import AAssociateRj
from archive.net import (
    ECHO_CONTEXTS,
    AssociationAborted,
    AssociationRejected,
    ClientAssociation,
    Timeouts,
    associate,
)
from tests.conftest import RunningNode
from tests.net.rawpeer import wait_until

JPEG_BASELINE = "1.2.840.10008.1.2.4.50"
DEFLATED = "1.2.840.10008.1.2.1.99"
CT_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.2"
UNKNOWN_CLASS = "1.2.826.0.1.3680043.9.9999.1"
SHORT = Timeouts(artim=3.0, network=3.0, dimse=3.0, connect=3.0)
NodeFactory = Callable[..., RunningNode]


def scu(ae_title: str = "PYSCU", **attrs: Any) -> AE:
    ae = AE(ae_title=ae_title)
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = 5
    for name, value in attrs.items():
        setattr(ae, name, value)
    return ae


@contextlib.contextmanager
def pynetdicom_association(node: RunningNode, ae: AE, **kwargs: Any) -> Iterator[Any]:
    """pynetdicom's association with the node; aborted if still alive, ``ae`` shut down."""
    assoc = ae.associate(node.host, node.port, ae_title="ARCHIVE", **kwargs)
    try:
        yield assoc
    finally:
        if assoc.is_alive():
            assoc.abort()
        ae.shutdown()


def active(node: RunningNode) -> int:
    server = node.server
    assert server is not None
    return int(node.call(lambda: server.active))


# ---- pynetdicom SCU -> our SCP ------------------------------------------------------------


def test_echo_default_contexts(node: RunningNode) -> None:
    ae = scu()
    ae.add_requested_context(VERIFICATION)  # pynetdicom's four default transfer syntaxes
    with pynetdicom_association(node, ae) as assoc:
        assert assoc.is_established
        (context,) = assoc.accepted_contexts
        assert context.abstract_syntax == VERIFICATION
        # We take the requestor's first choice among those we accept.
        assert context.transfer_syntax == [IMPLICIT_VR_LE]
        assert assoc.rejected_contexts == []
        assert assoc.acceptor.maximum_length == Config().association.max_pdu_length
        status = assoc.send_c_echo()
        assert status.Status == 0x0000
        assoc.release()
        assert assoc.is_released


def test_several_contexts_and_transfer_syntaxes(node: RunningNode) -> None:
    ae = scu()
    ae.add_requested_context(VERIFICATION, [EXPLICIT_VR_LE, IMPLICIT_VR_LE])  # id 1
    ae.add_requested_context(VERIFICATION, ["1.2.3.4.999"])  # id 3: no TS we know
    ae.add_requested_context(CT_IMAGE_STORAGE, [JPEG_BASELINE, EXPLICIT_VR_LE])  # id 5
    ae.add_requested_context(UNKNOWN_CLASS, [IMPLICIT_VR_LE])  # id 7
    ae.add_requested_context(CT_IMAGE_STORAGE, [DEFLATED])  # id 9
    with pynetdicom_association(node, ae) as assoc:
        assert assoc.is_established
        accepted = {
            c.context_id: (c.abstract_syntax, c.transfer_syntax[0]) for c in assoc.accepted_contexts
        }
        assert accepted == {
            1: (VERIFICATION, EXPLICIT_VR_LE),
            5: (CT_IMAGE_STORAGE, JPEG_BASELINE),
            9: (CT_IMAGE_STORAGE, DEFLATED),
        }
        rejected = {c.context_id: c.result for c in assoc.rejected_contexts}
        assert rejected == {3: 0x04, 7: 0x03}
        assert assoc.send_c_echo().Status == 0x0000
        assoc.release()
        assert assoc.is_released


@pytest.mark.parametrize("max_pdu", [0, 4096])
def test_echo_with_requestor_max_pdu(node: RunningNode, max_pdu: int) -> None:
    """Maximum Length Received 0 (no limit) and the 4096 floor (PS3.8 D.1)."""
    ae = scu()
    ae.add_requested_context(VERIFICATION)
    with pynetdicom_association(node, ae, max_pdu=max_pdu) as assoc:
        assert assoc.is_established
        assert assoc.requestor.maximum_length == max_pdu
        assert assoc.acceptor.maximum_length == Config().association.max_pdu_length
        for _ in range(3):
            assert assoc.send_c_echo().Status == 0x0000
        assoc.release()
        assert assoc.is_released


def test_release_and_abort_from_pynetdicom(
    node: RunningNode, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="archive.net")
    ae = scu(ae_title="RELEASER")
    ae.add_requested_context(VERIFICATION)
    try:
        assoc = ae.associate(node.host, node.port, ae_title="ARCHIVE")
        assert assoc.is_established
        assoc.release()
        assert assoc.is_released
        assert not assoc.is_aborted

        ae.ae_title = "ABORTER"
        assoc = ae.associate(node.host, node.port, ae_title="ARCHIVE")
        assert assoc.is_established
        assert assoc.send_c_echo().Status == 0x0000
        assoc.abort()
        assert assoc.is_aborted
    finally:
        ae.shutdown()
    wait_until(lambda: active(node) == 0, 3.0, "server idle")

    def outcome(calling: str) -> str:
        lines = [
            r.getMessage()
            for r in caplog.records
            if r.name == "archive.net" and f" {calling}->ARCHIVE " in r.getMessage()
        ]
        assert len(lines) == 1, lines
        match = re.search(r" contexts 1/1 \d+\.\d{3}s (.*)$", lines[0])
        assert match is not None, lines[0]
        return match[1]

    wait_until(lambda: "ABORTER->" in caplog.text, 3.0, "log line of the aborted association")
    assert outcome("RELEASER") == "released"
    # pynetdicom's A-ABORT is from the service user (source 0).
    assert outcome("ABORTER") == "aborted by peer (A-ABORT source 0)"
    # The server still serves.
    ae = scu()
    ae.add_requested_context(VERIFICATION)
    try:
        assoc = ae.associate(node.host, node.port, ae_title="ARCHIVE")
        assert assoc.send_c_echo().Status == 0x0000
        assoc.release()
    finally:
        ae.shutdown()


# ---- our SCU -> pynetdicom SCP ---------------------------------------------------------------


def our_association(port: int, called_ae: str = "PYSCP") -> Coroutine[Any, Any, ClientAssociation]:
    """Our SCU's association (OURSCU, the echo contexts) with a pynetdicom SCP."""
    return associate(
        "127.0.0.1",
        port,
        calling_ae="OURSCU",
        called_ae=called_ae,
        contexts=ECHO_CONTEXTS,
        timeouts=SHORT,
    )


def our_echoes(port: int, count: int = 1) -> list[int]:
    """The statuses of ``count`` C-ECHOs on one association of our SCU, then released."""

    async def main() -> list[int]:
        async with await our_association(port) as assoc:
            return [await assoc.echo() for _ in range(count)]

    return asyncio.run(main())


@pytest.fixture
def pynetdicom_scp() -> Iterator[Callable[..., tuple[int, list[Any]]]]:
    """``start(handler=None, **ae_attrs)`` -> (port, events seen); all stopped after."""
    servers: list[Any] = []

    def start(handler: Callable[[Any], Any] | None = None, **attrs: Any) -> tuple[int, list[Any]]:
        seen: list[Any] = []

        def on_echo(event: Any) -> Any:
            seen.append(event.assoc.requestor.ae_title)
            return handler(event) if handler else 0x0000

        ae = scu(ae_title="PYSCP", **attrs)
        ae.add_supported_context(VERIFICATION)
        server = ae.start_server(
            ("127.0.0.1", 0), block=False, evt_handlers=[(evt.EVT_C_ECHO, on_echo)]
        )
        assert server is not None
        assert server.socket is not None
        servers.append(server)
        return int(server.socket.getsockname()[1]), seen

    try:
        yield start
    finally:
        for server in servers:
            server.shutdown()


def test_our_echo_against_pynetdicom(pynetdicom_scp: Callable[..., tuple[int, list[Any]]]) -> None:
    port, seen = pynetdicom_scp()

    async def main() -> list[int]:
        async with await our_association(port) as assoc:
            (context,) = assoc.negotiated.contexts.values()
            assert (context.id, context.abstract_syntax, context.transfer_syntax) == (
                1,
                VERIFICATION,
                IMPLICIT_VR_LE,
            )
            assert assoc.negotiated.peer_max_pdu == 16382  # pynetdicom's default
            return [await assoc.echo() for _ in range(3)]

    assert asyncio.run(main()) == [0x0000, 0x0000, 0x0000]
    assert seen == ["OURSCU", "OURSCU", "OURSCU"]


def test_our_echo_with_failure_status(pynetdicom_scp: Callable[..., tuple[int, list[Any]]]) -> None:
    """A non-Success C-ECHO status comes back as the return value, not an exception."""
    port, _ = pynetdicom_scp(lambda event: 0x0122)
    assert our_echoes(port) == [0x0122]


@pytest.mark.parametrize(
    ("attrs", "called", "rj"),
    [
        ({"require_called_aet": True}, "NOT-PYSCP", AAssociateRj(1, 1, 7)),
        ({"require_calling_aet": ["SOMEONE"]}, "PYSCP", AAssociateRj(1, 1, 3)),
    ],
    ids=["called", "calling"],
)
def test_our_scu_rejected_by_pynetdicom(
    pynetdicom_scp: Callable[..., tuple[int, list[Any]]],
    attrs: dict[str, Any],
    called: str,
    rj: AAssociateRj,
) -> None:
    port, seen = pynetdicom_scp(**attrs)
    with pytest.raises(AssociationRejected) as info:
        asyncio.run(our_association(port, called))
    assert info.value.rj == rj
    assert info.value.code == "net.association.rejected"
    reason = "called" if rj.reason == 7 else "calling"
    assert str(info.value) == f"rejected-permanent, service user: {reason} AE title not recognized"
    assert seen == []


def test_pynetdicom_aborts_during_echo(
    pynetdicom_scp: Callable[..., tuple[int, list[Any]]],
) -> None:
    port, seen = pynetdicom_scp(lambda event: event.assoc.abort())
    with pytest.raises(AssociationAborted) as info:
        our_echoes(port)
    # pynetdicom's user abort: A-ABORT source 0 (service user), reason 0.
    assert str(info.value) == "association aborted by the peer (source 0, reason 0)"
    assert seen == ["OURSCU"]


def test_pynetdicom_handler_raising_still_answers(
    pynetdicom_scp: Callable[..., tuple[int, list[Any]]],
    caplog: pytest.LogCaptureFixture,
) -> None:
    """pynetdicom answers Success when a C-ECHO handler raises (its documented default)."""

    def boom(event: Any) -> int:
        raise RuntimeError("handler failed")

    caplog.set_level(logging.CRITICAL, logger="pynetdicom")  # it logs the traceback
    port, seen = pynetdicom_scp(boom)
    assert our_echoes(port) == [0x0000]
    assert seen == ["OURSCU"]
