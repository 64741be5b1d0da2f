//! Money: integer minor units (i64) and an ISO 4217 currency at rest; `rust_decimal` while rating.
//!
//! Amounts are never floats. Rating works in [`Decimal`] at full precision and converts to minor
//! units once per invoice line with [`Money::from_decimal`], which rounds half away from zero
//! (the rule customers expect from a printed invoice).

use std::fmt;
use std::str::FromStr;

use rust_decimal::{Decimal, RoundingStrategy};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Why an amount or currency was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MoneyError {
    /// Not a currency we bill in.
    #[error("{0:?} is not a supported ISO 4217 currency code")]
    UnknownCurrency(String),
    /// Two amounts in different currencies were combined.
    #[error("cannot combine {left} and {right} amounts")]
    CurrencyMismatch {
        /// Currency of the left operand.
        left: Currency,
        /// Currency of the right operand.
        right: Currency,
    },
    /// The result does not fit in i64 minor units.
    #[error("amount out of range")]
    Overflow,
    /// Not a decimal number.
    #[error("{0:?} is not a decimal amount")]
    NotANumber(String),
    /// More fractional digits than the currency has.
    #[error("{amount} has more than {exponent} decimal places, the most {currency} allows")]
    TooPrecise {
        /// The amount as given.
        amount: String,
        /// The currency.
        currency: Currency,
        /// Its number of minor-unit digits.
        exponent: u32,
    },
}

/// An ISO 4217 currency that we bill in, with its number of minor-unit digits.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Currency {
    code: [u8; 3],
    exponent: u8,
}

/// Supported currencies and their minor-unit exponents (ISO 4217).
const CURRENCIES: &[(&str, u8)] = &[
    ("AUD", 2),
    ("BHD", 3),
    ("BRL", 2),
    ("CAD", 2),
    ("CHF", 2),
    ("CLP", 0),
    ("CNY", 2),
    ("CZK", 2),
    ("DKK", 2),
    ("EUR", 2),
    ("GBP", 2),
    ("HKD", 2),
    ("INR", 2),
    ("ISK", 0),
    ("JOD", 3),
    ("JPY", 0),
    ("KRW", 0),
    ("KWD", 3),
    ("MXN", 2),
    ("NOK", 2),
    ("NZD", 2),
    ("OMR", 3),
    ("PLN", 2),
    ("SEK", 2),
    ("SGD", 2),
    ("TND", 3),
    ("USD", 2),
    ("VND", 0),
    ("ZAR", 2),
];

impl Currency {
    /// US dollar.
    pub const USD: Self = Self {
        code: *b"USD",
        exponent: 2,
    };
    /// Euro.
    pub const EUR: Self = Self {
        code: *b"EUR",
        exponent: 2,
    };
    /// Japanese yen (no minor unit).
    pub const JPY: Self = Self {
        code: *b"JPY",
        exponent: 0,
    };

    /// Looks a code up; only upper-case ISO 4217 codes that we support.
    pub fn from_code(code: &str) -> Result<Self, MoneyError> {
        CURRENCIES
            .iter()
            .find(|(c, _)| *c == code)
            .and_then(|&(c, exponent)| {
                let code: [u8; 3] = c.as_bytes().try_into().ok()?;
                Some(Self { code, exponent })
            })
            .ok_or_else(|| MoneyError::UnknownCurrency(code.chars().take(16).collect()))
    }

    /// The three-letter code.
    pub fn code(&self) -> &str {
        std::str::from_utf8(&self.code).unwrap_or("???")
    }

    /// Number of minor-unit digits (2 for USD, 0 for JPY, 3 for KWD).
    pub const fn exponent(&self) -> u32 {
        self.exponent as u32
    }
}

impl fmt::Display for Currency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code())
    }
}

impl fmt::Debug for Currency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code())
    }
}

impl FromStr for Currency {
    type Err = MoneyError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::from_code(s)
    }
}

impl Serialize for Currency {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.code())
    }
}

impl<'de> Deserialize<'de> for Currency {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        Self::from_code(&s).map_err(serde::de::Error::custom)
    }
}

/// An amount of money: integer minor units of one currency.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Money {
    amount_minor: i64,
    currency: Currency,
}

impl Money {
    /// An amount in minor units (cents for USD).
    pub const fn from_minor(amount_minor: i64, currency: Currency) -> Self {
        Self {
            amount_minor,
            currency,
        }
    }

    /// Zero in `currency`.
    pub const fn zero(currency: Currency) -> Self {
        Self::from_minor(0, currency)
    }

    /// Parses a major-unit amount such as `"49.99"`, refusing more digits than the currency has.
    pub fn parse_exact(amount: &str, currency: Currency) -> Result<Self, MoneyError> {
        let value = Decimal::from_str_exact(amount.trim())
            .map_err(|_| MoneyError::NotANumber(amount.chars().take(40).collect()))?;
        if value.normalize().scale() > currency.exponent() {
            return Err(MoneyError::TooPrecise {
                amount: amount.to_owned(),
                currency,
                exponent: currency.exponent(),
            });
        }
        Self::from_decimal(value, currency)
    }

    /// Converts a major-unit decimal to minor units, rounding half away from zero. This is the
    /// one place where rating results are rounded.
    pub fn from_decimal(amount: Decimal, currency: Currency) -> Result<Self, MoneyError> {
        let minor = amount
            .checked_mul(Decimal::from(10_i64.pow(currency.exponent())))
            .ok_or(MoneyError::Overflow)?
            .round_dp_with_strategy(0, RoundingStrategy::MidpointAwayFromZero);
        let minor = i64::try_from(minor).map_err(|_| MoneyError::Overflow)?;
        Ok(Self::from_minor(minor, currency))
    }

    /// The amount in minor units.
    pub const fn amount_minor(&self) -> i64 {
        self.amount_minor
    }

    /// The currency.
    pub const fn currency(&self) -> Currency {
        self.currency
    }

    /// The amount in major units, exactly.
    pub fn to_decimal(&self) -> Decimal {
        Decimal::new(self.amount_minor, self.currency.exponent())
    }

    /// Whether the amount is zero.
    pub const fn is_zero(&self) -> bool {
        self.amount_minor == 0
    }

    /// `self + other`, refusing mixed currencies and overflow.
    pub fn checked_add(self, other: Self) -> Result<Self, MoneyError> {
        self.same_currency(other)?;
        let sum = self
            .amount_minor
            .checked_add(other.amount_minor)
            .ok_or(MoneyError::Overflow)?;
        Ok(Self::from_minor(sum, self.currency))
    }

    /// `self - other`, refusing mixed currencies and overflow.
    pub fn checked_sub(self, other: Self) -> Result<Self, MoneyError> {
        self.same_currency(other)?;
        let difference = self
            .amount_minor
            .checked_sub(other.amount_minor)
            .ok_or(MoneyError::Overflow)?;
        Ok(Self::from_minor(difference, self.currency))
    }

    fn same_currency(self, other: Self) -> Result<(), MoneyError> {
        if self.currency == other.currency {
            Ok(())
        } else {
            Err(MoneyError::CurrencyMismatch {
                left: self.currency,
                right: other.currency,
            })
        }
    }
}

impl fmt::Display for Money {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.to_decimal(), self.currency)
    }
}

impl fmt::Debug for Money {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Money({self})")
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn dec(s: &str) -> Decimal {
        Decimal::from_str_exact(s).unwrap()
    }

    #[test]
    fn currencies_know_their_exponent() {
        assert_eq!(Currency::from_code("USD").unwrap().exponent(), 2);
        assert_eq!(Currency::from_code("JPY").unwrap().exponent(), 0);
        assert_eq!(Currency::from_code("KWD").unwrap().exponent(), 3);
        assert_eq!(
            Currency::from_code("usd").unwrap_err().to_string(),
            "\"usd\" is not a supported ISO 4217 currency code"
        );
        assert!(Currency::from_code("XXX").is_err());
    }

    #[test]
    fn display_uses_major_units() {
        assert_eq!(
            Money::from_minor(4999, Currency::USD).to_string(),
            "49.99 USD"
        );
        assert_eq!(
            Money::from_minor(-105, Currency::USD).to_string(),
            "-1.05 USD"
        );
        assert_eq!(
            Money::from_minor(1200, Currency::JPY).to_string(),
            "1200 JPY"
        );
    }

    #[test]
    fn rounding_is_half_away_from_zero_once() {
        let usd = Currency::USD;
        assert_eq!(
            Money::from_decimal(dec("0.005"), usd)
                .unwrap()
                .amount_minor(),
            1
        );
        assert_eq!(
            Money::from_decimal(dec("0.0049999"), usd)
                .unwrap()
                .amount_minor(),
            0
        );
        assert_eq!(
            Money::from_decimal(dec("-0.005"), usd)
                .unwrap()
                .amount_minor(),
            -1
        );
        assert_eq!(
            Money::from_decimal(dec("2.675"), usd)
                .unwrap()
                .amount_minor(),
            268
        );
        assert_eq!(
            Money::from_decimal(dec("0.5"), Currency::JPY)
                .unwrap()
                .amount_minor(),
            1
        );
        // 3 × 0.3333 rounded once is 1.00, not 3 × 0.33.
        let total = dec("0.3333") * Decimal::from(3);
        assert_eq!(Money::from_decimal(total, usd).unwrap().amount_minor(), 100);
    }

    #[test]
    fn exact_parsing_refuses_sub_minor_precision() {
        let usd = Currency::USD;
        assert_eq!(
            Money::parse_exact("49.99", usd).unwrap().amount_minor(),
            4999
        );
        assert_eq!(
            Money::parse_exact("49.990", usd).unwrap().amount_minor(),
            4999
        );
        assert!(matches!(
            Money::parse_exact("49.999", usd),
            Err(MoneyError::TooPrecise { exponent: 2, .. })
        ));
        assert!(matches!(
            Money::parse_exact("1e3", usd),
            Err(MoneyError::NotANumber(_))
        ));
        assert!(Money::parse_exact("1.5", Currency::JPY).is_err());
    }

    #[test]
    fn arithmetic_refuses_mixed_currencies_and_overflow() {
        let a = Money::from_minor(100, Currency::USD);
        let b = Money::from_minor(100, Currency::EUR);
        assert!(matches!(
            a.checked_add(b),
            Err(MoneyError::CurrencyMismatch { .. })
        ));
        let max = Money::from_minor(i64::MAX, Currency::USD);
        assert_eq!(max.checked_add(a), Err(MoneyError::Overflow));
        let min = Money::from_minor(i64::MIN, Currency::USD);
        assert_eq!(min.checked_sub(a), Err(MoneyError::Overflow));
        assert_eq!(a.checked_sub(a).unwrap(), Money::zero(Currency::USD));
    }

    #[test]
    fn huge_decimals_overflow_instead_of_wrapping() {
        let huge = Decimal::MAX;
        assert_eq!(
            Money::from_decimal(huge, Currency::USD),
            Err(MoneyError::Overflow)
        );
    }

    #[test]
    fn serde_form_is_minor_units_and_code() {
        let m = Money::from_minor(4999, Currency::USD);
        let json = serde_json::to_string(&m).unwrap();
        assert_eq!(json, r#"{"amount_minor":4999,"currency":"USD"}"#);
        assert_eq!(serde_json::from_str::<Money>(&json).unwrap(), m);
        assert!(serde_json::from_str::<Money>(r#"{"amount_minor":1,"currency":"ABC"}"#).is_err());
    }

    proptest! {
        #[test]
        fn decimal_round_trip_is_exact(minor in any::<i64>()) {
            let m = Money::from_minor(minor, Currency::USD);
            prop_assert_eq!(Money::from_decimal(m.to_decimal(), Currency::USD).unwrap(), m);
        }

        #[test]
        fn addition_is_commutative_and_undone_by_subtraction(a in -1_000_000_000_000i64..1_000_000_000_000, b in -1_000_000_000_000i64..1_000_000_000_000) {
            let (a, b) = (Money::from_minor(a, Currency::EUR), Money::from_minor(b, Currency::EUR));
            let sum = a.checked_add(b).unwrap();
            prop_assert_eq!(sum, b.checked_add(a).unwrap());
            prop_assert_eq!(sum.checked_sub(b).unwrap(), a);
        }

        #[test]
        fn rounding_error_is_at_most_half_a_minor_unit(minor in -1_000_000_000i64..1_000_000_000, frac in 0u32..10_000) {
            // minor + frac/10000 minor units
            let exact = Decimal::new(minor, 2) + Decimal::new(i64::from(frac), 6);
            let rounded = Money::from_decimal(exact, Currency::USD).unwrap().to_decimal();
            prop_assert!((rounded - exact).abs() <= Decimal::new(5, 3));
        }
    }
}
