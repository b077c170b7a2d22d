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
-- end. Only the rows it changes are written.

UPDATE patient SET
    patient_name = (
        WITH RECURSIVE t(v) AS (
            SELECT patient.patient_name
            UNION ALL
            SELECT replace(replace(replace(v, '^=', '='), '^\', '\'), '=\', '\') FROM t
            WHERE instr(v, '^=') OR instr(v, '^\') OR instr(v, '=\')
        )
        SELECT rtrim(v, '^=') FROM t
        WHERE NOT (instr(v, '^=') OR instr(v, '^\') OR instr(v, '=\'))
    ),
    patient_name_folded = (
        WITH RECURSIVE t(v) AS (
            SELECT patient.patient_name_folded
            UNION ALL
            SELECT replace(replace(replace(v, '^=', '='), '^\', '\'), '=\', '\') FROM t
            WHERE instr(v, '^=') OR instr(v, '^\') OR instr(v, '=\')
        )
        SELECT rtrim(v, '^=') FROM t
        WHERE NOT (instr(v, '^=') OR instr(v, '^\') OR instr(v, '=\'))
    )
WHERE patient_name GLOB '*[=^]' OR instr(patient_name, '^=') OR instr(patient_name, '^\')
   OR instr(patient_name, '=\');

UPDATE study SET
    referring_physician_name = (
        WITH RECURSIVE t(v) AS (
            SELECT study.referring_physician_name
            UNION ALL
            SELECT replace(replace(replace(v, '^=', '='), '^\', '\'), '=\', '\') FROM t
            WHERE instr(v, '^=') OR instr(v, '^\') OR instr(v, '=\')
        )
        SELECT rtrim(v, '^=') FROM t
        WHERE NOT (instr(v, '^=') OR instr(v, '^\') OR instr(v, '=\'))
    )
WHERE referring_physician_name GLOB '*[=^]' OR instr(referring_physician_name, '^=')
   OR instr(referring_physician_name, '^\') OR instr(referring_physician_name, '=\');
