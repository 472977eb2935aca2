//! `projsync`: api | worker | migrate | project | sync | watch | history |
//! search | embeddings | demo.

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use projsync::watch::{self, Output};
use projsync::{app, demo, Settings};
use projsync_domain::{ProjectId, SyncId, SyncStatus};
use projsync_store::{Project, Store};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

#[derive(Debug, Parser)]
#[command(
    name = "projsync",
    version,
    about = "Keep an AI knowledge base in step with code"
)]
struct Cli {
    /// Configuration file layered over the defaults (also PROJSYNC_CONFIG).
    #[arg(long, global = true, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Log as JSON lines instead of human-readable text.
    #[arg(long, global = true)]
    log_json: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Serve the HTTP API.
    Api,
    /// Pull sync jobs from the queue and run them, until SIGINT or SIGTERM.
    Worker,
    /// Create the database if needed and apply migrations.
    Migrate,
    /// Create or list projects.
    #[command(subcommand)]
    Project(ProjectCmd),
    /// Enqueue a sync of a project.
    Sync {
        /// Project name or id.
        #[arg(long)]
        project: String,
        /// Branch to sync (default: the project's branch).
        #[arg(long)]
        branch: Option<String>,
        /// Follow the sync until it ends; the exit code tells how it ended.
        #[arg(long)]
        watch: bool,
    },
    /// Make the active entries what they were after an earlier sync (no
    /// content is fetched; recorded in the history as kind `restore`).
    Restore {
        /// Project name or id.
        #[arg(long)]
        project: String,
        /// The succeeded sync whose state to bring back.
        #[arg(long = "sync")]
        sync_id: SyncId,
        /// Follow the restore until it ends.
        #[arg(long)]
        watch: bool,
    },
    /// Follow a sync live until it ends. Exit code 0: succeeded, 1: failed or cancelled.
    Watch {
        sync_id: SyncId,
        /// One line per event, even on a terminal.
        #[arg(long)]
        plain: bool,
    },
    /// Cancel a queued or running sync (its pending work is discarded).
    Cancel { sync_id: SyncId },
    /// Operate syncs from the ledger: list, inspect, retry, cancel, discard.
    #[command(subcommand)]
    Ops(OpsCmd),
    /// Show a project's sync history, newest first.
    History {
        /// Project name or id.
        #[arg(long)]
        project: String,
        #[arg(long, default_value_t = 20)]
        limit: i64,
    },
    /// Search a project's knowledge base by meaning, by keyword, or both.
    Search {
        /// Project name or id.
        #[arg(long)]
        project: String,
        /// Results at most (capped by embeddings.search_max_k).
        #[arg(long, default_value_t = 10)]
        k: usize,
        /// semantic, keyword or hybrid.
        #[arg(long, default_value = "hybrid")]
        mode: projsync_domain::SearchMode,
        /// Only paths that start with this.
        #[arg(long)]
        path_prefix: Option<String>,
        /// Only entries of this language.
        #[arg(long)]
        language: Option<String>,
        /// Search the knowledge base as it was right after this sync.
        #[arg(long)]
        as_of: Option<SyncId>,
        /// Print the response as JSON (the API's shape).
        #[arg(long)]
        json: bool,
        /// What to look for, in words or identifiers.
        #[arg(required = true, num_args = 1..)]
        query: Vec<String>,
    },
    /// Embeddings of a project: status, backfill and refresh.
    #[command(subcommand)]
    Embeddings(EmbeddingsCmd),
    /// Run everything on this machine against a local repository and sync it.
    Demo {
        /// Repository to sync (default: the projsync checkout itself).
        path: Option<PathBuf>,
        /// Branch to sync (default: the repository's current branch).
        #[arg(long)]
        branch: Option<String>,
    },
}

#[derive(Debug, Subcommand)]
enum OpsCmd {
    /// Syncs of every project by status (default: failed,running,queued).
    List {
        /// Comma-separated statuses.
        #[arg(long)]
        status: Option<String>,
        #[arg(long, default_value_t = 50)]
        limit: i64,
    },
    /// A sync's steps (attempts, errors, timings, checkpoints), lease and queue state.
    Inspect { sync_id: SyncId },
    /// Queue a failed or cancelled sync again, from its failed phase.
    Retry {
        sync_id: SyncId,
        /// Start over: drop its plan and pending versions.
        #[arg(long)]
        from_start: bool,
        /// Follow it until it ends.
        #[arg(long)]
        watch: bool,
    },
    /// Cancel a queued or running sync.
    Cancel { sync_id: SyncId },
    /// Give up on a failed or cancelled sync (kept in the history as discarded).
    Discard { sync_id: SyncId },
}

#[derive(Debug, Subcommand)]
enum EmbeddingsCmd {
    /// Embed every active chunk lacking a vector of the configured model
    /// (every chunk after a model change), as a durable job.
    Backfill {
        /// Project name or id.
        #[arg(long)]
        project: String,
        /// Then delete the vectors of every other model.
        #[arg(long)]
        prune: bool,
        /// Follow the job until it ends; the exit code tells how it ended.
        #[arg(long)]
        watch: bool,
    },
    /// Model, dimensions and how many active chunks have vectors.
    Status {
        /// Project name or id.
        #[arg(long)]
        project: String,
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Subcommand)]
enum ProjectCmd {
    /// Connect a repository as a new project: a local path, or GitHub.
    Add {
        #[arg(long)]
        name: String,
        /// Path of a local Git repository.
        #[arg(long, conflicts_with = "github", required_unless_present = "github")]
        path: Option<PathBuf>,
        /// A GitHub repository, owner/name (API URL: github.api_url).
        #[arg(long)]
        github: Option<String>,
        /// Where the GitHub token is, e.g. env:GITHUB_TOKEN (never the token itself).
        #[arg(long, requires = "github")]
        credentials_ref: Option<String>,
        #[arg(long, default_value = "main")]
        branch: String,
        /// Extra .gitignore-style pattern to skip (repeatable).
        #[arg(long = "ignore")]
        ignore: Vec<String>,
        /// Do not embed this project's entries (keyword search only).
        #[arg(long)]
        no_embeddings: bool,
    },
    /// List projects.
    List,
}

fn init_logging(settings: &Settings, json: bool, quiet: bool) {
    use tracing_subscriber::EnvFilter;
    let default = if quiet {
        "warn"
    } else {
        settings.log.level.as_str()
    };
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(default))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if json || settings.log.format == "json" {
        builder.json().init();
    } else {
        builder.init();
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let settings = match Settings::load(cli.config.as_deref()) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: {e:#}");
            return ExitCode::from(2);
        }
    };
    let quiet = matches!(
        cli.command,
        Command::Demo { .. }
            | Command::Watch { .. }
            | Command::Sync { .. }
            | Command::History { .. }
            | Command::Project(_)
            | Command::Search { .. }
            | Command::Embeddings(_)
    );
    init_logging(&settings, cli.log_json, quiet);
    match run(cli.command, &settings).await {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn exit_for(status: SyncStatus) -> ExitCode {
    if status == SyncStatus::Succeeded {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}

/// Print the id of an enqueued sync (saying so when the project's active
/// sync was returned instead), and follow it if asked.
async fn enqueued(
    settings: &Settings,
    store: &Store,
    project: &Project,
    outcome: &projsync_store::EnqueueOutcome,
    follow: bool,
) -> Result<ExitCode> {
    if !outcome.created {
        eprintln!(
            "project {} already has a queued or running sync: that one is shown",
            project.name
        );
    }
    println!("{}", outcome.sync.id);
    if follow {
        return follow_sync(settings, store, outcome.sync.id, Output::auto()).await;
    }
    Ok(ExitCode::SUCCESS)
}

/// Follow a sync to its end, print its summary; the exit code tells how it ended.
async fn follow_sync(
    settings: &Settings,
    store: &Store,
    sync_id: SyncId,
    output: Output,
) -> Result<ExitCode> {
    let record = watch::watch(settings, store, sync_id, output).await?;
    println!("{}", watch::summary(&record));
    Ok(exit_for(record.status))
}

fn print_search(r: &projsync_api::search::SearchResponse) {
    if let Some(note) = &r.semantic {
        eprintln!("semantic ranking {note}; results are by keyword");
    }
    if r.query_truncated {
        eprintln!("the query was longer than the model takes and was cut for embedding");
    }
    if r.results.is_empty() {
        println!("no results");
    }
    for (i, hit) in r.results.iter().enumerate() {
        println!(
            "{:>2}. {}:{}-{}  (score {:.4})",
            i + 1,
            hit.path,
            hit.start_line,
            hit.end_line,
            hit.score
        );
        for line in hit.content.lines().take(6) {
            println!("      {line}");
        }
        if hit.content.lines().count() > 6 {
            println!("      …");
        }
    }
}

async fn find_project(store: &Store, key: &str) -> Result<Project> {
    match key.parse::<ProjectId>() {
        Ok(id) => Ok(store.project(id).await?),
        Err(_) => Ok(store.project_by_name(key).await?),
    }
}

async fn run(command: Command, settings: &Settings) -> Result<ExitCode> {
    match command {
        Command::Migrate => {
            app::migrate(settings).await?;
            println!(
                "migrations applied to {}",
                projsync_domain::redact_url(&settings.database.url)
            );
        }
        Command::Api => {
            let store = app::store(settings).await?;
            app::require_pgvector(&store).await?;
            let listener = app::bind(&settings.api.listen).await?;
            let embedder = app::embedder(settings, &store).await?;
            let search = app::search_settings(settings, embedder);
            let state = app::api_state_with_search(settings, store, search).await?;
            let shutdown = CancellationToken::new();
            let (addr, handle) = app::spawn_api(listener, state, shutdown.clone())?;
            tracing::info!("api listening on http://{addr}");
            app::shutdown_signal().await;
            tracing::info!("shutting down");
            shutdown.cancel();
            handle.await??;
        }
        Command::Worker => {
            let store = app::store(settings).await?;
            let shutdown = CancellationToken::new();
            let worker = app::spawn_worker(settings, store, shutdown.clone()).await?;
            app::shutdown_signal().await;
            tracing::info!("stopping: no new jobs; waiting for running syncs");
            shutdown.cancel();
            let deadline = Duration::from_secs(settings.worker.shutdown_timeout_secs);
            if tokio::time::timeout(deadline, worker).await.is_err() {
                tracing::warn!("running syncs did not stop within {deadline:?}; their leases will expire and another worker resumes them");
            }
        }
        Command::Project(ProjectCmd::Add {
            name,
            path,
            github,
            credentials_ref,
            branch,
            ignore,
            no_embeddings,
        }) => {
            use projsync_api::service::{CreateProject, RepositoryInput};
            let store = app::store(settings).await?;
            let state = app::api_state(settings, store).await?;
            let repository = match (path, github) {
                (Some(path), _) => {
                    let path = path
                        .canonicalize()
                        .with_context(|| format!("no directory at {}", path.display()))?;
                    RepositoryInput::Local {
                        path: path.to_string_lossy().into_owned(),
                        branch,
                    }
                }
                (None, Some(repository)) => RepositoryInput::Github {
                    repository,
                    branch,
                    credentials_ref,
                },
                (None, None) => anyhow::bail!("give --path or --github"),
            };
            let project = projsync_api::service::create_project(
                &state,
                CreateProject {
                    name,
                    repository,
                    ignore_patterns: ignore,
                    max_file_bytes: None,
                    embeddings: no_embeddings.then_some(projsync_api::service::ProjectEmbeddings {
                        enabled: Some(false),
                    }),
                },
            )
            .await?;
            println!("{}", project.id);
        }
        Command::Project(ProjectCmd::List) => {
            let store = app::store(settings).await?;
            for p in store.list_projects().await? {
                println!(
                    "{}  {:<30} {} {} @ {}",
                    p.id,
                    p.name,
                    p.repository.provider,
                    p.repository.location,
                    p.repository.default_branch
                );
            }
        }
        Command::Sync {
            project,
            branch,
            watch: follow,
        } => {
            let store = app::store(settings).await?;
            let project = find_project(&store, &project).await?;
            let state = app::api_state(settings, store.clone()).await?;
            let outcome =
                projsync_api::service::enqueue_sync(&state, project.id, branch.as_deref(), None)
                    .await?;
            return enqueued(settings, &store, &project, &outcome, follow).await;
        }
        Command::Restore {
            project,
            sync_id,
            watch: follow,
        } => {
            let store = app::store(settings).await?;
            let project = find_project(&store, &project).await?;
            let state = app::api_state(settings, store.clone()).await?;
            let outcome =
                projsync_api::service::enqueue_restore(&state, project.id, sync_id, None).await?;
            return enqueued(settings, &store, &project, &outcome, follow).await;
        }
        Command::Cancel { sync_id } | Command::Ops(OpsCmd::Cancel { sync_id }) => {
            let store = app::store(settings).await?;
            match store.request_cancel(sync_id).await? {
                projsync_store::CancelOutcome::Cancelled => println!("sync {sync_id} cancelled"),
                projsync_store::CancelOutcome::Requested => {
                    println!("sync {sync_id} is running; it stops at its next batch boundary")
                }
            }
        }
        Command::Ops(OpsCmd::List { status, limit }) => {
            let store = app::store(settings).await?;
            let statuses = projsync_api::parse_statuses(status.as_deref())
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            for s in store.syncs_by_status(&statuses, limit).await? {
                println!(
                    "{}  {}  {:<9} {:<8} {:<9} attempts {:<3} {}",
                    s.id,
                    s.project_id,
                    s.status.as_str(),
                    s.kind,
                    s.current_phase
                        .or(s.failed_phase)
                        .map(|p| p.as_str())
                        .unwrap_or("-"),
                    s.attempts,
                    s.error_message.as_deref().unwrap_or("")
                );
            }
        }
        Command::Ops(OpsCmd::Inspect { sync_id }) => {
            let store = app::store(settings).await?;
            let s = store.sync(sync_id).await?;
            let steps = store.steps(sync_id).await?;
            print!("{}", watch::summary(&s));
            let ts = |t: Option<chrono::DateTime<chrono::Utc>>| {
                t.map(|t| t.format("%H:%M:%S%.3f").to_string())
                    .unwrap_or_else(|| "-".into())
            };
            println!("  project   {}", s.project_id);
            println!(
                "  kind      {}{}",
                s.kind,
                s.restore_of_sync_id
                    .map(|r| format!(" of {r}"))
                    .unwrap_or_default()
            );
            println!(
                "  lease     owner {} until {} (fence {}), claims {}, operator retries {}",
                s.lease_owner.as_deref().unwrap_or("-"),
                ts(s.lease_expires_at),
                s.fence,
                s.attempts,
                s.retries
            );
            println!(
                "  queue     last pushed {}, not before {}, cancel requested {}",
                ts(s.last_pushed_at),
                ts(s.not_before),
                ts(s.cancel_requested_at)
            );
            println!("  steps");
            for st in steps {
                println!(
                    "    {:<9} {:<9} attempts {:<2} {} → {}  checkpoint {}{}",
                    st.phase.as_str(),
                    st.status.as_str(),
                    st.attempts,
                    ts(st.started_at),
                    ts(st.finished_at),
                    st.checkpoint
                        .map(|c| {
                            let mut c = c;
                            if let Some(o) = c.as_object_mut() {
                                o.remove("stats");
                            }
                            c.to_string()
                        })
                        .unwrap_or_else(|| "-".into()),
                    st.error_message
                        .map(|e| format!("  error: {e}"))
                        .unwrap_or_default()
                );
            }
        }
        Command::Ops(OpsCmd::Retry {
            sync_id,
            from_start,
            watch: follow,
        }) => {
            let store = app::store(settings).await?;
            let state = app::api_state(settings, store.clone()).await?;
            projsync_api::service::retry_sync(&state, sync_id, from_start).await?;
            println!(
                "sync {sync_id} queued again{}",
                if from_start { " from the start" } else { "" }
            );
            if follow {
                return follow_sync(settings, &store, sync_id, Output::auto()).await;
            }
        }
        Command::Ops(OpsCmd::Discard { sync_id }) => {
            let store = app::store(settings).await?;
            store.discard_sync(sync_id).await?;
            println!("sync {sync_id} discarded");
        }
        Command::Watch { sync_id, plain } => {
            let store = app::store(settings).await?;
            let output = if plain { Output::Lines } else { Output::auto() };
            return follow_sync(settings, &store, sync_id, output).await;
        }
        Command::History { project, limit } => {
            let store = app::store(settings).await?;
            let project = find_project(&store, &project).await?;
            for s in store.list_syncs(project.id, limit).await? {
                let head = s
                    .head_commit
                    .as_deref()
                    .map(|h| &h[..h.len().min(12)])
                    .unwrap_or("-");
                println!(
                    "{}  {}  {:<9} {:<9} {:<12} {} files, {} imported, {} skipped{}",
                    s.id,
                    s.created_at.format("%Y-%m-%d %H:%M:%S"),
                    s.status.as_str(),
                    s.outcome.as_deref().unwrap_or("-"),
                    head,
                    s.stats.files_seen,
                    s.stats.imported,
                    s.stats.skipped,
                    s.error_message
                        .as_deref()
                        .map(|e| format!("  error: {e}"))
                        .unwrap_or_default()
                );
            }
        }
        Command::Search {
            project,
            k,
            mode,
            path_prefix,
            language,
            as_of,
            json,
            query,
        } => {
            let store = app::store(settings).await?;
            app::require_pgvector(&store).await?;
            let project = find_project(&store, &project).await?;
            let embedder = match mode {
                projsync_domain::SearchMode::Keyword => None,
                _ => app::embedder(settings, &store).await?,
            };
            let search = app::search_settings(settings, embedder);
            let state = app::api_state_with_search(settings, store, search).await?;
            let response = projsync_api::search::search(
                &state,
                project.id,
                projsync_api::search::SearchRequest {
                    query: query.join(" "),
                    k: Some(k),
                    mode: Some(mode),
                    path_prefix,
                    language,
                    as_of,
                },
            )
            .await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&response)?);
            } else {
                print_search(&response);
            }
        }
        Command::Embeddings(EmbeddingsCmd::Backfill {
            project,
            prune,
            watch: follow,
        }) => {
            let store = app::store(settings).await?;
            app::require_pgvector(&store).await?;
            let project = find_project(&store, &project).await?;
            let embedder = app::embedder(settings, &store).await?;
            let search = app::search_settings(settings, embedder);
            let state = app::api_state_with_search(settings, store.clone(), search).await?;
            let outcome =
                projsync_api::search::enqueue_backfill(&state, project.id, prune, None).await?;
            return enqueued(settings, &store, &project, &outcome, follow).await;
        }
        Command::Embeddings(EmbeddingsCmd::Status { project, json }) => {
            let store = app::store(settings).await?;
            app::require_pgvector(&store).await?;
            let project = find_project(&store, &project).await?;
            // The status needs the model's name, not its weights.
            let search = app::search_settings(settings, None);
            let state = app::api_state_with_search(settings, store, search).await?;
            let mut status = projsync_api::search::embedding_status(&state, project.id).await?;
            if settings.embeddings.enabled && status.model.is_none() {
                let model = settings.embeddings.model.clone();
                let counts = state.store.embedding_counts(project.id, &model).await?;
                status.enabled = project.embeddings_enabled.unwrap_or(true);
                status.model = Some(model);
                status.dimensions = Some(settings.embeddings.dimensions);
                status.embedded_chunks = counts.embedded_chunks;
                status.missing = counts.missing();
            }
            if json {
                println!("{}", serde_json::to_string_pretty(&status)?);
            } else {
                println!(
                    "model {} ({} dimensions){}\nentries {}, chunks {}, embedded {}, missing {}, not chunked {}",
                    status.model.as_deref().unwrap_or("-"),
                    status.dimensions.map_or("-".into(), |d| d.to_string()),
                    if status.enabled { "" } else { ", embeddings off for this project" },
                    status.entries,
                    status.chunks,
                    status.embedded_chunks,
                    status.missing,
                    status.unchunked_entries
                );
            }
        }
        Command::Demo { path, branch } => {
            let status = demo::run(settings, path, branch).await?;
            return Ok(exit_for(status));
        }
    }
    Ok(ExitCode::SUCCESS)
}
