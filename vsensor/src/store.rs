//! Where chunks end up: one folder per sensor, rotating pcapng files, the
//! per-(sensor, epoch) sequence that makes retries idempotent, and the
//! retention that keeps the total bounded.
//!
//! On-disk layout (documented in docs/collector.md):
//! ```text
//! DATA_DIR/sensors/<sensor_id>/<YYYYMMDDTHHMMSSZ>-<epoch>-<n>.pcapng
//! DATA_DIR/sensors/<sensor_id>/state.json   {"epochs":{"<epoch>":<last_seq>}}
//! ```
//! A file is a concatenation of complete pcapng sections, exactly the bytes
//! of the chunks in sequence order of arrival; bytes once written are never
//! rewritten. `n` counts files per sensor so names never collide.
//!
//! The decisions (when to close a file, which files retention deletes, how
//! much of a torn file is whole) are pure functions at the top; the
//! filesystem half below applies them. Ordering guarantee for a stored chunk:
//! file data fsynced, then state.json written (temp + rename) and fsynced,
//! then the 200 answer. A crash in between can only make a retry store a
//! chunk twice, never lose an acknowledged one.

use crate::atomic_file::write_atomic;
use ossensor_host::log;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::fs::{File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex as StdMutex};

/// How many epochs' sequence numbers a sensor's state remembers.
const EPOCHS_KEPT: usize = 16;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub rotate_bytes: u64,
    pub rotate_seconds: u64,
    pub retention_bytes: u64,
}

// ---------------------------------------------------------------------------
// Pure policy
// ---------------------------------------------------------------------------

/// Why a file is closed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloseReason {
    Size,
    Age,
    NewEpoch,
    Shutdown,
}

impl CloseReason {
    pub fn as_str(self) -> &'static str {
        match self {
            CloseReason::Size => "size limit",
            CloseReason::Age => "age limit",
            CloseReason::NewEpoch => "new epoch",
            CloseReason::Shutdown => "shutdown",
        }
    }
}

/// Whether an open file of `size` bytes opened at `opened_ns` must be closed
/// at `now_ns`.
pub fn rotation_due(size: u64, opened_ns: u64, now_ns: u64, limits: &Limits) -> Option<CloseReason> {
    if size >= limits.rotate_bytes {
        Some(CloseReason::Size)
    } else if now_ns.saturating_sub(opened_ns) >= limits.rotate_seconds.saturating_mul(1_000_000_000) {
        Some(CloseReason::Age)
    } else {
        None
    }
}

/// A stored file as retention sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileEntry {
    pub sensor: String,
    pub name: String,
    pub size: u64,
    /// Open files count towards the total but are never deleted.
    pub open: bool,
}

/// The order of age: the time in the name, then the file counter, then the
/// sensor (names that do not parse sort by name, first).
fn age_key(f: &FileEntry) -> (String, u64, String) {
    match parse_file_name(&f.name) {
        Some(n) => (n.time, n.n, f.sensor.clone()),
        None => (String::new(), 0, f.name.clone()),
    }
}

/// Indices of the files to delete, oldest first, so that the total is at
/// most `limit` (or only open files are left).
pub fn retention_plan(files: &[FileEntry], limit: u64) -> Vec<usize> {
    let mut total: u64 = files.iter().map(|f| f.size).sum();
    let mut order: Vec<usize> = (0..files.len()).filter(|&i| !files[i].open).collect();
    order.sort_by_key(|&i| age_key(&files[i]));
    let mut plan = Vec::new();
    for i in order {
        if total <= limit {
            break;
        }
        total -= files[i].size;
        plan.push(i);
    }
    plan
}

/// The parts of a stored file's name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileName {
    pub time: String,
    pub epoch: u64,
    pub n: u64,
}

pub fn file_name(now_ns: u64, epoch: u64, n: u64) -> String {
    format!("{}-{epoch}-{n}.pcapng", ossensor_shared::timefmt::compact(now_ns))
}

pub fn parse_file_name(name: &str) -> Option<FileName> {
    let stem = name.strip_suffix(".pcapng")?;
    let mut parts = stem.splitn(3, '-');
    let time = parts.next()?;
    let epoch = parts.next()?.parse().ok()?;
    let n = parts.next()?.parse().ok()?;
    if time.len() != 16 || !time.ends_with('Z') || time.as_bytes()[8] != b'T' {
        return None;
    }
    Some(FileName { time: time.to_string(), epoch, n })
}

/// The length of the longest prefix of a pcapng stream made of whole blocks
/// (each block's leading and trailing lengths agree and fit). A collector
/// killed mid-write leaves a torn last block; truncating to this length
/// makes the file readable again. Reads only block headers and trailers.
pub fn complete_prefix_len<R: Read + Seek>(r: &mut R, len: u64) -> io::Result<u64> {
    let mut offset = 0u64;
    loop {
        if len - offset < 12 {
            return Ok(offset);
        }
        let mut head = [0u8; 8];
        r.seek(SeekFrom::Start(offset))?;
        r.read_exact(&mut head)?;
        let total = u32::from_le_bytes([head[4], head[5], head[6], head[7]]) as u64;
        if total < 12 || total & 3 != 0 || total > ossensor_shared::pcapng::MAX_BLOCK_LEN as u64 || total > len - offset {
            return Ok(offset);
        }
        let mut tail = [0u8; 4];
        r.seek(SeekFrom::Start(offset + total - 4))?;
        r.read_exact(&mut tail)?;
        if u32::from_le_bytes(tail) as u64 != total {
            return Ok(offset);
        }
        offset += total;
    }
}

// ---------------------------------------------------------------------------
// Filesystem
// ---------------------------------------------------------------------------

/// Per-sensor sequence state, persisted in state.json.
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SensorState {
    /// Epoch → highest sequence stored.
    pub epochs: BTreeMap<u64, u64>,
}

/// Counters for the periodic statistics line.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Stats {
    pub chunks: u64,
    pub packets: u64,
    pub bytes: u64,
    pub duplicates: u64,
}

struct OpenFile {
    file: File,
    path: PathBuf,
    size: u64,
    opened_ns: u64,
    epoch: u64,
}

/// What happened to a chunk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AppendOutcome {
    /// Written and synced; `closed` when a file was closed on the way
    /// (retention should run).
    Stored { path: PathBuf, closed: bool },
    /// Already stored (seq at or below the epoch's last); nothing written.
    Duplicate,
}

/// One sensor's files and state. Guarded by a tokio mutex per sensor so
/// appends never interleave.
pub struct SensorFiles {
    id: String,
    dir: PathBuf,
    current: Option<OpenFile>,
    next_n: u64,
    state: SensorState,
    pub interval: Stats,
    pub total: Stats,
    open_paths: Arc<StdMutex<HashSet<PathBuf>>>,
}

impl SensorFiles {
    pub fn last_seq(&self, epoch: u64) -> Option<u64> {
        self.state.epochs.get(&epoch).copied()
    }

    pub fn id(&self) -> &str {
        &self.id
    }

    /// Appends one checked chunk (complete pcapng sections) unless it is a
    /// retry. Blocking: call from a blocking thread.
    pub fn append(&mut self, epoch: u64, seq: u64, raw: &[u8], packets: u64, now_ns: u64, limits: &Limits) -> io::Result<AppendOutcome> {
        if self.last_seq(epoch).is_some_and(|last| seq <= last) {
            self.interval.duplicates += 1;
            self.total.duplicates += 1;
            return Ok(AppendOutcome::Duplicate);
        }
        let mut closed = false;
        if let Some(cur) = &self.current {
            let reason = if cur.epoch != epoch { Some(CloseReason::NewEpoch) } else { rotation_due(cur.size, cur.opened_ns, now_ns, limits) };
            if let Some(reason) = reason {
                self.close(reason)?;
                closed = true;
            }
        }
        if self.current.is_none() {
            self.open_new(epoch, now_ns)?;
        }
        let cur = self.current.as_mut().expect("opened above");
        if let Err(e) = cur.file.write_all(raw).and_then(|_| cur.file.sync_data()) {
            // Never leave a torn chunk behind a later one: cut back to the
            // last acknowledged byte, and start a new file next time.
            let _ = cur.file.set_len(cur.size);
            let _ = cur.file.seek(SeekFrom::Start(cur.size));
            let _ = self.close(CloseReason::Shutdown);
            return Err(e);
        }
        cur.size += raw.len() as u64;
        let path = cur.path.clone();
        let size = cur.size;

        self.state.epochs.insert(epoch, seq);
        while self.state.epochs.len() > EPOCHS_KEPT {
            let oldest = *self.state.epochs.keys().next().expect("non-empty");
            self.state.epochs.remove(&oldest);
        }
        let state = serde_json::to_vec_pretty(&self.state).map_err(io::Error::other)?;
        write_atomic(&self.dir.join("state.json"), &state, 0o640)?;

        for s in [&mut self.interval, &mut self.total] {
            s.chunks += 1;
            s.packets += packets;
            s.bytes += raw.len() as u64;
        }
        if size >= limits.rotate_bytes {
            self.close(CloseReason::Size)?;
            closed = true;
        }
        Ok(AppendOutcome::Stored { path, closed })
    }

    fn open_new(&mut self, epoch: u64, now_ns: u64) -> io::Result<()> {
        std::fs::create_dir_all(&self.dir)?;
        loop {
            let path = self.dir.join(file_name(now_ns, epoch, self.next_n));
            self.next_n += 1;
            match OpenOptions::new().write(true).create_new(true).mode(0o640).open(&path) {
                Ok(file) => {
                    sync_dir(&self.dir);
                    log!(log::STATS, "sensor {}: opened {}", self.id, path.display());
                    self.open_paths.lock().unwrap_or_else(|e| e.into_inner()).insert(path.clone());
                    self.current = Some(OpenFile { file, path, size: 0, opened_ns: now_ns, epoch });
                    return Ok(());
                }
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(e),
            }
        }
    }

    /// Closes the current file (synced), if any. Returns whether one was open.
    pub fn close(&mut self, reason: CloseReason) -> io::Result<bool> {
        let Some(cur) = self.current.take() else { return Ok(false) };
        self.open_paths.lock().unwrap_or_else(|e| e.into_inner()).remove(&cur.path);
        let synced = cur.file.sync_all();
        log!(log::STATS, "sensor {}: closed {} ({} bytes, {})", self.id, cur.path.display(), cur.size, reason.as_str());
        synced.map(|_| true)
    }

    /// Closes the current file if it is too old or too big.
    pub fn close_if_due(&mut self, now_ns: u64, limits: &Limits) -> io::Result<bool> {
        let due = self.current.as_ref().and_then(|c| rotation_due(c.size, c.opened_ns, now_ns, limits));
        match due {
            Some(reason) => self.close(reason),
            None => Ok(false),
        }
    }
}

fn sync_dir(dir: &Path) {
    if let Ok(d) = File::open(dir) {
        let _ = d.sync_all();
    }
}

/// All sensors' files under `DATA_DIR/sensors`.
pub struct Store {
    root: PathBuf,
    pub limits: Limits,
    sensors: StdMutex<HashMap<String, Arc<tokio::sync::Mutex<SensorFiles>>>>,
    open_paths: Arc<StdMutex<HashSet<PathBuf>>>,
    retention: StdMutex<()>,
}

impl Store {
    /// Opens the store: creates the folder, repairs each sensor's newest
    /// file if it ends in a torn block, loads every sensor's state and runs
    /// retention once. Blocking.
    pub fn open(data_dir: &Path, limits: Limits) -> io::Result<Store> {
        let root = data_dir.join("sensors");
        std::fs::create_dir_all(&root)?;
        let store =
            Store { root, limits, sensors: StdMutex::new(HashMap::new()), open_paths: Arc::new(StdMutex::new(HashSet::new())), retention: StdMutex::new(()) };
        for entry in std::fs::read_dir(&store.root)? {
            let entry = entry?;
            let Some(id) = entry.file_name().to_str().map(str::to_string) else { continue };
            if !entry.file_type()?.is_dir() || !ossensor_shared::control::valid_sensor_id(&id) {
                continue;
            }
            let files = store.load_sensor(&id)?;
            store.sensors.lock().unwrap_or_else(|e| e.into_inner()).insert(id, Arc::new(tokio::sync::Mutex::new(files)));
        }
        store.enforce_retention()?;
        Ok(store)
    }

    /// Reads a sensor's folder: state, next file number, and repairs the
    /// newest file's tail.
    fn load_sensor(&self, id: &str) -> io::Result<SensorFiles> {
        let dir = self.root.join(id);
        let state = match std::fs::read(dir.join("state.json")) {
            Ok(b) => {
                serde_json::from_slice(&b).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, format!("{}: {e}", dir.join("state.json").display())))?
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => SensorState::default(),
            Err(e) => return Err(e),
        };
        let mut next_n = 0;
        let mut newest: Option<(FileName, PathBuf)> = None;
        if dir.is_dir() {
            for entry in std::fs::read_dir(&dir)? {
                let entry = entry?;
                let name = entry.file_name().to_string_lossy().into_owned();
                if let Some(f) = parse_file_name(&name) {
                    next_n = next_n.max(f.n + 1);
                    if newest.as_ref().is_none_or(|(n, _)| (&f.time, f.n) > (&n.time, n.n)) {
                        newest = Some((f, entry.path()));
                    }
                }
            }
        }
        if let Some((_, path)) = newest {
            repair_tail(&path)?;
        }
        Ok(SensorFiles {
            id: id.to_string(),
            dir,
            current: None,
            next_n,
            state,
            interval: Stats::default(),
            total: Stats::default(),
            open_paths: self.open_paths.clone(),
        })
    }

    /// The sensor's files, loading them on first use. Blocking on first use
    /// only (a folder read).
    pub fn sensor(&self, id: &str) -> io::Result<Arc<tokio::sync::Mutex<SensorFiles>>> {
        if let Some(s) = self.sensors.lock().unwrap_or_else(|e| e.into_inner()).get(id) {
            return Ok(s.clone());
        }
        let files = self.load_sensor(id)?;
        let mut map = self.sensors.lock().unwrap_or_else(|e| e.into_inner());
        Ok(map.entry(id.to_string()).or_insert_with(|| Arc::new(tokio::sync::Mutex::new(files))).clone())
    }

    pub fn all_sensors(&self) -> Vec<Arc<tokio::sync::Mutex<SensorFiles>>> {
        let map = self.sensors.lock().unwrap_or_else(|e| e.into_inner());
        let mut v: Vec<_> = map.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
        v.sort_by(|a, b| a.0.cmp(&b.0));
        v.into_iter().map(|(_, v)| v).collect()
    }

    /// Every stored file, with whether it is open.
    pub fn scan(&self) -> io::Result<Vec<(PathBuf, FileEntry)>> {
        let open = self.open_paths.lock().unwrap_or_else(|e| e.into_inner()).clone();
        let mut out = Vec::new();
        for sensor in std::fs::read_dir(&self.root)? {
            let sensor = sensor?;
            if !sensor.file_type()?.is_dir() {
                continue;
            }
            let sensor_name = sensor.file_name().to_string_lossy().into_owned();
            for f in std::fs::read_dir(sensor.path())? {
                let f = f?;
                let name = f.file_name().to_string_lossy().into_owned();
                if parse_file_name(&name).is_none() {
                    continue;
                }
                let Ok(meta) = f.metadata() else { continue };
                let path = f.path();
                let is_open = open.contains(&path);
                out.push((path, FileEntry { sensor: sensor_name.clone(), name, size: meta.len(), open: is_open }));
            }
        }
        Ok(out)
    }

    /// Deletes the oldest closed files until the total is within the
    /// retention limit. Blocking. Returns how many files were deleted.
    pub fn enforce_retention(&self) -> io::Result<usize> {
        let _one_at_a_time = self.retention.lock().unwrap_or_else(|e| e.into_inner());
        let files = self.scan()?;
        let entries: Vec<FileEntry> = files.iter().map(|(_, e)| e.clone()).collect();
        let plan = retention_plan(&entries, self.limits.retention_bytes);
        let mut deleted = 0;
        for i in plan {
            let (path, e) = &files[i];
            match std::fs::remove_file(path) {
                Ok(()) => {
                    deleted += 1;
                    log!(log::STATS, "retention: deleted {} ({} bytes; limit {} bytes)", path.display(), e.size, self.limits.retention_bytes);
                }
                Err(err) if err.kind() == io::ErrorKind::NotFound => {}
                Err(err) => log!(log::BASIC, "retention: cannot delete {}: {err}", path.display()),
            }
        }
        Ok(deleted)
    }
}

/// Truncates a file back to its last whole block. Returns the bytes cut.
pub fn repair_tail(path: &Path) -> io::Result<u64> {
    let mut f = OpenOptions::new().read(true).write(true).open(path)?;
    let len = f.metadata()?.len();
    let keep = complete_prefix_len(&mut f, len)?;
    if keep == len {
        return Ok(0);
    }
    if keep == 0 {
        drop(f);
        std::fs::remove_file(path)?;
        log!(log::BASIC, "repair: {} held no whole pcapng block ({len} bytes); removed it", path.display());
    } else {
        f.set_len(keep)?;
        f.sync_all()?;
        log!(log::BASIC, "repair: {} ended in a torn block (collector stopped mid-write); truncated from {len} to {keep} bytes", path.display());
    }
    Ok(len - keep)
}

#[cfg(test)]
mod tests {
    use super::*;
    use ossensor_shared::pcapng::{check_sections, Direction, SectionWriter};
    use std::io::Cursor;

    const LIMITS: Limits = Limits { rotate_bytes: 1000, rotate_seconds: 60, retention_bytes: 10_000 };
    const S: u64 = 1_000_000_000;

    fn section(packets: usize) -> Vec<u8> {
        let mut w = SectionWriter::new();
        w.begin("test");
        let i = w.add_interface("eth0", 1, 65535);
        for k in 0..packets {
            w.add_packet(i, k as u64 * 1000, 60, &[k as u8; 60], Direction::Outbound);
        }
        w.bytes().to_vec()
    }

    #[test]
    fn rotation_policy() {
        assert_eq!(rotation_due(999, 0, 59 * S, &LIMITS), None);
        assert_eq!(rotation_due(1000, 0, 0, &LIMITS), Some(CloseReason::Size));
        assert_eq!(rotation_due(10, 0, 60 * S, &LIMITS), Some(CloseReason::Age));
        // A clock that steps back never panics and never rotates.
        assert_eq!(rotation_due(10, 100 * S, 0, &LIMITS), None);
    }

    fn entry(sensor: &str, time: &str, n: u64, size: u64, open: bool) -> FileEntry {
        FileEntry { sensor: sensor.into(), name: format!("{time}-1-{n}.pcapng"), size, open }
    }

    #[test]
    fn retention_deletes_oldest_closed_first_across_sensors() {
        let files = vec![
            entry("b", "20260101T000200Z", 0, 400, false),
            entry("a", "20260101T000100Z", 0, 400, false),
            entry("a", "20260101T000300Z", 1, 400, false),
            entry("b", "20260101T000000Z", 1, 400, true), // open: oldest but kept
        ];
        // 1600 total, limit 1000: two closed files go, the two oldest.
        assert_eq!(retention_plan(&files, 1000), vec![1, 0]);
        assert_eq!(retention_plan(&files, 1600), Vec::<usize>::new());
        // Only the open file may remain even above the limit.
        assert_eq!(retention_plan(&files, 0), vec![1, 0, 2]);
        // Same second: the file counter decides.
        let same = vec![entry("a", "20260101T000000Z", 3, 10, false), entry("a", "20260101T000000Z", 2, 10, false)];
        assert_eq!(retention_plan(&same, 10), vec![1]);
    }

    #[test]
    fn file_names_round_trip() {
        let name = file_name(1_795_826_490 * S, 42, 7);
        assert_eq!(name, "20261128T004130Z-42-7.pcapng");
        assert_eq!(parse_file_name(&name), Some(FileName { time: "20261128T004130Z".into(), epoch: 42, n: 7 }));
        assert_eq!(parse_file_name("notes.txt"), None);
        assert_eq!(parse_file_name("x-1-2.pcapng"), None);
    }

    #[test]
    fn partial_tail_is_found_at_every_cut() {
        let a = section(3);
        let b = section(5);
        let mut both = a.clone();
        both.extend_from_slice(&b);
        // Block boundaries of the concatenation.
        let mut bounds = vec![0u64];
        let mut off = 0usize;
        while off < both.len() {
            off += u32::from_le_bytes(both[off + 4..off + 8].try_into().unwrap()) as usize;
            bounds.push(off as u64);
        }
        for cut in 0..=both.len() {
            let mut c = Cursor::new(&both[..cut]);
            let keep = complete_prefix_len(&mut c, cut as u64).unwrap();
            let expect = *bounds.iter().filter(|&&b| b <= cut as u64).max().unwrap();
            assert_eq!(keep, expect, "cut at {cut}");
            if keep > 0 {
                check_sections(&both[..keep as usize]).unwrap();
            }
        }
    }

    #[test]
    fn repair_truncates_a_torn_file() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("20260101T000000Z-1-0.pcapng");
        let mut data = section(4);
        let whole = data.len() as u64;
        data.extend_from_slice(&section(2)[..30]); // inside the 40-byte section header
        std::fs::write(&p, &data).unwrap();
        assert_eq!(repair_tail(&p).unwrap(), 30);
        assert_eq!(std::fs::metadata(&p).unwrap().len(), whole);
        assert_eq!(check_sections(&std::fs::read(&p).unwrap()).unwrap().packets, 4);
        assert_eq!(repair_tail(&p).unwrap(), 0);
        std::fs::write(&p, &data[..10]).unwrap();
        repair_tail(&p).unwrap();
        assert!(!p.exists());
    }

    #[test]
    fn appends_rotate_dedupe_and_survive_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let limits = Limits { rotate_bytes: 1000, rotate_seconds: 60, retention_bytes: 1 << 30 };
        let store = Store::open(dir.path(), limits).unwrap();
        let s = store.sensor("host-a").unwrap();
        let mut s = s.try_lock().unwrap();
        let chunk = section(2);
        let out = s.append(5, 1, &chunk, 2, 10 * S, &limits).unwrap();
        let AppendOutcome::Stored { path, closed: false } = out else { panic!("{out:?}") };
        assert_eq!(std::fs::read(&path).unwrap(), chunk);
        assert_eq!(s.append(5, 1, &chunk, 2, 10 * S, &limits).unwrap(), AppendOutcome::Duplicate);
        // Age rotation opens a second file.
        let AppendOutcome::Stored { path: p2, closed: true } = s.append(5, 3, &chunk, 2, 100 * S, &limits).unwrap() else { panic!() };
        assert_ne!(p2, path);
        assert!(s.close_if_due(200 * S, &limits).unwrap());
        drop(s);
        drop(store);
        let store = Store::open(dir.path(), limits).unwrap();
        let s = store.sensor("host-a").unwrap();
        let mut s = s.try_lock().unwrap();
        assert_eq!(s.last_seq(5), Some(3));
        assert_eq!(s.append(5, 2, &chunk, 2, 300 * S, &limits).unwrap(), AppendOutcome::Duplicate);
        let AppendOutcome::Stored { path: p3, .. } = s.append(5, 4, &chunk, 2, 300 * S, &limits).unwrap() else { panic!() };
        assert!(p3 != path && p3 != p2, "a restart starts a new file");
    }

    #[test]
    fn retention_on_disk_keeps_open_files() {
        let dir = tempfile::tempdir().unwrap();
        let chunk = section(10);
        let limits = Limits { rotate_bytes: 1, rotate_seconds: 3600, retention_bytes: chunk.len() as u64 * 2 };
        let store = Store::open(dir.path(), limits).unwrap();
        let s = store.sensor("a").unwrap();
        let mut s = s.try_lock().unwrap();
        for seq in 1..=5 {
            s.append(1, seq, &chunk, 10, seq * S, &limits).unwrap();
        }
        assert_eq!(store.enforce_retention().unwrap(), 3);
        let left: Vec<String> = store.scan().unwrap().into_iter().map(|(_, e)| e.name).collect();
        assert_eq!(left.len(), 2);
        assert!(left.iter().all(|n| n.ends_with("-3.pcapng") || n.ends_with("-4.pcapng")), "{left:?}");
    }
}
