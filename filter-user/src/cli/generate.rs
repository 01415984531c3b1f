//! `floodwall generate` (hidden): shell completions and man pages made from the clap
//! definition in [`crate::cli::args`], so they cannot drift from the flags the binary accepts.
//! Packaging runs it (`cargo xtask package`); operators have no use for it.

use std::{
    fs,
    io::Write as _,
    path::{Path, PathBuf},
};

use anyhow::Context as _;
use clap::CommandFactory as _;
use clap_complete::Shell;
use roff::{Roff, bold, roman};

use super::{Cli, GenerateCommand};
use crate::{config, control::DEFAULT_RUN_DIR, pin::DEFAULT_PIN_ROOT};

/// The shells whose completions the Debian package installs, each into its own vendor
/// directory.
pub const SHELLS: [Shell; 3] = [Shell::Bash, Shell::Zsh, Shell::Fish];

/// The name of the binary, as completions and man pages call it.
const BIN_NAME: &str = "floodwall";

/// Writes the files `command` asks for and prints their paths.
///
/// # Errors
/// If the output directory or a file cannot be written.
pub fn run(command: &GenerateCommand) -> anyhow::Result<()> {
    let written = match command {
        GenerateCommand::Completions { out } => completions(out)?,
        GenerateCommand::Man { out } => man_pages(out)?,
    };
    for path in written {
        println!("{}", path.display());
    }
    Ok(())
}

/// Writes one completion file per shell of [`SHELLS`] into `out`; returns their paths.
///
/// # Errors
/// If `out` or a file cannot be written.
pub fn completions(out: &Path) -> anyhow::Result<Vec<PathBuf>> {
    create_dir(out)?;
    let mut cli = visible_cli();
    SHELLS
        .into_iter()
        .map(|shell| {
            clap_complete::generate_to(shell, &mut cli, BIN_NAME, out)
                .with_context(|| format!("cannot write {shell} completions to {}", out.display()))
        })
        .collect()
}

/// [`Cli`]'s command without its hidden subcommands. `clap_complete` offers hidden subcommands
/// too (clap-rs/clap#1335) and `clap::Command` cannot remove one, so the root is
/// re-assembled from `Cli`'s own arguments and visible subcommands; nothing of the CLI is
/// restated here, so it cannot drift.
fn visible_cli() -> clap::Command {
    let full = Cli::command();
    clap::Command::new(BIN_NAME)
        .about(full.get_about().cloned().unwrap_or_default())
        .version(env!("CARGO_PKG_VERSION"))
        .subcommand_required(full.is_subcommand_required_set())
        .args(full.get_arguments().cloned())
        .subcommands(full.get_subcommands().filter(|c| !c.is_hide_set()).cloned())
}

/// Writes `floodwall.1` and a page for every visible subcommand, nested ones included
/// (`floodwall-limits-set.1`), into `out`; returns their paths.
///
/// # Errors
/// If `out` or a page cannot be written.
pub fn man_pages(out: &Path) -> anyhow::Result<Vec<PathBuf>> {
    create_dir(out)?;
    // Built once so that every subcommand knows its full name (`floodwall limits set`) and
    // its page name (`floodwall-limits-set`). No `help` subcommand: it has nothing to say
    // that the pages do not.
    let mut cli = Cli::command().disable_help_subcommand(true);
    cli.build();
    let mut written = Vec::new();
    write_pages(&cli, None, out, &mut written)?;
    Ok(written)
}

/// Writes the page of `cmd` and of its visible subcommands. This is
/// `clap_mangen::generate_to`'s walk, done here to end each page with sections clap
/// cannot know about: the files and environment of the top page, and a SEE ALSO that links
/// each page to its parent and its subcommands.
fn write_pages(
    cmd: &clap::Command,
    parent: Option<&str>,
    out: &Path,
    written: &mut Vec<PathBuf>,
) -> anyhow::Result<()> {
    let page = page_name(cmd);
    let children: Vec<&clap::Command> =
        cmd.get_subcommands().filter(|c| !c.is_hide_set()).collect();
    let path = out.join(format!("{page}.1"));
    let mut text = Vec::new();
    clap_mangen::Man::new(cmd.clone())
        .manual("floodwall manual")
        // Subcommands have no version of their own; without this their footer names the
        // subcommand (`add`) where the package and version belong.
        .source(format!("{BIN_NAME} {}", env!("CARGO_PKG_VERSION")))
        .render(&mut text)
        .with_context(|| format!("cannot render the man page of {page}"))?;
    let mut extra = Roff::new();
    if parent.is_none() {
        top_page_sections(&mut extra);
    }
    let mut see_also: Vec<String> = parent.map(str::to_owned).into_iter().collect();
    see_also.extend(children.iter().map(|c| page_name(c)));
    if !see_also.is_empty() {
        extra.control("SH", ["SEE ALSO"]);
        let refs: Vec<String> = see_also.iter().map(|p| format!("{p}(1)")).collect();
        extra.text([roman(refs.join(", "))]);
    }
    text.extend_from_slice(extra.render().as_bytes());
    fs::File::create(&path)
        .and_then(|mut f| f.write_all(&text))
        .with_context(|| format!("cannot write {}", path.display()))?;
    written.push(path);
    for child in children {
        write_pages(child, Some(&page), out, written)?;
    }
    Ok(())
}

/// FILES and ENVIRONMENT of `floodwall.1`.
fn top_page_sections(roff: &mut Roff) {
    let item = |roff: &mut Roff, term: String, text: String| {
        roff.control("TP", []);
        roff.text([bold(term)]);
        roff.text([roman(text)]);
    };
    roff.control("SH", ["FILES"]);
    item(
        roff,
        config::DEFAULT_PATH.to_owned(),
        "The daemon's configuration: floodwall run reads it unless --config names another \
         file, floodwall config check checks it, and floodwall reload (or SIGHUP) applies a \
         changed one. The packaged systemd unit (floodwall.service) starts the daemon with \
         it; edit it before enabling the unit."
            .to_owned(),
    );
    item(
        roff,
        format!("{DEFAULT_RUN_DIR}/IFACE.sock"),
        "The control socket of the daemon that protects IFACE. Changes are accepted from \
         root and the configured admin group, reads also from the read group."
            .to_owned(),
    );
    item(
        roff,
        format!("{DEFAULT_PIN_ROOT}/IFACE"),
        "The pinned program, link and maps of IFACE (on bpffs). They outlive the daemon, so \
         the interface stays protected across restarts; floodwall detach removes them."
            .to_owned(),
    );
    roff.control("SH", ["ENVIRONMENT"]);
    item(
        roff,
        "FLOODWALL_RUN_DIR".to_owned(),
        format!("Directory of the control sockets, as --run-dir (default {DEFAULT_RUN_DIR})."),
    );
    item(
        roff,
        "FLOODWALL_PIN_ROOT".to_owned(),
        format!("Directory of the pinned state, as --pin-root (default {DEFAULT_PIN_ROOT})."),
    );
    item(
        roff,
        "RUST_LOG".to_owned(),
        "Log level of the daemon's diagnostics on stderr: error, warn, info (the default), \
         debug or trace."
            .to_owned(),
    );
}

/// `floodwall-limits-set` for `floodwall limits set`: the page name man(1) finds.
fn page_name(cmd: &clap::Command) -> String {
    cmd.get_display_name()
        .unwrap_or_else(|| cmd.get_name())
        .to_owned()
}

fn create_dir(dir: &Path) -> anyhow::Result<()> {
    fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_dir(name: &str) -> PathBuf {
        let dir =
            std::env::temp_dir().join(format!("floodwall-generate-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        dir
    }

    fn file_names(paths: &[PathBuf]) -> Vec<String> {
        paths
            .iter()
            .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
            .collect()
    }

    #[test]
    fn completions_are_written_for_each_shell_without_the_hidden_command() {
        let dir = temp_dir("completions");
        let written = completions(&dir).expect("completions must be written");
        assert_eq!(
            file_names(&written),
            ["floodwall.bash", "_floodwall", "floodwall.fish"],
            "one file per shell, named as each shell's vendor directory expects"
        );
        let bash = fs::read_to_string(dir.join("floodwall.bash")).unwrap();
        assert!(
            bash.contains("limits") && bash.contains("--burst-packets"),
            "bash completions must know subcommands and their flags"
        );
        for path in &written {
            let text = fs::read_to_string(path).unwrap();
            assert!(
                !text.contains("generate"),
                "the hidden `generate` command must not be offered ({})",
                path.display()
            );
        }
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn man_pages_cover_every_visible_subcommand() {
        let dir = temp_dir("man");
        let written = man_pages(&dir).expect("man pages must be written");
        let names = file_names(&written);
        for page in [
            "floodwall.1",
            "floodwall-run.1",
            "floodwall-limits.1",
            "floodwall-limits-set.1",
            "floodwall-deny-load.1",
            "floodwall-config-check.1",
        ] {
            assert!(
                names.iter().any(|n| n == page),
                "{page} must be generated, got {names:?}"
            );
        }
        assert!(
            !names
                .iter()
                .any(|n| n.contains("generate") || n.contains("help")),
            "neither the hidden `generate` nor a `help` command gets a page: {names:?}"
        );
        let top = fs::read_to_string(dir.join("floodwall.1")).unwrap();
        assert!(
            top.contains(".SH FILES") && top.contains("floodwall\\-run(1)"),
            "the top page must list its files and link the subcommand pages"
        );
        let set = fs::read_to_string(dir.join("floodwall-limits-set.1")).unwrap();
        assert!(
            set.contains("\\-\\-burst\\-packets") && set.contains("floodwall\\-limits(1)"),
            "a subcommand page must document its flags and link its parent"
        );
        fs::remove_dir_all(&dir).unwrap();
    }
}
