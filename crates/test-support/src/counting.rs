//! A `SourceFactory` that opens local repositories and counts what is read.

use async_trait::async_trait;
use projsync_domain::source::{RepositorySpec, SourceFactory};
use projsync_domain::{Blob, Branch, Source, SourceError, TreeDiff, TreeEntry};
use projsync_sources::DefaultSources;
use std::sync::{Arc, Mutex};

/// Opens local repositories and records every blob read through them. It
/// can also slow blob reads down (to hit a sync mid-import) and make the
/// next reads fail as a flaky network would.
#[derive(Clone)]
pub struct CountingSources {
    /// The factory that really opens sources (local and GitHub by default).
    pub inner: Arc<dyn SourceFactory>,
    pub blobs_read: Arc<Mutex<Vec<String>>>,
    pub trees_read: Arc<Mutex<u64>>,
    pub archives_read: Arc<Mutex<u64>>,
    /// Added before every `read_blobs`.
    pub read_delay: Arc<Mutex<std::time::Duration>>,
    /// How many of the next `read_blobs` calls fail as `unavailable`.
    pub failing_reads: Arc<std::sync::atomic::AtomicU32>,
}

impl Default for CountingSources {
    fn default() -> Self {
        Self::wrapping(Arc::new(
            DefaultSources::default().with_local_roots([std::env::temp_dir()]),
        ))
    }
}

impl CountingSources {
    pub fn wrapping(inner: Arc<dyn SourceFactory>) -> Self {
        Self {
            inner,
            blobs_read: Default::default(),
            trees_read: Default::default(),
            archives_read: Default::default(),
            read_delay: Default::default(),
            failing_reads: Default::default(),
        }
    }

    pub fn set_read_delay(&self, delay: std::time::Duration) {
        *self.read_delay.lock().unwrap() = delay;
    }

    pub fn fail_next_reads(&self, n: u32) {
        self.failing_reads
            .store(n, std::sync::atomic::Ordering::SeqCst);
    }

    /// Blob SHAs read since the last call.
    pub fn take_reads(&self) -> Vec<String> {
        std::mem::take(&mut *self.blobs_read.lock().unwrap())
    }
}

struct Counting {
    inner: Arc<dyn Source>,
    counts: CountingSources,
}

#[async_trait]
impl Source for Counting {
    fn describe(&self) -> String {
        self.inner.describe()
    }
    fn remote(&self) -> Option<projsync_domain::source::RemoteIdentity> {
        self.inner.remote()
    }
    async fn list_branches(&self) -> Result<Vec<Branch>, SourceError> {
        self.inner.list_branches().await
    }
    async fn resolve_branch(&self, branch: &str) -> Result<String, SourceError> {
        self.inner.resolve_branch(branch).await
    }
    async fn read_tree(&self, commit: &str) -> Result<Vec<TreeEntry>, SourceError> {
        *self.counts.trees_read.lock().unwrap() += 1;
        self.inner.read_tree(commit).await
    }
    async fn read_tree_since(
        &self,
        commit: &str,
        base_commit: &str,
        base: &[TreeEntry],
    ) -> Result<Vec<TreeEntry>, SourceError> {
        *self.counts.trees_read.lock().unwrap() += 1;
        self.inner.read_tree_since(commit, base_commit, base).await
    }

    /// Counted as a tree read: it is how a sync reads its tree when it can.
    async fn diff(&self, from: &str, to: &str) -> Result<Option<TreeDiff>, SourceError> {
        *self.counts.trees_read.lock().unwrap() += 1;
        self.inner.diff(from, to).await
    }

    async fn read_archive(
        &self,
        commit: &str,
        wanted: &std::collections::HashSet<String>,
    ) -> Result<Option<Vec<Blob>>, SourceError> {
        *self.counts.archives_read.lock().unwrap() += 1;
        self.inner.read_archive(commit, wanted).await
    }

    async fn read_blobs(&self, shas: &[String]) -> Result<Vec<Blob>, SourceError> {
        let delay = *self.counts.read_delay.lock().unwrap();
        if !delay.is_zero() {
            tokio::time::sleep(delay).await;
        }
        let failing = &self.counts.failing_reads;
        if failing
            .fetch_update(
                std::sync::atomic::Ordering::SeqCst,
                std::sync::atomic::Ordering::SeqCst,
                |n| n.checked_sub(1),
            )
            .is_ok()
        {
            return Err(SourceError::unavailable(
                "connection reset by peer (injected by the test)",
            ));
        }
        self.counts
            .blobs_read
            .lock()
            .unwrap()
            .extend(shas.iter().cloned());
        self.inner.read_blobs(shas).await
    }
}

#[async_trait]
impl SourceFactory for CountingSources {
    async fn open(&self, repo: &RepositorySpec<'_>) -> Result<Arc<dyn Source>, SourceError> {
        Ok(Arc::new(Counting {
            inner: self.inner.open(repo).await?,
            counts: self.clone(),
        }))
    }
}
