-- 0002: the journal of the last batch, for a group commit flushed after COMMIT.
--
-- Under flush = "batch" the writer commits with synchronous = NORMAL and then
-- flushes the whole filesystem once (syncfs), files and write-ahead log together,
-- before any store of the batch is answered. A power cut during that flush can
-- leave the batch's rows durable and some of its files not. Every batch therefore
-- replaces this table's content with the SOP Instance UIDs it added or replaced,
-- in its own transaction: the batch before it was flushed completely (the writer
-- flushes before it starts the next one), so at start-up only the instances named
-- here can have a row without its whole file, and recovery reads them back
-- (archive/node.py). A clean shutdown empties it.

CREATE TABLE unflushed (
    sop_instance_uid    TEXT PRIMARY KEY
) WITHOUT ROWID;
