-- projsync ledger, first cut. Forward-only: never edit an applied migration.
-- See ARCHITECTURE.md and ../shared/DESIGN.md for the invariants these tables keep.

CREATE TABLE projects (
    id               uuid PRIMARY KEY,
    name             text NOT NULL UNIQUE,
    -- .gitignore-style patterns added to the default ignores
    ignore_patterns  text[] NOT NULL DEFAULT '{}',
    -- per-project size limit; NULL means the configured default
    max_file_bytes   bigint CHECK (max_file_bytes > 0),
    -- head of the chain of successful syncs (what the active entries reflect)
    last_sync_id     uuid,
    created_at       timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE repositories (
    id                  uuid PRIMARY KEY,
    project_id          uuid NOT NULL UNIQUE REFERENCES projects (id),
    provider            text NOT NULL CHECK (provider IN ('local', 'github')),
    -- a filesystem path for 'local', owner/name for 'github'
    location            text NOT NULL,
    default_branch      text NOT NULL,
    -- the name of a secret, never the secret itself
    credentials_ref     text,
    last_synced_commit  text,
    created_at          timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE project_syncs (
    id                uuid PRIMARY KEY,
    project_id        uuid NOT NULL REFERENCES projects (id),
    kind              text NOT NULL DEFAULT 'sync' CHECK (kind IN ('sync', 'restore')),
    branch            text NOT NULL,
    head_commit       text,
    status            text NOT NULL CHECK (status IN ('queued', 'running', 'succeeded', 'failed', 'cancelled')),
    -- 'changed' | 'unchanged' once succeeded
    outcome           text,
    current_phase     text,
    stats             jsonb NOT NULL DEFAULT '{}',
    error_class       text,
    error_message     text,
    failed_phase      text,
    attempts          integer NOT NULL DEFAULT 0,
    lease_owner       text,
    lease_expires_at  timestamptz,
    -- increases with every claim; writes of a phase check it (invariant 3)
    fence             bigint NOT NULL DEFAULT 0,
    previous_sync_id  uuid UNIQUE REFERENCES project_syncs (id),
    idempotency_key   text,
    progress_seq      bigint NOT NULL DEFAULT 0,
    progress          jsonb,
    created_at        timestamptz NOT NULL DEFAULT now(),
    started_at        timestamptz,
    finished_at       timestamptz,
    updated_at        timestamptz NOT NULL DEFAULT now()
);

ALTER TABLE projects
    ADD CONSTRAINT projects_last_sync_fk FOREIGN KEY (last_sync_id) REFERENCES project_syncs (id);

-- One queued or running sync per project.
CREATE UNIQUE INDEX project_syncs_one_active ON project_syncs (project_id)
    WHERE status IN ('queued', 'running');
CREATE UNIQUE INDEX project_syncs_idempotency ON project_syncs (project_id, idempotency_key)
    WHERE idempotency_key IS NOT NULL;
CREATE INDEX project_syncs_history ON project_syncs (project_id, created_at DESC);
CREATE INDEX project_syncs_status ON project_syncs (status, updated_at);

CREATE TABLE sync_steps (
    sync_id        uuid NOT NULL REFERENCES project_syncs (id),
    phase          text NOT NULL CHECK (phase IN ('prepare', 'scan', 'import', 'finalize')),
    ordinal        integer NOT NULL,
    status         text NOT NULL DEFAULT 'pending'
                   CHECK (status IN ('pending', 'running', 'succeeded', 'skipped', 'failed')),
    attempts       integer NOT NULL DEFAULT 0,
    checkpoint     jsonb,
    error_message  text,
    started_at     timestamptz,
    finished_at    timestamptz,
    PRIMARY KEY (sync_id, phase)
);

-- The scan's change plan: one row per path of the head tree or of the stored files.
CREATE TABLE sync_changes (
    sync_id       uuid NOT NULL REFERENCES project_syncs (id),
    path          text NOT NULL,
    change        text NOT NULL
                  CHECK (change IN ('added', 'modified', 'deleted', 'renamed', 'unchanged', 'type_changed')),
    kind          text NOT NULL,
    blob_sha      text,
    old_blob_sha  text,
    old_path      text,
    size_bytes    bigint,
    language      text,
    skip_reason   text,
    -- import must write a new entry version for this path
    needs_entry   boolean NOT NULL DEFAULT false,
    PRIMARY KEY (sync_id, path)
);

-- The files of the last successful sync's tree, with their blob SHAs.
CREATE TABLE repository_files (
    repository_id         uuid NOT NULL REFERENCES repositories (id),
    path                  text NOT NULL,
    blob_sha              text NOT NULL,
    kind                  text NOT NULL,
    size_bytes            bigint,
    language              text,
    skip_reason           text,
    last_changed_sync_id  uuid NOT NULL REFERENCES project_syncs (id),
    PRIMARY KEY (repository_id, path)
);

CREATE TABLE memory_entries (
    id                     bigserial PRIMARY KEY,
    project_id             uuid NOT NULL REFERENCES projects (id),
    path                   text NOT NULL,
    -- 'file' now; later per symbol and per generated doc
    kind                   text NOT NULL DEFAULT 'file',
    content                text NOT NULL,
    content_hash           text NOT NULL,
    blob_sha               text,
    language               text,
    size_bytes             bigint NOT NULL,
    status                 text NOT NULL CHECK (status IN ('pending', 'active', 'superseded')),
    created_by_sync_id     uuid NOT NULL REFERENCES project_syncs (id),
    superseded_by_sync_id  uuid REFERENCES project_syncs (id),
    embedding              real[],
    embedding_model        text,
    created_at             timestamptz NOT NULL DEFAULT now()
);

-- Readers see one active version per path (invariant 4).
CREATE UNIQUE INDEX memory_entries_one_active ON memory_entries (project_id, kind, path)
    WHERE status = 'active';
-- A redelivered import batch cannot write a version twice (invariant 2).
CREATE UNIQUE INDEX memory_entries_one_per_sync ON memory_entries (created_by_sync_id, kind, path);
CREATE INDEX memory_entries_by_blob ON memory_entries (project_id, blob_sha);
CREATE INDEX memory_entries_by_hash ON memory_entries (project_id, content_hash);

-- The read path for other services: only complete syncs' state.
CREATE VIEW active_memory_entries AS
    SELECT id, project_id, path, kind, content, content_hash, blob_sha, language, size_bytes,
           created_by_sync_id, embedding, embedding_model, created_at
    FROM memory_entries
    WHERE status = 'active';
