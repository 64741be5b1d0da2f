//! Usage series and the current period, read through the API from `usage_minute` rows
//! inserted directly, as metering writes them.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use actix_web::test::TestRequest;
use serde_json::{Value, json};
use support::Harness;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use tollgate_invoicing::rollup;
use uuid::Uuid;

/// One `usage_minute` row.
struct Minute<'a> {
    at: &'a str,
    tenant: Option<Uuid>,
    key: &'a str,
    route: Uuid,
    class: i16,
    requests: i64,
    billable: i64,
    request_bytes: i64,
    response_bytes: i64,
    latency_sum: i64,
}

async fn insert_minutes(h: &Harness, rows: &[Minute<'_>]) {
    let client = h.db.client().await;
    for r in rows {
        let at = OffsetDateTime::parse(r.at, &Rfc3339).unwrap();
        client
            .execute(
                "INSERT INTO usage_minute (minute, tenant_id, key_id, route_id, status_class, \
                   request_count, billable_count, request_bytes, response_bytes, latency_us_sum) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
                &[
                    &at,
                    &r.tenant,
                    &r.key,
                    &r.route,
                    &r.class,
                    &r.requests,
                    &r.billable,
                    &r.request_bytes,
                    &r.response_bytes,
                    &r.latency_sum,
                ],
            )
            .await
            .unwrap();
    }
}

fn get(uri: &str, token: &str) -> TestRequest {
    TestRequest::get()
        .uri(uri)
        .insert_header(("Authorization", format!("Bearer {token}")))
}

/// `[start, requests, billable, request_bytes, response_bytes, average_latency_us]` per bucket.
fn buckets(series: &Value) -> Vec<Value> {
    series["buckets"]
        .as_array()
        .unwrap_or_else(|| panic!("no buckets: {series}"))
        .iter()
        .map(|b| {
            json!([
                b["start"],
                b["requests"],
                b["billable"],
                b["request_bytes"],
                b["response_bytes"],
                b["average_latency_us"]
            ])
        })
        .collect()
}

const OTHER_KEY: &str = "OtherKey00000002";

/// Rows around midnight of 2026-03-01/02 for the own tenant, plus rows of the foreign
/// tenant and of no tenant in the same minutes that must never show.
async fn seed_usage(h: &Harness) -> Uuid {
    let own = Some(h.own.id);
    let key = h.own.key_id.as_str();
    let route = h.own.route_id;
    let other_route = Uuid::now_v7();
    let row = |at, tenant, key, route, class, n: [i64; 5]| Minute {
        at,
        tenant,
        key,
        route,
        class,
        requests: n[0],
        billable: n[1],
        request_bytes: n[2],
        response_bytes: n[3],
        latency_sum: n[4],
    };
    insert_minutes(
        h,
        &[
            row(
                "2026-03-01T23:58:00Z",
                own,
                key,
                route,
                2,
                [10, 10, 1000, 5000, 10_000],
            ),
            row(
                "2026-03-01T23:58:00Z",
                own,
                OTHER_KEY,
                route,
                4,
                [4, 0, 400, 200, 2002],
            ),
            row(
                "2026-03-01T23:59:00Z",
                own,
                key,
                other_route,
                2,
                [3, 3, 300, 900, 301],
            ),
            row(
                "2026-03-02T00:00:00Z",
                own,
                key,
                route,
                2,
                [5, 5, 500, 2500, 5003],
            ),
            row(
                "2026-03-02T00:02:00Z",
                own,
                OTHER_KEY,
                other_route,
                5,
                [1, 0, 100, 50, 7],
            ),
            row(
                "2026-03-02T01:30:00Z",
                own,
                key,
                route,
                2,
                [2, 2, 200, 400, 3],
            ),
            row(
                "2026-03-01T23:58:00Z",
                Some(h.foreign.id),
                &h.foreign.key_id,
                h.foreign.route_id,
                2,
                [1000, 1000, 1, 1, 1_500_000],
            ),
            row(
                "2026-03-02T00:00:00Z",
                None,
                key,
                route,
                2,
                [700, 700, 1, 1, 1],
            ),
        ],
    )
    .await;
    other_route
}

#[actix_web::test]
async fn usage_series_are_exact_per_granularity_and_zero_filled() {
    let h = Harness::new().await;
    let app = app!(h);
    seed_usage(&h).await;
    let viewer = h.token(&h.own.viewer);
    let base = format!("/api/v1/tenants/{}/usage", h.own.id);
    let series = |query: &str| get(&format!("{base}?{query}"), &viewer);

    let (status, minutes) = call!(
        app,
        series("granularity=minute&from=2026-03-01T23:57:00Z&to=2026-03-02T00:03:00Z")
    );
    assert_eq!(status, 200, "{minutes}");
    assert_eq!(minutes["granularity"], "minute");
    assert_eq!(minutes["from"], "2026-03-01T23:57:00Z");
    assert_eq!(minutes["to"], "2026-03-02T00:03:00Z");
    assert_eq!(
        buckets(&minutes),
        [
            json!(["2026-03-01T23:57:00Z", 0, 0, 0, 0, null]),
            // 12002 µs / 14 requests = 857.3
            json!(["2026-03-01T23:58:00Z", 14, 10, 1400, 5200, 857]),
            json!(["2026-03-01T23:59:00Z", 3, 3, 300, 900, 100]),
            // 5003 / 5 = 1000.6, rounded
            json!(["2026-03-02T00:00:00Z", 5, 5, 500, 2500, 1001]),
            json!(["2026-03-02T00:01:00Z", 0, 0, 0, 0, null]),
            json!(["2026-03-02T00:02:00Z", 1, 0, 100, 50, 7]),
        ]
    );

    // Bounds inside a bucket are widened to whole buckets.
    let (status, hours) = call!(
        app,
        series("granularity=hour&from=2026-03-01T22:10:00Z&to=2026-03-02T01:00:01Z")
    );
    assert_eq!(status, 200, "{hours}");
    assert_eq!(
        (&hours["from"], &hours["to"]),
        (
            &json!("2026-03-01T22:00:00Z"),
            &json!("2026-03-02T02:00:00Z")
        )
    );
    assert_eq!(
        buckets(&hours),
        [
            json!(["2026-03-01T22:00:00Z", 0, 0, 0, 0, null]),
            // 12303 / 17 = 723.7
            json!(["2026-03-01T23:00:00Z", 17, 13, 1700, 6100, 724]),
            // 5010 / 6 = 835
            json!(["2026-03-02T00:00:00Z", 6, 5, 600, 2550, 835]),
            // 3 / 2 = 1.5, half away from zero
            json!(["2026-03-02T01:00:00Z", 2, 2, 200, 400, 2]),
        ]
    );

    let days = "granularity=day&from=2026-02-28T00:00:00Z&to=2026-03-03T00:00:00Z";
    let (status, by_day) = call!(app, series(days));
    assert_eq!(status, 200, "{by_day}");
    assert_eq!(
        buckets(&by_day),
        [
            json!(["2026-02-28T00:00:00Z", 0, 0, 0, 0, null]),
            json!(["2026-03-01T00:00:00Z", 17, 13, 1700, 6100, 724]),
            // 5013 / 8 = 626.6
            json!(["2026-03-02T00:00:00Z", 8, 7, 800, 2950, 627]),
        ]
    );

    // The foreign tenant's platform-admin view holds only its own row.
    let platform = h.token(&h.platform);
    let (status, foreign) = call!(
        app,
        get(
            &format!("/api/v1/tenants/{}/usage?{days}", h.foreign.id),
            &platform
        )
    );
    assert_eq!(status, 200);
    assert_eq!(
        buckets(&foreign)[1],
        json!(["2026-03-01T00:00:00Z", 1000, 1000, 1, 1, 1500])
    );
    assert_eq!(buckets(&foreign)[2][1], 0);
    // Another tenant's users cannot read it at all.
    let (status, _) = call!(
        app,
        get(
            &format!("/api/v1/tenants/{}/usage?{days}", h.foreign.id),
            &viewer
        )
    );
    assert_eq!(status, 404);
}

#[actix_web::test]
async fn usage_series_filters_by_key_route_and_status_class() {
    let h = Harness::new().await;
    let app = app!(h);
    let other_route = seed_usage(&h).await;
    let admin = h.token(&h.own.admin);
    let days = "granularity=day&from=2026-03-01T00:00:00Z&to=2026-03-03T00:00:00Z";
    let filtered = |filter: String| {
        get(
            &format!("/api/v1/tenants/{}/usage?{days}&{filter}", h.own.id),
            &admin,
        )
    };
    let cases = [
        (
            format!("key_id={OTHER_KEY}"),
            // 2002 / 4 = 500.5, half away from zero
            [json!([4, 0, 400, 200, 501]), json!([1, 0, 100, 50, 7])],
        ),
        (
            format!("route_id={other_route}"),
            [json!([3, 3, 300, 900, 100]), json!([1, 0, 100, 50, 7])],
        ),
        (
            "status_class=2xx".to_owned(),
            // 10301 / 13 = 792.4; 5006 / 7 = 715.1
            [
                json!([13, 13, 1300, 5900, 792]),
                json!([7, 7, 700, 2900, 715]),
            ],
        ),
        (
            "status_class=5xx".to_owned(),
            [json!([0, 0, 0, 0, null]), json!([1, 0, 100, 50, 7])],
        ),
        (
            format!(
                "key_id={}&status_class=2xx&route_id={}",
                h.own.key_id, h.own.route_id
            ),
            [
                json!([10, 10, 1000, 5000, 1000]),
                json!([7, 7, 700, 2900, 715]),
            ],
        ),
        // The foreign tenant's key filters the own tenant's usage down to nothing.
        (
            format!("key_id={}", h.foreign.key_id),
            [json!([0, 0, 0, 0, null]), json!([0, 0, 0, 0, null])],
        ),
    ];
    for (filter, want) in cases {
        let (status, series) = call!(app, filtered(filter.clone()));
        assert_eq!(status, 200, "{filter}: {series}");
        let got: Vec<Value> = buckets(&series)
            .into_iter()
            .map(|b| json!(b.as_array().unwrap()[1..]))
            .collect();
        assert_eq!(got, want, "{filter}");
    }
}

#[actix_web::test]
async fn bad_usage_parameters_are_422_naming_the_field_never_5xx() {
    let h = Harness::new().await;
    let app = app!(h);
    let admin = h.token(&h.own.admin);
    let base = format!("/api/v1/tenants/{}/usage", h.own.id);
    let cases = [
        ("granularity=week", "granularity"),
        ("granularity=MINUTE", "granularity"),
        ("from=yesterday", "from"),
        ("from=2026-03-01T00:00:00", "from"),
        ("from=99999-01-01T00:00:00Z", "from"),
        ("from=0001-01-01T00:00:00Z&to=2026-03-01T00:00:00Z", "from"),
        ("from=%F0%9F%9A%80", "from"),
        ("to=2026-03-01T00:00:00Z&from=2026-03-01T00:00:00Z", "to"),
        ("to=2026-03-01T00:00:00Z&from=2026-03-02T00:00:00Z", "to"),
        // 1441 minutes, 745 hours, 401 days.
        (
            "granularity=minute&from=2026-03-01T00:00:00Z&to=2026-03-02T00:00:01Z",
            "from",
        ),
        (
            "granularity=hour&from=2026-03-01T00:00:00Z&to=2026-04-01T00:00:01Z",
            "from",
        ),
        (
            "granularity=day&from=2025-01-01T00:00:00Z&to=2026-02-05T00:00:01Z",
            "from",
        ),
        ("key_id=short", "key_id"),
        ("key_id=%E2%80%AEabcdefghijklmn", "key_id"),
        ("key_id=abcdefghijklmnop%00", "key_id"),
        ("route_id=42", "route_id"),
        ("route_id=%00", "route_id"),
        ("status_class=6xx", "status_class"),
        ("status_class=200", "status_class"),
        ("status_class=%C3%A9xx", "status_class"),
    ];
    for (query, field) in cases {
        let (status, body) = call!(app, get(&format!("{base}?{query}"), &admin));
        assert_eq!(
            (
                status,
                body["error"]["code"].as_str(),
                body["error"]["field"].as_str()
            ),
            (422, Some("invalid_field"), Some(field)),
            "{query}: {body}"
        );
    }
    // Just within the limits: a full day of minutes, a 31-day month of hours.
    for query in [
        "granularity=minute&from=2026-03-01T00:00:00Z&to=2026-03-02T00:00:00Z",
        "granularity=hour&from=2026-03-01T00:00:00Z&to=2026-04-01T00:00:00Z",
    ] {
        let (status, body) = call!(app, get(&format!("{base}?{query}"), &admin));
        assert_eq!(status, 200, "{query}: {body}");
    }
    // Not even decodable as a query string: still a 4xx with a code.
    for query in ["from=%FF%FE", "granularity=%", "from=1&from=2"] {
        let (status, body) = call!(app, get(&format!("{base}?{query}"), &admin));
        assert!((400..500).contains(&status), "{query}: {status} {body}");
        assert!(body["error"]["code"].is_string(), "{query}: {body}");
    }
}

/// The first instant of the current UTC month.
fn month_start(now: OffsetDateTime) -> OffsetDateTime {
    now.replace_day(1)
        .unwrap()
        .replace_time(time::Time::MIDNIGHT)
}

#[actix_web::test]
async fn the_current_period_counts_only_this_month_against_the_quota() {
    let h = Harness::new().await;
    let app = app!(h);
    let client = h.db.client().await;
    client
        .execute(
            "UPDATE plans SET quota_included_requests = 1000, quota_cap = 'hard', \
               pricing = pricing || '{\"included_units\": 250}' WHERE id = $1",
            &[&h.own.plan_id],
        )
        .await
        .unwrap();
    let start = month_start(OffsetDateTime::now_utc());
    let last_month = (start - time::Duration::minutes(1))
        .format(&Rfc3339)
        .unwrap();
    let this_month = start.format(&Rfc3339).unwrap();
    let own = Some(h.own.id);
    let rows = [
        (last_month.as_str(), own, h.own.key_id.as_str(), 2, 1000),
        (this_month.as_str(), own, h.own.key_id.as_str(), 2, 300),
        (this_month.as_str(), own, OTHER_KEY, 4, 33),
        (
            this_month.as_str(),
            Some(h.foreign.id),
            h.foreign.key_id.as_str(),
            2,
            5000,
        ),
    ];
    let minutes: Vec<Minute<'_>> = rows
        .iter()
        .map(|&(at, tenant, key, class, billable)| Minute {
            at,
            tenant,
            key,
            route: h.own.route_id,
            class,
            requests: billable + 1,
            billable,
            request_bytes: 0,
            response_bytes: 0,
            latency_sum: 0,
        })
        .collect();
    insert_minutes(&h, &minutes).await;

    let viewer = h.token(&h.own.viewer);
    let (status, current) = call!(
        app,
        get(
            &format!("/api/v1/tenants/{}/usage/current", h.own.id),
            &viewer
        )
    );
    assert_eq!(status, 200, "{current}");
    let end = if start.month() == time::Month::December {
        start
            .replace_year(start.year() + 1)
            .unwrap()
            .replace_month(time::Month::January)
    } else {
        start.replace_month(start.month().next())
    }
    .unwrap();
    assert_eq!(
        current,
        json!({
            "period_start": this_month,
            "period_end": end.format(&Rfc3339).unwrap(),
            "billable_requests": 333,
            "plan": {
                "id": h.own.plan_id,
                "name": format!("plan-{}", h.own.plan_id),
                "included_units": 250,
            },
            "quota": {
                "included_requests": 1000,
                "cap": "hard",
                "remaining": 667,
                "overage": 0,
                "percent_used": 33,
            },
        })
    );

    // Without a subscription: the usage, and no plan, not an error.
    client
        .execute(
            "DELETE FROM subscriptions WHERE tenant_id = $1",
            &[&h.foreign.id],
        )
        .await
        .unwrap();
    let (status, current) = call!(
        app,
        get(
            &format!("/api/v1/tenants/{}/usage/current", h.foreign.id),
            &h.token(&h.foreign.admin)
        )
    );
    assert_eq!(status, 200, "{current}");
    assert_eq!(current["billable_requests"], 5000);
    assert_eq!(
        (&current["plan"], &current["quota"]),
        (&Value::Null, &Value::Null)
    );
    // An unlimited plan has no quota.
    client
        .execute(
            "UPDATE plans SET quota_included_requests = NULL, quota_cap = NULL WHERE id = $1",
            &[&h.own.plan_id],
        )
        .await
        .unwrap();
    let (_, unlimited) = call!(
        app,
        get(
            &format!("/api/v1/tenants/{}/usage/current", h.own.id),
            &h.token(&h.platform)
        )
    );
    assert_eq!(unlimited["quota"], Value::Null);
    assert_eq!(unlimited["plan"]["id"], json!(h.own.plan_id));
    // An unknown tenant is not found, even for a platform admin.
    let (status, _) = call!(
        app,
        get(
            &format!("/api/v1/tenants/{}/usage/current", Uuid::now_v7()),
            &h.token(&h.platform)
        )
    );
    assert_eq!(status, 404);
}

/// What `tollgate-invoicing hourly` does, through its own code: every dirty closed hour
/// recomputed from `usage_minute` and its mark cleared.
async fn roll_up_everything(h: &Harness) {
    let mut client = h.db.client().await;
    let hours = rollup::hours_to_roll_up(&client, OffsetDateTime::now_utc(), 0)
        .await
        .unwrap();
    assert!(
        !hours.is_empty(),
        "the seeded minutes mark their hours dirty"
    );
    for (hour, _) in hours {
        rollup::roll_up_hour(&mut client, hour).await.unwrap();
    }
}

#[actix_web::test]
async fn hour_and_day_series_read_rolled_up_hours_with_the_same_results() {
    let h = Harness::new().await;
    let app = app!(h);
    let other_route = seed_usage(&h).await;
    let viewer = h.token(&h.own.viewer);
    let base = format!("/api/v1/tenants/{}/usage", h.own.id);
    let queries = [
        "granularity=hour&from=2026-03-01T22:00:00Z&to=2026-03-02T02:00:00Z".to_owned(),
        "granularity=day&from=2026-02-28T00:00:00Z&to=2026-03-03T00:00:00Z".to_owned(),
        format!(
            "granularity=hour&from=2026-03-01T22:00:00Z&to=2026-03-02T02:00:00Z&key_id={OTHER_KEY}"
        ),
        format!(
            "granularity=day&from=2026-02-28T00:00:00Z&to=2026-03-03T00:00:00Z&route_id={other_route}"
        ),
        "granularity=hour&from=2026-03-01T22:00:00Z&to=2026-03-02T02:00:00Z&status_class=4xx"
            .to_owned(),
    ];
    let mut from_minutes = Vec::new();
    for q in &queries {
        let (status, series) = call!(app, get(&format!("{base}?{q}"), &viewer));
        assert_eq!(status, 200, "{series}");
        from_minutes.push(buckets(&series));
    }
    roll_up_everything(&h).await;
    let client = h.db.client().await;
    let dirty: i64 = client
        .query_one("SELECT count(*) FROM usage_hour_dirty", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(dirty, 0);
    for (q, expected) in queries.iter().zip(&from_minutes) {
        let (_, series) = call!(app, get(&format!("{base}?{q}"), &viewer));
        assert_eq!(&buckets(&series), expected, "{q}");
    }
    // A late event marks its hour dirty again: read from minutes until rolled up, still exact.
    insert_minutes(
        &h,
        &[Minute {
            at: "2026-03-01T23:30:00Z",
            tenant: Some(h.own.id),
            key: OTHER_KEY,
            route: h.own.route_id,
            class: 4,
            requests: 3,
            billable: 0,
            request_bytes: 30,
            response_bytes: 30,
            latency_sum: 3,
        }],
    )
    .await;
    let (_, series) = call!(app, get(&format!("{base}?{}", queries[0]), &viewer));
    assert_eq!(
        buckets(&series)[1],
        json!(["2026-03-01T23:00:00Z", 20, 13, 1730, 6130, 615])
    );
    roll_up_everything(&h).await;
    let (_, rolled) = call!(app, get(&format!("{base}?{}", queries[0]), &viewer));
    assert_eq!(buckets(&rolled), buckets(&series));
    // The clean hours really come from usage_hour: without their minutes they still show.
    client
        .execute(
            "DELETE FROM usage_minute WHERE minute < '2026-03-02T00:00:00Z'",
            &[],
        )
        .await
        .unwrap();
    let (_, hours_only) = call!(app, get(&format!("{base}?{}", queries[0]), &viewer));
    assert_eq!(buckets(&hours_only), buckets(&series));
}

#[actix_web::test]
async fn the_database_and_the_api_agree_on_the_latency_bucket_bounds() {
    let h = Harness::new().await;
    let bounds: Vec<i64> =
        h.db.client()
            .await
            .query_one("SELECT tollgate_latency_bounds_ms()", &[])
            .await
            .unwrap()
            .get(0);
    let ours: Vec<i64> = tollgate_core::latency::BOUNDS_MS
        .iter()
        .map(|&b| i64::try_from(b).unwrap())
        .collect();
    assert_eq!(bounds, ours);
}

#[actix_web::test]
async fn p95_latency_comes_from_the_histograms_of_minutes_and_of_rolled_up_hours() {
    let h = Harness::new().await;
    let app = app!(h);
    let viewer = h.token(&h.own.viewer);
    let client = h.db.client().await;
    // 22:05: 90 requests under 1 ms; 22:10: 10 requests in [30 ms, 50 ms); 23:00: none.
    // Over the range the 95th of 100 is the 5th of the 10 slow ones: 30 + 20 × 5/10 = 40 ms.
    for (minute, slot, n) in [
        ("2026-03-01T22:05:00Z", 1, 90i64),
        ("2026-03-01T22:10:00Z", 10, 10),
    ] {
        let at = OffsetDateTime::parse(minute, &Rfc3339).unwrap();
        client
            .execute(
                "INSERT INTO usage_minute (minute, tenant_id, key_id, route_id, status_class, \
                   request_count, billable_count, request_bytes, response_bytes, latency_us_sum, \
                   latency_histogram) \
                 VALUES ($1, $2, 'AbCdEf0123456789', $3, 2, $4, $4, 0, 0, 0, \
                         tollgate_latency_histogram_of($5, $4))",
                &[&at, &h.own.id, &h.own.route_id, &n, &slot],
            )
            .await
            .unwrap();
    }
    let uri = format!(
        "/api/v1/tenants/{}/usage?granularity=hour&from=2026-03-01T22:00:00Z&to=2026-03-02T00:00:00Z",
        h.own.id
    );
    let (status, from_minutes) = call!(app, get(&uri, &viewer));
    assert_eq!(status, 200, "{from_minutes}");
    assert_eq!(from_minutes["p95_latency_us"], 40_000);
    assert_eq!(from_minutes["p95_latency_below_us"], 50_000);
    assert_eq!(from_minutes["latency_samples"], 100);
    assert_eq!(from_minutes["buckets"][0]["p95_latency_us"], 40_000);
    assert_eq!(from_minutes["buckets"][1]["p95_latency_us"], Value::Null);
    // Minute buckets: in the fast minute the 95th percentile is the 86th of 90 requests in
    // [0, 1 ms): 1000 µs × 86/90, rounded down.
    let (_, minutes) = call!(
        app,
        get(
            &format!(
                "/api/v1/tenants/{}/usage?granularity=minute&from=2026-03-01T22:05:00Z&to=2026-03-01T22:06:00Z",
                h.own.id
            ),
            &viewer
        )
    );
    assert_eq!(minutes["p95_latency_us"], 955);
    // Rolled up into usage_hour, and then with the minutes gone, the answer is the same.
    roll_up_everything(&h).await;
    let (_, rolled) = call!(app, get(&uri, &viewer));
    assert_eq!(rolled, from_minutes);
    client
        .execute("DELETE FROM usage_minute", &[])
        .await
        .unwrap();
    let (_, hours_only) = call!(app, get(&uri, &viewer));
    assert_eq!(hours_only, from_minutes);
}
