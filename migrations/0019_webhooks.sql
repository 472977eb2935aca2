-- GitHub push webhooks (issue 14): one signing secret per tenant, and the
-- deliveries seen, so that a redelivery starts nothing new.
--
-- A delivery carries no API key: the API finds its tenant by the secret
-- that verifies its signature (`?tenant=` on the URL narrows it to one).
-- The secrets table is granted to no one but its owner; the API reads a
-- secret only through projsync_webhook_secrets() below, which answers that
-- one question. The secret is kept as is (an HMAC key cannot be hashed);
-- `projsync webhook secret` creates and rotates it.

CREATE TABLE webhook_secrets (
    tenant_id   uuid PRIMARY KEY DEFAULT projsync_require_tenant() REFERENCES tenants (id),
    secret      text NOT NULL CHECK (length(secret) >= 32),
    created_at  timestamptz NOT NULL DEFAULT now(),
    rotated_at  timestamptz NOT NULL DEFAULT now()
);

-- One row per delivery a tenant's secret verified (`X-GitHub-Delivery`),
-- kept for webhooks.delivery_retention_hours (pruned as deliveries come
-- in): a redelivery within that time is answered with what the first one
-- did. `outcome` is NULL while the first delivery is being handled; a row
-- left NULL by a process that died is taken over by the next delivery
-- with that id. Unique per tenant: a delivery id of one tenant says
-- nothing about another's.
CREATE TABLE webhook_deliveries (
    tenant_id    uuid NOT NULL DEFAULT projsync_require_tenant() REFERENCES tenants (id),
    delivery_id  text NOT NULL CHECK (delivery_id ~ '^[A-Za-z0-9-]{1,100}$'),
    event        text NOT NULL CHECK (event ~ '^[a-z0-9_]{1,64}$'),
    outcome      text CHECK (outcome IN ('queued', 'coalesced', 'wanted', 'ignored')),
    -- The answer's detail: the syncs requested and a message.
    detail       jsonb NOT NULL DEFAULT '{}',
    received_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, delivery_id)
);
CREATE INDEX webhook_deliveries_received ON webhook_deliveries (tenant_id, received_at);

ALTER TABLE webhook_secrets ENABLE ROW LEVEL SECURITY;
ALTER TABLE webhook_secrets FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON webhook_secrets
    USING (tenant_id = projsync_tenant()) WITH CHECK (tenant_id = projsync_tenant());
ALTER TABLE webhook_deliveries ENABLE ROW LEVEL SECURITY;
ALTER TABLE webhook_deliveries FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON webhook_deliveries
    USING (tenant_id = projsync_tenant()) WITH CHECK (tenant_id = projsync_tenant());

-- The webhook secrets a delivery may be signed with, before anyone is
-- authenticated: the one of the tenant named by `tenant_ref` (its name or
-- id), or every tenant's when `tenant_ref` is NULL. Only the API calls it,
-- to verify a delivery's signature.
CREATE FUNCTION projsync_webhook_secrets(tenant_ref text)
RETURNS TABLE (tenant_id uuid, secret text)
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, public AS $$
    SELECT s.tenant_id, s.secret FROM webhook_secrets s JOIN tenants t ON t.id = s.tenant_id
    WHERE tenant_ref IS NULL OR t.name = tenant_ref OR t.id::text = lower(tenant_ref)
    ORDER BY t.name
$$;

REVOKE ALL ON FUNCTION projsync_webhook_secrets(text) FROM PUBLIC;
