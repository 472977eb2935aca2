//! The MCP server: tools and resources over the API's service layer.
//!
//! Every call is answered as the caller: over stdio, the key given to
//! `projsync mcp`; over HTTP, the bearer key of the request (the `/mcp`
//! route's middleware authenticates it and hands the [`Principal`] in
//! through the request's extensions). The store is then scoped to the
//! caller's tenant, so row-level security shows a tool nothing else. A
//! Streamable HTTP session is bound to the tenant of the key that opened
//! it: a request of another tenant on it is refused.

use crate::budget::{self, fit_list, MARKER};
use crate::subscriptions::{Notifier, Subscriptions};
use crate::uri;
use crate::McpSettings;
use projsync_api::{ApiError, AppState};
use projsync_domain::{ProjectId, Role, SearchMode, SyncId};
use projsync_store::{Principal, Project};
use rmcp::handler::server::router::tool::ToolRouter;
use rmcp::handler::server::wrapper::Parameters;
use rmcp::model::{
    CallToolResult, ContentBlock, Implementation, ListResourceTemplatesResult, ListResourcesResult,
    PaginatedRequestParams, ReadResourceRequestParams, ReadResourceResponse, ReadResourceResult,
    Resource, ResourceContents, ResourceTemplate, ServerCapabilities, ServerConfig,
    SubscribeRequestParams, SubscriptionFilter, UnsubscribeRequestParams,
};
use rmcp::schemars;
use rmcp::service::{RequestContext, SubscriptionContext};
use rmcp::{tool, tool_handler, tool_router, ErrorData, RoleServer, ServerHandler};
use serde::Deserialize;
use serde_json::{json, Value};
use std::sync::{Arc, OnceLock};

/// What the assistant is told when it connects.
const INSTRUCTIONS: &str = "projsync keeps a knowledge base of Git repositories in step with \
their code: every file of a project's branch as of its last successful sync, with code symbols \
and earlier versions. Start with `list_projects`; `search` finds code by meaning and by \
keyword; `read_entry` reads one file (also as of an earlier sync, with `as_of`); \
`list_symbols` and `find_references` navigate code; `sync_status` says how fresh a project is \
and `start_sync` brings it up to date (write role). Files are also resources \
projsync://{project}/{path}; subscribe to one, or to projsync://{project}/, to hear of every \
successful sync. Answers are cut to a size budget: a `truncated` field says what was left out \
and how to ask for the rest.";

/// A tool's failure, as the assistant reads it: what happened and what to
/// do. Sent as a tool result with `isError`, never as a protocol error.
struct ToolError(String);

impl From<ApiError> for ToolError {
    fn from(e: ApiError) -> Self {
        ToolError(match e {
            ApiError::Internal(detail) => {
                tracing::error!("mcp: internal error: {detail}");
                "internal error (logged by the server); try again, and tell the operator if it \
                 persists"
                    .into()
            }
            ApiError::Unauthorized(m) => format!("not authenticated: {m}"),
            ApiError::Forbidden(m) => format!("not allowed: {m}"),
            e => e.to_string(),
        })
    }
}

impl From<projsync_store::Error> for ToolError {
    fn from(e: projsync_store::Error) -> Self {
        ApiError::from(e).into()
    }
}

type ToolResult = Result<String, ToolError>;

impl ProjsyncMcp {
    /// The tool's answer, counted in `projsync_mcp_tool_calls_total`.
    fn answer(&self, tool: &str, result: ToolResult) -> CallToolResult {
        self.base.metrics.mcp_tool_call(tool, result.is_ok());
        answer(result)
    }
}

fn answer(result: ToolResult) -> CallToolResult {
    match result {
        Ok(text) => CallToolResult::success(vec![ContentBlock::text(text)]),
        Err(ToolError(message)) => CallToolResult::error(vec![ContentBlock::text(message)]),
    }
}

/// The protocol error a resource request gets (resources have no error
/// results): invalid params, with the message.
fn resource_error(e: ToolError) -> ErrorData {
    ErrorData::invalid_params(e.0, None)
}

#[derive(Clone)]
pub struct ProjsyncMcp {
    /// Unscoped; each call scopes it to its caller.
    base: AppState,
    /// stdio: the principal of the key the server was started with.
    fixed: Option<Principal>,
    /// `--project`: the project tools use when they are not given one.
    default_project: Option<String>,
    settings: Arc<McpSettings>,
    /// The tenant this (HTTP) session belongs to, from its first request.
    tenant: Arc<OnceLock<projsync_domain::TenantId>>,
    subscriptions: Arc<Subscriptions>,
    tool_router: ToolRouter<Self>,
}

impl ProjsyncMcp {
    /// A server answering every call as `fixed` (stdio), or as each HTTP
    /// request's authenticated caller (`None`).
    pub fn new(
        base: AppState,
        fixed: Option<Principal>,
        default_project: Option<String>,
        settings: Arc<McpSettings>,
    ) -> Self {
        Self {
            base,
            fixed,
            default_project,
            settings,
            tenant: Default::default(),
            subscriptions: Default::default(),
            tool_router: Self::tool_router(),
        }
    }

    /// The state of the caller of this request, scoped to its tenant.
    fn caller(&self, ctx: &RequestContext<RoleServer>) -> Result<AppState, ToolError> {
        let principal = match self.fixed {
            Some(p) => p,
            None => ctx
                .extensions
                .get::<http::request::Parts>()
                .and_then(|parts| parts.extensions.get::<Principal>())
                .copied()
                .ok_or_else(|| {
                    ToolError("not authenticated: send `Authorization: Bearer <API key>`".into())
                })?,
        };
        let tenant = *self.tenant.get_or_init(|| principal.tenant);
        if tenant != principal.tenant {
            return Err(ToolError(
                "this MCP session was opened with a key of another tenant; open a new session \
                 (initialize) with your key"
                    .into(),
            ));
        }
        Ok(self.base.for_principal(principal))
    }

    fn budget(&self) -> usize {
        self.settings.max_result_bytes
    }

    /// The project `arg` names (a name or an id), else `--project`, else
    /// the tenant's only project.
    async fn project(&self, st: &AppState, arg: Option<&str>) -> Result<Project, ToolError> {
        let named = arg
            .map(str::trim)
            .filter(|a| !a.is_empty())
            .or(self.default_project.as_deref());
        match named {
            Some(name) => find_project(st, name).await,
            None => {
                let page = st.store.list_projects_page(None, 21).await?;
                match page.items.len() {
                    0 => Err(ToolError(
                        "this key's tenant has no projects yet; an operator adds one with \
                         `projsync project add`"
                            .into(),
                    )),
                    1 => Ok(page.items.into_iter().next().expect("one project")),
                    _ => {
                        let names: Vec<&str> = page
                            .items
                            .iter()
                            .take(20)
                            .map(|p| p.name.as_str())
                            .collect();
                        Err(ToolError(format!(
                            "give `project`: one of {}{} (list_projects lists them all)",
                            names.join(", "),
                            if page.items.len() > 20 { ", …" } else { "" }
                        )))
                    }
                }
            }
        }
    }
}

/// A project by id or name, among the caller's.
async fn find_project(st: &AppState, name: &str) -> Result<Project, ToolError> {
    match st.store.project_by_key(name).await {
        Ok(p) => Ok(p),
        Err(projsync_store::Error::NotFound(_)) => Err(ToolError(format!(
            "no project `{}` for this key; list_projects lists the projects it can see",
            name.escape_debug()
        ))),
        Err(e) => Err(e.into()),
    }
}

fn parse_sync_id(field: &str, raw: Option<&str>) -> Result<Option<SyncId>, ToolError> {
    raw.map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| {
            s.parse::<SyncId>().map_err(|_| {
                ToolError(format!(
                    "{field}: `{}` is not a sync id; sync_status lists a project's recent syncs",
                    s.escape_debug()
                ))
            })
        })
        .transpose()
}

/// Opaque list cursors: base64url of a JSON value.
fn encode_cursor(v: &Value) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string())
}

fn decode_cursor<T: serde::de::DeserializeOwned>(
    raw: Option<&str>,
) -> Result<Option<T>, ToolError> {
    use base64::Engine as _;
    let Some(raw) = raw.filter(|r| !r.is_empty()) else {
        return Ok(None);
    };
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(raw)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .map(Some)
        .ok_or_else(|| {
            ToolError(
                "cursor: not a cursor this server gave; pass `next_cursor` from the previous \
                 answer as it is, or leave it out for the first page"
                    .into(),
            )
        })
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ListProjectsArgs {
    /// `next_cursor` of the previous answer, for the next page.
    pub cursor: Option<String>,
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SearchArgs {
    /// What to look for: words, a question, or an identifier.
    pub query: String,
    /// The project's name or id (optional when there is one project, or the server was started with --project).
    pub project: Option<String>,
    /// How many results, 1 to the server's maximum (default 10).
    pub k: Option<usize>,
    /// `hybrid` (default: meaning and keywords), `semantic` or `keyword`.
    pub mode: Option<String>,
    /// Only paths starting with this, e.g. `src/`.
    pub path_prefix: Option<String>,
    /// Only files of this language, e.g. `rust`, `python`.
    pub language: Option<String>,
    /// A sync id: search the knowledge base as it was right after that sync.
    pub as_of: Option<String>,
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ReadEntryArgs {
    /// The file's path from the repository root, `/`-separated.
    pub path: String,
    /// The project's name or id (optional when there is one project, or the server was started with --project).
    pub project: Option<String>,
    /// A sync id: the file as it was right after that sync.
    pub as_of: Option<String>,
    /// Byte offset to start at: `next_offset` of the previous answer, to read on.
    pub offset: Option<usize>,
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ListSymbolsArgs {
    /// The project's name or id (optional when there is one project, or the server was started with --project).
    pub project: Option<String>,
    /// Part of a symbol's name (case-insensitive).
    pub q: Option<String>,
    /// function, method, type, trait, interface, class, enum, const or module.
    pub kind: Option<String>,
    /// Only symbols of files whose path starts with this.
    pub path_prefix: Option<String>,
    /// `next_cursor` of the previous answer, for the next page.
    pub cursor: Option<String>,
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FindReferencesArgs {
    /// The symbol's qualified name as list_symbols gives it: `path#Outer::name`.
    pub symbol: String,
    /// The project's name or id (optional when there is one project, or the server was started with --project).
    pub project: Option<String>,
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ProjectArgs {
    /// The project's name or id (optional when there is one project, or the server was started with --project).
    pub project: Option<String>,
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct StartSyncArgs {
    /// The project's name or id (optional when there is one project, or the server was started with --project).
    pub project: Option<String>,
    /// A branch other than the project's own, for this sync only.
    pub branch: Option<String>,
}

/// Projects per page of list_projects.
const PROJECTS_PAGE: i64 = 50;
/// Symbols per page of list_symbols (before the size budget).
const SYMBOLS_PAGE: i64 = 100;
/// References looked for by find_references (before the size budget).
const REFERENCES_MAX: usize = 200;

fn sync_summary(s: &projsync_store::SyncRecord) -> Value {
    json!({
        "id": s.id,
        "kind": s.kind,
        "status": s.status,
        "trigger": s.trigger,
        "branch": s.branch,
        "head_commit": s.head_commit,
        "outcome": s.outcome,
        "current_phase": s.current_phase,
        "error": s.error_message,
        "created_at": s.created_at,
        "finished_at": s.finished_at,
        "stats": s.stats,
    })
}

#[tool_router]
impl ProjsyncMcp {
    #[tool(
        description = "List the projects this key can see: name, id, repository, branch, last successful sync. Paginated: pass `next_cursor` back as `cursor`."
    )]
    async fn list_projects(
        &self,
        Parameters(args): Parameters<ListProjectsArgs>,
        ctx: RequestContext<RoleServer>,
    ) -> CallToolResult {
        self.answer("list_projects", self.do_list_projects(args, &ctx).await)
    }

    #[tool(
        description = "Search a project's code and docs by meaning and keywords. Returns the best matching chunks: path, start_line/end_line, score and content. Use read_entry to read a whole file."
    )]
    async fn search(
        &self,
        Parameters(args): Parameters<SearchArgs>,
        ctx: RequestContext<RoleServer>,
    ) -> CallToolResult {
        self.answer("search", self.do_search(args, &ctx).await)
    }

    #[tool(
        description = "Read one file of a project: its content as of the last successful sync, or as of an earlier sync with `as_of`. Long files come in parts: pass `next_offset` back as `offset`."
    )]
    async fn read_entry(
        &self,
        Parameters(args): Parameters<ReadEntryArgs>,
        ctx: RequestContext<RoleServer>,
    ) -> CallToolResult {
        self.answer("read_entry", self.do_read_entry(args, &ctx).await)
    }

    #[tool(
        description = "List a project's code symbols (functions, types, methods, ...) with their file, lines and signature; filter by name (`q`), `kind` or `path_prefix`. Paginated: pass `next_cursor` back as `cursor`."
    )]
    async fn list_symbols(
        &self,
        Parameters(args): Parameters<ListSymbolsArgs>,
        ctx: RequestContext<RoleServer>,
    ) -> CallToolResult {
        self.answer("list_symbols", self.do_list_symbols(args, &ctx).await)
    }

    #[tool(
        description = "Find the lines that use a symbol (by its qualified name from list_symbols): in its own file and in the files that import it."
    )]
    async fn find_references(
        &self,
        Parameters(args): Parameters<FindReferencesArgs>,
        ctx: RequestContext<RoleServer>,
    ) -> CallToolResult {
        self.answer("find_references", self.do_find_references(args, &ctx).await)
    }

    #[tool(
        description = "How fresh a project's knowledge base is: its last successful sync, the sync running or queued now, and the recent syncs with their status and errors."
    )]
    async fn sync_status(
        &self,
        Parameters(args): Parameters<ProjectArgs>,
        ctx: RequestContext<RoleServer>,
    ) -> CallToolResult {
        self.answer("sync_status", self.do_sync_status(args, &ctx).await)
    }

    #[tool(
        description = "Start a sync of a project (needs a key with the write role): its knowledge base catches up with the branch's head in the background. Follow it with sync_status."
    )]
    async fn start_sync(
        &self,
        Parameters(args): Parameters<StartSyncArgs>,
        ctx: RequestContext<RoleServer>,
    ) -> CallToolResult {
        self.answer("start_sync", self.do_start_sync(args, &ctx).await)
    }
}

impl ProjsyncMcp {
    async fn do_list_projects(
        &self,
        args: ListProjectsArgs,
        ctx: &RequestContext<RoleServer>,
    ) -> ToolResult {
        let st = self.caller(ctx)?;
        let after: Option<(String, ProjectId)> = decode_cursor(args.cursor.as_deref())?;
        let page = st
            .store
            .list_projects_page(after.as_ref(), PROJECTS_PAGE)
            .await?;
        let projects: Vec<Value> = page
            .items
            .iter()
            .map(|p| {
                json!({
                    "id": p.id,
                    "name": p.name,
                    "provider": p.repository.provider,
                    "repository": p.repository.location,
                    "branch": p.repository.default_branch,
                    "last_sync_id": p.last_sync_id,
                    "schedule": p.schedule,
                })
            })
            .collect();
        let doc = json!({ "projects": projects, "next_cursor": Value::Null });
        let room = cursor_room(page.items.iter().map(|p| json!((p.name.clone(), p.id))));
        let (text, shown) = fit_list(
            doc,
            "projects",
            self.budget().saturating_sub(room),
            |n, t| {
                format!("{n} of {t} projects of this page shown (size budget); call list_projects with `cursor` = next_cursor for the rest")
            },
        );
        // The cursor continues after the last project shown.
        let next = if shown < page.items.len() {
            page.items[..shown]
                .last()
                .map(|p| (p.name.clone(), p.id))
                .or(after)
        } else {
            page.next.clone()
        };
        Ok(with_cursor(text, next.map(|k| encode_cursor(&json!(k)))))
    }

    async fn do_search(&self, args: SearchArgs, ctx: &RequestContext<RoleServer>) -> ToolResult {
        let st = self.caller(ctx)?;
        let project = self.project(&st, args.project.as_deref()).await?;
        let mode = match args
            .mode
            .as_deref()
            .map(str::trim)
            .filter(|m| !m.is_empty())
        {
            None => None,
            Some(m) => Some(m.parse::<SearchMode>().map_err(|_| {
                ToolError(format!(
                    "mode must be hybrid, semantic or keyword, got `{}`",
                    m.escape_debug()
                ))
            })?),
        };
        if args.k == Some(0) {
            return Err(ToolError("k must be at least 1".into()));
        }
        let req = projsync_api::search::SearchRequest {
            query: args.query,
            k: args.k,
            mode,
            path_prefix: args.path_prefix,
            language: args.language,
            as_of: parse_sync_id("as_of", args.as_of.as_deref())?,
        };
        let r = projsync_api::search::search(&st, project.id, req).await?;
        let results: Vec<Value> = r
            .results
            .iter()
            .map(|h| {
                json!({
                    "path": h.path,
                    "start_line": h.start_line,
                    "end_line": h.end_line,
                    "score": h.score,
                    "kind": h.kind,
                    "content": h.content,
                    "sync_id": h.sync_id,
                })
            })
            .collect();
        let doc = json!({
            "project": project.name,
            "mode": r.mode,
            "model": r.model,
            "k": r.k,
            "semantic": r.semantic,
            "results": results,
        });
        let (text, _) = fit_list(doc, "results", self.budget(), |n, t| {
            format!(
                "{n} of {t} results shown (size budget {} bytes); ask for fewer (`k`) or narrow \
                 with `path_prefix`, and read a whole file with read_entry",
                self.budget()
            )
        });
        Ok(text)
    }

    async fn do_read_entry(
        &self,
        args: ReadEntryArgs,
        ctx: &RequestContext<RoleServer>,
    ) -> ToolResult {
        let st = self.caller(ctx)?;
        let project = self.project(&st, args.project.as_deref()).await?;
        let as_of = parse_sync_id("as_of", args.as_of.as_deref())?;
        let entry =
            match projsync_api::service::read_entry(&st, project.id, &args.path, as_of).await {
                Ok(e) => e,
                Err(ApiError::NotFound(_)) => {
                    return Err(ToolError(format!(
                "no file `{}` in project {}{}; search or resources/list show the paths there are",
                args.path.escape_debug(),
                project.name,
                as_of
                    .map(|s| format!(" as of sync {s}"))
                    .unwrap_or_default()
            )))
                }
                Err(e) => return Err(e.into()),
            };
        self.entry_part(&project, as_of, entry, args.offset.unwrap_or(0))
    }

    /// One part of an entry's content, from `offset`, within the budget.
    fn entry_part(
        &self,
        project: &Project,
        as_of: Option<SyncId>,
        entry: projsync_store::ActiveEntry,
        offset: usize,
    ) -> ToolResult {
        let content = &entry.content;
        let total = content.len();
        if offset > total {
            return Err(ToolError(format!(
                "offset {offset} is past the end of `{}` ({total} bytes)",
                entry.path.escape_debug()
            )));
        }
        let start = budget::ceil_boundary(content, offset);
        let doc = |end: usize, next: Option<usize>| {
            let mut text = content[start..end].to_string();
            if next.is_some() {
                text.push('\n');
                text.push_str(MARKER);
            }
            json!({
                "project": project.name,
                "path": entry.path,
                "as_of": as_of,
                "sync_id": entry.created_by_sync_id,
                "language": entry.language,
                "total_bytes": total,
                "offset": start,
                "next_offset": next,
                "truncated": next.map(|n| format!(
                    "bytes {start}..{n} of {total} shown (size budget); call read_entry with offset={n} for the rest"
                )),
                "content": text,
            })
            .to_string()
        };
        let whole = doc(total, None);
        if whole.len() <= self.budget() {
            return Ok(whole);
        }
        let rest = &content[start..];
        let fits = |len: usize| doc(start + len, Some(start + len)).len() <= self.budget();
        let len = budget::longest_prefix(rest, fits).ok_or_else(|| {
            ToolError("the size budget (mcp.max_result_bytes) is too small to answer".into())
        })?;
        let end = budget::at_line_end(content, start, start + len);
        Ok(doc(end, Some(end)))
    }

    async fn do_list_symbols(
        &self,
        args: ListSymbolsArgs,
        ctx: &RequestContext<RoleServer>,
    ) -> ToolResult {
        let st = self.caller(ctx)?;
        let project = self.project(&st, args.project.as_deref()).await?;
        let filter = projsync_api::code::symbol_filter(args.q, args.kind, args.path_prefix)?;
        let after: Option<String> = decode_cursor(args.cursor.as_deref())?;
        let page =
            projsync_api::code::symbols(&st, project.id, &filter, after.as_deref(), SYMBOLS_PAGE)
                .await?;
        let symbols: Vec<Value> = page
            .items
            .iter()
            .map(|s| {
                json!({
                    "qualified_name": s.qualified_name,
                    "name": s.meta.name,
                    "kind": s.meta.kind,
                    "path": s.path,
                    "start_line": s.meta.start_line,
                    "end_line": s.meta.end_line,
                    "signature": s.meta.signature,
                })
            })
            .collect();
        let doc =
            json!({ "project": project.name, "symbols": symbols, "next_cursor": Value::Null });
        let room = cursor_room(page.items.iter().map(|s| json!(s.qualified_name)));
        let (text, shown) = fit_list(
            doc,
            "symbols",
            self.budget().saturating_sub(room),
            |n, t| {
                format!("{n} of {t} symbols of this page shown (size budget); call list_symbols with `cursor` = next_cursor for the rest, or narrow with q, kind or path_prefix")
            },
        );
        let next = if shown < page.items.len() {
            page.items[..shown]
                .last()
                .map(|s| s.qualified_name.clone())
                .or(after)
        } else {
            page.next.clone()
        };
        Ok(with_cursor(text, next.map(|k| encode_cursor(&json!(k)))))
    }

    async fn do_find_references(
        &self,
        args: FindReferencesArgs,
        ctx: &RequestContext<RoleServer>,
    ) -> ToolResult {
        let st = self.caller(ctx)?;
        let project = self.project(&st, args.project.as_deref()).await?;
        let r = projsync_api::code::references(&st, project.id, &args.symbol, REFERENCES_MAX)
            .await
            .map_err(|e| match e {
                ApiError::NotFound(_) => ToolError(format!(
                    "no active symbol `{}` in project {}; qualified names are `path#Outer::name`, \
                     as list_symbols gives them",
                    args.symbol.escape_debug(),
                    project.name
                )),
                e => e.into(),
            })?;
        let s = &r.symbol;
        let doc = json!({
            "project": project.name,
            "symbol": {
                "qualified_name": s.qualified_name,
                "kind": s.meta.kind,
                "path": s.path,
                "start_line": s.meta.start_line,
                "end_line": s.meta.end_line,
                "signature": s.meta.signature,
            },
            "references": r.references,
            // Cut by the search's own cap; replaced by the budget's note
            // when the budget cuts further.
            "truncated": r.truncated.then(|| format!(
                "the first {REFERENCES_MAX} references shown; there are more"
            )),
        });
        let more = if r.truncated { "+" } else { "" };
        let (text, _) = fit_list(doc, "references", self.budget(), |n, t| {
            format!("{n} of {t}{more} references shown (size budget); search within a path_prefix to see others")
        });
        Ok(text)
    }

    async fn do_sync_status(
        &self,
        args: ProjectArgs,
        ctx: &RequestContext<RoleServer>,
    ) -> ToolResult {
        let st = self.caller(ctx)?;
        let project = self.project(&st, args.project.as_deref()).await?;
        let (active, recent) = tokio::try_join!(
            st.store.active_sync(project.id),
            st.store.list_syncs(project.id, 10),
        )?;
        let last = match project.last_sync_id {
            Some(id) => Some(st.store.sync(id).await?),
            None => None,
        };
        let doc = json!({
            "project": project.name,
            "last_sync": last.as_ref().map(sync_summary),
            "active": active.as_ref().map(sync_summary),
            "recent": recent.iter().map(sync_summary).collect::<Vec<_>>(),
        });
        let (text, _) = fit_list(doc, "recent", self.budget(), |n, t| {
            format!("{n} of {t} recent syncs shown (size budget)")
        });
        Ok(text)
    }

    async fn do_start_sync(
        &self,
        args: StartSyncArgs,
        ctx: &RequestContext<RoleServer>,
    ) -> ToolResult {
        let st = self.caller(ctx)?;
        let project = self.project(&st, args.project.as_deref()).await?;
        st.require(Role::Write)?;
        let outcome = projsync_api::service::enqueue_sync(
            &st,
            project.id,
            args.branch.as_deref(),
            None,
            &st.trigger(),
        )
        .await?;
        Ok(json!({
            "project": project.name,
            "sync_id": outcome.sync.id,
            "status": outcome.sync.status,
            "branch": outcome.sync.branch,
            "created": outcome.created,
            "note": if outcome.created {
                "queued; follow it with sync_status"
            } else {
                "a sync of this project is already queued or running; it was returned instead of a new one"
            },
        })
        .to_string())
    }
}

/// Room for the longest cursor a page's keys can make, which is set in
/// the answer after it is fitted (what it continues from depends on what
/// fitted), so that the answer with its cursor stays within the budget.
fn cursor_room(keys: impl Iterator<Item = Value>) -> usize {
    keys.map(|k| encode_cursor(&k).len() + 2).max().unwrap_or(0)
}

/// `next_cursor` set in a JSON answer (after fitting, in the room
/// [`cursor_room`] kept for it).
fn with_cursor(text: String, cursor: Option<String>) -> String {
    let Some(cursor) = cursor else {
        return text;
    };
    let mut v: Value = serde_json::from_str(&text).expect("our JSON");
    v["next_cursor"] = Value::String(cursor);
    v.to_string()
}

/// A resources/list cursor: the project and the last path listed in it.
#[derive(serde::Serialize, Deserialize)]
struct ResourceCursor {
    p: ProjectId,
    a: Option<String>,
}

impl ProjsyncMcp {
    async fn resources_page(
        &self,
        cursor: Option<&str>,
        ctx: &RequestContext<RoleServer>,
    ) -> Result<ListResourcesResult, ToolError> {
        let st = self.caller(ctx)?;
        let limit = self.settings.page_size.max(1) as i64;
        let mut cursor: Option<ResourceCursor> = decode_cursor(cursor)?;
        // The projects listed: --project's, or all of the tenant's by name.
        let only = match &self.default_project {
            Some(name) => Some(find_project(&st, name).await?),
            None => None,
        };
        let mut project = match (&only, &cursor) {
            (Some(p), _) => Some(p.clone()),
            (None, Some(c)) => Some(find_project(&st, &c.p.to_string()).await?),
            (None, None) => st.store.list_projects_page(None, 1).await?.items.pop(),
        };
        let mut resources = Vec::new();
        while let Some(p) = project.take() {
            let after = cursor.take().filter(|c| c.p == p.id).and_then(|c| c.a);
            let want = limit - resources.len() as i64;
            let page = st
                .store
                .active_paths_page(p.id, after.as_deref(), want)
                .await?;
            for e in &page.items {
                resources.push(
                    Resource::new(uri::resource_uri(&p.name, &e.path), e.path.clone())
                        .with_title(format!("{}: {}", p.name, e.path))
                        .with_mime_type("text/plain")
                        .with_size(e.size.max(0) as u64),
                );
            }
            if let Some(last) = page.next {
                cursor = Some(ResourceCursor {
                    p: p.id,
                    a: Some(last),
                });
                break;
            }
            if only.is_some() {
                break;
            }
            let next = st
                .store
                .list_projects_page(Some(&(p.name.clone(), p.id)), 1)
                .await?
                .items
                .pop();
            if resources.len() as i64 >= limit {
                cursor = next.map(|n| ResourceCursor { p: n.id, a: None });
                break;
            }
            project = next;
        }
        let mut result = ListResourcesResult::with_all_items(resources);
        result.next_cursor = cursor.map(|c| encode_cursor(&json!(c)));
        Ok(result)
    }

    async fn read(
        &self,
        uri_text: &str,
        ctx: &RequestContext<RoleServer>,
    ) -> Result<ReadResourceResult, ToolError> {
        let st = self.caller(ctx)?;
        let (project, path) = uri::parse(uri_text).map_err(ToolError)?;
        let project = find_project(&st, &project).await?;
        if path.is_empty() {
            return Err(ToolError(format!(
                "`{uri_text}` names the whole project; read one file, projsync://{}/{{path}}",
                project.name
            )));
        }
        let entry = projsync_api::service::read_entry(&st, project.id, &path, None)
            .await
            .map_err(|e| match e {
                ApiError::NotFound(_) => ToolError(format!(
                    "no file `{}` in project {}; resources/list lists them",
                    path.escape_debug(),
                    project.name
                )),
                e => e.into(),
            })?;
        let budget = self.budget();
        let text = if entry.content.len() <= budget {
            entry.content
        } else {
            let note = |end: usize| {
                format!(
                    "\n{MARKER}\n(bytes 0..{end} of {} shown: the size budget; call the read_entry tool \
                     with project={}, path={}, offset={end} for the rest)",
                    entry.content.len(),
                    project.name,
                    entry.path
                )
            };
            let end = budget::longest_prefix(&entry.content, |end| end + note(end).len() <= budget)
                .unwrap_or(0);
            let end = budget::at_line_end(&entry.content, 0, end);
            format!("{}{}", &entry.content[..end], note(end))
        };
        Ok(ReadResourceResult::new(vec![ResourceContents::text(
            text, uri_text,
        )]))
    }

    /// The project a subscription URI names (the caller's), and the URI.
    async fn subscription_target(
        &self,
        uri_text: &str,
        st: &AppState,
    ) -> Result<Project, ToolError> {
        let (project, _) = uri::parse(uri_text).map_err(ToolError)?;
        find_project(st, &project).await
    }
}

#[tool_handler(router = self.tool_router)]
impl ServerHandler for ProjsyncMcp {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(
            ServerCapabilities::builder()
                .enable_tools()
                .enable_resources()
                .enable_resources_subscribe()
                .build(),
        )
        .with_server_info(Implementation::new("projsync", env!("CARGO_PKG_VERSION")))
        .with_instructions(INSTRUCTIONS)
    }

    /// Resource updates only: the tool and resource lists never change.
    fn accepted_subscription_filter(
        &self,
        requested: &SubscriptionFilter,
    ) -> Option<SubscriptionFilter> {
        Some(requested.supported_by(&self.get_info().capabilities))
    }

    /// A `subscriptions/listen` stream (2026-07-28): each accepted resource
    /// URI is followed like a `resources/subscribe` until the client closes
    /// the stream. A URI that is not the caller's ends the stream with the
    /// error that says why.
    async fn listen(&self, context: SubscriptionContext) -> Result<(), ErrorData> {
        let st = self
            .caller(context.request_context())
            .map_err(resource_error)?;
        let uris = context
            .accepted()
            .resource_subscriptions
            .clone()
            .unwrap_or_default();
        // Its own followers, stopped when the stream ends (dropped).
        let followed = Subscriptions::default();
        for uri in uris {
            let project = self
                .subscription_target(&uri, &st)
                .await
                .map_err(resource_error)?;
            followed.add(
                st.clone(),
                project,
                uri,
                Notifier::Listen(context.sink().clone()),
            );
        }
        context.cancelled().await;
        Ok(())
    }

    async fn list_resources(
        &self,
        request: Option<PaginatedRequestParams>,
        context: RequestContext<RoleServer>,
    ) -> Result<ListResourcesResult, ErrorData> {
        let cursor = request.and_then(|r| r.cursor);
        self.resources_page(cursor.as_deref(), &context)
            .await
            .map_err(resource_error)
    }

    async fn list_resource_templates(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListResourceTemplatesResult, ErrorData> {
        Ok(ListResourceTemplatesResult::with_all_items(vec![
            ResourceTemplate::new("projsync://{project}/{path}", "entry")
                .with_title("A file of a project, as of its last successful sync")
                .with_description(
                    "project: its name (or id); path: from the repository root; both \
                     percent-encoded",
                ),
        ]))
    }

    async fn read_resource(
        &self,
        request: ReadResourceRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<ReadResourceResponse, ErrorData> {
        self.read(&request.uri, &context)
            .await
            .map(Into::into)
            .map_err(resource_error)
    }

    #[allow(deprecated)]
    async fn subscribe(
        &self,
        request: SubscribeRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<(), ErrorData> {
        let st = self.caller(&context).map_err(resource_error)?;
        let project = self
            .subscription_target(&request.uri, &st)
            .await
            .map_err(resource_error)?;
        self.subscriptions.add(
            st,
            project,
            request.uri,
            Notifier::Peer(context.peer.clone()),
        );
        Ok(())
    }

    #[allow(deprecated)]
    async fn unsubscribe(
        &self,
        request: UnsubscribeRequestParams,
        _context: RequestContext<RoleServer>,
    ) -> Result<(), ErrorData> {
        self.subscriptions.remove(&request.uri);
        Ok(())
    }
}
