//! The fleet: nodes that share their blocks and signatures through a NATS `JetStream`
//! key-value bucket (`[fleet]`). Plain data only: the settings, the bucket's keys and
//! values, and the checks a peer's entry must pass before a node applies it. The task that
//! talks to the broker is `daemon::fleet`.
//!
//! # The bucket
//! Each node writes only keys that start with its own name, and watches every key:
//! - `<node>.block.v4.<address>` and `<node>.block.v6.<address with ':' written '-'>`: a
//!   source the node's limits blocked (NATS keys may not hold ':');
//! - `<node>.sig.<interface>.<rule id>`: a signature rule the node found for an attack.
//!
//! Values are JSON ([`BlockEntry`], [`SignatureEntry`]) and carry `until`, a wall-clock time
//! (Unix milliseconds): nats-server 2.9 ignores per-key TTLs and says nothing when a bucket's
//! `max_age` drops an entry, so a receiver expires what it applied by itself. Nodes' clocks
//! must agree (NTP) to well under the block times.
//!
//! A node deletes its key when its block or signature ends; a peer's delete removes what
//! the peer's entry put in place.

#[cfg(test)]
mod tests;

use std::{
    net::{IpAddr, Ipv6Addr},
    time::Duration,
};

use serde::{Deserialize, Serialize};

use crate::{lists::Prefix, rules::RuleSpec};

/// The version of the values this build writes and reads.
pub const VERSION: u32 = 1;

/// The longest node name, in bytes.
pub const MAX_NODE_BYTES: usize = 64;

/// The largest value a peer may send, in bytes (a signature's rule text is the longest).
pub const MAX_VALUE_BYTES: usize = 4096;

/// `[fleet]`: sharing with the other nodes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FleetConfig {
    /// The broker: `nats://host:port`.
    pub broker: String,
    /// This node's name, the first token of its keys.
    pub node: String,
    /// The key-value bucket.
    pub bucket: String,
    /// Whether this node publishes its blocks and applies its peers'.
    pub share_blocks: bool,
    /// Whether this node publishes its signatures and applies its peers'.
    pub share_signatures: bool,
    /// The most peers' entries applied at once (blocks and signatures together).
    pub max_entries: usize,
    /// The longest a peer's entry is applied for, whatever its `until` says.
    pub max_block: Duration,
    /// How this node signs in to the broker.
    pub sign_in: SignIn,
}

/// How a node signs in to the broker: as nats-server's `authorization` asks. The secrets
/// come from files (`password_file`, `token_file`), never from the config file itself,
/// which is world-readable by default.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum SignIn {
    /// No credentials (a broker on a private network, or one that asks none).
    #[default]
    Anonymous,
    /// A user and its password (`user`, `password_file`).
    Password {
        /// The user.
        user: String,
        /// The password, from its file.
        password: Secret,
    },
    /// A token (`token_file`).
    Token(Secret),
}

/// A secret read from a file: kept out of `Debug` output and logs.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Reads a secret from `path`: its first line, trimmed; it must not be empty.
    ///
    /// # Errors
    /// A message naming the file, if it cannot be read or holds nothing.
    pub fn read(path: &std::path::Path) -> Result<Self, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        let secret = text.lines().next().unwrap_or_default().trim();
        if secret.is_empty() {
            return Err(format!("{} is empty", path.display()));
        }
        Ok(Self(secret.to_owned()))
    }

    /// The secret itself, for the broker.
    #[must_use]
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(..)")
    }
}

impl Default for FleetConfig {
    fn default() -> Self {
        Self {
            broker: String::new(),
            node: String::new(),
            bucket: "floodwall".to_owned(),
            share_blocks: true,
            share_signatures: true,
            max_entries: 10_000,
            max_block: Duration::from_hours(1),
            sign_in: SignIn::Anonymous,
        }
    }
}

impl FleetConfig {
    /// Checks the settings together.
    ///
    /// # Errors
    /// A message naming the key at fault.
    pub fn check(&self) -> Result<(), String> {
        check_broker(&self.broker)?;
        check_name("node", &self.node)?;
        check_name("bucket", &self.bucket)?;
        if self.max_entries == 0 {
            return Err("max_entries must be at least 1".to_owned());
        }
        if self.max_block < Duration::from_secs(1) {
            return Err("max_block must be at least 1s".to_owned());
        }
        Ok(())
    }
}

/// Checks a broker address: `nats://host:port` (or `tls://`).
///
/// # Errors
/// A message saying what is wrong.
pub fn check_broker(broker: &str) -> Result<(), String> {
    if broker.is_empty() {
        return Err("broker is required (e.g. \"nats://198.18.0.253:4222\")".to_owned());
    }
    let rest = broker
        .strip_prefix("nats://")
        .or_else(|| broker.strip_prefix("tls://"))
        .ok_or_else(|| format!("broker `{broker}` must start with nats:// or tls://"))?;
    let port_ok = rest
        .rsplit_once(':')
        .is_some_and(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok_and(|p| p > 0));
    if !port_ok {
        return Err(format!(
            "broker `{broker}` must name a host and a port (nats://HOST:PORT)"
        ));
    }
    Ok(())
}

/// Checks a node or bucket name: `[A-Za-z0-9_-]+`, so that it is one token of a key.
///
/// # Errors
/// A message naming `what` and what is wrong.
pub fn check_name(what: &str, name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err(format!("{what} is required"));
    }
    if name.len() > MAX_NODE_BYTES {
        return Err(format!("{what} is over {MAX_NODE_BYTES} bytes"));
    }
    if let Some(c) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || *c == '_' || *c == '-'))
    {
        return Err(format!(
            "{what} `{name}` has `{c}`: only letters, digits, '_' and '-' are allowed"
        ));
    }
    Ok(())
}

/// A key of the bucket.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Key {
    /// A node's block of one source.
    Block {
        /// The node that blocked it.
        node: String,
        /// The source.
        addr: IpAddr,
    },
    /// A node's signature rule.
    Signature {
        /// The node that found it.
        node: String,
        /// The interface it was found on.
        iface: String,
        /// Its rule id on that node.
        id: u32,
    },
}

impl Key {
    /// The node that owns the key.
    #[must_use]
    pub fn node(&self) -> &str {
        match self {
            Self::Block { node, .. } | Self::Signature { node, .. } => node,
        }
    }

    /// The key as the bucket stores it.
    #[must_use]
    pub fn encode(&self) -> String {
        match self {
            Self::Block {
                node,
                addr: IpAddr::V4(a),
            } => format!("{node}.block.v4.{a}"),
            Self::Block {
                node,
                addr: IpAddr::V6(a),
            } => format!("{node}.block.v6.{}", a.to_string().replace(':', "-")),
            Self::Signature { node, iface, id } => format!("{node}.sig.{iface}.{id}"),
        }
    }

    /// Reads a key.
    ///
    /// # Errors
    /// [`PeerError::BadKey`], naming what is wrong.
    pub fn parse(key: &str) -> Result<Self, PeerError> {
        let bad = |why: &str| PeerError::BadKey {
            key: key.chars().take(200).collect(),
            why: why.to_owned(),
        };
        let (node, rest) = key.split_once('.').ok_or_else(|| bad("it has no node"))?;
        check_name("node", node).map_err(|e| bad(&e))?;
        let node = node.to_owned();
        if let Some(rest) = rest.strip_prefix("block.v4.") {
            let addr = rest
                .parse::<std::net::Ipv4Addr>()
                .map_err(|_| bad("not an IPv4 address after `block.v4.`"))?;
            Ok(Self::Block {
                node,
                addr: IpAddr::V4(addr),
            })
        } else if let Some(rest) = rest.strip_prefix("block.v6.") {
            if rest.contains(':') {
                return Err(bad("an IPv6 address in a key is written with '-'"));
            }
            let addr = rest
                .replace('-', ":")
                .parse::<Ipv6Addr>()
                .map_err(|_| bad("not an IPv6 address after `block.v6.`"))?;
            Ok(Self::Block {
                node,
                addr: IpAddr::V6(addr),
            })
        } else if let Some(rest) = rest.strip_prefix("sig.") {
            let (iface, id) = rest
                .rsplit_once('.')
                .ok_or_else(|| bad("a signature key is <node>.sig.<interface>.<id>"))?;
            if iface.is_empty() || iface.contains('.') || iface.len() > 15 {
                return Err(bad("not an interface name"));
            }
            let id = id.parse().map_err(|_| bad("the rule id is not a number"))?;
            Ok(Self::Signature {
                node,
                iface: iface.to_owned(),
                id,
            })
        } else {
            Err(bad(
                "neither `block.v4`, `block.v6` nor `sig` follows the node",
            ))
        }
    }
}

/// The value of a block key.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BlockEntry {
    /// [`VERSION`].
    pub v: u32,
    /// The source (the same as the key's).
    pub addr: IpAddr,
    /// When the block ends: Unix milliseconds.
    pub until: u64,
    /// The interface it was blocked on, for people.
    pub iface: String,
}

/// The value of a signature key.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignatureEntry {
    /// [`VERSION`].
    pub v: u32,
    /// The rule's text (`floodwall rules add` syntax).
    pub rule: String,
    /// When it ends: Unix milliseconds.
    pub until: u64,
}

/// A peer's entry that passed every check, with the time it is applied until.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PeerEntry {
    /// A block: deny the source.
    Block {
        /// The source, as a host prefix.
        prefix: Prefix,
        /// How long from now (capped by `max_block`).
        remaining: Duration,
    },
    /// A signature: add its rule.
    Signature {
        /// The rule.
        rule: Box<RuleSpec>,
        /// How long from now (capped by `max_block`).
        remaining: Duration,
    },
}

/// Why a peer's entry was refused. Nothing was changed for it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PeerError {
    /// The key is not one floodwall writes.
    #[error("key `{key}` is not a fleet key: {why}")]
    BadKey {
        /// The key (at most 200 characters of it).
        key: String,
        /// What is wrong.
        why: String,
    },
    /// The value is too large.
    #[error("the value of {key} is {len} bytes, over {MAX_VALUE_BYTES}")]
    TooLarge {
        /// The key.
        key: String,
        /// Its length.
        len: usize,
    },
    /// The value is not the JSON of its kind.
    #[error("the value of {key} is not a fleet entry: {why}")]
    BadValue {
        /// The key.
        key: String,
        /// The parser's message.
        why: String,
    },
    /// A version this build does not read.
    #[error("the value of {key} has version {v}; this floodwall reads version {VERSION}")]
    Version {
        /// The key.
        key: String,
        /// The version it has.
        v: u32,
    },
    /// The value names another source than its key.
    #[error("the value of {key} names {addr}, not the key's source")]
    Mismatch {
        /// The key.
        key: String,
        /// The value's address.
        addr: IpAddr,
    },
    /// The entry has already ended.
    #[error("{key} ended already (until is in the past)")]
    Ended {
        /// The key.
        key: String,
    },
    /// The signature's rule text does not parse.
    #[error("the rule of {key} is not a rule: {why}")]
    BadRule {
        /// The key.
        key: String,
        /// The parser's message.
        why: String,
    },
    /// Applying it would deny a source the local allowlist holds.
    #[error("{key}: {what} is covered by the local allowlist entry {allowed}")]
    Allowlisted {
        /// The key.
        key: String,
        /// The source or rule source.
        what: String,
        /// The allowlist entry.
        allowed: Prefix,
    },
    /// The local allowlist could not be read, so the entry cannot be checked against it:
    /// refused, since the allowlist always wins.
    #[error("{key}: cannot check it against the local allowlist: {why}")]
    AllowlistUnread {
        /// The key.
        key: String,
        /// Why the allowlist could not be read.
        why: String,
    },
    /// The cap on peers' entries is reached.
    #[error("{key}: {max} peers' entries are applied already (fleet.max_entries)")]
    OverCap {
        /// The key.
        key: String,
        /// The cap.
        max: usize,
    },
    /// The local denylist already holds the source, from the operator.
    #[error("{key}: {prefix} is already in the local denylist (left as it is)")]
    ListedLocally {
        /// The key.
        key: String,
        /// The prefix.
        prefix: Prefix,
    },
    /// The kind of entry is not shared by this node (`share_blocks`/`share_signatures`).
    #[error("{key}: this node does not take {kind} from the fleet")]
    NotShared {
        /// The key.
        key: String,
        /// `blocks` or `signatures`.
        kind: &'static str,
    },
}

impl PeerError {
    /// A short name for metrics and counts.
    #[must_use]
    pub const fn reason(&self) -> &'static str {
        match self {
            Self::BadKey { .. } => "bad_key",
            Self::TooLarge { .. } => "too_large",
            Self::BadValue { .. } => "bad_value",
            Self::Version { .. } => "version",
            Self::Mismatch { .. } => "mismatch",
            Self::Ended { .. } => "ended",
            Self::BadRule { .. } => "bad_rule",
            Self::Allowlisted { .. } => "allowlisted",
            Self::AllowlistUnread { .. } => "allowlist_unread",
            Self::OverCap { .. } => "over_cap",
            Self::ListedLocally { .. } => "listed_locally",
            Self::NotShared { .. } => "not_shared",
        }
    }
}

/// Reads a peer's value for `key` at `now_unix_ms`, capping its time by `max`.
///
/// # Errors
/// A [`PeerError`] naming the problem.
pub fn decode(
    key: &Key,
    value: &[u8],
    now_unix_ms: u64,
    max: Duration,
) -> Result<PeerEntry, PeerError> {
    let name = key.encode();
    if value.len() > MAX_VALUE_BYTES {
        return Err(PeerError::TooLarge {
            key: name,
            len: value.len(),
        });
    }
    let remaining = |until: u64| {
        let left = until.saturating_sub(now_unix_ms);
        if left == 0 {
            Err(PeerError::Ended { key: name.clone() })
        } else {
            Ok(Duration::from_millis(left).min(max))
        }
    };
    let bad = |e: serde_json::Error| PeerError::BadValue {
        key: name.clone(),
        why: e.to_string(),
    };
    match key {
        Key::Block { addr, .. } => {
            let entry: BlockEntry = serde_json::from_slice(value).map_err(bad)?;
            if entry.v != VERSION {
                return Err(PeerError::Version {
                    key: name,
                    v: entry.v,
                });
            }
            if entry.addr != *addr {
                return Err(PeerError::Mismatch {
                    key: name,
                    addr: entry.addr,
                });
            }
            Ok(PeerEntry::Block {
                prefix: Prefix::host(*addr),
                remaining: remaining(entry.until)?,
            })
        }
        Key::Signature { .. } => {
            let entry: SignatureEntry = serde_json::from_slice(value).map_err(bad)?;
            if entry.v != VERSION {
                return Err(PeerError::Version {
                    key: name,
                    v: entry.v,
                });
            }
            let rule = entry
                .rule
                .parse::<RuleSpec>()
                .map_err(|e| PeerError::BadRule {
                    key: name.clone(),
                    why: e.to_string(),
                })?;
            Ok(PeerEntry::Signature {
                rule: Box::new(rule),
                remaining: remaining(entry.until)?,
            })
        }
    }
}

/// The allowlist entry that covers `prefix` or overlaps it, if one does: a peer's entry
/// never denies what the local allowlist holds.
#[must_use]
pub fn allowlisted(prefix: &Prefix, allow: &[Prefix]) -> Option<Prefix> {
    allow
        .iter()
        .find(|a| a.covers(prefix) || prefix.covers(a))
        .copied()
}

/// A peer's entry in force on this node.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Applied {
    /// A denylist entry on every interface.
    Block {
        /// The source denied.
        prefix: Prefix,
        /// Its end, on the kernel's monotonic clock.
        expires_ns: u64,
    },
    /// A rule on each interface.
    Signature {
        /// What the rule matches, as its text.
        #[serde(with = "spec_text")]
        spec: Box<RuleSpec>,
        /// The rule on each interface: (interface, rule id).
        rules: Vec<(String, u32)>,
        /// Its end, on the kernel's monotonic clock.
        expires_ns: u64,
    },
}

impl Applied {
    /// Its end, on the kernel's monotonic clock.
    #[must_use]
    pub const fn expires_ns(&self) -> u64 {
        match self {
            Self::Block { expires_ns, .. } | Self::Signature { expires_ns, .. } => *expires_ns,
        }
    }
}

/// A rule's match as its text, in the applied file.
mod spec_text {
    use serde::{Deserialize as _, Deserializer, Serializer};

    use crate::rules::RuleSpec;

    #[expect(clippy::borrowed_box, reason = "serde's `with` passes the field")]
    pub fn serialize<S: Serializer>(spec: &Box<RuleSpec>, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(spec)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Box<RuleSpec>, D::Error> {
        let text = String::deserialize(d)?;
        text.parse()
            .map(Box::new)
            .map_err(|e| serde::de::Error::custom(format!("rule `{text}`: {e}")))
    }
}

/// The peers' entries in force on this node, as kept in the run directory
/// (`fleet-applied.json`): the denylist entries and rules outlive the daemon in the pinned
/// maps, and a daemon started again must still know them as the fleet's, to take them away
/// when their node withdraws them (and not take a peer's block for the operator's). The
/// ends are on the kernel's monotonic clock, which a reboot restarts (and takes the pinned
/// maps with it): the file holds the boot it was written in, and another boot's is empty.
#[derive(Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AppliedFile {
    /// `/proc/sys/kernel/random/boot_id` when it was written.
    pub boot_id: String,
    /// By key, encoded as in the bucket.
    pub entries: std::collections::BTreeMap<String, Applied>,
}

impl AppliedFile {
    /// What `self` holds for boot `boot_id` that has not ended at `now_ns`; a key that does
    /// not parse (a file of another version) is left out.
    #[must_use]
    pub fn in_force(self, boot_id: &str, now_ns: u64) -> std::collections::BTreeMap<Key, Applied> {
        if self.boot_id != boot_id {
            return std::collections::BTreeMap::new();
        }
        self.entries
            .into_iter()
            .filter(|(_, applied)| applied.expires_ns() > now_ns)
            .filter_map(|(key, applied)| Some((Key::parse(&key).ok()?, applied)))
            .collect()
    }

    /// The file for `applied`, written in boot `boot_id`.
    #[must_use]
    pub fn of(boot_id: &str, applied: &std::collections::BTreeMap<Key, Applied>) -> Self {
        Self {
            boot_id: boot_id.to_owned(),
            entries: applied
                .iter()
                .map(|(key, applied)| (key.encode(), applied.clone()))
                .collect(),
        }
    }
}
