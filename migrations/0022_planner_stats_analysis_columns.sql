-- Planner statistics for the columns code analysis added (migration 0015).
-- projsync_analyze (migration 0013) refreshes the statistics of the
-- columns a sync's queries filter on, and only those, to stay cheap; but
-- its list predates `source_path`, `language` and `symbol_id`. Without
-- statistics for `source_path`, the planner guessed that a module's
-- hundred files hold about 29,000 symbols (it has 98), and read a
-- module's symbols by AND-ing that index with a scan of every symbol row
-- of the table: 72 ms a module at 10,000 files instead of 1.3 ms
-- (measured with EXPLAIN ANALYZE), so that a 100-file resync's docs
-- phase grew with the repository. Same signature, owner and grants: only
-- the column list changes.
CREATE OR REPLACE FUNCTION projsync_analyze(target text) RETURNS void
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, public AS $$
BEGIN
    -- The columns the batch queries filter, join and order by; not the
    -- contents, texts and vectors (reading them is most of an ANALYZE's
    -- cost, and no plan here depends on them).
    CASE target
        WHEN 'sync_changes' THEN
            ANALYZE sync_changes;
        WHEN 'memory_entries' THEN
            ANALYZE memory_entries (id, project_id, path, kind, content_hash, blob_sha, status,
                created_by_sync_id, superseded_by_sync_id, chunk_count, tenant_id,
                source_path, language, symbol_id);
        WHEN 'memory_chunks' THEN
            ANALYZE memory_chunks (id, entry_id, ordinal, content_hash, tenant_id);
        ELSE
            RAISE EXCEPTION 'projsync_analyze: % is not a table a sync grows', target
                USING ERRCODE = 'invalid_parameter_value';
    END CASE;
END
$$;
