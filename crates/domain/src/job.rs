//! The queue payload. It is a wire contract: the ledger row in Postgres holds
//! everything else, the queue only rings the doorbell (ARCHITECTURE.md, invariant 1).

use crate::SyncId;
use serde::{Deserialize, Serialize};

/// Version of the queue payload. Bump it only with a reader for the old one.
pub const SYNC_JOB_VERSION: u32 = 1;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SyncJob {
    /// Payload schema version.
    pub v: u32,
    pub sync_id: SyncId,
}

impl SyncJob {
    pub fn new(sync_id: SyncId) -> Self {
        Self {
            v: SYNC_JOB_VERSION,
            sync_id,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payload_shape_is_stable() {
        let id: SyncId = "6f1c1c1e-1111-4222-8333-444455556666".parse().unwrap();
        let json = serde_json::to_string(&SyncJob::new(id)).unwrap();
        assert_eq!(
            json,
            r#"{"v":1,"sync_id":"6f1c1c1e-1111-4222-8333-444455556666"}"#
        );
    }
}
