//! Builds the XDP program (`filter-ebpf`) with the eBPF toolchain that `cargo xtask setup`
//! provisions, and embeds it in the daemon (see `loader::EBPF_OBJECT`).
//!
//! This does what aya-build's `build_ebpf` does (a child cargo with the eBPF toolchain,
//! `-Z build-std=core`, the BPF target's cfg and BTF), with one difference that is the
//! reason it is here: the child builds in one target directory for the whole workspace,
//! `target/bpf`, where aya-build 0.2 builds in this script's `OUT_DIR`. `OUT_DIR` differs for
//! every profile and feature set (clippy's check, the debug build, the tests, the release
//! package), so aya-build compiled core and the program from scratch for each, four times
//! in `cargo xtask test` at over a minute each; in one directory cargo builds the program
//! once and finds it fresh after.

use std::{
    env,
    ffi::OsString,
    io::{BufRead as _, BufReader},
    path::PathBuf,
    process::{Command, Stdio},
};

use anyhow::{Context as _, bail};
use cargo_metadata::{Artifact, Message};
use filter_common::BPF_TOOLCHAIN;

/// The XDP program's package, and its binary, the object the daemon embeds.
const EBPF_PACKAGE: &str = "filter-ebpf";
const EBPF_BINARY: &str = "floodwall";

fn main() -> anyhow::Result<()> {
    check_toolchain()?;
    let metadata = cargo_metadata::MetadataCommand::new()
        .no_deps()
        .exec()
        .context("cargo metadata failed")?;
    let ebpf = metadata
        .packages
        .iter()
        .find(|p| p.name.as_str() == EBPF_PACKAGE)
        .context("package filter-ebpf is not in the workspace")?;
    let ebpf_dir = ebpf
        .manifest_path
        .parent()
        .context("filter-ebpf's manifest has no parent directory")?;
    // filter-ebpf is a build-dependency, so a change to its library or to filter-common
    // reruns this script; its binary's sources are not a dependency cargo knows of.
    println!("cargo:rerun-if-changed={ebpf_dir}");
    // Not inside the outer build's own profile directory, whose lock the outer cargo
    // holds while this script runs (cargo#6412).
    let target_dir = metadata.target_directory.join("bpf");
    let object = build_ebpf(&target_dir.into_std_path_buf())?;
    let out_dir = PathBuf::from(env::var_os("OUT_DIR").context("OUT_DIR is not set")?);
    std::fs::copy(&object, out_dir.join(EBPF_BINARY))
        .with_context(|| format!("cannot copy {} to {}", object.display(), out_dir.display()))?;
    Ok(())
}

/// Runs the child cargo for the BPF target in `target_dir` and returns the path of the
/// program's object. Its diagnostics become this script's warnings, so that cargo shows
/// them.
fn build_ebpf(target_dir: &std::path::Path) -> anyhow::Result<PathBuf> {
    let endian = env::var("CARGO_CFG_TARGET_ENDIAN").context("CARGO_CFG_TARGET_ENDIAN")?;
    let target = match endian.as_str() {
        "little" => "bpfel-unknown-none",
        "big" => "bpfeb-unknown-none",
        other => bail!("no BPF target for endianness {other}"),
    };
    // aya-ebpf reads the architecture of the kernel's structures from this cfg.
    let arch = env::var("CARGO_CFG_TARGET_ARCH").context("CARGO_CFG_TARGET_ARCH")?;
    let mut rustflags = OsString::new();
    for (i, flag) in [
        format!("--cfg=bpf_target_arch=\"{arch}\""),
        "-Cdebuginfo=2".to_owned(),
        // BTF, which the loader needs for the maps' and programs' types.
        "-Clink-arg=--btf".to_owned(),
    ]
    .iter()
    .enumerate()
    {
        if i > 0 {
            rustflags.push("\x1f");
        }
        rustflags.push(flag);
    }
    let mut cmd = Command::new("rustup");
    cmd.args(["run", BPF_TOOLCHAIN, "cargo", "build"])
        .args(["--package", EBPF_PACKAGE, "--bins", "--release"])
        .args(["--target", target, "-Z", "build-std=core"])
        // Quiet: cargo's progress lines would show as warnings, the way this script
        // passes the child's diagnostics on.
        .args(["--quiet", "--message-format=json-render-diagnostics"])
        .arg("--target-dir")
        .arg(target_dir)
        // Debian's rustc is a stable compiler; this lets the child use `-Z build-std=core`
        // (no prebuilt core exists for the BPF target). The child's only, not our build's.
        .env("RUSTC_BOOTSTRAP", "1")
        .env("CARGO_ENCODED_RUSTFLAGS", rustflags)
        // The outer build's compiler and wrapper (clippy's, under `cargo clippy`) must not
        // stand in for the eBPF toolchain's.
        .env_remove("RUSTC")
        .env_remove("RUSTC_WORKSPACE_WRAPPER")
        .env_remove("RUSTC_WRAPPER")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd
        .spawn()
        .with_context(|| format!("cannot start {cmd:?}"))?;
    let stderr = child.stderr.take().context("no stderr")?;
    let warnings = std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            println!("cargo:warning={line}");
        }
    });
    let stdout = child.stdout.take().context("no stdout")?;
    let mut object = None;
    for message in Message::parse_stream(BufReader::new(stdout)) {
        if let Message::CompilerArtifact(Artifact {
            executable: Some(executable),
            target,
            ..
        }) = message.context("the child cargo wrote something other than JSON")?
            && target.name == EBPF_BINARY
        {
            object = Some(executable.into_std_path_buf());
        }
    }
    let status = child.wait().with_context(|| format!("{cmd:?}"))?;
    let _ = warnings.join();
    if !status.success() {
        bail!("building the XDP program failed ({status}): {cmd:?}");
    }
    object.with_context(|| format!("{cmd:?} built no `{EBPF_BINARY}` binary"))
}

/// Fails early, with the remedy, when the eBPF toolchain is missing: otherwise the failure
/// would surface as a linker or rustup error deep in the child build.
fn check_toolchain() -> anyhow::Result<()> {
    const REMEDY: &str = "run `cargo xtask setup` first: it installs the eBPF toolchain";
    println!("cargo:rerun-if-env-changed=PATH");
    let toolchain = Command::new("rustup")
        .args(["run", BPF_TOOLCHAIN, "rustc", "--version"])
        .output();
    if !toolchain.is_ok_and(|out| out.status.success()) {
        bail!("floodwall: the rustup toolchain `{BPF_TOOLCHAIN}` is missing; {REMEDY}");
    }
    let linker = Command::new("bpf-linker").arg("--version").output();
    if !linker.is_ok_and(|out| out.status.success()) {
        bail!("floodwall: bpf-linker is not on PATH; {REMEDY}");
    }
    Ok(())
}
