//! The limit flags of `floodwall run` and `floodwall limits set`, and their translation
//! into a [`LimitsChange`]. The flags are named by [`Setting::flag`]; a test checks that
//! every setting has its flag here.

use anyhow::bail;
use clap::Args;

use super::{
    Burst, ClassName, FilterMode, LimitsChange, Rate, ScopeName, Setting, Value, parse_burst,
    parse_class_rate, parse_duration_ms, parse_rate, parse_scope_class_rate, parse_scope_len,
    parse_scope_rate,
};

/// Limit flags shared by `run` and `limits set`.
#[derive(Clone, Debug, Args, Default)]
pub struct LimitArgs {
    /// Packets per second per source: a number (10k, 1.5M) or `unlimited`.
    #[arg(long, value_parser = parse_rate)]
    pub pps: Option<Rate>,
    /// Bits per second per source: a number (100M, 1G) or `unlimited`.
    #[arg(long, value_parser = parse_rate)]
    pub bps: Option<Rate>,
    /// Packets a source may send at once above its rate, or `auto` (one second of --pps).
    #[arg(long, value_parser = parse_burst)]
    pub burst_packets: Option<Burst>,
    /// Bytes a source may send at once above its rate, or `auto` (one second of --bps).
    #[arg(long, value_parser = parse_burst)]
    pub burst_bytes: Option<Burst>,
    /// How long a source over a limit stays blocked, e.g. 90s, 10m, 1h.
    #[arg(long, value_parser = parse_duration_ms, value_name = "DURATION")]
    pub block_for: Option<u64>,
    /// enforce: drop; monitor: count what would be dropped, drop nothing. Sources marked
    /// blocked in monitor mode are dropped for the rest of their block after a switch to
    /// enforce.
    #[arg(long, value_enum)]
    pub mode: Option<FilterMode>,
    /// Packets per second per source for one class, CLASS=RATE (classes: syn, tcp, udp,
    /// icmp, fragment, other), e.g. `--class-pps syn=50`; repeatable; RATE may be
    /// `unlimited`.
    #[arg(long, value_parser = parse_class_rate, value_name = "CLASS=RATE")]
    pub class_pps: Vec<(ClassName, Rate)>,
    /// Ceiling on the packets per second of one class from sources not (yet) tracked, in
    /// total over all CPUs, CLASS=RATE; repeatable. It caps random-source floods.
    #[arg(long, value_parser = parse_class_rate, value_name = "CLASS=RATE")]
    pub ceiling: Vec<(ClassName, Rate)>,
    /// Packets a new source must send (within a second) before it gets its own table entry
    /// and limits; until then its packets count against the ceilings. 1 admits at once.
    #[arg(long, value_name = "PACKETS")]
    pub admit_after: Option<u32>,
    /// New table entries per second, in total over the CPUs (or `unlimited`): sources past
    /// `--admit-after` beyond this rate stay untracked, so no flood can churn the table.
    #[arg(long, value_parser = parse_rate, value_name = "RATE")]
    pub admit_rate: Option<Rate>,
    /// SYN-ACKs per second the SYN-cookie stage may send, in total over the CPUs (or
    /// `unlimited`): they go to addresses that may be spoofed. SYNs over it fall back to the
    /// SYN ceiling.
    #[arg(long, value_parser = parse_rate, value_name = "RATE")]
    pub syn_cookie_rate: Option<Rate>,
    /// Sources per second an ACK with a valid cookie may admit to the table, in total over
    /// the CPUs (or `unlimited`).
    #[arg(long, value_parser = parse_rate, value_name = "RATE")]
    pub syn_admit_rate: Option<Rate>,
    /// How long untracked SYNs must stay under half the SYN ceiling before
    /// `--syn-protect auto` turns cookies off again, e.g. 1m.
    #[arg(long, value_parser = parse_duration_ms, value_name = "DURATION")]
    pub syn_auto_quiet: Option<u64>,
    /// Put one class in monitor mode (count, do not drop); repeatable.
    #[arg(long, value_enum, value_name = "CLASS")]
    pub monitor_class: Vec<ClassName>,
    /// Put one class back in enforce mode; repeatable.
    #[arg(long, value_enum, value_name = "CLASS")]
    pub enforce_class: Vec<ClassName>,
    /// enforce: drop denylisted sources; monitor: count them, drop nothing.
    #[arg(long, value_enum)]
    pub deny_mode: Option<FilterMode>,
    /// Prefix length of a scope, SCOPE=LEN (scopes: v4, default 24; v6, default 64;
    /// v6-wide, default 48); repeatable.
    #[arg(long, value_parser = parse_scope_len, value_name = "SCOPE=LEN")]
    pub prefix_len: Vec<(ScopeName, u32)>,
    /// Packets per second of each prefix of a scope, in total over its sources, SCOPE=RATE;
    /// repeatable. A prefix over it loses its excess packets.
    #[arg(long, value_parser = parse_scope_rate, value_name = "SCOPE=RATE")]
    pub prefix_pps: Vec<(ScopeName, Rate)>,
    /// Bits per second of each prefix of a scope, SCOPE=RATE; repeatable.
    #[arg(long, value_parser = parse_scope_rate, value_name = "SCOPE=RATE")]
    pub prefix_bps: Vec<(ScopeName, Rate)>,
    /// Packets per second of one class for each prefix of a scope, SCOPE:CLASS=RATE, e.g.
    /// `v4:syn=2k`; repeatable.
    #[arg(long, value_parser = parse_scope_class_rate, value_name = "SCOPE:CLASS=RATE")]
    pub prefix_class_pps: Vec<(ScopeName, ClassName, Rate)>,
}

impl LimitArgs {
    /// The flags as a change to the current limits.
    ///
    /// # Errors
    /// If one class is named twice in one flag, or both monitored and enforced.
    pub fn change(&self) -> anyhow::Result<LimitsChange> {
        let mut change = LimitsChange::default();
        let mut given = std::collections::HashSet::new();
        let mut set = |setting: Setting, value: Value| {
            // Only the per-class and per-scope flags repeat; clap refuses other repeats.
            if !given.insert(setting) {
                let target = setting.target().unwrap_or_default();
                bail!("--{} names {target} twice", setting.flag());
            }
            change.set(setting, value);
            Ok(())
        };
        let scalars = [
            (Setting::Pps, self.pps.map(Value::Rate)),
            (Setting::BurstPackets, self.burst_packets.map(Value::Burst)),
            (Setting::Bps, self.bps.map(Value::Rate)),
            (Setting::BurstBytes, self.burst_bytes.map(Value::Burst)),
            (Setting::BlockFor, self.block_for.map(Value::Duration)),
            (Setting::Mode, self.mode.map(Value::Mode)),
            (Setting::AdmitAfter, self.admit_after.map(Value::Count)),
            (Setting::AdmitRate, self.admit_rate.map(Value::Rate)),
            (
                Setting::SynCookieRate,
                self.syn_cookie_rate.map(Value::Rate),
            ),
            (Setting::SynAdmitRate, self.syn_admit_rate.map(Value::Rate)),
            (
                Setting::SynAutoQuiet,
                self.syn_auto_quiet.map(Value::Duration),
            ),
            (Setting::DenyMode, self.deny_mode.map(Value::Mode)),
        ];
        for (setting, value) in scalars {
            if let Some(value) = value {
                set(setting, value)?;
            }
        }
        for &(class, rate) in &self.class_pps {
            set(Setting::ClassPps(class), Value::Rate(rate))?;
        }
        for &(class, rate) in &self.ceiling {
            set(Setting::Ceiling(class), Value::Rate(rate))?;
        }
        for &(scope, len) in &self.prefix_len {
            set(Setting::PrefixLen(scope), Value::Count(len))?;
        }
        for &(scope, rate) in &self.prefix_pps {
            set(Setting::PrefixPps(scope), Value::Rate(rate))?;
        }
        for &(scope, rate) in &self.prefix_bps {
            set(Setting::PrefixBps(scope), Value::Rate(rate))?;
        }
        for &(scope, class, rate) in &self.prefix_class_pps {
            set(Setting::PrefixClassPps(scope, class), Value::Rate(rate))?;
        }
        // Two flags for one setting, each changing only the classes it names.
        for (monitor, list) in [(true, &self.monitor_class), (false, &self.enforce_class)] {
            for &class in list {
                if change.monitor_classes[class.index()]
                    .replace(monitor)
                    .is_some()
                {
                    bail!("class {class} is named twice in --monitor-class/--enforce-class");
                }
            }
        }
        Ok(change)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_setting_has_its_flag() {
        let command = LimitArgs::augment_args(clap::Command::new("limits"));
        let flags: Vec<&str> = command
            .get_arguments()
            .filter_map(clap::Arg::get_long)
            .collect();
        for setting in Setting::all() {
            assert!(
                flags.contains(&setting.flag()),
                "--{} of {setting:?} must be a flag of LimitArgs: {flags:?}",
                setting.flag()
            );
        }
    }
}
