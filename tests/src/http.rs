//! A legitimate web visitor as a thread of this process: a GET over a new connection per
//! request, from a lab host's namespace, tallied as [`lab::http_tally`] tallies curl's.
//!
//! For the benchmarks, which share one CPU between the flood, the server and the visitor:
//! a curl process per request spends milliseconds of that CPU starting up (a dynamic link
//! of a dozen libraries) for each request, and only in the phase where the visitor is
//! served, which would be measured against floodwall. A thread spends what the requests
//! themselves cost. The end-to-end tests keep curl: there, its start-up is nobody's yardstick.

use std::{
    io::{Read as _, Write as _},
    net::{SocketAddr, TcpStream},
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    thread::JoinHandle,
    time::Duration,
};

use anyhow::Context as _;

use crate::{
    flood::NetnsGuard,
    lab::{Host, HttpTally},
};

/// Longest wait for a connection or an answer, as curl's `--max-time` in the lab.
const TIMEOUT: Duration = Duration::from_secs(3);

/// The visitor; [`Visitor::stop`] ends it and gives its tally.
pub struct Visitor {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<HttpTally>>,
}

impl Visitor {
    /// Starts requesting `/` of each of `servers` in turn from `host`, then pausing `pause`,
    /// until stopped.
    ///
    /// # Errors
    /// If the thread cannot enter `host`'s namespace.
    pub fn start(host: &Host, servers: Vec<SocketAddr>, pause: Duration) -> anyhow::Result<Self> {
        let stop = Arc::new(AtomicBool::new(false));
        let stopping = Arc::clone(&stop);
        let netns = host.netns.clone();
        let (entered, inside) = std::sync::mpsc::channel();
        let thread = std::thread::spawn(move || {
            // The thread stays in the namespace while the guard lives, which is its life.
            let guard = NetnsGuard::enter(&netns);
            let ok = guard.is_ok();
            let _ = entered.send(guard.as_ref().map(|_| ()).map_err(|e| format!("{e:#}")));
            let mut tally = HttpTally::default();
            while ok && !stopping.load(Ordering::Relaxed) {
                for server in &servers {
                    tally.attempted += 1;
                    if get(*server) {
                        tally.served += 1;
                    }
                }
                std::thread::sleep(pause);
            }
            drop(guard);
            tally
        });
        inside
            .recv()
            .context("the visitor's thread ended before it started")?
            .map_err(anyhow::Error::msg)
            .context("the visitor cannot enter its host's namespace")?;
        Ok(Self {
            stop,
            thread: Some(thread),
        })
    }

    /// Stops after the request under way, and gives the tally.
    #[must_use]
    pub fn stop(mut self) -> HttpTally {
        self.stop.store(true, Ordering::Relaxed);
        self.thread
            .take()
            .and_then(|t| t.join().ok())
            .unwrap_or_default()
    }
}

impl Drop for Visitor {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// One GET of `/` over a new connection: whether the answer was a 200 within [`TIMEOUT`].
fn get(server: SocketAddr) -> bool {
    let Ok(mut stream) = TcpStream::connect_timeout(&server, TIMEOUT) else {
        return false;
    };
    if stream.set_read_timeout(Some(TIMEOUT)).is_err()
        || stream.set_write_timeout(Some(TIMEOUT)).is_err()
    {
        return false;
    }
    let request = format!("GET / HTTP/1.1\r\nHost: {server}\r\nConnection: close\r\n\r\n");
    if stream.write_all(request.as_bytes()).is_err() {
        return false;
    }
    let mut answer = Vec::new();
    // Read to the end (the server closes): a page cut short is not served.
    stream.read_to_end(&mut answer).is_ok()
        && (answer.starts_with(b"HTTP/1.1 200 ") || answer.starts_with(b"HTTP/1.0 200 "))
}
