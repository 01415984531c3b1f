//! The lab's web server (nginx in the server namespace) and its visitors (curl from a
//! host), with the tally of what they were served.

use std::{ffi::OsStr, fs, os::unix::fs::PermissionsExt as _, time::Duration};

use anyhow::{Context as _, bail, ensure};

use super::{HTTP_TIMEOUT_SECS, Host, Lab, NGINX_START_TIMEOUT, PAGE, Proc, poll_until};

impl Lab {
    /// Starts nginx in the server namespace, serving [`PAGE`] at `http://198.18.0.1/` and
    /// `http://[2001:2::1]/`, with its configuration, pid file, logs and temp dirs in the
    /// lab's directory (nothing under /etc/nginx, /var/log or /var/lib is used). Returns once
    /// it listens.
    ///
    /// # Errors
    /// If it cannot be started or does not listen within 10 s.
    pub fn start_nginx(&self) -> anyhow::Result<Proc> {
        let dir = self.dir.join("nginx");
        let www = dir.join("www");
        fs::create_dir_all(&www).with_context(|| format!("cannot create {}", www.display()))?;
        for d in [&dir, &www] {
            fs::set_permissions(d, fs::Permissions::from_mode(0o755))?;
        }
        let page = www.join("index.html");
        fs::write(&page, PAGE)?;
        fs::set_permissions(&page, fs::Permissions::from_mode(0o644))?;
        let d = dir.display();
        // daemon off: the master stays our child, so the lab can stop it. Access logs off:
        // a flood test would only fill the disk. The temp paths default to /var/lib/nginx.
        let conf = format!(
            "daemon off;
worker_processes 1;
pid {d}/nginx.pid;
error_log {d}/error.log warn;
events {{ worker_connections 1024; }}
http {{
    access_log off;
    client_body_temp_path {d}/body;
    proxy_temp_path {d}/proxy;
    fastcgi_temp_path {d}/fastcgi;
    uwsgi_temp_path {d}/uwsgi;
    scgi_temp_path {d}/scgi;
    server {{
        listen {v4}:80;
        listen [{v6}]:80;
        root {d}/www;
        index index.html;
    }}
}}
",
            v4 = self.server.ipv4,
            v6 = self.server.ipv6,
        );
        let conf_path = dir.join("nginx.conf");
        fs::write(&conf_path, conf)?;
        // -e: the error log nginx uses before it has read its configuration.
        let prefix = format!("{d}/");
        let error_log = dir.join("error.log");
        let argv: [&OsStr; 7] = [
            "nginx".as_ref(),
            "-p".as_ref(),
            prefix.as_ref(),
            "-c".as_ref(),
            conf_path.as_os_str(),
            "-e".as_ref(),
            error_log.as_os_str(),
        ];
        let proc = self.spawn(&self.server, "nginx", &argv)?;
        let listening = poll_until(NGINX_START_TIMEOUT, Duration::from_millis(50), || {
            self.try_wait(&proc).is_some() || self.listens_on_port_80()
        });
        if let Some(status) = self.try_wait(&proc) {
            bail!(
                "nginx exited at start ({status}): {} {}",
                proc.stderr().trim(),
                fs::read_to_string(&error_log).unwrap_or_default().trim()
            );
        }
        ensure!(
            listening,
            "nginx does not listen on port 80 after {NGINX_START_TIMEOUT:?}"
        );
        Ok(proc)
    }

    fn listens_on_port_80(&self) -> bool {
        self.run_in(&self.server, &["ss", "-Hltn", "sport", "=", ":80"])
            .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).lines().count() >= 2)
    }

    /// The server's URL over IPv4 or IPv6.
    #[must_use]
    pub fn server_url(&self, ipv6: bool) -> String {
        if ipv6 {
            format!("http://[{}]/", self.server.ipv6)
        } else {
            format!("http://{}/", self.server.ipv4)
        }
    }

    /// One HTTP GET of the server's page from `from`; returns the body.
    ///
    /// # Errors
    /// If the request fails or does not answer 200 within 3 s.
    pub fn http_get(&self, from: &Host, ipv6: bool) -> anyhow::Result<String> {
        let max_time = HTTP_TIMEOUT_SECS.to_string();
        let url = self.server_url(ipv6);
        let out = self.run_in(
            from,
            &["curl", "-sS", "--fail", "--max-time", &max_time, &url],
        )?;
        ensure!(
            out.status.success(),
            "GET {url} from {} failed: {}",
            from.name,
            String::from_utf8_lossy(&out.stderr).trim()
        );
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// Starts the legitimate client: `rounds` rounds of one GET over IPv4 and one over IPv6,
    /// `pause` apart, each request bounded to 3 s and the whole run to `max_time`. Each
    /// request prints its HTTP status (`000` when it failed); see [`http_tally`].
    ///
    /// # Errors
    /// If it cannot be started.
    pub fn spawn_http_client(
        &self,
        rounds: u32,
        pause: Duration,
        max_time: Duration,
    ) -> anyhow::Result<Proc> {
        // New connection per request, as separate visitors would make (the two URLs are
        // two servers to curl, so it keeps no connection from one to the other). One curl
        // a round for both: under emulation starting curl (a dynamic link of some thirty
        // libraries) takes longer than its requests, and a process a request made the
        // client most of an end-to-end test's time in the VM. `-w` prints after each
        // transfer, a failed one too. No `set -e`: a failed request is a result to count,
        // not a reason to stop.
        let script = r#"rounds=$1; pause=$2; max=$3; shift 3
outputs=""
for url in "$@"; do outputs="$outputs -o /dev/null"; done
n=0
while [ "$n" -lt "$rounds" ]; do
    n=$((n + 1))
    curl -sS -g --max-time "$max" -w '%{http_code}\n' $outputs "$@"
    sleep "$pause"
done"#;
        let argv = [
            "timeout".to_owned(),
            "--kill-after=2".to_owned(),
            max_time.as_secs().max(1).to_string(),
            "sh".to_owned(),
            "-c".to_owned(),
            script.to_owned(),
            "sh".to_owned(),
            rounds.to_string(),
            format!("{:.3}", pause.as_secs_f64()),
            HTTP_TIMEOUT_SECS.to_string(),
            self.server_url(false),
            self.server_url(true),
        ];
        self.spawn(&self.client, "http-client", &argv)
    }
}

/// What the legitimate client of [`Lab::spawn_http_client`] got.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HttpTally {
    /// Requests made.
    pub attempted: u64,
    /// Requests answered 200.
    pub served: u64,
}

impl HttpTally {
    /// Served over attempted, 0 when nothing was attempted.
    #[must_use]
    pub fn ratio(&self) -> f64 {
        if self.attempted == 0 {
            return 0.0;
        }
        #[expect(
            clippy::cast_precision_loss,
            reason = "request counts are far below 2^52"
        )]
        let ratio = self.served as f64 / self.attempted as f64;
        ratio
    }
}

/// Counts the results of a [`Lab::spawn_http_client`] run (so far).
#[must_use]
pub fn http_tally(proc: &Proc) -> HttpTally {
    let out = proc.stdout();
    let codes: Vec<&str> = out
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    HttpTally {
        attempted: codes.len() as u64,
        served: codes.iter().filter(|&&c| c == "200").count() as u64,
    }
}
