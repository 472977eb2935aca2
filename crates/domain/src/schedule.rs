//! A project's schedule: when the scheduler starts a sync of it by itself.
//!
//! Two forms, both in UTC: `every <n><unit>` (`s`, `m`, `h` or `d`; e.g.
//! `every 15m`) and a cron expression (5 fields `minute hour day month
//! weekday`, or 6 with seconds first). The next time is always computed
//! from *now* (the moment the schedule fired), never from the tick it
//! missed: after downtime, the missed ticks run once.

use chrono::{DateTime, TimeDelta, Utc};
use std::fmt;
use std::str::FromStr;
use std::time::Duration;

/// The shortest interval a schedule may have, between two fires.
pub const MIN_INTERVAL: Duration = Duration::from_secs(10);

/// The longest `every` interval (a year).
pub const MAX_INTERVAL: Duration = Duration::from_secs(366 * 24 * 3600);

/// The longest schedule text accepted.
pub const MAX_LEN: usize = 200;

/// What a refused schedule is told: the forms accepted.
pub const ACCEPTED_FORMS: &str = "a schedule is `every <n><s|m|h|d>` (at least every 10s, \
     e.g. `every 15m`, `every 1h`) or a cron expression in UTC: 5 fields \
     `minute hour day-of-month month day-of-week` (e.g. `*/30 * * * *`, `0 3 * * mon-fri`), \
     or 6 with seconds first";

/// A parsed schedule, which keeps its user's spelling (trimmed).
#[derive(Clone)]
pub struct Schedule {
    text: String,
    kind: Kind,
}

#[derive(Clone)]
enum Kind {
    Every(Duration),
    Cron(Box<croner::Cron>),
}

/// Why a schedule was refused; its message ends with the accepted forms.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("schedule `{text}` {reason}; {ACCEPTED_FORMS}")]
pub struct ScheduleError {
    text: String,
    reason: String,
}

impl ScheduleError {
    fn new(text: &str, reason: impl Into<String>) -> Self {
        let mut text: String = text.chars().take(60).collect();
        text = text.escape_debug().to_string();
        Self {
            text,
            reason: reason.into(),
        }
    }
}

impl Schedule {
    /// The user's spelling, trimmed: what the ledger keeps and the API shows.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// When the schedule is next due, strictly after `now`: `now` plus the
    /// interval, or the cron expression's next occurrence. `None` when a
    /// cron expression has no occurrence left (`0 0 30 2 *`).
    pub fn next_after(&self, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        match &self.kind {
            Kind::Every(d) => now.checked_add_signed(TimeDelta::from_std(*d).ok()?),
            Kind::Cron(cron) => cron.find_next_occurrence(&now, false).ok(),
        }
    }
}

impl FromStr for Schedule {
    type Err = ScheduleError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let text = s.trim();
        if text.is_empty() {
            return Err(ScheduleError::new(text, "is empty"));
        }
        if text.len() > MAX_LEN {
            return Err(ScheduleError::new(
                text,
                format!("is longer than {MAX_LEN} bytes"),
            ));
        }
        if text
            .chars()
            .any(|c| c.is_control() && c != ' ' && c != '\t')
        {
            return Err(ScheduleError::new(text, "holds control characters"));
        }
        let lower = text.to_ascii_lowercase();
        let kind = match lower.strip_prefix("every") {
            Some(rest) if rest.starts_with(char::is_whitespace) => {
                Kind::Every(parse_every(text, rest.trim())?)
            }
            _ => Kind::Cron(Box::new(parse_cron(text)?)),
        };
        Ok(Self {
            text: text.to_string(),
            kind,
        })
    }
}

fn parse_every(text: &str, rest: &str) -> Result<Duration, ScheduleError> {
    let digits = rest.chars().take_while(char::is_ascii_digit).count();
    let (n, unit) = rest.split_at(digits);
    let n: u64 = n
        .parse()
        .map_err(|_| ScheduleError::new(text, "needs a number after `every`"))?;
    let secs = match unit.trim() {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        "" => return Err(ScheduleError::new(text, "needs a unit after its number")),
        other => {
            return Err(ScheduleError::new(
                text,
                format!("has the unknown unit `{}`", other.escape_debug()),
            ))
        }
    };
    let d = Duration::from_secs(n.saturating_mul(secs));
    if d < MIN_INTERVAL {
        return Err(ScheduleError::new(text, "is more often than every 10s"));
    }
    if d > MAX_INTERVAL {
        return Err(ScheduleError::new(text, "is longer than 366d"));
    }
    Ok(d)
}

/// How many of a cron expression's next occurrences are checked against
/// [`MIN_INTERVAL`] (only an expression with seconds can be that often).
const CRON_GAP_CHECKS: usize = 64;

fn parse_cron(text: &str) -> Result<croner::Cron, ScheduleError> {
    let fields = text.split_whitespace().count();
    if !(fields == 5 || fields == 6) || text.contains('@') {
        return Err(ScheduleError::new(
            text,
            format!("is neither `every …` nor a cron expression of 5 or 6 fields ({fields} given)"),
        ));
    }
    let cron = croner::parser::CronParser::builder()
        .seconds(croner::parser::Seconds::Optional)
        .year(croner::parser::Year::Disallowed)
        .build()
        .parse(text)
        .map_err(|e| ScheduleError::new(text, format!("is not a valid cron expression ({e})")))?;
    if fields == 6 {
        // Seconds allow every second; refuse what fires more often than
        // MIN_INTERVAL over its next occurrences.
        let start = DateTime::<Utc>::UNIX_EPOCH + TimeDelta::days(20_000);
        let mut times = cron.iter_after(start).take(CRON_GAP_CHECKS);
        if let Some(mut prev) = times.next() {
            for t in times {
                if (t - prev).to_std().unwrap_or_default() < MIN_INTERVAL {
                    return Err(ScheduleError::new(text, "fires more often than every 10s"));
                }
                prev = t;
            }
        }
    }
    if cron.find_next_occurrence(&Utc::now(), false).is_err() {
        return Err(ScheduleError::new(text, "never fires"));
    }
    Ok(cron)
}

impl fmt::Display for Schedule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl fmt::Debug for Schedule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Schedule").field(&self.text).finish()
    }
}

impl PartialEq for Schedule {
    fn eq(&self, other: &Self) -> bool {
        self.text == other.text
    }
}

impl Eq for Schedule {}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> DateTime<Utc> {
        s.parse().unwrap()
    }

    fn next(schedule: &str, now: &str) -> DateTime<Utc> {
        schedule
            .parse::<Schedule>()
            .unwrap()
            .next_after(at(now))
            .unwrap()
    }

    #[test]
    fn every_adds_its_interval_to_now() {
        assert_eq!(
            next("every 15m", "2026-01-01T10:00:07Z"),
            at("2026-01-01T10:15:07Z")
        );
        assert_eq!(
            next("every 1h", "2026-01-01T10:00:00Z"),
            at("2026-01-01T11:00:00Z")
        );
        assert_eq!(
            next("  Every 2d ", "2026-01-01T00:00:00Z"),
            at("2026-01-03T00:00:00Z")
        );
        assert_eq!(
            next("every 10s", "2026-01-01T00:00:00Z"),
            at("2026-01-01T00:00:10Z")
        );
        assert_eq!(
            next("every 30 s", "2026-01-01T00:00:00Z"),
            at("2026-01-01T00:00:30Z")
        );
        assert_eq!(
            "  every 15m ".parse::<Schedule>().unwrap().as_str(),
            "every 15m"
        );
    }

    #[test]
    fn cron_is_in_utc_with_optional_seconds() {
        assert_eq!(
            next("*/15 * * * *", "2026-01-01T10:07:30Z"),
            at("2026-01-01T10:15:00Z")
        );
        // Strictly after: a fire at the occurrence itself moves to the next.
        assert_eq!(
            next("*/15 * * * *", "2026-01-01T10:15:00Z"),
            at("2026-01-01T10:30:00Z")
        );
        assert_eq!(
            next("0 3 * * mon-fri", "2026-01-02T04:00:00Z"), // a Friday
            at("2026-01-05T03:00:00Z")
        );
        assert_eq!(
            next("*/20 * * * * *", "2026-01-01T10:00:05Z"),
            at("2026-01-01T10:00:20Z")
        );
    }

    #[test]
    fn missed_ticks_after_downtime_run_once() {
        // Due at 10:15, fired (after downtime) at 13:02: the next time is
        // from the fire, not 10:30, 10:45, … one after the other.
        assert_eq!(
            next("*/15 * * * *", "2026-01-01T13:02:00Z"),
            at("2026-01-01T13:15:00Z")
        );
        assert_eq!(
            next("every 15m", "2026-01-01T13:02:00Z"),
            at("2026-01-01T13:17:00Z")
        );
    }

    #[test]
    fn bad_schedules_say_what_is_accepted() {
        for bad in [
            "",
            "every",
            "every m",
            "every 15",
            "every 15 minutes",
            "every 5s",
            "every 0m",
            "every 400d",
            "every 99999999999999999999d",
            "* * * *",
            "* * * * * * *",
            "61 * * * *",
            "* * * * * *",
            "*/5 * * * * *",
            "@hourly",
            "0 0 30 2 *",
            "hourly",
            "every 1m\n",
        ] {
            let e = bad.parse::<Schedule>();
            if bad == "every 1m\n" {
                // Trimmed: a trailing newline is whitespace.
                assert!(e.is_ok());
                continue;
            }
            let e = e.expect_err(bad).to_string();
            assert!(e.contains("every <n><s|m|h|d>"), "{bad:?}: {e}");
            assert!(e.contains("cron"), "{bad:?}: {e}");
        }
        assert!("every 1m\u{7}".parse::<Schedule>().is_err());
    }
}
