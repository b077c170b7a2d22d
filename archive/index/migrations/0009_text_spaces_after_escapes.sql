-- 0009: text values without the spaces an escape sequence hid.
--
-- Leading and trailing spaces of SH and LO values are insignificant (PS3.5
-- Table 6.2-1). They were stripped from the value's bytes before decoding, so a
-- space just after an ISO 2022 escape sequence (ESC $ ) C, then " ...") or just
-- before a closing one stayed in the indexed text, and a query for the value
-- without it (queries drop theirs) missed it. Values are now stripped once
-- decoded too (archive/dicom/attributes.py decode_values); this brings those
-- indexed before to the same form. Only such values can hold a space at either
-- end: the bytes' own ones were always stripped.
--
-- A Patient ID (or its issuer) is part of the patient's identity (patient_key,
-- archive/index/batch.py): its row takes the new key, unless a row already holds
-- it (the patient was also sent without the space), which then stays apart as
-- it was. Sequence items' text (the *_sequence columns) is left to `archive
-- reindex --all`.

UPDATE study SET accession_number = trim(accession_number, ' ')
WHERE accession_number GLOB ' *' OR accession_number GLOB '* ';

UPDATE study SET study_id = trim(study_id, ' ')
WHERE study_id GLOB ' *' OR study_id GLOB '* ';

UPDATE study SET study_description = trim(study_description, ' ')
WHERE study_description GLOB ' *' OR study_description GLOB '* ';

UPDATE series SET series_description = trim(series_description, ' ')
WHERE series_description GLOB ' *' OR series_description GLOB '* ';

CREATE TEMP TABLE spaced_id AS
SELECT pk, trim(patient_id, ' ') AS id, trim(issuer_of_patient_id, ' ') AS issuer
FROM patient
WHERE patient_id GLOB ' *' OR patient_id GLOB '* '
   OR issuer_of_patient_id GLOB ' *' OR issuer_of_patient_id GLOB '* ';

UPDATE patient
SET patient_id = s.id, issuer_of_patient_id = s.issuer, patient_key = s.id || '\' || s.issuer
FROM temp.spaced_id AS s
WHERE s.pk = patient.pk
  AND s.id <> ''
  AND patient.patient_id <> ''
  AND NOT EXISTS (SELECT 1 FROM patient AS held WHERE held.patient_key = s.id || '\' || s.issuer)
  AND s.pk = (SELECT min(o.pk) FROM temp.spaced_id AS o WHERE o.id = s.id AND o.issuer = s.issuer);

DROP TABLE temp.spaced_id;
