//! An upstream router for the upstream (BGP FlowSpec and RTBH) tests, and the BGP speaker
//! floodwall drives.
//!
//! ```text
//!      server namespace                                  router namespace
//!   floodwall --(gobgp CLI)--> gobgpd  ==== eBGP ====>  BIRD 2
//!                         AS 65001, 198.18.0.1        AS 65000, 198.18.0.254
//!                    ipv4-unicast, ipv4/ipv6-flowspec  tables master4, ft4, ft6
//! ```
//!
//! [`Upstream`] starts both daemons with the configs that `fleet-poc.md` (§2.2) verified,
//! its files in the lab's directory, and reads what the router received through `birdc`:
//! BIRD is an independent implementation, so a route that arrives there was really sent, in
//! a form a real upstream parses. BIRD installs nothing into any FIB (no kernel protocol):
//! its tables are only read.
//!
//! Both control sockets are pathname unix sockets, so `gobgp` and `birdc` run from the
//! machine's own namespace, as the floodwall CLI does. The lab stops both daemons when it is
//! dropped, and removes their files with its directory.

use std::{
    fmt, fs,
    net::Ipv4Addr,
    path::{Path, PathBuf},
    process::{ExitStatus, Output},
    time::Duration,
};

use anyhow::{Context as _, anyhow, bail, ensure};

use super::{Lab, Proc, STOP_GRACE, command, poll_until, require_of};

/// Tools the upstream tests need beyond the lab's, with the Debian package that has each.
pub const UPSTREAM_TOOLS: [(&str, &str); 4] = [
    ("gobgpd", "gobgpd"),
    ("gobgp", "gobgpd"),
    ("bird", "bird2"),
    ("birdc", "bird2"),
];

/// An error naming the missing upstream tools and their packages, if any is missing.
///
/// # Errors
/// If a tool of [`UPSTREAM_TOOLS`] is not on `PATH`.
pub fn require_upstream_tools() -> anyhow::Result<()> {
    require_of(&UPSTREAM_TOOLS, "the upstream tests")
}

/// The server's (the speaker's) AS number.
const SPEAKER_AS: u32 = 65001;
/// The upstream router's AS number.
const ROUTER_AS: u32 = 65000;
/// The BGP protocol's name in BIRD's config: the router's view of the speaker.
const BIRD_PROTOCOL: &str = "speaker";
/// BLACKHOLE (RFC 7999), the community of an RTBH route.
pub const BLACKHOLE: Community = Community {
    asn: 65535,
    value: 666,
};

/// How long a session may take to come up. It takes about 1 s after gobgpd starts, but up
/// to 5 s when GoBGP sits in IDLE after a Cease (`fleet-poc.md` §2.3); the rest is for slow
/// machines.
const ESTABLISH_TIMEOUT: Duration = Duration::from_secs(20);
/// How long a daemon may take to open its control socket.
const SOCKET_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest run of one `birdc` or `gobgp` call. A `gobgp` call against a dead gobgpd fails
/// after 1 s by itself (`context deadline exceeded`); `timeout` bounds any other hang.
const CLI_TIMEOUT_SECS: &str = "10";
/// How often the waits read BIRD's tables: a route arrives within milliseconds of the
/// speaker's update (`fleet-poc.md` §2.4).
const POLL_EVERY: Duration = Duration::from_millis(100);

/// BIRD's config: the router takes every route the speaker sends and sends nothing back.
/// Short timers so that a session comes up in about a second. `import all` is needed on
/// every eBGP channel (RFC 8212 default), and the FlowSpec tables need non-keyword names.
fn bird_conf(router: Ipv4Addr, speaker: Ipv4Addr) -> String {
    format!(
        "\
log stderr all;
router id {router};

protocol device {{}}

flow4 table ft4;
flow6 table ft6;

protocol bgp {BIRD_PROTOCOL} {{
  local {router} as {ROUTER_AS};
  neighbor {speaker} as {SPEAKER_AS};
  connect delay time 1;
  connect retry time 2;
  error wait time 1, 5;
  hold time 9;
  keepalive time 3;
  ipv4 {{ import all; export none; }};
  flow4 {{ table ft4; import all; export none; }};
  flow6 {{ table ft6; import all; export none; }};
}}
"
    )
}

/// gobgpd's config: one neighbor, the router, with the three families floodwall announces.
/// It listens on the server's address only, and has no graceful restart: a crash of gobgpd
/// withdraws everything at once, which is what the restart tests rely on.
fn gobgpd_toml(speaker: Ipv4Addr, router: Ipv4Addr) -> String {
    format!(
        "\
[global.config]
  as = {SPEAKER_AS}
  router-id = \"{speaker}\"
  local-address-list = [\"{speaker}\"]

[[neighbors]]
  [neighbors.config]
    neighbor-address = \"{router}\"
    peer-as = {ROUTER_AS}
  [neighbors.transport.config]
    local-address = \"{speaker}\"
  [neighbors.timers.config]
    connect-retry = 1
    hold-time = 9
    keepalive-interval = 3
  [[neighbors.afi-safis]]
    [neighbors.afi-safis.config]
      afi-safi-name = \"ipv4-unicast\"
  [[neighbors.afi-safis]]
    [neighbors.afi-safis.config]
      afi-safi-name = \"ipv4-flowspec\"
  [[neighbors.afi-safis]]
    [neighbors.afi-safis.config]
      afi-safi-name = \"ipv6-flowspec\"
"
    )
}

/// BIRD in the lab's router namespace and gobgpd in its server namespace, peered; see the
/// [module docs](self).
pub struct Upstream<'lab> {
    lab: &'lab Lab,
    gobgpd_toml: PathBuf,
    gobgpd_socket: PathBuf,
    bird_socket: PathBuf,
    /// gobgpd while it runs (the tests stop, kill and restart it).
    gobgpd: Option<Proc>,
}

impl<'lab> Upstream<'lab> {
    /// Starts BIRD on the lab's router and gobgpd on its server, and waits for their session
    /// to be established.
    ///
    /// # Errors
    /// If a tool is missing, the lab has no router ([`Lab::with_router`]), a daemon does not
    /// start, or the session is not up within 20 s.
    pub fn start(lab: &'lab Lab) -> anyhow::Result<Self> {
        require_upstream_tools()?;
        let router = lab
            .router()
            .context("the upstream needs a lab with a router (Lab::with_router)")?;
        let speaker = lab.server().ipv4;
        let dir = lab.dir().join("bgp");
        fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
        let bird_conf_path = dir.join("bird.conf");
        let gobgpd_toml_path = dir.join("gobgpd.toml");
        for (path, text) in [
            (&bird_conf_path, bird_conf(router.ipv4, speaker)),
            (&gobgpd_toml_path, gobgpd_toml(speaker, router.ipv4)),
        ] {
            fs::write(path, text).with_context(|| format!("cannot write {}", path.display()))?;
        }
        let mut upstream = Self {
            lab,
            gobgpd_toml: gobgpd_toml_path,
            gobgpd_socket: dir.join("gobgpd.sock"),
            bird_socket: dir.join("bird.ctl"),
            gobgpd: None,
        };
        let bird = lab.spawn(
            router,
            "bird",
            &[
                "bird".as_ref(),
                "-f".as_ref(),
                "-c".as_ref(),
                bird_conf_path.as_os_str(),
                "-s".as_ref(),
                upstream.bird_socket.as_os_str(),
            ],
        )?;
        let up = poll_until(SOCKET_TIMEOUT, Duration::from_millis(20), || {
            lab.try_wait(&bird).is_some() || upstream.birdc(&["show", "status"]).is_ok()
        });
        ensure!(
            up && lab.try_wait(&bird).is_none(),
            "BIRD did not answer on {} within {SOCKET_TIMEOUT:?}: {}",
            upstream.bird_socket.display(),
            bird.stderr().trim()
        );
        upstream.start_gobgpd()?;
        upstream.wait_established(ESTABLISH_TIMEOUT)?;
        Ok(upstream)
    }

    /// The address of gobgpd's API, as `gobgp --target` and floodwall's `gobgp_api` take it:
    /// `unix:///.../gobgpd.sock`.
    #[must_use]
    pub fn gobgp_api(&self) -> String {
        format!("unix://{}", self.gobgpd_socket.display())
    }

    /// gobgpd's API socket.
    #[must_use]
    pub fn gobgp_socket(&self) -> &Path {
        &self.gobgpd_socket
    }

    /// gobgpd, while it runs.
    #[must_use]
    pub fn gobgpd(&self) -> Option<&Proc> {
        self.gobgpd.as_ref()
    }

    /// Starts gobgpd in the server namespace and waits for its API socket (not for the
    /// session: see [`Upstream::wait_established`]). Removes a socket a killed gobgpd left
    /// first: gobgpd does not, and dies on it (`bind: address already in use`).
    ///
    /// # Errors
    /// If gobgpd already runs, exits at start, or has no socket within 10 s.
    pub fn start_gobgpd(&mut self) -> anyhow::Result<()> {
        ensure!(self.gobgpd.is_none(), "gobgpd already runs");
        match fs::remove_file(&self.gobgpd_socket) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                return Err(e)
                    .with_context(|| format!("cannot remove {}", self.gobgpd_socket.display()));
            }
            _ => {}
        }
        let api = self.gobgp_api();
        // `-p` (PID file off), no pprof: it would try 127.0.0.1:6060 in a namespace whose
        // loopback is down.
        let proc = self.lab.spawn(
            self.lab.server(),
            "gobgpd",
            &[
                "gobgpd".as_ref(),
                "-f".as_ref(),
                self.gobgpd_toml.as_os_str(),
                "-p".as_ref(),
                "--pprof-disable".as_ref(),
                "--api-hosts".as_ref(),
                api.as_ref(),
            ],
        )?;
        let up = poll_until(SOCKET_TIMEOUT, Duration::from_millis(20), || {
            self.lab.try_wait(&proc).is_some() || self.gobgpd_socket.exists()
        });
        if let Some(status) = self.lab.try_wait(&proc) {
            bail!(
                "gobgpd exited at start ({status}): {}",
                proc.stderr().trim()
            );
        }
        if !up {
            let _ = self.lab.stop(&proc, libc::SIGTERM, STOP_GRACE);
            bail!(
                "gobgpd has no API socket at {} after {SOCKET_TIMEOUT:?}: {}",
                self.gobgpd_socket.display(),
                proc.stderr().trim()
            );
        }
        self.gobgpd = Some(proc);
        Ok(())
    }

    /// Stops gobgpd with `signal`. SIGTERM sends the router a Cease, which withdraws every
    /// route; SIGKILL closes the TCP session, which withdraws them too (no graceful restart),
    /// and leaves the API socket behind.
    ///
    /// # Errors
    /// If gobgpd does not run, or had to be killed after ignoring `signal` for 5 s.
    pub fn stop_gobgpd(&mut self, signal: i32) -> anyhow::Result<ExitStatus> {
        let proc = self.gobgpd.take().context("gobgpd does not run")?;
        self.lab.stop(&proc, signal, STOP_GRACE)
    }

    /// `kill -9` of gobgpd: a crash.
    ///
    /// # Errors
    /// If gobgpd does not run, or does not die.
    pub fn kill_gobgpd(&mut self) -> anyhow::Result<()> {
        self.stop_gobgpd(libc::SIGKILL).map(drop)
    }

    /// Stops gobgpd with `signal`, starts it again (removing the socket it may leave) and
    /// waits for the session. The new gobgpd starts with an empty RIB: what the router gets
    /// back is what floodwall re-announces.
    ///
    /// # Errors
    /// As [`Upstream::stop_gobgpd`], [`Upstream::start_gobgpd`] and
    /// [`Upstream::wait_established`].
    pub fn restart_gobgpd(&mut self, signal: i32) -> anyhow::Result<()> {
        self.stop_gobgpd(signal)?;
        self.start_gobgpd()?;
        self.wait_established(ESTABLISH_TIMEOUT)
    }

    /// `birdc -s SOCKET ARGS` from the machine's own namespace, bounded in time: its output.
    ///
    /// # Errors
    /// If birdc cannot run, fails, or BIRD refuses the command.
    pub fn birdc(&self, args: &[&str]) -> anyhow::Result<String> {
        let mut cmd = command("timeout");
        cmd.args([CLI_TIMEOUT_SECS, "birdc", "-s"])
            .arg(&self.bird_socket)
            .args(args);
        let out = cmd
            .output()
            .with_context(|| format!("cannot run {cmd:?}"))?;
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        ensure!(
            out.status.success(),
            "birdc {} failed ({}): {}{}",
            args.join(" "),
            out.status,
            text.trim(),
            String::from_utf8_lossy(&out.stderr).trim()
        );
        Ok(text)
    }

    /// `gobgp --target API ARGS` from the machine's own namespace, bounded in time, whatever
    /// its exit status. Note that gobgp exits 0 after a `del` that deleted nothing.
    ///
    /// # Errors
    /// If gobgp cannot be started.
    pub fn gobgp(&self, args: &[&str]) -> anyhow::Result<Output> {
        let mut cmd = command("timeout");
        cmd.args([CLI_TIMEOUT_SECS, "gobgp", "--target", &self.gobgp_api()])
            .args(args);
        cmd.output().with_context(|| format!("cannot run {cmd:?}"))
    }

    /// The session's state as BIRD shows it: `Established`, `Active`, `Connect`, ... with
    /// the reason after it, if any (`Active        Socket: Connection closed`).
    ///
    /// # Errors
    /// If birdc fails or does not list the session.
    pub fn session(&self) -> anyhow::Result<String> {
        let text = self.birdc(&["show", "protocols", BIRD_PROTOCOL])?;
        parse_session_info(&text, BIRD_PROTOCOL)
            .with_context(|| format!("BIRD does not list protocol {BIRD_PROTOCOL}: {text}"))
    }

    /// Whether BIRD has the session established.
    ///
    /// # Errors
    /// As [`Upstream::session`].
    pub fn established(&self) -> anyhow::Result<bool> {
        Ok(self.session()?.starts_with("Established"))
    }

    /// Waits up to `timeout` for BIRD to have the session established.
    ///
    /// # Errors
    /// If it is not established in time (the error has the last state and gobgpd's log).
    pub fn wait_established(&self, timeout: Duration) -> anyhow::Result<()> {
        let mut last = Err(anyhow!("not asked yet"));
        let up = poll_until(timeout, POLL_EVERY, || {
            last = self.session();
            last.as_ref().is_ok_and(|s| s.starts_with("Established"))
        });
        if up {
            return Ok(());
        }
        let gobgpd_log = self
            .gobgpd
            .as_ref()
            .map_or_else(|| "(gobgpd does not run)".to_owned(), Proc::stderr);
        bail!(
            "the BGP session is not established after {timeout:?} (BIRD: {last:?}); gobgpd: {}",
            gobgpd_log.trim()
        )
    }

    /// Everything the router holds now: its two FlowSpec tables and its IPv4 unicast table.
    ///
    /// # Errors
    /// If birdc fails or prints something the parsers do not know.
    pub fn rib(&self) -> anyhow::Result<Rib> {
        let table = |name: &str| self.birdc(&["show", "route", "table", name, "all"]);
        Ok(Rib {
            flow4: parse_flow_table(&table("ft4")?).context("table ft4")?,
            flow6: parse_flow_table(&table("ft6")?).context("table ft6")?,
            unicast4: parse_unicast_table(&table("master4")?).context("table master4")?,
        })
    }

    /// Reads the router's tables until `done` holds for them, for up to `timeout`; the
    /// tables that satisfied it.
    ///
    /// # Errors
    /// If `done` never held (the error shows the last tables), or birdc fails.
    pub fn wait_rib(
        &self,
        timeout: Duration,
        mut done: impl FnMut(&Rib) -> bool,
    ) -> anyhow::Result<Rib> {
        let mut last = self.rib()?;
        let ok = poll_until(timeout, POLL_EVERY, || {
            match self.rib() {
                Ok(rib) => last = rib,
                Err(e) => eprintln!("reading BIRD's tables: {e:#}"),
            }
            done(&last)
        });
        ensure!(
            ok,
            "not reached within {timeout:?}; the router holds:\n{last}"
        );
        Ok(last)
    }

    /// Reads the router's tables for `duration` and checks that `holds` is true of every
    /// reading (a condition that must never break, e.g. "at most 2 routes"); the last
    /// reading.
    ///
    /// # Errors
    /// At the first reading for which `holds` is false (the error shows it), or if birdc
    /// fails.
    pub fn rib_holds_for(
        &self,
        duration: Duration,
        mut holds: impl FnMut(&Rib) -> bool,
    ) -> anyhow::Result<Rib> {
        let mut broken = None;
        let mut last = None;
        poll_until(duration, POLL_EVERY, || {
            match self.rib() {
                Ok(rib) if !holds(&rib) => broken = Some(Ok(rib)),
                Ok(rib) => last = Some(rib),
                Err(e) => broken = Some(Err(e)),
            }
            broken.is_some()
        });
        match broken {
            Some(Ok(rib)) => bail!("broken after less than {duration:?}; the router holds:\n{rib}"),
            Some(Err(e)) => Err(e),
            None => last.context("no reading of the router's tables"),
        }
    }
}

/// A BGP community, `ASN:VALUE` (BIRD prints `(ASN,VALUE)`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Community {
    /// The high 16 bits: by convention an AS number.
    pub asn: u16,
    /// The low 16 bits.
    pub value: u16,
}

impl fmt::Display for Community {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.asn, self.value)
    }
}

/// What a FlowSpec route asks the router to do with matching traffic: its traffic-rate
/// extended community (RFC 8955 §7.3, type 0x80 subtype 0x06).
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum TrafficAction {
    /// Rate 0: drop it all.
    Discard,
    /// Pass at most this many **bytes** per second (an IEEE-754 float on the wire).
    RateLimit(f32),
}

/// A FlowSpec route as the router holds it.
#[derive(Clone, Debug, PartialEq)]
pub struct FlowRoute {
    /// Its components in BIRD's text, without the braces:
    /// `dst 198.18.0.1/32; proto 17; sport 123; length 468;`.
    pub components: String,
    /// Its traffic-rate action, if it has one.
    pub action: Option<TrafficAction>,
    /// Its (standard) communities.
    pub communities: Vec<Community>,
}

/// A unicast route as the router holds it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UnicastRoute {
    /// Its prefix as BIRD prints it: `198.18.0.1/32`.
    pub prefix: String,
    /// Its (standard) communities.
    pub communities: Vec<Community>,
}

/// The router's tables at one moment: see [`Upstream::rib`].
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Rib {
    /// Table `ft4`: IPv4 FlowSpec.
    pub flow4: Vec<FlowRoute>,
    /// Table `ft6`: IPv6 FlowSpec.
    pub flow6: Vec<FlowRoute>,
    /// Table `master4`: IPv4 unicast.
    pub unicast4: Vec<UnicastRoute>,
}

impl Rib {
    /// The FlowSpec route (IPv4 or IPv6) with exactly these components, in BIRD's text.
    #[must_use]
    pub fn flow(&self, components: &str) -> Option<&FlowRoute> {
        self.flow4
            .iter()
            .chain(&self.flow6)
            .find(|r| r.components == components)
    }

    /// The unicast route for exactly this prefix (`198.18.0.1/32`).
    #[must_use]
    pub fn unicast(&self, prefix: &str) -> Option<&UnicastRoute> {
        self.unicast4.iter().find(|r| r.prefix == prefix)
    }

    /// The unicast routes tagged [`BLACKHOLE`].
    pub fn blackholes(&self) -> impl Iterator<Item = &UnicastRoute> {
        self.unicast4
            .iter()
            .filter(|r| r.communities.contains(&BLACKHOLE))
    }

    /// How many mitigation routes the router holds: every FlowSpec route and every
    /// blackhole. A plain unicast route (a speaker may announce its covering prefix) is not
    /// one.
    #[must_use]
    pub fn mitigations(&self) -> usize {
        self.flow4.len() + self.flow6.len() + self.blackholes().count()
    }
}

impl fmt::Display for Rib {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.flow4.is_empty() && self.flow6.is_empty() && self.unicast4.is_empty() {
            return writeln!(f, "  (no routes)");
        }
        for route in self.flow4.iter().chain(&self.flow6) {
            writeln!(f, "  flow {{ {} }} {:?}", route.components, route.action)?;
        }
        for route in &self.unicast4 {
            let communities: Vec<String> =
                route.communities.iter().map(ToString::to_string).collect();
            writeln!(f, "  {} [{}]", route.prefix, communities.join(" "))?;
        }
        Ok(())
    }
}

/// The Info column (everything after Since) of `protocol`'s row in `show protocols`.
fn parse_session_info(text: &str, protocol: &str) -> Option<String> {
    text.lines().find_map(|line| {
        let words: Vec<&str> = line.split_whitespace().collect();
        // Name Proto Table State Since Info...
        (words.first() == Some(&protocol) && words.len() > 5).then(|| words[5..].join(" "))
    })
}

/// One route of `show route table T all`: its first line, and its attribute lines.
struct RawRoute<'t> {
    head: &'t str,
    attributes: Vec<(&'t str, &'t str)>,
}

impl<'t> RawRoute<'t> {
    fn attribute(&self, name: &str) -> Option<&'t str> {
        self.attributes
            .iter()
            .find(|(n, _)| *n == name)
            .map(|&(_, value)| value)
    }

    fn communities(&self) -> anyhow::Result<Vec<Community>> {
        self.attribute("BGP.community")
            .map_or_else(|| Ok(Vec::new()), parse_communities)
    }
}

/// Splits `show route ... all` output into routes. Skips birdc's banner (`BIRD 2.0.12
/// ready.`) and the table headings (`Table ft4:`); a route starts at a line that is not
/// indented, and its attributes (`\tBGP.community: (65535,666)`) follow, indented. An
/// indented line without a `name: value` (`\tvia 198.18.0.1 on eth0`) is not an attribute.
fn split_routes(text: &str) -> Vec<RawRoute<'_>> {
    let mut routes: Vec<RawRoute<'_>> = Vec::new();
    for line in text.lines() {
        if line.trim().is_empty() || line.starts_with("BIRD ") || line.starts_with("Table ") {
            continue;
        }
        if line.starts_with(char::is_whitespace) {
            if let (Some(route), Some((name, value))) =
                (routes.last_mut(), line.trim().split_once(": "))
            {
                route.attributes.push((name, value.trim()));
            }
        } else {
            routes.push(RawRoute {
                head: line,
                attributes: Vec::new(),
            });
        }
    }
    routes
}

/// Parses `birdc show route table ft4 all` (or `ft6`).
fn parse_flow_table(text: &str) -> anyhow::Result<Vec<FlowRoute>> {
    split_routes(text)
        .into_iter()
        .map(|route| {
            let components = route
                .head
                .strip_prefix("flow4 {")
                .or_else(|| route.head.strip_prefix("flow6 {"))
                .and_then(|rest| rest.split_once('}'))
                .map(|(inside, _)| inside.trim().to_owned())
                .with_context(|| format!("not a FlowSpec route: {}", route.head))?;
            let action = match route.attribute("BGP.ext_community") {
                Some(value) => parse_traffic_action(value)?,
                None => None,
            };
            Ok(FlowRoute {
                components,
                action,
                communities: route.communities()?,
            })
        })
        .collect()
}

/// Parses `birdc show route table master4 all`.
fn parse_unicast_table(text: &str) -> anyhow::Result<Vec<UnicastRoute>> {
    split_routes(text)
        .into_iter()
        .map(|route| {
            let prefix = route
                .head
                .split_whitespace()
                .next()
                .filter(|p| p.contains('/'))
                .with_context(|| format!("not a unicast route: {}", route.head))?;
            Ok(UnicastRoute {
                prefix: prefix.to_owned(),
                communities: route.communities()?,
            })
        })
        .collect()
}

/// The parenthesised groups of an attribute value, each split at its commas:
/// `(65535,666) (65535,65281)` → `[["65535", "666"], ["65535", "65281"]]`.
fn groups(value: &str) -> anyhow::Result<Vec<Vec<&str>>> {
    let value = value.trim();
    ensure!(
        value.is_empty() || value.ends_with(')'),
        "`{value}` is not a list of (...) groups"
    );
    value
        .split_terminator(')')
        .map(|group| {
            let inside = group
                .trim()
                .strip_prefix('(')
                .with_context(|| format!("`{value}` is not a list of (...) groups"))?;
            Ok(inside.split(',').map(str::trim).collect())
        })
        .collect()
}

/// Parses `BGP.community: (65535,666) (65535,65281)`.
fn parse_communities(value: &str) -> anyhow::Result<Vec<Community>> {
    groups(value)?
        .into_iter()
        .map(|group| match group[..] {
            [asn, value] => Ok(Community {
                asn: asn
                    .parse()
                    .with_context(|| format!("community ASN `{asn}`"))?,
                value: value
                    .parse()
                    .with_context(|| format!("community value `{value}`"))?,
            }),
            _ => bail!("`({})` is not a community", group.join(",")),
        })
        .collect()
}

/// The traffic-rate action in `BGP.ext_community: (generic, 0x80060000, 0x447a0000) ...`.
/// BIRD prints extended communities it has no name for as `generic` with two 32-bit words:
/// the first holds type 0x80, subtype 0x06 and a 2-byte AS; the second is the rate, an
/// IEEE-754 float in bytes per second, 0 meaning discard.
fn parse_traffic_action(value: &str) -> anyhow::Result<Option<TrafficAction>> {
    let hex = |word: &str| {
        word.strip_prefix("0x")
            .and_then(|digits| u32::from_str_radix(digits, 16).ok())
            .with_context(|| format!("`{word}` is not a 0x word in `{value}`"))
    };
    for group in groups(value)? {
        if let ["generic", high, low] = group[..]
            && hex(high)? >> 16 == 0x8006
        {
            let rate = f32::from_bits(hex(low)?);
            return Ok(Some(if rate == 0.0 {
                TrafficAction::Discard
            } else {
                TrafficAction::RateLimit(rate)
            }));
        }
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Captured from BIRD 2.0.12 (`fleet-poc.md` §2.4 and this lab), with tabs as BIRD
    /// prints them.
    const FT4: &str = "\
BIRD 2.0.12 ready.
Table ft4:
flow4 { dst 198.18.0.0/24; proto 17; sport 53,123,389; }  [speaker 14:23:10.691 from 198.18.0.1] * (100) [AS65001?]
\tType: BGP univ
\tBGP.origin: Incomplete
\tBGP.as_path: 65001
\tBGP.local_pref: 100
\tBGP.community: (65535,666)
\tBGP.ext_community: (generic, 0x80060000, 0x0)
\tBGP.large_community: (65001, 7777, 1)
flow4 { dst 198.18.0.1/32; src 198.18.0.10/31; proto 17; sport 53; }  [speaker 14:23:08.390 from 198.18.0.1] * (100) [AS65001?]
\tType: BGP univ
\tBGP.origin: Incomplete
\tBGP.as_path: 65001
\tBGP.local_pref: 100
\tBGP.ext_community: (generic, 0x80060000, 0x49742400)
flow4 { dst 198.18.90.10/32; proto 17; sport 53; }  [gobgp 03:46:59.731 from 198.18.90.1] * (100) [AS65001?]
\tType: BGP univ
\tBGP.origin: Incomplete
\tBGP.as_path: 65001
\tBGP.local_pref: 100
\tBGP.ext_community: (generic, 0x80060000, 0x447a0000)
flow4 { dst 198.18.0.1/32; proto 17; sport 123; length 468; }  [speaker 14:23:08.375 from 198.18.0.1] * (100) [AS65001?]
\tType: BGP univ
\tBGP.origin: Incomplete
\tBGP.as_path: 65001
\tBGP.local_pref: 100
\tBGP.ext_community: (generic, 0x80060000, 0x0)
";

    const FT6: &str = "\
BIRD 2.0.12 ready.
Table ft6:
flow6 { dst 2001:2::1/128; next header 17; dport 5353; }  [speaker 14:23:08.404 from 198.18.0.1] * (100) [AS65001?]
\tType: BGP univ
\tBGP.origin: Incomplete
\tBGP.as_path: 65001
\tBGP.local_pref: 100
\tBGP.ext_community: (generic, 0x80060000, 0x0)
";

    const MASTER4: &str = "\
BIRD 2.0.12 ready.
Table master4:
198.18.90.20/32      unicast [gobgp 03:47:00.966] * (100) [AS65001?]
\tvia 198.18.90.1 on eth0
\tBGP.next_hop: 198.18.90.1
\tBGP.community: (65535,666) (65535,65281)
198.18.0.1/32        unicast [speaker 14:23:08.417] * (100) [AS65001?]
\tvia 198.18.0.1 on eth0
\tType: BGP univ
\tBGP.origin: Incomplete
\tBGP.as_path: 65001
\tBGP.next_hop: 198.18.0.1
\tBGP.local_pref: 100
\tBGP.community: (65535,666)
198.18.0.0/24        unicast [speaker 14:23:08.417] * (100) [AS65001?]
\tvia 198.18.0.1 on eth0
\tBGP.next_hop: 198.18.0.1
";

    const PROTOCOLS: &str = "\
BIRD 2.0.12 ready.
Name       Proto      Table      State  Since         Info
device1    Device     ---        up     14:23:04.497  
speaker    BGP        ---        start  14:23:10.906  Active        Socket: Connection closed
";

    fn community(asn: u16, value: u16) -> Community {
        Community { asn, value }
    }

    #[test]
    fn flow_routes_are_parsed_with_their_action_and_communities() {
        let routes = parse_flow_table(FT4).expect("parses");
        assert_eq!(routes.len(), 4, "{routes:?}");
        assert_eq!(
            routes[0],
            FlowRoute {
                components: "dst 198.18.0.0/24; proto 17; sport 53,123,389;".to_owned(),
                action: Some(TrafficAction::Discard),
                communities: vec![BLACKHOLE],
            }
        );
        assert_eq!(
            routes[1].components,
            "dst 198.18.0.1/32; src 198.18.0.10/31; proto 17; sport 53;"
        );
        // 0x49742400 is 1_000_000.0: `rate-limit 1000000` (bytes/s), 8 Mbit/s.
        assert_eq!(
            routes[1].action,
            Some(TrafficAction::RateLimit(1_000_000.0))
        );
        assert_eq!(routes[2].action, Some(TrafficAction::RateLimit(1000.0)));
        assert_eq!(
            routes[3].components,
            "dst 198.18.0.1/32; proto 17; sport 123; length 468;"
        );
        assert_eq!(routes[3].action, Some(TrafficAction::Discard));
        assert!(routes[3].communities.is_empty());

        let v6 = parse_flow_table(FT6).expect("parses");
        assert_eq!(v6.len(), 1);
        assert_eq!(
            v6[0].components,
            "dst 2001:2::1/128; next header 17; dport 5353;"
        );
        assert_eq!(v6[0].action, Some(TrafficAction::Discard));
    }

    #[test]
    fn empty_tables_have_no_routes() {
        let flows = parse_flow_table("BIRD 2.0.12 ready.\nTable ft4:\n").expect("parses");
        assert!(flows.is_empty(), "{flows:?}");
        let unicast = parse_unicast_table("BIRD 2.0.12 ready.\nTable master4:\n").expect("parses");
        assert!(unicast.is_empty(), "{unicast:?}");
    }

    #[test]
    fn unicast_routes_are_parsed_with_their_communities() {
        let routes = parse_unicast_table(MASTER4).expect("parses");
        let prefixes: Vec<&str> = routes.iter().map(|r| r.prefix.as_str()).collect();
        assert_eq!(
            prefixes,
            ["198.18.90.20/32", "198.18.0.1/32", "198.18.0.0/24"]
        );
        assert_eq!(routes[0].communities, [BLACKHOLE, community(65535, 65281)]);
        assert_eq!(routes[1].communities, [BLACKHOLE]);
        assert!(routes[2].communities.is_empty());

        let rib = Rib {
            unicast4: routes,
            ..Rib::default()
        };
        assert_eq!(rib.blackholes().count(), 2);
        assert_eq!(
            rib.mitigations(),
            2,
            "a plain unicast route is no mitigation"
        );
        assert!(rib.unicast("198.18.0.1/32").is_some());
    }

    #[test]
    fn a_route_without_a_traffic_rate_has_no_action() {
        assert_eq!(
            parse_traffic_action("(rt, 65001, 1)").expect("parses"),
            None
        );
        // Redirect (0x8008) is not a rate.
        assert_eq!(
            parse_traffic_action("(generic, 0x80080000, 0x1)").expect("parses"),
            None
        );
        assert_eq!(
            parse_traffic_action("(rt, 65001, 1) (generic, 0x80060000, 0x43fa0000)")
                .expect("parses"),
            Some(TrafficAction::RateLimit(500.0))
        );
    }

    #[test]
    fn unknown_text_is_refused_rather_than_misread() {
        assert!(parse_flow_table("syntax error, unexpected CF_SYM_UNDEFINED\n").is_err());
        assert!(parse_unicast_table("Table master4:\nnonsense here\n").is_err());
        assert!(parse_communities("(65535,666").is_err());
        assert!(parse_communities("(65536,1)").is_err());
        assert!(parse_traffic_action("(generic, 0x80060000, zero)").is_err());
    }

    #[test]
    fn the_session_state_is_the_info_column() {
        assert_eq!(
            parse_session_info(PROTOCOLS, "speaker").as_deref(),
            Some("Active Socket: Connection closed")
        );
        assert_eq!(parse_session_info(PROTOCOLS, "device1"), None);
        assert_eq!(parse_session_info(PROTOCOLS, "other"), None);
    }

    #[test]
    fn the_configs_peer_the_two_addresses() {
        let router = Ipv4Addr::new(198, 18, 0, 254);
        let speaker = Ipv4Addr::new(198, 18, 0, 1);
        let bird = bird_conf(router, speaker);
        assert!(bird.contains("local 198.18.0.254 as 65000;"), "{bird}");
        assert!(bird.contains("neighbor 198.18.0.1 as 65001;"), "{bird}");
        let gobgpd = gobgpd_toml(speaker, router);
        assert!(
            gobgpd.contains("neighbor-address = \"198.18.0.254\""),
            "{gobgpd}"
        );
        assert_eq!(gobgpd.matches("afi-safi-name").count(), 3, "{gobgpd}");
    }
}
