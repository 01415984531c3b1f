//! What the commands print for people: each response as text, by `Display`, so the tests
//! can read it. `--json` prints the responses as they are (`serde_json`), not through here.
//! Values are printed through the limits' vocabulary ([`Setting::show`]) and the one
//! `Display` of [`Rate`].

use std::{
    fmt::{self, Display, Formatter},
    time::Duration,
};

use crate::{
    config::DaemonFile,
    control::{
        DEFAULT_RUN_DIR, EventKind, EventRecord, LimitsView, ListEntryView, Response, RuleView,
        SourceView, StatsView, SynProtectView,
    },
    limits::{ClassName, FilterMode, Rate, ScopeName, Setting, Value},
    lists::ListKind,
};

/// A response from the daemon, as the command that asked prints it.
pub struct ResponseText<'a> {
    /// The response.
    pub response: &'a Response,
    /// Whether the sources listed are the blocked ones (`blocked list`), not the busiest.
    pub blocked_only: bool,
}

impl Display for ResponseText<'_> {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        match self.response {
            Response::Limits(view) => LimitsTable(view).fmt(f),
            Response::Stats(view) => StatsTable(view).fmt(f),
            Response::Sources { mode, sources } => SourcesTable {
                sources,
                mode: *mode,
                blocked_only: self.blocked_only,
            }
            .fmt(f),
            Response::Unblocked { addr } => writeln!(f, "unblocked {addr}"),
            Response::SynProtect(view) => SynProtectText(view).fmt(f),
            Response::Baseline(view) => view.fmt(f),
            Response::Attacks(view) => view.fmt(f),
            Response::AttackFrames { id, frames } => {
                writeln!(f, "attack {id}: {} samples kept", frames.len())
            }
            Response::ListChanged {
                list,
                added,
                updated,
                unchanged,
                removed,
            } => {
                if *removed > 0 {
                    writeln!(f, "{list}: removed {removed}")
                } else {
                    writeln!(
                        f,
                        "{list}: added {added}, updated {updated}, unchanged {unchanged}"
                    )
                }
            }
            Response::ListEntries { list, entries } => ListTable {
                list: *list,
                entries,
            }
            .fmt(f),
            Response::Events { events } => events.iter().try_for_each(|e| EventLine(e).fmt(f)),
            Response::Reloaded { changes } => {
                if changes.is_empty() {
                    writeln!(f, "reloaded: the config is unchanged")?;
                }
                changes
                    .iter()
                    .try_for_each(|line| writeln!(f, "reloaded: {line}"))
            }
            Response::RulesChanged {
                added,
                removed,
                kept,
            } => {
                for id in added {
                    writeln!(f, "added rule {id}")?;
                }
                for id in removed {
                    writeln!(f, "removed rule {id}")?;
                }
                for id in kept {
                    writeln!(
                        f,
                        "kept rule {id} as your own: the daemon no longer withdraws it"
                    )?;
                }
                Ok(())
            }
            Response::Rules { rules } => RulesTable(rules).fmt(f),
            Response::RuleTest { packet, rule } => match rule {
                Some(r) => writeln!(
                    f,
                    "`{packet}` meets rule {} (priority {}): {}",
                    r.id, r.priority, r.rule
                ),
                None => writeln!(
                    f,
                    "`{packet}` meets no rule: the denylist, blocks and limits decide"
                ),
            },
            Response::Upstream(_)
            | Response::UpstreamAnnounced { .. }
            | Response::UpstreamWithdrawn { .. } => upstream_text(self.response, f),
            Response::Error { message } => writeln!(f, "error: {message}"),
        }
    }
}

/// `limits show`: the settings that are not per class or scope, one a line, then the
/// prefix scopes and the classes as tables.
pub struct LimitsTable<'a>(pub &'a LimitsView);

impl Display for LimitsTable<'_> {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        let limits = &self.0.limits;
        writeln!(f, "{:<14} {}", "interface", self.0.iface)?;
        // The classes that monitor are shown in the class table.
        for setting in Setting::SCALARS
            .into_iter()
            .filter(|s| *s != Setting::MonitorClasses)
        {
            writeln!(f, "{:<14} {}", setting.label(), setting.show(limits))?;
        }
        for scope in ScopeName::ALL {
            write!(
                f,
                "prefix {:<7} {:<4} {}, {}",
                scope.to_string(),
                Setting::PrefixLen(scope).show(limits),
                Setting::PrefixPps(scope).show(limits),
                Setting::PrefixBps(scope).show(limits),
            )?;
            for class in ClassName::ALL {
                let setting = Setting::PrefixClassPps(scope, class);
                if let Value::Rate(rate @ Rate::PerSecond(_)) = setting.get(limits) {
                    write!(f, ", {class} {rate}")?;
                }
            }
            writeln!(f)?;
        }
        writeln!(
            f,
            "{:<14} {:>22} {:>26}  mode",
            "class",
            Setting::ClassPps(ClassName::Syn).label(),
            Setting::Ceiling(ClassName::Syn).label()
        )?;
        for class in ClassName::ALL {
            let class_mode = if limits.monitor_classes[class.index()] {
                FilterMode::Monitor
            } else {
                limits.mode
            };
            writeln!(
                f,
                "{:<14} {:>22} {:>26}  {class_mode}",
                class.to_string(),
                Setting::ClassPps(class).show(limits),
                Setting::Ceiling(class).show(limits),
            )?;
        }
        Ok(())
    }
}

/// `stats` of one interface (or of the total of several).
pub struct StatsTable<'a>(pub &'a StatsView);

impl Display for StatsTable<'_> {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        let view = self.0;
        writeln!(
            f,
            "interface {} ({} mode), up {}, rates over the last {:.1}s",
            view.iface,
            view.xdp_mode,
            humantime::format_duration(Duration::from_secs(view.uptime_secs)),
            view.interval_secs
        )?;
        writeln!(
            f,
            "{:<20} {:>14} {:>16} {:>12} {:>14}",
            "outcome", "packets", "bytes", "packets/s", "bit/s"
        )?;
        for o in &view.outcomes {
            writeln!(
                f,
                "{:<20} {:>14} {:>16} {:>12.0} {:>14.0}",
                o.outcome, o.packets, o.bytes, o.pps, o.bps
            )?;
        }
        let dropped: u64 = view
            .outcomes
            .iter()
            .filter(|o| o.dropped)
            .map(|o| o.packets)
            .sum();
        let total: u64 = view.outcomes.iter().map(|o| o.packets).sum();
        writeln!(
            f,
            "dropped {dropped} of {total} packets; block events lost: {}",
            view.events_lost
        )?;
        let t = view.table;
        writeln!(
            f,
            "source table: capacity {}, {} inserted, {} evicted (at least), {} inserts refused",
            t.capacity, t.inserts, t.evictions, t.insert_failures
        )?;
        let syn: Vec<String> = view
            .syn
            .counters
            .iter()
            .map(|(name, count)| format!("{name} {count}"))
            .collect();
        writeln!(f, "syn-protect: {}; {}", view.syn.protect, syn.join(", "))?;
        writeln!(f, "by class (outcomes with packets):")?;
        for class in &view.classes {
            let seen: Vec<String> = class
                .outcomes
                .iter()
                .filter(|o| o.packets > 0)
                .map(|o| format!("{} {} ({:.0}/s)", o.outcome, o.packets, o.pps))
                .collect();
            if !seen.is_empty() {
                writeln!(f, "  {:<9} {}", class.class, seen.join(", "))?;
            }
        }
        Ok(())
    }
}

/// `top` and `blocked list`.
pub struct SourcesTable<'a> {
    /// The sources.
    pub sources: &'a [SourceView],
    /// The mode: in monitor mode a blocked source is only marked.
    pub mode: FilterMode,
    /// Whether these are the blocked sources.
    pub blocked_only: bool,
}

impl Display for SourcesTable<'_> {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        if self.sources.is_empty() {
            let what = if self.blocked_only {
                "blocked"
            } else {
                "tracked"
            };
            return writeln!(f, "no {what} sources");
        }
        writeln!(
            f,
            "{:<40} {:>12} {:>14}  state",
            "source", "packets/s", "bit/s"
        )?;
        for s in self.sources {
            let under = match (&s.rule, &s.fleet) {
                (Some(id), _) => format!(" under rule {id}"),
                (None, Some(node)) => format!(" by the fleet (node {node}, denylist)"),
                (None, None) => String::new(),
            };
            let state = match s.blocked_remaining_ms {
                Some(ms) if self.mode == FilterMode::Monitor => {
                    format!(
                        "would be blocked{under} (monitor mode), {}s left",
                        ms.div_ceil(1000)
                    )
                }
                Some(ms) => format!("blocked{under}, {}s left", ms.div_ceil(1000)),
                None => "tracked".to_owned(),
            };
            // A rule's block counts no rate (only the rule's own packets are dropped), nor
            // does a peer's, which this node has not measured.
            let (pps, bps) = if s.rule.is_some() || s.fleet.is_some() {
                ("-".to_owned(), "-".to_owned())
            } else {
                (format!("{:.0}", s.pps), format!("{:.0}", s.bps))
            };
            writeln!(f, "{:<40} {pps:>12} {bps:>14}  {state}", s.addr.to_string())?;
        }
        Ok(())
    }
}

/// `allow list` and `deny list`.
pub struct ListTable<'a> {
    /// Which list.
    pub list: ListKind,
    /// Its entries.
    pub entries: &'a [ListEntryView],
}

impl Display for ListTable<'_> {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        if self.entries.is_empty() {
            return writeln!(f, "the {} is empty", self.list);
        }
        writeln!(
            f,
            "{:<44} {:>14} {:>16}  expires",
            "prefix", "hit packets", "hit bytes"
        )?;
        for e in self.entries {
            let expires = e.expires_in_ms.map_or_else(
                || "never".to_owned(),
                |ms| {
                    let left = Duration::from_secs(ms.div_ceil(1000));
                    format!("in {}", humantime::format_duration(left))
                },
            );
            let origin = e
                .origin
                .as_ref()
                .map_or_else(String::new, |node| format!("  (fleet: {node})"));
            writeln!(
                f,
                "{:<44} {:>14} {:>16}  {expires}{origin}",
                e.prefix.to_string(),
                e.hit_packets,
                e.hit_bytes
            )?;
        }
        Ok(())
    }
}

/// `rules list` and `rules show`.
pub struct RulesTable<'a>(pub &'a [RuleView]);

impl Display for RulesTable<'_> {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        if self.0.is_empty() {
            return writeln!(f, "no rules");
        }
        writeln!(
            f,
            "{:>5} {:>5} {:>14} {:>14} {:>14}  {:<12} rule",
            "id", "prio", "matched", "dropped", "passed", "last match"
        )?;
        for r in self.0 {
            let last = r
                .last_match_ms_ago
                .map_or_else(|| "never".to_owned(), |ms| format!("{}s ago", ms / 1000));
            let mut notes = Vec::new();
            if let Some(ms) = r.expires_in_ms {
                let left = Duration::from_secs(ms.div_ceil(1000));
                notes.push(format!("expires in {}", humantime::format_duration(left)));
            }
            if let Some(comment) = &r.comment {
                notes.push(format!("# {comment}"));
            }
            match r.origin {
                crate::rules::Origin::Config => notes.push("(config)".to_owned()),
                crate::rules::Origin::Signature => notes.push("(signature)".to_owned()),
                crate::rules::Origin::Fleet => notes.push("(fleet)".to_owned()),
                crate::rules::Origin::Cli => {}
            }
            writeln!(
                f,
                "{:>5} {:>5} {:>14} {:>14} {:>14}  {last:<12} {}{}{}",
                r.id,
                r.priority,
                r.matched_packets,
                r.dropped_packets,
                r.passed_packets,
                r.rule,
                if notes.is_empty() { "" } else { "  " },
                notes.join("  ")
            )?;
        }
        Ok(())
    }
}

/// `syn-protect show`.
pub struct SynProtectText<'a>(pub &'a SynProtectView);

impl Display for SynProtectText<'_> {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        let v = self.0;
        let ports: Vec<String> = v.active_ports.iter().map(u16::to_string).collect();
        let now = if ports.is_empty() {
            "no port".to_owned()
        } else {
            format!("port(s) {}", ports.join(","))
        };
        writeln!(f, "syn-protect {}: cookies from XDP for {now}", v.setting)?;
        if let Some(why) = &v.unavailable {
            writeln!(f, "  unavailable: {why}")?;
        }
        let sysctl = v
            .tcp_syncookies
            .map_or_else(|| "unknown".to_owned(), |n| n.to_string());
        writeln!(f, "  net.ipv4.tcp_syncookies = {sysctl}")?;
        if let (Some(v4), Some(v6)) = (v.mss_v4, v.mss_v6) {
            writeln!(
                f,
                "  SYN-ACKs: MSS {v4} (IPv4) / {v6} (IPv6), no timestamp, at most {}; \
                 cookie admissions at most {}",
                v.cookie_rate, v.verified_rate
            )?;
        }
        writeln!(
            f,
            "  auto: turned on {}, off {} times",
            v.auto_on, v.auto_off
        )?;
        for (name, count) in &v.counters {
            writeln!(f, "  {name:<28} {count}")?;
        }
        Ok(())
    }
}

/// One event of `events`, as a line.
pub struct EventLine<'a>(pub &'a EventRecord);

impl Display for EventLine<'_> {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        let kind = match self.0.kind {
            EventKind::Block => "block",
            EventKind::Unblock => "unblock",
            EventKind::ListHits => "list-hit",
            EventKind::EventsLost => "lost",
            EventKind::ListChange => "list-change",
            EventKind::SynProtect => "syn-protect",
            EventKind::Rule => "rule",
            EventKind::Attack => "attack",
        };
        writeln!(f, "{}  {kind:<11} {}", self.0.time, self.0.message)
    }
}

/// `config check`: what the file sets, in the words of `limits show`.
pub struct ConfigSummary<'a>(pub &'a DaemonFile);

impl Display for ConfigSummary<'_> {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        let config = self.0;
        writeln!(f, "{}: valid", config.path.display())?;
        let interfaces: Vec<String> = config
            .interfaces
            .iter()
            .map(|i| format!("{} (xdp {})", i.name, i.xdp_mode))
            .collect();
        LimitsTable(&LimitsView::new(interfaces.join(", "), config.limits)).fmt(f)?;
        writeln!(
            f,
            "capacities     {} sources, {} prefixes, {} entries per list and family",
            config.max_sources, config.max_prefixes, config.list_capacity
        )?;
        match config.metrics_addr {
            Some(addr) => writeln!(f, "metrics        http://{addr}/metrics")?,
            None => writeln!(f, "metrics        off")?,
        }
        let group = |g: &Option<crate::config::GroupRef>| {
            g.as_ref()
                .map_or_else(|| "none".to_owned(), ToString::to_string)
        };
        writeln!(
            f,
            "groups         admin {}; read-only {}",
            group(&config.admin_group),
            group(&config.read_group)
        )?;
        match &config.run_dir {
            Some(dir) => writeln!(f, "run dir        {}", dir.display())?,
            None => writeln!(f, "run dir        {DEFAULT_RUN_DIR} (default)")?,
        }
        for (name, list) in [("allow", &config.allow), ("deny", &config.deny)] {
            let v4 = list.iter().filter(|p| p.addr().is_ipv4()).count();
            let noun = if list.len() == 1 {
                "prefix"
            } else {
                "prefixes"
            };
            writeln!(
                f,
                "{name:<14} {} {noun} ({v4} IPv4, {} IPv6)",
                list.len(),
                list.len() - v4
            )?;
        }
        match &config.upstream {
            Some(u) => writeln!(
                f,
                "upstream       GoBGP at {}, {}, protected {}",
                u.gobgp_api,
                if u.dry_run {
                    "dry run (nothing is sent)"
                } else {
                    "announcing"
                },
                u.protected
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join(", ")
            )?,
            None => writeln!(f, "upstream       off")?,
        }
        match &config.fleet {
            Some(fleet) => writeln!(
                f,
                "fleet          node {} through {} (bucket {}), {}",
                fleet.node,
                fleet.broker,
                fleet.bucket,
                match &fleet.sign_in {
                    crate::fleet::SignIn::Anonymous => "no sign-in".to_owned(),
                    crate::fleet::SignIn::Password { user, .. } =>
                        format!("signs in as {user} (password from its file)"),
                    crate::fleet::SignIn::Token(_) =>
                        "signs in with a token (from its file)".to_owned(),
                }
            )?,
            None => writeln!(f, "fleet          off")?,
        }
        for prefix in config.shadowed_deny_entries() {
            writeln!(
                f,
                "note: deny {prefix} is covered by the allowlist, which wins"
            )?;
        }
        Ok(())
    }
}

/// `upstream show`: the speaker, then the announcements.
pub struct UpstreamText<'a>(pub &'a crate::upstream::UpstreamView);

impl Display for UpstreamText<'_> {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        let v = self.0;
        let protected: Vec<String> = v.protected.iter().map(ToString::to_string).collect();
        writeln!(f, "speaker      {}", v.gobgp_api)?;
        match (&v.speaker.error, v.speaker.reachable) {
            (Some(e), false) => writeln!(f, "state        unreachable: {e}")?,
            (Some(e), true) => writeln!(f, "state        reachable, last change failed: {e}")?,
            (None, true) => writeln!(f, "state        reachable")?,
            (None, false) => writeln!(f, "state        not read yet")?,
        }
        writeln!(
            f,
            "dry run      {}",
            if v.dry_run {
                "yes: nothing is sent"
            } else {
                "no"
            }
        )?;
        writeln!(f, "protected    {}", protected.join(", "))?;
        writeln!(
            f,
            "routes       {} of at most {}",
            v.announcements.len(),
            v.max_routes
        )?;
        if v.speaker.foreign_routes > 0 {
            writeln!(
                f,
                "foreign      {} routes at the speaker that floodwall did not ask for (left alone)",
                v.speaker.foreign_routes
            )?;
        }
        if !v.refused.is_empty() {
            let refused: Vec<String> = v.refused.iter().map(|(k, n)| format!("{k} {n}")).collect();
            writeln!(
                f,
                "refused      {} (by safety rule, since the start)",
                refused.join(", ")
            )?;
        }
        for held in &v.held_back {
            writeln!(
                f,
                "held back    {} ({}): by {}, tried again each second",
                held.route, held.origin, held.by
            )?;
        }
        if v.announcements.is_empty() {
            return writeln!(f, "no announcements");
        }
        writeln!(
            f,
            "{:>4}  {:<11}  {:>8}  {:<9}  route",
            "id", "state", "ends in", "origin"
        )?;
        for a in &v.announcements {
            let state = serde_json::to_value(a.state)
                .ok()
                .and_then(|s| s.as_str().map(str::to_owned))
                .unwrap_or_default();
            writeln!(
                f,
                "{:>4}  {:<11}  {:>7}s  {:<9}  {}",
                a.id, state, a.expires_in_s, a.origin, a.route
            )?;
        }
        Ok(())
    }
}

/// The upstream responses.
fn upstream_text(response: &Response, f: &mut Formatter<'_>) -> fmt::Result {
    match response {
        Response::Upstream(view) => UpstreamText(view).fmt(f),
        Response::UpstreamAnnounced {
            id,
            route,
            dry_run,
            note,
        } => {
            writeln!(f, "announcement {id}: {route}")?;
            if *dry_run {
                writeln!(
                    f,
                    "dry run: computed and shown, not sent (upstream.dry_run)"
                )?;
            }
            match note {
                Some(note) => writeln!(f, "WARNING: {note}"),
                None => Ok(()),
            }
        }
        Response::UpstreamWithdrawn { ids } => ids
            .iter()
            .try_for_each(|id| writeln!(f, "withdrawing announcement {id} (after its hold time)")),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::limits::{Limits, LimitsChange};

    #[test]
    fn limits_show_prints_every_setting_with_its_unit() {
        let mut change = LimitsChange::default();
        change.set(Setting::Pps, Value::Rate(Rate::PerSecond(500)));
        change.set(
            Setting::PrefixClassPps(ScopeName::V4, ClassName::Syn),
            Value::Rate(Rate::PerSecond(2_000)),
        );
        change.set(Setting::MonitorClasses, {
            let mut set = [false; filter_common::CLASSES];
            set[ClassName::Udp.index()] = true;
            Value::Classes(set)
        });
        let limits = Limits::default().apply(&change).expect("valid");
        let text = LimitsTable(&LimitsView::new("eth0".into(), limits)).to_string();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines[..6],
            [
                "interface      eth0",
                "packet rate    500 packets/s",
                "packet burst   auto (500 packets)",
                "bit rate       unlimited",
                "byte burst     -",
                "block for      1m",
            ]
        );
        assert!(
            text.contains("prefix v4      /24  unlimited, unlimited, syn 2000/s\n"),
            "{text}"
        );
        assert!(
            text.contains(
                "\nudp                         unlimited           100000 packets/s  monitor\n"
            ),
            "a monitored class says so: {text}"
        );
    }

    #[test]
    fn sources_say_blocked_or_would_be_blocked() {
        let source = SourceView {
            addr: "198.18.0.9".parse().expect("addr"),
            pps: 1_500.4,
            bps: 768_000.0,
            blocked: true,
            blocked_remaining_ms: Some(59_001),
            rule: None,
            fleet: None,
        };
        let table = |mode| {
            SourcesTable {
                sources: std::slice::from_ref(&source),
                mode,
                blocked_only: true,
            }
            .to_string()
        };
        assert!(
            table(FilterMode::Enforce).ends_with("1500         768000  blocked, 60s left\n"),
            "{}",
            table(FilterMode::Enforce)
        );
        assert!(table(FilterMode::Monitor).contains("would be blocked (monitor mode), 60s left"));
        let none = SourcesTable {
            sources: &[],
            mode: FilterMode::Enforce,
            blocked_only: false,
        };
        assert_eq!(none.to_string(), "no tracked sources\n");
    }

    #[test]
    fn responses_print_one_line_per_change() {
        let text = |response: Response| {
            ResponseText {
                response: &response,
                blocked_only: false,
            }
            .to_string()
        };
        assert_eq!(
            text(Response::Reloaded {
                changes: vec!["limits.pps: 10000/s -> 5000/s".into()]
            }),
            "reloaded: limits.pps: 10000/s -> 5000/s\n"
        );
        assert_eq!(
            text(Response::Reloaded { changes: vec![] }),
            "reloaded: the config is unchanged\n"
        );
        assert_eq!(
            text(Response::ListChanged {
                list: ListKind::Deny,
                added: 2,
                updated: 0,
                unchanged: 1,
                removed: 0,
            }),
            "denylist: added 2, updated 0, unchanged 1\n"
        );
        let event = EventRecord {
            time: "2026-01-01T00:00:00Z".into(),
            kind: EventKind::ListChange,
            subject: None,
            message: "denylist: 1 removed".into(),
        };
        assert_eq!(
            EventLine(&event).to_string(),
            "2026-01-01T00:00:00Z  list-change denylist: 1 removed\n"
        );
    }

    #[test]
    fn config_check_summarizes_the_file() {
        let file = crate::config::parse(
            Path::new("/etc/floodwall/floodwall.toml"),
            "[[interface]]\nname = \"eth0\"\n[allow]\nprefixes = [\"198.18.0.0/16\"]\n\
             [deny]\nprefixes = [\"198.18.7.0/24\", \"2001:2::/48\"]\n",
        )
        .expect("valid");
        let text = ConfigSummary(&file).to_string();
        for expected in [
            "/etc/floodwall/floodwall.toml: valid\n",
            "interface      eth0 (xdp auto)\n",
            "allow          1 prefix (1 IPv4, 0 IPv6)\n",
            "deny           2 prefixes (1 IPv4, 1 IPv6)\n",
            "note: deny 198.18.7.0/24 is covered by the allowlist, which wins\n",
        ] {
            assert!(text.contains(expected), "`{expected}` in:\n{text}");
        }
    }
}
