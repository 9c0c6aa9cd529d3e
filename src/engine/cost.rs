//! What calls cost: the price table (the shipped `assets/prices.toml` under the user's
//! `[prices."model"]`), finding a model's price by name, the dollars of a `Usage`, and how an
//! estimate reads (`≈$0.012`).
//!
//! Pure: no I/O, no clock. Every front end, the reports, the history and the statistics price
//! calls through here, so a figure is the same wherever it is shown. It must never make a
//! price up: a model without one has no cost, only tokens.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::protocol::Usage;

/// The table shipped in the binary.
const SHIPPED: &str = include_str!("../../assets/prices.toml");

/// One model's prices, US dollars per million tokens.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Price {
    pub input: f64,
    pub output: f64,
    /// Input tokens read from the provider's prompt cache; the input price when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cached_input: Option<f64>,
}

impl Price {
    /// Dollars for `usage`. Cached input tokens are part of `tokens_in` and priced apart.
    pub fn cost(&self, usage: &Usage) -> f64 {
        let cached = usage.cached_in.min(usage.tokens_in);
        let fresh = usage.tokens_in - cached;
        (fresh as f64 * self.input
            + cached as f64 * self.cached_input.unwrap_or(self.input)
            + usage.tokens_out as f64 * self.output)
            / 1_000_000.0
    }

    /// Why this price cannot be used, if it cannot (negative, not a number).
    pub fn problem(&self) -> Option<String> {
        let bad = |v: f64| !v.is_finite() || v < 0.0;
        if bad(self.input) || bad(self.output) || self.cached_input.is_some_and(bad) {
            Some("prices must be numbers of dollars per million tokens, 0 or more".to_owned())
        } else {
            None
        }
    }
}

/// Prices by model name. Lookup is by [`PriceTable::lookup`]'s rule.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PriceTable {
    prices: BTreeMap<String, Price>,
    /// When the shipped prices were copied (`date` at the top of the file).
    date: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PriceFile {
    date: Option<String>,
    #[serde(default)]
    prices: BTreeMap<String, Price>,
}

impl PriceTable {
    /// A table with no prices: every model is unknown.
    pub fn empty() -> Self {
        Self::default()
    }

    /// The table shipped in the binary (`assets/prices.toml`).
    pub fn shipped() -> Self {
        match Self::parse(SHIPPED) {
            Ok(table) => table,
            Err(e) => {
                // Checked by a test; if it ever slips, costs are unknown rather than wrong.
                tracing::warn!(error = %e, "the shipped price table cannot be read");
                Self::empty()
            }
        }
    }

    /// A price file: `date = "…"` and `[prices."model"]` tables.
    pub fn parse(text: &str) -> Result<Self, String> {
        let file: PriceFile = toml::from_str(text).map_err(|e| e.to_string())?;
        for (model, price) in &file.prices {
            if let Some(problem) = price.problem() {
                return Err(format!("prices.\"{model}\": {problem}"));
            }
        }
        Ok(Self {
            prices: file.prices,
            date: file.date,
        })
    }

    /// This table with `prices` added, replacing entries of the same name.
    pub fn with(mut self, prices: impl IntoIterator<Item = (String, Price)>) -> Self {
        self.prices.extend(prices);
        self
    }

    /// When the shipped prices were copied, if known.
    pub fn date(&self) -> Option<&str> {
        self.date.as_deref()
    }

    pub fn is_empty(&self) -> bool {
        self.prices.is_empty()
    }

    /// The price of `model`. Tried in order, the first name the table has wins:
    /// 1. the name as given (`gpt-4o-2024-08-06`, `openai/gpt-4o-mini`);
    /// 2. without a provider prefix, the part after the last `/` (`gpt-4o-mini`);
    /// 3. without a date or `-latest` at the end (`claude-3-5-sonnet-20241022`,
    ///    `gpt-4o-2024-08-06`, `claude-3-5-haiku-latest` → `claude-3-5-sonnet`, `gpt-4o`,
    ///    `claude-3-5-haiku`), with and then without the prefix.
    ///
    /// Each is tried as written, then in lower case. Nothing else is guessed: `llama3:8b` or
    /// `gpt-4o-mini-search` is unknown unless the table names it.
    pub fn lookup(&self, model: &str) -> Option<&Price> {
        let model = model.trim();
        if model.is_empty() {
            return None;
        }
        let bare = model.rsplit('/').next().unwrap_or(model);
        let candidates = [model, bare, without_date(model), without_date(bare)];
        for lower in [false, true] {
            for name in candidates {
                let found = if lower {
                    self.prices.get(&name.to_lowercase())
                } else {
                    self.prices.get(name)
                };
                if found.is_some() {
                    return found;
                }
            }
        }
        None
    }

    /// Dollars spent by `usage` on `model`; `None` when the table has no price for it.
    pub fn cost(&self, model: &str, usage: &Usage) -> Option<f64> {
        self.lookup(model).map(|p| p.cost(usage))
    }
}

/// `name` without a trailing date (`-20241022`, `-2024-08-06`) or `-latest`.
fn without_date(name: &str) -> &str {
    if let Some(stem) = name.strip_suffix("-latest") {
        return stem;
    }
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    if let Some((stem, tail)) = name.rsplit_once('-')
        && tail.len() == 8
        && digits(tail)
    {
        return stem;
    }
    // YYYY-MM-DD: three dash-separated groups of 4, 2 and 2 digits at the end.
    let parts: Vec<&str> = name.rsplitn(4, '-').collect();
    if let [day, month, year, stem] = parts[..]
        && day.len() == 2
        && month.len() == 2
        && year.len() == 4
        && digits(day)
        && digits(month)
        && digits(year)
    {
        return stem;
    }
    name
}

/// What several calls cost, as far as their models have prices.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct Spend {
    /// Dollars of the calls whose model has a price.
    pub usd: f64,
    /// Calls whose model has a price.
    pub priced_calls: u32,
    /// Tokens of calls whose model has no price (not in `usd`).
    pub unpriced_tokens: u64,
}

impl Spend {
    /// Count one call of `model` that used `usage`.
    pub fn add(&mut self, table: &PriceTable, model: &str, usage: &Usage) {
        match table.cost(model, usage) {
            Some(usd) => {
                self.usd += usd;
                self.priced_calls += 1;
            }
            None => self.unpriced_tokens += usage.total(),
        }
    }

    pub fn merge(&mut self, other: Spend) {
        self.usd += other.usd;
        self.priced_calls += other.priced_calls;
        self.unpriced_tokens += other.unpriced_tokens;
    }

    /// Dollars, when at least one call had a price.
    pub fn usd(&self) -> Option<f64> {
        (self.priced_calls > 0).then_some(self.usd)
    }

    /// Some tokens are not in `usd` because their model has no price.
    pub fn partial(&self) -> bool {
        self.priced_calls > 0 && self.unpriced_tokens > 0
    }

    /// `≈$0.012`, `≈$0.012+` when some calls had no price, `None` when none had one.
    pub fn label(&self) -> Option<String> {
        let usd = self.usd()?;
        let plus = if self.partial() { "+" } else { "" };
        Some(format!("{}{plus}", show_usd(usd)))
    }
}

/// An estimate of dollars, with precision that fits its size: `≈$1.23`, `≈$0.12`, `≈$0.012`,
/// `≈$0.0004`, `<$0.0001`, `$0` (a free model, or nothing spent).
pub fn show_usd(usd: f64) -> String {
    if !usd.is_finite() || usd <= 0.0 {
        return "$0".to_owned();
    }
    if usd < 0.000_05 {
        return "<$0.0001".to_owned();
    }
    if usd >= 1000.0 {
        return format!("≈${usd:.0}");
    }
    if usd >= 1.0 {
        return format!("≈${usd:.2}");
    }
    // Two significant digits, at most four decimals.
    let magnitude = usd.log10().floor() as i32;
    let decimals = (1 - magnitude).clamp(2, 4) as usize;
    format!("≈${usd:.decimals$}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn usage(tokens_in: u64, tokens_out: u64) -> Usage {
        Usage {
            tokens_in,
            tokens_out,
            ..Usage::default()
        }
    }

    #[test]
    fn the_shipped_table_reads_and_has_a_date() {
        let table = PriceTable::parse(SHIPPED).expect("assets/prices.toml reads");
        assert!(table.date().is_some());
        assert!(table.lookup("gpt-4o-mini").is_some());
        assert!(table.lookup("claude-3-5-sonnet").is_some());
        assert_eq!(PriceTable::shipped(), table);
    }

    #[test]
    fn cost_prices_input_cached_input_and_output_apart() {
        let price = Price {
            input: 2.5,
            output: 10.0,
            cached_input: Some(1.25),
        };
        let u = Usage {
            tokens_in: 1_000_000,
            tokens_out: 100_000,
            cached_in: 400_000,
            estimated: false,
        };
        // 600k fresh × 2.5 + 400k cached × 1.25 + 100k out × 10, per million.
        assert!((price.cost(&u) - (1.5 + 0.5 + 1.0)).abs() < 1e-9);
        let no_cached_price = Price {
            cached_input: None,
            ..price
        };
        assert!((no_cached_price.cost(&u) - (2.5 + 1.0)).abs() < 1e-9);
    }

    #[test]
    fn lookup_tries_the_name_then_without_prefix_then_without_date() {
        let table = PriceTable::shipped();
        let mini = table.lookup("gpt-4o-mini").copied();
        assert!(mini.is_some());
        assert_eq!(table.lookup("openai/gpt-4o-mini").copied(), mini);
        assert_eq!(table.lookup("gpt-4o-mini-2024-07-18").copied(), mini);
        assert_eq!(table.lookup("GPT-4o-mini").copied(), mini);
        assert_eq!(
            table.lookup("claude-3-5-sonnet-20241022").copied(),
            table.lookup("claude-3-5-sonnet").copied()
        );
        assert_eq!(
            table.lookup("claude-3-5-haiku-latest").copied(),
            table.lookup("claude-3-5-haiku").copied()
        );
        // An exact entry wins over the stripped name.
        let own = Price {
            input: 9.0,
            output: 9.0,
            cached_input: None,
        };
        let table = table.with([("openai/gpt-4o".to_owned(), own)]);
        assert_eq!(table.lookup("openai/gpt-4o").copied(), Some(own));
        assert_ne!(table.lookup("gpt-4o").copied(), Some(own));
    }

    #[test]
    fn unknown_models_have_no_price() {
        let table = PriceTable::shipped();
        for model in [
            "llama3:8b",
            "demo",
            "",
            "gpt-4o-mini-search",
            "qwen2.5-7b-instruct",
        ] {
            assert_eq!(table.cost(model, &usage(1000, 1000)), None, "{model}");
        }
    }

    #[test]
    fn configured_prices_replace_shipped_ones() {
        let zero = Price {
            input: 0.0,
            output: 0.0,
            cached_input: None,
        };
        let table = PriceTable::shipped()
            .with([("gpt-4o".to_owned(), zero), ("llama3:8b".to_owned(), zero)]);
        assert_eq!(table.cost("gpt-4o", &usage(1000, 1000)), Some(0.0));
        assert_eq!(table.cost("llama3:8b", &usage(1000, 1000)), Some(0.0));
    }

    #[test]
    fn bad_prices_are_refused() {
        let err = PriceTable::parse("[prices.\"x\"]\ninput = -1.0\noutput = 1.0\n")
            .expect_err("a negative price");
        assert!(err.contains("prices.\"x\""), "{err}");
        assert!(PriceTable::parse("[prices.\"x\"]\ninput = 1.0\n").is_err());
    }

    #[test]
    fn dollars_read_with_fitting_precision() {
        assert_eq!(show_usd(1.234), "≈$1.23");
        assert_eq!(show_usd(0.1234), "≈$0.12");
        assert_eq!(show_usd(0.01234), "≈$0.012");
        assert_eq!(show_usd(0.000_42), "≈$0.0004");
        assert_eq!(show_usd(0.004_2), "≈$0.0042");
        assert_eq!(show_usd(0.000_01), "<$0.0001");
        assert_eq!(show_usd(0.0), "$0");
        assert_eq!(show_usd(1234.6), "≈$1235");
    }

    #[test]
    fn spend_shows_a_partial_sum_with_a_plus_and_nothing_when_nothing_is_priced() {
        let table = PriceTable::shipped();
        let mut spend = Spend::default();
        spend.add(&table, "demo", &usage(500, 500));
        assert_eq!(spend.label(), None);
        spend.add(&table, "gpt-4o", &usage(1000, 950));
        assert_eq!(spend.label().as_deref(), Some("≈$0.012+"));
        assert!(spend.partial());
    }
}
