//! floodwall in the lab: `floodwall run` in the server namespace with the lab's own run
//! directory and bpffs, and its CLI.

use std::{
    ffi::OsStr,
    fs,
    os::unix::fs::MetadataExt as _,
    path::{Path, PathBuf},
    process::{ExitStatus, Output},
    time::Duration,
};

use anyhow::{Context as _, bail, ensure};
use filter_common::Outcome;
use floodwall::control::{LimitsView, Response, SourceView, StatsView, socket_path};

use super::{DAEMON_START_TIMEOUT, Host, Lab, Proc, STOP_GRACE, command, poll_until};

impl Lab {
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
        self.spawn_floodwall_on(&self.server, wrapper, run_dir, pin_root, iface, args)
    }

    fn spawn_floodwall_on(
        &self,
        host: &Host,
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
        self.spawn(host, &format!("floodwall-run-{}", host.name), &command)
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
        self.start_floodwall_on_under(&self.server, wrapper, run_dir, args)
    }

    /// [`Lab::start_floodwall_in`] on another host of the lab (its interface, its
    /// namespace): a second protected server, e.g. a node of a fleet. `run_dir` must be
    /// its own; the lab's bpffs serves both (pins are by interface name).
    ///
    /// # Errors
    /// As [`Lab::start_floodwall`].
    ///
    /// # Panics
    /// If the `floodwall` binary cannot be found (see [`crate::floodwall_bin`]).
    pub fn start_floodwall_on(
        &self,
        host: &Host,
        run_dir: &Path,
        args: &[&str],
    ) -> anyhow::Result<Daemon<'_>> {
        self.start_floodwall_on_under(host, &[], run_dir, args)
    }

    fn start_floodwall_on_under(
        &self,
        host: &Host,
        wrapper: &[&str],
        run_dir: &Path,
        args: &[&str],
    ) -> anyhow::Result<Daemon<'_>> {
        let socket = socket_path(run_dir, &host.iface);
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
            self.spawn_floodwall_on(host, wrapper, run_dir, &self.pin_root, &host.iface, args)?;
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
}

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

    /// `floodwall rules list --json`.
    ///
    /// # Errors
    /// If the command fails or answers something else.
    pub fn rules(&self) -> anyhow::Result<Vec<floodwall::rules::RuleView>> {
        match self.query(&["rules", "list"])? {
            Response::Rules { rules } => Ok(rules),
            other => bail!("`rules list` answered {other:?}"),
        }
    }

    /// `floodwall attacks --json`.
    ///
    /// # Errors
    /// If the command fails or answers something else.
    pub fn attacks(&self) -> anyhow::Result<floodwall::traffic::view::AttacksView> {
        match self.query(&["attacks"])? {
            Response::Attacks(view) => Ok(view),
            other => bail!("`attacks` answered {other:?}"),
        }
    }

    /// `floodwall baseline --json`.
    ///
    /// # Errors
    /// If the command fails or answers something else.
    pub fn baseline(&self) -> anyhow::Result<floodwall::traffic::view::BaselineView> {
        match self.query(&["baseline"])? {
            Response::Baseline(view) => Ok(view),
            other => bail!("`baseline` answered {other:?}"),
        }
    }

    /// Packets of `class` by outcome name, from `stats --json`.
    ///
    /// # Errors
    /// As [`Daemon::stats`].
    pub fn class_packets(&self, class: &str, outcome: &str) -> anyhow::Result<u64> {
        let stats = self.stats()?;
        Ok(stats
            .classes
            .iter()
            .filter(|c| c.class == class)
            .flat_map(|c| &c.outcomes)
            .filter(|o| o.outcome == outcome)
            .map(|o| o.packets)
            .sum())
    }

    /// `floodwall ARGS`, which must succeed: its output.
    ///
    /// # Panics
    /// If the command cannot run or fails.
    #[must_use]
    pub fn cli_ok(&self, args: &[&str]) -> String {
        let out = self
            .cli(args)
            .unwrap_or_else(|e| panic!("floodwall {args:?}: {e:#}"));
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(
            out.status.success(),
            "floodwall {args:?} must succeed: {text}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        text
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
