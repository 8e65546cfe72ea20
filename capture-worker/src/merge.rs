//! Puts the two directions of an interface back in time order.
//!
//! Each capture handle (received, sent) delivers its packets in order, but a
//! ring hands a block to user space only when it is full or its timeout
//! passes, so a reply can reach us before the request it answers. The worker
//! queues each handle's records here and takes them out by timestamp: while
//! both queues hold packets, the older front is safe to send (the other
//! handle can only deliver newer ones); while one queue is empty, the other's
//! front waits until it is older than `hold` (longer than the ring timeout),
//! after which nothing older can still arrive. A queue holding more than
//! `max_queue_bytes` sends its front at once, so memory stays bounded and
//! the worker always drains its rings; order can then suffer, only under a
//! one-directional flood. Pure: `now` is passed in.

use ossensor_shared::ipc::RecordHeader;

/// Records in arrival order; consumed from the front.
#[derive(Default)]
pub struct RecordQueue {
    buf: Vec<u8>,
    start: usize,
    packets: usize,
}

impl RecordQueue {
    /// Where the capture appends records (see `ossensor_shared::ipc::push_record`).
    pub fn tail(&mut self) -> &mut Vec<u8> {
        if self.start == self.buf.len() {
            self.buf.clear();
            self.start = 0;
        } else if self.start > (1 << 20) && self.start * 2 > self.buf.len() {
            self.buf.drain(..self.start);
            self.start = 0;
        }
        &mut self.buf
    }

    /// Counts records appended through `tail`.
    pub fn appended(&mut self, n: u32) {
        self.packets += n as usize;
    }

    fn front(&self) -> Option<(u64, usize)> {
        let h = RecordHeader::read(&self.buf[self.start..])?;
        Some((h.ts_ns, h.record_len()))
    }

    fn move_front(&mut self, out: &mut Vec<u8>, len: usize) {
        out.extend_from_slice(&self.buf[self.start..self.start + len]);
        self.start += len;
        self.packets -= 1;
    }

    pub fn len(&self) -> usize {
        self.packets
    }

    /// Bytes of the records queued (not yet consumed).
    pub fn bytes(&self) -> usize {
        self.buf.len() - self.start
    }
}

pub struct DirectionMerge {
    pub queues: [RecordQueue; 2],
    hold_ns: u64,
    max_queue_bytes: usize,
}

impl DirectionMerge {
    pub fn new(hold_ns: u64, max_queue_bytes: usize) -> DirectionMerge {
        DirectionMerge { queues: Default::default(), hold_ns, max_queue_bytes }
    }

    /// Moves every record that is safe to send, oldest first, to `out`
    /// (until `out` holds `max_bytes`). With `all`, waits for nothing (the
    /// worker is stopping). Returns the records moved.
    pub fn drain_into(&mut self, out: &mut Vec<u8>, now_ns: u64, max_bytes: usize, all: bool) -> u32 {
        let mut moved = 0;
        let safe_before = now_ns.saturating_sub(self.hold_ns);
        while out.len() < max_bytes {
            let over = |q: &RecordQueue| q.bytes() > self.max_queue_bytes;
            let pick = match (self.queues[0].front(), self.queues[1].front()) {
                (Some((a, la)), Some((b, lb))) => {
                    if a <= b {
                        (0, la)
                    } else {
                        (1, lb)
                    }
                }
                (Some((a, la)), None) if all || a < safe_before || over(&self.queues[0]) => (0, la),
                (None, Some((b, lb))) if all || b < safe_before || over(&self.queues[1]) => (1, lb),
                _ => break,
            };
            self.queues[pick.0].move_front(out, pick.1);
            moved += 1;
        }
        moved
    }

    /// The bound past which a lone direction's queue is sent at once.
    pub fn max_queue_bytes(&self) -> usize {
        self.max_queue_bytes
    }

    pub fn held(&self) -> usize {
        self.queues[0].len() + self.queues[1].len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ossensor_shared::ipc::{push_record, records};
    use ossensor_shared::pcapng::Direction;
    use proptest::prelude::*;

    fn push(m: &mut DirectionMerge, side: usize, ts: u64) {
        push_record(m.queues[side].tail(), ts, 1, &[ts as u8], Direction::Inbound);
        m.queues[side].appended(1);
    }

    fn times(out: &[u8]) -> Vec<u64> {
        records(out).map(|r| r.unwrap().ts_ns).collect()
    }

    #[test]
    fn both_sides_merge_in_order_and_a_lone_side_waits_for_the_hold() {
        let mut m = DirectionMerge::new(30, usize::MAX);
        push(&mut m, 0, 10);
        push(&mut m, 0, 40);
        push(&mut m, 1, 20);
        let mut out = Vec::new();
        assert_eq!(m.drain_into(&mut out, 50, usize::MAX, false), 2);
        assert_eq!(times(&out), vec![10, 20], "40 waits: the sent side might still deliver older packets");
        assert_eq!(m.drain_into(&mut out, 69, usize::MAX, false), 0);
        assert_eq!(m.drain_into(&mut out, 71, usize::MAX, false), 1);
        assert_eq!(times(&out), vec![10, 20, 40]);
        assert_eq!(m.held(), 0);
    }

    #[test]
    fn a_full_queue_sends_without_waiting() {
        // Each record here is 21 bytes; a bound of 42 lets two wait.
        let mut m = DirectionMerge::new(1_000, 42);
        push(&mut m, 0, 1);
        push(&mut m, 0, 2);
        let mut out = Vec::new();
        assert_eq!(m.drain_into(&mut out, 10, usize::MAX, false), 0, "under the bound: waits for the hold");
        push(&mut m, 0, 3);
        assert_eq!(m.drain_into(&mut out, 10, usize::MAX, false), 1, "over the bound: sends down to it");
        assert_eq!(times(&out), vec![1]);
        assert_eq!(m.held(), 2);
    }

    #[test]
    fn stopping_drains_everything() {
        let mut m = DirectionMerge::new(1_000, usize::MAX);
        push(&mut m, 1, 5);
        push(&mut m, 0, 7);
        let mut out = Vec::new();
        assert_eq!(m.drain_into(&mut out, 0, usize::MAX, true), 2);
        assert_eq!(times(&out), vec![5, 7]);
    }

    /// Goal 6 of issue 3: the worker's per-packet path (ring → direction
    /// queue → batch → frame header) allocates nothing once its buffers have
    /// grown to their working size.
    #[test]
    fn steady_state_allocates_nothing_per_packet() {
        use ossensor_host::alloc_count::allocations_on_this_thread;
        use ossensor_shared::ipc::batch_frame_header;
        let payload = vec![0x5a; 1514];
        let mut m = DirectionMerge::new(1_000, 8 << 20);
        let mut batch = Vec::with_capacity((1 << 20) + 70_000);
        let mut ts = 0u64;
        let mut run = |rounds: usize, m: &mut DirectionMerge, batch: &mut Vec<u8>| -> u64 {
            let mut packets = 0;
            for round in 0..rounds {
                // One ring read: about 700 packets of mixed sizes, both directions.
                for i in 0..700 {
                    ts += 1_000;
                    let side = (i + round) % 3 % 2;
                    let len = [60, 1514, 590, 1514, 98][i % 5];
                    push_record(m.queues[side].tail(), ts, len as u32, &payload[..len], Direction::Inbound);
                    m.queues[side].appended(1);
                    packets += 1;
                }
                m.drain_into(batch, ts + 1_000_000_000, 1 << 20, false);
                if batch.len() >= 1 << 20 || round % 7 == 6 {
                    let header = batch_frame_header(0, batch.len()).unwrap();
                    std::hint::black_box(&header);
                    batch.clear();
                }
            }
            packets
        };
        run(50, &mut m, &mut batch); // the buffers grow to their working size
        let before = allocations_on_this_thread();
        let packets = run(300, &mut m, &mut batch);
        let allocations = allocations_on_this_thread() - before;
        println!("worker path: {allocations} allocations for {packets} packets");
        assert_eq!(allocations, 0, "the worker's hot path allocated {allocations} times for {packets} packets");
    }

    proptest! {
        #[test]
        fn output_is_ordered_complete_and_bounded(
            a in proptest::collection::vec(0u64..1000, 0..40),
            b in proptest::collection::vec(0u64..1000, 0..40),
            cuts in proptest::collection::vec(0usize..40, 0..6),
        ) {
            let (mut a, mut b) = (a, b);
            a.sort();
            b.sort();
            let mut m = DirectionMerge::new(100, usize::MAX);
            let mut out = Vec::new();
            // Feed in rounds. The rings' guarantee, modelled: at "now",
            // every packet older than now - hold has been delivered, so now
            // is at most the oldest packet not yet fed plus the hold.
            let (mut ia, mut ib) = (0, 0);
            for c in cuts.iter().chain(std::iter::once(&40)) {
                while ia < a.len() && ia < *c { push(&mut m, 0, a[ia]); ia += 1; }
                while ib < b.len() && ib < *c { push(&mut m, 1, b[ib]); ib += 1; }
                let oldest_unfed = a.get(ia).into_iter().chain(b.get(ib)).min().copied().unwrap_or(u64::MAX / 2);
                m.drain_into(&mut out, oldest_unfed + 100, usize::MAX, false);
            }
            while ia < a.len() { push(&mut m, 0, a[ia]); ia += 1; }
            while ib < b.len() { push(&mut m, 1, b[ib]); ib += 1; }
            m.drain_into(&mut out, 0, usize::MAX, true);
            let got = times(&out);
            let mut want: Vec<u64> = a.iter().chain(&b).copied().collect();
            want.sort();
            prop_assert_eq!(got, want);
        }
    }
}
