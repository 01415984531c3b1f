//! Reloads, from SIGHUP and from `floodwall reload`: read the configuration again and apply
//! it to every protected interface, all or nothing. What was applied before a step fails is
//! undone, so a reload either changes everything it says or nothing.

use std::{collections::HashSet, sync::Arc};

use anyhow::{Context as _, anyhow, bail};
use log::{error, info};
use tokio::sync::{mpsc, oneshot};

use super::{Shared, lock};
use crate::{
    config::{DaemonConfig, Reloader},
    control::{EventKind, EventRecord},
    limits::Limits,
    lists::{ListKind, Prefix},
    maps::monotonic_now_ns,
    rules::NewRule,
    syn::SynProtect,
};

/// A reload request: answered with the changes applied, or why nothing was.
pub(super) type ReloadReply = oneshot::Sender<Result<Vec<String>, String>>;

/// Serves reloads, from SIGHUP and from `floodwall reload`, one at a time.
pub(super) async fn reload_loop(
    mut requests: mpsc::Receiver<ReloadReply>,
    sighup_tx: mpsc::Sender<ReloadReply>,
    reloader: Option<Arc<Reloader>>,
    mut current: DaemonConfig,
    protected: Vec<Arc<Shared>>,
) -> anyhow::Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut hangup = signal(SignalKind::hangup()).context("cannot handle SIGHUP")?;
    tokio::spawn(async move {
        while hangup.recv().await.is_some() {
            info!("SIGHUP: reloading the config");
            let (reply, answer) = oneshot::channel();
            if sighup_tx.send(reply).await.is_err() {
                return;
            }
            // The outcome is logged by the reload itself.
            let _ = answer.await;
        }
    });
    while let Some(reply) = requests.recv().await {
        let outcome = match &reloader {
            None => {
                Err("this daemon runs without a config file: there is nothing to reload".to_owned())
            }
            Some(reloader) => {
                let reloader = Arc::clone(reloader);
                let old = current.clone();
                let protected = protected.clone();
                tokio::task::spawn_blocking(move || {
                    let next = reloader()?;
                    let targets: Vec<&Shared> = protected.iter().map(AsRef::as_ref).collect();
                    let changes = apply_reload(&targets, &old, &next)?;
                    reloaded(&protected, &next, changes.len());
                    anyhow::Ok((next, changes))
                })
                .await
                .unwrap_or_else(|e| Err(anyhow!("the reload failed: {e}")))
                .map(|(next, changes)| {
                    current = next;
                    changes
                })
                .map_err(|e| format!("{e:#}"))
            }
        };
        match &outcome {
            Ok(changes) if changes.is_empty() => info!("reload: the config is unchanged"),
            Ok(changes) => {
                for line in changes {
                    info!("reload: {line}");
                }
            }
            Err(e) => error!("reload refused, nothing changed: {e}"),
        }
        let _ = reply.send(outcome);
    }
    Ok(())
}

/// After a reload applied: the new access rules (shared by every interface), and an event
/// on each interface's journal.
fn reloaded(protected: &[Arc<Shared>], new: &DaemonConfig, changes: usize) {
    if let Some(shared) = protected.first() {
        *lock(&shared.access) = new.access;
    }
    for shared in protected {
        lock(&shared.blocks).record(EventRecord::now(
            EventKind::ListChange,
            None,
            format!("config reloaded: {changes} changes"),
        ));
    }
}

/// What a reload changes on one protected interface: the daemon's [`Shared`], or a fake in
/// the tests.
pub(super) trait Target {
    /// Those of `prefixes` that are on `list`.
    fn listed(&self, list: ListKind, prefixes: &[Prefix]) -> anyhow::Result<Vec<Prefix>>;
    /// Adds `prefixes` to `list` with no expiry, all or nothing.
    fn add(&self, list: ListKind, prefixes: &[Prefix]) -> anyhow::Result<()>;
    /// Removes those of `prefixes` that are on `list`, all or nothing; returns them.
    fn remove_listed(&self, list: ListKind, prefixes: &[Prefix]) -> anyhow::Result<Vec<Prefix>>;
    /// Makes `limits` the limits, in the map too; returns the limits before.
    fn set_limits(&self, limits: &Limits) -> anyhow::Result<Limits>;
    /// Makes `setting` the SYN protection; returns the setting before.
    fn set_syn_protect(&self, setting: &SynProtect) -> anyhow::Result<SynProtect>;
    /// Makes the config file's rules `rules` (all or nothing); returns what changed.
    fn set_config_rules(&self, rules: &[NewRule]) -> anyhow::Result<Vec<String>>;
}

impl Target for Shared {
    fn listed(&self, list: ListKind, prefixes: &[Prefix]) -> anyhow::Result<Vec<Prefix>> {
        Ok(self.lists.listed(list, prefixes)?)
    }

    fn add(&self, list: ListKind, prefixes: &[Prefix]) -> anyhow::Result<()> {
        self.lists.add(list, prefixes, None)?;
        Ok(())
    }

    fn remove_listed(&self, list: ListKind, prefixes: &[Prefix]) -> anyhow::Result<Vec<Prefix>> {
        Ok(self.lists.remove_listed(list, prefixes)?)
    }

    fn set_limits(&self, limits: &Limits) -> anyhow::Result<Limits> {
        // The list presence too: the lists may have changed before.
        self.sync_list_presence_with(limits)?;
        Ok(std::mem::replace(&mut *lock(&self.limits), *limits))
    }

    fn set_syn_protect(&self, setting: &SynProtect) -> anyhow::Result<SynProtect> {
        super::syn::apply(self, setting.clone())
    }

    fn set_config_rules(&self, rules: &[NewRule]) -> anyhow::Result<Vec<String>> {
        let lines = lock(&self.rules).replace_config(rules, monotonic_now_ns()?)?;
        self.sync_list_presence()?;
        Ok(lines)
    }
}

/// The config's list entries to add and remove, by list.
fn list_changes(
    old: &DaemonConfig,
    new: &DaemonConfig,
) -> [(ListKind, Vec<Prefix>, Vec<Prefix>); 2] {
    [
        (ListKind::Allow, &old.allow, &new.allow),
        (ListKind::Deny, &old.deny, &new.deny),
    ]
    .map(|(kind, old, new)| {
        let old_set: HashSet<&Prefix> = old.iter().collect();
        let new_set: HashSet<&Prefix> = new.iter().collect();
        let added: Vec<Prefix> = new
            .iter()
            .filter(|p| !old_set.contains(p))
            .copied()
            .collect();
        let removed: Vec<Prefix> = old
            .iter()
            .filter(|p| !new_set.contains(p))
            .copied()
            .collect();
        (kind, added, removed)
    })
}

/// One applied step's undo.
type Undo<'a> = Box<dyn FnOnce() -> anyhow::Result<()> + 'a>;

/// Applies a reloaded config to every target, all or nothing; returns the changes, as the
/// config file's diff.
///
/// # Errors
/// If a setting changed that only a restart can change, or a list change does not fit: then
/// nothing is changed (what was applied before the failure is undone).
pub(super) fn apply_reload<T: Target>(
    targets: &[&T],
    old: &DaemonConfig,
    new: &DaemonConfig,
) -> anyhow::Result<Vec<String>> {
    let need_restart = old.restart_only_changes(new);
    if !need_restart.is_empty() {
        bail!(
            "{} changed: a reload changes limits, lists and access; this takes a restart",
            need_restart.join(", ")
        );
    }
    let plans = list_changes(old, new);
    // What the operator edited, key by key. Only a daemon with a config file has a reloader,
    // so both sides have one.
    let mut changes = match (&old.file, &new.file) {
        (Some(old_file), Some(new_file)) => crate::config::diff(old_file, new_file),
        _ => Vec::new(),
    };
    let mut rule_lines = Vec::new();
    // Undo steps of what was applied, run in reverse if a later step fails.
    let mut undo: Vec<Undo<'_>> = Vec::new();
    let result = (|| {
        for &target in targets {
            for (kind, added, removed) in &plans {
                if !added.is_empty() {
                    // Entries the operator listed by hand before stay when undoing.
                    let before: HashSet<Prefix> =
                        target.listed(*kind, added)?.into_iter().collect();
                    target.add(*kind, added)?;
                    let fresh: Vec<Prefix> = added
                        .iter()
                        .filter(|p| !before.contains(p))
                        .copied()
                        .collect();
                    undo.push(Box::new(move || {
                        target.remove_listed(*kind, &fresh).map(|_| ())
                    }));
                }
                // An entry the operator already removed by hand is gone either way.
                let removed = target.remove_listed(*kind, removed)?;
                if !removed.is_empty() {
                    undo.push(Box::new(move || target.add(*kind, &removed)));
                }
            }
            let previous = target.set_limits(&new.limits)?;
            undo.push(Box::new(move || target.set_limits(&previous).map(|_| ())));
            if old.syn_protect != new.syn_protect {
                let previous = target.set_syn_protect(&new.syn_protect)?;
                undo.push(Box::new(move || {
                    target.set_syn_protect(&previous).map(|_| ())
                }));
            }
            if old.rules != new.rules {
                rule_lines.extend(target.set_config_rules(&new.rules)?);
                undo.push(Box::new(move || {
                    target.set_config_rules(&old.rules).map(|_| ())
                }));
            }
        }
        anyhow::Ok(())
    })();
    if let Err(e) = result {
        for step in undo.into_iter().rev() {
            if let Err(undo_error) = step() {
                error!("reload: undoing a step failed: {undo_error:#}");
            }
        }
        return Err(e);
    }
    changes.extend(rule_lines);
    Ok(changes)
}

#[cfg(test)]
mod tests {
    use std::{
        cell::{Cell, RefCell},
        collections::BTreeSet,
        path::Path,
    };

    use super::*;
    use crate::{
        config::{CommandLine, parse, resolve},
        limits::Rate,
    };

    /// An interface's lists and limits, with a step that fails on demand.
    #[derive(Default)]
    struct Fake {
        allow: RefCell<BTreeSet<Prefix>>,
        deny: RefCell<BTreeSet<Prefix>>,
        limits: Cell<Limits>,
        /// The operation that fails (`add`, `remove`, `limits`), once.
        fail: Cell<Option<&'static str>>,
        syn: RefCell<SynProtect>,
    }

    impl Fake {
        fn list(&self, list: ListKind) -> &RefCell<BTreeSet<Prefix>> {
            match list {
                ListKind::Allow => &self.allow,
                ListKind::Deny => &self.deny,
            }
        }

        fn check(&self, op: &'static str) -> anyhow::Result<()> {
            if self.fail.get() == Some(op) {
                self.fail.set(None);
                bail!("{op} failed");
            }
            Ok(())
        }

        fn denied(&self) -> Vec<String> {
            self.deny.borrow().iter().map(ToString::to_string).collect()
        }
    }

    impl Target for Fake {
        fn listed(&self, list: ListKind, prefixes: &[Prefix]) -> anyhow::Result<Vec<Prefix>> {
            let listed = self.list(list).borrow();
            Ok(prefixes
                .iter()
                .filter(|p| listed.contains(p))
                .copied()
                .collect())
        }

        fn add(&self, list: ListKind, prefixes: &[Prefix]) -> anyhow::Result<()> {
            self.check("add")?;
            self.list(list).borrow_mut().extend(prefixes);
            Ok(())
        }

        fn remove_listed(
            &self,
            list: ListKind,
            prefixes: &[Prefix],
        ) -> anyhow::Result<Vec<Prefix>> {
            self.check("remove")?;
            let mut listed = self.list(list).borrow_mut();
            Ok(prefixes
                .iter()
                .filter(|p| listed.remove(p))
                .copied()
                .collect())
        }

        fn set_limits(&self, limits: &Limits) -> anyhow::Result<Limits> {
            self.check("limits")?;
            Ok(self.limits.replace(*limits))
        }

        fn set_syn_protect(&self, setting: &SynProtect) -> anyhow::Result<SynProtect> {
            self.check("syn")?;
            Ok(self.syn.replace(setting.clone()))
        }

        fn set_config_rules(&self, rules: &[NewRule]) -> anyhow::Result<Vec<String>> {
            self.check("rules")?;
            Ok(vec![format!("{} config rules", rules.len())])
        }
    }

    /// The configuration of a file that denies `deny` and limits sources to `pps`.
    fn config(pps: &str, deny: &[&str], daemon: &str) -> DaemonConfig {
        let deny: Vec<String> = deny.iter().map(|p| format!("\"{p}\"")).collect();
        let text = format!(
            "{daemon}[[interface]]\nname = \"eth0\"\n[limits]\npps = \"{pps}\"\n\
             [deny]\nprefixes = [{}]\n",
            deny.join(", ")
        );
        let file = parse(Path::new("/etc/floodwall/floodwall.toml"), &text)
            .unwrap_or_else(|e| panic!("the test file must parse: {e}"));
        resolve(Some(file), &CommandLine::default()).expect("valid")
    }

    /// Two interfaces protected with `old`.
    fn protected(old: &DaemonConfig) -> [Fake; 2] {
        [(), ()].map(|()| {
            let fake = Fake::default();
            fake.deny.borrow_mut().extend(&old.deny);
            fake.limits.set(old.limits);
            *fake.syn.borrow_mut() = old.syn_protect.clone();
            fake
        })
    }

    #[test]
    fn a_reload_changes_syn_protect_and_undoes_it_on_failure() {
        let old = config("10k", &[], "");
        let new = config("10k", &[], "[daemon]\nsyn_protect = \"80,443\"\n");
        let fakes = protected(&old);
        let changes = apply_reload(&[&fakes[0], &fakes[1]], &old, &new).expect("applies");
        assert_eq!(changes, ["daemon.syn_protect: default -> 80,443"]);
        for fake in &fakes {
            assert_eq!(fake.syn.borrow().to_string(), "80,443");
        }
        let fakes = protected(&old);
        fakes[1].fail.set(Some("syn"));
        apply_reload(&[&fakes[0], &fakes[1]], &old, &new).expect_err("fails");
        for fake in &fakes {
            assert_eq!(*fake.syn.borrow(), SynProtect::Auto, "undone");
        }
    }

    #[test]
    fn a_reload_changes_lists_and_limits_everywhere_and_says_what_changed() {
        let old = config("10k", &["198.18.1.0/24", "198.18.2.0/24"], "");
        let new = config("5k", &["198.18.2.0/24", "198.18.3.0/24"], "");
        let fakes = protected(&old);
        let changes = apply_reload(&[&fakes[0], &fakes[1]], &old, &new).expect("applies");
        assert_eq!(
            changes,
            [
                "limits.pps: 10000/s -> 5000/s",
                "deny: + 198.18.3.0/24",
                "deny: - 198.18.1.0/24"
            ]
        );
        for fake in &fakes {
            assert_eq!(fake.denied(), ["198.18.2.0/24", "198.18.3.0/24"]);
            assert_eq!(fake.limits.get().pps, Rate::PerSecond(5_000));
        }
    }

    #[test]
    fn a_failure_on_a_later_interface_undoes_the_earlier_ones() {
        let old = config("10k", &["198.18.1.0/24"], "");
        let new = config("5k", &["198.18.3.0/24"], "");
        for op in ["add", "remove", "limits"] {
            let fakes = protected(&old);
            fakes[1].fail.set(Some(op));
            let err = apply_reload(&[&fakes[0], &fakes[1]], &old, &new)
                .expect_err("the second interface fails")
                .to_string();
            assert_eq!(err, format!("{op} failed"));
            for fake in &fakes {
                assert_eq!(fake.denied(), ["198.18.1.0/24"], "{op}: lists undone");
                assert_eq!(fake.limits.get(), old.limits, "{op}: limits undone");
            }
        }
    }

    #[test]
    fn undoing_keeps_what_the_operator_listed_by_hand() {
        let old = config("10k", &[], "");
        let new = config("5k", &["198.18.3.0/24", "198.18.4.0/24"], "");
        let fakes = protected(&old);
        // Listed by `floodwall deny add` before the file named it too.
        fakes[0]
            .deny
            .borrow_mut()
            .insert("198.18.3.0/24".parse().expect("prefix"));
        fakes[1].fail.set(Some("limits"));
        apply_reload(&[&fakes[0], &fakes[1]], &old, &new).expect_err("fails");
        assert_eq!(fakes[0].denied(), ["198.18.3.0/24"]);
        assert!(fakes[1].denied().is_empty());
    }

    #[test]
    fn restart_only_changes_are_refused_before_anything_changes() {
        let old = config("10k", &["198.18.1.0/24"], "");
        let new = config("5k", &[], "[daemon]\nmax_sources = 4096\n");
        let fakes = protected(&old);
        let err = apply_reload(&[&fakes[0], &fakes[1]], &old, &new)
            .expect_err("a new table size needs a restart")
            .to_string();
        assert!(err.starts_with("max_sources changed"), "{err}");
        assert_eq!(fakes[0].denied(), ["198.18.1.0/24"]);
        assert_eq!(fakes[0].limits.get(), old.limits);
    }
}
