-- 0007: person names without trailing empty components.
--
-- A PN value may omit trailing empty components and component groups, with their
-- delimiters (PS3.5 6.2.1.1): "DOE^JOHN^^^" and "DOE^JOHN" are one name. Names
-- are now indexed, and query values read, without them (archive/dicom/charset.py
-- decode_person_name), so that either form finds the other; this brings the names
-- indexed before to the same form. Only the patient and study levels hold person
-- names (no indexed sequence has a PN item), so no instance row changes and
-- HEADER_VERSION stays as it was: nothing needs `archive reindex`.
--
-- The same trimming as decode_person_name's, in SQL: the "^" before each "=" (the
-- end of a component group) and before each "\" (the end of a value: these
-- attributes are single-valued, but a sender may not be) go, and "=" before "\",
-- repeated until none is left (each round takes one), then the "^" and "=" at the
-- end. Only the names that have something to trim are gathered and written.

CREATE TEMP TABLE trimmed_name AS
WITH RECURSIVE t(source, pk, v) AS (
    SELECT 'patient', pk, patient_name FROM patient
    WHERE patient_name GLOB '*[=^]'
       OR instr(patient_name, '^=') OR instr(patient_name, '^\') OR instr(patient_name, '=\')
    UNION ALL
    SELECT 'folded', pk, patient_name_folded FROM patient
    WHERE patient_name_folded GLOB '*[=^]'
       OR instr(patient_name_folded, '^=') OR instr(patient_name_folded, '^\') OR instr(patient_name_folded, '=\')
    UNION ALL
    SELECT 'referring', pk, referring_physician_name FROM study
    WHERE referring_physician_name GLOB '*[=^]'
       OR instr(referring_physician_name, '^=') OR instr(referring_physician_name, '^\') OR instr(referring_physician_name, '=\')
    UNION ALL
    SELECT source, pk, replace(replace(replace(v, '^=', '='), '^\', '\'), '=\', '\') FROM t
    WHERE instr(v, '^=') OR instr(v, '^\') OR instr(v, '=\')
)
SELECT source, pk, rtrim(v, '^=') AS v FROM t
WHERE NOT (instr(v, '^=') OR instr(v, '^\') OR instr(v, '=\'));

UPDATE patient SET patient_name = n.v
FROM temp.trimmed_name AS n WHERE n.source = 'patient' AND n.pk = patient.pk;

UPDATE patient SET patient_name_folded = n.v
FROM temp.trimmed_name AS n WHERE n.source = 'folded' AND n.pk = patient.pk;

UPDATE study SET referring_physician_name = n.v
FROM temp.trimmed_name AS n WHERE n.source = 'referring' AND n.pk = study.pk;

DROP TABLE temp.trimmed_name;
