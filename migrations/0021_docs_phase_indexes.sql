-- no-transaction
-- The docs phase reads a module's files and symbols once the sync is
-- finalized, from the versions the sync wrote and the active ones it keeps.
-- Without these indexes each module's reads walked every file, or every
-- symbol, of the sync or of the project: a first import of 100,000 files
-- (1,000 modules, about 470,000 symbols) spent 13 minutes in the docs
-- phase, and a resync 0.4 s per module it looked at. Built without
-- blocking the writes of running syncs.

-- A sync's symbols by file.
CREATE INDEX CONCURRENTLY IF NOT EXISTS memory_entries_by_sync_source
    ON memory_entries (created_by_sync_id, source_path)
    WHERE source_path IS NOT NULL;

-- Files by directory (`''` for the top): the expression is the one
-- `store::docs` queries with, character for character, so that the planner
-- matches it. A prefix range on the path would not do: which paths share
-- a prefix depends on the database's collation.
CREATE INDEX CONCURRENTLY IF NOT EXISTS memory_entries_by_sync_dir
    ON memory_entries (created_by_sync_id,
        (CASE WHEN strpos(path, '/') = 0 THEN '' ELSE regexp_replace(path, '/[^/]*$', '') END))
    WHERE kind = 'file';

CREATE INDEX CONCURRENTLY IF NOT EXISTS memory_entries_active_by_dir
    ON memory_entries (project_id,
        (CASE WHEN strpos(path, '/') = 0 THEN '' ELSE regexp_replace(path, '/[^/]*$', '') END))
    WHERE status = 'active' AND kind = 'file';

-- A sync's renames, for the "carried forward" rule (`store::docs`): the
-- active rows a sync keeps are those it neither rewrites, deletes, skips
-- nor renames away. Under a generic plan (a statement run often on one
-- connection) the renames were found by a scan of every plan row
-- (100,000 for one big sync): 25 ms for each module's read. Renames are
-- few: this index is small.
CREATE INDEX CONCURRENTLY IF NOT EXISTS sync_changes_renamed
    ON sync_changes (sync_id, old_path)
    WHERE change = 'renamed';
