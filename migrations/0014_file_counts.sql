-- Scan in O(changes), counts included (issue 12, part 1). Before it
-- trusts the stored tree of a repository, scan checks that its rows add
-- up to the last sync's count, and it carries the skip counts forward;
-- counting repository_files for that read every row of a large
-- repository on every sync. The counts are now kept beside the
-- repository, by reason ('' for files that were not skipped), by
-- statement triggers on repository_files: whatever writes the table (a
-- sync's finalize, a restore, an operator by hand), the counts follow,
-- so the check still catches a stored tree that does not add up.
ALTER TABLE repositories ADD COLUMN file_counts jsonb NOT NULL DEFAULT '{}';

-- Add `deltas` ([{repository_id, reason, n}], n negative for removed
-- rows) to the kept counts; a reason whose count reaches 0 is dropped.
CREATE FUNCTION projsync_add_file_counts(deltas jsonb) RETURNS void
LANGUAGE sql AS $$
    UPDATE repositories r SET file_counts = coalesce((
        SELECT jsonb_object_agg(k, v) FROM (
            SELECT k, sum(v)::bigint AS v FROM (
                SELECT key AS k, value::bigint AS v FROM jsonb_each_text(r.file_counts)
                UNION ALL
                SELECT d->>'reason', (d->>'n')::bigint FROM jsonb_array_elements(deltas) d
                WHERE (d->>'repository_id')::uuid = r.id
            ) x GROUP BY k HAVING sum(v) <> 0
        ) y), '{}')
    WHERE r.id IN (SELECT (d->>'repository_id')::uuid FROM jsonb_array_elements(deltas) d)
$$;

CREATE FUNCTION projsync_count_files() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    deltas jsonb;
BEGIN
    IF TG_OP = 'INSERT' THEN
        SELECT jsonb_agg(jsonb_build_object('repository_id', repository_id, 'reason', reason, 'n', n))
        INTO deltas FROM (SELECT repository_id, coalesce(skip_reason, '') AS reason, count(*) AS n
                          FROM new_rows GROUP BY 1, 2) c;
    ELSIF TG_OP = 'DELETE' THEN
        SELECT jsonb_agg(jsonb_build_object('repository_id', repository_id, 'reason', reason, 'n', -n))
        INTO deltas FROM (SELECT repository_id, coalesce(skip_reason, '') AS reason, count(*) AS n
                          FROM old_rows GROUP BY 1, 2) c;
    ELSE
        SELECT jsonb_agg(jsonb_build_object('repository_id', repository_id, 'reason', reason, 'n', n))
        INTO deltas FROM (SELECT repository_id, reason, sum(n) AS n FROM (
                              SELECT repository_id, coalesce(skip_reason, '') AS reason, 1 AS n FROM new_rows
                              UNION ALL
                              SELECT repository_id, coalesce(skip_reason, ''), -1 FROM old_rows) u
                          GROUP BY 1, 2 HAVING sum(n) <> 0) c;
    END IF;
    IF deltas IS NOT NULL THEN
        PERFORM projsync_add_file_counts(deltas);
    END IF;
    RETURN NULL;
END
$$;

CREATE TRIGGER repository_files_count_inserts AFTER INSERT ON repository_files
    REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION projsync_count_files();
CREATE TRIGGER repository_files_count_deletes AFTER DELETE ON repository_files
    REFERENCING OLD TABLE AS old_rows
    FOR EACH STATEMENT EXECUTE FUNCTION projsync_count_files();
CREATE TRIGGER repository_files_count_updates AFTER UPDATE ON repository_files
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION projsync_count_files();

-- The counts of the files stored before this migration.
UPDATE repositories r SET file_counts = c.counts
FROM (SELECT repository_id, jsonb_object_agg(reason, n) AS counts
      FROM (SELECT repository_id, coalesce(skip_reason, '') AS reason, count(*) AS n
            FROM repository_files GROUP BY 1, 2) g
      GROUP BY repository_id) c
WHERE r.id = c.repository_id;
