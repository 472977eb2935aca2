//! `projsync`: api | worker | migrate | project | sync | watch | history |
//! search | embeddings | tenant | key | credential | audit | ops | demo.

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use projsync::watch::{self, Output};
use projsync::{app, demo, Settings};
use projsync_domain::{SyncId, SyncStatus};
use projsync_store::{Project, Store};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use tracing::Instrument as _;

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
    /// The tenant a command acts on (also PROJSYNC_TENANT). Project, sync,
    /// search and embeddings commands default to `default`; key and
    /// credential changes require it; listings show every tenant without it.
    #[arg(long, global = true, env = "PROJSYNC_TENANT", value_name = "NAME")]
    tenant: Option<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Serve the HTTP API.
    Api,
    /// Pull sync jobs from the queue and run them, until SIGINT or SIGTERM.
    Worker,
    /// Serve MCP (the Model Context Protocol) on stdin/stdout, for an AI
    /// assistant that starts projsync itself: search, entries, symbols and
    /// syncs, as the API key's tenant sees them. (`projsync api` serves the
    /// same over HTTP at /mcp.)
    Mcp {
        /// The API key to answer as (`projsync key create`).
        #[arg(long, env = "PROJSYNC_API_KEY", hide_env_values = true)]
        key: String,
        /// The project (name or id) tools use when not given one; resources
        /// lists only its files.
        #[arg(long)]
        project: Option<String>,
    },
    /// Create the database if needed and apply migrations, guarded: every
    /// statement is parsed first and one that destroys a protected object
    /// is refused without a consent line; rows and vectors are counted
    /// before and after each migration, which rolls back if they drop.
    Migrate {
        /// Apply nothing: list the pending migrations and a verdict for each
        /// statement; exit 1 if anything would be refused.
        #[arg(long, conflicts_with = "verify")]
        check: bool,
        /// Compare the live schema with the schema the applied migrations
        /// produce; print every difference and exit 1 if there is one.
        #[arg(long)]
        verify: bool,
        /// Read migrations from this directory instead of the built-in ones.
        #[arg(long, value_name = "DIR")]
        source: Option<PathBuf>,
    },
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
    /// Tenants (operator: connects as database.admin_url).
    #[command(subcommand)]
    Tenant(TenantCmd),
    /// API keys of a tenant (operator: connects as database.admin_url).
    #[command(subcommand)]
    Key(KeyCmd),
    /// Credentials projects of a tenant may name (operator: connects as
    /// database.admin_url). The secret stays in the environment of the API
    /// and worker processes; only where to find it is registered.
    #[command(subcommand)]
    Credential(CredentialCmd),
    /// GitHub webhooks of a tenant (operator: connects as database.admin_url).
    #[command(subcommand)]
    Webhook(WebhookCmd),
    /// The audit trail: every state-changing call, newest first (operator).
    Audit {
        #[arg(long, default_value_t = 50)]
        limit: i64,
        /// One JSON object per line.
        #[arg(long)]
        json: bool,
    },
    /// A Git post-receive hook that syncs a local repository's project on
    /// every push of its branch, through the API.
    #[command(subcommand)]
    Hook(HookCmd),
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
enum HookCmd {
    /// Install REPO's post-receive hook: each push of the project's branch
    /// asks the API (with KEY) for a sync; pushes in a burst are one sync
    /// that ends at the newest head.
    Install {
        /// The project (id or name) that syncs REPO.
        #[arg(long)]
        project: String,
        /// The repository the project syncs (bare, or a working tree).
        repo: PathBuf,
        /// An API key of the project's tenant with the write role; kept
        /// beside the hook, readable by its owner only.
        #[arg(long, env = "PROJSYNC_API_KEY", hide_env_values = true)]
        key: String,
        /// The API's URL (default: http:// and api.listen).
        #[arg(long, env = "PROJSYNC_API_URL")]
        api: Option<String>,
        /// Replace a post-receive hook that projsync did not write.
        #[arg(long)]
        force: bool,
    },
    /// What the installed hook runs (reads the pushed refs on stdin).
    #[command(hide = true)]
    Notify {
        #[arg(long)]
        api: String,
        #[arg(long)]
        project: projsync_domain::ProjectId,
        #[arg(long)]
        branch: String,
        #[arg(long)]
        key_file: PathBuf,
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
enum TenantCmd {
    /// Create a tenant.
    Add { name: String },
    /// List tenants.
    List,
}

#[derive(Debug, Subcommand)]
enum KeyCmd {
    /// Create an API key for --tenant; the key is printed once, and only its
    /// hash is stored.
    Create {
        /// admin: also create projects, retry and discard; write: also
        /// enqueue syncs, restores and backfills, and cancel; read: read and search.
        #[arg(long, default_value = "write")]
        role: projsync_domain::Role,
        /// A label to recognise the key by.
        #[arg(long, default_value = "")]
        name: String,
        /// Print {"id", "tenant", "role", "key"} as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Revoke a key: it and the sessions it opened stop working at once.
    Revoke { id: projsync_domain::KeyId },
    /// List keys (of --tenant, or all) with their last use.
    List,
}

#[derive(Debug, Subcommand)]
enum WebhookCmd {
    /// Create or rotate the webhook secret of --tenant; it is printed once,
    /// with the payload URL and content type to set in GitHub. A rotated
    /// secret replaces the old one at once.
    Secret {
        /// Print {"tenant", "secret", "url", "content_type"} as JSON.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Subcommand)]
enum CredentialCmd {
    /// Register (or replace) a credential of --tenant.
    Add {
        name: String,
        /// A token in this environment variable of the API and worker processes.
        #[arg(long, group = "source", value_name = "VAR")]
        env: Option<String>,
        /// A token in this file (a mounted secret) on the API and worker hosts.
        #[arg(long, group = "source", value_name = "PATH")]
        file: Option<String>,
        /// A GitHub App installation, APP_ID:INSTALLATION_ID, whose private
        /// key is in --key-env or --key-file.
        #[arg(long, group = "source", value_name = "APP_ID:INSTALLATION_ID")]
        github_app: Option<String>,
        #[arg(long, requires = "github_app", value_name = "VAR")]
        key_env: Option<String>,
        #[arg(long, requires = "github_app", value_name = "PATH")]
        key_file: Option<String>,
    },
    /// Remove a credential no project uses.
    Remove { name: String },
    /// List credentials (of --tenant, or all).
    List,
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
        /// The name of a credential registered for the tenant
        /// (`projsync credential add`), for private repositories.
        #[arg(long, alias = "credentials-ref", requires = "github")]
        credential: Option<String>,
        #[arg(long, default_value = "main")]
        branch: String,
        /// Extra .gitignore-style pattern to skip (repeatable).
        #[arg(long = "ignore")]
        ignore: Vec<String>,
        /// Do not embed this project's entries (keyword search only).
        #[arg(long)]
        no_embeddings: bool,
        /// Do not analyse this project's code (no symbols or dependencies).
        #[arg(long)]
        no_analysis: bool,
        /// Sync by itself on a schedule: `every 15m`, or a cron expression
        /// in UTC (`*/30 * * * *`).
        #[arg(long)]
        schedule: Option<String>,
    },
    /// List projects (with their schedule and its next run).
    List,
    /// Show, set or clear a project's schedule: `every 15m`, or a cron
    /// expression in UTC (5 fields, or 6 with seconds first).
    Schedule {
        /// Project name or id.
        project: String,
        /// The new schedule; none: show the current one.
        #[arg(conflicts_with = "clear")]
        schedule: Option<String>,
        /// Remove the schedule.
        #[arg(long)]
        clear: bool,
    },
}

/// A project's schedule and its next run, for the CLI's lines.
fn schedule_line(p: &Project) -> String {
    match (&p.schedule, p.next_scheduled_at) {
        (Some(s), Some(next)) => format!("{s} (next {})", next.format("%Y-%m-%d %H:%M:%S UTC")),
        (Some(s), None) => format!("{s} (stopped: set it again)"),
        (None, _) => "no schedule".into(),
    }
}

/// The command's name: the resource's `projsync.process` in telemetry.
fn process_name(command: &Command) -> String {
    let name = match command {
        Command::Api => "api",
        Command::Worker => "worker",
        Command::Mcp { .. } => "mcp",
        Command::Migrate { .. } => "migrate",
        Command::Project(_) => "project",
        Command::Sync { .. } => "sync",
        Command::Restore { .. } => "restore",
        Command::Watch { .. } => "watch",
        Command::Cancel { .. } => "cancel",
        Command::Ops(_) => "ops",
        Command::History { .. } => "history",
        Command::Search { .. } => "search",
        Command::Embeddings(_) => "embeddings",
        Command::Demo { .. } => "demo",
        Command::Tenant(_) => "tenant",
        Command::Key(_) => "key",
        Command::Credential(_) => "credential",
        Command::Webhook(_) => "webhook",
        Command::Audit { .. } => "audit",
        Command::Hook(_) => "hook",
    };
    name.to_string()
}

/// A command that creates (or queues again) a sync runs in a span of its
/// own: the sync's trace starts there, as it starts at the API's request.
fn command_span(name: &'static str) -> tracing::Span {
    tracing::info_span!(
        "cli.command",
        otel.name = format!("projsync {name}"),
        sync_id = tracing::field::Empty,
    )
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    // The hook runs in Git's environment, with no settings: it only talks
    // to the API.
    if let Command::Hook(HookCmd::Notify {
        api,
        project,
        branch,
        key_file,
    }) = cli.command
    {
        return hook_notify(projsync::hook::Notify {
            api,
            project,
            branch,
            key_file,
        })
        .await;
    }
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
            | Command::Mcp { .. }
    );
    let log = projsync::logging::LogOptions {
        json: cli.log_json,
        quiet,
        process: process_name(&cli.command),
    };
    let telemetry = match projsync::logging::init(&settings, &log) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("error: {e:#}");
            return ExitCode::from(2);
        }
    };
    let code = match run(cli.command, cli.tenant, &settings).await {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    };
    // The last spans and logs go out now (bounded: a few seconds at most
    // when the backend does not answer). The exporter has a runtime of its
    // own, so blocking here stalls nothing it needs.
    if let Some(telemetry) = telemetry {
        if let Err(e) = telemetry.shutdown() {
            eprintln!("telemetry: {e}");
        }
    }
    code
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
    Ok(store.project_by_key(key).await?)
}

/// `key` in `tenant`, for the operator's commands.
async fn operator_tenant(admin: &Store, tenant: Option<&str>) -> Result<projsync_store::Tenant> {
    let name = tenant.context("give the tenant with --tenant NAME (or PROJSYNC_TENANT)")?;
    Ok(admin.tenant_by_name(name).await?)
}

/// A credential reference from the options of `credential add`.
fn credential_reference(
    env: Option<String>,
    file: Option<String>,
    github_app: Option<String>,
    key_env: Option<String>,
    key_file: Option<String>,
) -> Result<String> {
    let var = |v: &str| -> Result<()> {
        let ok = !v.is_empty()
            && !v.starts_with(|c: char| c.is_ascii_digit())
            && v.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        anyhow::ensure!(ok, "`{v}` is not an environment variable name");
        Ok(())
    };
    let path = |p: &str| -> Result<()> {
        anyhow::ensure!(
            p.starts_with('/') && !p.contains(['\0', '\n', '\r']),
            "`{}` must be an absolute path",
            p.escape_debug()
        );
        Ok(())
    };
    match (env, file, github_app) {
        (Some(v), None, None) => var(&v).map(|_| format!("env:{v}")),
        (None, Some(p), None) => path(&p).map(|_| format!("file:{p}")),
        (None, None, Some(app)) => {
            let (app_id, installation) = app
                .split_once(':')
                .filter(|(a, i)| a.parse::<u64>().is_ok() && i.parse::<u64>().is_ok())
                .context("--github-app must be APP_ID:INSTALLATION_ID, two numbers")?;
            match (key_env, key_file) {
                (Some(v), None) => var(&v).map(|_| format!("app:{app_id}:{installation}:env:{v}")),
                (None, Some(p)) => {
                    path(&p).map(|_| format!("app:{app_id}:{installation}:file:{p}"))
                }
                _ => anyhow::bail!(
                    "give the app's private key with --key-env VAR or --key-file PATH"
                ),
            }
        }
        _ => anyhow::bail!(
            "give one of --env VAR, --file PATH or --github-app APP_ID:INSTALLATION_ID"
        ),
    }
}

async fn run(command: Command, tenant: Option<String>, settings: &Settings) -> Result<ExitCode> {
    let project_tenant = tenant.clone().unwrap_or_else(|| "default".to_string());
    match command {
        Command::Migrate {
            check: true,
            source,
            ..
        } => {
            let admin = app::admin_store(settings).await?;
            let mut conn = admin.pool().acquire().await?;
            let options = app::migrate_options(settings, source.as_deref());
            let pending = projsync_migrate::check(&mut conn, &options).await?;
            print!("{}", projsync_migrate::render(&pending));
            if pending.iter().any(|p| p.refused()) {
                return Ok(ExitCode::from(1));
            }
        }
        Command::Migrate {
            verify: true,
            source,
            ..
        } => {
            let options = app::migrate_options(settings, source.as_deref());
            let differences =
                projsync_migrate::verify(&settings.database.admin_url, &options.source).await?;
            if differences.is_empty() {
                println!(
                    "no drift: {} matches its migrations",
                    projsync_domain::redact_url(&settings.database.admin_url)
                );
            } else {
                println!(
                    "drift: the live schema differs from what the applied migrations produce \
                     (changed by hand or by a schema-push tool?)"
                );
                for d in &differences {
                    println!("{d}");
                }
                return Ok(ExitCode::from(1));
            }
        }
        Command::Migrate { source, .. } => {
            app::migrate_from(settings, source.as_deref()).await?;
            println!(
                "migrations applied to {}",
                projsync_domain::redact_url(&settings.database.admin_url)
            );
        }
        Command::Api => {
            let store = app::store(settings).await?;
            app::require_app_role(&store).await?;
            app::require_pgvector(&store).await?;
            let listener = app::bind(&settings.api.listen).await?;
            let embedder = app::embedder(settings, &store).await?;
            let search = app::search_settings(settings, embedder);
            let state = app::api_state_with_search(settings, store, search).await?;
            let shutdown = CancellationToken::new();
            let (addr, handle) =
                app::spawn_api(listener, state, settings.mcp_settings(), shutdown.clone())?;
            tracing::info!("api listening on http://{addr}");
            app::shutdown_signal().await;
            tracing::info!("shutting down");
            shutdown.cancel();
            handle.await??;
        }
        Command::Mcp { key, project } => {
            let store = app::store(settings).await?;
            app::require_app_role(&store).await?;
            app::require_pgvector(&store).await?;
            let Some(principal) = store.authenticate(key.trim()).await? else {
                eprintln!(
                    "error: this API key is not valid (unknown or revoked); ask an operator for \
                     one (`projsync key create --tenant NAME`)"
                );
                return Ok(ExitCode::from(2));
            };
            if let Some(p) = &project {
                if find_project(&store.scoped(principal.tenant), p)
                    .await
                    .is_err()
                {
                    eprintln!(
                        "error: --project {p}: no such project for this key's tenant \
                         (`projsync project list` lists them)"
                    );
                    return Ok(ExitCode::from(2));
                }
            }
            let embedder = app::embedder(settings, &store).await?;
            let search = app::search_settings(settings, embedder);
            let state = app::api_state_with_search(settings, store, search).await?;
            projsync_mcp::serve_stdio(state, principal, project, settings.mcp_settings()).await?;
        }
        Command::Worker => {
            let store = app::store(settings).await?;
            app::require_app_role(&store).await?;
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
            credential,
            branch,
            ignore,
            no_embeddings,
            no_analysis,
            schedule,
        }) => {
            use projsync_api::service::{CreateProject, RepositoryInput, Switch};
            let off = Switch {
                enabled: Some(false),
            };
            let store = app::tenant_store(settings, &project_tenant).await?;
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
                    credential,
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
                    embeddings: no_embeddings.then_some(off.clone()),
                    analysis: no_analysis.then_some(off),
                    schedule,
                },
            )
            .await?;
            println!("{}", project.id);
        }
        Command::Project(ProjectCmd::List) => {
            let store = app::tenant_store(settings, &project_tenant).await?;
            for p in store.list_projects().await? {
                println!(
                    "{}  {:<30} {} {} @ {}  {}",
                    p.id,
                    p.name,
                    p.repository.provider,
                    p.repository.location,
                    p.repository.default_branch,
                    schedule_line(&p)
                );
            }
        }
        Command::Project(ProjectCmd::Schedule {
            project,
            schedule,
            clear,
        }) => {
            let store = app::tenant_store(settings, &project_tenant).await?;
            let project = find_project(&store, &project).await?;
            let project = if schedule.is_some() || clear {
                let state = app::api_state(settings, store).await?;
                projsync_api::service::set_schedule(&state, project.id, schedule.as_deref()).await?
            } else {
                project
            };
            println!("{}  {}", project.name, schedule_line(&project));
        }
        Command::Sync {
            project,
            branch,
            watch: follow,
        } => {
            let store = app::tenant_store(settings, &project_tenant).await?;
            let project = find_project(&store, &project).await?;
            let state = app::api_state(settings, store.clone()).await?;
            let outcome = projsync_api::service::enqueue_sync(
                &state,
                project.id,
                branch.as_deref(),
                None,
                &state.trigger(),
            )
            .instrument(command_span("sync"))
            .await?;
            return enqueued(settings, &store, &project, &outcome, follow).await;
        }
        Command::Restore {
            project,
            sync_id,
            watch: follow,
        } => {
            let store = app::tenant_store(settings, &project_tenant).await?;
            let project = find_project(&store, &project).await?;
            let state = app::api_state(settings, store.clone()).await?;
            let outcome = projsync_api::service::enqueue_restore(&state, project.id, sync_id, None)
                .instrument(command_span("restore"))
                .await?;
            return enqueued(settings, &store, &project, &outcome, follow).await;
        }
        Command::Cancel { sync_id } | Command::Ops(OpsCmd::Cancel { sync_id }) => {
            let store = app::sync_store(settings, sync_id).await?;
            let state = app::api_state(settings, store).await?;
            match projsync_api::service::cancel_sync(&state, sync_id).await? {
                projsync_store::CancelOutcome::Cancelled => println!("sync {sync_id} cancelled"),
                projsync_store::CancelOutcome::Requested => {
                    println!("sync {sync_id} is running; it stops at its next batch boundary")
                }
            }
        }
        Command::Ops(OpsCmd::List { status, limit }) => {
            // Across tenants (or of --tenant): the owner's connection.
            let admin = app::admin_store(settings).await?;
            let store = match tenant.as_deref() {
                Some(t) => admin.scoped(admin.tenant_by_name(t).await?.id),
                None => admin,
            };
            let statuses = projsync_api::parse_statuses(status.as_deref())
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            for s in store.syncs_by_status(&statuses, limit).await? {
                println!(
                    "{}  {}  {:<9} {:<8} {:<9} {:<9} attempts {:<3} {}",
                    s.id,
                    s.project_id,
                    s.status.as_str(),
                    s.kind,
                    s.trigger.kind(),
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
            let store = app::sync_store(settings, sync_id).await?;
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
            let store = app::sync_store(settings, sync_id).await?;
            let state = app::api_state(settings, store.clone()).await?;
            projsync_api::service::retry_sync(&state, sync_id, from_start)
                .instrument(command_span("ops retry"))
                .await?;
            println!(
                "sync {sync_id} queued again{}",
                if from_start { " from the start" } else { "" }
            );
            if follow {
                return follow_sync(settings, &store, sync_id, Output::auto()).await;
            }
        }
        Command::Ops(OpsCmd::Discard { sync_id }) => {
            let store = app::sync_store(settings, sync_id).await?;
            let state = app::api_state(settings, store).await?;
            projsync_api::service::discard_sync(&state, sync_id).await?;
            println!("sync {sync_id} discarded");
        }
        Command::Watch { sync_id, plain } => {
            let store = app::sync_store(settings, sync_id).await?;
            let output = if plain { Output::Lines } else { Output::auto() };
            return follow_sync(settings, &store, sync_id, output).await;
        }
        Command::History { project, limit } => {
            let store = app::tenant_store(settings, &project_tenant).await?;
            let project = find_project(&store, &project).await?;
            for s in store.list_syncs(project.id, limit).await? {
                let head = s
                    .head_commit
                    .as_deref()
                    .map(|h| &h[..h.len().min(12)])
                    .unwrap_or("-");
                println!(
                    "{}  {}  {:<9} {:<9} {:<12} {:<9} {} files, {} imported, {} skipped{}",
                    s.id,
                    s.created_at.format("%Y-%m-%d %H:%M:%S"),
                    s.status.as_str(),
                    s.outcome.as_deref().unwrap_or("-"),
                    head,
                    s.trigger.to_string(),
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
            let store = app::tenant_store(settings, &project_tenant).await?;
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
            let store = app::tenant_store(settings, &project_tenant).await?;
            app::require_pgvector(&store).await?;
            let project = find_project(&store, &project).await?;
            let embedder = app::embedder(settings, &store).await?;
            let search = app::search_settings(settings, embedder);
            let state = app::api_state_with_search(settings, store.clone(), search).await?;
            let outcome = projsync_api::search::enqueue_backfill(&state, project.id, prune, None)
                .instrument(command_span("embeddings backfill"))
                .await?;
            return enqueued(settings, &store, &project, &outcome, follow).await;
        }
        Command::Embeddings(EmbeddingsCmd::Status { project, json }) => {
            let store = app::tenant_store(settings, &project_tenant).await?;
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
        Command::Tenant(TenantCmd::Add { name }) => {
            let admin = app::admin_store(settings).await?;
            let t = admin
                .create_tenant(&name, &projsync_store::Actor::cli())
                .await?;
            println!("{}", t.id);
            eprintln!(
                "tenant {} created; give it a key with: projsync key create --tenant {} --role admin",
                t.name, t.name
            );
        }
        Command::Tenant(TenantCmd::List) => {
            let admin = app::admin_store(settings).await?;
            for t in admin.list_tenants().await? {
                println!(
                    "{}  {:<30} created {}",
                    t.id,
                    t.name,
                    t.created_at.format("%Y-%m-%d %H:%M:%S")
                );
            }
        }
        Command::Key(KeyCmd::Create { role, name, json }) => {
            let admin = app::admin_store(settings).await?;
            let t = operator_tenant(&admin, tenant.as_deref()).await?;
            let created = admin
                .create_key(&t, role, &name, &projsync_store::Actor::cli())
                .await?;
            if json {
                println!(
                    "{}",
                    serde_json::json!({
                        "id": created.key.id,
                        "tenant": t.name,
                        "role": role,
                        "key": created.secret,
                    })
                );
            } else {
                eprintln!(
                    "key {} of tenant {} with role {role}; it is shown only this once:",
                    created.key.id, t.name
                );
                println!("{}", created.secret);
            }
        }
        Command::Key(KeyCmd::Revoke { id }) => {
            let admin = app::admin_store(settings).await?;
            let key = admin.revoke_key(id, &projsync_store::Actor::cli()).await?;
            println!("key {} of tenant {} revoked", key.id, key.tenant);
        }
        Command::Key(KeyCmd::List) => {
            let admin = app::admin_store(settings).await?;
            let t = match tenant.as_deref() {
                Some(name) => Some(admin.tenant_by_name(name).await?),
                None => None,
            };
            let ts = |t: Option<chrono::DateTime<chrono::Utc>>| {
                t.map(|t| t.format("%Y-%m-%d %H:%M:%S").to_string())
                    .unwrap_or_else(|| "never".into())
            };
            for k in admin.list_keys(t.as_ref()).await? {
                println!(
                    "{}  {:<20} {:<6} {:<20} created {}  last used {}{}",
                    k.id,
                    k.tenant,
                    k.role.as_str(),
                    if k.name.is_empty() { "-" } else { &k.name },
                    ts(Some(k.created_at)),
                    ts(k.last_used_at),
                    k.revoked_at
                        .map(|r| format!("  revoked {}", ts(Some(r))))
                        .unwrap_or_default()
                );
            }
        }
        Command::Webhook(WebhookCmd::Secret { json }) => {
            let admin = app::admin_store(settings).await?;
            let t = operator_tenant(&admin, tenant.as_deref()).await?;
            let (secret, rotated) = admin
                .rotate_webhook_secret(&t, &projsync_store::Actor::cli())
                .await?;
            let base = settings.webhooks.public_url.trim_end_matches('/');
            let base = if base.is_empty() {
                "https://API-HOST"
            } else {
                base
            };
            let url = format!("{base}/api/v1/webhooks/github?tenant={}", t.name);
            if json {
                println!(
                    "{}",
                    serde_json::json!({
                        "tenant": t.name,
                        "secret": secret,
                        "url": url,
                        "content_type": "application/json",
                    })
                );
            } else {
                eprintln!(
                    "webhook secret of tenant {} {}; it is shown only this once:",
                    t.name,
                    if rotated {
                        "rotated (deliveries signed with the old one are now refused)"
                    } else {
                        "created"
                    }
                );
                println!("{secret}");
                eprintln!(
                    "In GitHub (repository Settings > Webhooks > Add webhook):\n  \
                     Payload URL:  {url}\n  \
                     Content type: application/json\n  \
                     Secret:       the line above\n  \
                     Events:       Just the push event (or also Branch or tag creation and deletion)"
                );
                if settings.webhooks.public_url.is_empty() {
                    eprintln!(
                        "  (replace https://API-HOST with the API's public address, or set \
                         webhooks.public_url)"
                    );
                }
            }
        }
        Command::Credential(CredentialCmd::Add {
            name,
            env,
            file,
            github_app,
            key_env,
            key_file,
        }) => {
            let reference = credential_reference(env, file, github_app, key_env, key_file)?;
            let admin = app::admin_store(settings).await?;
            let t = operator_tenant(&admin, tenant.as_deref()).await?;
            let c = admin
                .add_credential(&t, &name, &reference, &projsync_store::Actor::cli())
                .await?;
            println!(
                "credential {} of tenant {} registered ({})",
                c.name, c.tenant, c.reference
            );
        }
        Command::Credential(CredentialCmd::Remove { name }) => {
            let admin = app::admin_store(settings).await?;
            let t = operator_tenant(&admin, tenant.as_deref()).await?;
            admin
                .remove_credential(&t, &name, &projsync_store::Actor::cli())
                .await?;
            println!("credential {name} of tenant {} removed", t.name);
        }
        Command::Credential(CredentialCmd::List) => {
            let admin = app::admin_store(settings).await?;
            let t = match tenant.as_deref() {
                Some(name) => Some(admin.tenant_by_name(name).await?),
                None => None,
            };
            for c in admin.list_credentials(t.as_ref()).await? {
                println!("{:<20} {:<30} {}", c.tenant, c.name, c.reference);
            }
        }
        Command::Audit { limit, json } => {
            let admin = app::admin_store(settings).await?;
            let t = match tenant.as_deref() {
                Some(name) => Some(admin.tenant_by_name(name).await?),
                None => None,
            };
            for a in admin.audit_log(t.as_ref(), limit.clamp(1, 10_000)).await? {
                if json {
                    println!("{}", serde_json::to_string(&a)?);
                } else {
                    println!(
                        "{}  {:<16} {:<44} {:<20} {}  {}",
                        a.at.format("%Y-%m-%d %H:%M:%S"),
                        a.tenant,
                        a.actor,
                        a.action,
                        a.target,
                        a.detail
                    );
                }
            }
        }
        Command::Hook(HookCmd::Install {
            project,
            repo,
            key,
            api,
            force,
        }) => {
            let api = api.unwrap_or_else(|| format!("http://{}", settings.api.listen));
            let done = projsync::hook::install(&projsync::hook::Install {
                api,
                key,
                project,
                repo,
                force,
            })
            .await?;
            println!("{}", done.hook.display());
            eprintln!(
                "{} the post-receive hook: each push of branch {} syncs project {} ({}); \
                 the key is in {} (owner-only)",
                if done.replaced {
                    "replaced"
                } else {
                    "installed"
                },
                done.branch,
                done.project_name,
                done.project_id,
                done.key_file.display()
            );
        }
        Command::Hook(HookCmd::Notify { .. }) => unreachable!("handled before the settings load"),
        Command::Demo { path, branch } => {
            let status = demo::run(settings, path, branch).await?;
            return Ok(exit_for(status));
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// The installed hook's run: a line for the pusher; exit code 1 when the
/// API could not be asked (the push itself is kept either way).
async fn hook_notify(args: projsync::hook::Notify) -> ExitCode {
    let mut stdin = String::new();
    if let Err(e) = std::io::Read::read_to_string(&mut std::io::stdin(), &mut stdin) {
        eprintln!("projsync: cannot read the pushed refs: {e}");
        return ExitCode::from(1);
    }
    match projsync::hook::notify(&args, &stdin).await {
        Ok(Some(line)) => {
            eprintln!("{line}");
            ExitCode::SUCCESS
        }
        Ok(None) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("projsync: no sync asked for: {e:#}");
            ExitCode::from(1)
        }
    }
}
