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
    IF target NOT IN ('sync_changes', 'memory_entries', 'memory_chunks') THEN
        RAISE EXCEPTION 'projsync_analyze: % is not a table a sync grows', target
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    EXECUTE format('ANALYZE %I', target);
END
$$;

REVOKE ALL ON FUNCTION projsync_analyze(text) FROM PUBLIC;
