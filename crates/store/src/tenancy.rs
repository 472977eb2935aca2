//! Tenants, API keys, browser sessions, registered credentials, the audit
//! trail, and the application role the API and the workers connect as.
//!
//! Keys and session cookies are random secrets shown once; only their
//! SHA-256 is stored. They are looked up through `SECURITY DEFINER`
//! functions, since the caller does not know its tenant before it is
//! authenticated.

use crate::{Error, Result, Store};
use chrono::{DateTime, Utc};
use projsync_domain::{KeyId, Role, TenantId};
use serde::Serialize;
use sqlx::{PgConnection, Row};
use uuid::Uuid;

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Tenant {
    pub id: TenantId,
    pub name: String,
    pub created_at: DateTime<Utc>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ApiKey {
    pub id: KeyId,
    pub tenant: String,
    pub role: Role,
    pub name: String,
    pub created_at: DateTime<Utc>,
    pub last_used_at: Option<DateTime<Utc>>,
    pub revoked_at: Option<DateTime<Utc>>,
}

/// A key as created: the secret is in `secret`, and nowhere else.
#[derive(Debug, Clone)]
pub struct CreatedKey {
    pub key: ApiKey,
    pub secret: String,
}

/// Who a request is: the key (directly, or through a session it opened),
/// its tenant and role.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Principal {
    pub key_id: KeyId,
    pub tenant: TenantId,
    pub role: Role,
}

#[derive(Debug, Clone, Serialize)]
pub struct Credential {
    pub tenant: String,
    pub name: String,
    /// Where the secret is (`env:NAME`, `file:PATH`, `app:…`): shown to
    /// operators only.
    pub reference: String,
    pub created_at: DateTime<Utc>,
}

#[derive(Debug, Clone, Serialize)]
pub struct AuditRecord {
    pub id: i64,
    pub tenant: String,
    pub at: DateTime<Utc>,
    pub actor: String,
    pub key_id: Option<KeyId>,
    pub action: String,
    pub target: String,
    pub detail: serde_json::Value,
}

/// Who did something, for the audit trail.
#[derive(Debug, Clone)]
pub enum Actor {
    /// An API key (or a session it opened).
    Key(KeyId),
    /// The operator's command line (`cli:<user>`).
    Cli(String),
}

impl Actor {
    /// The operator running this process's CLI.
    pub fn cli() -> Self {
        let user = std::env::var("USER")
            .or_else(|_| std::env::var("LOGNAME"))
            .unwrap_or_else(|_| "unknown".into());
        Actor::Cli(user)
    }

    fn label(&self) -> String {
        match self {
            Actor::Key(id) => format!("key:{id}"),
            Actor::Cli(user) => format!("cli:{user}"),
        }
    }

    fn key_id(&self) -> Option<Uuid> {
        match self {
            Actor::Key(id) => Some(id.0),
            Actor::Cli(_) => None,
        }
    }
}

/// Hex SHA-256: how keys, session cookies and CSRF tokens are stored.
pub fn secret_hash(secret: &str) -> String {
    projsync_domain::content_hash(secret)
}

/// A fresh random secret: two version-4 UUIDs from the operating
/// system's random number generator (244 random bits), as 64 hex digits.
pub fn random_secret() -> String {
    format!("{}{}", Uuid::new_v4().simple(), Uuid::new_v4().simple())
}

fn tenant_from_row(row: &sqlx::postgres::PgRow) -> Tenant {
    Tenant {
        id: TenantId(row.get("id")),
        name: row.get("name"),
        created_at: row.get("created_at"),
    }
}

fn key_from_row(row: &sqlx::postgres::PgRow) -> Result<ApiKey> {
    Ok(ApiKey {
        id: KeyId(row.get("id")),
        tenant: row.get("tenant"),
        role: row
            .get::<String, _>("role")
            .parse()
            .map_err(|e: String| Error::Invalid(e))?,
        name: row.get("name"),
        created_at: row.get("created_at"),
        last_used_at: row.get("last_used_at"),
        revoked_at: row.get("revoked_at"),
    })
}

/// Operator actions: they run on the owner's connection
/// (`database.admin_url`), which is not subject to row-level security, and
/// set the tenant they act on explicitly.
impl Store {
    /// Create a tenant. A taken name is a `Conflict`.
    pub async fn create_tenant(&self, name: &str, actor: &Actor) -> Result<Tenant> {
        projsync_domain::tenancy::check_tenant_name(name).map_err(Error::Invalid)?;
        let id = TenantId::new();
        let mut tx = crate::begin_whole(&self.pool, "BEGIN").await?;
        let row = sqlx::query(
            "INSERT INTO tenants (id, name) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING \
             RETURNING id, name, created_at",
        )
        .bind(id.0)
        .bind(name)
        .fetch_optional(&mut *tx)
        .await?
        .ok_or_else(|| Error::Conflict(format!("a tenant named `{name}` already exists")))?;
        let tenant = tenant_from_row(&row);
        crate::set_tenant(&mut tx, Some(tenant.id)).await?;
        audit_on(
            &mut tx,
            actor,
            "tenant.add",
            &format!("tenant:{name}"),
            serde_json::json!({}),
        )
        .await?;
        tx.commit().await?;
        Ok(tenant)
    }

    /// The tenant named `name` (the tenants table is readable by the
    /// application role: names are not secret to an operator's CLI).
    pub async fn tenant_by_name(&self, name: &str) -> Result<Tenant> {
        let row = sqlx::query("SELECT id, name, created_at FROM tenants WHERE name = $1")
            .bind(name)
            .fetch_optional(&self.pool)
            .await?
            .ok_or_else(|| {
                Error::NotFound(format!(
                    "tenant `{name}` (create it with `projsync tenant add {name}`)"
                ))
            })?;
        Ok(tenant_from_row(&row))
    }

    pub async fn tenant_name(&self, id: TenantId) -> Result<String> {
        sqlx::query_scalar("SELECT name FROM tenants WHERE id = $1")
            .bind(id.0)
            .fetch_optional(&self.pool)
            .await?
            .ok_or_else(|| Error::NotFound(format!("tenant {id}")))
    }

    pub async fn list_tenants(&self) -> Result<Vec<Tenant>> {
        let rows = sqlx::query("SELECT id, name, created_at FROM tenants ORDER BY name")
            .fetch_all(&self.pool)
            .await?;
        Ok(rows.iter().map(tenant_from_row).collect())
    }

    /// Create an API key of `tenant` with `role`. The secret is returned
    /// once; only its hash is stored.
    pub async fn create_key(
        &self,
        tenant: &Tenant,
        role: Role,
        name: &str,
        actor: &Actor,
    ) -> Result<CreatedKey> {
        let id = KeyId::new();
        let secret = format!(
            "{}{}",
            projsync_domain::tenancy::KEY_PREFIX,
            random_secret()
        );
        let mut tx = self.scoped(tenant.id).begin().await?;
        let row = sqlx::query(
            "INSERT INTO api_keys (id, tenant_id, role, name, secret_hash) \
             VALUES ($1, $2, $3, $4, $5) \
             RETURNING id, $6::text AS tenant, role, name, created_at, last_used_at, revoked_at",
        )
        .bind(id.0)
        .bind(tenant.id.0)
        .bind(role.as_str())
        .bind(name)
        .bind(secret_hash(&secret))
        .bind(&tenant.name)
        .fetch_one(&mut *tx)
        .await?;
        let key = key_from_row(&row)?;
        audit_on(
            &mut tx,
            actor,
            "key.create",
            &format!("key:{id}"),
            serde_json::json!({ "role": role, "name": name }),
        )
        .await?;
        tx.commit().await?;
        Ok(CreatedKey { key, secret })
    }

    /// Revoke a key: it and every session it opened stop working at once.
    pub async fn revoke_key(&self, id: KeyId, actor: &Actor) -> Result<ApiKey> {
        let mut tx = crate::begin_whole(&self.pool, "BEGIN").await?;
        let tenant: Option<Uuid> =
            sqlx::query_scalar("SELECT tenant_id FROM api_keys WHERE id = $1")
                .bind(id.0)
                .fetch_optional(&mut *tx)
                .await?;
        let tenant = tenant.ok_or_else(|| Error::NotFound(format!("key {id}")))?;
        crate::set_tenant(&mut tx, Some(TenantId(tenant))).await?;
        let row = sqlx::query(
            "UPDATE api_keys k SET revoked_at = coalesce(k.revoked_at, now()) FROM tenants t \
             WHERE k.id = $1 AND t.id = k.tenant_id \
             RETURNING k.id, t.name AS tenant, k.role, k.name, k.created_at, k.last_used_at, k.revoked_at",
        )
        .bind(id.0)
        .fetch_one(&mut *tx)
        .await?;
        sqlx::query("DELETE FROM api_sessions WHERE key_id = $1")
            .bind(id.0)
            .execute(&mut *tx)
            .await?;
        audit_on(
            &mut tx,
            actor,
            "key.revoke",
            &format!("key:{id}"),
            serde_json::json!({}),
        )
        .await?;
        tx.commit().await?;
        key_from_row(&row)
    }

    /// Keys, newest first; of one tenant or all.
    pub async fn list_keys(&self, tenant: Option<&Tenant>) -> Result<Vec<ApiKey>> {
        let rows = sqlx::query(
            "SELECT k.id, t.name AS tenant, k.role, k.name, k.created_at, k.last_used_at, k.revoked_at \
             FROM api_keys k JOIN tenants t ON t.id = k.tenant_id \
             WHERE $1::uuid IS NULL OR k.tenant_id = $1 ORDER BY k.created_at DESC, k.id",
        )
        .bind(tenant.map(|t| t.id.0))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(key_from_row).collect()
    }

    /// Register (or replace) a credential of `tenant`: where its secret is
    /// in the environment of the API and worker processes.
    pub async fn add_credential(
        &self,
        tenant: &Tenant,
        name: &str,
        reference: &str,
        actor: &Actor,
    ) -> Result<Credential> {
        projsync_domain::tenancy::check_credential_name(name).map_err(Error::Invalid)?;
        let mut tx = self.scoped(tenant.id).begin().await?;
        let row = sqlx::query(
            "INSERT INTO credentials (tenant_id, name, reference) VALUES ($1, $2, $3) \
             ON CONFLICT (tenant_id, name) DO UPDATE SET reference = excluded.reference \
             RETURNING name, reference, created_at",
        )
        .bind(tenant.id.0)
        .bind(name)
        .bind(reference)
        .fetch_one(&mut *tx)
        .await?;
        // The reference is the operator's; the trail records only that it changed.
        audit_on(
            &mut tx,
            actor,
            "credential.add",
            &format!("credential:{name}"),
            serde_json::json!({ "kind": reference.split(':').next().unwrap_or("") }),
        )
        .await?;
        tx.commit().await?;
        Ok(Credential {
            tenant: tenant.name.clone(),
            name: row.get("name"),
            reference: row.get("reference"),
            created_at: row.get("created_at"),
        })
    }

    /// Remove a credential no project uses (one in use is a `Conflict`).
    pub async fn remove_credential(
        &self,
        tenant: &Tenant,
        name: &str,
        actor: &Actor,
    ) -> Result<()> {
        let mut tx = self.scoped(tenant.id).begin().await?;
        let deleted = sqlx::query("DELETE FROM credentials WHERE tenant_id = $1 AND name = $2")
            .bind(tenant.id.0)
            .bind(name)
            .execute(&mut *tx)
            .await
            .map_err(|e| match Error::from(e) {
                Error::Db(e)
                    if e.as_database_error()
                        .is_some_and(|d| d.is_foreign_key_violation()) =>
                {
                    Error::Conflict(format!(
                        "credential `{name}` is used by a project of tenant `{}`; change or \
                         remove that project first",
                        tenant.name
                    ))
                }
                other => other,
            })?;
        if deleted.rows_affected() == 0 {
            return Err(Error::NotFound(format!(
                "credential `{name}` of tenant `{}`",
                tenant.name
            )));
        }
        audit_on(
            &mut tx,
            actor,
            "credential.remove",
            &format!("credential:{name}"),
            serde_json::json!({}),
        )
        .await?;
        tx.commit().await?;
        Ok(())
    }

    pub async fn list_credentials(&self, tenant: Option<&Tenant>) -> Result<Vec<Credential>> {
        let rows = sqlx::query(
            "SELECT t.name AS tenant, c.name, c.reference, c.created_at \
             FROM credentials c JOIN tenants t ON t.id = c.tenant_id \
             WHERE $1::uuid IS NULL OR c.tenant_id = $1 ORDER BY t.name, c.name",
        )
        .bind(tenant.map(|t| t.id.0))
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .iter()
            .map(|row| Credential {
                tenant: row.get("tenant"),
                name: row.get("name"),
                reference: row.get("reference"),
                created_at: row.get("created_at"),
            })
            .collect())
    }

    /// The audit trail, newest first; of one tenant or all.
    pub async fn audit_log(&self, tenant: Option<&Tenant>, limit: i64) -> Result<Vec<AuditRecord>> {
        let rows = sqlx::query(
            "SELECT a.id, t.name AS tenant, a.at, a.actor, a.key_id, a.action, a.target, a.detail \
             FROM audit_log a JOIN tenants t ON t.id = a.tenant_id \
             WHERE $1::uuid IS NULL OR a.tenant_id = $1 ORDER BY a.id DESC LIMIT $2",
        )
        .bind(tenant.map(|t| t.id.0))
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .iter()
            .map(|row| AuditRecord {
                id: row.get("id"),
                tenant: row.get("tenant"),
                at: row.get("at"),
                actor: row.get("actor"),
                key_id: row.get::<Option<Uuid>, _>("key_id").map(KeyId),
                action: row.get("action"),
                target: row.get("target"),
                detail: row.get("detail"),
            })
            .collect())
    }
}

/// Requests: these run as the application role.
impl Store {
    /// Who a bearer key is, or `None` when it is unknown or revoked.
    pub async fn authenticate(&self, secret: &str) -> Result<Option<Principal>> {
        let row = sqlx::query("SELECT key_id, tenant_id, role FROM projsync_authenticate($1)")
            .bind(secret_hash(secret))
            .fetch_optional(&self.pool)
            .await?;
        row.map(|row| principal_from_row(&row)).transpose()
    }

    /// Open a browser session for `principal`. Returns the cookie value and
    /// the CSRF token, each shown once.
    pub async fn create_session(
        &self,
        principal: &Principal,
        ttl: std::time::Duration,
    ) -> Result<(String, String, DateTime<Utc>)> {
        let (cookie, csrf) = (random_secret(), random_secret());
        let mut tx = self.scoped(principal.tenant).begin().await?;
        let expires: DateTime<Utc> = sqlx::query_scalar(
            "INSERT INTO api_sessions (id_hash, key_id, csrf_hash, expires_at) \
             VALUES ($1, $2, $3, now() + make_interval(secs => $4)) RETURNING expires_at",
        )
        .bind(secret_hash(&cookie))
        .bind(principal.key_id.0)
        .bind(secret_hash(&csrf))
        .bind(ttl.as_secs_f64())
        .fetch_one(&mut *tx)
        .await?;
        // Expired sessions of the tenant go as new ones come.
        sqlx::query("DELETE FROM api_sessions WHERE expires_at < now()")
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok((cookie, csrf, expires))
    }

    /// Who a session cookie is, with the hash of its CSRF token.
    pub async fn session(&self, cookie: &str) -> Result<Option<(Principal, String)>> {
        let row =
            sqlx::query("SELECT key_id, tenant_id, role, csrf_hash FROM projsync_session($1)")
                .bind(secret_hash(cookie))
                .fetch_optional(&self.pool)
                .await?;
        row.map(|row| Ok((principal_from_row(&row)?, row.get("csrf_hash"))))
            .transpose()
    }

    /// Close a session (of this store's tenant).
    pub async fn delete_session(&self, cookie: &str) -> Result<()> {
        let mut tx = self.begin().await?;
        sqlx::query("DELETE FROM api_sessions WHERE id_hash = $1")
            .bind(secret_hash(cookie))
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    /// The reference of the credential `name` of this store's tenant (where
    /// its secret is); `None` when no credential is named. An unknown name
    /// is `Invalid`.
    pub async fn credential_reference(&self, name: Option<&str>) -> Result<Option<String>> {
        let Some(name) = name else {
            return Ok(None);
        };
        sqlx::query_scalar("SELECT reference FROM credentials WHERE name = $1")
            .bind(name)
            .fetch_optional(&mut *self.read().await?)
            .await?
            .map(Some)
            .ok_or_else(|| {
                Error::Invalid(format!(
                    "no credential named `{name}` is registered for this tenant; an operator \
                     registers one with `projsync credential add {name} --tenant ...`"
                ))
            })
    }

    /// Record a state-changing call of this store's tenant.
    pub async fn audit(
        &self,
        actor: &Actor,
        action: &str,
        target: &str,
        detail: serde_json::Value,
    ) -> Result<()> {
        let mut tx = self.begin().await?;
        audit_on(&mut tx, actor, action, target, detail).await?;
        tx.commit().await?;
        Ok(())
    }
}

fn principal_from_row(row: &sqlx::postgres::PgRow) -> Result<Principal> {
    Ok(Principal {
        key_id: KeyId(row.get("key_id")),
        tenant: TenantId(row.get("tenant_id")),
        role: row
            .get::<String, _>("role")
            .parse()
            .map_err(|e: String| Error::Invalid(e))?,
    })
}

/// One audit record in the current transaction (whose tenant it takes).
pub(crate) async fn audit_on(
    conn: &mut PgConnection,
    actor: &Actor,
    action: &str,
    target: &str,
    detail: serde_json::Value,
) -> Result<()> {
    sqlx::query(
        "INSERT INTO audit_log (actor, key_id, action, target, detail) VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(actor.label())
    .bind(actor.key_id())
    .bind(action)
    .bind(target)
    .bind(detail)
    .execute(conn)
    .await?;
    Ok(())
}

/// Tables the application role reads and writes (all under row-level
/// security), and what it may do with the others.
const APP_GRANTS: &[(&str, &str)] = &[
    ("projects", "SELECT, INSERT, UPDATE, DELETE"),
    ("repositories", "SELECT, INSERT, UPDATE, DELETE"),
    ("project_syncs", "SELECT, INSERT, UPDATE, DELETE"),
    ("sync_steps", "SELECT, INSERT, UPDATE, DELETE"),
    ("sync_changes", "SELECT, INSERT, UPDATE, DELETE"),
    ("repository_files", "SELECT, INSERT, UPDATE, DELETE"),
    ("memory_entries", "SELECT, INSERT, UPDATE, DELETE"),
    ("memory_chunks", "SELECT, INSERT, UPDATE, DELETE"),
    ("embeddings", "SELECT, INSERT, UPDATE, DELETE"),
    // Code analysis (0015).
    ("sync_analyzed_files", "SELECT, INSERT, UPDATE, DELETE"),
    ("dependency_edges", "SELECT, INSERT, UPDATE, DELETE"),
    // Generated docs (0017).
    ("sync_doc_removals", "SELECT, INSERT, UPDATE, DELETE"),
    ("doc_summaries", "SELECT, INSERT, UPDATE, DELETE"),
    // Webhook deliveries (0019); secrets only through projsync_webhook_secrets().
    ("webhook_deliveries", "SELECT, INSERT, UPDATE, DELETE"),
    ("active_memory_entries", "SELECT"),
    // Names only; tenants are created by an operator.
    ("tenants", "SELECT"),
    // Registered by an operator; the app only reads its tenant's.
    ("credentials", "SELECT"),
    ("api_sessions", "SELECT, INSERT, DELETE"),
    // Append-only for the application.
    ("audit_log", "SELECT, INSERT"),
    // The deployment's worker fleet (0007): each worker keeps its own row.
    ("workers", "SELECT, INSERT, UPDATE, DELETE"),
    // Keys are read only through projsync_authenticate().
];

const APP_FUNCTIONS: &[&str] = &[
    "projsync_sync_tenant(uuid)",
    "projsync_due_for_push(double precision, bigint)",
    "projsync_due_for_push_traced(double precision, bigint)",
    "projsync_due_for_takeover(bigint)",
    "projsync_authenticate(text)",
    "projsync_session(text)",
    "projsync_ensure_embedding_index(text, integer, text)",
    "projsync_sync_metrics()",
    "projsync_analyze(text)",
    "projsync_webhook_secrets(text)",
    // The scheduler (0020).
    "projsync_due_schedules(bigint)",
    "projsync_wanted_syncs(bigint)",
];

/// What `projsync migrate` did to the application role.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AppRole {
    Created,
    Updated,
}

impl Store {
    /// Check that this connection may own the schema: row-level security
    /// is forced on the owner too, so the owner must bypass it (a
    /// superuser, or a role with BYPASSRLS) for the cross-tenant functions.
    pub async fn check_owner_role(&self) -> Result<()> {
        let (user, bypass): (String, bool) = sqlx::query_as(
            "SELECT current_user::text, rolsuper OR rolbypassrls FROM pg_roles WHERE rolname = current_user",
        )
        .fetch_one(&self.pool)
        .await?;
        if !bypass {
            return Err(Error::Invalid(format!(
                "database.admin_url connects as `{user}`, which is neither a superuser nor \
                 BYPASSRLS; migrations must run as the schema owner with BYPASSRLS \
                 (ALTER ROLE {user} BYPASSRLS, as a superuser)"
            )));
        }
        Ok(())
    }

    /// Create (or update) the role the API and the workers connect as, and
    /// grant it exactly what it needs. It must not be a superuser, bypass
    /// row-level security, or be the connection's own role.
    pub async fn ensure_app_role(&self, role: &str, password: Option<&str>) -> Result<AppRole> {
        if role.is_empty()
            || role.len() > 63
            || !role
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
        {
            return Err(Error::Invalid(format!(
                "the user of database.url (`{}`) must be 1 to 63 lowercase letters, digits or `_`",
                role.escape_debug()
            )));
        }
        let mut tx = crate::begin_whole(&self.pool, "BEGIN").await?;
        let me: String = sqlx::query_scalar("SELECT current_user::text")
            .fetch_one(&mut *tx)
            .await?;
        if me == role {
            return Err(Error::Invalid(format!(
                "database.url and database.admin_url both connect as `{role}`; the API and \
                 the workers must connect as their own role (default `projsync_app`), not \
                 as the owner"
            )));
        }
        let existing: Option<(bool, bool)> =
            sqlx::query_as("SELECT rolsuper, rolbypassrls FROM pg_roles WHERE rolname = $1")
                .bind(role)
                .fetch_optional(&mut *tx)
                .await?;
        let outcome = match existing {
            Some((true, _)) | Some((_, true)) => {
                return Err(Error::Invalid(format!(
                    "role `{role}` (the user of database.url) is a superuser or has BYPASSRLS, \
                     which would see every tenant; use a plain role (default `projsync_app`)"
                )))
            }
            Some(_) => AppRole::Updated,
            None => {
                // Several test databases may create the cluster-wide role at once.
                let created = sqlx::query(&format!(
                    "CREATE ROLE {role} LOGIN NOSUPERUSER NOBYPASSRLS NOCREATEDB NOCREATEROLE"
                ))
                .execute(&mut *tx)
                .await;
                match created.map_err(Error::from) {
                    Ok(_) => AppRole::Created,
                    Err(e) if e.is_unique_violation() || is_duplicate_object(&e) => {
                        tx.rollback().await?;
                        return Box::pin(self.ensure_app_role(role, password)).await;
                    }
                    Err(e) => return Err(e),
                }
            }
        };
        if let Some(password) = password {
            let sql: String = sqlx::query_scalar(
                "SELECT format('ALTER ROLE %I PASSWORD %L', $1::text, $2::text)",
            )
            .bind(role)
            .bind(password)
            .fetch_one(&mut *tx)
            .await?;
            sqlx::query(&sql).execute(&mut *tx).await?;
        }
        let db: String = sqlx::query_scalar("SELECT current_database()::text")
            .fetch_one(&mut *tx)
            .await?;
        let mut statements = vec![
            format!(
                "GRANT CONNECT ON DATABASE \"{}\" TO {role}",
                db.replace('"', "\"\"")
            ),
            format!("GRANT USAGE ON SCHEMA public TO {role}"),
            format!("GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA public TO {role}"),
            format!("REVOKE ALL ON api_keys FROM {role}"),
        ];
        for (table, privileges) in APP_GRANTS {
            // Likewise a table of a later migration.
            let exists: bool = sqlx::query_scalar("SELECT to_regclass($1) IS NOT NULL")
                .bind(table)
                .fetch_one(&mut *tx)
                .await?;
            if exists {
                statements.push(format!("REVOKE ALL ON {table} FROM {role}"));
                statements.push(format!("GRANT {privileges} ON {table} TO {role}"));
            }
        }
        for f in APP_FUNCTIONS {
            // A function of a migration not in this set (`migrate --source`
            // with an older directory) is granted once it is applied.
            let exists: bool = sqlx::query_scalar("SELECT to_regprocedure($1) IS NOT NULL")
                .bind(f)
                .fetch_one(&mut *tx)
                .await?;
            if exists {
                statements.push(format!("GRANT EXECUTE ON FUNCTION {f} TO {role}"));
            }
        }
        for sql in statements {
            sqlx::query(&sql).execute(&mut *tx).await?;
        }
        tx.commit().await?;
        Ok(outcome)
    }

    /// Refuse to serve requests or run syncs as a role that would see every
    /// tenant (a superuser or BYPASSRLS) or owns the tables.
    pub async fn check_app_role(&self) -> Result<()> {
        let (user, bypass, owns): (String, bool, bool) = sqlx::query_as(
            "SELECT current_user::text, r.rolsuper OR r.rolbypassrls, \
                    EXISTS (SELECT 1 FROM pg_tables WHERE tablename = 'projects' \
                            AND schemaname = 'public' AND tableowner = current_user) \
             FROM pg_roles r WHERE r.rolname = current_user",
        )
        .fetch_one(&self.pool)
        .await?;
        if bypass || owns {
            return Err(Error::Invalid(format!(
                "database.url connects as `{user}`, which {} row-level security; the API and \
                 the workers must connect as the application role (default `projsync_app`, \
                 created by `projsync migrate`): set database.url to \
                 postgres://projsync_app@HOST/DB and database.admin_url to the owner",
                if owns {
                    "owns the tables (and could turn off)"
                } else {
                    "bypasses"
                }
            )));
        }
        Ok(())
    }
}

fn is_duplicate_object(e: &Error) -> bool {
    matches!(e, Error::Db(sqlx::Error::Database(d)) if d.code().as_deref() == Some("42710"))
}
