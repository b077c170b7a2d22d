-- 0001: the four query levels of PS3.4 C.6 (patient, study, series, instance).
--
-- Every attribute C-FIND matches on or returns lives in a column, so a query never
-- opens a DICOM file. Text columns hold values already decoded with the dataset's
-- Specific Character Set (0008,0005); the original value is kept on each level so a
-- response can be encoded in a repertoire that represents the text. Empty values
-- are '' (never NULL) for strings and NULL for numbers, as the header extractor
-- gives them.
--
-- Aggregates (number_of_*, modalities_in_study, sop_classes_in_study) are kept by
-- the group-commit writer in the same transaction as the rows they count.
-- Multi-valued aggregates are stored as DICOM multi-values: sorted, '\'-separated.
--
-- The runner (schema.py) applies this file in one transaction and sets
-- PRAGMA user_version; this file must not contain BEGIN/COMMIT.

CREATE TABLE patient (
    pk                      INTEGER PRIMARY KEY,
    -- Identity is Patient ID (0010,0020) + Issuer of Patient ID (0010,0021);
    -- an instance without a Patient ID gets a patient of its own study
    -- (archive/index/batch.py patient_key).
    patient_key             TEXT NOT NULL UNIQUE,
    patient_id              TEXT NOT NULL,
    issuer_of_patient_id    TEXT NOT NULL,
    patient_name            TEXT NOT NULL DEFAULT '',
    -- str.casefold() of patient_name, for case-insensitive PN matching beyond
    -- ASCII (COLLATE NOCASE and lower() fold ASCII only).
    patient_name_folded     TEXT NOT NULL DEFAULT '',
    patient_birth_date      TEXT NOT NULL DEFAULT '',
    patient_sex             TEXT NOT NULL DEFAULT '',
    specific_character_set  TEXT NOT NULL DEFAULT '',
    number_of_studies       INTEGER NOT NULL DEFAULT 0,   -- (0020,1200)
    number_of_series        INTEGER NOT NULL DEFAULT 0,   -- (0020,1202)
    number_of_instances     INTEGER NOT NULL DEFAULT 0    -- (0020,1204)
);
CREATE INDEX patient_by_id ON patient (patient_id, issuer_of_patient_id);
CREATE INDEX patient_by_name ON patient (patient_name);
CREATE INDEX patient_by_name_folded ON patient (patient_name_folded);
CREATE INDEX patient_by_birth_date ON patient (patient_birth_date);

CREATE TABLE study (
    pk                          INTEGER PRIMARY KEY,
    study_instance_uid          TEXT NOT NULL UNIQUE,
    patient_pk                  INTEGER NOT NULL REFERENCES patient (pk),
    study_date                  TEXT NOT NULL DEFAULT '',
    study_time                  TEXT NOT NULL DEFAULT '',
    accession_number            TEXT NOT NULL DEFAULT '',
    study_id                    TEXT NOT NULL DEFAULT '',
    study_description           TEXT NOT NULL DEFAULT '',
    referring_physician_name    TEXT NOT NULL DEFAULT '',
    specific_character_set      TEXT NOT NULL DEFAULT '',
    number_of_series            INTEGER NOT NULL DEFAULT 0,   -- (0020,1206)
    number_of_instances         INTEGER NOT NULL DEFAULT 0,   -- (0020,1208)
    modalities_in_study         TEXT NOT NULL DEFAULT '',     -- (0008,0061)
    sop_classes_in_study        TEXT NOT NULL DEFAULT ''      -- (0008,0062)
);
CREATE INDEX study_by_patient ON study (patient_pk);
CREATE INDEX study_by_date ON study (study_date, study_time);
CREATE INDEX study_by_accession_number ON study (accession_number);
CREATE INDEX study_by_study_id ON study (study_id);

-- SOP classes per study with instance counts: the writer adds and subtracts here,
-- so sop_classes_in_study is rebuilt from a handful of rows, never from a scan of
-- the study's instances (which would make each insert O(study size)).
CREATE TABLE study_sop_class (
    study_pk        INTEGER NOT NULL REFERENCES study (pk) ON DELETE CASCADE,
    sop_class_uid   TEXT NOT NULL,
    instances       INTEGER NOT NULL,
    PRIMARY KEY (study_pk, sop_class_uid)
) WITHOUT ROWID;

CREATE TABLE series (
    pk                      INTEGER PRIMARY KEY,
    series_instance_uid     TEXT NOT NULL UNIQUE,
    study_pk                INTEGER NOT NULL REFERENCES study (pk),
    modality                TEXT NOT NULL DEFAULT '',
    series_number           INTEGER,
    series_description      TEXT NOT NULL DEFAULT '',
    body_part_examined      TEXT NOT NULL DEFAULT '',
    series_date             TEXT NOT NULL DEFAULT '',
    series_time             TEXT NOT NULL DEFAULT '',
    specific_character_set  TEXT NOT NULL DEFAULT '',
    number_of_instances     INTEGER NOT NULL DEFAULT 0    -- (0020,1209)
);
-- (study_pk, modality) serves both "series of a study" and modalities_in_study.
CREATE INDEX series_by_study ON series (study_pk, modality);
CREATE INDEX series_by_modality ON series (modality);

CREATE TABLE instance (
    pk                      INTEGER PRIMARY KEY,
    sop_instance_uid        TEXT NOT NULL UNIQUE,
    series_pk               INTEGER NOT NULL REFERENCES series (pk),
    -- Denormalised from series: a study-level retrieve lists its files with one
    -- index range, and removals find their study without a join.
    study_pk                INTEGER NOT NULL REFERENCES study (pk),
    sop_class_uid           TEXT NOT NULL,
    instance_number         INTEGER,
    content_date            TEXT NOT NULL DEFAULT '',
    content_time            TEXT NOT NULL DEFAULT '',
    rows                    INTEGER,
    columns                 INTEGER,
    number_of_frames        INTEGER,
    specific_character_set  TEXT NOT NULL DEFAULT '',
    transfer_syntax_uid     TEXT NOT NULL,
    path                    TEXT NOT NULL,
    size                    INTEGER NOT NULL CHECK (size >= 0),
    digest                  TEXT NOT NULL,
    source_ae               TEXT NOT NULL DEFAULT '',
    received_at             REAL NOT NULL
);
CREATE INDEX instance_by_series ON instance (series_pk, instance_number);
CREATE INDEX instance_by_study ON instance (study_pk);
CREATE INDEX instance_by_sop_class ON instance (sop_class_uid);

-- Archive-wide totals, one row, kept by the writer: stats() must not scan the
-- instance table (sum(size) over millions of rows takes seconds).
CREATE TABLE totals (
    id          INTEGER PRIMARY KEY CHECK (id = 1),
    instances   INTEGER NOT NULL,
    bytes       INTEGER NOT NULL
);
INSERT INTO totals (id, instances, bytes) VALUES (1, 0, 0);
