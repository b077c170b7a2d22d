-- 0011: times indexed before ACR-NEMA times were normalized.
--
-- A TM value in the retired ACR-NEMA form HH:MM:SS.FFFFFF (PS3.5 Table 6.2-1,
-- note) is now indexed as HHMMSS.FFFFFF (archive/dicom/attributes.py
-- _indexed_time), as 0003 did for dates, so that a C-FIND response carries a
-- TM (matching already read both forms); the files keep what was sent. Rows
-- indexed before are brought to the same form.

UPDATE study SET study_time = replace(study_time, ':', '')
WHERE study_time GLOB '[0-9][0-9]:[0-9][0-9]*';

UPDATE series SET series_time = replace(series_time, ':', '')
WHERE series_time GLOB '[0-9][0-9]:[0-9][0-9]*';

UPDATE instance SET content_time = replace(content_time, ':', '')
WHERE content_time GLOB '[0-9][0-9]:[0-9][0-9]*';
