//! The kernel-level tests (`BPF_PROG_TEST_RUN`, the end-to-end namespace tests with the real
//! daemon and CLI, and the ELF contract) in a VM on each of Debian's kernels, as aya runs its
//! own integration tests.
//!
//! For each kernel: fetch Debian's cloud kernel package ([`kernel`]), build an initramfs
//! from the test binaries, their libraries, the tools the tests run and the kernel's
//! modules ([`initramfs`], written by [`cpio`]), boot `qemu-system-x86_64` on it, and read
//! the verdict `/init` prints on the serial console. A failing test, a kernel panic and a
//! hang (no verdict in time) each fail the run with that reason.
//!
//! qemu runs under software emulation (TCG): KVM does not work on the machines this project
//! runs on (qemu aborts or hangs with `-accel kvm`), and TCG needs nothing from the host.
//!
//! Everything goes under `target/vm/`: the kernel packages (kept, with their versions, so a
//! run needs the network only when Debian publishes a newer kernel), the initramfs and the
//! console log of each kernel's last run.

pub mod cpio;
pub mod initramfs;
pub mod kernel;

use std::{
    fmt,
    fs::{self, File},
    io::{BufRead as _, BufReader, Write as _},
    path::{Path, PathBuf},
    process::{Command, Stdio},
    sync::mpsc,
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail};
use initramfs::{KERNEL_MARKER, RESULT_MARKER, RUN_MARKER, TestBinary};
use kernel::Series;

/// `cargo test` arguments that build the kernel-level tests: every integration test of
/// the workspace, of which [`TEST_PACKAGE`]'s (`tests/tests/*.rs`) are the kernel-level
/// ones, so a new test file runs in the VM with no change here. The workspace, not `-p
/// floodwall-tests`: features resolve as in the host test step's `cargo test --workspace`,
/// so its build serves here too; with `-p` the dependencies' features differ and cargo
/// builds filter-user, its XDP program and the tests over again (minutes in CI).
pub const TEST_SELECTION: [&str; 5] = ["--workspace", "--exclude", "filter-ebpf", "--test", "*"];

/// The package whose integration tests are the kernel-level tests.
const TEST_PACKAGE: &str = "floodwall-tests";

/// How long one test binary may run in the guest. The slowest, the end-to-end tests, take
/// about 30 s on this machine's own kernel and about 2.5 min under emulation.
const GUEST_TEST_TIMEOUT: Duration = Duration::from_mins(8);

/// How long a whole VM run may take by default before it counts as hung. The run's own
/// length is printed with its verdict (it grew with the SYN-cookie tests, which load the
/// program more often and serve hundreds of users under emulation); the bound keeps a hung
/// kernel from eating CI's 90 minutes (two kernels, each at most this long, plus the host
/// run).
pub const DEFAULT_VM_TIMEOUT: Duration = Duration::from_mins(30);

/// Which tests a kernel's run takes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scope {
    /// Every kernel-level test.
    Everything,
    /// Every kernel-level test but [`DAEMON_ONLY`]: the tests of the daemon's own
    /// operations (reloads, groups, several interfaces, CLI changes of the SYN-cookie
    /// ports, a kept sysctl, bad input), which no kernel changes. They run on this
    /// machine's kernel.
    AllButDaemonOnly,
    /// The kernel contract: each test binary but `e2e*` (the ELF contract, the maps, the
    /// differential and `BPF_PROG_TEST_RUN` tests, SYN cookies included). What differs
    /// between kernels is the verifier, the helpers and the drivers: the contract loads the
    /// programs and runs every stage. The end-to-end tests run on 6.1, the oldest kernel,
    /// and on this machine's; each once in a VM keeps CI within its 45 minutes.
    KernelContract,
}

impl Scope {
    /// `test` as this scope runs it (perhaps with a filter), or `None` if it leaves it out.
    fn select(self, test: &TestBinary) -> Option<TestBinary> {
        if HOST_ONLY.contains(&test.name.as_str()) {
            return None;
        }
        match self {
            Scope::AllButDaemonOnly => Some(TestBinary {
                args: DAEMON_ONLY
                    .iter()
                    .filter(|(binary, _)| *binary == test.name)
                    .flat_map(|(_, test)| ["--skip".to_owned(), (*test).to_owned()])
                    .collect(),
                ..test.clone()
            }),
            Scope::Everything => Some(test.clone()),
            Scope::KernelContract if !test.name.starts_with("e2e") => Some(test.clone()),
            Scope::KernelContract => None,
        }
    }
}

/// Test binaries whose tests share nothing in the kernel (each loads its own program and
/// maps, attaches nothing, and runs packets through `BPF_PROG_TEST_RUN` on a test clock):
/// the guest runs them on both its CPUs, which halves their time under emulation, where
/// each program load (the verifier, a few seconds) is most of a test.
const PARALLEL: [&str; 1] = ["prog_test_run"];

/// libtest's `--test-threads` for the test binary `name` in the guest.
fn threads_of(name: &str) -> u32 {
    if PARALLEL.contains(&name) { 2 } else { 1 }
}

/// Test binaries that run on this machine's kernel only: they test daemons talking to
/// daemons (floodwall to GoBGP and BIRD, floodwall to floodwall through NATS), none of
/// which the kernel changes, and those daemons are not in the VM's initramfs.
pub const HOST_ONLY: [&str; 2] = ["e2e_upstream", "e2e_fleet"];

/// The tests that [`Scope::AllButDaemonOnly`] leaves out, by test binary: the daemon's
/// own operations in `e2e_ops` (the kernel-facing ones stay: kill -9 mid-flood, restarts
/// and upgrades under traffic, pinned state of another layout), and bad input in `e2e`,
/// which the daemon refuses before any map is touched. Every signature case runs in the
/// VM too: the issue that asked for them asks for them there.
pub const DAEMON_ONLY: [(&str, &str); 6] = [
    ("e2e_ops", "reload_applies_a_good_file"),
    ("e2e_ops", "groups_decide_who_may"),
    ("e2e_ops", "one_daemon_protects_several_interfaces"),
    ("e2e_ops", "syn_protect_commands_change"),
    ("e2e_ops", "a_kept_sysctl_is_left_alone"),
    ("e2e", "bad_input_changes_nothing"),
];

/// Lines of the console shown when a kernel's run fails.
const CONSOLE_TAIL: usize = 80;

/// The binaries the VM runs, built by cargo.
pub struct Binaries {
    /// Test binaries, in [`TEST_TARGETS`] order.
    pub tests: Vec<TestBinary>,
    /// The `floodwall` daemon and CLI.
    pub floodwall: PathBuf,
}

/// Builds the test binaries and `floodwall`, and finds their paths in cargo's JSON
/// messages (test executables have a hash in their names).
///
/// # Errors
/// If a build fails or cargo names no executable for a target.
pub fn build_binaries(root: &Path) -> anyhow::Result<Binaries> {
    let (floodwall, messages) = build_tests(root, &TEST_SELECTION)?;
    let mut tests: Vec<TestBinary> = test_executables(&messages).collect();
    // The end-to-end tests last: they take minutes under emulation, so a program that does
    // not even load shows up first, in the quick `BPF_PROG_TEST_RUN` tests.
    tests.sort_by_key(|t| (t.name.starts_with("e2e"), t.name.clone()));
    if tests.is_empty() {
        bail!("cargo built no integration test of floodwall-tests");
    }
    Ok(Binaries { tests, floodwall })
}

/// Builds the tests of `selection` (`cargo test --no-run`) and returns the `floodwall`
/// binary that build made (for filter-user's own integration tests) with cargo's messages.
/// That one, not a `cargo build -p filter-user`: with `-p` the dependencies' features
/// resolve otherwise, and cargo would build filter-user and its dependencies a second time.
///
/// # Errors
/// If the build fails or makes no `floodwall` binary.
pub fn build_tests(
    root: &Path,
    selection: &[&str],
) -> anyhow::Result<(PathBuf, Vec<serde_json::Value>)> {
    let mut args = vec!["test", "--no-run", "--locked"];
    args.extend(selection);
    let messages = cargo_json(root, &args)?;
    Ok((floodwall_binary(&messages)?, messages))
}

/// The `floodwall` binary among cargo's messages: the program, not the binary's unit
/// tests, which cargo names a `bin` target too.
fn floodwall_binary(messages: &[serde_json::Value]) -> anyhow::Result<PathBuf> {
    messages
        .iter()
        .filter(|m| is_artifact(m, "bin", "floodwall") && m["profile"]["test"] == false)
        .find_map(|m| m["executable"].as_str().map(PathBuf::from))
        .context("cargo built no floodwall binary (filter-user's integration tests need it)")
}

/// Runs `cargo ARGS --message-format=json-render-diagnostics` and returns its JSON messages;
/// diagnostics still reach the terminal, rendered, on stderr.
fn cargo_json(root: &Path, args: &[&str]) -> anyhow::Result<Vec<serde_json::Value>> {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.current_dir(root)
        .args(args)
        .arg("--message-format=json-render-diagnostics")
        .stderr(Stdio::inherit());
    let out = cmd
        .output()
        .with_context(|| format!("cannot start {cmd:?}"))?;
    if !out.status.success() {
        bail!("{cmd:?} failed: {}", out.status);
    }
    Ok(String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect())
}

/// Whether a cargo message is a `compiler-artifact` of a target of `kind` (`test`, `bin`)
/// named `name` (any name when `name` is empty).
fn is_artifact(message: &serde_json::Value, kind: &str, name: &str) -> bool {
    message["reason"] == "compiler-artifact"
        && (name.is_empty() || message["target"]["name"] == name)
        && message["target"]["kind"]
            .as_array()
            .is_some_and(|kinds| kinds.iter().any(|k| k == kind))
}

/// Whether a cargo message is about a target of the workspace package `name`: its
/// `package_id` is `path+file:///DIR#NAME@VERSION`, or `path+file:///NAME#VERSION` when
/// the directory is named as the package.
fn of_package(message: &serde_json::Value, name: &str) -> bool {
    message["package_id"].as_str().is_some_and(|id| {
        id.split_once('#').is_some_and(|(path, fragment)| {
            fragment.starts_with(&format!("{name}@"))
                || (!fragment.contains('@') && path.ends_with(&format!("/{name}")))
        })
    })
}

/// The integration test executables of [`TEST_PACKAGE`] among cargo's messages.
fn test_executables(messages: &[serde_json::Value]) -> impl Iterator<Item = TestBinary> + '_ {
    messages
        .iter()
        .filter(|m| is_artifact(m, "test", "") && of_package(m, TEST_PACKAGE))
        .filter_map(|m| {
            Some(TestBinary {
                name: m["target"]["name"].as_str()?.to_owned(),
                path: PathBuf::from(m["executable"].as_str()?),
                threads: threads_of(m["target"]["name"].as_str()?),
                args: Vec::new(),
            })
        })
}

/// How one kernel's run ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Every test binary passed.
    Pass,
    /// Something failed; the reason says what.
    Fail(String),
}

/// One kernel's run.
#[derive(Clone, Debug)]
pub struct Report {
    /// Where the tests ran: `host`, `vm 6.1`, ...
    pub label: String,
    /// Package and version (`linux-image-6.1.0-56-cloud-amd64 6.1.192-2`), or what could
    /// not be fetched.
    pub kernel: String,
    /// How it ended.
    pub verdict: Verdict,
    /// Tests passed and failed, from the `test result:` lines on the console.
    pub passed: u64,
    /// Tests failed.
    pub failed: u64,
    /// From starting qemu to its exit.
    pub duration: Duration,
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let verdict = match &self.verdict {
            Verdict::Pass => "PASS".to_owned(),
            Verdict::Fail(why) => format!("FAIL ({why})"),
        };
        write!(
            f,
            "{:<8} {:<50} {verdict}: {} passed, {} failed, {:.1} s",
            self.label,
            self.kernel,
            self.passed,
            self.failed,
            self.duration.as_secs_f64()
        )
    }
}

/// Runs the tests of each kernel's scope in a VM on it, one kernel after the other, and reports on
/// each; a kernel that cannot even be fetched or booted gets a failing report too, so the
/// others still run.
///
/// With `only` not empty, just the test binaries it names (each must exist), within each
/// kernel's scope; `test_args` go to each test binary (libtest's arguments). The guest's
/// `floodwall` is `release` if given (the package's, in `cargo xtask test`), else the one
/// the test build makes.
///
/// # Errors
/// If the binaries cannot be built, or `only` names a test binary that is not there.
pub fn run(
    root: &Path,
    kernels: &[(Series, Scope)],
    only: &[String],
    test_args: &[String],
    release: Option<&Path>,
    timeout: Duration,
) -> anyhow::Result<Vec<Report>> {
    let mut binaries = build_binaries(root)?;
    if let Some(release) = release {
        release.clone_into(&mut binaries.floodwall);
    }
    if !only.is_empty() {
        if let Some(unknown) = only
            .iter()
            .find(|name| !binaries.tests.iter().any(|t| &&t.name == name))
        {
            let known: Vec<&str> = binaries.tests.iter().map(|t| t.name.as_str()).collect();
            bail!(
                "--only {unknown}: no such test binary (there are: {})",
                known.join(", ")
            );
        }
        binaries.tests.retain(|t| only.contains(&t.name));
    }
    let work = root.join("target/vm");
    let mut reports = Vec::new();
    for &(series, scope) in kernels {
        let started = Instant::now();
        let tests: Vec<TestBinary> = binaries
            .tests
            .iter()
            .filter_map(|t| scope.select(t))
            .map(|mut t| {
                t.args.extend_from_slice(test_args);
                t
            })
            .collect();
        let report = run_kernel(&work, series, &tests, &binaries.floodwall, timeout)
            .unwrap_or_else(|e| Report {
                label: format!("vm {}", series.label),
                kernel: "(not booted)".to_owned(),
                verdict: Verdict::Fail(format!("{e:#}")),
                passed: 0,
                failed: 0,
                duration: started.elapsed(),
            });
        reports.push(report);
    }
    Ok(reports)
}

fn run_kernel(
    work: &Path,
    series: Series,
    tests: &[TestBinary],
    floodwall: &Path,
    timeout: Duration,
) -> anyhow::Result<Report> {
    let kernel = kernel::fetch(series, &work.join("kernels"))?;
    let dir = work.join(format!("run-{}", series.label));
    fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let modules = kernel::modules(&kernel, &kernel::NEEDED_MODULES, &dir.join("modules"))?;
    let initrd = dir.join("initramfs.cpio");
    initramfs::build(
        &initramfs::Contents {
            tests,
            floodwall,
            modules: &modules,
            test_timeout_secs: GUEST_TEST_TIMEOUT.as_secs(),
            scratch: &dir.join("bin"),
        },
        &initrd,
    )?;
    let log_path = dir.join("console.log");
    println!(
        "vm {}: booting {} {} under emulation (console: {})",
        series.label,
        kernel.package,
        kernel.version,
        log_path.display()
    );
    let mut run = boot(&kernel.image(), &initrd, &log_path, series.label, timeout)?;
    if run.console.panicked_before_init() {
        // Seen once on 6.12: an int3 in `sched_clock_cpu` while the kernel patched its own
        // code during boot (a known race of text patching under multi-threaded TCG), 3 s
        // in, before /init and any floodwall code ran. One more boot; a panic once the
        // tests run is never retried.
        eprintln!(
            "vm {}: the kernel panicked before /init ran ({}); booting once more",
            series.label,
            run.console.panic.as_deref().unwrap_or_default()
        );
        run = boot(&kernel.image(), &initrd, &log_path, series.label, timeout)?;
    }
    let mut verdict = run.console.verdict(run.timed_out, timeout);
    if verdict == Verdict::Pass
        && let Some(release) = &run.console.release
        && *release != kernel.release
    {
        verdict = Verdict::Fail(format!(
            "the guest runs kernel {release}, not {}",
            kernel.release
        ));
    }
    if let Verdict::Fail(_) = &verdict {
        let lines = &run.console.lines;
        eprintln!(
            "---- vm {}: console, last {CONSOLE_TAIL} lines (all of it in {}) ----",
            series.label,
            log_path.display()
        );
        for line in &lines[lines.len().saturating_sub(CONSOLE_TAIL)..] {
            eprintln!("{line}");
        }
        eprintln!("---- end of console ----");
    }
    Ok(Report {
        label: format!("vm {}", series.label),
        kernel: format!("{} {}", kernel.package, kernel.version),
        verdict,
        passed: run.console.passed,
        failed: run.console.failed,
        duration: run.duration,
    })
}

/// What qemu's run gave.
struct Boot {
    console: Console,
    timed_out: bool,
    duration: Duration,
}

/// Boots `image` with `initrd` and reads the serial console until qemu exits or `timeout`
/// passes (then qemu is killed). Test output is passed through, prefixed with the kernel;
/// every line goes to `log_path`.
fn boot(
    image: &Path,
    initrd: &Path,
    log_path: &Path,
    label: &str,
    timeout: Duration,
) -> anyhow::Result<Boot> {
    let mut cmd = Command::new("qemu-system-x86_64");
    cmd.args(["-nodefaults", "-no-user-config", "-no-reboot"])
        // Software emulation (see the module docs), one host thread per guest CPU: qemu 7.2
        // runs all guest CPUs on one thread unless told otherwise. The plain `qemu64` CPU
        // moves twice the packets of `max` here (two hping3 floods, 10 s: ~85,000 packets
        // each against ~42,000): TCG emulates 5-level paging and AVX2 slowly, and the tests
        // need neither. Two CPUs, because the tests check a limit across CPUs.
        .args([
            "-accel",
            "tcg,thread=multi",
            "-cpu",
            "qemu64",
            "-smp",
            "2",
            "-m",
            "2G",
        ])
        // No display and no NIC: the lab's veth pairs live inside the guest.
        .args(["-display", "none", "-serial", "stdio"])
        .arg("-kernel")
        .arg(image)
        .arg("-initrd")
        .arg(initrd)
        // panic=-1 and -no-reboot: a panic ends qemu at once instead of hanging until the
        // timeout; oops=panic so that an oops (say, in the BPF code) cannot go unnoticed.
        // quiet keeps the console to warnings and the tests' own output.
        .args([
            "-append",
            "console=ttyS0 panic=-1 oops=panic quiet rdinit=/init",
        ])
        // qemu's stdin is not a terminal, so it leaves the user's terminal alone.
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let started = Instant::now();
    let mut child = cmd
        .spawn()
        .context("cannot start qemu-system-x86_64 (package qemu-system-x86)")?;
    let (tx, rx) = mpsc::channel();
    for stream in [
        child
            .stdout
            .take()
            .map(|s| Box::new(s) as Box<dyn std::io::Read + Send>),
        child
            .stderr
            .take()
            .map(|s| Box::new(s) as Box<dyn std::io::Read + Send>),
    ]
    .into_iter()
    .flatten()
    {
        let tx = tx.clone();
        std::thread::spawn(move || {
            // The serial console may carry bytes that are not UTF-8 (firmware escapes):
            // read bytes, convert lossily.
            let mut reader = BufReader::new(stream);
            let mut buf = Vec::new();
            while reader.read_until(b'\n', &mut buf).is_ok_and(|n| n > 0) {
                let line = String::from_utf8_lossy(&buf)
                    .trim_end_matches(['\r', '\n'])
                    .to_owned();
                if tx.send(line).is_err() {
                    break;
                }
                buf.clear();
            }
        });
    }
    drop(tx);

    let mut log =
        File::create(log_path).with_context(|| format!("cannot create {}", log_path.display()))?;
    let mut console = Console::default();
    let deadline = started + timeout;
    let mut timed_out = false;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(line) => {
                let _ = writeln!(log, "{line}");
                if console.shows(&line) {
                    println!("[vm {label}] {line}");
                }
                console.push(line);
            }
            // Both streams closed: qemu has exited.
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
            Err(mpsc::RecvTimeoutError::Timeout) => {
                timed_out = true;
                // Our own child, not yet reaped, so its pid is still ours.
                let _ = child.kill();
                break;
            }
        }
    }
    let status = child.wait().context("qemu did not finish")?;
    let duration = started.elapsed();
    if !timed_out && !status.success() {
        console.push(format!("(qemu exited: {status})"));
    }
    Ok(Boot {
        console,
        timed_out,
        duration,
    })
}

/// What the serial console said.
#[derive(Default)]
struct Console {
    lines: Vec<String>,
    /// `uname -r` in the guest.
    release: Option<String>,
    /// The verdict line's text after the marker.
    result: Option<String>,
    /// The first line of a kernel panic.
    panic: Option<String>,
    /// The test binary running last.
    running: Option<String>,
    passed: u64,
    failed: u64,
}

impl Console {
    fn push(&mut self, line: String) {
        // `contains`, not `starts_with`: firmware escape codes can precede the first
        // lines, and kernel messages can interleave with a line the tests print.
        if let Some(rest) = after(&line, RESULT_MARKER) {
            self.result.get_or_insert_with(|| rest.to_owned());
        } else if let Some(rest) = after(&line, KERNEL_MARKER) {
            self.release = Some(rest.to_owned());
        } else if let Some(rest) = after(&line, RUN_MARKER) {
            self.running = Some(rest.to_owned());
        } else if line.contains("Kernel panic") {
            self.panic.get_or_insert_with(|| line.trim().to_owned());
        } else if let Some((_, rest)) = line.split_once("test result: ") {
            self.passed += crate::count_before(rest, " passed");
            self.failed += crate::count_before(rest, " failed");
        }
        self.lines.push(line);
    }

    /// Whether to show `line` live: the tests' output and the markers, not the kernel's
    /// boot messages (those with a `[    1.234]` timestamp), which stay in the log.
    fn shows(&self, line: &str) -> bool {
        let kernel_message = line.trim_start().starts_with('[')
            && line.contains(']')
            && line
                .trim_start()
                .trim_start_matches('[')
                .trim_start()
                .starts_with(|c: char| c.is_ascii_digit());
        (self.release.is_some() || line.contains(KERNEL_MARKER))
            && (!kernel_message || line.contains("Kernel panic") || line.contains("BUG"))
    }

    /// Whether the kernel panicked before `/init` said which kernel it runs: emulation's
    /// trouble, not the tests'.
    fn panicked_before_init(&self) -> bool {
        self.panic.is_some() && self.release.is_none()
    }

    fn verdict(&self, timed_out: bool, timeout: Duration) -> Verdict {
        if let Some(panic) = &self.panic {
            return Verdict::Fail(format!("kernel panic: {panic}"));
        }
        match self.result.as_deref() {
            Some("PASS") if self.failed == 0 && self.passed > 0 => Verdict::Pass,
            Some("PASS") => Verdict::Fail(format!(
                "the guest said PASS, but its tests say {} passed, {} failed",
                self.passed, self.failed
            )),
            Some(other) => Verdict::Fail(
                other
                    .strip_prefix("FAIL")
                    .map_or(other, |r| r.trim_start_matches(':').trim())
                    .to_owned(),
            ),
            None if timed_out => Verdict::Fail(format!(
                "hang: no verdict within {} s{}",
                timeout.as_secs(),
                self.running
                    .as_ref()
                    .map_or_else(String::new, |t| format!(", while running {t}"))
            )),
            None if self.release.is_none() => {
                Verdict::Fail("the guest stopped before /init started (see the console)".to_owned())
            }
            None => Verdict::Fail("the guest stopped without a verdict".to_owned()),
        }
    }
}

/// The trimmed text after `marker` in `line`, if it has it.
fn after<'a>(line: &'a str, marker: &str) -> Option<&'a str> {
    line.split_once(marker).map(|(_, rest)| rest.trim())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn console(lines: &[&str]) -> Console {
        let mut console = Console::default();
        for line in lines {
            console.push((*line).to_owned());
        }
        console
    }

    const T: Duration = Duration::from_mins(1);

    #[test]
    fn a_pass_needs_the_marker_and_passing_tests() {
        let c = console(&[
            "\u{1b}[2J\u{1b}[01;01HFLOODWALL-VM-KERNEL: 6.1.0-56-cloud-amd64",
            "test result: ok. 3 passed; 0 failed; 0 ignored; 0 measured; 0 filtered out",
            "test result: ok. 11 passed; 0 failed; 0 ignored; 0 measured; 0 filtered out",
            "\u{1b}[0mFLOODWALL-VM-RESULT: PASS",
        ]);
        assert_eq!(c.release.as_deref(), Some("6.1.0-56-cloud-amd64"));
        assert_eq!((c.passed, c.failed), (14, 0));
        assert_eq!(c.verdict(false, T), Verdict::Pass);
        let c = console(&["FLOODWALL-VM-RESULT: PASS"]);
        assert!(
            matches!(c.verdict(false, T), Verdict::Fail(_)),
            "no tests ran"
        );
    }

    #[test]
    fn failures_panics_and_hangs_say_why() {
        let c = console(&[
            "FLOODWALL-VM-KERNEL: 6.12.117+deb12-cloud-amd64",
            "test result: FAILED. 10 passed; 1 failed; 0 ignored",
            "FLOODWALL-VM-RESULT: FAIL: prog_test_run (exit 101)",
        ]);
        assert_eq!(
            c.verdict(false, T),
            Verdict::Fail("prog_test_run (exit 101)".to_owned())
        );
        let c = console(&[
            "FLOODWALL-VM-KERNEL: 6.1",
            "[   12.5] Kernel panic - not syncing: Attempted to kill init!",
        ]);
        assert_eq!(
            c.verdict(false, T),
            Verdict::Fail(
                "kernel panic: [   12.5] Kernel panic - not syncing: Attempted to kill init!"
                    .to_owned()
            )
        );
        let c = console(&["FLOODWALL-VM-KERNEL: 6.1", "FLOODWALL-VM-RUN: e2e"]);
        assert_eq!(
            c.verdict(true, T),
            Verdict::Fail("hang: no verdict within 60 s, while running e2e".to_owned())
        );
        let c = console(&["SeaBIOS (version 1.16.2)"]);
        assert!(matches!(c.verdict(false, T), Verdict::Fail(why) if why.contains("before /init")));
    }

    #[test]
    fn only_a_panic_before_init_is_booted_again() {
        let at_boot =
            console(&["[    3.126771] Kernel panic - not syncing: Fatal exception in interrupt"]);
        assert!(at_boot.panicked_before_init());
        let in_tests = console(&[
            "FLOODWALL-VM-KERNEL: 6.1.0-57-cloud-amd64",
            "FLOODWALL-VM-RUN: e2e",
            "[   42.1] Kernel panic - not syncing: Fatal exception in interrupt",
        ]);
        assert!(!in_tests.panicked_before_init());
        assert!(!console(&["FLOODWALL-VM-KERNEL: 6.1"]).panicked_before_init());
    }

    #[test]
    fn kernel_messages_stay_in_the_log() {
        let c = console(&["FLOODWALL-VM-KERNEL: 6.1"]);
        assert!(!c.shows("[    1.458114] reboot: Power down"));
        assert!(c.shows("test a_block_expires ... ok"));
        assert!(c.shows("[   12.5] Kernel panic - not syncing"));
        assert!(!console(&[]).shows("SeaBIOS (version 1.16.2)"));
    }

    /// Each test left out must exist, and its name (libtest's `--skip` matches by
    /// substring) must leave out that one test only.
    #[test]
    fn the_tests_left_out_exist_and_each_names_one() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/tests");
        for (binary, name) in DAEMON_ONLY {
            let source = std::fs::read_to_string(dir.join(format!("{binary}.rs"))).unwrap();
            let matching = source
                .lines()
                .filter_map(|l| l.trim_start().strip_prefix("fn "))
                .filter(|f| f.split('(').next().is_some_and(|f| f.contains(name)))
                .count();
            assert_eq!(matching, 1, "{binary}: `{name}` must name one test");
        }
    }

    #[test]
    fn cargo_messages_name_the_executables() {
        let messages: Vec<serde_json::Value> = [
            r#"{"reason":"compiler-artifact","package_id":"path+file:///w/tests#floodwall-tests@0.1.0","target":{"name":"e2e","kind":["test"]},"executable":"/t/e2e-abc"}"#,
            r#"{"reason":"compiler-artifact","package_id":"path+file:///w/filter-user#0.1.0","target":{"name":"config_corpus","kind":["test"]},"executable":"/t/config_corpus-abc"}"#,
            r#"{"reason":"compiler-artifact","target":{"name":"floodwall","kind":["lib"]},"executable":null}"#,
            r#"{"reason":"compiler-artifact","target":{"name":"floodwall","kind":["bin"]},"profile":{"test":true},"executable":"/t/floodwall-unit-tests"}"#,
            r#"{"reason":"compiler-artifact","target":{"name":"floodwall","kind":["bin"]},"profile":{"test":false},"executable":"/t/floodwall"}"#,
            r#"{"reason":"compiler-artifact","target":{"name":"floodwall_tests","kind":["lib"]},"executable":null}"#,
            r#"{"reason":"build-finished","success":true}"#,
        ]
        .iter()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
        let tests: Vec<(String, PathBuf)> = test_executables(&messages)
            .map(|t| (t.name, t.path))
            .collect();
        assert_eq!(tests, [("e2e".to_owned(), PathBuf::from("/t/e2e-abc"))]);
        assert!(is_artifact(&messages[4], "bin", "floodwall"));
        assert!(!is_artifact(&messages[2], "bin", "floodwall"));
        assert_eq!(
            floodwall_binary(&messages).unwrap(),
            PathBuf::from("/t/floodwall"),
            "the program, not its unit tests"
        );
        assert!(of_package(&messages[1], "filter-user"));
        assert!(!of_package(&messages[1], "floodwall-tests"));
    }
}
