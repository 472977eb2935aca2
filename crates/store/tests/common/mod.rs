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

/// `claim`'s sync taken over by `owner` once its lease has expired (made
/// to expire here): the new owner's claim, with a higher fence.
#[allow(dead_code)] // Not every test binary that shares this module takes a sync over.
pub async fn taken_over(db: &TestDb, claim: &Claim, owner: &str) -> Claim {
    sqlx::query("UPDATE project_syncs SET lease_expires_at = now() - interval '1 s' WHERE id = $1")
        .bind(claim.sync_id.0)
        .execute(&db.admin)
        .await
        .unwrap();
    let ClaimOutcome::Claimed { claim: taken, .. } = db
        .store
        .claim(claim.sync_id, owner, Duration::from_secs(30))
        .await
        .unwrap()
    else {
        panic!("takeover")
    };
    taken
}
