//! The allowlist and the denylist: CIDR prefixes, IPv4 and IPv6, in four LPM tries
//! (`filter_common::map_names::{ALLOW_V4, ALLOW_V6, DENY_V4, DENY_V6}`).
//!
//! Plain data first, kernel last; each module depends only on those above it, and every
//! public item is re-exported here (`crate::lists::Prefix`):
//! - `prefix`: [`Prefix`] (parsing, validation, containment, the LPM key) and the
//!   source-table key of an address.
//! - this module: the vocabulary of lists ([`ListKind`], [`PerFamily`], entry views,
//!   expiry, [`ListError`]).
//! - `file`: list files ([`parse_list`], [`parse_list_file`]).
//! - `journal`: one list as an all-or-nothing transaction over a store: it validates the
//!   whole change against an index of what the store holds before it writes anything, and
//!   undoes its own writes if the kernel refuses one midway. Unit-tested with a store in
//!   memory.
//! - `kernel`: [`ListMaps`], the store that is the program's tries.
//!
//! # Semantics
//! - Prefixes are written canonically: host bits set (`198.18.0.1/24`) are an error, never
//!   silently masked, and a bare address is a /32 or /128.
//! - Adding a prefix that is already listed is not an error: it sets the entry's expiry to
//!   the one given (none: never) and keeps its hit counters.
//! - Only denylist entries expire; [`ListMaps::expire`] deletes them once their time has
//!   passed (the program already ignores an expired entry before that).
//! - Loading a file adds its prefixes to the list, as `add` does (it does not replace the
//!   list): one transaction, all or nothing.
//!
//! Expiry times are on the program's clock (see `filter_common`'s crate doc), as the
//! daemon's `now_ns` is.

mod file;
mod journal;
mod kernel;
mod prefix;

use std::{fmt, time::Duration};

use aya::maps::MapError;
use serde::{Deserialize, Serialize};

pub use self::{
    file::{LineError, ListFileError, MAX_REPORTED_LINES, parse_list, parse_list_file},
    kernel::ListMaps,
    prefix::{Family, LpmKey, Prefix, PrefixError},
};

/// Which list.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum ListKind {
    /// Sources that are never dropped; checked first, wins over everything.
    Allow,
    /// Sources that are always dropped (unless allowed).
    Deny,
}

impl ListKind {
    /// The word the CLI uses (`allow`, `deny`).
    #[must_use]
    pub const fn command(self) -> &'static str {
        match self {
            Self::Allow => "allow",
            Self::Deny => "deny",
        }
    }
}

impl fmt::Display for ListKind {
    /// `allowlist` or `denylist`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Allow => "allowlist",
            Self::Deny => "denylist",
        })
    }
}

/// One value per address family.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PerFamily<T> {
    /// IPv4.
    pub v4: T,
    /// IPv6.
    pub v6: T,
}

impl<T: Copy> PerFamily<T> {
    /// The value for `family`.
    #[must_use]
    pub fn get(&self, family: Family) -> T {
        match family {
            Family::V4 => self.v4,
            Family::V6 => self.v6,
        }
    }

    fn get_mut(&mut self, family: Family) -> &mut T {
        match family {
            Family::V4 => &mut self.v4,
            Family::V6 => &mut self.v6,
        }
    }
}

/// The expiry time of a denylist entry added at `now_ns` for `duration` (`--for`).
///
/// # Errors
/// If `duration` is zero or so long that the time does not fit in 64 bits of nanoseconds.
pub fn expiry_after(now_ns: u64, duration: Duration) -> Result<u64, ListError> {
    if duration.is_zero() {
        return Err(ListError::ZeroDuration);
    }
    u64::try_from(duration.as_nanos())
        .ok()
        .and_then(|d| now_ns.checked_add(d))
        .ok_or(ListError::DurationTooLong)
}

/// Why a list change was refused or failed. Unless the message says otherwise, nothing
/// changed.
#[derive(Debug, thiserror::Error)]
pub enum ListError {
    /// An expiry on the allowlist.
    #[error("allowlist entries do not expire (`--for` is for the denylist); nothing was added")]
    ExpiryOnAllowlist,
    /// An expiry time of zero, which the map reads as "never".
    #[error("expiry time 0 is not a time (leave the expiry out for \"never\"); nothing was added")]
    ZeroExpiry,
    /// `--for 0s`.
    #[error("the duration must be longer than zero")]
    ZeroDuration,
    /// A duration past the end of the clock.
    #[error("the duration is too long")]
    DurationTooLong,
    /// The change would take a trie over its capacity.
    #[error(
        "the {family} {kind} would hold {would_hold} prefixes, over its capacity of \
         {capacity}; nothing was added"
    )]
    OverCapacity {
        /// The list.
        kind: ListKind,
        /// The trie's family.
        family: Family,
        /// Entries after the change.
        would_hold: usize,
        /// The trie's capacity.
        capacity: u32,
    },
    /// Prefixes to remove that are not listed.
    #[error("{}", display_not_listed(*kind, missing))]
    NotListed {
        /// The list.
        kind: ListKind,
        /// Every prefix asked for that is not in it.
        missing: Vec<Prefix>,
    },
    /// The kernel refused a map operation; `outcome` says what was undone.
    #[error(
        "failed to {action} {prefix} in the {kind}: {}; {outcome}",
        describe(error)
    )]
    Map {
        /// The list.
        kind: ListKind,
        /// What was being done (`write`, `read`, `delete`).
        action: &'static str,
        /// The prefix it was done to.
        prefix: Prefix,
        /// The kernel's error (boxed: `MapError` is large).
        error: Box<MapError>,
        /// What became of the change (undone, or partly applied).
        outcome: String,
    },
    /// Walking a trie failed.
    #[error("cannot read the {kind}: {}", describe(error.as_ref()))]
    Walk {
        /// The list.
        kind: ListKind,
        /// The kernel's error (boxed: `MapError` is large).
        error: Box<MapError>,
    },
    /// A thread panicked while it held the list.
    #[error("the {kind} lock is poisoned (a thread panicked while changing it)")]
    Poisoned {
        /// The list.
        kind: ListKind,
    },
}

fn display_not_listed(kind: ListKind, missing: &[Prefix]) -> String {
    const SHOWN: usize = 10;
    let names = missing
        .iter()
        .take(SHOWN)
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ");
    let more = match missing.len().saturating_sub(SHOWN) {
        0 => String::new(),
        n => format!(" and {n} more"),
    };
    format!("not in the {kind}: {names}{more}; nothing was removed")
}

/// An error with its causes: aya's syscall errors keep the OS error in their source.
fn describe(error: &dyn std::error::Error) -> String {
    let mut out = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        out.push_str(": ");
        out.push_str(&cause.to_string());
        source = cause.source();
    }
    out
}

/// What an add did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AddReport {
    /// Prefixes that were not listed.
    pub added: usize,
    /// Prefixes already listed whose expiry changed (their hit counters are kept).
    pub updated: usize,
    /// Prefixes already listed with the same expiry: nothing written.
    pub unchanged: usize,
}

/// A list entry as `list` shows it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ListEntryView {
    /// The prefix.
    pub prefix: Prefix,
    /// Packets that matched it.
    pub hit_packets: u64,
    /// Bytes of those packets.
    pub hit_bytes: u64,
    /// Milliseconds until it expires, rounded up; `None`: never.
    pub expires_in_ms: Option<u64>,
    /// The fleet node whose block put it here (`[fleet]`); `None`: this node's own.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub origin: Option<String>,
}

/// Which tries hold at least one entry, so the data path can skip empty ones:
/// `allow.v4` is `FW_ALLOW_V4`, and so on.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ListPresence {
    /// The allowlist tries that are not empty.
    pub allow: PerFamily<bool>,
    /// The denylist tries that are not empty.
    pub deny: PerFamily<bool>,
}

impl ListPresence {
    /// The presence bits of `filter_common::list_flags` the data path reads.
    #[must_use]
    pub fn flag_bits(&self) -> u32 {
        use filter_common::list_flags;
        [
            (self.allow.v4, list_flags::ALLOW_V4),
            (self.allow.v6, list_flags::ALLOW_V6),
            (self.deny.v4, list_flags::DENY_V4),
            (self.deny.v6, list_flags::DENY_V6),
        ]
        .iter()
        .filter(|(present, _)| *present)
        .fold(0, |bits, (_, bit)| bits | bit)
    }
}

/// Whether an entry has stopped applying at `now_ns` (the program's rule as well).
fn is_expired(expires_ns: u64, now_ns: u64) -> bool {
    expires_ns != 0 && expires_ns <= now_ns
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A prefix the test knows is valid.
    pub(super) fn p(text: &str) -> Prefix {
        text.parse()
            .unwrap_or_else(|e| panic!("{text} must parse: {e}"))
    }

    #[test]
    fn list_kinds_are_clap_values() {
        use clap::ValueEnum as _;
        assert_eq!(ListKind::from_str("allow", false), Ok(ListKind::Allow));
        assert_eq!(ListKind::from_str("deny", false), Ok(ListKind::Deny));
        assert_eq!(ListKind::Deny.to_string(), "denylist");
        assert_eq!(
            serde_json::to_string(&ListKind::Deny).expect("json"),
            r#""deny""#
        );
    }

    #[test]
    fn expiry_is_now_plus_a_positive_duration() {
        assert_eq!(
            expiry_after(5, Duration::from_secs(1)).expect("1s"),
            1_000_000_005
        );
        assert!(matches!(
            expiry_after(5, Duration::ZERO),
            Err(ListError::ZeroDuration)
        ));
        assert!(matches!(
            expiry_after(u64::MAX - 1, Duration::from_secs(1)),
            Err(ListError::DurationTooLong)
        ));
    }

    #[test]
    fn presence_bits_name_the_nonempty_tries() {
        use filter_common::list_flags;
        assert_eq!(ListPresence::default().flag_bits(), 0);
        let presence = ListPresence {
            allow: PerFamily {
                v4: true,
                v6: false,
            },
            deny: PerFamily {
                v4: false,
                v6: true,
            },
        };
        assert_eq!(
            presence.flag_bits(),
            list_flags::ALLOW_V4 | list_flags::DENY_V6
        );
        let all = PerFamily { v4: true, v6: true };
        assert_eq!(
            ListPresence {
                allow: all,
                deny: all
            }
            .flag_bits(),
            list_flags::ALLOW_V4 | list_flags::ALLOW_V6 | list_flags::DENY_V4 | list_flags::DENY_V6
        );
    }

    #[test]
    fn per_family_values_are_picked_by_family() {
        let mut counts = PerFamily { v4: 1, v6: 2 };
        *counts.get_mut(Family::V6) += 5;
        assert_eq!((counts.get(Family::V4), counts.get(Family::V6)), (1, 7));
    }

    #[test]
    fn not_listed_names_ten_prefixes_then_counts_the_rest() {
        let missing: Vec<Prefix> = (0..12).map(|i| p(&format!("198.18.{i}.0/24"))).collect();
        let message = ListError::NotListed {
            kind: ListKind::Deny,
            missing,
        }
        .to_string();
        assert!(
            message.starts_with("not in the denylist: 198.18.0.0/24, 198.18.1.0/24, "),
            "{message}"
        );
        assert!(
            message.ends_with("198.18.9.0/24 and 2 more; nothing was removed"),
            "{message}"
        );
    }

    #[test]
    fn kernel_errors_are_shown_with_their_causes() {
        let error = ListError::Walk {
            kind: ListKind::Allow,
            error: Box::new(MapError::SyscallError(aya::sys::SyscallError {
                call: "bpf_map_get_next_key",
                io_error: std::io::Error::from_raw_os_error(libc::EPERM),
            })),
        };
        let message = error.to_string();
        assert!(
            message.starts_with(
                "cannot read the allowlist: `bpf_map_get_next_key` failed: Operation not permitted"
            ),
            "the OS error must be named: {message}"
        );
    }
}
