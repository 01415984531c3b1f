//! The parser of `filter-ebpf/src/parse.rs`, over a byte slice: the same headers, bounds,
//! loop limits and classes, so that every frame gets the source, class and L4 verdict the
//! program gives it.

use filter_common::{Class, MAX_IPV6_EXT_HEADERS, MAX_VLAN_TAGS, SourceKey};

const ETH_LEN: usize = 14;
const VLAN_LEN: usize = 4;
const IPV4_LEN: usize = 20;
const IPV6_LEN: usize = 40;
const ETH_P_IPV4: u16 = 0x0800;
const ETH_P_IPV6: u16 = 0x86DD;
const ETH_P_8021Q: u16 = 0x8100;
const ETH_P_8021AD: u16 = 0x88A8;
const IPPROTO_HOPOPTS: u8 = 0;
const IPPROTO_ICMP: u8 = 1;
const IPPROTO_TCP: u8 = 6;
const IPPROTO_UDP: u8 = 17;
const IPPROTO_ROUTING: u8 = 43;
const IPPROTO_FRAGMENT: u8 = 44;
const IPPROTO_AH: u8 = 51;
const IPPROTO_ICMPV6: u8 = 58;
const IPPROTO_DSTOPTS: u8 = 60;
const TCP_MIN_LEN: usize = 20;
const UDP_LEN: usize = 8;
const ICMP_MIN_LEN: usize = 8;
const ICMPV6_MIN_LEN: usize = 4;
const TCP_SYN: u8 = 0x02;
const TCP_ACK: u8 = 0x10;

/// What the parser finds in a frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Parsed {
    /// An IP packet from `key`; `l4_ok` is false when a header after the IP header is
    /// truncated or inconsistent.
    Source {
        /// The source, IPv4 mapped.
        key: SourceKey,
        /// An IPv4 source.
        v4: bool,
        /// Its class.
        class: Class,
        /// The L4 header (or what stands for it) lies whole in the frame.
        l4_ok: bool,
    },
    /// Neither IPv4 nor IPv6.
    NonIp,
    /// Cut short or inconsistent before the source was known.
    Malformed,
}

/// A read position in a frame, as the program's `Cursor`.
struct Cursor<'a> {
    frame: &'a [u8],
    pos: usize,
}

impl Cursor<'_> {
    /// The `len` bytes at the cursor, if they all lie inside the frame.
    fn peek(&self, len: usize) -> Option<&[u8]> {
        self.frame.get(self.pos..self.pos.checked_add(len)?)
    }
}

/// Parses `frame` as the program does.
#[must_use]
pub fn parse(frame: &[u8]) -> Parsed {
    let mut cur = Cursor { frame, pos: 0 };
    let Some(eth) = cur.peek(ETH_LEN) else {
        return Parsed::Malformed;
    };
    let mut ether_type = u16::from_be_bytes([eth[12], eth[13]]);
    cur.pos += ETH_LEN;
    for _ in 0..MAX_VLAN_TAGS {
        if ether_type != ETH_P_8021Q && ether_type != ETH_P_8021AD {
            break;
        }
        let Some(vlan) = cur.peek(VLAN_LEN) else {
            return Parsed::Malformed;
        };
        ether_type = u16::from_be_bytes([vlan[2], vlan[3]]);
        cur.pos += VLAN_LEN;
    }
    match ether_type {
        ETH_P_IPV4 => ipv4(cur),
        ETH_P_IPV6 => ipv6(cur),
        ETH_P_8021Q | ETH_P_8021AD => Parsed::Malformed,
        _ => Parsed::NonIp,
    }
}

fn ipv4(mut cur: Cursor<'_>) -> Parsed {
    let Some(ip) = cur.peek(IPV4_LEN) else {
        return Parsed::Malformed;
    };
    let vihl = ip[0];
    let tot_len = usize::from(u16::from_be_bytes([ip[2], ip[3]]));
    let frags = u16::from_be_bytes([ip[6], ip[7]]);
    let proto = ip[9];
    let src = [ip[12], ip[13], ip[14], ip[15]];
    let header_len = usize::from(vihl & 0x0f) * 4;
    if vihl >> 4 != 4 || header_len < IPV4_LEN || tot_len < header_len {
        return Parsed::Malformed;
    }
    if cur.peek(header_len).is_none() {
        return Parsed::Malformed;
    }
    cur.pos += header_len;
    let (class, l4_ok) = if frags & 0x1fff != 0 {
        (Class::Fragment, true)
    } else if frags & 0x2000 != 0 {
        (Class::Fragment, l4(&cur, proto).1)
    } else {
        l4(&cur, proto)
    };
    Parsed::Source {
        key: SourceKey::from_ipv4(src),
        v4: true,
        class,
        l4_ok,
    }
}

fn ipv6(mut cur: Cursor<'_>) -> Parsed {
    let Some(ip) = cur.peek(IPV6_LEN) else {
        return Parsed::Malformed;
    };
    if ip[0] >> 4 != 6 {
        return Parsed::Malformed;
    }
    let mut next = ip[6];
    let mut src = [0u8; 16];
    src.copy_from_slice(&ip[8..24]);
    let key = SourceKey::from_ipv6(src);
    let source = |class, l4_ok| Parsed::Source {
        key,
        v4: false,
        class,
        l4_ok,
    };
    cur.pos += IPV6_LEN;
    let mut fragment = false;
    let cut_short = |fragment: bool| {
        if fragment {
            Class::Fragment
        } else {
            Class::Other
        }
    };
    // The parser walks through up to MAX_IPV6_EXT_HEADERS extension headers and then reads
    // the transport header; a seventh extension header is beyond it.
    let mut walked = 0;
    loop {
        let extension = matches!(
            next,
            IPPROTO_HOPOPTS | IPPROTO_ROUTING | IPPROTO_DSTOPTS | IPPROTO_AH | IPPROTO_FRAGMENT
        );
        if extension && walked == MAX_IPV6_EXT_HEADERS {
            return source(cut_short(fragment), false);
        }
        walked += 1;
        match next {
            IPPROTO_HOPOPTS | IPPROTO_ROUTING | IPPROTO_DSTOPTS | IPPROTO_AH => {
                let Some(ext) = cur.peek(2) else {
                    return source(cut_short(fragment), false);
                };
                let (ext_next, ext_len) = (ext[0], usize::from(ext[1]));
                cur.pos += if next == IPPROTO_AH {
                    (ext_len + 2) * 4
                } else {
                    (ext_len + 1) * 8
                };
                next = ext_next;
            }
            IPPROTO_FRAGMENT => {
                let Some(frag) = cur.peek(8) else {
                    return source(Class::Fragment, false);
                };
                next = frag[0];
                let offset = u16::from_be_bytes([frag[2], frag[3]]) >> 3;
                cur.pos += 8;
                fragment = true;
                if offset != 0 {
                    return source(Class::Fragment, true);
                }
            }
            _ => {
                let (class, l4_ok) = l4(&cur, next);
                return source(if fragment { Class::Fragment } else { class }, l4_ok);
            }
        }
    }
}

fn l4(cur: &Cursor<'_>, proto: u8) -> (Class, bool) {
    match proto {
        IPPROTO_TCP => {
            let Some(tcp) = cur.peek(TCP_MIN_LEN) else {
                return (Class::Tcp, false);
            };
            let (offset_byte, flags) = (tcp[12], tcp[13]);
            let class = if flags & TCP_SYN != 0 && flags & TCP_ACK == 0 {
                Class::Syn
            } else {
                Class::Tcp
            };
            let data_offset = usize::from(offset_byte >> 4) * 4;
            (
                class,
                data_offset >= TCP_MIN_LEN && cur.peek(data_offset).is_some(),
            )
        }
        IPPROTO_UDP => (Class::Udp, cur.peek(UDP_LEN).is_some()),
        IPPROTO_ICMP => (Class::Icmp, cur.peek(ICMP_MIN_LEN).is_some()),
        IPPROTO_ICMPV6 => (Class::Icmp, cur.peek(ICMPV6_MIN_LEN).is_some()),
        _ => (Class::Other, true),
    }
}

#[cfg(test)]
mod tests {
    use super::{Class, Parsed, SourceKey, parse};
    use crate::frames::{Ext, Fragment, Frame, Ip, Rng, Transport, consts::*, non_ip};

    const SRC4: [u8; 4] = [198, 18, 1, 7];
    const SRC6: [u8; 16] = [0x20, 0x01, 0, 2, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 7];

    fn v4(transport: Transport, fragment: Fragment, option_words: u8) -> Vec<u8> {
        Frame {
            vlans: vec![],
            ip: Ip::V4 {
                src: SRC4,
                option_words,
                fragment,
            },
            transport,
            payload: 4,
        }
        .build()
    }

    fn v6(transport: Transport, ext: Vec<Ext>) -> Vec<u8> {
        Frame {
            vlans: vec![],
            ip: Ip::V6 { src: SRC6, ext },
            transport,
            payload: 0,
        }
        .build()
    }

    fn source(v4: bool, class: Class, l4_ok: bool) -> Parsed {
        Parsed::Source {
            key: if v4 {
                SourceKey::from_ipv4(SRC4)
            } else {
                SourceKey::from_ipv6(SRC6)
            },
            v4,
            class,
            l4_ok,
        }
    }

    const SYN: Transport = Transport::Tcp {
        flags: TCP_SYN,
        option_words: 0,
    };
    const SYN_ACK: Transport = Transport::Tcp {
        flags: TCP_SYN | TCP_ACK,
        option_words: 0,
    };

    #[test]
    fn whole_packets_get_their_protocol_class() {
        let whole = Fragment::Whole;
        assert_eq!(parse(&v4(SYN, whole, 0)), source(true, Class::Syn, true));
        assert_eq!(
            parse(&v4(SYN_ACK, whole, 2)),
            source(true, Class::Tcp, true)
        );
        assert_eq!(
            parse(&v4(Transport::Udp, whole, 0)),
            source(true, Class::Udp, true)
        );
        assert_eq!(
            parse(&v4(Transport::Icmp, whole, 10)),
            source(true, Class::Icmp, true)
        );
        assert_eq!(
            parse(&v4(Transport::Raw(IPPROTO_GRE), whole, 0)),
            source(true, Class::Other, true)
        );
        assert_eq!(
            parse(&v6(Transport::Icmpv6, vec![])),
            source(false, Class::Icmp, true)
        );
        assert_eq!(
            parse(&v6(Transport::Udp, vec![Ext::HopByHop(1), Ext::Ah(4)])),
            source(false, Class::Udp, true)
        );
    }

    #[test]
    fn fragments_are_their_own_class_and_only_first_ones_need_l4() {
        let later = Fragment::Later {
            offset: 100,
            more: false,
        };
        assert_eq!(
            parse(&v4(Transport::Udp, later, 0)),
            source(true, Class::Fragment, true)
        );
        let mut first = v4(SYN, Fragment::First, 0);
        assert_eq!(parse(&first), source(true, Class::Fragment, true));
        first.truncate(14 + 20 + 10);
        assert_eq!(parse(&first), source(true, Class::Fragment, false));
        let frag6 = |offset| Ext::Fragment { offset, more: true };
        assert_eq!(
            parse(&v6(Transport::Udp, vec![frag6(0)])),
            source(false, Class::Fragment, true)
        );
        assert_eq!(
            parse(&v6(Transport::Udp, vec![Ext::DstOpts(0), frag6(3)])),
            source(false, Class::Fragment, true)
        );
    }

    #[test]
    fn truncation_is_malformed_before_the_source_and_l4_not_ok_after() {
        let frame = v4(Transport::Udp, Fragment::Whole, 1);
        assert_eq!(parse(&frame[..14 + 19]), Parsed::Malformed);
        // Options cut short: the source is unknown to the program.
        assert_eq!(parse(&frame[..14 + 23]), Parsed::Malformed);
        assert_eq!(
            parse(&frame[..14 + 24 + 7]),
            source(true, Class::Udp, false)
        );
        let frame = v6(SYN, vec![Ext::Routing(0)]);
        assert_eq!(parse(&frame[..14 + 39]), Parsed::Malformed);
        assert_eq!(parse(&frame[..14 + 41]), source(false, Class::Other, false));
        // TCP cut before its flags: the class is TCP, not SYN.
        assert_eq!(
            parse(&frame[..14 + 48 + 19]),
            source(false, Class::Tcp, false)
        );
        // A TCP data offset beyond the frame, or below five words.
        let mut frame = v4(SYN, Fragment::Whole, 0);
        frame[14 + 20 + 12] = 0x70; // 28 bytes, the frame has 24 after IP
        assert_eq!(parse(&frame), source(true, Class::Syn, false));
        frame[14 + 20 + 12] = 0x40;
        assert_eq!(parse(&frame), source(true, Class::Syn, false));
    }

    #[test]
    fn a_truncated_header_after_a_first_fragment_header_is_a_fragment() {
        let frame = v6(
            Transport::Udp,
            vec![
                Ext::Fragment {
                    offset: 0,
                    more: true,
                },
                Ext::DstOpts(0),
            ],
        );
        assert_eq!(
            parse(&frame[..=14 + 40 + 8]),
            source(false, Class::Fragment, false)
        );
    }

    #[test]
    fn vlan_tags_and_bad_headers() {
        let mut frame = Frame {
            vlans: vec![ETH_P_8021Q, ETH_P_8021AD],
            ip: Ip::V4 {
                src: SRC4,
                option_words: 0,
                fragment: Fragment::Whole,
            },
            transport: Transport::Udp,
            payload: 0,
        };
        assert_eq!(parse(&frame.build()), source(true, Class::Udp, true));
        frame.vlans.push(ETH_P_8021Q);
        assert_eq!(parse(&frame.build()), Parsed::Malformed, "a third tag");
        let mut bad = v4(Transport::Udp, Fragment::Whole, 0);
        bad[14] = 0x44; // IHL 4
        assert_eq!(parse(&bad), Parsed::Malformed);
        let mut bad = v4(Transport::Udp, Fragment::Whole, 0);
        bad[16..18].copy_from_slice(&[0, 19]); // total length below the header
        assert_eq!(parse(&bad), Parsed::Malformed);
        let mut bad = v6(Transport::Udp, vec![]);
        bad[14] = 0x40;
        assert_eq!(parse(&bad), Parsed::Malformed);
        let mut rng = Rng::new(1);
        assert_eq!(parse(&non_ip(&mut rng, &[], ETH_P_ARP, 28)), Parsed::NonIp);
        assert_eq!(parse(&[0u8; 13]), Parsed::Malformed);
    }

    #[test]
    fn the_extension_chain_is_walked_six_deep() {
        let five = vec![Ext::DstOpts(0); 5];
        assert_eq!(
            parse(&v6(Transport::Raw(IPPROTO_NONE), five)),
            source(false, Class::Other, true)
        );
        // Six headers are walked through, and the transport after them is read.
        let six = vec![Ext::DstOpts(0); 6];
        assert_eq!(
            parse(&v6(Transport::Udp, six.clone())),
            source(false, Class::Udp, true)
        );
        let mut seven = six.clone();
        seven.push(Ext::DstOpts(0));
        assert_eq!(
            parse(&v6(Transport::Udp, seven)),
            source(false, Class::Other, false),
            "a seventh extension header is beyond the parser"
        );
        let mut with_fragment = six;
        with_fragment[0] = Ext::Fragment {
            offset: 0,
            more: true,
        };
        with_fragment.push(Ext::Routing(0));
        assert_eq!(
            parse(&v6(Transport::Udp, with_fragment)),
            source(false, Class::Fragment, false)
        );
    }
}
