-- no-transaction
-- The docs phase reads a module's symbols once the sync is finalized: the
-- ones this sync wrote, by file. Without an index on them by file, each
-- module read every symbol the sync wrote (a first import of 100,000 files
-- writes about 470,000): 0.44 s per module, 1,000 modules. Built without
-- blocking the writes of running syncs.
CREATE INDEX CONCURRENTLY IF NOT EXISTS memory_entries_by_sync_source
    ON memory_entries (created_by_sync_id, source_path)
    WHERE source_path IS NOT NULL;
