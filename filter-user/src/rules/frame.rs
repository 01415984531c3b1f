//! `floodwall rules test --frame HEX`: a whole frame, as captured, read into a
//! [`TestPacket`] the way the XDP program's parser reads it (`filter-ebpf/src/parse.rs`):
//! up to two VLAN tags, IPv4 with options, IPv6 with up to `MAX_IPV6_EXT_HEADERS`
//! extension headers, fragments, and the first bytes of TCP, UDP, ICMP and `ICMPv6`. What
//! the program cannot see (a transport header cut short, a non-first fragment's ports),
//! the packet does not have either, so a rule that names it does not match here, as there.

use std::{
    fmt::{self, Write as _},
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
};

use filter_common::{MAX_IPV6_EXT_HEADERS, MAX_VLAN_TAGS, fragment};

use super::{PayloadMatch, TestPacket, syntax};

/// The longest frame `rules test --frame` takes (a jumbo frame).
pub const MAX_FRAME_BYTES: usize = 9_216;

const ETH_LEN: usize = 14;
const VLAN_LEN: usize = 4;
const IPV4_LEN: usize = 20;
const IPV6_LEN: usize = 40;
/// [`IPV6_LEN`] as the length fields count.
const IPV6_LEN_16: u16 = 40;
const ETH_P_IPV4: u16 = 0x0800;
const ETH_P_IPV6: u16 = 0x86DD;
const ETH_P_8021Q: u16 = 0x8100;
const ETH_P_8021AD: u16 = 0x88A8;
const IPPROTO_HOPOPTS: u8 = 0;
const IPPROTO_ROUTING: u8 = 43;
const IPPROTO_FRAGMENT: u8 = 44;
const IPPROTO_AH: u8 = 51;
const IPPROTO_DSTOPTS: u8 = 60;
const TCP_MIN_LEN: usize = 20;
const UDP_LEN: usize = 8;
/// Bytes of an ICMP header the program needs whole (RFC 792), and of an `ICMPv6` one
/// (type, code, checksum; RFC 4443); the payload starts after 8 bytes for both.
const ICMP_MIN_LEN: usize = 8;
const ICMPV6_MIN_LEN: usize = 4;

/// Why a frame is not a packet a rule could meet.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FrameError {
    /// Not hex: the character and where.
    NotHex {
        /// The character.
        found: char,
        /// Its position in the text, from 1.
        at: usize,
    },
    /// An odd number of hex digits.
    OddDigits(usize),
    /// Longer than [`MAX_FRAME_BYTES`].
    TooLong(usize),
    /// Neither IPv4 nor IPv6 (the ethertype after the tags), which rules never see.
    NotIp(u16),
    /// Cut short or inconsistent before its source address: the program counts it as
    /// malformed and passes it without rules.
    Malformed(&'static str),
}

impl fmt::Display for FrameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NotHex { found, at } => {
                write!(
                    f,
                    "the frame is hex bytes: {found:?} at character {at} is not"
                )
            }
            Self::OddDigits(n) => write!(f, "the frame has {n} hex digits, an odd number"),
            Self::TooLong(n) => {
                write!(f, "the frame has {n} bytes, more than {MAX_FRAME_BYTES}")
            }
            Self::NotIp(ether_type) => write!(
                f,
                "the frame is not IPv4 or IPv6 (ethertype {ether_type:#06x}): rules never see it"
            ),
            Self::Malformed(why) => write!(
                f,
                "the frame is malformed ({why}): the program passes it as such, without rules"
            ),
        }
    }
}

impl std::error::Error for FrameError {}

/// The bytes of a frame written in hex: pairs of digits, with spaces, colons, dashes or
/// line breaks anywhere between them (`tcpdump -xx` without its offsets, Wireshark's "copy
/// as hex stream").
///
/// # Errors
/// A character that is neither a digit nor a separator, an odd number of digits, or more
/// than [`MAX_FRAME_BYTES`] bytes.
pub fn parse_hex(text: &str) -> Result<Vec<u8>, FrameError> {
    let mut digits: Vec<u8> = Vec::with_capacity(text.len());
    for (i, c) in text.chars().enumerate() {
        match c.to_digit(16).and_then(|d| u8::try_from(d).ok()) {
            Some(d) => digits.push(d),
            None if c.is_whitespace() || c == ':' || c == '-' => {}
            None => {
                return Err(FrameError::NotHex {
                    found: c,
                    at: i + 1,
                });
            }
        }
    }
    if !digits.len().is_multiple_of(2) {
        return Err(FrameError::OddDigits(digits.len()));
    }
    if digits.len() / 2 > MAX_FRAME_BYTES {
        return Err(FrameError::TooLong(digits.len() / 2));
    }
    Ok(digits.chunks(2).map(|p| (p[0] << 4) | p[1]).collect())
}

/// `bytes` in hex, two lowercase digits a byte, as [`parse_hex`] reads it back.
#[must_use]
pub fn to_hex(bytes: &[u8]) -> String {
    bytes.iter().fold(String::new(), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

/// The bytes `at..at + len` of the frame, if they all lie inside it.
fn bytes(frame: &[u8], at: usize, len: usize) -> Option<&[u8]> {
    frame.get(at..at.checked_add(len)?)
}

impl TestPacket {
    /// The packet a rule would see in `frame`, read as the XDP program reads it.
    ///
    /// # Errors
    /// A frame that is not IP, or that is cut short or inconsistent before its source
    /// address (which the program passes as malformed, without rules).
    pub fn from_frame(frame: &[u8]) -> Result<Self, FrameError> {
        let eth = bytes(frame, 0, ETH_LEN).ok_or(FrameError::Malformed("no Ethernet header"))?;
        let mut ether_type = u16::from_be_bytes([eth[12], eth[13]]);
        let mut at = ETH_LEN;
        for _ in 0..MAX_VLAN_TAGS {
            if ether_type != ETH_P_8021Q && ether_type != ETH_P_8021AD {
                break;
            }
            let tag =
                bytes(frame, at, VLAN_LEN).ok_or(FrameError::Malformed("a VLAN tag cut short"))?;
            ether_type = u16::from_be_bytes([tag[2], tag[3]]);
            at += VLAN_LEN;
        }
        match ether_type {
            ETH_P_IPV4 => ipv4(frame, at),
            ETH_P_IPV6 => ipv6(frame, at),
            ETH_P_8021Q | ETH_P_8021AD => Err(FrameError::Malformed("more than two VLAN tags")),
            other => Err(FrameError::NotIp(other)),
        }
    }
}

/// A packet from `src` to `dst` with no L4 fields read yet.
fn packet(src: IpAddr, dst: IpAddr, proto: u8, len: u16, ttl: u8, dscp: u8) -> TestPacket {
    TestPacket {
        src,
        dst,
        proto,
        ports: None,
        icmp: None,
        tcp_flags: 0,
        len,
        dscp,
        fragment: fragment::NONE,
        ttl,
        payload: None,
        known_source: false,
    }
}

fn ipv4(frame: &[u8], at: usize) -> Result<TestPacket, FrameError> {
    let ip = bytes(frame, at, IPV4_LEN).ok_or(FrameError::Malformed("IPv4 header cut short"))?;
    let header_len = usize::from(ip[0] & 0x0f) * 4;
    let tot_len = u16::from_be_bytes([ip[2], ip[3]]);
    if ip[0] >> 4 != 4 || header_len < IPV4_LEN || usize::from(tot_len) < header_len {
        return Err(FrameError::Malformed("inconsistent IPv4 header"));
    }
    bytes(frame, at, header_len).ok_or(FrameError::Malformed("IPv4 options cut short"))?;
    let addr = |i: usize| IpAddr::V4(Ipv4Addr::new(ip[i], ip[i + 1], ip[i + 2], ip[i + 3]));
    let frags = u16::from_be_bytes([ip[6], ip[7]]);
    let mut p = packet(addr(12), addr(16), ip[9], tot_len, ip[8], ip[1] >> 2);
    let l4_at = at + header_len;
    if frags & 0x1fff != 0 {
        p.fragment = fragment::LATER;
    } else {
        if frags & 0x2000 != 0 {
            p.fragment = fragment::FIRST;
        }
        l4(frame, l4_at, &mut p);
    }
    Ok(p)
}

fn ipv6(frame: &[u8], at: usize) -> Result<TestPacket, FrameError> {
    let ip = bytes(frame, at, IPV6_LEN).ok_or(FrameError::Malformed("IPv6 header cut short"))?;
    if ip[0] >> 4 != 6 {
        return Err(FrameError::Malformed("inconsistent IPv6 header"));
    }
    let addr = |i: usize| {
        let mut a = [0u8; 16];
        a.copy_from_slice(&ip[i..i + 16]);
        IpAddr::V6(Ipv6Addr::from(a))
    };
    let traffic_class = (ip[0] << 4) | (ip[1] >> 4);
    let len = u16::from_be_bytes([ip[4], ip[5]]).saturating_add(IPV6_LEN_16);
    // The protocol is known only once the parser reaches it: zero until then.
    let mut p = packet(addr(8), addr(24), 0, len, ip[7], traffic_class >> 2);
    let mut next = ip[6];
    let mut at = at + IPV6_LEN;
    for round in 0..=MAX_IPV6_EXT_HEADERS {
        let extension = matches!(
            next,
            IPPROTO_HOPOPTS | IPPROTO_ROUTING | IPPROTO_DSTOPTS | IPPROTO_AH | IPPROTO_FRAGMENT
        );
        if extension && round == MAX_IPV6_EXT_HEADERS {
            break;
        }
        match next {
            IPPROTO_HOPOPTS | IPPROTO_ROUTING | IPPROTO_DSTOPTS | IPPROTO_AH => {
                let Some(ext) = bytes(frame, at, 2) else {
                    return Ok(p);
                };
                at += if next == IPPROTO_AH {
                    (usize::from(ext[1]) + 2) * 4
                } else {
                    (usize::from(ext[1]) + 1) * 8
                };
                next = ext[0];
            }
            IPPROTO_FRAGMENT => {
                p.fragment = fragment::FIRST;
                let Some(frag) = bytes(frame, at, 8) else {
                    return Ok(p);
                };
                next = frag[0];
                at += 8;
                if u16::from_be_bytes([frag[2], frag[3]]) >> 3 != 0 {
                    p.fragment = fragment::LATER;
                    p.proto = next;
                    return Ok(p);
                }
            }
            _ => {
                p.proto = next;
                l4(frame, at, &mut p);
                return Ok(p);
            }
        }
    }
    // Still inside the chain after the bound: the program sees no protocol.
    Ok(p)
}

/// Reads what rules match of the L4 header at `at` into `p`, if it lies whole in the frame.
fn l4(frame: &[u8], at: usize, p: &mut TestPacket) {
    let payload_at = match p.proto {
        syntax::TCP => {
            let Some(tcp) = bytes(frame, at, TCP_MIN_LEN) else {
                return;
            };
            let data_offset = usize::from(tcp[12] >> 4) * 4;
            if data_offset < TCP_MIN_LEN || bytes(frame, at, data_offset).is_none() {
                return;
            }
            p.ports = Some((
                u16::from_be_bytes([tcp[0], tcp[1]]),
                u16::from_be_bytes([tcp[2], tcp[3]]),
            ));
            p.tcp_flags = tcp[13];
            at + data_offset
        }
        syntax::UDP => {
            let Some(udp) = bytes(frame, at, UDP_LEN) else {
                return;
            };
            p.ports = Some((
                u16::from_be_bytes([udp[0], udp[1]]),
                u16::from_be_bytes([udp[2], udp[3]]),
            ));
            at + UDP_LEN
        }
        syntax::ICMP | syntax::ICMPV6 => {
            let min = if p.proto == syntax::ICMP {
                ICMP_MIN_LEN
            } else {
                ICMPV6_MIN_LEN
            };
            let Some(icmp) = bytes(frame, at, min) else {
                return;
            };
            p.icmp = Some((icmp[0], icmp[1]));
            at + ICMP_MIN_LEN
        }
        _ => at,
    };
    let payload = frame.get(payload_at..).unwrap_or_default().to_vec();
    p.payload = Some(PayloadMatch {
        offset: 0,
        mask: vec![0xff; payload.len()],
        bytes: payload,
    });
}

#[cfg(test)]
mod tests {

    use super::*;

    /// Ethernet (IPv4) + IPv4 (no options) + UDP 123 -> 7777 + `payload`.
    fn udp4(payload: &[u8]) -> Vec<u8> {
        let mut f = vec![0u8; 12];
        f.extend([0x08, 0x00]);
        let udp_len = u16::try_from(8 + payload.len()).expect("a short payload");
        let tot = 20 + udp_len;
        f.extend([0x45, 0x08]);
        f.extend(tot.to_be_bytes());
        f.extend([0, 0, 0, 0, 57, 17, 0, 0]);
        f.extend([198, 19, 3, 4, 198, 18, 0, 1]);
        f.extend(123u16.to_be_bytes());
        f.extend(7777u16.to_be_bytes());
        f.extend(udp_len.to_be_bytes());
        f.extend([0, 0]);
        f.extend(payload);
        f
    }

    fn hex(bytes: &[u8]) -> String {
        to_hex(bytes)
    }

    #[test]
    fn a_udp_frame_reads_as_its_words() {
        let p = TestPacket::from_frame(&udp4(&[0x66; 4])).expect("a packet");
        let described: TestPacket = "udp from 198.19.3.4 to 198.18.0.1 sport 123 dport 7777 \
                                     len 32 ttl 57 dscp 2 payload 0:66666666"
            .parse()
            .expect("words");
        assert_eq!(
            (p.src, p.dst, p.proto, p.ports),
            (described.src, described.dst, 17, Some((123, 7777)))
        );
        assert_eq!(
            (p.len, p.ttl, p.dscp, p.fragment),
            (32, 57, 2, fragment::NONE)
        );
        assert_eq!(
            p.payload.as_ref().map(|m| m.bytes.clone()),
            Some(vec![0x66; 4])
        );
        assert_eq!(p.to_string(), described.to_string());
    }

    #[test]
    fn hex_is_read_with_separators_and_refused_with_its_fault() {
        let frame = udp4(b"ab");
        let spaced: String = hex(&frame)
            .as_bytes()
            .chunks(2)
            .map(|c| std::str::from_utf8(c).expect("ascii"))
            .collect::<Vec<_>>()
            .join(":");
        assert_eq!(parse_hex(&spaced).expect("colons"), frame);
        assert_eq!(
            parse_hex(&format!(" {}\n", hex(&frame))).expect("spaces"),
            frame
        );
        assert_eq!(
            parse_hex("0x12"),
            Err(FrameError::NotHex { found: 'x', at: 2 })
        );
        assert_eq!(parse_hex("123"), Err(FrameError::OddDigits(3)));
        assert_eq!(
            parse_hex(&"00".repeat(MAX_FRAME_BYTES + 1)),
            Err(FrameError::TooLong(MAX_FRAME_BYTES + 1))
        );
    }

    #[test]
    fn what_the_program_cannot_see_the_packet_does_not_have() {
        let mut later = udp4(&[1, 2, 3]);
        later[20] = 0x00;
        later[21] = 0x10; // fragment offset 16 bytes: a later fragment
        let p = TestPacket::from_frame(&later).expect("a packet");
        assert_eq!(
            (p.fragment, p.ports, p.payload),
            (fragment::LATER, None, None)
        );
        let cut = &udp4(&[])[..14 + 20 + 4];
        let p = TestPacket::from_frame(cut).expect("a packet: the source is known");
        assert_eq!((p.proto, p.ports, p.payload), (17, None, None));
        assert_eq!(
            TestPacket::from_frame(&udp4(&[])[..20]),
            Err(FrameError::Malformed("IPv4 header cut short"))
        );
        let mut arp = udp4(&[]);
        arp[12..14].copy_from_slice(&[0x08, 0x06]);
        assert_eq!(TestPacket::from_frame(&arp), Err(FrameError::NotIp(0x0806)));
    }
}
