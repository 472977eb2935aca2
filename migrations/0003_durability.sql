-- Durable execution: scheduled retries, redelivery by the reconciler,
-- cancellation and discarding.

ALTER TABLE project_syncs
    -- a retry is not claimed before this time
    ADD COLUMN not_before timestamptz,
    -- when the job was last pushed to the queue (the reconciler re-pushes
    -- syncs whose job may have been lost)
    ADD COLUMN last_pushed_at timestamptz,
    ADD COLUMN cancel_requested_at timestamptz,
    -- retries requested by operators
    ADD COLUMN retries integer NOT NULL DEFAULT 0;

UPDATE project_syncs SET last_pushed_at = created_at;

ALTER TABLE project_syncs DROP CONSTRAINT project_syncs_status_check;
ALTER TABLE project_syncs ADD CONSTRAINT project_syncs_status_check
    CHECK (status IN ('queued', 'running', 'succeeded', 'failed', 'cancelled', 'discarded'));

ALTER TABLE sync_steps DROP CONSTRAINT sync_steps_status_check;
ALTER TABLE sync_steps ADD CONSTRAINT sync_steps_status_check
    CHECK (status IN ('pending', 'running', 'succeeded', 'skipped', 'failed', 'cancelled'));

-- The reconciler's scan.
CREATE INDEX project_syncs_due ON project_syncs (status, not_before, lease_expires_at)
    WHERE status IN ('queued', 'running');
