//! Project schedules and the scheduler's tick (migrations/0020_schedules.sql):
//! due schedules fire once per tick whatever the number of workers, and
//! wanted syncs ([`Store::request_sync`]) start once the running one ends.

use crate::syncs::{insert_queued_sync, Due};
use crate::{set_tenant, Error, Project, Result, Store, SyncRecord};
use chrono::{DateTime, Utc};
use projsync_domain::{ProjectId, Schedule, SyncTrigger, TenantId};
use uuid::Uuid;

/// What a due schedule did on one tick.
#[derive(Debug, Clone, PartialEq)]
pub enum ScheduleOutcome {
    /// A new sync, trigger `schedule`, marked pushed: the caller pushes it
    /// (the reconciler pushes it again if that push is lost).
    Started(Box<SyncRecord>),
    /// The project had a queued or running sync: the tick is consumed,
    /// nothing is stacked behind it.
    Busy,
    /// The stored schedule no longer parses, or never fires again: it is
    /// left in place but no longer due (`next_scheduled_at` cleared).
    Stopped(String),
}

/// One due project's fire ([`Store::fire_schedules`]).
#[derive(Debug, Clone, PartialEq)]
pub struct ScheduleFire {
    pub project_id: ProjectId,
    pub tenant_id: TenantId,
    /// When the schedule is next due (`None` when it stopped).
    pub next_at: Option<DateTime<Utc>>,
    pub outcome: ScheduleOutcome,
}

impl Store {
    /// Set (or, with `None`, clear) the project's schedule. It is first due
    /// one interval (or the next occurrence) from now. A project that is
    /// not this tenant's is [`Error::NotFound`].
    pub async fn set_schedule(
        &self,
        project_id: ProjectId,
        schedule: Option<&Schedule>,
    ) -> Result<Project> {
        let mut tx = self.begin().await?;
        let updated =
            sqlx::query("UPDATE projects SET schedule = $2, next_scheduled_at = $3 WHERE id = $1")
                .bind(project_id.0)
                .bind(schedule.map(|s| s.as_str()))
                .bind(schedule.and_then(|s| s.next_after(Utc::now())))
                .execute(&mut *tx)
                .await?;
        if updated.rows_affected() == 0 {
            return Err(Error::NotFound(format!("project {project_id}")));
        }
        tx.commit().await?;
        self.project(project_id).await
    }

    /// The scheduler's tick, across tenants: each project whose schedule is
    /// due gets a sync (trigger `schedule`) unless it has a queued or
    /// running one, and its next time, computed from now (so that ticks
    /// missed while no worker ran fire once, not once each). At most
    /// `limit` projects.
    ///
    /// Once per tick whatever the number of workers: the due projects are
    /// locked `FOR UPDATE SKIP LOCKED` (projsync_due_schedules) in the one
    /// transaction that moves their next time on and creates their syncs,
    /// so another worker's tick either skips them while it runs, or finds
    /// them no longer due once it committed.
    pub async fn fire_schedules(&self, limit: i64) -> Result<Vec<ScheduleFire>> {
        let mut tx = self.begin().await?;
        let due: Vec<(Uuid, Uuid, Option<String>, DateTime<Utc>)> =
            sqlx::query_as("SELECT * FROM projsync_due_schedules($1)")
                .bind(limit)
                .fetch_all(&mut *tx)
                .await?;
        let mut fires = Vec::with_capacity(due.len());
        for (project, tenant, text, now) in due {
            let (project_id, tenant_id) = (ProjectId(project), TenantId(tenant));
            set_tenant(&mut tx, Some(tenant_id)).await?;
            let parsed = text
                .as_deref()
                .ok_or_else(|| "no schedule".to_string())
                .and_then(|t| t.parse::<Schedule>().map_err(|e| e.to_string()));
            let next_at = parsed.as_ref().ok().and_then(|s| s.next_after(now));
            sqlx::query("UPDATE projects SET next_scheduled_at = $2 WHERE id = $1")
                .bind(project)
                .bind(next_at)
                .execute(&mut *tx)
                .await?;
            let outcome = match (parsed, next_at) {
                (Err(e), _) => ScheduleOutcome::Stopped(e),
                (Ok(_), None) => ScheduleOutcome::Stopped("it never fires again".into()),
                (Ok(_), Some(_)) => {
                    match insert_queued_sync(&mut tx, project_id, &SyncTrigger::Schedule, Due::Now)
                        .await?
                    {
                        Some(sync) => ScheduleOutcome::Started(Box::new(sync)),
                        None => ScheduleOutcome::Busy,
                    }
                }
            };
            fires.push(ScheduleFire {
                project_id,
                tenant_id,
                next_at,
                outcome,
            });
        }
        tx.commit().await?;
        Ok(fires)
    }

    /// Start the wanted syncs, across tenants: each project that asked for
    /// a sync while its sync was running ([`Store::request_sync`]) and has
    /// no queued or running sync now gets one, with the trigger of the
    /// first request, and its wanted columns are cleared: after a burst of
    /// pushes, the knowledge base ends at the newest head. The new syncs
    /// are marked pushed: the caller pushes them. At most `limit`.
    pub async fn start_wanted(&self, limit: i64) -> Result<Vec<SyncRecord>> {
        let mut tx = self.begin().await?;
        let wanted: Vec<(Uuid, Uuid, Option<String>)> =
            sqlx::query_as("SELECT * FROM projsync_wanted_syncs($1)")
                .bind(limit)
                .fetch_all(&mut *tx)
                .await?;
        let mut started = Vec::with_capacity(wanted.len());
        for (project, tenant, trigger) in wanted {
            set_tenant(&mut tx, Some(TenantId(tenant))).await?;
            sqlx::query(
                "UPDATE projects SET sync_wanted_at = NULL, sync_wanted_trigger = NULL \
                 WHERE id = $1",
            )
            .bind(project)
            .execute(&mut *tx)
            .await?;
            let trigger = match trigger.as_deref().map(str::parse::<SyncTrigger>) {
                Some(Ok(t)) => t,
                other => {
                    tracing::warn!(
                        project_id = %project,
                        "a wanted sync with an unknown trigger ({other:?}) is started as `api`"
                    );
                    SyncTrigger::Api
                }
            };
            // None: an API sync came in meanwhile, and it reads the newest
            // head when it runs.
            if let Some(sync) =
                insert_queued_sync(&mut tx, ProjectId(project), &trigger, Due::Now).await?
            {
                started.push(sync);
            }
        }
        tx.commit().await?;
        Ok(started)
    }
}
