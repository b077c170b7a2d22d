"""Shared fixtures: a node running in a background thread, peer-tool lookup."""

from __future__ import annotations

import asyncio
import contextlib
import os
import resource
import shutil
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

# Imported here, at collection, rather than first by Hypothesis's own plugin in
# pytest's terminal summary: CPython 3.11.7's compiler can raise "AST
# constructor recursion depth mismatch" (a SystemError, gh-106905, fixed in
# 3.11.8) when pytest's assertion rewriter parses hypothesis/__init__.py that
# late, after a test hit the recursion limit (tests/net/test_operations.py run
# alone showed it; the whole suite imports Hypothesis early anyway).
import hypothesis  # noqa: F401
import msgspec
import pytest

from archive.config import Config, parse_config
from archive.net import Server, loop_factory
from archive.node import Node

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def require_tool(name: str) -> str:
    """Path of an external peer tool; skip without it locally, fail without it in CI."""
    path = shutil.which(name)
    if path is None:
        message = f"{name} is not installed (apt-get install -y dcmtk)"
        if IN_CI:
            pytest.fail(message + ": interop tests must run in CI")
        pytest.skip(message)
    return path


def assert_native_chosen(chosen: object, name: str, twin: object) -> None:
    """``chosen`` is ``archive._native.<name>`` (``twin`` under ``ARCHIVE_NATIVE=0``).
    Where the extension was not built: skip locally, fail in CI (``.ci/run``
    installs a C compiler and Python's headers), as :func:`require_tool` does."""
    try:
        from archive import _native
    except ImportError:  # pragma: no cover - only where no C compiler built it
        if IN_CI:
            pytest.fail("archive._native was not built: .ci/run installs gcc and headers")
        pytest.skip("archive._native not built (no C compiler): the twins run")
    native = os.environ.get("ARCHIVE_NATIVE", "1") != "0"
    assert chosen is (getattr(_native, name) if native else twin)


class RunningNode:
    """A :class:`Server` on 127.0.0.1 with its own event loop in a daemon thread."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.host = "127.0.0.1"
        self.port = 0
        self.ae_title = config.node.ae_title
        self.server: Server | None = None
        self.node: Node | None = None
        self.loop: asyncio.AbstractEventLoop | None = None
        self._ready = threading.Event()
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._error: BaseException | None = None

    def _run(self) -> None:
        factory = loop_factory(self.config.node.loop)
        self.loop = factory() if factory else asyncio.new_event_loop()
        try:
            self.loop.run_until_complete(self._main())
        except BaseException as exc:  # surfaced in start()/stop()
            self._error = exc
            self._ready.set()
        finally:
            self.loop.close()
            self._stopped.set()

    async def _main(self) -> None:
        self._stop = asyncio.Event()
        self.node = await Node(self.config).start()
        self.server = self.node.server
        self.port = self.node.port
        self._ready.set()
        await self._stop.wait()
        await self.node.stop()

    def start(self) -> RunningNode:
        self._thread.start()
        self._ready.wait(10)
        if self._error is not None:
            raise self._error
        return self

    def call(self, fn: Callable[[], Any]) -> Any:
        """Run ``fn`` on the node's loop and return its result (e.g. read counters)."""
        assert self.loop is not None
        result: list[Any] = []
        done = threading.Event()

        def run() -> None:
            result.append(fn())
            done.set()

        self.loop.call_soon_threadsafe(run)
        done.wait(5)
        return result[0]

    def stop(self) -> None:
        if self.loop is not None and not self._stopped.is_set():
            self.loop.call_soon_threadsafe(self._stop.set)
        self._stopped.wait(30)
        if self._error is not None:
            raise self._error


def make_config(toml: str = "", **node: Any) -> Config:
    """A config for tests: listen on 127.0.0.1, ephemeral port, short grace."""
    config = parse_config(toml)
    values = {"host": "127.0.0.1", "port": 0, "shutdown_grace": 2.0, **node}
    return msgspec.structs.replace(config, node=msgspec.structs.replace(config.node, **values))


@pytest.fixture
def node_factory(tmp_path: Path) -> Iterator[Callable[..., RunningNode]]:
    """``node_factory(toml="...", **node_overrides)`` starts a node; all stop at teardown."""
    nodes: list[RunningNode] = []

    def start(toml: str = "", **node: Any) -> RunningNode:
        node.setdefault("data_dir", str(tmp_path / f"data{len(nodes)}"))
        running = RunningNode(make_config(toml, **node)).start()
        nodes.append(running)
        return running

    yield start
    for running in nodes:
        running.stop()


@pytest.fixture
def node(node_factory: Callable[..., RunningNode]) -> RunningNode:
    """A node with the embedded defaults (AE title ARCHIVE)."""
    return node_factory()


@contextlib.contextmanager
def fd_limit_at_least(need: int) -> Iterator[None]:
    """The soft RLIMIT_NOFILE raised to ``need`` for the block (processes started
    in it inherit it); the test is skipped where the hard limit is lower."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < need:
        if hard != resource.RLIM_INFINITY and hard < need:
            pytest.skip(f"RLIMIT_NOFILE hard limit {hard} < {need}")
        resource.setrlimit(resource.RLIMIT_NOFILE, (need, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
