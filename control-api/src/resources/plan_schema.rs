//! The OpenAPI shapes of a plan's `rate`, `quota` and `pricing`, as precise as
//! [`tollgate_core::Plan::new`] validates them (bounds, enums, decimal patterns, and `pricing`
//! as a `oneOf` on its `model` tag).
//!
//! The domain types in `tollgate-core` stay free of framework derives, so these structs exist
//! only to describe them; a unit test below checks that the examples they describe are what
//! the domain types accept.

#![allow(dead_code)]

use serde::Deserialize;
use utoipa::ToSchema;

// Integer fields stop at 2^53 - 1 in the document: exact in every JSON parser (and in
// JavaScript), and far beyond any real plan; the server itself accepts up to i64.

/// A decimal amount in major units as the plan validation accepts it: not negative, at most
/// 1 000 000 000 and 12 decimal places.
const DECIMAL_PATTERN: &str = r"^(0|[1-9][0-9]{0,8})(\.[0-9]{1,12})?$|^1000000000(\.0{1,12})?$";

/// Request rate: a GCRA with a sustained rate and a burst allowance.
#[derive(Debug, Deserialize, ToSchema)]
#[schema(as = RatePolicy)]
pub struct RatePolicyDoc {
    /// Sustained requests per second.
    #[schema(minimum = 1, maximum = 10_000_000)]
    requests_per_second: u32,
    /// Requests that may arrive at once after a quiet period.
    #[schema(minimum = 1, maximum = 10_000_000)]
    burst: u32,
    /// Decide every request with one atomic Redis script: exact cluster-wide, at the cost of a
    /// Redis round trip per request. Default `false`.
    #[schema(required = false, default = false)]
    strict: bool,
}

/// Changes to a rate policy; absent fields stay as they are.
#[derive(Debug, Deserialize, ToSchema)]
#[schema(as = RatePatch)]
pub struct RatePatchDoc {
    /// Sustained requests per second.
    #[schema(minimum = 1, maximum = 10_000_000)]
    requests_per_second: Option<u32>,
    /// Burst.
    #[schema(minimum = 1, maximum = 10_000_000)]
    burst: Option<u32>,
    /// One atomic Redis script per request.
    strict: Option<bool>,
}

/// What happens at the monthly quota: `hard` refuses (429 `quota_exceeded`), `soft` passes
/// and bills the overage.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
#[schema(as = QuotaCap)]
pub enum QuotaCapDoc {
    /// Refused beyond the quota.
    Hard,
    /// Passed and billed beyond the quota.
    Soft,
}

/// Monthly request allowance (UTC calendar month).
#[derive(Debug, Deserialize, ToSchema)]
#[schema(as = Quota)]
pub struct QuotaDoc {
    /// Requests included per month.
    #[schema(minimum = 1, maximum = 9_007_199_254_740_991_i64)]
    included_requests: u64,
    /// Hard or soft cap.
    cap: QuotaCapDoc,
}

/// What the proxy does with cluster-wide limits when Redis cannot be reached: `open` keeps
/// serving on local limits, `closed` refuses.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
#[schema(as = FailureMode)]
pub enum FailureModeDoc {
    /// Local limits (limit ÷ replicas).
    Open,
    /// Refuse requests that need the cluster limit.
    Closed,
}

/// ISO 4217 currencies that plans may bill in.
#[derive(Debug, Deserialize, ToSchema)]
#[schema(as = CurrencyCode)]
#[allow(clippy::upper_case_acronyms)]
pub enum CurrencyCodeDoc {
    AUD,
    BHD,
    BRL,
    CAD,
    CHF,
    CLP,
    CNY,
    CZK,
    DKK,
    EUR,
    GBP,
    HKD,
    INR,
    ISK,
    JOD,
    JPY,
    KRW,
    KWD,
    MXN,
    NOK,
    NZD,
    OMR,
    PLN,
    SEK,
    SGD,
    TND,
    USD,
    VND,
    ZAR,
}

/// One price tier: units up to `up_to` (inclusive, cumulative) cost `unit_price` each, plus
/// `flat_fee` once if any unit falls in it. `up_to` ascends strictly; the last tier, and only
/// it, is open-ended (`null`).
#[derive(Debug, Deserialize, ToSchema)]
#[schema(as = PriceTier)]
pub struct TierDoc {
    /// Upper bound of the tier; `null` for the last.
    #[schema(
        minimum = 1,
        maximum = 9_007_199_254_740_991_i64,
        nullable,
        required = true
    )]
    up_to: Option<u64>,
    /// Price per unit, a decimal string in major units (`"0.0004"`).
    #[schema(
        pattern = r"^(0|[1-9][0-9]{0,8})(\.[0-9]{1,12})?$|^1000000000(\.0{1,12})?$",
        example = "0.0004"
    )]
    unit_price: String,
    /// Fee when the tier is reached, a decimal string in major units; default `"0"`.
    #[schema(
        pattern = r"^(0|[1-9][0-9]{0,8})(\.[0-9]{1,12})?$|^1000000000(\.0{1,12})?$",
        required = false
    )]
    flat_fee: String,
}

/// `model` of flat pricing.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum FlatModel {
    /// No usage charge.
    Flat,
}

/// `model` of graduated pricing.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum GraduatedModel {
    /// Each unit priced by the tier it falls in.
    Graduated,
}

/// `model` of volume pricing.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum VolumeModel {
    /// All units priced by the tier the total falls in.
    Volume,
}

/// `model` of package pricing.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum PackageModel {
    /// Units sold in blocks.
    Package,
}

/// Flat pricing: the base fee covers everything.
#[derive(Debug, Deserialize, ToSchema)]
pub struct FlatPricing {
    /// `flat`.
    #[schema(inline)]
    model: FlatModel,
    /// Currency of every amount in the plan.
    currency: CurrencyCodeDoc,
    /// Monthly base fee in minor units of `currency`.
    #[schema(minimum = 0, maximum = 9_007_199_254_740_991_i64)]
    base_fee_minor: i64,
    /// Units included in the base fee; default 0.
    #[schema(minimum = 0, maximum = 9_007_199_254_740_991_i64, required = false)]
    included_units: u64,
}

/// Graduated pricing: each unit beyond the included ones is priced by the tier it falls in.
#[derive(Debug, Deserialize, ToSchema)]
pub struct GraduatedPricing {
    /// `graduated`.
    #[schema(inline)]
    model: GraduatedModel,
    /// Currency of every amount in the plan.
    currency: CurrencyCodeDoc,
    /// Monthly base fee in minor units of `currency`.
    #[schema(minimum = 0, maximum = 9_007_199_254_740_991_i64)]
    base_fee_minor: i64,
    /// Units included in the base fee; default 0.
    #[schema(minimum = 0, maximum = 9_007_199_254_740_991_i64, required = false)]
    included_units: u64,
    /// Ascending tiers; the last is open-ended.
    #[schema(min_items = 1)]
    tiers: Vec<TierDoc>,
}

/// Volume pricing: all units beyond the included ones are priced by the tier the total falls in.
#[derive(Debug, Deserialize, ToSchema)]
pub struct VolumePricing {
    /// `volume`.
    #[schema(inline)]
    model: VolumeModel,
    /// Currency of every amount in the plan.
    currency: CurrencyCodeDoc,
    /// Monthly base fee in minor units of `currency`.
    #[schema(minimum = 0, maximum = 9_007_199_254_740_991_i64)]
    base_fee_minor: i64,
    /// Units included in the base fee; default 0.
    #[schema(minimum = 0, maximum = 9_007_199_254_740_991_i64, required = false)]
    included_units: u64,
    /// Ascending tiers; the last is open-ended.
    #[schema(min_items = 1)]
    tiers: Vec<TierDoc>,
}

/// Package pricing: units beyond the included ones are sold in blocks; a started block is
/// charged in full.
#[derive(Debug, Deserialize, ToSchema)]
pub struct PackagePricing {
    /// `package`.
    #[schema(inline)]
    model: PackageModel,
    /// Currency of every amount in the plan.
    currency: CurrencyCodeDoc,
    /// Monthly base fee in minor units of `currency`.
    #[schema(minimum = 0, maximum = 9_007_199_254_740_991_i64)]
    base_fee_minor: i64,
    /// Units included in the base fee; default 0.
    #[schema(minimum = 0, maximum = 9_007_199_254_740_991_i64, required = false)]
    included_units: u64,
    /// Units per block.
    #[schema(minimum = 1, maximum = 9_007_199_254_740_991_i64)]
    package_size: u64,
    /// Price per block, a decimal string in major units.
    #[schema(
        pattern = r"^(0|[1-9][0-9]{0,8})(\.[0-9]{1,12})?$|^1000000000(\.0{1,12})?$",
        example = "5"
    )]
    package_price: String,
}

/// What a subscription pays each month, by pricing `model`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(untagged)]
#[schema(as = Pricing, discriminator(property_name = "model", mapping(
    ("flat" = "#/components/schemas/FlatPricing"),
    ("graduated" = "#/components/schemas/GraduatedPricing"),
    ("volume" = "#/components/schemas/VolumePricing"),
    ("package" = "#/components/schemas/PackagePricing"),
)))]
pub enum PricingDoc {
    /// `flat`.
    Flat(FlatPricing),
    /// `graduated`.
    Graduated(GraduatedPricing),
    /// `volume`.
    Volume(VolumePricing),
    /// `package`.
    Package(PackagePricing),
}

#[cfg(test)]
mod tests {
    use tollgate_core::Currency;
    use utoipa::PartialSchema;

    use super::*;

    fn enum_values<T: PartialSchema>() -> Vec<String> {
        let schema = serde_json::to_value(T::schema()).unwrap();
        schema["enum"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap().to_owned())
            .collect()
    }

    #[test]
    fn every_documented_currency_is_accepted_and_the_next_code_is_not() {
        let codes = enum_values::<CurrencyCodeDoc>();
        assert_eq!(codes.len(), 29);
        for code in &codes {
            assert!(Currency::from_code(code).is_ok(), "{code}");
        }
        assert!(Currency::from_code("XXX").is_err());
    }

    #[test]
    fn the_decimal_pattern_matches_the_prices_validation_accepts() {
        let schema = serde_json::to_value(TierDoc::schema()).unwrap();
        assert_eq!(
            schema["properties"]["unit_price"]["pattern"],
            DECIMAL_PATTERN
        );
        assert_eq!(
            schema["required"],
            serde_json::json!(["up_to", "unit_price"])
        );
    }
}
