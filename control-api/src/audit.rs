//! The audit trail: every write records who did what to which resource, in the same
//! transaction as the write, so a change and its record commit or roll back together.

use serde_json::Value;
use tokio_postgres::Transaction;
use uuid::Uuid;

use crate::auth::Principal;
use crate::error::ApiError;

/// One audited write.
#[derive(Debug)]
pub struct AuditEntry<'a> {
    /// The tenant the resource belongs to, if any.
    pub tenant_id: Option<Uuid>,
    /// What happened, e.g. `api_key.revoke`.
    pub action: &'a str,
    /// The resource kind, e.g. `api_key`.
    pub resource_type: &'a str,
    /// The resource's id.
    pub resource_id: &'a str,
    /// Non-secret details of the change.
    pub details: Value,
}

/// Writes `entry` as done by `actor` inside `tx`.
pub async fn record(
    tx: &Transaction<'_>,
    actor: &Principal,
    entry: AuditEntry<'_>,
) -> Result<(), ApiError> {
    tx.execute(
        "INSERT INTO audit_log (actor_user_id, actor, tenant_id, action, resource_type, \
                                resource_id, details) \
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
        &[
            &actor.user_id,
            &actor.email,
            &entry.tenant_id,
            &entry.action,
            &entry.resource_type,
            &entry.resource_id,
            &entry.details,
        ],
    )
    .await?;
    Ok(())
}
