//! Debian's cloud kernels: which package is the newest of a series, fetching it with
//! `apt-get download` into a cache under `target/`, and the modules the tests need from it.
//!
//! The cloud flavour boots in about two seconds under software emulation: it leaves out
//! most hardware drivers, and it needs no disk or NIC for these tests.

use std::{
    collections::BTreeMap,
    fs,
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{Context as _, bail, ensure};

use crate::{output_ok, run};

/// A kernel series the tests run on: a Debian package name with a number in the middle.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Series {
    /// What users call it (`--kernel 6.1`).
    pub label: &'static str,
    /// Package names are `{prefix}{N}{suffix}` with `N` a number; the highest `N` is the
    /// newest.
    prefix: &'static str,
    suffix: &'static str,
}

/// Debian 12's own kernel (bookworm's 6.1 LTS).
pub const DEBIAN_6_1: Series = Series {
    label: "6.1",
    prefix: "linux-image-6.1.0-",
    suffix: "-cloud-amd64",
};

/// The 6.12 LTS kernel that Debian 12 carries for newer hardware (Debian 13's kernel).
pub const DEBIAN_6_12: Series = Series {
    label: "6.12",
    prefix: "linux-image-6.12.",
    suffix: "+deb12-cloud-amd64",
};

/// Modules the tests need that Debian builds as modules: veth for the lab's links, bridge for
/// its switch. Their dependencies (stp, llc) are found from each module's `depends=`.
pub const NEEDED_MODULES: [&str; 2] = ["veth", "bridge"];

impl Series {
    /// The newest package of this series among `names` (by the number, not as text:
    /// `-56-` is newer than `-9-`).
    fn newest<'a>(&self, names: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
        names
            .into_iter()
            .filter_map(|name| {
                let n = name.strip_prefix(self.prefix)?.strip_suffix(self.suffix)?;
                let n: u32 = n.parse().ok()?;
                Some((n, name))
            })
            .max_by_key(|&(n, _)| n)
            .map(|(_, name)| name)
    }
}

/// A kernel package, unpacked in the cache.
#[derive(Clone, Debug)]
pub struct Kernel {
    /// Package name (`linux-image-6.1.0-56-cloud-amd64`).
    pub package: String,
    /// Package version (`6.1.192-2`).
    pub version: String,
    /// Its release, as `uname -r` prints it (`6.1.0-56-cloud-amd64`).
    pub release: String,
    /// The unpacked package.
    tree: PathBuf,
}

impl Kernel {
    /// The bootable image.
    #[must_use]
    pub fn image(&self) -> PathBuf {
        self.tree
            .join("boot")
            .join(format!("vmlinuz-{}", self.release))
    }

    fn modules_dir(&self) -> PathBuf {
        self.tree.join("lib/modules").join(&self.release)
    }
}

/// The file in a series' cache directory that names the package and version it holds.
const CACHE_STAMP: &str = "package";

/// The newest kernel of `series`, from the cache under `cache_root` when it already holds
/// it, else downloaded with `apt-get download` and unpacked there.
///
/// # Errors
/// If no package of the series is known to apt (even after `apt-get update`) and none is
/// cached, or the download or unpacking fails.
pub fn fetch(series: Series, cache_root: &Path) -> anyhow::Result<Kernel> {
    let dir = cache_root.join(series.label);
    let stamp = dir.join(CACHE_STAMP);
    let cached = fs::read_to_string(&stamp).ok().and_then(|s| {
        let (package, version) = s.trim().split_once(' ')?;
        Some((package.to_owned(), version.to_owned()))
    });
    let newest = if let Some(found) = newest_available(series)? {
        found
    } else {
        let Some((package, version)) = cached.clone() else {
            bail!(
                "apt knows no package {}N{} (after apt-get update) and none is cached in {}",
                series.prefix,
                series.suffix,
                dir.display()
            );
        };
        eprintln!(
            "vm: apt knows no {} kernel; using the cached {package} {version}",
            series.label
        );
        (package, version)
    };
    if cached.as_ref() == Some(&newest) {
        if let Ok(kernel) = unpacked(&dir, &newest.0, &newest.1) {
            return Ok(kernel);
        }
        eprintln!(
            "vm: the cache in {} is incomplete; fetching again",
            dir.display()
        );
    }
    let (package, version) = newest;
    eprintln!(
        "vm: fetching {package} {version} (Debian's {} cloud kernel)",
        series.label
    );
    // Into a fresh directory, renamed into place when complete: an interrupted fetch never
    // leaves a cache that looks whole.
    let partial = cache_root.join(format!("{}.partial", series.label));
    remove_dir_if_exists(&partial)?;
    fs::create_dir_all(&partial).with_context(|| format!("cannot create {}", partial.display()))?;
    let fetched = download_and_unpack(&partial, &package, &version);
    if let Err(e) = fetched {
        let _ = fs::remove_dir_all(&partial);
        return Err(e);
    }
    remove_dir_if_exists(&dir)?;
    fs::rename(&partial, &dir)
        .with_context(|| format!("cannot move {} to {}", partial.display(), dir.display()))?;
    unpacked(&dir, &package, &version)
}

fn remove_dir_if_exists(dir: &Path) -> anyhow::Result<()> {
    match fs::remove_dir_all(dir) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e).with_context(|| format!("cannot remove {}", dir.display())),
    }
}

/// `(package, version)` of the newest package of `series` apt knows; runs `apt-get update`
/// once if it knows none (a machine whose package lists were never fetched or were
/// cleaned). `None` if there is still none.
fn newest_available(series: Series) -> anyhow::Result<Option<(String, String)>> {
    let query = || {
        let names = output_ok(Command::new("apt-cache").args(["pkgnames", series.prefix]))
            .unwrap_or_default();
        series.newest(names.lines()).map(str::to_owned)
    };
    let package = if let Some(package) = query() {
        package
    } else {
        eprintln!(
            "vm: apt knows no {} cloud kernel; running apt-get update",
            series.label
        );
        if let Err(e) = run(Command::new("apt-get").args(["update", "-q"])) {
            eprintln!("vm: {e:#}");
            return Ok(None);
        }
        let Some(package) = query() else {
            return Ok(None);
        };
        package
    };
    // The candidate's version: the one `apt-get download` fetches.
    let show = output_ok(Command::new("apt-cache").args(["show", "--no-all-versions", &package]))
        .with_context(|| format!("apt-cache show {package} failed"))?;
    let version = show
        .lines()
        .find_map(|l| l.strip_prefix("Version: "))
        .with_context(|| format!("apt-cache show {package} gives no version"))?
        .trim()
        .to_owned();
    Ok(Some((package, version)))
}

fn download_and_unpack(dir: &Path, package: &str, version: &str) -> anyhow::Result<()> {
    // apt-get download writes into its working directory. As root it warns that it cannot
    // hand the file to the `_apt` sandbox user; the download is still checked against the
    // signed package lists.
    run(Command::new("apt-get")
        .args(["download", "-q", &format!("{package}={version}")])
        .current_dir(dir))
    .with_context(|| format!("apt-get download {package}={version} failed"))?;
    let deb = fs::read_dir(dir)?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|e| e == "deb"))
        .with_context(|| format!("apt-get download left no .deb in {}", dir.display()))?;
    let tree = dir.join("tree");
    run(Command::new("dpkg-deb").arg("-x").arg(&deb).arg(&tree))
        .with_context(|| format!("cannot unpack {}", deb.display()))?;
    fs::write(dir.join(CACHE_STAMP), format!("{package} {version}\n"))?;
    Ok(())
}

/// The kernel unpacked in `dir`, checked to have its image and modules.
fn unpacked(dir: &Path, package: &str, version: &str) -> anyhow::Result<Kernel> {
    let tree = dir.join("tree");
    let modules = tree.join("lib/modules");
    let mut releases = fs::read_dir(&modules)
        .with_context(|| format!("cannot read {}", modules.display()))?
        .filter_map(Result::ok)
        .filter_map(|e| e.file_name().into_string().ok());
    let release = releases
        .next()
        .with_context(|| format!("{} is empty", modules.display()))?;
    ensure!(
        releases.next().is_none(),
        "{} holds more than one kernel release",
        modules.display()
    );
    let kernel = Kernel {
        package: package.to_owned(),
        version: version.to_owned(),
        release,
        tree,
    };
    ensure!(
        kernel.image().is_file(),
        "{} is missing",
        kernel.image().display()
    );
    Ok(kernel)
}

/// A module to load in the guest: its name and its file, uncompressed, under `out_dir`.
#[derive(Clone, Debug)]
pub struct Module {
    /// Its name (`bridge`).
    pub name: String,
    /// The uncompressed `.ko`.
    pub file: PathBuf,
}

/// The modules of `kernel` that `wanted` need, dependencies before the modules that need
/// them (the order `insmod` must load them in), uncompressed into `out_dir`. Modules the
/// kernel has built in are left out.
///
/// Debian's packages have no `modules.dep` (the postinst runs depmod), so dependencies come
/// from each module's own `depends=` in its `.modinfo` section, which is where depmod reads
/// them.
///
/// # Errors
/// If a module is neither a file nor built in, or cannot be uncompressed or parsed.
pub fn modules(kernel: &Kernel, wanted: &[&str], out_dir: &Path) -> anyhow::Result<Vec<Module>> {
    let dir = kernel.modules_dir();
    let builtin = fs::read_to_string(dir.join("modules.builtin")).unwrap_or_default();
    let builtin: Vec<String> = builtin
        .lines()
        .filter_map(|l| Path::new(l).file_name()?.to_str())
        .map(|f| module_name(f).to_owned())
        .collect();
    let mut files = BTreeMap::new();
    index_modules(&dir.join("kernel"), &mut files)?;
    fs::create_dir_all(out_dir).with_context(|| format!("cannot create {}", out_dir.display()))?;

    let mut ordered = Vec::new();
    let mut visiting = Vec::new();
    for name in wanted {
        visit(
            &normalize(name),
            &files,
            &builtin,
            out_dir,
            &mut visiting,
            &mut ordered,
        )
        .with_context(|| format!("module {name} of {}", kernel.package))?;
    }
    Ok(ordered)
}

/// Depth-first: dependencies land in `ordered` before their dependents.
fn visit(
    name: &str,
    files: &BTreeMap<String, PathBuf>,
    builtin: &[String],
    out_dir: &Path,
    visiting: &mut Vec<String>,
    ordered: &mut Vec<Module>,
) -> anyhow::Result<()> {
    if ordered.iter().any(|m| m.name == name) {
        return Ok(());
    }
    ensure!(
        !visiting.iter().any(|v| v == name),
        "modules depend on each other in a cycle: {visiting:?} and {name}"
    );
    let Some(source) = files.get(name) else {
        if builtin.iter().any(|b| b == name) {
            return Ok(());
        }
        bail!("the kernel has no module {name}, neither as a file nor built in");
    };
    let file = out_dir.join(format!("{name}.ko"));
    uncompress(source, &file)?;
    let bytes = fs::read(&file).with_context(|| format!("cannot read {}", file.display()))?;
    let depends = depends(&bytes).with_context(|| format!("cannot parse {}", source.display()))?;
    visiting.push(name.to_owned());
    for dep in depends {
        visit(&normalize(&dep), files, builtin, out_dir, visiting, ordered)?;
    }
    visiting.pop();
    ordered.push(Module {
        name: name.to_owned(),
        file,
    });
    Ok(())
}

/// `veth.ko.xz` -> `veth`.
fn module_name(file: &str) -> &str {
    file.split_once(".ko").map_or(file, |(name, _)| name)
}

/// The kernel treats `-` and `_` in module names alike; so does this index.
fn normalize(name: &str) -> String {
    name.replace('-', "_")
}

fn index_modules(dir: &Path, files: &mut BTreeMap<String, PathBuf>) -> anyhow::Result<()> {
    for entry in fs::read_dir(dir).with_context(|| format!("cannot read {}", dir.display()))? {
        let entry = entry?;
        let path = entry.path();
        if entry.file_type()?.is_dir() {
            index_modules(&path, files)?;
        } else if let Some(file) = path.file_name().and_then(|f| f.to_str())
            && file.contains(".ko")
        {
            files.insert(normalize(module_name(file)), path);
        }
    }
    Ok(())
}

/// Copies a module, uncompressing it: 6.12's are xz-compressed, and busybox's insmod hands
/// the file to `init_module` as it is, which takes only an uncompressed module.
fn uncompress(source: &Path, dest: &Path) -> anyhow::Result<()> {
    let name = source.to_string_lossy();
    if name.ends_with(".ko") {
        fs::copy(source, dest)
            .with_context(|| format!("cannot copy {} to {}", source.display(), dest.display()))?;
    } else if name.ends_with(".ko.xz") {
        let out = Command::new("xz")
            .arg("-dc")
            .arg(source)
            .output()
            .context("cannot run xz (package xz-utils)")?;
        ensure!(
            out.status.success(),
            "xz -dc {} failed: {}",
            source.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        );
        fs::write(dest, out.stdout).with_context(|| format!("cannot write {}", dest.display()))?;
    } else {
        bail!(
            "{} is compressed in a way this task does not handle (only .ko and .ko.xz)",
            source.display()
        );
    }
    Ok(())
}

/// The modules a module depends on: its `.modinfo` section's `depends=` entry, a
/// comma-separated list, empty when it depends on none.
fn depends(module: &[u8]) -> anyhow::Result<Vec<String>> {
    use object::{Object as _, ObjectSection as _};
    let file = object::File::parse(module).context("not an ELF object")?;
    let section = file
        .section_by_name(".modinfo")
        .context("no .modinfo section")?;
    let data = section.data().context("cannot read .modinfo")?;
    Ok(modinfo_depends(data))
}

/// `depends=` of a `.modinfo` section: NUL-separated `key=value` strings.
fn modinfo_depends(modinfo: &[u8]) -> Vec<String> {
    modinfo
        .split(|&b| b == 0)
        .filter_map(|entry| entry.strip_prefix(b"depends="))
        .flat_map(|list| {
            String::from_utf8_lossy(list)
                .split(',')
                .map(str::to_owned)
                .collect::<Vec<_>>()
        })
        .filter(|d| !d.is_empty())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_newest_package_is_the_highest_number() {
        let names = [
            "linux-image-6.1.0-9-cloud-amd64",
            "linux-image-6.1.0-56-cloud-amd64",
            "linux-image-6.1.0-56-cloud-amd64-dbg",
            "linux-image-6.1.0-56-cloud-amd64-unsigned",
            "linux-image-6.1.0-57-amd64",
            "linux-image-6.12.117+deb12-cloud-amd64",
        ];
        assert_eq!(
            DEBIAN_6_1.newest(names),
            Some("linux-image-6.1.0-56-cloud-amd64")
        );
        let names = [
            "linux-image-6.12.99+deb12-cloud-amd64",
            "linux-image-6.12.117+deb12-cloud-amd64",
            "linux-image-6.12-cloud-amd64",
            "linux-image-6.12.117+deb12-cloud-amd64-dbg",
            "linux-image-6.1.0-56-cloud-amd64",
        ];
        assert_eq!(
            DEBIAN_6_12.newest(names),
            Some("linux-image-6.12.117+deb12-cloud-amd64")
        );
        assert_eq!(DEBIAN_6_12.newest(["linux-image-6.12-cloud-amd64"]), None);
    }

    #[test]
    fn modinfo_depends_are_read() {
        let modinfo = b"license=GPL\0depends=stp,llc\0retpoline=Y\0name=bridge\0";
        assert_eq!(modinfo_depends(modinfo), ["stp", "llc"]);
        assert!(modinfo_depends(b"license=GPL\0depends=\0name=veth\0").is_empty());
        assert!(modinfo_depends(b"name=llc\0").is_empty());
    }

    #[test]
    fn module_names_drop_the_extension() {
        assert_eq!(module_name("veth.ko.xz"), "veth");
        assert_eq!(module_name("stp.ko"), "stp");
        assert_eq!(normalize("nf-conntrack"), "nf_conntrack");
    }
}
