//! The arguments: every command and flag, as clap derives them. Their doc comments are the
//! help text, the man pages and the completions. The flags of `run` are
//! [`crate::config::RunArgs`] (the command line's layer of the daemon's configuration) and
//! the limit flags are [`crate::limits::LimitArgs`] (named by the limits' vocabulary).

use std::{net::IpAddr, path::PathBuf};

use clap::{Args, Parser, Subcommand};

use crate::{
    config::{self, RunArgs},
    control::DEFAULT_RUN_DIR,
    limits::{LimitArgs, parse_duration_ms},
    lists::Prefix,
    pin::DEFAULT_PIN_ROOT,
};

/// An XDP filter that keeps a server reachable during a flood.
///
/// floodwall run attaches an XDP program to an interface that counts every packet against
/// its source address and drops the packets of sources over their packet or bit rate, in
/// the driver, before the kernel spends anything on them. Most other commands talk to the
/// running daemon over its control socket: they read its statistics, change its limits and
/// edit its allowlist and denylist.
#[derive(Debug, Parser)]
// The binary's name, not the package's (`filter-user`): `--version`, completions and man
// pages show it.
#[command(name = "floodwall", version)]
pub struct Cli {
    /// Directory of the daemons' control sockets and lock files [default: /run/floodwall,
    /// or the config file's `run_dir` for `run`].
    #[arg(long, global = true, env = "FLOODWALL_RUN_DIR")]
    pub run_dir: Option<PathBuf>,
    /// Directory in bpffs of the pinned programs and state, one subdirectory an interface.
    #[arg(long, global = true, env = "FLOODWALL_PIN_ROOT", default_value = DEFAULT_PIN_ROOT)]
    pub pin_root: PathBuf,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

impl Cli {
    /// The run dir given, or the default.
    #[must_use]
    pub fn run_dir(&self) -> PathBuf {
        self.run_dir
            .clone()
            .unwrap_or_else(|| PathBuf::from(DEFAULT_RUN_DIR))
    }
}

/// The commands.
#[derive(Debug, Subcommand)]
#[expect(
    clippy::large_enum_variant,
    reason = "parsed once, when the program starts: boxing `run`'s flags buys nothing"
)]
pub enum Command {
    /// Attach floodwall to an interface and protect it until SIGINT or SIGTERM.
    Run(RunArgs),
    /// The commands that ask a running daemon.
    #[command(flatten)]
    Client(ClientCommand),
    /// Remove floodwall from an interface: detach the program and delete its pinned state
    /// (blocks, lists, counters). Stop the daemon first: a running daemon is never
    /// detached under it.
    Detach {
        /// The interface.
        #[arg(long)]
        iface: String,
    },
    /// Check a configuration file; needs no daemon.
    #[command(subcommand)]
    Config(ConfigCommand),
    /// Shell completions and man pages, for packaging.
    #[command(subcommand, hide = true)]
    Generate(GenerateCommand),
}

/// The commands that talk to a running daemon over its control socket.
#[expect(clippy::large_enum_variant, reason = "parsed once per process")]
#[derive(Debug, Subcommand)]
pub enum ClientCommand {
    /// Show or change the per-source limits of a running daemon.
    #[command(subcommand)]
    Limits(LimitsCommand),
    /// Packets and bytes by outcome, with rates over the last interval.
    Stats(ReadArgs),
    /// The busiest tracked sources, their rates, blocked or not.
    Top(TopArgs),
    /// List or remove blocked sources.
    #[command(subcommand)]
    Blocked(BlockedCommand),
    /// The allowlist: prefixes that are never dropped, by any limit or list.
    #[command(subcommand)]
    Allow(ListCommand),
    /// The denylist: prefixes whose packets are always dropped (unless allowlisted).
    #[command(subcommand)]
    Deny(ListCommand),
    /// Blocks, unblocks, list hits and list changes, newest last.
    Events(EventsArgs),
    /// SYN cookies from XDP for new sources' SYNs: show, or change which TCP ports get
    /// them.
    #[command(subcommand)]
    SynProtect(SynProtectCommand),
    /// Rules by packet shape: drop, rate-limit or allow what a flood's packets have in
    /// common (e.g. `rules add udp sport 123 drop`).
    #[command(subcommand)]
    Rules(RulesCommand),
    /// What normal traffic looks like, per service (protocol and port), as learned from
    /// the program's packet samples: rates and the most common lengths, TTLs, source ports,
    /// flags and payloads.
    Baseline(ReadArgs),
    /// Attacks detected (a service far over its baseline) and the signatures put in force
    /// against them: what they match, how well, what they dropped; with `--pcap ID --out
    /// FILE`, an attack's first samples as a pcap file.
    Attacks(AttacksArgs),
    /// Mitigations announced to the upstream router over BGP (FlowSpec routes from rules,
    /// blackhole routes), through the GoBGP daemon that `[upstream]` names.
    #[command(subcommand)]
    Upstream(UpstreamCommand),
    /// Make the running daemon read its config file again and apply it, all or nothing
    /// (as SIGHUP does); prints what changed.
    Reload {
        /// The interface whose daemon to ask (needed when several run).
        #[arg(long)]
        iface: Option<String>,
    },
}

/// `floodwall upstream ...`.
#[derive(Debug, Subcommand)]
pub enum UpstreamCommand {
    /// The announcements (asked, announced, ending) and the speaker's state.
    Show(ReadArgs),
    /// Announce a route upstream: a rule's match as a FlowSpec route (e.g. `udp sport 123
    /// to 198.18.0.1 drop`, or `... rate-limit 10mbps`), an existing rule's (`--rule ID`),
    /// or a blackhole for one address (`--blackhole ADDR`: the router then drops ALL its
    /// traffic). Checked against `[upstream]`'s safety rules first. Root only.
    Announce {
        /// The rule's words, as `rules add` takes them; the destination (`to PREFIX`) must
        /// lie inside a protected prefix.
        #[arg(
            num_args = 0..,
            value_name = "RULE",
            required_unless_present_any = ["rule_id", "blackhole"]
        )]
        rule: Vec<String>,
        /// Announce this rule's match instead (see `floodwall rules list`).
        #[arg(long = "rule", value_name = "ID", conflicts_with_all = ["rule", "blackhole"])]
        rule_id: Option<u32>,
        /// Announce a blackhole route for this address instead.
        #[arg(long, value_name = "ADDR", conflicts_with = "rule")]
        blackhole: Option<std::net::IpAddr>,
        /// The destination, for a rule without one or narrower than its own.
        #[arg(long, value_name = "PREFIX")]
        to: Option<crate::lists::Prefix>,
        /// The route ends after this long, e.g. 10m (default: `upstream.expiry`).
        #[arg(long = "for", value_parser = parse_duration_ms, value_name = "DURATION")]
        for_ms: Option<u64>,
        #[command(flatten)]
        #[expect(missing_docs, reason = "flattened")]
        change: ChangeArgs,
    },
    /// Withdraw announcements by id (all must exist, else nothing changes); each goes when
    /// its `upstream.min_hold` is over. Root only.
    Withdraw {
        /// Their ids.
        #[arg(required = true)]
        ids: Vec<u32>,
        #[command(flatten)]
        #[expect(missing_docs, reason = "flattened")]
        change: ChangeArgs,
    },
}

/// `floodwall generate ...`.
#[derive(Debug, Subcommand)]
pub enum GenerateCommand {
    /// Bash, zsh and fish completions: `floodwall.bash`, `_floodwall`, `floodwall.fish`.
    Completions {
        /// Directory to write them to (created if missing).
        #[arg(long, value_name = "DIR")]
        out: PathBuf,
    },
    /// Man pages: `floodwall.1` and one per subcommand (`floodwall-limits-set.1`, ...).
    Man {
        /// Directory to write them to (created if missing).
        #[arg(long, value_name = "DIR")]
        out: PathBuf,
    },
}

/// `floodwall config ...`.
#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Check FILE and the list files it names, and summarize it; changes nothing. Exits
    /// non-zero on the first problem, naming its line and key.
    Check {
        /// The configuration file.
        #[arg(default_value = config::DEFAULT_PATH)]
        file: PathBuf,
    },
}

/// `floodwall allow|deny ...`.
#[derive(Debug, Subcommand)]
pub enum ListCommand {
    /// Add prefixes (all or nothing), e.g. `198.18.7.0/24 2001:2:0:9::/64 198.18.0.9`.
    Add {
        /// Prefixes (a bare address is a /32 or /128). Host bits must be zero.
        #[arg(required = true)]
        prefixes: Vec<Prefix>,
        /// Denylist only: the entries expire after this long, e.g. 10m.
        #[arg(long = "for", value_parser = parse_duration_ms, value_name = "DURATION")]
        for_ms: Option<u64>,
        /// The interface whose daemon to change (needed when several run).
        #[arg(long)]
        iface: Option<String>,
    },
    /// Remove prefixes (all must be listed, else nothing is removed).
    Remove {
        /// Prefixes, exactly as listed.
        #[arg(required = true)]
        prefixes: Vec<Prefix>,
        /// The interface whose daemon to change (needed when several run).
        #[arg(long)]
        iface: Option<String>,
    },
    /// Show the entries with their hit counters.
    List(ReadArgs),
    /// Add every prefix of FILE (one a line, `#` comments), all or nothing.
    Load {
        /// The file.
        file: PathBuf,
        /// Denylist only: the entries expire after this long, e.g. 1h.
        #[arg(long = "for", value_parser = parse_duration_ms, value_name = "DURATION")]
        for_ms: Option<u64>,
        /// The interface whose daemon to change (needed when several run).
        #[arg(long)]
        iface: Option<String>,
    },
}

/// `floodwall events`.
#[derive(Debug, Args)]
pub struct EventsArgs {
    /// Keep running and print new events as they happen.
    #[arg(long)]
    pub follow: bool,
    #[command(flatten)]
    #[expect(missing_docs, reason = "flattened")]
    pub read: ReadArgs,
}

/// Options of the read-only commands.
#[derive(Debug, Args)]
pub struct ReadArgs {
    /// The interface whose daemon to ask (needed when several run).
    #[arg(long)]
    pub iface: Option<String>,
    /// Print JSON for scripts.
    #[arg(long)]
    pub json: bool,
}

/// `floodwall attacks`.
#[derive(Debug, Args)]
pub struct AttacksArgs {
    /// Which daemon, and JSON.
    #[command(flatten)]
    pub read: ReadArgs,
    /// Write this attack's samples (its first 2,000: each frame's first 128 bytes) as a
    /// pcap file, for tcpdump or Wireshark.
    #[arg(long, value_name = "ID", requires = "out")]
    pub pcap: Option<u32>,
    /// The pcap file to write (replaced if it exists).
    #[arg(long, value_name = "FILE", requires = "pcap")]
    pub out: Option<PathBuf>,
}

/// `floodwall top`.
#[derive(Debug, Args)]
pub struct TopArgs {
    /// How many sources.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub limit: u32,
    #[command(flatten)]
    #[expect(missing_docs, reason = "flattened")]
    pub read: ReadArgs,
}

/// `floodwall limits ...`.
#[expect(clippy::large_enum_variant, reason = "parsed once per process")]
#[derive(Debug, Subcommand)]
pub enum LimitsCommand {
    /// Show the limits.
    Show(ReadArgs),
    /// Change some limits; the others keep their values. Root only.
    Set {
        /// The interface whose daemon to change (needed when several run).
        #[arg(long)]
        iface: Option<String>,
        /// Print JSON for scripts.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        #[expect(missing_docs, reason = "flattened")]
        limits: LimitArgs,
    },
}

/// `floodwall syn-protect ...`.
#[derive(Debug, Subcommand)]
pub enum SynProtectCommand {
    /// The setting, the ports protected now, the SYN-ACKs' values and the counters.
    Show(ReadArgs),
    /// Protect exactly these ports, always (e.g. 80,443). Root only.
    Set(SynPortsArgs),
    /// Protect these ports too. Root only.
    Add(SynPortsArgs),
    /// Stop protecting these ports (all must be protected, else nothing changes). Root only.
    Remove(SynPortsArgs),
    /// No cookies: new sources' SYNs are held to the SYN ceiling. Root only.
    Off(ChangeArgs),
    /// Cookies for the ports with listeners while a SYN flood goes over the SYN ceiling.
    /// Root only.
    Auto(ChangeArgs),
}

/// Ports of `syn-protect set|add|remove`.
#[derive(Debug, Args)]
pub struct SynPortsArgs {
    /// TCP ports, e.g. 80,443.
    #[arg(value_parser = parse_ports, value_name = "PORTS")]
    pub ports: std::collections::BTreeSet<u16>,
    #[command(flatten)]
    #[expect(missing_docs, reason = "flattened")]
    pub change: ChangeArgs,
}

/// Options of the commands that change a daemon.
#[derive(Debug, Args)]
pub struct ChangeArgs {
    /// The interface whose daemon to change (needed when several run).
    #[arg(long)]
    pub iface: Option<String>,
    /// Print JSON for scripts.
    #[arg(long)]
    pub json: bool,
}

/// A list of TCP ports, e.g. `80,443`.
fn parse_ports(text: &str) -> Result<std::collections::BTreeSet<u16>, String> {
    match text.parse::<crate::syn::SynProtect>() {
        Ok(crate::syn::SynProtect::Ports(ports)) => Ok(ports),
        Ok(other) => Err(format!("`{other}` is not a list of ports (e.g. 80,443)")),
        Err(e) => Err(e.to_string()),
    }
}

/// `floodwall blocked ...`.
#[derive(Debug, Subcommand)]
pub enum BlockedCommand {
    /// List the blocked sources.
    List(ReadArgs),
    /// Unblock a source now. Root only.
    Remove {
        /// The source address (IPv4 or IPv6).
        addr: IpAddr,
        /// The interface whose daemon to change (needed when several run).
        #[arg(long)]
        iface: Option<String>,
    },
}

/// `floodwall rules ...`.
#[derive(Debug, Subcommand)]
pub enum RulesCommand {
    /// Add a rule, e.g. `udp sport 123 len 468-1500 drop`. Root only.
    ///
    /// Fields (any of them, in any order; a list matches any item): from PREFIX, to PREFIX,
    /// tcp | udp | icmp | icmpv6 | proto LIST, sport PORTS, dport PORTS (53, 80,443,
    /// 1024-65535), icmp-type N, icmp-code N, flags syn,!ack, len N[-M] (IP length),
    /// dscp LIST, frag none,first,later, ttl N[-M], payload OFFSET:HEX[/MASK] (from the
    /// start of the L4 payload), source known|unknown (whether the service's baseline saw
    /// the source). Action: drop, allow, monitor, rate-limit RATE, per-source RATE (RATE:
    /// 1000pps, 10mbps, or both: 1000pps,10mbps).
    Add {
        /// The rule's words.
        #[arg(required = true, num_args = 1.., value_name = "RULE")]
        rule: Vec<String>,
        /// Lower goes first; ties by id.
        #[arg(long, default_value_t = crate::rules::DEFAULT_PRIORITY)]
        priority: u16,
        /// A note, shown with the rule.
        #[arg(long)]
        comment: Option<String>,
        /// The rule expires after this long, e.g. 10m.
        #[arg(long = "for", value_parser = parse_duration_ms, value_name = "DURATION")]
        for_ms: Option<u64>,
        #[command(flatten)]
        #[expect(missing_docs, reason = "flattened")]
        change: ChangeArgs,
    },
    /// Remove rules by id (all must exist, else nothing is removed). Root only.
    Remove {
        /// Their ids.
        #[arg(required = true)]
        ids: Vec<u32>,
        #[command(flatten)]
        #[expect(missing_docs, reason = "flattened")]
        change: ChangeArgs,
    },
    /// Keep signatures (rules the daemon put in force against an attack, see `floodwall
    /// attacks`) as your own rules: the daemon no longer withdraws them when the attack
    /// ends. They last, or expire after `--for`. All must be signatures, else nothing is
    /// kept. Root only.
    Keep {
        /// Their ids.
        #[arg(required = true)]
        ids: Vec<u32>,
        /// They expire after this long (e.g. 1h) instead of lasting.
        #[arg(long = "for", value_parser = parse_duration_ms, value_name = "DURATION")]
        for_ms: Option<u64>,
        #[command(flatten)]
        #[expect(missing_docs, reason = "flattened")]
        change: ChangeArgs,
    },
    /// The rules, by priority, with their counters.
    List(ReadArgs),
    /// One rule with its counters.
    Show {
        /// Its id.
        id: u32,
        #[command(flatten)]
        #[expect(missing_docs, reason = "flattened")]
        read: ReadArgs,
    },
    /// Which rule a packet would meet, e.g. `udp from 198.19.3.4 to 198.18.0.1 sport 123
    /// dport 7777 len 468` (the rules' words, one value a field), or a captured frame with
    /// `--frame HEX` (the allowlist, which wins over rules, is not consulted).
    Test {
        /// The packet's words.
        #[arg(required_unless_present = "frame", num_args = 1.., value_name = "PACKET")]
        packet: Vec<String>,
        /// A whole frame from its Ethernet header on, in hex (spaces and colons allowed), read
        /// as the XDP program reads it, instead of words.
        #[arg(long, value_name = "HEX", conflicts_with = "packet")]
        frame: Option<String>,
        #[command(flatten)]
        #[expect(missing_docs, reason = "flattened")]
        read: ReadArgs,
    },
    /// Add every rule of FILE (one a line; `#` starts a comment, which a rule keeps as its
    /// note), all or nothing. Root only.
    Load {
        /// The file.
        file: PathBuf,
        /// Their priority.
        #[arg(long, default_value_t = crate::rules::DEFAULT_PRIORITY)]
        priority: u16,
        #[command(flatten)]
        #[expect(missing_docs, reason = "flattened")]
        change: ChangeArgs,
    },
}
