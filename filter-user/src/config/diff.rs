//! What changes between two versions of the file, for the log of a reload.

use std::{
    collections::{BTreeMap, BTreeSet},
    net::SocketAddr,
    path::PathBuf,
};

use super::{DaemonFile, GroupRef, InterfaceConfig};
use crate::{limits::Limits, loader::AttachMode};

/// What changes from `old` to `new`, one line per value, e.g. `limits.pps: 10000/s ->
/// 20000/s`, `allow: + 198.18.7.0/24`, `interface: - eth1`. Empty when they are equal.
#[must_use]
pub fn diff(old: &DaemonFile, new: &DaemonFile) -> Vec<String> {
    let mut lines = Vec::new();
    let mut changed = |key: &str, from: String, to: String| {
        if from != to {
            lines.push(format!("{key}: {from} -> {to}"));
        }
    };
    changed(
        "path",
        old.path.display().to_string(),
        new.path.display().to_string(),
    );
    for (key, from, to) in [
        ("daemon.max_sources", old.max_sources, new.max_sources),
        ("daemon.list_capacity", old.list_capacity, new.list_capacity),
        ("daemon.max_prefixes", old.max_prefixes, new.max_prefixes),
    ] {
        changed(key, from.to_string(), to.to_string());
    }
    let addr = |a: Option<SocketAddr>| a.map_or_else(|| "off".to_owned(), |a| a.to_string());
    changed(
        "daemon.metrics_addr",
        addr(old.metrics_addr),
        addr(new.metrics_addr),
    );
    let group = |g: &Option<GroupRef>| {
        g.as_ref()
            .map_or_else(|| "none".into(), GroupRef::to_string)
    };
    changed(
        "daemon.admin_group",
        group(&old.admin_group),
        group(&new.admin_group),
    );
    changed(
        "daemon.read_group",
        group(&old.read_group),
        group(&new.read_group),
    );
    let dir = |d: &Option<PathBuf>| {
        d.as_ref()
            .map_or_else(|| "default".into(), |d| d.display().to_string())
    };
    changed("daemon.run_dir", dir(&old.run_dir), dir(&new.run_dir));
    let syn = |s: &Option<crate::syn::SynProtect>| {
        s.as_ref()
            .map_or_else(|| "default".into(), ToString::to_string)
    };
    changed(
        "daemon.syn_protect",
        syn(&old.syn_protect),
        syn(&new.syn_protect),
    );
    let sysctls =
        |s: Option<crate::syn::SysctlPolicy>| s.map_or_else(|| "default".into(), |s| s.to_string());
    changed(
        "daemon.syn_sysctls",
        sysctls(old.syn_sysctls),
        sysctls(new.syn_sysctls),
    );
    for (key, from, to) in signature_values(old, new) {
        changed(&key, from, to);
    }
    diff_interfaces(&mut lines, &old.interfaces, &new.interfaces);
    diff_limits(&mut lines, &old.limits, &new.limits);
    for (name, from, to) in [
        ("allow", &old.allow, &new.allow),
        ("deny", &old.deny, &new.deny),
    ] {
        let from: BTreeSet<_> = from.iter().collect();
        let to: BTreeSet<_> = to.iter().collect();
        lines.extend(to.difference(&from).map(|p| format!("{name}: + {p}")));
        lines.extend(from.difference(&to).map(|p| format!("{name}: - {p}")));
    }
    lines
}

fn diff_interfaces(lines: &mut Vec<String>, old: &[InterfaceConfig], new: &[InterfaceConfig]) {
    let modes = |list: &[InterfaceConfig]| -> BTreeMap<String, AttachMode> {
        list.iter().map(|i| (i.name.clone(), i.xdp_mode)).collect()
    };
    let (old, new) = (modes(old), modes(new));
    for (name, mode) in &new {
        match old.get(name) {
            None => lines.push(format!("interface: + {name} (xdp_mode {mode})")),
            Some(was) if was != mode => {
                lines.push(format!("interface {name}: xdp_mode: {was} -> {mode}"));
            }
            Some(_) => {}
        }
    }
    for name in old.keys().filter(|name| !new.contains_key(*name)) {
        lines.push(format!("interface: - {name}"));
    }
}

fn diff_limits(lines: &mut Vec<String>, old: &Limits, new: &Limits) {
    for (setting, from, to) in old.differences(new) {
        lines.push(format!("limits.{}: {from} -> {to}", setting.key()));
    }
}

/// The `[daemon]` keys of signatures: (key, old value, new value), changed or not.
fn signature_values(old: &DaemonFile, new: &DaemonFile) -> Vec<(String, String, String)> {
    let mut out = Vec::new();
    let mut changed = |key: &str, from: String, to: String| out.push((key.to_owned(), from, to));
    let signatures = |s: Option<crate::traffic::detect::SignatureMode>| {
        s.map_or_else(|| "default".into(), |s| s.to_string())
    };
    changed(
        "daemon.signatures",
        signatures(old.signatures),
        signatures(new.signatures),
    );
    let forbid = |f: &Option<Vec<crate::traffic::baseline::Field>>| {
        f.as_ref().map_or_else(
            || "default".into(),
            |f| f.iter().map(|f| f.name()).collect::<Vec<_>>().join(","),
        )
    };
    changed(
        "daemon.signature_forbid",
        forbid(&old.signature_forbid),
        forbid(&new.signature_forbid),
    );
    let services = |s: &Option<Vec<crate::traffic::baseline::Service>>| {
        s.as_ref().map_or_else(
            || "default".into(),
            |s| {
                s.iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join(",")
            },
        )
    };
    changed(
        "daemon.signature_monitor",
        services(&old.signature_monitor),
        services(&new.signature_monitor),
    );
    for t in crate::traffic::detect::Threshold::ALL {
        let value = |f: &DaemonFile| {
            t.get(&f.signature_thresholds)
                .map_or_else(|| "default".into(), |v| v.to_string())
        };
        changed(&format!("daemon.{}", t.key()), value(old), value(new));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::tests::{MINIMAL, parse_ok};

    #[test]
    fn diff_names_each_changed_value() {
        let old = parse_ok(&format!(
            "{MINIMAL}[limits]\npps = \"10k\"\n[allow]\nprefixes = [\"198.18.1.0/24\"]\n\
             [deny]\nprefixes = [\"2001:2::/64\"]\n"
        ));
        assert_eq!(
            diff(&old, &old),
            Vec::<String>::new(),
            "no change, no lines"
        );
        let new = parse_ok(
            "[daemon]\nmetrics_addr = \"127.0.0.1:9477\"\nmax_sources = 4096\nread_group = 4\n\
             [[interface]]\nname = \"eth0\"\nxdp_mode = \"driver\"\n[[interface]]\nname = \"eth1\"\n\
             [limits]\npps = \"20k\"\nblock_for = \"10m\"\nmonitor_classes = [\"udp\"]\n\
             [limits.class_pps]\nsyn = 50\n[limits.prefix.v6-wide]\nlen = 40\n\
             [allow]\nprefixes = [\"198.18.1.0/24\", \"198.18.7.0/24\"]\n",
        );
        assert_eq!(
            diff(&old, &new),
            [
                "daemon.max_sources: 1048576 -> 4096",
                "daemon.metrics_addr: off -> 127.0.0.1:9477",
                "daemon.read_group: none -> gid 4",
                "interface eth0: xdp_mode: auto -> driver",
                "interface: + eth1 (xdp_mode auto)",
                "limits.pps: 10000/s -> 20000/s",
                "limits.block_for: 1m -> 10m",
                "limits.monitor_classes: [] -> [udp]",
                "limits.class_pps.syn: unlimited -> 50/s",
                "limits.prefix.v6-wide.len: 48 -> 40",
                "allow: + 198.18.7.0/24",
                "deny: - 2001:2::/64",
            ]
        );
        let back = diff(&new, &old);
        assert!(back.contains(&"interface: - eth1".to_owned()), "{back:?}");
        assert!(back.contains(&"deny: + 2001:2::/64".to_owned()), "{back:?}");
    }
}
