//! The values of the limits: rates, bursts, classes, scopes and modes, and their text
//! forms on the command line and in the config file.

use filter_common::{CLASSES, Class, Mode, PREFIX_SCOPES};
use serde::{Deserialize, Serialize};

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
    /// The count per second, `None` when unlimited.
    #[must_use]
    pub const fn per_second(self) -> Option<u64> {
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
    }

    #[test]
    fn scope_values_parse_and_bad_ones_name_the_problem() {
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
