"""Orthanc 1.10.1 as a peer archive for the interop tests, driven over its REST API.

:func:`start_orthanc` runs ``/usr/sbin/Orthanc`` on 127.0.0.1 with a JSON
configuration generated in the test's own folder: its own storage and index
folder, DICOM and HTTP ports from free ports, AE title ``ORTHANC``, no HTTP
authentication (the REST API listens on loopback only, ``RemoteAccessAllowed``
false), no called-AE check, no plugins, and the ``DicomModalities`` it is given
(our node, so that Orthanc can C-ECHO it, C-STORE and C-MOVE to it and query
it). Orthanc's C-FIND/C-MOVE/C-GET SCP answer any calling AE
(``DicomAlwaysAllow*``), which is what a pull from it needs; a C-MOVE destination
must still be one of its modalities (PS3.4 C.4.2.1.2). It is stopped by its PID:
SIGTERM, then SIGKILL.

The REST helpers use :mod:`urllib` only. Every call is bounded
(:data:`HTTP_TIMEOUT`), and every DICOM operation Orthanc carries out as SCU is
given its own ``Timeout`` below that. Paths and request bodies follow Orthanc's
1.10.1 OpenAPI description (``Orthanc --openapi=-``). Fixtures:
``orthanc_factory(modalities=..., **options)`` and ``orthanc`` (no modalities);
a test module binds them (``orthanc = harness.orthanc``) to use them.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import pytest

from tests.conftest import IN_CI
from tests.interop.conftest import HOST, free_port, wait_listening

__all__ = [
    "DICOM_TIMEOUT",
    "HTTP_TIMEOUT",
    "ORTHANC_AET",
    "START_TIMEOUT",
    "Modality",
    "Orthanc",
    "OrthancError",
    "OrthancFactory",
    "orthanc",
    "orthanc_binary",
    "orthanc_factory",
    "start_orthanc",
]

ORTHANC_AET = "ORTHANC"
#: Seconds Orthanc gets to answer its REST API after being started.
START_TIMEOUT = 20.0
#: Seconds any one REST call may take (it may wrap a DICOM operation).
HTTP_TIMEOUT = 30.0
#: Seconds Orthanc gives each DICOM operation it runs as SCU (below HTTP_TIMEOUT).
DICOM_TIMEOUT = 10
#: Seconds between SIGTERM and SIGKILL at the end.
STOP_TIMEOUT = 10.0
_BINARY = "/usr/sbin/Orthanc"


@dataclass(frozen=True)
class Modality:
    """A ``DicomModalities`` entry: a remote AE Orthanc knows by a symbolic name."""

    ae_title: str
    host: str
    port: int

    def as_json(self) -> list[Any]:
        return [self.ae_title, self.host, self.port]


class OrthancError(RuntimeError):
    """A REST call answered an HTTP error (the body says why) or failed."""

    def __init__(self, method: str, path: str, status: int, body: str) -> None:
        super().__init__(f"{method} {path}: HTTP {status}: {body}")
        self.status = status
        self.body = body


def orthanc_binary() -> str:
    """Path of the Orthanc server; skip without it locally, fail without it in CI.

    :func:`tests.conftest.require_tool`'s rule, with the right package to install.
    """
    # Debian installs it in /usr/sbin, which an unprivileged PATH may lack.
    if os.access(_BINARY, os.X_OK):
        return _BINARY
    path = shutil.which("Orthanc")
    if path is None:
        message = "Orthanc is not installed (apt-get install -y orthanc)"
        if IN_CI:
            pytest.fail(message + ": interop tests must run in CI")
        pytest.skip(message)
    return path


def configuration(
    workdir: Path,
    *,
    dicom_port: int,
    http_port: int,
    aet: str = ORTHANC_AET,
    modalities: Mapping[str, Modality] | None = None,
    **options: Any,
) -> dict[str, Any]:
    """The JSON configuration of one test Orthanc (``options`` add or override keys)."""
    storage = workdir / "storage"
    config: dict[str, Any] = {
        "Name": f"archive-node test peer {aet}",
        "StorageDirectory": str(storage),
        "IndexDirectory": str(storage),
        "StorageCompression": False,  # files come back as stored
        "Plugins": [],
        "HttpServerEnabled": True,
        "HttpPort": http_port,
        "RemoteAccessAllowed": False,
        "AuthenticationEnabled": False,
        "OrthancExplorerEnabled": False,
        "WebDavEnabled": False,
        "MetricsEnabled": False,
        "HttpThreadsCount": 4,  # the default 50 is wasted on a 2-core CI box
        "DicomServerEnabled": True,
        "DicomAet": aet,
        "DicomPort": dicom_port,
        "DicomCheckCalledAet": False,
        "DicomCheckModalityHost": False,
        "DicomThreadsCount": 2,
        "DicomModalities": {name: m.as_json() for name, m in (modalities or {}).items()},
        "DicomModalitiesInDatabase": False,
        "DicomAlwaysAllowEcho": True,
        "DicomAlwaysAllowStore": True,
        "DicomAlwaysAllowFind": True,
        "DicomAlwaysAllowGet": True,
        "DicomAlwaysAllowMove": True,
        "DicomScuTimeout": DICOM_TIMEOUT,
        "DicomScpTimeout": 30,
        "DicomAssociationCloseDelay": 0,
        "UnknownSopClassAccepted": True,
        "SynchronousCMove": True,
        "StableAge": 1,
        "SaveJobs": False,
        "JobsHistorySize": 10,  # > 0, or synchronous REST jobs cannot report
        "ConcurrentJobs": 2,
        "LimitFindResults": 0,
        "LimitFindInstances": 0,
        "HttpTimeout": int(HTTP_TIMEOUT),
        "HttpRequestTimeout": int(HTTP_TIMEOUT),
        "DeidentifyLogs": True,
    }
    config.update(options)
    return config


class Orthanc:
    """A running Orthanc: its ports, AE title, log, and REST helpers."""

    def __init__(
        self,
        proc: subprocess.Popen[bytes],
        *,
        aet: str,
        dicom_port: int,
        http_port: int,
        log: Path,
    ) -> None:
        self.proc = proc
        self.aet = aet
        self.host = HOST
        self.dicom_port = dicom_port
        self.http_port = http_port
        self.log = log

    @property
    def peer_text(self) -> str:
        """Orthanc as ``AET@HOST:PORT`` (what ``archive echo`` and ``--peer`` take)."""
        return f"{self.aet}@{self.host}:{self.dicom_port}"

    def output(self) -> str:
        return self.log.read_text("utf-8", "replace")

    # ---- REST ---------------------------------------------------------------------------

    def request(
        self,
        method: str,
        path: str,
        body: bytes | None = None,
        *,
        content_type: str = "application/json",
        timeout: float = HTTP_TIMEOUT,
    ) -> bytes:
        """One REST call; the response body, or OrthancError on an HTTP error."""
        url = f"http://{self.host}:{self.http_port}{path}"
        headers = {"Content-Type": content_type} if body is not None else {}
        req = urllib.request.Request(url, data=body, method=method, headers=headers)
        try:
            with urllib.request.urlopen(req, timeout=timeout) as response:
                data: bytes = response.read()
                return data
        except urllib.error.HTTPError as exc:
            detail = exc.read().decode("utf-8", "replace")
            exc.close()
            raise OrthancError(method, path, exc.code, detail) from None

    def get_json(self, path: str) -> Any:
        return json.loads(self.request("GET", path))

    def post_json(self, path: str, body: Any, *, timeout: float = HTTP_TIMEOUT) -> Any:
        data = self.request("POST", path, json.dumps(body).encode(), timeout=timeout)
        return json.loads(data) if data.strip() else None

    def system(self) -> dict[str, Any]:
        """``GET /system``: version, AE title, ports."""
        result: dict[str, Any] = self.get_json("/system")
        return result

    # ---- content ------------------------------------------------------------------------

    def upload(self, data: bytes | Path) -> str:
        """``POST /instances`` a DICOM file; its Orthanc instance id."""
        blob = data.read_bytes() if isinstance(data, Path) else data
        answer = json.loads(
            self.request("POST", "/instances", blob, content_type="application/dicom")
        )
        instance_id: str = answer["ID"]
        return instance_id

    def instances(self) -> list[str]:
        """Orthanc ids of every instance held."""
        ids: list[str] = self.get_json("/instances")
        return ids

    def studies(self) -> list[str]:
        """Orthanc ids of every study held."""
        ids: list[str] = self.get_json("/studies")
        return ids

    def study_uids(self) -> list[str]:
        """Study Instance UIDs of every study held."""
        return [
            self.get_json(f"/studies/{sid}")["MainDicomTags"]["StudyInstanceUID"]
            for sid in self.studies()
        ]

    def instance_file(self, instance_id: str) -> bytes:
        """``GET /instances/{id}/file``: the Part 10 file as Orthanc holds it."""
        return self.request("GET", f"/instances/{instance_id}/file")

    def find_instance(self, sop_instance_uid: str) -> str | None:
        """The Orthanc id of the instance with this SOP Instance UID, if held."""
        found = json.loads(
            self.request(
                "POST", "/tools/lookup", sop_instance_uid.encode(), content_type="text/plain"
            )
        )
        for item in found:
            if item.get("Type") == "Instance":
                return str(item["ID"])
        return None

    # ---- Orthanc as SCU -----------------------------------------------------------------

    def add_modality(self, name: str, modality: Modality) -> None:
        """``PUT /modalities/{name}``: know one more remote AE (in memory)."""
        body = {"AET": modality.ae_title, "Host": modality.host, "Port": modality.port}
        self.request("PUT", f"/modalities/{_quote(name)}", json.dumps(body).encode())

    def echo(self, modality: str, *, timeout: int = DICOM_TIMEOUT) -> None:
        """Orthanc C-ECHOes a modality; OrthancError if it did not answer Success."""
        self.post_json(f"/modalities/{_quote(modality)}/echo", {"Timeout": timeout})

    def query(
        self,
        modality: str,
        level: str,
        query: Mapping[str, str],
        *,
        timeout: int = DICOM_TIMEOUT,
    ) -> tuple[str, list[dict[str, Any]]]:
        """Orthanc C-FINDs a modality: (query id, the answers as simplified tags)."""
        answer = self.post_json(
            f"/modalities/{_quote(modality)}/query",
            {"Level": level, "Query": dict(query), "Timeout": timeout},
        )
        query_id = str(answer["ID"])
        answers: list[dict[str, Any]] = self.get_json(
            f"/queries/{query_id}/answers?expand&simplify"
        )
        return query_id, answers

    def retrieve(
        self,
        query_id: str,
        *,
        index: int | None = None,
        target_aet: str | None = None,
        timeout: int = DICOM_TIMEOUT,
    ) -> Any:
        """C-MOVE the answers of a :meth:`query` (one of them with ``index``), synchronously.

        ``target_aet`` is the Move Destination (default: Orthanc itself).
        """
        path = f"/queries/{query_id}/retrieve"
        if index is not None:
            path = f"/queries/{query_id}/answers/{index}/retrieve"
        body: dict[str, Any] = {"Synchronous": True, "Timeout": timeout}
        if target_aet is not None:
            body["TargetAet"] = target_aet
        return self.post_json(path, body)

    def move(
        self,
        modality: str,
        level: str,
        resources: Sequence[Mapping[str, str]],
        *,
        target_aet: str | None = None,
        timeout: int = DICOM_TIMEOUT,
    ) -> Any:
        """Orthanc sends a C-MOVE-RQ to a modality, one per resource identifier.

        ``resources`` are query keys, e.g. ``[{"StudyInstanceUID": "1.2.3"}]``;
        ``target_aet`` is the Move Destination (default: Orthanc itself).
        """
        body: dict[str, Any] = {
            "Level": level,
            "Resources": [dict(r) for r in resources],
            "Timeout": timeout,
        }
        if target_aet is not None:
            body["TargetAet"] = target_aet
        return self.post_json(f"/modalities/{_quote(modality)}/move", body)

    def store(
        self, modality: str, resources: Sequence[str], *, timeout: int = DICOM_TIMEOUT
    ) -> Any:
        """Orthanc C-STOREs resources (Orthanc ids of any level) to a modality."""
        return self.post_json(
            f"/modalities/{_quote(modality)}/store",
            {"Resources": list(resources), "Synchronous": True, "Timeout": timeout},
        )

    # ---- life -----------------------------------------------------------------------

    def stop(self) -> None:
        """SIGTERM by PID, SIGKILL if it has not exited within STOP_TIMEOUT, reap."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        self.proc.wait(timeout=STOP_TIMEOUT)


def _quote(name: str) -> str:
    return urllib.parse.quote(name, safe="")


def _wait_rest(orthanc: Orthanc, deadline: float) -> None:
    """Poll ``GET /system`` until it answers, Orthanc exits, or the deadline passes."""
    while time.monotonic() < deadline:
        if orthanc.proc.poll() is not None:
            raise RuntimeError(f"Orthanc exited with {orthanc.proc.returncode} before answering")
        with contextlib.suppress(OSError, OrthancError):
            orthanc.request("GET", "/system", timeout=1.0)
            return
        time.sleep(0.05)
    raise TimeoutError(f"Orthanc's REST API did not answer within {START_TIMEOUT:g} s")


@contextlib.contextmanager
def start_orthanc(
    workdir: Path,
    *,
    aet: str = ORTHANC_AET,
    modalities: Mapping[str, Modality] | None = None,
    **options: Any,
) -> Iterator[Orthanc]:
    """Run Orthanc in ``workdir`` until the ``with`` block ends; stopped by its PID."""
    binary = orthanc_binary()
    workdir.mkdir(parents=True, exist_ok=True)
    log = workdir / "orthanc.log"
    last_error: Exception | None = None
    for _attempt in range(3):  # a free port may be taken between probe and bind
        dicom_port, http_port = free_port(), free_port()
        if dicom_port == http_port:
            continue
        config_path = workdir / "orthanc.json"
        config = configuration(
            workdir,
            dicom_port=dicom_port,
            http_port=http_port,
            aet=aet,
            modalities=modalities,
            **options,
        )
        config_path.write_text(json.dumps(config, indent=2), encoding="utf-8")
        with log.open("ab") as sink:
            proc = subprocess.Popen(
                [binary, "--no-jobs", str(config_path)],
                cwd=workdir,
                stdin=subprocess.DEVNULL,
                stdout=sink,
                stderr=subprocess.STDOUT,
            )
        orthanc = Orthanc(proc, aet=aet, dicom_port=dicom_port, http_port=http_port, log=log)
        try:
            deadline = time.monotonic() + START_TIMEOUT
            _wait_rest(orthanc, deadline)
            wait_listening(dicom_port, proc, max(0.1, deadline - time.monotonic()))
        except (RuntimeError, TimeoutError) as exc:
            orthanc.stop()
            last_error = exc
            continue
        try:
            yield orthanc
        finally:
            orthanc.stop()
        return
    raise RuntimeError(f"Orthanc did not start ({last_error}); its log:\n{log.read_text()}")


class OrthancFactory(Protocol):
    def __call__(
        self, *, aet: str = ..., modalities: Mapping[str, Modality] | None = ..., **options: Any
    ) -> Orthanc: ...


@pytest.fixture
def orthanc_factory(tmp_path: Path) -> Iterator[OrthancFactory]:
    """``orthanc_factory(modalities={...}, **options)`` starts an Orthanc; all stop at teardown."""
    orthanc_binary()  # skip or fail before anything starts
    with contextlib.ExitStack() as stack:
        count = 0

        def start(
            *,
            aet: str = ORTHANC_AET,
            modalities: Mapping[str, Modality] | None = None,
            **options: Any,
        ) -> Orthanc:
            nonlocal count
            count += 1
            return stack.enter_context(
                start_orthanc(
                    tmp_path / f"orthanc{count}", aet=aet, modalities=modalities, **options
                )
            )

        yield start


@pytest.fixture
def orthanc(orthanc_factory: OrthancFactory) -> Orthanc:
    """An Orthanc with no modalities (add them with :meth:`Orthanc.add_modality`)."""
    return orthanc_factory()
