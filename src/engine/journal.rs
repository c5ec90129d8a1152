//! The apply journal (issue 6 §3): what cspsync sent to the PSA, so an apply that crashed, was
//! killed or lost a response never sends a create twice.
//!
//! An append-only JSON Lines file, `sync-journal.jsonl` in the data directory
//! ([`ConfigDir::data_dir`]), one object per state change of a write:
//!
//! ```json
//! {"at":"2026-05-01T03:04:05.123Z","key":"cw:77:add:731:2026-05","state":"sending","before":null,"after":"25"}
//! {"at":"2026-05-01T03:04:05.301Z","key":"cw:77:add:731:2026-05","state":"done","id":"9013"}
//! ```
//!
//! - `sending` is written — and flushed to the disk (fsync) — *before* a create leaves, so a
//!   crash after the request reached the PSA leaves a `sending` record: the next apply checks the
//!   PSA before it sends again ([`crate::engine::apply`]).
//! - `done` (with the PSA's id) means the write succeeded: a key whose last state is `done` is
//!   never sent again.
//! - `failed` means the PSA refused the write (nothing was applied): it may be sent again.
//!
//! Flushes are grouped: writers append under a short lock and one `fsync` covers every line
//! written before it, so many customers applying at once do not queue behind each other's disk
//! flushes. A line cut short by a crash (the last one, without its newline) is dropped on open.

use std::collections::HashMap;
use std::fs::File;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

use crate::config::ConfigDir;

/// The file name in the data directory.
pub const FILE: &str = "sync-journal.jsonl";

/// Where a write is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum State {
    /// About to be sent, or sent without an answer recorded.
    Sending,
    /// Succeeded; `id` is the PSA record.
    Done,
    /// Refused by the PSA: nothing was applied.
    Failed,
}

/// One journal line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    pub at: DateTime<Utc>,
    /// The write's stable key ([`crate::domain::sync::Write::key`]).
    pub key: String,
    pub state: State,
    /// The PSA record written or created (with `done`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// Quantity before and after, as planned (with `sending`): how a resumed Autotask
    /// adjustment, which cannot be queried (§6.3), is told applied or not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub before: Option<Decimal>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub after: Option<Decimal>,
    /// Why it failed (with `failed`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl Entry {
    pub fn new(key: &str, state: State) -> Entry {
        Entry {
            at: Utc::now(),
            key: key.to_string(),
            state,
            id: None,
            before: None,
            after: None,
            error: None,
        }
    }

    pub fn with_id(mut self, id: impl Into<String>) -> Entry {
        self.id = Some(id.into());
        self
    }

    pub fn with_quantities(mut self, before: Option<Decimal>, after: Option<Decimal>) -> Entry {
        self.before = before;
        self.after = after;
        self
    }

    pub fn with_error(mut self, error: impl Into<String>) -> Entry {
        self.error = Some(error.into());
        self
    }
}

#[derive(Debug)]
struct Inner {
    file: Option<File>,
    /// The last entry per key.
    last: HashMap<String, Entry>,
    /// Lines appended since open.
    written: u64,
}

/// The journal of one data directory (or, for the demo, kept in memory only).
#[derive(Debug)]
pub struct Journal {
    path: Option<PathBuf>,
    inner: Mutex<Inner>,
    /// A second handle on the file for `fsync`, and the count of lines known on the disk.
    sync: Mutex<(Option<File>, u64)>,
}

impl Journal {
    /// The journal of `dir`'s data directory, created when missing.
    pub fn open(dir: &ConfigDir) -> Result<Journal, String> {
        Journal::open_path(&dir.data_dir().join(FILE))
    }

    /// The journal at `path`, created when missing. A journal line that is not a record (other
    /// than a last line cut short by a crash) is refused with its line number: applying over a
    /// damaged journal could send a write twice.
    pub fn open_path(path: &Path) -> Result<Journal, String> {
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)
                .map_err(|e| format!("cannot create {}: {e}", parent.display()))?;
        }
        let mut opts = std::fs::OpenOptions::new();
        opts.create(true).read(true).append(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            opts.mode(0o600);
        }
        let mut file = opts
            .open(path)
            .map_err(|e| format!("cannot open the sync journal {}: {e}", path.display()))?;
        // One apply at a time per data directory: two processes working from one journal could
        // both send a write neither had recorded yet. The lock lasts as long as this Journal
        // (released by the system even on kill -9).
        match file.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                return Err(format!(
                    "another cspsync is applying a sync from this settings directory (the journal {} is in use): wait for it to finish, then run again",
                    path.display()
                ));
            }
            Err(std::fs::TryLockError::Error(e)) => {
                return Err(format!(
                    "cannot lock the sync journal {}: {e}",
                    path.display()
                ));
            }
        }
        let mut text = String::new();
        file.read_to_string(&mut text)
            .map_err(|e| format!("cannot read the sync journal {}: {e}", path.display()))?;
        let last = parse(&text).map_err(|(line, e)| {
            format!(
                "{} line {line} is not a journal record ({e}); the journal may have been edited or damaged, so cspsync will not apply over it (move it aside only if you are sure no apply was interrupted)",
                path.display()
            )
        })?;
        // A torn last line (a crash mid-write): cut it off, so the next record starts on a
        // line of its own and the fragment never sits between two records.
        if !text.is_empty() && !text.ends_with('\n') {
            let keep = text.rfind('\n').map_or(0, |i| i + 1);
            file.set_len(keep as u64)
                .map_err(|e| format!("cannot repair the sync journal {}: {e}", path.display()))?;
        }
        let sync_handle = file
            .try_clone()
            .map_err(|e| format!("cannot open the sync journal {}: {e}", path.display()))?;
        Ok(Journal {
            path: Some(path.to_path_buf()),
            inner: Mutex::new(Inner {
                file: Some(file),
                last,
                written: 0,
            }),
            sync: Mutex::new((Some(sync_handle), 0)),
        })
    }

    /// A journal that lives in memory only: for the demo, whose simulated world starts afresh
    /// with every run (a journal on disk would call writes done that the new world never saw).
    pub fn memory() -> Journal {
        Journal {
            path: None,
            inner: Mutex::new(Inner {
                file: None,
                last: HashMap::new(),
                written: 0,
            }),
            sync: Mutex::new((None, 0)),
        }
    }

    /// The file, when on disk.
    pub fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The last entry recorded for `key`.
    pub fn last(&self, key: &str) -> Option<Entry> {
        self.lock().last.get(key).cloned()
    }

    /// The last state of `key`.
    pub fn state(&self, key: &str) -> Option<State> {
        self.lock().last.get(key).map(|e| e.state)
    }

    /// Append an entry; with `durable`, return only once it (and every line before it) is on
    /// the disk. Blocking: call from `spawn_blocking` in async code.
    pub fn record(&self, entry: Entry, durable: bool) -> Result<(), String> {
        self.record_many(vec![entry], durable)
    }

    /// Append several entries in one write (a Xero batch's writes), then as [`Self::record`].
    pub fn record_many(&self, entries: Vec<Entry>, durable: bool) -> Result<(), String> {
        if entries.is_empty() {
            return Ok(());
        }
        let mut text = String::new();
        for e in &entries {
            text.push_str(
                &serde_json::to_string(e)
                    .map_err(|e| format!("cannot write the sync journal record: {e}"))?,
            );
            text.push('\n');
        }
        let seq = {
            let mut inner = self.lock();
            if let Some(file) = inner.file.as_mut() {
                // One write of whole lines: with O_APPEND they land at the end in one piece.
                file.write_all(text.as_bytes())
                    .map_err(|e| self.io_error("write", &e))?;
            }
            inner.written += 1;
            let seq = inner.written;
            for e in entries {
                inner.last.insert(e.key.clone(), e);
            }
            seq
        };
        if durable {
            self.flush_through(seq)?;
        }
        Ok(())
    }

    /// Make every line up to `seq` durable; one fsync serves every writer waiting for it.
    fn flush_through(&self, seq: u64) -> Result<(), String> {
        let mut sync = self.sync.lock().unwrap_or_else(|p| p.into_inner());
        if sync.1 >= seq {
            return Ok(());
        }
        let upto = self.lock().written;
        if let Some(f) = sync.0.as_ref() {
            f.sync_data().map_err(|e| self.io_error("flush", &e))?;
        }
        sync.1 = upto;
        Ok(())
    }

    /// Flush everything written so far.
    pub fn flush(&self) -> Result<(), String> {
        let upto = self.lock().written;
        self.flush_through(upto)
    }

    fn io_error(&self, what: &str, e: &std::io::Error) -> String {
        match &self.path {
            Some(p) => format!("cannot {what} the sync journal {}: {e}", p.display()),
            None => format!("cannot {what} the sync journal: {e}"),
        }
    }
}

/// The last entry per key; `Err((line number, error))` for a damaged line.
fn parse(text: &str) -> Result<HashMap<String, Entry>, (usize, String)> {
    let mut last = HashMap::new();
    let torn_tail = !text.is_empty() && !text.ends_with('\n');
    let lines: Vec<&str> = text.split('\n').collect();
    let count = lines.len();
    for (i, line) in lines.into_iter().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        match serde_json::from_str::<Entry>(line) {
            Ok(e) => {
                last.insert(e.key.clone(), e);
            }
            // The last line without its newline: a write cut short by a crash. Its record
            // was never complete, so the write it announced was never sent.
            Err(_) if torn_tail && i + 1 == count => {}
            Err(e) => return Err((i + 1, e.to_string())),
        }
    }
    Ok(last)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn last_state_wins_and_survives_reopen() {
        let t = tempfile::tempdir().unwrap();
        let path = t.path().join("j").join(FILE);
        let j = Journal::open_path(&path).unwrap();
        assert_eq!(j.state("a"), None);
        j.record(
            Entry::new("a", State::Sending).with_quantities(Some(Decimal::from(3)), None),
            true,
        )
        .unwrap();
        j.record(Entry::new("a", State::Done).with_id("77"), false)
            .unwrap();
        j.record(Entry::new("b", State::Sending), true).unwrap();
        j.flush().unwrap();
        drop(j);
        let j = Journal::open_path(&path).unwrap();
        assert_eq!(j.state("a"), Some(State::Done));
        assert_eq!(j.last("a").unwrap().id.as_deref(), Some("77"));
        assert_eq!(j.state("b"), Some(State::Sending));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600);
        }
    }

    #[test]
    fn one_apply_at_a_time_per_journal() {
        let t = tempfile::tempdir().unwrap();
        let path = t.path().join(FILE);
        let first = Journal::open_path(&path).unwrap();
        let e = Journal::open_path(&path).err().unwrap();
        assert!(e.contains("another cspsync is applying"), "{e}");
        drop(first);
        Journal::open_path(&path).unwrap();
    }

    #[test]
    fn a_torn_last_line_is_ignored_and_the_next_record_starts_clean() {
        let t = tempfile::tempdir().unwrap();
        let path = t.path().join(FILE);
        let j = Journal::open_path(&path).unwrap();
        j.record(Entry::new("a", State::Done).with_id("1"), true)
            .unwrap();
        drop(j);
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap();
        f.write_all(b"{\"at\":\"2026-01-01T00:00:00Z\",\"key\":\"b\",\"sta")
            .unwrap();
        drop(f);
        let j = Journal::open_path(&path).unwrap();
        assert_eq!(j.state("a"), Some(State::Done));
        assert_eq!(j.state("b"), None);
        j.record(Entry::new("c", State::Sending), true).unwrap();
        drop(j);
        let j = Journal::open_path(&path).unwrap();
        assert_eq!(j.state("c"), Some(State::Sending));
    }

    #[test]
    fn a_damaged_middle_line_is_refused_with_its_number() {
        let t = tempfile::tempdir().unwrap();
        let path = t.path().join(FILE);
        std::fs::write(
            &path,
            "not json\n{\"at\":\"2026-01-01T00:00:00Z\",\"key\":\"b\",\"state\":\"done\"}\n",
        )
        .unwrap();
        let e = Journal::open_path(&path).unwrap_err();
        assert!(e.contains("line 1"), "{e}");
    }

    #[test]
    fn memory_journal_remembers_without_a_file() {
        let j = Journal::memory();
        j.record(Entry::new("k", State::Failed).with_error("no"), true)
            .unwrap();
        assert_eq!(j.state("k"), Some(State::Failed));
        assert!(j.path().is_none());
    }
}
