//! Why a limit is refused: [`LimitError`], and the checks of [`Limits::apply`] that raise
//! it, driven by each [`Setting`]'s bounds.

use super::{Bounds, Burst, Kind, Limits, MAX_BURST_TIME, NS_PER_SEC, Rate, Setting, Value};

/// Why a limit was refused. Each names the setting, the value and the bound; the config
/// file names the setting by its key instead, and prints [`LimitError::problem`].
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("{setting} {}", self.problem())]
pub struct LimitError {
    /// The setting refused.
    pub setting: Setting,
    /// What is wrong with its value.
    pub reason: LimitProblem,
}

/// What is wrong with the value of a setting.
#[derive(Debug, PartialEq, Eq)]
pub enum LimitProblem {
    /// Zero, where the least is `min`.
    Zero {
        /// The bound.
        min: u64,
    },
    /// Below the least value, for a reason worth saying.
    TooSmall {
        /// The value given.
        value: u64,
        /// The bound.
        min: u64,
        /// Why.
        why: &'static str,
    },
    /// Out of range.
    OutOfRange {
        /// The value given.
        value: u64,
        /// Smallest allowed.
        min: u64,
        /// Largest allowed.
        max: u64,
    },
    /// A burst longer than [`MAX_BURST_TIME`] at its rate.
    BurstTooLong {
        /// The burst.
        burst: u64,
        /// The rate.
        rate: u64,
        /// The bound in seconds.
        max_secs: u64,
    },
    /// A burst shorter than [`filter_common::MIN_BURST_NS`] at its rate.
    BurstTooShort {
        /// The burst.
        burst: u64,
        /// The rate.
        rate: u64,
        /// The bound in milliseconds.
        min_ms: u64,
    },
}

impl LimitError {
    /// The problem with the value, without the setting's name: `10 lasts less than 30 ms
    /// ...`.
    #[must_use]
    pub fn problem(&self) -> String {
        let show = |n: u64| show_number(self.setting, n);
        match self.reason {
            LimitProblem::Zero { min } => {
                let hint = if self.setting.kind() == Kind::Rate {
                    " (use `unlimited` to turn the limit off)"
                } else {
                    ""
                };
                format!("must be at least {}{hint}", show(min))
            }
            LimitProblem::TooSmall { value, min, why } => {
                format!("{} is below {}, {why}", show(value), show(min))
            }
            LimitProblem::OutOfRange { value, min, max } => format!(
                "{} is out of range: it must be between {} and {}",
                show(value),
                show(min),
                show(max)
            ),
            LimitProblem::BurstTooLong {
                burst,
                rate,
                max_secs,
            } => format!(
                "{burst} lasts longer than {max_secs} s at the rate of {rate} per second; \
                 lower the burst or raise the rate"
            ),
            LimitProblem::BurstTooShort {
                burst,
                rate,
                min_ms,
            } => format!(
                "{burst} lasts less than {min_ms} ms at the rate of {rate} per second; \
                 raise the burst (or use `auto`)"
            ),
        }
    }
}

/// A number of `setting` in an error: durations (in milliseconds) in whole days, else in
/// seconds, so that `500ms` reads `0.5s` and the bound reads `30days`.
fn show_number(setting: Setting, n: u64) -> String {
    const DAY_MS: u64 = 24 * 3_600_000;
    match setting.kind() {
        Kind::Duration if n > 0 && n.is_multiple_of(DAY_MS) => format!("{}days", n / DAY_MS),
        #[expect(clippy::cast_precision_loss, reason = "a duration for people")]
        Kind::Duration => format!("{}s", n as f64 / 1000.0),
        _ => n.to_string(),
    }
}

fn check_bounds(setting: Setting, value: u64, bounds: Bounds) -> Result<(), LimitError> {
    let refuse = |reason| Err(LimitError { setting, reason });
    if value < bounds.min
        && let Some(why) = bounds.min_reason
    {
        return refuse(LimitProblem::TooSmall {
            value,
            min: bounds.min,
            why,
        });
    }
    if value == 0 && bounds.min > 0 {
        return refuse(LimitProblem::Zero { min: bounds.min });
    }
    if !(bounds.min..=bounds.max).contains(&value) {
        return refuse(LimitProblem::OutOfRange {
            value,
            min: bounds.min,
            max: bounds.max,
        });
    }
    Ok(())
}

fn check_burst_time(setting: Setting, burst: u64, rate: u64) -> Result<(), LimitError> {
    // The program's clock ticks every few milliseconds and every packet within a tick sees
    // the same time: a burst shorter than a few ticks would drop a source sending steadily
    // at its rate.
    if u128::from(burst) * NS_PER_SEC < u128::from(rate) * u128::from(filter_common::MIN_BURST_NS) {
        return Err(LimitError {
            setting,
            reason: LimitProblem::BurstTooShort {
                burst,
                rate,
                min_ms: filter_common::MIN_BURST_NS / 1_000_000,
            },
        });
    }
    let max_secs = MAX_BURST_TIME.as_secs();
    if u128::from(burst) > u128::from(rate.max(1)) * u128::from(max_secs) {
        return Err(LimitError {
            setting,
            reason: LimitProblem::BurstTooLong {
                burst,
                rate,
                max_secs,
            },
        });
    }
    Ok(())
}

impl Limits {
    pub(super) fn validate(&self) -> Result<(), LimitError> {
        for setting in Setting::all() {
            let Some(bounds) = setting.bounds() else {
                continue;
            };
            let value = match setting.get(self) {
                Value::Rate(Rate::PerSecond(n)) | Value::Burst(Burst::Exactly(n)) => n,
                Value::Duration(ms) => ms,
                Value::Count(n) => u64::from(n),
                _ => continue,
            };
            check_bounds(setting, value, bounds)?;
        }
        for burst_setting in [Setting::BurstPackets, Setting::BurstBytes] {
            let rate_setting = burst_setting.rate_of_burst().unwrap_or(Setting::Pps);
            if let (Value::Burst(Burst::Exactly(burst)), Value::Rate(Rate::PerSecond(rate))) =
                (burst_setting.get(self), rate_setting.get(self))
            {
                // A burst of bytes is measured against a rate of bits.
                let per_unit = if burst_setting == Setting::BurstBytes {
                    rate / 8
                } else {
                    rate
                };
                check_burst_time(burst_setting, burst, per_unit)?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::limits::{LimitsChange, MAX_PPS};

    #[test]
    fn invalid_values_are_refused_and_change_nothing() {
        let limits = Limits::default();
        let cases = [
            (
                LimitsChange {
                    pps: Some(Rate::PerSecond(0)),
                    ..LimitsChange::default()
                },
                "pps must be at least 1",
            ),
            (
                LimitsChange {
                    pps: Some(Rate::PerSecond(MAX_PPS + 1)),
                    ..LimitsChange::default()
                },
                "pps 1000000001 is out of range",
            ),
            (
                LimitsChange {
                    bps: Some(Rate::PerSecond(7)),
                    ..LimitsChange::default()
                },
                "bps 7 is out of range",
            ),
            (
                LimitsChange {
                    burst_bytes: Some(Burst::Exactly(100)),
                    ..LimitsChange::default()
                },
                "burst-bytes 100 is below 1500",
            ),
            (
                LimitsChange {
                    burst_packets: Some(Burst::Exactly(10_000 * 3_601)),
                    ..LimitsChange::default()
                },
                "lasts longer than 3600 s",
            ),
            (
                LimitsChange {
                    block_for_ms: Some(500),
                    ..LimitsChange::default()
                },
                "block-for 0.5s is out of range",
            ),
            (
                LimitsChange {
                    block_for_ms: Some(31 * 24 * 3_600_000),
                    ..LimitsChange::default()
                },
                "block-for 31days is out of range: it must be between 1s and 30days",
            ),
        ];
        for (change, expected) in cases {
            let err = limits
                .apply(&change)
                .expect_err("must be refused")
                .to_string();
            assert!(
                err.contains(expected),
                "error `{err}` should contain `{expected}`"
            );
        }
    }

    #[test]
    fn counts_take_no_zero_and_no_hint_at_unlimited() {
        let change = LimitsChange {
            admit_packets: Some(0),
            ..LimitsChange::default()
        };
        let err = Limits::default().apply(&change).unwrap_err().to_string();
        assert_eq!(err, "admit-after must be at least 1");
    }

    #[test]
    fn bursts_shorter_than_a_few_clock_ticks_are_refused() {
        let err = Limits::default()
            .apply(&LimitsChange {
                pps: Some(Rate::PerSecond(1_000)),
                burst_packets: Some(Burst::Exactly(10)),
                ..LimitsChange::default()
            })
            .expect_err("10 packets at 1000 pps last 10 ms");
        assert!(
            err.to_string()
                .contains("burst-packets 10 lasts less than 30 ms"),
            "{err}"
        );
    }
}
