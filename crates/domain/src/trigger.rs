//! What started a sync: kept with it, shown in its history, the dashboard
//! and `ops list`.

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;
use std::str::FromStr;

/// What started a sync. Its text form is what the ledger, the API and the
/// CLI show: `api`, `cli`, `webhook:<delivery id>`, `schedule`, `hook`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub enum SyncTrigger {
    /// A call of the HTTP API (the dashboard's Sync button included).
    #[default]
    Api,
    /// The `projsync` command line.
    Cli,
    /// A GitHub webhook delivery (its `X-GitHub-Delivery` id).
    Webhook(String),
    /// The project's schedule.
    Schedule,
    /// A Git `post-receive` hook (`projsync hook install`).
    Hook,
}

/// A webhook delivery id longer than this is not one GitHub sends.
pub const DELIVERY_ID_MAX: usize = 100;

impl SyncTrigger {
    /// The trigger's kind without its detail: `api`, `cli`, `webhook`,
    /// `schedule`, `hook` (a metric label, a filter).
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Api => "api",
            Self::Cli => "cli",
            Self::Webhook(_) => "webhook",
            Self::Schedule => "schedule",
            Self::Hook => "hook",
        }
    }
}

impl fmt::Display for SyncTrigger {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Webhook(delivery) => write!(f, "webhook:{delivery}"),
            other => f.write_str(other.kind()),
        }
    }
}

impl FromStr for SyncTrigger {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(match s {
            "api" => Self::Api,
            "cli" => Self::Cli,
            "schedule" => Self::Schedule,
            "hook" => Self::Hook,
            _ => match s.strip_prefix("webhook:") {
                Some(d)
                    if !d.is_empty()
                        && d.len() <= DELIVERY_ID_MAX
                        && d.chars().all(|c| c.is_ascii_alphanumeric() || c == '-') =>
                {
                    Self::Webhook(d.to_string())
                }
                _ => {
                    return Err(format!(
                        "unknown sync trigger `{s}`: expected api, cli, webhook:<delivery id>, \
                         schedule or hook"
                    ))
                }
            },
        })
    }
}

impl Serialize for SyncTrigger {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for SyncTrigger {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::SyncTrigger;

    #[test]
    fn triggers_round_trip_through_their_text() {
        for t in [
            SyncTrigger::Api,
            SyncTrigger::Cli,
            SyncTrigger::Webhook("72d3162e-cc78-11e3-81ab-4c9367dc0958".into()),
            SyncTrigger::Schedule,
            SyncTrigger::Hook,
        ] {
            assert_eq!(t.to_string().parse::<SyncTrigger>(), Ok(t.clone()));
            let json = serde_json::to_string(&t).unwrap();
            assert_eq!(serde_json::from_str::<SyncTrigger>(&json).unwrap(), t);
        }
        assert_eq!(
            SyncTrigger::Webhook("abc".into()).to_string(),
            "webhook:abc"
        );
    }

    #[test]
    fn odd_triggers_are_refused() {
        for s in ["", "webhook:", "webhook:a b", "cron", "API", "webhook:é"] {
            assert!(s.parse::<SyncTrigger>().is_err(), "{s:?}");
        }
    }
}
