-- 0006: which edition of the index's attribute table each instance row was made by.
--
-- archive/dicom/attributes.py HEADER_VERSION names the edition (1: with the
-- sequences of 0004); every row written from now on carries the current one.
-- Rows made before this migration get 0: they may lack values added since (an
-- instance indexed before 0004 has no sequences). `archive reindex` reads those
-- instances' files again and brings their rows up to date; `archive stats` and
-- the server's start-up say how many are left.

ALTER TABLE instance ADD COLUMN header_version INTEGER NOT NULL DEFAULT 0;

-- Maintenance the index needs, by name: 'reindex' while rows of an older edition
-- may be left (set here when this migration finds instances; `archive reindex`
-- removes it once none is left). Read at start-up, which then logs a warning.
CREATE TABLE maintenance (task TEXT PRIMARY KEY) WITHOUT ROWID;
INSERT INTO maintenance (task) SELECT 'reindex' WHERE EXISTS (SELECT 1 FROM instance);
