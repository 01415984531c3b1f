//! The control socket: how the CLI talks to a running daemon.
//!
//! One Unix stream socket per protected interface, `RUN_DIR/IFACE.sock`. Requests and
//! responses are single JSON lines. Every request is checked against the peer's credentials
//! as the kernel reports them (`SO_PEERCRED` for the uid, `SO_PEERGROUPS` for the groups),
//! see [`Access`].

use std::{
    net::IpAddr,
    path::{Path, PathBuf},
};

use anyhow::{Context as _, bail};
use serde::{Deserialize, Serialize};
use tokio::{
    io::{AsyncBufReadExt as _, AsyncWriteExt as _, BufReader},
    net::UnixStream,
};

use crate::{
    events::EventRecord,
    limits::{Limits, LimitsChange},
    lists::{ListEntryView, ListKind, Prefix},
    stats::{OutcomeStats, SourceView},
};

/// Default directory of control sockets and lock files.
pub const DEFAULT_RUN_DIR: &str = "/run/floodwall";

/// Largest request line the daemon reads; longer ones are refused. Room for a bulk load of
/// a full list (131,072 prefixes of up to 43 characters, JSON-quoted).
pub const MAX_REQUEST_BYTES: usize = 8 * 1024 * 1024;

/// A request from the CLI.
#[expect(
    clippy::large_enum_variant,
    reason = "one short-lived request per connection"
)]
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "request", rename_all = "snake_case")]
pub enum Request {
    /// The current limits.
    LimitsShow,
    /// Change some limits (root only).
    LimitsSet {
        /// What to change.
        change: LimitsChange,
    },
    /// Counters and rates.
    Stats,
    /// The busiest tracked sources.
    Top {
        /// How many.
        limit: usize,
    },
    /// Blocked sources.
    BlockedList,
    /// Unblock a source (root only).
    BlockedRemove {
        /// The source.
        addr: IpAddr,
    },
    /// Add prefixes to a list, all or nothing (root only).
    ListAdd {
        /// Which list.
        list: ListKind,
        /// The prefixes.
        prefixes: Vec<Prefix>,
        /// Denylist only: the entries expire after this many milliseconds.
        for_ms: Option<u64>,
    },
    /// Remove prefixes from a list, all or nothing (root only).
    ListRemove {
        /// Which list.
        list: ListKind,
        /// The prefixes.
        prefixes: Vec<Prefix>,
    },
    /// A list's entries with their hit counters.
    ListShow {
        /// Which list.
        list: ListKind,
    },
    /// The event journal; with `follow`, then every new event as it happens.
    Events {
        /// Keep the connection open and stream new events.
        follow: bool,
    },
    /// Read the config file again and apply it, all or nothing (root or admin group).
    Reload,
}

impl Request {
    /// Whether the request changes anything (and so needs root).
    #[must_use]
    pub fn is_change(&self) -> bool {
        matches!(
            self,
            Self::LimitsSet { .. }
                | Self::BlockedRemove { .. }
                | Self::ListAdd { .. }
                | Self::ListRemove { .. }
                | Self::Reload
        )
    }
}

/// Who may use the control sockets: root always; members of `admin_gid` for everything;
/// members of `read_gid` for what changes nothing. With no group configured, whoever can
/// open the socket (root and root's group, mode 0660) may read, and only root may change.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Access {
    /// Members may change things.
    pub admin_gid: Option<u32>,
    /// Members may read.
    pub read_gid: Option<u32>,
}

/// The credentials of a control socket peer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Peer {
    /// Its uid.
    pub uid: u32,
    /// Its primary and supplementary groups.
    pub gids: Vec<u32>,
}

impl Access {
    /// The mode of the control sockets. With groups configured every local user may connect
    /// and the daemon decides per request from the kernel's account of the peer: one file
    /// mode cannot grant two groups different rights.
    #[must_use]
    pub fn socket_mode(&self) -> u32 {
        if self.admin_gid.is_some() || self.read_gid.is_some() {
            0o666
        } else {
            0o660
        }
    }

    /// Whether `peer` may make `request`; the error says why not.
    ///
    /// # Errors
    /// A message naming the peer and what it lacks.
    pub fn check(&self, peer: &Peer, request: &Request) -> Result<(), String> {
        if peer.uid == 0 {
            return Ok(());
        }
        let member = |gid: Option<u32>| gid.is_some_and(|g| peer.gids.contains(&g));
        let admin = member(self.admin_gid);
        if request.is_change() {
            if admin {
                return Ok(());
            }
            return Err(match self.admin_gid {
                Some(gid) => format!(
                    "permission denied: only root and members of group {gid} may change \
                     floodwall (you are uid {})",
                    peer.uid
                ),
                None => format!(
                    "permission denied: only root may change floodwall (you are uid {})",
                    peer.uid
                ),
            });
        }
        let configured = self.admin_gid.is_some() || self.read_gid.is_some();
        if !configured || admin || member(self.read_gid) {
            return Ok(());
        }
        Err(format!(
            "permission denied: uid {} is in neither floodwall group ({})",
            peer.uid, self
        ))
    }
}

impl std::fmt::Display for Access {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let gid = |g: Option<u32>| g.map_or_else(|| "none".to_owned(), |g| g.to_string());
        write!(
            f,
            "admin group {}, read group {}",
            gid(self.admin_gid),
            gid(self.read_gid)
        )
    }
}

/// The credentials of the process at the other end of `stream`, as the kernel recorded them
/// when it connected.
///
/// # Errors
/// If the kernel does not say.
pub fn peer_of(stream: &UnixStream) -> anyhow::Result<Peer> {
    use std::os::fd::AsFd as _;
    let cred =
        nix::sys::socket::getsockopt(&stream.as_fd(), nix::sys::socket::sockopt::PeerCredentials)
            .context("cannot read the peer's credentials")?;
    let mut gids = peer_groups(stream).context("cannot read the peer's groups")?;
    gids.push(cred.gid());
    Ok(Peer {
        uid: cred.uid(),
        gids,
    })
}

/// `SO_PEERGROUPS` (Linux 4.13): the supplementary groups of the peer at connect time.
fn peer_groups(stream: &UnixStream) -> std::io::Result<Vec<u32>> {
    use std::os::fd::AsRawFd as _;
    let mut gids = vec![0u32; 64];
    loop {
        let mut len = libc::socklen_t::try_from(gids.len() * size_of::<u32>())
            .map_err(|_| std::io::Error::other("too many groups"))?;
        // SAFETY: the buffer is `len` bytes long and lives across the call; the kernel
        // writes at most `len` bytes and sets `len` to what it wrote or needs.
        let rc = unsafe {
            libc::getsockopt(
                stream.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_PEERGROUPS,
                gids.as_mut_ptr().cast(),
                &raw mut len,
            )
        };
        let needed = len as usize / size_of::<u32>();
        if rc == 0 {
            gids.truncate(needed);
            return Ok(gids);
        }
        let err = std::io::Error::last_os_error();
        if err.raw_os_error() == Some(libc::ERANGE) && needed > gids.len() {
            gids.resize(needed, 0);
            continue;
        }
        return Err(err);
    }
}

/// The limits with their bursts resolved, as `limits show` prints them.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LimitsView {
    /// The interface.
    pub iface: String,
    /// The limits as set.
    pub limits: Limits,
    /// Packet burst in packets (`auto` resolved), if there is a packet limit.
    pub effective_burst_packets: Option<u64>,
    /// Byte burst in bytes, if there is a byte limit.
    pub effective_burst_bytes: Option<u64>,
}

/// Counters and rates, as `stats` prints them.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StatsView {
    /// The interface.
    pub iface: String,
    /// XDP attach mode in use.
    pub xdp_mode: String,
    /// Seconds since the daemon started.
    pub uptime_secs: u64,
    /// Length of the interval the rates are measured over, in seconds.
    pub interval_secs: f64,
    /// Per outcome, all classes together.
    pub outcomes: Vec<OutcomeStats>,
    /// Per class and outcome.
    pub classes: Vec<crate::stats::ClassStats>,
    /// Block events lost because the ring buffer was full.
    pub events_lost: u64,
    /// The per-source table.
    pub table: TableStats,
}

impl StatsView {
    /// The sum over several interfaces: packets, bytes and rates added outcome by outcome
    /// (every view lists the same outcomes and classes in the same order).
    #[must_use]
    pub fn total(views: &[StatsView]) -> StatsView {
        fn add(into: &mut [OutcomeStats], from: &[OutcomeStats]) {
            for (a, b) in into.iter_mut().zip(from) {
                a.packets += b.packets;
                a.bytes += b.bytes;
                a.pps += b.pps;
                a.bps += b.bps;
            }
        }
        let mut total = views.first().cloned().unwrap_or_else(|| StatsView {
            iface: String::new(),
            xdp_mode: String::new(),
            uptime_secs: 0,
            interval_secs: 0.0,
            outcomes: Vec::new(),
            classes: Vec::new(),
            events_lost: 0,
            table: TableStats {
                capacity: 0,
                inserts: 0,
                insert_failures: 0,
                evictions: 0,
            },
        });
        total.iface = format!("total of {}", views.len());
        "-".clone_into(&mut total.xdp_mode);
        for view in views.iter().skip(1) {
            add(&mut total.outcomes, &view.outcomes);
            for (a, b) in total.classes.iter_mut().zip(&view.classes) {
                add(&mut a.outcomes, &b.outcomes);
            }
            total.uptime_secs = total.uptime_secs.min(view.uptime_secs);
            total.interval_secs = total.interval_secs.max(view.interval_secs);
            total.events_lost += view.events_lost;
            total.table.capacity = total.table.capacity.saturating_add(view.table.capacity);
            total.table.inserts += view.table.inserts;
            total.table.insert_failures += view.table.insert_failures;
            total.table.evictions += view.table.evictions;
        }
        total
    }
}

/// How full the per-source table is and how it churns.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TableStats {
    /// Sources it holds at most.
    pub capacity: u32,
    /// Sources inserted since the program was loaded.
    pub inserts: u64,
    /// Inserts the kernel refused (the packets were passed as `table_full`, under the
    /// ceilings).
    pub insert_failures: u64,
    /// Sources evicted to make room, at least: inserts beyond the capacity (an LRU table
    /// evicts its least recently seen entry for each). Operator removals can make it
    /// overstate by as many.
    pub evictions: u64,
}

/// A response from the daemon.
#[expect(
    clippy::large_enum_variant,
    reason = "one short-lived response per connection"
)]
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "response", rename_all = "snake_case")]
pub enum Response {
    /// The limits (after a change, the new ones).
    Limits(LimitsView),
    /// Counters and rates.
    Stats(StatsView),
    /// Sources, busiest first.
    Sources {
        /// The mode now: in monitor mode a "blocked" source is only marked, not dropped.
        mode: crate::limits::FilterMode,
        /// The sources.
        sources: Vec<SourceView>,
    },
    /// A source was unblocked.
    Unblocked {
        /// The source.
        addr: IpAddr,
    },
    /// A list changed.
    ListChanged {
        /// Which list.
        list: ListKind,
        /// Prefixes added.
        added: usize,
        /// Prefixes already listed whose expiry changed.
        updated: usize,
        /// Prefixes already listed as asked.
        unchanged: usize,
        /// Prefixes removed.
        removed: usize,
    },
    /// A list's entries.
    ListEntries {
        /// Which list.
        list: ListKind,
        /// The entries, by prefix.
        entries: Vec<ListEntryView>,
    },
    /// Events (one response line each when following).
    Events {
        /// The events, oldest first.
        events: Vec<EventRecord>,
    },
    /// The config was reloaded.
    Reloaded {
        /// The changes applied, one line each (none: the config was unchanged).
        changes: Vec<String>,
    },
    /// The request was refused or failed; nothing changed.
    Error {
        /// Why.
        message: String,
    },
}

/// The socket of the daemon on `iface`.
#[must_use]
pub fn socket_path(run_dir: &Path, iface: &str) -> PathBuf {
    run_dir.join(format!("{iface}.sock"))
}

/// Finds the daemon's socket: the one for `iface`, or the only one running.
///
/// # Errors
/// If no daemon runs (for `iface`), or several run and `iface` is not given.
pub fn find_socket(run_dir: &Path, iface: Option<&str>) -> anyhow::Result<PathBuf> {
    if let Some(iface) = iface {
        let path = socket_path(run_dir, iface);
        let exists = path.try_exists().map_err(|e| {
            if e.kind() == std::io::ErrorKind::PermissionDenied {
                anyhow::anyhow!(
                    "permission denied reading {}: floodwall commands need root",
                    run_dir.display()
                )
            } else {
                anyhow::Error::new(e).context(format!("cannot look for {}", path.display()))
            }
        })?;
        if !exists {
            bail!(
                "no floodwall daemon is running on {iface} (no socket at {})",
                path.display()
            );
        }
        return Ok(path);
    }
    let mut sockets = all_sockets(run_dir)?;
    match sockets.len() {
        0 => bail!(
            "no floodwall daemon is running (no control socket in {})",
            run_dir.display()
        ),
        1 => Ok(sockets.remove(0)),
        _ => {
            let names: Vec<_> = sockets
                .iter()
                .filter_map(|p| p.file_stem().map(|s| s.to_string_lossy().into_owned()))
                .collect();
            bail!(
                "floodwall protects several interfaces ({}); pick one with --iface",
                names.join(", ")
            )
        }
    }
}

/// Every control socket in `run_dir`, sorted (one per protected interface).
///
/// # Errors
/// If the directory cannot be read.
pub fn all_sockets(run_dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let mut sockets: Vec<PathBuf> = match std::fs::read_dir(run_dir) {
        Ok(entries) => entries
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|e| e == "sock"))
            .collect(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => bail!(
            "permission denied reading {}: floodwall commands need root",
            run_dir.display()
        ),
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", run_dir.display())),
    };
    sockets.sort();
    Ok(sockets)
}

/// Sends `request` and calls `each` with every response line until the daemon closes the
/// connection (for `events --follow`).
///
/// # Errors
/// If the socket cannot be reached, an answer is not a response, or `each` fails.
pub async fn call_streaming(
    socket: &Path,
    request: &Request,
    mut each: impl FnMut(Response) -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    let stream = connect(socket).await?;
    let (read, mut write) = stream.into_split();
    let mut line = serde_json::to_string(request).context("cannot encode the request")?;
    line.push('\n');
    write
        .write_all(line.as_bytes())
        .await
        .context("cannot send the request")?;
    let mut lines = BufReader::new(read).lines();
    while let Some(answer) = lines
        .next_line()
        .await
        .context("cannot read the daemon's answer")?
    {
        let response = serde_json::from_str(&answer)
            .with_context(|| format!("the daemon's answer is not a response: {answer}"))?;
        each(response)?;
    }
    Ok(())
}

async fn connect(socket: &Path) -> anyhow::Result<UnixStream> {
    UnixStream::connect(socket).await.map_err(|e| {
        if e.kind() == std::io::ErrorKind::PermissionDenied {
            anyhow::anyhow!(
                "permission denied connecting to {}: floodwall commands need root",
                socket.display()
            )
        } else {
            anyhow::Error::new(e)
                .context(format!("cannot reach the daemon at {}", socket.display()))
        }
    })
}

/// Sends one request to the daemon at `socket` and returns its response.
///
/// # Errors
/// If the socket cannot be reached or the daemon's answer is not a response.
pub async fn call(socket: &Path, request: &Request) -> anyhow::Result<Response> {
    // The daemon answers a request with one line and closes the connection.
    let mut answer = None;
    call_streaming(socket, request, |response| {
        answer.get_or_insert(response);
        Ok(())
    })
    .await?;
    answer.ok_or_else(|| anyhow::anyhow!("the daemon closed the connection without answering"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::limits::Rate;

    #[test]
    fn requests_round_trip_as_one_json_line() {
        let request = Request::LimitsSet {
            change: LimitsChange {
                pps: Some(Rate::PerSecond(500)),
                ..LimitsChange::default()
            },
        };
        let line = serde_json::to_string(&request).expect("encodes");
        assert!(!line.contains('\n'));
        assert_eq!(
            serde_json::from_str::<Request>(&line).expect("decodes"),
            request
        );
        assert!(request.is_change());
        assert!(!Request::Stats.is_change());
    }

    #[test]
    fn unknown_requests_are_errors_that_name_them() {
        let err = serde_json::from_str::<Request>(r#"{"request":"format_disk"}"#).unwrap_err();
        assert!(err.to_string().contains("format_disk"), "{err}");
    }

    #[test]
    fn socket_lookup_names_what_is_missing() {
        let dir = std::env::temp_dir().join(format!("fw-ctl-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let err = find_socket(&dir, None).unwrap_err().to_string();
        assert!(err.contains("no floodwall daemon is running"), "{err}");
        let err = find_socket(&dir, Some("eth9")).unwrap_err().to_string();
        assert!(err.contains("on eth9"), "{err}");
        std::fs::write(dir.join("a.sock"), b"").expect("file");
        std::fs::write(dir.join("b.sock"), b"").expect("file");
        let err = find_socket(&dir, None).unwrap_err().to_string();
        assert!(err.contains("several interfaces (a, b)"), "{err}");
        assert_eq!(
            find_socket(&dir, Some("a")).expect("found"),
            dir.join("a.sock")
        );
        std::fs::remove_dir_all(&dir).expect("cleanup");
    }

    #[test]
    fn the_total_adds_interfaces_outcome_by_outcome() {
        let view = |iface: &str, packets: u64, inserts: u64| StatsView {
            iface: iface.to_owned(),
            xdp_mode: "driver".to_owned(),
            uptime_secs: packets,
            interval_secs: 1.0,
            outcomes: vec![OutcomeStats {
                outcome: "passed".to_owned(),
                dropped: false,
                packets,
                bytes: packets * 64,
                pps: 1.0,
                bps: 8.0,
            }],
            classes: Vec::new(),
            events_lost: 1,
            table: TableStats {
                capacity: 100,
                inserts,
                insert_failures: 0,
                evictions: 0,
            },
        };
        let total = StatsView::total(&[view("eth0", 10, 3), view("eth1", 5, 4)]);
        assert_eq!(total.iface, "total of 2");
        assert_eq!(total.outcomes[0].packets, 15);
        assert_eq!(total.outcomes[0].bytes, 15 * 64);
        assert!((total.outcomes[0].pps - 2.0).abs() < f64::EPSILON);
        assert_eq!(
            (total.events_lost, total.table.inserts, total.table.capacity),
            (2, 7, 200)
        );
        assert_eq!(total.uptime_secs, 5, "the youngest daemon's uptime");
    }
}
