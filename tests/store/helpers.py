"""Shared helpers of the store tests: make data sets, send them, read what was stored.

Data sets are built with pydicom and encoded with the same function pynetdicom uses
to put them on the wire (:func:`pynetdicom.dsutils.encode`), so "the bytes the SCU
sent" are known exactly. Stored files are read back without our own code: the File
Meta is walked here and by pydicom, the index is read with a read-only ``sqlite3``
connection (or :meth:`archive.index.Index.record` on the node's loop).
"""

from __future__ import annotations

import asyncio
import ctypes
import functools
import hashlib
import mmap
import os
import platform
import random
import signal
import socket
import sqlite3
import struct
import subprocess
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

import pytest
from pydicom import Dataset
from pydicom.dataset import FileMetaDataset
from pydicom.uid import UID, generate_uid
from pynetdicom import AE
from pynetdicom.dsutils import encode

from archive.dicom.dimse import CStoreRq, CStoreRsp
from archive.dicom.uids import (
    DEFLATED_EXPLICIT_VR_LE,
    EXPLICIT_VR_BE,
    EXPLICIT_VR_LE,
    IMPLICIT_VR_LE,
)
from archive.dicom.ul.pdu import AAssociateAc
from archive.errors import ArchiveError
from archive.index import StoredInstance
from archive.net import Timeouts, associate
from archive.store import relative_path
from archive.store.sync import load_syncfs
from tests.conftest import RunningNode
from tests.interop.conftest import archive_command, stop, wait_listening
from tests.net.rawpeer import RawPeer

HOST = "127.0.0.1"
#: CT Image Storage, PS3.4 B.5.
CT_IMAGE = "1.2.840.10008.5.1.4.1.1.2"
#: Secondary Capture Image Storage, PS3.4 B.5.
SECONDARY_CAPTURE = "1.2.840.10008.5.1.4.1.1.7"
#: Multi-frame Grayscale Word Secondary Capture Image Storage, PS3.4 B.5.
MULTIFRAME_GRAYSCALE_WORD_SC = "1.2.840.10008.5.1.4.1.1.7.3"

NATIVE = (IMPLICIT_VR_LE, EXPLICIT_VR_LE, EXPLICIT_VR_BE, DEFLATED_EXPLICIT_VR_LE)

#: PS3.7 C: the statuses the tests expect.
SUCCESS = 0x0000
DUPLICATE = 0x0111
INVALID_SOP_INSTANCE = 0x0117
OUT_OF_RESOURCES = 0xA700
DOES_NOT_MATCH = 0xA900
CANNOT_UNDERSTAND = 0xC000


def new_uid() -> str:
    uid: str = generate_uid()
    return uid


def make_dataset(
    *,
    sop_instance_uid: str | None = None,
    study_uid: str | None = None,
    series_uid: str | None = None,
    sop_class: str = CT_IMAGE,
    patient_name: str = "Doe^John",
    patient_id: str = "PID-1",
    charset: str | None = None,
    modality: str = "CT",
    instance_number: int = 1,
    series_number: int = 1,
    pixel_bytes: int = 0,
    seed: int = 0,
) -> Dataset:
    """A small composite instance with the attributes the index keeps.

    ``pixel_bytes`` > 0 adds an 8-bit monochrome image of about that many bytes
    (random but reproducible from ``seed``).
    """
    ds = Dataset()
    if charset is not None:
        ds.SpecificCharacterSet = charset
    ds.SOPClassUID = sop_class
    ds.SOPInstanceUID = sop_instance_uid or new_uid()
    ds.StudyDate = "20240102"
    ds.StudyTime = "101500"
    ds.AccessionNumber = "ACC-1"
    ds.Modality = modality
    ds.ReferringPhysicianName = "Ref^Doctor"
    ds.StudyDescription = "Head"
    ds.SeriesDescription = "Axial"
    ds.PatientName = patient_name
    ds.PatientID = patient_id
    ds.PatientBirthDate = "19700101"
    ds.PatientSex = "O"
    ds.StudyInstanceUID = study_uid or new_uid()
    ds.SeriesInstanceUID = series_uid or new_uid()
    ds.StudyID = "S1"
    ds.SeriesNumber = series_number
    ds.InstanceNumber = instance_number
    if pixel_bytes > 0:
        columns = 64
        while pixel_bytes // columns > 0xFFFF:
            columns *= 4
        rows = max(1, pixel_bytes // columns)
        ds.SamplesPerPixel = 1
        ds.PhotometricInterpretation = "MONOCHROME2"
        ds.Rows = rows
        ds.Columns = columns
        ds.BitsAllocated = 8
        ds.BitsStored = 8
        ds.HighBit = 7
        ds.PixelRepresentation = 0
        ds.add_new(0x7FE00010, "OB", random.Random(seed).randbytes(rows * columns))
    return ds


def encode_dataset(ds: Dataset, transfer_syntax: str) -> bytes:
    """The data set as pynetdicom puts it on the wire in ``transfer_syntax``."""
    implicit = transfer_syntax == IMPLICIT_VR_LE
    little = transfer_syntax != EXPLICIT_VR_BE
    data = encode(ds, implicit, little, transfer_syntax == DEFLATED_EXPLICIT_VR_LE)
    assert data is not None
    return data


def deflated_unchecked(**kwargs: Any) -> tuple[Dataset, bytes]:
    """An image of zeros, Deflated, whose stream lacks its last bytes (a sender that
    did not finish it). Past its header it inflates far beyond the ratio the
    C-STORE path checks within, so ingest stores it as received, unchecked, and
    answers Success (archive/dicom/header.py); a scan to the end of the stream
    finds it cut."""
    ds = make_dataset(pixel_bytes=4_000_000, **kwargs)
    ds.PixelData = bytes(len(ds.PixelData))
    return ds, encode_dataset(ds, DEFLATED_EXPLICIT_VR_LE)[:-8]


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# ---- sending ----------------------------------------------------------------------


def pynetdicom_store(
    port: int,
    datasets: Sequence[Dataset],
    transfer_syntax: str,
    *,
    calling_ae: str = "STORESCU",
    called_ae: str = "ARCHIVE",
) -> list[int]:
    """C-STORE each data set on one pynetdicom association; the statuses."""
    ae = AE(ae_title=calling_ae)
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = 20
    for sop_class in sorted({str(ds.SOPClassUID) for ds in datasets}):
        ae.add_requested_context(sop_class, [transfer_syntax])
    assoc = ae.associate(HOST, port, ae_title=called_ae)
    assert assoc.is_established, "association with the node failed"
    statuses: list[int] = []
    try:
        for ds in datasets:
            # pynetdicom picks the context from the file meta's transfer syntax.
            ds.file_meta = _meta(ds, transfer_syntax)
            status = assoc.send_c_store(ds)
            statuses.append(int(status.Status) if "Status" in status else -1)
    finally:
        assoc.release()
    return statuses


def _meta(ds: Dataset, transfer_syntax: str) -> FileMetaDataset:
    meta = FileMetaDataset()
    meta.TransferSyntaxUID = UID(transfer_syntax)
    meta.MediaStorageSOPClassUID = ds.SOPClassUID
    meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    return meta


class Item:
    """One instance to send with our SCU: command UIDs and the data set bytes."""

    def __init__(self, sop_class: str, sop_instance_uid: str, data: bytes) -> None:
        self.sop_class = sop_class
        self.uid = sop_instance_uid
        self.data = data

    @classmethod
    def of(cls, ds: Dataset, transfer_syntax: str) -> Item:
        return cls(str(ds.SOPClassUID), str(ds.SOPInstanceUID), encode_dataset(ds, transfer_syntax))


async def chunked(data: bytes, size: int = 16384) -> AsyncIterator[bytes]:
    for start in range(0, len(data), size):
        yield data[start : start + size]


async def archive_store_async(
    port: int,
    items: Sequence[Item],
    transfer_syntax: str,
    *,
    calling_ae: str = "OURSCU",
    called_ae: str = "ARCHIVE",
    max_pdu_length: int = 65536,
    chunk: int = 16384,
) -> list[CStoreRsp]:
    """C-STORE each item with our own SCU on one association; the responses."""
    contexts = [(c, [transfer_syntax]) for c in sorted({i.sop_class for i in items})]
    responses: list[CStoreRsp] = []
    async with await associate(
        HOST,
        port,
        calling_ae=calling_ae,
        called_ae=called_ae,
        contexts=contexts,
        max_pdu_length=max_pdu_length,
        timeouts=Timeouts(artim=10, network=20, dimse=20, connect=5),
    ) as assoc:
        for item in items:
            context = assoc.negotiated.context_for(item.sop_class, transfer_syntax)
            assert context is not None, f"{item.sop_class} in {transfer_syntax} not accepted"
            rq = CStoreRq(
                message_id=assoc.next_message_id(),
                affected_sop_class_uid=item.sop_class,
                affected_sop_instance_uid=item.uid,
            )
            responses.append(await assoc.store(context.id, rq, chunked(item.data, chunk)))
    return responses


def archive_store(port: int, items: Sequence[Item], transfer_syntax: str, **kw: Any) -> list[int]:
    """:func:`archive_store_async` from synchronous code; the statuses."""
    responses = asyncio.run(archive_store_async(port, items, transfer_syntax, **kw))
    return [rsp.status for rsp in responses]


# ---- reading what was stored -------------------------------------------------------


def data_dir(node: RunningNode) -> Path:
    return Path(node.config.node.data_dir)


def stored_path(root: Path, sop_instance_uid: str) -> Path:
    """The indexed file of an instance (a replacement lives beside the first
    version's place), else where a first version goes."""
    row = index_row(root, sop_instance_uid) if (root / "index.sqlite").exists() else None
    return root / (row["path"] if row is not None else relative_path(sop_instance_uid))


def split_part10(
    blob: bytes, *, zero_preamble: bool = True
) -> tuple[dict[int, tuple[bytes, bytes]], int]:
    """Group 0002 of a Part 10 file as {element: (VR, raw value)} and the data set offset.

    Walked element by element here (Explicit VR LE, PS3.10 7.1), independently of
    :mod:`archive.dicom.filemeta`.
    """
    if zero_preamble:
        assert blob[:128] == bytes(128), "preamble is not 128 zero bytes"
    assert blob[128:132] == b"DICM"
    offset = 132
    elements: dict[int, tuple[bytes, bytes]] = {}
    while offset + 8 <= len(blob):
        group, element = struct.unpack_from("<HH", blob, offset)
        if group != 0x0002:
            break
        vr = blob[offset + 4 : offset + 6]
        if vr in (b"OB", b"OW", b"UN", b"SQ", b"UT", b"UC", b"UR"):
            (length,) = struct.unpack_from("<L", blob, offset + 8)
            start = offset + 12
        else:
            (length,) = struct.unpack_from("<H", blob, offset + 6)
            start = offset + 8
        elements[element] = (vr, blob[start : start + length])
        offset = start + length
    return elements, offset


def read_stored(root: Path, sop_instance_uid: str) -> tuple[dict[int, tuple[bytes, bytes]], bytes]:
    """File Meta elements and data set bytes of the stored file."""
    blob = stored_path(root, sop_instance_uid).read_bytes()
    meta, offset = split_part10(blob)
    return meta, blob[offset:]


def ui(value: str) -> bytes:
    """A UI value as encoded: NUL-padded to even length (PS3.5 6.2)."""
    raw = value.encode()
    return raw + b"\0" if len(raw) % 2 else raw


def text(value: str) -> bytes:
    """An AE/SH value as encoded: space-padded to even length."""
    raw = value.encode()
    return raw + b" " if len(raw) % 2 else raw


def index_row(root: Path, sop_instance_uid: str) -> dict[str, Any] | None:
    """The instance row joined with its series, study and patient, read-only."""
    with _readonly(root) as conn:
        conn.row_factory = sqlite3.Row
        row = conn.execute(
            "SELECT i.*, se.series_instance_uid, se.modality, se.number_of_instances"
            " AS series_instances, st.study_instance_uid, st.number_of_series AS"
            " study_series, st.number_of_instances AS study_instances,"
            " st.modalities_in_study, st.sop_classes_in_study, p.patient_name,"
            " p.patient_id FROM instance i JOIN series se ON se.pk = i.series_pk"
            " JOIN study st ON st.pk = i.study_pk JOIN patient p ON p.pk = st.patient_pk"
            " WHERE i.sop_instance_uid = ?",
            (sop_instance_uid,),
        ).fetchone()
    return None if row is None else dict(row)


def all_rows(root: Path) -> dict[str, tuple[str, int, str]]:
    """Every instance row: uid -> (path, size, digest)."""
    with _readonly(root) as conn:
        rows = conn.execute("SELECT sop_instance_uid, path, size, digest FROM instance").fetchall()
    return {uid: (path, size, digest) for uid, path, size, digest in rows}


def readonly_query(root: Path, sql: str) -> list[Any]:
    """The rows of ``sql`` on the index, read without a writer."""
    with _readonly(root) as conn:
        return conn.execute(sql).fetchall()


class _readonly:
    def __init__(self, root: Path) -> None:
        self.conn = sqlite3.connect(f"file:{root / 'index.sqlite'}?mode=ro", uri=True, timeout=10)

    def __enter__(self) -> sqlite3.Connection:
        return self.conn

    def __exit__(self, *exc: object) -> None:
        self.conn.close()


def record(node: RunningNode, sop_instance_uid: str) -> StoredInstance | None:
    """:meth:`Index.record` run on the node's loop."""
    assert node.node is not None
    assert node.loop is not None
    index = node.node.storage.index
    assert index is not None
    future = asyncio.run_coroutine_threadsafe(index.record(sop_instance_uid), node.loop)
    return future.result(10)


def files_under(root: Path, *patterns: str) -> list[Path]:
    """Every file under ``root`` matching any of ``patterns`` (recursive)."""
    found: list[Path] = []
    for pattern in patterns:
        found.extend(p for p in root.rglob(pattern) if p.is_file())
    return sorted(found)


def leftovers(root: Path) -> list[Path]:
    """What must never stay behind: anything in tmp/, part and staging files."""
    tmp = [p for p in (root / "tmp").iterdir()] if (root / "tmp").exists() else []
    return sorted({*tmp, *files_under(root, "*.part", "*.new")})


def instance_files(root: Path) -> list[Path]:
    return files_under(root / "instances", "*.dcm") if (root / "instances").exists() else []


def pid_rss(pid: int) -> tuple[int, int]:
    """(VmRSS, VmHWM) of a process in bytes, from /proc/PID/status."""
    values = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            key, _, rest = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                values[key] = int(rest.split()[0]) * 1024
    return values["VmRSS"], values["VmHWM"]


def spawn(
    root: Path, port: int, log: Path, *, config: Path | None = None
) -> subprocess.Popen[bytes]:
    """``archive serve`` on 127.0.0.1:``port`` with data folder ``root`` (and the
    configuration file ``config``, if given), its output appended to ``log``;
    not waited for."""
    command = [*archive_command(), "serve", "--data", str(root), "--port", str(port)]
    if config is not None:
        command += ["--config", str(config)]
    with log.open("ab") as sink:
        return subprocess.Popen(
            [*command, "--host", HOST],
            stdin=subprocess.DEVNULL,
            stdout=sink,
            stderr=subprocess.STDOUT,
        )


def serve(
    root: Path, port: int, log: Path, *, config: Path | None = None
) -> subprocess.Popen[bytes]:
    """:func:`spawn`, once it listens."""
    proc = spawn(root, port, log, config=config)
    try:
        wait_listening(port, proc, 20)
    except BaseException:
        stop(proc)
        raise
    return proc


def fixed_port() -> int:
    """A free port below the ephemeral range, for a server restarted on the same port.

    Clients that reconnect in a loop while the server is down could otherwise be
    given that very port as their source port and connect to themselves (TCP
    simultaneous open), which would keep the restarted server from binding it.
    """
    with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
        low = int(f.read().split()[0])
    rng = random.Random()
    for _ in range(200):
        port = rng.randrange(max(1024, low - 12000), low)
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            try:
                sock.bind((HOST, port))
            except OSError:
                continue
            return port
    raise RuntimeError("no free port below the ephemeral range")


#: Tests of flush = "batch" itself: it falls back to "file" where syncfs cannot be
#: relied on (not Linux 5.8+), so there they would test the fallback instead.
needs_syncfs = pytest.mark.skipif(
    load_syncfs() is None, reason="no reliable syncfs here (Linux 5.8+): flush = file"
)


def evict(path: Path) -> None:
    """Take ``path`` out of the page cache: flushed first, its clean pages then dropped."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)


class _CachestatRange(ctypes.Structure):
    _fields_ = (("off", ctypes.c_uint64), ("len", ctypes.c_uint64))


class _Cachestat(ctypes.Structure):
    _fields_ = tuple(
        (name, ctypes.c_uint64)
        for name in ("nr_cache", "nr_dirty", "nr_writeback", "nr_evicted", "nr_recently_evicted")
    )


_LIBC = ctypes.CDLL(None, use_errno=True)
#: cachestat(2)'s number on x86-64 and arm64 (Linux 6.5+).
_NR_CACHESTAT = 451


def cachestat(fd: int) -> int | None:
    """Pages of the open file ``fd`` in the page cache, by cachestat(2), which reads
    nothing (so starts no readahead); None where the kernel lacks it."""
    if platform.machine() not in ("x86_64", "aarch64"):
        return None
    answer = _Cachestat()
    whole = _CachestatRange(0, 0)  # len 0: to the end of the file
    if _LIBC.syscall(_NR_CACHESTAT, fd, ctypes.byref(whole), ctypes.byref(answer), 0) != 0:
        return None
    return int(answer.nr_cache)


F = TypeVar("F")


def twins(name: str, twin: F) -> dict[str, F]:
    """A native function and its pure-Python twin, by implementation name: the
    twin always, ``archive._native.<name>`` where the extension was built."""
    found = {"python": twin}
    try:
        from archive import _native
    except ImportError:  # pragma: no cover - only where no C compiler built it
        return found
    found["native"] = getattr(_native, name)
    return found


def dirty_pages(path: Path) -> int | None:
    """Dirty pages of ``path`` (not yet handed to writeback), by cachestat(2); None
    where the kernel lacks it."""
    if platform.machine() not in ("x86_64", "aarch64"):
        return None
    fd = os.open(path, os.O_RDONLY)
    try:
        answer = _Cachestat()
        whole = _CachestatRange(0, 0)
        if _LIBC.syscall(_NR_CACHESTAT, fd, ctypes.byref(whole), ctypes.byref(answer), 0) != 0:
            return None
        return int(answer.nr_dirty)
    finally:
        os.close(fd)


def _has_cachestat() -> bool:
    fd = os.open(__file__, os.O_RDONLY)  # any regular file
    try:
        return cachestat(fd) is not None
    finally:
        os.close(fd)


needs_cachestat = pytest.mark.skipif(not _has_cachestat(), reason="no cachestat(2) (Linux 6.5+)")


def _has_openat2() -> bool:
    from archive.store import scan

    fd = scan.open_cached_py(__file__)  # the twin: the native one makes the same call
    if fd < 0:
        return False
    os.close(fd)
    return True


#: openat2 with RESOLVE_CACHED (Linux 5.12+, not refused by a seccomp profile).
needs_openat2 = pytest.mark.skipif(not _has_openat2(), reason="no openat2 RESOLVE_CACHED here")


def _mincore(fd: int, size: int) -> int:
    """Pages of the open file ``fd`` (``size`` bytes) in the page cache, by mincore(2)
    on a mapping never touched: nothing is read, no readahead starts."""
    mmap_ = _LIBC.mmap
    mmap_.restype = ctypes.c_void_p
    mmap_.argtypes = (ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int,
                      ctypes.c_int, ctypes.c_long)  # fmt: skip
    address = mmap_(None, size, mmap.PROT_READ, mmap.MAP_SHARED, fd, 0)
    if address in (None, ctypes.c_void_p(-1).value):
        raise OSError(ctypes.get_errno(), "mmap failed")
    try:
        pages = (size + mmap.PAGESIZE - 1) // mmap.PAGESIZE
        vector = (ctypes.c_ubyte * pages)()
        if _LIBC.mincore(ctypes.c_void_p(address), ctypes.c_size_t(size), vector) != 0:
            raise OSError(ctypes.get_errno(), "mincore failed")
        return sum(byte & 1 for byte in vector)
    finally:
        _LIBC.munmap(ctypes.c_void_p(address), ctypes.c_size_t(size))


def cached_pages(path: Path) -> tuple[int, int]:
    """(pages of ``path`` in the page cache, pages in all), by cachestat(2) or else
    mincore(2): neither reads, so probing starts no readahead (a read with
    ``RWF_NOWAIT`` would, and later probes would find pages that were not there)."""
    size = path.stat().st_size
    total = (size + mmap.PAGESIZE - 1) // mmap.PAGESIZE
    fd = os.open(path, os.O_RDONLY)
    try:
        cached = cachestat(fd)
        if cached is None:
            cached = _mincore(fd, size) if size else 0
    finally:
        os.close(fd)
    return cached, total


def skip_unless_cache_drops(folder: Path) -> None:
    """Skip a test that needs clean pages of ``folder``'s files to leave the page cache
    on ``POSIX_FADV_DONTNEED`` (not so on tmpfs, whose pages are the files)."""
    probe = folder / "cache-probe"
    probe.write_bytes(b"x" * (4 * mmap.PAGESIZE))
    evict(probe)
    cached, _ = cached_pages(probe)
    probe.unlink()
    if cached:
        pytest.skip(f"{folder}: its files' pages do not leave the page cache (tmpfs?)")


def raw_association(node: RunningNode, abstract_syntax: str = CT_IMAGE) -> tuple[RawPeer, int]:
    """A raw association with ``node`` proposing one context (Explicit VR LE), and
    the id of that context, accepted."""
    peer = RawPeer(node.host, node.port, timeout=10)
    ac = peer.associate(
        calling_ae="RAWSCU", contexts=[(abstract_syntax, [EXPLICIT_VR_LE])], max_pdu_length=65536
    )
    assert isinstance(ac, AAssociateAc)
    (context,) = ac.contexts
    assert context.result == 0
    return peer, context.id


def is_part(fd: int) -> bool:
    """The descriptor is one of the store's part files (not sqlite, not a socket)."""
    try:
        return os.readlink(f"/proc/self/fd/{fd}").endswith(".part")
    except OSError:
        return False


def fail_part_writes(monkeypatch: pytest.MonkeyPatch, code: int) -> None:
    """Every ``os.writev`` to a part file fails with ``code``; other writes go on."""
    real = os.writev

    def writev(fd: int, buffers: Any) -> int:
        if is_part(fd):
            raise OSError(code, os.strerror(code))
        return real(fd, buffers)

    monkeypatch.setattr(os, "writev", writev)


# ---- crash tests' clients --------------------------------------------------------------

CRASH_CLIENTS = 4
CRASH_TIMEOUTS = Timeouts(artim=5, network=10, dimse=10, connect=2)
#: store(uid, data) -> the C-STORE-RSP's status, on a client's association.
StoreFn = Callable[[str, bytes], Awaitable[int]]


class CrashClients:
    """Four SCU associations (CRASH0-3, Explicit VR LE on the even ones, Implicit on
    the odd) storing until :meth:`stop`, reconnecting whenever the server is gone;
    a subclass says what each C-STORE sends (:meth:`store_one`). They run on a
    loop of their own in a thread, so the test can kill and restart the server."""

    def __init__(self, port: int, seed: int) -> None:
        self.port = port
        self.seed = seed
        self._stop = threading.Event()
        self._thread = threading.Thread(target=lambda: asyncio.run(self._main()), daemon=True)
        self._lock = threading.Lock()

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(30)
        assert not self._thread.is_alive(), "ingest clients did not stop"

    def count(self) -> int:
        """Stores acknowledged so far."""
        raise NotImplementedError

    async def store_one(self, rng: random.Random, syntax: str, store: StoreFn) -> None:
        raise NotImplementedError

    def kill_mid_ingest(self, proc: subprocess.Popen[bytes], pause: float) -> int:
        """Wait for a store acknowledged (so that the kill lands mid-ingest, not
        mid-start-up), ``pause`` seconds more, then SIGKILL ``proc``; how many
        were acknowledged meanwhile."""
        before = self.count()
        deadline = time.monotonic() + 10
        while self.count() == before and time.monotonic() < deadline:
            time.sleep(0.01)
        time.sleep(pause)
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
        return self.count() - before

    async def _main(self) -> None:
        await asyncio.gather(*(self._client(n) for n in range(CRASH_CLIENTS)))

    async def _client(self, n: int) -> None:
        rng = random.Random(self.seed * 100 + n)
        syntax = (EXPLICIT_VR_LE, IMPLICIT_VR_LE)[n % 2]
        while not self._stop.is_set():
            try:
                async with await associate(
                    HOST,
                    self.port,
                    calling_ae=f"CRASH{n}",
                    called_ae="ARCHIVE",
                    contexts=[(CT_IMAGE, [syntax])],
                    timeouts=CRASH_TIMEOUTS,
                ) as assoc:
                    context = assoc.negotiated.context_for(CT_IMAGE)
                    assert context is not None
                    store = functools.partial(_crash_store, assoc, context.id)
                    while not self._stop.is_set():
                        await self.store_one(rng, syntax, store)
            except (ArchiveError, OSError):
                await asyncio.sleep(0.02)  # the server is down: try again


async def _crash_store(assoc: Any, context_id: int, uid: str, data: bytes) -> int:
    rq = CStoreRq(
        message_id=assoc.next_message_id(),
        affected_sop_class_uid=CT_IMAGE,
        affected_sop_instance_uid=uid,
    )
    rsp = await assoc.store(context_id, rq, chunked(data, 8192))
    return int(rsp.status)


def terminate(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM, up to 20 s for a clean stop, then whatever it takes (``stop``)."""
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(20)
    finally:
        stop(proc)


def start_clean_and_stop(
    root: Path, port: int, log: Path, why: str, config: Path | None = None
) -> None:
    """A crash test's last start (recovery runs) and clean stop: nothing temporary
    is visible while it runs nor after."""
    proc = serve(root, port, log, config=config)
    try:
        assert leftovers(root) == [], why
    finally:
        terminate(proc)
    assert leftovers(root) == [], why
    assert files_under(root, "*.part", "*.new", "*.tmp") == [], why


def assert_index_and_files_agree(
    root: Path, rows: dict[str, tuple[str, int, str]], why: str
) -> None:
    """Every instance file has its row and every row its file (``rows``: SOP
    Instance UID -> path, size, digest), with the row's size and SHA-256."""
    on_disk = {p.relative_to(root).as_posix(): p for p in instance_files(root)}
    indexed = {path: (uid, size, digest) for uid, (path, size, digest) in rows.items()}
    assert sorted(set(on_disk) - set(indexed)) == [], f"files without a row {why}"
    assert sorted(set(indexed) - set(on_disk)) == [], f"rows without a file {why}"
    for relative, (uid, size, digest) in indexed.items():
        blob = on_disk[relative].read_bytes()
        _, offset = split_part10(blob)
        assert len(blob) == size, f"{uid}: size differs from its row {why}"
        assert sha256(blob[offset:]) == digest, f"{uid}: digest differs from its row {why}"
