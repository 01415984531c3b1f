//! Rule files for `floodwall rules load`: a rule a line, `#` starts a comment (kept as the
//! rule's note), blank lines skipped. Checked whole before anything is sent: an error names
//! the file, the line and the problem.

use std::path::Path;

use anyhow::{Context as _, bail};

use super::RuleSpec;
use crate::control::RuleRequest;

/// The rules of `path`, each at `priority`.
///
/// # Errors
/// If the file cannot be read, has no rule, or a line is not a rule.
pub fn parse_rule_file(path: &Path, priority: u16) -> anyhow::Result<Vec<RuleRequest>> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read the rule file {}", path.display()))?;
    parse_rules(&text, priority).map_err(|e| anyhow::anyhow!("{}:{e}", path.display()))
}

/// The rules of a rule file's text; an error starts with its line number.
fn parse_rules(text: &str, priority: u16) -> anyhow::Result<Vec<RuleRequest>> {
    let mut rules = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let (rule, comment) = match line.split_once('#') {
            Some((rule, comment)) => (rule.trim(), Some(comment.trim())),
            None => (line.trim(), None),
        };
        if rule.is_empty() {
            continue;
        }
        if let Err(e) = rule.parse::<RuleSpec>() {
            bail!("{}: {e}", i + 1);
        }
        rules.push(RuleRequest {
            rule: rule.to_owned(),
            priority: Some(priority),
            comment: comment.filter(|c| !c.is_empty()).map(str::to_owned),
            for_ms: None,
        });
    }
    if rules.is_empty() {
        bail!(" the file has no rule (a rule a line, `#` comments)");
    }
    Ok(rules)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_keeps_comments_as_notes_and_names_the_bad_line() {
        let rules = parse_rules(
            "# reflection\nudp sport 123 drop # NTP\n\nudp sport 53 len 512-65535 drop\n",
            7,
        )
        .expect("parses");
        assert_eq!(rules.len(), 2);
        assert_eq!(rules[0].comment.as_deref(), Some("NTP"));
        assert_eq!(rules[1].priority, Some(7));
        let e = parse_rules("udp sport 123 drop\nudp sport 99999 drop\n", 1).expect_err("bad");
        assert!(e.to_string().starts_with("2: `sport`: 99999"), "{e}");
        assert!(parse_rules("# nothing\n", 1).is_err());
    }
}
