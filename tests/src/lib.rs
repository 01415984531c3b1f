//! Shared pieces of floodwall's privileged tests, demo and benchmarks.
//!
//! Modules: [`lab`] (network namespaces joined by veth, removed on drop), [`flood`]
//! (generators of spoofed floods: trafgen configurations, a test-run frame generator),
//! [`frames`] (frames built byte by byte, a seeded generator), [`model`] (a reference model
//! of the XDP program's decision, for the differential test), [`bench`] (what the benchmark
//! binaries share: exit codes, CPU pinning), [`udp`] and [`http`] (a UDP service and its
//! user, and a web visitor, as threads in a lab host's namespace).

use std::path::PathBuf;

pub mod bench;
pub mod flood;
pub mod frames;
pub mod http;
pub mod lab;
pub mod model;
pub mod udp;

/// Environment variable that turns a skipped privileged test into a failure. `cargo xtask
/// test` sets it; so does CI (`CI=true`).
pub const REQUIRE_PRIVILEGED: &str = "FLOODWALL_REQUIRE_PRIVILEGED";

/// Whether a privileged test can run here. When it cannot, says why on stderr and returns
/// false, so the test returns early; but panics instead when [`REQUIRE_PRIVILEGED`] or `CI`
/// is set, so a green CI run means the kernel path really ran.
///
/// # Panics
/// When the test cannot run and skipping is not allowed.
#[must_use]
pub fn privileged(test: &str) -> bool {
    let why = if !nix_is_root() {
        Some("not running as root (needs CAP_BPF, CAP_NET_ADMIN)".to_owned())
    } else if !std::path::Path::new("/sys/kernel/btf/vmlinux").exists() {
        Some("the kernel has no BTF at /sys/kernel/btf/vmlinux".to_owned())
    } else {
        None
    };
    let Some(why) = why else { return true };
    let required = std::env::var_os(REQUIRE_PRIVILEGED).is_some_and(|v| v != "0")
        || std::env::var_os("CI").is_some_and(|v| v == "true" || v == "1");
    assert!(
        !required,
        "privileged test {test} cannot run: {why} (and {REQUIRE_PRIVILEGED} or CI is set)"
    );
    eprintln!("SKIPPED privileged test {test}: {why}");
    false
}

fn nix_is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

/// The `floodwall` binary under test: `$FLOODWALL_BIN`, else the one cargo built beside this
/// test executable (`target/<profile>/floodwall`).
///
/// # Panics
/// If neither exists.
#[must_use]
pub fn floodwall_bin() -> PathBuf {
    if let Some(path) = std::env::var_os("FLOODWALL_BIN") {
        return PathBuf::from(path);
    }
    let exe = std::env::current_exe().expect("current_exe");
    // target/<profile>/deps/<test> or target/<profile>/<bin>
    let candidates = exe
        .ancestors()
        .skip(1)
        .take(3)
        .map(|dir| dir.join("floodwall"));
    for candidate in candidates {
        if candidate.is_file() {
            return candidate;
        }
    }
    panic!(
        "the floodwall binary was not found next to {}; build it (cargo build -p filter-user) or set FLOODWALL_BIN",
        exe.display()
    );
}

/// Whether the tests run in the test VM (`FLOODWALL_VM`, set by its `/init`), under software
/// emulation, where processes start and packets move several times slower than on the
/// machine's own kernel.
#[must_use]
pub fn in_vm() -> bool {
    std::env::var_os("FLOODWALL_VM").is_some()
}
