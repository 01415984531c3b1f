//! A UDP service and its users, for the end-to-end tests of UDP floods: the server answers
//! every datagram with the same bytes; a user sends queries at a steady rate and counts
//! the answers. Both run as threads of the test, on sockets made inside a host's network
//! namespace (a socket stays in the namespace it was made in).

use std::{
    net::{SocketAddr, UdpSocket},
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    thread::JoinHandle,
    time::{Duration, Instant},
};

use anyhow::Context as _;

use crate::{
    flood::NetnsGuard,
    lab::{Host, Lab},
};

/// How long a query's answer may take to count as answered.
pub const ANSWER_WITHIN: Duration = Duration::from_secs(1);

/// Bytes of a query: `query N`, padded.
pub const QUERY_BYTES: usize = 48;

/// A socket bound to `addr` inside `host`'s namespace.
fn socket_in(host: &Host, addr: SocketAddr) -> anyhow::Result<UdpSocket> {
    let _inside = NetnsGuard::enter(&host.netns)?;
    UdpSocket::bind(addr).with_context(|| format!("cannot bind {addr} in {}", host.name))
}

/// `floodwall run`'s flags in the UDP flood tests: driver mode and a per-source limit far
/// above what each flood source sends, so that the limits alone do nothing against these
/// floods (rules and signatures must).
pub const FLOOD_TEST_DAEMON: [&str; 6] = [
    "--xdp-mode",
    "driver",
    "--pps",
    "2000",
    "--block-for",
    "60s",
];

/// The echo service; stops when dropped.
pub struct Service {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Service {
    /// Serves on `port` of every address of `host`, IPv4 and IPv6.
    ///
    /// # Errors
    /// If the socket cannot be made.
    pub fn start(host: &Host, port: u16) -> anyhow::Result<Self> {
        let socket = socket_in(host, SocketAddr::from(([0u16; 8], port)))?;
        socket.set_read_timeout(Some(Duration::from_millis(100)))?;
        let stop = Arc::new(AtomicBool::new(false));
        let stopping = Arc::clone(&stop);
        let thread = std::thread::spawn(move || {
            let mut buf = [0u8; 2048];
            while !stopping.load(Ordering::Relaxed) {
                if let Ok((len, from)) = socket.recv_from(&mut buf) {
                    // A full buffer loses the answer: the user counts it as lost.
                    let _ = socket.send_to(&buf[..len], from);
                }
            }
        });
        Ok(Self {
            stop,
            thread: Some(thread),
        })
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// What a user saw.
#[derive(Clone, Copy, Debug)]
pub struct Answers {
    /// Queries sent.
    pub sent: u64,
    /// Answered within [`ANSWER_WITHIN`].
    pub answered: u64,
    /// 99th percentile of the answers' delays.
    pub p99: Duration,
}

impl Answers {
    /// Answered over sent.
    #[must_use]
    pub fn share(&self) -> f64 {
        #[expect(clippy::cast_precision_loss, reason = "a ratio")]
        let share = self.answered as f64 / self.sent.max(1) as f64;
        share
    }
}

/// The service's user (the lab's client) while a flood goes on: 1,000 queries at 200 a
/// second to `to` on the lab's server, of which at least 99 % must be answered, less the
/// share of the frames to the server that the lab itself lost meanwhile (its veth's ring
/// was full: [`Lab::switch_port_counters`]), which an ideal filter loses too. Under the
/// test VM's emulation that share has reached several percent during a flood of 20,000
/// packets/s; here it is about nil. Prints what it saw under `when`.
///
/// # Panics
/// If fewer are answered, or the queries cannot be sent.
#[must_use]
pub fn assert_served(lab: &Lab, to: SocketAddr, when: &str) -> Answers {
    let port = |at| {
        lab.switch_port_counters(lab.server())
            .unwrap_or_else(|e| panic!("{when}: the switch port's counters {at}: {e:#}"))
    };
    let before = port("before");
    let answers = query(lab.client(), to, 1_000, 200).expect("the user's queries");
    let lab_lost = port("after").lost_share_since(&before);
    println!(
        "{when}: {} of {} answered, p99 {:?}; the lab lost {:.2} % of the frames to the server",
        answers.answered,
        answers.sent,
        answers.p99,
        lab_lost * 100.0
    );
    assert!(
        answers.share() >= 0.99 - lab_lost,
        "{when}: the service's user must be answered at 99 % less the lab's own loss \
         ({:.2} %): {answers:?}",
        lab_lost * 100.0
    );
    answers
}

/// Sends `count` queries from `host` to `to` at `rate` a second and counts the answers;
/// takes `count / rate` seconds and one more.
///
/// # Errors
/// If the socket cannot be made or connected.
#[expect(
    clippy::cast_precision_loss,
    reason = "counts and rates far below 2^52"
)]
pub fn query(host: &Host, to: SocketAddr, count: u64, rate: u64) -> anyhow::Result<Answers> {
    let local: SocketAddr = if to.is_ipv4() {
        ([0u8; 4], 0).into()
    } else {
        ([0u16; 8], 0).into()
    };
    let socket = socket_in(host, local)?;
    socket.connect(to)?;
    socket.set_read_timeout(Some(Duration::from_millis(2)))?;
    let interval = Duration::from_secs_f64(1.0 / rate.max(1) as f64);
    let count_usize = usize::try_from(count)?;
    let mut sent_at: Vec<Option<Instant>> = vec![None; count_usize];
    let mut delays: Vec<Duration> = Vec::new();
    let mut buf = [0u8; 2048];
    let start = Instant::now();
    let mut next = 0usize;
    // Bounded: the queries take count / rate seconds, then the last answers a second more.
    let deadline = start + interval.mul_f64(count as f64) + ANSWER_WITHIN;
    while Instant::now() < deadline {
        while next < count_usize && start + interval.mul_f64(next as f64) <= Instant::now() {
            let mut payload = format!("query {next}").into_bytes();
            payload.resize(QUERY_BYTES, b' ');
            // A refused send (a full buffer) is a query lost.
            if socket.send(&payload).is_ok() {
                sent_at[next] = Some(Instant::now());
            }
            next += 1;
        }
        let Ok(len) = socket.recv(&mut buf) else {
            continue;
        };
        let answer = String::from_utf8_lossy(&buf[..len]);
        let Some(n) = answer
            .trim()
            .strip_prefix("query ")
            .and_then(|n| n.parse::<usize>().ok())
        else {
            continue;
        };
        if let Some(at) = sent_at.get_mut(n).and_then(Option::take) {
            let took = at.elapsed();
            if took <= ANSWER_WITHIN {
                delays.push(took);
            }
        }
    }
    delays.sort();
    let p99 = delays
        .get((delays.len() * 99 / 100).min(delays.len().saturating_sub(1)))
        .copied()
        .unwrap_or_default();
    Ok(Answers {
        sent: count,
        answered: delays.len() as u64,
        p99,
    })
}
