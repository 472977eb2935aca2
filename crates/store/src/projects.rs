//! Projects and their repository.

use crate::{Error, Result, Store};
use chrono::{DateTime, Utc};
use projsync_domain::source::{RemoteIdentity, RepositorySpec};
use projsync_domain::{ProjectId, RepositoryId, Schedule, SyncId};
use serde::{Deserialize, Serialize};
use sqlx::Row;
use uuid::Uuid;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Repository {
    pub id: RepositoryId,
    /// `local` or `github`.
    pub provider: String,
    /// A filesystem path (local) or `owner/name` (github).
    pub location: String,
    pub default_branch: String,
    pub credential: Option<String>,
    pub last_synced_commit: Option<String>,
    /// What the provider said when the project was connected (migration
    /// 0012); `None` for local repositories and for projects connected
    /// before. Not part of the API's answers.
    #[serde(skip)]
    pub remote: Option<RemoteIdentity>,
    /// The analyser version the active files' symbols come from (migration
    /// 0015); `None` when they have none. Not part of the API's answers.
    #[serde(skip)]
    pub analysis_version: Option<i32>,
}

impl Repository {
    /// How to open it with the secret `credentials_ref` (the reference the
    /// project's credential names).
    pub fn spec<'a>(&'a self, credentials_ref: Option<&'a str>) -> RepositorySpec<'a> {
        RepositorySpec {
            provider: &self.provider,
            location: &self.location,
            credentials_ref,
            remote: self.remote.as_ref(),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Project {
    pub id: ProjectId,
    pub name: String,
    pub ignore_patterns: Vec<String>,
    pub max_file_bytes: Option<i64>,
    /// `false` turns embeddings off for this project; `None` follows the
    /// deployment's `embeddings.enabled`.
    pub embeddings_enabled: Option<bool>,
    /// `false` turns code analysis off for this project; `None` follows
    /// the deployment's `analysis.enabled`.
    pub analysis_enabled: Option<bool>,
    pub last_sync_id: Option<SyncId>,
    pub created_at: DateTime<Utc>,
    pub repository: Repository,
    /// When the scheduler syncs the project by itself: `every 15m`, or a
    /// cron expression in UTC (the user's spelling); `None`: never.
    #[serde(default)]
    pub schedule: Option<String>,
    /// When the schedule is next due (read-only); `None` without one.
    #[serde(default)]
    pub next_scheduled_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone)]
pub struct NewProject {
    pub name: String,
    pub provider: String,
    pub location: String,
    pub default_branch: String,
    pub credential: Option<String>,
    pub ignore_patterns: Vec<String>,
    pub max_file_bytes: Option<i64>,
    pub embeddings_enabled: Option<bool>,
    pub analysis_enabled: Option<bool>,
    /// What the source said when it checked the repository (`Source::remote`).
    pub remote: Option<RemoteIdentity>,
    /// The project's schedule, first due one interval (or occurrence) from now.
    pub schedule: Option<Schedule>,
}

impl NewProject {
    /// A project on a local repository at `location`, branch `main`, with
    /// the deployment's defaults (no credential, ignore patterns, size
    /// limit or embeddings setting of its own).
    pub fn local(name: impl Into<String>, location: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            provider: "local".into(),
            location: location.into(),
            default_branch: "main".into(),
            credential: None,
            ignore_patterns: Vec::new(),
            max_file_bytes: None,
            embeddings_enabled: None,
            analysis_enabled: None,
            remote: None,
            schedule: None,
        }
    }
}

const SELECT_PROJECT: &str =
    "SELECT p.id, p.name, p.ignore_patterns, p.max_file_bytes, p.embeddings_enabled, p.analysis_enabled, \
     p.last_sync_id, p.created_at, p.schedule, p.next_scheduled_at, r.id AS repo_id, r.provider, r.location, r.default_branch, \
     r.credential, r.last_synced_commit, r.remote_name, r.remote_id, r.analysis_version FROM projects p JOIN repositories r ON r.project_id = p.id";

fn project_from_row(row: &sqlx::postgres::PgRow) -> Project {
    Project {
        id: ProjectId(row.get("id")),
        name: row.get("name"),
        ignore_patterns: row.get("ignore_patterns"),
        max_file_bytes: row.get("max_file_bytes"),
        embeddings_enabled: row.get("embeddings_enabled"),
        analysis_enabled: row.get("analysis_enabled"),
        last_sync_id: row.get::<Option<Uuid>, _>("last_sync_id").map(SyncId),
        created_at: row.get("created_at"),
        schedule: row.get("schedule"),
        next_scheduled_at: row.get("next_scheduled_at"),
        repository: Repository {
            id: RepositoryId(row.get("repo_id")),
            provider: row.get("provider"),
            location: row.get("location"),
            default_branch: row.get("default_branch"),
            credential: row.get("credential"),
            last_synced_commit: row.get("last_synced_commit"),
            remote: row
                .get::<Option<String>, _>("remote_name")
                .map(|name| RemoteIdentity {
                    name,
                    id: row.get("remote_id"),
                }),
            analysis_version: row.get("analysis_version"),
        },
    }
}

impl Store {
    /// Create a project and connect its repository, in one transaction.
    /// A duplicate name is a `Conflict`.
    pub async fn create_project(&self, new: &NewProject) -> Result<Project> {
        let id = ProjectId::new();
        let mut tx = self.begin().await?;
        let inserted = sqlx::query(
            "INSERT INTO projects (id, name, ignore_patterns, max_file_bytes, embeddings_enabled, \
                 analysis_enabled, schedule, next_scheduled_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .bind(id.0)
        .bind(&new.name)
        .bind(&new.ignore_patterns)
        .bind(new.max_file_bytes)
        .bind(new.embeddings_enabled)
        .bind(new.analysis_enabled)
        .bind(new.schedule.as_ref().map(|s| s.as_str()))
        .bind(new.schedule.as_ref().and_then(|s| s.next_after(Utc::now())))
        .execute(&mut *tx)
        .await
        .map_err(Error::from);
        match inserted {
            Err(e) if e.is_unique_violation() => {
                return Err(Error::Conflict(format!(
                    "a project named `{}` already exists; choose another name",
                    new.name
                )))
            }
            other => other?,
        };
        sqlx::query(
            "INSERT INTO repositories (id, project_id, provider, location, default_branch, credential, \
             remote_name, remote_id) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .bind(RepositoryId::new().0)
        .bind(id.0)
        .bind(&new.provider)
        .bind(&new.location)
        .bind(&new.default_branch)
        .bind(&new.credential)
        .bind(new.remote.as_ref().map(|r| &r.name))
        .bind(new.remote.as_ref().and_then(|r| r.id))
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        self.project(id).await
    }

    /// Keep what the provider said about a repository connected before it
    /// was kept (`remote` is still NULL), so that its next syncs need not
    /// look it up. Returns whether a row changed.
    pub async fn keep_repository_remote(
        &self,
        repository: RepositoryId,
        remote: &RemoteIdentity,
    ) -> Result<bool> {
        let mut tx = self.begin().await?;
        let done = sqlx::query(
            "UPDATE repositories SET remote_name = $2, remote_id = $3 \
             WHERE id = $1 AND remote_name IS NULL",
        )
        .bind(repository.0)
        .bind(&remote.name)
        .bind(remote.id)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(done.rows_affected() > 0)
    }

    pub async fn project(&self, id: ProjectId) -> Result<Project> {
        let row = sqlx::query(&format!("{SELECT_PROJECT} WHERE p.id = $1"))
            .bind(id.0)
            .fetch_optional(&mut *self.read().await?)
            .await?
            .ok_or_else(|| Error::NotFound(format!("project {id}")))?;
        Ok(project_from_row(&row))
    }

    pub async fn project_by_name(&self, name: &str) -> Result<Project> {
        let row = sqlx::query(&format!("{SELECT_PROJECT} WHERE p.name = $1"))
            .bind(name)
            .fetch_optional(&mut *self.read().await?)
            .await?
            .ok_or_else(|| Error::NotFound(format!("project `{name}`")))?;
        Ok(project_from_row(&row))
    }

    /// The project a person names: by id when `key` is one, else by name
    /// (what the CLI's `--project` and the MCP tools' `project` take).
    pub async fn project_by_key(&self, key: &str) -> Result<Project> {
        match key.parse::<ProjectId>() {
            Ok(id) => self.project(id).await,
            Err(_) => self.project_by_name(key).await,
        }
    }

    pub async fn list_projects(&self) -> Result<Vec<Project>> {
        let rows = sqlx::query(&format!("{SELECT_PROJECT} ORDER BY p.created_at"))
            .fetch_all(&mut *self.read().await?)
            .await?;
        Ok(rows.iter().map(project_from_row).collect())
    }

    /// One page of projects by `(name, id)`, starting after `after`.
    pub async fn list_projects_page(
        &self,
        after: Option<&ProjectKey>,
        limit: i64,
    ) -> Result<crate::Page<Project, ProjectKey>> {
        let (after_name, after_id) = after.map(|(n, id)| (n.as_str(), id.0)).unzip();
        let rows = sqlx::query(&format!(
            "{SELECT_PROJECT} WHERE $1::text IS NULL OR (p.name, p.id) > ($1, $2) \
             ORDER BY p.name, p.id LIMIT $3"
        ))
        .bind(after_name)
        .bind(after_id)
        .bind(limit.saturating_add(1))
        .fetch_all(&mut *self.read().await?)
        .await?;
        let rows = rows
            .iter()
            .map(project_from_row)
            .map(|p| {
                let key = (p.name.clone(), p.id);
                (p, key)
            })
            .collect();
        Ok(crate::Page::from_rows(rows, limit))
    }
}

/// Where a page of projects resumes: `(name, id)` of the last one.
pub type ProjectKey = (String, ProjectId);
