//! The detector's thresholds an operator sets: `floodwall run --signature-factor 8`, or
//! `[daemon] signature_factor = 8` in the config file. One parser a threshold serves both,
//! so the flag and the key take the same values and refuse the same ones, each with an
//! error that says what the threshold expects.

use std::fmt;

use super::DetectConfig;

/// The thresholds as given; `None`: not given (the file's, then the default, applies).
#[derive(Clone, Copy, Debug, Default, PartialEq, clap::Args)]
pub struct Thresholds {
    /// Attacks: a service is under attack over this many times its baseline rate (default
    /// 4; more than 1, at most 1000)...
    #[arg(long, value_parser = Threshold::Factor.parser(), value_name = "FACTOR")]
    pub signature_factor: Option<f64>,
    /// ...and over this many packets a second (default 2000).
    #[arg(long, value_parser = Threshold::Floor.parser(), value_name = "PPS")]
    pub signature_floor: Option<f64>,
    /// Traffic learned before a signature is put in force (default 10s; 1s to 1h).
    #[arg(long, value_parser = Threshold::MinBaseline.parser(), value_name = "DURATION")]
    pub signature_min_baseline: Option<f64>,
    /// How long a signature's matches stay under the baseline before it is withdrawn, and an
    /// attack's rate before it ends (default 10s; 1s to 1h).
    #[arg(long, value_parser = Threshold::Quiet.parser(), value_name = "DURATION")]
    pub signature_quiet: Option<f64>,
    /// Signatures in force at most, all attacks together (default 8; 1 to 64).
    #[arg(long, value_parser = Threshold::MaxRules.parser(), value_name = "N")]
    pub signature_max_rules: Option<f64>,
}

/// One threshold: its names and what it takes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Threshold {
    /// Times the baseline rate.
    Factor,
    /// Packets a second.
    Floor,
    /// Seconds of baseline.
    MinBaseline,
    /// Seconds of quiet.
    Quiet,
    /// Rules.
    MaxRules,
}

impl Threshold {
    /// Every threshold.
    pub const ALL: [Self; 5] = [
        Self::Factor,
        Self::Floor,
        Self::MinBaseline,
        Self::Quiet,
        Self::MaxRules,
    ];

    /// Its key in `[daemon]` (the flag is the same, with dashes and `--`).
    #[must_use]
    pub const fn key(self) -> &'static str {
        match self {
            Self::Factor => "signature_factor",
            Self::Floor => "signature_floor",
            Self::MinBaseline => "signature_min_baseline",
            Self::Quiet => "signature_quiet",
            Self::MaxRules => "signature_max_rules",
        }
    }

    /// Reads a value: a number (a duration for the times, in seconds); the error says what
    /// is expected.
    ///
    /// # Errors
    /// A value of the wrong form or out of range.
    pub fn parse(self, text: &str) -> Result<f64, String> {
        let text = text.trim();
        let (value, low, high, expects) = match self {
            Self::Factor => (
                number(text)?,
                1.0,
                1000.0,
                "times the baseline rate, more than 1 and at most 1000 (e.g. 4)",
            ),
            Self::Floor => (
                number(text)?,
                1.0,
                1e9,
                "packets a second, 1 to 1000000000 (e.g. 2000)",
            ),
            Self::MinBaseline | Self::Quiet => (
                humantime::parse_duration(text)
                    .map_err(|e| format!("`{text}` is not a duration ({e}); examples: 10s, 1m"))?
                    .as_secs_f64(),
                1.0,
                3600.0,
                "a whole number of seconds, 1s to 1h",
            ),
            Self::MaxRules => (number(text)?, 1.0, 64.0, "a whole number of rules, 1 to 64"),
        };
        // Counts and durations are whole (rules, seconds): a fraction is refused, not
        // rounded.
        let whole = matches!(self, Self::Factor | Self::Floor) || value.fract() == 0.0;
        let in_range = if matches!(self, Self::Factor) {
            value > low && value <= high
        } else {
            (low..=high).contains(&value)
        };
        if whole && in_range {
            Ok(value)
        } else {
            Err(format!("`{text}` is out of range: {expects}"))
        }
    }

    /// [`Threshold::parse`] as clap's value parser.
    fn parser(self) -> impl Fn(&str) -> Result<f64, String> + Clone + Send + Sync + 'static {
        move |text: &str| self.parse(text)
    }

    /// Its value in `t`.
    #[must_use]
    pub const fn get(self, t: &Thresholds) -> Option<f64> {
        match self {
            Self::Factor => t.signature_factor,
            Self::Floor => t.signature_floor,
            Self::MinBaseline => t.signature_min_baseline,
            Self::Quiet => t.signature_quiet,
            Self::MaxRules => t.signature_max_rules,
        }
    }

    /// Sets its value in `t`.
    pub const fn set(self, t: &mut Thresholds, value: Option<f64>) {
        match self {
            Self::Factor => t.signature_factor = value,
            Self::Floor => t.signature_floor = value,
            Self::MinBaseline => t.signature_min_baseline = value,
            Self::Quiet => t.signature_quiet = value,
            Self::MaxRules => t.signature_max_rules = value,
        }
    }
}

impl fmt::Display for Threshold {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.key())
    }
}

fn number(text: &str) -> Result<f64, String> {
    text.parse::<f64>()
        .ok()
        .filter(|v| v.is_finite())
        .ok_or_else(|| format!("`{text}` is not a number"))
}

impl Thresholds {
    /// `self`'s values, and `under`'s where `self` has none (the command line over the
    /// file).
    #[must_use]
    pub fn over(self, under: Self) -> Self {
        let mut out = self;
        for t in Threshold::ALL {
            Threshold::set(t, &mut out, t.get(&self).or_else(|| t.get(&under)));
        }
        out
    }

    /// The detector's settings with these thresholds in place of the defaults.
    #[must_use]
    #[expect(
        clippy::cast_possible_truncation,
        clippy::cast_sign_loss,
        reason = "whole numbers in small ranges, checked when parsed"
    )]
    pub fn apply(self, mut config: DetectConfig) -> DetectConfig {
        if let Some(v) = self.signature_factor {
            config.factor = v;
        }
        if let Some(v) = self.signature_floor {
            config.floor_pps = v;
        }
        if let Some(v) = self.signature_min_baseline {
            config.min_baseline_s = v.ceil() as u64;
        }
        if let Some(v) = self.signature_quiet {
            config.quiet_s = v.ceil() as u64;
        }
        if let Some(v) = self.signature_max_rules {
            config.max_rules = v as usize;
        }
        config
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_threshold_takes_its_range_and_names_what_it_expects() {
        assert_eq!(Threshold::Factor.parse("8"), Ok(8.0));
        assert_eq!(Threshold::Factor.parse("2.5"), Ok(2.5));
        assert_eq!(Threshold::MinBaseline.parse("1m"), Ok(60.0));
        assert_eq!(Threshold::Quiet.parse("3s"), Ok(3.0));
        assert_eq!(Threshold::MaxRules.parse("16"), Ok(16.0));
        for (t, text, says) in [
            (Threshold::Factor, "1", "more than 1"),
            (Threshold::Factor, "NaN", "is not a number"),
            (Threshold::Floor, "0", "1 to 1000000000"),
            (Threshold::Floor, "-5", "1 to 1000000000"),
            (Threshold::MinBaseline, "500ms", "1s to 1h"),
            (Threshold::Quiet, "1500ms", "whole number of seconds"),
            (Threshold::Quiet, "2h", "1s to 1h"),
            (Threshold::Quiet, "ten", "is not a duration"),
            (Threshold::MaxRules, "2.5", "whole number"),
            (Threshold::MaxRules, "65", "1 to 64"),
        ] {
            let err = t.parse(text).expect_err(text);
            assert!(err.contains(says), "{t} {text}: {err}");
        }
    }

    #[test]
    fn the_command_line_wins_over_the_file_and_the_defaults_fill_the_rest() {
        let file = Thresholds {
            signature_factor: Some(8.0),
            signature_quiet: Some(30.0),
            ..Thresholds::default()
        };
        let flags = Thresholds {
            signature_quiet: Some(3.0),
            ..Thresholds::default()
        };
        let config = flags.over(file).apply(DetectConfig::default());
        assert!((config.factor - 8.0).abs() < f64::EPSILON);
        assert_eq!(config.quiet_s, 3);
        assert!((config.floor_pps - DetectConfig::default().floor_pps).abs() < f64::EPSILON);
        assert_eq!(config.max_rules, DetectConfig::default().max_rules);
    }
}
