//! Limits as the operator states them: parsing, validation, and the translation into the
//! [`LimitsConfig`] the XDP program reads. Pure logic, no kernel objects.

use std::time::Duration;

use filter_common::{
    CLASSES, COST_SHIFT, Class, LimitsConfig, Mode, PREFIX_SCOPES, PrefixLimits, RateParams,
};
use serde::{Deserialize, Serialize};

mod setting;

pub use setting::{Bounds, Kind, Setting, Value};

const NS_PER_SEC: u128 = 1_000_000_000;

/// Bounds of what floodwall accepts; each one is named in the error for a value outside it.
pub const MAX_PPS: u64 = 1_000_000_000;
/// Below 8 bit/s one byte would cost more than a second; above 1 Tbit/s no NIC is faster.
pub const MIN_BPS: u64 = 8;
/// See [`MIN_BPS`].
pub const MAX_BPS: u64 = 1_000_000_000_000;
/// A byte burst smaller than one full-size Ethernet payload would block sources for sending a
/// single large packet.
pub const MIN_BURST_BYTES: u64 = 1_500;
/// The longest burst, in time at the sustained rate.
pub const MAX_BURST_TIME: Duration = Duration::from_hours(1);
/// Shortest and longest block.
pub const MIN_BLOCK: Duration = Duration::from_secs(1);
/// See [`MIN_BLOCK`].
pub const MAX_BLOCK: Duration = Duration::from_hours(30 * 24);

/// A limit that is either a number per second or off.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Rate {
    /// No limit.
    Unlimited,
    /// At most this many per second, sustained.
    PerSecond(u64),
}

impl Rate {
    fn per_second(self) -> Option<u64> {
        match self {
            Self::Unlimited => None,
            Self::PerSecond(n) => Some(n),
        }
    }

    /// The rate with its unit, for people: `10000 packets/s`, `unlimited`.
    #[must_use]
    pub fn per(self, unit: &str) -> impl std::fmt::Display + '_ {
        RateIn { rate: self, unit }
    }
}

/// `10000/s` or `unlimited`: what the rate means whatever it counts.
impl std::fmt::Display for Rate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.per("").fmt(f)
    }
}

/// [`Rate::per`].
struct RateIn<'a> {
    rate: Rate,
    unit: &'a str,
}

impl std::fmt::Display for RateIn<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match (self.rate, self.unit) {
            (Rate::Unlimited, _) => f.write_str("unlimited"),
            (Rate::PerSecond(n), "") => write!(f, "{n}/s"),
            (Rate::PerSecond(n), unit) => write!(f, "{n} {unit}/s"),
        }
    }
}

/// A burst: a number, or `auto` for one second's worth of the rate.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Burst {
    /// One second of the sustained rate.
    Auto,
    /// This many packets or bytes.
    Exactly(u64),
}

/// `auto` or the number.
impl std::fmt::Display for Burst {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Auto => f.write_str("auto"),
            Self::Exactly(n) => n.fmt(f),
        }
    }
}

/// A protocol class, as the CLI and the config name it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum ClassName {
    /// TCP SYN without ACK.
    Syn,
    /// Other TCP.
    Tcp,
    /// UDP.
    Udp,
    /// `ICMP` and `ICMPv6`.
    Icmp,
    /// IP fragments.
    Fragment,
    /// Everything else.
    Other,
}

impl ClassName {
    /// Every class, in the data path's index order.
    pub const ALL: [Self; CLASSES] = [
        Self::Syn,
        Self::Tcp,
        Self::Udp,
        Self::Icmp,
        Self::Fragment,
        Self::Other,
    ];

    /// The data path's class.
    #[must_use]
    pub const fn class(self) -> Class {
        match self {
            Self::Syn => Class::Syn,
            Self::Tcp => Class::Tcp,
            Self::Udp => Class::Udp,
            Self::Icmp => Class::Icmp,
            Self::Fragment => Class::Fragment,
            Self::Other => Class::Other,
        }
    }

    /// Index into per-class arrays.
    #[must_use]
    pub const fn index(self) -> usize {
        self.class() as usize
    }
}

impl std::fmt::Display for ClassName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.class().name())
    }
}

/// Parses `CLASS=RATE`, e.g. `syn=100` or `udp=unlimited`.
///
/// # Errors
/// A message naming the text.
pub fn parse_class_rate(text: &str) -> Result<(ClassName, Rate), String> {
    let (class, rate) = text
        .split_once('=')
        .ok_or_else(|| format!("`{text}` is not CLASS=RATE (e.g. syn=100, udp=10k)"))?;
    let class = <ClassName as clap::ValueEnum>::from_str(class.trim(), true).map_err(|_| {
        format!("`{class}` in `{text}` is not a class (syn, tcp, udp, icmp, fragment, other)")
    })?;
    Ok((class, parse_rate(rate)?))
}

/// A prefix scope, as the CLI names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum ScopeName {
    /// IPv4 prefixes (default /24).
    V4,
    /// IPv6 prefixes (default /64).
    V6,
    /// Wider IPv6 prefixes (default /48).
    V6Wide,
}

impl ScopeName {
    /// Every scope, in the data path's index order.
    pub const ALL: [Self; PREFIX_SCOPES] = [Self::V4, Self::V6, Self::V6Wide];

    /// Index into per-scope arrays (`filter_common::prefix_scopes`).
    #[must_use]
    pub const fn index(self) -> usize {
        match self {
            Self::V4 => filter_common::prefix_scopes::V4,
            Self::V6 => filter_common::prefix_scopes::V6,
            Self::V6Wide => filter_common::prefix_scopes::V6_WIDE,
        }
    }

    /// The longest prefix of the scope's family.
    #[must_use]
    pub const fn max_len(self) -> u32 {
        match self {
            Self::V4 => 32,
            Self::V6 | Self::V6Wide => 128,
        }
    }
}

impl std::fmt::Display for ScopeName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::V4 => "v4",
            Self::V6 => "v6",
            Self::V6Wide => "v6-wide",
        })
    }
}

fn parse_scope(text: &str, whole: &str) -> Result<ScopeName, String> {
    <ScopeName as clap::ValueEnum>::from_str(text.trim(), true)
        .map_err(|_| format!("`{text}` in `{whole}` is not a prefix scope (v4, v6, v6-wide)"))
}

/// Parses `SCOPE=RATE`, e.g. `v4=5k`.
///
/// # Errors
/// A message naming the text.
pub fn parse_scope_rate(text: &str) -> Result<(ScopeName, Rate), String> {
    let (scope, rate) = text
        .split_once('=')
        .ok_or_else(|| format!("`{text}` is not SCOPE=RATE (e.g. v4=5k, v6-wide=20k)"))?;
    Ok((parse_scope(scope, text)?, parse_rate(rate)?))
}

/// Parses `SCOPE=LEN`, e.g. `v4=22`.
///
/// # Errors
/// A message naming the text.
pub fn parse_scope_len(text: &str) -> Result<(ScopeName, u32), String> {
    let (scope, len) = text
        .split_once('=')
        .ok_or_else(|| format!("`{text}` is not SCOPE=LENGTH (e.g. v4=24, v6=64)"))?;
    let scope = parse_scope(scope, text)?;
    let len: u32 = len
        .trim()
        .parse()
        .map_err(|_| format!("`{len}` in `{text}` is not a prefix length"))?;
    if len == 0 || len > scope.max_len() {
        return Err(format!(
            "prefix length {len} in `{text}` is out of range: 1 to {} for {scope}",
            scope.max_len()
        ));
    }
    Ok((scope, len))
}

/// Parses `SCOPE:CLASS=RATE`, e.g. `v4:syn=1k`.
///
/// # Errors
/// A message naming the text.
pub fn parse_scope_class_rate(text: &str) -> Result<(ScopeName, ClassName, Rate), String> {
    let (scope, rest) = text
        .split_once(':')
        .ok_or_else(|| format!("`{text}` is not SCOPE:CLASS=RATE (e.g. v4:syn=1k)"))?;
    let (class, rate) = parse_class_rate(rest)?;
    Ok((parse_scope(scope, text)?, class, rate))
}

/// Default prefix lengths by scope.
pub const DEFAULT_PREFIX_LENS: [u32; PREFIX_SCOPES] = [24, 64, 48];

/// Default ceilings on packets of untracked sources, by class (see the admission module of
/// the XDP program): generous for a server's new clients, a hard cap on a spoofed flood.
pub const DEFAULT_CEILINGS: [u64; CLASSES] = [50_000, 100_000, 100_000, 10_000, 10_000, 10_000];

/// Default rate of new table entries (all CPUs together): a busy server's new clients fit;
/// a flood that fills the admission sketch cannot churn a million-entry table with it.
pub const DEFAULT_ADMIT_RATE: u64 = 5_000;

/// Default number of packets a new source must show before it gets a table entry.
pub const DEFAULT_ADMIT_PACKETS: u32 = 4;

/// Largest admission threshold: a sketch bucket counts up to 2^24 − 1 packets per epoch.
pub const MAX_ADMIT_PACKETS: u32 = (1 << 24) - 1;

/// What the data path does with traffic over a limit.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum FilterMode {
    /// Drop it.
    #[default]
    Enforce,
    /// Count what would be dropped, drop nothing.
    Monitor,
}

impl From<FilterMode> for Mode {
    fn from(mode: FilterMode) -> Self {
        match mode {
            FilterMode::Enforce => Self::Enforce,
            FilterMode::Monitor => Self::Monitor,
        }
    }
}

impl From<Mode> for FilterMode {
    fn from(mode: Mode) -> Self {
        match mode {
            Mode::Enforce => Self::Enforce,
            Mode::Monitor => Self::Monitor,
        }
    }
}

impl std::fmt::Display for FilterMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Enforce => "enforce",
            Self::Monitor => "monitor",
        })
    }
}

/// The per-source limits, validated. The only way to build one is [`Limits::default`] plus
/// [`Limits::apply`], which validates the result as a whole.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Limits {
    /// Packets per second per source.
    pub pps: Rate,
    /// Packet burst.
    pub burst_packets: Burst,
    /// Bits per second per source.
    pub bps: Rate,
    /// Byte burst.
    pub burst_bytes: Burst,
    /// How long a source over a limit stays blocked, in milliseconds.
    pub block_for_ms: u64,
    /// Enforce or monitor.
    pub mode: FilterMode,
    /// Packets per second per source, by class (index: [`ClassName::index`]).
    pub class_pps: [Rate; CLASSES],
    /// Ceiling on untracked sources' packets per second in total, by class.
    pub ceiling_pps: [Rate; CLASSES],
    /// Packets a new source must show before it gets a table entry (1: at once).
    pub admit_packets: u32,
    /// New table entries per second, in total over the CPUs.
    pub admit_rate: Rate,
    /// Classes that only monitor (by index).
    pub monitor_classes: [bool; CLASSES],
    /// Whether the denylist drops or only counts.
    pub deny_mode: FilterMode,
    /// Prefix length by scope ([`ScopeName::index`]).
    pub prefix_len: [u32; PREFIX_SCOPES],
    /// Packets per second per prefix, by scope.
    pub prefix_pps: [Rate; PREFIX_SCOPES],
    /// Bits per second per prefix, by scope.
    pub prefix_bps: [Rate; PREFIX_SCOPES],
    /// Packets per second per prefix and class, by scope.
    pub prefix_class_pps: [[Rate; CLASSES]; PREFIX_SCOPES],
}

impl Default for Limits {
    /// 10,000 packets per second with a one-second burst, no byte limit, blocks of 60 s,
    /// enforcing.
    fn default() -> Self {
        Self {
            pps: Rate::PerSecond(10_000),
            burst_packets: Burst::Auto,
            bps: Rate::Unlimited,
            burst_bytes: Burst::Auto,
            block_for_ms: 60_000,
            mode: FilterMode::Enforce,
            class_pps: [Rate::Unlimited; CLASSES],
            ceiling_pps: DEFAULT_CEILINGS.map(Rate::PerSecond),
            admit_packets: DEFAULT_ADMIT_PACKETS,
            admit_rate: Rate::PerSecond(DEFAULT_ADMIT_RATE),
            monitor_classes: [false; CLASSES],
            deny_mode: FilterMode::Enforce,
            prefix_len: DEFAULT_PREFIX_LENS,
            prefix_pps: [Rate::Unlimited; PREFIX_SCOPES],
            prefix_bps: [Rate::Unlimited; PREFIX_SCOPES],
            prefix_class_pps: [[Rate::Unlimited; CLASSES]; PREFIX_SCOPES],
        }
    }
}

/// A change to some of the limits; `None` keeps the current value.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LimitsChange {
    /// New packet rate.
    pub pps: Option<Rate>,
    /// New packet burst.
    pub burst_packets: Option<Burst>,
    /// New bit rate.
    pub bps: Option<Rate>,
    /// New byte burst.
    pub burst_bytes: Option<Burst>,
    /// New block time in milliseconds.
    pub block_for_ms: Option<u64>,
    /// New mode.
    pub mode: Option<FilterMode>,
    /// New per-source class rates.
    pub class_pps: [Option<Rate>; CLASSES],
    /// New class ceilings.
    pub ceiling_pps: [Option<Rate>; CLASSES],
    /// New admission threshold.
    pub admit_packets: Option<u32>,
    /// New admission rate.
    pub admit_rate: Option<Rate>,
    /// Classes to switch to monitor (`Some(true)`) or enforce (`Some(false)`).
    pub monitor_classes: [Option<bool>; CLASSES],
    /// New denylist mode.
    pub deny_mode: Option<FilterMode>,
    /// New prefix lengths.
    pub prefix_len: [Option<u32>; PREFIX_SCOPES],
    /// New prefix packet rates.
    pub prefix_pps: [Option<Rate>; PREFIX_SCOPES],
    /// New prefix bit rates.
    pub prefix_bps: [Option<Rate>; PREFIX_SCOPES],
    /// New prefix class rates.
    pub prefix_class_pps: [[Option<Rate>; CLASSES]; PREFIX_SCOPES],
}

impl LimitsChange {
    /// Whether the change changes nothing.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        *self == Self::default()
    }
}

/// Why a limit was refused. Each names the setting, the value and the bound; the config
/// file names the setting by its key instead, and prints [`LimitError::problem`].
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("{setting} {}", self.problem())]
pub struct LimitError {
    /// The setting refused.
    pub setting: Setting,
    /// What is wrong with its value.
    pub reason: LimitProblem,
}

/// What is wrong with the value of a setting.
#[derive(Debug, PartialEq, Eq)]
pub enum LimitProblem {
    /// Zero, where the least is `min`.
    Zero {
        /// The bound.
        min: u64,
    },
    /// Below the least value, for a reason worth saying.
    TooSmall {
        /// The value given.
        value: u64,
        /// The bound.
        min: u64,
        /// Why.
        why: &'static str,
    },
    /// Out of range.
    OutOfRange {
        /// The value given.
        value: u64,
        /// Smallest allowed.
        min: u64,
        /// Largest allowed.
        max: u64,
    },
    /// A burst longer than [`MAX_BURST_TIME`] at its rate.
    BurstTooLong {
        /// The burst.
        burst: u64,
        /// The rate.
        rate: u64,
        /// The bound in seconds.
        max_secs: u64,
    },
    /// A burst shorter than [`filter_common::MIN_BURST_NS`] at its rate.
    BurstTooShort {
        /// The burst.
        burst: u64,
        /// The rate.
        rate: u64,
        /// The bound in milliseconds.
        min_ms: u64,
    },
}

impl LimitError {
    /// The problem with the value, without the setting's name: `10 lasts less than 30 ms
    /// ...`.
    #[must_use]
    pub fn problem(&self) -> String {
        let show = |n: u64| show_number(self.setting, n);
        match self.reason {
            LimitProblem::Zero { min } => {
                let hint = if self.setting.kind() == Kind::Rate {
                    " (use `unlimited` to turn the limit off)"
                } else {
                    ""
                };
                format!("must be at least {}{hint}", show(min))
            }
            LimitProblem::TooSmall { value, min, why } => {
                format!("{} is below {}, {why}", show(value), show(min))
            }
            LimitProblem::OutOfRange { value, min, max } => format!(
                "{} is out of range: it must be between {} and {}",
                show(value),
                show(min),
                show(max)
            ),
            LimitProblem::BurstTooLong {
                burst,
                rate,
                max_secs,
            } => format!(
                "{burst} lasts longer than {max_secs} s at the rate of {rate} per second; \
                 lower the burst or raise the rate"
            ),
            LimitProblem::BurstTooShort {
                burst,
                rate,
                min_ms,
            } => format!(
                "{burst} lasts less than {min_ms} ms at the rate of {rate} per second; \
                 raise the burst (or use `auto`)"
            ),
        }
    }
}

/// A number of `setting` in an error: durations (in milliseconds) in whole days, else in
/// seconds, so that `500ms` reads `0.5s` and the bound reads `30days`.
fn show_number(setting: Setting, n: u64) -> String {
    const DAY_MS: u64 = 24 * 3_600_000;
    match setting.kind() {
        Kind::Duration if n > 0 && n.is_multiple_of(DAY_MS) => format!("{}days", n / DAY_MS),
        #[expect(clippy::cast_precision_loss, reason = "a duration for people")]
        Kind::Duration => format!("{}s", n as f64 / 1000.0),
        _ => n.to_string(),
    }
}

impl Limits {
    /// Applies `change` and validates the result as a whole: on error nothing changes.
    ///
    /// # Errors
    /// A [`LimitError`] naming the first value that is out of its bounds.
    pub fn apply(&self, change: &LimitsChange) -> Result<Self, LimitError> {
        let next = Self {
            pps: change.pps.unwrap_or(self.pps),
            burst_packets: change.burst_packets.unwrap_or(self.burst_packets),
            bps: change.bps.unwrap_or(self.bps),
            burst_bytes: change.burst_bytes.unwrap_or(self.burst_bytes),
            block_for_ms: change.block_for_ms.unwrap_or(self.block_for_ms),
            mode: change.mode.unwrap_or(self.mode),
            class_pps: merge(self.class_pps, change.class_pps),
            ceiling_pps: merge(self.ceiling_pps, change.ceiling_pps),
            admit_packets: change.admit_packets.unwrap_or(self.admit_packets),
            admit_rate: change.admit_rate.unwrap_or(self.admit_rate),
            monitor_classes: merge(self.monitor_classes, change.monitor_classes),
            deny_mode: change.deny_mode.unwrap_or(self.deny_mode),
            prefix_len: merge(self.prefix_len, change.prefix_len),
            prefix_pps: merge(self.prefix_pps, change.prefix_pps),
            prefix_bps: merge(self.prefix_bps, change.prefix_bps),
            prefix_class_pps: [0, 1, 2]
                .map(|i| merge(self.prefix_class_pps[i], change.prefix_class_pps[i])),
        };
        next.validate()?;
        Ok(next)
    }

    fn validate(&self) -> Result<(), LimitError> {
        for setting in Setting::all() {
            let Some(bounds) = setting.bounds() else {
                continue;
            };
            let value = match setting.get(self) {
                Value::Rate(Rate::PerSecond(n)) | Value::Burst(Burst::Exactly(n)) => n,
                Value::Duration(ms) => ms,
                Value::Count(n) => u64::from(n),
                _ => continue,
            };
            check_bounds(setting, value, bounds)?;
        }
        for burst_setting in [Setting::BurstPackets, Setting::BurstBytes] {
            let rate_setting = burst_setting.rate_of_burst().unwrap_or(Setting::Pps);
            if let (Value::Burst(Burst::Exactly(burst)), Value::Rate(Rate::PerSecond(rate))) =
                (burst_setting.get(self), rate_setting.get(self))
            {
                // A burst of bytes is measured against a rate of bits.
                let per_unit = if burst_setting == Setting::BurstBytes {
                    rate / 8
                } else {
                    rate
                };
                check_burst_time(burst_setting, burst, per_unit)?;
            }
        }
        Ok(())
    }

    /// The packet burst in packets, `auto` resolved.
    #[must_use]
    pub fn effective_burst_packets(&self) -> Option<u64> {
        let pps = self.pps.per_second()?;
        Some(match self.burst_packets {
            Burst::Auto => pps,
            Burst::Exactly(n) => n,
        })
    }

    /// The byte burst in bytes, `auto` resolved (one second of the bit rate, at least
    /// [`MIN_BURST_BYTES`]).
    #[must_use]
    pub fn effective_burst_bytes(&self) -> Option<u64> {
        let bps = self.bps.per_second()?;
        Some(match self.burst_bytes {
            Burst::Auto => (bps / 8).max(MIN_BURST_BYTES),
            Burst::Exactly(n) => n,
        })
    }

    /// The block time.
    #[must_use]
    pub fn block_for(&self) -> Duration {
        Duration::from_millis(self.block_for_ms)
    }

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
            prefixes,
            class_packets,
            ceilings,
            admit_packets: self.admit_packets,
            monitor_classes,
            list_flags: deny_monitor,
            pad1: 0,
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
            pad0: 0,
            pps: self.pps.per_second().unwrap_or(0),
            burst_packets: burst_to_kernel(self.burst_packets),
            bps: self.bps.per_second().unwrap_or(0),
            burst_bytes: burst_to_kernel(self.burst_bytes),
            test_now_ns: 0,
            // Filled in by `FilterMaps::write_limits`, which knows the calibration.
            clock_mul_ns: 0,
            clock_offset_ns: 0,
            class_packets: [RateParams::default(); CLASSES],
            ceilings: [RateParams::default(); CLASSES],
            admit_packets: 0,
            monitor_classes: 0,
            list_flags: 0,
            pad1: 0,
            prefixes: [PrefixLimits::default(); PREFIX_SCOPES],
            admit_rate: RateParams::default(),
        }
    }
}

fn merge<T: Copy, const N: usize>(current: [T; N], change: [Option<T>; N]) -> [T; N] {
    let mut next = current;
    for (slot, new) in next.iter_mut().zip(change) {
        if let Some(new) = new {
            *slot = new;
        }
    }
    next
}

/// Online CPUs (ceilings are split between them); 1 if that cannot be read.
#[must_use]
pub fn online_cpus() -> u32 {
    aya::util::online_cpus().map_or(1, |cpus| u32::try_from(cpus.len()).unwrap_or(u32::MAX))
}

fn burst_to_kernel(burst: Burst) -> u64 {
    match burst {
        Burst::Auto => 0,
        Burst::Exactly(n) => n,
    }
}

/// GCRA parameters for `rate` units per second with a burst of `burst` units, where one
/// unit at rate 1 costs `unit_ns` nanoseconds: the cost per unit in fixed point and the
/// burst window in nanoseconds. Validation keeps both inside u64.
fn gcra_params(unit_ns: u128, rate: u64, burst: u64) -> (u64, u64) {
    let cost_fp = (unit_ns << COST_SHIFT) / u128::from(rate);
    let window_ns = unit_ns * u128::from(burst) / u128::from(rate);
    (
        u64::try_from(cost_fp).unwrap_or(u64::MAX),
        u64::try_from(window_ns).unwrap_or(u64::MAX),
    )
}

fn check_bounds(setting: Setting, value: u64, bounds: Bounds) -> Result<(), LimitError> {
    let refuse = |reason| Err(LimitError { setting, reason });
    if value < bounds.min
        && let Some(why) = bounds.min_reason
    {
        return refuse(LimitProblem::TooSmall {
            value,
            min: bounds.min,
            why,
        });
    }
    if value == 0 && bounds.min > 0 {
        return refuse(LimitProblem::Zero { min: bounds.min });
    }
    if !(bounds.min..=bounds.max).contains(&value) {
        return refuse(LimitProblem::OutOfRange {
            value,
            min: bounds.min,
            max: bounds.max,
        });
    }
    Ok(())
}

fn check_burst_time(setting: Setting, burst: u64, rate: u64) -> Result<(), LimitError> {
    // The program's clock ticks every few milliseconds and every packet within a tick sees
    // the same time: a burst shorter than a few ticks would drop a source sending steadily
    // at its rate.
    if u128::from(burst) * NS_PER_SEC < u128::from(rate) * u128::from(filter_common::MIN_BURST_NS) {
        return Err(LimitError {
            setting,
            reason: LimitProblem::BurstTooShort {
                burst,
                rate,
                min_ms: filter_common::MIN_BURST_NS / 1_000_000,
            },
        });
    }
    let max_secs = MAX_BURST_TIME.as_secs();
    if u128::from(burst) > u128::from(rate.max(1)) * u128::from(max_secs) {
        return Err(LimitError {
            setting,
            reason: LimitProblem::BurstTooLong {
                burst,
                rate,
                max_secs,
            },
        });
    }
    Ok(())
}

/// Parses a rate: a count with an optional SI suffix (`2500`, `10k`, `1.5M`, `1G`), or
/// `unlimited` / `off`.
///
/// # Errors
/// A message naming the text that is not a rate.
pub fn parse_rate(text: &str) -> Result<Rate, String> {
    match text.trim() {
        "unlimited" | "off" | "none" => Ok(Rate::Unlimited),
        other => parse_count(other).map(Rate::PerSecond),
    }
}

/// Parses a burst: a count with an optional SI suffix, or `auto`.
///
/// # Errors
/// A message naming the text that is not a burst.
pub fn parse_burst(text: &str) -> Result<Burst, String> {
    match text.trim() {
        "auto" => Ok(Burst::Auto),
        other => parse_count(other).map(Burst::Exactly),
    }
}

/// Parses a count with an optional SI suffix (`k` = 1000).
///
/// # Errors
/// A message naming the text.
pub fn parse_count(text: &str) -> Result<u64, String> {
    let n = parse_size::parse_size(text)
        .map_err(|e| format!("`{text}` is not a number ({e}); examples: 500, 10k, 1.5M"))?;
    if n == 0 {
        return Err(format!(
            "`{text}` is zero; use `unlimited` to turn a limit off"
        ));
    }
    Ok(n)
}

/// Parses a duration in human form (`90s`, `10m`, `1h30m`) into milliseconds.
///
/// # Errors
/// A message naming the text.
pub fn parse_duration_ms(text: &str) -> Result<u64, String> {
    let duration = humantime::parse_duration(text)
        .map_err(|e| format!("`{text}` is not a duration ({e}); examples: 90s, 10m, 1h"))?;
    u64::try_from(duration.as_millis()).map_err(|_| format!("`{text}` is too long"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid() {
        let limits = Limits::default();
        assert_eq!(limits.apply(&LimitsChange::default()), Ok(limits));
    }

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
    fn prefix_limits_reach_the_map_value_and_bad_ones_are_named() {
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
        assert_eq!(
            parse_scope_rate("v6-wide=20k"),
            Ok((ScopeName::V6Wide, Rate::PerSecond(20_000)))
        );
        assert!(
            parse_scope_len("v4=33")
                .unwrap_err()
                .contains("1 to 32 for v4")
        );
        assert!(
            parse_scope_rate("v5=1")
                .unwrap_err()
                .contains("`v5` in `v5=1` is not a prefix scope")
        );
        assert_eq!(
            parse_scope_class_rate("v4:syn=1k"),
            Ok((ScopeName::V4, ClassName::Syn, Rate::PerSecond(1_000)))
        );
    }

    #[test]
    fn class_rates_parse_and_bad_ones_name_the_problem() {
        assert_eq!(
            parse_class_rate("syn=100"),
            Ok((ClassName::Syn, Rate::PerSecond(100)))
        );
        assert_eq!(
            parse_class_rate("UDP=unlimited"),
            Ok((ClassName::Udp, Rate::Unlimited))
        );
        assert!(
            parse_class_rate("syn")
                .unwrap_err()
                .contains("is not CLASS=RATE")
        );
        assert!(
            parse_class_rate("gre=5")
                .unwrap_err()
                .contains("`gre` in `gre=5` is not a class")
        );
        let change = LimitsChange {
            admit_packets: Some(0),
            ..LimitsChange::default()
        };
        let err = Limits::default().apply(&change).unwrap_err().to_string();
        assert!(err.contains("admit-after must be at least 1"), "{err}");
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

    #[test]
    fn invalid_values_are_refused_and_change_nothing() {
        let limits = Limits::default();
        let cases = [
            (
                LimitsChange {
                    pps: Some(Rate::PerSecond(0)),
                    ..LimitsChange::default()
                },
                "pps must be at least 1",
            ),
            (
                LimitsChange {
                    pps: Some(Rate::PerSecond(MAX_PPS + 1)),
                    ..LimitsChange::default()
                },
                "pps 1000000001 is out of range",
            ),
            (
                LimitsChange {
                    bps: Some(Rate::PerSecond(7)),
                    ..LimitsChange::default()
                },
                "bps 7 is out of range",
            ),
            (
                LimitsChange {
                    burst_bytes: Some(Burst::Exactly(100)),
                    ..LimitsChange::default()
                },
                "burst-bytes 100 is below 1500",
            ),
            (
                LimitsChange {
                    burst_packets: Some(Burst::Exactly(10_000 * 3_601)),
                    ..LimitsChange::default()
                },
                "lasts longer than 3600 s",
            ),
            (
                LimitsChange {
                    block_for_ms: Some(500),
                    ..LimitsChange::default()
                },
                "block-for 0.5s is out of range",
            ),
            (
                LimitsChange {
                    block_for_ms: Some(31 * 24 * 3_600_000),
                    ..LimitsChange::default()
                },
                "block-for 31days is out of range: it must be between 1s and 30days",
            ),
        ];
        for (change, expected) in cases {
            let err = limits
                .apply(&change)
                .expect_err("must be refused")
                .to_string();
            assert!(
                err.contains(expected),
                "error `{err}` should contain `{expected}`"
            );
        }
    }

    #[test]
    fn bursts_shorter_than_a_few_clock_ticks_are_refused() {
        let err = Limits::default()
            .apply(&LimitsChange {
                pps: Some(Rate::PerSecond(1_000)),
                burst_packets: Some(Burst::Exactly(10)),
                ..LimitsChange::default()
            })
            .expect_err("10 packets at 1000 pps last 10 ms");
        assert!(
            err.to_string()
                .contains("burst-packets 10 lasts less than 30 ms"),
            "{err}"
        );
    }

    #[test]
    fn text_values_parse_with_si_suffixes_and_keywords() {
        assert_eq!(parse_rate("10k"), Ok(Rate::PerSecond(10_000)));
        assert_eq!(parse_rate("1.5M"), Ok(Rate::PerSecond(1_500_000)));
        assert_eq!(parse_rate("unlimited"), Ok(Rate::Unlimited));
        assert_eq!(parse_burst("auto"), Ok(Burst::Auto));
        assert!(parse_rate("0").unwrap_err().contains("zero"));
        assert!(
            parse_rate("fast")
                .unwrap_err()
                .contains("`fast` is not a number")
        );
        assert_eq!(parse_duration_ms("90s"), Ok(90_000));
        assert_eq!(parse_duration_ms("10m"), Ok(600_000));
        assert!(
            parse_duration_ms("ten")
                .unwrap_err()
                .contains("`ten` is not a duration")
        );
    }
}
