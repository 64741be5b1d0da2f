//! Strict plans: one atomic Redis script per request decides exactly, cluster-wide. A failed
//! or slow script opens the breaker and the request is decided locally.

use std::sync::LazyLock;
use std::sync::atomic::Ordering;
use std::time::Duration;

use redis::Script;
use redis::aio::MultiplexedConnection;
use tollgate_core::plan::QuotaCap;
use tollgate_core::{Plan, TenantId};

use super::redis_keys::{QUOTA_TTL_SECONDS, micros, quota_key, rate_key};
use super::tenant_state::TenantLimits;
use super::{LimitDecision, LimitVerdict, Limiter, QuotaState};
use crate::gcra::Gcra;

/// One GCRA decision (and quota reservation) in Redis. Answers {verdict, backlog µs, used}:
/// verdict 1 allowed, 0 rate limited, 2 quota exceeded.
/// KEYS: rate, quota. ARGV: period µs, tolerance µs, quota limit, hard (1/0),
/// has quota (1/0), quota TTL s.
pub(super) const STRICT_SCRIPT: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local tat = tonumber(redis.call('GET', KEYS[1]) or '0')
if tat < now then tat = now end
local used = 0
if ARGV[5] == '1' then used = tonumber(redis.call('GET', KEYS[2]) or '0') end
if ARGV[4] == '1' and used >= tonumber(ARGV[3]) then
  return {2, math.floor(tat - now), used}
end
if tat - now > tonumber(ARGV[2]) then
  return {0, math.floor(tat - now), used}
end
tat = tat + tonumber(ARGV[1])
redis.call('SET', KEYS[1], string.format('%.3f', tat), 'PX', math.ceil((tat - now) / 1000) + 60000)
if ARGV[5] == '1' then
  used = redis.call('INCR', KEYS[2])
  redis.call('EXPIRE', KEYS[2], tonumber(ARGV[6]))
end
return {1, math.floor(tat - now), used}
";

/// A Redis connection and the key prefix, for strict-mode decisions; installed by the sync
/// service once Redis answers.
#[derive(Debug)]
pub(super) struct StrictClient {
    pub(super) connection: MultiplexedConnection,
    pub(super) prefix: String,
    pub(super) timeout: Duration,
}

/// Redis' answer to a strict decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct StrictReply {
    verdict: LimitVerdict,
    backlog_nanos: i64,
    quota_used: u64,
}

impl Limiter {
    /// One atomic Redis script decides; `None` when Redis failed (the breaker is open now and
    /// the caller decides locally).
    pub(super) async fn check_strict(
        &self,
        tenant: TenantId,
        plan: &Plan,
        entry: &TenantLimits,
    ) -> Option<LimitDecision> {
        let client = self.strict_connection.load_full()?;
        let month = self.month.load(Ordering::Acquire);
        let outcome = tokio::time::timeout(
            client.timeout,
            strict_decision(
                client.connection.clone(),
                &client.prefix,
                tenant,
                plan,
                month,
            ),
        )
        .await;
        let reply = match outcome {
            Ok(Ok(reply)) => reply,
            Ok(Err(error)) => {
                tracing::debug!(%error, "Strict rate-limit script failed; deciding locally.");
                self.breaker
                    .record_failure(&format_args!("strict rate-limit script failed: {error}"));
                return None;
            }
            Err(_) => {
                tracing::debug!("Strict rate-limit script timed out; deciding locally.");
                self.breaker
                    .record_failure(&"strict rate-limit script timed out");
                return None;
            }
        };
        let quota = plan.quota().map(|q| QuotaState {
            limit: q.included_requests,
            used: reply.quota_used,
            cap: q.cap,
        });
        if let Some(state) = quota {
            entry.quota_synced.store(state.used, Ordering::Release);
        }
        let rate = entry
            .cluster
            .from_backlog(reply.backlog_nanos, reply.verdict == LimitVerdict::Allowed);
        Some(LimitDecision {
            verdict: reply.verdict,
            policy: entry.policy,
            rate,
            quota,
        })
    }
}

async fn strict_decision(
    mut conn: MultiplexedConnection,
    prefix: &str,
    tenant: TenantId,
    plan: &Plan,
    month: u32,
) -> redis::RedisResult<StrictReply> {
    let gcra = Gcra::new(plan.rate());
    let quota = plan.quota();
    static SCRIPT: LazyLock<Script> = LazyLock::new(|| Script::new(STRICT_SCRIPT));
    let (verdict, backlog_us, used): (i64, i64, u64) = SCRIPT
        .key(rate_key(prefix, tenant))
        .key(quota_key(prefix, tenant, month))
        .arg(micros(gcra.period()))
        .arg(micros(gcra.tolerance()))
        .arg(quota.map_or(0, |q| q.included_requests))
        .arg(u8::from(quota.is_some_and(|q| q.cap == QuotaCap::Hard)))
        .arg(u8::from(quota.is_some()))
        .arg(QUOTA_TTL_SECONDS)
        .invoke_async(&mut conn)
        .await?;
    let verdict = match verdict {
        1 => LimitVerdict::Allowed,
        0 => LimitVerdict::RateLimited,
        2 => LimitVerdict::QuotaExceeded,
        other => {
            return Err(redis::RedisError::from((
                redis::ErrorKind::UnexpectedReturnType,
                "unknown strict verdict",
                other.to_string(),
            )));
        }
    };
    Ok(StrictReply {
        verdict,
        backlog_nanos: backlog_us.saturating_mul(1000),
        quota_used: used,
    })
}
