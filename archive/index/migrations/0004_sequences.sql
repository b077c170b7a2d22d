-- 0004: the sequences C-FIND matches on (Sequence Matching, PS3.4 C.2.2.2.6).
--
-- Each holds the items of one sequence attribute as JSON text, as
-- archive/dicom/header.py extracts them: a list of objects, item keyword -> decoded
-- text (or a list of items for a nested sequence), empty values left out; '' when
-- the instance has none. archive/dicom/query_keys.py SEQUENCE_KEYS lists the item
-- keys kept. Study, series and patient values follow the same rule as their other
-- columns (the latest non-empty value wins, archive/index/batch.py).
--
-- Instances indexed before this migration have '' here, so they match a sequence
-- key only by Universal Matching, until `archive reindex` reads their headers again
-- (0006_header_version.sql).

ALTER TABLE patient ADD COLUMN other_patient_ids_sequence TEXT NOT NULL DEFAULT '';
ALTER TABLE study ADD COLUMN procedure_code_sequence TEXT NOT NULL DEFAULT '';
ALTER TABLE series ADD COLUMN request_attributes_sequence TEXT NOT NULL DEFAULT '';
ALTER TABLE instance ADD COLUMN concept_name_code_sequence TEXT NOT NULL DEFAULT '';
ALTER TABLE instance ADD COLUMN content_template_sequence TEXT NOT NULL DEFAULT '';
