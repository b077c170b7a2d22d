-- 0010: what 0009 left of the spaces an escape sequence hid.
--
-- 0009 trimmed top-level text, and a spaced Patient ID unless a patient already
-- held the trimmed one: that patient (sent without the space) and the spaced one
-- stayed apart, so a query by the Patient ID missed the spaced one's studies,
-- where ingest now files them all under one patient. Here the spaced patient's
-- studies move to the one that holds the trimmed key, whose empty values take
-- the spaced one's, and the spaced patient goes; the moved-to patient's counts
-- are counted again from its studies.
--
-- 0009 left text inside the indexed sequences to `archive reindex --all`, which
-- cannot do it: a patient, study or series value is only filled where the level
-- has none. Every text value in those JSON columns is trimmed here instead
-- (their VRs, SH, LO and CS, hold no significant space at either end: PS3.5
-- Table 6.2-1; the header reader strips such values since 0009), one value at a
-- time along a recursive fold of json_set.

CREATE TEMP TABLE spaced_patient AS
SELECT s.pk AS spaced_pk, t.pk AS target_pk
FROM patient AS s
JOIN patient AS t
  ON t.patient_key = trim(s.patient_id, ' ') || '\' || trim(s.issuer_of_patient_id, ' ')
WHERE (s.patient_id GLOB ' *' OR s.patient_id GLOB '* '
       OR s.issuer_of_patient_id GLOB ' *' OR s.issuer_of_patient_id GLOB '* ')
  AND trim(s.patient_id, ' ') <> ''
  AND t.pk <> s.pk;

UPDATE study SET patient_pk = m.target_pk
FROM temp.spaced_patient AS m
WHERE study.patient_pk = m.spaced_pk;

UPDATE patient
SET patient_name = CASE WHEN patient.patient_name = '' THEN s.patient_name
                        ELSE patient.patient_name END,
    patient_name_folded = CASE WHEN patient.patient_name = '' THEN s.patient_name_folded
                               ELSE patient.patient_name_folded END,
    patient_birth_date = CASE WHEN patient.patient_birth_date = '' THEN s.patient_birth_date
                              ELSE patient.patient_birth_date END,
    patient_sex = CASE WHEN patient.patient_sex = '' THEN s.patient_sex
                       ELSE patient.patient_sex END,
    other_patient_ids_sequence =
        CASE WHEN patient.other_patient_ids_sequence = '' THEN s.other_patient_ids_sequence
             ELSE patient.other_patient_ids_sequence END
FROM temp.spaced_patient AS m
JOIN patient AS s ON s.pk = m.spaced_pk
WHERE patient.pk = m.target_pk;

UPDATE patient
SET number_of_studies = (SELECT count(*) FROM study WHERE study.patient_pk = patient.pk),
    number_of_series = (SELECT coalesce(sum(number_of_series), 0) FROM study
                        WHERE study.patient_pk = patient.pk),
    number_of_instances = (SELECT coalesce(sum(number_of_instances), 0) FROM study
                           WHERE study.patient_pk = patient.pk)
WHERE pk IN (SELECT target_pk FROM temp.spaced_patient);

DELETE FROM patient WHERE pk IN (SELECT spaced_pk FROM temp.spaced_patient);

DROP TABLE temp.spaced_patient;

WITH RECURSIVE spaced AS (
    SELECT r.pk, t.fullkey, trim(t.atom, ' ') AS trimmed,
           row_number() OVER (PARTITION BY r.pk ORDER BY t.id) AS n
    FROM patient AS r, json_tree(r.other_patient_ids_sequence) AS t
    WHERE r.other_patient_ids_sequence <> '' AND t.type = 'text'
      AND (t.atom GLOB ' *' OR t.atom GLOB '* ')
),
fold (pk, n, doc) AS (
    SELECT r.pk, 0, r.other_patient_ids_sequence FROM patient AS r
    WHERE r.pk IN (SELECT pk FROM spaced)
    UNION ALL
    SELECT f.pk, f.n + 1, json_set(f.doc, s.fullkey, s.trimmed)
    FROM fold AS f JOIN spaced AS s ON s.pk = f.pk AND s.n = f.n + 1
)
UPDATE patient
SET other_patient_ids_sequence = (
    SELECT doc FROM fold WHERE fold.pk = patient.pk ORDER BY n DESC LIMIT 1
)
WHERE pk IN (SELECT pk FROM spaced);

WITH RECURSIVE spaced AS (
    SELECT r.pk, t.fullkey, trim(t.atom, ' ') AS trimmed,
           row_number() OVER (PARTITION BY r.pk ORDER BY t.id) AS n
    FROM study AS r, json_tree(r.procedure_code_sequence) AS t
    WHERE r.procedure_code_sequence <> '' AND t.type = 'text'
      AND (t.atom GLOB ' *' OR t.atom GLOB '* ')
),
fold (pk, n, doc) AS (
    SELECT r.pk, 0, r.procedure_code_sequence FROM study AS r
    WHERE r.pk IN (SELECT pk FROM spaced)
    UNION ALL
    SELECT f.pk, f.n + 1, json_set(f.doc, s.fullkey, s.trimmed)
    FROM fold AS f JOIN spaced AS s ON s.pk = f.pk AND s.n = f.n + 1
)
UPDATE study
SET procedure_code_sequence = (
    SELECT doc FROM fold WHERE fold.pk = study.pk ORDER BY n DESC LIMIT 1
)
WHERE pk IN (SELECT pk FROM spaced);

WITH RECURSIVE spaced AS (
    SELECT r.pk, t.fullkey, trim(t.atom, ' ') AS trimmed,
           row_number() OVER (PARTITION BY r.pk ORDER BY t.id) AS n
    FROM series AS r, json_tree(r.request_attributes_sequence) AS t
    WHERE r.request_attributes_sequence <> '' AND t.type = 'text'
      AND (t.atom GLOB ' *' OR t.atom GLOB '* ')
),
fold (pk, n, doc) AS (
    SELECT r.pk, 0, r.request_attributes_sequence FROM series AS r
    WHERE r.pk IN (SELECT pk FROM spaced)
    UNION ALL
    SELECT f.pk, f.n + 1, json_set(f.doc, s.fullkey, s.trimmed)
    FROM fold AS f JOIN spaced AS s ON s.pk = f.pk AND s.n = f.n + 1
)
UPDATE series
SET request_attributes_sequence = (
    SELECT doc FROM fold WHERE fold.pk = series.pk ORDER BY n DESC LIMIT 1
)
WHERE pk IN (SELECT pk FROM spaced);

WITH RECURSIVE spaced AS (
    SELECT r.pk, t.fullkey, trim(t.atom, ' ') AS trimmed,
           row_number() OVER (PARTITION BY r.pk ORDER BY t.id) AS n
    FROM instance AS r, json_tree(r.concept_name_code_sequence) AS t
    WHERE r.concept_name_code_sequence <> '' AND t.type = 'text'
      AND (t.atom GLOB ' *' OR t.atom GLOB '* ')
),
fold (pk, n, doc) AS (
    SELECT r.pk, 0, r.concept_name_code_sequence FROM instance AS r
    WHERE r.pk IN (SELECT pk FROM spaced)
    UNION ALL
    SELECT f.pk, f.n + 1, json_set(f.doc, s.fullkey, s.trimmed)
    FROM fold AS f JOIN spaced AS s ON s.pk = f.pk AND s.n = f.n + 1
)
UPDATE instance
SET concept_name_code_sequence = (
    SELECT doc FROM fold WHERE fold.pk = instance.pk ORDER BY n DESC LIMIT 1
)
WHERE pk IN (SELECT pk FROM spaced);

WITH RECURSIVE spaced AS (
    SELECT r.pk, t.fullkey, trim(t.atom, ' ') AS trimmed,
           row_number() OVER (PARTITION BY r.pk ORDER BY t.id) AS n
    FROM instance AS r, json_tree(r.content_template_sequence) AS t
    WHERE r.content_template_sequence <> '' AND t.type = 'text'
      AND (t.atom GLOB ' *' OR t.atom GLOB '* ')
),
fold (pk, n, doc) AS (
    SELECT r.pk, 0, r.content_template_sequence FROM instance AS r
    WHERE r.pk IN (SELECT pk FROM spaced)
    UNION ALL
    SELECT f.pk, f.n + 1, json_set(f.doc, s.fullkey, s.trimmed)
    FROM fold AS f JOIN spaced AS s ON s.pk = f.pk AND s.n = f.n + 1
)
UPDATE instance
SET content_template_sequence = (
    SELECT doc FROM fold WHERE fold.pk = instance.pk ORDER BY n DESC LIMIT 1
)
WHERE pk IN (SELECT pk FROM spaced);
