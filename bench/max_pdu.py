"""How the Maximum Length Received we advertise changes the receive path's speed.

Starts ``archive serve`` once per candidate value and pushes large data sets over
one association from our own SCU in this process (C-STORE-RQs on a CT context;
the node drains the data set through the upper layer and DIMSE assembler). The
figure is megabytes per second through the server's receive path. Run:

    .venv/bin/python bench/max_pdu.py [--quick]
"""

from __future__ import annotations

import argparse
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from archive.dicom.dimse import CStoreRq
from archive.net import associate, run

CT_IMAGE = "1.2.840.10008.5.1.4.1.1.2"
EXPLICIT_VR_LE = "1.2.840.10008.1.2.1"
CANDIDATES = (16384, 65536, 131072, 262144, 524288, 1048576)
ARCHIVE = str(Path(sys.executable).with_name("archive"))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def push(port: int, size: int, count: int) -> float:
    assoc = await associate(
        "127.0.0.1",
        port,
        calling_ae="BENCH",
        called_ae="ARCHIVE",
        contexts=[(CT_IMAGE, [EXPLICIT_VR_LE])],
        max_pdu_length=65536,
    )
    context = assoc.negotiated.context_for(CT_IMAGE)
    assert context is not None
    data = bytes(size)
    start = time.perf_counter()
    for i in range(count):
        rq = CStoreRq(
            message_id=i + 1,
            affected_sop_class_uid=CT_IMAGE,
            affected_sop_instance_uid=f"1.2.826.0.1.3680043.10.1.{i + 1}",
        )
        await assoc.request(context.id, rq, data)
    elapsed = time.perf_counter() - start
    await assoc.release()
    return size * count / elapsed / 1e6


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    size, count = (8 << 20, 4) if args.quick else (32 << 20, 8)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for pdu in CANDIDATES:
            port = free_port()
            config = Path(tmp) / f"pdu{pdu}.toml"
            config.write_text(f"[association]\nmax_pdu_length = {pdu}\n")
            cmd = [ARCHIVE, "serve", "--config", str(config), "--host", "127.0.0.1"]
            cmd += ["--port", str(port), "--data", str(Path(tmp) / "data")]
            server = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
            try:
                assert server.stdout is not None
                server.stdout.readline()
                rows.append((pdu, run(push(port, size, count))))
            finally:
                server.terminate()
                server.wait(10)
    print("| max_pdu_length | MB/s through the receive path |")
    print("|---:|---:|")
    for pdu, rate in rows:
        print(f"| {pdu} | {rate:.0f} |")


if __name__ == "__main__":
    main()
