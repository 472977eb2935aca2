-- no-transaction
-- The docs phase of a resync reads each module's files (those of the
-- directory, once the sync is finalized). Migration 0021 indexed them by
-- their directory's expression, and the plan was right when read as the
-- table's owner; but the worker reads as the app role, under row-level
-- security, and PostgreSQL may not use a condition built from functions
-- that are not leakproof (strpos, regexp_replace) before the tenant
-- policy has filtered the rows: the index was used by project alone, and
-- every module's read walked every active file of the project (150 ms a
-- module at 100,000 files, measured with EXPLAIN ANALYZE as the app role;
-- most of a 100-file resync's docs phase). Byte-wise range operators
-- (`~>=~`, `~<~`) are leakproof and do not depend on the database's
-- collation: `store::docs` bounds a module's files by its path prefix
-- with them, through this index, and keeps the exact directory test as a
-- filter (1.3 ms a module). Built without blocking the writes of running
-- syncs.
CREATE INDEX CONCURRENTLY IF NOT EXISTS memory_entries_active_file_path_bytes
    ON memory_entries (project_id, path text_pattern_ops)
    WHERE status = 'active' AND kind = 'file';
