//! A run's budget: the limits it may spend up to (tokens, time) and the one pure check of what
//! was spent against them.
//!
//! It decides only whether a limit is reached. What follows (no new subtask starts, the run
//! waits for the person or the front end to raise the budget or ask for the report) is the run
//! state machine's; this module reads no clock and keeps no state. A cost limit is checked on
//! what the run's calls cost by `prices`, an estimate like every figure of money maestro shows.

use std::sync::Arc;
use std::time::Duration;

use crate::engine::cost::PriceTable;
use crate::protocol::BudgetReason;

/// The limits of one run; `None` is no limit. The default has none.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Budget {
    /// Tokens in and out of every call of the run (planner, workers, synthesis).
    pub max_tokens: Option<u64>,
    /// Time since the run started, on the engine's clock.
    pub deadline: Option<Duration>,
    /// US dollars every call of the run may cost, priced by `prices` (`--max-cost`). The
    /// configuration refuses it unless every model the run uses has a price.
    pub max_cost: Option<f64>,
    /// The prices `max_cost` is checked with.
    pub prices: Arc<PriceTable>,
}

/// What a run has spent so far.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Spent {
    pub tokens: u64,
    pub elapsed: Duration,
    /// US dollars, by `Budget::prices`.
    pub cost: f64,
}

impl Budget {
    /// The first limit that `spent` has reached, if any. A limit is reached when the spending
    /// is at it, not only past it: a run at exactly its token budget starts nothing more.
    pub fn exceeded(&self, spent: &Spent) -> Option<BudgetReason> {
        if let Some(max) = self.max_tokens
            && spent.tokens >= max
        {
            return Some(BudgetReason::Tokens {
                spent: spent.tokens,
                max,
            });
        }
        if let Some(deadline) = self.deadline
            && spent.elapsed >= deadline
        {
            return Some(BudgetReason::Deadline {
                elapsed_ms: millis(spent.elapsed),
                deadline_ms: millis(deadline),
            });
        }
        if let Some(max) = self.max_cost
            && spent.cost >= max
        {
            return Some(BudgetReason::Cost {
                spent_micros: micros(spent.cost),
                max_micros: micros(max),
            });
        }
        None
    }

    /// The budget with its limits raised by these amounts. A limit that was not set stays
    /// unset: raising "no limit" keeps no limit.
    pub fn raised(&self, tokens: Option<u64>, time: Option<Duration>, cost: Option<f64>) -> Budget {
        Budget {
            max_tokens: self
                .max_tokens
                .map(|max| max.saturating_add(tokens.unwrap_or(0))),
            deadline: self
                .deadline
                .map(|deadline| deadline.saturating_add(time.unwrap_or_default())),
            max_cost: self
                .max_cost
                .map(|max| max + cost.filter(|c| c.is_finite() && *c > 0.0).unwrap_or(0.0)),
            prices: self.prices.clone(),
        }
    }

    pub fn is_unlimited(&self) -> bool {
        self.max_tokens.is_none() && self.deadline.is_none() && self.max_cost.is_none()
    }

    /// The cost limit in millionths of a dollar, as events carry it.
    pub fn max_cost_micros(&self) -> Option<u64> {
        self.max_cost.map(micros)
    }

    /// The deadline in milliseconds, as events carry it.
    pub fn deadline_ms(&self) -> Option<u64> {
        self.deadline.map(millis)
    }
}

fn millis(d: Duration) -> u64 {
    d.as_millis().min(u64::MAX as u128) as u64
}

/// Dollars as millionths of a dollar, the unit events carry (so they stay exact and `Eq`).
pub fn micros(usd: f64) -> u64 {
    (usd.max(0.0) * 1e6).round().min(u64::MAX as f64) as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spent(tokens: u64, secs: u64) -> Spent {
        Spent {
            tokens,
            elapsed: Duration::from_secs(secs),
            cost: 0.0,
        }
    }

    #[test]
    fn no_limit_is_never_reached() {
        assert_eq!(Budget::default().exceeded(&spent(u64::MAX, 1 << 40)), None);
    }

    #[test]
    fn tokens_are_reached_at_the_limit_and_come_first() {
        let budget = Budget {
            max_tokens: Some(100),
            deadline: Some(Duration::from_secs(10)),
            ..Budget::default()
        };
        assert_eq!(budget.exceeded(&spent(99, 0)), None);
        assert_eq!(
            budget.exceeded(&spent(100, 20)),
            Some(BudgetReason::Tokens {
                spent: 100,
                max: 100
            })
        );
        assert_eq!(
            budget.exceeded(&spent(5, 10)),
            Some(BudgetReason::Deadline {
                elapsed_ms: 10_000,
                deadline_ms: 10_000
            })
        );
    }

    #[test]
    fn raising_adds_to_set_limits_only() {
        let budget = Budget {
            max_tokens: Some(100),
            deadline: None,
            ..Budget::default()
        };
        let raised = budget.raised(Some(50), Some(Duration::from_secs(60)), Some(1.0));
        assert_eq!(raised.max_tokens, Some(150));
        assert_eq!(raised.deadline, None);
        assert_eq!(raised.max_cost, None);
        assert_eq!(
            budget.raised(Some(u64::MAX), None, None).max_tokens,
            Some(u64::MAX)
        );
    }

    #[test]
    fn a_cost_limit_is_reached_at_its_dollars_and_raised_by_dollars() {
        let budget = Budget {
            max_cost: Some(0.05),
            ..Budget::default()
        };
        let at = |cost: f64| Spent {
            cost,
            ..spent(0, 0)
        };
        assert_eq!(budget.exceeded(&at(0.049)), None);
        assert_eq!(
            budget.exceeded(&at(0.05)),
            Some(BudgetReason::Cost {
                spent_micros: 50_000,
                max_micros: 50_000
            })
        );
        let raised = budget.raised(None, None, Some(0.25));
        assert!(raised.max_cost.is_some_and(|m| (m - 0.30).abs() < 1e-12));
        assert_eq!(raised.exceeded(&at(0.05)), None);
        assert_eq!(
            budget.raised(None, None, Some(f64::NAN)).max_cost,
            Some(0.05)
        );
        assert!(!budget.is_unlimited());
    }
}
