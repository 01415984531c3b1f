//! Build, test, demo and benchmark orchestration for floodwall (`cargo xtask ...`).
//! No product logic lives here.
//!
//! Every command that needs the eBPF toolchain runs [`setup`] first; setup is idempotent and
//! takes seconds once everything is in place.
//!
//! Modules: [`vm`] (the kernel-level tests in a VM on Debian's kernels), [`package`] (the
//! Debian package).

mod package;
mod vm;

use std::{
    path::{Path, PathBuf},
    process::Command,
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail};
use clap::{Parser, Subcommand};
use filter_common::BPF_TOOLCHAIN;

/// floodwall's task runner.
#[derive(Parser)]
struct Cli {
    #[command(subcommand)]
    command: Task,
}

#[derive(Subcommand)]
enum Task {
    /// Install what building and testing need: Debian packages, the eBPF toolchain,
    /// bpf-linker, cargo-deb.
    Setup,
    /// Build the workspace (the XDP program is built and embedded by filter-user).
    Build,
    /// Run the whole test suite: formatting, lints (clippy on the host, and on the XDP
    /// program on its BPF target), unit tests, the ELF contract, `BPF_PROG_TEST_RUN` tests
    /// and the end-to-end tests in network namespaces, on this machine's kernel, the Debian
    /// package, and then the kernel-level tests in a VM on each of Debian's kernels (6.1 and
    /// 6.12).
    Test {
        /// Allow privileged tests to skip (when not root); by default a skip is a failure.
        #[arg(long)]
        allow_skip: bool,
        /// Leave out the VM runs (a quicker check while developing; CI runs them).
        #[arg(long)]
        no_vm: bool,
    },
    /// Run the kernel-level tests (the ELF contract, `BPF_PROG_TEST_RUN` and end-to-end
    /// tests) on this machine's kernel, or with `--vm` in a VM on Debian's kernels.
    IntegrationTest {
        /// Run in a VM (qemu, software emulation) on Debian's cloud kernels instead.
        #[arg(long)]
        vm: bool,
        /// Which kernel the VM boots.
        #[arg(long, requires = "vm", default_value = "all", value_parser = ["6.1", "6.12", "all"])]
        kernel: String,
        /// Run on each kernel only what `cargo xtask test` runs there (on 6.12 the kernel
        /// contract and the SYN-cookie test), not everything.
        #[arg(long, requires = "vm")]
        ci_scope: bool,
        /// Only these test binaries (`e2e_rules`, ...; comma-separated or repeated), within
        /// the kernel's scope.
        #[arg(long, requires = "vm", value_delimiter = ',')]
        only: Vec<String>,
        /// Arguments for each test binary in the VM (libtest's: a name filter,
        /// `--nocapture`, `--skip NAME`), one shell word each.
        #[arg(last = true, requires = "vm")]
        test_args: Vec<String>,
        /// Seconds one kernel's VM run may take before it counts as hung.
        #[arg(long, requires = "vm", default_value_t = vm::DEFAULT_VM_TIMEOUT.as_secs())]
        timeout_secs: u64,
        /// The guest runs the release `floodwall` (the package's build), as in `cargo xtask
        /// test`, instead of the debug one the test build makes.
        #[arg(long, requires = "vm")]
        release: bool,
    },
    /// Build the Debian package (target/debian/floodwall_*.deb) and check its contents.
    Package,
    /// Run the demo: a lab of namespaces, a flood, a report.
    Demo,
    /// Measure the XDP program's per-packet cost against a bare `XDP_DROP` program, then
    /// its end-to-end throughput under a spoofed-source flood on veth against the same
    /// `XDP_DROP` program in the same run (`floodwall-flood-bench`, about a minute).
    Bench {
        /// Fail if a target is missed (per-packet ratios and the source table's memory;
        /// flood ratio >= 0.65, >= 1 M distinct sources, >= 99 % of the client's requests
        /// served).
        #[arg(long)]
        check: bool,
        /// Leave out the spoofed-flood case.
        #[arg(long)]
        no_flood: bool,
        /// Arguments passed on to the benchmark binary.
        #[arg(last = true)]
        args: Vec<String>,
    },
}

/// Debian packages, with what each is for.
const APT_PACKAGES: &[(&str, &str)] = &[
    (
        "rustc-web",
        "Rust 1.96 with the LLVM 22 that bpf-linker links against",
    ),
    ("cargo-web", "cargo for that compiler"),
    (
        "rust-web-clippy",
        "clippy for that compiler, to lint the XDP program on its target",
    ),
    (
        "rust-web-src",
        "core's source, for -Z build-std=core on the BPF target",
    ),
    (
        "llvm-22-dev",
        "LLVM 22 headers and llvm-config, to build bpf-linker",
    ),
    ("zlib1g-dev", "linked by bpf-linker's LLVM"),
    ("libzstd-dev", "linked by bpf-linker's LLVM"),
    (
        "iproute2",
        "network namespaces and veth for the tests and demo",
    ),
    ("hping3", "flood generator for the tests and demo"),
    ("nginx-light", "web server in the tests and demo"),
    ("curl", "legitimate HTTP client in the tests and demo"),
    (
        "util-linux",
        "setpriv, to run the CLI as a non-root user in the tests",
    ),
    ("procps", "sysctl, to turn off IPv6 on the lab's switch"),
    (
        "netsniff-ng",
        "trafgen, the spoofed-source flood generator of the tests",
    ),
    (
        "qemu-system-x86",
        "qemu-system-x86_64, the VM the tests run in on Debian's kernels",
    ),
    (
        "busybox-static",
        "the VM's /init shell, mount, insmod and poweroff",
    ),
    ("dash", "the VM's /bin/sh, as on this machine"),
    (
        "xz-utils",
        "to uncompress the kernel modules of Debian's 6.12 kernel",
    ),
    (
        "binutils",
        "objcopy, to strip debug info from the binaries put in the VM",
    ),
    (
        "dpkg-dev",
        "dpkg-shlibdeps, which cargo-deb runs for the package's Depends",
    ),
    (
        "gobgpd",
        "the BGP speaker floodwall drives (gobgpd, and the gobgp client it runs)",
    ),
    (
        "bird2",
        "the upstream router of the upstream tests and demo (an independent BGP implementation)",
    ),
    (
        "nats-server",
        "the fleet's message broker in the tests and demo",
    ),
];

/// Where the toolchain directory that rustup links lives: outside the checkout, so every
/// clone on the machine shares it.
const TOOLCHAIN_DIR: &str = "/usr/local/lib/floodwall-bpf-toolchain";
const BPF_LINKER_VERSION: &str = "0.13.0";
const LLVM_PREFIX: &str = "/usr/lib/llvm-22";

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let root = workspace_root()?;
    match cli.command {
        Task::Setup => setup(),
        Task::Build => {
            setup()?;
            cargo(
                &root,
                &[
                    "build",
                    "--locked",
                    "--workspace",
                    "--exclude",
                    "filter-ebpf",
                ],
                &[],
            )
        }
        Task::Test { allow_skip, no_vm } => test(&root, allow_skip, !no_vm),
        Task::IntegrationTest {
            vm,
            kernel,
            ci_scope,
            only,
            test_args,
            timeout_secs,
            release,
        } => integration_test(
            &root,
            vm,
            &kernel,
            VmChoice {
                ci_scope,
                only: &only,
                test_args: &test_args,
                release,
            },
            Duration::from_secs(timeout_secs),
        ),
        Task::Package => {
            setup()?;
            package::run(&root).map(drop)
        }
        Task::Demo => {
            setup()?;
            run_tests_bin(&root, "floodwall-demo", &[], WithDaemon::Yes)
        }
        Task::Bench {
            check,
            no_flood,
            args,
        } => {
            setup()?;
            let mut bench_args: Vec<&str> = args.iter().map(String::as_str).collect();
            if check {
                bench_args.push("--check");
            }
            // Both cases run before either result decides, so that a missed per-packet target
            // still shows the flood's numbers.
            let per_packet = run_tests_bin(&root, "floodwall-bench", &bench_args, WithDaemon::No);
            let flood = if no_flood {
                Ok(())
            } else {
                flood_bench(&root, check)
            };
            per_packet.and(flood)
        }
    }
}

/// Whether a binary of floodwall-tests starts the daemon, and so needs it built.
#[derive(Clone, Copy, PartialEq, Eq)]
enum WithDaemon {
    Yes,
    No,
}

/// Runs `bin` of floodwall-tests (the demo, the benchmarks) as a release build, with `args`;
/// with the release `floodwall` binary, built first, in `FLOODWALL_BIN` if it starts the
/// daemon.
fn run_tests_bin(
    root: &Path,
    bin: &str,
    args: &[&str],
    with_daemon: WithDaemon,
) -> anyhow::Result<()> {
    let daemon = root.join("target/release/floodwall");
    let mut envs = Vec::new();
    if with_daemon == WithDaemon::Yes {
        cargo(
            root,
            &["build", "--locked", "--release", "-p", "filter-user"],
            &[],
        )?;
        envs.push(("FLOODWALL_BIN", daemon.as_os_str()));
    }
    let mut cmd = vec![
        "run",
        "--locked",
        "--release",
        "-q",
        "-p",
        "floodwall-tests",
        "--bin",
        bin,
        "--",
    ];
    cmd.extend_from_slice(args);
    cargo(root, &cmd, &envs)
}

/// The spoofed-flood cases of `bench`: `floodwall-flood-bench`, three rounds of three
/// seconds (each round measures the yardstick program and then floodwall, so every ratio
/// compares two phases of the same run), with the release daemon it starts: a UDP flood
/// against `XDP_DROP`, then a SYN flood answered with cookies against a bare reflector.
fn flood_bench(root: &Path, check: bool) -> anyhow::Result<()> {
    let mut args = vec!["--rounds", "3", "--seconds", "3"];
    if check {
        args.push("--check");
    }
    println!("spoofed-source flood, end to end on veth (floodwall-flood-bench):");
    let udp = run_tests_bin(root, "floodwall-flood-bench", &args, WithDaemon::Yes);
    // Both run before either result decides, so that one miss still shows the other.
    args.push("--syn");
    println!("spoofed SYN flood answered with cookies, end to end on veth (--syn):");
    let syn = run_tests_bin(root, "floodwall-flood-bench", &args, WithDaemon::Yes);
    udp.and(syn)
}

fn workspace_root() -> anyhow::Result<PathBuf> {
    let manifest = env!("CARGO_MANIFEST_DIR");
    Path::new(manifest)
        .parent()
        .map(Path::to_path_buf)
        .context("xtask has no parent directory")
}

fn test(root: &Path, allow_skip: bool, with_vm: bool) -> anyhow::Result<()> {
    setup()?;
    step("formatting (every crate, filter-ebpf included)");
    cargo(root, &["fmt", "--all", "--check"], &[])
        .context("code is not formatted: run `cargo fmt --all`")?;
    step("clippy (the workspace on the host)");
    cargo(
        root,
        &[
            "clippy",
            "--locked",
            "--workspace",
            "--exclude",
            "filter-ebpf",
            "--all-targets",
            "--",
            "-D",
            "warnings",
        ],
        &[],
    )?;
    step(&format!("clippy (filter-ebpf on {BPF_TARGET})"));
    clippy_ebpf(root)?;
    step("tests on this machine's kernel");
    let started = Instant::now();
    let (passed, failed) = host_tests(
        root,
        allow_skip,
        &["--workspace", "--exclude", "filter-ebpf"],
    )?;
    let mut reports = vec![vm::Report {
        label: "host".to_owned(),
        kernel: host_kernel(),
        verdict: if failed == 0 && passed > 0 {
            vm::Verdict::Pass
        } else {
            vm::Verdict::Fail("tests failed".to_owned())
        },
        passed,
        failed,
        duration: started.elapsed(),
    }];
    // Before the VM runs: a package that does not build fails CI in a minute, not twenty.
    step("the Debian package");
    let packaged = package::run(root).context("the Debian package failed (cargo xtask package)")?;
    if with_vm {
        step("tests in a VM on Debian's kernels");
        // The guest runs the package's own binary: the build operators install gets the
        // kernel-level tests (the host's run has the debug build, with its overflow
        // checks), and under emulation the optimised daemon and CLI answer sooner.
        reports.extend(vm::run(
            root,
            &CI_KERNELS,
            &[],
            &[],
            Some(&packaged),
            vm::DEFAULT_VM_TIMEOUT,
        )?);
    }
    summarize(&reports)
}

/// Every kernel the VM runs, oldest first, with what `cargo xtask test` runs there: on
/// Debian 12's own 6.1, the oldest kernel floodwall supports (the strictest verifier, the
/// fewest helpers), everything but the daemon's own operations; on 6.12 the kernel
/// contract. Every kernel-level test thus runs in a VM, each end-to-end test once, which
/// keeps CI within its 45 minutes; `cargo xtask integration-test --vm --kernel 6.12` runs
/// everything there.
const CI_KERNELS: [(vm::kernel::Series, vm::Scope); 2] = [
    (vm::kernel::DEBIAN_6_1, vm::Scope::AllButDaemonOnly),
    (vm::kernel::DEBIAN_6_12, vm::Scope::KernelContract),
];

/// The BPF target the XDP program builds for (filter-user/build.rs).
const BPF_TARGET: &str = "bpfel-unknown-none";

/// Names a step of `test` in the output, between the tools' own lines (on stderr, where cargo
/// writes them).
fn step(name: &str) {
    eprintln!("\n==> cargo xtask test: {name}");
}

/// clippy over the XDP program on its own target, with the workspace's lints, as
/// aya-template's test script does: the workspace run cannot build it for the host. It runs
/// with what builds it (filter-user/build.rs): the eBPF toolchain, `-Z build-std=core` and
/// `RUSTC_BOOTSTRAP=1`; in a target directory of its own, since that compiler is not the
/// workspace's.
fn clippy_ebpf(root: &Path) -> anyhow::Result<()> {
    let mut cmd = Command::new("rustup");
    cmd.current_dir(root)
        .args(["run", BPF_TOOLCHAIN, "cargo", "clippy", "--locked"])
        .args(["--package", "filter-ebpf", "--target", BPF_TARGET])
        .args(["-Z", "build-std=core", "--target-dir"])
        .arg(root.join("target/ebpf-clippy"))
        .args(["--", "-D", "warnings"])
        .env("RUSTC_BOOTSTRAP", "1")
        // The workspace's compiler must not stand in for the eBPF toolchain's (the build
        // script removes these too).
        .env_remove("RUSTC")
        .env_remove("RUSTC_WORKSPACE_WRAPPER");
    run(&mut cmd).context("clippy failed on filter-ebpf (the XDP program, on its BPF target)")
}

/// What `integration-test --vm` runs, and with which daemon (its flags).
#[derive(Clone, Copy)]
struct VmChoice<'a> {
    ci_scope: bool,
    only: &'a [String],
    test_args: &'a [String],
    release: bool,
}

/// `cargo xtask integration-test`: the kernel-level tests on this machine's kernel, or in a
/// VM on each chosen kernel.
fn integration_test(
    root: &Path,
    in_vm: bool,
    kernel: &str,
    choice: VmChoice<'_>,
    timeout: Duration,
) -> anyhow::Result<()> {
    setup()?;
    let VmChoice {
        ci_scope,
        only,
        test_args,
        release,
    } = choice;
    let reports = if in_vm {
        let kernels: Vec<_> = CI_KERNELS
            .into_iter()
            .filter(|(s, _)| kernel == "all" || s.label == kernel)
            .map(|(s, scope)| {
                (
                    s,
                    if ci_scope {
                        scope
                    } else {
                        vm::Scope::Everything
                    },
                )
            })
            .collect();
        let release = if release {
            Some(package::build_release(root)?)
        } else {
            None
        };
        vm::run(root, &kernels, only, test_args, release.as_deref(), timeout)?
    } else {
        let started = Instant::now();
        let (passed, failed) = host_tests(root, false, &vm::TEST_SELECTION)?;
        vec![vm::Report {
            label: "host".to_owned(),
            kernel: host_kernel(),
            verdict: vm::Verdict::Pass,
            passed,
            failed,
            duration: started.elapsed(),
        }]
    };
    summarize(&reports)
}

/// `uname -r` of this machine, for the report.
fn host_kernel() -> String {
    output_ok(Command::new("uname").arg("-r"))
        .map_or_else(|| "(unknown kernel)".to_owned(), |r| r.trim().to_owned())
}

/// `cargo test` of `selection` on this machine's kernel, with the `floodwall` binary that
/// building the tests makes; returns the tests passed and failed.
fn host_tests(root: &Path, allow_skip: bool, selection: &[&str]) -> anyhow::Result<(u64, u64)> {
    let (bin, _) = vm::build_tests(root, selection)?;
    let require = if allow_skip { "0" } else { "1" };
    // One test thread: the privileged tests share the kernel (XDP attachments, namespaces).
    let mut cmd = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
    cmd.current_dir(root)
        .args(["test", "--locked"])
        .args(selection)
        .args(["--", "--test-threads=1"])
        .env("FLOODWALL_BIN", &bin)
        .env("FLOODWALL_REQUIRE_PRIVILEGED", require);
    run_counting_tests(&mut cmd)
}

/// Prints one line per kernel and the closing `floodwall: N passed, N failed` line over all
/// of them (cargo's own last line is a doc-test binary's, or one VM's); fails if any kernel
/// failed.
fn summarize(reports: &[vm::Report]) -> anyhow::Result<()> {
    println!();
    for report in reports {
        println!("{report}");
    }
    let passed: u64 = reports.iter().map(|r| r.passed).sum();
    let failed: u64 = reports.iter().map(|r| r.failed).sum();
    println!("floodwall: {passed} passed, {failed} failed");
    let failing: Vec<&str> = reports
        .iter()
        .filter(|r| r.verdict != vm::Verdict::Pass)
        .map(|r| r.label.as_str())
        .collect();
    if !failing.is_empty() {
        bail!("the tests failed on: {}", failing.join(", "));
    }
    if failed > 0 || passed == 0 {
        bail!("the test suite failed ({passed} passed, {failed} failed)");
    }
    Ok(())
}

/// Runs `cargo test`, passing its output through, and adds up its `test result:` lines.
fn run_counting_tests(cmd: &mut Command) -> anyhow::Result<(u64, u64)> {
    use std::io::{BufRead as _, BufReader};
    let mut child = cmd
        .stdout(std::process::Stdio::piped())
        .spawn()
        .with_context(|| format!("cannot start {cmd:?}"))?;
    let stdout = child.stdout.take().context("no stdout")?;
    let (mut passed, mut failed) = (0, 0);
    for line in BufReader::new(stdout).lines() {
        let line = line.context("cannot read cargo test's output")?;
        println!("{line}");
        if let Some(rest) = line.strip_prefix("test result: ") {
            passed += count_before(rest, " passed");
            failed += count_before(rest, " failed");
        }
    }
    let status = child.wait().context("cargo test did not finish")?;
    if !status.success() {
        bail!("{cmd:?} failed: {status}");
    }
    Ok((passed, failed))
}

/// The number right before `label` in a `test result:` line (`ok. 12 passed; 0 failed; ...`).
fn count_before(line: &str, label: &str) -> u64 {
    line.split(';')
        .find_map(|part| part.trim().strip_suffix(label.trim_start()).map(str::trim))
        .and_then(|n| n.rsplit(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

fn cargo(root: &Path, args: &[&str], envs: &[(&str, &std::ffi::OsStr)]) -> anyhow::Result<()> {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.current_dir(root).args(args);
    for (k, v) in envs {
        cmd.env(k, v);
    }
    run(&mut cmd)
}

fn run(cmd: &mut Command) -> anyhow::Result<()> {
    let status = cmd
        .status()
        .with_context(|| format!("cannot start {cmd:?}"))?;
    if !status.success() {
        bail!("{cmd:?} failed: {status}");
    }
    Ok(())
}

fn output_ok(cmd: &mut Command) -> Option<String> {
    let out = cmd.output().ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Installs whatever is missing, naming each piece; does nothing when all is in place.
fn setup() -> anyhow::Result<()> {
    let missing: Vec<&str> = APT_PACKAGES
        .iter()
        .filter(|(pkg, _)| {
            output_ok(Command::new("dpkg-query").args(["-W", "-f=${Status}", pkg]))
                .is_none_or(|status| !status.contains("install ok installed"))
        })
        .map(|(pkg, _)| *pkg)
        .collect();
    if !missing.is_empty() {
        for (pkg, why) in APT_PACKAGES.iter().filter(|(p, _)| missing.contains(p)) {
            eprintln!("setup: missing Debian package {pkg} ({why})");
        }
        run(Command::new("apt-get").arg("update").arg("-q")).context("apt-get update failed")?;
        run(Command::new("apt-get")
            .args(["install", "-y", "-q", "--no-install-recommends"])
            .args(&missing)
            .env("DEBIAN_FRONTEND", "noninteractive"))
        .with_context(|| format!("apt-get install {} failed", missing.join(" ")))?;
    }

    let core_src = Path::new("/usr/lib/rustlib/src/rust/library/core");
    if !core_src.is_dir() {
        bail!(
            "setup: {} is missing although rust-web-src is installed",
            core_src.display()
        );
    }

    link_toolchain()?;

    let linker_ok = output_ok(Command::new("bpf-linker").arg("--version"))
        .is_some_and(|v| v.contains(BPF_LINKER_VERSION));
    if !linker_ok {
        eprintln!(
            "setup: missing bpf-linker {BPF_LINKER_VERSION}; building it against LLVM 22 (about a minute)"
        );
        run(Command::new("cargo")
            .args(["install", "bpf-linker", "--version", BPF_LINKER_VERSION])
            .args(["--no-default-features", "--features", "llvm-22", "--force"])
            .env("LLVM_PREFIX", LLVM_PREFIX))
        .context("cargo install bpf-linker failed")?;
        if output_ok(Command::new("bpf-linker").arg("--version")).is_none() {
            bail!("setup: bpf-linker was installed but is not on PATH; add ~/.cargo/bin to PATH");
        }
    }
    package::setup()
}

/// The tools of the `floodwall-bpf` toolchain, all Debian's (`/usr/bin`): the compiler,
/// cargo, rustdoc, and clippy (`cargo clippy` runs `cargo-clippy`, which runs
/// `clippy-driver`; rustup looks for both in the toolchain's `bin`).
const BPF_TOOLCHAIN_TOOLS: [&str; 5] =
    ["rustc", "cargo", "rustdoc", "cargo-clippy", "clippy-driver"];

/// Links Debian's rustc 1.96 (sysroot /usr, LLVM 22) and its clippy into rustup as
/// `floodwall-bpf`.
fn link_toolchain() -> anyhow::Result<()> {
    let dir = Path::new(TOOLCHAIN_DIR);
    let bin = dir.join("bin");
    // Only the missing links: the others may be in use by a build in another checkout.
    let missing: Vec<&str> = BPF_TOOLCHAIN_TOOLS
        .into_iter()
        .filter(|tool| !bin.join(tool).exists())
        .collect();
    if !missing.is_empty() {
        eprintln!(
            "setup: linking Debian's {} into {TOOLCHAIN_DIR}/bin",
            missing.join(", ")
        );
        std::fs::create_dir_all(&bin)
            .with_context(|| format!("cannot create {TOOLCHAIN_DIR}/bin"))?;
        for tool in missing {
            replace_symlink(&Path::new("/usr/bin").join(tool), &bin.join(tool))?;
        }
    }
    let works =
        output_ok(Command::new("rustup").args(["run", BPF_TOOLCHAIN, "rustc", "--version"]))
            .is_some_and(|v| v.starts_with("rustc 1.96"));
    if works {
        return Ok(());
    }
    eprintln!("setup: missing rustup toolchain {BPF_TOOLCHAIN}; linking it to {TOOLCHAIN_DIR}");
    // rustup wants a lib directory; the compiler finds its sysroot (/usr) from its own path.
    replace_symlink(Path::new("/usr/lib"), &dir.join("lib"))?;
    run(Command::new("rustup").args(["toolchain", "link", BPF_TOOLCHAIN, TOOLCHAIN_DIR]))
        .context("rustup toolchain link failed")?;
    Ok(())
}

fn replace_symlink(target: &Path, link: &Path) -> anyhow::Result<()> {
    match std::fs::remove_file(link) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e).with_context(|| format!("cannot replace {}", link.display())),
    }
    std::os::unix::fs::symlink(target, link)
        .with_context(|| format!("cannot link {} to {}", link.display(), target.display()))
}

#[cfg(test)]
mod tests {
    use super::count_before;

    #[test]
    fn test_result_lines_are_counted() {
        let line =
            "ok. 12 passed; 3 failed; 0 ignored; 0 measured; 0 filtered out; finished in 0.1s";
        assert_eq!(count_before(line, " passed"), 12);
        assert_eq!(count_before(line, " failed"), 3);
        assert_eq!(count_before("FAILED. 0 passed; 1 failed;", " passed"), 0);
    }
}
