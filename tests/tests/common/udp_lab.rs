//! What the UDP flood tests share (`e2e_rules`, `e2e_signatures`): a lab with one
//! attacker, a UDP service on [`PORT`] at the server, and the daemon as these tests start
//! it.

use std::{
    net::{IpAddr, SocketAddr},
    time::Duration,
};

use floodwall_tests::{
    flood,
    lab::{Daemon, Lab, Proc},
    udp,
};

/// The service's port.
pub const PORT: u16 = 7777;
/// Where the daemon serves metrics (the server's address, inside its namespace).
pub const METRICS: &str = "198.18.0.1:9478";

/// A lab of one attacker, with trafgen.
pub fn new_lab() -> Lab {
    flood::require_trafgen().expect("trafgen must be installed");
    Lab::new(1).expect("the namespace lab must build")
}

/// The daemon with [`udp::FLOOD_TEST_DAEMON`]'s flags, metrics on [`METRICS`], and `extra`.
pub fn start_daemon<'l>(lab: &'l Lab, extra: &[&str]) -> Daemon<'l> {
    let mut args = udp::FLOOD_TEST_DAEMON.to_vec();
    args.extend(["--metrics-addr", METRICS]);
    args.extend(extra);
    lab.start_floodwall(&args)
        .expect("floodwall run must start and open its control socket")
}

/// The service's address.
pub fn service_addr(lab: &Lab) -> SocketAddr {
    SocketAddr::new(IpAddr::V4(lab.server().ipv4), PORT)
}

/// Stops a flood (or any process of the lab).
pub fn stop(lab: &Lab, proc: &Proc) {
    let _ = lab.stop(proc, libc::SIGINT, Duration::from_secs(5));
}
