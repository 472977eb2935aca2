-- Code analysis (issue 13): the symbols of each source file are memory
-- entries of kind 'symbol', versioned like files (pending, active,
-- superseded), and each file's imports are dependency edges, versioned the
-- same way. The analyze phase runs after import and writes both for the
-- files the sync changed; finalize makes them visible with the files.

-- What a symbol entry holds beside its content. `path` is its qualified
-- name (`src/lib.rs#Store::open`), so the one-active-version rule and the
-- one-version-per-sync rule hold for symbols as they do for files.
--   source_path  the file it is defined in
--   symbol_id    its identity across versions: an edited symbol keeps it,
--                and so does one whose file was renamed
--   meta         what the parser read: symbol kind, signature, doc, line
--                range, parent, visibility, partial
ALTER TABLE memory_entries ADD COLUMN source_path text;
ALTER TABLE memory_entries ADD COLUMN symbol_id uuid;
ALTER TABLE memory_entries ADD COLUMN meta jsonb;

-- (Their indexes are built in 0016, concurrently.)

-- The files a sync analysed, and what of their last analysis they keep:
-- the qualified names of the symbols that did not change (no new version)
-- and whether the imports are the same. Finalize supersedes every other
-- active symbol and edge of a file whose version this sync replaced. Only
-- the files the sync changed have rows.
CREATE TABLE sync_analyzed_files (
    tenant_id     uuid NOT NULL DEFAULT projsync_require_tenant() REFERENCES tenants (id),
    sync_id       uuid NOT NULL REFERENCES project_syncs (id),
    path          text NOT NULL,
    language      text,
    -- why the file was not analysed (unsupported_language, generated, …)
    skip_reason   text,
    -- the syntax tree had errors: the symbols are those that parsed
    partial       boolean NOT NULL DEFAULT false,
    kept_symbols  text[] NOT NULL DEFAULT '{}',
    kept_edges    boolean NOT NULL DEFAULT false,
    PRIMARY KEY (sync_id, path)
);

-- One import of one file. `candidates` are the repository paths it may
-- name, most likely first, worked out from the text alone; the target is
-- the first of them that exists, decided when read, so an edge resolves
-- once its target appears without the importing file changing.
CREATE TABLE dependency_edges (
    id                     bigserial PRIMARY KEY,
    tenant_id              uuid NOT NULL DEFAULT projsync_require_tenant() REFERENCES tenants (id),
    project_id             uuid NOT NULL REFERENCES projects (id),
    from_path              text NOT NULL,
    -- the import as the language writes it (`crate::store::Store`, `./x`)
    raw                    text NOT NULL,
    line                   integer NOT NULL CHECK (line >= 1),
    candidates             text[] NOT NULL DEFAULT '{}',
    status                 text NOT NULL CHECK (status IN ('pending', 'active', 'superseded')),
    created_by_sync_id     uuid NOT NULL REFERENCES project_syncs (id),
    superseded_by_sync_id  uuid REFERENCES project_syncs (id),
    created_at             timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX dependency_edges_active_from ON dependency_edges (project_id, from_path)
    WHERE status = 'active';
CREATE INDEX dependency_edges_active_to ON dependency_edges USING gin (candidates)
    WHERE status = 'active';
CREATE INDEX dependency_edges_by_sync ON dependency_edges (created_by_sync_id);

ALTER TABLE sync_analyzed_files ENABLE ROW LEVEL SECURITY;
ALTER TABLE sync_analyzed_files FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON sync_analyzed_files
    USING (tenant_id = projsync_tenant()) WITH CHECK (tenant_id = projsync_tenant());
ALTER TABLE dependency_edges ENABLE ROW LEVEL SECURITY;
ALTER TABLE dependency_edges FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON dependency_edges
    USING (tenant_id = projsync_tenant()) WITH CHECK (tenant_id = projsync_tenant());

-- A project may turn code analysis off (NULL: the deployment's setting).
ALTER TABLE projects ADD COLUMN analysis_enabled boolean;
-- The analyser version whose symbols and edges the repository's active
-- files have. NULL (never analysed, or analysis was off for a sync that
-- changed files) or an older version: the next sync analyses every file of
-- the tree, not only the changed ones.
ALTER TABLE repositories ADD COLUMN analysis_version integer;

-- The analyze phase runs between import and embed, so that symbols are
-- chunked and embedded like any entry.
ALTER TABLE sync_steps DROP CONSTRAINT sync_steps_phase_check;
ALTER TABLE sync_steps ADD CONSTRAINT sync_steps_phase_check
    CHECK (phase IN ('prepare', 'scan', 'import', 'analyze', 'embed', 'finalize')) NOT VALID;
ALTER TABLE sync_steps VALIDATE CONSTRAINT sync_steps_phase_check;
UPDATE sync_steps SET ordinal = ordinal + 1 WHERE phase IN ('embed', 'finalize');
-- Syncs recorded before this migration get an analyze step: a sync still
-- to run analyses, one that finished has nothing to analyse.
INSERT INTO sync_steps (tenant_id, sync_id, phase, ordinal, status)
SELECT s.tenant_id, s.id, 'analyze', 3,
       CASE WHEN s.status IN ('queued', 'running', 'failed') AND s.kind <> 'backfill'
            THEN 'pending' ELSE 'skipped' END
FROM project_syncs s
WHERE NOT EXISTS (SELECT 1 FROM sync_steps t WHERE t.sync_id = s.id AND t.phase = 'analyze');
