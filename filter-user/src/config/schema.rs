//! The file as written: serde's side. Every value keeps its span for the checks that
//! follow. `[limits]` is read from the document by the settings' keys instead (see
//! `limits_table`), so that the limits have one vocabulary.

use std::fmt;

use serde::{Deserialize, de};
use toml::Spanned;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawFile {
    pub(super) daemon: Option<RawDaemon>,
    pub(super) interface: Option<Spanned<Vec<Spanned<RawInterface>>>>,
    /// Here only so that `[limits]` is a known key: it is read from the document by the
    /// settings' keys (`limits_table`).
    #[serde(rename = "limits")]
    _limits: Option<de::IgnoredAny>,
    pub(super) allow: Option<Spanned<RawList>>,
    pub(super) deny: Option<Spanned<RawList>>,
    pub(super) rules: Option<Vec<Spanned<RawRule>>>,
    pub(super) upstream: Option<Spanned<RawUpstream>>,
    pub(super) fleet: Option<Spanned<RawFleet>>,
}

/// `[fleet]` (see `crate::fleet::FleetConfig`).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawFleet {
    pub(super) broker: Option<Spanned<String>>,
    pub(super) node: Option<Spanned<String>>,
    pub(super) bucket: Option<Spanned<String>>,
    pub(super) share_blocks: Option<Spanned<bool>>,
    pub(super) share_signatures: Option<Spanned<bool>>,
    pub(super) max_entries: Option<Spanned<u32>>,
    pub(super) max_block: Option<Spanned<String>>,
    pub(super) user: Option<Spanned<String>>,
    pub(super) password_file: Option<Spanned<String>>,
    pub(super) token_file: Option<Spanned<String>>,
}

/// `[upstream]` (see `crate::upstream::UpstreamConfig`).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawUpstream {
    pub(super) gobgp_api: Option<Spanned<String>>,
    pub(super) gobgp_client: Option<Spanned<String>>,
    pub(super) dry_run: Option<Spanned<bool>>,
    pub(super) protected: Option<Vec<Spanned<String>>>,
    pub(super) prefix_len_v4: Option<Spanned<Vec<u8>>>,
    pub(super) prefix_len_v6: Option<Spanned<Vec<u8>>>,
    pub(super) max_routes: Option<Spanned<u32>>,
    pub(super) max_new_per_minute: Option<Spanned<u32>>,
    pub(super) min_hold: Option<Spanned<String>>,
    pub(super) expiry: Option<Spanned<String>>,
    pub(super) max_expiry: Option<Spanned<String>>,
    pub(super) on_stop: Option<Spanned<String>>,
    pub(super) blackhole_community: Option<Spanned<String>>,
    pub(super) reconcile_every: Option<Spanned<String>>,
    pub(super) auto_above: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawRule {
    pub(super) rule: Spanned<String>,
    pub(super) priority: Option<Spanned<u16>>,
    pub(super) comment: Option<Spanned<String>>,
}

#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawDaemon {
    pub(super) xdp_mode: Option<Spanned<String>>,
    pub(super) metrics_addr: Option<Spanned<String>>,
    pub(super) max_sources: Option<Spanned<u32>>,
    pub(super) list_capacity: Option<Spanned<u32>>,
    pub(super) max_prefixes: Option<Spanned<u32>>,
    pub(super) admin_group: Option<Spanned<Scalar>>,
    pub(super) read_group: Option<Spanned<Scalar>>,
    pub(super) run_dir: Option<Spanned<String>>,
    pub(super) syn_protect: Option<Spanned<String>>,
    pub(super) syn_sysctls: Option<Spanned<String>>,
    pub(super) signatures: Option<Spanned<String>>,
    pub(super) signature_forbid: Option<Vec<Spanned<String>>>,
    pub(super) signature_monitor: Option<Vec<Spanned<String>>>,
    pub(super) signature_factor: Option<Spanned<AsText>>,
    pub(super) signature_floor: Option<Spanned<AsText>>,
    pub(super) signature_min_baseline: Option<Spanned<AsText>>,
    pub(super) signature_quiet: Option<Spanned<AsText>>,
    pub(super) signature_max_rules: Option<Spanned<AsText>>,
}

/// A number or a string, kept as its text for a parser shared with a flag (the detector's
/// thresholds: `4`, `2.5`, `"10s"`).
pub(super) struct AsText(pub(super) String);

impl<'de> Deserialize<'de> for AsText {
    fn deserialize<D: de::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct TextVisitor;
        impl de::Visitor<'_> for TextVisitor {
            type Value = AsText;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a number or a string")
            }
            fn visit_i64<E: de::Error>(self, value: i64) -> Result<AsText, E> {
                Ok(AsText(value.to_string()))
            }
            fn visit_u64<E: de::Error>(self, value: u64) -> Result<AsText, E> {
                Ok(AsText(value.to_string()))
            }
            fn visit_f64<E: de::Error>(self, value: f64) -> Result<AsText, E> {
                Ok(AsText(value.to_string()))
            }
            fn visit_str<E: de::Error>(self, value: &str) -> Result<AsText, E> {
                Ok(AsText(value.to_owned()))
            }
        }
        deserializer.deserialize_any(TextVisitor)
    }
}

impl RawDaemon {
    /// The value of a detector threshold's key.
    pub(super) const fn threshold(
        &self,
        t: crate::traffic::detect::Threshold,
    ) -> Option<&Spanned<AsText>> {
        use crate::traffic::detect::Threshold as T;
        match t {
            T::Factor => self.signature_factor.as_ref(),
            T::Floor => self.signature_floor.as_ref(),
            T::MinBaseline => self.signature_min_baseline.as_ref(),
            T::Quiet => self.signature_quiet.as_ref(),
            T::MaxRules => self.signature_max_rules.as_ref(),
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawInterface {
    pub(super) name: Spanned<String>,
    pub(super) xdp_mode: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawList {
    pub(super) prefixes: Option<Vec<Spanned<String>>>,
    pub(super) files: Option<Vec<Spanned<String>>>,
}

/// A value written either as a TOML integer or as a string: rates (`10000` or `"10k"`),
/// bursts, durations and groups. Which forms a key takes is checked where it is used, so
/// the error can say what that key expects.
pub(super) enum Scalar {
    Int(i64),
    Text(String),
}

impl<'de> Deserialize<'de> for Scalar {
    fn deserialize<D: de::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct ScalarVisitor;
        impl de::Visitor<'_> for ScalarVisitor {
            type Value = Scalar;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an integer or a string")
            }
            fn visit_i64<E: de::Error>(self, value: i64) -> Result<Scalar, E> {
                Ok(Scalar::Int(value))
            }
            fn visit_u64<E: de::Error>(self, value: u64) -> Result<Scalar, E> {
                i64::try_from(value)
                    .map(Scalar::Int)
                    .map_err(|_| E::invalid_value(de::Unexpected::Unsigned(value), &self))
            }
            fn visit_str<E: de::Error>(self, value: &str) -> Result<Scalar, E> {
                Ok(Scalar::Text(value.to_owned()))
            }
        }
        deserializer.deserialize_any(ScalarVisitor)
    }
}
