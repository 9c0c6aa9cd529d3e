//! A run's budget: the limits it may spend up to (tokens, time) and the one pure check of what
//! was spent against them.
//!
//! It decides only whether a limit is reached. What follows (no new subtask starts, the run
//! waits for the person or the front end to raise the budget or ask for the report) is the run
//! state machine's; this module reads no clock and keeps no state. A further limit (a cost
//! from a price table) joins as one more field of `Budget` and `Spent` and one more arm of
//! `exceeded`.

use std::time::Duration;

use crate::protocol::BudgetReason;

/// The limits of one run; `None` is no limit. The default has none.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Budget {
    /// Tokens in and out of every call of the run (planner, workers, synthesis).
    pub max_tokens: Option<u64>,
    /// Time since the run started, on the engine's clock.
    pub deadline: Option<Duration>,
}

/// What a run has spent so far.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Spent {
    pub tokens: u64,
    pub elapsed: Duration,
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
        None
    }

    /// The budget with its limits raised by these amounts. A limit that was not set stays
    /// unset: raising "no limit" keeps no limit.
    pub fn raised(&self, tokens: Option<u64>, time: Option<Duration>) -> Budget {
        Budget {
            max_tokens: self
                .max_tokens
                .map(|max| max.saturating_add(tokens.unwrap_or(0))),
            deadline: self
                .deadline
                .map(|deadline| deadline.saturating_add(time.unwrap_or_default())),
        }
    }

    pub fn is_unlimited(&self) -> bool {
        self.max_tokens.is_none() && self.deadline.is_none()
    }

    /// The deadline in milliseconds, as events carry it.
    pub fn deadline_ms(&self) -> Option<u64> {
        self.deadline.map(millis)
    }
}

fn millis(d: Duration) -> u64 {
    d.as_millis().min(u64::MAX as u128) as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spent(tokens: u64, secs: u64) -> Spent {
        Spent {
            tokens,
            elapsed: Duration::from_secs(secs),
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
        };
        let raised = budget.raised(Some(50), Some(Duration::from_secs(60)));
        assert_eq!(raised.max_tokens, Some(150));
        assert_eq!(raised.deadline, None);
        assert_eq!(
            budget.raised(Some(u64::MAX), None).max_tokens,
            Some(u64::MAX)
        );
    }
}
