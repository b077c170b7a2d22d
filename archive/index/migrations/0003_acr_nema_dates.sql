-- 0003: dates indexed before ACR-NEMA dates were normalized.
--
-- A DA value in the retired ACR-NEMA form YYYY.MM.DD (PS3.5 Table 6.2-1, note) is
-- now indexed as YYYYMMDD (archive/dicom/header.py), so that it sorts and range-
-- matches with the others; the files keep what was sent. Rows indexed before are
-- brought to the same form, so that a study's date range finds them too.

UPDATE patient SET patient_birth_date = replace(patient_birth_date, '.', '')
WHERE patient_birth_date GLOB '[0-9][0-9][0-9][0-9].[0-9][0-9].[0-9][0-9]';

UPDATE study SET study_date = replace(study_date, '.', '')
WHERE study_date GLOB '[0-9][0-9][0-9][0-9].[0-9][0-9].[0-9][0-9]';

UPDATE series SET series_date = replace(series_date, '.', '')
WHERE series_date GLOB '[0-9][0-9][0-9][0-9].[0-9][0-9].[0-9][0-9]';

UPDATE instance SET content_date = replace(content_date, '.', '')
WHERE content_date GLOB '[0-9][0-9][0-9][0-9].[0-9][0-9].[0-9][0-9]';
