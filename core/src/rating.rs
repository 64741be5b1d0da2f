//! Rating: a billing period's subscription slices and their usage become invoice lines, with no
//! I/O, so the monthly invoicing job and the control API's upcoming invoice compute the same
//! lines from the same inputs.
//!
//! # Proration
//! A period is a UTC calendar month. Each subscription in force during part of it forms a
//! *slice* `[max(start, period start), min(end, period end))`, rated on its own usage with its
//! own plan. The slice's share of the period is its length over the period's length, measured
//! exactly in microseconds. The base fee and the included units are prorated by that share and
//! rounded **down** (to the minor unit, to the unit), so slices never bill more base fee or
//! include more units than the whole month would, and a slice covering the whole period bills
//! exactly the plan's fee. Tier bounds and package sizes are not prorated: they apply to each
//! slice's own usage. Usage charges are rounded once per line with [`Money::from_decimal`]
//! (half away from zero); the invoice total is the sum of the rounded lines.
//!
//! # Corrections
//! Usage that arrives for a period already invoiced is billed on a later invoice as a
//! [`LineKind::Correction`] line: the slice is rated again on everything measured now, with the
//! pricing and included units it was first rated with, and the line bills the difference to
//! what was billed for it so far (the original and earlier corrections). Under graduated and
//! package pricing the difference is never negative; under volume pricing more usage can reach
//! a cheaper tier, and the correction is then a credit.

use std::fmt;

use rust_decimal::Decimal;
use time::{Month, OffsetDateTime, UtcOffset};
use uuid::Uuid;

use crate::money::{Currency, Money, MoneyError};
use crate::plan::{Pricing, PricingModel};

/// Why a period could not be rated.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RatingError {
    /// Nothing to rate: no subscription was in force during the period.
    #[error("no subscription was in force during the period")]
    NoSlices,
    /// Slices priced in different currencies cannot share one invoice.
    #[error(
        "the period's plans are priced in both {first} and {other}; one invoice has one currency"
    )]
    MixedCurrencies {
        /// Currency of the first slice.
        first: Currency,
        /// The other currency.
        other: Currency,
    },
    /// A slice lies (partly) outside its period, or is empty.
    #[error("subscription {subscription_id}: slice is empty or outside the period")]
    SliceOutsidePeriod {
        /// The subscription.
        subscription_id: Uuid,
    },
    /// An amount does not fit.
    #[error(transparent)]
    Money(#[from] MoneyError),
}

/// A UTC calendar month, `[start, end)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct BillingPeriod {
    start: OffsetDateTime,
    end: OffsetDateTime,
}

/// A `YYYY-MM` that is not a month.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not a month in the form YYYY-MM (2000-01 to 9999-12)")]
pub struct PeriodParseError(String);

impl BillingPeriod {
    /// The month `year-month`.
    pub fn month(year: i32, month: Month) -> Result<Self, PeriodParseError> {
        let invalid = || PeriodParseError(format!("{year:04}-{:02}", u8::from(month)));
        if !(2000..=9999).contains(&year) {
            return Err(invalid());
        }
        let start = time::Date::from_calendar_date(year, month, 1)
            .map_err(|_| invalid())?
            .midnight()
            .assume_utc();
        let (next_year, next_month) = if month == Month::December {
            (year + 1, Month::January)
        } else {
            (year, month.next())
        };
        let end = time::Date::from_calendar_date(next_year, next_month, 1)
            .map_err(|_| invalid())?
            .midnight()
            .assume_utc();
        Ok(Self { start, end })
    }

    /// Parses `YYYY-MM`.
    pub fn parse(text: &str) -> Result<Self, PeriodParseError> {
        let invalid = || PeriodParseError(text.chars().take(16).collect());
        let (year, month) = text.trim().split_once('-').ok_or_else(invalid)?;
        if year.len() != 4 || month.len() != 2 {
            return Err(invalid());
        }
        let year: i32 = year.parse().map_err(|_| invalid())?;
        let month: u8 = month.parse().map_err(|_| invalid())?;
        let month = Month::try_from(month).map_err(|_| invalid())?;
        Self::month(year, month).map_err(|_| invalid())
    }

    /// The month holding `at` (UTC).
    pub fn containing(at: OffsetDateTime) -> Result<Self, PeriodParseError> {
        let at = at.to_offset(UtcOffset::UTC);
        Self::month(at.year(), at.month())
    }

    /// The month before this one.
    pub fn previous(&self) -> Result<Self, PeriodParseError> {
        Self::containing(self.start - time::Duration::days(1))
    }

    /// First instant (inclusive).
    pub const fn start(&self) -> OffsetDateTime {
        self.start
    }

    /// First instant of the next month (exclusive).
    pub const fn end(&self) -> OffsetDateTime {
        self.end
    }
}

impl fmt::Display for BillingPeriod {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:04}-{:02}",
            self.start.year(),
            u8::from(self.start.month())
        )
    }
}

/// One subscription's part of a period, with its usage.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Slice {
    /// The subscription.
    pub subscription_id: Uuid,
    /// Its plan.
    pub plan_id: Uuid,
    /// The plan's name, for line descriptions.
    pub plan_name: String,
    /// The plan's pricing.
    pub pricing: Pricing,
    /// Start of the slice (inclusive), inside the period.
    pub start: OffsetDateTime,
    /// End of the slice (exclusive), inside the period.
    pub end: OffsetDateTime,
    /// Billable units measured in the slice.
    pub units: u64,
}

/// A slice of an earlier, invoiced period whose usage has grown since.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CorrectionInput {
    /// The invoice that billed the slice.
    pub invoice_id: Uuid,
    /// Its period.
    pub period: BillingPeriod,
    /// The slice as first rated (pricing and plan as then), with `units` measured now.
    pub slice: Slice,
    /// Included units the slice was rated with (after proration).
    pub included_units: u64,
    /// Units billed for the slice so far (original and earlier corrections).
    pub billed_units: u64,
    /// Usage charges billed for the slice so far, minor units.
    pub billed_usage_minor: i64,
}

/// What a line charges for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LineKind {
    /// A (prorated) monthly base fee.
    BaseFee,
    /// Usage charges of the period.
    Usage,
    /// Late usage of an earlier period.
    Correction,
}

impl LineKind {
    /// The `invoice_lines.kind` value.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::BaseFee => "base_fee",
            Self::Usage => "usage",
            Self::Correction => "correction",
        }
    }
}

/// One rated invoice line, rounded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RatedLine {
    /// What it charges for.
    pub kind: LineKind,
    /// Printed description.
    pub description: String,
    /// Units (requests, blocks, or 1 for a fee).
    pub quantity: u64,
    /// Price per unit in major units (display only; `amount` is authoritative).
    pub unit_price: Decimal,
    /// The line's amount, rounded once.
    pub amount: Money,
    /// The subscription slice it rates.
    pub subscription_id: Uuid,
    /// For corrections: the invoice corrected and its period's start.
    pub corrects: Option<(Uuid, OffsetDateTime)>,
}

/// The usage an invoice bills for one slice: its own period's, or a correction's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BilledUsage {
    /// The subscription.
    pub subscription_id: Uuid,
    /// Its plan.
    pub plan_id: Uuid,
    /// The plan's name.
    pub plan_name: String,
    /// The pricing rated with.
    pub pricing: Pricing,
    /// Included units after proration.
    pub included_units: u64,
    /// The slice.
    pub slice_start: OffsetDateTime,
    /// End of the slice.
    pub slice_end: OffsetDateTime,
    /// The invoice corrected; `None` for the invoice's own period.
    pub corrects_invoice_id: Option<Uuid>,
    /// Units billed here.
    pub units: u64,
    /// Usage charges billed here, minor units.
    pub usage_minor: i64,
}

/// A rated period: lines in print order, the usage they bill, and the total.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RatedInvoice {
    /// Currency of every amount.
    pub currency: Currency,
    /// Lines, in print order.
    pub lines: Vec<RatedLine>,
    /// Usage billed per slice.
    pub usage: Vec<BilledUsage>,
    /// Sum of the lines.
    pub total: Money,
}

fn micros(from: OffsetDateTime, to: OffsetDateTime) -> i128 {
    (to - from).whole_microseconds().max(0)
}

/// `value × part / whole`, rounded down; `value` when `part ≥ whole`.
fn prorate(value: i128, part: i128, whole: i128) -> i128 {
    if whole <= 0 || part >= whole {
        return value;
    }
    value * part.max(0) / whole
}

/// The base fee of a slice: the plan's fee × the slice's share of the period, rounded down.
pub fn prorated_base_fee_minor(
    base_fee_minor: i64,
    period: &BillingPeriod,
    start: OffsetDateTime,
    end: OffsetDateTime,
) -> i64 {
    let whole = micros(period.start, period.end);
    let fee = prorate(i128::from(base_fee_minor), micros(start, end), whole);
    i64::try_from(fee).unwrap_or(base_fee_minor)
}

/// The included units of a slice: the plan's × the slice's share of the period, rounded down.
pub fn prorated_included_units(
    included: u64,
    period: &BillingPeriod,
    start: OffsetDateTime,
    end: OffsetDateTime,
) -> u64 {
    let whole = micros(period.start, period.end);
    let units = prorate(i128::from(included), micros(start, end), whole);
    u64::try_from(units).unwrap_or(included)
}

fn day(at: OffsetDateTime) -> String {
    let at = at.to_offset(UtcOffset::UTC);
    if at.time() == time::Time::MIDNIGHT {
        format!(
            "{:04}-{:02}-{:02}",
            at.year(),
            u8::from(at.month()),
            at.day()
        )
    } else {
        format!(
            "{:04}-{:02}-{:02} {:02}:{:02}",
            at.year(),
            u8::from(at.month()),
            at.day(),
            at.hour(),
            at.minute()
        )
    }
}

/// Usage charge lines for `units` under `pricing` with `included` units, each rounded.
fn usage_lines(
    slice: &Slice,
    included: u64,
    units: u64,
    currency: Currency,
) -> Result<Vec<(String, u64, Decimal, Money)>, MoneyError> {
    let pricing = Pricing {
        included_units: included,
        ..slice.pricing.clone()
    };
    let rated = pricing.rate(units);
    let mut lines = Vec::with_capacity(rated.charges.len());
    for charge in rated.charges {
        let amount = Money::from_decimal(charge.amount, currency)?;
        let what = match &pricing.model {
            PricingModel::Package { package_size, .. } => {
                format!("{} × {package_size} requests", charge.quantity)
            }
            _ => format!("{} requests", charge.quantity),
        };
        let flat = if charge.flat_fee.is_zero() {
            String::new()
        } else {
            format!(" + {} flat", charge.flat_fee.normalize())
        };
        let description = format!(
            "{}: {what} at {} {currency}{flat}",
            slice.plan_name,
            charge.unit_price.normalize()
        );
        lines.push((description, charge.quantity, charge.unit_price, amount));
    }
    Ok(lines)
}

fn sum(currency: Currency, amounts: impl IntoIterator<Item = Money>) -> Result<Money, MoneyError> {
    amounts
        .into_iter()
        .try_fold(Money::zero(currency), Money::checked_add)
}

/// Rates `period`: per slice (in the given order) its prorated base fee and usage charges, then
/// one correction line per earlier slice whose usage has grown.
pub fn rate_invoice(
    period: &BillingPeriod,
    slices: &[Slice],
    corrections: &[CorrectionInput],
) -> Result<RatedInvoice, RatingError> {
    let currency = slices
        .first()
        .map(|s| s.pricing.currency)
        .ok_or(RatingError::NoSlices)?;
    let mut lines = Vec::new();
    let mut usage = Vec::new();
    for slice in slices {
        if slice.pricing.currency != currency {
            return Err(RatingError::MixedCurrencies {
                first: currency,
                other: slice.pricing.currency,
            });
        }
        if slice.start < period.start || slice.end > period.end || slice.start >= slice.end {
            return Err(RatingError::SliceOutsidePeriod {
                subscription_id: slice.subscription_id,
            });
        }
        let whole_period = slice.start == period.start && slice.end == period.end;
        let span = if whole_period {
            format!("{period}")
        } else {
            format!("{} to {} (prorated)", day(slice.start), day(slice.end))
        };
        let fee =
            prorated_base_fee_minor(slice.pricing.base_fee_minor, period, slice.start, slice.end);
        if slice.pricing.base_fee_minor > 0 {
            let amount = Money::from_minor(fee, currency);
            lines.push(RatedLine {
                kind: LineKind::BaseFee,
                description: format!("{}: base fee, {span}", slice.plan_name),
                quantity: 1,
                unit_price: amount.to_decimal(),
                amount,
                subscription_id: slice.subscription_id,
                corrects: None,
            });
        }
        let included =
            prorated_included_units(slice.pricing.included_units, period, slice.start, slice.end);
        let mut usage_minor = 0i64;
        for (description, quantity, unit_price, amount) in
            usage_lines(slice, included, slice.units, currency)?
        {
            usage_minor = usage_minor
                .checked_add(amount.amount_minor())
                .ok_or(MoneyError::Overflow)?;
            lines.push(RatedLine {
                kind: LineKind::Usage,
                description,
                quantity,
                unit_price,
                amount,
                subscription_id: slice.subscription_id,
                corrects: None,
            });
        }
        usage.push(BilledUsage {
            subscription_id: slice.subscription_id,
            plan_id: slice.plan_id,
            plan_name: slice.plan_name.clone(),
            pricing: slice.pricing.clone(),
            included_units: included,
            slice_start: slice.start,
            slice_end: slice.end,
            corrects_invoice_id: None,
            units: slice.units,
            usage_minor,
        });
    }
    for correction in corrections {
        let slice = &correction.slice;
        if slice.units <= correction.billed_units {
            continue;
        }
        if slice.pricing.currency != currency {
            return Err(RatingError::MixedCurrencies {
                first: currency,
                other: slice.pricing.currency,
            });
        }
        let target = sum(
            currency,
            usage_lines(slice, correction.included_units, slice.units, currency)?
                .into_iter()
                .map(|(_, _, _, amount)| amount),
        )?;
        let amount =
            target.checked_sub(Money::from_minor(correction.billed_usage_minor, currency))?;
        let late = slice.units - correction.billed_units;
        let unit_price = amount.to_decimal() / Decimal::from(late);
        lines.push(RatedLine {
            kind: LineKind::Correction,
            description: format!(
                "Correction for {}: {late} late requests, {} ({} to {})",
                correction.period,
                slice.plan_name,
                day(slice.start),
                day(slice.end)
            ),
            quantity: late,
            unit_price,
            amount,
            subscription_id: slice.subscription_id,
            corrects: Some((correction.invoice_id, correction.period.start)),
        });
        usage.push(BilledUsage {
            subscription_id: slice.subscription_id,
            plan_id: slice.plan_id,
            plan_name: slice.plan_name.clone(),
            pricing: slice.pricing.clone(),
            included_units: correction.included_units,
            slice_start: slice.start,
            slice_end: slice.end,
            corrects_invoice_id: Some(correction.invoice_id),
            units: late,
            usage_minor: amount.amount_minor(),
        });
    }
    let total = sum(currency, lines.iter().map(|l| l.amount))?;
    Ok(RatedInvoice {
        currency,
        lines,
        usage,
        total,
    })
}

#[cfg(test)]
#[path = "rating_tests.rs"]
mod tests;
