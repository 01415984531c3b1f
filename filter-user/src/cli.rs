//! The command line: argument definitions (their doc comments are the help text) and the
//! client side of each command, printing for people or, with `--json`, for scripts.

use std::{net::IpAddr, path::PathBuf};

use anyhow::bail;
use clap::{Args, Parser, Subcommand};

use crate::{
    config::{self, DaemonFile},
    control::{
        self, DEFAULT_RUN_DIR, LimitsView, NOTHING_TO_CHANGE, Request, Response, SourceView,
        StatsView,
    },
    events::EventKind,
    limits::{
        ClassName, FilterMode, LimitArgs, Rate, ScopeName, Setting, Value, parse_duration_ms,
    },
    lists::{ListEntryView, ListKind, Prefix, parse_list_file},
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
pub enum Command {
    /// Attach floodwall to an interface and protect it until SIGINT or SIGTERM.
    Run(config::RunArgs),
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
    /// Make the running daemon read its config file again and apply it, all or nothing
    /// (as SIGHUP does); prints what changed.
    Reload {
        /// The interface whose daemon to ask (needed when several run).
        #[arg(long)]
        iface: Option<String>,
    },
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
    Generate(crate::generate::GenerateCommand),
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
        file: std::path::PathBuf,
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

/// Runs a client command against a daemon and prints the answer.
///
/// # Errors
/// If the daemon cannot be reached or refuses the request.
#[expect(
    clippy::too_many_lines,
    reason = "one arm per command, read top to bottom"
)]
pub async fn client(run_dir: &std::path::Path, command: Command) -> anyhow::Result<()> {
    let (iface, json, request) = match command {
        Command::Run(_) => bail!("`run` is not a client command"),
        Command::Detach { .. } => bail!("`detach` is not a client command"),
        Command::Reload { iface } => (iface, false, Request::Reload),
        Command::Config(_) => bail!("`config` is not a client command"),
        Command::Generate(_) => bail!("`generate` is not a client command"),
        Command::Limits(LimitsCommand::Show(r)) => (r.iface, r.json, Request::LimitsShow),
        Command::Limits(LimitsCommand::Set {
            iface,
            json,
            limits,
        }) => {
            let change = limits.change()?;
            if change.is_empty() {
                bail!("{NOTHING_TO_CHANGE}");
            }
            (iface, json, Request::LimitsSet { change })
        }
        Command::Stats(r) if r.iface.is_none() && control::all_sockets(run_dir)?.len() > 1 => {
            return stats_of_all(run_dir, r.json).await;
        }
        Command::Stats(r) => (r.iface, r.json, Request::Stats),
        Command::Top(t) => (
            t.read.iface,
            t.read.json,
            Request::Top {
                limit: t.limit as usize,
            },
        ),
        Command::Blocked(BlockedCommand::List(r)) => (r.iface, r.json, Request::BlockedList),
        Command::Blocked(BlockedCommand::Remove { addr, iface }) => {
            (iface, false, Request::BlockedRemove { addr })
        }
        Command::Allow(command) => list_request(ListKind::Allow, command)?,
        Command::Deny(command) => list_request(ListKind::Deny, command)?,
        Command::Events(args) => {
            let socket = control::find_socket(run_dir, args.read.iface.as_deref())?;
            let request = Request::Events {
                follow: args.follow,
            };
            return control::call_streaming(&socket, &request, |response| {
                match response {
                    Response::Events { events } => {
                        for event in events {
                            if args.read.json {
                                println!("{}", serde_json::to_string(&event)?);
                            } else {
                                println!(
                                    "{}  {:<11} {}",
                                    event.time,
                                    kind_name(event.kind),
                                    event.message
                                );
                            }
                        }
                    }
                    Response::Error { message } => bail!("{message}"),
                    other => bail!("unexpected answer to events: {other:?}"),
                }
                Ok(())
            })
            .await;
        }
    };
    let socket = control::find_socket(run_dir, iface.as_deref())?;
    let response = control::call(&socket, &request).await?;
    if let Response::Error { message } = &response {
        bail!("{message}");
    }
    if json {
        println!("{}", serde_json::to_string_pretty(&response)?);
        return Ok(());
    }
    match response {
        Response::Limits(view) => print_limits(&view),
        Response::Stats(view) => print_stats(&view),
        Response::Sources { mode, sources } => {
            print_sources(&sources, mode, matches!(request, Request::BlockedList));
        }
        Response::Unblocked { addr } => println!("unblocked {addr}"),
        Response::ListChanged {
            list,
            added,
            updated,
            unchanged,
            removed,
        } => {
            if removed > 0 {
                println!("{list}: removed {removed}");
            } else {
                println!("{list}: added {added}, updated {updated}, unchanged {unchanged}");
            }
        }
        Response::ListEntries { list, entries } => print_list(list, &entries),
        Response::Events { events } => {
            for event in events {
                println!(
                    "{}  {:<11} {}",
                    event.time,
                    kind_name(event.kind),
                    event.message
                );
            }
        }
        Response::Reloaded { changes } => {
            if changes.is_empty() {
                println!("reloaded: the config is unchanged");
            }
            for line in changes {
                println!("reloaded: {line}");
            }
        }
        Response::Error { .. } => unreachable!("handled above"),
    }
    Ok(())
}

/// `stats` with several interfaces protected: each, then their total.
async fn stats_of_all(run_dir: &std::path::Path, json: bool) -> anyhow::Result<()> {
    let mut views = Vec::new();
    for socket in control::all_sockets(run_dir)? {
        match control::call(&socket, &Request::Stats).await? {
            Response::Stats(view) => views.push(view),
            Response::Error { message } => bail!("{}: {message}", socket.display()),
            other => bail!("unexpected answer to stats: {other:?}"),
        }
    }
    let total = StatsView::total(&views);
    if json {
        let all = serde_json::json!({ "interfaces": views, "total": total });
        println!("{}", serde_json::to_string_pretty(&all)?);
        return Ok(());
    }
    for view in &views {
        print_stats(view);
        println!();
    }
    print_stats(&total);
    Ok(())
}

/// The request of a list command; `load` reads and checks the file here, so its errors
/// name the file as the operator typed it.
fn list_request(
    list: ListKind,
    command: ListCommand,
) -> anyhow::Result<(Option<String>, bool, Request)> {
    let check_for = |for_ms: Option<u64>| {
        if list == ListKind::Allow && for_ms.is_some() {
            bail!("allowlist entries do not expire: --for is for the denylist");
        }
        Ok(for_ms)
    };
    Ok(match command {
        ListCommand::Add {
            prefixes,
            for_ms,
            iface,
        } => {
            let for_ms = check_for(for_ms)?;
            (
                iface,
                false,
                Request::ListAdd {
                    list,
                    prefixes,
                    for_ms,
                },
            )
        }
        ListCommand::Remove { prefixes, iface } => {
            (iface, false, Request::ListRemove { list, prefixes })
        }
        ListCommand::List(r) => (r.iface, r.json, Request::ListShow { list }),
        ListCommand::Load {
            file,
            for_ms,
            iface,
        } => {
            let for_ms = check_for(for_ms)?;
            let prefixes = parse_list_file(&file)?;
            if prefixes.is_empty() {
                bail!("{} holds no prefixes", file.display());
            }
            (
                iface,
                false,
                Request::ListAdd {
                    list,
                    prefixes,
                    for_ms,
                },
            )
        }
    })
}

fn kind_name(kind: EventKind) -> &'static str {
    match kind {
        EventKind::Block => "block",
        EventKind::Unblock => "unblock",
        EventKind::ListHits => "list-hit",
        EventKind::EventsLost => "lost",
        EventKind::ListChange => "list-change",
    }
}

fn print_list(list: ListKind, entries: &[ListEntryView]) {
    if entries.is_empty() {
        println!("the {list} is empty");
        return;
    }
    println!(
        "{:<44} {:>14} {:>16}  expires",
        "prefix", "hit packets", "hit bytes"
    );
    for e in entries {
        let expires = e.expires_in_ms.map_or_else(
            || "never".to_owned(),
            |ms| {
                format!(
                    "in {}",
                    humantime::format_duration(std::time::Duration::from_secs(ms.div_ceil(1000)))
                )
            },
        );
        println!(
            "{:<44} {:>14} {:>16}  {expires}",
            e.prefix.to_string(),
            e.hit_packets,
            e.hit_bytes
        );
    }
}

fn print_limits(view: &LimitsView) {
    use std::fmt::Write as _;
    let limits = &view.limits;
    println!("{:<14} {}", "interface", view.iface);
    // The classes that monitor are shown in the class table.
    for setting in Setting::SCALARS
        .into_iter()
        .filter(|s| *s != Setting::MonitorClasses)
    {
        println!("{:<14} {}", setting.label(), setting.show(limits));
    }
    for scope in ScopeName::ALL {
        let mut classes = String::new();
        for class in ClassName::ALL {
            let setting = Setting::PrefixClassPps(scope, class);
            if let Value::Rate(rate @ Rate::PerSecond(_)) = setting.get(limits) {
                // Writing to a String cannot fail.
                let _ = write!(classes, ", {class} {rate}");
            }
        }
        println!(
            "prefix {:<7} {:<4} {}, {}{classes}",
            scope.to_string(),
            Setting::PrefixLen(scope).show(limits),
            Setting::PrefixPps(scope).show(limits),
            Setting::PrefixBps(scope).show(limits),
        );
    }
    println!(
        "{:<14} {:>22} {:>26}  mode",
        "class",
        Setting::ClassPps(ClassName::Syn).label(),
        Setting::Ceiling(ClassName::Syn).label()
    );
    for class in ClassName::ALL {
        let class_mode = if limits.monitor_classes[class.index()] {
            FilterMode::Monitor
        } else {
            limits.mode
        };
        println!(
            "{:<14} {:>22} {:>26}  {class_mode}",
            class.to_string(),
            Setting::ClassPps(class).show(limits),
            Setting::Ceiling(class).show(limits),
        );
    }
}

fn print_stats(view: &StatsView) {
    println!(
        "interface {} ({} mode), up {}, rates over the last {:.1}s",
        view.iface,
        view.xdp_mode,
        humantime::format_duration(std::time::Duration::from_secs(view.uptime_secs)),
        view.interval_secs
    );
    println!(
        "{:<20} {:>14} {:>16} {:>12} {:>14}",
        "outcome", "packets", "bytes", "packets/s", "bit/s"
    );
    for o in &view.outcomes {
        println!(
            "{:<20} {:>14} {:>16} {:>12.0} {:>14.0}",
            o.outcome, o.packets, o.bytes, o.pps, o.bps
        );
    }
    let dropped: u64 = view
        .outcomes
        .iter()
        .filter(|o| o.dropped)
        .map(|o| o.packets)
        .sum();
    let total: u64 = view.outcomes.iter().map(|o| o.packets).sum();
    println!(
        "dropped {dropped} of {total} packets; block events lost: {}",
        view.events_lost
    );
    let t = view.table;
    println!(
        "source table: capacity {}, {} inserted, {} evicted (at least), {} inserts refused",
        t.capacity, t.inserts, t.evictions, t.insert_failures
    );
    println!("by class (outcomes with packets):");
    for class in &view.classes {
        let seen: Vec<String> = class
            .outcomes
            .iter()
            .filter(|o| o.packets > 0)
            .map(|o| format!("{} {} ({:.0}/s)", o.outcome, o.packets, o.pps))
            .collect();
        if !seen.is_empty() {
            println!("  {:<9} {}", class.class, seen.join(", "));
        }
    }
}

fn print_sources(sources: &[SourceView], mode: FilterMode, blocked_only: bool) {
    if sources.is_empty() {
        println!(
            "{}",
            if blocked_only {
                "no blocked sources"
            } else {
                "no tracked sources"
            }
        );
        return;
    }
    println!(
        "{:<40} {:>12} {:>14}  state",
        "source", "packets/s", "bit/s"
    );
    for s in sources {
        let state = match s.blocked_remaining_ms {
            Some(ms) if mode == FilterMode::Monitor => {
                format!(
                    "would be blocked (monitor mode), {}s left",
                    ms.div_ceil(1000)
                )
            }
            Some(ms) => format!("blocked, {}s left", ms.div_ceil(1000)),
            None => "tracked".to_owned(),
        };
        println!(
            "{:<40} {:>12.0} {:>14.0}  {state}",
            s.addr.to_string(),
            s.pps,
            s.bps
        );
    }
}

/// `floodwall detach`: removes the program and the pinned state of `iface`, refusing while
/// a daemon protects it.
///
/// # Errors
/// If a daemon runs on the interface, nothing is pinned for it, or a pin cannot be removed.
pub fn detach(
    run_dir: &std::path::Path,
    pin_root: &std::path::Path,
    iface: &str,
) -> anyhow::Result<()> {
    let _lock = crate::daemon::lock_interface(run_dir, iface)
        .map_err(|e| anyhow::anyhow!("{e:#}; stop it first (e.g. `systemctl stop floodwall`)"))?;
    let pins = crate::pin::PinDir::new(pin_root, iface);
    if !pins.detach()? {
        bail!(
            "floodwall is not attached to {iface}: nothing is pinned at {}",
            pins.dir().display()
        );
    }
    println!(
        "detached floodwall from {iface} and removed its state ({})",
        pins.dir().display()
    );
    Ok(())
}

/// Runs `floodwall config ...`: reads the file here, with no daemon.
///
/// # Errors
/// The file's first problem, as [`config::ConfigError`] words it.
pub fn config(command: &ConfigCommand) -> anyhow::Result<()> {
    match command {
        ConfigCommand::Check { file } => {
            let config = config::load(file)?;
            print_config(&config);
        }
    }
    Ok(())
}

fn print_config(config: &DaemonFile) {
    println!("{}: valid", config.path.display());
    let interfaces: Vec<String> = config
        .interfaces
        .iter()
        .map(|i| format!("{} (xdp {})", i.name, i.xdp_mode))
        .collect();
    print_limits(&LimitsView::new(interfaces.join(", "), config.limits));
    println!(
        "capacities     {} sources, {} prefixes, {} entries per list and family",
        config.max_sources, config.max_prefixes, config.list_capacity
    );
    println!(
        "metrics        {}",
        config
            .metrics_addr
            .map_or_else(|| "off".to_owned(), |addr| format!("http://{addr}/metrics"))
    );
    let group = |g: &Option<config::GroupRef>| {
        g.as_ref()
            .map_or_else(|| "none".to_owned(), ToString::to_string)
    };
    println!(
        "groups         admin {}; read-only {}",
        group(&config.admin_group),
        group(&config.read_group)
    );
    println!(
        "run dir        {}",
        config.run_dir.as_ref().map_or_else(
            || format!("{DEFAULT_RUN_DIR} (default)"),
            |dir| dir.display().to_string()
        )
    );
    for (name, list) in [("allow", &config.allow), ("deny", &config.deny)] {
        let v4 = list.iter().filter(|p| p.addr().is_ipv4()).count();
        println!(
            "{name:<14} {} {} ({v4} IPv4, {} IPv6)",
            list.len(),
            if list.len() == 1 {
                "prefix"
            } else {
                "prefixes"
            },
            list.len() - v4
        );
    }
    for prefix in config.shadowed_deny_entries() {
        println!("note: deny {prefix} is covered by the allowlist, which wins");
    }
}
