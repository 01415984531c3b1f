//! The guest's whole filesystem, as an initramfs: the test binaries and the `floodwall`
//! binary, the tools the tests run, every shared library they load, the kernel modules the
//! lab needs, a few files of `/etc`, and `/init`, which runs the tests and prints the verdict.
//!
//! Programs and libraries sit at the paths they have on this machine, with the same
//! symbolic links on the way (Debian's merged `/usr`: `/lib` -> `usr/lib`, ...), so that the
//! dynamic loader and `PATH` find them as they do here.

use std::{
    fs,
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{Context as _, bail, ensure};

use super::{
    cpio::{Archive, Node},
    kernel::Module,
};

/// Where the test binaries and `floodwall` live in the guest.
pub const GUEST_DIR: &str = "/floodwall";
/// Where the modules live in the guest.
const GUEST_MODULES: &str = "/floodwall/modules";
/// The marker line `/init` prints with the verdict: `FLOODWALL-VM-RESULT: PASS` or
/// `FLOODWALL-VM-RESULT: FAIL <reason>`.
pub const RESULT_MARKER: &str = "FLOODWALL-VM-RESULT:";
/// The marker line `/init` prints with `uname -r`, to check the guest runs the kernel meant.
pub const KERNEL_MARKER: &str = "FLOODWALL-VM-KERNEL:";
/// The marker line `/init` prints before each test binary.
pub const RUN_MARKER: &str = "FLOODWALL-VM-RUN:";

/// Tools the tests run by name, found through `PATH` in the guest: the lab's
/// (`tests/src/lab/mod.rs`, `TOOLS`: ip, ss, timeout, hping3, nginx, curl, setpriv; a unit test
/// checks this list has them all), trafgen for the spoofed floods (`tests/src/flood.rs`),
/// and what they run in turn: `sh` and `sleep` (the HTTP client loop), `sysctl` (the lab's
/// switch). A tool missing here still fails loudly in the guest: the tests check their tools
/// before they build anything, and `FLOODWALL_REQUIRE_PRIVILEGED` turns skips into failures.
pub const TOOLS: [&str; 11] = [
    "ip", "ss", "timeout", "hping3", "nginx", "curl", "setpriv", "trafgen", "sh", "sleep", "sysctl",
];

/// Where tools are looked up on this machine and in the guest.
const PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// A test binary to run in the guest.
#[derive(Clone, Debug)]
pub struct TestBinary {
    /// The test target's name (`e2e`).
    pub name: String,
    /// The executable cargo built.
    pub path: PathBuf,
    /// libtest's `--test-threads`: 1 for tests that share the kernel's state (XDP
    /// attachments, namespaces); more for those that do not.
    pub threads: u32,
    /// libtest arguments after `--test-threads` (`--skip NAME`, a filter, `--nocapture`),
    /// each a shell word.
    pub args: Vec<String>,
}

/// What goes into the guest.
pub struct Contents<'a> {
    /// Test binaries, run in this order.
    pub tests: &'a [TestBinary],
    /// The `floodwall` binary (the tests find it through `FLOODWALL_BIN`).
    pub floodwall: &'a Path,
    /// Modules to load, dependencies first.
    pub modules: &'a [Module],
    /// How long each test binary may run in the guest before `timeout` stops it.
    pub test_timeout_secs: u64,
    /// Scratch space for stripped copies of the binaries.
    pub scratch: &'a Path,
}

/// Builds the initramfs and writes it to `out`.
///
/// # Errors
/// If a tool, library or binary is missing or cannot be read or stripped.
pub fn build(contents: &Contents, out: &Path) -> anyhow::Result<()> {
    let mut archive = Archive::default();
    let mut binaries = Vec::new();

    fs::create_dir_all(contents.scratch)
        .with_context(|| format!("cannot create {}", contents.scratch.display()))?;
    let guest_dir = Path::new(GUEST_DIR);
    let mut ours = vec![("floodwall", contents.floodwall)];
    ours.extend(
        contents
            .tests
            .iter()
            .map(|t| (t.name.as_str(), t.path.as_path())),
    );
    for (name, path) in ours {
        // Without their debug info the binaries shrink from ~50 MB to a few MB each, which
        // the guest has to hold in memory and the emulated CPU has to unpack. Symbols stay,
        // so a panic's backtrace still names functions.
        let stripped = contents.scratch.join(name);
        strip_debug(path, &stripped)?;
        archive.add(
            &guest_dir.join(name),
            Node::HostFile {
                source: stripped,
                mode: 0o755,
            },
        )?;
        binaries.push(path.to_owned());
    }

    let init_tools = InitTools {
        busybox: find_tool("busybox")?,
        ip: find_tool("ip")?,
        timeout: find_tool("timeout")?,
    };
    add_host_path(&mut archive, &init_tools.busybox)?;
    for tool in TOOLS {
        let path = find_tool(tool)?;
        add_host_path(&mut archive, &path)?;
        binaries.push(path);
    }
    for binary in &binaries {
        for lib in shared_libraries(binary)? {
            add_host_path(&mut archive, &lib)?;
        }
    }

    for module in contents.modules {
        archive.add(
            &Path::new(GUEST_MODULES).join(format!("{}.ko", module.name)),
            Node::HostFile {
                source: module.file.clone(),
                mode: 0o644,
            },
        )?;
    }

    for dir in ["/proc", "/sys", "/dev", "/tmp", "/run", "/root"] {
        archive.add(Path::new(dir), Node::Dir)?;
    }
    // iproute2 keeps named network namespaces in /var/run/netns; /var/run is /run here too.
    archive.add(Path::new("/var/run"), Node::Symlink("../run".into()))?;
    for (path, text) in etc_files() {
        archive.add(
            Path::new(path),
            Node::Bytes {
                data: text.into_bytes(),
                mode: 0o644,
            },
        )?;
    }
    let init = init_script(
        &init_tools,
        contents.modules,
        contents.tests,
        contents.test_timeout_secs,
    );
    archive.add(
        Path::new("/init"),
        Node::Bytes {
            data: init.into_bytes(),
            mode: 0o755,
        },
    )?;

    let partial = out.with_extension("partial");
    let file = fs::File::create(&partial)
        .with_context(|| format!("cannot create {}", partial.display()))?;
    let mut writer = std::io::BufWriter::new(file);
    let written = archive.write_to(&mut writer);
    drop(writer);
    if let Err(e) = written {
        let _ = fs::remove_file(&partial);
        return Err(e).with_context(|| format!("cannot write {}", partial.display()));
    }
    fs::rename(&partial, out)
        .with_context(|| format!("cannot move {} to {}", partial.display(), out.display()))
}

/// `/etc` of the guest: users for nginx's workers (`nobody`) and the tests' unprivileged
/// CLI calls (uid 65534), and name service switch settings that need no daemon.
fn etc_files() -> Vec<(&'static str, String)> {
    let mut files = vec![
        (
            "/etc/passwd",
            "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n"
                .to_owned(),
        ),
        ("/etc/group", "root:x:0:\nnogroup:x:65534:\n".to_owned()),
        (
            "/etc/nsswitch.conf",
            "passwd: files\ngroup: files\nhosts: files\nservices: files\nprotocols: files\n"
                .to_owned(),
        ),
        ("/etc/hosts", "127.0.0.1 localhost\n::1 localhost\n".to_owned()),
    ];
    // Protocol and service names, which hping3 and curl may look up, as this machine has
    // them (package netbase).
    for path in ["/etc/protocols", "/etc/services"] {
        if let Ok(text) = fs::read_to_string(path) {
            files.push((path, text));
        }
    }
    files
}

/// Programs `/init` calls by absolute path.
struct InitTools {
    busybox: PathBuf,
    ip: PathBuf,
    timeout: PathBuf,
}

/// The guest's `/init`, run by busybox's shell. Real tools are called by absolute path:
/// Debian's busybox runs its own applet for a name it knows (`ip`, `sysctl`, `timeout`)
/// even when the real tool is on `PATH`, and the applets lack options the tests use.
fn init_script(
    tools: &InitTools,
    modules: &[Module],
    tests: &[TestBinary],
    timeout_secs: u64,
) -> String {
    let bb = tools.busybox.display();
    let ip = tools.ip.display();
    let timeout = tools.timeout.display();
    let mut parts = vec![format!(
        r#"#!{bb} sh
# PID 1 of floodwall's test VM, written by `cargo xtask integration-test --vm`
# (xtask/src/vm/initramfs.rs). It runs the kernel-level tests and prints the verdict on
# the serial console, where the xtask reads it.
bb={bb}
verdict() {{
    echo "{RESULT_MARKER} $*"
    $bb sync
    $bb poweroff -f
    # poweroff needs ACPI; should it fail, stop through sysrq rather than let PID 1 exit,
    # which the host would see as a kernel panic.
    echo o > /proc/sysrq-trigger
    $bb sleep 60
}}
$bb mount -t proc proc /proc || verdict FAIL cannot mount /proc
$bb mount -t sysfs sysfs /sys || verdict FAIL cannot mount /sys
$bb mount -t devtmpfs devtmpfs /dev || verdict FAIL cannot mount /dev
$bb mount -t tmpfs tmpfs /tmp || verdict FAIL cannot mount /tmp
$bb mount -t tmpfs tmpfs /run || verdict FAIL cannot mount /run
$bb mount -t bpf bpf /sys/fs/bpf || verdict FAIL cannot mount the BPF filesystem
echo "{KERNEL_MARKER} $($bb uname -r)"
"#
    )];
    parts.extend(modules.iter().map(|module| {
        let name = &module.name;
        format!("$bb insmod {GUEST_MODULES}/{name}.ko || verdict FAIL cannot load module {name}\n")
    }));
    parts.push(format!(
        r#"{ip} link set lo up || verdict FAIL cannot bring up lo
export PATH={PATH}
export HOME=/root TMPDIR=/tmp RUST_BACKTRACE=1
export FLOODWALL_BIN={GUEST_DIR}/floodwall FLOODWALL_REQUIRE_PRIVILEGED=1
# Tells a test it runs under emulation, where processes start and packets move several
# times slower than on the machine's own kernel.
export FLOODWALL_VM=1
# Lets libtest take `-Z unstable-options --report-time`: each test's time in the console,
# to see where the run's minutes go (CI's budget is mostly this VM).
export RUSTC_BOOTSTRAP=1
failed=""
"#
    ));
    // One test thread: the tests share the kernel (XDP attachments, namespaces). A test
    // binary that hangs is stopped, so the verdict names it instead of the host's timeout
    // saying only that the guest hung.
    parts.extend(tests.iter().map(|binary| {
        let test = &binary.name;
        let args = binary.args.join(" ");
        let threads = binary.threads.max(1);
        format!(
            r#"echo "{RUN_MARKER} {test}"
{timeout} --kill-after=10 {timeout_secs} {GUEST_DIR}/{test} --test-threads={threads} -Z unstable-options --report-time {args}
rc=$?
case $rc in
    0) ;;
    124|137) failed="$failed {test} (timed out after {timeout_secs} s)" ;;
    *) failed="$failed {test} (exit $rc)" ;;
esac
"#
        )
    }));
    parts.push(
        r#"if [ -z "$failed" ]; then verdict PASS; else verdict FAIL:$failed; fi
"#
        .to_owned(),
    );
    parts.concat()
}

/// `tool`'s path on this machine, looked up in [`PATH`].
fn find_tool(tool: &str) -> anyhow::Result<PathBuf> {
    std::env::split_paths(PATH)
        .map(|dir| dir.join(tool))
        .find(|p| p.is_file())
        .with_context(|| {
            format!("the VM needs {tool}, which is not installed (run `cargo xtask setup`)")
        })
}

/// Adds a path of this machine at the same path: every symbolic link on the way as a link
/// (and what it points to), the final file with its content.
fn add_host_path(archive: &mut Archive, path: &Path) -> anyhow::Result<()> {
    add_host_path_depth(archive, path, 0)
}

fn add_host_path_depth(archive: &mut Archive, path: &Path, depth: u32) -> anyhow::Result<()> {
    ensure!(
        depth < 40,
        "too many symbolic links on the way to {}",
        path.display()
    );
    ensure!(path.is_absolute(), "{} is not absolute", path.display());
    // `real` is where we are with every link so far resolved.
    let mut real = PathBuf::from("/");
    let components: Vec<_> = path.components().skip(1).collect();
    for (i, component) in components.iter().enumerate() {
        let last = i + 1 == components.len();
        let next = real.join(component);
        let meta = fs::symlink_metadata(&next)
            .with_context(|| format!("cannot stat {}", next.display()))?;
        if meta.file_type().is_symlink() {
            let target = fs::read_link(&next)?;
            archive.add(&next, Node::Symlink(target.clone()))?;
            let resolved = if target.is_absolute() {
                target
            } else {
                real.join(target)
            };
            add_host_path_depth(archive, &normalize(&resolved), depth + 1)?;
            if last {
                return Ok(());
            }
            real = fs::canonicalize(&next)
                .with_context(|| format!("cannot resolve {}", next.display()))?;
        } else if meta.is_dir() {
            archive.add(&next, Node::Dir)?;
            real = next;
        } else if last && meta.is_file() {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = meta.permissions().mode() & 0o7777;
            archive.add(
                &next,
                Node::HostFile {
                    source: next.clone(),
                    mode,
                },
            )?;
        } else {
            bail!(
                "{} is neither a file, a directory nor a link",
                next.display()
            );
        }
    }
    Ok(())
}

/// Removes `.` and resolves `..` lexically (a link target like `../lib/x`), which is right
/// here because `real` has no links left in it.
fn normalize(path: &Path) -> PathBuf {
    use std::path::Component;
    let mut out = PathBuf::from("/");
    for component in path.components() {
        match component {
            Component::ParentDir => {
                out.pop();
            }
            Component::Normal(c) => out.push(c),
            Component::RootDir | Component::CurDir | Component::Prefix(_) => {}
        }
    }
    out
}

/// The shared libraries `binary` loads, the dynamic loader among them, from `ldd`. A static
/// binary has none.
fn shared_libraries(binary: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let out = Command::new("ldd")
        .arg(binary)
        .output()
        .context("cannot run ldd (package libc-bin)")?;
    let text = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        // ldd says "not a dynamic executable" (on stderr, exit 1) for a static binary.
        let err = String::from_utf8_lossy(&out.stderr);
        if err.contains("not a dynamic executable") {
            return Ok(Vec::new());
        }
        bail!("ldd {} failed: {}", binary.display(), err.trim());
    }
    parse_ldd(&text).with_context(|| format!("ldd {}", binary.display()))
}

/// The paths in `ldd`'s output: `libc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x...)` and
/// `/lib64/ld-linux-x86-64.so.2 (0x...)`; `linux-vdso.so.1 (0x...)` is the kernel's own.
fn parse_ldd(text: &str) -> anyhow::Result<Vec<PathBuf>> {
    let mut libs = Vec::new();
    for line in text.lines().map(str::trim).filter(|l| !l.is_empty()) {
        if line.contains("not found") {
            bail!("a shared library is missing: {line}");
        }
        let path = match line.split_once(" => ") {
            Some((_, rest)) => rest,
            None => line,
        };
        let path = path.split(" (").next().unwrap_or(path).trim();
        if path.starts_with('/') {
            libs.push(PathBuf::from(path));
        }
    }
    Ok(libs)
}

/// Copies `binary` to `dest` without its debug info.
fn strip_debug(binary: &Path, dest: &Path) -> anyhow::Result<()> {
    let out = Command::new("objcopy")
        .arg("--strip-debug")
        .arg(binary)
        .arg(dest)
        .output()
        .context("cannot run objcopy (package binutils)")?;
    ensure!(
        out.status.success(),
        "objcopy --strip-debug {} failed: {}",
        binary.display(),
        String::from_utf8_lossy(&out.stderr).trim()
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ldd_output_gives_library_paths() {
        let text = "\tlinux-vdso.so.1 (0x00007ffc1b5f2000)
\tlibgcc_s.so.1 => /lib/x86_64-linux-gnu/libgcc_s.so.1 (0x00007f5c0b9e0000)
\tlibc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x00007f5c0b7ff000)
\t/lib64/ld-linux-x86-64.so.2 (0x00007f5c0ba3f000)
";
        assert_eq!(
            parse_ldd(text).unwrap(),
            [
                PathBuf::from("/lib/x86_64-linux-gnu/libgcc_s.so.1"),
                PathBuf::from("/lib/x86_64-linux-gnu/libc.so.6"),
                PathBuf::from("/lib64/ld-linux-x86-64.so.2"),
            ]
        );
        assert!(parse_ldd("\tlibfoo.so.1 => not found\n").is_err());
    }

    #[test]
    fn link_targets_are_normalized() {
        assert_eq!(
            normalize(Path::new("/usr/lib/../lib/./x")),
            PathBuf::from("/usr/lib/x")
        );
    }

    #[test]
    fn host_paths_keep_their_links() {
        // /bin/sh is a link on every Debian system (to dash), and /bin is one too with a
        // merged /usr: both links and the real file must be in the archive.
        let mut archive = Archive::default();
        add_host_path(&mut archive, Path::new("/bin/sh")).unwrap();
        let real = fs::canonicalize("/bin/sh").unwrap();
        assert!(matches!(archive.get(&real), Some(Node::HostFile { .. })));
        if fs::symlink_metadata("/bin")
            .unwrap()
            .file_type()
            .is_symlink()
        {
            assert!(matches!(
                archive.get(Path::new("/bin")),
                Some(Node::Symlink(_))
            ));
        }
    }

    #[test]
    fn the_guest_has_every_tool_of_the_lab() {
        // The `(tool, package)` pairs of `pub const TOOLS` in tests/src/lab/mod.rs.
        let lab = fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../tests/src/lab/mod.rs"
        ))
        .unwrap();
        let start = lab.find("pub const TOOLS").expect("lab/mod.rs has TOOLS");
        let body = &lab[start..start + lab[start..].find("];").unwrap()];
        let lab_tools: Vec<&str> = body
            .split("(\"")
            .skip(1)
            .filter_map(|pair| pair.split('"').next())
            .collect();
        assert!(lab_tools.contains(&"hping3"), "parsed {lab_tools:?}");
        for tool in lab_tools {
            assert!(TOOLS.contains(&tool), "the VM lacks the lab's tool {tool}");
        }
    }

    #[test]
    fn init_runs_every_test_and_reports() {
        let modules = [Module {
            name: "veth".into(),
            file: PathBuf::from("/x/veth.ko"),
        }];
        let tools = InitTools {
            busybox: "/bin/busybox".into(),
            ip: "/usr/bin/ip".into(),
            timeout: "/usr/bin/timeout".into(),
        };
        let e2e = TestBinary {
            name: "e2e".to_owned(),
            path: PathBuf::from("/nonexistent/e2e"),
            threads: 1,
            args: Vec::new(),
        };
        let script = init_script(&tools, &modules, &[e2e], 600);
        assert!(script.starts_with("#!/bin/busybox sh\n"));
        assert!(script.contains("insmod /floodwall/modules/veth.ko"));
        assert!(script.contains("/usr/bin/ip link set lo up"));
        assert!(
            script.contains("/usr/bin/timeout --kill-after=10 600 /floodwall/e2e --test-threads=1")
        );
        assert!(script.contains("FLOODWALL_REQUIRE_PRIVILEGED=1"));
        assert!(script.contains("verdict PASS"));
    }
}
