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
-- A group keeps at most four "^" (five components), so four rounds of "^=" -> "="
-- strip every group but the last, whose trailing "^" rtrim takes; trailing "="
-- were stripped on indexing already.

UPDATE patient SET
    patient_name = rtrim(replace(replace(replace(replace(
        patient_name, '^=', '='), '^=', '='), '^=', '='), '^=', '='), '^'),
    patient_name_folded = rtrim(replace(replace(replace(replace(
        patient_name_folded, '^=', '='), '^=', '='), '^=', '='), '^=', '='), '^')
WHERE patient_name LIKE '%^' OR patient_name LIKE '%^=%';

UPDATE study SET
    referring_physician_name = rtrim(replace(replace(replace(replace(
        referring_physician_name, '^=', '='), '^=', '='), '^=', '='), '^=', '='), '^')
WHERE referring_physician_name LIKE '%^' OR referring_physician_name LIKE '%^=%';
