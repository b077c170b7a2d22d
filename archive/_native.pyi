# Stub of the C extension built from native/ (see archive/native.py for the twins).
import os
from collections.abc import Iterable, Sequence

_Path = str | bytes | os.PathLike[str] | os.PathLike[bytes]

def write_and_link(
    fd: int,
    path: _Path,
    chunks: Sequence[bytes | bytearray | memoryview],
    final: _Path,
    folders: Sequence[_Path],
    advise_from: int = -1,
    /,
) -> bool: ...
def read_cached(fd: int, offset: int, size: int) -> bytes | None: ...
def open_cached(path: _Path) -> int: ...
def header_setup(
    wanted: dict[int, bool],
    short_vrs: Iterable[bytes],
    all_vrs: Iterable[bytes],
    max_value_length: int,
    max_held: int,
    max_sequence_length: int,
    /,
) -> None: ...
def header_walk(reader: object, data: bytes | bytearray | memoryview, /) -> str | None: ...
