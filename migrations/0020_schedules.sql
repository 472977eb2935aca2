-- Per-project schedules (issue 14): a project may carry a schedule
-- (`every 15m`, or a cron expression in UTC), and the scheduler that runs
-- in every worker enqueues its syncs when due. NULL: no schedule.
--
-- `schedule` is the user's spelling, parsed by the application
-- (projsync_domain::Schedule); `next_scheduled_at` is the next time it is
-- due, computed by the application from the time it last fired (never
-- from the missed tick: ticks missed during downtime run once). Both
-- nullable, no default: adding them rewrites no row.
ALTER TABLE projects ADD COLUMN schedule text;
ALTER TABLE projects ADD COLUMN next_scheduled_at timestamptz;

-- No index on next_scheduled_at: the table holds one row per project, and
-- an index built here would lock it (CREATE INDEX CONCURRENTLY needs a
-- migration of its own, outside a transaction).

-- The scheduler's tick across tenants (Store::fire_schedules): the
-- projects whose schedule is due, locked for the caller's transaction.
-- `SKIP LOCKED` keeps the schedulers of several workers off the same
-- rows; the caller moves `next_scheduled_at` on before it commits, so a
-- tick fires once whatever the number of workers. Returns the
-- transaction's time too: the next time is computed from it.
CREATE FUNCTION projsync_due_schedules(lim bigint)
RETURNS TABLE (project_id uuid, tenant_id uuid, schedule text, now timestamptz)
LANGUAGE sql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, public AS $$
    SELECT p.id, p.tenant_id, p.schedule, now() FROM projects p
    WHERE p.next_scheduled_at <= now()
    ORDER BY p.next_scheduled_at LIMIT lim FOR UPDATE OF p SKIP LOCKED
$$;

-- Wanted syncs across tenants (Store::start_wanted): projects that asked
-- for a sync while theirs was running (projects.sync_wanted_at, 0018) and
-- have no queued or running sync now, locked for the caller's
-- transaction, which starts the sync and clears the wanted columns.
CREATE FUNCTION projsync_wanted_syncs(lim bigint)
RETURNS TABLE (project_id uuid, tenant_id uuid, sync_trigger text)
LANGUAGE sql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, public AS $$
    SELECT p.id, p.tenant_id, p.sync_wanted_trigger FROM projects p
    WHERE p.sync_wanted_at IS NOT NULL
      AND NOT EXISTS (SELECT 1 FROM project_syncs s
                      WHERE s.project_id = p.id AND s.status IN ('queued', 'running'))
    ORDER BY p.sync_wanted_at LIMIT lim FOR UPDATE OF p SKIP LOCKED
$$;

REVOKE ALL ON FUNCTION projsync_due_schedules(bigint) FROM PUBLIC;
REVOKE ALL ON FUNCTION projsync_wanted_syncs(bigint) FROM PUBLIC;
