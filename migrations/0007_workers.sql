-- The live worker fleet, for the operations pages (`GET /api/v1/ops/queue`).
--
-- Each worker process upserts its row when it starts and every few seconds
-- after (`last_seen_at`), and deletes it when it stops cleanly. A worker
-- that died leaves a row that stops being touched: readers count a worker
-- as live only while `last_seen_at` is recent, and old rows are pruned by
-- the next worker that registers. The name is the worker's lease owner
-- name (`project_syncs.lease_owner`), which joins a worker to the syncs it
-- is running.
--
-- Workers belong to the deployment, not to a tenant: the table has no
-- tenant_id and no row-level security. A tenant sees the fleet (names,
-- hosts, sizes) but only its own syncs on it, because the join goes through
-- project_syncs, which row-level security filters.
CREATE TABLE workers (
    name          text PRIMARY KEY,
    hostname      text NOT NULL,
    pid           integer NOT NULL,
    version       text NOT NULL,
    concurrency   integer NOT NULL,
    started_at    timestamptz NOT NULL DEFAULT now(),
    last_seen_at  timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX workers_last_seen ON workers (last_seen_at);

