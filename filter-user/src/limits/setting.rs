//! The limit vocabulary: every setting of [`Limits`], with its command-line flag, its key in
//! the config file, its label in `limits show`, the kind of value it takes and the range
//! floodwall accepts. CLI errors, config file errors, the reload diff and `limits show` all
//! name a setting through [`Setting`], so each is spelt the same everywhere.
//!
//! Adding a limit means: its field in [`Limits`] (with its default) and in [`LimitsChange`]
//! (and its line in `apply`); a variant here, in [`Setting::SCALARS`], with its row in
//! `spec` and its arms in [`Setting::get`] and [`LimitsChange::set`]; its flag in
//! `LimitArgs` (with its line in `change`); and its kernel form in `to_kernel`. The config
//! file, its errors, validation against the bounds, the reload diff and `limits show`
//! follow from the row.

use std::{fmt, time::Duration};

use filter_common::CLASSES;

use super::{
    Burst, ClassName, FilterMode, Limits, LimitsChange, MAX_ADMIT_PACKETS, MAX_BLOCK, MAX_BPS,
    MAX_BURST_TIME, MAX_PPS, MAX_SYN_AUTO_QUIET, MIN_BLOCK, MIN_BPS, MIN_BURST_BYTES,
    MIN_SYN_AUTO_QUIET, Rate, ScopeName,
};

/// One setting of the limits. Per-class and per-scope settings carry their class and scope.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Setting {
    /// Packets per second per source.
    Pps,
    /// The packet burst.
    BurstPackets,
    /// Bits per second per source.
    Bps,
    /// The byte burst.
    BurstBytes,
    /// How long a source over a limit stays blocked.
    BlockFor,
    /// Enforce or monitor.
    Mode,
    /// Packets a new source must show before it gets a table entry.
    AdmitAfter,
    /// New table entries per second, all CPUs together.
    AdmitRate,
    /// SYN-ACKs of the cookie stage per second, all CPUs together.
    SynCookieRate,
    /// Sources admitted for a valid cookie per second, all CPUs together.
    SynAdmitRate,
    /// How long `auto` waits without a SYN flood before it turns cookies off.
    SynAutoQuiet,
    /// Whether the denylist drops or only counts.
    DenyMode,
    /// The classes that only monitor.
    MonitorClasses,
    /// Packets per second per source of one class.
    ClassPps(ClassName),
    /// Packets per second of one class from untracked sources, all together.
    Ceiling(ClassName),
    /// The prefix length of a scope.
    PrefixLen(ScopeName),
    /// Packets per second per prefix of a scope.
    PrefixPps(ScopeName),
    /// Bits per second per prefix of a scope.
    PrefixBps(ScopeName),
    /// Packets per second per prefix of a scope, of one class.
    PrefixClassPps(ScopeName, ClassName),
}

/// The kind of value a setting takes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// A [`Rate`]: a count per second or `unlimited`.
    Rate,
    /// A [`Burst`]: a count or `auto`.
    Burst,
    /// A duration, held in milliseconds.
    Duration,
    /// A [`FilterMode`].
    Mode,
    /// A plain count.
    Count,
    /// A set of classes.
    Classes,
}

/// The value of one setting.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Value {
    /// Of a [`Kind::Rate`] setting.
    Rate(Rate),
    /// Of a [`Kind::Burst`] setting.
    Burst(Burst),
    /// Of a [`Kind::Duration`] setting, in milliseconds.
    Duration(u64),
    /// Of a [`Kind::Mode`] setting.
    Mode(FilterMode),
    /// Of a [`Kind::Count`] setting.
    Count(u32),
    /// Of a [`Kind::Classes`] setting: whether each class (by index) is in the set.
    Classes([bool; CLASSES]),
}

/// The smallest and largest number a setting takes, in its own unit (milliseconds for
/// durations), and why a smaller one is refused when that is not obvious.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Bounds {
    /// Smallest accepted.
    pub min: u64,
    /// Largest accepted.
    pub max: u64,
    /// Why nothing below `min` makes sense, for the error.
    pub min_reason: Option<&'static str>,
}

impl Bounds {
    const fn new(min: u64, max: u64) -> Self {
        Self {
            min,
            max,
            min_reason: None,
        }
    }
}

const PACKET_RATE: Bounds = Bounds::new(1, MAX_PPS);
const BIT_RATE: Bounds = Bounds::new(MIN_BPS, MAX_BPS);

/// What is fixed about a setting: how the command line, the config file and `limits show`
/// name it, and the values it takes.
struct Spec {
    /// The flag, without its dashes.
    flag: &'static str,
    /// The key's last part in the config file (`len` of `prefix.v4.len`).
    key: &'static str,
    /// The label in `limits show`.
    label: &'static str,
    /// What counts a value.
    unit: Option<&'static str>,
    /// The kind of value.
    kind: Kind,
    /// The numbers it accepts, if its values are numbers.
    bounds: Option<Bounds>,
}

impl Spec {
    const fn new(flag: &'static str, key: &'static str, label: &'static str, kind: Kind) -> Self {
        Self {
            flag,
            key,
            label,
            unit: None,
            kind,
            bounds: None,
        }
    }

    const fn rate(
        flag: &'static str,
        key: &'static str,
        label: &'static str,
        unit: &'static str,
        bounds: Bounds,
    ) -> Self {
        Self {
            unit: Some(unit),
            bounds: Some(bounds),
            ..Self::new(flag, key, label, Kind::Rate)
        }
    }

    const fn burst(
        flag: &'static str,
        key: &'static str,
        label: &'static str,
        unit: &'static str,
        bounds: Bounds,
    ) -> Self {
        Self {
            unit: Some(unit),
            bounds: Some(bounds),
            ..Self::new(flag, key, label, Kind::Burst)
        }
    }
}

impl Setting {
    /// The settings that are not per class or per scope, in the config file's order.
    pub const SCALARS: [Self; 13] = [
        Self::Pps,
        Self::BurstPackets,
        Self::Bps,
        Self::BurstBytes,
        Self::BlockFor,
        Self::Mode,
        Self::AdmitAfter,
        Self::AdmitRate,
        Self::SynCookieRate,
        Self::SynAdmitRate,
        Self::SynAutoQuiet,
        Self::DenyMode,
        Self::MonitorClasses,
    ];

    /// Every setting, in the config file's order.
    pub fn all() -> impl Iterator<Item = Self> {
        let per_scope = ScopeName::ALL.into_iter().flat_map(|scope| {
            [
                Self::PrefixLen(scope),
                Self::PrefixPps(scope),
                Self::PrefixBps(scope),
            ]
            .into_iter()
            .chain(
                ClassName::ALL
                    .into_iter()
                    .map(move |class| Self::PrefixClassPps(scope, class)),
            )
        });
        Self::SCALARS
            .into_iter()
            .chain(ClassName::ALL.map(Self::ClassPps))
            .chain(ClassName::ALL.map(Self::Ceiling))
            .chain(per_scope)
    }

    /// What is fixed about the setting: one row per setting.
    #[expect(clippy::too_many_lines, reason = "one row per setting")]
    fn spec(self) -> Spec {
        match self {
            Self::Pps => Spec::rate("pps", "pps", "packet rate", "packets", PACKET_RATE),
            Self::BurstPackets => Spec::burst(
                "burst-packets",
                "burst_packets",
                "packet burst",
                "packets",
                Bounds::new(1, MAX_PPS * MAX_BURST_TIME.as_secs()),
            ),
            Self::Bps => Spec::rate("bps", "bps", "bit rate", "bit", BIT_RATE),
            Self::BurstBytes => Spec::burst(
                "burst-bytes",
                "burst_bytes",
                "byte burst",
                "bytes",
                Bounds {
                    min: MIN_BURST_BYTES,
                    max: MAX_BPS / 8 * MAX_BURST_TIME.as_secs(),
                    min_reason: Some("one full-size packet"),
                },
            ),
            Self::BlockFor => Spec {
                bounds: Some(Bounds::new(millis(MIN_BLOCK), millis(MAX_BLOCK))),
                ..Spec::new("block-for", "block_for", "block for", Kind::Duration)
            },
            Self::Mode => Spec::new("mode", "mode", "mode", Kind::Mode),
            Self::AdmitAfter => Spec {
                unit: Some("packets"),
                bounds: Some(Bounds::new(1, u64::from(MAX_ADMIT_PACKETS))),
                ..Spec::new("admit-after", "admit_after", "admit after", Kind::Count)
            },
            Self::AdmitRate => Spec::rate(
                "admit-rate",
                "admit_rate",
                "admit rate",
                "sources",
                PACKET_RATE,
            ),
            Self::SynCookieRate => Spec::rate(
                "syn-cookie-rate",
                "syn_cookie_rate",
                "SYN cookie rate",
                "SYN-ACKs",
                PACKET_RATE,
            ),
            Self::SynAdmitRate => Spec::rate(
                "syn-admit-rate",
                "syn_admit_rate",
                "SYN cookie admit rate",
                "sources",
                PACKET_RATE,
            ),
            Self::SynAutoQuiet => Spec {
                bounds: Some(Bounds::new(
                    millis(MIN_SYN_AUTO_QUIET),
                    millis(MAX_SYN_AUTO_QUIET),
                )),
                ..Spec::new(
                    "syn-auto-quiet",
                    "syn_auto_quiet",
                    "SYN cookie auto quiet",
                    Kind::Duration,
                )
            },
            Self::DenyMode => Spec::new("deny-mode", "deny_mode", "denylist", Kind::Mode),
            // With `--enforce-class` for the other direction.
            Self::MonitorClasses => Spec::new(
                "monitor-class",
                "monitor_classes",
                "monitored",
                Kind::Classes,
            ),
            Self::ClassPps(_) => Spec::rate(
                "class-pps",
                "class_pps",
                "per-source rate",
                "packets",
                PACKET_RATE,
            ),
            Self::Ceiling(_) => Spec::rate(
                "ceiling",
                "ceiling",
                "ceiling (untracked)",
                "packets",
                PACKET_RATE,
            ),
            Self::PrefixLen(scope) => Spec {
                bounds: Some(Bounds::new(1, u64::from(scope.max_len()))),
                ..Spec::new("prefix-len", "len", "length", Kind::Count)
            },
            Self::PrefixPps(_) => {
                Spec::rate("prefix-pps", "pps", "packet rate", "packets", PACKET_RATE)
            }
            Self::PrefixBps(_) => Spec::rate("prefix-bps", "bps", "bit rate", "bit", BIT_RATE),
            Self::PrefixClassPps(..) => Spec::rate(
                "prefix-class-pps",
                "class_pps",
                "class rate",
                "packets",
                PACKET_RATE,
            ),
        }
    }

    /// The command-line flag, without its dashes: `pps`, `class-pps`. Per-class and
    /// per-scope flags take the class or scope in their value (`--class-pps syn=50`).
    #[must_use]
    pub fn flag(self) -> &'static str {
        self.spec().flag
    }

    /// What a per-class or per-scope flag's value names before its `=`: `syn`, `v4`,
    /// `v4:syn`.
    #[must_use]
    pub fn target(self) -> Option<String> {
        match self {
            Self::ClassPps(class) | Self::Ceiling(class) => Some(class.to_string()),
            Self::PrefixLen(scope) | Self::PrefixPps(scope) | Self::PrefixBps(scope) => {
                Some(scope.to_string())
            }
            Self::PrefixClassPps(scope, class) => Some(format!("{scope}:{class}")),
            _ => None,
        }
    }

    /// The key in the config file's `[limits]` table, dotted: `pps`, `class_pps.syn`,
    /// `prefix.v4.class_pps.syn`.
    #[must_use]
    pub fn key(self) -> String {
        let key = self.spec().key;
        match self {
            Self::ClassPps(class) | Self::Ceiling(class) => format!("{key}.{class}"),
            Self::PrefixLen(scope) | Self::PrefixPps(scope) | Self::PrefixBps(scope) => {
                format!("prefix.{scope}.{key}")
            }
            Self::PrefixClassPps(scope, class) => format!("prefix.{scope}.{key}.{class}"),
            _ => key.to_owned(),
        }
    }

    /// What `limits show` calls it. Per-class and per-scope settings are shown in tables
    /// by class and scope; theirs name the column.
    #[must_use]
    pub fn label(self) -> &'static str {
        self.spec().label
    }

    /// What counts a value, for people: `packets` in `10000 packets/s`.
    #[must_use]
    pub fn unit(self) -> Option<&'static str> {
        self.spec().unit
    }

    /// The kind of value it takes.
    #[must_use]
    pub fn kind(self) -> Kind {
        self.spec().kind
    }

    /// The numbers it accepts (rates when not `unlimited`, bursts when not `auto`);
    /// `None` for settings that are not numbers.
    #[must_use]
    pub fn bounds(self) -> Option<Bounds> {
        self.spec().bounds
    }

    /// The burst's rate, for a burst: a burst is measured in time at its rate.
    #[must_use]
    pub const fn rate_of_burst(self) -> Option<Self> {
        match self {
            Self::BurstPackets => Some(Self::Pps),
            Self::BurstBytes => Some(Self::Bps),
            _ => None,
        }
    }

    /// Its value in `limits`.
    #[must_use]
    pub fn get(self, limits: &Limits) -> Value {
        match self {
            Self::Pps => Value::Rate(limits.pps),
            Self::BurstPackets => Value::Burst(limits.burst_packets),
            Self::Bps => Value::Rate(limits.bps),
            Self::BurstBytes => Value::Burst(limits.burst_bytes),
            Self::BlockFor => Value::Duration(limits.block_for_ms),
            Self::Mode => Value::Mode(limits.mode),
            Self::AdmitAfter => Value::Count(limits.admit_packets),
            Self::AdmitRate => Value::Rate(limits.admit_rate),
            Self::SynCookieRate => Value::Rate(limits.syn_cookie_rate),
            Self::SynAdmitRate => Value::Rate(limits.syn_admit_rate),
            Self::SynAutoQuiet => Value::Duration(limits.syn_auto_quiet_ms),
            Self::DenyMode => Value::Mode(limits.deny_mode),
            Self::MonitorClasses => Value::Classes(limits.monitor_classes),
            Self::ClassPps(c) => Value::Rate(limits.class_pps[c.index()]),
            Self::Ceiling(c) => Value::Rate(limits.ceiling_pps[c.index()]),
            Self::PrefixLen(s) => Value::Count(limits.prefix_len[s.index()]),
            Self::PrefixPps(s) => Value::Rate(limits.prefix_pps[s.index()]),
            Self::PrefixBps(s) => Value::Rate(limits.prefix_bps[s.index()]),
            Self::PrefixClassPps(s, c) => {
                Value::Rate(limits.prefix_class_pps[s.index()][c.index()])
            }
        }
    }

    /// Its value in `limits` as `limits show` prints it: with its unit, and a burst with
    /// what `auto` comes to (`-` when its rate is unlimited, where a burst means nothing).
    #[must_use]
    pub fn show(self, limits: &Limits) -> String {
        let value = self.get(limits);
        match (value, self.unit()) {
            (Value::Rate(rate), Some(unit)) => rate.per(unit).to_string(),
            (Value::Burst(burst), Some(unit)) => {
                let effective = match self {
                    Self::BurstPackets => limits.effective_burst_packets(),
                    _ => limits.effective_burst_bytes(),
                };
                match (burst, effective) {
                    (_, None) => "-".to_owned(),
                    (Burst::Auto, Some(n)) => format!("auto ({n} {unit})"),
                    (Burst::Exactly(n), _) => format!("{n} {unit}"),
                }
            }
            (Value::Count(n), Some(unit)) => format!("{n} {unit}"),
            (Value::Count(len), None) if matches!(self, Self::PrefixLen(_)) => format!("/{len}"),
            _ => value.to_string(),
        }
    }

    /// The default value.
    #[must_use]
    pub fn default_value(self) -> Value {
        self.get(&Limits::default())
    }
}

/// As errors name a setting: its flag, and its class or scope (`pps`, `class-pps syn`).
impl fmt::Display for Setting {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.flag())?;
        match self.target() {
            Some(target) => write!(f, " {target}"),
            None => Ok(()),
        }
    }
}

impl LimitsChange {
    /// Sets `setting` to `value` in the change.
    ///
    /// # Panics
    /// If `value` is not of `setting`'s [`Kind`]: the callers build the value for the
    /// setting's kind.
    pub fn set(&mut self, setting: Setting, value: Value) {
        use Setting as S;
        use Value as V;
        match (setting, value) {
            (S::Pps, V::Rate(r)) => self.pps = Some(r),
            (S::BurstPackets, V::Burst(b)) => self.burst_packets = Some(b),
            (S::Bps, V::Rate(r)) => self.bps = Some(r),
            (S::BurstBytes, V::Burst(b)) => self.burst_bytes = Some(b),
            (S::BlockFor, V::Duration(ms)) => self.block_for_ms = Some(ms),
            (S::Mode, V::Mode(m)) => self.mode = Some(m),
            (S::AdmitAfter, V::Count(n)) => self.admit_packets = Some(n),
            (S::AdmitRate, V::Rate(r)) => self.admit_rate = Some(r),
            (S::SynCookieRate, V::Rate(r)) => self.syn_cookie_rate = Some(r),
            (S::SynAdmitRate, V::Rate(r)) => self.syn_admit_rate = Some(r),
            (S::SynAutoQuiet, V::Duration(ms)) => self.syn_auto_quiet_ms = Some(ms),
            (S::DenyMode, V::Mode(m)) => self.deny_mode = Some(m),
            (S::MonitorClasses, V::Classes(set)) => self.monitor_classes = set.map(Some),
            (S::ClassPps(c), V::Rate(r)) => self.class_pps[c.index()] = Some(r),
            (S::Ceiling(c), V::Rate(r)) => self.ceiling_pps[c.index()] = Some(r),
            (S::PrefixLen(s), V::Count(n)) => self.prefix_len[s.index()] = Some(n),
            (S::PrefixPps(s), V::Rate(r)) => self.prefix_pps[s.index()] = Some(r),
            (S::PrefixBps(s), V::Rate(r)) => self.prefix_bps[s.index()] = Some(r),
            (S::PrefixClassPps(s, c), V::Rate(r)) => {
                self.prefix_class_pps[s.index()][c.index()] = Some(r);
            }
            (setting, value) => panic!("{value:?} is not a value of {setting:?}"),
        }
    }
}

impl Limits {
    /// The settings that are not per class or scope, as a log line says them: `packet
    /// rate 10000 packets/s, packet burst auto (10000 packets), ...`.
    #[must_use]
    pub fn describe(&self) -> String {
        let settings: Vec<String> = Setting::SCALARS
            .iter()
            .map(|setting| format!("{} {}", setting.label(), setting.show(self)))
            .collect();
        settings.join(", ")
    }

    /// The settings that differ from `other`, with this value and the other's.
    #[must_use]
    pub fn differences(&self, other: &Self) -> Vec<(Setting, Value, Value)> {
        Setting::all()
            .filter_map(|setting| {
                let (from, to) = (setting.get(self), setting.get(other));
                (from != to).then_some((setting, from, to))
            })
            .collect()
    }
}

/// The value alone, with no unit: `10000/s`, `auto`, `1m`, `[udp, icmp]`. The reload diff
/// prints these.
impl fmt::Display for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Rate(rate) => rate.fmt(f),
            Self::Burst(burst) => burst.fmt(f),
            Self::Duration(ms) => humantime::format_duration(Duration::from_millis(*ms)).fmt(f),
            Self::Mode(mode) => mode.fmt(f),
            Self::Count(n) => n.fmt(f),
            Self::Classes(set) => {
                let names: Vec<String> = ClassName::ALL
                    .iter()
                    .filter(|class| set[class.index()])
                    .map(ToString::to_string)
                    .collect();
                write!(f, "[{}]", names.join(", "))
            }
        }
    }
}

fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_setting_has_its_own_flag_target_and_key() {
        let all: Vec<Setting> = Setting::all().collect();
        assert_eq!(
            all.len(),
            Setting::SCALARS.len()
                + 2 * CLASSES
                + 3 * filter_common::PREFIX_SCOPES
                + filter_common::PREFIX_SCOPES * CLASSES,
            "every class and scope of every per-class and per-scope setting"
        );
        let names: std::collections::HashSet<String> =
            all.iter().map(ToString::to_string).collect();
        let keys: std::collections::HashSet<String> = all.iter().map(|s| s.key()).collect();
        assert_eq!(names.len(), all.len(), "error names are unique");
        assert_eq!(keys.len(), all.len(), "config keys are unique");
        assert_eq!(
            Setting::PrefixClassPps(ScopeName::V6Wide, ClassName::Syn).to_string(),
            "prefix-class-pps v6-wide:syn"
        );
        assert_eq!(
            Setting::PrefixClassPps(ScopeName::V6Wide, ClassName::Syn).key(),
            "prefix.v6-wide.class_pps.syn"
        );
    }

    #[test]
    fn every_setting_takes_its_own_value_back() {
        // A value of each setting's kind that is not the default, set through a change and
        // read back from the limits it makes.
        for setting in Setting::all() {
            let value = match setting.default_value() {
                Value::Rate(Rate::Unlimited) => Value::Rate(Rate::PerSecond(2_000_000)),
                Value::Rate(Rate::PerSecond(_)) => Value::Rate(Rate::Unlimited),
                // Bursts need a rate for `auto` to mean something: below.
                Value::Burst(_) => continue,
                Value::Duration(ms) => Value::Duration(ms * 2),
                Value::Mode(_) => Value::Mode(FilterMode::Monitor),
                Value::Count(n) => Value::Count(n - 1),
                Value::Classes(_) => Value::Classes([true; CLASSES]),
            };
            let mut change = LimitsChange::default();
            change.set(setting, value);
            let limits = Limits::default()
                .apply(&change)
                .unwrap_or_else(|e| panic!("{setting}: {e}"));
            assert_eq!(setting.get(&limits), value, "{setting}");
            assert_eq!(
                Limits::default().differences(&limits),
                [(setting, setting.default_value(), value)],
                "{setting} and only it differs"
            );
        }
        let mut change = LimitsChange::default();
        change.set(Setting::BurstBytes, Value::Burst(Burst::Exactly(4_000)));
        change.set(Setting::Bps, Value::Rate(Rate::PerSecond(32_000)));
        let limits = Limits::default().apply(&change).expect("valid");
        assert_eq!(
            Setting::BurstBytes.get(&limits),
            Value::Burst(Burst::Exactly(4_000))
        );
    }

    #[test]
    fn values_show_with_their_unit_and_bursts_with_what_auto_means() {
        let limits = Limits::default();
        let shown: Vec<String> = Setting::SCALARS
            .iter()
            .map(|s| format!("{}: {}", s.label(), s.show(&limits)))
            .collect();
        assert_eq!(
            shown,
            [
                "packet rate: 10000 packets/s",
                "packet burst: auto (10000 packets)",
                "bit rate: unlimited",
                "byte burst: -",
                "block for: 1m",
                "mode: enforce",
                "admit after: 4 packets",
                "admit rate: 5000 sources/s",
                "SYN cookie rate: 1000000 SYN-ACKs/s",
                "SYN cookie admit rate: 50000 sources/s",
                "SYN cookie auto quiet: 1m",
                "denylist: enforce",
                "monitored: []",
            ]
        );
        assert_eq!(Setting::PrefixLen(ScopeName::V6).show(&limits), "/64");
        assert_eq!(
            Value::Rate(Rate::PerSecond(5)).to_string(),
            "5/s",
            "the diff's form"
        );
    }
}
