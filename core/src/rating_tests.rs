//! Unit and property tests of [`super`]: hand-computed invoices and the rating invariants.

use proptest::prelude::*;
use rust_decimal::Decimal;
use time::macros::datetime;
use uuid::Uuid;

use super::*;
use crate::plan::Tier;

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

fn growth() -> Pricing {
    Pricing {
        currency: Currency::USD,
        base_fee_minor: 4900,
        included_units: 1000,
        model: PricingModel::Graduated {
            tiers: vec![
                tier(Some(10_000), "0.001"),
                tier(Some(100_000), "0.0008"),
                tier(None, "0.0005"),
            ],
        },
    }
}

fn starter() -> Pricing {
    Pricing {
        currency: Currency::USD,
        base_fee_minor: 1000,
        included_units: 100,
        model: PricingModel::Package {
            package_size: 1000,
            package_price: dec("2.50"),
        },
    }
}

fn slice(pricing: Pricing, start: OffsetDateTime, end: OffsetDateTime, units: u64) -> Slice {
    Slice {
        subscription_id: Uuid::now_v7(),
        plan_id: Uuid::now_v7(),
        plan_name: "Plan".into(),
        pricing,
        start,
        end,
        units,
    }
}

fn november() -> BillingPeriod {
    BillingPeriod::parse("2026-11").unwrap()
}

fn amounts(rated: &RatedInvoice) -> Vec<(LineKind, u64, i64)> {
    rated
        .lines
        .iter()
        .map(|l| (l.kind, l.quantity, l.amount.amount_minor()))
        .collect()
}

#[test]
fn periods_are_utc_calendar_months() {
    let p = BillingPeriod::parse("2026-12").unwrap();
    assert_eq!(p.start(), datetime!(2026-12-01 00:00 UTC));
    assert_eq!(p.end(), datetime!(2027-01-01 00:00 UTC));
    assert_eq!(p.previous().unwrap().to_string(), "2026-11");
    assert_eq!(
        BillingPeriod::containing(datetime!(2026-03-01 00:30 +01:00))
            .unwrap()
            .to_string(),
        "2026-02"
    );
    for bad in ["2026-13", "2026-1", "26-01", "2026/01", "", "1999-12"] {
        assert!(BillingPeriod::parse(bad).is_err(), "{bad}");
    }
}

#[test]
fn a_whole_month_on_graduated_pricing_matches_the_hand_computed_invoice() {
    // 25,500 requests, 1,000 included: 10,000 × 0.001 = 10.00 and 14,500 × 0.0008 = 11.60.
    let period = november();
    let rated = rate_invoice(
        &period,
        &[slice(growth(), period.start(), period.end(), 25_500)],
        &[],
    )
    .unwrap();
    assert_eq!(
        amounts(&rated),
        [
            (LineKind::BaseFee, 1, 4900),
            (LineKind::Usage, 10_000, 1000),
            (LineKind::Usage, 14_500, 1160)
        ]
    );
    assert_eq!(rated.total.amount_minor(), 7060);
    assert_eq!(rated.usage[0].units, 25_500);
    assert_eq!(rated.usage[0].usage_minor, 2160);
}

#[test]
fn a_plan_change_mid_month_prorates_fee_and_included_units_by_time() {
    // Starter for 10 of 30 days, then Growth for 20.
    let period = november();
    let switch = datetime!(2026-11-11 00:00 UTC);
    let rated = rate_invoice(
        &period,
        &[
            slice(starter(), period.start(), switch, 2_533),
            slice(growth(), switch, period.end(), 12_000),
        ],
        &[],
    )
    .unwrap();
    // Starter: fee ⌊1000 × 1/3⌋ = 333; included ⌊100/3⌋ = 33; 2,500 billable → 3 blocks × 2.50.
    // Growth: fee ⌊4900 × 2/3⌋ = 3266; included ⌊1000 × 2/3⌋ = 666; 11,334 billable →
    // 10,000 × 0.001 = 10.00 and 1,334 × 0.0008 = 1.0672 → 1.07.
    assert_eq!(
        amounts(&rated),
        [
            (LineKind::BaseFee, 1, 333),
            (LineKind::Usage, 3, 750),
            (LineKind::BaseFee, 1, 3266),
            (LineKind::Usage, 10_000, 1000),
            (LineKind::Usage, 1_334, 107)
        ]
    );
    assert_eq!(rated.total.amount_minor(), 5456);
    assert_eq!(rated.usage[0].included_units, 33);
    assert_eq!(rated.usage[1].included_units, 666);
    assert!(
        rated.lines[0]
            .description
            .contains("2026-11-01 to 2026-11-11 (prorated)")
    );
}

#[test]
fn late_usage_is_billed_once_as_the_difference_to_what_was_billed() {
    let period = november();
    let original = rate_invoice(
        &period,
        &[slice(growth(), period.start(), period.end(), 25_500)],
        &[],
    )
    .unwrap();
    let billed = &original.usage[0];
    let mut late = slice(growth(), period.start(), period.end(), 26_500);
    late.subscription_id = billed.subscription_id;
    let correction = CorrectionInput {
        invoice_id: Uuid::now_v7(),
        period,
        slice: late,
        included_units: billed.included_units,
        billed_units: billed.units,
        billed_usage_minor: billed.usage_minor,
    };
    let december = BillingPeriod::parse("2026-12").unwrap();
    let rated = rate_invoice(
        &december,
        &[slice(growth(), december.start(), december.end(), 0)],
        std::slice::from_ref(&correction),
    )
    .unwrap();
    // 15,500 × 0.0008 = 12.40 instead of 11.60: 0.80 more for 1,000 late requests.
    assert_eq!(
        amounts(&rated),
        [
            (LineKind::BaseFee, 1, 4900),
            (LineKind::Correction, 1000, 80)
        ]
    );
    assert_eq!(
        rated.lines[1].corrects,
        Some((correction.invoice_id, period.start()))
    );
    assert!(
        rated.lines[1]
            .description
            .starts_with("Correction for 2026-11")
    );
    // Nothing new: no line.
    let settled = CorrectionInput {
        billed_units: 26_500,
        billed_usage_minor: 2240,
        ..correction
    };
    let rated = rate_invoice(
        &december,
        &[slice(growth(), december.start(), december.end(), 0)],
        &[settled],
    )
    .unwrap();
    assert_eq!(amounts(&rated), [(LineKind::BaseFee, 1, 4900)]);
}

#[test]
fn edge_cases_are_defined() {
    let period = november();
    // No subscription: nothing to rate.
    assert_eq!(rate_invoice(&period, &[], &[]), Err(RatingError::NoSlices));
    // Zero usage: the base fee alone.
    let rated = rate_invoice(
        &period,
        &[slice(growth(), period.start(), period.end(), 0)],
        &[],
    )
    .unwrap();
    assert_eq!(amounts(&rated), [(LineKind::BaseFee, 1, 4900)]);
    // A flat plan: usage is never charged.
    let flat = Pricing {
        model: PricingModel::Flat,
        ..growth()
    };
    let rated = rate_invoice(
        &period,
        &[slice(flat, period.start(), period.end(), 1_000_000)],
        &[],
    )
    .unwrap();
    assert_eq!(amounts(&rated), [(LineKind::BaseFee, 1, 4900)]);
    // A free plan with no usage: no lines, a zero total.
    let free = Pricing {
        base_fee_minor: 0,
        model: PricingModel::Flat,
        ..growth()
    };
    let rated = rate_invoice(
        &period,
        &[slice(free, period.start(), period.end(), 5)],
        &[],
    )
    .unwrap();
    assert!(rated.lines.is_empty());
    assert!(rated.total.is_zero());
    // Two currencies cannot share an invoice.
    let euro = Pricing {
        currency: Currency::EUR,
        ..growth()
    };
    let mid = datetime!(2026-11-15 00:00 UTC);
    assert!(matches!(
        rate_invoice(
            &period,
            &[
                slice(growth(), period.start(), mid, 1),
                slice(euro, mid, period.end(), 1)
            ],
            &[]
        ),
        Err(RatingError::MixedCurrencies { .. })
    ));
    // A slice outside its period is refused.
    assert!(matches!(
        rate_invoice(
            &period,
            &[slice(growth(), datetime!(2026-10-31 00:00 UTC), mid, 1)],
            &[]
        ),
        Err(RatingError::SliceOutsidePeriod { .. })
    ));
}

fn arb_tiers() -> impl Strategy<Value = Vec<Tier>> {
    (
        prop::collection::btree_set(1u64..1_000_000, 0..5),
        prop::collection::vec((0u32..100_000, 0u32..1000), 6),
    )
        .prop_map(|(bounds, prices)| {
            let mut bounds: Vec<Option<u64>> = bounds.into_iter().map(Some).collect();
            bounds.push(None);
            bounds
                .into_iter()
                .zip(prices)
                .map(|(up_to, (price, flat))| Tier {
                    up_to,
                    unit_price: Decimal::new(i64::from(price), 6),
                    flat_fee: Decimal::new(i64::from(flat), 2),
                })
                .collect()
        })
}

fn arb_pricing() -> impl Strategy<Value = Pricing> {
    (
        0i64..100_000,
        0u64..10_000,
        prop_oneof![
            Just(PricingModel::Flat),
            arb_tiers().prop_map(|tiers| PricingModel::Graduated { tiers }),
            arb_tiers().prop_map(|tiers| PricingModel::Volume { tiers }),
            (1u64..10_000, 0u32..100_000).prop_map(|(size, price)| PricingModel::Package {
                package_size: size,
                package_price: Decimal::new(i64::from(price), 3),
            }),
        ],
    )
        .prop_map(|(base_fee_minor, included_units, model)| Pricing {
            currency: Currency::USD,
            base_fee_minor,
            included_units,
            model,
        })
}

/// The graduated price computed tier by tier, independently of `Pricing::rate`.
fn by_tier(tiers: &[Tier], billable: u64) -> Decimal {
    let mut lower = 0u64;
    let mut total = Decimal::ZERO;
    for t in tiers {
        let upper = t.up_to.unwrap_or(u64::MAX);
        let units = billable.min(upper).saturating_sub(lower);
        if units > 0 {
            total += Decimal::from(units) * t.unit_price + t.flat_fee;
        }
        lower = upper;
    }
    total
}

proptest! {
    #[test]
    fn graduated_totals_are_monotonic_and_the_sum_over_tiers(tiers in arb_tiers(), a in 0u64..3_000_000, b in 0u64..3_000_000) {
        let pricing = Pricing { included_units: 0, model: PricingModel::Graduated { tiers: tiers.clone() }, ..growth() };
        let (low, high) = (a.min(b), a.max(b));
        prop_assert!(pricing.rate(low).total() <= pricing.rate(high).total());
        prop_assert_eq!(pricing.rate(high).total(), by_tier(&tiers, high));
    }

    #[test]
    fn volume_pricing_applies_exactly_one_tier(tiers in arb_tiers(), units in 1u64..3_000_000) {
        let pricing = Pricing { included_units: 0, model: PricingModel::Volume { tiers: tiers.clone() }, ..growth() };
        let rated = pricing.rate(units);
        prop_assert_eq!(rated.charges.len(), 1);
        let expected = tiers.iter().find(|t| t.up_to.is_none_or(|u| units <= u)).unwrap();
        prop_assert_eq!(rated.charges[0].quantity, units);
        prop_assert_eq!(rated.charges[0].unit_price, expected.unit_price);
    }

    #[test]
    fn lines_are_never_negative_and_sum_to_the_total(
        first in arb_pricing(), second in arb_pricing(),
        split in 1i64..2_591_999, u1 in 0u64..2_000_000, u2 in 0u64..2_000_000,
    ) {
        let period = november();
        let mid = period.start() + time::Duration::seconds(split);
        let rated = rate_invoice(&period, &[
            slice(first, period.start(), mid, u1),
            slice(second, mid, period.end(), u2),
        ], &[]).unwrap();
        prop_assert!(rated.lines.iter().all(|l| l.amount.amount_minor() >= 0));
        let sum: i64 = rated.lines.iter().map(|l| l.amount.amount_minor()).sum();
        prop_assert_eq!(sum, rated.total.amount_minor());
        let usage: i64 = rated.usage.iter().map(|u| u.usage_minor).sum();
        let fees: i64 = rated.lines.iter().filter(|l| l.kind == LineKind::BaseFee).map(|l| l.amount.amount_minor()).sum();
        prop_assert_eq!(usage + fees, sum);
    }

    #[test]
    fn two_prorated_slices_never_bill_more_base_fee_than_the_whole_month(
        fee_a in 0i64..10_000_000, fee_b in 0i64..10_000_000, split in 0i64..=2_592_000,
        micros in 0i64..1_000_000,
    ) {
        let period = november();
        let mid = (period.start() + time::Duration::seconds(split) + time::Duration::microseconds(micros)).min(period.end());
        let a = prorated_base_fee_minor(fee_a, &period, period.start(), mid);
        let b = prorated_base_fee_minor(fee_b, &period, mid, period.end());
        prop_assert!(a >= 0 && b >= 0);
        prop_assert!(a + b <= fee_a.max(fee_b));
        let same = prorated_base_fee_minor(fee_a, &period, mid, period.end());
        prop_assert!(a + same <= fee_a);
        prop_assert_eq!(prorated_base_fee_minor(fee_a, &period, period.start(), period.end()), fee_a);
        let included = prorated_included_units(u64::try_from(fee_b).unwrap(), &period, period.start(), mid)
            + prorated_included_units(u64::try_from(fee_b).unwrap(), &period, mid, period.end());
        prop_assert!(included <= u64::try_from(fee_b).unwrap());
    }
}
