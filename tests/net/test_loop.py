"""archive/net/loop.py: the allocator set-up every command runs with."""

from __future__ import annotations

import platform
import subprocess
import sys

import pytest

from archive.net import loop

#: Rounds of eight PDU-sized blocks (256 KiB and up), each round's allocated
#: while the previous round's are still held, then those freed: lifetimes that
#: overlap, as on a receive path. Prints the page faults they cost.
WORKLOAD = """
import resource, sys
from archive.net.loop import keep_freed_memory
if sys.argv[1] == "tuned":
    assert keep_freed_memory()
def faults():
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt
def rounds(n):
    held = []
    for _ in range(n):
        held = [b"x" * (262144 + 4096 * k) for k in range(8)]
    return held
rounds(3)
before = faults()
rounds(100)
print(faults() - before)
"""


def faults(mode: str) -> int:
    done = subprocess.run(
        [sys.executable, "-c", WORKLOAD, mode], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    return int(done.stdout)


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="glibc's malloc only")
def test_freed_pdus_are_reused_without_page_faults() -> None:
    # 100 rounds of ~2.2 MB: untuned, each round maps (faults in) at least 256 KiB anew.
    assert faults("default") > 100 * 64
    assert faults("tuned") < 100


def test_run_sets_the_allocator_up(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[str] = []
    monkeypatch.setattr(loop, "keep_freed_memory", lambda: calls.append("tuned") or True)

    async def main() -> int:
        return 7

    assert loop.run(main(), "asyncio") == 7
    assert calls == ["tuned"]
