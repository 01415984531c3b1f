//! Pinned state in bpffs: what keeps an interface protected while no daemon runs.
//!
//! For each interface the daemon pins, under the pin root (default `/sys/fs/bpf/floodwall`):
//!
//! ```text
//! IFACE/link-driver | IFACE/link-skb   the XDP link (a bpf_link), named after its mode
//!                                      (bpffs reserves dots in names)
//! IFACE/stages                         the attached program's own stages (FW_STAGES, its
//!                                      tail calls), pinned at IFACE/stages-new until the
//!                                      program it belongs to is attached
//! IFACE/maps-vN/FW_*                   the maps, in layout N (filter_common::MAP_LAYOUT_VERSION)
//! ```
//!
//! A pinned link keeps the program attached after its daemon exits, however it exits
//! (SIGTERM, a crash, kill -9), and the pinned maps keep the limits, blocks, lists and
//! counters it enforces with. A daemon started again loads its (possibly newer) program with
//! the pinned maps and swaps it into the pinned link with one `BPF_LINK_UPDATE`: the
//! interface is never without a filter. Only `floodwall detach` removes the pins.

use std::{
    io,
    path::{Path, PathBuf},
};

use anyhow::{Context as _, anyhow, bail};
use aya::{
    Ebpf,
    programs::{
        links::{FdLink, LinkError, PinnedLink},
        xdp::XdpLink,
    },
};
use filter_common::{MAP_LAYOUT_VERSION, PROGRAM_NAME, map_names};
use log::{info, warn};

use crate::loader::{self, AttachMode};

/// Default directory of the pinned state.
pub const DEFAULT_PIN_ROOT: &str = "/sys/fs/bpf/floodwall";

/// Where bpffs is mounted by convention; the daemon mounts it there when it is missing.
const BPFFS_MOUNT: &str = "/sys/fs/bpf";

/// `statfs(2)` magic of bpffs.
const BPF_FS_MAGIC: i64 = 0xcafe_4a11;

/// The pinned state of one interface.
#[derive(Clone, Debug)]
pub struct PinDir {
    iface: String,
    dir: PathBuf,
}

/// What the daemon found pinned for an interface, and so what it does.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Takeover {
    /// Nothing attached by floodwall: attach and pin a new link.
    Attach,
    /// A pinned link: swap the new program into it.
    Replace {
        /// The pinned link.
        link: PathBuf,
        /// Its mode, from its pin name.
        mode: AttachMode,
    },
}

/// Where the maps of this start live, and whether they carry earlier state.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MapsPlan {
    /// Pinned maps of this layout exist: reuse them (blocks, lists, counters survive).
    Reuse(PathBuf),
    /// New maps, pinned in a staging directory until the program that uses them is
    /// attached; then they take the place of the old ones (see [`PinDir::commit`]).
    Fresh {
        /// The staging directory.
        staging: PathBuf,
    },
}

impl MapsPlan {
    /// The directory the loader pins the maps in.
    #[must_use]
    pub fn dir(&self) -> &Path {
        match self {
            Self::Reuse(dir) => dir,
            Self::Fresh { staging } => staging,
        }
    }
}

impl PinDir {
    /// The pinned state of `iface` under `root`.
    #[must_use]
    pub fn new(root: &Path, iface: &str) -> Self {
        Self {
            iface: iface.to_owned(),
            dir: root.join(iface),
        }
    }

    /// The interface's directory.
    #[must_use]
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The maps directory of this build's layout.
    #[must_use]
    pub fn maps_dir(&self) -> PathBuf {
        self.dir.join(format!("maps-v{MAP_LAYOUT_VERSION}"))
    }

    fn staging_dir(&self) -> PathBuf {
        self.dir.join(format!("maps-v{MAP_LAYOUT_VERSION}-new"))
    }

    fn stages_path(&self) -> PathBuf {
        self.dir.join("stages")
    }

    fn staged_stages_path(&self) -> PathBuf {
        self.dir.join("stages-new")
    }

    fn link_path(&self, mode: AttachMode) -> PathBuf {
        self.dir.join(format!("link-{mode}"))
    }

    /// Makes sure bpffs is mounted and the interface's directory exists.
    ///
    /// # Errors
    /// If bpffs cannot be mounted or the directory cannot be created.
    pub fn prepare(&self) -> anyhow::Result<()> {
        ensure_bpffs(&self.dir)?;
        std::fs::create_dir_all(&self.dir)
            .with_context(|| format!("cannot create {}", self.dir.display()))
    }

    /// The pinned link, if there is one.
    ///
    /// # Errors
    /// If the directory cannot be read.
    pub fn takeover(&self) -> anyhow::Result<Takeover> {
        for mode in [AttachMode::Driver, AttachMode::Skb] {
            let link = self.link_path(mode);
            if link.exists() {
                return Ok(Takeover::Replace { link, mode });
            }
        }
        Ok(Takeover::Attach)
    }

    /// Decides where this start's maps live. Pinned maps of another layout are refused unless
    /// `fresh`: their fields mean something else to this build.
    ///
    /// # Errors
    /// If pinned state of another layout is in the way, or the directory cannot be read.
    pub fn plan_maps(&self, fresh: bool) -> anyhow::Result<MapsPlan> {
        let staging = self.staging_dir();
        // A staging directory is a start that failed before its program was attached: its
        // maps were never used.
        if staging.exists() {
            remove_dir(&staging)?;
        }
        if fresh {
            return Ok(MapsPlan::Fresh { staging });
        }
        let others = self.other_layouts()?;
        if let Some(other) = others.first() {
            bail!(
                "the state pinned for {} ({}) has another map layout ({other}) than this build \
                 (maps-v{MAP_LAYOUT_VERSION}): it cannot be adopted. Start with --fresh-state \
                 to replace the program and start from empty state (blocks, counters and list \
                 entries are lost; the interface stays protected throughout)",
                self.iface,
                self.dir.display(),
            );
        }
        let current = self.maps_dir();
        if current.exists() {
            Ok(MapsPlan::Reuse(current))
        } else {
            Ok(MapsPlan::Fresh { staging })
        }
    }

    fn other_layouts(&self) -> anyhow::Result<Vec<String>> {
        let current = format!("maps-v{MAP_LAYOUT_VERSION}");
        let mut others: Vec<String> = read_names(&self.dir)?
            .into_iter()
            .filter(|name| name.starts_with("maps-v") && name.strip_suffix("-new").is_none())
            .filter(|name| *name != current)
            .collect();
        others.sort();
        Ok(others)
    }

    /// Attaches the loaded program: swaps it into the pinned link atomically, or attaches
    /// it anew and pins the link. Returns the mode it runs in.
    ///
    /// # Errors
    /// If the kernel refuses the attach or the update, or the link cannot be pinned.
    pub fn attach(
        &self,
        ebpf: &mut Ebpf,
        takeover: &Takeover,
        wanted: AttachMode,
    ) -> anyhow::Result<AttachMode> {
        if let Takeover::Replace { link, mode } = takeover {
            match replace(ebpf, link) {
                Ok(()) => {
                    if !matches!(wanted, AttachMode::Auto) && wanted != *mode {
                        warn!(
                            "{} keeps running in {mode} mode as attached before; {wanted} mode \
                             takes a `floodwall detach` and a new start",
                            self.iface
                        );
                    }
                    return Ok(*mode);
                }
                Err(ReplaceError::Defunct) => {
                    // The interface the link was made for is gone (deleted, or re-created
                    // under the same name): the link protects nothing and cannot be updated.
                    warn!(
                        "the pinned link {} no longer has an interface (was {} re-created?); \
                         attaching anew",
                        link.display(),
                        self.iface
                    );
                    std::fs::remove_file(link)
                        .with_context(|| format!("cannot remove {}", link.display()))?;
                }
                Err(ReplaceError::Other(e)) => return Err(e),
            }
        }
        let (link_id, mode) = loader::attach(ebpf, &self.iface, wanted)?;
        let program = loader::xdp_program(ebpf, PROGRAM_NAME)?;
        let link = program
            .take_link(link_id)
            .context("cannot take the XDP link")?;
        let fd_link = FdLink::try_from(link).map_err(|_| {
            anyhow!(
                "the kernel attached the program through netlink, not a bpf_link (Linux < 5.9): \
                 floodwall needs XDP links to stay attached across restarts"
            )
        })?;
        let path = self.link_path(mode);
        // Between the attach and the pin the link lives only in this process; a kill in
        // that instant detaches it again, which leaves the interface as it was before.
        let pinned: PinnedLink = fd_link
            .pin(&path)
            .with_context(|| format!("cannot pin the XDP link at {}", path.display()))?;
        // Closing our fd leaves the pinned link (and so the attachment) in place.
        drop(pinned);
        Ok(mode)
    }

    /// After a successful attach with fresh maps: they take the place of the old ones.
    ///
    /// # Errors
    /// If the old maps cannot be removed or the new ones renamed.
    pub fn commit(&self, plan: &MapsPlan) -> anyhow::Result<()> {
        let MapsPlan::Fresh { staging } = plan else {
            return Ok(());
        };
        for old in self.other_layouts()? {
            remove_dir(&self.dir.join(old))?;
        }
        let current = self.maps_dir();
        if current.exists() {
            remove_dir(&current)?;
        }
        std::fs::rename(staging, &current).with_context(|| {
            format!(
                "cannot rename {} to {}",
                staging.display(),
                current.display()
            )
        })
    }

    /// Pins the loaded object's stages (`FW_STAGES`) where they wait for their program's
    /// attach: from here on they outlive this process, so that a kill between the attach
    /// and [`PinDir::commit_stages`] leaves the attached program its stages. (The kernel
    /// empties a program array that no process and no pin holds.)
    ///
    /// # Errors
    /// If the object has no stages array or it cannot be pinned.
    pub fn stage_stages(&self, ebpf: &Ebpf) -> anyhow::Result<()> {
        let staged = self.staged_stages_path();
        // Left by a start that failed before its attach: nothing runs its stages.
        remove_pin(&staged)?;
        ebpf.map(map_names::STAGES)
            .ok_or_else(|| anyhow!("the XDP object has no map {}", map_names::STAGES))?
            .pin(&staged)
            .with_context(|| format!("cannot pin the stages at {}", staged.display()))
    }

    /// After the attach: the new program's stages take the place of the stages of the
    /// program before, which, no longer pinned, the kernel empties and frees with that
    /// program (one packet in flight on it at the swap may find its stage gone, and goes
    /// on as with no stage). A pin of the stages with the maps, as builds before session
    /// 15 shared theirs, goes too.
    ///
    /// # Errors
    /// If a pin cannot be renamed or removed.
    pub fn commit_stages(&self) -> anyhow::Result<()> {
        let (waiting, running) = (self.staged_stages_path(), self.stages_path());
        std::fs::rename(&waiting, &running).with_context(|| {
            format!(
                "cannot rename {} to {}",
                waiting.display(),
                running.display()
            )
        })?;
        remove_pin(&self.maps_dir().join(map_names::STAGES))
    }

    /// Undoes a start that failed before attaching: its staging maps are unused.
    pub fn abandon(&self, plan: &MapsPlan) {
        if let MapsPlan::Fresh { staging } = plan
            && let Err(e) = remove_dir(staging)
        {
            warn!("{e:#}");
        }
        if let Err(e) = remove_pin(&self.staged_stages_path()) {
            warn!("{e:#}");
        }
    }

    /// Detaches the program and removes every pin of the interface. Returns whether
    /// anything was pinned.
    ///
    /// # Errors
    /// If a pin cannot be removed.
    pub fn detach(&self) -> anyhow::Result<bool> {
        if !self.dir.exists() {
            return Ok(false);
        }
        for mode in [AttachMode::Driver, AttachMode::Skb] {
            let path = self.link_path(mode);
            if path.exists() {
                // Unpinning drops the last reference once our fd closes: the kernel
                // detaches the program.
                match PinnedLink::from_pin(&path) {
                    Ok(link) => {
                        link.unpin()
                            .with_context(|| format!("cannot unpin {}", path.display()))?;
                    }
                    Err(e) => {
                        warn!("cannot open {}: {e}; removing it", path.display());
                        std::fs::remove_file(&path)
                            .with_context(|| format!("cannot remove {}", path.display()))?;
                    }
                }
                info!("detached floodwall from {}", self.iface);
            }
        }
        remove_dir(&self.dir)?;
        Ok(true)
    }
}

enum ReplaceError {
    Defunct,
    Other(anyhow::Error),
}

/// Swaps the loaded program into the pinned link.
fn replace(ebpf: &mut Ebpf, path: &Path) -> Result<(), ReplaceError> {
    let pinned = PinnedLink::from_pin(path).map_err(|e| {
        ReplaceError::Other(anyhow!(
            "cannot open the pinned link {}: {e}",
            path.display()
        ))
    })?;
    let program = loader::xdp_program(ebpf, PROGRAM_NAME).map_err(ReplaceError::Other)?;
    let link = XdpLink::try_from(FdLink::from(pinned)).map_err(|e: LinkError| {
        ReplaceError::Other(anyhow!("{} is not an XDP link: {e}", path.display()))
    })?;
    match program.attach_to_link(link) {
        Ok(_) => Ok(()),
        Err(e) => {
            let errno = std::iter::successors(Some(&e as &dyn std::error::Error), |e| e.source())
                .find_map(|e| {
                    e.downcast_ref::<io::Error>()
                        .and_then(io::Error::raw_os_error)
                });
            if errno == Some(libc::ENOLINK) {
                Err(ReplaceError::Defunct)
            } else {
                Err(ReplaceError::Other(anyhow!(
                    "cannot replace the program in the pinned link {}: {e}",
                    path.display()
                )))
            }
        }
    }
}

fn read_names(dir: &Path) -> anyhow::Result<Vec<String>> {
    match std::fs::read_dir(dir) {
        Ok(entries) => Ok(entries
            .filter_map(Result::ok)
            .filter_map(|e| e.file_name().into_string().ok())
            .collect()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(e) => Err(e).with_context(|| format!("cannot read {}", dir.display())),
    }
}

/// Removes a pin if it is there.
fn remove_pin(path: &Path) -> anyhow::Result<()> {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => {
            Err(e).with_context(|| format!("cannot remove {}", path.display()))
        }
        _ => Ok(()),
    }
}

fn remove_dir(dir: &Path) -> anyhow::Result<()> {
    match std::fs::remove_dir_all(dir) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e).with_context(|| format!("cannot remove {}", dir.display())),
    }
}

/// Makes sure `path` is (or will be) on a bpf filesystem, mounting one at `/sys/fs/bpf` when
/// nothing is mounted there.
///
/// # Errors
/// If `path` would not be on bpffs, or the mount fails.
pub fn ensure_bpffs(path: &Path) -> anyhow::Result<()> {
    let existing = path
        .ancestors()
        .find(|p| p.exists())
        .unwrap_or_else(|| Path::new("/"));
    if is_bpffs(existing)? {
        return Ok(());
    }
    let mount_point = Path::new(BPFFS_MOUNT);
    if !path.starts_with(mount_point) {
        bail!(
            "{} is not on a bpf filesystem: pin floodwall's state under {BPFFS_MOUNT}",
            path.display()
        );
    }
    std::fs::create_dir_all(mount_point).with_context(|| format!("cannot create {BPFFS_MOUNT}"))?;
    nix::mount::mount(
        Some("bpf"),
        mount_point,
        Some("bpf"),
        nix::mount::MsFlags::MS_NOSUID
            | nix::mount::MsFlags::MS_NODEV
            | nix::mount::MsFlags::MS_NOEXEC,
        Some("mode=0700"),
    )
    .with_context(|| format!("cannot mount bpffs at {BPFFS_MOUNT}"))?;
    info!("mounted bpffs at {BPFFS_MOUNT}");
    let namespace = |pid: &str| std::fs::read_link(format!("/proc/{pid}/ns/mnt")).ok();
    if namespace("self") != namespace("1") {
        // A mount made in a private mount namespace (a sandboxed service, `ip netns exec`)
        // dies with the daemon, and the pins in it: the program would be detached.
        warn!(
            "this daemon runs in its own mount namespace, so the bpffs it mounted goes away \
             when it exits and takes the pinned program with it: mount bpffs at \
             {BPFFS_MOUNT} on the host (systemd does at boot) or give --pin-root a bpffs \
             the host sees"
        );
    }
    Ok(())
}

fn is_bpffs(path: &Path) -> anyhow::Result<bool> {
    let stat = nix::sys::statfs::statfs(path)
        .with_context(|| format!("cannot statfs {}", path.display()))?;
    #[expect(
        clippy::useless_conversion,
        reason = "the field's type differs by libc target"
    )]
    Ok(i64::from(stat.filesystem_type().0) == BPF_FS_MAGIC)
}
