//! The `[limits]` table, read by the keys of [`Setting`]: each key is a setting's, read as
//! its [`Kind`], so the file takes every setting there is and nothing else, and a new
//! setting needs nothing here.

use std::ops::Range;

use serde::de;
use toml::{
    Spanned,
    de::{DeTable, DeValue},
};

use super::{ConfigError, Source, schema::Scalar};
use crate::limits::{
    Burst, ClassName, FilterMode, Kind, Limits, LimitsChange, Rate, Setting, Value, parse_burst,
    parse_duration_ms, parse_rate,
};

impl Source<'_> {
    /// The `[limits]` table. Its keys are [`Setting::key`]s, each read as its setting's
    /// [`Kind`], so the table knows every setting there is and nothing else.
    pub(super) fn limits(&self, document: &DeTable<'_>) -> Result<Limits, ConfigError> {
        let Some((_, table)) = document.iter().find(|(key, _)| key.get_ref() == "limits") else {
            return Ok(Limits::default());
        };
        let mut found = Vec::new();
        self.limit_table(table, "", document, &mut found)?;
        let mut change = LimitsChange::default();
        for &(setting, value, _) in &found {
            change.set(setting, value);
        }
        Limits::default().apply(&change).map_err(|error| {
            // The setting refused, else (a burst that does not fit its rate) its rate.
            let own = found.iter().find(|(s, ..)| *s == error.setting);
            let rate = || {
                let rate = error.setting.rate_of_burst()?;
                found.iter().find(|(s, ..)| *s == rate)
            };
            match (own, rate()) {
                (Some((setting, _, span)), _) => {
                    self.error(span, format!("limits.{}", setting.key()), error.problem())
                }
                (None, Some((setting, _, span))) => {
                    self.error(span, format!("limits.{}", setting.key()), error.to_string())
                }
                (None, None) => self.error(&table.span(), "limits", error.to_string()),
            }
        })
    }

    /// Reads the settings of one table of `[limits]` (`path` is its dotted key inside
    /// `[limits]`, empty for `[limits]` itself) into `found`.
    fn limit_table(
        &self,
        table: &Spanned<DeValue<'_>>,
        path: &str,
        document: &DeTable<'_>,
        found: &mut Vec<(Setting, Value, Range<usize>)>,
    ) -> Result<(), ConfigError> {
        let full_key = |path: &str| {
            if path.is_empty() {
                "limits".to_owned()
            } else {
                format!("limits.{path}")
            }
        };
        let DeValue::Table(entries) = table.get_ref() else {
            return Err(self.error(
                &table.span(),
                full_key(path),
                format!(
                    "invalid type: {}, expected a table",
                    table.get_ref().type_str()
                ),
            ));
        };
        for (key, value) in entries {
            let key_path = if path.is_empty() {
                key.get_ref().to_string()
            } else {
                format!("{path}.{}", key.get_ref())
            };
            if let Some(setting) = Setting::all().find(|s| s.key() == key_path) {
                let span = value.span();
                found.push((setting, self.limit_value(setting, value, document)?, span));
            } else if Setting::all().any(|s| s.key().starts_with(&format!("{key_path}."))) {
                self.limit_table(value, &key_path, document, found)?;
            } else {
                return Err(self.error(
                    &key.span(),
                    full_key(&key_path),
                    format!("unknown field `{}`, {}", key.get_ref(), expected_keys(path)),
                ));
            }
        }
        Ok(())
    }

    /// The value of `setting`, read as its kind.
    fn limit_value(
        &self,
        setting: Setting,
        value: &Spanned<DeValue<'_>>,
        document: &DeTable<'_>,
    ) -> Result<Value, ConfigError> {
        let key = format!("limits.{}", setting.key());
        let span = value.span();
        let error = |problem: String| self.error(&span, &key, problem);
        Ok(match setting.kind() {
            Kind::Rate => match self.typed::<Scalar>(value, document)? {
                Scalar::Int(n) => {
                    Value::Rate(u64::try_from(n).map(Rate::PerSecond).map_err(|_| {
                        error(format!(
                            "{n} is negative; a rate is a count per second or \"unlimited\""
                        ))
                    })?)
                }
                Scalar::Text(text) => Value::Rate(
                    parse_rate(&text)
                        .map_err(|e| error(format!("invalid rate \"{text}\": {e}")))?,
                ),
            },
            Kind::Burst => match self.typed::<Scalar>(value, document)? {
                Scalar::Int(n) => {
                    Value::Burst(u64::try_from(n).map(Burst::Exactly).map_err(|_| {
                        error(format!("{n} is negative; a burst is a count or \"auto\""))
                    })?)
                }
                Scalar::Text(text) => Value::Burst(
                    parse_burst(&text)
                        .map_err(|e| error(format!("invalid burst \"{text}\": {e}")))?,
                ),
            },
            Kind::Duration => match self.typed::<Scalar>(value, document)? {
                // A bare number could mean seconds or milliseconds; make the operator say.
                Scalar::Int(n) => {
                    return Err(error(format!(
                        "{n} has no unit; write a duration such as \"{n}s\" or \"10m\""
                    )));
                }
                Scalar::Text(text) => Value::Duration(
                    parse_duration_ms(&text)
                        .map_err(|e| error(format!("invalid duration \"{text}\": {e}")))?,
                ),
            },
            Kind::Mode => {
                let text = self.typed::<Spanned<String>>(value, document)?;
                Value::Mode(self.choice::<FilterMode>(&text, &key, "a mode")?)
            }
            Kind::Count => Value::Count(self.typed::<u32>(value, document)?),
            Kind::Classes => {
                // The file states the whole set: a class not listed is not in it.
                let names = self.typed::<Vec<Spanned<String>>>(value, document)?;
                let mut set = [false; filter_common::CLASSES];
                for (index, name) in names.iter().enumerate() {
                    let key = format!("{key}[{index}]");
                    let class = self.choice::<ClassName>(name, &key, "a class")?;
                    if std::mem::replace(&mut set[class.index()], true) {
                        return Err(self.error(
                            &name.span(),
                            key,
                            format!("class {class} is listed twice"),
                        ));
                    }
                }
                Value::Classes(set)
            }
        })
    }

    /// `value` deserialized as a `T`, with serde's words for a value of the wrong type.
    fn typed<T: de::DeserializeOwned>(
        &self,
        value: &Spanned<DeValue<'_>>,
        document: &DeTable<'_>,
    ) -> Result<T, ConfigError> {
        T::deserialize(toml::de::ValueDeserializer::from(value.clone()))
            .map_err(|e| self.schema_error(&e, document))
    }
}

/// serde's words for the keys one table of `[limits]` (at `path`) takes.
fn expected_keys(path: &str) -> String {
    let prefix = if path.is_empty() {
        String::new()
    } else {
        format!("{path}.")
    };
    let mut names: Vec<String> = Vec::new();
    for setting in Setting::all() {
        if let Some(rest) = setting.key().strip_prefix(&prefix) {
            let name = rest.split('.').next().unwrap_or(rest).to_owned();
            if !names.contains(&name) {
                names.push(name);
            }
        }
    }
    let quoted: Vec<String> = names.iter().map(|n| format!("`{n}`")).collect();
    match quoted.as_slice() {
        [one] => format!("expected {one}"),
        [a, b] => format!("expected {a} or {b}"),
        _ => format!("expected one of {}", quoted.join(", ")),
    }
}
