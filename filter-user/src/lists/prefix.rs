//! IP prefixes: the [`Prefix`] value type, its parsing with errors that name the text and
//! the problem, containment, and its forms in the kernel's maps (LPM trie keys, source-table
//! keys).
//!
//! The network arithmetic (masking, containment) is `ipnet`'s; what is ours is the rule
//! that a prefix is written canonically: host bits set (`198.18.0.1/24`) are an error,
//! never silently masked as `ipnet` would, because an operator who wrote that most likely
//! meant something else.

use std::{
    fmt,
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
    str::FromStr,
};

use aya::maps::lpm_trie::Key;
use ipnet::{IpNet, Ipv4Net, Ipv6Net};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// An IPv4 or IPv6 network: an address with no bits set beyond the prefix length.
///
/// Written and read as `198.18.0.0/24`, `2001:2::/48`; a bare address (`198.18.0.7`) is a
/// /32 or /128. Serialized as that string. Ordered IPv4 before IPv6, then by address, then
/// by length (`ipnet`'s order).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Prefix(IpNet);

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
        Self::checked(addr, len, &format!("{addr}/{len}"))
    }

    /// [`Prefix::new`], naming the prefix as `text` in its errors.
    fn checked(addr: IpAddr, len: u8, text: &str) -> Result<Self, PrefixError> {
        let family = Family::of(addr);
        let net = IpNet::new(addr, len).map_err(|_| PrefixError::LengthOutOfRange {
            text: text.into(),
            len: len.to_string(),
            family,
        })?;
        // ::ffff:0:0/96 and longer: the IPv4 prefix is the last 32 bits.
        if let IpNet::V6(v6) = net
            && len >= 96
            && let Some(v4) = v6.addr().to_ipv4_mapped()
            && let Ok(ipv4) = Ipv4Net::new(v4, len - 96)
        {
            return Err(PrefixError::Ipv4Mapped {
                text: text.into(),
                ipv4: Self(IpNet::V4(ipv4.trunc())),
            });
        }
        let network = net.trunc();
        if network != net {
            return Err(PrefixError::HostBits {
                text: text.into(),
                network: Self(network),
                host: Self(IpNet::from(addr)),
            });
        }
        Ok(Self(net))
    }

    /// The prefix of `addr` alone: a /32 or a /128.
    #[must_use]
    pub fn host(addr: IpAddr) -> Self {
        Self(IpNet::from(addr))
    }

    /// The network address (host bits are zero).
    #[must_use]
    pub fn addr(&self) -> IpAddr {
        self.0.addr()
    }

    /// The prefix length in bits.
    #[must_use]
    pub fn prefix_len(&self) -> u8 {
        self.0.prefix_len()
    }

    /// IPv4 or IPv6.
    #[must_use]
    pub fn family(&self) -> Family {
        Family::of(self.0.addr())
    }

    /// The network as `ipnet` has it.
    #[must_use]
    pub const fn net(&self) -> IpNet {
        self.0
    }

    /// Whether every address of `other` is in this prefix (a prefix covers itself; an
    /// IPv4 prefix never covers an IPv6 one, nor the other way round).
    #[must_use]
    pub fn covers(&self, other: &Self) -> bool {
        self.0.contains(&other.0)
    }

    /// Whether `addr` is in this prefix. An IPv4-mapped IPv6 address is not in an IPv4
    /// prefix: convert it first, as `SourceKey::ip` does.
    #[must_use]
    pub fn contains(&self, addr: IpAddr) -> bool {
        self.0.contains(&addr)
    }

    /// The key of this prefix in an LPM trie: the prefix length, then the address in wire
    /// (network) order, as the kernel's `struct bpf_lpm_trie_key` lays it out.
    #[must_use]
    pub fn lpm_key(&self) -> LpmKey {
        let len = u32::from(self.0.prefix_len());
        match self.0 {
            IpNet::V4(net) => LpmKey::V4(Key::new(len, net.addr().octets())),
            IpNet::V6(net) => LpmKey::V6(Key::new(len, net.addr().octets())),
        }
    }

    /// The prefix an IPv4 trie key stands for; `None` if its length is over 32 (the kernel
    /// refuses such keys, so only a corrupt key has one). Bits beyond the length are
    /// cleared: the trie ignores them when it matches, and floodwall never writes them.
    #[must_use]
    pub fn from_v4_key(key: &Key<[u8; 4]>) -> Option<Self> {
        let len = u8::try_from(key.prefix_len()).ok()?;
        let net = Ipv4Net::new(Ipv4Addr::from(key.data()), len).ok()?;
        Some(Self(IpNet::V4(net.trunc())))
    }

    /// The prefix an IPv6 trie key stands for (see [`Prefix::from_v4_key`]).
    #[must_use]
    pub fn from_v6_key(key: &Key<[u8; 16]>) -> Option<Self> {
        let len = u8::try_from(key.prefix_len()).ok()?;
        let net = Ipv6Net::new(Ipv6Addr::from(key.data()), len).ok()?;
        Some(Self(IpNet::V6(net.trunc())))
    }
}

impl From<Prefix> for IpNet {
    fn from(prefix: Prefix) -> Self {
        prefix.0
    }
}

impl TryFrom<IpNet> for Prefix {
    type Error = PrefixError;

    /// The strict rule of [`Prefix::new`]: `ipnet` keeps host bits, a `Prefix` refuses them.
    fn try_from(net: IpNet) -> Result<Self, PrefixError> {
        Self::new(net.addr(), net.prefix_len())
    }
}

impl fmt::Display for Prefix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

impl FromStr for Prefix {
    type Err = PrefixError;

    /// Parses `ADDR/LEN` or a bare `ADDR`. Surrounding whitespace is ignored.
    ///
    /// Not `ipnet`'s parser: it has one error for every problem, takes no bare address,
    /// and keeps host bits.
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
        Self::checked(addr, len, text)
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

#[cfg(test)]
mod tests {
    use filter_common::SourceKey;

    use super::*;
    use crate::lists::tests::p;

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
    }

    #[test]
    fn covers_is_containment_within_one_family() {
        let cases = [
            ("198.18.0.0/15", "198.18.0.0/24", true),
            ("198.18.0.0/24", "198.18.0.0/24", true),
            ("198.18.0.0/24", "198.18.0.0/15", false),
            ("198.18.0.0/24", "198.18.1.0/24", false),
            ("198.18.0.0/24", "198.18.0.255", true),
            ("0.0.0.0/0", "198.18.0.7", true),
            ("::/0", "2001:2::/48", true),
            ("2001:2::/48", "2001:2:0:ff00::/56", true),
            ("2001:2::/48", "2001:3::/48", false),
            // Families never cover each other, not even the all-addresses prefixes.
            ("0.0.0.0/0", "2001:2::/48", false),
            ("::/0", "198.18.0.0/24", false),
        ];
        for (wide, narrow, expected) in cases {
            assert_eq!(
                p(wide).covers(&p(narrow)),
                expected,
                "{wide} covers {narrow}: expected {expected}"
            );
        }
    }

    #[test]
    fn contains_takes_addresses_of_the_prefix_family() {
        let net = p("198.18.0.0/24");
        let inside: IpAddr = "198.18.0.200".parse().expect("address");
        let outside: IpAddr = "198.18.1.0".parse().expect("address");
        let mapped: IpAddr = "::ffff:198.18.0.200".parse().expect("address");
        assert!(net.contains(inside));
        assert!(!net.contains(outside));
        assert!(!net.contains(mapped), "a mapped address is IPv6");
        assert!(net.contains(SourceKey::from_ip(inside).ip()));
    }

    #[test]
    fn ipv4_mapped_prefixes_point_to_their_ipv4_form() {
        let addr: IpAddr = "::ffff:198.18.0.0".parse().expect("address");
        assert_eq!(
            Prefix::new(addr, 112),
            Err(PrefixError::Ipv4Mapped {
                text: "::ffff:198.18.0.0/112".into(),
                ipv4: p("198.18.0.0/16"),
            })
        );
        // Shorter than /96 it is an ordinary IPv6 prefix (with host bits, here).
        assert!(matches!(
            Prefix::new(addr, 95),
            Err(PrefixError::HostBits { .. })
        ));
    }

    #[test]
    fn ipnet_conversions_keep_the_strict_rule() {
        let net: IpNet = "198.18.0.0/24".parse().expect("ipnet");
        assert_eq!(Prefix::try_from(net), Ok(p("198.18.0.0/24")));
        assert_eq!(IpNet::from(p("198.18.0.0/24")), net);
        assert_eq!(p("2001:2::/48").net().prefix_len(), 48);
        let sloppy: IpNet = "198.18.0.1/24".parse().expect("ipnet keeps host bits");
        assert!(matches!(
            Prefix::try_from(sloppy),
            Err(PrefixError::HostBits { network, .. }) if network == p("198.18.0.0/24")
        ));
    }
}
