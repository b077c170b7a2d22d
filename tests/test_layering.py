"""The layering rules of DESIGN.md, enforced on the source with ``ast``.

* ``archive/dicom`` is pure protocol code: no module imports (at any level,
  inside functions too) an I/O, concurrency or database module, or pynetdicom,
  or calls the builtin ``open``; and none imports the layers above it at run
  time (an ``if TYPE_CHECKING:`` block is not run time).
* Across ``archive/``, only ``archive/net/`` touches sockets, and only the entry
  point and the layers built on the event loop use asyncio (ALLOWED below).
* The layers between import only down (LAYERS_ABOVE below): the service providers
  never import the driver (``archive/net``), which imports them; what they need
  of it (C-MOVE's sub-associations) ``node.py`` hands them behind a Protocol.

A failure names the file, the line and the import.
"""

from __future__ import annotations

import ast
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import NamedTuple

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "archive"
DICOM = PACKAGE / "dicom"

#: Top-level modules archive/dicom must never import: I/O, clocks and threads
#: belong to the driver (archive/net), storage to store/ and index/; pynetdicom
#: drags sockets and threads in with it.
FORBIDDEN_IN_DICOM = frozenset(
    {
        "asyncio",
        "anyio",
        "socket",
        "selectors",
        "ssl",
        "threading",
        "sqlite3",
        "aiosqlite",
        "subprocess",
        "uvloop",
        "pynetdicom",
    }
)
#: Files and clocks (DESIGN.md) are not for archive/dicom either; the interpreter
#: itself loads some of these at start-up, so they are checked in the source only.
FORBIDDEN_IN_DICOM_SOURCE = FORBIDDEN_IN_DICOM | {
    "os",
    "io",
    "pathlib",
    "shutil",
    "tempfile",
    "mmap",
    "time",
    "concurrent",
    "multiprocessing",
}

#: The layers above archive/dicom (DESIGN.md "Layers": imports point down only).
UPPER_LAYERS = (
    "archive.net",
    "archive.services",
    "archive.store",
    "archive.index",
    "archive.cli",
    "archive.config",
)

#: Who in archive/ may import what, as paths relative to archive/ (a trailing
#: "/" covers a whole package). Everything else may import neither.
ALLOWED: dict[str, tuple[str, ...]] = {
    # The driver: sockets, TLS, timers, the event loop.
    "socket": ("net/",),
    # The entry point runs the loop; the driver and the service providers are
    # coroutines on it and take asyncio types (queues, events) in their signatures.
    # The index's group-commit writer is a task, the store hands blocking file
    # I/O to its thread pool, and node.py composes them (DESIGN.md). The offline
    # commands that read many files at once (import, reindex, check --verify) bound
    # how many are in flight with tasks of their own.
    "asyncio": (
        "cli.py",
        "node.py",
        "importer.py",
        "reindex.py",
        "reconcile.py",
        "net/",
        "scu/",
        "services/",
        "index/",
        "store/",
    ),
}


#: The entry points and composition root: above every package in archive/.
_ENTRY = (
    "archive.cli",
    "archive.cli_qr",
    "archive.cli_admin",
    "archive.node",
    "archive.importer",
    "archive.reconcile",
    "archive.reindex",
    "archive.config",
)
#: What each package may not import at run time: the layers above it (DESIGN.md
#: "Layers"), as dotted module prefixes.
LAYERS_ABOVE: dict[str, tuple[str, ...]] = {
    "services/": ("archive.net", "archive.scu", *_ENTRY),
    "store/": ("archive.net", "archive.services", "archive.scu", *_ENTRY),
    "index/": ("archive.net", "archive.services", "archive.scu", "archive.store", *_ENTRY),
}


class Import(NamedTuple):
    path: Path
    line: int
    module: str  # absolute dotted name
    text: str  # the source line, for the failure message

    def __str__(self) -> str:
        return f"{self.path.relative_to(ROOT)}:{self.line}: {self.text.strip()}"


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _is_type_checking(test: ast.expr) -> bool:
    if isinstance(test, ast.Name):
        return test.id == "TYPE_CHECKING"
    return isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"


def _run_time_nodes(tree: ast.AST) -> Iterator[ast.AST]:
    """Every node that can run, skipping the bodies of ``if TYPE_CHECKING:``."""
    stack: list[ast.AST] = [tree]
    while stack:
        node = stack.pop()
        yield node
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            stack.extend(node.orelse)
            continue
        stack.extend(ast.iter_child_nodes(node))


def _resolve(module: str | None, level: int, name: str, is_package: bool) -> str:
    """The absolute module a (possibly relative) ``from`` import refers to."""
    if level == 0:
        return module or ""
    base = name.split(".")
    # In a package's __init__, "." is the package itself; elsewhere, the parent.
    drop = level - 1 if is_package else level
    base = base[: len(base) - drop] if drop else base
    return ".".join([*base, module] if module else base)


def imports(path: Path, source: str | None = None) -> list[Import]:
    """Run-time imports of one module, including dynamic ones with a literal name."""
    text = path.read_text(encoding="utf-8") if source is None else source
    lines = text.splitlines()
    tree = ast.parse(text, filename=str(path))
    name = _module_name(path)
    is_package = path.name == "__init__.py"
    found: list[Import] = []

    def add(node: ast.AST, module: str) -> None:
        line = getattr(node, "lineno", 0)
        found.append(Import(path, line, module, lines[line - 1] if line else ""))

    for node in _run_time_nodes(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                add(node, alias.name)
        elif isinstance(node, ast.ImportFrom):
            base = _resolve(node.module, node.level, name, is_package)
            add(node, base)
            # "from archive import net" imports archive.net.
            for alias in node.names:
                if alias.name != "*":
                    add(node, f"{base}.{alias.name}")
        elif (
            isinstance(node, ast.Call)
            and _is_dynamic_import(node.func)
            and node.args
            and isinstance(node.args[0], ast.Constant)
            and isinstance(node.args[0].value, str)
        ):
            add(node, node.args[0].value)
    return found


def _is_dynamic_import(func: ast.expr) -> bool:
    if isinstance(func, ast.Name):
        return func.id in ("__import__", "import_module")
    return isinstance(func, ast.Attribute) and func.attr == "import_module"


def open_calls(path: Path, source: str | None = None) -> list[Import]:
    """Calls of the builtin ``open`` (also as builtins.open, io.open, os.open/fdopen)."""
    text = path.read_text(encoding="utf-8") if source is None else source
    lines = text.splitlines()
    found = []
    for node in _run_time_nodes(ast.parse(text, filename=str(path))):
        if not isinstance(node, ast.Call):
            continue
        func = node.func
        hit = (isinstance(func, ast.Name) and func.id == "open") or (
            isinstance(func, ast.Attribute)
            and func.attr in ("open", "fdopen")
            and isinstance(func.value, ast.Name)
            and func.value.id in ("builtins", "io", "os", "codecs")
        )
        if hit:
            found.append(Import(path, node.lineno, "open", lines[node.lineno - 1]))
    return found


def _top(module: str) -> str:
    return module.split(".")[0]


def _under(module: str, package: str) -> bool:
    return module == package or module.startswith(package + ".")


def _sources(root: Path) -> list[Path]:
    return sorted(root.rglob("*.py"))


# ---- the checks ----------------------------------------------------------------------


def dicom_violations(paths: list[Path], sources: dict[Path, str] | None = None) -> list[str]:
    sources = sources or {}
    problems = []
    for path in paths:
        for imp in imports(path, sources.get(path)):
            if _top(imp.module) in FORBIDDEN_IN_DICOM_SOURCE:
                problems.append(f"{imp}  ({_top(imp.module)} is I/O; not in archive/dicom)")
            for layer in UPPER_LAYERS:
                if _under(imp.module, layer):
                    problems.append(f"{imp}  ({layer} is above archive/dicom)")
        problems.extend(
            f"{call}  (no file I/O in archive/dicom)"
            for call in open_calls(path, sources.get(path))
        )
    return sorted(set(problems))


def package_violations(paths: list[Path], sources: dict[Path, str] | None = None) -> list[str]:
    sources = sources or {}
    problems = []
    for path in paths:
        relative = path.relative_to(PACKAGE).as_posix()
        for imp in imports(path, sources.get(path)):
            allowed = ALLOWED.get(_top(imp.module))
            if allowed is None:
                continue
            if not any(
                relative == a or (a.endswith("/") and relative.startswith(a)) for a in allowed
            ):
                problems.append(f"{imp}  ({_top(imp.module)} only in {', '.join(allowed)})")
    return sorted(set(problems))


def layer_violations(paths: list[Path], sources: dict[Path, str] | None = None) -> list[str]:
    sources = sources or {}
    problems = []
    for path in paths:
        relative = path.relative_to(PACKAGE).as_posix()
        for package, above in LAYERS_ABOVE.items():
            if not relative.startswith(package):
                continue
            for imp in imports(path, sources.get(path)):
                problems.extend(
                    f"{imp}  ({layer} is above archive/{package})"
                    for layer in above
                    if _under(imp.module, layer)
                )
    return sorted(set(problems))


def test_dicom_is_pure_protocol_code() -> None:
    paths = _sources(DICOM)
    assert paths, "archive/dicom has no modules?"
    problems = dicom_violations(paths)
    assert not problems, "archive/dicom must do no I/O:\n" + "\n".join(problems)


def test_only_the_driver_touches_sockets_and_asyncio() -> None:
    problems = package_violations(_sources(PACKAGE))
    assert not problems, "layering:\n" + "\n".join(problems)


def test_imports_point_down_only() -> None:
    problems = layer_violations(_sources(PACKAGE))
    assert not problems, "layering:\n" + "\n".join(problems)


def test_importing_dicom_loads_no_io_module() -> None:
    """At run time too: nothing archive/dicom imports drags I/O in indirectly."""
    modules = sorted(_module_name(path) for path in _sources(DICOM))
    script = textwrap.dedent(
        f"""
        import importlib, sys
        for name in {modules!r}:
            importlib.import_module(name)
        bad = sorted(m for m in {sorted(FORBIDDEN_IN_DICOM)!r} if m in sys.modules)
        upper = sorted(
            m for m in sys.modules if m.startswith({UPPER_LAYERS!r})
        )
        print(" ".join(bad + upper))
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True, timeout=60
    )
    assert result.stdout.split() == [], f"importing archive/dicom loaded: {result.stdout}"


# ---- the checker itself -----------------------------------------------------------------

_FAKE = DICOM / "ul" / "fake.py"


def test_checker_finds_every_kind_of_violation() -> None:
    source = textwrap.dedent(
        """
        from __future__ import annotations
        import typing
        from typing import TYPE_CHECKING
        import socket as s
        from ... import net
        from ...config import Config

        if TYPE_CHECKING:
            import asyncio
            from archive.services import base
        else:
            import threading

        if typing.TYPE_CHECKING:
            import anyio

        def later():
            import ssl
            from sqlite3 import connect
            with open("x") as f:
                pass
            return __import__("subprocess"), importlib.import_module("pynetdicom.ae")
        """
    )
    problems = dicom_violations([_FAKE], {_FAKE: source})
    text = "\n".join(problems)
    for expected in (
        "fake.py:5: import socket as s  (socket",
        "fake.py:6: from ... import net  (archive.net",
        "fake.py:7: from ...config import Config  (archive.config",
        "fake.py:13: import threading  (threading",
        "fake.py:19: import ssl",
        "fake.py:20: from sqlite3 import connect",
        'fake.py:21: with open("x") as f:  (no file I/O',
        "fake.py:23:",
    ):
        assert expected in text, f"{expected!r} not in\n{text}"
    assert "subprocess is I/O" in text
    assert "pynetdicom is I/O" in text
    # Type-only imports are not run-time imports.
    assert "asyncio" not in text
    assert "anyio" not in text
    assert "archive.services" not in text


def test_checker_resolves_relative_imports() -> None:
    assert _resolve("codec", 1, "archive.dicom.ul.machine", is_package=False) == (
        "archive.dicom.ul.codec"
    )
    assert _resolve(None, 2, "archive.dicom.ul.machine", is_package=False) == "archive.dicom"
    assert _resolve("net", 2, "archive.dicom", is_package=True) == "archive.net"
    assert _resolve("ul", 1, "archive.dicom", is_package=True) == "archive.dicom.ul"


def test_checker_enforces_the_allowed_list() -> None:
    cli = PACKAGE / "cli.py"
    store = PACKAGE / "dicom" / "writer.py"
    net = PACKAGE / "net" / "server.py"
    services = PACKAGE / "services" / "store.py"
    sources = {
        cli: "import asyncio\nimport socket\n",
        store: "import asyncio.tasks\n",
        net: "import socket\nimport asyncio\n",
        services: "from asyncio import Queue\n",
    }
    problems = package_violations(list(sources), sources)
    assert problems == sorted(
        [
            "archive/cli.py:2: import socket  (socket only in net/)",
            "archive/dicom/writer.py:1: import asyncio.tasks  (asyncio only in cli.py, "
            "node.py, importer.py, reindex.py, reconcile.py, net/, scu/, services/, index/, "
            "store/)",
        ]
    )


def test_checker_finds_imports_of_upper_layers() -> None:
    retrieve = PACKAGE / "services" / "retrieve.py"
    files = PACKAGE / "store" / "files.py"
    index = PACKAGE / "index" / "database.py"
    sources = {
        retrieve: textwrap.dedent(
            """
            from typing import TYPE_CHECKING
            from archive.index import InstanceRow
            from archive.store import DatasetReader
            from archive.net import associate
            from .. import node
            if TYPE_CHECKING:
                from archive.net import Timeouts

            def later():
                from ..net.client import associate
            """
        ),
        files: "from archive.services import Cancel\nfrom archive.index import Index\n",
        index: "import archive.store.files\nfrom archive.config import Config\n",
    }
    assert layer_violations(list(sources), sources) == sorted(
        [
            "archive/index/database.py:1: import archive.store.files  "
            "(archive.store is above archive/index/)",
            "archive/index/database.py:2: from archive.config import Config  "
            "(archive.config is above archive/index/)",
            "archive/services/retrieve.py:5: from archive.net import associate  "
            "(archive.net is above archive/services/)",
            "archive/services/retrieve.py:6: from .. import node  "
            "(archive.node is above archive/services/)",
            "archive/services/retrieve.py:11: from ..net.client import associate  "
            "(archive.net is above archive/services/)",
            "archive/store/files.py:1: from archive.services import Cancel  "
            "(archive.services is above archive/store/)",
        ]
    )
