//! From the file as written to a [`DaemonFile`], key by key.

use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
};

use clap::ValueEnum;
use filter_common::{DEFAULT_LIST_CAPACITY, DEFAULT_MAX_PREFIXES, DEFAULT_MAX_SOURCES};
use nix::unistd::Gid;
use toml::{Spanned, de::DeTable};

use super::{
    ConfigError, DaemonFile, GroupRef, InterfaceConfig, MAX_IFACE_NAME_BYTES, Source,
    group_by_name,
    schema::{RawDaemon, RawFile, RawFleet, RawInterface, RawList, RawRule, RawUpstream, Scalar},
};
use crate::{
    lists::{Family, Prefix, parse_list_file},
    loader::AttachMode,
    rules::NewRule,
    syn::{SynProtect, SysctlPolicy},
    traffic::{
        baseline::{Field, Service},
        detect::{SignatureMode, Threshold, Thresholds},
    },
};

impl Source<'_> {
    pub(super) fn build(
        &self,
        raw: RawFile,
        document: &DeTable<'_>,
    ) -> Result<DaemonFile, ConfigError> {
        let daemon = raw.daemon.unwrap_or_default();
        let default_mode = match &daemon.xdp_mode {
            Some(mode) => self.choice::<AttachMode>(mode, "daemon.xdp_mode", "an XDP mode")?,
            None => AttachMode::default(),
        };
        let max_sources = self.capacity(
            daemon.max_sources.as_ref(),
            "daemon.max_sources",
            DEFAULT_MAX_SOURCES,
        )?;
        let list_capacity = self.capacity(
            daemon.list_capacity.as_ref(),
            "daemon.list_capacity",
            DEFAULT_LIST_CAPACITY,
        )?;
        let max_prefixes = self.capacity(
            daemon.max_prefixes.as_ref(),
            "daemon.max_prefixes",
            DEFAULT_MAX_PREFIXES,
        )?;
        let metrics_addr = daemon
            .metrics_addr
            .as_ref()
            .map(|addr| {
                addr.get_ref().parse::<SocketAddr>().map_err(|_| {
                    self.error(
                        &addr.span(),
                        "daemon.metrics_addr",
                        format!(
                            "`{}` is not an address and port (e.g. 127.0.0.1:9477 or [::1]:9477)",
                            addr.get_ref()
                        ),
                    )
                })
            })
            .transpose()?;
        let group = |g: Option<&Spanned<Scalar>>, key| g.map(|g| self.group(g, key)).transpose();
        let admin_group = group(daemon.admin_group.as_ref(), "daemon.admin_group")?;
        let read_group = group(daemon.read_group.as_ref(), "daemon.read_group")?;
        let run_dir = daemon
            .run_dir
            .as_ref()
            .map(|dir| {
                let path = PathBuf::from(dir.get_ref());
                if path.is_absolute() {
                    Ok(path)
                } else {
                    Err(self.error(
                        &dir.span(),
                        "daemon.run_dir",
                        format!("`{}` is not an absolute path", dir.get_ref()),
                    ))
                }
            })
            .transpose()?;
        let syn_protect = daemon
            .syn_protect
            .as_ref()
            .map(|value| {
                value
                    .get_ref()
                    .parse::<SynProtect>()
                    .map_err(|e| self.error(&value.span(), "daemon.syn_protect", e.to_string()))
            })
            .transpose()?;
        let syn_sysctls = daemon
            .syn_sysctls
            .as_ref()
            .map(|v| self.choice::<SysctlPolicy>(v, "daemon.syn_sysctls", "a sysctl policy"))
            .transpose()?;
        let (signatures, signature_forbid) = self.signatures(&daemon)?;
        let signature_thresholds = self.thresholds(&daemon)?;
        let signature_monitor = self.monitored(&daemon)?;

        let interfaces = self.interfaces(raw.interface, default_mode)?;
        let limits = self.limits(document)?;
        let allow = self.list(raw.allow, "allow", list_capacity)?;
        let deny = self.list(raw.deny, "deny", list_capacity)?;
        Ok(DaemonFile {
            path: self.path.to_owned(),
            interfaces,
            limits,
            max_sources,
            list_capacity,
            max_prefixes,
            metrics_addr,
            admin_group,
            read_group,
            run_dir,
            syn_protect,
            syn_sysctls,
            signatures,
            signature_forbid,
            signature_monitor,
            signature_thresholds,
            allow,
            deny,
            rules: self.rules(raw.rules.as_deref().unwrap_or_default())?,
            upstream: raw.upstream.map(|u| self.upstream(&u)).transpose()?,
            fleet: raw.fleet.map(|f| self.fleet(&f)).transpose()?,
        })
    }

    /// `[fleet]`: each key checked alone, then together.
    fn fleet(&self, raw: &Spanned<RawFleet>) -> Result<crate::fleet::FleetConfig, ConfigError> {
        let f = raw.get_ref();
        let mut out = crate::fleet::FleetConfig::default();
        for (value, key, slot) in [
            (&f.broker, "fleet.broker", &mut out.broker),
            (&f.node, "fleet.node", &mut out.node),
            (&f.bucket, "fleet.bucket", &mut out.bucket),
        ] {
            if let Some(value) = value {
                slot.clone_from(value.get_ref());
                let checked = if key == "fleet.broker" {
                    crate::fleet::check_broker(value.get_ref())
                } else {
                    crate::fleet::check_name(key.trim_start_matches("fleet."), value.get_ref())
                };
                checked.map_err(|e| self.error(&value.span(), key, e))?;
            }
        }
        if let Some(v) = &f.share_blocks {
            out.share_blocks = *v.get_ref();
        }
        if let Some(v) = &f.share_signatures {
            out.share_signatures = *v.get_ref();
        }
        if let Some(v) = &f.max_entries {
            if *v.get_ref() == 0 {
                return Err(self.error(&v.span(), "fleet.max_entries", "must be at least 1"));
            }
            out.max_entries = usize::try_from(*v.get_ref()).unwrap_or(usize::MAX);
        }
        if let Some(v) = &f.max_block {
            out.max_block = crate::limits::parse_duration_ms(v.get_ref())
                .map(std::time::Duration::from_millis)
                .map_err(|e| self.error(&v.span(), "fleet.max_block", e))?;
        }
        out.sign_in = self.fleet_sign_in(f)?;
        out.check()
            .map_err(|e| self.error(&raw.span(), "fleet", e))?;
        Ok(out)
    }

    /// `[fleet]`'s `user`, `password_file` and `token_file`: one way to sign in, its
    /// secret read from its file now, so that a file that cannot be read is the config's
    /// error, named, and not a broker that turns the node away later.
    fn fleet_sign_in(&self, f: &RawFleet) -> Result<crate::fleet::SignIn, ConfigError> {
        use crate::fleet::{Secret, SignIn};
        let secret = |v: &Spanned<String>, key: &str| {
            Secret::read(std::path::Path::new(v.get_ref()))
                .map_err(|e| self.error(&v.span(), key, e))
        };
        match (&f.user, &f.password_file, &f.token_file) {
            (None, None, None) => Ok(SignIn::Anonymous),
            (Some(user), Some(file), None) => {
                if user.get_ref().is_empty() {
                    return Err(self.error(&user.span(), "fleet.user", "must not be empty"));
                }
                Ok(SignIn::Password {
                    user: user.get_ref().clone(),
                    password: secret(file, "fleet.password_file")?,
                })
            }
            (None, None, Some(file)) => Ok(SignIn::Token(secret(file, "fleet.token_file")?)),
            (Some(user), None, _) => Err(self.error(
                &user.span(),
                "fleet.user",
                "needs fleet.password_file (the password, in a file of its own)",
            )),
            (None, Some(file), _) => {
                Err(self.error(&file.span(), "fleet.password_file", "needs fleet.user"))
            }
            (Some(_), Some(_), Some(token)) => Err(self.error(
                &token.span(),
                "fleet.token_file",
                "one way to sign in: a token, or a user and its password, not both",
            )),
        }
    }

    /// `[upstream]`'s durations.
    fn upstream_durations(
        &self,
        u: &RawUpstream,
        out: &mut crate::upstream::UpstreamConfig,
    ) -> Result<(), ConfigError> {
        for (value, key, slot) in [
            (&u.min_hold, "upstream.min_hold", &mut out.min_hold),
            (&u.expiry, "upstream.expiry", &mut out.expiry),
            (&u.max_expiry, "upstream.max_expiry", &mut out.max_expiry),
            (
                &u.reconcile_every,
                "upstream.reconcile_every",
                &mut out.reconcile_every,
            ),
        ] {
            if let Some(value) = value {
                *slot = crate::limits::parse_duration_ms(value.get_ref())
                    .map(std::time::Duration::from_millis)
                    .map_err(|e| self.error(&value.span(), key, e))?;
            }
        }
        Ok(())
    }

    /// `[upstream]`'s automatic threshold, stop behaviour and community.
    fn upstream_choices(
        &self,
        u: &RawUpstream,
        out: &mut crate::upstream::UpstreamConfig,
    ) -> Result<(), ConfigError> {
        use crate::upstream::OnStop;
        if let Some(above) = &u.auto_above {
            out.auto_above = Some(
                crate::upstream::AutoAbove::parse(above.get_ref())
                    .map_err(|e| self.error(&above.span(), "upstream.auto_above", e))?,
            );
        }
        if let Some(on_stop) = &u.on_stop {
            out.on_stop = match on_stop.get_ref().as_str() {
                "withdraw" => OnStop::Withdraw,
                "keep" => OnStop::Keep,
                other => {
                    return Err(self.error(
                        &on_stop.span(),
                        "upstream.on_stop",
                        format!("`{other}` is not a stop behaviour (withdraw, keep)"),
                    ));
                }
            };
        }
        if let Some(community) = &u.blackhole_community {
            out.blackhole_community = parse_community(community.get_ref()).ok_or_else(|| {
                self.error(
                    &community.span(),
                    "upstream.blackhole_community",
                    format!(
                        "`{}` is not a community (ASN:VALUE, e.g. 65535:666)",
                        community.get_ref()
                    ),
                )
            })?;
        }
        Ok(())
    }

    /// `[upstream]`: each key checked alone, then together.
    fn upstream(
        &self,
        raw: &Spanned<RawUpstream>,
    ) -> Result<crate::upstream::UpstreamConfig, ConfigError> {
        use crate::upstream::UpstreamConfig;
        let u = raw.get_ref();
        let mut out = UpstreamConfig::default();
        if let Some(api) = &u.gobgp_api {
            out.gobgp_api.clone_from(api.get_ref());
        }
        if let Some(client) = &u.gobgp_client {
            out.gobgp_client = PathBuf::from(client.get_ref());
        }
        if let Some(dry_run) = &u.dry_run {
            out.dry_run = *dry_run.get_ref();
        }
        if let Some(protected) = &u.protected {
            out.protected = protected
                .iter()
                .map(|p| {
                    p.get_ref()
                        .parse::<Prefix>()
                        .map_err(|e| self.error(&p.span(), "upstream.protected", e.to_string()))
                })
                .collect::<Result<_, _>>()?;
        }
        for (value, key, slot) in [
            (
                &u.prefix_len_v4,
                "upstream.prefix_len_v4",
                &mut out.prefix_len_v4,
            ),
            (
                &u.prefix_len_v6,
                "upstream.prefix_len_v6",
                &mut out.prefix_len_v6,
            ),
        ] {
            if let Some(value) = value {
                match value.get_ref().as_slice() {
                    [low, high] => *slot = (*low, *high),
                    _ => {
                        return Err(self.error(
                            &value.span(),
                            key,
                            "must be [shortest, longest], e.g. [24, 32]",
                        ));
                    }
                }
            }
        }
        for (value, key, slot) in [
            (&u.max_routes, "upstream.max_routes", &mut out.max_routes),
            (
                &u.max_new_per_minute,
                "upstream.max_new_per_minute",
                &mut out.max_new_per_minute,
            ),
        ] {
            if let Some(value) = value {
                if *value.get_ref() == 0 {
                    return Err(self.error(&value.span(), key, "must be at least 1"));
                }
                *slot = usize::try_from(*value.get_ref()).unwrap_or(usize::MAX);
            }
        }
        self.upstream_durations(u, &mut out)?;
        self.upstream_choices(u, &mut out)?;
        out.check()
            .map_err(|e| self.error(&raw.span(), "upstream", e))?;
        Ok(out)
    }

    /// `[daemon] signatures` and `signature_forbid`.
    fn signatures(
        &self,
        daemon: &RawDaemon,
    ) -> Result<(Option<SignatureMode>, Option<Vec<Field>>), ConfigError> {
        let mode = daemon
            .signatures
            .as_ref()
            .map(|v| self.choice::<SignatureMode>(v, "daemon.signatures", "a signature mode"))
            .transpose()?;
        let forbid = daemon
            .signature_forbid
            .as_ref()
            .map(|fields| {
                fields
                    .iter()
                    .map(|f| self.choice::<Field>(f, "daemon.signature_forbid", "a field"))
                    .collect::<Result<Vec<_>, _>>()
            })
            .transpose()?;
        Ok((mode, forbid))
    }

    /// `[daemon] signature_monitor`.
    fn monitored(&self, daemon: &RawDaemon) -> Result<Option<Vec<Service>>, ConfigError> {
        daemon
            .signature_monitor
            .as_ref()
            .map(|services| {
                services
                    .iter()
                    .map(|s| {
                        s.get_ref()
                            .parse::<Service>()
                            .map_err(|e| self.error(&s.span(), "daemon.signature_monitor", e))
                    })
                    .collect::<Result<Vec<_>, _>>()
            })
            .transpose()
    }

    /// `[daemon] signature_factor` and the other thresholds, each read as its flag is.
    fn thresholds(&self, daemon: &RawDaemon) -> Result<Thresholds, ConfigError> {
        let mut out = Thresholds::default();
        for t in Threshold::ALL {
            let Some(value) = daemon.threshold(t) else {
                continue;
            };
            let parsed = t
                .parse(&value.get_ref().0)
                .map_err(|e| self.error(&value.span(), format!("daemon.{}", t.key()), e))?;
            t.set(&mut out, Some(parsed));
        }
        Ok(out)
    }

    /// The `[[rules]]`, each checked as `floodwall rules add` checks it; the set too (a
    /// rule twice, a set over the kernel's bounds), so that a file the daemon would refuse
    /// is refused here.
    fn rules(&self, raw: &[Spanned<RawRule>]) -> Result<Vec<NewRule>, ConfigError> {
        let mut rules = Vec::new();
        for (i, entry) in raw.iter().enumerate() {
            let key = format!("rules[{i}]");
            let raw = entry.get_ref();
            let spec =
                raw.rule.get_ref().parse().map_err(|e| {
                    self.error(&raw.rule.span(), format!("{key}.rule"), format!("{e}"))
                })?;
            rules.push(NewRule {
                spec,
                priority: raw
                    .priority
                    .as_ref()
                    .map_or(crate::rules::DEFAULT_PRIORITY, |p| *p.get_ref()),
                comment: raw.comment.as_ref().map(|c| c.get_ref().clone()),
                for_ms: None,
                origin: crate::rules::Origin::Config,
            });
        }
        let set = crate::rules::RuleSet::default()
            .with_added(&rules, 0)
            .and_then(|(set, _)| crate::rules::compile(set.rules(), 0).map(|_| ()));
        match (set, raw.last()) {
            (Err(e), Some(last)) => Err(self.error(
                &last.span(),
                "rules",
                format!("{e} (rules are numbered from 1 in the file's order)"),
            )),
            _ => Ok(rules),
        }
    }

    /// A value of a [`ValueEnum`] (modes), named exactly as the CLI names it.
    pub(super) fn choice<T: ValueEnum>(
        &self,
        value: &Spanned<String>,
        key: &str,
        what: &str,
    ) -> Result<T, ConfigError> {
        T::from_str(value.get_ref(), false).map_err(|_| {
            let names: Vec<String> = T::value_variants()
                .iter()
                .filter_map(|v| v.to_possible_value().map(|p| p.get_name().to_owned()))
                .collect();
            self.error(
                &value.span(),
                key,
                format!("`{}` is not {what} ({})", value.get_ref(), names.join(", ")),
            )
        })
    }

    fn capacity(
        &self,
        value: Option<&Spanned<u32>>,
        key: &str,
        default: u32,
    ) -> Result<u32, ConfigError> {
        match value {
            None => Ok(default),
            Some(value) if *value.get_ref() == 0 => {
                Err(self.error(&value.span(), key, "must be at least 1"))
            }
            Some(value) => Ok(*value.get_ref()),
        }
    }

    fn group(&self, value: &Spanned<Scalar>, key: &str) -> Result<GroupRef, ConfigError> {
        match value.get_ref() {
            Scalar::Int(gid) => u32::try_from(*gid)
                .map(|gid| GroupRef {
                    name: None,
                    gid: Gid::from_raw(gid),
                })
                .map_err(|_| self.error(&value.span(), key, format!("gid {gid} is out of range"))),
            Scalar::Text(name) => {
                group_by_name(name).map_err(|problem| self.error(&value.span(), key, problem))
            }
        }
    }

    fn interfaces(
        &self,
        raw: Option<Spanned<Vec<Spanned<RawInterface>>>>,
        default_mode: AttachMode,
    ) -> Result<Vec<InterfaceConfig>, ConfigError> {
        let Some(raw) = raw.filter(|list| !list.get_ref().is_empty()) else {
            return Err(self.error(
                &(0..0),
                "interface",
                "no interface: add at least one [[interface]] with a name",
            ));
        };
        let mut interfaces: Vec<InterfaceConfig> = Vec::new();
        for (index, entry) in raw.get_ref().iter().enumerate() {
            let entry = entry.get_ref();
            let key = format!("interface[{index}].name");
            let name = entry.name.get_ref();
            if let Some(problem) = iface_name_problem(name) {
                return Err(self.error(&entry.name.span(), key, problem));
            }
            if interfaces.iter().any(|i| i.name == *name) {
                return Err(self.error(
                    &entry.name.span(),
                    key,
                    format!("interface `{name}` is listed twice"),
                ));
            }
            let xdp_mode = match &entry.xdp_mode {
                Some(mode) => self.choice::<AttachMode>(
                    mode,
                    &format!("interface[{index}].xdp_mode"),
                    "an XDP mode",
                )?,
                None => default_mode,
            };
            interfaces.push(InterfaceConfig {
                name: name.clone(),
                xdp_mode,
            });
        }
        Ok(interfaces)
    }

    fn list(
        &self,
        raw: Option<Spanned<RawList>>,
        name: &str,
        capacity: u32,
    ) -> Result<Vec<Prefix>, ConfigError> {
        let Some(raw) = raw else {
            return Ok(Vec::new());
        };
        let span = raw.span();
        let raw = raw.into_inner();
        let mut prefixes = Vec::new();
        for (index, text) in raw.prefixes.iter().flatten().enumerate() {
            let prefix = text.get_ref().parse::<Prefix>().map_err(|e| {
                self.error(
                    &text.span(),
                    format!("{name}.prefixes[{index}]"),
                    e.to_string(),
                )
            })?;
            prefixes.push(prefix);
        }
        for (index, file) in raw.files.iter().flatten().enumerate() {
            let listed = parse_list_file(&self.resolve(file.get_ref())).map_err(|error| {
                ConfigError::ListFile {
                    file: self.path.to_owned(),
                    at: self.position(file.span().start),
                    key: format!("{name}.files[{index}]"),
                    error,
                }
            })?;
            prefixes.extend(listed);
        }
        prefixes.sort_unstable();
        prefixes.dedup();
        // The daemon would fail to fill a trie past its capacity; say so now, not at start.
        for family in [Family::V4, Family::V6] {
            let count = prefixes.iter().filter(|p| p.family() == family).count();
            if count > capacity as usize {
                return Err(self.error(
                    &span,
                    name,
                    format!("{count} {family} prefixes do not fit daemon.list_capacity {capacity}"),
                ));
            }
        }
        Ok(prefixes)
    }

    /// A list file's path: relative ones are relative to the configuration file's
    /// directory, so the file means the same whatever the daemon's working directory.
    fn resolve(&self, file: &str) -> PathBuf {
        let file = Path::new(file);
        match self.path.parent() {
            Some(dir) if file.is_relative() => dir.join(file),
            _ => file.to_owned(),
        }
    }
}

/// Why `name` cannot be an interface name, by the kernel's own rule (`dev_valid_name` in
/// net/core/dev.c): not empty, shorter than `IFNAMSIZ`, not `.` or `..`, no `/`, `:` or
/// whitespace. NUL and other control characters cannot cross the C API either.
fn iface_name_problem(name: &str) -> Option<String> {
    if name.is_empty() {
        return Some("the interface name is empty".into());
    }
    if name.len() > MAX_IFACE_NAME_BYTES {
        return Some(format!(
            "interface name `{name}` is {} bytes long; the kernel allows at most {MAX_IFACE_NAME_BYTES}",
            name.len()
        ));
    }
    if name == "." || name == ".." {
        return Some(format!("`{name}` is not an interface name"));
    }
    if let Some(bad) = name
        .chars()
        .find(|&c| c == '/' || c == ':' || c.is_whitespace() || c.is_control())
    {
        return Some(format!(
            "interface name `{}` contains {bad:?}, which the kernel does not allow",
            name.escape_debug()
        ));
    }
    None
}

/// `ASN:VALUE`, each a 16-bit number.
fn parse_community(text: &str) -> Option<(u16, u16)> {
    let (asn, value) = text.split_once(':')?;
    Some((asn.trim().parse().ok()?, value.trim().parse().ok()?))
}
