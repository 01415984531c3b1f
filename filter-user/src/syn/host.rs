//! What the kernel of the interface's network namespace must agree with for SYN cookies
//! from XDP, read from (and in one case written to) `/proc/sys` and `/sys`. The daemon
//! runs in that namespace (`ip netns exec` or the host's), so its own view is the one.
//!
//! - `net.ipv4.tcp_syncookies` must be 2: the kernel then accepts a cookie ACK for any
//!   listener, and `bpf_tcp_gen_syncookie` issues cookies without a full SYN queue. The
//!   daemon sets it, says so, and leaves it set when it stops, as it leaves the program
//!   attached. It is the namespace's setting, so the kernel answers the SYNs that reach it
//!   (tracked sources' SYNs, other ports) with cookies too.
//! - The SYN-ACK's MSS (the interface's MTU less the headers), TTL and hop limit are read.
//! - No timestamp goes into a SYN-ACK (see the program's `syncookie` module), so
//!   `tcp_timestamps`, `tcp_sack` and `tcp_window_scaling` need no change.

use std::{
    collections::BTreeSet,
    fs,
    path::{Path, PathBuf},
};

use anyhow::{Context as _, bail};

/// The namespace's `tcp_syncookies` sysctl.
const SYNCOOKIES: &str = "/proc/sys/net/ipv4/tcp_syncookies";
/// The value that syn-protect needs.
const SYNCOOKIES_ALWAYS: u8 = 2;

/// The namespace's values a SYN-ACK carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SynHost {
    /// MSS advertised over IPv4: the MTU less 40 bytes of headers.
    pub mss_v4: u16,
    /// MSS advertised over IPv6: the MTU less 60.
    pub mss_v6: u16,
    /// `net.ipv4.ip_default_ttl`.
    pub ttl: u8,
    /// The interface's IPv6 hop limit.
    pub hop_limit: u8,
}

impl SynHost {
    /// Reads the values for `iface`.
    ///
    /// # Errors
    /// If a file cannot be read or holds no number in range.
    pub fn read(iface: &str) -> anyhow::Result<Self> {
        let mtu: u32 = read_number(&Path::new("/sys/class/net").join(iface).join("mtu"))?;
        let ttl = read_number(Path::new("/proc/sys/net/ipv4/ip_default_ttl"))?;
        let hop_limit = read_number(
            &PathBuf::from("/proc/sys/net/ipv6/conf")
                .join(iface)
                .join("hop_limit"),
        )
        // An interface without IPv6 has no such file: IPv6 SYNs cannot reach it anyway.
        .unwrap_or(64);
        let mss = |headers: u32| u16::try_from(mtu.saturating_sub(headers)).unwrap_or(u16::MAX);
        Ok(Self {
            mss_v4: mss(40),
            mss_v6: mss(60),
            ttl,
            hop_limit,
        })
    }
}

/// Reads a number from a one-value file of `/proc` or `/sys`.
fn read_number<T: std::str::FromStr>(path: &Path) -> anyhow::Result<T> {
    let text =
        fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    text.trim().parse().map_err(|_| {
        anyhow::anyhow!(
            "{} holds `{}`, not a number in range",
            path.display(),
            text.trim()
        )
    })
}

/// Sets `net.ipv4.tcp_syncookies` to 2 if it is not; the value it had, if it changed.
///
/// # Errors
/// If the sysctl cannot be read or written.
pub fn ensure_syncookies() -> anyhow::Result<Option<u8>> {
    let was: u8 = read_number(Path::new(SYNCOOKIES))?;
    if was == SYNCOOKIES_ALWAYS {
        return Ok(None);
    }
    fs::write(SYNCOOKIES, format!("{SYNCOOKIES_ALWAYS}\n")).with_context(|| {
        format!(
            "syn-protect needs {SYNCOOKIES} = {SYNCOOKIES_ALWAYS} (it is {was}) and cannot set it"
        )
    })?;
    Ok(Some(was))
}

/// `net.ipv4.tcp_syncookies` now.
///
/// # Errors
/// If it cannot be read.
pub fn syncookies_value() -> anyhow::Result<u8> {
    read_number(Path::new(SYNCOOKIES))
}

/// Whether `net.ipv4.tcp_syncookies` is 2 now.
///
/// # Errors
/// If it cannot be read.
pub fn syncookies_always() -> anyhow::Result<bool> {
    Ok(read_number::<u8>(Path::new(SYNCOOKIES))? == SYNCOOKIES_ALWAYS)
}

/// The kernel's own SYN-cookie counters in this namespace (`/proc/net/netstat`, `TcpExt`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct KernelCookies {
    /// Cookies the kernel sent itself (`SyncookiesSent`).
    pub sent: u64,
    /// Cookie ACKs it accepted (`SyncookiesRecv`).
    pub recv: u64,
    /// Cookie ACKs it rejected (`SyncookiesFailed`).
    pub failed: u64,
    /// Connections dropped for a full accept queue (`ListenOverflows`).
    pub listen_overflows: u64,
}

impl KernelCookies {
    /// Reads them.
    ///
    /// # Errors
    /// If the file cannot be read or has no `TcpExt` lines.
    pub fn read() -> anyhow::Result<Self> {
        let text =
            fs::read_to_string("/proc/net/netstat").context("cannot read /proc/net/netstat")?;
        Self::parse(&text)
    }

    fn parse(text: &str) -> anyhow::Result<Self> {
        let mut lines = text.lines().filter(|l| l.starts_with("TcpExt:"));
        let (Some(names), Some(values)) = (lines.next(), lines.next()) else {
            bail!("/proc/net/netstat has no TcpExt lines");
        };
        let mut out = Self::default();
        for (name, value) in names
            .split_whitespace()
            .zip(values.split_whitespace())
            .skip(1)
        {
            let value: u64 = value.parse().unwrap_or(0);
            match name {
                "SyncookiesSent" => out.sent = value,
                "SyncookiesRecv" => out.recv = value,
                "SyncookiesFailed" => out.failed = value,
                "ListenOverflows" => out.listen_overflows = value,
                _ => {}
            }
        }
        Ok(out)
    }
}

/// The TCP ports with a listening socket in this namespace (`/proc/net/tcp` and `tcp6`).
///
/// # Errors
/// If neither file can be read.
pub fn listening_ports() -> anyhow::Result<BTreeSet<u16>> {
    let mut ports = BTreeSet::new();
    let mut read_any = false;
    for file in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let Ok(text) = fs::read_to_string(file) else {
            continue;
        };
        read_any = true;
        ports.extend(parse_listeners(&text));
    }
    if !read_any {
        bail!("cannot read /proc/net/tcp or /proc/net/tcp6");
    }
    Ok(ports)
}

/// The local ports of the sockets in state LISTEN (`0A`) of a `/proc/net/tcp` table.
fn parse_listeners(text: &str) -> impl Iterator<Item = u16> + '_ {
    text.lines().skip(1).filter_map(|line| {
        let mut fields = line.split_whitespace();
        let local = fields.nth(1)?;
        let state = fields.nth(1)?;
        if state != "0A" {
            return None;
        }
        let port = local.rsplit(':').next()?;
        u16::from_str_radix(port, 16).ok()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listeners_are_read_from_the_socket_table() {
        let table = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n   \
            0: 00000000:0050 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1 1\n   \
            1: 0100007F:1F90 0100007F:C350 01 00000000:00000000 00:00000000 00000000     0        0 2 1\n";
        assert_eq!(parse_listeners(table).collect::<Vec<_>>(), vec![80]);
    }

    #[test]
    fn kernel_cookie_counters_are_found_by_name() {
        let text = "TcpExt: SyncookiesSent SyncookiesRecv SyncookiesFailed EmbryonicRsts ListenOverflows\n\
                    TcpExt: 5 4 1 0 2\nIpExt: InNoRoutes\nIpExt: 0\n";
        assert_eq!(
            KernelCookies::parse(text).unwrap(),
            KernelCookies {
                sent: 5,
                recv: 4,
                failed: 1,
                listen_overflows: 2
            }
        );
    }
}
