//! SYN protection (`--syn-protect`): which TCP ports get SYN cookies from XDP for untracked
//! sources, as plain data. [`host`] reads and sets what the kernel of the interface's
//! network namespace must agree with; the program's side is its `syncookie` module.

pub mod host;

use std::{collections::BTreeSet, fmt, str::FromStr};

use filter_common::SynProtectConfig;

/// What `--syn-protect` asks for.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum SynProtect {
    /// No cookies: SYNs of untracked sources are held to the SYN ceiling.
    Off,
    /// On for the ports that have listeners while a spoofed SYN flood goes over the SYN
    /// ceiling, off again once it has been over for a while.
    #[default]
    Auto,
    /// Always on for these ports.
    Ports(BTreeSet<u16>),
}

/// Why a `--syn-protect` value is not one.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum SynProtectError {
    /// Nothing between two commas, or nothing at all.
    #[error("an empty port in `{0}`: give auto, off, or ports such as 80,443")]
    Empty(String),
    /// Not a number from 1 to 65535.
    #[error("`{0}` is not a TCP port (1 to 65535): give auto, off, or ports such as 80,443")]
    NotAPort(String),
}

impl FromStr for SynProtect {
    type Err = SynProtectError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim() {
            "off" => Ok(Self::Off),
            "auto" => Ok(Self::Auto),
            "" => Err(SynProtectError::Empty(s.to_owned())),
            list => list
                .split(',')
                .map(|port| parse_port(port, s))
                .collect::<Result<BTreeSet<u16>, _>>()
                .map(Self::Ports),
        }
    }
}

/// One port of a list.
fn parse_port(port: &str, whole: &str) -> Result<u16, SynProtectError> {
    let port = port.trim();
    if port.is_empty() {
        return Err(SynProtectError::Empty(whole.to_owned()));
    }
    match port.parse::<u16>() {
        Ok(0) | Err(_) => Err(SynProtectError::NotAPort(port.to_owned())),
        Ok(n) => Ok(n),
    }
}

impl fmt::Display for SynProtect {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Off => f.write_str("off"),
            Self::Auto => f.write_str("auto"),
            Self::Ports(ports) => f.write_str(&join_ports(ports)),
        }
    }
}

/// Whether the daemon may set `net.ipv4.tcp_syncookies=2` when SYN protection turns on.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum SysctlPolicy {
    /// Set it, and say so (and what it was).
    #[default]
    Set,
    /// Leave it as it is: the kernel then issues cookies only while a listener's SYN queue
    /// is full, so most SYNs fall back to the SYN ceiling (`syn_cookie_refused`).
    Keep,
}

impl fmt::Display for SysctlPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Set => "set",
            Self::Keep => "keep",
        })
    }
}

/// A change of `floodwall syn-protect`.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SynProtectChange {
    /// Protect exactly these ports, always.
    Set(BTreeSet<u16>),
    /// Protect these ports too (the protected set, or none with `auto` or `off`).
    Add(BTreeSet<u16>),
    /// Stop protecting these ports: all must be protected, else nothing changes.
    Remove(BTreeSet<u16>),
    /// Turn it off.
    Off,
    /// Let it turn itself on during SYN floods.
    Auto,
}

impl SynProtectChange {
    /// The setting after this change of `current`.
    ///
    /// # Errors
    /// A port to remove that is not protected, or a set that would be empty.
    pub fn apply(&self, current: &SynProtect) -> Result<SynProtect, String> {
        let protected = match current {
            SynProtect::Ports(ports) => ports.clone(),
            SynProtect::Off | SynProtect::Auto => BTreeSet::new(),
        };
        let ports = match self {
            Self::Off => return Ok(SynProtect::Off),
            Self::Auto => return Ok(SynProtect::Auto),
            Self::Set(ports) => ports.clone(),
            Self::Add(ports) => protected.union(ports).copied().collect(),
            Self::Remove(ports) => {
                let missing: BTreeSet<u16> = ports.difference(&protected).copied().collect();
                if !missing.is_empty() {
                    return Err(format!(
                        "not protected: {} (protected: {current}); nothing changed",
                        join_ports(&missing)
                    ));
                }
                protected.difference(ports).copied().collect()
            }
        };
        if ports.is_empty() {
            return Err(
                "no port would be left: use `floodwall syn-protect off` to turn it off; \
                 nothing changed"
                    .to_owned(),
            );
        }
        Ok(SynProtect::Ports(ports))
    }
}

/// Ports as the flag takes them: `80,443`.
#[must_use]
pub fn join_ports(ports: &BTreeSet<u16>) -> String {
    ports
        .iter()
        .map(u16::to_string)
        .collect::<Vec<_>>()
        .join(",")
}

/// What the SYN-ACKs carry, from the namespace's values (`host`). The budgets are limits
/// (`--syn-cookie-rate`, `--syn-admit-rate`): `Limits::to_kernel` fills them.
#[must_use]
pub fn synack_values(host: &host::SynHost) -> SynProtectConfig {
    SynProtectConfig {
        mss_v4: host.mss_v4,
        mss_v6: host.mss_v6,
        ttl: host.ttl,
        hop_limit: host.hop_limit,
        ..SynProtectConfig::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_parse_and_print_back() {
        assert_eq!("off".parse(), Ok(SynProtect::Off));
        assert_eq!(" auto ".parse(), Ok(SynProtect::Auto));
        assert_eq!(SynProtect::default(), SynProtect::Auto);
        let ports: SynProtect = "443, 80,80".parse().unwrap();
        assert_eq!(ports, SynProtect::Ports(BTreeSet::from([80, 443])));
        assert_eq!(ports.to_string(), "80,443");
    }

    #[test]
    fn bad_values_name_the_problem() {
        assert_eq!(
            "80,,443".parse::<SynProtect>(),
            Err(SynProtectError::Empty("80,,443".into()))
        );
        assert_eq!(
            "80,0".parse::<SynProtect>(),
            Err(SynProtectError::NotAPort("0".into()))
        );
        assert_eq!(
            "http".parse::<SynProtect>(),
            Err(SynProtectError::NotAPort("http".into()))
        );
        assert_eq!(
            "70000".parse::<SynProtect>(),
            Err(SynProtectError::NotAPort("70000".into()))
        );
        assert!("".parse::<SynProtect>().is_err());
    }

    #[test]
    fn changes_apply_all_or_nothing() {
        let ports = |p: &[u16]| p.iter().copied().collect::<BTreeSet<u16>>();
        let on = SynProtect::Ports(ports(&[80]));
        assert_eq!(
            SynProtectChange::Add(ports(&[443])).apply(&on),
            Ok(SynProtect::Ports(ports(&[80, 443])))
        );
        assert_eq!(
            SynProtectChange::Add(ports(&[443])).apply(&SynProtect::Auto),
            Ok(SynProtect::Ports(ports(&[443])))
        );
        let refused = SynProtectChange::Remove(ports(&[80, 22]))
            .apply(&on)
            .unwrap_err();
        assert!(refused.contains("not protected: 22"), "{refused}");
        assert!(SynProtectChange::Remove(ports(&[80])).apply(&on).is_err());
        assert_eq!(SynProtectChange::Off.apply(&on), Ok(SynProtect::Off));
    }
}
