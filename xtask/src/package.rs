//! `cargo xtask package`: the Debian package. Builds the release binary, has it generate
//! its man pages and shell completions into `target/dist`, packs everything with cargo-deb
//! (`[package.metadata.deb]` in filter-user/Cargo.toml says what goes where), then opens the
//! `.deb` and checks that every file is in it.

use std::{
    collections::BTreeSet,
    path::{Path, PathBuf},
    process::Command,
    time::Instant,
};

use anyhow::{Context as _, bail, ensure};

/// The cargo-deb release `cargo xtask setup` installs; the asset and systemd-units keys of
/// filter-user's `[package.metadata.deb]` are written for it.
pub const CARGO_DEB_VERSION: &str = "3.8.0";

/// Where the generated assets go, under the workspace root; the asset paths of
/// `[package.metadata.deb]` point here.
const DIST_DIR: &str = "target/dist";

/// Installed files that do not come from `target/dist`, as `dpkg-deb -c` lists them.
const FIXED_FILES: [&str; 5] = [
    "./usr/bin/floodwall",
    "./usr/lib/systemd/system/floodwall.service",
    "./etc/floodwall/floodwall.toml",
    "./usr/share/doc/floodwall/README.md",
    "./usr/share/doc/floodwall/copyright",
];

/// Where each generated completion file is installed: each shell's vendor directory.
const COMPLETIONS: [(&str, &str); 3] = [
    (
        "floodwall.bash",
        "./usr/share/bash-completion/completions/floodwall",
    ),
    (
        "_floodwall",
        "./usr/share/zsh/vendor-completions/_floodwall",
    ),
    (
        "floodwall.fish",
        "./usr/share/fish/vendor_completions.d/floodwall.fish",
    ),
];

/// The sample configuration, installed as a conffile (an upgrade keeps an operator's edits).
const CONFFILE: &str = "/etc/floodwall/floodwall.toml";

/// Builds the release `floodwall` binary the package holds, and returns its path.
///
/// # Errors
/// If the build fails.
pub fn build_release(root: &Path) -> anyhow::Result<PathBuf> {
    crate::cargo(
        root,
        &["build", "--release", "--locked", "-p", "filter-user"],
        &[],
    )?;
    Ok(root.join("target/release/floodwall"))
}

/// Builds and checks the package; returns the release `floodwall` binary it holds (the
/// `.deb`'s path is printed).
///
/// # Errors
/// If a step fails, or the package lacks a file (each missing file is named).
pub fn run(root: &Path) -> anyhow::Result<PathBuf> {
    let started = Instant::now();
    let bin = build_release(root)?;

    let dist = root.join(DIST_DIR);
    let man_dir = dist.join("man");
    let completions_dir = dist.join("completions");
    // Fresh directories: cargo-deb takes every page the glob matches, so a page of a
    // subcommand that no longer exists must not linger.
    for dir in [&man_dir, &completions_dir] {
        match std::fs::remove_dir_all(dir) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e).with_context(|| format!("cannot clear {}", dir.display())),
        }
    }
    // Their stdout lists the files written; the checks below read the directories instead.
    crate::run(
        Command::new(&bin)
            .args(["generate", "man", "--out"])
            .arg(&man_dir)
            .stdout(std::process::Stdio::null()),
    )
    .context("floodwall generate man failed")?;
    crate::run(
        Command::new(&bin)
            .args(["generate", "completions", "--out"])
            .arg(&completions_dir)
            .stdout(std::process::Stdio::null()),
    )
    .context("floodwall generate completions failed")?;

    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let out = Command::new(cargo)
        .current_dir(root)
        .args(["deb", "-p", "filter-user", "--no-build", "--locked"])
        .output()
        .context("cannot run cargo deb (cargo xtask setup installs it)")?;
    // cargo-deb warns about every asset under a target directory other than its own
    // `target/release/` that it "will not build": true of target/dist, which this task
    // generates. Its other warnings are shown.
    for line in String::from_utf8_lossy(&out.stderr).lines() {
        let generated_here = line.contains("will not be built") && line.contains(DIST_DIR);
        if !generated_here {
            eprintln!("{line}");
        }
    }
    ensure!(out.status.success(), "cargo deb failed: {}", out.status);
    // cargo-deb prints the path of the package it wrote as its last line.
    let stdout = String::from_utf8_lossy(&out.stdout);
    let deb = stdout
        .lines()
        .rev()
        .map(str::trim)
        .find(|l| Path::new(l).extension().is_some_and(|e| e == "deb"))
        .map(|l| root.join(l))
        .with_context(|| format!("cargo deb named no .deb; it printed:\n{stdout}"))?;
    ensure!(
        deb.is_file(),
        "cargo deb reported {} but it is not there",
        deb.display()
    );

    let mut expected: BTreeSet<String> = FIXED_FILES.iter().map(|&f| f.to_owned()).collect();
    for page in file_names(&man_dir)? {
        expected.insert(format!("./usr/share/man/man1/{page}.gz"));
    }
    for (generated, installed) in COMPLETIONS {
        ensure!(
            completions_dir.join(generated).is_file(),
            "floodwall generate completions wrote no {generated}"
        );
        expected.insert(installed.to_owned());
    }
    verify(&deb, &expected)?;
    println!(
        "package: {} ({} files checked) in {:.0?}",
        deb.display(),
        expected.len(),
        started.elapsed()
    );
    Ok(bin)
}

/// Checks the package's file list, its conffiles and its control fields.
fn verify(deb: &Path, expected: &BTreeSet<String>) -> anyhow::Result<()> {
    let missing = missing_files(&dpkg_deb(&["-c"], deb, &[])?, expected);
    if !missing.is_empty() {
        bail!(
            "{} lacks {}:\n  {}",
            deb.display(),
            if missing.len() == 1 {
                "a file"
            } else {
                "files"
            },
            missing.join("\n  ")
        );
    }

    // The unit is registered on install and its state purged on removal (deb-systemd-helper,
    // from cargo-deb's systemd-units); without these scripts `apt purge` leaves it behind.
    for script in ["postinst", "prerm", "postrm"] {
        let text = dpkg_deb(&["-I"], deb, &[script])?;
        ensure!(
            text.contains("floodwall.service"),
            "{}'s {script} does not handle floodwall.service:\n{text}",
            deb.display()
        );
    }

    let conffiles = dpkg_deb(&["-I"], deb, &["conffiles"])?;
    ensure!(
        conffiles.lines().any(|l| l.trim() == CONFFILE),
        "{} does not mark {CONFFILE} as a conffile (conffiles: {conffiles:?})",
        deb.display()
    );

    let fields = dpkg_deb(&["-f"], deb, &["Package", "Section", "Depends"])?;
    for wanted in ["Package: floodwall", "Section: net", "Depends: libc6"] {
        ensure!(
            fields.lines().any(|l| l.starts_with(wanted)),
            "{}'s control fields lack `{wanted}`:\n{fields}",
            deb.display()
        );
    }
    Ok(())
}

/// The files of `expected` that a `dpkg-deb -c` listing lacks.
fn missing_files<'a>(listing: &str, expected: &'a BTreeSet<String>) -> Vec<&'a str> {
    // `-rw-r--r-- root/root  1234 2026-01-01 00:00 ./usr/bin/floodwall`: the path is the
    // last field (no asset has a space in its name).
    let packed: BTreeSet<&str> = listing
        .lines()
        .filter_map(|l| l.split_whitespace().last())
        .collect();
    expected
        .iter()
        .map(String::as_str)
        .filter(|f| !packed.contains(f))
        .collect()
}

/// `dpkg-deb OPTIONS DEB ARGS`, its stdout.
fn dpkg_deb(options: &[&str], deb: &Path, args: &[&str]) -> anyhow::Result<String> {
    let mut cmd = Command::new("dpkg-deb");
    cmd.args(options).arg(deb).args(args);
    let out = cmd
        .output()
        .with_context(|| format!("cannot run {cmd:?}"))?;
    ensure!(
        out.status.success(),
        "{cmd:?} failed ({}): {}",
        out.status,
        String::from_utf8_lossy(&out.stderr).trim()
    );
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn file_names(dir: &Path) -> anyhow::Result<Vec<String>> {
    let mut names = Vec::new();
    for entry in std::fs::read_dir(dir).with_context(|| format!("cannot read {}", dir.display()))? {
        let entry = entry.with_context(|| format!("cannot read {}", dir.display()))?;
        names.push(entry.file_name().to_string_lossy().into_owned());
    }
    ensure!(!names.is_empty(), "{} is empty", dir.display());
    Ok(names)
}

/// Installs cargo-deb [`CARGO_DEB_VERSION`] unless it is there already.
///
/// # Errors
/// If `cargo install` fails.
pub fn setup() -> anyhow::Result<()> {
    let installed = crate::output_ok(Command::new("cargo").args(["deb", "--version"]))
        .is_some_and(|v| v.split_whitespace().any(|w| w == CARGO_DEB_VERSION));
    if installed {
        return Ok(());
    }
    eprintln!("setup: missing cargo-deb {CARGO_DEB_VERSION}; installing it (about a minute)");
    crate::run(Command::new("cargo").args([
        "install",
        "cargo-deb",
        "--version",
        CARGO_DEB_VERSION,
        "--locked",
    ]))
    .context("cargo install cargo-deb failed")
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::missing_files;

    #[test]
    fn files_missing_from_a_listing_are_named() {
        let listing = "\
drwxr-xr-x root/root         0 2026-11-25 12:26 ./usr/bin/
-rwxr-xr-x root/root   4442992 2026-11-25 12:26 ./usr/bin/floodwall
-rw-r--r-- root/root       124 2026-11-25 12:26 ./etc/floodwall/floodwall.toml
";
        let expected: BTreeSet<String> = [
            "./usr/bin/floodwall",
            "./etc/floodwall/floodwall.toml",
            "./usr/share/man/man1/floodwall.1.gz",
        ]
        .map(str::to_owned)
        .into();
        assert_eq!(
            missing_files(listing, &expected),
            ["./usr/share/man/man1/floodwall.1.gz"],
            "only the file the listing lacks is missing"
        );
    }
}
