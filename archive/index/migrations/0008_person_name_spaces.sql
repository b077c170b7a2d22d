-- 0008: person names without the spaces around their components.
--
-- PS3.5 Table 6.2-1 (PN, as CP-726 clarified it) allows leading and trailing
-- spaces in each component and calls them insignificant: " DOE ^JOHN " and
-- "DOE^JOHN" are one name. Names are now indexed, and query values read, with
-- each component's own spaces dropped (archive/dicom/charset.py
-- decode_person_name), so that either form finds the other; this brings the names
-- indexed before to the same form. Only the patient and study levels hold person
-- names, so no instance row changes and nothing needs `archive reindex`.
--
-- In SQL: a space next to a delimiter ("^" between components, "=" between
-- component groups, "\" between values) goes, repeated until none is left (each
-- round takes one from each run), with 0007's trimming of the empty trailing
-- components and groups that this can leave ("^=", "^\", "=\"); then the spaces
-- and the trailing "^" and "=" at both ends of the whole.

CREATE TEMP TABLE spaced_name AS
WITH RECURSIVE t(source, pk, v) AS (
    SELECT 'patient', pk, patient_name FROM patient
    WHERE patient_name GLOB ' *' OR patient_name GLOB '* ' OR patient_name GLOB '* [=^\]*'
       OR patient_name GLOB '*[=^\] *'
    UNION ALL
    SELECT 'folded', pk, patient_name_folded FROM patient
    WHERE patient_name_folded GLOB ' *' OR patient_name_folded GLOB '* '
       OR patient_name_folded GLOB '* [=^\]*' OR patient_name_folded GLOB '*[=^\] *'
    UNION ALL
    SELECT 'referring', pk, referring_physician_name FROM study
    WHERE referring_physician_name GLOB ' *' OR referring_physician_name GLOB '* '
       OR referring_physician_name GLOB '* [=^\]*' OR referring_physician_name GLOB '*[=^\] *'
    UNION ALL
    SELECT source, pk,
        replace(replace(replace(replace(replace(replace(replace(replace(replace(v,
            ' ^', '^'), '^ ', '^'), ' =', '='), '= ', '='), ' \', '\'), '\ ', '\'),
            '^=', '='), '^\', '\'), '=\', '\')
    FROM t
    WHERE instr(v, ' ^') OR instr(v, '^ ') OR instr(v, ' =') OR instr(v, '= ')
       OR instr(v, ' \') OR instr(v, '\ ') OR instr(v, '^=') OR instr(v, '^\') OR instr(v, '=\')
)
SELECT source, pk, rtrim(trim(v, ' '), '^=') AS v FROM t
WHERE NOT (instr(v, ' ^') OR instr(v, '^ ') OR instr(v, ' =') OR instr(v, '= ')
       OR instr(v, ' \') OR instr(v, '\ ') OR instr(v, '^=') OR instr(v, '^\') OR instr(v, '=\'));

UPDATE patient SET patient_name = n.v
FROM temp.spaced_name AS n WHERE n.source = 'patient' AND n.pk = patient.pk;

UPDATE patient SET patient_name_folded = n.v
FROM temp.spaced_name AS n WHERE n.source = 'folded' AND n.pk = patient.pk;

UPDATE study SET referring_physician_name = n.v
FROM temp.spaced_name AS n WHERE n.source = 'referring' AND n.pk = study.pk;

DROP TABLE temp.spaced_name;
