-- Fresh planner statistics for a large import (issue 12, part 2). A first
-- import of a big repository grows sync_changes, memory_entries and
-- memory_chunks from nothing to tens of thousands of rows within a
-- minute, before autovacuum's first ANALYZE. Until then the planner sizes
-- them as empty, and the plans it caches for the import's batch queries
-- (scan from the last path, LIMIT n) degrade to reading everything after
-- the cursor: each batch costs O(rows), the import O(rows²). The worker
-- calls this when it has grown a table by a lot; the cached plans are
-- then made again for the real size. ANALYZE needs the table's owner,
-- hence SECURITY DEFINER, limited to these three tables. Statistics are
-- per table, as autovacuum's are: nothing a tenant can read changes.
CREATE FUNCTION projsync_analyze(target text) RETURNS void
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
                created_by_sync_id, superseded_by_sync_id, chunk_count, tenant_id);
        WHEN 'memory_chunks' THEN
            ANALYZE memory_chunks (id, entry_id, ordinal, content_hash, tenant_id);
        ELSE
            RAISE EXCEPTION 'projsync_analyze: % is not a table a sync grows', target
                USING ERRCODE = 'invalid_parameter_value';
    END CASE;
END
$$;

REVOKE ALL ON FUNCTION projsync_analyze(text) FROM PUBLIC;
