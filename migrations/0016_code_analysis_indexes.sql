-- no-transaction
-- The indexes code analysis reads memory_entries by (0015), built without
-- blocking the writes of running syncs.

-- A changed file's symbols are read by file.
CREATE INDEX CONCURRENTLY IF NOT EXISTS memory_entries_active_by_source
    ON memory_entries (project_id, source_path)
    WHERE status = 'active' AND source_path IS NOT NULL;

-- Finalize finds the file versions a sync superseded, then their symbols.
CREATE INDEX CONCURRENTLY IF NOT EXISTS memory_entries_superseded_by
    ON memory_entries (superseded_by_sync_id)
    WHERE superseded_by_sync_id IS NOT NULL;
