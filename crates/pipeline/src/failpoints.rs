//! Named failure points for crash-and-resume tests (in the manner of
//! meilisearch's `FailureLocation`). Compiled in only with the `failpoints`
//! feature, which only the test suite enables.
//!
//! `PROJSYNC_FAILPOINT=name` (or `name@N` for its N-th hit, several separated
//! by commas) makes the process print `FAILPOINT <name> reached` on stderr and
//! stop there forever, so a test can SIGKILL it at that exact spot.
//! `name=sleep:MS` instead sleeps MS milliseconds at every hit (a slow
//! worker, to act on it mid-sync). `name=panic` panics at every hit, and
//! `name@N=panic` at the N-th only (a bug in a phase).

#[cfg(feature = "failpoints")]
pub async fn hit(name: &str) {
    use std::collections::HashMap;
    use std::sync::Mutex;
    static HITS: Mutex<Option<HashMap<String, u32>>> = Mutex::new(None);
    let Ok(spec) = std::env::var("PROJSYNC_FAILPOINT") else {
        return;
    };
    let count = {
        let mut hits = HITS.lock().unwrap_or_else(|e| e.into_inner());
        let n = hits
            .get_or_insert_with(HashMap::new)
            .entry(name.to_string())
            .or_default();
        *n += 1;
        *n
    };
    for item in spec.split(',').map(str::trim) {
        let (item, action) = item.split_once('=').unwrap_or((item, "hang"));
        if let Some(ms) = action.strip_prefix("sleep:") {
            if item == name {
                let ms = ms.parse().unwrap_or(100);
                tokio::time::sleep(std::time::Duration::from_millis(ms)).await;
            }
            continue;
        }
        if action == "panic" {
            let (point, nth) = match item.split_once('@') {
                Some((p, n)) => (p, Some(n.parse().unwrap_or(1))),
                None => (item, None),
            };
            if point == name && nth.is_none_or(|n: u32| n == count) {
                eprintln!("FAILPOINT {name} panics");
                panic!("failpoint {name} panicked (hit {count})");
            }
            continue;
        }
        let (point, nth) = match item.split_once('@') {
            Some((p, n)) => (p, n.parse().unwrap_or(1)),
            None => (item, 1),
        };
        if point == name && nth == count {
            eprintln!("FAILPOINT {name} reached");
            std::future::pending::<()>().await;
        }
    }
}

#[cfg(not(feature = "failpoints"))]
#[inline(always)]
pub async fn hit(_name: &str) {}
