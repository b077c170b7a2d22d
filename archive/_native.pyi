# Stub of the C extension built from native/_native.c (see archive/store/place.py).
from collections.abc import Sequence

def write_and_link(
    fd: int,
    path: str,
    chunks: Sequence[bytes | bytearray | memoryview],
    final: str,
    folders: Sequence[str],
) -> bool: ...
