"""Query/Retrieve servers and the SCU side shared by bench/find.py and bench/retrieve.py.

Each server is started by ``common.running`` (a child process on a free 127.0.0.1 port,
stopped by PID); this module says how: the argv and the configuration file each one
needs (a C-MOVE destination table, a storage area), written into its own folder.

- archive-node: ``archive serve --data DIR --peer DEST@127.0.0.1:P``.
- Orthanc 1.10.1: a launcher writes its JSON configuration (the ingest benchmark's
  plus ``DicomModalities`` and ``DicomAlwaysAllow*``) and exec()s Orthanc, keeping
  the PID; ``TCP_NODELAY=1`` as for every DCMTK-based program.
- pynetdicom's ``qrscp``: an ini file with its move destinations; sqlalchemy from
  ``bench/.cache/pydeps``. :data:`QRSCP_LOADER` fills its database through its own
  ``db.add_instance`` (what its C-STORE handler calls) for the 50k-instance C-FIND
  store, where storescu at ~70 instances/s would take twelve minutes.
- DCMTK ``dcmqrscp`` (forks per association): a ``dcmqrscp.cfg`` with one storage
  area (AE ``DCMQRSCP``, read-write) and the destination in its HostTable.
- the C-MOVE destination: DCMTK ``storescp --fork`` writing into a folder.

The SCU is ours (``archive.net.associate``) in the benchmark process, the same for
every server: :func:`identifier` encodes a query, :func:`timed_find` times one C-FIND.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import shutil
import subprocess
import sys
import time
import urllib.request
from collections.abc import AsyncIterator, Mapping, Sequence
from pathlib import Path

from common import DCMTK_ENV, HOST, free_port

from archive.dicom.dataset import Element, encode_dataset
from archive.dicom.dictionary import tag_for_keyword, vr_of
from archive.dicom.dimse import StatusCategory, category
from archive.dicom.ul.pdu import RoleSelection
from archive.net import Timeouts, associate
from archive.net.client import DEFAULT_MAX_PDU, ClientAssociation

BIN = Path(sys.executable).parent
ARCHIVE = str(BIN / "archive")
ORTHANC = "/usr/sbin/Orthanc"
CALLING_AE = "BENCH"
DEST_AE = "DEST"
EXPLICIT_VR_LE = "1.2.840.10008.1.2.1"
IMPLICIT_VR_LE = "1.2.840.10008.1.2"
STUDY_ROOT_FIND = "1.2.840.10008.5.1.4.1.2.2.1"
STUDY_ROOT_MOVE = "1.2.840.10008.5.1.4.1.2.2.2"
STUDY_ROOT_GET = "1.2.840.10008.5.1.4.1.2.2.3"
PYDEPS = Path(__file__).resolve().parent / ".cache" / "pydeps"

#: Orthanc's configuration: its defaults except where it must point, then the extra JSON
#: (argv: port, http port, folder, binary, extra JSON). The launcher writes it with the
#: port ``running()`` chose and exec()s Orthanc, so the PID ``running()`` holds is Orthanc's.
ORTHANC_LAUNCHER = """
import json, os, sys
port, http, folder, orthanc, extra = sys.argv[1:6]
config = {
    "Name": "bench", "DicomAet": "ORTHANC", "DicomPort": int(port), "HttpPort": int(http),
    "StorageDirectory": os.path.join(folder, "storage"),
    "IndexDirectory": os.path.join(folder, "index"),
    "RemoteAccessAllowed": False, "DicomCheckCalledAet": False, "Plugins": [],
}
config.update(json.loads(extra))
path = os.path.join(folder, "orthanc.json")
with open(path, "w") as sink:
    json.dump(config, sink)
os.execv(orthanc, [orthanc, path])
"""

#: What Orthanc needs on top to answer our C-FIND/C-MOVE/C-GET and move to DEST.
ORTHANC_QR = {
    "DicomCheckModalityHost": False, "DicomAlwaysAllowEcho": True,
    "DicomAlwaysAllowStore": True, "DicomAlwaysAllowFind": True,
    "DicomAlwaysAllowGet": True, "DicomAlwaysAllowMove": True,
    "DicomAssociationCloseDelay": 0,
}  # fmt: skip

#: Fills qrscp's database from a folder of files via its own ``db.add_instance``
#: (argv: database file, folder); prints how many.
QRSCP_LOADER = """
import os, sys
from pydicom import dcmread
from sqlalchemy.orm import sessionmaker
from pynetdicom.apps.qrscp import db
database, root = sys.argv[1:3]
session = sessionmaker(bind=db.create(f"sqlite:///{database}"))()
n = 0
for folder, _, names in sorted(os.walk(root)):
    for name in sorted(names):
        path = os.path.abspath(os.path.join(folder, name))
        db.add_instance(dcmread(path, stop_before_pixels=True), session, path)
        n += 1
session.close()
print(n)
"""


def archive_argv(folder: Path, peers: Sequence[str] = ()) -> list[str]:
    argv = [ARCHIVE, "serve", "--host", HOST, "--port", "{port}", "--data", str(folder)]
    for peer in peers:
        argv += ["--peer", peer]
    return argv


def orthanc_argv(folder: Path, extra: Mapping[str, object]) -> list[str]:
    """Orthanc on ``folder``, its configuration the launcher's plus ``extra``."""
    return [
        sys.executable, "-c", ORTHANC_LAUNCHER, "{port}", str(free_port()), str(folder),
        ORTHANC, json.dumps(extra),
    ]  # fmt: skip


def orthanc_qr_argv(
    folder: Path, modalities: dict[str, tuple[str, str, int]] | None = None
) -> list[str]:
    """Orthanc as a Query/Retrieve SCP, ``modalities`` its C-MOVE destinations."""
    table = {k: list(v) for k, v in (modalities or {}).items()}
    return orthanc_argv(folder, {**ORTHANC_QR, "DicomModalities": table})


def orthanc_http(folder: Path) -> int:
    return int(json.loads((folder / "orthanc.json").read_text())["HttpPort"])


def orthanc_count(folder: Path) -> int:
    """Instances Orthanc holds, from its REST ``/statistics`` (it must be running)."""
    url = f"http://{HOST}:{orthanc_http(folder)}/statistics"
    with urllib.request.urlopen(url, timeout=60) as answer:
        return int(json.loads(answer.read())["CountInstances"])


def qrscp_env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(PYDEPS)}


def qrscp_argv(folder: Path, destinations: dict[str, tuple[str, int]] | None = None) -> list[str]:
    """qrscp on ``folder`` (its database and instances), with an ini of move destinations."""
    folder.mkdir(parents=True, exist_ok=True)
    lines = [
        "[DEFAULT]", "ae_title: QRSCP", "port: 11112", "max_pdu: 16382", "acse_timeout: 30",
        "dimse_timeout: 30", "network_timeout: 30", "bind_address:",
        f"instance_location: {folder / 'instances'}",
        f"database_location: {folder / 'index.sqlite'}", "log_identifier: False", "",
    ]  # fmt: skip
    for aet, (host, port) in (destinations or {}).items():
        lines += [f"[{aet}]", f"address: {host}", f"port: {port}", ""]
    ini = folder / "qrscp.ini"
    ini.write_text("\n".join(lines))
    return [sys.executable, "-m", "pynetdicom", "qrscp", "-c", str(ini), "--port", "{port}",
            "--bind-address", HOST, "--instance-location", str(folder / "instances"),
            "--database-location", str(folder / "index.sqlite")]  # fmt: skip


def load_qrscp(folder: Path, files: Path) -> int:
    """Index ``files`` in qrscp's database in ``folder`` through its own code."""
    folder.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(
        [sys.executable, "-c", QRSCP_LOADER, str(folder / "index.sqlite"), str(files)],
        env=qrscp_env(), capture_output=True, text=True, check=True, timeout=1800,
    )  # fmt: skip
    return int(done.stdout.split()[-1])


def dcmqrscp_argv(folder: Path, destinations: dict[str, tuple[str, int]]) -> list[str]:
    """dcmqrscp (forking) with one read-write storage area in ``folder / 'db'``."""
    storage = folder / "db"
    storage.mkdir(parents=True, exist_ok=True)
    hosts = "\n".join(
        f"{aet.lower()} = ({aet}, {host}, {port})" for aet, (host, port) in destinations.items()
    )
    config = f"""NetworkTCPPort = 11112
MaxPDUSize = 16384
MaxAssociations = 16
HostTable BEGIN
{hosts}
HostTable END
VendorTable BEGIN
VendorTable END
AETable BEGIN
DCMQRSCP {storage} RW (2000, 4096mb) ANY
AETable END
"""
    cfg = folder / "dcmqrscp.cfg"
    cfg.write_text(config)
    dcmqrscp = shutil.which("dcmqrscp") or "dcmqrscp"
    return [dcmqrscp, "-c", str(cfg), "{port}"]


def storescp_argv(folder: Path) -> list[str]:
    folder.mkdir(parents=True, exist_ok=True)
    storescp = shutil.which("storescp") or "storescp"
    return [storescp, "--fork", "-aet", DEST_AE, "-od", str(folder), "{port}"]


def storescu_argvs(
    port: int, called_ae: str, paths: Sequence[Path], assocs: int = 1
) -> list[list[str]]:
    """storescu argvs sending ``paths`` (folders, recursively), one per association."""
    base = ["storescu", "-aet", CALLING_AE, "-aec", called_ae, "+sd", "+r", HOST, str(port)]
    groups = (paths[i::assocs] for i in range(assocs))
    return [[*base, *map(str, group)] for group in groups if group]


def start_storescu(
    port: int, called_ae: str, paths: Sequence[Path], assocs: int = 1
) -> list[subprocess.Popen[bytes]]:
    """:func:`storescu_argvs` started at once, output discarded (the caller waits)."""
    return [
        subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            env=dict(DCMTK_ENV),
            start_new_session=True,
        )
        for argv in storescu_argvs(port, called_ae, paths, assocs)
    ]


def storescu(port: int, called_ae: str, paths: Sequence[Path], assocs: int = 1) -> int:
    """Send ``paths`` with storescu, ``assocs`` processes at once: the worst exit status."""
    procs = start_storescu(port, called_ae, paths, assocs)
    codes = [proc.wait(timeout=1800) for proc in procs]
    return max(codes, default=0)


# ---- the SCU ------------------------------------------------------------------------------


@contextlib.asynccontextmanager
async def qr_association(
    port: int,
    called_ae: str,
    sop_class: str,
    timeouts: Timeouts,
    *,
    storage: Sequence[str] = (),
    roles: Sequence[RoleSelection] = (),
    max_pdu_length: int = DEFAULT_MAX_PDU,
    async_ops: tuple[int, int] | None = None,
) -> AsyncIterator[tuple[ClientAssociation, int]]:
    """An association from ``CALLING_AE`` proposing ``sop_class`` (and ``storage``, for a
    C-GET's sub-operations): the association and ``sop_class``'s accepted context ID."""
    syntaxes = [EXPLICIT_VR_LE, IMPLICIT_VR_LE]
    assoc = await associate(
        HOST, port, calling_ae=CALLING_AE, called_ae=called_ae,
        contexts=[(uid, syntaxes) for uid in (sop_class, *storage)], roles=roles,
        max_pdu_length=max_pdu_length, timeouts=timeouts, async_ops=async_ops,
    )  # fmt: skip
    async with assoc:
        context = assoc.negotiated.context_for(sop_class)
        if context is None:
            raise RuntimeError(f"{called_ae} did not accept {sop_class}")
        yield assoc, context.id


def _value(vr: str, text: str) -> bytes:
    raw = text.encode("ascii")
    if len(raw) % 2:
        raw += b"\0" if vr == "UI" else b" "
    return raw


def identifier(keys: Sequence[tuple[str, str]]) -> bytes:
    """A C-FIND/C-MOVE/C-GET identifier in Explicit VR LE from (keyword, value) pairs."""
    elements = []
    for keyword, text in keys:
        tag = tag_for_keyword(keyword)
        if tag is None:
            raise KeyError(keyword)
        vr = vr_of(tag)
        elements.append(Element(tag, vr, _value(vr, text)))
    elements.sort(key=lambda e: e.tag)
    return bytes(encode_dataset(elements, EXPLICIT_VR_LE))


async def timed_find(
    assoc: ClientAssociation, context_id: int, query: bytes
) -> tuple[float, int, int]:
    """One C-FIND: (seconds from the request to the final response, matches, final status)."""
    matches = 0
    status = -1
    started = time.perf_counter()
    async for rsp, _data in assoc.find(context_id, query):
        if category(rsp.status) is StatusCategory.PENDING:
            matches += 1
        else:
            status = rsp.status
    return time.perf_counter() - started, matches, status


def percentile(values: Sequence[float], fraction: float) -> float:
    """The nearest-rank percentile (p99 of 200 values is the 198th smallest)."""
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    rank = max(1, math.ceil(fraction * len(ordered) - 1e-9))
    return ordered[min(rank, len(ordered)) - 1]
