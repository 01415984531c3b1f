//! A lab of network namespaces: a server, a legitimate client and attackers, each in its own
//! namespace, joined by veth pairs to a bridge in a "switch" namespace.
//!
//! ```text
//!                       switch namespace: bridge fwlab-br (no addresses)
//!             sw-srv           sw-cli           sw-atk0   ...   sw-atk<N-1>
//!               |                |                 |                 |
//!           fwlab-srv        fwlab-cli        fwlab-atk0   ...  fwlab-atk<N-1>
//!            server            client          attacker 0        attacker N-1
//!          198.18.0.1        198.18.0.2       198.18.0.10       198.18.0.(10+N-1)
//!          2001:2::1         2001:2::2        2001:2::10        2001:2::(10+N-1)
//! ```
//!
//! A lab built with [`Lab::with_router`] has one more host on the switch, `router`
//! (`198.18.0.254`, `2001:2::fe`): the upstream router of the BGP tests (see `bgp`).
//!
//! Addresses come only from the benchmarking ranges `198.18.0.0/15` (RFC 2544) and
//! `2001:2::/48` (RFC 5180), and no namespace has a route anywhere else, so nothing a lab does
//! can reach a real network. Loopback stays down for the same reason: no `127.0.0.1` or `::1`.
//! The kernel still does its own link-local chatter when interfaces come up (IPv6 link-local
//! addresses, `fe80::/64`, for neighbour discovery; router solicitations; MLD and IGMP
//! reports, some from `::` and `0.0.0.0`), all to link-local multicast groups that never
//! leave the lab's bridge. floodwall sees these as sources too, so `top` may list `::`,
//! `0.0.0.0` and `fe80::` addresses next to the lab's hosts.
//!
//! Every name carries the process id and a per-process counter (`fwlab-<pid>-<n>-srv`), so
//! parallel test processes never collide. [`Lab`]'s `Drop` stops every process it started and
//! deletes every namespace it made, also when a test panics; and a new lab deletes the
//! leftovers of labs whose process died without cleaning up (SIGKILL, abort).
//!
//! floodwall itself runs in the server namespace ([`Lab::start_floodwall`]), with a control
//! socket directory private to the lab, so tests never talk to a real daemon.
//!
//! This module holds the lab itself (hosts, namespaces, processes, cleanup); beside it:
//! `daemon` (floodwall in the lab, and its CLI), `web` (nginx and its visitors),
//! `hping3` (floods from a host), `bgp` (an upstream router, BIRD, and the GoBGP speaker
//! floodwall drives) and `broker` (a NATS broker for the fleet).

use std::{
    ffi::OsStr,
    fs::{self, File},
    net::{Ipv4Addr, Ipv6Addr},
    os::unix::{fs::PermissionsExt as _, process::CommandExt as _},
    path::{Path, PathBuf},
    process::{Child, Command, ExitStatus, Output, Stdio},
    sync::{
        Mutex, MutexGuard, PoisonError,
        atomic::{AtomicU32, Ordering},
    },
    time::{Duration, Instant},
};

mod bgp;
mod broker;
mod daemon;
mod hping3;
mod web;

pub use self::{
    bgp::{
        BLACKHOLE, Community, FlowRoute, Rib, TrafficAction, UPSTREAM_TOOLS, UnicastRoute,
        Upstream, require_upstream_tools,
    },
    broker::{BROKER_PORT, Broker},
    daemon::{Daemon, dropped_packets, packets},
    hping3::hping3_sent,
    web::{HttpTally, http_tally},
};

use anyhow::{Context as _, anyhow, bail, ensure};

/// Prefix of every namespace name a lab creates: `fwlab-<pid>-<n>-<role>`.
pub const NETNS_PREFIX: &str = "fwlab-";
/// Prefix of each lab's directory (logs, nginx files, control sockets) under the temp dir:
/// `floodwall-lab-<pid>-<n>`.
pub const DIR_PREFIX: &str = "floodwall-lab-";

/// The server's IPv4 address, the only target of the lab's traffic generators.
pub const SERVER_IPV4: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 1);
/// The server's IPv6 address.
pub const SERVER_IPV6: Ipv6Addr = lab_ipv6(1);
/// The legitimate client's IPv4 address.
pub const CLIENT_IPV4: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 2);
/// The legitimate client's IPv6 address.
pub const CLIENT_IPV6: Ipv6Addr = lab_ipv6(2);
/// The upstream router's IPv4 address (a lab built with [`Lab::with_router`]); above every
/// attacker's.
pub const ROUTER_IPV4: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 254);
/// The upstream router's IPv6 address.
pub const ROUTER_IPV6: Ipv6Addr = lab_ipv6(0xfe);
/// `2001:2::LAST`, a lab address.
const fn lab_ipv6(last: u16) -> Ipv6Addr {
    Ipv6Addr::new(0x2001, 2, 0, 0, 0, 0, 0, last)
}
/// Last byte of the first attacker's addresses; attacker `i` has `198.18.0.(10+i)` and
/// `2001:2::(0x10+i)`.
const FIRST_ATTACKER: u8 = 10;
/// Most attackers a lab can have (their IPv4 addresses must stay inside `198.18.0.0/24`).
pub const MAX_ATTACKERS: usize = 200;
/// The page nginx serves at `/`.
pub const PAGE: &str = "floodwall lab: served\n";
/// The name of the bridge in the switch namespace.
const BRIDGE: &str = "fwlab-br";

/// How long the processes of a lab get to exit after SIGTERM before they are killed.
const STOP_GRACE: Duration = Duration::from_secs(5);
/// How long `floodwall run` may take to load, attach and open its socket. Loading runs the
/// verifier, which takes well under a second here; the bound is for slow CI machines.
const DAEMON_START_TIMEOUT: Duration = Duration::from_secs(30);
/// How long nginx may take to listen.
const NGINX_START_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest wait for any one HTTP request; a lab request takes about a millisecond.
const HTTP_TIMEOUT_SECS: u32 = 3;

/// Tools a lab runs, with the Debian package that has each.
pub const TOOLS: [(&str, &str); 7] = [
    ("ip", "iproute2"),
    ("ss", "iproute2"),
    ("timeout", "coreutils"),
    ("hping3", "hping3"),
    ("nginx", "nginx-light"),
    ("curl", "curl"),
    ("setpriv", "util-linux"),
];

/// One host of the lab: a namespace with one interface on the switch.
#[derive(Clone, Debug)]
pub struct Host {
    /// Its role: `server`, `client`, `attacker0`, ...
    pub name: String,
    /// Its network namespace.
    pub netns: String,
    /// Its interface, joined to the switch (at most 15 characters, like every interface
    /// name).
    pub iface: String,
    /// Its IPv4 address (in `198.18.0.0/24`).
    pub ipv4: Ipv4Addr,
    /// Its IPv6 address (in `2001:2::/64`).
    pub ipv6: Ipv6Addr,
}

/// The counters of a switch port, from [`Lab::switch_port_counters`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PortCounters {
    /// Frames the port handed its host's veth.
    pub tx_packets: u64,
    /// Frames it could not: the host's ring was full.
    pub tx_dropped: u64,
}

impl PortCounters {
    /// The share of the frames to the host that the lab itself lost between `earlier`
    /// and these counters: what any filter on the host, an ideal one too, loses.
    #[must_use]
    pub fn lost_share_since(&self, earlier: &Self) -> f64 {
        let sent = self.tx_packets.saturating_sub(earlier.tx_packets);
        let lost = self.tx_dropped.saturating_sub(earlier.tx_dropped);
        #[expect(clippy::cast_precision_loss, reason = "a ratio of counts under 2^52")]
        let share = lost as f64 / (sent + lost).max(1) as f64;
        share
    }
}

/// A background process started by a [`Lab`]. Only a handle, valid with the lab that started
/// it: the lab owns the process, stops it on drop, and keeps its output in files, so that a
/// chatty process never blocks on a full pipe and its output can be read while it runs.
#[derive(Clone, Debug)]
pub struct Proc {
    slot: usize,
    pid: u32,
    name: String,
    stdout: PathBuf,
    stderr: PathBuf,
}

impl Proc {
    /// Its process id.
    #[must_use]
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// The name it was started under.
    #[must_use]
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Everything it wrote to stdout so far.
    #[must_use]
    pub fn stdout(&self) -> String {
        fs::read(&self.stdout)
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default()
    }

    /// Everything it wrote to stderr so far.
    #[must_use]
    pub fn stderr(&self) -> String {
        fs::read(&self.stderr)
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default()
    }
}

/// A process the lab started, and its exit status once reaped.
struct Slot {
    child: Child,
    name: String,
    status: Option<ExitStatus>,
    stdout: PathBuf,
    stderr: PathBuf,
}

impl Slot {
    /// Its exit status if it exited, reaping it. A process not reaped yet keeps its pid, so
    /// signalling a slot without a status can never hit a stranger that reused the pid.
    fn poll(&mut self) -> Option<ExitStatus> {
        if self.status.is_none() {
            self.status = self.child.try_wait().ok().flatten();
        }
        self.status
    }
}

/// A lab of network namespaces; see the [module docs](self). Everything it creates is
/// removed when it is dropped.
pub struct Lab {
    name: String,
    dir: PathBuf,
    run_dir: PathBuf,
    /// The lab's own bpffs instance, for the daemons' pinned state (`--pin-root`): the
    /// server interface has the same name in every lab, and pinned state outlives daemons.
    /// Not under /sys/fs/bpf: `ip netns exec` mounts a new /sys for the daemon, without the
    /// machine's bpffs, while other mounts stay visible to it.
    pin_root: PathBuf,
    /// Whether `pin_root` is mounted (and must be unmounted).
    pin_root_mounted: bool,
    switch_netns: String,
    server: Host,
    client: Host,
    attackers: Vec<Host>,
    /// The upstream router, in a lab built with [`Lab::with_router`].
    router: Option<Host>,
    /// Namespaces created so far, in order: what `Drop` deletes.
    created: Vec<String>,
    procs: Mutex<Vec<Slot>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Only plain bookkeeping is behind the lock: still usable after a panic elsewhere.
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A command that starts in its own process group, so that a Ctrl-C at the terminal reaches
/// only the program that owns the lab (which then cleans up in order), and so that the lab
/// can stop a process together with its children.
fn command(program: impl AsRef<OsStr>) -> Command {
    let mut cmd = Command::new(program);
    cmd.stdin(Stdio::null()).process_group(0);
    cmd
}

/// `ip netns exec NETNS ARGV...`. `ip` execs the program in place (no fork), so the child's
/// pid is the program's pid and signals go straight to it.
fn command_in(netns: &str, argv: &[impl AsRef<OsStr>]) -> Command {
    let mut cmd = command("ip");
    cmd.args(["netns", "exec", netns]).args(argv);
    cmd
}

/// Runs `cmd` to completion; an error (with its stderr) unless it exits 0.
fn run_checked(mut cmd: Command) -> anyhow::Result<Output> {
    let shown = format!("{cmd:?}");
    let output = cmd
        .output()
        .with_context(|| format!("cannot run {shown}"))?;
    ensure!(
        output.status.success(),
        "{shown} failed ({}): {}",
        output.status,
        String::from_utf8_lossy(&output.stderr).trim()
    );
    Ok(output)
}

/// `ip ARGS`, checked.
fn ip(args: &[&str]) -> anyhow::Result<Output> {
    let mut cmd = command("ip");
    cmd.args(args);
    run_checked(cmd)
}

fn signal_pid(pid: u32, signal: i32) {
    if let Ok(pid) = libc::pid_t::try_from(pid) {
        // SAFETY: kill has no memory-safety preconditions; callers only signal processes
        // they started and have not reaped (see `Slot::poll`).
        unsafe { libc::kill(pid, signal) };
    }
}

fn signal_group(pgid: u32, signal: i32) {
    if let Ok(pgid) = libc::pid_t::try_from(pgid) {
        // SAFETY: as in `signal_pid`; the group leader is a child we have not reaped, so the
        // group id is ours.
        unsafe { libc::killpg(pgid, signal) };
    }
}

/// Polls `done` every `every` until it returns true or `timeout` passes; returns its last
/// answer.
pub fn poll_until(timeout: Duration, every: Duration, mut done: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if done() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(every);
    }
}

/// The tools of [`TOOLS`] that are not on `PATH`, each with the package that provides it.
#[must_use]
pub fn missing_tools() -> Vec<(&'static str, &'static str)> {
    missing_of(&TOOLS)
}

/// The tools of `tools` that are not on `PATH`.
fn missing_of(tools: &[(&'static str, &'static str)]) -> Vec<(&'static str, &'static str)> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let dirs: Vec<PathBuf> = std::env::split_paths(&path).collect();
    tools
        .iter()
        .copied()
        .filter(|(tool, _)| !dirs.iter().any(|d| d.join(tool).is_file()))
        .collect()
}

/// An error naming the tools of `tools` that are missing, and their packages, if any is;
/// `who` needs them.
fn require_of(tools: &[(&'static str, &'static str)], who: &str) -> anyhow::Result<()> {
    let missing = missing_of(tools);
    if missing.is_empty() {
        return Ok(());
    }
    let tools: Vec<String> = missing
        .iter()
        .map(|(t, p)| format!("{t} (package {p})"))
        .collect();
    bail!(
        "{who} cannot run without tools that are not installed: {}",
        tools.join(", ")
    )
}

/// An error naming the missing tools and their packages, if any is missing.
///
/// # Errors
/// If a tool of [`TOOLS`] is not on `PATH`.
pub fn require_tools() -> anyhow::Result<()> {
    require_of(&TOOLS, "the lab")
}

impl Lab {
    /// Builds a lab with `attackers` attacker hosts (at most [`MAX_ATTACKERS`]).
    ///
    /// # Errors
    /// If a namespace, link or address cannot be created; whatever was created is removed.
    pub fn new(attackers: usize) -> anyhow::Result<Self> {
        Self::build_with(attackers, false)
    }

    /// [`Lab::new`] with one more host, the upstream router ([`Lab::router`]), for the BGP
    /// tests (see [`Upstream`]).
    ///
    /// # Errors
    /// As [`Lab::new`].
    pub fn with_router(attackers: usize) -> anyhow::Result<Self> {
        Self::build_with(attackers, true)
    }

    fn build_with(attackers: usize, router: bool) -> anyhow::Result<Self> {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        ensure!(
            attackers <= MAX_ATTACKERS,
            "a lab has at most {MAX_ATTACKERS} attackers, not {attackers}"
        );
        require_tools()?;
        reap_stale_labs();
        let pid = std::process::id();
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let name = format!("{NETNS_PREFIX}{pid}-{n}");
        let dir = std::env::temp_dir().join(format!("{DIR_PREFIX}{pid}-{n}"));
        // Host interfaces have names no real machine has, so a command that lost its
        // `ip netns exec` fails instead of acting on the machine's own interfaces.
        let host = |role: &str, short: &str, ipv4: Ipv4Addr, ipv6: Ipv6Addr| Host {
            name: role.to_owned(),
            netns: format!("{name}-{short}"),
            iface: format!("fwlab-{short}"),
            ipv4,
            ipv6,
        };
        let attackers = (FIRST_ATTACKER..=u8::MAX)
            .take(attackers)
            .enumerate()
            .map(|(i, last)| {
                host(
                    &format!("attacker{i}"),
                    &format!("atk{i}"),
                    Ipv4Addr::new(198, 18, 0, last),
                    lab_ipv6(0x10 + u16::from(last - FIRST_ATTACKER)),
                )
            })
            .collect();
        let mut lab = Self {
            switch_netns: format!("{name}-sw"),
            server: host("server", "srv", SERVER_IPV4, SERVER_IPV6),
            client: host("client", "cli", CLIENT_IPV4, CLIENT_IPV6),
            attackers,
            router: router.then(|| host("router", "rtr", ROUTER_IPV4, ROUTER_IPV6)),
            run_dir: dir.join("run"),
            pin_root: dir.join("bpffs"),
            pin_root_mounted: false,
            dir,
            name,
            created: Vec::new(),
            procs: Mutex::new(Vec::new()),
        };
        // On error `lab` is dropped here, which removes what `build` made so far.
        lab.build()
            .with_context(|| format!("cannot build lab {}", lab.name))?;
        Ok(lab)
    }

    fn build(&mut self) -> anyhow::Result<()> {
        // 0755: nginx workers (user nobody) read the page, and the tests' unprivileged CLI
        // calls must reach the control socket to be refused by it rather than by the path.
        for dir in [&self.dir, &self.run_dir] {
            fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
            fs::set_permissions(dir, fs::Permissions::from_mode(0o755))
                .with_context(|| format!("cannot set the mode of {}", dir.display()))?;
        }
        fs::create_dir_all(&self.pin_root)
            .with_context(|| format!("cannot create {}", self.pin_root.display()))?;
        mount_bpffs(&self.pin_root)?;
        self.pin_root_mounted = true;
        let switch = self.switch_netns.clone();
        self.add_netns(&switch)?;
        // The switch only forwards frames: without IPv6 its bridge sends no router
        // solicitations or MLD reports of its own into the lab.
        run_checked(command_in(
            &switch,
            &[
                "sysctl",
                "-q",
                "-w",
                "net.ipv6.conf.all.disable_ipv6=1",
                "-w",
                "net.ipv6.conf.default.disable_ipv6=1",
            ],
        ))?;
        // STP stays off (the default): ports forward as soon as they are up, and a lab
        // without loops has no use for it.
        ip(&["-n", &switch, "link", "add", BRIDGE, "type", "bridge"])?;
        ip(&["-n", &switch, "link", "set", BRIDGE, "up"])?;
        let hosts: Vec<Host> = self.hosts().cloned().collect();
        for host in &hosts {
            self.add_netns(&host.netns)?;
            self.join(host)?;
        }
        Ok(())
    }

    fn add_netns(&mut self, netns: &str) -> anyhow::Result<()> {
        ip(&["netns", "add", netns])?;
        self.created.push(netns.to_owned());
        Ok(())
    }

    /// Creates the host's veth pair with its switch end in the switch namespace, and
    /// addresses the host end. Both ends are created directly in their namespaces: the
    /// machine's own namespace never sees them.
    fn join(&self, host: &Host) -> anyhow::Result<()> {
        let port = format!("sw-{}", host.iface.trim_start_matches("fwlab-"));
        let (ns, sw, iface) = (
            host.netns.as_str(),
            self.switch_netns.as_str(),
            host.iface.as_str(),
        );
        ip(&[
            "-n", ns, "link", "add", iface, "type", "veth", "peer", "name", &port, "netns", sw,
        ])?;
        ip(&["-n", sw, "link", "set", &port, "master", BRIDGE, "up"])?;
        ip(&[
            "-n",
            ns,
            "addr",
            "add",
            &format!("{}/24", host.ipv4),
            "dev",
            iface,
        ])?;
        // nodad: the address is usable at once instead of after duplicate address detection
        // (a second or so); the lab assigns every address once, so there is nothing to detect.
        ip(&[
            "-n",
            ns,
            "-6",
            "addr",
            "add",
            &format!("{}/64", host.ipv6),
            "dev",
            iface,
            "nodad",
        ])?;
        ip(&["-n", ns, "link", "set", iface, "up"])?;
        Ok(())
    }

    /// Where `host`'s link ends on the switch: its namespace and the port's name.
    #[must_use]
    pub fn switch_port(&self, host: &Host) -> (&str, String) {
        (
            &self.switch_netns,
            format!("sw-{}", host.iface.trim_start_matches("fwlab-")),
        )
    }

    /// The counters of the switch's port to `host`: what the switch handed `host`'s veth
    /// and what it could not. A veth with a native XDP program queues frames from its
    /// peer on a ring of 256; when that ring is full, `veth_xmit()` frees the frame and
    /// counts it as the sending end's `tx_dropped`, before any XDP program sees it.
    ///
    /// # Errors
    /// If `ip -s link show` fails or prints no counters.
    pub fn switch_port_counters(&self, host: &Host) -> anyhow::Result<PortCounters> {
        let (switch, port) = self.switch_port(host);
        let out = ip(&["-n", switch, "-j", "-s", "link", "show", "dev", &port])?;
        let links: serde_json::Value = serde_json::from_slice(&out.stdout)
            .with_context(|| format!("ip -j -s link show {port} printed no JSON"))?;
        let tx = &links[0]["stats64"]["tx"];
        let field = |name: &str| {
            tx[name]
                .as_u64()
                .with_context(|| format!("ip -s link show {port} has no tx {name}: {links}"))
        };
        Ok(PortCounters {
            tx_packets: field("packets")?,
            tx_dropped: field("dropped")?,
        })
    }

    /// The lab's name, the prefix of its namespaces' names (`fwlab-<pid>-<n>`).
    #[must_use]
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The server, where nginx and floodwall run.
    #[must_use]
    pub fn server(&self) -> &Host {
        &self.server
    }

    /// The legitimate client.
    #[must_use]
    pub fn client(&self) -> &Host {
        &self.client
    }

    /// The attackers.
    #[must_use]
    pub fn attackers(&self) -> &[Host] {
        &self.attackers
    }

    /// The upstream router, if the lab was built with [`Lab::with_router`].
    #[must_use]
    pub fn router(&self) -> Option<&Host> {
        self.router.as_ref()
    }

    /// Server, client, attackers, then the router if there is one.
    pub fn hosts(&self) -> impl Iterator<Item = &Host> {
        [&self.server, &self.client]
            .into_iter()
            .chain(&self.attackers)
            .chain(&self.router)
    }

    /// The lab's directory: process output, nginx's files, the control socket directory.
    #[must_use]
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The bpffs directory of the lab's pinned state (`--pin-root`).
    #[must_use]
    pub fn pin_root(&self) -> &Path {
        &self.pin_root
    }

    /// The control socket directory the lab's daemons use (`--run-dir`).
    #[must_use]
    pub fn run_dir(&self) -> &Path {
        &self.run_dir
    }

    /// A Prometheus scrape of the daemon's metrics at `addr` (`ADDR:PORT`), from the
    /// client, as text.
    ///
    /// # Panics
    /// If curl cannot run or the endpoint does not answer within 5 s.
    #[must_use]
    pub fn scrape_metrics(&self, addr: &str) -> String {
        let url = format!("http://{addr}/metrics");
        let out = self
            .run_in(
                self.client(),
                &["curl", "-sS", "-f", "--max-time", "5", &url],
            )
            .unwrap_or_else(|e| panic!("curl {url}: {e:#}"));
        assert!(
            out.status.success(),
            "the metrics endpoint {url} must answer: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Runs `argv` in `host`'s namespace to completion and returns its output, whatever its
    /// exit status. Bound its run time yourself (`timeout`, `curl --max-time`).
    ///
    /// # Errors
    /// If the command cannot be started.
    pub fn run_in(&self, host: &Host, argv: &[impl AsRef<OsStr>]) -> anyhow::Result<Output> {
        let mut cmd = command_in(&host.netns, argv);
        cmd.output().with_context(|| format!("cannot run {cmd:?}"))
    }

    /// Starts `argv` in `host`'s namespace in the background. Its stdout and stderr go to
    /// files in the lab's directory (see [`Proc::stdout`]); the lab stops it when dropped.
    ///
    /// # Errors
    /// If it cannot be started.
    pub fn spawn(
        &self,
        host: &Host,
        name: &str,
        argv: &[impl AsRef<OsStr>],
    ) -> anyhow::Result<Proc> {
        self.spawn_command(name, command_in(&host.netns, argv))
    }

    fn spawn_command(&self, name: &str, mut cmd: Command) -> anyhow::Result<Proc> {
        let mut procs = lock(&self.procs);
        let slot = procs.len();
        let stdout = self.dir.join(format!("{slot:02}-{name}.stdout"));
        let stderr = self.dir.join(format!("{slot:02}-{name}.stderr"));
        let file =
            |p: &Path| File::create(p).with_context(|| format!("cannot create {}", p.display()));
        cmd.stdout(file(&stdout)?).stderr(file(&stderr)?);
        let child = cmd
            .spawn()
            .with_context(|| format!("cannot start {name}: {cmd:?}"))?;
        let proc = Proc {
            slot,
            pid: child.id(),
            name: name.to_owned(),
            stdout: stdout.clone(),
            stderr: stderr.clone(),
        };
        procs.push(Slot {
            child,
            name: name.to_owned(),
            status: None,
            stdout,
            stderr,
        });
        Ok(proc)
    }

    /// Its exit status if it has exited.
    #[must_use]
    pub fn try_wait(&self, proc: &Proc) -> Option<ExitStatus> {
        lock(&self.procs)[proc.slot].poll()
    }

    /// Waits up to `timeout` for it to exit.
    ///
    /// # Errors
    /// If it is still running after `timeout` (it is left running).
    pub fn wait(&self, proc: &Proc, timeout: Duration) -> anyhow::Result<ExitStatus> {
        let mut status = None;
        poll_until(timeout, Duration::from_millis(20), || {
            status = self.try_wait(proc);
            status.is_some()
        });
        status.ok_or_else(|| {
            anyhow!(
                "{} (pid {}) still runs after {timeout:?}",
                proc.name,
                proc.pid
            )
        })
    }

    /// Sends `signal` to it, unless it has exited.
    pub fn signal(&self, proc: &Proc, signal: i32) {
        let mut procs = lock(&self.procs);
        if procs[proc.slot].poll().is_none() {
            signal_pid(proc.pid, signal);
        }
    }

    /// Sends it `signal` and waits up to `grace` for it to exit; if it does not, kills its
    /// process group.
    ///
    /// # Errors
    /// If it had to be killed.
    pub fn stop(&self, proc: &Proc, signal: i32, grace: Duration) -> anyhow::Result<ExitStatus> {
        self.signal(proc, signal);
        if let Ok(status) = self.wait(proc, grace) {
            return Ok(status);
        }
        let mut procs = lock(&self.procs);
        let slot = &mut procs[proc.slot];
        if slot.poll().is_none() {
            signal_group(proc.pid, libc::SIGKILL);
            if let Ok(status) = slot.child.wait() {
                slot.status = Some(status);
            }
        }
        bail!(
            "{} (pid {}) did not exit within {grace:?} of signal {signal}; killed it",
            proc.name,
            proc.pid
        )
    }

    /// Whether `host`'s interface carries an XDP program (`ip link` shows `xdp`,
    /// `xdpgeneric` or `xdpoffload`).
    ///
    /// # Errors
    /// If `ip link show` fails.
    pub fn xdp_attached(&self, host: &Host) -> anyhow::Result<bool> {
        let out = ip(&["-n", &host.netns, "link", "show", "dev", &host.iface])?;
        Ok(String::from_utf8_lossy(&out.stdout).contains("xdp"))
    }

    /// The id of the XDP program on `iface` in `host`'s namespace, if one is attached
    /// (`prog/xdp id N` in `ip link show`).
    ///
    /// # Errors
    /// If `ip link show` fails.
    pub fn xdp_prog_id(&self, host: &Host, iface: &str) -> anyhow::Result<Option<u32>> {
        let out = ip(&["-n", &host.netns, "link", "show", "dev", iface])?;
        let text = String::from_utf8_lossy(&out.stdout);
        Ok(text
            .split("prog/xdp id ")
            .nth(1)
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|id| id.parse().ok()))
    }

    // ---- cleanup -------------------------------------------------------------------------

    /// SIGTERM to every process group still running, then SIGKILL to those that outlive the
    /// grace period. SIGTERM first so that floodwall and nginx exit cleanly.
    fn stop_all(&self) {
        let mut procs = lock(&self.procs);
        for slot in procs.iter_mut() {
            if slot.poll().is_none() {
                signal_group(slot.child.id(), libc::SIGTERM);
            }
        }
        poll_until(STOP_GRACE, Duration::from_millis(20), || {
            procs.iter_mut().all(|s| s.poll().is_some())
        });
        for slot in procs.iter_mut() {
            if slot.poll().is_none() {
                eprintln!(
                    "lab {}: {} (pid {}) ignored SIGTERM; killing it",
                    self.name,
                    slot.name,
                    slot.child.id()
                );
                signal_group(slot.child.id(), libc::SIGKILL);
                if let Ok(status) = slot.child.wait() {
                    slot.status = Some(status);
                }
            }
        }
    }

    /// The tail of every process's output, for a failing test's report.
    fn dump_output(&self) {
        const TAIL: usize = 25;
        for slot in lock(&self.procs).iter() {
            for (stream, path) in [("stdout", &slot.stdout), ("stderr", &slot.stderr)] {
                let text = fs::read(path)
                    .map(|b| String::from_utf8_lossy(&b).into_owned())
                    .unwrap_or_default();
                let lines: Vec<&str> = text.lines().collect();
                if lines.is_empty() {
                    continue;
                }
                eprintln!(
                    "---- lab {}: {} {stream} (last {TAIL} lines) ----",
                    self.name, slot.name
                );
                for line in &lines[lines.len().saturating_sub(TAIL)..] {
                    eprintln!("{line}");
                }
            }
        }
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        self.stop_all();
        if std::thread::panicking() {
            self.dump_output();
        }
        for netns in self.created.iter().rev() {
            if let Err(e) = delete_netns(netns) {
                eprintln!("lab {}: {e:#}", self.name);
            }
        }
        // After the namespaces: with the interfaces gone the pinned links hold nothing, and
        // unmounting the lab's bpffs frees the pinned maps.
        if self.pin_root_mounted {
            unmount(&self.pin_root);
        }
        if let Err(e) = fs::remove_dir_all(&self.dir)
            && e.kind() != std::io::ErrorKind::NotFound
        {
            eprintln!(
                "lab {}: cannot remove {}: {e}",
                self.name,
                self.dir.display()
            );
        }
    }
}

/// Mounts a new bpffs instance at `path` (the VM has no `mount` tool, hence the syscall).
fn mount_bpffs(path: &Path) -> anyhow::Result<()> {
    use std::os::unix::ffi::OsStrExt as _;
    let target = std::ffi::CString::new(path.as_os_str().as_bytes())
        .with_context(|| format!("{} has a NUL byte", path.display()))?;
    // SAFETY: every pointer is a NUL-terminated string that outlives the call.
    let rc = unsafe {
        libc::mount(
            c"bpf".as_ptr(),
            target.as_ptr(),
            c"bpf".as_ptr(),
            0,
            std::ptr::null(),
        )
    };
    if rc != 0 {
        return Err(std::io::Error::last_os_error())
            .with_context(|| format!("cannot mount bpffs at {}", path.display()));
    }
    Ok(())
}

/// Unmounts a lab's bpffs (lazily: a process still inside lets go when it exits).
fn unmount(path: &Path) {
    use std::os::unix::ffi::OsStrExt as _;
    let Ok(target) = std::ffi::CString::new(path.as_os_str().as_bytes()) else {
        return;
    };
    // SAFETY: a NUL-terminated path that outlives the call.
    if unsafe { libc::umount2(target.as_ptr(), libc::MNT_DETACH) } != 0 {
        eprintln!(
            "cannot unmount {}: {}",
            path.display(),
            std::io::Error::last_os_error()
        );
    }
}

/// Kills whatever still runs in `netns` (only processes a lab started, or their children,
/// run there) and deletes it. `ip netns del` alone would only unmount the name: a process
/// left inside keeps the namespace, and its interfaces, alive.
fn delete_netns(netns: &str) -> anyhow::Result<()> {
    if let Ok(out) = command("ip").args(["netns", "pids", netns]).output() {
        for pid in String::from_utf8_lossy(&out.stdout)
            .split_whitespace()
            .filter_map(|p| p.parse().ok())
        {
            signal_pid(pid, libc::SIGKILL);
        }
    }
    ip(&["netns", "del", netns]).map(drop)
}

/// The pid in a lab name (`fwlab-<pid>-...` or `floodwall-lab-<pid>-...`).
fn lab_owner(name: &str, prefix: &str) -> Option<u32> {
    name.strip_prefix(prefix)?.split('-').next()?.parse().ok()
}

/// Deletes the namespaces and directories of labs whose process no longer exists: a test
/// process killed with SIGKILL, or aborted, cannot clean up after itself. Best-effort; a lab
/// of a live process is never touched.
fn reap_stale_labs() {
    let dead = |pid: u32| !Path::new(&format!("/proc/{pid}")).exists();
    if let Ok(out) = command("ip").args(["netns", "list"]).output() {
        for line in String::from_utf8_lossy(&out.stdout).lines() {
            let Some(netns) = line.split_whitespace().next() else {
                continue;
            };
            if lab_owner(netns, NETNS_PREFIX).is_some_and(dead) {
                eprintln!("removing namespace {netns} left by a lab whose process is gone");
                if let Err(e) = delete_netns(netns) {
                    eprintln!("{e:#}");
                }
            }
        }
    }
    if let Ok(entries) = fs::read_dir(std::env::temp_dir()) {
        for entry in entries.filter_map(Result::ok) {
            let name = entry.file_name();
            if lab_owner(&name.to_string_lossy(), DIR_PREFIX).is_some_and(dead) {
                let bpffs = entry.path().join("bpffs");
                if bpffs.exists() {
                    unmount(&bpffs);
                }
                let _ = fs::remove_dir_all(entry.path());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lab_names_give_their_owner() {
        assert_eq!(lab_owner("fwlab-4242-3-srv", NETNS_PREFIX), Some(4242));
        assert_eq!(lab_owner("floodwall-lab-77-0", DIR_PREFIX), Some(77));
        assert_eq!(lab_owner("fwlabx-1-srv", NETNS_PREFIX), None);
        assert_eq!(lab_owner("other-1-srv", NETNS_PREFIX), None);
    }
}
