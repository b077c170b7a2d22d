"""Checks shared by the C-STORE interop tests: what a peer sent is what we stored.

A stored instance is checked from the outside, independently of the node's own
readers: the Part 10 file is split with a small File Meta parser written here
(PS3.10 7.1: preamble, ``DICM``, group 0002 in Explicit VR Little Endian) and
read by pydicom's ``dcmread`` and by DCMTK's ``dcmdump``.

"Exactly the data set that was sent" is checked against the wire, not against
the sender's file: DCMTK's storescu and dcmsend re-encode every data set they
send (undefined-length sequences become defined-length, Data Set Trailing
Padding is dropped), even in the file's own transfer syntax. :class:`WireTap`
is a TCP relay between the SCU and the node that records what the SCU sent; its
own small PDU parser (PS3.8 9.3) reassembles each C-STORE's command and data
set and reads the transfer syntax the node accepted for each context from the
A-ASSOCIATE-AC. The stored data set must be those bytes, byte for byte; its
element values must also be the source file's (pydicom, byte-order neutral).
The index is read through the node's own :class:`archive.index.Index` on the
node's event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import re
import socket
import struct
import threading
import zlib
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

import msgspec
import pydicom
from pydicom.data import get_testdata_file
from pydicom.dataset import Dataset
from pydicom.multival import MultiValue
from pydicom.valuerep import PersonName

from archive.dicom.uids import IMPLEMENTATION_CLASS_UID
from archive.index import Index, InstanceRow, Stats, StoredInstance
from archive.store import relative_path
from tests.conftest import RunningNode, require_tool
from tests.dicom.header_helpers import as_indexed_date
from tests.interop.conftest import HOST, run_tool

__all__ = [
    "DEFLATED",
    "EXPLICIT_BE",
    "EXPLICIT_LE",
    "IMPLICIT",
    "NO_CALLED_AE_CHECK",
    "Sent",
    "Source",
    "WireTap",
    "assert_dcmdump_clean",
    "assert_nothing_stored",
    "assert_stored",
    "comparable",
    "expected_attributes",
    "index_record",
    "index_row",
    "index_stats",
    "pydicom_file",
    "split_part10",
    "storescu_statuses",
]

IMPLICIT = "1.2.840.10008.1.2"
EXPLICIT_LE = "1.2.840.10008.1.2.1"
DEFLATED = "1.2.840.10008.1.2.1.99"
EXPLICIT_BE = "1.2.840.10008.1.2.2"

NO_CALLED_AE_CHECK = "[association]\ncheck_called_ae = false\n"

#: VRs whose values are words swapped by the byte order (PS3.5 7.3): word size.
_WORD_VRS = {"OW": 2, "OF": 4, "OL": 4, "OD": 8, "OV": 8}
#: Explicit VR elements with a 2-reserved-byte + 32-bit length header (PS3.5 7.1.2).
_LONG_VRS = frozenset(
    {b"OB", b"OD", b"OF", b"OL", b"OV", b"OW", b"SQ", b"SV", b"UC", b"UN", b"UR", b"UT", b"UV"}
)
#: Data Set Trailing Padding (PS3.10 7.2): senders may drop it.
_TRAILING_PADDING = 0xFFFCFFFC


def pydicom_file(name: str) -> Path:
    """A file shipped in pydicom's own test data (no download)."""
    return Path(str(get_testdata_file(name, download=False)))


def split_part10(data: bytes) -> tuple[bytes, bytes]:
    """(preamble + ``DICM`` + group 0002, data set bytes) of a Part 10 file (PS3.10 7.1).

    Walks group 0002 element by element (Explicit VR Little Endian) rather than
    trusting File Meta Information Group Length, so a wrong group length shows
    up as a difference, not as a shifted split.
    """
    assert data[128:132] == b"DICM", "no DICM prefix at offset 128"
    pos = 132
    while pos + 8 <= len(data):
        group, _element = struct.unpack_from("<HH", data, pos)
        if group != 0x0002:
            break
        vr = data[pos + 4 : pos + 6]
        if vr in _LONG_VRS:
            (length,) = struct.unpack_from("<L", data, pos + 8)
            pos += 12 + length
        else:
            (length,) = struct.unpack_from("<H", data, pos + 6)
            pos += 8 + length
    return data[:pos], data[pos:]


@dataclass(frozen=True)
class Source:
    """A file a peer sends: its UIDs, transfer syntax and data set bytes."""

    path: Path
    sop_class_uid: str
    sop_instance_uid: str
    transfer_syntax_uid: str
    dataset: bytes

    @classmethod
    def read(cls, path: Path) -> Source:
        ds = pydicom.dcmread(path, stop_before_pixels=True)
        _meta, dataset = split_part10(path.read_bytes())
        return cls(
            path=path,
            sop_class_uid=str(ds.SOPClassUID),
            sop_instance_uid=str(ds.SOPInstanceUID),
            transfer_syntax_uid=str(ds.file_meta.TransferSyntaxUID),
            dataset=dataset,
        )


# ---- the wire ----------------------------------------------------------------------------


@dataclass
class Sent:
    """One C-STORE-RQ as it crossed the wire (PS3.7 9.3.1.1)."""

    context_id: int
    #: The transfer syntax the A-ASSOCIATE-AC accepted for ``context_id``.
    transfer_syntax: str
    affected_sop_class_uid: str
    affected_sop_instance_uid: str
    dataset: bytes
    #: How many PDVs carried the data set.
    fragments: int


def _command_uid(command: bytes, tag: int) -> str:
    """A UI value from a command set (always Implicit VR LE, PS3.7 6.3.1)."""
    pos = 0
    while pos + 8 <= len(command):
        group, element, length = struct.unpack_from("<HHL", command, pos)
        if (group << 16) | element == tag:
            return command[pos + 8 : pos + 8 + length].rstrip(b"\0 ").decode("ascii")
        pos += 8 + length
    return ""


def _pdus(stream: bytes) -> Iterable[tuple[int, bytes]]:
    """(type, body) of each whole PDU in a recorded stream (PS3.8 9.3.1)."""
    pos = 0
    while pos + 6 <= len(stream):
        pdu_type = stream[pos]
        (length,) = struct.unpack_from(">L", stream, pos + 2)
        yield pdu_type, stream[pos + 6 : pos + 6 + length]
        pos += 6 + length


def _accepted_syntaxes(stream: bytes) -> dict[int, str]:
    """Context ID -> transfer syntax of the accepted contexts in an A-ASSOCIATE-AC."""
    out: dict[int, str] = {}
    for pdu_type, body in _pdus(stream):
        if pdu_type != 0x02:
            continue
        pos = 68  # protocol version .. application context start (PS3.8 9.3.3)
        while pos + 4 <= len(body):
            item_type = body[pos]
            (length,) = struct.unpack_from(">H", body, pos + 2)
            item = body[pos + 4 : pos + 4 + length]
            # Presentation Context item (AC), PS3.8 9.3.3.2: id, _, result, _, sub-item.
            if item_type == 0x21 and item[2] == 0 and item[4] == 0x40:
                (ts_length,) = struct.unpack_from(">H", item, 6)
                out[item[0]] = item[8 : 8 + ts_length].rstrip(b"\0 ").decode("ascii")
            pos += 4 + length
    return out


def _messages(upstream: bytes, accepted: dict[int, str]) -> list[Sent]:
    """The C-STORE-RQs in what an SCU sent: PDVs reassembled (PS3.8 E.2)."""
    out: list[Sent] = []
    command = bytearray()
    dataset = bytearray()
    fragments = 0
    pending: tuple[int, bytes] | None = None  # a whole command waiting for its data set
    for pdu_type, body in _pdus(upstream):
        if pdu_type != 0x04:
            continue
        pos = 0
        while pos + 6 <= len(body):
            (length,) = struct.unpack_from(">L", body, pos)
            context_id, control = body[pos + 4], body[pos + 5]
            data = body[pos + 6 : pos + 4 + length]
            pos += 4 + length
            if control & 0x01:
                command += data
                if control & 0x02:
                    pending = (context_id, bytes(command))
                    command.clear()
                continue
            dataset += data
            fragments += 1
            if control & 0x02:
                assert pending is not None, "a data set without a command"
                cx, cmd = pending
                out.append(
                    Sent(
                        context_id=cx,
                        transfer_syntax=accepted.get(cx, ""),
                        affected_sop_class_uid=_command_uid(cmd, 0x00000002),
                        affected_sop_instance_uid=_command_uid(cmd, 0x00001000),
                        dataset=bytes(dataset),
                        fragments=fragments,
                    )
                )
                dataset.clear()
                fragments = 0
                pending = None
    return out


@dataclass
class _Connection:
    upstream: bytearray = field(default_factory=bytearray)
    downstream: bytearray = field(default_factory=bytearray)
    threads: list[threading.Thread] = field(default_factory=list)


class WireTap:
    """A TCP relay on 127.0.0.1 to the node that records what each SCU sends.

    ``with WireTap(node.port) as tap:`` point the SCU at ``tap.port``; after the
    SCU is done, :meth:`sent` is every C-STORE-RQ of every connection, keyed by
    Affected SOP Instance UID. Every socket operation has a timeout, and all
    threads are joined on exit.
    """

    def __init__(self, target_port: int, *, timeout: float = 15.0) -> None:
        self.target_port = target_port
        self.timeout = timeout
        self._listener = socket.create_server((HOST, 0))
        self._listener.settimeout(0.1)
        self.port: int = self._listener.getsockname()[1]
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._connections: list[_Connection] = []
        self._sockets: list[socket.socket] = []
        self._acceptor = threading.Thread(target=self._accept, daemon=True)
        self._acceptor.start()

    def __enter__(self) -> WireTap:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                client, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            server = socket.create_connection((HOST, self.target_port), timeout=self.timeout)
            conn = _Connection()
            for sock in (client, server):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                sock.settimeout(0.1)
            conn.threads = [
                threading.Thread(target=self._pump, args=(client, server, conn.upstream)),
                threading.Thread(target=self._pump, args=(server, client, conn.downstream)),
            ]
            with self._lock:
                self._connections.append(conn)
                self._sockets += [client, server]
            for thread in conn.threads:
                thread.daemon = True
                thread.start()

    def _pump(self, src: socket.socket, dst: socket.socket, record: bytearray) -> None:
        while not self._stop.is_set():
            try:
                chunk = src.recv(65536)
            except TimeoutError:
                continue
            except OSError:
                chunk = b""
            if not chunk:
                with contextlib.suppress(OSError):
                    dst.shutdown(socket.SHUT_WR)
                return
            record += chunk
            try:
                dst.sendall(chunk)
            except OSError:
                return

    def _join(self) -> list[_Connection]:
        with self._lock:
            connections = list(self._connections)
        for conn in connections:
            for thread in conn.threads:
                thread.join(self.timeout)
                assert not thread.is_alive(), "a tapped connection is still open"
        return connections

    def sent(self) -> dict[str, Sent]:
        """Every C-STORE-RQ sent through the tap so far, by SOP Instance UID.

        Call once the SCU has finished: waits for every connection to close.
        """
        out: dict[str, Sent] = {}
        for conn in self._join():
            accepted = _accepted_syntaxes(bytes(conn.downstream))
            for message in _messages(bytes(conn.upstream), accepted):
                out[message.affected_sop_instance_uid] = message
        return out

    def close(self) -> None:
        self._stop.set()
        self._acceptor.join(self.timeout)
        self._listener.close()
        with self._lock:
            sockets = list(self._sockets)
        for sock in sockets:
            with contextlib.suppress(OSError):
                sock.close()
        self._join()


# ---- the node's side -----------------------------------------------------------------------


def _on_node(node: RunningNode, coro: Any) -> Any:
    assert node.loop is not None
    return asyncio.run_coroutine_threadsafe(coro, node.loop).result(10)


def _index(node: RunningNode) -> Index:
    assert node.node is not None
    index = node.node.storage.index
    assert index is not None
    return index


def index_row(node: RunningNode, sop_instance_uid: str) -> InstanceRow | None:
    """The node's index row for an instance, read on the node's loop."""
    row: InstanceRow | None = _on_node(node, _index(node).instance(sop_instance_uid))
    return row


def index_record(node: RunningNode, sop_instance_uid: str) -> StoredInstance | None:
    """The node's full index record (decoded attributes) for an instance."""
    record: StoredInstance | None = _on_node(node, _index(node).record(sop_instance_uid))
    return record


#: Index attributes checked against pydicom's reading: (field, keyword, is integer).
_PATIENT_LEVEL = (
    ("patient_id", "PatientID", False),
    ("patient_name", "PatientName", False),
    ("patient_birth_date", "PatientBirthDate", False),
    ("patient_sex", "PatientSex", False),
)
_OTHER_LEVELS = (
    ("study_instance_uid", "StudyInstanceUID", False),
    ("study_date", "StudyDate", False),
    ("accession_number", "AccessionNumber", False),
    ("study_description", "StudyDescription", False),
    ("series_instance_uid", "SeriesInstanceUID", False),
    ("modality", "Modality", False),
    ("series_number", "SeriesNumber", True),
    ("sop_class_uid", "SOPClassUID", False),
    ("sop_instance_uid", "SOPInstanceUID", False),
    ("instance_number", "InstanceNumber", True),
    ("number_of_frames", "NumberOfFrames", True),
    ("rows", "Rows", True),
    ("columns", "Columns", True),
)


def expected_attributes(ds: Dataset, *, patient: bool = True) -> dict[str, object]:
    """What the index should hold for ``ds``, as pydicom decodes it (PS3.5 6.1).

    Person names are compared as their component groups joined by ``=`` (PS3.5
    6.2.1), not pydicom's formatted ``str()``, which drops empty components, each
    group without its trailing empty components (PS3.5 6.2.1.1 lets a sender omit
    them, and the index does).
    """
    out: dict[str, object] = {}
    for name, keyword, integer in (*_PATIENT_LEVEL, *_OTHER_LEVELS) if patient else _OTHER_LEVELS:
        value = ds.get(keyword)
        if integer:
            out[name] = None if value is None or value == "" else int(value)
        elif isinstance(value, PersonName):
            out[name] = "=".join(c.rstrip("^") for c in value.components).rstrip("=")
        else:
            out[name] = "" if value is None else str(value).strip(" \0")
        if name.endswith("_date"):
            out[name] = as_indexed_date(str(out[name]))
    return out


def index_stats(node: RunningNode) -> Stats:
    stats: Stats = _on_node(node, _index(node).stats())
    return stats


def _swap(value: bytes, size: int) -> bytes:
    return b"".join(value[i : i + size][::-1] for i in range(0, len(value), size))


def comparable(ds: Dataset, *, big_endian: bool) -> list[tuple[int, Any]]:
    """A data set as (tag, value) pairs, byte-order neutral, sequences recursed.

    pydicom keeps OW/OF/OL/OD/OV values as the raw bytes of the file, so a big
    endian source and its little endian conversion hold the same words in
    different byte orders: those values are brought to little endian here. The
    VR is left out (an Implicit VR data set's VRs come from the dictionary), and
    so are group lengths and Data Set Trailing Padding, which senders may drop.
    """
    out: list[tuple[int, Any]] = []
    for elem in ds:
        tag = int(elem.tag)
        if tag & 0xFFFF == 0 or tag == _TRAILING_PADDING:
            continue
        value: Any = elem.value
        if elem.VR == "SQ":
            value = [comparable(item, big_endian=big_endian) for item in value]
        elif isinstance(value, bytes):
            size = _WORD_VRS.get(elem.VR, 1)
            if big_endian and size > 1:
                value = _swap(value, size)
        elif isinstance(value, MultiValue):
            value = list(value)
        out.append((tag, value))
    return out


def _values(path: Path) -> list[tuple[int, Any]]:
    ds = pydicom.dcmread(path)
    return comparable(ds, big_endian=ds.file_meta.TransferSyntaxUID == EXPLICIT_BE)


def _inflate(data: bytes) -> bytes:
    """Deflated Explicit VR LE data set bytes inflated (raw deflate, PS3.5 A.5)."""
    return zlib.decompressobj(-zlib.MAX_WBITS).decompress(data)


def assert_stored(
    node: RunningNode,
    source: Source,
    *,
    sent: Sent | None,
    source_ae: str,
    transfer_syntax: str | None = None,
) -> Path:
    """``source`` is stored, indexed and intact; returns the stored file's path.

    ``sent``: the C-STORE as the tap saw it; the stored data set must be its
    bytes exactly, in the transfer syntax accepted for its context. Without a
    tap (a sender known to send files as they are), the source file's data set
    bytes are the reference, in ``transfer_syntax`` (default: the file's own).
    Either way the element values must be the source file's.
    """
    if sent is not None:
        assert sent.affected_sop_class_uid == source.sop_class_uid
        ts = sent.transfer_syntax
        expected = sent.dataset
    else:
        ts = transfer_syntax or source.transfer_syntax_uid
        expected = source.dataset
    stored = Path(node.config.node.data_dir) / relative_path(source.sop_instance_uid)
    assert stored.is_file(), f"{source.path.name}: nothing at {stored}"
    raw = stored.read_bytes()
    meta_bytes, dataset = split_part10(raw)

    ds = pydicom.dcmread(stored)
    meta = ds.file_meta
    assert meta.MediaStorageSOPClassUID == source.sop_class_uid
    assert meta.MediaStorageSOPInstanceUID == source.sop_instance_uid
    assert meta.TransferSyntaxUID == ts
    # PS3.10 7.1: the writer's (our) implementation, version 00 01, exact group length.
    assert meta.FileMetaInformationVersion == b"\x00\x01"
    assert meta.ImplementationClassUID == IMPLEMENTATION_CLASS_UID
    assert meta.FileMetaInformationGroupLength == len(meta_bytes) - 132 - 12
    assert str(meta.SourceApplicationEntityTitle).strip() == source_ae
    assert ds.SOPInstanceUID == source.sop_instance_uid

    assert dataset == expected, f"{source.path.name}: data set bytes differ from those sent"
    if ts == DEFLATED and source.transfer_syntax_uid == DEFLATED:
        assert _inflate(dataset) == _inflate(source.dataset)
    assert _values(stored) == _values(source.path), f"{source.path.name}: values differ"

    row = index_row(node, source.sop_instance_uid)
    assert row is not None, f"{source.path.name}: no index row"
    assert row.path == relative_path(source.sop_instance_uid)
    assert row.sop_class_uid == source.sop_class_uid
    assert row.transfer_syntax_uid == ts
    assert row.size == len(raw)
    assert row.digest == hashlib.sha256(dataset).hexdigest()
    record = index_record(node, source.sop_instance_uid)
    assert record is not None
    attrs = msgspec.structs.asdict(record.attrs)
    # Patient attributes live on the patient row, shared by every instance with the
    # same Patient ID: only a non-empty ID makes them this instance's own.
    wanted = expected_attributes(ds, patient=bool(ds.get("PatientID")))
    indexed = {k: attrs[k] for k in wanted}
    assert indexed == wanted, f"{source.path.name}: " + ", ".join(
        f"{k}: indexed {indexed[k]!r}, pydicom {v!r}" for k, v in wanted.items() if indexed[k] != v
    )
    assert record.source_ae == source_ae
    return stored


def assert_dcmdump_clean(paths: Iterable[Path]) -> None:
    """DCMTK's dcmdump reads every file: exit 0, no error, fatal or warning line."""
    dcmdump = require_tool("dcmdump")
    files = [str(p) for p in paths]
    assert files
    rc, out = run_tool([dcmdump, *files])
    assert rc == 0, out
    errors = [line for line in out.splitlines() if line.startswith(("E:", "F:", "W:"))]
    assert errors == [], "\n".join(errors)
    # One "# Dicom-File-Format" header per file read.
    assert out.count("# Dicom-File-Format") == len(files)


def assert_nothing_stored(node: RunningNode) -> None:
    """No instance file, no part file, no index row."""
    data = Path(node.config.node.data_dir)
    assert [p for p in (data / "instances").rglob("*") if p.is_file()] == []
    assert [p for p in (data / "tmp").rglob("*") if p.is_file()] == []
    assert index_stats(node).instances == 0


_STATUS = re.compile(r"Received Store Response \(([^)]*)\)")


def storescu_statuses(output: str) -> list[str]:
    """The status of every C-STORE-RSP in storescu's verbose log, in order."""
    return _STATUS.findall(output)
