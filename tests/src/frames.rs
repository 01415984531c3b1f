//! Frames built byte by byte, and a seeded random source for generating and mutating them.
//!
//! The builders write every header field the XDP parser reads (and sane values in the
//! others), so a test can state a frame's shape ([`Frame`]) and a mutation can then break
//! any byte of it. No checksums: the program reads none.

/// Ethertypes and IP protocol numbers the parser knows, and a few it does not.
pub mod consts {
    /// IPv4.
    pub const ETH_P_IPV4: u16 = 0x0800;
    /// IPv6.
    pub const ETH_P_IPV6: u16 = 0x86DD;
    /// 802.1Q VLAN tag.
    pub const ETH_P_8021Q: u16 = 0x8100;
    /// 802.1ad (`QinQ`) service tag.
    pub const ETH_P_8021AD: u16 = 0x88A8;
    /// ARP, a frame that is not IP.
    pub const ETH_P_ARP: u16 = 0x0806;
    /// LLDP, another frame that is not IP.
    pub const ETH_P_LLDP: u16 = 0x88CC;
    /// IPv6 hop-by-hop options.
    pub const IPPROTO_HOPOPTS: u8 = 0;
    /// ICMP.
    pub const IPPROTO_ICMP: u8 = 1;
    /// TCP.
    pub const IPPROTO_TCP: u8 = 6;
    /// UDP.
    pub const IPPROTO_UDP: u8 = 17;
    /// IPv6 routing header.
    pub const IPPROTO_ROUTING: u8 = 43;
    /// IPv6 fragment header.
    pub const IPPROTO_FRAGMENT: u8 = 44;
    /// GRE, a protocol the parser does not classify.
    pub const IPPROTO_GRE: u8 = 47;
    /// ESP, likewise.
    pub const IPPROTO_ESP: u8 = 50;
    /// Authentication header.
    pub const IPPROTO_AH: u8 = 51;
    /// `ICMPv6`.
    pub const IPPROTO_ICMPV6: u8 = 58;
    /// IPv6 "no next header".
    pub const IPPROTO_NONE: u8 = 59;
    /// IPv6 destination options.
    pub const IPPROTO_DSTOPTS: u8 = 60;
    /// SCTP, a protocol the parser does not classify.
    pub const IPPROTO_SCTP: u8 = 132;
    /// TCP flag SYN.
    pub const TCP_SYN: u8 = 0x02;
    /// TCP flag ACK.
    pub const TCP_ACK: u8 = 0x10;
    /// TCP flag RST.
    pub const TCP_RST: u8 = 0x04;
    /// TCP flag FIN.
    pub const TCP_FIN: u8 = 0x01;
    /// TCP flag PSH.
    pub const TCP_PSH: u8 = 0x08;
}

use consts::{
    ETH_P_8021AD, ETH_P_8021Q, ETH_P_IPV4, ETH_P_IPV6, IPPROTO_AH, IPPROTO_DSTOPTS,
    IPPROTO_FRAGMENT, IPPROTO_HOPOPTS, IPPROTO_ICMP, IPPROTO_ICMPV6, IPPROTO_ROUTING, IPPROTO_TCP,
    IPPROTO_UDP,
};

/// Destination MAC of built frames (the server's).
pub const SERVER_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 1];
/// Source MAC of built frames.
pub const CLIENT_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 2];
/// Destination of built IPv4 frames.
pub const SERVER4: [u8; 4] = [198, 18, 0, 1];
/// Destination of built IPv6 frames.
pub const SERVER6: [u8; 16] = [0x20, 0x01, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1];

/// A small, fast, seeded generator (xoshiro256**, seeded through splitmix64): the same
/// seed gives the same frames on every machine, which is what makes a failure replayable.
#[derive(Clone, Debug)]
pub struct Rng {
    s: [u64; 4],
}

impl Rng {
    /// A generator for `seed`.
    #[must_use]
    pub fn new(seed: u64) -> Self {
        let mut state = seed;
        let mut next = || {
            state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = state;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^ (z >> 31)
        };
        Self {
            s: [next(), next(), next(), next()],
        }
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        let result = self.s[1].wrapping_mul(5).rotate_left(7).wrapping_mul(9);
        let t = self.s[1] << 17;
        self.s[2] ^= self.s[0];
        self.s[3] ^= self.s[1];
        self.s[1] ^= self.s[2];
        self.s[0] ^= self.s[3];
        self.s[2] ^= t;
        self.s[3] = self.s[3].rotate_left(45);
        result
    }

    /// A number in `0..n`.
    ///
    /// # Panics
    /// If `n` is 0.
    pub fn below(&mut self, n: u64) -> u64 {
        assert!(n > 0, "below(0)");
        // The high half of a 128-bit product: unbiased enough, and no division.
        ((u128::from(self.next_u64()) * u128::from(n)) >> 64) as u64
    }

    /// A number in `0..n` as `usize`.
    ///
    /// # Panics
    /// If `n` is 0.
    pub fn index(&mut self, n: usize) -> usize {
        usize::try_from(self.below(n as u64)).expect("below n fits usize")
    }

    /// A number in `lo..=hi`.
    pub fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.below(hi - lo + 1)
    }

    /// True with probability `per_mille` / 1000.
    pub fn chance(&mut self, per_mille: u64) -> bool {
        self.below(1000) < per_mille
    }

    /// A random byte.
    pub fn byte(&mut self) -> u8 {
        self.next_u64().to_le_bytes()[0]
    }

    /// One of `items`.
    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.index(items.len())]
    }

    /// An index drawn with the given weights (not all zero).
    pub fn weighted(&mut self, weights: &[u64]) -> usize {
        let total: u64 = weights.iter().sum();
        let mut x = self.below(total);
        for (i, &w) in weights.iter().enumerate() {
            if x < w {
                return i;
            }
            x -= w;
        }
        weights.len() - 1
    }

    /// Fills `buf` with random bytes.
    pub fn fill(&mut self, buf: &mut [u8]) {
        for chunk in buf.chunks_mut(8) {
            let bytes = self.next_u64().to_le_bytes();
            chunk.copy_from_slice(&bytes[..chunk.len()]);
        }
    }
}

/// The transport header of a built frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transport {
    /// TCP with these flags and this many 4-byte words of options.
    Tcp {
        /// Flag byte (byte 13 of the header).
        flags: u8,
        /// Words of options (0 to 10).
        option_words: u8,
    },
    /// UDP.
    Udp,
    /// ICMP echo request.
    Icmp,
    /// `ICMPv6` echo request.
    Icmpv6,
    /// Any other protocol number; no header, only payload.
    Raw(u8),
}

impl Transport {
    /// The IP protocol number.
    #[must_use]
    pub const fn proto(self) -> u8 {
        match self {
            Self::Tcp { .. } => IPPROTO_TCP,
            Self::Udp => IPPROTO_UDP,
            Self::Icmp => IPPROTO_ICMP,
            Self::Icmpv6 => IPPROTO_ICMPV6,
            Self::Raw(proto) => proto,
        }
    }

    fn write(self, out: &mut Vec<u8>, payload: usize) {
        match self {
            Self::Tcp {
                flags,
                option_words,
            } => {
                out.extend_from_slice(&40_000u16.to_be_bytes());
                out.extend_from_slice(&80u16.to_be_bytes());
                out.extend_from_slice(&[0, 0, 0, 1, 0, 0, 0, 0]); // seq, ack
                out.push((5 + option_words) << 4);
                out.push(flags);
                out.extend_from_slice(&[0xff, 0xff, 0, 0, 0, 0]); // window, csum, urg
                // NOP options: their content does not matter to the parser.
                out.extend(std::iter::repeat_n(1u8, usize::from(option_words) * 4));
            }
            Self::Udp => {
                out.extend_from_slice(&40_000u16.to_be_bytes());
                out.extend_from_slice(&53u16.to_be_bytes());
                let len = u16::try_from(8 + payload).unwrap_or(u16::MAX);
                out.extend_from_slice(&len.to_be_bytes());
                out.extend_from_slice(&[0, 0]);
            }
            Self::Icmp => out.extend_from_slice(&[8, 0, 0, 0, 0, 1, 0, 1]),
            Self::Icmpv6 => out.extend_from_slice(&[128, 0, 0, 0, 0, 1, 0, 1]),
            Self::Raw(_) => {}
        }
    }
}

/// Where an IPv4 packet sits in its datagram.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fragment {
    /// Not fragmented (DF set).
    Whole,
    /// The first fragment: offset 0, more fragments follow.
    First,
    /// A later fragment at this offset in 8-byte units (non-zero), `more` set or not.
    Later {
        /// Offset in 8-byte units.
        offset: u16,
        /// More fragments follow.
        more: bool,
    },
}

/// An IPv6 extension header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ext {
    /// Hop-by-hop options, `(len + 1) * 8` bytes.
    HopByHop(u8),
    /// Routing header, `(len + 1) * 8` bytes.
    Routing(u8),
    /// Destination options, `(len + 1) * 8` bytes.
    DstOpts(u8),
    /// Authentication header, `(len + 2) * 4` bytes.
    Ah(u8),
    /// Fragment header.
    Fragment {
        /// Offset in 8-byte units (0: first fragment).
        offset: u16,
        /// More fragments follow.
        more: bool,
    },
}

impl Ext {
    /// The next-header value that announces this header.
    #[must_use]
    pub const fn proto(self) -> u8 {
        match self {
            Self::HopByHop(_) => IPPROTO_HOPOPTS,
            Self::Routing(_) => IPPROTO_ROUTING,
            Self::DstOpts(_) => IPPROTO_DSTOPTS,
            Self::Ah(_) => IPPROTO_AH,
            Self::Fragment { .. } => IPPROTO_FRAGMENT,
        }
    }

    fn write(self, out: &mut Vec<u8>, next: u8) {
        match self {
            Self::HopByHop(len) | Self::Routing(len) | Self::DstOpts(len) => {
                let total = (usize::from(len) + 1) * 8;
                out.extend_from_slice(&[next, len]);
                // PadN option covering the rest.
                let pad = u8::try_from(total - 4).unwrap_or(u8::MAX);
                out.extend_from_slice(&[1, pad]);
                out.extend(std::iter::repeat_n(0u8, total - 4));
            }
            Self::Ah(len) => {
                let total = (usize::from(len) + 2) * 4;
                out.extend_from_slice(&[next, len, 0, 0]);
                out.extend_from_slice(&[0, 0, 0x10, 0x01, 0, 0, 0, 1]); // SPI, sequence
                out.extend(std::iter::repeat_n(0u8, total.saturating_sub(12)));
            }
            Self::Fragment { offset, more } => {
                let field = (offset << 3) | u16::from(more);
                out.extend_from_slice(&[next, 0]);
                out.extend_from_slice(&field.to_be_bytes());
                out.extend_from_slice(&[0, 0, 0x12, 0x34]);
            }
        }
    }
}

/// The network header of a built frame.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Ip {
    /// IPv4 from `src`.
    V4 {
        /// Source address.
        src: [u8; 4],
        /// 4-byte words of options (0 to 10).
        option_words: u8,
        /// Fragment position.
        fragment: Fragment,
    },
    /// IPv6 from `src` with an extension header chain.
    V6 {
        /// Source address.
        src: [u8; 16],
        /// Extension headers, in order, before the transport header.
        ext: Vec<Ext>,
    },
}

/// A frame's shape: VLAN tags, network header, transport header, payload length.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Frame {
    /// Tag protocol identifiers of the VLAN tags, outermost first
    /// ([`consts::ETH_P_8021Q`] or [`consts::ETH_P_8021AD`]).
    pub vlans: Vec<u16>,
    /// The network header.
    pub ip: Ip,
    /// The transport header.
    pub transport: Transport,
    /// Payload bytes after the transport header.
    pub payload: usize,
}

/// Writes the Ethernet header and VLAN tags, ending with `ether_type`.
pub fn ethernet(out: &mut Vec<u8>, vlans: &[u16], ether_type: u16) {
    out.extend_from_slice(&SERVER_MAC);
    out.extend_from_slice(&CLIENT_MAC);
    for (i, tpid) in vlans.iter().enumerate() {
        out.extend_from_slice(&tpid.to_be_bytes());
        // The tag's TCI: priority 0, VLAN id 100 + i.
        let tci = 100 + u16::try_from(i).unwrap_or(0);
        out.extend_from_slice(&tci.to_be_bytes());
    }
    out.extend_from_slice(&ether_type.to_be_bytes());
}

impl Frame {
    /// The frame's bytes.
    #[must_use]
    pub fn build(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(128 + self.payload);
        match &self.ip {
            Ip::V4 {
                src,
                option_words,
                fragment,
            } => {
                ethernet(&mut out, &self.vlans, ETH_P_IPV4);
                let ip_start = out.len();
                let header_len = 20 + usize::from(*option_words) * 4;
                let frags: u16 = match fragment {
                    Fragment::Whole => 0x4000,
                    Fragment::First => 0x2000,
                    Fragment::Later { offset, more } => {
                        (offset & 0x1fff) | if *more { 0x2000 } else { 0 }
                    }
                };
                out.push(0x40 | (5 + option_words));
                out.push(0);
                out.extend_from_slice(&[0, 0]); // total length, set below
                out.extend_from_slice(&[0x12, 0x34]);
                out.extend_from_slice(&frags.to_be_bytes());
                out.push(64);
                out.push(self.transport.proto());
                out.extend_from_slice(&[0, 0]);
                out.extend_from_slice(src);
                out.extend_from_slice(&SERVER4);
                // NOP options, then end of options in the last byte.
                out.extend(std::iter::repeat_n(1u8, usize::from(*option_words) * 4));
                if let (true, Some(last)) = (*option_words > 0, out.last_mut()) {
                    *last = 0;
                }
                debug_assert_eq!(out.len() - ip_start, header_len);
                self.transport.write(&mut out, self.payload);
                out.extend(std::iter::repeat_n(0xa5u8, self.payload));
                let total = u16::try_from(out.len() - ip_start).unwrap_or(u16::MAX);
                out[ip_start + 2..ip_start + 4].copy_from_slice(&total.to_be_bytes());
            }
            Ip::V6 { src, ext } => {
                ethernet(&mut out, &self.vlans, ETH_P_IPV6);
                let ip_start = out.len();
                let first = ext.first().map_or(self.transport.proto(), |e| e.proto());
                out.extend_from_slice(&[0x60, 0, 0, 0, 0, 0, first, 64]);
                out.extend_from_slice(src);
                out.extend_from_slice(&SERVER6);
                for (i, e) in ext.iter().enumerate() {
                    let next = ext.get(i + 1).map_or(self.transport.proto(), |n| n.proto());
                    e.write(&mut out, next);
                }
                self.transport.write(&mut out, self.payload);
                out.extend(std::iter::repeat_n(0xa5u8, self.payload));
                let payload_len = u16::try_from(out.len() - ip_start - 40).unwrap_or(u16::MAX);
                out[ip_start + 4..ip_start + 6].copy_from_slice(&payload_len.to_be_bytes());
            }
        }
        out
    }
}

/// A frame that is not IP: `ether_type` after `vlans`, then `payload` random bytes.
#[must_use]
pub fn non_ip(rng: &mut Rng, vlans: &[u16], ether_type: u16, payload: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(18 + payload);
    ethernet(&mut out, vlans, ether_type);
    let start = out.len();
    out.resize(start + payload, 0);
    rng.fill(&mut out[start..]);
    out
}

/// Flips `flips` random bits, mostly in the first `headers` bytes (where the parser reads).
pub fn flip_bits(rng: &mut Rng, frame: &mut [u8], flips: usize, headers: usize) {
    for _ in 0..flips {
        let span = if rng.chance(800) {
            headers.min(frame.len())
        } else {
            frame.len()
        };
        let i = rng.index(span.max(1));
        frame[i] ^= 1 << rng.below(8);
    }
}

/// Overwrites one byte among the first `headers` with a value the parser treats specially
/// (ethertype and protocol bytes, version nibbles, lengths at their limits) or a random one.
pub fn poke_byte(rng: &mut Rng, frame: &mut [u8], headers: usize) {
    const SPECIAL: [u8; 24] = [
        0x00, 0x01, 0x02, 0x05, 0x06, 0x08, 0x11, 0x12, 0x2b, 0x2c, 0x33, 0x3a, 0x3c, 0x40, 0x45,
        0x4f, 0x50, 0x60, 0x81, 0x86, 0x88, 0xa8, 0xdd, 0xff,
    ];
    let i = rng.index(headers.min(frame.len()).max(1));
    frame[i] = if rng.chance(700) {
        *rng.pick(&SPECIAL)
    } else {
        rng.byte()
    };
}

/// Random bytes of `len`, with an IP or VLAN ethertype at byte 12 half of the time.
#[must_use]
pub fn random_bytes(rng: &mut Rng, len: usize) -> Vec<u8> {
    let mut out = vec![0u8; len];
    rng.fill(&mut out);
    if len >= 14 && rng.chance(500) {
        let ether_type = *rng.pick(&[ETH_P_IPV4, ETH_P_IPV6, ETH_P_8021Q, ETH_P_8021AD]);
        out[12..14].copy_from_slice(&ether_type.to_be_bytes());
        if len > 14 && ether_type == ETH_P_IPV4 && rng.chance(500) {
            out[14] = 0x45;
        } else if len > 14 && ether_type == ETH_P_IPV6 && rng.chance(500) {
            out[14] = 0x60;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_plain_udp4_frame_has_the_expected_layout() {
        let frame = Frame {
            vlans: vec![],
            ip: Ip::V4 {
                src: [198, 18, 0, 10],
                option_words: 0,
                fragment: Fragment::Whole,
            },
            transport: Transport::Udp,
            payload: 10,
        }
        .build();
        assert_eq!(frame.len(), 14 + 20 + 8 + 10);
        assert_eq!(&frame[12..14], &[0x08, 0x00]);
        assert_eq!(frame[14], 0x45);
        assert_eq!(u16::from_be_bytes([frame[16], frame[17]]), 38);
        assert_eq!(frame[23], IPPROTO_UDP);
        assert_eq!(&frame[26..30], &[198, 18, 0, 10]);
    }

    #[test]
    fn ipv6_extension_headers_chain_to_the_transport() {
        let frame = Frame {
            vlans: vec![ETH_P_8021AD, ETH_P_8021Q],
            ip: Ip::V6 {
                src: SERVER6,
                ext: vec![
                    Ext::HopByHop(0),
                    Ext::Ah(1),
                    Ext::Fragment {
                        offset: 0,
                        more: true,
                    },
                ],
            },
            transport: Transport::Icmpv6,
            payload: 0,
        }
        .build();
        let ip = 14 + 8;
        assert_eq!(&frame[12..14], &[0x88, 0xa8]);
        assert_eq!(&frame[16..18], &[0x81, 0x00]);
        assert_eq!(&frame[20..22], &[0x86, 0xdd]);
        assert_eq!(frame[ip + 6], IPPROTO_HOPOPTS);
        assert_eq!(frame[ip + 40], IPPROTO_AH);
        assert_eq!(frame[ip + 48], IPPROTO_FRAGMENT);
        assert_eq!(frame[ip + 48 + 12], IPPROTO_ICMPV6);
        assert_eq!(frame.len(), ip + 40 + 8 + 12 + 8 + 8);
    }

    #[test]
    fn the_generator_is_repeatable() {
        let (mut a, mut b) = (Rng::new(7), Rng::new(7));
        let xs: Vec<u64> = (0..4).map(|_| a.next_u64()).collect();
        let ys: Vec<u64> = (0..4).map(|_| b.next_u64()).collect();
        assert_eq!(xs, ys);
        assert_ne!(Rng::new(8).next_u64(), xs[0]);
    }
}
