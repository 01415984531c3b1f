//! Who may use the control sockets, as the kernel reports the peer's credentials
//! (`SO_PEERCRED` for the uid, `SO_PEERGROUPS` for the groups).

use anyhow::Context as _;
use tokio::net::UnixStream;

use super::Request;

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
