//! Tenants' state as every service reads it.

use serde::{Deserialize, Serialize};

/// Whether a tenant may use the platform. Stored as `tenants.status`; decoded with
/// [`crate::StoredText`] / `FromStr`, which refuse unknown values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TenantStatus {
    /// Traffic is served and users may sign in.
    Active,
    /// Every request is refused with 403 and users cannot sign in.
    Suspended,
}
