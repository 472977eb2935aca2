-- No repository lookup per sync (issue 12): what the provider said about
-- the repository when the project was connected, so that a sync opens it
-- without asking again. GitHub: its canonical owner/name and its id (which
-- survives renames and transfers). Nullable, no default: adding them
-- rewrites no row. NULL: a local repository, or a project connected before
-- this migration (a worker then looks it up once and keeps the answer).
ALTER TABLE repositories ADD COLUMN remote_name text;
ALTER TABLE repositories ADD COLUMN remote_id bigint;
