"""archive/store/place.py: the C write_and_link and its pure-Python twin agree.

Every case runs on both and compares what each did: the result, the exception
(type, errno, file names), the bytes on disk, the folders made and whether the
descriptor was closed. Faults are real ones (a name taken, a folder missing, a
file where a folder should be, a read-only descriptor), so the C code meets
them as the twin does, without any os function faked.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import itertools
import mmap
import os
import random
import signal
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from archive.store import FileStore, StoreError, place, relative_path
from tests.conftest import assert_native_chosen
from tests.store.helpers import dirty_pages, needs_cachestat, skip_unless_cache_drops, twins

#: write_and_link's signature: (fd, path, chunks, final, folders[, advise_from]).
WriteAndLink = Callable[..., bool]

try:
    from archive import _native
except ImportError:  # pragma: no cover - only where no C compiler built it
    _native = None  # type: ignore[assignment]


def implementations() -> dict[str, WriteAndLink]:
    return twins("write_and_link", place.write_and_link_py)


def test_the_extension_is_built_and_chosen() -> None:
    """Where a compiler is at hand (CI installs one) the C code must be what runs."""
    assert_native_chosen(place.write_and_link, "write_and_link", place.write_and_link_py)
    native = os.environ.get("ARCHIVE_NATIVE", "1") != "0"
    assert ("native" if native else "python") == place.IMPLEMENTATION


def _closed(fd: int) -> bool:
    try:
        os.fstat(fd)
    except OSError as exc:
        return exc.errno == errno.EBADF
    return False


def _tree(root: Path) -> dict[str, bytes | None]:
    """Every path under root: a file's bytes, None for a folder."""
    return {
        str(p.relative_to(root)): (p.read_bytes() if p.is_file() else None)
        for p in sorted(root.rglob("*"))
    }


def _outcome(call: Callable[[], bool]) -> tuple[Any, ...]:
    try:
        return ("returned", call())
    except OSError as exc:
        return ("raised", type(exc), exc.errno, exc.filename, exc.filename2)
    except (TypeError, BufferError, ValueError, OverflowError) as exc:
        return ("raised", type(exc))


Scenario = Callable[[Path, WriteAndLink], tuple[Any, ...]]


def _both(tmp_path: Path, scenario: Scenario) -> tuple[Any, ...]:
    """Run ``scenario`` with each implementation in a fresh folder; all must agree."""
    results: dict[str, tuple[Any, ...]] = {}
    for name, impl in implementations().items():
        root = tmp_path / name
        root.mkdir()
        (root / "tmp").mkdir()
        (root / "instances").mkdir()
        outcome = scenario(root, impl)
        # Paths in exceptions differ by root only: compare them relative to it.
        relative = tuple(
            str(Path(v).relative_to(root)) if isinstance(v, str) and v.startswith(str(root)) else v
            for v in outcome
        )
        results[name] = (relative, _tree(root))
    first = next(iter(results.values()))
    for name, result in results.items():
        assert result == first, f"{name} differs"
    return first


def _paths(root: Path) -> tuple[str, str, tuple[str, str]]:
    tmp = str(root / "tmp" / "1.2.3.abcd.part")
    folders = (str(root / "instances" / "ab"), str(root / "instances" / "ab" / "cd"))
    return tmp, str(root / "instances" / "ab" / "cd" / "1.2.3.dcm"), folders


def test_a_new_file_is_written_its_folders_made_and_linked(tmp_path: Path) -> None:
    def scenario(root: Path, impl: WriteAndLink) -> tuple[Any, ...]:
        tmp, final, folders = _paths(root)
        chunks = [b"meta", memoryview(b"0123456789")[2:7], bytearray(b"xyz"), b""]
        outcome = _outcome(lambda: impl(-1, tmp, chunks, final, folders))
        assert os.path.samefile(tmp, final)
        return outcome

    (outcome, tree) = _both(tmp_path, scenario)
    assert outcome == ("returned", True)
    assert tree["instances/ab/cd/1.2.3.dcm"] == b"meta23456xyz"
    assert tree["tmp/1.2.3.abcd.part"] == b"meta23456xyz"
    assert tree["instances/ab"] is None


def test_folders_given_as_an_iterator_are_made(tmp_path: Path) -> None:
    """The twin used an iterator up checking the paths and made no folder."""

    def scenario(root: Path, impl: WriteAndLink) -> tuple[Any, ...]:
        tmp, final, folders = _paths(root)
        return _outcome(lambda: impl(-1, tmp, [b"x"], final, iter(folders)))  # type: ignore[arg-type]

    (outcome, tree) = _both(tmp_path, scenario)
    assert outcome == ("returned", True)
    assert tree["instances/ab/cd/1.2.3.dcm"] == b"x"


@needs_cachestat
@pytest.mark.parametrize("name", sorted(implementations()))
def test_advise_from_hands_what_was_written_to_writeback(tmp_path: Path, name: str) -> None:
    impl = implementations()[name]
    skip_unless_cache_drops(tmp_path)
    for root, advise in ((tmp_path / "kept", -1), (tmp_path / "advised", 0)):
        (root / "tmp").mkdir(parents=True)
        (root / "instances").mkdir()
        tmp, final, folders = _paths(root)
        assert impl(-1, tmp, [b"x" * 200_000], final, folders, advise)
        assert Path(final).read_bytes() == b"x" * 200_000
    # Without advice the pages wait, dirty, for a flush (or the kernel's own
    # writeback, seconds later); with it, their writeback has started.
    pages = -(-200_000 // mmap.PAGESIZE)
    kept = dirty_pages(Path(_paths(tmp_path / "kept")[1]))
    if kept != pages:
        pytest.skip(f"something wrote the pages back meanwhile ({kept} of {pages} dirty)")
    assert dirty_pages(Path(_paths(tmp_path / "advised")[1])) == 0


def test_an_open_descriptor_is_written_on_and_closed(tmp_path: Path) -> None:
    def scenario(root: Path, impl: WriteAndLink) -> tuple[Any, ...]:
        tmp, final, folders = _paths(root)
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        os.write(fd, b"head:")
        os.mkdir(folders[0])  # one folder exists already: fine
        outcome = _outcome(lambda: impl(fd, tmp, [b"tail"], final, folders))
        assert _closed(fd)
        return outcome

    (outcome, tree) = _both(tmp_path, scenario)
    assert outcome == ("returned", True)
    assert tree["instances/ab/cd/1.2.3.dcm"] == b"head:tail"


def test_a_taken_place_is_false_and_left_alone(tmp_path: Path) -> None:
    def scenario(root: Path, impl: WriteAndLink) -> tuple[Any, ...]:
        tmp, final, folders = _paths(root)
        os.makedirs(folders[1])
        Path(final).write_bytes(b"acknowledged")
        return _outcome(lambda: impl(-1, tmp, [b"new"], final, folders))

    (outcome, tree) = _both(tmp_path, scenario)
    assert outcome == ("returned", False)
    assert tree["instances/ab/cd/1.2.3.dcm"] == b"acknowledged"
    assert tree["tmp/1.2.3.abcd.part"] == b"new"  # complete: the duplicate rules use it


def test_an_existing_part_name_is_refused(tmp_path: Path) -> None:
    def scenario(root: Path, impl: WriteAndLink) -> tuple[Any, ...]:
        tmp, final, folders = _paths(root)
        Path(tmp).write_bytes(b"other")
        return _outcome(lambda: impl(-1, tmp, [b"new"], final, folders))

    (outcome, tree) = _both(tmp_path, scenario)
    assert outcome == ("raised", FileExistsError, errno.EEXIST, "tmp/1.2.3.abcd.part", None)
    assert tree["tmp/1.2.3.abcd.part"] == b"other"
    assert "instances/ab" not in tree


def test_a_missing_tmp_folder_fails_the_open(tmp_path: Path) -> None:
    def scenario(root: Path, impl: WriteAndLink) -> tuple[Any, ...]:
        _, final, folders = _paths(root)
        tmp = str(root / "gone" / "x.part")
        return _outcome(lambda: impl(-1, tmp, [b"new"], final, folders))

    (outcome, _) = _both(tmp_path, scenario)
    assert outcome == ("raised", FileNotFoundError, errno.ENOENT, "gone/x.part", None)


def test_a_file_where_a_folder_goes_fails_the_mkdir(tmp_path: Path) -> None:
    def scenario(root: Path, impl: WriteAndLink) -> tuple[Any, ...]:
        tmp, final, folders = _paths(root)
        Path(folders[0]).write_bytes(b"not a folder")
        return _outcome(lambda: impl(-1, tmp, [b"new"], final, folders))

    (outcome, tree) = _both(tmp_path, scenario)
    assert outcome == ("raised", NotADirectoryError, errno.ENOTDIR, "instances/ab/cd", None)
    assert tree["tmp/1.2.3.abcd.part"] == b"new"  # the caller discards it


def test_a_missing_folder_fails_the_link_naming_both(tmp_path: Path) -> None:
    def scenario(root: Path, impl: WriteAndLink) -> tuple[Any, ...]:
        tmp, final, _ = _paths(root)
        return _outcome(lambda: impl(-1, tmp, [b"new"], final, ()))

    (outcome, _) = _both(tmp_path, scenario)
    assert outcome == (
        "raised",
        FileNotFoundError,
        errno.ENOENT,
        "tmp/1.2.3.abcd.part",
        "instances/ab/cd/1.2.3.dcm",
    )


def test_a_failed_write_raises_and_closes(tmp_path: Path) -> None:
    def scenario(root: Path, impl: WriteAndLink) -> tuple[Any, ...]:
        tmp, final, folders = _paths(root)
        Path(tmp).write_bytes(b"")
        fd = os.open(tmp, os.O_RDONLY)  # writing to it is EBADF
        outcome = _outcome(lambda: impl(fd, tmp, [b"new"], final, folders))
        assert _closed(fd)
        return outcome

    (outcome, tree) = _both(tmp_path, scenario)
    assert outcome == ("raised", OSError, errno.EBADF, None, None)
    assert "instances/ab" not in tree  # nothing after the failed step


def test_a_chunk_that_is_no_buffer_is_refused_before_anything(tmp_path: Path) -> None:
    def scenario(root: Path, impl: WriteAndLink) -> tuple[Any, ...]:
        tmp, final, folders = _paths(root)
        other = root / "other"
        other.write_bytes(b"")
        fd = os.open(other, os.O_WRONLY)
        outcome = _outcome(lambda: impl(fd, tmp, [b"ok", 42], final, folders))
        assert _closed(fd)
        fresh = _outcome(lambda: impl(-1, tmp, [b"ok", "text"], final, folders))
        return outcome + fresh

    (outcome, tree) = _both(tmp_path, scenario)
    assert outcome == ("raised", TypeError, "raised", TypeError)
    assert "tmp/1.2.3.abcd.part" not in tree


def test_paths_and_chunks_os_refuses_are_refused_before_anything(tmp_path: Path) -> None:
    """A NUL in a name, an unencodable name, a non-contiguous chunk: nothing is made."""

    def scenario(root: Path, impl: WriteAndLink) -> tuple[Any, ...]:
        tmp, final, folders = _paths(root)
        strided = memoryview(b"0123456789")[::2]
        return (
            *_outcome(lambda: impl(-1, tmp, [b"x"], final + "\0evil", folders)),
            *_outcome(lambda: impl(-1, tmp, [b"x"], final, (folders[0], folders[1] + "\0x"))),
            *_outcome(lambda: impl(-1, tmp + "\ud800", [b"x"], final, folders)),
            *_outcome(lambda: impl(-1, tmp, [b"x", strided], final, folders)),
            *_outcome(lambda: impl(-1, tmp, [b"x"], final, [42])),  # type: ignore[list-item]
        )

    (outcome, tree) = _both(tmp_path, scenario)
    assert outcome == ("raised", ValueError, "raised", ValueError, "raised", UnicodeEncodeError,
                       "raised", BufferError, "raised", TypeError)  # fmt: skip
    assert tree == {"instances": None, "tmp": None}


def test_a_bad_advise_from_is_refused_before_anything(tmp_path: Path) -> None:
    def scenario(root: Path, impl: WriteAndLink) -> tuple[Any, ...]:
        tmp, final, folders = _paths(root)
        return (
            *_outcome(lambda: impl(-1, tmp, [b"x"], final, folders, "0")),
            *_outcome(lambda: impl(-1, tmp, [b"x"], final, folders, 1.0)),
            *_outcome(lambda: impl(-1, tmp, [b"x"], final, folders, 1 << 63)),
            *_outcome(lambda: impl(-1, tmp, [b"x"], final, folders, -(1 << 63) - 1)),
            # Checked before the paths, as C parses its arguments first.
            *_outcome(lambda: impl(-1, tmp, [b"x"], final + "\0evil", folders, "0")),
        )

    (outcome, tree) = _both(tmp_path, scenario)
    assert outcome == ("raised", TypeError) * 2 + ("raised", OverflowError) * 2 + (
        "raised",
        TypeError,
    )
    assert tree == {"instances": None, "tmp": None}


def test_path_like_names_are_taken_as_os_takes_them(tmp_path: Path) -> None:
    def scenario(root: Path, impl: WriteAndLink) -> tuple[Any, ...]:
        tmp, final, folders = _paths(root)
        return _outcome(
            lambda: impl(-1, Path(tmp), [b"x"], os.fsencode(final), [Path(f) for f in folders])
        )

    (outcome, tree) = _both(tmp_path, scenario)
    assert outcome == ("returned", True)
    assert tree["instances/ab/cd/1.2.3.dcm"] == b"x"


@pytest.mark.parametrize("name", sorted(implementations()))
def test_short_and_interrupted_writes_are_resumed(tmp_path: Path, name: str) -> None:
    """Into a pipe filled up first: the call blocks having written nothing, and three
    signals then make writev fail with EINTR; the pipe is then read slowly, with a
    signal after every read, so writev is cut short again and again. Every byte
    still arrives once, in order. (The twin's os.writev retries EINTR itself.)
    """
    impl = implementations()[name]
    chunks = [random.Random(n).randbytes(7_001 + n) for n in range(60)]  # ~0.4 MB
    reader_fd, writer_fd = os.pipe()
    os.set_blocking(writer_fd, False)
    filler = 0
    with contextlib.suppress(BlockingIOError):
        while True:
            filler += os.write(writer_fd, bytes(65536))
    os.set_blocking(writer_fd, True)
    received = bytearray()
    signals = {"while full": 0, "while draining": 0}
    main = threading.get_ident()

    def interrupt_then_read_slowly() -> None:
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGUSR1})
        for _ in range(3):  # the writer is blocked in writev, nothing written: EINTR
            time.sleep(0.05)
            signal.pthread_kill(main, signal.SIGUSR1)
            signals["while full"] += 1
        time.sleep(0.05)
        while block := os.read(reader_fd, 5_000):
            received.extend(block)
            time.sleep(0.0002)
            signal.pthread_kill(main, signal.SIGUSR1)
            signals["while draining"] += 1

    handled: list[int] = []
    previous = signal.signal(signal.SIGUSR1, lambda signum, frame: handled.append(signum))
    reader = threading.Thread(target=interrupt_then_read_slowly)
    try:
        tmp, final, folders = _paths(tmp_path)
        (tmp_path / "tmp").mkdir()
        (tmp_path / "instances").mkdir()
        Path(tmp).write_bytes(b"")
        reader.start()
        assert impl(writer_fd, tmp, chunks, final, folders) is True
    finally:
        reader.join(10)
        signal.signal(signal.SIGUSR1, previous)
        os.close(reader_fd)
    assert _closed(writer_fd)
    assert bytes(received) == bytes(filler) + b"".join(chunks)
    assert signals["while full"] == 3
    assert signals["while draining"] > 20
    assert handled  # the signals reached this thread (Python runs its handler late)


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    data=st.binary(max_size=6000),
    cuts=st.lists(st.integers(min_value=0, max_value=6000), max_size=40),
    many=st.booleans(),
)
def test_any_split_of_the_bytes_writes_them_whole(
    tmp_path_factory: pytest.TempPathFactory, data: bytes, cuts: list[int], many: bool
) -> None:
    """Chunks of any sizes (empty ones, views, more than IOV_MAX of them) add up."""
    bounds = sorted({0, len(data), *(c for c in cuts if c <= len(data))})
    chunks: list[Any] = [memoryview(data)[a:b] for a, b in itertools.pairwise(bounds)]
    if many:
        chunks = [*chunks, *([b""] * 700), *(bytes([i % 256]) for i in range(1500))]
    expected = b"".join(bytes(c) for c in chunks)

    def scenario(root: Path, impl: WriteAndLink) -> tuple[Any, ...]:
        tmp, final, folders = _paths(root)
        return _outcome(lambda: impl(-1, tmp, chunks, final, folders))

    (outcome, tree) = _both(tmp_path_factory.mktemp("split"), scenario)
    assert outcome == ("returned", True)
    assert tree["instances/ab/cd/1.2.3.dcm"] == expected


@pytest.mark.parametrize("name", sorted(implementations()))
def test_a_failed_last_trip_leaves_nothing_behind(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str
) -> None:
    """Through FileWriter (batched): the store error, then discard removes the part file."""
    monkeypatch.setattr(place, "write_and_link", implementations()[name])
    uid = "1.2.826.0.1.3680043.8.498.777"
    root = tmp_path / "data"
    store = FileStore(root, durable=True, batched=True, workers=1)
    asyncio.run(store.open())
    try:
        assert not store.sync_each
        leaf = (root / relative_path(uid)).parent
        leaf.parent.mkdir(parents=True, exist_ok=True)
        leaf.write_bytes(b"")  # a file where the instance's folder goes

        async def go() -> None:
            writer = store.begin(uid, b"\0" * 132)
            await writer.write(memoryview(b"x" * 1000))
            with pytest.raises(StoreError, match="cannot store instance file: Not a directory"):
                await writer.finish_and_place()
            await writer.discard()

        asyncio.run(go())
        assert [p.name for p in (root / "tmp").iterdir() if p.name.endswith(".part")] == []
        assert leaf.read_bytes() == b""
    finally:
        store.close()
