//! hping3 floods from a lab host, and what they sent.

use std::time::Duration;

use super::{Host, Lab, Proc};

impl Lab {
    /// Starts hping3 on `from` against the server's IPv4 address (the only target it can
    /// have), quiet, sending at most `count` packets for at most `max_time`. `flags` say what
    /// and how fast: `["--faster", "-S", "-p", "80"]` is a SYN flood, `["-i", "u1000",
    /// "--udp", "-p", "9"]` about 1000 UDP packets per second. (`--faster` rather than
    /// `--flood`: hping3 ignores `-c` with `--flood`.) See [`hping3_sent`].
    ///
    /// # Errors
    /// If it cannot be started.
    pub fn spawn_hping3(
        &self,
        from: &Host,
        flags: &[&str],
        count: u64,
        max_time: Duration,
    ) -> anyhow::Result<Proc> {
        let mut argv = vec![
            "timeout".to_owned(),
            "--kill-after=2".to_owned(),
            max_time.as_secs().max(1).to_string(),
            "hping3".to_owned(),
            "-q".to_owned(),
            "-c".to_owned(),
            count.to_string(),
        ];
        argv.extend(flags.iter().map(|&f| f.to_owned()));
        argv.push(self.server.ipv4.to_string());
        self.spawn(from, &format!("hping3-{}", from.name), &argv)
    }
}

/// Packets an hping3 run sent, from the statistics it prints when it ends (also when
/// `timeout` stops it with SIGTERM); `None` if it printed none.
#[must_use]
pub fn hping3_sent(proc: &Proc) -> Option<u64> {
    let text = proc.stderr() + &proc.stdout();
    text.lines().find_map(transmitted)
}

/// The count of hping3's statistics line:
/// `20000 packets transmitted, 0 packets received, 100% packet loss`.
fn transmitted(line: &str) -> Option<u64> {
    let (count, rest) = line.trim().split_once(' ')?;
    if rest.starts_with("packets transmitted") {
        count.parse().ok()
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hping3_statistics_parse() {
        assert_eq!(
            transmitted("20000 packets transmitted, 0 packets received, 100% packet loss"),
            Some(20_000)
        );
        assert_eq!(
            transmitted("HPING 198.18.0.1 (fwlab-atk0 198.18.0.1): udp mode set"),
            None
        );
    }
}
