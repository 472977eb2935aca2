-- One trace per sync (docs/telemetry.md): the W3C `traceparent` of the
-- request (or command) that created the sync, so that every worker that
-- runs it, after a redelivery, a retry or a reconciler's push, opens its
-- spans in that same trace. NULL when telemetry was off then; nullable, no
-- default: adding it rewrites no row.
ALTER TABLE project_syncs ADD COLUMN trace_context text;

-- projsync_due_for_push (0005_tenants.sql), with each sync's trace
-- context: the reconciler's push joins the sync's trace. Same rows, same
-- locking; the older function stays for workers not yet upgraded.
CREATE FUNCTION projsync_due_for_push_traced(redeliver_after_secs double precision, lim bigint)
RETURNS TABLE (sync_id uuid, trace_context text)
LANGUAGE sql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, public AS $$
    UPDATE project_syncs SET last_pushed_at = now() WHERE id IN (
        SELECT id FROM project_syncs
        WHERE (last_pushed_at IS NULL
               OR last_pushed_at < now() - make_interval(secs => redeliver_after_secs)
               OR (status = 'running' AND last_pushed_at < lease_expires_at))
          AND ((status = 'queued' AND (not_before IS NULL OR not_before <= now()))
            OR (status = 'running' AND (lease_expires_at IS NULL OR lease_expires_at < now())))
        ORDER BY created_at LIMIT lim FOR UPDATE SKIP LOCKED)
    RETURNING id, trace_context
$$;

REVOKE ALL ON FUNCTION projsync_due_for_push_traced(double precision, bigint) FROM PUBLIC;
