//! The rules of one daemon, changed all or nothing: each change makes a new set from the
//! old one, which the caller compiles and writes before it keeps it.

use filter_common::MAX_RULES;

use super::{MAX_COMMENT_BYTES, Origin, Rule, RuleError, RuleSpec};

/// A rule to add.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewRule {
    /// What it matches and does.
    pub spec: RuleSpec,
    /// Its priority.
    pub priority: u16,
    /// The operator's note.
    pub comment: Option<String>,
    /// It expires after this many milliseconds.
    pub for_ms: Option<u64>,
    /// Where it comes from.
    pub origin: Origin,
}

/// The rules of one daemon.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RuleSet {
    rules: Vec<Rule>,
    next_id: u32,
}

impl Default for RuleSet {
    /// No rules; ids start at 1.
    fn default() -> Self {
        Self {
            rules: Vec::new(),
            next_id: 1,
        }
    }
}

impl RuleSet {
    /// A set of `rules` (adopted from a daemon before); new ids continue after theirs.
    #[must_use]
    pub fn from_rules(mut rules: Vec<Rule>) -> Self {
        rules.sort_by_key(|r| r.id);
        let next_id = rules.last().map_or(1, |r| r.id + 1);
        Self { rules, next_id }
    }

    /// The rules, by id.
    #[must_use]
    pub fn rules(&self) -> &[Rule] {
        &self.rules
    }

    /// The rule with `id`.
    #[must_use]
    pub fn get(&self, id: u32) -> Option<&Rule> {
        self.rules.iter().find(|r| r.id == id)
    }

    /// This set with `new` added, and the new rules' ids.
    ///
    /// # Errors
    /// A bad comment, a zero duration, a rule that is already there, or more rules than
    /// the kernel holds; nothing is added then.
    pub fn with_added(&self, new: &[NewRule], now_ns: u64) -> Result<(Self, Vec<u32>), RuleError> {
        if new.is_empty() {
            return Err(RuleError::Empty);
        }
        let mut next = self.clone();
        let mut ids = Vec::new();
        for rule in new {
            if let Some(comment) = &rule.comment
                && (comment.len() > MAX_COMMENT_BYTES || comment.chars().any(char::is_control))
            {
                return Err(RuleError::BadComment(comment.len()));
            }
            if let Some(same) = next
                .rules
                .iter()
                .find(|r| r.spec == rule.spec && r.priority == rule.priority)
            {
                return Err(RuleError::Capacity(format!(
                    "`{}` at priority {} is already rule {}",
                    rule.spec, rule.priority, same.id
                )));
            }
            let expires_ns = match rule.for_ms {
                None => None,
                Some(0) => return Err(RuleError::ZeroDuration),
                Some(ms) => Some(now_ns.saturating_add(ms.saturating_mul(1_000_000))),
            };
            let slot = next.free_slot().ok_or_else(|| {
                RuleError::Capacity(format!(
                    "a daemon holds at most {MAX_RULES} rules: remove some first"
                ))
            })?;
            let id = next.next_id;
            next.next_id += 1;
            next.rules.push(Rule {
                id,
                priority: rule.priority,
                spec: rule.spec.clone(),
                comment: rule.comment.clone(),
                expires_ns,
                origin: rule.origin,
                slot,
            });
            ids.push(id);
        }
        Ok((next, ids))
    }

    /// This set without the rules `ids`.
    ///
    /// # Errors
    /// An id that is not there, or named twice; nothing is removed then.
    pub fn with_removed(&self, ids: &[u32]) -> Result<Self, RuleError> {
        if ids.is_empty() {
            return Err(RuleError::Empty);
        }
        for (i, id) in ids.iter().enumerate() {
            if ids[..i].contains(id) {
                return Err(RuleError::DuplicateId(*id));
            }
            if self.get(*id).is_none() {
                return Err(RuleError::UnknownId(*id));
            }
        }
        let mut next = self.clone();
        next.rules.retain(|r| !ids.contains(&r.id));
        Ok(next)
    }

    /// This set with the signatures `ids` made the operator's own rules (`rules keep`):
    /// lasting, or expiring `for_ms` after `now_ns`.
    ///
    /// # Errors
    /// An id that is not there, named twice, or not a signature's; a zero duration;
    /// nothing is kept then.
    pub fn with_kept(
        &self,
        ids: &[u32],
        for_ms: Option<u64>,
        now_ns: u64,
    ) -> Result<Self, RuleError> {
        if ids.is_empty() {
            return Err(RuleError::Empty);
        }
        let expires_ns = match for_ms {
            None => None,
            Some(0) => return Err(RuleError::ZeroDuration),
            Some(ms) => Some(now_ns.saturating_add(ms.saturating_mul(1_000_000))),
        };
        let mut next = self.clone();
        for (i, id) in ids.iter().enumerate() {
            if ids[..i].contains(id) {
                return Err(RuleError::DuplicateId(*id));
            }
            let rule = next
                .rules
                .iter_mut()
                .find(|r| r.id == *id)
                .ok_or(RuleError::UnknownId(*id))?;
            if rule.origin != Origin::Signature {
                return Err(RuleError::NotASignature(*id));
            }
            rule.origin = Origin::Cli;
            rule.expires_ns = expires_ns;
        }
        Ok(next)
    }

    /// This set with rule `id` expiring at `expires_ns` instead (a fleet peer's signature
    /// its node renewed).
    ///
    /// # Errors
    /// An id that is not there; nothing changes then.
    pub fn with_expiry(&self, id: u32, expires_ns: u64) -> Result<Self, RuleError> {
        let mut next = self.clone();
        next.rules
            .iter_mut()
            .find(|r| r.id == id)
            .ok_or(RuleError::UnknownId(id))?
            .expires_ns = Some(expires_ns);
        Ok(next)
    }

    /// The ids of the rules expired at `now_ns`.
    #[must_use]
    pub fn expired(&self, now_ns: u64) -> Vec<u32> {
        self.rules
            .iter()
            .filter(|r| r.expires_ns.is_some_and(|t| t <= now_ns))
            .map(|r| r.id)
            .collect()
    }

    /// The slots of the rules in `self` that `other` does not have: their state must be
    /// cleared before they serve another rule.
    #[must_use]
    pub fn slots_not_in(&self, other: &Self) -> Vec<u32> {
        self.rules
            .iter()
            .filter(|r| !other.rules.iter().any(|o| o.slot == r.slot && o.id == r.id))
            .map(|r| r.slot)
            .collect()
    }

    /// The lowest slot no rule uses.
    fn free_slot(&self) -> Option<u32> {
        let mut used: Vec<u32> = self.rules.iter().map(|r| r.slot).collect();
        used.sort_unstable();
        let mut candidate = 0;
        for slot in used {
            if slot == candidate {
                candidate += 1;
            } else if slot > candidate {
                break;
            }
        }
        (candidate < MAX_RULES).then_some(candidate)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn new(text: &str) -> NewRule {
        NewRule {
            spec: text.parse().expect("valid"),
            priority: 100,
            comment: None,
            for_ms: None,
            origin: Origin::Cli,
        }
    }

    #[test]
    fn a_rule_s_expiry_is_moved_in_place() {
        let (set, ids) = RuleSet::default()
            .with_added(
                &[NewRule {
                    for_ms: Some(1_000),
                    ..new("udp dport 7777 drop")
                }],
                0,
            )
            .expect("adds");
        assert_eq!(set.expired(1_000_000_000), ids, "ends after 1 s");
        let later = set.with_expiry(ids[0], 5_000_000_000).expect("moves");
        assert!(
            later.expired(1_000_000_000).is_empty(),
            "now ends after 5 s"
        );
        assert_eq!(later.expired(5_000_000_000), ids);
        let (rule, was) = (
            later.get(ids[0]).expect("there"),
            set.get(ids[0]).expect("there"),
        );
        assert_eq!(
            (rule.slot, &rule.spec),
            (was.slot, &was.spec),
            "the same rule"
        );
        assert!(matches!(
            set.with_expiry(9, 1),
            Err(RuleError::UnknownId(9))
        ));
    }

    #[test]
    fn ids_and_slots_are_given_and_removal_is_all_or_nothing() {
        let set = RuleSet::default();
        let (set, ids) = set
            .with_added(&[new("udp sport 123 drop"), new("udp sport 53 drop")], 0)
            .expect("adds");
        assert_eq!(ids, [1, 2]);
        assert_eq!(set.get(2).expect("rule 2").slot, 1);
        assert!(matches!(
            set.with_removed(&[1, 9]),
            Err(RuleError::UnknownId(9))
        ));
        let set = set.with_removed(&[1]).expect("removes");
        let (set, ids) = set
            .with_added(&[new("tcp dport 80 drop")], 0)
            .expect("adds");
        // Ids are never reused; the slot is.
        assert_eq!(ids, [3]);
        assert_eq!(set.get(3).expect("rule 3").slot, 0);
    }

    #[test]
    fn the_same_rule_twice_is_refused() {
        let (set, _) = RuleSet::default()
            .with_added(&[new("udp sport 123 drop")], 0)
            .expect("adds");
        assert!(set.with_added(&[new("udp sport 123 drop")], 0).is_err());
    }

    #[test]
    fn a_kept_signature_becomes_the_operators_and_only_signatures_are_kept() {
        let mut signature = new("udp dport 7777 len 92 drop");
        signature.origin = Origin::Signature;
        signature.for_ms = Some(600_000);
        let (set, ids) = RuleSet::default()
            .with_added(&[signature, new("udp sport 123 drop")], 0)
            .expect("adds");
        assert!(matches!(
            set.with_kept(&[ids[0], ids[1]], None, 0),
            Err(RuleError::NotASignature(2))
        ));
        assert!(matches!(
            set.with_kept(&[ids[0]], Some(0), 0),
            Err(RuleError::ZeroDuration)
        ));
        let kept = set.with_kept(&[ids[0]], None, 0).expect("keeps");
        let rule = kept.get(ids[0]).expect("rule 1");
        assert_eq!((rule.origin, rule.expires_ns), (Origin::Cli, None));
        let pinned = set.with_kept(&[ids[0]], Some(1000), 5).expect("keeps");
        assert_eq!(
            pinned.get(ids[0]).expect("rule 1").expires_ns,
            Some(1_000_000_005)
        );
    }

    #[test]
    fn rules_expire() {
        let mut rule = new("udp sport 123 drop");
        rule.for_ms = Some(1000);
        let (set, ids) = RuleSet::default().with_added(&[rule], 5).expect("adds");
        assert!(set.expired(1_000_000_004).is_empty());
        assert_eq!(set.expired(1_000_000_005), ids);
    }
}
