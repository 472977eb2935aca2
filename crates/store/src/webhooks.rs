//! GitHub webhooks (migration 0019): each tenant's signing secret, the
//! deliveries seen (so that a redelivery starts nothing new), and the
//! projects a push concerns.

use crate::tenancy::{audit_on, random_secret};
use crate::{Actor, Result, Store, Tenant};
use chrono::{DateTime, Utc};
use projsync_domain::{ProjectId, TenantId};
use sqlx::Row;
use std::time::Duration;
use uuid::Uuid;

/// A tenant's webhook secret, to verify a delivery's signature with. Its
/// `Debug` leaves the secret out.
#[derive(Clone)]
pub struct WebhookSecret {
    pub tenant: TenantId,
    pub secret: String,
}

impl std::fmt::Debug for WebhookSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebhookSecret")
            .field("tenant", &self.tenant)
            .finish_non_exhaustive()
    }
}

/// A delivery as recorded: what the first delivery with its id did.
#[derive(Debug, Clone, PartialEq)]
pub struct Delivery {
    pub delivery_id: String,
    pub event: String,
    /// `queued`, `coalesced`, `wanted` or `ignored`; `None` while the
    /// first delivery is still being handled.
    pub outcome: Option<String>,
    /// What the first delivery answered besides its outcome (its syncs,
    /// its message).
    pub detail: serde_json::Value,
    pub received_at: DateTime<Utc>,
}

/// What [`Store::claim_delivery`] found.
#[derive(Debug, Clone, PartialEq)]
pub enum DeliveryClaim {
    /// The first delivery with this id (or one whose first handler died):
    /// handle it, then [`Store::finish_delivery`].
    New,
    /// A delivery with this id was recorded before.
    Seen(Delivery),
}

/// A row left without outcome this long ago was left by a handler that
/// died: the next delivery with its id handles it again.
const ABANDONED_AFTER_SECS: f64 = 60.0;

/// Old deliveries deleted per claim at most, so that a claim stays cheap
/// after a long pause.
const PRUNE_BATCH: i64 = 500;

impl Store {
    /// The webhook secrets a delivery may be signed with, across tenants:
    /// the one of the tenant `tenant` names (its name or id), or every
    /// tenant's when `None`. Through `projsync_webhook_secrets()`: the
    /// application role cannot read the table.
    pub async fn webhook_secrets(&self, tenant: Option<&str>) -> Result<Vec<WebhookSecret>> {
        let rows = sqlx::query("SELECT tenant_id, secret FROM projsync_webhook_secrets($1)")
            .bind(tenant)
            .fetch_all(&self.pool)
            .await?;
        Ok(rows
            .iter()
            .map(|r| WebhookSecret {
                tenant: TenantId(r.get("tenant_id")),
                secret: r.get("secret"),
            })
            .collect())
    }

    /// Create `tenant`'s webhook secret, or replace it (the operator's
    /// `projsync webhook secret`, as the owner); returns the new secret,
    /// which is shown once, and whether an older one was replaced.
    /// Recorded in the audit trail (never the secret).
    pub async fn rotate_webhook_secret(
        &self,
        tenant: &Tenant,
        actor: &Actor,
    ) -> Result<(String, bool)> {
        let secret = random_secret();
        let mut tx = self.scoped(tenant.id).begin().await?;
        let existed: bool = sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM webhook_secrets WHERE tenant_id = $1)",
        )
        .bind(tenant.id.0)
        .fetch_one(&mut *tx)
        .await?;
        sqlx::query(
            "INSERT INTO webhook_secrets (tenant_id, secret) VALUES ($1, $2) \
             ON CONFLICT (tenant_id) DO UPDATE SET secret = EXCLUDED.secret, rotated_at = now()",
        )
        .bind(tenant.id.0)
        .bind(&secret)
        .execute(&mut *tx)
        .await?;
        audit_on(
            &mut tx,
            actor,
            if existed {
                "webhook_secret.rotate"
            } else {
                "webhook_secret.create"
            },
            &format!("tenant:{}", tenant.name),
            serde_json::json!({}),
        )
        .await?;
        tx.commit().await?;
        Ok((secret, existed))
    }

    /// Record the delivery `delivery_id` of `event` for this store's
    /// tenant, unless it was recorded before ([`DeliveryClaim::Seen`]).
    /// Deletes some of the tenant's deliveries older than `retention`
    /// first. The claim is committed at once: the syncs it leads to are
    /// requested in transactions of their own, so a delivery holds one
    /// connection at a time.
    pub async fn claim_delivery(
        &self,
        delivery_id: &str,
        event: &str,
        retention: Duration,
    ) -> Result<DeliveryClaim> {
        let mut tx = self.begin().await?;
        sqlx::query(
            "DELETE FROM webhook_deliveries WHERE (tenant_id, delivery_id) IN ( \
                 SELECT tenant_id, delivery_id FROM webhook_deliveries \
                 WHERE tenant_id = projsync_tenant() \
                   AND received_at < now() - make_interval(secs => $1) \
                 ORDER BY received_at LIMIT $2)",
        )
        .bind(retention.as_secs_f64())
        .bind(PRUNE_BATCH)
        .execute(&mut *tx)
        .await?;
        let inserted = sqlx::query(
            "INSERT INTO webhook_deliveries (delivery_id, event) VALUES ($1, $2) \
             ON CONFLICT (tenant_id, delivery_id) DO NOTHING",
        )
        .bind(delivery_id)
        .bind(event)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if inserted == 1 {
            tx.commit().await?;
            return Ok(DeliveryClaim::New);
        }
        // A first handler that died long ago left its row without outcome.
        let taken = sqlx::query(
            "UPDATE webhook_deliveries SET received_at = now(), event = $2 \
             WHERE delivery_id = $1 AND outcome IS NULL \
               AND received_at < now() - make_interval(secs => $3)",
        )
        .bind(delivery_id)
        .bind(event)
        .bind(ABANDONED_AFTER_SECS)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if taken == 1 {
            tx.commit().await?;
            return Ok(DeliveryClaim::New);
        }
        let row = sqlx::query(
            "SELECT delivery_id, event, outcome, detail, received_at FROM webhook_deliveries \
             WHERE delivery_id = $1",
        )
        .bind(delivery_id)
        .fetch_one(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(DeliveryClaim::Seen(Delivery {
            delivery_id: row.get("delivery_id"),
            event: row.get("event"),
            outcome: row.get("outcome"),
            detail: row.get("detail"),
            received_at: row.get("received_at"),
        }))
    }

    /// Record what a claimed delivery did.
    pub async fn finish_delivery(
        &self,
        delivery_id: &str,
        outcome: &str,
        detail: &serde_json::Value,
    ) -> Result<()> {
        let mut tx = self.begin().await?;
        sqlx::query(
            "UPDATE webhook_deliveries SET outcome = $2, detail = $3 WHERE delivery_id = $1",
        )
        .bind(delivery_id)
        .bind(outcome)
        .bind(detail)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Forget a claimed delivery whose handling failed, so that GitHub's
    /// redelivery is handled afresh.
    pub async fn release_delivery(&self, delivery_id: &str) -> Result<()> {
        let mut tx = self.begin().await?;
        sqlx::query("DELETE FROM webhook_deliveries WHERE delivery_id = $1 AND outcome IS NULL")
            .bind(delivery_id)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    /// This tenant's projects on the GitHub repository `full_name`
    /// (compared without case with the name the project was connected by
    /// and with GitHub's canonical name; or by the repository's id, which
    /// survives renames and transfers) whose branch is `branch`, by name.
    pub async fn github_projects_on(
        &self,
        full_name: &str,
        repository_id: Option<i64>,
        branch: &str,
    ) -> Result<Vec<(ProjectId, String)>> {
        let rows = sqlx::query(
            "SELECT p.id, p.name FROM projects p JOIN repositories r ON r.project_id = p.id \
             WHERE r.provider = 'github' AND r.default_branch = $3 \
               AND (lower(r.location) = lower($1) OR lower(r.remote_name) = lower($1) \
                    OR ($2::bigint IS NOT NULL AND r.remote_id = $2)) \
             ORDER BY p.name",
        )
        .bind(full_name)
        .bind(repository_id)
        .bind(branch)
        .fetch_all(&mut *self.read().await?)
        .await?;
        Ok(rows
            .iter()
            .map(|r| (ProjectId(r.get::<Uuid, _>("id")), r.get("name")))
            .collect())
    }
}
