-- The ledger's numbers for `GET /metrics` (the API's and each worker's).
--
-- The API and the workers connect as projsync_app, to which row-level
-- security shows no sync outside the transaction's tenant, and a scrape
-- sets none: read directly, every count would silently be 0. The scrape
-- goes through this SECURITY DEFINER function of the owner instead, like
-- projsync_due_for_push (0005_tenants.sql), and it answers only counts:
-- syncs by status and outcome, and the age of the oldest sync of each (the
-- queue's age is that of `queued`). No id, tenant, project or message
-- leaves it. One GROUP BY over project_syncs per scrape.
--
-- outcome: the ledger's outcome for a succeeded sync (changed, unchanged,
-- restored, embedded), the error class for a failed one (fatal,
-- retryable), 'none' otherwise.
CREATE FUNCTION projsync_sync_metrics()
RETURNS TABLE (status text, outcome text, syncs bigint, oldest_age_secs double precision)
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, public AS $$
    SELECT s.status,
           CASE s.status
               WHEN 'succeeded' THEN coalesce(s.outcome, 'none')
               WHEN 'failed' THEN coalesce(s.error_class, 'none')
               ELSE 'none'
           END,
           count(*),
           extract(epoch FROM now() - min(s.created_at))::double precision
    FROM project_syncs s
    GROUP BY 1, 2
$$;

REVOKE ALL ON FUNCTION projsync_sync_metrics() FROM PUBLIC;
