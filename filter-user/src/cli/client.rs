//! The client commands: each becomes one request to a daemon ([`Call::of`], pure), sent over
//! its control socket, and its response printed (see [`super::output`]) or, with `--json`,
//! printed as JSON.

use std::path::{Path, PathBuf};

use anyhow::{Context as _, anyhow, bail};

use super::{
    BlockedCommand, ChangeArgs, ClientCommand, LimitsCommand, ListCommand, RulesCommand,
    SynProtectCommand, UpstreamCommand,
    output::{EventLine, ResponseText, StatsTable},
};
use crate::{
    control::{self, NOTHING_TO_CHANGE, Request, Response, RuleRequest, StatsView},
    lists::{ListKind, parse_list_file},
    syn::SynProtectChange,
};

/// One request, to the daemon of `iface` (or the only one), and how to print its answer.
#[derive(Debug, PartialEq)]
pub struct Call {
    /// The interface whose daemon to ask; `None`: the only daemon running.
    pub iface: Option<String>,
    /// Print JSON rather than text.
    pub json: bool,
    /// The request.
    pub request: Request,
    /// Where `attacks --pcap` writes its file.
    pub out: Option<PathBuf>,
}

impl Call {
    /// The request of `command`. Reads the file of `allow load` and `deny load` here, so
    /// that its errors name the file as the operator typed it.
    ///
    /// # Errors
    /// If the flags ask for nothing or for something a list does not do, or a list file
    /// cannot be read.
    pub fn of(command: ClientCommand) -> anyhow::Result<Self> {
        let call = Self::plain;
        Ok(match command {
            ClientCommand::Limits(LimitsCommand::Show(r)) => {
                call(r.iface, r.json, Request::LimitsShow)
            }
            ClientCommand::Limits(LimitsCommand::Set {
                iface,
                json,
                limits,
            }) => {
                let change = limits.change()?;
                if change.is_empty() {
                    bail!("{NOTHING_TO_CHANGE}");
                }
                call(iface, json, Request::LimitsSet { change })
            }
            ClientCommand::Stats(r) => call(r.iface, r.json, Request::Stats),
            ClientCommand::Top(t) => call(
                t.read.iface,
                t.read.json,
                Request::Top {
                    limit: t.limit as usize,
                },
            ),
            ClientCommand::Blocked(BlockedCommand::List(r)) => {
                call(r.iface, r.json, Request::BlockedList)
            }
            ClientCommand::Blocked(BlockedCommand::Remove { addr, iface }) => {
                call(iface, false, Request::BlockedRemove { addr })
            }
            ClientCommand::Allow(command) => Self::of_list(ListKind::Allow, command)?,
            ClientCommand::Deny(command) => Self::of_list(ListKind::Deny, command)?,
            ClientCommand::Events(args) => call(
                args.read.iface,
                args.read.json,
                Request::Events {
                    follow: args.follow,
                },
            ),
            ClientCommand::Reload { iface } => call(iface, false, Request::Reload),
            ClientCommand::Baseline(r) => call(r.iface, r.json, Request::Baseline),
            ClientCommand::Attacks(a) => match a.pcap {
                Some(id) => Self {
                    out: a.out,
                    ..call(a.read.iface, a.read.json, Request::AttackFrames { id })
                },
                None => call(a.read.iface, a.read.json, Request::Attacks),
            },
            ClientCommand::Rules(command) => Self::of_rules(command)?,
            ClientCommand::Upstream(command) => Self::of_upstream(command),
            ClientCommand::SynProtect(command) => {
                let change = |change, args: ChangeArgs| {
                    call(args.iface, args.json, Request::SynProtectChange { change })
                };
                match command {
                    SynProtectCommand::Show(r) => call(r.iface, r.json, Request::SynProtectShow),
                    SynProtectCommand::Set(a) => change(SynProtectChange::Set(a.ports), a.change),
                    SynProtectCommand::Add(a) => change(SynProtectChange::Add(a.ports), a.change),
                    SynProtectCommand::Remove(a) => {
                        change(SynProtectChange::Remove(a.ports), a.change)
                    }
                    SynProtectCommand::Off(a) => change(SynProtectChange::Off, a),
                    SynProtectCommand::Auto(a) => change(SynProtectChange::Auto, a),
                }
            }
        })
    }

    /// A call of `request` to the daemon on `iface`, printed as JSON or not, with no file.
    fn plain(iface: Option<String>, json: bool, request: Request) -> Self {
        Self {
            iface,
            json,
            request,
            out: None,
        }
    }

    fn of_upstream(command: UpstreamCommand) -> Self {
        let call = Self::plain;
        match command {
            UpstreamCommand::Show(r) => call(r.iface, r.json, Request::UpstreamShow),
            UpstreamCommand::Announce {
                rule,
                rule_id,
                blackhole,
                to,
                for_ms,
                change,
            } => {
                // clap asked for exactly one of them; the daemon checks it again for any
                // client.
                let rule = (!rule.is_empty()).then(|| rule.join(" "));
                call(
                    change.iface,
                    change.json,
                    Request::UpstreamAnnounce {
                        rule,
                        rule_id,
                        blackhole,
                        to,
                        for_ms,
                    },
                )
            }
            UpstreamCommand::Withdraw { ids, change } => {
                call(change.iface, change.json, Request::UpstreamWithdraw { ids })
            }
        }
    }

    fn of_rules(command: RulesCommand) -> anyhow::Result<Self> {
        let (iface, json, request) = match command {
            RulesCommand::Add {
                rule,
                priority,
                comment,
                for_ms,
                change,
            } => (
                change.iface,
                change.json,
                Request::RulesAdd {
                    rules: vec![RuleRequest {
                        rule: rule.join(" "),
                        priority: Some(priority),
                        comment,
                        for_ms,
                    }],
                },
            ),
            RulesCommand::Remove { ids, change } => {
                (change.iface, change.json, Request::RulesRemove { ids })
            }
            RulesCommand::Keep {
                ids,
                for_ms,
                change,
            } => (
                change.iface,
                change.json,
                Request::RulesKeep { ids, for_ms },
            ),
            RulesCommand::List(r) => (r.iface, r.json, Request::RulesList),
            RulesCommand::Show { id, read } => (read.iface, read.json, Request::RulesShow { id }),
            RulesCommand::Test {
                packet,
                frame,
                read,
            } => (
                read.iface,
                read.json,
                match frame {
                    Some(frame) => Request::RulesTestFrame { frame },
                    None => Request::RulesTest {
                        packet: packet.join(" "),
                    },
                },
            ),
            RulesCommand::Load {
                file,
                priority,
                change,
            } => (
                change.iface,
                change.json,
                Request::RulesAdd {
                    rules: crate::rules::parse_rule_file(&file, priority)?,
                },
            ),
        };
        Ok(Self {
            iface,
            json,
            request,
            out: None,
        })
    }

    fn of_list(list: ListKind, command: ListCommand) -> anyhow::Result<Self> {
        let check_for = |for_ms: Option<u64>| {
            if list == ListKind::Allow && for_ms.is_some() {
                bail!("allowlist entries do not expire: --for is for the denylist");
            }
            Ok(for_ms)
        };
        let (iface, json, request) = match command {
            ListCommand::Add {
                prefixes,
                for_ms,
                iface,
            } => (
                iface,
                false,
                Request::ListAdd {
                    list,
                    prefixes,
                    for_ms: check_for(for_ms)?,
                },
            ),
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
        };
        Ok(Self {
            iface,
            json,
            request,
            out: None,
        })
    }
}

/// Runs a client command against a daemon and prints the answer.
///
/// # Errors
/// If the daemon cannot be reached or refuses the request.
pub async fn run(run_dir: &Path, command: ClientCommand) -> anyhow::Result<()> {
    let call = Call::of(command)?;
    match call.request {
        Request::Stats if call.iface.is_none() && control::all_sockets(run_dir)?.len() > 1 => {
            stats_of_all(run_dir, call.json).await
        }
        Request::Events { .. } => events(run_dir, &call).await,
        Request::AttackFrames { .. } => pcap(run_dir, &call).await,
        _ => one(run_dir, &call).await,
    }
}

/// Sends the request, prints the one response.
async fn one(run_dir: &Path, call: &Call) -> anyhow::Result<()> {
    let socket = control::find_socket(run_dir, call.iface.as_deref())?;
    let response = control::call(&socket, &call.request).await?;
    if let Response::Error { message } = &response {
        bail!("{message}");
    }
    if call.json {
        println!("{}", serde_json::to_string_pretty(&response)?);
    } else {
        let blocked_only = matches!(call.request, Request::BlockedList);
        print!(
            "{}",
            ResponseText {
                response: &response,
                blocked_only,
            }
        );
    }
    Ok(())
}

/// `events`: prints each event as it arrives (all of them, then with `--follow` every new
/// one until interrupted).
async fn events(run_dir: &Path, call: &Call) -> anyhow::Result<()> {
    let socket = control::find_socket(run_dir, call.iface.as_deref())?;
    control::call_streaming(&socket, &call.request, |response| {
        match response {
            Response::Events { events } => {
                for event in events {
                    if call.json {
                        println!("{}", serde_json::to_string(&event)?);
                    } else {
                        print!("{}", EventLine(&event));
                    }
                }
            }
            Response::Error { message } => bail!("{message}"),
            other => bail!("unexpected answer to events: {other:?}"),
        }
        Ok(())
    })
    .await
}

/// `attacks --pcap ID --out FILE`: the attack's samples, written as a pcap file (Ethernet,
/// each frame cut to what was captured, with its whole length).
async fn pcap(run_dir: &Path, call: &Call) -> anyhow::Result<()> {
    let socket = control::find_socket(run_dir, call.iface.as_deref())?;
    let (id, frames) = match control::call(&socket, &call.request).await? {
        Response::AttackFrames { id, frames } => (id, frames),
        Response::Error { message } => bail!("{message}"),
        other => bail!("unexpected answer to attacks --pcap: {other:?}"),
    };
    let Some(path) = &call.out else {
        bail!("attacks --pcap needs --out FILE");
    };
    let file =
        std::fs::File::create(path).with_context(|| format!("cannot create {}", path.display()))?;
    let mut writer = pcap_file::pcap::PcapWriter::new(std::io::BufWriter::new(file))
        .with_context(|| format!("cannot write {}", path.display()))?;
    for frame in &frames {
        let data = crate::rules::parse_hex(&frame.hex)
            .map_err(|e| anyhow!("the daemon sent a frame that is not hex: {e}"))?;
        let packet = pcap_file::pcap::PcapPacket::new(
            std::time::Duration::from_nanos(frame.at_unix_ns),
            frame.frame_len,
            &data,
        );
        writer
            .write_packet(&packet)
            .with_context(|| format!("cannot write {}", path.display()))?;
    }
    let mut inner = writer.into_writer();
    std::io::Write::flush(&mut inner)
        .with_context(|| format!("cannot write {}", path.display()))?;
    if call.json {
        let done = serde_json::json!({ "attack": id, "samples": frames.len(), "file": path });
        println!("{}", serde_json::to_string_pretty(&done)?);
    } else {
        println!(
            "wrote {} samples of attack {id} to {}",
            frames.len(),
            path.display()
        );
    }
    Ok(())
}

/// `stats` with several interfaces protected: each, then their total.
async fn stats_of_all(run_dir: &Path, json: bool) -> anyhow::Result<()> {
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
        println!("{}", StatsTable(view));
    }
    print!("{}", StatsTable(&total));
    Ok(())
}

#[cfg(test)]
mod tests {
    use clap::Parser as _;

    use super::*;
    use crate::{
        cli::{Cli, Command},
        limits::{ClassName, LimitsChange, Rate, Setting, Value},
    };

    /// The call `floodwall ARGS` makes.
    fn call(args: &[&str]) -> anyhow::Result<Call> {
        let cli = Cli::try_parse_from(std::iter::once("floodwall").chain(args.iter().copied()))
            .unwrap_or_else(|e| panic!("{args:?} must parse: {e}"));
        match cli.command {
            Command::Client(command) => Call::of(command),
            other => panic!("not a client command: {other:?}"),
        }
    }

    fn refused(args: &[&str]) -> String {
        call(args)
            .expect_err("must be refused before any request")
            .to_string()
    }

    #[test]
    fn limit_flags_become_one_change() {
        let got = call(&[
            "limits",
            "set",
            "--iface",
            "eth1",
            "--pps",
            "5k",
            "--class-pps",
            "syn=50",
            "--prefix-class-pps",
            "v6-wide:udp=unlimited",
            "--monitor-class",
            "udp",
            "--enforce-class",
            "syn",
        ])
        .expect("valid");
        let mut change = LimitsChange::default();
        change.set(Setting::Pps, Value::Rate(Rate::PerSecond(5_000)));
        change.set(
            Setting::ClassPps(ClassName::Syn),
            Value::Rate(Rate::PerSecond(50)),
        );
        change.set(
            Setting::PrefixClassPps(crate::limits::ScopeName::V6Wide, ClassName::Udp),
            Value::Rate(Rate::Unlimited),
        );
        change.monitor_classes[ClassName::Udp.index()] = Some(true);
        change.monitor_classes[ClassName::Syn.index()] = Some(false);
        assert_eq!(
            got,
            Call {
                iface: Some("eth1".into()),
                json: false,
                request: Request::LimitsSet { change },
                out: None,
            }
        );
    }

    #[test]
    fn attacks_pcap_asks_for_the_frames_and_needs_a_file() {
        let got = call(&["attacks", "--pcap", "3", "--out", "/tmp/a.pcap"]).expect("valid");
        assert_eq!(got.request, Request::AttackFrames { id: 3 });
        assert_eq!(got.out, Some(PathBuf::from("/tmp/a.pcap")));
        assert_eq!(call(&["attacks"]).expect("valid").request, Request::Attacks);
        let parse = |args: &[&str]| {
            Cli::try_parse_from(std::iter::once("floodwall").chain(args.iter().copied()))
                .map(|_| ())
                .map_err(|e| e.to_string())
        };
        let err = parse(&["attacks", "--pcap", "3"]).expect_err("no file");
        assert!(err.contains("--out"), "{err}");
        let err = parse(&["attacks", "--pcap", "x", "--out", "f"]).expect_err("not an id");
        assert!(err.contains("--pcap"), "{err}");
    }

    #[test]
    fn flags_that_say_nothing_or_twice_are_refused() {
        assert!(refused(&["limits", "set"]).starts_with("nothing to change"));
        assert_eq!(
            refused(&[
                "limits",
                "set",
                "--ceiling",
                "udp=1k",
                "--ceiling",
                "udp=2k"
            ]),
            "--ceiling names udp twice"
        );
        assert_eq!(
            refused(&[
                "limits",
                "set",
                "--prefix-len",
                "v4=22",
                "--prefix-len",
                "v4=20"
            ]),
            "--prefix-len names v4 twice"
        );
        assert_eq!(
            refused(&[
                "limits",
                "set",
                "--monitor-class",
                "udp",
                "--enforce-class",
                "udp"
            ]),
            "class udp is named twice in --monitor-class/--enforce-class"
        );
        assert_eq!(
            refused(&["allow", "add", "198.18.0.0/24", "--for", "10m"]),
            "allowlist entries do not expire: --for is for the denylist"
        );
    }

    #[test]
    fn each_command_asks_its_request() {
        let request = |args: &[&str]| call(args).expect("valid").request;
        assert_eq!(request(&["stats"]), Request::Stats);
        assert_eq!(request(&["top", "--limit", "3"]), Request::Top { limit: 3 });
        assert_eq!(request(&["blocked", "list"]), Request::BlockedList);
        assert_eq!(
            request(&["events", "--follow"]),
            Request::Events { follow: true }
        );
        assert_eq!(request(&["reload"]), Request::Reload);
        assert_eq!(
            request(&["deny", "list"]),
            Request::ListShow {
                list: ListKind::Deny
            }
        );
        let list_file = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/config_corpus/lists/good-allow.txt")
            .display()
            .to_string();
        match request(&["deny", "load", &list_file, "--for", "1h"]) {
            Request::ListAdd {
                list: ListKind::Deny,
                prefixes,
                for_ms: Some(3_600_000),
            } => assert_eq!(prefixes.len(), 2),
            other => panic!("{other:?}"),
        }
        let json = call(&["limits", "show", "--json"]).expect("valid");
        assert!(json.json);
    }
}
