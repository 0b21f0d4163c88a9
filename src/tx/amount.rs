//! Amounts as people read and write them: whole tokens with
//! [`DECIMALS`] decimals. The chain counts base units, integers: one token
//! is [`BASE_UNITS_PER_TOKEN`] base units. Parsing is exact (no floats).

use thiserror::Error;

/// Decimals shown after the point.
pub const DECIMALS: u32 = 8;
/// Base units in one token: `10^DECIMALS`.
pub const BASE_UNITS_PER_TOKEN: u64 = 100_000_000;

/// `amount` base units as tokens with exactly [`DECIMALS`] decimals:
/// `5000000000` is `"50.00000000"`.
pub fn format(amount: u64) -> String {
    format!(
        "{}.{:0width$}",
        amount / BASE_UNITS_PER_TOKEN,
        amount % BASE_UNITS_PER_TOKEN,
        width = DECIMALS as usize
    )
}

#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum AmountError {
    #[error(
        "{0:?} is not an amount: write tokens as digits with at most one point, such as 12 or 0.5"
    )]
    NotANumber(String),
    #[error(
        "{0:?} has more than 8 decimals: the smallest amount is 0.00000001 tokens (one base unit)"
    )]
    TooPrecise(String),
    #[error("{0:?} is more than the 64-bit count of base units can hold")]
    TooLarge(String),
}

/// Parse tokens as written (`"12"`, `"0.5"`, `"1.00000001"`) into base units.
pub fn parse(text: &str) -> Result<u64, AmountError> {
    let not_a_number = || AmountError::NotANumber(text.to_string());
    let (whole, fraction) = match text.split_once('.') {
        Some((w, f)) => (w, f),
        None => (text, ""),
    };
    let digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
    if whole.is_empty() || !digits(whole) || !digits(fraction) {
        return Err(not_a_number());
    }
    if text.ends_with('.') {
        return Err(not_a_number());
    }
    if fraction.len() > DECIMALS as usize {
        return Err(AmountError::TooPrecise(text.to_string()));
    }
    let too_large = || AmountError::TooLarge(text.to_string());
    let whole: u64 = whole.parse().map_err(|_| too_large())?;
    let fraction: u64 = if fraction.is_empty() {
        0
    } else {
        let scale = 10u64.pow(DECIMALS - fraction.len() as u32);
        fraction.parse::<u64>().map_err(|_| not_a_number())? * scale
    };
    whole
        .checked_mul(BASE_UNITS_PER_TOKEN)
        .and_then(|w| w.checked_add(fraction))
        .ok_or_else(too_large)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn amounts_print_with_eight_decimals() {
        assert_eq!(format(0), "0.00000000");
        assert_eq!(format(1), "0.00000001");
        assert_eq!(format(5_000_000_000), "50.00000000");
        assert_eq!(format(123_456_789), "1.23456789");
        assert_eq!(format(u64::MAX), "184467440737.09551615");
    }

    #[test]
    fn amounts_parse_exactly_and_round_trip() {
        assert_eq!(parse("50"), Ok(5_000_000_000));
        assert_eq!(parse("0.5"), Ok(50_000_000));
        assert_eq!(parse("1.00000001"), Ok(100_000_001));
        assert_eq!(parse("0.00000001"), Ok(1));
        assert_eq!(parse("184467440737.09551615"), Ok(u64::MAX));
        for v in [0, 1, 99, 5_000_000_000, u64::MAX] {
            assert_eq!(parse(&format(v)), Ok(v));
        }
    }

    #[test]
    fn bad_amounts_are_refused_with_the_reason() {
        assert!(matches!(
            parse("1.000000001"),
            Err(AmountError::TooPrecise(_))
        ));
        assert!(matches!(
            parse("184467440737.09551616"),
            Err(AmountError::TooLarge(_))
        ));
        assert!(matches!(
            parse("184467440738"),
            Err(AmountError::TooLarge(_))
        ));
        for bad in ["", ".5", "5.", "-1", "1e3", "1.2.3", " 1", "abc", "+1"] {
            assert!(
                matches!(parse(bad), Err(AmountError::NotANumber(_))),
                "{bad:?}"
            );
        }
    }
}
