//! Statistics: counters summed over CPUs, rates between samples, per-source rate estimates.
//! Pure arithmetic over snapshots; reading the maps is `maps`' job.

use filter_common::{CLASSES, Class, Counter, Outcome, RATE_WINDOW_NS, SourceKey, SourceState};

use crate::control::{OutcomeStats, SourceView};

/// Counters by class and outcome, summed over CPUs, indexed like [`Class::ALL`] and
/// [`Outcome::ALL`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Totals(pub [[Counter; Outcome::ALL.len()]; CLASSES]);

impl Totals {
    /// Sums per-CPU values of one outcome.
    #[must_use]
    pub fn sum_cpus<'a>(values: impl IntoIterator<Item = &'a Counter>) -> Counter {
        values
            .into_iter()
            .fold(Counter::default(), |acc, c| Counter {
                packets: acc.packets.wrapping_add(c.packets),
                bytes: acc.bytes.wrapping_add(c.bytes),
            })
    }

    /// The counter of one outcome, all classes together.
    #[must_use]
    pub fn get(&self, outcome: Outcome) -> Counter {
        Self::sum_cpus(self.0.iter().map(|class| &class[outcome as usize]))
    }

    /// The counter of one outcome of one class.
    #[must_use]
    pub fn get_class(&self, class: Class, outcome: Outcome) -> Counter {
        self.0[class as usize][outcome as usize]
    }
}

/// A counter snapshot and when it was taken (`CLOCK_MONOTONIC` ns).
#[derive(Clone, Copy, Debug, Default)]
pub struct Sample {
    /// The counters.
    pub totals: Totals,
    /// When.
    pub at_ns: u64,
}

/// Totals as of `now` and rates between two samples, per outcome, for one class or (`None`)
/// all classes together.
#[must_use]
pub fn outcome_stats(
    now: &Sample,
    current: &Sample,
    previous: Option<&Sample>,
    class: Option<Class>,
) -> Vec<OutcomeStats> {
    let get = |sample: &Sample, outcome| match class {
        Some(class) => sample.totals.get_class(class, outcome),
        None => sample.totals.get(outcome),
    };
    Outcome::ALL
        .iter()
        .map(|&outcome| {
            let total = get(now, outcome);
            let (pps, bps) = match previous {
                Some(prev) if current.at_ns > prev.at_ns => {
                    let (cur, then) = (get(current, outcome), get(prev, outcome));
                    #[expect(clippy::cast_precision_loss, reason = "rates are shown rounded")]
                    let secs = (current.at_ns - prev.at_ns) as f64 / 1e9;
                    #[expect(clippy::cast_precision_loss, reason = "rates are shown rounded")]
                    (
                        cur.packets.saturating_sub(then.packets) as f64 / secs,
                        cur.bytes.saturating_sub(then.bytes) as f64 * 8.0 / secs,
                    )
                }
                _ => (0.0, 0.0),
            };
            OutcomeStats {
                outcome: outcome.name().to_owned(),
                dropped: outcome.is_drop(),
                packets: total.packets,
                bytes: total.bytes,
                pps,
                bps,
            }
        })
        .collect()
}

/// A source's recent rate, estimated from its reporting windows.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct SourceRate {
    /// Packets per second.
    pub pps: f64,
    /// Bits per second.
    pub bps: f64,
}

/// Shortest span a rate is computed over, so a source seen for a few microseconds does not
/// show an absurd rate.
const MIN_RATE_SPAN_NS: u64 = 10_000_000;

/// Estimates a source's rate at `now_ns` from its current and previous one-second windows.
/// With a previous window, the sliding-window estimate `previous × (1 − elapsed/window) +
/// current`, which moves smoothly instead of jumping at window edges; for a source that is
/// new this second, its count over the time since its first packet (at least 10 ms).
#[must_use]
pub fn source_rate(
    window_start_ns: u64,
    window: (u64, u64),
    prev_window: (u64, u64),
    now_ns: u64,
) -> SourceRate {
    #[expect(clippy::cast_precision_loss, reason = "an estimate")]
    let per_sec = |count: u64, span_ns: u64| count as f64 * 1e9 / span_ns as f64;
    let age = now_ns.saturating_sub(window_start_ns);
    let (pps, bytes_per_sec) = if age >= 2 * RATE_WINDOW_NS {
        (0.0, 0.0)
    } else if age >= RATE_WINDOW_NS {
        // The window is complete and nothing came since it.
        (
            per_sec(window.0, RATE_WINDOW_NS),
            per_sec(window.1, RATE_WINDOW_NS),
        )
    } else if prev_window == (0, 0) {
        let span = age.max(MIN_RATE_SPAN_NS);
        (per_sec(window.0, span), per_sec(window.1, span))
    } else {
        #[expect(clippy::cast_precision_loss, reason = "an estimate")]
        let weight = 1.0 - age as f64 / RATE_WINDOW_NS as f64;
        (
            per_sec(prev_window.0, RATE_WINDOW_NS) * weight + per_sec(window.0, RATE_WINDOW_NS),
            per_sec(prev_window.1, RATE_WINDOW_NS) * weight + per_sec(window.1, RATE_WINDOW_NS),
        )
    };
    SourceRate {
        pps,
        bps: bytes_per_sec * 8.0,
    }
}

/// [`source_rate`] of a table entry.
#[must_use]
pub fn state_rate(state: &SourceState, now_ns: u64) -> SourceRate {
    source_rate(
        state.window_start_ns,
        (
            u64::from(state.window_packets),
            u64::from(state.window_bytes),
        ),
        (
            u64::from(state.prev_window_packets),
            u64::from(state.prev_window_bytes),
        ),
        now_ns,
    )
}

/// The view of one table entry at `now_ns`, as `top` and `blocked list` show it.
#[must_use]
pub fn source_view(key: &SourceKey, state: &SourceState, now_ns: u64) -> SourceView {
    let blocked = state.blocked_until_ns > now_ns;
    // A blocked source's windows froze when it was blocked (blocked packets are not
    // counted per source): rate it as of the moment of the block.
    let rated_at = if blocked {
        state.blocked_at_ns().min(now_ns)
    } else {
        now_ns
    };
    let rate = state_rate(state, rated_at);
    SourceView {
        addr: key.ip(),
        pps: rate.pps,
        bps: rate.bps,
        blocked,
        blocked_remaining_ms: blocked.then(|| (state.blocked_until_ns - now_ns) / 1_000_000),
        rule: None,
        fleet: None,
    }
}

/// The `n` busiest sources, blocked or not, by packet rate.
#[must_use]
pub fn top_sources(mut sources: Vec<SourceView>, n: usize) -> Vec<SourceView> {
    sources.sort_by(|a, b| {
        b.pps
            .total_cmp(&a.pps)
            .then_with(|| b.bps.total_cmp(&a.bps))
    });
    sources.truncate(n);
    sources
}

#[cfg(test)]
mod tests {
    use super::*;

    const W: u64 = RATE_WINDOW_NS;

    #[test]
    fn rate_of_a_complete_idle_window_is_its_count() {
        let r = source_rate(0, (500, 50_000), (0, 0), W + W / 2);
        assert!((r.pps - 500.0).abs() < 1e-9, "got {r:?}");
        assert!((r.bps - 400_000.0).abs() < 1e-6, "got {r:?}");
    }

    #[test]
    fn rate_blends_the_previous_window_by_elapsed_time() {
        // Half-way through: half of the previous window's 1000 plus the current 300.
        let r = source_rate(10 * W, (300, 0), (1000, 0), 10 * W + W / 2);
        assert!((r.pps - 800.0).abs() < 1e-9, "got {r:?}");
    }

    #[test]
    fn rate_of_a_new_source_is_its_count_over_its_age() {
        // 1000 packets in the 10 ms since the first: 100,000 pps.
        let r = source_rate(W, (1_000, 64_000), (0, 0), W + 10_000_000);
        assert!((r.pps - 100_000.0).abs() < 1e-6, "got {r:?}");
        // Three packets within a microsecond are rated over 10 ms, not 1 µs.
        let r = source_rate(W, (3, 0), (0, 0), W + 1_000);
        assert!((r.pps - 300.0).abs() < 1e-9, "got {r:?}");
    }

    #[test]
    fn rate_is_zero_after_two_idle_windows() {
        assert_eq!(
            source_rate(0, (900, 9), (900, 9), 2 * W),
            SourceRate::default()
        );
    }

    #[test]
    fn outcome_rates_are_deltas_over_the_interval() {
        let mut a = Sample {
            at_ns: 1_000_000_000,
            ..Sample::default()
        };
        let mut b = Sample {
            at_ns: 3_000_000_000,
            ..Sample::default()
        };
        a.totals.0[Class::Udp as usize][Outcome::DroppedBlocked as usize] = Counter {
            packets: 100,
            bytes: 6_400,
        };
        b.totals.0[Class::Udp as usize][Outcome::DroppedBlocked as usize] = Counter {
            packets: 2_100,
            bytes: 134_400,
        };
        let stats = outcome_stats(&b, &b, Some(&a), None);
        let udp = outcome_stats(&b, &b, Some(&a), Some(Class::Udp));
        assert_eq!(
            udp[Outcome::DroppedBlocked as usize],
            stats[Outcome::DroppedBlocked as usize]
        );
        assert_eq!(
            outcome_stats(&b, &b, Some(&a), Some(Class::Syn))[2].packets,
            0
        );
        let blocked = &stats[Outcome::DroppedBlocked as usize];
        assert_eq!(blocked.outcome, "dropped_blocked");
        assert!(blocked.dropped);
        assert_eq!(blocked.packets, 2_100);
        assert!(
            (blocked.pps - 1_000.0).abs() < 1e-9,
            "2000 packets in 2 s: {blocked:?}"
        );
        assert!((blocked.bps - 512_000.0).abs() < 1e-6, "{blocked:?}");
    }

    #[test]
    fn top_orders_by_packet_rate() {
        let view = |last: u8, pps: f64| SourceView {
            addr: std::net::IpAddr::from([198, 18, 0, last]),
            pps,
            bps: 0.0,
            blocked: false,
            blocked_remaining_ms: None,
            rule: None,
            fleet: None,
        };
        let top = top_sources(vec![view(1, 5.0), view(2, 50.0), view(3, 20.0)], 2);
        let order: Vec<_> = top.iter().map(|v| v.addr.to_string()).collect();
        assert_eq!(order, ["198.18.0.2", "198.18.0.3"]);
    }
}
