//! The daemon's configuration as it runs: the flags of `floodwall run` over the config file
//! over the defaults, resolved in one place ([`resolve`]), and which of its fields only a
//! restart can change.
//!
//! The flags live here rather than with the other commands' in [`crate::cli`]: they are the
//! command line's layer of the configuration, and [`resolve`] reads them.

use std::{net::SocketAddr, path::PathBuf, sync::Arc};

use clap::Args;
use filter_common::{DEFAULT_LIST_CAPACITY, DEFAULT_MAX_PREFIXES, DEFAULT_MAX_SOURCES};

use super::{DEFAULT_PATH, DaemonFile, GroupRef, InterfaceConfig, parse_group};
use crate::{
    control::{Access, DEFAULT_RUN_DIR},
    limits::{LimitArgs, Limits},
    lists::Prefix,
    loader::AttachMode,
    syn::{SynProtect, SysctlPolicy},
};

/// `floodwall run`.
#[derive(Clone, Debug, Default, Args)]
pub struct RunArgs {
    /// Config file (TOML). Without this flag /etc/floodwall/floodwall.toml is read if it
    /// exists. The flags below override the file.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Interface to protect, e.g. eth0; repeat for several (replaces the file's list).
    #[arg(long)]
    pub iface: Vec<String>,
    /// XDP mode: driver (native), skb (generic), or auto (driver, else skb with a warning).
    #[arg(long, value_enum)]
    pub xdp_mode: Option<AttachMode>,
    /// Capacity of the per-source table, rounded up to a multiple of 4 (a new source takes
    /// the slot of the least recently active of the four sources its address hashes to,
    /// never a blocked one; default 1,048,576).
    #[arg(long)]
    pub max_sources: Option<u32>,
    /// Serve Prometheus metrics on this address, e.g. 127.0.0.1:9477 (off by default).
    #[arg(long, value_name = "ADDR:PORT")]
    pub metrics_addr: Option<SocketAddr>,
    /// Capacity of each list (allowlist and denylist, IPv4 and IPv6 each), in prefixes
    /// (default 131,072).
    #[arg(long)]
    pub list_capacity: Option<u32>,
    /// Capacity of the prefix table (default 262,144).
    #[arg(long)]
    pub max_prefixes: Option<u32>,
    /// Members of this group (a name or a gid) may change floodwall, like root.
    #[arg(long, value_parser = parse_group, value_name = "GROUP")]
    pub admin_group: Option<GroupRef>,
    /// Members of this group (a name or a gid) may use the read-only commands.
    #[arg(long, value_parser = parse_group, value_name = "GROUP")]
    pub read_group: Option<GroupRef>,
    /// Start from empty state: replace the attached program (atomically, the interface
    /// stays protected) and drop the pinned blocks, lists and counters. Needed when the
    /// pinned state has another layout or other capacities than this start asks for.
    #[arg(long)]
    pub fresh_state: bool,
    /// SYN cookies from XDP for new sources' SYNs, so that new users connect during a
    /// spoofed SYN flood: `auto` (the default) turns them on for the ports that have
    /// listeners while a SYN flood goes over the SYN ceiling; PORTS (e.g. 80,443) always
    /// for those; `off` never (new sources' SYNs are held to the SYN ceiling). Turning them on
    /// sets `net.ipv4.tcp_syncookies=2` in the interface's namespace.
    #[arg(long, value_name = "auto|off|PORTS")]
    pub syn_protect: Option<SynProtect>,
    /// Whether SYN protection may set `net.ipv4.tcp_syncookies=2` (`set`, the default) or
    /// must leave it (`keep`: the kernel then refuses most cookies, and those SYNs fall back
    /// to the SYN ceiling).
    #[arg(long, value_enum)]
    pub syn_sysctls: Option<SysctlPolicy>,
    /// Attacks and signatures: when a service gets far over its learned baseline, put in
    /// force a rule that matches what the flood's packets share and normal traffic does
    /// not (`enforce`, the default: it drops), only count what it matches (`monitor`), or
    /// never look (`off`). See `floodwall baseline` and `floodwall attacks`.
    #[arg(long, value_enum)]
    pub signatures: Option<crate::traffic::detect::SignatureMode>,
    /// Fields signatures must not use (e.g. `payload,ttl`): where a field is known to vary
    /// among users in ways the baseline may not have seen.
    #[arg(long, value_enum, value_delimiter = ',', value_name = "FIELDS")]
    pub signature_forbid: Option<Vec<crate::traffic::baseline::Field>>,
    /// Services whose signatures only count, never drop (e.g. `udp/53,tcp/443`), whatever
    /// `--signatures` says.
    #[arg(long, value_delimiter = ',', value_name = "SERVICES")]
    pub signature_monitor: Option<Vec<crate::traffic::baseline::Service>>,
    /// The detector's thresholds.
    #[command(flatten)]
    pub signature_thresholds: crate::traffic::detect::Thresholds,
    /// Initial limits (defaults: 10k packets/s, auto bursts, no bit-rate limit, 60s blocks).
    #[command(flatten)]
    pub limits: LimitArgs,
}

/// What the command line of `floodwall run` says: its flags, and the directories that are
/// global flags of every command.
#[derive(Clone, Debug, Default)]
pub struct CommandLine {
    /// The flags of `run`.
    pub args: RunArgs,
    /// `--run-dir`, if given.
    pub run_dir: Option<PathBuf>,
    /// `--pin-root`.
    pub pin_root: PathBuf,
}

/// What the daemon runs with: the config file with the command line over it.
#[derive(Clone, Debug, PartialEq)]
pub struct DaemonConfig {
    /// Interfaces to protect, each with its own program and state.
    pub interfaces: Vec<InterfaceConfig>,
    /// Limits, the same on every interface.
    pub limits: Limits,
    /// Capacity of the per-source table.
    pub max_sources: u32,
    /// Capacity of each list trie.
    pub list_capacity: u32,
    /// Capacity of the prefix table.
    pub max_prefixes: u32,
    /// Where to serve Prometheus metrics, if anywhere.
    pub metrics_addr: Option<SocketAddr>,
    /// Directory of the control sockets and lock files.
    pub run_dir: PathBuf,
    /// Directory of the pinned state in bpffs.
    pub pin_root: PathBuf,
    /// Start from empty state even if pinned state could be adopted.
    pub fresh_state: bool,
    /// Which ports get SYN cookies.
    pub syn_protect: SynProtect,
    /// Whether SYN protection may set the namespace's sysctl.
    pub syn_sysctls: SysctlPolicy,
    /// Who may read and change what.
    pub access: Access,
    /// Allowlist entries the config file owns.
    pub allow: Vec<Prefix>,
    /// Denylist entries the config file owns (no expiry).
    pub deny: Vec<Prefix>,
    /// The rules the config file owns.
    pub rules: Vec<crate::rules::NewRule>,
    /// Attack detection and signatures.
    pub signatures: crate::traffic::detect::DetectConfig,
    /// Announcements upstream (`[upstream]`); `None`: off.
    pub upstream: Option<crate::upstream::UpstreamConfig>,
    /// Sharing with other nodes (`[fleet]`); `None`: off.
    pub fleet: Option<crate::fleet::FleetConfig>,
    /// The config file this came from, if any: reloads log their change as its diff.
    pub file: Option<DaemonFile>,
}

/// Reads the configuration again (file and command line) for a reload.
pub type Reloader = dyn Fn() -> anyhow::Result<DaemonConfig> + Send + Sync;

impl CommandLine {
    /// The config file `run` reads: `--config`, else the default path if it exists.
    #[must_use]
    pub fn config_path(&self) -> Option<PathBuf> {
        self.args.config.clone().or_else(|| {
            let default = PathBuf::from(DEFAULT_PATH);
            default.exists().then_some(default)
        })
    }

    /// Reads the config file, if there is one, and resolves the configuration.
    ///
    /// # Errors
    /// If the file or a flag is invalid; nothing is applied then.
    pub fn load(&self) -> anyhow::Result<DaemonConfig> {
        let file = self
            .config_path()
            .map(|path| super::load(&path))
            .transpose()?;
        resolve(file, self)
    }

    /// What reloads call: [`CommandLine::load`] again, with the same flags over the file,
    /// so that flags keep overriding it. `None` without a config file: there is nothing to
    /// reload then.
    #[must_use]
    pub fn reloader(&self) -> Option<Arc<Reloader>> {
        self.config_path()?;
        let again = self.for_reload();
        Some(Arc::new(move || again.load()))
    }

    /// The command line as reloads read it: a fresh start is a start-time choice only.
    #[must_use]
    pub fn for_reload(&self) -> Self {
        Self {
            args: RunArgs {
                fresh_state: false,
                ..self.args.clone()
            },
            ..self.clone()
        }
    }
}

/// The configuration from `file` (if any) with the command line over it, and the defaults
/// for what neither gives. Pure: reads nothing.
///
/// # Errors
/// If the flags' limits are invalid, alone or over the file's.
pub fn resolve(
    file: Option<DaemonFile>,
    command_line: &CommandLine,
) -> anyhow::Result<DaemonConfig> {
    let args = &command_line.args;
    let from_file = |field: fn(&DaemonFile) -> u32| file.as_ref().map(field);
    let interfaces = if args.iface.is_empty() {
        let listed = file.as_ref().map_or(&[][..], |f| &f.interfaces[..]);
        listed
            .iter()
            .map(|i| InterfaceConfig {
                name: i.name.clone(),
                xdp_mode: args.xdp_mode.unwrap_or(i.xdp_mode),
            })
            .collect()
    } else {
        args.iface
            .iter()
            .map(|name| InterfaceConfig {
                name: name.clone(),
                xdp_mode: args.xdp_mode.unwrap_or_default(),
            })
            .collect()
    };
    let base = file.as_ref().map_or_else(Limits::default, |f| f.limits);
    let gid = |flag: &Option<GroupRef>, in_file: fn(&DaemonFile) -> &Option<GroupRef>| {
        flag.as_ref()
            .or_else(|| file.as_ref().and_then(|f| in_file(f).as_ref()))
            .map(|g| g.gid.as_raw())
    };
    Ok(DaemonConfig {
        interfaces,
        limits: base.apply(&args.limits.change()?)?,
        max_sources: args
            .max_sources
            .or(from_file(|f| f.max_sources))
            .unwrap_or(DEFAULT_MAX_SOURCES),
        list_capacity: args
            .list_capacity
            .or(from_file(|f| f.list_capacity))
            .unwrap_or(DEFAULT_LIST_CAPACITY),
        max_prefixes: args
            .max_prefixes
            .or(from_file(|f| f.max_prefixes))
            .unwrap_or(DEFAULT_MAX_PREFIXES),
        metrics_addr: args
            .metrics_addr
            .or(file.as_ref().and_then(|f| f.metrics_addr)),
        run_dir: command_line
            .run_dir
            .clone()
            .or(file.as_ref().and_then(|f| f.run_dir.clone()))
            .unwrap_or_else(|| PathBuf::from(DEFAULT_RUN_DIR)),
        pin_root: command_line.pin_root.clone(),
        fresh_state: args.fresh_state,
        syn_protect: args
            .syn_protect
            .clone()
            .or_else(|| file.as_ref().and_then(|f| f.syn_protect.clone()))
            .unwrap_or_default(),
        syn_sysctls: args
            .syn_sysctls
            .or(file.as_ref().and_then(|f| f.syn_sysctls))
            .unwrap_or_default(),
        access: Access {
            admin_gid: gid(&args.admin_group, |f| &f.admin_group),
            read_gid: gid(&args.read_group, |f| &f.read_group),
        },
        allow: file.as_ref().map(|f| f.allow.clone()).unwrap_or_default(),
        deny: file.as_ref().map(|f| f.deny.clone()).unwrap_or_default(),
        rules: file.as_ref().map(|f| f.rules.clone()).unwrap_or_default(),
        upstream: file.as_ref().and_then(|f| f.upstream.clone()),
        fleet: file.as_ref().and_then(|f| f.fleet.clone()),
        signatures: args
            .signature_thresholds
            .over(
                file.as_ref()
                    .map(|f| f.signature_thresholds)
                    .unwrap_or_default(),
            )
            .apply(crate::traffic::detect::DetectConfig {
                mode: args
                    .signatures
                    .or(file.as_ref().and_then(|f| f.signatures))
                    .unwrap_or_default(),
                forbidden: args
                    .signature_forbid
                    .clone()
                    .or_else(|| file.as_ref().and_then(|f| f.signature_forbid.clone()))
                    .unwrap_or_default(),
                monitor_services: args
                    .signature_monitor
                    .clone()
                    .or_else(|| file.as_ref().and_then(|f| f.signature_monitor.clone()))
                    .unwrap_or_default(),
                ..crate::traffic::detect::DetectConfig::default()
            }),
        file,
    })
}

impl DaemonConfig {
    /// The fields that differ in `new` and that only a restart can change: a reload
    /// changes limits, lists and access, nothing else.
    #[must_use]
    pub fn restart_only_changes(&self, new: &Self) -> Vec<&'static str> {
        [
            ("interfaces", self.interfaces != new.interfaces),
            ("max_sources", self.max_sources != new.max_sources),
            ("list_capacity", self.list_capacity != new.list_capacity),
            ("max_prefixes", self.max_prefixes != new.max_prefixes),
            ("metrics_addr", self.metrics_addr != new.metrics_addr),
            ("run_dir", self.run_dir != new.run_dir),
            ("pin_root", self.pin_root != new.pin_root),
            ("syn_sysctls", self.syn_sysctls != new.syn_sysctls),
            ("upstream", self.upstream != new.upstream),
            ("fleet", self.fleet != new.fleet),
            ("signatures", self.signatures.mode != new.signatures.mode),
            (
                "signature_forbid",
                self.signatures.forbidden != new.signatures.forbidden,
            ),
            (
                "signature_monitor",
                self.signatures.monitor_services != new.signatures.monitor_services,
            ),
            (
                "signature_factor, _floor, _min_baseline, _quiet or _max_rules",
                crate::traffic::detect::DetectConfig {
                    mode: new.signatures.mode,
                    forbidden: new.signatures.forbidden.clone(),
                    monitor_services: new.signatures.monitor_services.clone(),
                    ..self.signatures.clone()
                } != new.signatures,
            ),
        ]
        .into_iter()
        .filter_map(|(name, differs)| differs.then_some(name))
        .collect()
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use clap::Parser as _;

    use super::*;
    use crate::limits::Rate;

    /// `floodwall run ARGS`, with a pin root.
    fn command_line(args: &[&str]) -> CommandLine {
        #[derive(clap::Parser)]
        struct Run {
            #[command(flatten)]
            args: RunArgs,
        }
        let run = Run::try_parse_from(std::iter::once("run").chain(args.iter().copied()))
            .unwrap_or_else(|e| panic!("{args:?} must parse: {e}"));
        CommandLine {
            args: run.args,
            run_dir: None,
            pin_root: PathBuf::from("/sys/fs/bpf/fw-test"),
        }
    }

    fn file(text: &str) -> DaemonFile {
        super::super::parse(Path::new("/etc/floodwall/test.toml"), text)
            .unwrap_or_else(|e| panic!("the test file must parse: {e}"))
    }

    const FILE: &str = "[daemon]\nmax_sources = 4096\nxdp_mode = \"skb\"\nread_group = 7\n\
                        run_dir = \"/run/fw-file\"\n\
                        [[interface]]\nname = \"eth0\"\n[[interface]]\nname = \"eth1\"\n\
                        xdp_mode = \"driver\"\n[limits]\npps = \"20k\"\nbps = \"1G\"\n\
                        [deny]\nprefixes = [\"198.18.9.0/24\"]\n";

    #[test]
    fn the_detectors_thresholds_come_from_the_flags() {
        let config = resolve(
            None,
            &command_line(&[
                "--iface",
                "eth0",
                "--signature-factor",
                "8",
                "--signature-quiet",
                "3s",
            ]),
        )
        .expect("valid");
        let detect = crate::traffic::detect::DetectConfig::default();
        assert_eq!(
            (config.signatures.factor, config.signatures.quiet_s),
            (8.0, 3)
        );
        assert!((config.signatures.floor_pps - detect.floor_pps).abs() < f64::EPSILON);
    }

    #[test]
    fn without_a_file_the_flags_and_the_defaults_decide() {
        let config =
            resolve(None, &command_line(&["--iface", "eth0", "--pps", "500"])).expect("valid");
        assert_eq!(
            config.interfaces,
            [InterfaceConfig {
                name: "eth0".into(),
                xdp_mode: AttachMode::Auto,
            }]
        );
        assert_eq!(config.limits.pps, Rate::PerSecond(500));
        assert_eq!(config.limits.bps, Limits::default().bps);
        assert_eq!(
            (
                config.max_sources,
                config.list_capacity,
                config.max_prefixes
            ),
            (
                DEFAULT_MAX_SOURCES,
                DEFAULT_LIST_CAPACITY,
                DEFAULT_MAX_PREFIXES
            )
        );
        assert_eq!(config.run_dir, Path::new(DEFAULT_RUN_DIR));
        assert_eq!(config.pin_root, Path::new("/sys/fs/bpf/fw-test"));
        assert_eq!(config.access, Access::default());
        assert!(config.file.is_none() && config.allow.is_empty() && config.deny.is_empty());
    }

    #[test]
    fn the_file_gives_what_the_flags_do_not() {
        let config = resolve(Some(file(FILE)), &command_line(&[])).expect("valid");
        assert_eq!(
            config.interfaces,
            [
                InterfaceConfig {
                    name: "eth0".into(),
                    xdp_mode: AttachMode::Skb,
                },
                InterfaceConfig {
                    name: "eth1".into(),
                    xdp_mode: AttachMode::Driver,
                },
            ]
        );
        assert_eq!(config.max_sources, 4096);
        assert_eq!(config.limits.pps, Rate::PerSecond(20_000));
        assert_eq!(config.run_dir, Path::new("/run/fw-file"));
        assert_eq!(
            config.access,
            Access {
                admin_gid: None,
                read_gid: Some(7),
            }
        );
        assert_eq!(config.deny.len(), 1);
        assert!(config.file.is_some(), "kept for the reload diff");
    }

    #[test]
    fn flags_override_the_file() {
        let config = resolve(
            Some(file(FILE)),
            &CommandLine {
                run_dir: Some(PathBuf::from("/run/fw-flag")),
                ..command_line(&[
                    "--xdp-mode",
                    "driver",
                    "--max-sources",
                    "8192",
                    "--read-group",
                    "9",
                    "--pps",
                    "30k",
                ])
            },
        )
        .expect("valid");
        assert!(
            config
                .interfaces
                .iter()
                .all(|i| i.xdp_mode == AttachMode::Driver),
            "--xdp-mode applies to the file's interfaces: {:?}",
            config.interfaces
        );
        assert_eq!(config.interfaces.len(), 2);
        assert_eq!(config.max_sources, 8192);
        assert_eq!(config.access.read_gid, Some(9));
        assert_eq!(config.run_dir, Path::new("/run/fw-flag"));
        assert_eq!(
            (config.limits.pps, config.limits.bps),
            (Rate::PerSecond(30_000), Rate::PerSecond(1_000_000_000)),
            "a limit flag changes its limit and keeps the file's others"
        );
        let config = resolve(Some(file(FILE)), &command_line(&["--iface", "eth9"])).expect("valid");
        assert_eq!(
            config.interfaces,
            [InterfaceConfig {
                name: "eth9".into(),
                xdp_mode: AttachMode::Auto,
            }],
            "--iface replaces the file's list"
        );
    }

    #[test]
    fn bad_limit_flags_are_refused_over_the_file_too() {
        let err = resolve(Some(file(FILE)), &command_line(&["--burst-packets", "10"]))
            .expect_err("10 packets at 20k/s last half a millisecond")
            .to_string();
        assert!(err.contains("burst-packets 10 lasts less than"), "{err}");
    }

    #[test]
    fn only_limits_lists_and_access_change_without_a_restart() {
        let old = resolve(Some(file(FILE)), &command_line(&[])).expect("valid");
        let reloadable = resolve(
            Some(file(
                &FILE
                    .replace("20k", "5k")
                    .replace("198.18.9.0", "198.18.8.0"),
            )),
            &command_line(&["--admin-group", "3"]),
        )
        .expect("valid");
        assert_eq!(old.restart_only_changes(&reloadable), Vec::<&str>::new());
        let restart = resolve(
            Some(file(&FILE.replace("4096", "2048").replace("eth1", "eth2"))),
            &command_line(&["--metrics-addr", "127.0.0.1:9477"]),
        )
        .expect("valid");
        assert_eq!(
            old.restart_only_changes(&restart),
            ["interfaces", "max_sources", "metrics_addr"]
        );
    }

    #[test]
    fn a_reload_reads_the_file_again_and_never_starts_fresh() {
        let start = CommandLine {
            args: RunArgs {
                config: Some(PathBuf::from("/nonexistent/floodwall.toml")),
                fresh_state: true,
                ..RunArgs::default()
            },
            ..CommandLine::default()
        };
        assert!(!start.for_reload().args.fresh_state);
        let reload = start.reloader().expect("a daemon with a file reloads");
        let err = reload().expect_err("the file does not exist").to_string();
        assert!(err.contains("/nonexistent/floodwall.toml"), "{err}");
    }
}
