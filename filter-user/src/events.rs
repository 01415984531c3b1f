//! Events: block events from the XDP program (decoding), the daemon's record of current
//! blocks (for unblock messages), rate-limited logging, so that a flood of new offenders
//! cannot flood the log, and the journal that `floodwall events` reads and follows.

use std::{
    collections::{HashMap, VecDeque},
    net::IpAddr,
};

use filter_common::{BlockEvent, Class, EventType, LimitKind, Mode};
use log::info;
use tokio::sync::broadcast;

use crate::{
    control::{EventKind, EventRecord},
    limits::Limits,
    stats::source_rate,
};

/// Events the journal keeps for `floodwall events`.
pub const JOURNAL_LEN: usize = 1_000;

/// At most this many block/unblock lines per second; the rest are summed up in one line.
pub const LOG_LINES_PER_SEC: u32 = 20;

/// Decodes a ring buffer record of the block events.
#[must_use]
pub fn decode(bytes: &[u8]) -> Option<BlockEvent> {
    read_record(bytes)
}

/// A ring buffer record as the `T` the program wrote; `None` if it is too short.
#[must_use]
pub fn read_record<T: aya::Pod>(bytes: &[u8]) -> Option<T> {
    if bytes.len() < size_of::<T>() {
        return None;
    }
    // SAFETY: the length is checked; a `Pod` type is plain old data (integers and bytes),
    // so every bit pattern is valid, and read_unaligned needs no alignment.
    Some(unsafe { bytes.as_ptr().cast::<T>().read_unaligned() })
}

/// A block as a log line says it.
#[must_use]
pub fn describe_block(event: &BlockEvent, limits: &Limits) -> String {
    let addr = filter_common::SourceKey { addr: event.addr }.ip();
    let rate = source_rate(
        event.window_start_ns,
        (event.window_packets, event.window_bytes),
        (event.prev_window_packets, event.prev_window_bytes),
        event.now_ns,
    );
    let secs = event.blocked_until_ns.saturating_sub(event.now_ns) / 1_000_000_000;
    let verb = if Mode::try_from(event.mode) == Ok(Mode::Monitor) {
        "would block (monitor mode)"
    } else {
        "blocked"
    };
    match LimitKind::try_from(event.limit_kind) {
        Ok(LimitKind::Bytes) => format!(
            "{verb} {addr} for {secs}s: {:.0} bit/s seen, limit {}",
            rate.bps,
            limits.bps.per("bit")
        ),
        Ok(LimitKind::ClassPackets) => {
            let class = Class::try_from(event.class).unwrap_or(Class::Other);
            format!(
                "{verb} {addr} for {secs}s: {} packets over its {} limit of {} \
                 ({:.0} packets/s seen in all)",
                class.name(),
                class.name(),
                limits.class_pps[class as usize].per("packets"),
                rate.pps
            )
        }
        _ => format!(
            "{verb} {addr} for {secs}s: {:.0} packets/s seen, limit {}",
            rate.pps,
            limits.pps.per("packets")
        ),
    }
}

/// Allows [`LOG_LINES_PER_SEC`] lines per second and counts the rest.
#[derive(Debug, Default)]
pub struct LogLimiter {
    second: u64,
    used: u32,
    suppressed: u64,
}

impl LogLimiter {
    /// Whether a line may be logged at `now_ns`. When a new second starts and lines were
    /// suppressed in the last one, returns how many, to be logged first.
    pub fn allow(&mut self, now_ns: u64) -> (bool, Option<u64>) {
        let second = now_ns / 1_000_000_000;
        let mut flushed = None;
        if second != self.second {
            flushed = self.flush();
            self.second = second;
            self.used = 0;
        }
        if self.used < LOG_LINES_PER_SEC {
            self.used += 1;
            (true, flushed)
        } else {
            self.suppressed += 1;
            (false, flushed)
        }
    }

    /// Takes the count of suppressed lines, if any.
    pub fn flush(&mut self) -> Option<u64> {
        (self.suppressed > 0).then(|| std::mem::take(&mut self.suppressed))
    }
}

/// The daemon's record of blocks it was told about, to say when each ends, and the event
/// journal.
#[derive(Debug)]
pub struct BlockBook {
    until_ns: HashMap<IpAddr, u64>,
    limiter: LogLimiter,
    journal: VecDeque<EventRecord>,
    followers: broadcast::Sender<EventRecord>,
}

impl Default for BlockBook {
    fn default() -> Self {
        Self {
            until_ns: HashMap::new(),
            limiter: LogLimiter::default(),
            journal: VecDeque::with_capacity(JOURNAL_LEN),
            followers: broadcast::channel(JOURNAL_LEN).0,
        }
    }
}

impl BlockBook {
    /// Records and logs a ring buffer event of any type.
    pub fn on_event(&mut self, event: &BlockEvent, limits: &Limits) {
        match EventType::try_from(event.event_type) {
            Ok(EventType::Block) => self.on_block(event, limits),
            Ok(kind @ (EventType::AllowHit | EventType::DenyHit)) => {
                let addr = filter_common::SourceKey { addr: event.addr }.ip();
                let list = if kind == EventType::AllowHit {
                    "allowlist"
                } else {
                    "denylist"
                };
                let line = format!(
                    "{list} matched {addr}: hit {} of its entry",
                    event.window_packets
                );
                self.log(event.now_ns, &line);
                self.record(EventRecord::now(
                    EventKind::ListHits,
                    Some(addr.to_string()),
                    line,
                ));
            }
            Err(other) => log::warn!("ignoring an event of unknown type {other}"),
        }
    }

    /// Records and logs a block event.
    pub fn on_block(&mut self, event: &BlockEvent, limits: &Limits) {
        let addr = filter_common::SourceKey { addr: event.addr }.ip();
        // Two CPUs can report the same block; the later report replaces the earlier.
        let known = self.until_ns.insert(addr, event.blocked_until_ns).is_some();
        if !known {
            let line = describe_block(event, limits);
            self.log(event.now_ns, &line);
            self.record(EventRecord::now(
                EventKind::Block,
                Some(addr.to_string()),
                line,
            ));
        }
    }

    /// Takes over a block found in the pinned table of an earlier daemon, silently: it
    /// was logged when it began.
    pub fn adopt(&mut self, addr: IpAddr, until_ns: u64) {
        self.until_ns.insert(addr, until_ns);
    }

    /// Forgets a block removed by the operator and logs it.
    pub fn on_removed(&mut self, addr: IpAddr, now_ns: u64) {
        self.until_ns.remove(&addr);
        let line = format!("unblocked {addr}: removed by the operator");
        self.log(now_ns, &line);
        self.record(EventRecord::now(
            EventKind::Unblock,
            Some(addr.to_string()),
            line,
        ));
    }

    /// Adds a record to the journal and sends it to followers.
    pub fn record(&mut self, record: EventRecord) {
        if self.journal.len() == JOURNAL_LEN {
            self.journal.pop_front();
        }
        self.journal.push_back(record.clone());
        // No followers is fine.
        let _ = self.followers.send(record);
    }

    /// The journal so far and a receiver of what comes next, taken together so that no
    /// event falls between them.
    #[must_use]
    pub fn subscribe(&self) -> (Vec<EventRecord>, broadcast::Receiver<EventRecord>) {
        (
            self.journal.iter().cloned().collect(),
            self.followers.subscribe(),
        )
    }

    /// Logs and forgets the blocks that ended by `now_ns`; returns how many.
    pub fn expire(&mut self, now_ns: u64) -> usize {
        let ended: Vec<IpAddr> = self
            .until_ns
            .iter()
            .filter(|&(_, &until)| until <= now_ns)
            .map(|(&addr, _)| addr)
            .collect();
        for addr in &ended {
            self.until_ns.remove(addr);
            let line = format!("unblocked {addr}: block expired");
            self.log(now_ns, &line);
            self.record(EventRecord::now(
                EventKind::Unblock,
                Some(addr.to_string()),
                line,
            ));
        }
        if let Some(n) = self.limiter.flush() {
            info!("{n} more block/unblock messages suppressed in the last second");
        }
        ended.len()
    }

    /// The blocks the book holds: each source and when its block ends (program clock).
    #[must_use]
    pub fn blocks(&self) -> Vec<(IpAddr, u64)> {
        self.until_ns.iter().map(|(&a, &u)| (a, u)).collect()
    }

    /// How many blocks the book holds.
    #[must_use]
    pub fn len(&self) -> usize {
        self.until_ns.len()
    }

    /// Whether the book is empty.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.until_ns.is_empty()
    }

    fn log(&mut self, now_ns: u64, line: &str) {
        let (allowed, flushed) = self.limiter.allow(now_ns);
        if let Some(n) = flushed {
            info!("{n} more block/unblock messages suppressed in the last second");
        }
        if allowed {
            info!("{line}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::limits::Rate;

    fn event(last: u8, now_ns: u64) -> BlockEvent {
        BlockEvent {
            addr: filter_common::SourceKey::from_ipv4([198, 18, 0, last]).addr,
            limit_kind: LimitKind::Packets as u32,
            mode: Mode::Enforce as u32,
            blocked_until_ns: now_ns + 60_000_000_000,
            now_ns,
            window_start_ns: now_ns - 10_000_000,
            window_packets: 1_000,
            window_bytes: 64_000,
            ..BlockEvent::default()
        }
    }

    #[test]
    fn limiter_allows_a_budget_per_second_and_counts_the_rest() {
        let mut limiter = LogLimiter::default();
        let allowed = (0..100).filter(|_| limiter.allow(5_000_000_000).0).count();
        assert_eq!(allowed, LOG_LINES_PER_SEC as usize);
        let (ok, flushed) = limiter.allow(6_000_000_000);
        assert!(ok, "a new second has a new budget");
        assert_eq!(
            flushed,
            Some(80),
            "the suppressed lines of the last second are reported"
        );
    }

    #[test]
    fn block_lines_name_source_rate_and_limit() {
        let limits = Limits {
            pps: Rate::PerSecond(1_000),
            ..Limits::default()
        };
        let line = describe_block(&event(9, 100_000_000_000), &limits);
        assert_eq!(
            line,
            "blocked 198.18.0.9 for 60s: 100000 packets/s seen, limit 1000 packets/s"
        );
    }

    #[test]
    fn events_decode_and_short_records_are_refused() {
        let e = event(3, 7_000_000_000);
        // SAFETY: BlockEvent is plain old data; viewing it as bytes is sound.
        let bytes = unsafe {
            std::slice::from_raw_parts((&raw const e).cast::<u8>(), size_of::<BlockEvent>())
        };
        assert_eq!(decode(bytes), Some(e));
        assert_eq!(decode(&bytes[..10]), None);
    }

    #[test]
    fn book_expires_blocks_once() {
        let mut book = BlockBook::default();
        let limits = Limits::default();
        book.on_block(&event(1, 1_000_000_000), &limits);
        let (backlog, mut follower) = book.subscribe();
        book.on_block(&event(1, 1_000_000_000), &limits);
        book.on_block(&event(2, 2_000_000_000), &limits);
        assert_eq!(book.len(), 2, "a duplicate report is one block");
        assert_eq!(backlog.len(), 1, "the journal has the first block");
        let next = follower.try_recv().expect("a follower sees the next event");
        assert_eq!(next.kind, EventKind::Block);
        assert_eq!(next.subject.as_deref(), Some("198.18.0.2"));
        assert_eq!(book.expire(61_000_000_000), 1);
        assert_eq!(book.expire(61_000_000_000), 0);
        assert_eq!(book.expire(62_000_000_000), 1);
        assert!(book.is_empty());
    }
}
