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

use std::os::unix::fs::MetadataExt as _;
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

use anyhow::{Context as _, anyhow, bail, ensure};
use filter_common::Outcome;
use floodwall::control::{LimitsView, Response, SourceView, StatsView, socket_path};

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
    let path = std::env::var_os("PATH").unwrap_or_default();
    let dirs: Vec<PathBuf> = std::env::split_paths(&path).collect();
    TOOLS
        .into_iter()
        .filter(|(tool, _)| !dirs.iter().any(|d| d.join(tool).is_file()))
        .collect()
}

/// An error naming the missing tools and their packages, if any is missing.
///
/// # Errors
/// If a tool of [`TOOLS`] is not on `PATH`.
pub fn require_tools() -> anyhow::Result<()> {
    let missing = missing_tools();
    if missing.is_empty() {
        return Ok(());
    }
    let tools: Vec<String> = missing
        .iter()
        .map(|(t, p)| format!("{t} (package {p})"))
        .collect();
    bail!(
        "the lab needs tools that are not installed: {}",
        tools.join(", ")
    )
}

impl Lab {
    /// Builds a lab with `attackers` attacker hosts (at most [`MAX_ATTACKERS`]).
    ///
    /// # Errors
    /// If a namespace, link or address cannot be created; whatever was created is removed.
    pub fn new(attackers: usize) -> anyhow::Result<Self> {
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

    /// Server, client, then attackers.
    pub fn hosts(&self) -> impl Iterator<Item = &Host> {
        [&self.server, &self.client]
            .into_iter()
            .chain(&self.attackers)
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

    // ---- nginx ---------------------------------------------------------------------------

    /// Starts nginx in the server namespace, serving [`PAGE`] at `http://198.18.0.1/` and
    /// `http://[2001:2::1]/`, with its configuration, pid file, logs and temp dirs in the
    /// lab's directory (nothing under /etc/nginx, /var/log or /var/lib is used). Returns once
    /// it listens.
    ///
    /// # Errors
    /// If it cannot be started or does not listen within 10 s.
    pub fn start_nginx(&self) -> anyhow::Result<Proc> {
        let dir = self.dir.join("nginx");
        let www = dir.join("www");
        fs::create_dir_all(&www).with_context(|| format!("cannot create {}", www.display()))?;
        for d in [&dir, &www] {
            fs::set_permissions(d, fs::Permissions::from_mode(0o755))?;
        }
        let page = www.join("index.html");
        fs::write(&page, PAGE)?;
        fs::set_permissions(&page, fs::Permissions::from_mode(0o644))?;
        let d = dir.display();
        // daemon off: the master stays our child, so the lab can stop it. Access logs off:
        // a flood test would only fill the disk. The temp paths default to /var/lib/nginx.
        let conf = format!(
            "daemon off;
worker_processes 1;
pid {d}/nginx.pid;
error_log {d}/error.log warn;
events {{ worker_connections 1024; }}
http {{
    access_log off;
    client_body_temp_path {d}/body;
    proxy_temp_path {d}/proxy;
    fastcgi_temp_path {d}/fastcgi;
    uwsgi_temp_path {d}/uwsgi;
    scgi_temp_path {d}/scgi;
    server {{
        listen {v4}:80;
        listen [{v6}]:80;
        root {d}/www;
        index index.html;
    }}
}}
",
            v4 = self.server.ipv4,
            v6 = self.server.ipv6,
        );
        let conf_path = dir.join("nginx.conf");
        fs::write(&conf_path, conf)?;
        // -e: the error log nginx uses before it has read its configuration.
        let prefix = format!("{d}/");
        let error_log = dir.join("error.log");
        let argv: [&OsStr; 7] = [
            "nginx".as_ref(),
            "-p".as_ref(),
            prefix.as_ref(),
            "-c".as_ref(),
            conf_path.as_os_str(),
            "-e".as_ref(),
            error_log.as_os_str(),
        ];
        let proc = self.spawn(&self.server, "nginx", &argv)?;
        let listening = poll_until(NGINX_START_TIMEOUT, Duration::from_millis(50), || {
            self.try_wait(&proc).is_some() || self.listens_on_port_80()
        });
        if let Some(status) = self.try_wait(&proc) {
            bail!(
                "nginx exited at start ({status}): {} {}",
                proc.stderr().trim(),
                fs::read_to_string(&error_log).unwrap_or_default().trim()
            );
        }
        ensure!(
            listening,
            "nginx does not listen on port 80 after {NGINX_START_TIMEOUT:?}"
        );
        Ok(proc)
    }

    fn listens_on_port_80(&self) -> bool {
        self.run_in(&self.server, &["ss", "-Hltn", "sport", "=", ":80"])
            .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).lines().count() >= 2)
    }

    /// The server's URL over IPv4 or IPv6.
    #[must_use]
    pub fn server_url(&self, ipv6: bool) -> String {
        if ipv6 {
            format!("http://[{}]/", self.server.ipv6)
        } else {
            format!("http://{}/", self.server.ipv4)
        }
    }

    /// One HTTP GET of the server's page from `from`; returns the body.
    ///
    /// # Errors
    /// If the request fails or does not answer 200 within 3 s.
    pub fn http_get(&self, from: &Host, ipv6: bool) -> anyhow::Result<String> {
        let max_time = HTTP_TIMEOUT_SECS.to_string();
        let url = self.server_url(ipv6);
        let out = self.run_in(
            from,
            &["curl", "-sS", "--fail", "--max-time", &max_time, &url],
        )?;
        ensure!(
            out.status.success(),
            "GET {url} from {} failed: {}",
            from.name,
            String::from_utf8_lossy(&out.stderr).trim()
        );
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// Starts the legitimate client: `rounds` rounds of one GET over IPv4 and one over IPv6,
    /// `pause` apart, each request bounded to 3 s and the whole run to `max_time`. Each
    /// request prints its HTTP status (`000` when it failed); see [`http_tally`].
    ///
    /// # Errors
    /// If it cannot be started.
    pub fn spawn_http_client(
        &self,
        rounds: u32,
        pause: Duration,
        max_time: Duration,
    ) -> anyhow::Result<Proc> {
        // New connection per request, as separate visitors would make. No `set -e`: a failed
        // request is a result to count, not a reason to stop.
        let script = r#"rounds=$1; pause=$2; max=$3; shift 3
n=0
while [ "$n" -lt "$rounds" ]; do
    n=$((n + 1))
    for url in "$@"; do
        curl -sS -o /dev/null --max-time "$max" -w '%{http_code}\n' "$url"
    done
    sleep "$pause"
done"#;
        let argv = [
            "timeout".to_owned(),
            "--kill-after=2".to_owned(),
            max_time.as_secs().max(1).to_string(),
            "sh".to_owned(),
            "-c".to_owned(),
            script.to_owned(),
            "sh".to_owned(),
            rounds.to_string(),
            format!("{:.3}", pause.as_secs_f64()),
            HTTP_TIMEOUT_SECS.to_string(),
            self.server_url(false),
            self.server_url(true),
        ];
        self.spawn(&self.client, "http-client", &argv)
    }

    // ---- hping3 ---------------------------------------------------------------------------

    /// Starts hping3 on `from` against the server's IPv4 address (the only target it can
    /// have), quiet, sending at most `count` packets for at most `max_time`. `flags` say what
    /// and how fast: `["--faster", "-S", "-p", "80"]` is a SYN flood, `["-i", "u1000",
    /// "--udp", "-p", "9"]` about 1000 UDP packets per second. (`--faster` rather than
    /// `--flood`: hping3 ignores `-c` with `--flood`.) See [`hping3_sent`].
    ///
    /// # Errors
    /// If it cannot be started.
    pub fn spawn_hping3(
        &self,
        from: &Host,
        flags: &[&str],
        count: u64,
        max_time: Duration,
    ) -> anyhow::Result<Proc> {
        let mut argv = vec![
            "timeout".to_owned(),
            "--kill-after=2".to_owned(),
            max_time.as_secs().max(1).to_string(),
            "hping3".to_owned(),
            "-q".to_owned(),
            "-c".to_owned(),
            count.to_string(),
        ];
        argv.extend(flags.iter().map(|&f| f.to_owned()));
        argv.push(self.server.ipv4.to_string());
        self.spawn(from, &format!("hping3-{}", from.name), &argv)
    }

    // ---- floodwall -----------------------------------------------------------------------

    /// Starts `floodwall --run-dir RUN_DIR --pin-root PIN_ROOT run --iface IFACE ARGS` in the
    /// server namespace
    /// without waiting for it (to watch it refuse to start).
    ///
    /// # Errors
    /// If it cannot be started.
    ///
    /// # Panics
    /// If the `floodwall` binary cannot be found (see [`crate::floodwall_bin`]).
    pub fn spawn_floodwall(
        &self,
        run_dir: &Path,
        pin_root: &Path,
        iface: &str,
        args: &[&str],
    ) -> anyhow::Result<Proc> {
        self.spawn_floodwall_under(&[], run_dir, pin_root, iface, args)
    }

    /// [`Lab::spawn_floodwall`] with `floodwall` run by a wrapper command, e.g. `setpriv
    /// --bounding-set=... --`.
    ///
    /// # Errors
    /// If it cannot be started.
    ///
    /// # Panics
    /// If the `floodwall` binary cannot be found (see [`crate::floodwall_bin`]).
    pub fn spawn_floodwall_under(
        &self,
        wrapper: &[&str],
        run_dir: &Path,
        pin_root: &Path,
        iface: &str,
        args: &[&str],
    ) -> anyhow::Result<Proc> {
        let bin = crate::floodwall_bin();
        let mut command: Vec<&OsStr> = wrapper.iter().map(OsStr::new).collect();
        command.extend([
            bin.as_os_str(),
            "--run-dir".as_ref(),
            run_dir.as_os_str(),
            "--pin-root".as_ref(),
            pin_root.as_os_str(),
        ]);
        command.extend(["run", "--iface", iface].map(OsStr::new));
        command.extend(args.iter().map(OsStr::new));
        self.spawn(&self.server, "floodwall-run", &command)
    }

    /// Starts `floodwall run` on the server's interface with the lab's run dir and `args`
    /// (`--pps 1000`, ...), and returns once its control socket exists.
    ///
    /// # Errors
    /// If it exits (the error has its log) or has no socket within 30 s.
    ///
    /// # Panics
    /// If the `floodwall` binary cannot be found (see [`crate::floodwall_bin`]).
    pub fn start_floodwall(&self, args: &[&str]) -> anyhow::Result<Daemon<'_>> {
        self.start_floodwall_in(&self.run_dir, args)
    }

    /// [`Lab::start_floodwall`] with another run dir.
    ///
    /// # Errors
    /// As [`Lab::start_floodwall`].
    ///
    /// # Panics
    /// If the `floodwall` binary cannot be found (see [`crate::floodwall_bin`]).
    pub fn start_floodwall_in(&self, run_dir: &Path, args: &[&str]) -> anyhow::Result<Daemon<'_>> {
        self.start_floodwall_under(&[], run_dir, args)
    }

    /// [`Lab::start_floodwall_in`] with `floodwall` run by a wrapper command (see
    /// [`Lab::spawn_floodwall_under`]).
    ///
    /// # Errors
    /// As [`Lab::start_floodwall`].
    ///
    /// # Panics
    /// If the `floodwall` binary cannot be found (see [`crate::floodwall_bin`]).
    pub fn start_floodwall_under(
        &self,
        wrapper: &[&str],
        run_dir: &Path,
        args: &[&str],
    ) -> anyhow::Result<Daemon<'_>> {
        let socket = socket_path(run_dir, &self.server.iface);
        // The daemon binds its socket after it attached, so a new socket means "protecting".
        // A socket left behind by a killed daemon (kill -9 leaves it) is not new: it keeps
        // its inode and change time until the new daemon replaces it.
        let inode = |path: &Path| {
            fs::metadata(path)
                .ok()
                .map(|m| (m.ino(), m.ctime(), m.ctime_nsec()))
        };
        let stale = inode(&socket);
        let proc =
            self.spawn_floodwall_under(wrapper, run_dir, &self.pin_root, &self.server.iface, args)?;
        let ready = poll_until(DAEMON_START_TIMEOUT, Duration::from_millis(20), || {
            self.try_wait(&proc).is_some() || inode(&socket).is_some_and(|i| Some(i) != stale)
        });
        if let Some(status) = self.try_wait(&proc) {
            bail!(
                "floodwall run exited at start ({status}): {}",
                proc.stderr().trim()
            );
        }
        if !ready {
            let _ = self.stop(&proc, libc::SIGTERM, STOP_GRACE);
            bail!(
                "floodwall run has no control socket at {} after {DAEMON_START_TIMEOUT:?}: {}",
                socket.display(),
                proc.stderr().trim()
            );
        }
        Ok(Daemon {
            lab: self,
            proc,
            run_dir: run_dir.to_owned(),
        })
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

// ---- floodwall daemon and CLI ------------------------------------------------------------

/// A `floodwall run` daemon started by [`Lab::start_floodwall`], and its CLI. The lab stops
/// it (SIGTERM) when dropped, if [`Daemon::stop`] did not.
pub struct Daemon<'lab> {
    lab: &'lab Lab,
    proc: Proc,
    run_dir: PathBuf,
}

impl Daemon<'_> {
    /// The daemon process.
    #[must_use]
    pub fn proc(&self) -> &Proc {
        &self.proc
    }

    /// Its control socket directory.
    #[must_use]
    pub fn run_dir(&self) -> &Path {
        &self.run_dir
    }

    /// Its log (stderr) so far.
    #[must_use]
    pub fn log(&self) -> String {
        self.proc.stderr()
    }

    /// `floodwall --run-dir RUN_DIR ARGS`, run from the machine's own namespace (the CLI
    /// needs only the socket), whatever its exit status.
    ///
    /// # Errors
    /// If the CLI cannot be started.
    ///
    /// # Panics
    /// If the `floodwall` binary cannot be found (see [`crate::floodwall_bin`]).
    pub fn cli(&self, args: &[&str]) -> anyhow::Result<Output> {
        let mut cmd = command(crate::floodwall_bin());
        cmd.arg("--run-dir")
            .arg(&self.run_dir)
            .arg("--pin-root")
            .arg(&self.lab.pin_root)
            .args(args);
        cmd.output().with_context(|| format!("cannot run {cmd:?}"))
    }

    /// [`Daemon::cli`] run as `uid` (its group too) with the supplementary `groups` only,
    /// through `setpriv`: how an unprivileged operator reaches the daemon.
    ///
    /// # Errors
    /// If setpriv cannot be started.
    pub fn cli_as(&self, uid: u32, groups: &[u32], args: &[&str]) -> anyhow::Result<Output> {
        let mut cmd = command("setpriv");
        cmd.arg(format!("--reuid={uid}"))
            .arg(format!("--regid={uid}"));
        if groups.is_empty() {
            cmd.arg("--clear-groups");
        } else {
            let list: Vec<String> = groups.iter().map(u32::to_string).collect();
            cmd.arg(format!("--groups={}", list.join(",")));
        }
        cmd.arg("--")
            .arg(crate::floodwall_bin())
            .arg("--run-dir")
            .arg(&self.run_dir)
            .args(args);
        cmd.output().with_context(|| format!("cannot run {cmd:?}"))
    }

    /// `floodwall detach --iface SERVER_IFACE`, which must succeed (the daemon must have
    /// stopped): removes the program it left attached and its pinned state.
    ///
    /// # Errors
    /// If the command fails.
    pub fn detach(&self) -> anyhow::Result<()> {
        let out = self.cli(&["detach", "--iface", &self.lab.server.iface])?;
        ensure!(
            out.status.success(),
            "floodwall detach failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
        Ok(())
    }

    /// `floodwall ARGS --json`, which must succeed, decoded.
    ///
    /// # Errors
    /// If the command fails or prints something that is not a response.
    pub fn query(&self, args: &[&str]) -> anyhow::Result<Response> {
        let mut all = args.to_vec();
        all.push("--json");
        let out = self.cli(&all)?;
        ensure!(
            out.status.success(),
            "floodwall {} failed ({}): {}",
            all.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
        serde_json::from_slice(&out.stdout).with_context(|| {
            format!(
                "floodwall {} printed no response: {}",
                all.join(" "),
                String::from_utf8_lossy(&out.stdout)
            )
        })
    }

    /// `floodwall stats --json`.
    ///
    /// # Errors
    /// If the command fails or answers something else.
    pub fn stats(&self) -> anyhow::Result<StatsView> {
        match self.query(&["stats"])? {
            Response::Stats(view) => Ok(view),
            other => bail!("`stats` answered {other:?}"),
        }
    }

    /// `floodwall limits show --json`.
    ///
    /// # Errors
    /// If the command fails or answers something else.
    pub fn limits(&self) -> anyhow::Result<LimitsView> {
        match self.query(&["limits", "show"])? {
            Response::Limits(view) => Ok(view),
            other => bail!("`limits show` answered {other:?}"),
        }
    }

    /// `floodwall top --limit LIMIT --json`.
    ///
    /// # Errors
    /// If the command fails or answers something else.
    pub fn top(&self, limit: u32) -> anyhow::Result<Vec<SourceView>> {
        match self.query(&["top", "--limit", &limit.to_string()])? {
            Response::Sources { sources, .. } => Ok(sources),
            other => bail!("`top` answered {other:?}"),
        }
    }

    /// `floodwall blocked list --json`.
    ///
    /// # Errors
    /// If the command fails or answers something else.
    pub fn blocked(&self) -> anyhow::Result<Vec<SourceView>> {
        match self.query(&["blocked", "list"])? {
            Response::Sources { sources, .. } => Ok(sources),
            other => bail!("`blocked list` answered {other:?}"),
        }
    }

    /// The addresses `floodwall blocked list` shows.
    ///
    /// # Errors
    /// As [`Daemon::blocked`].
    pub fn blocked_addrs(&self) -> anyhow::Result<std::collections::BTreeSet<std::net::IpAddr>> {
        Ok(self.blocked()?.iter().map(|s| s.addr).collect())
    }

    /// Sends `signal` (SIGTERM, SIGINT) and waits up to 10 s for the daemon to exit.
    ///
    /// # Errors
    /// If it had to be killed.
    pub fn stop(&self, signal: i32) -> anyhow::Result<ExitStatus> {
        self.lab.stop(&self.proc, signal, Duration::from_secs(10))
    }
}

/// Packets of one outcome in a `stats` answer.
#[must_use]
pub fn packets(stats: &StatsView, outcome: Outcome) -> u64 {
    stats
        .outcomes
        .iter()
        .find(|o| o.outcome == outcome.name())
        .map_or(0, |o| o.packets)
}

/// Packets of every dropping outcome in a `stats` answer.
#[must_use]
pub fn dropped_packets(stats: &StatsView) -> u64 {
    stats
        .outcomes
        .iter()
        .filter(|o| o.dropped)
        .map(|o| o.packets)
        .sum()
}

/// Packets an hping3 run sent, from the statistics it prints when it ends (also when
/// `timeout` stops it with SIGTERM); `None` if it printed none.
#[must_use]
pub fn hping3_sent(proc: &Proc) -> Option<u64> {
    let text = proc.stderr() + &proc.stdout();
    text.lines().find_map(transmitted)
}

/// The count of hping3's statistics line:
/// `20000 packets transmitted, 0 packets received, 100% packet loss`.
fn transmitted(line: &str) -> Option<u64> {
    let (count, rest) = line.trim().split_once(' ')?;
    if rest.starts_with("packets transmitted") {
        count.parse().ok()
    } else {
        None
    }
}

/// What the legitimate client of [`Lab::spawn_http_client`] got.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HttpTally {
    /// Requests made.
    pub attempted: u64,
    /// Requests answered 200.
    pub served: u64,
}

impl HttpTally {
    /// Served over attempted, 0 when nothing was attempted.
    #[must_use]
    pub fn ratio(&self) -> f64 {
        if self.attempted == 0 {
            return 0.0;
        }
        #[expect(
            clippy::cast_precision_loss,
            reason = "request counts are far below 2^52"
        )]
        let ratio = self.served as f64 / self.attempted as f64;
        ratio
    }
}

/// Counts the results of a [`Lab::spawn_http_client`] run (so far).
#[must_use]
pub fn http_tally(proc: &Proc) -> HttpTally {
    let out = proc.stdout();
    let codes: Vec<&str> = out
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    HttpTally {
        attempted: codes.len() as u64,
        served: codes.iter().filter(|&&c| c == "200").count() as u64,
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

    #[test]
    fn hping3_statistics_parse() {
        assert_eq!(
            transmitted("20000 packets transmitted, 0 packets received, 100% packet loss"),
            Some(20_000)
        );
        assert_eq!(
            transmitted("HPING 198.18.0.1 (fwlab-atk0 198.18.0.1): udp mode set"),
            None
        );
    }
}
