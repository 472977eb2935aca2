-- Fast, safe takeover (issue 12, part 4). A worker holds a session-level
-- advisory lock for each sync it runs, on a connection of its own
-- (`store::SyncLocks`); PostgreSQL releases it the moment that connection
-- dies (a killed process, a terminated backend). A running sync whose lock
-- is free has lost its worker: it is pushed again at once, and the claimer
-- that takes the lock may take over its lease before it expires. The
-- lease and the fence stay the safety net for a worker that is alive but
-- cut off: its writes still fail by fence.
--
-- The lock key of a sync: the first 64 bits of its id, as a bigint
-- (`pg_try_advisory_lock(bigint)`; in pg_locks the high half is `classid`,
-- the low half `objid`, with `objsubid` 1). `store::sync_lock_key` computes
-- the same in Rust.
CREATE FUNCTION projsync_sync_lock_key(sync_id uuid) RETURNS bigint
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE AS $$
    SELECT ('x' || substr(replace(sync_id::text, '-', ''), 1, 16))::bit(64)::bigint
$$;

-- Running syncs whose lease is still live but whose advisory lock no
-- session holds: their worker is gone. Marked pushed now; `SKIP LOCKED`
-- keeps the reconcilers of several workers apart. Across tenants, like
-- projsync_due_for_push_traced (0008); expired leases stay that
-- function's business.
CREATE FUNCTION projsync_due_for_takeover(lim bigint)
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
          AND s.lease_expires_at >= now()
          AND NOT EXISTS (SELECT 1 FROM held WHERE held.k = projsync_sync_lock_key(s.id))
        ORDER BY s.created_at LIMIT lim FOR UPDATE SKIP LOCKED)
    RETURNING id, trace_context
$$;

REVOKE ALL ON FUNCTION projsync_due_for_takeover(bigint) FROM PUBLIC;
