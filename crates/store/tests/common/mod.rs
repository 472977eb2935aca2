//! What the store's tests share.

use projsync_domain::ProjectId;
use projsync_store::{Claim, ClaimOutcome, NewProject, Store};
use projsync_test_support::TestDb;
use std::time::Duration;

/// A new project's new sync, claimed by `owner`.
pub async fn claimed(db: &TestDb, owner: &str) -> (Store, ProjectId, Claim) {
    let store = db.store.clone();
    let project = store
        .create_project(&NewProject::local("p", "/tmp/nowhere"))
        .await
        .unwrap();
    let sync = store
        .create_sync(
            project.id,
            Some("main"),
            None,
            None,
            &projsync_domain::SyncTrigger::Api,
        )
        .await
        .unwrap()
        .sync;
    let ClaimOutcome::Claimed { claim, .. } = store
        .claim(sync.id, owner, Duration::from_secs(30))
        .await
        .unwrap()
    else {
        panic!("claim")
    };
    (store, project.id, claim)
}
