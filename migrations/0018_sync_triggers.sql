-- Always fresh (issue 14): what started each sync, and what the scheduler
-- works from. GitHub webhooks, schedules and Git hooks start syncs
-- without anyone pressing Sync; the history says which did.

-- api, cli, webhook:<delivery>, schedule or hook. Syncs recorded before
-- this migration were all started through the API or the CLI's API
-- calls: 'api'.
ALTER TABLE project_syncs ADD COLUMN trigger text NOT NULL DEFAULT 'api';
ALTER TABLE project_syncs ADD CONSTRAINT project_syncs_trigger_known
    CHECK (trigger IN ('api', 'cli', 'schedule', 'hook') OR trigger ~ '^webhook:[A-Za-z0-9-]{1,100}$')
    NOT VALID;
ALTER TABLE project_syncs VALIDATE CONSTRAINT project_syncs_trigger_known;

-- A sync asked for while the project's sync was already running (a push
-- that came in mid-sync): the scheduler starts it once that one ends, so
-- the knowledge base ends at the newest head. One per project: a burst of
-- requests is one more sync, started by the first request's trigger.
ALTER TABLE projects ADD COLUMN sync_wanted_at timestamptz;
ALTER TABLE projects ADD COLUMN sync_wanted_trigger text;
