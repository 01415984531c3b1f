//! The allowlist and the denylist: CIDR prefixes, IPv4 and IPv6, in four LPM tries
//! (`filter_common::map_names::{ALLOW_V4, ALLOW_V6, DENY_V4, DENY_V6}`).
//!
//! Plain data first: [`Prefix`] (parsing, validation, the LPM key) and list files
//! ([`parse_list`], [`parse_list_file`]) need no kernel. [`ListMaps`] applies changes to
//! the tries, each one all or nothing: it validates the whole change against an index of
//! what the tries hold before it writes anything, and undoes its own writes if the kernel
//! refuses one midway.
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

use std::{
    collections::{BTreeMap, BTreeSet, HashSet},
    fmt,
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
    path::Path,
    str::FromStr,
    sync::{Mutex, MutexGuard},
    time::Duration,
};

use anyhow::{Context as _, anyhow};
use aya::{
    Ebpf,
    maps::{IterableMap as _, LpmTrie, MapData, MapError, lpm_trie::Key},
};
use filter_common::{ListEntry, map_names};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// An IPv4 or IPv6 network: an address with no bits set beyond the prefix length.
///
/// Written and read as `198.18.0.0/24`, `2001:2::/48`; a bare address (`198.18.0.7`) is a
/// /32 or /128. Serialized as that string. Ordered IPv4 before IPv6, then by address, then
/// by length.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Prefix {
    addr: IpAddr,
    len: u8,
}

/// An address family.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Family {
    /// IPv4.
    V4,
    /// IPv6.
    V6,
}

impl Family {
    /// Bits in an address.
    #[must_use]
    pub const fn bits(self) -> u8 {
        match self {
            Self::V4 => 32,
            Self::V6 => 128,
        }
    }

    fn of(addr: IpAddr) -> Self {
        match addr {
            IpAddr::V4(_) => Self::V4,
            IpAddr::V6(_) => Self::V6,
        }
    }
}

impl fmt::Display for Family {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::V4 => "IPv4",
            Self::V6 => "IPv6",
        })
    }
}

/// Why a text is not a [`Prefix`]. Each names the text and the problem.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PrefixError {
    /// Nothing given.
    #[error("empty prefix (examples: 198.18.0.0/24, 2001:2::/48, 198.18.0.7)")]
    Empty,
    /// Whitespace inside: two prefixes, or a prefix and stray text.
    #[error("`{text}` is not one prefix: it contains whitespace (one prefix a line)")]
    Whitespace {
        /// The text given.
        text: String,
    },
    /// The part before the `/` is not an IP address.
    #[error(
        "`{text}` is not an IP address or prefix (examples: 198.18.0.0/24, 2001:2::/48, \
         198.18.0.7)"
    )]
    NotAnAddress {
        /// The text given.
        text: String,
    },
    /// The part after the `/` is not a number.
    #[error("`{text}`: prefix length `{len}` is not a number")]
    LengthNotANumber {
        /// The text given.
        text: String,
        /// The length as written.
        len: String,
    },
    /// The length is longer than the address.
    #[error("`{text}`: prefix length {len} is out of range for {family} (0 to {})", family.bits())]
    LengthOutOfRange {
        /// The text given.
        text: String,
        /// The length as written.
        len: String,
        /// The address family.
        family: Family,
    },
    /// Bits set beyond the prefix length.
    #[error("{text} has host bits set; did you mean {network} (or {host} for the one address)?")]
    HostBits {
        /// The prefix as given.
        text: String,
        /// The network the prefix length selects.
        network: Prefix,
        /// The address alone.
        host: Prefix,
    },
    /// An IPv4-mapped IPv6 prefix (`::ffff:198.18.0.0/120`): IPv4 sources are looked up in
    /// the IPv4 tries, so it would never match.
    #[error(
        "{text} is an IPv4-mapped IPv6 prefix, which no IPv4 packet is checked against; \
         write it as IPv4: {ipv4}"
    )]
    Ipv4Mapped {
        /// The prefix as given.
        text: String,
        /// The IPv4 prefix it stands for.
        ipv4: Prefix,
    },
}

impl Prefix {
    /// The prefix of `len` bits of `addr`.
    ///
    /// # Errors
    /// If `len` is longer than the address, if `addr` has bits set beyond `len`, or if it is
    /// an IPv4-mapped IPv6 prefix (write those as IPv4).
    pub fn new(addr: IpAddr, len: u8) -> Result<Self, PrefixError> {
        let text = format!("{addr}/{len}");
        let family = Family::of(addr);
        if len > family.bits() {
            return Err(PrefixError::LengthOutOfRange {
                text,
                len: len.to_string(),
                family,
            });
        }
        if let IpAddr::V6(v6) = addr
            && len >= 96
            && let Some(v4) = v6.to_ipv4_mapped()
        {
            let v4_len = len - 96;
            return Err(PrefixError::Ipv4Mapped {
                text,
                ipv4: Self {
                    addr: IpAddr::V4(mask_v4(v4, v4_len)),
                    len: v4_len,
                },
            });
        }
        let network = mask(addr, len);
        if network != addr {
            return Err(PrefixError::HostBits {
                text,
                network: Self { addr: network, len },
                host: Self {
                    addr,
                    len: family.bits(),
                },
            });
        }
        Ok(Self { addr, len })
    }

    /// The network address (host bits are zero).
    #[must_use]
    pub const fn addr(&self) -> IpAddr {
        self.addr
    }

    /// The prefix length in bits.
    #[must_use]
    pub const fn prefix_len(&self) -> u8 {
        self.len
    }

    /// IPv4 or IPv6.
    #[must_use]
    pub fn family(&self) -> Family {
        Family::of(self.addr)
    }

    /// The key of this prefix in an LPM trie: the prefix length, then the address in wire
    /// (network) order, as the kernel's `struct bpf_lpm_trie_key` lays it out.
    #[must_use]
    pub fn lpm_key(&self) -> LpmKey {
        let len = u32::from(self.len);
        match self.addr {
            IpAddr::V4(a) => LpmKey::V4(Key::new(len, a.octets())),
            IpAddr::V6(a) => LpmKey::V6(Key::new(len, a.octets())),
        }
    }

    /// The prefix an IPv4 trie key stands for; `None` if its length is over 32 (the kernel
    /// refuses such keys, so only a corrupt key has one). Bits beyond the length are
    /// cleared: the trie ignores them when it matches, and floodwall never writes them.
    #[must_use]
    pub fn from_v4_key(key: &Key<[u8; 4]>) -> Option<Self> {
        let len = u8::try_from(key.prefix_len()).ok().filter(|&l| l <= 32)?;
        Some(Self {
            addr: IpAddr::V4(mask_v4(Ipv4Addr::from(key.data()), len)),
            len,
        })
    }

    /// The prefix an IPv6 trie key stands for (see [`Prefix::from_v4_key`]).
    #[must_use]
    pub fn from_v6_key(key: &Key<[u8; 16]>) -> Option<Self> {
        let len = u8::try_from(key.prefix_len()).ok().filter(|&l| l <= 128)?;
        Some(Self {
            addr: IpAddr::V6(mask_v6(Ipv6Addr::from(key.data()), len)),
            len,
        })
    }
}

fn mask(addr: IpAddr, len: u8) -> IpAddr {
    match addr {
        IpAddr::V4(a) => IpAddr::V4(mask_v4(a, len)),
        IpAddr::V6(a) => IpAddr::V6(mask_v6(a, len)),
    }
}

fn mask_v4(addr: Ipv4Addr, len: u8) -> Ipv4Addr {
    let bits = u32::from(addr);
    Ipv4Addr::from(bits & u32::MAX.checked_shl(32 - u32::from(len)).unwrap_or(0))
}

fn mask_v6(addr: Ipv6Addr, len: u8) -> Ipv6Addr {
    let bits = u128::from(addr);
    Ipv6Addr::from(bits & u128::MAX.checked_shl(128 - u32::from(len)).unwrap_or(0))
}

impl fmt::Display for Prefix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.len)
    }
}

impl FromStr for Prefix {
    type Err = PrefixError;

    /// Parses `ADDR/LEN` or a bare `ADDR`. Surrounding whitespace is ignored.
    fn from_str(text: &str) -> Result<Self, PrefixError> {
        let text = text.trim();
        if text.is_empty() {
            return Err(PrefixError::Empty);
        }
        if text.contains(char::is_whitespace) {
            return Err(PrefixError::Whitespace { text: text.into() });
        }
        let (addr_text, len_text) = match text.split_once('/') {
            Some((addr, len)) => (addr, Some(len)),
            None => (text, None),
        };
        let addr: IpAddr = addr_text
            .parse()
            .map_err(|_| PrefixError::NotAnAddress { text: text.into() })?;
        let family = Family::of(addr);
        let len = match len_text {
            None => family.bits(),
            // Digits only: `u8::from_str` would also take `+24`.
            Some(len) if len.is_empty() || !len.bytes().all(|b| b.is_ascii_digit()) => {
                return Err(PrefixError::LengthNotANumber {
                    text: text.into(),
                    len: len.into(),
                });
            }
            Some(len) => len
                .parse::<u8>()
                .ok()
                .filter(|&l| l <= family.bits())
                .ok_or_else(|| PrefixError::LengthOutOfRange {
                    text: text.into(),
                    len: len.into(),
                    family,
                })?,
        };
        // Name the prefix as the operator wrote it, not as `new` would print it.
        Self::new(addr, len).map_err(|e| match e {
            PrefixError::HostBits { network, host, .. } => PrefixError::HostBits {
                text: text.into(),
                network,
                host,
            },
            PrefixError::Ipv4Mapped { ipv4, .. } => PrefixError::Ipv4Mapped {
                text: text.into(),
                ipv4,
            },
            other => other,
        })
    }
}

impl Serialize for Prefix {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Prefix {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// A prefix as an LPM trie key of the right width.
#[derive(Clone, Copy)]
pub enum LpmKey {
    /// For the IPv4 tries.
    V4(Key<[u8; 4]>),
    /// For the IPv6 tries.
    V6(Key<[u8; 16]>),
}

impl fmt::Debug for LpmKey {
    // aya's `Key` is `repr(packed)` and has no `Debug`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::V4(k) => write!(f, "V4({}, {:?})", k.prefix_len(), k.data()),
            Self::V6(k) => write!(f, "V6({}, {:?})", k.prefix_len(), k.data()),
        }
    }
}

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

// ---------------------------------------------------------------------------------------
// List files
// ---------------------------------------------------------------------------------------

/// At most this many bad lines are named in one [`ListFileError::Invalid`].
pub const MAX_REPORTED_LINES: usize = 20;

/// One bad line of a list file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LineError {
    /// 1-based line number.
    pub line: usize,
    /// What is wrong with it.
    pub error: PrefixError,
}

/// Why a list file was refused. Every message names the file, and the line where there is
/// one.
#[derive(Debug, thiserror::Error)]
pub enum ListFileError {
    /// The file cannot be read.
    #[error("cannot read {file}: {error}")]
    Read {
        /// The file as named.
        file: String,
        /// The I/O error.
        error: std::io::Error,
    },
    /// The file is not UTF-8 text.
    #[error("{file}:{line}: not UTF-8 text")]
    NotUtf8 {
        /// The file as named.
        file: String,
        /// 1-based line of the first invalid byte.
        line: usize,
    },
    /// Lines that are not prefixes.
    #[error("{}", display_invalid(file, errors, *invalid))]
    Invalid {
        /// The file as named.
        file: String,
        /// The first [`MAX_REPORTED_LINES`] bad lines.
        errors: Vec<LineError>,
        /// How many lines are bad in all.
        invalid: usize,
    },
}

fn display_invalid(file: &str, errors: &[LineError], invalid: usize) -> String {
    let mut lines: Vec<String> = errors
        .iter()
        .map(|e| format!("{file}:{}: {}", e.line, e.error))
        .collect();
    if invalid > errors.len() {
        lines.push(format!(
            "{file}: {} more invalid lines not shown ({invalid} in all)",
            invalid - errors.len()
        ));
    }
    lines.join("\n")
}

/// Parses the text of a list file: one prefix a line (as [`Prefix`] parses it), `#` starts
/// a comment (a whole line or the rest of one), blank lines are ignored, surrounding
/// whitespace is trimmed. A prefix listed twice is kept once, at its first line: lists
/// merged from several feeds repeat themselves, and a repeat is harmless. A file with no
/// prefixes gives an empty list.
///
/// `file_name` is only used in errors.
///
/// # Errors
/// [`ListFileError::Invalid`] naming every bad line (up to [`MAX_REPORTED_LINES`]) as
/// `FILE:LINE: problem`.
pub fn parse_list(text: &str, file_name: &str) -> Result<Vec<Prefix>, ListFileError> {
    // Editors on some systems start UTF-8 files with a byte order mark.
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut seen = HashSet::new();
    let mut prefixes = Vec::new();
    let mut errors = Vec::new();
    let mut invalid = 0;
    for (index, line) in text.lines().enumerate() {
        let content = line
            .split_once('#')
            .map_or(line, |(before, _)| before)
            .trim();
        if content.is_empty() {
            continue;
        }
        match content.parse::<Prefix>() {
            Ok(prefix) => {
                if seen.insert(prefix) {
                    prefixes.push(prefix);
                }
            }
            Err(error) => {
                invalid += 1;
                if errors.len() < MAX_REPORTED_LINES {
                    errors.push(LineError {
                        line: index + 1,
                        error,
                    });
                }
            }
        }
    }
    if invalid > 0 {
        return Err(ListFileError::Invalid {
            file: file_name.to_owned(),
            errors,
            invalid,
        });
    }
    Ok(prefixes)
}

/// Reads and parses a list file (see [`parse_list`]).
///
/// # Errors
/// If the file cannot be read or is not UTF-8 (naming the line), or as [`parse_list`].
pub fn parse_list_file(path: &Path) -> Result<Vec<Prefix>, ListFileError> {
    let file = path.display().to_string();
    let bytes = std::fs::read(path).map_err(|error| ListFileError::Read {
        file: file.clone(),
        error,
    })?;
    let text = std::str::from_utf8(&bytes).map_err(|e| ListFileError::NotUtf8 {
        line: bytes[..e.valid_up_to()].split(|&b| b == b'\n').count(),
        file: file.clone(),
    })?;
    parse_list(text, &file)
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

// ---------------------------------------------------------------------------------------
// Applying changes
// ---------------------------------------------------------------------------------------

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

fn is_missing(error: &MapError) -> bool {
    match error {
        MapError::KeyNotFound => true,
        // aya 0.14 reports a delete of a missing key as the syscall's ENOENT.
        MapError::SyscallError(e) => e.io_error.raw_os_error() == Some(libc::ENOENT),
        _ => false,
    }
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
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ListEntryView {
    /// The prefix.
    pub prefix: Prefix,
    /// Packets that matched it.
    pub hit_packets: u64,
    /// Bytes of those packets.
    pub hit_bytes: u64,
    /// Milliseconds until it expires, rounded up; `None`: never.
    pub expires_in_ms: Option<u64>,
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

/// Where a list's entries live: the two tries in production, a map in unit tests.
trait Store {
    /// The value of a prefix known to be stored.
    fn get(&self, prefix: &Prefix) -> Result<ListEntry, MapError>;
    /// Inserts or replaces an entry.
    fn insert(&mut self, prefix: &Prefix, entry: &ListEntry) -> Result<(), MapError>;
    /// Deletes an entry; `Ok(false)` if it was not there.
    fn remove(&mut self, prefix: &Prefix) -> Result<bool, MapError>;
    /// Every entry.
    fn entries(&self) -> Result<Vec<(Prefix, ListEntry)>, MapError>;
}

/// One list's IPv4 and IPv6 tries.
struct Tries {
    v4: LpmTrie<MapData, [u8; 4], ListEntry>,
    v6: LpmTrie<MapData, [u8; 16], ListEntry>,
}

impl Store for Tries {
    fn get(&self, prefix: &Prefix) -> Result<ListEntry, MapError> {
        // A trie lookup is a longest-prefix match, not an exact one: for a key that is not
        // stored it returns the longest stored prefix covering it. Callers only ask for
        // prefixes the index holds, whose own entry is the longest match.
        match prefix.lpm_key() {
            LpmKey::V4(key) => self.v4.get(&key, 0),
            LpmKey::V6(key) => self.v6.get(&key, 0),
        }
    }

    fn insert(&mut self, prefix: &Prefix, entry: &ListEntry) -> Result<(), MapError> {
        match prefix.lpm_key() {
            LpmKey::V4(key) => self.v4.insert(&key, entry, 0),
            LpmKey::V6(key) => self.v6.insert(&key, entry, 0),
        }
    }

    fn remove(&mut self, prefix: &Prefix) -> Result<bool, MapError> {
        // Delete, unlike lookup, needs the exact prefix (`trie_delete_elem`).
        let result = match prefix.lpm_key() {
            LpmKey::V4(key) => self.v4.remove(&key),
            LpmKey::V6(key) => self.v6.remove(&key),
        };
        match result {
            Ok(()) => Ok(true),
            Err(e) if is_missing(&e) => Ok(false),
            Err(e) => Err(e),
        }
    }

    fn entries(&self) -> Result<Vec<(Prefix, ListEntry)>, MapError> {
        let mut out = Vec::new();
        for item in &self.v4 {
            let (key, entry) = item?;
            match Prefix::from_v4_key(&key) {
                Some(prefix) => out.push((prefix, entry)),
                None => log::warn!("ignoring an IPv4 list key of length {}", key.prefix_len()),
            }
        }
        for item in &self.v6 {
            let (key, entry) = item?;
            match Prefix::from_v6_key(&key) {
                Some(prefix) => out.push((prefix, entry)),
                None => log::warn!("ignoring an IPv6 list key of length {}", key.prefix_len()),
            }
        }
        Ok(out)
    }
}

/// Undo record of one write: the prefix and its value before (`None`: it was not listed).
type Journal = Vec<(Prefix, Option<ListEntry>)>;

/// One list (both families): its store, the capacity of each trie, and an index of what
/// the store holds. The daemon is the only writer of keys and expiries (the program only
/// adds to hit counters), so the index answers "is it listed", "how many" and "what
/// expires next" without walking the tries, and it is exact where a trie lookup is a
/// longest-prefix match.
struct List<S> {
    kind: ListKind,
    store: S,
    capacity: PerFamily<u32>,
    /// Every stored prefix and its expiry (0: never).
    index: BTreeMap<Prefix, u64>,
    /// The entries that expire, by expiry time.
    by_expiry: BTreeSet<(u64, Prefix)>,
    count: PerFamily<usize>,
}

impl<S: Store> List<S> {
    fn new(kind: ListKind, store: S, capacity: PerFamily<u32>) -> Result<Self, ListError> {
        let mut list = Self {
            kind,
            store,
            capacity,
            index: BTreeMap::new(),
            by_expiry: BTreeSet::new(),
            count: PerFamily::default(),
        };
        list.resync()?;
        Ok(list)
    }

    /// Rebuilds the index from the store.
    fn resync(&mut self) -> Result<(), ListError> {
        let entries = self.store.entries().map_err(|error| ListError::Walk {
            kind: self.kind,
            error: Box::new(error),
        })?;
        self.index.clear();
        self.by_expiry.clear();
        self.count = PerFamily::default();
        for (prefix, entry) in entries {
            self.index_put(prefix, entry.expires_ns);
        }
        Ok(())
    }

    fn index_put(&mut self, prefix: Prefix, expires_ns: u64) {
        match self.index.insert(prefix, expires_ns) {
            Some(old) => {
                self.by_expiry.remove(&(old, prefix));
            }
            None => *self.count.get_mut(prefix.family()) += 1,
        }
        if expires_ns != 0 {
            self.by_expiry.insert((expires_ns, prefix));
        }
    }

    fn index_remove(&mut self, prefix: &Prefix) {
        if let Some(old) = self.index.remove(prefix) {
            self.by_expiry.remove(&(old, *prefix));
            *self.count.get_mut(prefix.family()) -= 1;
        }
    }

    fn len(&self) -> usize {
        self.index.len()
    }

    fn add(
        &mut self,
        prefixes: &[Prefix],
        expires_ns: Option<u64>,
    ) -> Result<AddReport, ListError> {
        if self.kind == ListKind::Allow && expires_ns.is_some() {
            return Err(ListError::ExpiryOnAllowlist);
        }
        if expires_ns == Some(0) {
            return Err(ListError::ZeroExpiry);
        }
        let expires_ns = expires_ns.unwrap_or(0);

        // Plan the whole change against the index before writing anything.
        let mut report = AddReport::default();
        let mut new = PerFamily::<usize>::default();
        let mut writes = Vec::new();
        for prefix in dedup(prefixes) {
            match self.index.get(&prefix) {
                None => {
                    report.added += 1;
                    *new.get_mut(prefix.family()) += 1;
                    writes.push((prefix, false));
                }
                Some(&old) if old == expires_ns => report.unchanged += 1,
                Some(_) => {
                    report.updated += 1;
                    writes.push((prefix, true));
                }
            }
        }
        for family in [Family::V4, Family::V6] {
            let would_hold = self.count.get(family) + new.get(family);
            let capacity = self.capacity.get(family);
            // A trie's max_entries counts stored prefixes only, not the intermediate nodes
            // the kernel adds (`lpm_trie.c`: `n_entries`).
            if would_hold > capacity as usize {
                return Err(ListError::OverCapacity {
                    kind: self.kind,
                    family,
                    would_hold,
                    capacity,
                });
            }
        }

        let mut journal = Journal::new();
        for (prefix, existed) in writes {
            match self.write(&prefix, existed, expires_ns) {
                Ok(previous) => journal.push((prefix, previous)),
                Err((action, error)) => {
                    let outcome = self.undo(journal);
                    return Err(ListError::Map {
                        kind: self.kind,
                        action,
                        prefix,
                        error: Box::new(error),
                        outcome,
                    });
                }
            }
        }
        for (prefix, _) in journal {
            self.index_put(prefix, expires_ns);
        }
        Ok(report)
    }

    /// Writes one entry with the given expiry, keeping the hit counters of an existing one.
    /// Returns the value before.
    ///
    /// Between reading an existing entry and writing it back, hits the program adds are
    /// lost (a few packets at most): the map API has no partial update.
    fn write(
        &mut self,
        prefix: &Prefix,
        existed: bool,
        expires_ns: u64,
    ) -> Result<Option<ListEntry>, (&'static str, MapError)> {
        let previous = if existed {
            Some(self.store.get(prefix).map_err(|e| ("read", e))?)
        } else {
            None
        };
        let entry = ListEntry {
            expires_ns,
            ..previous.unwrap_or_default()
        };
        self.store
            .insert(prefix, &entry)
            .map_err(|e| ("write", e))?;
        Ok(previous)
    }

    fn remove(&mut self, prefixes: &[Prefix]) -> Result<usize, ListError> {
        let prefixes = dedup(prefixes);
        let missing: Vec<Prefix> = prefixes
            .iter()
            .filter(|p| !self.index.contains_key(p))
            .copied()
            .collect();
        if !missing.is_empty() {
            return Err(ListError::NotListed {
                kind: self.kind,
                missing,
            });
        }
        let mut journal = Journal::new();
        for prefix in &prefixes {
            let step = self
                .store
                .get(prefix)
                .map_err(|e| ("read", e))
                .and_then(|previous| {
                    // Gone already (the index is stale): the goal is reached either way.
                    self.store
                        .remove(prefix)
                        .map(|_| previous)
                        .map_err(|e| ("delete", e))
                });
            match step {
                Ok(previous) => journal.push((*prefix, Some(previous))),
                Err((action, error)) => {
                    let outcome = self.undo(journal);
                    return Err(ListError::Map {
                        kind: self.kind,
                        action,
                        prefix: *prefix,
                        error: Box::new(error),
                        outcome,
                    });
                }
            }
        }
        for prefix in &prefixes {
            self.index_remove(prefix);
        }
        Ok(prefixes.len())
    }

    /// Undoes the writes of a failed change, newest first, and says how that went.
    fn undo(&mut self, journal: Journal) -> String {
        let done = journal.len();
        if done == 0 {
            return "nothing was changed".to_owned();
        }
        let mut failures = Vec::new();
        for (prefix, previous) in journal.into_iter().rev() {
            let result = match previous {
                None => self.store.remove(&prefix).map(|_| ()),
                Some(entry) => self.store.insert(&prefix, &entry),
            };
            if let Err(e) = result {
                failures.push(format!("{prefix} ({})", describe(&e)));
            }
        }
        if failures.is_empty() {
            return format!("the {done} change(s) made before it were undone; nothing was changed");
        }
        // The store no longer matches the index: read it back so that later changes are
        // planned against what is really there.
        let resync = match self.resync() {
            Ok(()) => String::new(),
            Err(e) => format!(" (and reading it back failed: {e})"),
        };
        format!(
            "undoing the {done} change(s) made before it failed for {}: the {} may be partly \
             changed, check it with `floodwall {} list`{resync}",
            failures.join(", "),
            self.kind,
            self.kind.command(),
        )
    }

    fn list(&self, now_ns: u64) -> Result<Vec<ListEntryView>, ListError> {
        let entries = self.store.entries().map_err(|error| ListError::Walk {
            kind: self.kind,
            error: Box::new(error),
        })?;
        let mut views: Vec<ListEntryView> = entries
            .into_iter()
            .filter(|(_, entry)| !is_expired(entry.expires_ns, now_ns))
            .map(|(prefix, entry)| ListEntryView {
                prefix,
                hit_packets: entry.hit_packets,
                hit_bytes: entry.hit_bytes,
                expires_in_ms: (entry.expires_ns != 0)
                    .then(|| (entry.expires_ns - now_ns).div_ceil(1_000_000)),
            })
            .collect();
        views.sort_unstable_by_key(|v| v.prefix);
        Ok(views)
    }

    fn expire(&mut self, now_ns: u64) -> Result<Vec<Prefix>, ListError> {
        let due: Vec<Prefix> = self
            .by_expiry
            .iter()
            .take_while(|(expires_ns, _)| is_expired(*expires_ns, now_ns))
            .map(|(_, prefix)| *prefix)
            .collect();
        let mut expired = Vec::with_capacity(due.len());
        for prefix in due {
            // Not all or nothing: the program ignores an expired entry anyway, so one that
            // cannot be deleted now is retried on the next pass.
            if let Err(error) = self.store.remove(&prefix) {
                let outcome = if expired.is_empty() {
                    "it stays until the next pass".to_owned()
                } else {
                    format!(
                        "it stays until the next pass; deleted before it: {}",
                        expired
                            .iter()
                            .map(ToString::to_string)
                            .collect::<Vec<_>>()
                            .join(", ")
                    )
                };
                return Err(ListError::Map {
                    kind: self.kind,
                    action: "delete expired",
                    prefix,
                    error: Box::new(error),
                    outcome,
                });
            }
            self.index_remove(&prefix);
            expired.push(prefix);
        }
        Ok(expired)
    }

    fn next_expiry(&self) -> Option<u64> {
        self.by_expiry.first().map(|(expires_ns, _)| *expires_ns)
    }
}

/// The prefixes without repeats, in their first order.
fn dedup(prefixes: &[Prefix]) -> Vec<Prefix> {
    let mut seen = HashSet::with_capacity(prefixes.len());
    prefixes
        .iter()
        .copied()
        .filter(|p| seen.insert(*p))
        .collect()
}

/// The allowlist and denylist tries, with one lock per list: a change to one list is one
/// transaction over both of its tries.
pub struct ListMaps {
    allow: Mutex<List<Tries>>,
    deny: Mutex<List<Tries>>,
}

fn take_trie<K: aya::Pod>(
    ebpf: &mut Ebpf,
    name: &str,
) -> anyhow::Result<(LpmTrie<MapData, K, ListEntry>, u32)> {
    let map = ebpf
        .take_map(name)
        .ok_or_else(|| anyhow!("the XDP object has no map named {name}"))?;
    let trie = LpmTrie::try_from(map)
        .with_context(|| format!("map {name} is not an LPM trie of the expected layout"))?;
    let capacity = trie
        .map()
        .info()
        .with_context(|| format!("cannot read the capacity of map {name}"))?
        .max_entries();
    Ok((trie, capacity))
}

fn take_list(ebpf: &mut Ebpf, kind: ListKind, v4: &str, v6: &str) -> anyhow::Result<List<Tries>> {
    let (v4, capacity_v4) = take_trie(ebpf, v4)?;
    let (v6, capacity_v6) = take_trie(ebpf, v6)?;
    List::new(
        kind,
        Tries { v4, v6 },
        PerFamily {
            v4: capacity_v4,
            v6: capacity_v6,
        },
    )
    .with_context(|| format!("cannot read the {kind}"))
}

impl ListMaps {
    /// Takes the four tries out of a loaded object and reads what they hold (nothing, for a
    /// freshly loaded object). Each trie's capacity is its `max_entries` as the kernel
    /// reports it.
    ///
    /// # Errors
    /// If a map is missing, is not an LPM trie of `ListEntry` with the key width
    /// `filter_common` says, or cannot be read.
    pub fn take(ebpf: &mut Ebpf) -> anyhow::Result<Self> {
        Ok(Self {
            allow: Mutex::new(take_list(
                ebpf,
                ListKind::Allow,
                map_names::ALLOW_V4,
                map_names::ALLOW_V6,
            )?),
            deny: Mutex::new(take_list(
                ebpf,
                ListKind::Deny,
                map_names::DENY_V4,
                map_names::DENY_V6,
            )?),
        })
    }

    fn lock(&self, kind: ListKind) -> Result<MutexGuard<'_, List<Tries>>, ListError> {
        match kind {
            ListKind::Allow => &self.allow,
            ListKind::Deny => &self.deny,
        }
        .lock()
        .map_err(|_| ListError::Poisoned { kind })
    }

    /// Adds prefixes to a list, all or nothing. A prefix already listed gets the expiry
    /// given (none: never) and keeps its hit counters; repeats in `prefixes` count once.
    /// `expires_ns` is a time on the program's clock (see [`expiry_after`]).
    ///
    /// # Errors
    /// An expiry on the allowlist, an expiry of 0, more prefixes than a trie's capacity
    /// (counting those already listed), or a map write the kernel refuses: the writes made
    /// before it are undone and the error says so.
    pub fn add(
        &self,
        kind: ListKind,
        prefixes: &[Prefix],
        expires_ns: Option<u64>,
    ) -> Result<AddReport, ListError> {
        self.lock(kind)?.add(prefixes, expires_ns)
    }

    /// Bulk load (`floodwall allow|deny load FILE`): the prefixes of a list file are added
    /// to the list exactly as [`ListMaps::add`] adds them, in one all-or-nothing
    /// transaction. It adds to the list, it does not replace it: remove what should go.
    ///
    /// # Errors
    /// As [`ListMaps::add`].
    pub fn load(
        &self,
        kind: ListKind,
        prefixes: &[Prefix],
        expires_ns: Option<u64>,
    ) -> Result<AddReport, ListError> {
        self.add(kind, prefixes, expires_ns)
    }

    /// Removes prefixes from a list, all or nothing; returns how many (repeats count once).
    /// A prefix is removed only as listed: removing `198.18.0.0/24` does not touch
    /// `198.18.0.0/16`.
    ///
    /// # Errors
    /// If a prefix is not listed (all such are named, and nothing is removed), or the
    /// kernel refuses a delete (the deletes before it are undone).
    pub fn remove(&self, kind: ListKind, prefixes: &[Prefix]) -> Result<usize, ListError> {
        self.lock(kind)?.remove(prefixes)
    }

    /// Which of `prefixes` the list holds.
    ///
    /// # Errors
    /// If the lock is poisoned.
    pub fn listed(&self, kind: ListKind, prefixes: &[Prefix]) -> Result<Vec<Prefix>, ListError> {
        let list = self.lock(kind)?;
        Ok(prefixes
            .iter()
            .filter(|p| list.index.contains_key(p))
            .copied()
            .collect())
    }

    /// Removes those of `prefixes` the list holds, all or nothing, and returns them; the
    /// others are not an error (a reload removing an entry the operator already removed).
    ///
    /// # Errors
    /// If the kernel refuses a delete (the deletes before it are undone).
    pub fn remove_listed(
        &self,
        kind: ListKind,
        prefixes: &[Prefix],
    ) -> Result<Vec<Prefix>, ListError> {
        let mut list = self.lock(kind)?;
        let listed: Vec<Prefix> = dedup(prefixes)
            .into_iter()
            .filter(|p| list.index.contains_key(p))
            .collect();
        if !listed.is_empty() {
            list.remove(&listed)?;
        }
        Ok(listed)
    }

    /// The entries of a list with their hit counters, sorted by prefix, leaving out those
    /// expired at `now_ns`. Walks the tries (two syscalls per entry).
    ///
    /// # Errors
    /// If the walk fails.
    pub fn list(&self, kind: ListKind, now_ns: u64) -> Result<Vec<ListEntryView>, ListError> {
        self.lock(kind)?.list(now_ns)
    }

    /// Deletes the denylist entries expired at `now_ns` (expiry set and not after now) and
    /// returns them, for the log. Costs nothing when none is due.
    ///
    /// # Errors
    /// If the kernel refuses a delete; that entry and the ones after it are retried on the
    /// next call, and the error names the ones deleted before it.
    pub fn expire(&self, now_ns: u64) -> Result<Vec<Prefix>, ListError> {
        self.lock(ListKind::Deny)?.expire(now_ns)
    }

    /// When the next denylist entry expires, if one does: the daemon can sleep until then.
    ///
    /// # Errors
    /// If the lock is poisoned.
    pub fn next_expiry(&self) -> Result<Option<u64>, ListError> {
        Ok(self.lock(ListKind::Deny)?.next_expiry())
    }

    /// Entries in a list (both families, expired ones not yet deleted included).
    ///
    /// # Errors
    /// If the lock is poisoned.
    pub fn len(&self, kind: ListKind) -> Result<usize, ListError> {
        Ok(self.lock(kind)?.len())
    }

    /// Entries in a list, by family.
    ///
    /// # Errors
    /// If the lock is poisoned.
    pub fn counts(&self, kind: ListKind) -> Result<PerFamily<usize>, ListError> {
        Ok(self.lock(kind)?.count)
    }

    /// Capacity of a list's tries.
    ///
    /// # Errors
    /// If the lock is poisoned.
    pub fn capacity(&self, kind: ListKind) -> Result<PerFamily<u32>, ListError> {
        Ok(self.lock(kind)?.capacity)
    }

    /// Which tries hold at least one entry. Read it after a change and store it where the
    /// program reads it, so that the data path skips empty tries.
    ///
    /// # Errors
    /// If a lock is poisoned.
    pub fn nonempty(&self) -> Result<ListPresence, ListError> {
        // Always allow, then deny: one lock order.
        let allow = self.lock(ListKind::Allow)?.count;
        let deny = self.lock(ListKind::Deny)?.count;
        let nonempty = |count: PerFamily<usize>| PerFamily {
            v4: count.v4 > 0,
            v6: count.v6 > 0,
        };
        Ok(ListPresence {
            allow: nonempty(allow),
            deny: nonempty(deny),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(text: &str) -> Prefix {
        text.parse()
            .unwrap_or_else(|e| panic!("{text} must parse: {e}"))
    }

    fn err(text: &str) -> String {
        text.parse::<Prefix>()
            .expect_err("must be refused")
            .to_string()
    }

    #[test]
    fn prefixes_parse_and_print_canonically() {
        assert_eq!(p("198.18.0.0/24").to_string(), "198.18.0.0/24");
        assert_eq!(p("2001:2::/48").to_string(), "2001:2::/48");
        assert_eq!(
            p("198.18.0.7").to_string(),
            "198.18.0.7/32",
            "bare v4 is a /32"
        );
        assert_eq!(
            p("2001:2::7").to_string(),
            "2001:2::7/128",
            "bare v6 is a /128"
        );
        assert_eq!(p("0.0.0.0/0").prefix_len(), 0);
        assert_eq!(p("::/0").family(), Family::V6);
        assert_eq!(p("  198.18.0.0/15 ").to_string(), "198.18.0.0/15");
        assert_eq!(
            p("2001:0002:0000::/48"),
            p("2001:2::/48"),
            "v6 is compared as an address, not as text"
        );
    }

    #[test]
    fn prefixes_sort_v4_first_then_by_address_then_length() {
        let mut list = [
            p("2001:2::/48"),
            p("198.18.0.0/24"),
            p("198.18.0.0/16"),
            p("10.0.0.0/8"),
        ];
        list.sort();
        let text: Vec<_> = list.iter().map(ToString::to_string).collect();
        assert_eq!(
            text,
            [
                "10.0.0.0/8",
                "198.18.0.0/16",
                "198.18.0.0/24",
                "2001:2::/48"
            ]
        );
    }

    #[test]
    fn bad_prefixes_are_refused_with_the_text_and_the_problem() {
        let cases = [
            ("", "empty prefix"),
            ("   ", "empty prefix"),
            (
                "example.com",
                "`example.com` is not an IP address or prefix",
            ),
            (
                "198.18.0.0/24/1",
                "`198.18.0.0/24/1`: prefix length `24/1` is not a number",
            ),
            ("198.18.0.0/", "prefix length `` is not a number"),
            ("198.18.0.0/+24", "prefix length `+24` is not a number"),
            (
                "198.18.0.0/33",
                "`198.18.0.0/33`: prefix length 33 is out of range for IPv4 (0 to 32)",
            ),
            (
                "198.18.0.0/300",
                "prefix length 300 is out of range for IPv4",
            ),
            (
                "2001:2::/129",
                "prefix length 129 is out of range for IPv6 (0 to 128)",
            ),
            (
                "198.18.0.1/24",
                "198.18.0.1/24 has host bits set; did you mean 198.18.0.0/24 (or 198.18.0.1/32 \
                 for the one address)?",
            ),
            (
                "2001:2::1/48",
                "2001:2::1/48 has host bits set; did you mean 2001:2::/48",
            ),
            ("0.0.0.1/0", "did you mean 0.0.0.0/0"),
            (
                "::ffff:198.18.0.0/120",
                "::ffff:198.18.0.0/120 is an IPv4-mapped IPv6 prefix, which no IPv4 packet is \
                 checked against; write it as IPv4: 198.18.0.0/24",
            ),
            ("::ffff:198.18.0.7", "write it as IPv4: 198.18.0.7/32"),
            ("198.18.0.0/24 198.18.1.0/24", "contains whitespace"),
            ("fe80::1%eth0", "is not an IP address"),
            ("010.0.0.0/8", "is not an IP address"),
        ];
        for (text, expected) in cases {
            let message = err(text);
            assert!(
                message.contains(expected),
                "error for `{text}` is `{message}`, expected it to contain `{expected}`"
            );
        }
    }

    #[test]
    fn new_checks_like_parsing() {
        let addr: IpAddr = "198.18.0.1".parse().expect("address");
        assert!(matches!(
            Prefix::new(addr, 24),
            Err(PrefixError::HostBits { network, .. }) if network == p("198.18.0.0/24")
        ));
        assert!(matches!(
            Prefix::new(addr, 33),
            Err(PrefixError::LengthOutOfRange {
                family: Family::V4,
                ..
            })
        ));
        assert_eq!(Prefix::new(addr, 32), Ok(p("198.18.0.1")));
    }

    #[test]
    fn lpm_keys_are_length_then_address_in_wire_order() {
        let LpmKey::V4(key) = p("198.18.0.0/24").lpm_key() else {
            panic!("an IPv4 prefix must give an IPv4 key");
        };
        assert_eq!(key.prefix_len(), 24);
        assert_eq!(key.data(), [198, 18, 0, 0], "most significant octet first");
        assert_eq!(
            Prefix::from_v4_key(&key),
            Some(p("198.18.0.0/24")),
            "a key decodes back to its prefix"
        );

        let LpmKey::V6(key) = p("2001:2::/48").lpm_key() else {
            panic!("an IPv6 prefix must give an IPv6 key");
        };
        assert_eq!(key.prefix_len(), 48);
        assert_eq!(
            key.data(),
            [0x20, 0x01, 0x00, 0x02, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]
        );
        assert_eq!(Prefix::from_v6_key(&key), Some(p("2001:2::/48")));

        // Raw key bytes as the kernel sees them: u32 length in host order, then the data.
        let key = Key::new(15, [198u8, 18, 0, 0]);
        // SAFETY: Key<[u8; 4]> is repr(C, packed): 4 + 4 bytes, no padding.
        let bytes: [u8; 8] = unsafe { std::mem::transmute(key) };
        assert_eq!(bytes[..4], 15u32.to_ne_bytes());
        assert_eq!(bytes[4..], [198, 18, 0, 0]);
    }

    #[test]
    fn keys_from_the_kernel_are_masked_and_bounded() {
        assert_eq!(
            Prefix::from_v4_key(&Key::new(24, [198, 18, 0, 9])),
            Some(p("198.18.0.0/24"))
        );
        assert_eq!(Prefix::from_v4_key(&Key::new(33, [0; 4])), None);
        assert_eq!(Prefix::from_v6_key(&Key::new(129, [0; 16])), None);
        assert_eq!(
            Prefix::from_v4_key(&Key::new(0, [1, 2, 3, 4])),
            Some(p("0.0.0.0/0"))
        );
    }

    #[test]
    fn serde_uses_the_string_form() {
        let json = serde_json::to_string(&[p("198.18.0.0/24"), p("2001:2::/48")]).expect("json");
        assert_eq!(json, r#"["198.18.0.0/24","2001:2::/48"]"#);
        let back: Vec<Prefix> = serde_json::from_str(&json).expect("parse back");
        assert_eq!(back, [p("198.18.0.0/24"), p("2001:2::/48")]);
        let bad = serde_json::from_str::<Prefix>(r#""198.18.0.1/24""#).expect_err("host bits");
        assert!(bad.to_string().contains("has host bits set"), "{bad}");
        assert_eq!(
            serde_json::to_string(&ListKind::Deny).expect("json"),
            r#""deny""#
        );
    }

    #[test]
    fn list_kinds_are_clap_values() {
        use clap::ValueEnum as _;
        assert_eq!(ListKind::from_str("allow", false), Ok(ListKind::Allow));
        assert_eq!(ListKind::from_str("deny", false), Ok(ListKind::Deny));
        assert_eq!(ListKind::Deny.to_string(), "denylist");
    }

    #[test]
    fn list_files_take_comments_blanks_and_whitespace() {
        let text = "\u{feff}# feed of 2025-01-01\n\
                    198.18.0.0/24\n\
                    \n\
                    \t 198.18.1.0/24   # trailing comment\r\n\
                    2001:2::/48\n\
                    198.18.0.7\n\
                    198.18.0.0/24   # repeated: kept once\n\
                    #198.18.9.0/24\n";
        let prefixes = parse_list(text, "blocklist.txt").expect("valid file");
        assert_eq!(
            prefixes,
            [
                p("198.18.0.0/24"),
                p("198.18.1.0/24"),
                p("2001:2::/48"),
                p("198.18.0.7/32")
            ]
        );
        assert_eq!(parse_list("# nothing\n\n", "empty.txt").expect("empty"), []);
    }

    #[test]
    fn list_file_errors_name_the_file_line_and_problem() {
        let text = "198.18.0.0/24\n\n198.18.0.1/24\nnot-an-address # comment\n2001:2::/48\n";
        let error = parse_list(text, "blocklist.txt").expect_err("two bad lines");
        assert_eq!(
            error.to_string(),
            "blocklist.txt:3: 198.18.0.1/24 has host bits set; did you mean 198.18.0.0/24 (or \
             198.18.0.1/32 for the one address)?\n\
             blocklist.txt:4: `not-an-address` is not an IP address or prefix (examples: \
             198.18.0.0/24, 2001:2::/48, 198.18.0.7)"
        );
        let ListFileError::Invalid {
            errors, invalid, ..
        } = error
        else {
            panic!("bad lines must give Invalid");
        };
        assert_eq!(invalid, 2);
        assert_eq!(errors.iter().map(|e| e.line).collect::<Vec<_>>(), [3, 4]);
    }

    #[test]
    fn many_bad_lines_are_summed_up() {
        let text = "bad\n".repeat(MAX_REPORTED_LINES + 5);
        let message = parse_list(&text, "f.txt").expect_err("all bad").to_string();
        assert_eq!(message.lines().count(), MAX_REPORTED_LINES + 1);
        assert!(
            message.ends_with("f.txt: 5 more invalid lines not shown (25 in all)"),
            "{message}"
        );
    }

    #[test]
    fn list_file_read_errors_name_the_file_and_line() {
        let dir = std::env::temp_dir().join(format!("floodwall-lists-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let missing = dir.join("missing.txt");
        let message = parse_list_file(&missing).expect_err("missing").to_string();
        assert!(
            message.starts_with(&format!("cannot read {}: ", missing.display())),
            "{message}"
        );
        let binary = dir.join("binary.txt");
        std::fs::write(&binary, b"198.18.0.0/24\n198.18.\xff\n").expect("write");
        let message = parse_list_file(&binary).expect_err("not UTF-8").to_string();
        assert_eq!(message, format!("{}:2: not UTF-8 text", binary.display()));
        let good = dir.join("good.txt");
        std::fs::write(&good, "198.18.0.0/24\n").expect("write");
        assert_eq!(parse_list_file(&good).expect("good"), [p("198.18.0.0/24")]);
        std::fs::remove_dir_all(&dir).expect("clean up");
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

    /// A store in memory, with a capacity per family and a write that can be made to fail.
    #[derive(Default)]
    struct FakeStore {
        entries: BTreeMap<Prefix, ListEntry>,
        /// Fail the write (insert) with this index, counting from 0.
        fail_insert: Option<usize>,
        /// Fail the delete with this index.
        fail_remove: Option<usize>,
        inserts: usize,
        removes: usize,
    }

    fn einval() -> MapError {
        MapError::SyscallError(aya::sys::SyscallError {
            call: "bpf_map_update_elem",
            io_error: std::io::Error::from_raw_os_error(libc::EINVAL),
        })
    }

    impl Store for FakeStore {
        fn get(&self, prefix: &Prefix) -> Result<ListEntry, MapError> {
            self.entries
                .get(prefix)
                .copied()
                .ok_or(MapError::KeyNotFound)
        }
        fn insert(&mut self, prefix: &Prefix, entry: &ListEntry) -> Result<(), MapError> {
            let n = self.inserts;
            self.inserts += 1;
            if self.fail_insert == Some(n) {
                return Err(einval());
            }
            self.entries.insert(*prefix, *entry);
            Ok(())
        }
        fn remove(&mut self, prefix: &Prefix) -> Result<bool, MapError> {
            let n = self.removes;
            self.removes += 1;
            if self.fail_remove == Some(n) {
                return Err(einval());
            }
            Ok(self.entries.remove(prefix).is_some())
        }
        fn entries(&self) -> Result<Vec<(Prefix, ListEntry)>, MapError> {
            Ok(self.entries.iter().map(|(p, e)| (*p, *e)).collect())
        }
    }

    fn list(kind: ListKind, capacity: u32) -> List<FakeStore> {
        List::new(
            kind,
            FakeStore::default(),
            PerFamily {
                v4: capacity,
                v6: capacity,
            },
        )
        .expect("empty store")
    }

    fn entry(hits: u64, expires_ns: u64) -> ListEntry {
        ListEntry {
            hit_packets: hits,
            hit_bytes: hits * 100,
            expires_ns,
        }
    }

    fn prefixes(texts: &[&str]) -> Vec<Prefix> {
        texts.iter().map(|t| p(t)).collect()
    }

    #[test]
    fn add_then_list_then_remove() {
        let mut deny = list(ListKind::Deny, 10);
        let report = deny
            .add(
                &prefixes(&["198.18.0.0/24", "2001:2::/48", "198.18.0.0/24"]),
                None,
            )
            .expect("add");
        assert_eq!(
            report,
            AddReport {
                added: 2,
                updated: 0,
                unchanged: 0
            },
            "a repeat counts once"
        );
        assert_eq!(deny.count, PerFamily { v4: 1, v6: 1 });
        let views = deny.list(0).expect("list");
        assert_eq!(views.len(), 2);
        assert_eq!(views[0].prefix, p("198.18.0.0/24"));
        assert_eq!(
            (
                views[0].hit_packets,
                views[0].hit_bytes,
                views[0].expires_in_ms
            ),
            (0, 0, None)
        );
        assert_eq!(deny.remove(&prefixes(&["2001:2::/48"])).expect("remove"), 1);
        assert_eq!(deny.len(), 1);
        assert_eq!(deny.store.entries.len(), 1);
    }

    #[test]
    fn re_adding_keeps_counters_and_sets_the_expiry() {
        let mut deny = list(ListKind::Deny, 10);
        deny.store.entries.insert(p("198.18.0.0/24"), entry(7, 0));
        deny.resync().expect("resync");
        let report = deny
            .add(&prefixes(&["198.18.0.0/24"]), Some(5_000_000_000))
            .expect("re-add with expiry");
        assert_eq!(report.updated, 1);
        assert_eq!(
            deny.store.entries[&p("198.18.0.0/24")],
            entry(7, 5_000_000_000)
        );
        assert_eq!(deny.next_expiry(), Some(5_000_000_000));

        let inserts = deny.store.inserts;
        let report = deny
            .add(&prefixes(&["198.18.0.0/24"]), Some(5_000_000_000))
            .expect("same again");
        assert_eq!(report.unchanged, 1);
        assert_eq!(
            deny.store.inserts, inserts,
            "an unchanged entry is not rewritten"
        );

        deny.add(&prefixes(&["198.18.0.0/24"]), None)
            .expect("never");
        assert_eq!(deny.store.entries[&p("198.18.0.0/24")], entry(7, 0));
        assert_eq!(deny.next_expiry(), None, "no longer expires");
    }

    #[test]
    fn allowlist_entries_take_no_expiry() {
        let mut allow = list(ListKind::Allow, 10);
        let error = allow
            .add(&prefixes(&["198.18.0.0/24"]), Some(1))
            .expect_err("allow with expiry");
        assert!(matches!(error, ListError::ExpiryOnAllowlist), "{error}");
        assert!(allow.store.entries.is_empty());
        let error = list(ListKind::Deny, 10)
            .add(&prefixes(&["198.18.0.0/24"]), Some(0))
            .expect_err("expiry 0");
        assert!(matches!(error, ListError::ZeroExpiry), "{error}");
    }

    #[test]
    fn over_capacity_changes_nothing() {
        let mut deny = list(ListKind::Deny, 2);
        deny.add(&prefixes(&["198.18.0.0/24"]), None).expect("one");
        let error = deny
            .add(
                &prefixes(&["198.18.1.0/24", "198.18.2.0/24", "2001:2::/48"]),
                None,
            )
            .expect_err("v4 over capacity");
        assert_eq!(
            error.to_string(),
            "the IPv4 denylist would hold 3 prefixes, over its capacity of 2; nothing was added"
        );
        assert_eq!(deny.store.entries.len(), 1, "nothing added, v6 included");
        // Re-adding a listed prefix takes no room.
        deny.add(&prefixes(&["198.18.0.0/24", "198.18.1.0/24"]), Some(9))
            .expect("fits exactly");
        assert_eq!(deny.count.v4, 2);
    }

    #[test]
    fn a_failed_write_undoes_the_writes_before_it() {
        let mut deny = list(ListKind::Deny, 10);
        deny.store.entries.insert(p("198.18.0.0/24"), entry(7, 0));
        deny.resync().expect("resync");
        deny.store.fail_insert = Some(2);
        let error = deny
            .add(
                &prefixes(&["198.18.1.0/24", "198.18.0.0/24", "2001:2::/48"]),
                Some(9),
            )
            .expect_err("third write fails");
        let message = error.to_string();
        assert!(
            message.starts_with("failed to write 2001:2::/48 in the denylist: `bpf_map_update_elem` failed: Invalid argument"),
            "{message}"
        );
        assert!(
            message.ends_with("the 2 change(s) made before it were undone; nothing was changed"),
            "{message}"
        );
        assert_eq!(
            deny.store
                .entries
                .iter()
                .map(|(p, e)| (*p, *e))
                .collect::<Vec<_>>(),
            [(p("198.18.0.0/24"), entry(7, 0))],
            "the new prefix is gone and the old one has its old expiry"
        );
        assert_eq!(deny.len(), 1);
        assert_eq!(deny.next_expiry(), None);
    }

    #[test]
    fn a_failed_undo_says_the_list_may_be_partly_changed() {
        let mut deny = list(ListKind::Deny, 10);
        deny.store.fail_insert = Some(1);
        deny.store.fail_remove = Some(0);
        let message = deny
            .add(&prefixes(&["198.18.1.0/24", "198.18.2.0/24"]), None)
            .expect_err("second write fails")
            .to_string();
        assert!(
            message.contains("undoing the 1 change(s) made before it failed for 198.18.1.0/24")
                && message.contains("check it with `floodwall deny list`"),
            "{message}"
        );
        assert_eq!(deny.len(), 1, "the index was read back from the store");
    }

    #[test]
    fn removing_a_missing_prefix_changes_nothing() {
        let mut allow = list(ListKind::Allow, 10);
        allow
            .add(&prefixes(&["198.18.0.0/24", "198.18.0.0/16"]), None)
            .expect("add");
        let error = allow
            .remove(&prefixes(&[
                "198.18.0.0/24",
                "198.18.0.0/25",
                "2001:2::/48",
            ]))
            .expect_err("two missing");
        assert_eq!(
            error.to_string(),
            "not in the allowlist: 198.18.0.0/25, 2001:2::/48; nothing was removed"
        );
        assert_eq!(allow.store.entries.len(), 2);
        assert_eq!(allow.len(), 2);
    }

    #[test]
    fn a_failed_delete_restores_the_deleted() {
        let mut deny = list(ListKind::Deny, 10);
        deny.store.entries.insert(p("198.18.0.0/24"), entry(3, 0));
        deny.store.entries.insert(p("198.18.1.0/24"), entry(4, 0));
        deny.resync().expect("resync");
        deny.store.fail_remove = Some(1);
        let error = deny
            .remove(&prefixes(&["198.18.0.0/24", "198.18.1.0/24"]))
            .expect_err("second delete fails");
        assert!(
            error.to_string().contains("failed to delete 198.18.1.0/24"),
            "{error}"
        );
        assert_eq!(
            deny.store.entries[&p("198.18.0.0/24")],
            entry(3, 0),
            "restored with its counters"
        );
        assert_eq!(deny.len(), 2);
    }

    #[test]
    fn expire_deletes_only_what_is_due() {
        let mut deny = list(ListKind::Deny, 10);
        deny.add(&prefixes(&["198.18.0.0/24"]), Some(100))
            .expect("add");
        deny.add(&prefixes(&["198.18.1.0/24"]), Some(200))
            .expect("add");
        deny.add(&prefixes(&["2001:2::/48"]), None).expect("add");
        assert_eq!(deny.expire(99).expect("nothing due"), []);
        assert_eq!(deny.expire(100).expect("one due"), [p("198.18.0.0/24")]);
        assert_eq!(deny.next_expiry(), Some(200));
        let views = deny.list(150).expect("list");
        assert_eq!(
            views
                .iter()
                .map(|v| (v.prefix, v.expires_in_ms))
                .collect::<Vec<_>>(),
            [(p("198.18.1.0/24"), Some(1)), (p("2001:2::/48"), None)],
            "50 ns left rounds up to 1 ms"
        );
        // Listing leaves out what is due but not deleted yet.
        assert_eq!(deny.list(200).expect("list").len(), 1);
        assert_eq!(
            deny.expire(u64::MAX).expect("the rest"),
            [p("198.18.1.0/24")]
        );
        assert_eq!(deny.len(), 1);
    }

    #[test]
    fn a_failed_expiry_is_retried() {
        let mut deny = list(ListKind::Deny, 10);
        deny.add(&prefixes(&["198.18.0.0/24", "198.18.1.0/24"]), Some(100))
            .expect("add");
        deny.store.fail_remove = Some(1);
        let message = deny
            .expire(100)
            .expect_err("second delete fails")
            .to_string();
        assert!(
            message.contains("deleted before it: 198.18.0.0/24"),
            "{message}"
        );
        assert_eq!(deny.expire(100).expect("retry"), [p("198.18.1.0/24")]);
        assert_eq!(deny.len(), 0);
    }
}
