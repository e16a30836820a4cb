//! What a generation costs, in exact decimals, the way OpenRouter bills it: the uncached part of
//! the prompt at the prompt price, cache reads and cache writes at their own prices, and the
//! completion at the completion price. `prompt_tokens` is inclusive (cached and cache-write
//! tokens are parts of it), as OpenRouter reports it.

use rust_decimal::Decimal;

use crate::money::Usd;

/// Per-token prices of one model, all fixed (a variable price is resolved before billing).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Rates {
    pub prompt: Usd,
    pub completion: Usd,
    /// Price of a cached prompt token read; the prompt price when the model lists none.
    pub cache_read: Usd,
    /// Price of a prompt token written to the cache with the default (5 minute) lifetime.
    pub cache_write: Usd,
    /// Price of a cache write with a one-hour lifetime.
    pub cache_write_1h: Usd,
}

/// The token counts of one generation.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Tokens {
    /// All prompt tokens, cached and cache-write tokens included.
    pub prompt: u64,
    pub cached: u64,
    pub cache_write: u64,
    /// True when the cache write used the one-hour lifetime.
    pub cache_write_1h: bool,
    pub completion: u64,
}

impl Tokens {
    /// Prompt tokens neither read from nor written to the cache.
    pub fn uncached_prompt(&self) -> u64 {
        self.prompt.saturating_sub(self.cached).saturating_sub(self.cache_write)
    }
}

/// The two halves of a bill, as `usage.cost_details` reports them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Bill {
    pub prompt: Usd,
    pub completion: Usd,
}

impl Bill {
    pub fn total(&self) -> Usd {
        self.prompt + self.completion
    }
}

fn times(price: Usd, tokens: u64) -> Usd {
    price * Decimal::from(tokens)
}

/// The bill for `tokens` at `rates`.
pub(crate) fn bill(rates: &Rates, tokens: &Tokens) -> Bill {
    let write_price = if tokens.cache_write_1h { rates.cache_write_1h } else { rates.cache_write };
    let prompt = times(rates.prompt, tokens.uncached_prompt())
        + times(rates.cache_read, tokens.cached)
        + times(write_price, tokens.cache_write);
    Bill { prompt, completion: times(rates.completion, tokens.completion) }
}

/// What the same generation would have cost with no cache at all, minus what it cost: positive
/// when cache reads saved money, negative when cache writes cost extra (`cache_discount`).
pub(crate) fn cache_discount(rates: &Rates, tokens: &Tokens) -> Usd {
    let uncached = Tokens { cached: 0, cache_write: 0, ..*tokens };
    bill(rates, &uncached).total() - bill(rates, tokens).total()
}

/// The most a request can cost: the whole prompt at the prompt price plus `max_completion`
/// completion tokens. OpenRouter admits a request only when this much is available.
pub(crate) fn worst_case(rates: &Rates, prompt_tokens: u64, max_completion: u64) -> Usd {
    times(rates.prompt, prompt_tokens) + times(rates.completion, max_completion)
}

/// How many tokens `available` dollars buy at `price`, or `None` when the price is zero.
pub(crate) fn affordable_tokens(available: Usd, price: Usd) -> Option<u64> {
    available.tokens_at(price)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn usd(s: &str) -> Usd {
        s.parse().expect("a decimal")
    }

    fn sonnet() -> Rates {
        Rates {
            prompt: usd("0.000003"),
            completion: usd("0.000015"),
            cache_read: usd("0.0000003"),
            cache_write: usd("0.00000375"),
            cache_write_1h: usd("0.000006"),
        }
    }

    #[test]
    fn plain_cost_is_prompt_plus_completion() {
        let tokens = Tokens { prompt: 1000, completion: 200, ..Tokens::default() };
        let b = bill(&sonnet(), &tokens);
        assert_eq!(b.prompt, usd("0.003"));
        assert_eq!(b.completion, usd("0.003"));
        assert_eq!(b.total(), usd("0.006"));
    }

    #[test]
    fn cache_write_then_read_is_priced_per_part() {
        // The live example from the notes: 5031 prompt tokens of which 5004 are written, then read.
        let write =
            Tokens { prompt: 5031, cache_write: 5004, completion: 113, ..Tokens::default() };
        assert_eq!(write.uncached_prompt(), 27);
        assert_eq!(bill(&sonnet(), &write).total(), usd("0.020541"));

        let read = Tokens { prompt: 5031, cached: 5004, completion: 113, ..Tokens::default() };
        // 27 × 0.000003 + 5004 × 0.0000003 + 113 × 0.000015
        assert_eq!(bill(&sonnet(), &read).total(), usd("0.0032772"));
    }

    #[test]
    fn one_hour_writes_use_their_own_price() {
        let t =
            Tokens { prompt: 2000, cache_write: 2000, cache_write_1h: true, ..Tokens::default() };
        assert_eq!(bill(&sonnet(), &t).total(), usd("0.012"));
    }

    #[test]
    fn discount_is_negative_on_writes_and_positive_on_reads() {
        let write = Tokens { prompt: 2000, cache_write: 2000, ..Tokens::default() };
        assert_eq!(cache_discount(&sonnet(), &write), usd("-0.0015"));
        let read = Tokens { prompt: 2000, cached: 2000, ..Tokens::default() };
        assert_eq!(cache_discount(&sonnet(), &read), usd("0.0054"));
    }

    #[test]
    fn a_thousand_small_bills_sum_exactly() {
        let t = Tokens { prompt: 7, completion: 3, ..Tokens::default() };
        let total: Usd = (0..1000).map(|_| bill(&sonnet(), &t).total()).sum();
        assert_eq!(total, usd("0.066"));
    }

    #[test]
    fn affordable_tokens_floor_and_free_prices() {
        assert_eq!(affordable_tokens(usd("0.001"), usd("0.000015")), Some(66));
        assert_eq!(affordable_tokens(usd("-0.5"), usd("0.000015")), Some(0));
        assert_eq!(affordable_tokens(usd("1"), Usd::ZERO), None);
        assert_eq!(worst_case(&sonnet(), 100, 1000), usd("0.0153"));
    }
}
