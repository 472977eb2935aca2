//! Phases of a sync and the statuses of syncs and phases, with their string
//! forms as stored in Postgres and sent on the wire.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

macro_rules! string_enum {
    ($(#[$m:meta])* $name:ident { $($variant:ident => $s:literal),+ $(,)? }) => {
        $(#[$m])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
        #[serde(rename_all = "snake_case")]
        pub enum $name { $($variant),+ }

        impl $name {
            pub const ALL: &'static [$name] = &[$($name::$variant),+];
            pub fn as_str(self) -> &'static str {
                match self { $($name::$variant => $s),+ }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl FromStr for $name {
            type Err = String;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                match s { $($s => Ok($name::$variant),)+
                    other => Err(format!(concat!("unknown ", stringify!($name), " `{}`"), other)) }
            }
        }
    };
}
pub(crate) use string_enum;

string_enum!(
    /// The phases of a sync, in the order they run.
    SyncPhase {
        Prepare => "prepare",
        Scan => "scan",
        Import => "import",
        Analyze => "analyze",
        Docs => "docs",
        Embed => "embed",
        Finalize => "finalize",
    }
);

impl SyncPhase {
    /// The phase after this one, or `None` after the last.
    pub fn next(self) -> Option<SyncPhase> {
        let i = Self::ALL.iter().position(|p| *p == self)?;
        Self::ALL.get(i + 1).copied()
    }
}

string_enum!(
    /// Status of a whole sync.
    SyncStatus {
        Queued => "queued",
        Running => "running",
        Succeeded => "succeeded",
        Failed => "failed",
        Cancelled => "cancelled",
        Discarded => "discarded",
    }
);

impl SyncStatus {
    /// A terminal sync never runs again by itself.
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            SyncStatus::Succeeded
                | SyncStatus::Failed
                | SyncStatus::Cancelled
                | SyncStatus::Discarded
        )
    }
}

string_enum!(
    /// Status of one phase (a `sync_steps` row) and of a progress event.
    PhaseStatus {
        Pending => "pending",
        Running => "running",
        Succeeded => "succeeded",
        Skipped => "skipped",
        Failed => "failed",
        Cancelled => "cancelled",
    }
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn phases_run_in_order() {
        assert_eq!(SyncPhase::Prepare.next(), Some(SyncPhase::Scan));
        assert_eq!(SyncPhase::Scan.next(), Some(SyncPhase::Import));
        assert_eq!(SyncPhase::Import.next(), Some(SyncPhase::Analyze));
        assert_eq!(SyncPhase::Analyze.next(), Some(SyncPhase::Docs));
        assert_eq!(SyncPhase::Docs.next(), Some(SyncPhase::Embed));
        assert_eq!(SyncPhase::Embed.next(), Some(SyncPhase::Finalize));
        assert_eq!(SyncPhase::Finalize.next(), None);
    }

    #[test]
    fn strings_round_trip() {
        for p in SyncPhase::ALL {
            assert_eq!(p.as_str().parse::<SyncPhase>().unwrap(), *p);
        }
        for s in SyncStatus::ALL {
            assert_eq!(s.as_str().parse::<SyncStatus>().unwrap(), *s);
        }
        assert!("nope".parse::<SyncStatus>().is_err());
        assert!(SyncStatus::Failed.is_terminal());
        assert!(!SyncStatus::Running.is_terminal());
    }
}
