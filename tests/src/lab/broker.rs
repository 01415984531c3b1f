//! A NATS broker (Debian's `nats-server`, with `JetStream`) on a lab host: the fleet's
//! key-value bucket lives there.

use std::{path::PathBuf, time::Duration};

use anyhow::{Context as _, bail};

use super::{Host, Lab, Proc, poll_until};

/// The port the broker listens on.
pub const BROKER_PORT: u16 = 4222;

/// How long the broker may take to start (it is up in under 100 ms here).
const BROKER_START_TIMEOUT: Duration = Duration::from_secs(10);

/// A `nats-server -js` on a lab host, its store in the lab's directory so that a restart
/// finds what the last run stored.
pub struct Broker {
    /// The host it runs on.
    pub host: Host,
    /// Its `JetStream` store.
    pub store: PathBuf,
    /// The running process, if any.
    pub proc: Option<Proc>,
    /// Its authorization: nats-server's arguments (`--user U --pass P`, `--auth TOKEN`).
    pub auth: Vec<String>,
}

impl Broker {
    /// `nats://ADDR:4222`.
    #[must_use]
    pub fn url(&self) -> String {
        format!("nats://{}:{BROKER_PORT}", self.host.ipv4)
    }
}

impl Lab {
    /// Starts `nats-server -a ADDR -p 4222 -js -sd STORE` on `host` and waits until it
    /// listens.
    ///
    /// # Errors
    /// If it cannot be started, exits, or does not listen within 10 s.
    pub fn start_broker(&self, host: &Host) -> anyhow::Result<Broker> {
        self.start_broker_with(host, &[])
    }

    /// [`Lab::start_broker`] with `auth`, nats-server's authorization arguments
    /// (`--user U --pass P`, `--auth TOKEN`): a client must sign in.
    ///
    /// # Errors
    /// As [`Lab::start_broker`].
    pub fn start_broker_with(&self, host: &Host, auth: &[&str]) -> anyhow::Result<Broker> {
        let mut broker = Broker {
            host: host.clone(),
            store: self.dir().join(format!("nats-{}", host.name)),
            proc: None,
            auth: auth.iter().map(|&a| a.to_owned()).collect(),
        };
        self.restart_broker(&mut broker)?;
        Ok(broker)
    }

    /// Starts the broker again (after [`Lab::kill_broker`]), with the same store.
    ///
    /// # Errors
    /// As [`Lab::start_broker`].
    pub fn restart_broker(&self, broker: &mut Broker) -> anyhow::Result<()> {
        std::fs::create_dir_all(&broker.store)
            .with_context(|| format!("cannot create {}", broker.store.display()))?;
        let store = broker.store.to_string_lossy().into_owned();
        let addr = broker.host.ipv4.to_string();
        let port = BROKER_PORT.to_string();
        let mut argv = vec![
            "nats-server".to_owned(),
            "-a".to_owned(),
            addr,
            "-p".to_owned(),
            port,
            "-js".to_owned(),
            "-sd".to_owned(),
            store,
        ];
        argv.extend(broker.auth.iter().cloned());
        let proc = self.spawn(&broker.host, "nats-server", &argv)?;
        let ready = poll_until(BROKER_START_TIMEOUT, Duration::from_millis(20), || {
            self.try_wait(&proc).is_some() || proc.stderr().contains("Server is ready")
        });
        if let Some(status) = self.try_wait(&proc) {
            bail!("nats-server exited at start ({status}): {}", proc.stderr());
        }
        if !ready {
            let _ = self.stop(&proc, libc::SIGKILL, Duration::from_secs(2));
            bail!(
                "nats-server is not ready after {BROKER_START_TIMEOUT:?}: {}",
                proc.stderr()
            );
        }
        broker.proc = Some(proc);
        Ok(())
    }

    /// Kills the broker with SIGKILL (no goodbye to its clients) and waits for it to exit.
    ///
    /// # Errors
    /// If it does not exit within 5 s.
    pub fn kill_broker(&self, broker: &mut Broker) -> anyhow::Result<()> {
        if let Some(proc) = broker.proc.take() {
            self.stop(&proc, libc::SIGKILL, Duration::from_secs(5))?;
        }
        Ok(())
    }
}
