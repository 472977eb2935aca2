-- Embeddings and search: chunks of entry versions, a vector cache keyed by
-- content, and embedding backfills as jobs of the ledger.
--
-- pgvector must be installed on the server (scripts/services.sh builds it on
-- Debian); `projsync migrate` checks for it before this runs.
CREATE EXTENSION IF NOT EXISTS vector;

-- A chunk is a line range of one entry version, sized for the model's
-- tokenizer. Chunks belong to their version: a superseded version keeps its
-- chunks, so search can read the knowledge base as it was after any sync.
CREATE TABLE memory_chunks (
    id            bigserial PRIMARY KEY,
    entry_id      bigint NOT NULL REFERENCES memory_entries (id) ON DELETE CASCADE,
    ordinal       integer NOT NULL,
    -- 1-based, inclusive
    start_line    integer NOT NULL CHECK (start_line >= 1),
    end_line      integer NOT NULL CHECK (end_line >= start_line),
    content       text NOT NULL,
    -- SHA-256 of content: the key of the vector cache
    content_hash  text NOT NULL,
    token_count   integer NOT NULL,
    -- full text, with identifiers split on _ and camelCase as well as whole
    tsv           tsvector NOT NULL,
    UNIQUE (entry_id, ordinal)
);
CREATE INDEX memory_chunks_by_hash ON memory_chunks (content_hash);
CREATE INDEX memory_chunks_tsv ON memory_chunks USING gin (tsv);

-- NULL until the version is chunked; then how many chunks it has (0 for an
-- empty or whitespace-only file).
ALTER TABLE memory_entries ADD COLUMN chunk_count integer;
-- Search filters active versions of a project.
CREATE INDEX memory_entries_active ON memory_entries (project_id) WHERE status = 'active';

-- The vector cache: one vector per (model, chunk content hash), whatever
-- project, path or version the content appears in. Renames, restores,
-- reverts and copies find their vectors here and cost no model call.
-- The HNSW index is per model, on `embedding::vector(N)`, created by the
-- application for the configured model and dimensions.
CREATE TABLE embeddings (
    model         text NOT NULL,
    content_hash  text NOT NULL,
    dimensions    integer NOT NULL CHECK (dimensions > 0),
    embedding     vector NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (model, content_hash),
    CHECK (vector_dims(embedding) = dimensions)
);

-- The unused first-cut columns: vectors live in `embeddings` now.
COMMENT ON COLUMN memory_entries.embedding IS 'unused: vectors are in embeddings, per chunk';
COMMENT ON COLUMN memory_entries.embedding_model IS 'unused: vectors are in embeddings, per chunk';

-- A project may turn embeddings off (NULL: the deployment's setting).
ALTER TABLE projects ADD COLUMN embeddings_enabled boolean;

-- The embed phase runs between import and finalize.
ALTER TABLE sync_steps DROP CONSTRAINT sync_steps_phase_check;
ALTER TABLE sync_steps ADD CONSTRAINT sync_steps_phase_check
    CHECK (phase IN ('prepare', 'scan', 'import', 'embed', 'finalize'));
UPDATE sync_steps SET ordinal = 4 WHERE phase = 'finalize';
-- Syncs recorded before this migration get an embed step; one that already
-- finished has nothing to embed in it.
INSERT INTO sync_steps (sync_id, phase, ordinal, status)
SELECT s.id, 'embed', 3,
       CASE WHEN s.status IN ('queued', 'running', 'failed') THEN 'pending' ELSE 'skipped' END
FROM project_syncs s
WHERE NOT EXISTS (SELECT 1 FROM sync_steps t WHERE t.sync_id = s.id AND t.phase = 'embed');

-- A backfill embeds every active chunk that lacks a vector of the
-- configured model: a job of the ledger like a sync, with its options.
ALTER TABLE project_syncs DROP CONSTRAINT project_syncs_kind_check;
ALTER TABLE project_syncs ADD CONSTRAINT project_syncs_kind_check
    CHECK (kind IN ('sync', 'restore', 'backfill'));
ALTER TABLE project_syncs ADD COLUMN options jsonb NOT NULL DEFAULT '{}';

-- A sync and its ancestors in the project's history (previous_sync_id):
-- the versions visible right after a sync are those created in its chain
-- and not superseded in it.
CREATE FUNCTION sync_chain(sync uuid) RETURNS TABLE (id uuid)
LANGUAGE sql STABLE AS $$
    WITH RECURSIVE chain AS (
        SELECT s.id, s.previous_sync_id FROM project_syncs s WHERE s.id = sync
        UNION ALL
        SELECT p.id, p.previous_sync_id FROM project_syncs p JOIN chain c ON p.id = c.previous_sync_id
    )
    SELECT chain.id FROM chain
$$;
