-- 0005: instance-level sequences found without a scan of every instance.
--
-- A query on an SR document's title or template (Concept Name Code Sequence,
-- Content Template Sequence) often names nothing else at the IMAGE level. Only
-- documents hold them, a small share of the instances, so an index of the rows
-- that have one (partial: images cost nothing here) turns the scan of the
-- instance table (~250 ms at 1M instances) into a walk of those rows (~0.1 ms).
-- The matching SQL (archive/index/query.py) states "<> ''" so the planner may
-- use them. The levels above hold fewer rows, and orders are common on series:
-- no index there.

CREATE INDEX instance_with_concept_name ON instance (concept_name_code_sequence)
WHERE concept_name_code_sequence <> '';
CREATE INDEX instance_with_content_template ON instance (content_template_sequence)
WHERE content_template_sequence <> '';
