-- no-transaction
-- A sync's deletions and skips, for the "carried forward" rule
-- (`store::docs`), as `sync_changes_renamed` (migration 0021) is for its
-- renames. The docs phase asks, for each active symbol of a module it
-- looks at, whether the sync deletes or skips the symbol's file. Under a
-- generic plan (a statement run often on one connection) PostgreSQL
-- answered that with a hash of the sync's deletions and skips built by a
-- scan of every plan row of every sync kept (1.1 ms of a module's 5 ms
-- read at 10,000 files, measured with auto_explain as the app role, and
-- growing with the plans kept). Deletions and skips are few: this index
-- is small, and serves that read whatever the estimates. Built without
-- blocking the writes of running syncs.
CREATE INDEX CONCURRENTLY IF NOT EXISTS sync_changes_gone
    ON sync_changes (sync_id, path)
    WHERE change = 'deleted' OR skip_reason IS NOT NULL;
