-- Generated docs (issue 13): one memory entry of kind 'doc' per module (a
-- directory with code), named by the directory's path and a trailing `/`
-- (`src/store/`; `/` for the repository's top), made by the docs phase
-- after analyze from the module's files, public symbols and dependencies.
-- A doc gets a new version only when what it is made of changed.

-- The docs a sync removes (their directory has no code any more): finalize
-- supersedes them with no new version. Only the sync's candidates have rows.
CREATE TABLE sync_doc_removals (
    tenant_id  uuid NOT NULL DEFAULT projsync_require_tenant() REFERENCES tenants (id),
    sync_id    uuid NOT NULL REFERENCES project_syncs (id),
    path       text NOT NULL,
    PRIMARY KEY (sync_id, path)
);

-- The natural-language summaries a chat model wrote for docs (docs.llm),
-- by model and the hash of the doc's inputs: a doc made of the same inputs
-- again (a revert, another branch, a retry) costs no model call.
CREATE TABLE doc_summaries (
    tenant_id    uuid NOT NULL DEFAULT projsync_require_tenant() REFERENCES tenants (id),
    model        text NOT NULL,
    inputs_hash  text NOT NULL,
    summary      text NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, model, inputs_hash)
);

ALTER TABLE sync_doc_removals ENABLE ROW LEVEL SECURITY;
ALTER TABLE sync_doc_removals FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON sync_doc_removals
    USING (tenant_id = projsync_tenant()) WITH CHECK (tenant_id = projsync_tenant());
ALTER TABLE doc_summaries ENABLE ROW LEVEL SECURITY;
ALTER TABLE doc_summaries FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON doc_summaries
    USING (tenant_id = projsync_tenant()) WITH CHECK (tenant_id = projsync_tenant());

-- The docs phase runs between analyze and embed, so that docs are chunked
-- and embedded like any entry.
ALTER TABLE sync_steps DROP CONSTRAINT sync_steps_phase_check;
ALTER TABLE sync_steps ADD CONSTRAINT sync_steps_phase_check
    CHECK (phase IN ('prepare', 'scan', 'import', 'analyze', 'docs', 'embed', 'finalize')) NOT VALID;
ALTER TABLE sync_steps VALIDATE CONSTRAINT sync_steps_phase_check;
UPDATE sync_steps SET ordinal = ordinal + 1 WHERE phase IN ('embed', 'finalize');
INSERT INTO sync_steps (tenant_id, sync_id, phase, ordinal, status)
SELECT s.tenant_id, s.id, 'docs', 4,
       CASE WHEN s.status IN ('queued', 'running', 'failed') AND s.kind <> 'backfill'
            THEN 'pending' ELSE 'skipped' END
FROM project_syncs s
WHERE NOT EXISTS (SELECT 1 FROM sync_steps t WHERE t.sync_id = s.id AND t.phase = 'docs');
