-- Scan in O(changes) (issue 12): a sync whose previous state can be
-- trusted diffs the last synced commit against the head and plans only the
-- paths that change. Nullable, no default: adding them rewrites no row.

-- The filter (size limit and ignore patterns, as a fingerprint) whose
-- verdicts repository_files holds. A diff is trusted only while the
-- project's filter is still this one; NULL (before this migration, after a
-- restore) means the next sync walks the whole tree.
ALTER TABLE repositories ADD COLUMN synced_filter text;

-- When this sync's plan rows (sync_changes) were deleted after
-- sync.plan_retention_hours. A restore to it, or to a sync whose tree is
-- rebuilt from it, is then refused.
ALTER TABLE project_syncs ADD COLUMN plan_pruned_at timestamptz;
