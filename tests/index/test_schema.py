"""Schema creation, re-open, the version guard and the migration runner."""

from __future__ import annotations

import itertools
import sqlite3
from contextlib import closing
from pathlib import Path

import pytest

from archive.dicom.attributes import HEADER_VERSION
from archive.dicom.charset import decode_person_name, python_codecs
from archive.dicom.dataset import Element
from archive.index import Index, SchemaVersionError
from archive.index.query import find_statements
from archive.index.schema import Migration, apply_migrations, load_migrations, split_sql
from tests.index import execute, make_instance, query, run
from tests.index.test_find import _all, q

TABLES = {
    "patient",
    "study",
    "study_sop_class",
    "series",
    "instance",
    "totals",
    "unflushed",
    "maintenance",
}
LATEST = len(load_migrations())


def test_shipped_migrations_are_numbered_from_one() -> None:
    migrations = load_migrations()
    assert [m.version for m in migrations] == list(range(1, len(migrations) + 1))
    assert migrations[0].name == "0001_initial.sql"
    # No transaction control inside a file: the runner owns the transaction.
    for migration in migrations:
        for statement in migration.statements:
            assert not statement.upper().startswith(("BEGIN", "COMMIT", "ROLLBACK"))


def test_the_header_version_in_use_has_a_migration_setting_the_reindex_task() -> None:
    # A HEADER_VERSION bump without such a migration would leave older rows
    # unnoticed: no start-up warning, no count in `archive stats` (attributes.py).
    texts = {m.name: " ".join(m.statements) for m in load_migrations()}
    sets_task = {name for name, text in texts.items() if "'reindex'" in text}
    if HEADER_VERSION == 1:
        # 0006 made every row before it version 0 and sets the task for any.
        assert sets_task == {"0006_header_version.sql"}
    else:
        assert any(f"header_version < {HEADER_VERSION}" in texts[name] for name in sets_task), (
            f"HEADER_VERSION {HEADER_VERSION} needs a migration setting the reindex task"
        )


def test_open_creates_schema_in_wal_mode(tmp_path: Path) -> None:
    db = tmp_path / "index.db"

    async def main() -> None:
        index = await Index.open(db)
        await index.close()

    run(main())
    assert query(db, "PRAGMA user_version") == [(LATEST,)] == [(11,)]
    assert query(db, "PRAGMA journal_mode") == [("wal",)]
    names = {row[0] for row in query(db, "SELECT name FROM sqlite_master WHERE type='table'")}
    assert names == TABLES
    assert query(db, "SELECT id, instances, bytes FROM totals") == [(1, 0, 0)]


def test_reopen_is_idempotent_and_keeps_data(tmp_path: Path) -> None:
    db = tmp_path / "index.db"

    async def main() -> None:
        index = await Index.open(db)
        await index.add(make_instance(1))
        await index.close()
        schema = query(db, "SELECT sql FROM sqlite_master ORDER BY name")
        for _ in range(2):
            index = await Index.open(db)
            assert (await index.stats()).instances == 1
            assert await index.instance(make_instance(1).attrs.sop_instance_uid) is not None
            await index.close()
            assert query(db, "SELECT sql FROM sqlite_master ORDER BY name") == schema
            assert query(db, "PRAGMA user_version") == [(LATEST,)]

    run(main())


def test_newer_database_is_refused(tmp_path: Path) -> None:
    db = tmp_path / "index.db"

    async def main() -> None:
        await (await Index.open(db)).close()
        execute(db, f"PRAGMA user_version = {LATEST + 1}")
        with pytest.raises(SchemaVersionError) as caught:
            await Index.open(db)
        assert caught.value.found == LATEST + 1
        assert caught.value.supported == LATEST
        assert caught.value.path == str(db)
        assert caught.value.code == "index.schema_too_new"
        assert f"newer than this archive-node supports ({LATEST})" in str(caught.value)

    run(main())
    # Refusal changed nothing.
    assert query(db, "PRAGMA user_version") == [(LATEST + 1,)]


def test_a_version_1_index_gains_the_journal_and_keeps_its_rows(tmp_path: Path) -> None:
    db = tmp_path / "index.db"
    first = load_migrations()[:1]
    with closing(sqlite3.connect(db, isolation_level=None)) as conn:
        apply_migrations(conn, str(db), first)
        conn.execute(
            "INSERT INTO patient (patient_key, patient_id, issuer_of_patient_id)"
            " VALUES ('k', 'P', '')"
        )
    assert query(db, "PRAGMA user_version") == [(1,)]

    async def main() -> None:
        async with await Index.open(db) as index:
            assert await index.unflushed() == []

    run(main())
    assert query(db, "PRAGMA user_version") == [(LATEST,)]
    assert query(db, "SELECT patient_id FROM patient") == [("P",)]
    assert "unflushed" in {row[0] for row in query(db, "SELECT name FROM sqlite_master")}


def test_failing_migration_rolls_back_and_keeps_version(tmp_path: Path) -> None:
    db = tmp_path / "index.db"
    good = Migration(1, "0001_a.sql", ("CREATE TABLE a (x)",))
    bad = Migration(2, "0002_b.sql", ("CREATE TABLE b (x)", "INSERT INTO nowhere VALUES (1)"))
    fixed = Migration(2, "0002_b.sql", ("CREATE TABLE b (x)",))
    with closing(sqlite3.connect(db, isolation_level=None)) as conn:
        with pytest.raises(sqlite3.OperationalError, match="no such table: nowhere"):
            apply_migrations(conn, str(db), (good, bad))
        assert not conn.in_transaction
        assert query(db, "PRAGMA user_version") == [(1,)]
        assert {row[0] for row in query(db, "SELECT name FROM sqlite_master")} == {"a"}
        assert apply_migrations(conn, str(db), (good, fixed)) == 2
        # Already current: applies nothing, same answer.
        assert apply_migrations(conn, str(db), (good, fixed)) == 2
    assert {row[0] for row in query(db, "SELECT name FROM sqlite_master")} == {"a", "b"}


def test_split_sql_respects_comments_quotes_and_trigger_bodies() -> None:
    script = """
-- a comment; with a semicolon
CREATE TABLE t (x TEXT DEFAULT ';');  -- trailing comment
CREATE TRIGGER tr AFTER INSERT ON t BEGIN
    UPDATE t SET x = 'a;b';
    SELECT 1;
END;
-- only a comment at the end; still nothing
"""
    assert split_sql(script) == (
        "CREATE TABLE t (x TEXT DEFAULT ';');  -- trailing comment",
        "CREATE TRIGGER tr AFTER INSERT ON t BEGIN\n"
        "    UPDATE t SET x = 'a;b';\n"
        "    SELECT 1;\n"
        "END;",
    )


def test_split_sql_rejects_an_unterminated_statement() -> None:
    with pytest.raises(ValueError, match="incomplete SQL statement"):
        split_sql("CREATE TABLE t (x);\nCREATE TABLE u (y)\n")


def test_open_rejects_bad_arguments(tmp_path: Path) -> None:
    async def main() -> None:
        with pytest.raises(ValueError, match="durability"):
            await Index.open(tmp_path / "a.db", durability="lazy")  # type: ignore[arg-type]
        with pytest.raises(ValueError, match="readers"):
            await Index.open(tmp_path / "b.db", readers=0)
        with pytest.raises(ValueError, match="max_batch"):
            await Index.open(tmp_path / "c.db", max_batch=0)

    run(main())


def test_a_version_2_index_gets_its_acr_nema_dates_in_the_dicom_form(tmp_path: Path) -> None:
    """Migration 0003: dates indexed as YYYY.MM.DD before header.py normalized them
    become YYYYMMDD, so that a date range finds them; other values stay."""
    db = tmp_path / "index.db"
    old = {
        "patient_birth_date": "1950.03.02",
        "study_date": "2004.01.15",
        "series_date": "2004.01.16",
        "content_date": "2004.01.17",
    }

    async def make() -> None:
        async with await Index.open(db) as index:
            await index.add(make_instance(1, **old))
            await index.add(make_instance(1, study="9.9", patient_id="P2", study_date="2004.1.5"))

    run(make())
    _back_to_version_3(db)
    execute(db, "PRAGMA user_version = 2")

    async def reopen() -> list[object]:
        async with await Index.open(db) as index:
            found = await _all(index.find(q("STUDY", ("StudyDate", "20040101-20040131"))))
            return [record["StudyInstanceUID"] for record in found]

    assert run(reopen()) == ["1.2.3"]
    assert query(db, "PRAGMA user_version") == [(LATEST,)]
    assert query(db, "SELECT patient_birth_date FROM patient ORDER BY patient_id") == [
        ("19500302",),
        ("",),
    ]
    assert query(db, "SELECT study_date FROM study ORDER BY study_instance_uid") == [
        ("20040115",),
        ("2004.1.5",),  # not the ACR-NEMA form: left as it is
    ]
    assert query(db, "SELECT series_date FROM series ORDER BY series_instance_uid") == [
        ("20040116",),
        ("",),
    ]
    assert query(db, "SELECT content_date FROM instance ORDER BY sop_instance_uid") == [
        ("20040117",),
        ("",),
    ]


def test_migration_11_brings_acr_nema_times_to_the_dicom_form(tmp_path: Path) -> None:
    """Times indexed as HH:MM:SS before attributes.py normalized them become
    HHMMSS, so that a C-FIND response carries a TM (a review); other values stay."""
    db = tmp_path / "index.db"

    async def make() -> None:
        async with await Index.open(db) as index:
            await index.add(make_instance(1))
            await index.add(make_instance(2, study="9.9", series="9.9.1", patient_id="P2"))

    run(make())
    execute(db, "UPDATE study SET study_time = '08:30:00.25' WHERE study_instance_uid = '1.2.3'")
    execute(db, "UPDATE study SET study_time = '1015' WHERE study_instance_uid = '9.9'")
    execute(db, "UPDATE series SET series_time = '08:31'")
    execute(db, "UPDATE instance SET content_time = '8:32:00'")  # not the ACR-NEMA form
    execute(db, "PRAGMA user_version = 10")
    run(_reopen(db))
    assert query(db, "PRAGMA user_version") == [(LATEST,)]
    assert query(db, "SELECT study_time FROM study ORDER BY study_instance_uid") == [
        ("083000.25",),
        ("1015",),
    ]
    assert {row[0] for row in query(db, "SELECT series_time FROM series")} == {"0831"}
    assert {row[0] for row in query(db, "SELECT content_time FROM instance")} == {"8:32:00"}


#: The columns migration 0004 adds, by table.
SEQUENCE_COLUMNS = (
    ("patient", "other_patient_ids_sequence"),
    ("study", "procedure_code_sequence"),
    ("series", "request_attributes_sequence"),
    ("instance", "concept_name_code_sequence"),
    ("instance", "content_template_sequence"),
)


def _back_to_version_3(db: Path) -> None:
    """The index as version 3 left it: without the sequence columns (0004, 0005),
    the header version and the maintenance table (0006)."""
    execute(db, "DROP TABLE maintenance")
    execute(db, "ALTER TABLE instance DROP COLUMN header_version")
    execute(db, "DROP INDEX instance_with_concept_name")
    execute(db, "DROP INDEX instance_with_content_template")
    for table, column in SEQUENCE_COLUMNS:
        execute(db, f"ALTER TABLE {table} DROP COLUMN {column}")
    execute(db, "PRAGMA user_version = 3")


def test_a_version_3_index_gets_sequence_columns_and_matches_new_instances(
    tmp_path: Path,
) -> None:
    """Migration 0004: the sequence columns are added, '' for the rows indexed
    before (which a sequence key with an item key then does not match); instances
    added afterwards are matched on their items."""
    db = tmp_path / "index.db"
    code = '[{"CodeValue":"113000","CodingSchemeDesignator":"DCM"}]'

    async def make() -> None:
        async with await Index.open(db) as index:
            await index.add(make_instance(1, concept_name_code_sequence=code))

    run(make())
    _back_to_version_3(db)
    items = ((Element(0x00080100, "SH", b"113000"),),)

    async def reopen() -> tuple[list[object], list[object]]:
        async with await Index.open(db) as index:
            await index.add(make_instance(2, concept_name_code_sequence=code))
            keyed = await _all(index.find(q("IMAGE", ("ConceptNameCodeSequence", items))))
            every = await _all(index.find(q("IMAGE", ("ConceptNameCodeSequence", ()))))
            return [r["SOPInstanceUID"] for r in keyed], [r["SOPInstanceUID"] for r in every]

    keyed, every = run(reopen())
    assert keyed == ["1.2.3.1.2"]
    assert sorted(every) == ["1.2.3.1.1", "1.2.3.1.2"]
    assert query(db, "PRAGMA user_version") == [(LATEST,)]
    for table, column in SEQUENCE_COLUMNS:
        values = {row[0] for row in query(db, f"SELECT {column} FROM {table}")}
        assert values <= {"", code}, (table, values)
    assert query(db, "SELECT concept_name_code_sequence FROM instance ORDER BY pk") == [
        ("",),
        (code,),
    ]
    # 0006: the row made before is of header version 0, the new one current, and
    # the index remembers that a reindex is due.
    assert query(db, "SELECT header_version FROM instance ORDER BY pk") == [
        (0,),
        (HEADER_VERSION,),
    ]
    assert query(db, "SELECT task FROM maintenance") == [("reindex",)]


#: Names as an index made before 0007 may hold them, and as decode_person_name
#: reads them now (the migration must agree with it on every one).
_NAMES_BEFORE_0007 = {
    "DOE^JOHN^^^": "DOE^JOHN",
    "YAMADA^TARO^^=\u5c71\u7530^\u592a\u90ce^^": "YAMADA^TARO=\u5c71\u7530^\u592a\u90ce",
    "^^^=X^": "=X",
    "ROE^JANE": "ROE^JANE",
    "DOE^JOHN=^": "DOE^JOHN",
    "A=^^=^": "A",
    "A^^^^^^=B": "A=B",  # more carets than components allow: trimmed all the same
    "A^^^^=B^^^^=C^^": "A=B=C",
    "A^^\\B^C^": "A\\B^C",
    "A=^\\B": "A\\B",
    "^^^^": "",
    "DOE^^A": "DOE^^A",
}


def test_migration_7_trims_the_person_names_indexed_before(tmp_path: Path) -> None:
    """0007: names indexed with trailing empty components (before names were read
    without them) lose them, group by group and value by value, exactly as
    decode_person_name reads them now, so that a query in either form finds them;
    the instance rows are left as they were."""
    db = tmp_path / "index.db"
    names = {f"P{n}": raw for n, raw in enumerate(_NAMES_BEFORE_0007)}
    for raw, trimmed in _NAMES_BEFORE_0007.items():
        assert decode_person_name(raw.encode(), python_codecs(["ISO_IR 192"])) == trimmed

    async def make() -> None:
        async with await Index.open(db) as index:
            for n, patient in enumerate(names, 1):
                await index.add(make_instance(n, study=f"1.2.{n}", patient_id=patient))

    run(make())
    # As an index made before 0007 holds them (they are trimmed on the way in now).
    with closing(sqlite3.connect(db, isolation_level=None)) as conn:
        for patient, raw in names.items():
            conn.execute(
                "UPDATE patient SET patient_name = ?, patient_name_folded = ? WHERE patient_id = ?",
                (raw, raw.casefold(), patient),
            )
            conn.execute(
                "UPDATE study SET referring_physician_name = ? WHERE patient_pk ="
                " (SELECT pk FROM patient WHERE patient_id = ?)",
                (raw, patient),
            )
    instances = query(db, "SELECT * FROM instance ORDER BY pk")
    execute(db, "PRAGMA user_version = 6")
    run(_reopen(db))
    assert query(db, "PRAGMA user_version") == [(LATEST,)]  # 0008 leaves these alone
    want = {patient: _NAMES_BEFORE_0007[raw] for patient, raw in names.items()}
    assert dict(query(db, "SELECT patient_id, patient_name FROM patient")) == want
    folded = dict(query(db, "SELECT patient_id, patient_name_folded FROM patient"))
    assert folded == {patient: name.casefold() for patient, name in want.items()}
    referring = query(
        db,
        "SELECT p.patient_id, st.referring_physician_name FROM study st"
        " JOIN patient p ON p.pk = st.patient_pk",
    )
    assert dict(referring) == want
    assert query(db, "SELECT * FROM instance ORDER BY pk") == instances


def _migrated_names(names: list[str], versions: tuple[int, ...]) -> list[tuple[str, str, str]]:
    """``names`` as patient name, folded name and referring physician, through the
    migrations ``versions`` on bare tables: (name, folded, referring) per name."""
    with closing(sqlite3.connect(":memory:")) as conn:
        conn.execute(
            "CREATE TABLE patient (pk INTEGER PRIMARY KEY, patient_name, patient_name_folded)"
        )
        conn.execute("CREATE TABLE study (pk INTEGER PRIMARY KEY, referring_physician_name)")
        conn.executemany(
            "INSERT INTO patient (pk, patient_name, patient_name_folded) VALUES (?, ?, ?)",
            [(pk, name, name) for pk, name in enumerate(names)],
        )
        conn.executemany(
            "INSERT INTO study (pk, referring_physician_name) VALUES (?, ?)", enumerate(names)
        )
        for migration in load_migrations():
            if migration.version in versions:
                for statement in migration.statements:
                    conn.execute(statement)
        patients = conn.execute("SELECT patient_name, patient_name_folded FROM patient ORDER BY pk")
        studies = conn.execute("SELECT referring_physician_name FROM study ORDER BY pk")
        return [(n, f, r) for (n, f), (r,) in zip(patients, studies, strict=True)]


@pytest.mark.parametrize(
    ("versions", "alphabet", "longest"),
    [((7,), "A^=\\", 6), ((7, 8), "A ^=\\", 5)],
    ids=["0007", "0007+0008"],
)
def test_migrations_trim_every_short_name_as_decode_person_name_does(
    versions: tuple[int, ...], alphabet: str, longest: int
) -> None:
    """Migration 0007's SQL (an index made before it), and 0007 then 0008 (one made
    before both; 0008 drops the spaces around components, PS3.5 Table 6.2-1),
    against decode_person_name on every string of up to ``longest`` of the
    alphabet's characters (5,461 and 3,906 names), in all three columns."""
    names = ["".join(p) for n in range(longest + 1) for p in itertools.product(alphabet, repeat=n)]
    codecs = python_codecs([])
    for name, held in zip(names, _migrated_names(names, versions), strict=True):
        want = decode_person_name(name.encode(), codecs)
        assert held == (want, want, want), repr(name)


def test_migration_8_leaves_names_without_such_spaces_alone(tmp_path: Path) -> None:
    """An index at 7 with a spaced name and clean ones: only the spaced one changes."""
    db = tmp_path / "index.db"

    async def make() -> None:
        async with await Index.open(db) as index:
            await index.add(make_instance(1, study="1.2.1", patient_id="A"))
            await index.add(make_instance(2, study="1.2.2", patient_id="B"))

    run(make())
    execute(db, "UPDATE patient SET patient_name = ' VAN DYKE ^ MARY ANN ' WHERE patient_id = 'A'")
    execute(db, "UPDATE patient SET patient_name = 'VAN DYKE^MARY ANN' WHERE patient_id = 'B'")
    execute(db, "PRAGMA user_version = 7")
    run(_reopen(db))
    assert query(db, "PRAGMA user_version") == [(LATEST,)]
    assert query(db, "SELECT patient_id, patient_name FROM patient ORDER BY 1") == [
        ("A", "VAN DYKE^MARY ANN"),
        ("B", "VAN DYKE^MARY ANN"),
    ]


def test_migration_9_trims_text_an_escape_sequence_hid_spaces_in(tmp_path: Path) -> None:
    """Values indexed with a space after (or before) an escape sequence lose it;
    a Patient ID too, with its patient's key, unless a patient holds that key."""
    db = tmp_path / "index.db"

    async def make() -> None:
        async with await Index.open(db) as index:
            for n, patient in enumerate(("A", "B", "C", "D"), 1):
                await index.add(make_instance(n, study=f"1.2.{n}", patient_id=patient))

    run(make())
    spaced = " \u6f22\u5b57 "  # as the old decoding left " ESC $ B ... ESC ( B "
    for column, table in (
        ("accession_number", "study"),
        ("study_id", "study"),
        ("study_description", "study"),
        ("series_description", "series"),
    ):
        execute(db, f"UPDATE {table} SET {column} = '{spaced}' WHERE pk = 1")
    execute(db, "UPDATE study SET study_description = 'CHEST  ' WHERE pk = 2")
    # A: spaced, its trimmed key free; B: spaced, C holds its trimmed key.
    execute(db, "UPDATE patient SET patient_id = ' X', patient_key = ' X\\' WHERE pk = 1")
    execute(db, "UPDATE patient SET patient_id = 'C ', patient_key = 'C \\' WHERE pk = 2")
    execute(db, "PRAGMA user_version = 8")
    run(_reopen(db))
    assert query(db, "PRAGMA user_version") == [(LATEST,)]
    trimmed = spaced.strip(" ")
    assert query(db, "SELECT accession_number, study_id, study_description FROM study ORDER BY pk")[
        :2
    ] == [(trimmed, trimmed, trimmed), ("", "", "CHEST")]
    assert query(db, "SELECT series_description FROM series ORDER BY pk")[0] == (trimmed,)
    # C held "C\\": 0009 left B apart, 0010 files its study under C.
    assert query(db, "SELECT patient_id, patient_key FROM patient ORDER BY pk") == [
        ("X", "X\\"),
        ("C", "C\\"),
        ("D", "D\\"),
    ]


def test_migration_10_merges_what_0009_left_apart_and_trims_sequence_text(
    tmp_path: Path,
) -> None:
    """0009 left a spaced Patient ID apart when a patient held the trimmed one,
    and sequence text spaced as it was: a query by either missed what ingest
    now finds (a migration review)."""
    db = tmp_path / "index.db"
    spaced = " \ud751\ubd80 "

    async def make() -> None:
        async with await Index.open(db) as index:
            await index.add(make_instance(1, study="1.2.1", series="1.2.1.1", patient_id="K1"))
            await index.add(make_instance(2, study="1.2.1", series="1.2.1.1", patient_id="K1"))
            await index.add(make_instance(3, study="1.2.2", series="1.2.2.1", patient_id="K2"))
            await index.add(make_instance(4, study="1.2.3", series="1.2.3.1", patient_id="K3"))

    run(make())
    # K2 as 0009 left it: " K1", apart from K1, with a study of its own.
    execute(
        db,
        "UPDATE patient SET patient_id = ' K1', patient_key = ' K1\\',"
        " patient_name = '', patient_birth_date = '19700101' WHERE patient_id = 'K2'",
    )
    execute(db, "UPDATE patient SET patient_birth_date = '' WHERE patient_id = 'K1'")
    sequence = f'[{{"PatientID":"{spaced}","IssuerOfPatientID":"H "}},{{"PatientID":"ok"}}]'
    execute(db, f"UPDATE patient SET other_patient_ids_sequence = '{sequence}' WHERE pk = 3")
    code = f'[{{"CodeValue":"P1","CodeMeaning":"{spaced}"}}]'
    execute(db, f"UPDATE study SET procedure_code_sequence = '{code}' WHERE pk = 3")
    order = '[{"RequestedProcedureID":" RP9","AccessionNumber":"A1"}]'
    execute(db, f"UPDATE series SET request_attributes_sequence = '{order}' WHERE pk = 3")
    execute(db, f"UPDATE instance SET concept_name_code_sequence = '{code}' WHERE pk = 4")
    execute(db, "PRAGMA user_version = 9")
    run(_reopen(db))
    assert query(db, "PRAGMA user_version") == [(LATEST,)]
    trimmed = spaced.strip(" ")
    assert query(
        db,
        "SELECT patient_key, patient_birth_date, number_of_studies, number_of_series,"
        " number_of_instances FROM patient ORDER BY pk",
    ) == [("K1\\", "19700101", 2, 2, 3), ("K3\\", "", 1, 1, 1)]
    assert query(db, "SELECT p.patient_key FROM study JOIN patient AS p ON p.pk = patient_pk"
                     " WHERE study_instance_uid = '1.2.2'") == [("K1\\",)]  # fmt: skip
    assert query(db, "SELECT other_patient_ids_sequence FROM patient WHERE pk = 3") == [
        (f'[{{"PatientID":"{trimmed}","IssuerOfPatientID":"H"}},{{"PatientID":"ok"}}]',)
    ]
    assert query(db, "SELECT procedure_code_sequence FROM study WHERE pk = 3") == [
        (f'[{{"CodeValue":"P1","CodeMeaning":"{trimmed}"}}]',)
    ]
    assert query(db, "SELECT request_attributes_sequence FROM series WHERE pk = 3") == [
        ('[{"RequestedProcedureID":"RP9","AccessionNumber":"A1"}]',)
    ]
    assert query(db, "SELECT concept_name_code_sequence FROM instance WHERE pk = 4") == [
        (f'[{{"CodeValue":"P1","CodeMeaning":"{trimmed}"}}]',)
    ]


async def _reopen(db: Path) -> None:
    index = await Index.open(db)
    await index.close()


def test_image_queries_on_a_document_title_use_the_partial_index(tmp_path: Path) -> None:
    """0005: a query naming only Concept Name Code Sequence at the IMAGE level
    walks the documents' rows, not every instance."""
    db = tmp_path / "index.db"
    items = ((Element(0x00080100, "SH", b"113000"),),)
    select, parameters, _ = find_statements(q("IMAGE", ("ConceptNameCodeSequence", items)))

    async def make() -> None:
        async with await Index.open(db):
            pass

    run(make())
    plan = " ".join(
        str(row) for row in query(db, "EXPLAIN QUERY PLAN " + select, tuple(parameters))
    )
    assert "USING INDEX instance_with_concept_name" in plan, plan
