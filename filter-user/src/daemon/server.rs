//! The control server: accepts connections on an interface's control socket, reads one
//! request, checks it against the peer's credentials, and answers it (the protocol is
//! [`crate::control`]).

use std::{net::IpAddr, sync::Arc, time::Duration};

use anyhow::{Context as _, anyhow, bail};
use filter_common::Class;
use log::info;
use tokio::{
    io::{AsyncBufReadExt as _, AsyncReadExt as _, AsyncWriteExt as _, BufReader},
    net::{
        UnixListener, UnixStream,
        unix::{OwnedReadHalf, OwnedWriteHalf},
    },
    sync::{broadcast, oneshot},
};

use super::{Shared, lock, syn};
use crate::{
    control::{
        ClassStats, EventKind, EventRecord, LimitsView, MAX_REQUEST_BYTES, NOTHING_TO_CHANGE,
        Request, Response, RuleRequest, SourceView, StatsView, SynStatsView, TableStats, peer_of,
    },
    limits::{Limits, LimitsChange},
    lists::{self, ListKind, Prefix},
    maps::monotonic_now_ns,
    rules::{self, NewRule},
    stats::{outcome_stats, source_view, top_sources},
    syn::SynProtectChange,
    traffic::view::{AttacksView, BaselineView},
};

/// Accepts connections until the listener fails; each is served on its own task.
pub(super) async fn serve(listener: UnixListener, shared: Arc<Shared>) -> anyhow::Result<()> {
    loop {
        let (stream, _) = listener
            .accept()
            .await
            .context("control socket accept failed")?;
        let shared = Arc::clone(&shared);
        tokio::spawn(async move {
            if let Err(e) = serve_connection(stream, shared).await {
                log::debug!("control connection: {e:#}");
            }
        });
    }
}

/// What a request is answered with.
#[expect(
    clippy::large_enum_variant,
    reason = "one short-lived answer per connection"
)]
enum Answer {
    /// One response line, then the connection closes.
    One(Response),
    /// The journal, then every new event, until the client goes away.
    Follow(Vec<EventRecord>, broadcast::Receiver<EventRecord>),
}

async fn serve_connection(stream: UnixStream, shared: Arc<Shared>) -> anyhow::Result<()> {
    let peer = peer_of(&stream)?;
    let (read, mut write) = stream.into_split();
    let answer = match read_request(read).await {
        Err(message) => Answer::One(Response::Error { message }),
        Ok(request) => {
            let allowed = lock(&shared.access).check(&peer, &request);
            match allowed {
                Err(message) => Answer::One(Response::Error { message }),
                Ok(()) => respond(&shared, request).await,
            }
        }
    };
    match answer {
        Answer::One(response) => send(&mut write, &response).await,
        Answer::Follow(backlog, followers) => follow_events(write, backlog, followers).await,
    }
}

/// Reads the one request line of a connection; the error is the response's message.
async fn read_request(read: OwnedReadHalf) -> Result<Request, String> {
    let mut reader = BufReader::new(read.take(MAX_REQUEST_BYTES as u64 + 1));
    let mut line = String::new();
    match reader.read_line(&mut line).await {
        Err(e) => Err(format!("cannot read the request: {e}")),
        Ok(_) if line.len() > MAX_REQUEST_BYTES => {
            Err(format!("request longer than {MAX_REQUEST_BYTES} bytes"))
        }
        Ok(_) => serde_json::from_str(&line).map_err(|e| format!("invalid request: {e}")),
    }
}

async fn send(write: &mut OwnedWriteHalf, response: &Response) -> anyhow::Result<()> {
    let mut out = serde_json::to_string(response).context("cannot encode the response")?;
    out.push('\n');
    write
        .write_all(out.as_bytes())
        .await
        .context("cannot send the response")
}

/// Answers one request that the peer may make.
async fn respond(shared: &Arc<Shared>, request: Request) -> Answer {
    let response = match request {
        Request::LimitsShow => Ok(Response::Limits(limits_view(shared, &lock(&shared.limits)))),
        Request::LimitsSet { change } => blocking(shared, move |s| set_limits(s, &change)).await,
        Request::Stats => blocking(shared, stats).await,
        Request::Top { limit } => blocking(shared, move |s| top(s, limit)).await,
        Request::BlockedList => blocking(shared, blocked).await,
        Request::BlockedRemove { addr } => blocking(shared, move |s| unblock(s, addr)).await,
        Request::ListAdd {
            list,
            prefixes,
            for_ms,
        } => blocking(shared, move |s| list_add(s, list, &prefixes, for_ms)).await,
        Request::ListRemove { list, prefixes } => {
            blocking(shared, move |s| list_remove(s, list, &prefixes)).await
        }
        Request::ListShow { list } => blocking(shared, move |s| list_show(s, list)).await,
        Request::Events { follow } => {
            let (backlog, followers) = lock(&shared.blocks).subscribe();
            if follow {
                return Answer::Follow(backlog, followers);
            }
            Ok(Response::Events { events: backlog })
        }
        Request::Reload => reload(shared).await,
        Request::Baseline => Ok(Response::Baseline(BaselineView::new(&lock(
            &shared.detector,
        )))),
        Request::Attacks => {
            let detector = lock(&shared.detector);
            Ok(Response::Attacks(AttacksView {
                mode: detector.config.mode,
                attacks: detector.attacks().to_vec(),
            }))
        }
        Request::AttackFrames { id } => {
            let detector = lock(&shared.detector);
            match detector.frames(id) {
                Some(frames) => Ok(Response::AttackFrames {
                    id,
                    frames: frames.to_vec(),
                }),
                None => Err(anyhow::anyhow!(
                    "no attack {id} in the record (`floodwall attacks` lists the attacks kept)"
                )),
            }
        }
        Request::SynProtectShow => {
            blocking(shared, |s| Ok(Response::SynProtect(syn::view(s)?))).await
        }
        Request::SynProtectChange { change } => {
            blocking(shared, move |s| set_syn_protect(s, &change)).await
        }
        Request::RulesAdd { rules } => match new_rules(&rules) {
            Ok(new) => blocking(shared, move |s| super::rules::add(s, &new)).await,
            Err(e) => Err(e),
        },
        Request::RulesRemove { ids } => {
            blocking(shared, move |s| super::rules::remove(s, &ids)).await
        }
        Request::RulesKeep { ids, for_ms } => {
            blocking(shared, move |s| super::rules::keep(s, &ids, for_ms)).await
        }
        Request::RulesList => blocking(shared, |s| super::rules::list(s, None)).await,
        Request::RulesShow { id } => {
            blocking(shared, move |s| super::rules::list(s, Some(id))).await
        }
        Request::RulesTest { packet } => {
            blocking(shared, move |s| super::rules::test(s, &packet)).await
        }
        Request::UpstreamShow => super::upstream::show(shared),
        Request::UpstreamAnnounce {
            rule,
            rule_id,
            blackhole,
            to,
            for_ms,
        } => upstream_announce(shared, rule, rule_id, blackhole, to, for_ms).await,
        Request::UpstreamWithdraw { ids } => {
            blocking(shared, move |s| super::upstream::withdraw(s, &ids)).await
        }
        Request::RulesTestFrame { frame } => {
            blocking(shared, move |s| super::rules::test_frame(s, &frame)).await
        }
    };
    Answer::One(response.unwrap_or_else(|e| Response::Error {
        message: format!("{e:#}"),
    }))
}

/// `upstream announce`: exactly one thing to announce.
async fn upstream_announce(
    shared: &Arc<Shared>,
    rule: Option<String>,
    rule_id: Option<u32>,
    blackhole: Option<std::net::IpAddr>,
    to: Option<crate::lists::Prefix>,
    for_ms: Option<u64>,
) -> anyhow::Result<Response> {
    use super::upstream::AnnounceWhat;
    let what = match (rule, rule_id, blackhole) {
        (Some(text), None, None) => AnnounceWhat::Rule(text),
        (None, Some(id), None) => AnnounceWhat::RuleId(id),
        (None, None, Some(addr)) => AnnounceWhat::Blackhole(addr),
        _ => bail!("announce exactly one of: a rule's text, `--rule ID`, `--blackhole ADDR`"),
    };
    blocking(shared, move |s| {
        super::upstream::announce(s, what, to, for_ms)
    })
    .await
}

/// The rules of a request, parsed; an error names the rule (by its place) and the problem.
fn new_rules(requests: &[RuleRequest]) -> anyhow::Result<Vec<NewRule>> {
    requests
        .iter()
        .enumerate()
        .map(|(i, r)| {
            let spec = r.rule.parse().map_err(|e| {
                if requests.len() == 1 {
                    anyhow!("`{}`: {e}", r.rule)
                } else {
                    anyhow!("rule {} of {} (`{}`): {e}", i + 1, requests.len(), r.rule)
                }
            })?;
            Ok(NewRule {
                spec,
                priority: r.priority.unwrap_or(rules::DEFAULT_PRIORITY),
                comment: r.comment.clone(),
                for_ms: r.for_ms,
                origin: rules::Origin::Cli,
            })
        })
        .collect()
}

/// Runs `handler` on a blocking thread: table walks and map reads take a while.
async fn blocking(
    shared: &Arc<Shared>,
    handler: impl FnOnce(&Shared) -> anyhow::Result<Response> + Send + 'static,
) -> anyhow::Result<Response> {
    let shared = Arc::clone(shared);
    tokio::task::spawn_blocking(move || handler(&shared))
        .await
        .unwrap_or_else(|e| Err(anyhow!("request handler failed: {e}")))
}

/// Hands the reload to the reload task and waits for its outcome.
async fn reload(shared: &Shared) -> anyhow::Result<Response> {
    let (reply, answer) = oneshot::channel();
    if shared.reload.send(reply).await.is_err() {
        bail!("the daemon is shutting down");
    }
    match answer.await {
        Ok(Ok(changes)) => Ok(Response::Reloaded { changes }),
        Ok(Err(message)) => bail!("{message}"),
        Err(_) => bail!("the reload was abandoned"),
    }
}

/// Streams the journal, then each new event, one response line each, until the client
/// goes away.
async fn follow_events(
    mut write: OwnedWriteHalf,
    backlog: Vec<EventRecord>,
    mut followers: broadcast::Receiver<EventRecord>,
) -> anyhow::Result<()> {
    use broadcast::error::RecvError;
    let mut events = backlog;
    loop {
        if send(&mut write, &Response::Events { events })
            .await
            .is_err()
        {
            return Ok(()); // the follower went away
        }
        events = match followers.recv().await {
            Ok(event) => vec![event],
            Err(RecvError::Lagged(skipped)) => vec![EventRecord::now(
                EventKind::EventsLost,
                None,
                format!("{skipped} events skipped: this follower read too slowly"),
            )],
            Err(RecvError::Closed) => return Ok(()),
        };
    }
}

fn set_limits(shared: &Shared, change: &LimitsChange) -> anyhow::Result<Response> {
    if change.is_empty() {
        bail!("{NOTHING_TO_CHANGE}");
    }
    let mut limits = lock(&shared.limits);
    let next = limits.apply(change)?;
    shared.maps.write_limits(&next.to_kernel())?;
    let changes: Vec<String> = limits
        .differences(&next)
        .iter()
        .map(|(setting, from, to)| format!("{setting} {from} -> {to}"))
        .collect();
    info!("limits changed on {}: {}", shared.iface, changes.join(", "));
    *limits = next;
    Ok(Response::Limits(limits_view(shared, &next)))
}

/// `floodwall syn-protect set|add|remove|off|auto`: all or nothing.
fn set_syn_protect(shared: &Shared, change: &SynProtectChange) -> anyhow::Result<Response> {
    let current = lock(&shared.syn).setting().clone();
    let next = change.apply(&current).map_err(|e| anyhow!(e))?;
    if next != current {
        syn::apply(shared, next.clone())?;
        info!(
            "syn-protect changed on {}: {current} -> {next}",
            shared.iface
        );
    }
    Ok(Response::SynProtect(syn::view(shared)?))
}

fn stats(shared: &Shared) -> anyhow::Result<Response> {
    let current = shared.maps.sample()?;
    let previous = lock(&shared.samples).1;
    // Rates over the last sampling interval: between the sampler's last sample and now (or
    // its last two, if the last one is very recent).
    let (cur, prev) = match previous {
        Some(p) if current.at_ns.saturating_sub(p.at_ns) >= 200_000_000 => (current, Some(p)),
        _ => {
            let samples = lock(&shared.samples);
            (samples.1.unwrap_or(current), samples.0)
        }
    };
    #[expect(clippy::cast_precision_loss, reason = "seconds for display")]
    let interval_secs = prev.map_or(0.0, |p| cur.at_ns.saturating_sub(p.at_ns) as f64 / 1e9);
    // Totals are as of now, rates as of the interval.
    let outcomes = outcome_stats(&current, &cur, prev.as_ref(), None);
    let classes = Class::ALL
        .iter()
        .map(|&class| ClassStats {
            class: class.name().to_owned(),
            outcomes: outcome_stats(&current, &cur, prev.as_ref(), Some(class)),
        })
        .collect();
    let counts = shared.maps.table_stats()?;
    Ok(Response::Stats(StatsView {
        classes,
        iface: shared.iface.clone(),
        xdp_mode: shared.attach_mode.to_string(),
        uptime_secs: shared.started.elapsed().as_secs(),
        interval_secs,
        outcomes,
        events_lost: shared.maps.events_lost()?,
        table: TableStats {
            capacity: shared.max_sources,
            inserts: counts.inserts,
            insert_failures: counts.insert_failures,
            evictions: counts.evictions,
        },
        syn: SynStatsView {
            protect: lock(&shared.syn).describe(),
            counters: super::syn_counters(shared)?
                .into_iter()
                .map(|(name, count)| (name.to_owned(), count))
                .collect(),
        },
    }))
}

fn top(shared: &Shared, limit: usize) -> anyhow::Result<Response> {
    Ok(Response::Sources {
        mode: lock(&shared.limits).mode,
        sources: top_sources(source_views(shared)?, limit),
    })
}

fn blocked(shared: &Shared) -> anyhow::Result<Response> {
    let mut sources: Vec<SourceView> = source_views(shared)?
        .into_iter()
        .filter(|s| s.blocked)
        .collect();
    let now_ns = monotonic_now_ns()?;
    sources.extend(super::rules::blocked(shared, now_ns));
    if let Some(fleet) = &shared.fleet {
        sources.extend(
            fleet
                .blocks()
                .into_iter()
                .filter(|(_, _, until)| *until > now_ns)
                .map(|(prefix, node, until)| SourceView {
                    addr: prefix.addr(),
                    pps: 0.0,
                    bps: 0.0,
                    blocked: true,
                    blocked_remaining_ms: Some((until - now_ns) / 1_000_000),
                    rule: None,
                    fleet: Some(node),
                }),
        );
    }
    sources.sort_by(|a, b| (a.addr, a.rule, &a.fleet).cmp(&(b.addr, b.rule, &b.fleet)));
    Ok(Response::Sources {
        mode: lock(&shared.limits).mode,
        sources,
    })
}

fn unblock(shared: &Shared, addr: IpAddr) -> anyhow::Result<Response> {
    let key = filter_common::SourceKey::from_ip(addr);
    let now = monotonic_now_ns()?;
    let by_limits = match shared.maps.source(&key)? {
        Some(state) if state.blocked_until_ns > now => {
            shared.maps.remove_source(&key)?;
            lock(&shared.blocks).on_removed(addr, now);
            true
        }
        _ => false,
    };
    let under_rules = super::rules::unblock(shared, addr, now)?;
    if !by_limits && under_rules == 0 {
        let peer = shared.fleet.as_ref().and_then(|fleet| {
            fleet
                .blocks()
                .into_iter()
                .find(|(prefix, _, until)| prefix.addr() == addr && *until > now)
        });
        if let Some((prefix, node, _)) = peer {
            bail!(
                "{addr} is blocked by node {node} of the fleet, through the denylist: \
                 `floodwall deny remove {prefix}` ends it here until {node} blocks it again"
            );
        }
        bail!("{addr} is not blocked");
    }
    Ok(Response::Unblocked { addr })
}

fn list_add(
    shared: &Shared,
    list: ListKind,
    prefixes: &[Prefix],
    for_ms: Option<u64>,
) -> anyhow::Result<Response> {
    let expires = match for_ms {
        Some(ms) => Some(lists::expiry_after(
            monotonic_now_ns()?,
            Duration::from_millis(ms),
        )?),
        None => None,
    };
    let report = shared.lists.add(list, prefixes, expires)?;
    shared.sync_list_presence()?;
    let line = format!(
        "{list}: {} added, {} updated, {} unchanged{}",
        report.added,
        report.updated,
        report.unchanged,
        for_ms.map_or(String::new(), |ms| format!(
            ", expiring in {}",
            humantime::format_duration(Duration::from_millis(ms))
        ))
    );
    info!("{line}");
    lock(&shared.blocks).record(EventRecord::now(EventKind::ListChange, None, line));
    Ok(Response::ListChanged {
        list,
        added: report.added,
        updated: report.updated,
        unchanged: report.unchanged,
        removed: 0,
    })
}

/// `allow list`, `deny list`: the denylist's entries from the fleet name their node.
fn list_show(shared: &Shared, list: ListKind) -> anyhow::Result<Response> {
    let mut entries = shared.lists.list(list, monotonic_now_ns()?)?;
    if let (ListKind::Deny, Some(fleet)) = (list, &shared.fleet) {
        let origins = fleet.block_origins();
        for e in &mut entries {
            e.origin = origins.get(&e.prefix).cloned();
        }
    }
    Ok(Response::ListEntries { list, entries })
}

fn list_remove(shared: &Shared, list: ListKind, prefixes: &[Prefix]) -> anyhow::Result<Response> {
    let removed = shared.lists.remove(list, prefixes)?;
    shared.sync_list_presence()?;
    let line = format!("{list}: {removed} removed");
    info!("{line}");
    lock(&shared.blocks).record(EventRecord::now(EventKind::ListChange, None, line));
    Ok(Response::ListChanged {
        list,
        added: 0,
        updated: 0,
        unchanged: 0,
        removed,
    })
}

fn limits_view(shared: &Shared, limits: &Limits) -> LimitsView {
    LimitsView::new(shared.iface.clone(), *limits)
}

fn source_views(shared: &Shared) -> anyhow::Result<Vec<SourceView>> {
    let sources = shared.maps.all_sources()?;
    // After the walk (a read of the whole table, milliseconds at a million slots): a block
    // the walk saw was made before this instant, so its time left is at most its length.
    let now = monotonic_now_ns()?;
    Ok(sources
        .iter()
        .map(|(key, state)| source_view(key, state, now))
        .collect())
}
