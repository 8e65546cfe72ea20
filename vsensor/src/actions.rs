//! Response actions on the collector: the book of actions operators
//! created (kept in `DATA_DIR/actions.json`, so a restart keeps them), the
//! set in force that every connected sensor receives (signed, see
//! `action_key`), and the latest report of each sensor per action. No I/O
//! but the file; the clock is passed in.

use ossensor_shared::actions::signed::ActionSet;
use ossensor_shared::actions::{Action, ActionStats, Target};
use ossensor_shared::control::{ActionView, SensorReport};
use ossensor_shared::timefmt;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Longest action: seven days (a longer containment is a new action,
/// ordered again by an operator).
pub const MAX_SECONDS: u64 = 7 * 24 * 3600;
/// Actions in force at once, at most: each sensor enforces every one of
/// them, and a worker refuses a set of more than
/// `signed::MAX_ACTIONS`.
pub const MAX_IN_FORCE: usize = 256;
/// Actions kept in the book (finished ones are dropped oldest first).
const MAX_KEPT: usize = 10_000;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Entry {
    id: u64,
    target: Target,
    created_ns: u64,
    until_ns: u64,
    cancelled_ns: Option<u64>,
    reports: BTreeMap<String, Report>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
struct Report {
    at_ns: u64,
    stats: ActionStats,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct Saved {
    next_id: u64,
    /// The set's version (absent in books written before sets were signed).
    #[serde(default)]
    version: u64,
    actions: Vec<Entry>,
}

pub struct Book {
    path: PathBuf,
    next_id: u64,
    /// Grows with every change of the set in force; sensors refuse a set
    /// older than one they took. At least the clock at the change, so a
    /// book that was lost and started again still outranks old sets.
    version: u64,
    entries: BTreeMap<u64, Entry>,
}

impl Book {
    /// Reads `DATA_DIR/actions.json` (absent: an empty book).
    pub fn open(data_dir: &Path) -> Result<Book, String> {
        let path = data_dir.join("actions.json");
        let saved: Saved = match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| format!("{}: {e}", path.display()))?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Saved::default(),
            Err(e) => return Err(format!("{}: {e}", path.display())),
        };
        let entries: BTreeMap<u64, Entry> = saved.actions.into_iter().map(|e| (e.id, e)).collect();
        let next_id = saved.next_id.max(entries.keys().next_back().map_or(1, |id| id + 1));
        Ok(Book { path, next_id, version: saved.version, entries })
    }

    fn changed(&mut self, now_ns: u64) {
        self.version = (self.version + 1).max(now_ns);
    }

    /// A new action for `seconds` from `now_ns`; returns its id.
    pub fn create(&mut self, now_ns: u64, target: Target, seconds: u64) -> Result<u64, String> {
        if seconds == 0 || seconds > MAX_SECONDS {
            return Err(format!("for_seconds must be from 1 to {MAX_SECONDS} (7 days), not {seconds}"));
        }
        let in_force = self.in_force(now_ns).len();
        if in_force >= MAX_IN_FORCE {
            return Err(format!("{in_force} actions are in force, the most there may be: cancel one first"));
        }
        let id = self.next_id;
        self.next_id += 1;
        let until_ns = now_ns.saturating_add(seconds * 1_000_000_000);
        self.entries.insert(id, Entry { id, target, created_ns: now_ns, until_ns, cancelled_ns: None, reports: BTreeMap::new() });
        self.trim(now_ns);
        self.changed(now_ns);
        Ok(id)
    }

    /// Ends an action now. None: no such action; Some(false): already over.
    pub fn cancel(&mut self, now_ns: u64, id: u64) -> Option<bool> {
        let e = self.entries.get_mut(&id)?;
        if e.cancelled_ns.is_some() || e.until_ns <= now_ns {
            return Some(false);
        }
        e.cancelled_ns = Some(now_ns);
        self.changed(now_ns);
        Some(true)
    }

    /// What sensors must enforce now.
    pub fn in_force(&self, now_ns: u64) -> Vec<Action> {
        self.entries
            .values()
            .filter(|e| e.cancelled_ns.is_none() && e.until_ns > now_ns)
            .map(|e| Action { id: e.id, target: e.target, until_ns: e.until_ns })
            .collect()
    }

    /// The set to sign now.
    pub fn action_set(&self, now_ns: u64) -> ActionSet {
        ActionSet { version: self.version, issued_ns: now_ns, actions: self.in_force(now_ns) }
    }

    /// When the set in force changes next by itself (an expiry).
    pub fn next_expiry(&self, now_ns: u64) -> Option<u64> {
        self.entries.values().filter(|e| e.cancelled_ns.is_none() && e.until_ns > now_ns).map(|e| e.until_ns).min()
    }

    /// Keeps a sensor's latest counters for the actions it knows; ids the
    /// book does not hold are ignored. Returns how many were recorded.
    pub fn report(&mut self, now_ns: u64, sensor: &str, reports: &[(u64, ActionStats)]) -> usize {
        let mut n = 0;
        for (id, stats) in reports {
            if let Some(e) = self.entries.get_mut(id) {
                e.reports.insert(sensor.to_string(), Report { at_ns: now_ns, stats: *stats });
                n += 1;
            }
        }
        n
    }

    pub fn view(&self, now_ns: u64) -> Vec<ActionView> {
        self.entries
            .values()
            .map(|e| ActionView {
                id: e.id,
                target: e.target,
                created: timefmt::rfc3339_millis(e.created_ns),
                until: timefmt::rfc3339_millis(e.cancelled_ns.unwrap_or(e.until_ns)),
                state: if e.cancelled_ns.is_some() {
                    "cancelled"
                } else if e.until_ns <= now_ns {
                    "expired"
                } else {
                    "active"
                }
                .to_string(),
                reports: e.reports.iter().map(|(s, r)| (s.clone(), SensorReport { at: timefmt::rfc3339_millis(r.at_ns), stats: r.stats })).collect(),
            })
            .collect()
    }

    /// Writes the book whole ([`crate::atomic_file`], mode 0640).
    pub fn save(&self) -> std::io::Result<()> {
        let saved = Saved { next_id: self.next_id, version: self.version, actions: self.entries.values().cloned().collect() };
        crate::atomic_file::write_atomic(&self.path, &serde_json::to_vec_pretty(&saved).expect("serialisable"), 0o640)
    }

    /// Drops the oldest finished actions beyond MAX_KEPT.
    fn trim(&mut self, now_ns: u64) {
        while self.entries.len() > MAX_KEPT {
            let oldest_done = self.entries.values().find(|e| e.cancelled_ns.is_some() || e.until_ns <= now_ns).map(|e| e.id);
            match oldest_done {
                Some(id) => {
                    self.entries.remove(&id);
                }
                None => break,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn host() -> Target {
        Target::Quarantine { host: "198.18.5.5".parse().unwrap() }
    }

    #[test]
    fn actions_expire_cancel_and_survive_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let mut b = Book::open(dir.path()).unwrap();
        let s = 1_000_000_000;
        let a = b.create(0, host(), 10).unwrap();
        let c = b.create(0, host(), 20).unwrap();
        assert_ne!(a, c);
        assert_eq!(b.in_force(s).len(), 2);
        assert_eq!(b.in_force(s)[0].until_ns, 10 * s);
        let v1 = b.action_set(s).version;
        assert!(v1 > 0);
        assert_eq!(b.next_expiry(s), Some(10 * s));
        assert_eq!(b.cancel(2 * s, c), Some(true));
        let v2 = b.action_set(2 * s).version;
        assert!(v2 > v1, "a cancellation makes a newer set");
        assert_eq!(b.cancel(2 * s, c), Some(false));
        assert_eq!(b.action_set(2 * s).version, v2, "nothing changed");
        assert_eq!(b.cancel(2 * s, 99), None);
        assert_eq!(b.report(3 * s, "node1", &[(a, ActionStats { resets_sent: 2, ..Default::default() }), (99, ActionStats::default())]), 1);
        b.save().unwrap();

        let b = Book::open(dir.path()).unwrap();
        assert_eq!(b.action_set(3 * s).version, v2, "the version survives a restart");
        let v = b.view(11 * s);
        assert_eq!((v[0].state.as_str(), v[1].state.as_str()), ("expired", "cancelled"));
        assert_eq!(v[0].reports["node1"].stats.resets_sent, 2);
        assert!(b.in_force(11 * s).is_empty());
        let mut b = b;
        assert!(b.create(0, host(), 1).unwrap() > c, "ids are never reused");
    }

    #[test]
    fn durations_and_the_number_in_force_are_bounded() {
        let dir = tempfile::tempdir().unwrap();
        let mut b = Book::open(dir.path()).unwrap();
        assert!(b.create(0, host(), 0).unwrap_err().contains("for_seconds must be from 1"));
        assert!(b.create(0, host(), MAX_SECONDS + 1).is_err());
        assert!(b.create(0, host(), MAX_SECONDS).is_ok());
        for _ in 1..MAX_IN_FORCE {
            b.create(0, host(), 10).unwrap();
        }
        assert!(b.create(0, host(), 10).unwrap_err().contains("in force"));
        // Once some are over, there is room again.
        assert!(b.create(11_000_000_000, host(), 10).is_ok());
    }

    #[test]
    fn the_version_outranks_a_lost_book() {
        let dir = tempfile::tempdir().unwrap();
        let mut b = Book::open(dir.path()).unwrap();
        b.create(1_000, host(), 10).unwrap();
        let old = b.action_set(1_000).version;
        std::fs::remove_file(dir.path().join("actions.json")).ok();
        let mut fresh = Book::open(dir.path()).unwrap();
        fresh.create(5_000, host(), 10).unwrap();
        assert!(fresh.action_set(5_000).version > old);
    }

    #[test]
    fn a_damaged_file_is_an_error_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("actions.json"), b"{not json").unwrap();
        assert!(Book::open(dir.path()).err().unwrap().contains("actions.json"));
    }
}
