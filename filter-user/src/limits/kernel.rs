//! The limits in the kernel's form: the [`LimitsConfig`] the XDP program reads, with GCRA
//! costs in fixed point and burst windows in nanoseconds.

use filter_common::{
    CLASSES, COST_SHIFT, LimitsConfig, Mode, PREFIX_SCOPES, PrefixLimits, RateParams,
    SynProtectConfig,
};

use super::{ClassName, FilterMode, Limits, NS_PER_SEC, Rate, ScopeName};

impl Limits {
    /// The map value for these limits, for this machine's CPUs (ceilings are per CPU).
    /// `test_now_ns`, the clock fields and the list presence bits are left at zero.
    #[must_use]
    pub fn to_kernel(&self) -> LimitsConfig {
        self.to_kernel_for(online_cpus())
    }

    /// [`Limits::to_kernel`] for `cpus` CPUs.
    #[must_use]
    pub fn to_kernel_for(&self, cpus: u32) -> LimitsConfig {
        let per_second = |rate: Rate, unit_ns: u128| match rate {
            Rate::Unlimited => RateParams::default(),
            Rate::PerSecond(n) => RateParams {
                cost_fp: gcra_params(unit_ns, n, n).0,
                // A burst of one second of the rate (per CPU, for ceilings).
                window_ns: 1_000_000_000,
            },
        };
        let class_packets = self.class_pps.map(|r| per_second(r, NS_PER_SEC));
        // Each CPU gets its share of a ceiling: a packet costs `cpus` times as much there.
        let ceilings = self
            .ceiling_pps
            .map(|r| per_second(r, NS_PER_SEC * u128::from(cpus.max(1))));
        let monitor_classes = ClassName::ALL
            .iter()
            .filter(|c| self.monitor_classes[c.index()])
            .fold(0u32, |bits, c| bits | 1 << c.index());
        let deny_monitor = if self.deny_mode == FilterMode::Monitor {
            filter_common::list_flags::DENY_MONITOR
        } else {
            0
        };
        let prefixes = ScopeName::ALL.map(|scope| {
            let i = scope.index();
            let class_packets = self.prefix_class_pps[i].map(|r| per_second(r, NS_PER_SEC));
            let packets = per_second(self.prefix_pps[i], NS_PER_SEC);
            let bytes = per_second(self.prefix_bps[i], 8 * NS_PER_SEC);
            let active = packets.cost_fp != 0
                || bytes.cost_fp != 0
                || class_packets.iter().any(|p| p.cost_fp != 0);
            PrefixLimits {
                len: self.prefix_len[i],
                active: u32::from(active),
                packets,
                bytes,
                class_packets,
            }
        });
        LimitsConfig {
            admit_rate: per_second(self.admit_rate, NS_PER_SEC * u128::from(cpus.max(1))),
            // The SYN-ACKs' values come from the namespace: `FilterMaps::write_limits` adds
            // them while syn-protect is on. A burst of a tenth of a second of each budget.
            syn: SynProtectConfig {
                cookie_rate: budget(self.syn_cookie_rate, cpus),
                verified_rate: budget(self.syn_admit_rate, cpus),
                ..SynProtectConfig::default()
            },
            prefixes,
            class_packets,
            ceilings,
            admit_packets: self.admit_packets,
            monitor_classes,
            list_flags: deny_monitor,
            ..self.base_to_kernel()
        }
    }

    fn base_to_kernel(&self) -> LimitsConfig {
        let (packet_cost_fp, packet_window_ns) = match self.pps.per_second() {
            None => (0, 0),
            Some(pps) => gcra_params(
                NS_PER_SEC,
                pps,
                self.effective_burst_packets().unwrap_or(pps),
            ),
        };
        // A byte costs 8 bit-times: 8e9 / bps nanoseconds.
        let (byte_cost_fp, byte_window_ns) = match self.bps.per_second() {
            None => (0, 0),
            Some(bps) => gcra_params(
                8 * NS_PER_SEC,
                bps,
                self.effective_burst_bytes().unwrap_or(bps),
            ),
        };
        LimitsConfig {
            packet_cost_fp,
            packet_window_ns,
            byte_cost_fp,
            byte_window_ns,
            block_ns: self.block_for_ms.saturating_mul(1_000_000),
            mode: Mode::from(self.mode) as u32,
            test_now_ns: 0,
            // Filled in by `FilterMaps::write_limits`, which knows the calibration.
            clock_mul_ns: 0,
            clock_offset_ns: 0,
            class_packets: [RateParams::default(); CLASSES],
            ceilings: [RateParams::default(); CLASSES],
            admit_packets: 0,
            monitor_classes: 0,
            list_flags: 0,
            prefixes: [PrefixLimits::default(); PREFIX_SCOPES],
            admit_rate: RateParams::default(),
            // Filled in by `FilterMaps::write_limits` from the SYN protection in force.
            syn: SynProtectConfig::default(),
        }
    }
}

/// A per-CPU budget for a total `rate` split between `cpus`, with a burst of a tenth of a
/// second of it.
fn budget(rate: Rate, cpus: u32) -> RateParams {
    match rate {
        Rate::Unlimited => RateParams::default(),
        Rate::PerSecond(n) => RateParams {
            cost_fp: gcra_params(NS_PER_SEC * u128::from(cpus.max(1)), n, n).0,
            window_ns: 100_000_000,
        },
    }
}

/// Online CPUs (ceilings are split between them); 1 if that cannot be read.
#[must_use]
pub fn online_cpus() -> u32 {
    aya::util::online_cpus().map_or(1, |cpus| u32::try_from(cpus.len()).unwrap_or(u32::MAX))
}

/// GCRA parameters for `rate` units per second with a burst of `burst` units, where one
/// unit at rate 1 costs `unit_ns` nanoseconds: the cost per unit in fixed point and the
/// burst window in nanoseconds. Validation keeps both inside u64.
pub(crate) fn gcra_params(unit_ns: u128, rate: u64, burst: u64) -> (u64, u64) {
    let cost_fp = (unit_ns << COST_SHIFT) / u128::from(rate);
    let window_ns = unit_ns * u128::from(burst) / u128::from(rate);
    (
        u64::try_from(cost_fp).unwrap_or(u64::MAX),
        u64::try_from(window_ns).unwrap_or(u64::MAX),
    )
}

#[cfg(test)]
mod tests {
    use filter_common::Class;

    use super::*;
    use crate::limits::{Burst, DEFAULT_ADMIT_PACKETS, LimitsChange};

    #[test]
    fn class_limits_and_ceilings_reach_the_map_value() {
        let mut change = LimitsChange::default();
        change.class_pps[ClassName::Syn.index()] = Some(Rate::PerSecond(100));
        change.monitor_classes[ClassName::Udp.index()] = Some(true);
        change.ceiling_pps[ClassName::Icmp.index()] = Some(Rate::PerSecond(1_000));
        let limits = Limits::default().apply(&change).expect("valid");
        let k = limits.to_kernel_for(2);
        assert_eq!(
            k.class_packets[Class::Syn as usize].cost_fp >> COST_SHIFT,
            10_000_000
        );
        assert_eq!(
            k.class_packets[Class::Udp as usize],
            RateParams::default(),
            "unset: unlimited"
        );
        assert_eq!(
            k.ceilings[Class::Icmp as usize].cost_fp >> COST_SHIFT,
            2_000_000,
            "1000/s over 2 CPUs is 500/s each, 2 ms a packet"
        );
        assert_eq!(k.monitor_classes, 1 << Class::Udp as u32);
        assert_eq!(k.admit_packets, DEFAULT_ADMIT_PACKETS);
    }

    #[test]
    fn prefix_limits_reach_the_map_value() {
        let mut change = LimitsChange::default();
        change.prefix_pps[ScopeName::V4.index()] = Some(Rate::PerSecond(5_000));
        change.prefix_len[ScopeName::V6.index()] = Some(56);
        change.prefix_class_pps[ScopeName::V6Wide.index()][ClassName::Syn.index()] =
            Some(Rate::PerSecond(100));
        let k = Limits::default()
            .apply(&change)
            .expect("valid")
            .to_kernel_for(1);
        let [v4, v6, wide] = k.prefixes;
        assert_eq!((v4.len, v4.active), (24, 1));
        assert_eq!(v4.packets.cost_fp >> COST_SHIFT, 200_000, "5000 packets/s");
        assert_eq!((v6.len, v6.active), (56, 0), "no limit set: inactive");
        assert_eq!(wide.active, 1);
        assert_eq!(
            wide.class_packets[Class::Syn as usize].cost_fp >> COST_SHIFT,
            10_000_000
        );
    }

    #[test]
    fn packet_cost_and_window_follow_the_rate() {
        let limits = Limits::default()
            .apply(&LimitsChange {
                pps: Some(Rate::PerSecond(1_000)),
                burst_packets: Some(Burst::Exactly(50)),
                ..LimitsChange::default()
            })
            .expect("valid limits");
        let k = limits.to_kernel();
        assert_eq!(
            k.packet_cost_fp >> COST_SHIFT,
            1_000_000,
            "1000 pps is one packet per ms"
        );
        assert_eq!(
            k.packet_window_ns, 50_000_000,
            "a 50-packet burst at 1000 pps is 50 ms"
        );
        assert_eq!(k.byte_cost_fp, 0, "no byte limit by default");
    }

    #[test]
    fn byte_cost_is_in_bits() {
        let limits = Limits::default()
            .apply(&LimitsChange {
                bps: Some(Rate::PerSecond(8_000_000)),
                ..LimitsChange::default()
            })
            .expect("valid limits");
        let k = limits.to_kernel();
        // 8 Mbit/s = 1 MB/s: a byte costs 1000 ns; auto burst is one second = 1 MB.
        assert_eq!(k.byte_cost_fp >> COST_SHIFT, 1_000);
        assert_eq!(k.byte_window_ns, 1_000_000_000);
        assert_eq!(limits.effective_burst_bytes(), Some(1_000_000));
    }

    #[test]
    fn sub_nanosecond_byte_costs_keep_their_fraction() {
        let limits = Limits::default()
            .apply(&LimitsChange {
                bps: Some(Rate::PerSecond(100_000_000_000)),
                ..LimitsChange::default()
            })
            .expect("valid limits");
        // 100 Gbit/s: 0.08 ns per byte, 0.08 * 65536 = 5242.88.
        assert_eq!(limits.to_kernel().byte_cost_fp, 5_242);
    }
}
