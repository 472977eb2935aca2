//! Progress events: the wire format frontends follow live.
//!
//! Published as JSON on Redis pub/sub (`projsync:sync:{sync_id}` and
//! `projsync:project:{project_id}`) and kept as the sync's latest snapshot in
//! Postgres. `v` is the schema version; `seq` increases by one per event of a
//! sync, so a subscriber can drop duplicates and notice gaps.

use crate::{PhaseStatus, ProjectId, Stats, SyncId, SyncPhase, SyncStatus};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

pub const PROGRESS_EVENT_VERSION: u32 = 1;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProgressEvent {
    pub v: u32,
    pub sync_id: SyncId,
    pub project_id: ProjectId,
    pub seq: i64,
    /// Status of the whole sync after this event.
    pub sync_status: SyncStatus,
    pub phase: SyncPhase,
    pub phase_status: PhaseStatus,
    /// Units done and total in this phase (files for scan and import).
    pub done: u64,
    pub total: u64,
    pub stats: Stats,
    pub message: String,
    pub at: DateTime<Utc>,
}

impl ProgressEvent {
    /// The event ends the sync: nothing follows it.
    pub fn is_final(&self) -> bool {
        self.sync_status.is_terminal()
    }
}

pub fn sync_channel(sync_id: SyncId) -> String {
    format!("projsync:sync:{sync_id}")
}

pub fn project_channel(project_id: ProjectId) -> String {
    format!("projsync:project:{project_id}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_round_trips_and_names_channels() {
        let ev = ProgressEvent {
            v: PROGRESS_EVENT_VERSION,
            sync_id: SyncId::new(),
            project_id: ProjectId::new(),
            seq: 3,
            sync_status: SyncStatus::Running,
            phase: SyncPhase::Import,
            phase_status: PhaseStatus::Running,
            done: 10,
            total: 20,
            stats: Stats::default(),
            message: "batch 1".into(),
            at: Utc::now(),
        };
        let json = serde_json::to_value(&ev).unwrap();
        assert_eq!(json["v"], 1);
        assert_eq!(json["phase"], "import");
        assert_eq!(json["sync_status"], "running");
        let back: ProgressEvent = serde_json::from_value(json).unwrap();
        assert_eq!(back, ev);
        assert!(!back.is_final());
        assert_eq!(
            sync_channel(ev.sync_id),
            format!("projsync:sync:{}", ev.sync_id)
        );
    }
}
