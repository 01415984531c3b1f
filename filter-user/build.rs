//! Builds the XDP program (`filter-ebpf`) with the eBPF toolchain that `cargo xtask setup`
//! provisions, and embeds it in the daemon (see `loader::EBPF_OBJECT`).

use std::process::Command;

use anyhow::{Context as _, bail};
use aya_build::{Package, Toolchain};
use filter_common::BPF_TOOLCHAIN;

fn main() -> anyhow::Result<()> {
    check_toolchain()?;
    // Debian's rustc is a stable compiler; RUSTC_BOOTSTRAP=1 lets aya-build pass
    // `-Z build-std=core` to the child build of the BPF target (no prebuilt core exists for
    // bpfel-unknown-none). Set here, for that child only: our own crates build as usual.
    // SAFETY: build scripts are single-threaded at this point; nothing reads the environment
    // concurrently.
    unsafe { std::env::set_var("RUSTC_BOOTSTRAP", "1") };

    let metadata = cargo_metadata::MetadataCommand::new()
        .no_deps()
        .exec()
        .context("cargo metadata failed")?;
    let ebpf = metadata
        .packages
        .iter()
        .find(|p| p.name.as_str() == "filter-ebpf")
        .context("package filter-ebpf is not in the workspace")?;
    let root_dir = ebpf
        .manifest_path
        .parent()
        .context("filter-ebpf's manifest has no parent directory")?;
    aya_build::build_ebpf(
        [Package {
            name: "filter-ebpf",
            root_dir: root_dir.as_str(),
            ..Default::default()
        }],
        Toolchain::Custom(BPF_TOOLCHAIN),
    )
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
