//! SYN protection ("syn-protect"): the contract between the daemon and the program's cookie
//! stage. For untracked sources, a SYN to a protected port is answered from XDP with a
//! SYN-ACK whose sequence number is a SYN cookie issued through the listening socket; an ACK
//! that returns a valid cookie proves its source real and admits it to the table.

use crate::RateParams;

/// Protected ports: a bit per TCP port, `FW_SYN_PORTS[port / 64] & 1 << (port % 64)`.
pub const SYN_PORT_WORDS: u32 = 65_536 / 64;

/// The word and bit of `port` in `FW_SYN_PORTS`.
#[must_use]
pub const fn syn_port_bit(port: u16) -> (u32, u64) {
    ((port / 64) as u32, 1 << (port % 64))
}

/// What the SYN-ACKs say and how fast they may go, part of
/// [`LimitsConfig`](crate::LimitsConfig). A SYN-ACK carries the MSS option only (no
/// timestamp, so no window scale or SACK: see the program's `syncookie` module).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SynProtectConfig {
    /// Per-CPU budget of SYN-ACKs: they go to addresses that may be spoofed. A SYN over it
    /// falls back to the SYN ceiling.
    pub cookie_rate: RateParams,
    /// Per-CPU budget of sources admitted to the table for a valid cookie (a botnet that
    /// completes handshakes must not churn the table faster than this).
    pub verified_rate: RateParams,
    /// MSS the SYN-ACK advertises over IPv4 (the interface's MTU less 40).
    pub mss_v4: u16,
    /// MSS the SYN-ACK advertises over IPv6 (the MTU less 60).
    pub mss_v6: u16,
    /// TTL of IPv4 SYN-ACKs.
    pub ttl: u8,
    /// Hop limit of IPv6 SYN-ACKs.
    pub hop_limit: u8,
    /// Explicit padding.
    pub pad: [u8; 2],
}
const _: () = assert!(core::mem::size_of::<SynProtectConfig>() == 40);

/// Why a packet that the cookie stage looked at went on to the untracked path instead, or
/// what it did besides its outcome: slots of the per-CPU `FW_SYN_STATS`.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SynStat {
    /// A SYN to a protected port found no listening socket.
    NoListener = 0,
    /// The kernel refused a cookie (`tcp_syncookies` not 2, or the accept queue full).
    Refused = 1,
    /// The SYN-ACK budget was spent.
    OverBudget = 2,
    /// A SYN the cookie stage cannot answer (IPv4 options, IPv6 extension headers, TCP
    /// options it cannot read).
    Unsupported = 3,
    /// An ACK to a protected port without a valid cookie.
    CookieInvalid = 4,
    /// An ACK with a valid cookie when the admission budget was spent (passed, not admitted).
    VerifiedOverBudget = 5,
}

/// Number of `FW_SYN_STATS` slots.
pub const SYN_STAT_SLOTS: u32 = 6;

impl SynStat {
    /// Every slot, in index order.
    pub const ALL: [Self; SYN_STAT_SLOTS as usize] = [
        Self::NoListener,
        Self::Refused,
        Self::OverBudget,
        Self::Unsupported,
        Self::CookieInvalid,
        Self::VerifiedOverBudget,
    ];

    /// A stable `snake_case` name for output and metrics.
    #[must_use]
    pub const fn name(self) -> &'static str {
        match self {
            Self::NoListener => "syn_no_listener",
            Self::Refused => "syn_cookie_refused",
            Self::OverBudget => "syn_cookie_over_budget",
            Self::Unsupported => "syn_unsupported",
            Self::CookieInvalid => "cookie_invalid",
            Self::VerifiedOverBudget => "cookie_verified_over_budget",
        }
    }
}

const _: () = {
    let mut i = 0;
    while i < SynStat::ALL.len() {
        assert!(
            SynStat::ALL[i] as usize == i,
            "SynStat::ALL must be in index order"
        );
        i += 1;
    }
};
