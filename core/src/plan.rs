//! Plans: what a tenant may do (rate and quota) and what it pays (pricing).
//!
//! A [`Plan`] is only ever built through [`Plan::new`] (or deserialised through it), which
//! validates every field and names the bad one, so the proxy and invoicing can trust any plan
//! they hold. Prices are decimals in major units (a request may cost $0.0004); rating results
//! are rounded once, per line, by invoicing through [`crate::Money::from_decimal`].

use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

use crate::ids::PlanId;
use crate::money::{Currency, Money};

/// A plan field that is out of range, named by its path (`pricing.tiers[1].up_to`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct PlanError {
    /// Path of the offending field.
    pub field: String,
    /// What is wrong with it.
    pub message: String,
}

fn invalid(field: impl Into<String>, message: impl Into<String>) -> PlanError {
    PlanError {
        field: field.into(),
        message: message.into(),
    }
}

/// Most requests per second a plan may allow on one key; far above what one node can serve.
pub const MAX_RATE_PER_SECOND: u32 = 10_000_000;

/// Request rate: a GCRA with a sustained rate and a burst allowance.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RatePolicy {
    /// Sustained requests per second.
    pub requests_per_second: u32,
    /// Requests that may arrive at once after a quiet period.
    pub burst: u32,
    /// Decide every request with one atomic Redis script instead of delayed sync: exact
    /// cluster-wide at the cost of a Redis round trip per request. For very low limits.
    #[serde(default)]
    pub strict: bool,
}

/// What happens at the monthly quota.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum QuotaCap {
    /// Requests beyond the quota are refused (429 `quota_exceeded`).
    Hard,
    /// Requests beyond the quota pass; responses say so in a header and overage is billed.
    Soft,
}

/// Monthly request allowance.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Quota {
    /// Requests included per calendar month (UTC).
    pub included_requests: u64,
    /// Hard or soft cap.
    pub cap: QuotaCap,
}

/// What the proxy does with cluster-wide limits when Redis cannot be reached.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FailureMode {
    /// Keep serving on local limits (limit ÷ replicas).
    #[default]
    Open,
    /// Refuse requests that need the cluster limit.
    Closed,
}

/// One price tier: units up to `up_to` (inclusive, cumulative count) cost `unit_price` each,
/// plus `flat_fee` once if any unit falls in the tier.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Tier {
    /// Upper bound of the tier; `None` for the last, open-ended tier.
    pub up_to: Option<u64>,
    /// Price per unit in major currency units.
    #[serde(with = "rust_decimal::serde::str")]
    pub unit_price: Decimal,
    /// Fee charged once when the tier is reached, in major units.
    #[serde(default, with = "rust_decimal::serde::str")]
    pub flat_fee: Decimal,
}

/// How usage beyond the included units is priced.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "model", rename_all = "snake_case", deny_unknown_fields)]
pub enum PricingModel {
    /// No usage charge: the base fee covers everything.
    Flat,
    /// Each unit is priced by the tier it falls in.
    Graduated {
        /// Ascending tiers; the last is open-ended.
        tiers: Vec<Tier>,
    },
    /// All units are priced by the tier the total falls in.
    Volume {
        /// Ascending tiers; the last is open-ended.
        tiers: Vec<Tier>,
    },
    /// Units are sold in blocks; a started block is charged in full.
    Package {
        /// Units per block.
        package_size: u64,
        /// Price per block in major units.
        #[serde(with = "rust_decimal::serde::str")]
        package_price: Decimal,
    },
}

/// What a subscription pays each month.
// No deny_unknown_fields here: serde does not support it with `flatten`; the flattened
// `PricingModel` rejects unknown fields instead.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pricing {
    /// Currency of every amount in the plan.
    pub currency: Currency,
    /// Monthly base fee in minor units of `currency`.
    pub base_fee_minor: i64,
    /// Units included in the base fee before the model applies.
    #[serde(default)]
    pub included_units: u64,
    /// How the remaining units are priced.
    #[serde(flatten)]
    pub model: PricingModel,
}

/// One priced part of a month's usage, unrounded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsageCharge {
    /// Units (or blocks, for package pricing) charged on this line.
    pub quantity: u64,
    /// Price per unit (or block) in major units.
    pub unit_price: Decimal,
    /// Flat fee included in `amount`.
    pub flat_fee: Decimal,
    /// `quantity × unit_price + flat_fee`, in major units, unrounded.
    pub amount: Decimal,
}

/// The usage charges for one period.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RatedUsage {
    /// Units beyond `included_units`.
    pub billable_units: u64,
    /// One entry per tier reached (graduated), the tier applied (volume) or the blocks (package).
    pub charges: Vec<UsageCharge>,
}

impl RatedUsage {
    /// Sum of all charges, unrounded.
    pub fn total(&self) -> Decimal {
        self.charges.iter().map(|c| c.amount).sum()
    }
}

impl Pricing {
    /// The monthly base fee.
    pub fn base_fee(&self) -> Money {
        Money::from_minor(self.base_fee_minor, self.currency)
    }

    /// Prices `units` of usage in one period (base fee not included).
    pub fn rate(&self, units: u64) -> RatedUsage {
        let billable = units.saturating_sub(self.included_units);
        let mut rated = RatedUsage {
            billable_units: billable,
            charges: Vec::new(),
        };
        if billable == 0 {
            return rated;
        }
        match &self.model {
            PricingModel::Flat => {}
            PricingModel::Graduated { tiers } => {
                let mut lower = 0u64;
                for tier in tiers {
                    let upper = tier.up_to.unwrap_or(u64::MAX).min(billable);
                    if upper > lower {
                        rated
                            .charges
                            .push(charge(upper - lower, tier.unit_price, tier.flat_fee));
                    }
                    lower = upper;
                    if lower >= billable {
                        break;
                    }
                }
            }
            PricingModel::Volume { tiers } => {
                if let Some(tier) = tiers
                    .iter()
                    .find(|t| t.up_to.is_none_or(|up_to| billable <= up_to))
                {
                    rated
                        .charges
                        .push(charge(billable, tier.unit_price, tier.flat_fee));
                }
            }
            PricingModel::Package {
                package_size,
                package_price,
            } => {
                let blocks = billable.div_ceil(*package_size);
                rated
                    .charges
                    .push(charge(blocks, *package_price, Decimal::ZERO));
            }
        }
        rated
    }

    /// Checks every amount and tier; the error names the first bad field. [`Plan::new`] runs
    /// it, and so must anyone who reads pricing from outside (a database row).
    pub fn validate(&self) -> Result<(), PlanError> {
        if self.base_fee_minor < 0 {
            return Err(invalid("pricing.base_fee_minor", "must not be negative"));
        }
        match &self.model {
            PricingModel::Flat => Ok(()),
            PricingModel::Graduated { tiers } | PricingModel::Volume { tiers } => {
                validate_tiers(tiers, self.currency)
            }
            PricingModel::Package {
                package_size,
                package_price,
            } => {
                if *package_size == 0 {
                    return Err(invalid("pricing.package_size", "must be at least 1"));
                }
                validate_price("pricing.package_price", *package_price, self.currency)
            }
        }
    }
}

fn charge(quantity: u64, unit_price: Decimal, flat_fee: Decimal) -> UsageCharge {
    UsageCharge {
        quantity,
        unit_price,
        flat_fee,
        amount: Decimal::from(quantity) * unit_price + flat_fee,
    }
}

/// Largest unit price we accept, in major units; keeps `units × price` far from Decimal's range.
fn max_price() -> Decimal {
    Decimal::from(1_000_000_000_i64)
}

fn validate_price(field: &str, price: Decimal, currency: Currency) -> Result<(), PlanError> {
    if price.is_sign_negative() && !price.is_zero() {
        return Err(invalid(field, "must not be negative"));
    }
    if price > max_price() {
        return Err(invalid(
            field,
            format!("must be at most {} {currency}", max_price()),
        ));
    }
    if price.normalize().scale() > 12 {
        return Err(invalid(field, "must have at most 12 decimal places"));
    }
    Ok(())
}

fn validate_tiers(tiers: &[Tier], currency: Currency) -> Result<(), PlanError> {
    if tiers.is_empty() {
        return Err(invalid("pricing.tiers", "needs at least one tier"));
    }
    let last = tiers.len() - 1;
    let mut previous: Option<u64> = None;
    for (i, tier) in tiers.iter().enumerate() {
        let field = |name: &str| format!("pricing.tiers[{i}].{name}");
        validate_price(&field("unit_price"), tier.unit_price, currency)?;
        validate_price(&field("flat_fee"), tier.flat_fee, currency)?;
        match (tier.up_to, i == last) {
            (None, true) => {}
            (None, false) => {
                return Err(invalid(
                    field("up_to"),
                    "only the last tier may be open-ended (up_to: null)",
                ));
            }
            (Some(_), true) => {
                return Err(invalid(
                    field("up_to"),
                    "the last tier must be open-ended (up_to: null) so every unit has a price",
                ));
            }
            (Some(0), false) => return Err(invalid(field("up_to"), "must be at least 1")),
            (Some(up_to), false) => {
                if let Some(prev) = previous.filter(|&prev| up_to <= prev) {
                    return Err(invalid(
                        field("up_to"),
                        format!(
                            "{up_to} overlaps the previous tier, which ends at {prev}; tiers must be in ascending order"
                        ),
                    ));
                }
                previous = Some(up_to);
            }
        }
    }
    Ok(())
}

/// The external (configuration, database, API) form of a plan, before validation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PlanSpec {
    /// Plan id.
    pub id: PlanId,
    /// Human-readable name.
    pub name: String,
    /// Request rate.
    pub rate: RatePolicy,
    /// Monthly quota; `None` for unlimited.
    #[serde(default)]
    pub quota: Option<Quota>,
    /// Behaviour when the cluster limiter is unreachable.
    #[serde(default)]
    pub failure_mode: FailureMode,
    /// Monthly price.
    pub pricing: Pricing,
}

/// A validated plan.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "PlanSpec", into = "PlanSpec")]
pub struct Plan(PlanSpec);

impl Plan {
    /// Validates `spec`; the error names the first bad field.
    pub fn new(spec: PlanSpec) -> Result<Self, PlanError> {
        let name = spec.name.trim();
        if name.is_empty() || name.chars().count() > 100 {
            return Err(invalid("name", "must be 1 to 100 characters"));
        }
        if spec.rate.requests_per_second == 0 || spec.rate.requests_per_second > MAX_RATE_PER_SECOND
        {
            return Err(invalid(
                "rate.requests_per_second",
                format!("must be between 1 and {MAX_RATE_PER_SECOND}"),
            ));
        }
        if spec.rate.burst == 0 || spec.rate.burst > MAX_RATE_PER_SECOND {
            return Err(invalid(
                "rate.burst",
                format!("must be between 1 and {MAX_RATE_PER_SECOND}"),
            ));
        }
        if let Some(quota) = spec.quota
            && quota.included_requests == 0
        {
            return Err(invalid(
                "quota.included_requests",
                "must be at least 1 (omit the quota for unlimited)",
            ));
        }
        spec.pricing.validate()?;
        Ok(Self(spec))
    }

    /// Plan id.
    pub fn id(&self) -> PlanId {
        self.0.id
    }

    /// Name.
    pub fn name(&self) -> &str {
        &self.0.name
    }

    /// Request rate.
    pub fn rate(&self) -> RatePolicy {
        self.0.rate
    }

    /// Monthly quota, if any.
    pub fn quota(&self) -> Option<Quota> {
        self.0.quota
    }

    /// Behaviour when the cluster limiter is unreachable.
    pub fn failure_mode(&self) -> FailureMode {
        self.0.failure_mode
    }

    /// Monthly price.
    pub fn pricing(&self) -> &Pricing {
        &self.0.pricing
    }

    /// The external form.
    pub fn spec(&self) -> &PlanSpec {
        &self.0
    }
}

impl TryFrom<PlanSpec> for Plan {
    type Error = PlanError;

    fn try_from(spec: PlanSpec) -> Result<Self, Self::Error> {
        Self::new(spec)
    }
}

impl From<Plan> for PlanSpec {
    fn from(plan: Plan) -> Self {
        plan.0
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn dec(s: &str) -> Decimal {
        Decimal::from_str_exact(s).unwrap()
    }

    fn tier(up_to: Option<u64>, price: &str) -> Tier {
        Tier {
            up_to,
            unit_price: dec(price),
            flat_fee: Decimal::ZERO,
        }
    }

    fn pricing(model: PricingModel) -> Pricing {
        Pricing {
            currency: Currency::USD,
            base_fee_minor: 4900,
            included_units: 0,
            model,
        }
    }

    fn spec(pricing: Pricing) -> PlanSpec {
        PlanSpec {
            id: PlanId::new(),
            name: "Growth".into(),
            rate: RatePolicy {
                requests_per_second: 100,
                burst: 200,
                strict: false,
            },
            quota: Some(Quota {
                included_requests: 1_000_000,
                cap: QuotaCap::Hard,
            }),
            failure_mode: FailureMode::Open,
            pricing,
        }
    }

    fn graduated() -> PricingModel {
        PricingModel::Graduated {
            tiers: vec![
                tier(Some(1000), "0"),
                tier(Some(10_000), "0.001"),
                tier(None, "0.0005"),
            ],
        }
    }

    #[test]
    fn a_valid_plan_is_accepted_and_round_trips_through_json() {
        let plan = Plan::new(spec(pricing(graduated()))).unwrap();
        let json = serde_json::to_string(&plan).unwrap();
        assert!(json.contains(r#""model":"graduated""#), "{json}");
        assert!(json.contains(r#""unit_price":"0.001""#), "{json}");
        assert_eq!(serde_json::from_str::<Plan>(&json).unwrap(), plan);
    }

    #[test]
    fn unordered_tiers_are_rejected_naming_the_tier() {
        let model = PricingModel::Graduated {
            tiers: vec![
                tier(Some(5000), "0.01"),
                tier(Some(1000), "0.02"),
                tier(None, "0"),
            ],
        };
        let err = Plan::new(spec(pricing(model))).unwrap_err();
        assert_eq!(err.field, "pricing.tiers[1].up_to");
        assert!(err.message.contains("overlaps the previous tier"), "{err}");
    }

    #[test]
    fn overlapping_tiers_are_rejected() {
        let model = PricingModel::Volume {
            tiers: vec![
                tier(Some(1000), "0.01"),
                tier(Some(1000), "0.02"),
                tier(None, "0"),
            ],
        };
        let err = Plan::new(spec(pricing(model))).unwrap_err();
        assert_eq!(
            err.to_string().split(':').next(),
            Some("pricing.tiers[1].up_to")
        );
    }

    #[test]
    fn tiers_must_end_open_ended_and_only_once() {
        let closed = PricingModel::Graduated {
            tiers: vec![tier(Some(1000), "0.01")],
        };
        assert_eq!(
            Plan::new(spec(pricing(closed))).unwrap_err().field,
            "pricing.tiers[0].up_to"
        );
        let early = PricingModel::Graduated {
            tiers: vec![tier(None, "0.01"), tier(None, "0.01")],
        };
        assert_eq!(
            Plan::new(spec(pricing(early))).unwrap_err().field,
            "pricing.tiers[0].up_to"
        );
        let empty = PricingModel::Graduated { tiers: vec![] };
        assert_eq!(
            Plan::new(spec(pricing(empty))).unwrap_err().field,
            "pricing.tiers"
        );
    }

    #[test]
    fn bad_scalars_are_named() {
        let mut s = spec(pricing(PricingModel::Flat));
        s.rate.requests_per_second = 0;
        assert_eq!(Plan::new(s).unwrap_err().field, "rate.requests_per_second");

        let mut s = spec(pricing(PricingModel::Flat));
        s.rate.burst = 0;
        assert_eq!(Plan::new(s).unwrap_err().field, "rate.burst");

        let mut s = spec(pricing(PricingModel::Flat));
        s.name = "  ".into();
        assert_eq!(Plan::new(s).unwrap_err().field, "name");

        let mut s = spec(pricing(PricingModel::Flat));
        s.quota = Some(Quota {
            included_requests: 0,
            cap: QuotaCap::Soft,
        });
        assert_eq!(Plan::new(s).unwrap_err().field, "quota.included_requests");

        let mut s = spec(pricing(PricingModel::Flat));
        s.pricing.base_fee_minor = -1;
        assert_eq!(Plan::new(s).unwrap_err().field, "pricing.base_fee_minor");

        let negative = PricingModel::Graduated {
            tiers: vec![tier(None, "-0.01")],
        };
        assert_eq!(
            Plan::new(spec(pricing(negative))).unwrap_err().field,
            "pricing.tiers[0].unit_price"
        );

        let zero_package = PricingModel::Package {
            package_size: 0,
            package_price: dec("5"),
        };
        assert_eq!(
            Plan::new(spec(pricing(zero_package))).unwrap_err().field,
            "pricing.package_size"
        );
    }

    #[test]
    fn deserialising_an_invalid_plan_fails_with_the_field_name() {
        let mut value = serde_json::to_value(spec(pricing(PricingModel::Flat))).unwrap();
        value["rate"]["burst"] = 0.into();
        let err = serde_json::from_value::<Plan>(value).unwrap_err();
        assert!(err.to_string().contains("rate.burst"), "{err}");
    }

    #[test]
    fn unknown_fields_are_rejected() {
        let mut value = serde_json::to_value(spec(pricing(PricingModel::Flat))).unwrap();
        value["rate"]["per_minute"] = 5.into();
        assert!(serde_json::from_value::<Plan>(value).is_err());
    }

    #[test]
    fn graduated_pricing_charges_each_tier_for_its_units() {
        let rated = pricing(graduated()).rate(25_000);
        let quantities: Vec<u64> = rated.charges.iter().map(|c| c.quantity).collect();
        assert_eq!(quantities, [1000, 9000, 15_000]);
        // 9000 × 0.001 + 15000 × 0.0005
        assert_eq!(rated.total(), dec("16.5"));
    }

    #[test]
    fn volume_pricing_charges_all_units_at_the_reached_tier() {
        let model = PricingModel::Volume {
            tiers: vec![tier(Some(1000), "0.01"), tier(None, "0.005")],
        };
        assert_eq!(pricing(model.clone()).rate(1000).total(), dec("10"));
        assert_eq!(pricing(model).rate(1001).total(), dec("5.005"));
    }

    #[test]
    fn package_pricing_charges_started_blocks_after_included_units() {
        let mut p = pricing(PricingModel::Package {
            package_size: 1000,
            package_price: dec("2.50"),
        });
        p.included_units = 10_000;
        assert_eq!(p.rate(10_000).total(), Decimal::ZERO);
        assert_eq!(p.rate(10_001).total(), dec("2.50"));
        assert_eq!(p.rate(12_000).total(), dec("5.00"));
        assert_eq!(p.rate(12_001).billable_units, 2001);
    }

    #[test]
    fn flat_fees_apply_once_per_tier_reached() {
        let model = PricingModel::Graduated {
            tiers: vec![
                Tier {
                    up_to: Some(100),
                    unit_price: Decimal::ZERO,
                    flat_fee: dec("10"),
                },
                Tier {
                    up_to: None,
                    unit_price: dec("0.1"),
                    flat_fee: dec("1"),
                },
            ],
        };
        assert_eq!(pricing(model.clone()).rate(50).total(), dec("10"));
        assert_eq!(pricing(model).rate(110).total(), dec("12"));
    }

    fn arb_tiers() -> impl Strategy<Value = Vec<Tier>> {
        (
            proptest::collection::btree_set(1u64..1_000_000, 0..5),
            proptest::collection::vec(0i64..100_000, 6),
        )
            .prop_map(|(bounds, prices)| {
                let mut tiers: Vec<Tier> = bounds
                    .into_iter()
                    .zip(&prices)
                    .map(|(up_to, &p)| Tier {
                        up_to: Some(up_to),
                        unit_price: Decimal::new(p, 5),
                        flat_fee: Decimal::ZERO,
                    })
                    .collect();
                tiers.push(Tier {
                    up_to: None,
                    unit_price: Decimal::new(prices[5], 5),
                    flat_fee: Decimal::ZERO,
                });
                tiers
            })
    }

    proptest! {
        #[test]
        fn generated_ascending_tiers_are_valid(tiers in arb_tiers()) {
            let result = Plan::new(spec(pricing(PricingModel::Graduated { tiers })));
            prop_assert!(result.is_ok(), "{:?}", result);
        }

        #[test]
        fn graduated_quantities_add_up_and_total_never_decreases(tiers in arb_tiers(), units in 0u64..5_000_000, more in 0u64..1_000_000) {
            let p = pricing(PricingModel::Graduated { tiers });
            let rated = p.rate(units);
            prop_assert_eq!(rated.charges.iter().map(|c| c.quantity).sum::<u64>(), units);
            prop_assert!(p.rate(units + more).total() >= rated.total());
        }

        #[test]
        fn volume_total_equals_units_times_one_tier_price(tiers in arb_tiers(), units in 1u64..5_000_000) {
            let p = pricing(PricingModel::Volume { tiers: tiers.clone() });
            let total = p.rate(units).total();
            prop_assert!(tiers.iter().any(|t| Decimal::from(units) * t.unit_price == total));
        }

        #[test]
        fn package_charge_is_blocks_times_price(size in 1u64..10_000, units in 0u64..10_000_000, included in 0u64..100_000) {
            let mut p = pricing(PricingModel::Package { package_size: size, package_price: dec("1.25") });
            p.included_units = included;
            let blocks = units.saturating_sub(included).div_ceil(size);
            prop_assert_eq!(p.rate(units).total(), Decimal::from(blocks) * dec("1.25"));
        }

        #[test]
        fn shuffled_tiers_are_rejected_unless_already_ascending(tiers in arb_tiers(), seed in any::<u64>()) {
            let mut bounded: Vec<Tier> = tiers.iter().filter(|t| t.up_to.is_some()).cloned().collect();
            prop_assume!(bounded.len() >= 2);
            let n = bounded.len();
            bounded.swap(usize::try_from(seed % n as u64).unwrap(), n - 1);
            bounded.push(tiers.last().unwrap().clone());
            let ascending = bounded.windows(2).all(|w| w[1].up_to.is_none() || w[0].up_to < w[1].up_to);
            let result = Plan::new(spec(pricing(PricingModel::Graduated { tiers: bounded })));
            prop_assert_eq!(result.is_ok(), ascending);
        }
    }
}
