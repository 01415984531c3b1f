//! Header parsing with one bounds-checked accessor and a running offset (xdp-tools' header
//! cursor). No slices over packet memory; every loop has a constant bound.

use aya_ebpf::programs::XdpContext;
use filter_common::{Class, MAX_IPV6_EXT_HEADERS, MAX_VLAN_TAGS, SourceKey, fragment};
use network_types::{
    eth::EthHdr,
    ip::{Ipv4Hdr, Ipv6Hdr},
    vlan::VlanHdr,
};

/// Ethertypes and protocol numbers, in host order.
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

/// Minimum header lengths checked at L4: TCP without options, UDP, ICMP (type, code,
/// checksum and the 4-byte rest of header, RFC 792), `ICMPv6` (type, code, checksum, RFC 4443).
const TCP_MIN_LEN: usize = 20;
const UDP_LEN: usize = 8;
const ICMP_MIN_LEN: usize = 8;
const ICMPV6_MIN_LEN: usize = 4;
/// TCP flag bits in byte 13 of the header.
const TCP_SYN: u8 = 0x02;
const TCP_ACK: u8 = 0x10;

/// The frame ended before a header we needed, or a header is inconsistent, before the
/// source address was known.
pub struct Malformed;

/// What the parser found out.
pub enum Parsed {
    /// An IP packet with a known source.
    Source(Source),
    /// Not IPv4 or IPv6.
    NonIp,
}

/// An IP packet from `key` (`v4`: an IPv4 source) of `class`. `l4_ok` is false when a
/// header after the IP header is truncated or inconsistent (the packet is then counted as
/// malformed if passed). `at` says where its headers start.
#[derive(Clone, Copy)]
pub struct Source {
    pub key: SourceKey,
    pub v4: bool,
    pub class: Class,
    pub l4_ok: bool,
    pub at: Offsets,
    pub shape: Shape,
}

/// Where the IP header and the transport header start in the frame. `l4` is where the
/// transport header would be (0 when the parser did not get that far); a stage that
/// rewrites the frame checks these bounds again.
#[derive(Clone, Copy)]
pub struct Offsets {
    pub l3: usize,
    pub l4: usize,
}

/// What rules match on, besides the source. The transport fields are read while the parser
/// has the headers in hand, so that no stage walks the extension headers again; the IP
/// header's own fields (destination, length, TTL, DSCP), at a fixed place in a header whose
/// offset the parser found, only for a packet that enters the rules stage
/// ([`ip_fields_into`]): reading them for every packet cost the packets that match no rule
/// a sixth of their time with rules (the README's Performance section has the numbers).
#[derive(Clone, Copy)]
pub struct Shape {
    /// Destination address, as a key.
    pub dst: SourceKey,
    /// IP length: IPv4 total length, IPv6 payload length + 40.
    pub ip_len: u16,
    /// Source and destination port (TCP, UDP with a whole header; else zero).
    pub sport: u16,
    pub dport: u16,
    /// Where the L4 payload starts in the frame (0: unknown).
    pub payload_at: u16,
    /// IP protocol after the extension headers (0 with `ports` false when unknown).
    pub proto: u8,
    /// TTL or hop limit.
    pub ttl: u8,
    /// DSCP (the traffic class's upper six bits).
    pub dscp: u8,
    /// A `filter_common::fragment` bit.
    pub fragment: u8,
    /// TCP flags (a TCP header was read).
    pub tcp_flags: u8,
    /// ICMP type and code (an ICMP header was read).
    pub icmp_type: u8,
    pub icmp_code: u8,
    /// Which of the L4 fields above were read: `L4_PORTS`, `L4_TCP`, `L4_ICMP`.
    pub l4: u8,
}

/// Bits of [`Shape::l4`].
pub const L4_PORTS: u8 = 1;
pub const L4_TCP: u8 = 1 << 1;
pub const L4_ICMP: u8 = 1 << 2;

/// What the rules' index reads of a packet: its protocol and ports (see
/// `rules::keep_shape`).
#[derive(Clone, Copy)]
pub struct IndexKeys {
    pub sport: u16,
    pub dport: u16,
    pub proto: u8,
    /// As [`Shape::l4`].
    pub l4: u8,
}

impl Shape {
    /// What the rules' index reads.
    #[inline(always)]
    pub const fn index(&self) -> IndexKeys {
        IndexKeys {
            sport: self.sport,
            dport: self.dport,
            proto: self.proto,
            l4: self.l4,
        }
    }

    /// The shape of a packet whose headers have not been read yet.
    const fn empty() -> Self {
        Self {
            dst: SourceKey { addr: [0; 16] },
            ip_len: 0,
            sport: 0,
            dport: 0,
            payload_at: 0,
            proto: 0,
            ttl: 0,
            dscp: 0,
            fragment: fragment::NONE,
            tcp_flags: 0,
            icmp_type: 0,
            icmp_code: 0,
            l4: 0,
        }
    }
}

/// A read position in the frame.
struct Cursor<'a> {
    ctx: &'a XdpContext,
    pos: usize,
}

impl Cursor<'_> {
    /// A pointer to a `T` at the cursor if the whole `T` lies inside the frame. The only
    /// place that turns packet memory into pointers.
    #[inline(always)]
    fn peek<T>(&self) -> Result<*const T, Malformed> {
        self.peek_len(core::mem::size_of::<T>())
            .map(<*const u8>::cast::<T>)
    }

    /// A pointer to `len` bytes at the cursor if they all lie inside the frame.
    #[inline(always)]
    fn peek_len(&self, len: usize) -> Result<*const u8, Malformed> {
        let start = self.ctx.data() + self.pos;
        if start + len > self.ctx.data_end() {
            return Err(Malformed);
        }
        Ok(start as *const u8)
    }
}

/// Finds the source of a frame and checks its headers.
#[inline(always)]
pub fn source_of(ctx: &XdpContext) -> Result<Parsed, Malformed> {
    let mut cur = Cursor { ctx, pos: 0 };
    let eth = cur.peek::<EthHdr>()?;
    // SAFETY: `peek` checked that the Ethernet header lies inside the frame.
    let mut ether_type = u16::from_be(unsafe { (*eth).ether_type });
    cur.pos += EthHdr::LEN;
    for _ in 0..MAX_VLAN_TAGS {
        if ether_type != ETH_P_8021Q && ether_type != ETH_P_8021AD {
            break;
        }
        let vlan = cur.peek::<VlanHdr>()?;
        // SAFETY: `peek` checked that the tag lies inside the frame.
        ether_type = u16::from_be(unsafe { (*vlan).ether_type });
        cur.pos += VlanHdr::LEN;
    }
    match ether_type {
        ETH_P_IPV4 => ipv4(cur),
        ETH_P_IPV6 => ipv6(cur),
        // A third VLAN tag is beyond what we walk: we cannot see the source.
        ETH_P_8021Q | ETH_P_8021AD => Err(Malformed),
        _ => Ok(Parsed::NonIp),
    }
}

#[inline(always)]
fn ipv4(mut cur: Cursor<'_>) -> Result<Parsed, Malformed> {
    let ip = cur.peek::<Ipv4Hdr>()?;
    // SAFETY: `peek` checked that the fixed IPv4 header lies inside the frame.
    let (vihl, tot_len, frags, proto, key) = unsafe {
        (
            (*ip).vihl,
            u16::from_be_bytes((*ip).tot_len),
            u16::from_be_bytes((*ip).frags),
            (*ip).proto,
            ipv4_key(&raw const (*ip).src_addr),
        )
    };
    let header_len = usize::from(vihl & 0x0f) * 4;
    if vihl >> 4 != 4 || header_len < Ipv4Hdr::LEN || usize::from(tot_len) < header_len {
        return Err(Malformed);
    }
    // Options must be inside the frame too.
    cur.peek_len(header_len)?;
    let mut shape = Shape::empty();
    shape.proto = proto;
    let l3 = cur.pos;
    cur.pos += header_len;
    let (class, l4_ok) = if frags & 0x1fff != 0 {
        // A non-first fragment carries no L4 header: its first bytes are payload.
        shape.fragment = fragment::LATER;
        (Class::Fragment, true)
    } else if frags & 0x2000 != 0 {
        // A first fragment (more fragments follow): its L4 header must be whole.
        shape.fragment = fragment::FIRST;
        (Class::Fragment, l4(&cur, proto, &mut shape).1)
    } else {
        l4(&cur, proto, &mut shape)
    };
    Ok(Parsed::Source(Source {
        key,
        v4: true,
        class,
        l4_ok,
        at: Offsets { l3, l4: cur.pos },
        shape,
    }))
}

#[inline(always)]
fn ipv6(mut cur: Cursor<'_>) -> Result<Parsed, Malformed> {
    let ip = cur.peek::<Ipv6Hdr>()?;
    // SAFETY: `peek` checked that the fixed IPv6 header lies inside the frame.
    let (version, mut next, key) = unsafe {
        (
            (*ip).vcf[0] >> 4,
            (*ip).next_hdr,
            ipv6_key(&raw const (*ip).src_addr),
        )
    };
    if version != 6 {
        return Err(Malformed);
    }
    let mut shape = Shape::empty();
    let l3 = cur.pos;
    cur.pos += Ipv6Hdr::LEN;
    let mut is_fragment = false;
    // What a packet whose headers end inside the chain is counted as.
    let cut_short = |is_fragment: bool| {
        if is_fragment {
            Class::Fragment
        } else {
            Class::Other
        }
    };
    // One round per extension header, and one more for the transport header after the last
    // one the parser walks through.
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
                let Ok(ext) = cur.peek::<[u8; 2]>() else {
                    return Ok(v6_source(key, cut_short(is_fragment), false, l3, 0, shape));
                };
                // SAFETY: `peek` checked that both bytes lie inside the frame.
                let [ext_next, ext_len] = unsafe { *ext };
                // AH counts its length in 4-byte units minus 2 (RFC 4302), the others in
                // 8-byte units not counting the first 8 bytes (RFC 8200 §4.3).
                cur.pos += if next == IPPROTO_AH {
                    (usize::from(ext_len) + 2) * 4
                } else {
                    (usize::from(ext_len) + 1) * 8
                };
                next = ext_next;
            }
            IPPROTO_FRAGMENT => {
                let Ok(frag) = cur.peek::<[u8; 8]>() else {
                    shape.fragment = fragment::FIRST;
                    return Ok(v6_source(key, Class::Fragment, false, l3, 0, shape));
                };
                // SAFETY: `peek` checked that the 8-byte fragment header lies inside the frame.
                let frag = unsafe { *frag };
                next = frag[0];
                cur.pos += 8;
                is_fragment = true;
                if u16::from_be_bytes([frag[2], frag[3]]) >> 3 != 0 {
                    // Non-first fragment: no L4 header follows.
                    shape.fragment = fragment::LATER;
                    shape.proto = next;
                    return Ok(v6_source(key, Class::Fragment, true, l3, 0, shape));
                }
                shape.fragment = fragment::FIRST;
            }
            _ => {
                shape.proto = next;
                let (class, l4_ok) = l4(&cur, next, &mut shape);
                return Ok(v6_source(
                    key,
                    if is_fragment { Class::Fragment } else { class },
                    l4_ok,
                    l3,
                    cur.pos,
                    shape,
                ));
            }
        }
    }
    // Still inside the extension header chain after the bound: we cannot see L4.
    Ok(v6_source(key, cut_short(is_fragment), false, l3, 0, shape))
}

/// Fills in the IP header's fields of `shape` (see [`Shape`]) from the header at `l3`, where
/// the parser found it (`v4`: IPv4); false if the header is not there, which the parser
/// already ruled out.
#[inline(always)]
pub fn ip_fields_into(ctx: &XdpContext, l3: usize, v4: bool, shape: &mut Shape) -> bool {
    let cur = Cursor { ctx, pos: l3 };
    if v4 {
        let Ok(ip) = cur.peek::<Ipv4Hdr>() else {
            return false;
        };
        // SAFETY: `peek` checked that the fixed IPv4 header lies inside the frame.
        unsafe {
            shape.dst = ipv4_key(&raw const (*ip).dst_addr);
            shape.ip_len = u16::from_be_bytes((*ip).tot_len);
            shape.ttl = (*ip).ttl;
            shape.dscp = (*ip).tos >> 2;
        }
    } else {
        let Ok(ip) = cur.peek::<Ipv6Hdr>() else {
            return false;
        };
        // SAFETY: `peek` checked that the fixed IPv6 header lies inside the frame.
        unsafe {
            shape.dst = ipv6_key(&raw const (*ip).dst_addr);
            shape.ip_len =
                u16::from_be_bytes((*ip).payload_len).saturating_add(offset16(Ipv6Hdr::LEN));
            shape.ttl = (*ip).hop_limit;
            let vcf = (*ip).vcf;
            shape.dscp = ((vcf[0] << 4) | (vcf[1] >> 4)) >> 2;
        }
    }
    true
}

/// The key of the IPv4 address at `addr`, read in one load (a key is built from words, not
/// bytes).
///
/// # Safety
/// `addr` must point to four readable bytes (an address in a header `peek` checked).
#[inline(always)]
unsafe fn ipv4_key<T>(addr: *const T) -> SourceKey {
    // SAFETY: the caller guarantees four readable bytes; the load is unaligned.
    SourceKey::from_ipv4_word(unsafe { core::ptr::read_unaligned(addr.cast::<u32>()) })
}

/// The key of the IPv6 address at `addr`, read in two loads.
///
/// # Safety
/// `addr` must point to sixteen readable bytes (an address in a header `peek` checked).
#[inline(always)]
unsafe fn ipv6_key<T>(addr: *const T) -> SourceKey {
    let words = addr.cast::<u64>();
    // SAFETY: the caller guarantees sixteen readable bytes; the loads are unaligned.
    unsafe {
        SourceKey::from_words([
            core::ptr::read_unaligned(words),
            core::ptr::read_unaligned(words.add(1)),
        ])
    }
}

/// An IPv6 packet's result.
#[inline(always)]
fn v6_source(
    key: SourceKey,
    class: Class,
    l4_ok: bool,
    l3: usize,
    l4: usize,
    shape: Shape,
) -> Parsed {
    Parsed::Source(Source {
        key,
        v4: false,
        class,
        l4_ok,
        at: Offsets { l3, l4 },
        shape,
    })
}

/// The class of an L4 protocol and whether its header lies complete inside the frame; what
/// rules match on of the header goes into `shape`.
#[inline(always)]
fn l4(cur: &Cursor<'_>, proto: u8, shape: &mut Shape) -> (Class, bool) {
    match proto {
        IPPROTO_TCP => {
            let Ok(tcp) = cur.peek_len(TCP_MIN_LEN) else {
                return (Class::Tcp, false);
            };
            // SAFETY: `peek_len` checked that the 20-byte TCP header lies inside the frame.
            let (ports, offset_byte, flags) = unsafe {
                (
                    core::ptr::read_unaligned(tcp.cast::<[u8; 4]>()),
                    *tcp.add(12),
                    *tcp.add(13),
                )
            };
            let class = if flags & TCP_SYN != 0 && flags & TCP_ACK == 0 {
                Class::Syn
            } else {
                Class::Tcp
            };
            let data_offset = usize::from(offset_byte >> 4) * 4;
            let ok = data_offset >= TCP_MIN_LEN && cur.peek_len(data_offset).is_ok();
            if ok {
                ports_into(shape, ports, cur.pos + data_offset);
                shape.tcp_flags = flags;
                shape.l4 |= L4_TCP;
            }
            (class, ok)
        }
        IPPROTO_UDP => {
            let Ok(udp) = cur.peek_len(UDP_LEN) else {
                return (Class::Udp, false);
            };
            // SAFETY: `peek_len` checked that the 8-byte UDP header lies inside the frame.
            let ports = unsafe { core::ptr::read_unaligned(udp.cast::<[u8; 4]>()) };
            ports_into(shape, ports, cur.pos + UDP_LEN);
            (Class::Udp, true)
        }
        IPPROTO_ICMP => (Class::Icmp, icmp_into(cur, shape, ICMP_MIN_LEN)),
        IPPROTO_ICMPV6 => (Class::Icmp, icmp_into(cur, shape, ICMPV6_MIN_LEN)),
        _ => {
            shape.payload_at = offset16(cur.pos);
            (Class::Other, true)
        }
    }
}

/// Records the ports (wire order) and where the payload starts.
#[inline(always)]
fn ports_into(shape: &mut Shape, ports: [u8; 4], payload_at: usize) {
    shape.sport = u16::from_be_bytes([ports[0], ports[1]]);
    shape.dport = u16::from_be_bytes([ports[2], ports[3]]);
    shape.payload_at = offset16(payload_at);
    shape.l4 |= L4_PORTS;
}

/// Reads an ICMP or `ICMPv6` header of at least `min_len` bytes; whether it was whole. Its
/// payload starts after 8 bytes (type, code, checksum, and the rest of the header).
#[inline(always)]
fn icmp_into(cur: &Cursor<'_>, shape: &mut Shape, min_len: usize) -> bool {
    let Ok(icmp) = cur.peek_len(min_len) else {
        return false;
    };
    // SAFETY: `peek_len` checked that at least the 4 first bytes lie inside the frame.
    let (kind, code) = unsafe { (*icmp, *icmp.add(1)) };
    shape.icmp_type = kind;
    shape.icmp_code = code;
    shape.payload_at = offset16(cur.pos + ICMP_MIN_LEN);
    shape.l4 |= L4_ICMP;
    true
}

/// An offset into the frame, which XDP frames keep under 64 KiB.
#[inline(always)]
#[expect(
    clippy::cast_possible_truncation,
    reason = "frames are shorter than 64 KiB"
)]
const fn offset16(pos: usize) -> u16 {
    pos as u16
}
