-- Tenants, API keys, browser sessions, registered credentials, the audit
-- trail, and row-level security on every tenant-owned table.
--
-- How isolation works: every transaction of the API and the workers sets
-- `projsync.tenant_id` (set_config(..., true)), and each tenant-owned table
-- has a policy `tenant_id = projsync_tenant()` with FORCE ROW LEVEL
-- SECURITY. A query that forgets its tenant filter sees nothing of other
-- tenants; a transaction that sets no tenant sees nothing at all. New rows
-- take the transaction's tenant by default, and the policy refuses a row of
-- another tenant. The API and the workers connect as a role that is not the
-- owner and has no BYPASSRLS (`projsync_app`, created by `projsync migrate`,
-- which runs as the owner). The few questions that must cross tenants
-- (which tenant a queued job belongs to, which syncs are due for a push,
-- which key a bearer token is) are SECURITY DEFINER functions below, each
-- answering only that question. The owner that runs migrations must be a
-- superuser or have BYPASSRLS for them to see every row.

CREATE TABLE tenants (
    id          uuid PRIMARY KEY,
    name        text NOT NULL UNIQUE CHECK (name ~ '^[a-z0-9][a-z0-9_-]{0,62}$'),
    created_at  timestamptz NOT NULL DEFAULT now()
);

-- Everything recorded before tenants existed belongs to `default`.
INSERT INTO tenants (id, name) VALUES ('00000000-0000-0000-0000-000000000001', 'default');

-- The tenant of this transaction, or NULL when none is set.
CREATE FUNCTION projsync_tenant() RETURNS uuid
LANGUAGE sql STABLE PARALLEL SAFE AS $$
    SELECT nullif(current_setting('projsync.tenant_id', true), '')::uuid
$$;

-- The tenant of this transaction; an error when none is set (column default
-- of tenant-owned tables, so a row never lands without its tenant).
CREATE FUNCTION projsync_require_tenant() RETURNS uuid
LANGUAGE plpgsql STABLE AS $$
DECLARE
    t uuid := projsync_tenant();
BEGIN
    IF t IS NULL THEN
        RAISE EXCEPTION 'no tenant is set for this transaction (projsync.tenant_id)'
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    RETURN t;
END
$$;

DO $$
DECLARE
    t text;
BEGIN
    FOREACH t IN ARRAY ARRAY['projects', 'repositories', 'project_syncs', 'sync_steps',
                             'sync_changes', 'repository_files', 'memory_entries',
                             'memory_chunks', 'embeddings']
    LOOP
        EXECUTE format('ALTER TABLE %I ADD COLUMN tenant_id uuid REFERENCES tenants (id)', t);
        EXECUTE format('UPDATE %I SET tenant_id = %L', t, '00000000-0000-0000-0000-000000000001');
        EXECUTE format('ALTER TABLE %I ALTER COLUMN tenant_id SET NOT NULL, '
                       'ALTER COLUMN tenant_id SET DEFAULT projsync_require_tenant()', t);
    END LOOP;
END
$$;

-- Project names are unique within a tenant.
ALTER TABLE projects DROP CONSTRAINT projects_name_key;
ALTER TABLE projects ADD CONSTRAINT projects_tenant_name_key UNIQUE (tenant_id, name);

-- The vector cache is per tenant: a tenant never learns from timing or
-- counts whether another one embedded the same content.
ALTER TABLE embeddings DROP CONSTRAINT embeddings_pkey;
ALTER TABLE embeddings ADD PRIMARY KEY (tenant_id, model, content_hash);

CREATE INDEX project_syncs_tenant ON project_syncs (tenant_id);
CREATE INDEX memory_entries_tenant ON memory_entries (tenant_id);

-- Credentials are registered by an operator (`projsync credential add`);
-- a project names one, within its tenant. `reference` says where the
-- secret is in the environment of the API and worker processes (`env:NAME`,
-- `file:PATH`, `app:APP_ID:INSTALLATION_ID:env:NAME` or `…:file:PATH`); the
-- secret itself is never stored.
CREATE TABLE credentials (
    tenant_id   uuid NOT NULL DEFAULT projsync_require_tenant() REFERENCES tenants (id),
    name        text NOT NULL CHECK (name ~ '^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$'),
    reference   text NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, name)
);

-- Projects created before credentials were registered named a reference
-- directly; each distinct one becomes a registered credential of the
-- project's tenant, and the project names it.
-- projsync: allow-destructive repositories.credentials_ref because a project now names a registered credential; every reference moves into credentials just below, nothing is lost
ALTER TABLE repositories RENAME COLUMN credentials_ref TO credential;
INSERT INTO credentials (tenant_id, name, reference)
SELECT DISTINCT r.tenant_id, 'legacy-' || substr(md5(r.credential), 1, 12), r.credential
FROM repositories r
WHERE r.credential IS NOT NULL;
UPDATE repositories SET credential = 'legacy-' || substr(md5(credential), 1, 12)
WHERE credential IS NOT NULL;
-- A project names a credential of its own tenant; one in use cannot be removed.
ALTER TABLE repositories ADD CONSTRAINT repositories_credential_fk
    FOREIGN KEY (tenant_id, credential) REFERENCES credentials (tenant_id, name);

-- API keys: stored only as the SHA-256 of their secret.
CREATE TABLE api_keys (
    id            uuid PRIMARY KEY,
    tenant_id     uuid NOT NULL DEFAULT projsync_require_tenant() REFERENCES tenants (id),
    role          text NOT NULL CHECK (role IN ('admin', 'write', 'read')),
    name          text NOT NULL DEFAULT '',
    secret_hash   text NOT NULL UNIQUE,
    created_at    timestamptz NOT NULL DEFAULT now(),
    last_used_at  timestamptz,
    revoked_at    timestamptz
);

-- Browser sessions, opened with a key (POST /api/v1/session). The cookie
-- and the CSRF token are stored only as SHA-256.
CREATE TABLE api_sessions (
    id_hash     text PRIMARY KEY,
    tenant_id   uuid NOT NULL DEFAULT projsync_require_tenant() REFERENCES tenants (id),
    key_id      uuid NOT NULL REFERENCES api_keys (id) ON DELETE CASCADE,
    csrf_hash   text NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    expires_at  timestamptz NOT NULL
);
CREATE INDEX api_sessions_expiry ON api_sessions (expires_at);

-- Every state-changing call: who (key id, or the operator's CLI), when,
-- what and on which target.
CREATE TABLE audit_log (
    id         bigserial PRIMARY KEY,
    tenant_id  uuid NOT NULL DEFAULT projsync_require_tenant() REFERENCES tenants (id),
    at         timestamptz NOT NULL DEFAULT now(),
    actor      text NOT NULL,
    key_id     uuid,
    action     text NOT NULL,
    target     text NOT NULL,
    detail     jsonb NOT NULL DEFAULT '{}'
);
CREATE INDEX audit_log_by_tenant ON audit_log (tenant_id, at DESC);

DO $$
DECLARE
    t text;
BEGIN
    FOREACH t IN ARRAY ARRAY['projects', 'repositories', 'project_syncs', 'sync_steps',
                             'sync_changes', 'repository_files', 'memory_entries',
                             'memory_chunks', 'embeddings', 'credentials', 'api_keys',
                             'api_sessions', 'audit_log']
    LOOP
        EXECUTE format('ALTER TABLE %I ENABLE ROW LEVEL SECURITY', t);
        EXECUTE format('ALTER TABLE %I FORCE ROW LEVEL SECURITY', t);
        EXECUTE format('CREATE POLICY tenant_isolation ON %I '
                       'USING (tenant_id = projsync_tenant()) '
                       'WITH CHECK (tenant_id = projsync_tenant())', t);
    END LOOP;
END
$$;

-- The read view applies the reader's policies, not its owner's.
ALTER VIEW active_memory_entries SET (security_invoker = true);

-- Which tenant a sync belongs to (a worker learns it from the job's sync
-- id before it claims the sync); NULL for an unknown id.
CREATE FUNCTION projsync_sync_tenant(sync uuid) RETURNS uuid
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, public AS $$
    SELECT tenant_id FROM project_syncs WHERE id = sync
$$;

-- The reconciler's pass across tenants (see Store::due_for_push).
CREATE FUNCTION projsync_due_for_push(redeliver_after_secs double precision, lim bigint)
RETURNS SETOF uuid
LANGUAGE sql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, public AS $$
    UPDATE project_syncs SET last_pushed_at = now() WHERE id IN (
        SELECT id FROM project_syncs
        WHERE (last_pushed_at IS NULL
               OR last_pushed_at < now() - make_interval(secs => redeliver_after_secs)
               OR (status = 'running' AND last_pushed_at < lease_expires_at))
          AND ((status = 'queued' AND (not_before IS NULL OR not_before <= now()))
            OR (status = 'running' AND (lease_expires_at IS NULL OR lease_expires_at < now())))
        ORDER BY created_at LIMIT lim FOR UPDATE SKIP LOCKED)
    RETURNING id
$$;

-- A bearer key: its id, tenant and role, or nothing when it is unknown or
-- revoked. Records the use (at most once a minute per key).
CREATE FUNCTION projsync_authenticate(hash text)
RETURNS TABLE (key_id uuid, tenant_id uuid, role text)
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, public AS $$
BEGIN
    UPDATE api_keys k SET last_used_at = now()
    WHERE k.secret_hash = hash AND k.revoked_at IS NULL
      AND (k.last_used_at IS NULL OR k.last_used_at < now() - interval '1 minute');
    RETURN QUERY
        SELECT k.id, k.tenant_id, k.role FROM api_keys k
        WHERE k.secret_hash = hash AND k.revoked_at IS NULL;
END
$$;

-- A session cookie: its key, tenant, role and CSRF token hash, or nothing
-- when it is unknown, expired or its key was revoked.
CREATE FUNCTION projsync_session(hash text)
RETURNS TABLE (key_id uuid, tenant_id uuid, role text, csrf_hash text)
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, public AS $$
    SELECT k.id, k.tenant_id, k.role, s.csrf_hash
    FROM api_sessions s JOIN api_keys k ON k.id = s.key_id
    WHERE s.id_hash = hash AND s.expires_at > now() AND k.revoked_at IS NULL
$$;

-- The HNSW index of one model, created by the API or a worker at start-up
-- for the configured model (they are not the owner). Returns the
-- dimensions the cache already holds for that model when they differ from
-- `dims` (nothing is created then), or NULL.
CREATE FUNCTION projsync_ensure_embedding_index(model_name text, dims integer, index_name text)
RETURNS integer
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, public AS $$
DECLARE
    other integer;
BEGIN
    IF index_name !~ '^[a-z0-9_]{1,63}$' OR dims < 1 OR dims > 16000 THEN
        RAISE EXCEPTION 'invalid embedding index request' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    SELECT e.dimensions INTO other FROM embeddings e
    WHERE e.model = model_name AND e.dimensions <> dims LIMIT 1;
    IF other IS NOT NULL THEN
        RETURN other;
    END IF;
    IF to_regclass(index_name) IS NULL THEN
        EXECUTE format('CREATE INDEX IF NOT EXISTS %I ON embeddings USING hnsw '
                       '((embedding::vector(%s)) vector_cosine_ops) WHERE model = %L',
                       index_name, dims, model_name);
    END IF;
    RETURN NULL;
END
$$;

REVOKE ALL ON FUNCTION projsync_sync_tenant(uuid) FROM PUBLIC;
REVOKE ALL ON FUNCTION projsync_due_for_push(double precision, bigint) FROM PUBLIC;
REVOKE ALL ON FUNCTION projsync_authenticate(text) FROM PUBLIC;
REVOKE ALL ON FUNCTION projsync_session(text) FROM PUBLIC;
REVOKE ALL ON FUNCTION projsync_ensure_embedding_index(text, integer, text) FROM PUBLIC;
