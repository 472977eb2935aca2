//! Resource subscriptions: after every successful sync of a project, each
//! URI a client subscribed to in it gets `notifications/resources/updated`.
//!
//! A session follows each project it subscribed to on the project's
//! progress channel in Redis (one shared pub/sub connection per process,
//! through the API's `EventHub`). Pub/sub is not durable: when the
//! connection drops, the follower subscribes again (with backoff) and then
//! compares the project's last successful sync with the last one it
//! announced, so a sync that succeeded in between is announced too. The
//! followers stop when the session ends (its server is dropped).

use futures::StreamExt;
use projsync_api::AppState;
use projsync_domain::{ProjectId, SyncId, SyncStatus};
use projsync_queue::ReconnectPauses;
use projsync_store::Project;
use rmcp::model::ResourceUpdatedNotificationParam;
use rmcp::service::SubscriptionSink;
use rmcp::{Peer, RoleServer};
use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};

/// The URIs subscribed to, by project: shared with the followers, which
/// read it on each sync.
type Uris = Arc<Mutex<HashMap<ProjectId, BTreeSet<String>>>>;

/// Where updates go: the session's peer (`resources/subscribe`, protocol
/// versions up to 2025-11-25) or a `subscriptions/listen` stream (from
/// 2026-07-28).
#[derive(Clone)]
pub enum Notifier {
    Peer(Peer<RoleServer>),
    Listen(SubscriptionSink),
}

impl Notifier {
    /// `false` once the client is gone.
    async fn updated(&self, uri: String) -> bool {
        let sent = match self {
            Notifier::Peer(peer) => peer
                .notify_resource_updated(ResourceUpdatedNotificationParam::new(uri))
                .await
                .map_err(|e| e.to_string()),
            Notifier::Listen(sink) => sink
                .notify_resource_updated(uri)
                .await
                .map_err(|e| e.to_string()),
        };
        if let Err(e) = &sent {
            tracing::debug!("mcp: the client is gone ({e}); stop following");
        }
        sent.is_ok()
    }
}

#[derive(Default)]
pub struct Subscriptions {
    uris: Uris,
    /// One follower per project; aborted when the subscriptions go.
    followers: Mutex<HashMap<ProjectId, tokio::task::JoinHandle<()>>>,
}

impl Drop for Subscriptions {
    fn drop(&mut self) {
        for (_, f) in self
            .followers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .drain()
        {
            f.abort();
        }
    }
}

impl Subscriptions {
    /// Subscribe `uri` (of `project`, which the caller of `state` sees).
    pub fn add(&self, state: AppState, project: Project, uri: String, peer: Notifier) {
        let id = project.id;
        lock(&self.uris).entry(id).or_default().insert(uri);
        let mut followers = self.followers.lock().unwrap_or_else(|e| e.into_inner());
        let running = followers.get(&id).is_some_and(|f| !f.is_finished());
        if !running {
            let task = tokio::spawn(follow(state, project, self.uris.clone(), peer));
            followers.insert(id, task);
        }
    }

    /// Unsubscribe `uri`; a project without URIs left is no longer followed.
    pub fn remove(&self, uri: &str) {
        let mut uris = lock(&self.uris);
        let mut emptied = Vec::new();
        for (project, set) in uris.iter_mut() {
            if set.remove(uri) && set.is_empty() {
                emptied.push(*project);
            }
        }
        let mut followers = self.followers.lock().unwrap_or_else(|e| e.into_inner());
        for project in emptied {
            uris.remove(&project);
            if let Some(f) = followers.remove(&project) {
                f.abort();
            }
        }
    }
}

fn lock(uris: &Uris) -> std::sync::MutexGuard<'_, HashMap<ProjectId, BTreeSet<String>>> {
    uris.lock().unwrap_or_else(|e| e.into_inner())
}

/// Announce every successful sync of `project` to the URIs subscribed in
/// it, until aborted (or the client is gone).
async fn follow(state: AppState, project: Project, uris: Uris, peer: Notifier) {
    let mut announced: Option<SyncId> = project.last_sync_id;
    let mut pauses = ReconnectPauses::new();
    loop {
        let sub = match state.events.subscribe_project(project.id).await {
            Ok(s) => {
                pauses.reset();
                s
            }
            Err(e) => {
                let wait = pauses.next_pause();
                tracing::warn!(project = %project.id, "mcp: cannot follow the project's syncs: {e}; retrying in {wait:?}");
                tokio::time::sleep(wait).await;
                continue;
            }
        };
        // A sync that succeeded while nobody listened.
        match state.store.project(project.id).await {
            Ok(p) if p.last_sync_id.is_some() && p.last_sync_id != announced => {
                announced = p.last_sync_id;
                if !announce(&uris, project.id, &peer).await {
                    return;
                }
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(project = %project.id, "mcp: cannot read the project: {e}"),
        }
        let mut events = sub.into_stream();
        while let Some(event) = events.next().await {
            if event.is_final()
                && event.sync_status == SyncStatus::Succeeded
                && Some(event.sync_id) != announced
            {
                announced = Some(event.sync_id);
                if !announce(&uris, project.id, &peer).await {
                    return;
                }
            }
        }
        // The connection dropped: subscribe again, then catch up.
        tokio::time::sleep(pauses.next_pause()).await;
    }
}

/// Notify each URI subscribed in `project`; `false` once the client is gone.
async fn announce(uris: &Uris, project: ProjectId, peer: &Notifier) -> bool {
    let list: Vec<String> = lock(uris)
        .get(&project)
        .map(|s| s.iter().cloned().collect())
        .unwrap_or_default();
    for uri in list {
        if !peer.updated(uri).await {
            return false;
        }
    }
    true
}
