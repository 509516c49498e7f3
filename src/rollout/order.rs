//! `--order`: which tenants a rollout reaches first. Waves take the tenants in this order.

use std::cmp::Ordering;
use std::fmt;

use super::RolloutError;
use crate::billing::subscription::SubscriptionStatus;
use crate::plans::Catalogue;

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Order {
    /// By customer id: a stable order with no bias.
    #[default]
    ById,
    /// Tenants on a trial first (the least to lose), then the paying ones.
    TrialsFirst,
    /// The smallest plans first (by their pod quota), each plan's tenants together.
    ByPlan,
    /// Grouped by the value of a label of the tenant's Namespace (e.g. `iotistic.io/plan`),
    /// in value order; tenants without it last.
    ByLabel(String),
}

impl Order {
    /// `--order trials-first|by-plan|by-label KEY` (also `by-label=KEY`), as the words came.
    pub fn parse(words: &[String]) -> Result<Order, RolloutError> {
        let bad = |why: &str| RolloutError::BadOrder(why.to_string());
        let (kind, key) = match words {
            [] => return Ok(Order::ById),
            [one] => match one.split_once('=') {
                Some((kind, key)) => (kind, Some(key)),
                None => (one.as_str(), None),
            },
            [kind, key] => (kind.as_str(), Some(key.as_str())),
            _ => return Err(bad("at most an order and a label key")),
        };
        match (kind, key) {
            ("by-id", None) => Ok(Order::ById),
            ("trials-first", None) => Ok(Order::TrialsFirst),
            ("by-plan", None) => Ok(Order::ByPlan),
            ("by-label", Some(key)) if !key.trim().is_empty() => {
                Ok(Order::ByLabel(key.trim().to_string()))
            }
            ("by-label", _) => Err(bad(
                "by-label needs a label key, e.g. by-label iotistic.io/plan",
            )),
            (_, Some(_)) => Err(bad("only by-label takes a key")),
            (other, None) => Err(RolloutError::BadOrder(format!(
                "{other:?} is not one of trials-first, by-plan, by-label KEY, by-id"
            ))),
        }
    }

    /// The label whose values this order needs, if any.
    pub fn label(&self) -> Option<&str> {
        match self {
            Order::ByLabel(key) => Some(key),
            _ => None,
        }
    }

    /// Compares two tenants (by id last, so the order is total).
    pub(crate) fn compare(&self, plans: &Catalogue, a: &Ranked, b: &Ranked) -> Ordering {
        let first = match self {
            Order::ById => Ordering::Equal,
            Order::TrialsFirst => (!a.trial()).cmp(&!b.trial()),
            Order::ByPlan => {
                let size = |r: &Ranked| {
                    plans
                        .get(&r.plan)
                        .map_or(i64::MAX, |p| p.resources.quota_pods)
                };
                size(a).cmp(&size(b)).then_with(|| a.plan.cmp(&b.plan))
            }
            Order::ByLabel(_) => match (&a.label, &b.label) {
                (Some(x), Some(y)) => x.cmp(y),
                (Some(_), None) => Ordering::Less,
                (None, Some(_)) => Ordering::Greater,
                (None, None) => Ordering::Equal,
            },
        };
        first.then_with(|| a.customer_id.cmp(&b.customer_id))
    }
}

impl fmt::Display for Order {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Order::ById => f.write_str("by-id"),
            Order::TrialsFirst => f.write_str("trials-first"),
            Order::ByPlan => f.write_str("by-plan"),
            Order::ByLabel(key) => write!(f, "by-label={key}"),
        }
    }
}

/// What ordering looks at in a tenant.
#[derive(Debug, Clone)]
pub(crate) struct Ranked {
    pub customer_id: String,
    pub plan: String,
    pub subscription_status: String,
    pub label: Option<String>,
}

impl Ranked {
    fn trial(&self) -> bool {
        self.subscription_status.parse::<SubscriptionStatus>() == Ok(SubscriptionStatus::Trialing)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(text: &str) -> Vec<String> {
        text.split_whitespace().map(str::to_string).collect()
    }

    #[test]
    fn orders_parse_from_the_words_given() {
        assert_eq!(Order::parse(&[]).unwrap(), Order::ById);
        assert_eq!(
            Order::parse(&words("trials-first")).unwrap(),
            Order::TrialsFirst
        );
        assert_eq!(
            Order::parse(&words("by-label iotistic.io/plan")).unwrap(),
            Order::ByLabel("iotistic.io/plan".into())
        );
        assert_eq!(
            Order::parse(&words("by-label=tier")).unwrap().to_string(),
            "by-label=tier"
        );
        for bad in ["by-label", "newest-first", "by-plan x", "a b c"] {
            assert!(Order::parse(&words(bad)).is_err(), "{bad}");
        }
    }

    #[test]
    fn trials_come_first_then_by_id() {
        let plans = Catalogue::builtin().unwrap();
        let t = |id: &str, status: &str| Ranked {
            customer_id: id.into(),
            plan: "starter".into(),
            subscription_status: status.into(),
            label: None,
        };
        let mut all = [t("a", "active"), t("c", "trialing"), t("b", "trialing")];
        all.sort_by(|a, b| Order::TrialsFirst.compare(&plans, a, b));
        let ids: Vec<&str> = all.iter().map(|r| r.customer_id.as_str()).collect();
        assert_eq!(ids, ["b", "c", "a"]);
    }
}
