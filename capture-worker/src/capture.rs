//! One interface's capture: two libpcap handles, one per direction, because
//! libpcap does not report a packet's direction and pcapng should carry it.
//! Each handle gets the same filter behind a kernel guard on the packet type
//! (SKF_AD_PKTTYPE), so the kernel splits the traffic and each packet is read
//! once. Filters arrive compiled; this module only attaches them.

use crate::actions::WorkerActions;
use crate::merge::DirectionMerge;
use ossensor_shared::bpf::{self, BpfInsn, Side};
use ossensor_shared::ipc::{push_record, CaptureStats};
use ossensor_shared::pcapng::Direction;
use pcap::{Active, Capture, Precision};
use std::os::fd::{AsRawFd, RawFd};

/// TPACKET_V3 block timeout.
pub const RING_TIMEOUT_MS: i32 = 2;

pub struct Handle {
    pub side: Side,
    cap: Capture<Active>,
    /// Packets stamped before this were queued before our filter was in
    /// place (the ring fills from activation on); drop them once, as
    /// libpcap does for tcpdump.
    discard_before_ns: u64,
}

pub struct InterfaceCapture {
    pub handles: [Handle; 2],
    pub linktype: i32,
    /// Packets appended to batches since the first filter.
    pub forwarded: u64,
}

impl InterfaceCapture {
    pub fn open(interface: &str, ring_bytes: u64) -> Result<InterfaceCapture, String> {
        let open_one = |side: Side| -> Result<Handle, String> {
            let cap = Capture::from_device(interface)
                .map_err(|e| format!("interface {interface}: {e}"))?
                .promisc(true)
                .snaplen(bpf::SNAPLEN as i32)
                .buffer_size(ring_bytes.min(i32::MAX as u64) as i32)
                .precision(Precision::Nano)
                // A ring block reaches us when full or after this many ms
                // (empty blocks never wake us), so sparse traffic is not
                // held, and the direction merge's hold stays short.
                .timeout(RING_TIMEOUT_MS)
                .open()
                .map_err(|e| format!("cannot open {interface} for capture: {e}"))?
                .setnonblock()
                .map_err(|e| format!("cannot make {interface} capture non-blocking: {e}"))?;
            Ok(Handle { side, cap, discard_before_ns: u64::MAX })
        };
        let received = open_one(Side::Received)?;
        let sent = open_one(Side::Sent)?;
        let linktype = received.cap.get_datalink().0;
        Ok(InterfaceCapture { handles: [received, sent], linktype, forwarded: 0 })
    }

    /// Attaches `program` (checked, then guarded per direction) to both
    /// handles. On the first call, packets queued before it are dropped.
    pub fn attach(&mut self, program: &[BpfInsn], first: bool) -> Result<(), String> {
        bpf::check(program)?;
        for h in &mut self.handles {
            let guarded = bpf::with_direction_guard(program, h.side);
            attach_filter(h.cap.as_raw_fd(), &guarded)?;
            if first {
                h.discard_before_ns = ossensor_host::clock::now_ns();
            }
        }
        Ok(())
    }

    /// Reads what each ring holds now (non-blocking) into its queue of the
    /// direction merge, until that queue passes the merge's bound: the rest
    /// stays in the ring (the kernel's buffer, already counted) until the
    /// queue drains, so the worker's own memory stays bounded however fast
    /// packets arrive; a ring that fills meanwhile is a counted kernel drop.
    /// Returns the packets read, and the error that stopped a handle (an
    /// interface that went away): the packets read before it stay queued
    /// for delivery.
    pub fn read_into(&mut self, merge: &mut DirectionMerge, mut actions: Option<&mut WorkerActions>) -> (u32, Option<String>) {
        let mut n = 0u32;
        let limit = merge.max_queue_bytes();
        for (h, queue) in self.handles.iter_mut().zip(merge.queues.iter_mut()) {
            let pending = queue.bytes();
            let batch = queue.tail();
            let len0 = batch.len();
            let before = n;
            let dir = match h.side {
                Side::Received => Direction::Inbound,
                Side::Sent => Direction::Outbound,
            };
            loop {
                if pending + (batch.len() - len0) > limit {
                    break;
                }
                match h.cap.next_packet() {
                    Ok(p) => {
                        let ts = p.header.ts.tv_sec as u64 * 1_000_000_000 + p.header.ts.tv_usec as u64;
                        if h.discard_before_ns != u64::MAX {
                            if ts < h.discard_before_ns {
                                continue;
                            }
                            h.discard_before_ns = u64::MAX;
                        }
                        push_record(batch, ts, p.header.len, p.data, dir);
                        if let Some(r) = actions.as_deref_mut() {
                            r.observe(ts, p.data);
                        }
                        n += 1;
                    }
                    Err(pcap::Error::TimeoutExpired) | Err(pcap::Error::NoMorePackets) => break,
                    Err(e) => {
                        if let Some(r) = actions {
                            r.flush();
                        }
                        queue.appended(n - before);
                        self.forwarded += n as u64;
                        return (n, Some(format!("capture read failed: {e}")));
                    }
                }
            }
            queue.appended(n - before);
        }
        // The enforcer takes segments a block at a time: the last ones now.
        if let Some(r) = actions {
            r.flush();
        }
        self.forwarded += n as u64;
        (n, None)
    }

    pub fn stats(&mut self) -> CaptureStats {
        let mut s = CaptureStats { forwarded: self.forwarded, ..Default::default() };
        for h in &mut self.handles {
            if let Ok(st) = h.cap.stats() {
                s.received += st.received as u64;
                s.dropped_kernel += st.dropped as u64;
                s.dropped_interface += st.if_dropped as u64;
            }
        }
        s
    }

    /// Sends one frame on the interface (response actions).
    pub fn inject(&mut self, frame: &[u8]) -> Result<(), String> {
        self.handles[0].cap.sendpacket(frame).map_err(|e| e.to_string())
    }

    pub fn fds(&self) -> [RawFd; 2] {
        [self.handles[0].cap.as_raw_fd(), self.handles[1].cap.as_raw_fd()]
    }
}

/// SO_ATTACH_FILTER with a classic BPF program; the kernel verifies it.
fn attach_filter(fd: RawFd, program: &[BpfInsn]) -> Result<(), String> {
    let prog = libc::sock_fprog { len: program.len() as u16, filter: program.as_ptr() as *mut libc::sock_filter };
    const _: () = assert!(std::mem::size_of::<BpfInsn>() == std::mem::size_of::<libc::sock_filter>());
    // SAFETY: BpfInsn is repr(C) with sock_filter's layout; `prog` points at
    // `program`, which outlives the call; the kernel copies it.
    let rc = unsafe {
        libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_ATTACH_FILTER,
            &prog as *const libc::sock_fprog as *const libc::c_void,
            std::mem::size_of::<libc::sock_fprog>() as libc::socklen_t,
        )
    };
    if rc != 0 {
        return Err(format!("kernel refused the filter: {}", std::io::Error::last_os_error()));
    }
    Ok(())
}
