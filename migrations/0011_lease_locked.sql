-- Takeover only of a lease whose worker held the sync's advisory lock
-- (issue 12, part 4). A worker that could not take the lock (another
-- worker held it for a moment, between its own lock and claim) may still
-- claim a free lease by the lease alone; such a lease must not be taken
-- over early by the lock holder, because the lock being free says nothing
-- about its worker. Before this column, that race let a second delivery
-- take over a live worker's sync (fenced, but done twice).
--
-- Constant default: adding it rewrites no row. `false` for leases taken
-- before this migration: they expire as before.
ALTER TABLE project_syncs ADD COLUMN lease_locked boolean NOT NULL DEFAULT false;

-- As in 0009, and only for leases taken with the lock.
CREATE OR REPLACE FUNCTION projsync_due_for_takeover(lim bigint)
RETURNS TABLE (sync_id uuid, trace_context text)
LANGUAGE sql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, public AS $$
    WITH held AS (
        SELECT (l.classid::bigint << 32) | l.objid::bigint AS k
        FROM pg_locks l
        WHERE l.locktype = 'advisory' AND l.objsubid = 1 AND l.granted
          AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
    )
    UPDATE project_syncs SET last_pushed_at = now() WHERE id IN (
        SELECT s.id FROM project_syncs s
        WHERE s.status = 'running'
          AND s.lease_locked
          AND s.lease_expires_at >= now()
          AND NOT EXISTS (SELECT 1 FROM held WHERE held.k = projsync_sync_lock_key(s.id))
        ORDER BY s.created_at LIMIT lim FOR UPDATE SKIP LOCKED)
    RETURNING id, trace_context
$$;

REVOKE ALL ON FUNCTION projsync_due_for_takeover(bigint) FROM PUBLIC;
