//! Writing a batch: one statement, so one transaction, that inserts the events with
//! `ON CONFLICT DO NOTHING`, adds exactly the rows it inserted to `usage_minute` (counts, bytes,
//! the latency sum and the latency histogram, all sums, so exact under any split), and moves
//! each key's `last_used_at` to its newest event in the batch.
//!
//! Arrays are bound as parameters and expanded with `unnest`, so a batch of any size is one
//! round trip with no SQL built from data. Duplicates (a replayed batch, a rebalance) insert
//! nothing and so add nothing to the roll-up.

use std::time::Duration;

use time::OffsetDateTime;
use tokio_postgres::{Client, NoTls, Statement};
use tollgate_core::UsageEvent;
use uuid::Uuid;

const INSERT_BATCH: &str = "
WITH batch AS (
    SELECT * FROM unnest($1::uuid[], $2::timestamptz[], $3::uuid[], $4::text[], $5::uuid[],
                         $6::text[], $7::int2[], $8::text[], $9::int8[], $10::int8[],
                         $11::int8[], $12::int8[], $13::text[])
        AS b(event_id, event_time, tenant_id, key_id, route_id, method, status, outcome,
             request_bytes, response_bytes, upstream_latency_us, total_latency_us, source)
),
inserted AS (
    INSERT INTO usage_events (event_id, event_time, tenant_id, key_id, route_id, method, status,
                              outcome, request_bytes, response_bytes, upstream_latency_us,
                              total_latency_us, source)
    SELECT * FROM batch
    ON CONFLICT DO NOTHING
    RETURNING event_time, tenant_id, key_id, route_id, status, outcome, request_bytes,
              response_bytes, total_latency_us
),
-- One row per (minute, tenant, key, route, status class, latency slot), then one per minute
-- row with its histogram built from those counts: set-based, no per-event function calls
-- beyond the slot.
slotted AS (
    SELECT date_trunc('minute', event_time) AS minute, tenant_id, key_id, route_id,
           status / 100 AS status_class, tollgate_latency_slot(total_latency_us) AS slot,
           count(*) AS requests, count(*) FILTER (WHERE outcome = 'proxied') AS billable,
           sum(request_bytes) AS request_bytes, sum(response_bytes) AS response_bytes,
           sum(total_latency_us) AS latency_us
    FROM inserted
    GROUP BY 1, 2, 3, 4, 5, 6
),
rolled AS (
    INSERT INTO usage_minute AS m (minute, tenant_id, key_id, route_id, status_class,
                                   request_count, billable_count, request_bytes,
                                   response_bytes, latency_us_sum, latency_histogram)
    SELECT minute, tenant_id, key_id, route_id, status_class,
           sum(requests), sum(billable), sum(request_bytes), sum(response_bytes),
           sum(latency_us),
           tollgate_latency_histogram_sum(tollgate_latency_histogram_of(slot, requests))
    FROM slotted
    GROUP BY 1, 2, 3, 4, 5
    -- A fixed order takes row locks in the same order in every transaction: no deadlocks
    -- between replicas that touch the same minute rows during a rebalance.
    ORDER BY 1, 2, 3, 4, 5
    ON CONFLICT ON CONSTRAINT usage_minute_key DO UPDATE SET
        request_count = m.request_count + EXCLUDED.request_count,
        billable_count = m.billable_count + EXCLUDED.billable_count,
        request_bytes = m.request_bytes + EXCLUDED.request_bytes,
        response_bytes = m.response_bytes + EXCLUDED.response_bytes,
        latency_us_sum = m.latency_us_sum + EXCLUDED.latency_us_sum,
        latency_histogram = tollgate_latency_histogram_add(m.latency_histogram,
                                                           EXCLUDED.latency_histogram)
    RETURNING 1
),
-- Keys' last use, from the same batch: one write per key per batch instead of one per
-- request. A wrong secret is not a use. SKIP LOCKED: a key row another transaction holds
-- (a revocation, another replica's batch) is simply updated by a later batch, never waited
-- on or deadlocked over. Only last_used_at changes, so the api_keys trigger stays silent.
used AS (
    SELECT key_id, max(event_time) AS last_used_at
    FROM inserted
    WHERE key_id IS NOT NULL AND outcome <> 'unauthorized'
    GROUP BY key_id
),
touchable AS (
    SELECT k.id, u.last_used_at
    FROM api_keys k JOIN used u ON u.key_id = k.id
    WHERE k.last_used_at IS NULL OR k.last_used_at < u.last_used_at
    ORDER BY k.id
    FOR UPDATE OF k SKIP LOCKED
),
touched AS (
    UPDATE api_keys k SET last_used_at = t.last_used_at
    FROM touchable t
    WHERE k.id = t.id
    RETURNING 1
)
SELECT (SELECT count(*) FROM inserted), (SELECT count(*) FROM touched)";

/// What a stored batch did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StoredBatch {
    /// Events inserted now.
    pub inserted: u64,
    /// Events already stored (by an earlier delivery of the same event).
    pub duplicates: u64,
    /// API keys whose `last_used_at` moved forward.
    pub keys_touched: u64,
}

/// One PostgreSQL connection with the batch statement prepared; reconnects when it breaks.
#[derive(Debug)]
pub struct UsageStore {
    url: String,
    connection: Option<(Client, Statement)>,
}

const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Upper bound on one batch write; a wedged server must not hold the partition forever.
const STATEMENT_TIMEOUT_MS: u32 = 30_000;

impl UsageStore {
    /// A store that connects on first use.
    pub fn new(url: &str) -> Self {
        Self {
            url: url.to_owned(),
            connection: None,
        }
    }

    /// A connected client (for maintenance work), connecting if needed.
    pub async fn client(&mut self) -> Result<&Client, tokio_postgres::Error> {
        Ok(&self.connected().await?.0)
    }

    async fn connected(&mut self) -> Result<&(Client, Statement), tokio_postgres::Error> {
        let connection = match self.connection.take() {
            Some(open) if !open.0.is_closed() => open,
            _ => self.connect().await?,
        };
        Ok(self.connection.insert(connection))
    }

    async fn connect(&self) -> Result<(Client, Statement), tokio_postgres::Error> {
        let mut config: tokio_postgres::Config = self.url.parse()?;
        config
            .connect_timeout(CONNECT_TIMEOUT)
            .options(format!("-c statement_timeout={STATEMENT_TIMEOUT_MS}"))
            .application_name("tollgate-metering");
        let (client, connection) = config.connect(NoTls).await?;
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::warn!(error = %e, "PostgreSQL connection ended.");
            }
        });
        let statement = client.prepare(INSERT_BATCH).await?;
        Ok((client, statement))
    }

    /// Stores `events` in one transaction. On error nothing was stored and the connection is
    /// dropped, so the next call reconnects.
    pub async fn store(
        &mut self,
        events: &[UsageEvent],
    ) -> Result<StoredBatch, tokio_postgres::Error> {
        if events.is_empty() {
            return Ok(StoredBatch {
                inserted: 0,
                duplicates: 0,
                keys_touched: 0,
            });
        }
        let columns = Columns::from(events);
        let result = async {
            let (client, statement) = self.connected().await?;
            client
                .query_one(
                    statement,
                    &[
                        &columns.event_id,
                        &columns.event_time,
                        &columns.tenant_id,
                        &columns.key_id,
                        &columns.route_id,
                        &columns.method,
                        &columns.status,
                        &columns.outcome,
                        &columns.request_bytes,
                        &columns.response_bytes,
                        &columns.upstream_latency_us,
                        &columns.total_latency_us,
                        &columns.source,
                    ],
                )
                .await
        }
        .await;
        match result {
            Ok(row) => {
                let inserted = u64::try_from(row.get::<_, i64>(0)).unwrap_or(0);
                Ok(StoredBatch {
                    inserted,
                    duplicates: (events.len() as u64).saturating_sub(inserted),
                    keys_touched: u64::try_from(row.get::<_, i64>(1)).unwrap_or(0),
                })
            }
            Err(e) => {
                self.connection = None;
                Err(e)
            }
        }
    }
}

/// The batch as one array per column.
struct Columns<'a> {
    event_id: Vec<Uuid>,
    event_time: Vec<OffsetDateTime>,
    tenant_id: Vec<Option<Uuid>>,
    key_id: Vec<Option<&'a str>>,
    route_id: Vec<Option<Uuid>>,
    method: Vec<&'a str>,
    status: Vec<i16>,
    outcome: Vec<&'static str>,
    request_bytes: Vec<i64>,
    response_bytes: Vec<i64>,
    upstream_latency_us: Vec<Option<i64>>,
    total_latency_us: Vec<i64>,
    source: Vec<&'a str>,
}

/// Decoding already refused values beyond i64; saturate rather than panic regardless.
fn signed(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

impl<'a> From<&'a [UsageEvent]> for Columns<'a> {
    fn from(events: &'a [UsageEvent]) -> Self {
        let n = events.len();
        let mut c = Columns {
            event_id: Vec::with_capacity(n),
            event_time: Vec::with_capacity(n),
            tenant_id: Vec::with_capacity(n),
            key_id: Vec::with_capacity(n),
            route_id: Vec::with_capacity(n),
            method: Vec::with_capacity(n),
            status: Vec::with_capacity(n),
            outcome: Vec::with_capacity(n),
            request_bytes: Vec::with_capacity(n),
            response_bytes: Vec::with_capacity(n),
            upstream_latency_us: Vec::with_capacity(n),
            total_latency_us: Vec::with_capacity(n),
            source: Vec::with_capacity(n),
        };
        for e in events {
            c.event_id.push(*e.id.as_uuid());
            c.event_time.push(e.time);
            c.tenant_id.push(e.tenant_id.map(|t| *t.as_uuid()));
            c.key_id.push(e.data.key_id.as_ref().map(|k| k.as_str()));
            c.route_id.push(e.data.route_id.map(|r| *r.as_uuid()));
            c.method.push(&e.data.method);
            c.status
                .push(i16::try_from(e.data.status).unwrap_or(i16::MAX));
            c.outcome.push(e.data.outcome.as_str());
            c.request_bytes.push(signed(e.data.request_bytes));
            c.response_bytes.push(signed(e.data.response_bytes));
            c.upstream_latency_us
                .push(e.data.upstream_latency_us.map(signed));
            c.total_latency_us.push(signed(e.data.total_latency_us));
            c.source.push(&e.source);
        }
        c
    }
}
