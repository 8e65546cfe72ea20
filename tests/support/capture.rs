//! Reference captures with tcpdump, pcap/pcapng readers independent of the
//! sensor's own code, and checks with the real downstream tools.

use crate::netns::Netns;
use crate::process::ProcessGuard;
use crate::{command, run_unchecked, tail, Error, Result};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// One captured packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    /// Interface name (pcapng `if_name`; for classic pcap what the caller said).
    pub interface: String,
    pub ts_ns: u64,
    pub orig_len: u32,
    pub data: Vec<u8>,
    /// pcapng direction bits (`epb_flags & 3`): 0 unknown, 1 in, 2 out.
    pub direction: u8,
}

/// `tcpdump -i IF -s 0 -B 65536 -U --immediate-mode -w FILE [filter]` inside
/// a namespace, as the reference capture. The 64 MiB buffer is deliberate:
/// with `-B 4096` a 2 MB iperf3 burst of 64 KiB GSO frames made the kernel
/// drop packets on this 2-core machine, and a reference that lost packets is
/// refused by [`Tcpdump::stop`]. tcpdump runs with `-Z root` (no
/// privilege drop, so it can write anywhere) and nanosecond timestamps.
pub struct Tcpdump {
    guard: ProcessGuard,
    file: PathBuf,
    interface: String,
}

impl Tcpdump {
    /// Starts the capture and waits (10 s at most) until it is listening.
    /// `dir` holds the capture `<interface>.pcap` and the log.
    pub fn start(ns: &Netns, interface: &str, filter: Option<&str>, dir: &Path) -> Result<Tcpdump> {
        let file = dir.join(format!("{}-{interface}.pcap", ns.name()));
        let log = dir.join(format!("{}-{interface}.tcpdump.log", ns.name()));
        let mut args = vec!["tcpdump", "-i", interface, "-n", "-s", "0", "-B", "65536", "-U", "--immediate-mode", "--time-stamp-precision=nano", "-Z", "root"];
        let fs = file.to_string_lossy().into_owned();
        args.push("-w");
        args.push(&fs);
        if let Some(f) = filter {
            args.push(f);
        }
        let mut guard = ns.spawn(&args, &log)?;
        guard.wait_for_line("listening on", Duration::from_secs(10)).map_err(|e| Error(format!("tcpdump on {}/{interface} did not start: {e}", ns.name())))?;
        Ok(Tcpdump { guard, file, interface: interface.to_string() })
    }

    pub fn path(&self) -> &Path {
        &self.file
    }

    /// Waits until the file stops growing (300 ms without change, 5 s at
    /// most), stops tcpdump with SIGINT and returns the file. Fails if
    /// tcpdump reports packets dropped by the kernel.
    pub fn stop(mut self) -> Result<PathBuf> {
        let deadline = Instant::now() + Duration::from_secs(5);
        let mut last = (u64::MAX, Instant::now());
        while Instant::now() < deadline {
            let len = std::fs::metadata(&self.file).map(|m| m.len()).unwrap_or(0);
            if len != last.0 {
                last = (len, Instant::now());
            } else if last.1.elapsed() >= Duration::from_millis(300) {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let st = self.guard.stop(libc::SIGINT)?;
        let log = self.guard.log();
        if !st.success() {
            return Err(Error(format!("tcpdump exited with {st}:\n{}", tail(&log, 2000))));
        }
        if let Some(line) = log.lines().find(|l| l.contains("dropped by kernel")) {
            let n: u64 = line.split_whitespace().next().and_then(|n| n.parse().ok()).unwrap_or(0);
            if n > 0 {
                return Err(Error(format!("tcpdump reference capture lost packets: {line}")));
            }
        }
        Ok(self.file.clone())
    }

    /// Stops (see [`Tcpdump::stop`]) and reads the frames, naming them with
    /// the captured interface.
    pub fn stop_and_read(self) -> Result<Vec<Frame>> {
        let iface = self.interface.clone();
        let p = self.stop()?;
        read_pcap_as(&p, &iface)
    }
}

fn rd16(b: &[u8], at: usize, le: bool) -> u16 {
    let x = [b[at], b[at + 1]];
    if le {
        u16::from_le_bytes(x)
    } else {
        u16::from_be_bytes(x)
    }
}

fn rd32(b: &[u8], at: usize, le: bool) -> u32 {
    let x = [b[at], b[at + 1], b[at + 2], b[at + 3]];
    if le {
        u32::from_le_bytes(x)
    } else {
        u32::from_be_bytes(x)
    }
}

fn read_file(path: &Path) -> Result<Vec<u8>> {
    std::fs::read(path).map_err(|e| Error(format!("cannot read {}: {e}", path.display())))
}

/// Reads a classic pcap file (µs or ns magic, either byte order); frames get
/// an empty interface name.
pub fn read_pcap(path: impl AsRef<Path>) -> Result<Vec<Frame>> {
    read_pcap_as(path, "")
}

/// [`read_pcap`], naming every frame's interface `interface`.
pub fn read_pcap_as(path: impl AsRef<Path>, interface: &str) -> Result<Vec<Frame>> {
    let path = path.as_ref();
    let b = read_file(path)?;
    let bad = |what: String| Error(format!("{}: not a valid pcap file: {what}", path.display()));
    if b.len() < 24 {
        return Err(bad(format!("{} bytes, shorter than the file header", b.len())));
    }
    let (le, nanos) = match u32::from_le_bytes([b[0], b[1], b[2], b[3]]) {
        0xa1b2_c3d4 => (true, false),
        0xa1b2_3c4d => (true, true),
        0xd4c3_b2a1 => (false, false),
        0x4d3c_b2a1 => (false, true),
        m => return Err(bad(format!("magic {m:#010x}"))),
    };
    let mut frames = Vec::new();
    let mut at = 24;
    while at < b.len() {
        if b.len() - at < 16 {
            return Err(bad(format!("truncated record header at offset {at}")));
        }
        let sec = rd32(&b, at, le) as u64;
        let frac = rd32(&b, at + 4, le) as u64;
        let caplen = rd32(&b, at + 8, le) as usize;
        let orig_len = rd32(&b, at + 12, le);
        at += 16;
        if b.len() - at < caplen {
            return Err(bad(format!("record claims {caplen} bytes, {} left", b.len() - at)));
        }
        let ts_ns = sec * 1_000_000_000 + if nanos { frac } else { frac * 1000 };
        frames.push(Frame { interface: interface.to_string(), ts_ns, orig_len, data: b[at..at + caplen].to_vec(), direction: 0 });
        at += caplen;
    }
    Ok(frames)
}

struct Idb {
    name: String,
    /// Units per second of this interface's timestamps.
    units_per_sec: u64,
}

fn options(mut opts: &[u8], le: bool, mut f: impl FnMut(u16, &[u8])) -> std::result::Result<(), String> {
    while opts.len() >= 4 {
        let code = rd16(opts, 0, le);
        let len = rd16(opts, 2, le) as usize;
        if code == 0 {
            return Ok(());
        }
        let padded = (len + 3) & !3;
        if 4 + padded > opts.len() {
            return Err(format!("option {code} of length {len} overruns its block"));
        }
        f(code, &opts[4..4 + len]);
        opts = &opts[4 + padded..];
    }
    Ok(())
}

/// Reads a pcapng file of one or more sections (either byte order). The
/// interface ids are per section; each frame is named by its interface's
/// `if_name` option (or `if<N>` without one). EPBs and SPBs are read;
/// timestamps follow `if_tsresol`; direction is `epb_flags & 3`.
pub fn read_pcapng(path: impl AsRef<Path>) -> Result<Vec<Frame>> {
    let path = path.as_ref();
    let b = read_file(path)?;
    parse_pcapng(&b).map_err(|e| Error(format!("{}: {e}", path.display())))
}

/// [`read_pcapng`] on bytes.
pub fn parse_pcapng(b: &[u8]) -> Result<Vec<Frame>> {
    let mut frames = Vec::new();
    let mut at = 0usize;
    let mut le = true;
    let mut idbs: Vec<Idb> = Vec::new();
    let mut in_section = false;
    while at < b.len() {
        let bad = |what: String| Error(format!("bad pcapng block at offset {at}: {what}"));
        if b.len() - at < 12 {
            return Err(bad("truncated block header".into()));
        }
        let btype_le = u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]]);
        if btype_le == 0x0A0D_0D0A {
            let magic = &b[at + 8..at + 12];
            le = match magic {
                [0x4d, 0x3c, 0x2b, 0x1a] => true,
                [0x1a, 0x2b, 0x3c, 0x4d] => false,
                _ => return Err(bad("bad byte-order magic".into())),
            };
            in_section = true;
            idbs.clear();
        } else if !in_section {
            return Err(bad("block before any section header".into()));
        }
        let btype = rd32(b, at, le);
        let total = rd32(b, at + 4, le) as usize;
        if total < 12 || total & 3 != 0 || total > b.len() - at {
            return Err(bad(format!("block length {total} (bytes left {})", b.len() - at)));
        }
        if rd32(b, at + total - 4, le) as usize != total {
            return Err(bad("trailing length differs".into()));
        }
        let body = &b[at + 8..at + total - 4];
        match btype {
            1 => {
                if body.len() < 8 {
                    return Err(bad("short IDB".into()));
                }
                let mut idb = Idb { name: format!("if{}", idbs.len()), units_per_sec: 1_000_000 };
                options(&body[8..], le, |code, v| match code {
                    2 => idb.name = String::from_utf8_lossy(v).trim_end_matches('\0').to_string(),
                    9 if !v.is_empty() => {
                        let r = v[0];
                        idb.units_per_sec = if r & 0x80 == 0 { 10u64.saturating_pow((r & 0x7f) as u32) } else { 1u64 << (r & 0x7f).min(63) };
                    }
                    _ => {}
                })
                .map_err(bad)?;
                idbs.push(idb);
            }
            6 => {
                if body.len() < 20 {
                    return Err(bad("short EPB".into()));
                }
                let id = rd32(body, 0, le) as usize;
                let idb = idbs.get(id).ok_or_else(|| bad(format!("packet for undeclared interface {id}")))?;
                let ts = ((rd32(body, 4, le) as u64) << 32) | rd32(body, 8, le) as u64;
                let caplen = rd32(body, 12, le) as usize;
                let orig_len = rd32(body, 16, le);
                let padded = (caplen + 3) & !3;
                if 20 + padded > body.len() {
                    return Err(bad(format!("captured length {caplen} exceeds the block")));
                }
                let mut direction = 0u8;
                options(&body[20 + padded..], le, |code, v| {
                    if code == 2 && v.len() == 4 {
                        direction = (rd32(v, 0, le) & 3) as u8;
                    }
                })
                .map_err(bad)?;
                frames.push(Frame {
                    interface: idb.name.clone(),
                    ts_ns: ts_to_ns(ts, idb.units_per_sec),
                    orig_len,
                    data: body[20..20 + caplen].to_vec(),
                    direction,
                });
            }
            3 => {
                let idb = idbs.first().ok_or_else(|| bad("simple packet block without interface".into()))?;
                if body.len() < 4 {
                    return Err(bad("short SPB".into()));
                }
                let orig_len = rd32(body, 0, le);
                let caplen = (orig_len as usize).min(body.len() - 4);
                frames.push(Frame { interface: idb.name.clone(), ts_ns: 0, orig_len, data: body[4..4 + caplen].to_vec(), direction: 0 });
            }
            _ => {}
        }
        at += total;
    }
    Ok(frames)
}

fn ts_to_ns(ts: u64, units_per_sec: u64) -> u64 {
    if units_per_sec == 0 {
        return ts;
    }
    ((ts as u128) * 1_000_000_000 / units_per_sec as u128) as u64
}

/// Stderr lines tshark prints when run as root; not errors.
fn tshark_noise(l: &str) -> bool {
    l.trim().is_empty() || l.contains("Running as user \"root\"") || l.contains("This could be dangerous")
}

/// Number of frames `tshark -r FILE -T fields -e frame.number` reads;
/// fails if tshark exits non-zero or complains on stderr.
pub fn try_tshark_count(path: impl AsRef<Path>) -> Result<usize> {
    let p = path.as_ref();
    let out = run_unchecked(command("tshark").args(["-n", "-r"]).arg(p).args(["-T", "fields", "-e", "frame.number"]), Duration::from_secs(120))?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    let complaints: Vec<&str> = stderr.lines().filter(|l| !tshark_noise(l)).collect();
    if !out.status.success() || !complaints.is_empty() {
        return Err(Error(format!("tshark cannot read {} ({}): {}", p.display(), out.status, complaints.join("\n"))));
    }
    Ok(String::from_utf8_lossy(&out.stdout).lines().filter(|l| !l.trim().is_empty()).count())
}

/// [`try_tshark_count`] that fails the test on any tshark error.
pub fn tshark_count(path: impl AsRef<Path>) -> usize {
    try_tshark_count(path).unwrap_or_else(|e| panic!("{e}"))
}

/// Packets `tcpdump -nn -r FILE` prints; fails if tcpdump errors.
pub fn try_tcpdump_read(path: impl AsRef<Path>) -> Result<usize> {
    let p = path.as_ref();
    let out = run_unchecked(command("tcpdump").args(["-nn", "-r"]).arg(p), Duration::from_secs(120))?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    let complaints: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty() && !l.starts_with("reading from file")).collect();
    if !out.status.success() || !complaints.is_empty() {
        return Err(Error(format!("tcpdump cannot read {} ({}): {}", p.display(), out.status, complaints.join("\n"))));
    }
    // One line per packet; continuation lines (hex dumps) start with whitespace.
    Ok(String::from_utf8_lossy(&out.stdout).lines().filter(|l| !l.is_empty() && !l.starts_with(char::is_whitespace)).count())
}

/// [`try_tcpdump_read`] that fails the test on error; returns the count.
pub fn tcpdump_read_ok(path: impl AsRef<Path>) -> usize {
    try_tcpdump_read(path).unwrap_or_else(|e| panic!("{e}"))
}

fn hex_prefix(d: &[u8]) -> String {
    let n = d.len().min(48);
    let mut s: String = d[..n].iter().map(|b| format!("{b:02x}")).collect();
    if d.len() > n {
        s.push_str("...");
    }
    s
}

/// Compares two captures as multisets of (interface, data), ignoring order,
/// timestamps and direction; panics with counts and the first few missing
/// and extra frames (hex prefix) when they differ.
pub fn assert_same_frames(expected: &[Frame], got: &[Frame]) {
    if let Err(e) = compare_frames(expected, got) {
        panic!("{e}");
    }
}

/// [`assert_same_frames`] as a `Result`.
pub fn compare_frames(expected: &[Frame], got: &[Frame]) -> Result<()> {
    let mut count: HashMap<(&str, &[u8]), i64> = HashMap::new();
    for f in expected {
        *count.entry((&f.interface, &f.data)).or_default() += 1;
    }
    for f in got {
        *count.entry((&f.interface, &f.data)).or_default() -= 1;
    }
    let missing: Vec<_> = count.iter().filter(|(_, &c)| c > 0).collect();
    let extra: Vec<_> = count.iter().filter(|(_, &c)| c < 0).collect();
    if missing.is_empty() && extra.is_empty() {
        return Ok(());
    }
    let n_missing: i64 = missing.iter().map(|(_, &c)| c).sum();
    let n_extra: i64 = extra.iter().map(|(_, &c)| -c).sum();
    let mut msg = format!("frame sets differ: expected {} frames, got {}; {n_missing} missing, {n_extra} extra\n", expected.len(), got.len());
    let mut by_if: HashMap<&str, (usize, usize)> = HashMap::new();
    for f in expected {
        by_if.entry(&f.interface).or_default().0 += 1;
    }
    for f in got {
        by_if.entry(&f.interface).or_default().1 += 1;
    }
    let mut ifs: Vec<_> = by_if.into_iter().collect();
    ifs.sort();
    for (i, (e, g)) in ifs {
        msg.push_str(&format!("  interface {i:?}: expected {e}, got {g}\n"));
    }
    for (label, list) in [("missing", &missing), ("extra", &extra)] {
        for ((i, d), c) in list.iter().take(5) {
            msg.push_str(&format!("  {label} x{} on {i:?} ({} bytes): {}\n", c.abs(), d.len(), hex_prefix(d)));
        }
        if list.len() > 5 {
            msg.push_str(&format!("  ... and {} more distinct {label} frames\n", list.len() - 5));
        }
    }
    Err(Error(msg))
}

/// Does any frame contain `needle`?
pub fn frames_contain(frames: &[Frame], needle: &[u8]) -> bool {
    frames.iter().any(|f| f.data.windows(needle.len().max(1)).any(|w| w == needle))
}

/// The number of the mark `PREFIX` + `digits` decimal digits that a
/// frame's bytes carry, if any (numbered test datagrams: `tag-00042`).
pub fn mark_number(data: &[u8], prefix: &[u8], digits: usize) -> Option<usize> {
    let at = data.windows(prefix.len()).position(|w| w == prefix)? + prefix.len();
    std::str::from_utf8(data.get(at..at + digits)?).ok()?.parse().ok()
}

/// How many frames carry each mark `PREFIX` + number, for the numbers
/// 0..n written `digits` wide; each frame is scanned once.
pub fn count_marks(frames: &[Frame], prefix: &[u8], digits: usize, n: usize) -> Vec<usize> {
    let mut counts = vec![0; n];
    for k in frames.iter().filter_map(|f| mark_number(&f.data, prefix, digits)).filter(|k| *k < n) {
        counts[k] += 1;
    }
    counts
}
