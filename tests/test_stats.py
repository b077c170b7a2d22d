"""``archive stats`` beside a running node: it reads, it never migrates or writes."""

from __future__ import annotations

import json
import sqlite3
from contextlib import closing
from pathlib import Path

import pytest

from archive.cli import main
from archive.index import Index
from archive.index.schema import GET_VERSION, apply_migrations, load_migrations
from archive.node import INDEX_FILE
from archive.store.lock import lock_data_folder, unlock_data_folder
from tests.index import make_instance, run

LATEST = load_migrations()[-1].version


def version(db: Path) -> int:
    with closing(sqlite3.connect(db)) as conn:
        return int(conn.execute(GET_VERSION).fetchone()[0])


def index_with_three_instances(data: Path) -> Path:
    data.mkdir()
    db = data / INDEX_FILE

    async def fill() -> None:
        async with await Index.open(db) as index:
            for n in range(3):
                await index.add(make_instance(n))

    run(fill())
    return db


def older_index(data: Path) -> Path:
    """An index one migration behind this code's (as an older node leaves it)."""
    data.mkdir()
    db = data / INDEX_FILE
    with closing(sqlite3.connect(db, isolation_level=None)) as conn:
        conn.execute("PRAGMA journal_mode = WAL")  # as the node leaves it
        apply_migrations(conn, str(db), load_migrations()[:-1])
    assert version(db) == LATEST - 1
    return db


def test_stats_reads_a_folder_a_node_holds(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = tmp_path / "data"
    index_with_three_instances(data)
    lock = lock_data_folder(data)  # as a serving node holds it
    try:
        assert main(["stats", "--data", str(data), "--json"]) == 0
    finally:
        unlock_data_folder(lock)
    report = json.loads(capsys.readouterr().out)
    assert (report["instances"], report["series"], report["outdated"]) == (3, 1, 0)


def test_stats_does_not_migrate_an_index_a_node_holds(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = tmp_path / "data"
    db = older_index(data)
    lock = lock_data_folder(data)
    try:
        assert main(["stats", "--data", str(data)]) == 3  # as for a folder in use
    finally:
        unlock_data_folder(lock)
    assert version(db) == LATEST - 1  # left as the older node expects it
    err = capsys.readouterr().err
    assert "older than this archive-node's" in err
    assert "in use" in err


def test_stats_migrates_an_older_index_nobody_holds(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = tmp_path / "data"
    db = older_index(data)
    assert main(["stats", "--data", str(data), "--json"]) == 0
    assert version(db) == LATEST
    assert json.loads(capsys.readouterr().out)["instances"] == 0


def test_stats_takes_any_path_that_names_the_folder(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = tmp_path / "data"
    index_with_three_instances(data)
    # A leading "//" (kept by pathlib) must not become a URI's host.
    assert main(["stats", "--data", "/" + str(data), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["instances"] == 3


def test_stats_of_a_file_that_is_no_index_is_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = tmp_path / "data"
    data.mkdir()
    (data / INDEX_FILE).write_bytes(b"not a database, " * 100)
    assert main(["stats", "--data", str(data)]) == 1
    err = capsys.readouterr().err
    assert err.startswith("archive stats: cannot read ")
    assert err.count("\n") == 1
