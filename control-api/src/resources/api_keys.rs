//! API keys of a tenant: create (the secret is returned exactly once), list, read, revoke,
//! and rotate with an overlap period during which the old key keeps working.
//!
//! Only the keyed HMAC of a key is stored. Changes reach running proxies through the
//! `tollgate_config` notification the `api_keys` triggers send.

use actix_web::{HttpResponse, web};
use serde::{Deserialize, Serialize};
use serde_json::json;
use time::OffsetDateTime;
use tokio_postgres::Row;
use tollgate_core::{ApiKey, KeyId};
use utoipa::ToSchema;
use uuid::Uuid;

use crate::audit::{self, AuditEntry};
use crate::auth::Principal;
use crate::body::JsonBody;
use crate::error::{ApiError, ErrorBody};
use crate::pagination::{Page, PageQuery, after_created, created_position};
use crate::state::AppState;
use crate::validate;

/// Default overlap of a rotation: the old key keeps working this long.
pub const DEFAULT_OVERLAP_SECONDS: u32 = 3600;
/// Longest overlap of a rotation (7 days).
pub const MAX_OVERLAP_SECONDS: u32 = 7 * 24 * 3600;
/// Most scopes on one key.
const MAX_SCOPES: usize = 32;

/// An API key as lists show it: never the secret.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ApiKeyView {
    /// The key id (the part after `tg_<env>_`).
    pub id: String,
    /// A label.
    pub name: String,
    /// `tg_<env>_<id>`: identifies the key without revealing it.
    pub display_prefix: String,
    /// `active`, `expired` (past `expires_at`) or `revoked`.
    pub status: String,
    /// Scopes a route may require.
    pub scopes: Vec<String>,
    /// When it was created.
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    /// When it stops working (set by rotation).
    #[serde(with = "time::serde::rfc3339::option")]
    pub expires_at: Option<OffsetDateTime>,
    /// When it was revoked.
    #[serde(with = "time::serde::rfc3339::option")]
    pub revoked_at: Option<OffsetDateTime>,
    /// When the proxy last saw it (kept current from metering's batches, so it trails real
    /// use by up to a batch interval).
    #[serde(with = "time::serde::rfc3339::option")]
    pub last_used_at: Option<OffsetDateTime>,
    /// The key that replaced it, once rotated.
    pub replaced_by: Option<String>,
}

/// A new key: its view and its secret, which is never shown again.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct CreatedApiKey {
    /// The stored key.
    pub key: ApiKeyView,
    /// The whole key to send as `Authorization: Bearer …`; shown only in this response.
    pub secret: String,
    /// On rotation: the previous key, now with its `expires_at`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub previous: Option<ApiKeyView>,
}

/// A new key's properties.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateApiKey {
    /// A label, at most 200 characters.
    #[schema(max_length = 200)]
    pub name: Option<String>,
    /// Scopes: 1 to 64 of `a-z 0-9 : . _ -` each, at most 32.
    pub scopes: Option<Vec<String>>,
    /// When the key stops working (RFC 3339, in the future); never, if absent.
    #[serde(default, with = "time::serde::rfc3339::option")]
    pub expires_at: Option<OffsetDateTime>,
}

/// How to rotate.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RotateApiKey {
    /// Seconds the old key keeps working (0 to 604800; default 3600).
    #[schema(minimum = 0, maximum = 604800)]
    pub overlap_seconds: Option<u32>,
}

const COLUMNS: &str = "id, name, display_prefix, status, scopes, created_at, expires_at, \
                       revoked_at, last_used_at, replaced_by";

fn view(row: &Row) -> ApiKeyView {
    let status: String = row.get(3);
    let expires_at: Option<OffsetDateTime> = row.get(6);
    let status =
        if status == "active" && expires_at.is_some_and(|at| at <= OffsetDateTime::now_utc()) {
            "expired".to_owned()
        } else {
            status
        };
    ApiKeyView {
        id: row.get(0),
        name: row.get(1),
        display_prefix: row.get(2),
        status,
        scopes: row.get(4),
        created_at: row.get(5),
        expires_at,
        revoked_at: row.get(7),
        last_used_at: row.get(8),
        replaced_by: row.get(9),
    }
}

fn validate_scopes(scopes: Option<Vec<String>>) -> Result<Vec<String>, ApiError> {
    let scopes = scopes.unwrap_or_default();
    if scopes.len() > MAX_SCOPES {
        return Err(ApiError::invalid(
            "scopes",
            format!("at most {MAX_SCOPES} scopes"),
        ));
    }
    for (i, scope) in scopes.iter().enumerate() {
        validate::scope(&format!("scopes[{i}]"), scope)?;
    }
    Ok(scopes)
}

/// A key id from a path; anything that cannot be one is simply not found.
fn key_id(raw: &str) -> Result<KeyId, ApiError> {
    KeyId::parse(raw).map_err(|_| ApiError::NotFound)
}

/// Lists a tenant's keys, newest first.
#[utoipa::path(get, operation_id = "listApiKeys", path = "/api/v1/tenants/{tenant_id}/api-keys", tag = "api-keys",
    security(("bearer" = [])),
    params(("tenant_id" = Uuid, Path, description = "Tenant id"), PageQuery),
    responses((status = 200, body = Page<ApiKeyView>), (status = "4XX", body = ErrorBody)))]
pub async fn list(
    principal: Principal,
    state: web::Data<AppState>,
    path: web::Path<Uuid>,
    query: web::Query<PageQuery>,
) -> Result<HttpResponse, ApiError> {
    let tenant_id = path.into_inner();
    principal.require_reader_of(tenant_id)?;
    let limit = query.limit()?;
    let (after_at, after_id) = after_created::<String>(&query)?;
    let client = state.pool.get().await?;
    let rows = client
        .query(
            &format!(
                "SELECT {COLUMNS} FROM api_keys WHERE tenant_id = $1 \
                   AND ($2::timestamptz IS NULL OR (created_at, id) < ($2, $3)) \
                 ORDER BY created_at DESC, id DESC LIMIT $4"
            ),
            &[&tenant_id, &after_at, &after_id, &query.fetch_limit()?],
        )
        .await?;
    let items = rows.iter().map(view).collect();
    Ok(
        HttpResponse::Ok().json(Page::from_fetched(items, limit, |k: &ApiKeyView| {
            created_position(k.created_at, &k.id)
        })),
    )
}

/// Creates a key; the response carries its secret, which is never shown again.
#[utoipa::path(post, operation_id = "createApiKey", path = "/api/v1/tenants/{tenant_id}/api-keys", tag = "api-keys",
    security(("bearer" = [])), request_body = CreateApiKey,
    params(("tenant_id" = Uuid, Path, description = "Tenant id")),
    responses((status = 201, body = CreatedApiKey), (status = "4XX", body = ErrorBody)))]
pub async fn create(
    principal: Principal,
    state: web::Data<AppState>,
    path: web::Path<Uuid>,
    JsonBody(body): JsonBody<CreateApiKey>,
) -> Result<HttpResponse, ApiError> {
    let tenant_id = path.into_inner();
    principal.require_admin_of(tenant_id)?;
    let name = validate::optional_text("name", body.name.as_deref().unwrap_or(""), 200)?;
    let scopes = validate_scopes(body.scopes)?;
    if body
        .expires_at
        .is_some_and(|at| at <= OffsetDateTime::now_utc())
    {
        return Err(ApiError::invalid("expires_at", "must be in the future"));
    }
    let mut client = state.pool.get().await?;
    let tx = client.transaction().await?;
    let exists = tx
        .query_opt("SELECT 1 FROM tenants WHERE id = $1", &[&tenant_id])
        .await?;
    if exists.is_none() {
        return Err(ApiError::NotFound);
    }
    let (key, row) = insert_key(&state, &tx, tenant_id, &name, &scopes, body.expires_at).await?;
    let created = view(&row);
    audit::record(
        &tx,
        &principal,
        AuditEntry {
            tenant_id: Some(tenant_id),
            action: "api_key.create",
            resource_type: "api_key",
            resource_id: key.id().as_str(),
            details: json!({
                "name": name,
                "scopes": scopes,
                "expires_at": body.expires_at.map(|at| at.unix_timestamp()),
            }),
        },
    )
    .await?;
    tx.commit().await?;
    tracing::info!(%tenant_id, key = %key.display_prefix(), "API key created.");
    Ok(HttpResponse::Created().json(CreatedApiKey {
        key: created,
        secret: key.expose().to_owned(),
        previous: None,
    }))
}

async fn insert_key(
    state: &AppState,
    tx: &tokio_postgres::Transaction<'_>,
    tenant_id: Uuid,
    name: &str,
    scopes: &[String],
    expires_at: Option<OffsetDateTime>,
) -> Result<(ApiKey, Row), ApiError> {
    let key = ApiKey::generate(state.key_env).map_err(|e| ApiError::Internal(e.to_string()))?;
    let row = tx
        .query_one(
            &format!(
                "INSERT INTO api_keys (id, tenant_id, name, display_prefix, secret_hmac, scopes, \
                                       expires_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING {COLUMNS}"
            ),
            &[
                &key.id().as_str(),
                &tenant_id,
                &name,
                &key.display_prefix(),
                &key.hash(&state.key_pepper).as_bytes().as_slice(),
                &scopes,
                &expires_at,
            ],
        )
        .await?;
    Ok((key, row))
}

/// One key.
#[utoipa::path(get, operation_id = "getApiKey", path = "/api/v1/tenants/{tenant_id}/api-keys/{key_id}", tag = "api-keys",
    security(("bearer" = [])),
    params(("tenant_id" = Uuid, Path, description = "Tenant id"),
           ("key_id" = String, Path, description = "Key id")),
    responses((status = 200, body = ApiKeyView), (status = "4XX", body = ErrorBody)))]
pub async fn get(
    principal: Principal,
    state: web::Data<AppState>,
    path: web::Path<(Uuid, String)>,
) -> Result<HttpResponse, ApiError> {
    let (tenant_id, raw_id) = path.into_inner();
    principal.require_reader_of(tenant_id)?;
    let id = key_id(&raw_id)?;
    let client = state.pool.get().await?;
    let row = client
        .query_opt(
            &format!("SELECT {COLUMNS} FROM api_keys WHERE tenant_id = $1 AND id = $2"),
            &[&tenant_id, &id.as_str()],
        )
        .await?
        .ok_or(ApiError::NotFound)?;
    Ok(HttpResponse::Ok().json(view(&row)))
}

/// Revokes a key at once; revoking a revoked key changes nothing.
#[utoipa::path(post, operation_id = "revokeApiKey", path = "/api/v1/tenants/{tenant_id}/api-keys/{key_id}/revoke",
    tag = "api-keys", security(("bearer" = [])),
    params(("tenant_id" = Uuid, Path, description = "Tenant id"),
           ("key_id" = String, Path, description = "Key id")),
    responses((status = 200, body = ApiKeyView), (status = "4XX", body = ErrorBody)))]
pub async fn revoke(
    principal: Principal,
    state: web::Data<AppState>,
    path: web::Path<(Uuid, String)>,
) -> Result<HttpResponse, ApiError> {
    let (tenant_id, raw_id) = path.into_inner();
    principal.require_admin_of(tenant_id)?;
    let id = key_id(&raw_id)?;
    let mut client = state.pool.get().await?;
    let tx = client.transaction().await?;
    let row = tx
        .query_opt(
            &format!(
                "UPDATE api_keys SET status = 'revoked', revoked_at = coalesce(revoked_at, now()) \
                 WHERE tenant_id = $1 AND id = $2 RETURNING {COLUMNS}"
            ),
            &[&tenant_id, &id.as_str()],
        )
        .await?
        .ok_or(ApiError::NotFound)?;
    audit::record(
        &tx,
        &principal,
        AuditEntry {
            tenant_id: Some(tenant_id),
            action: "api_key.revoke",
            resource_type: "api_key",
            resource_id: id.as_str(),
            details: json!({}),
        },
    )
    .await?;
    tx.commit().await?;
    Ok(HttpResponse::Ok().json(view(&row)))
}

/// Replaces a key with a new one (same name and scopes); the old key keeps working for
/// `overlap_seconds`, so clients can switch without an outage.
#[utoipa::path(post, operation_id = "rotateApiKey", path = "/api/v1/tenants/{tenant_id}/api-keys/{key_id}/rotate",
    tag = "api-keys", security(("bearer" = [])), request_body = RotateApiKey,
    params(("tenant_id" = Uuid, Path, description = "Tenant id"),
           ("key_id" = String, Path, description = "Key id")),
    responses((status = 201, body = CreatedApiKey),
        (status = 409, description = "The key is revoked, or already rotated to a successor that is active", body = ErrorBody),
        (status = "4XX", body = ErrorBody)))]
pub async fn rotate(
    principal: Principal,
    state: web::Data<AppState>,
    path: web::Path<(Uuid, String)>,
    JsonBody(body): JsonBody<RotateApiKey>,
) -> Result<HttpResponse, ApiError> {
    let (tenant_id, raw_id) = path.into_inner();
    principal.require_admin_of(tenant_id)?;
    let id = key_id(&raw_id)?;
    let overlap = body.overlap_seconds.unwrap_or(DEFAULT_OVERLAP_SECONDS);
    if overlap > MAX_OVERLAP_SECONDS {
        return Err(ApiError::invalid(
            "overlap_seconds",
            format!("must be at most {MAX_OVERLAP_SECONDS}"),
        ));
    }
    let mut client = state.pool.get().await?;
    let tx = client.transaction().await?;
    let old = tx
        .query_opt(
            "SELECT o.name, o.scopes, o.status, s.id \
               FROM api_keys o LEFT JOIN api_keys s ON s.id = o.replaced_by \
                    AND s.status = 'active' AND (s.expires_at IS NULL OR s.expires_at > now()) \
              WHERE o.tenant_id = $1 AND o.id = $2 FOR UPDATE OF o",
            &[&tenant_id, &id.as_str()],
        )
        .await?
        .ok_or(ApiError::NotFound)?;
    if old.get::<_, &str>(2) != "active" {
        return Err(ApiError::Conflict {
            code: "key_revoked",
            field: None,
            message: "a revoked key cannot be rotated; create a new one".into(),
        });
    }
    // The row lock above serialises concurrent rotations: the second sees the first's
    // successor here.
    if let Some(successor) = old.get::<_, Option<String>>(3) {
        return Err(ApiError::Conflict {
            code: "key_already_rotated",
            field: None,
            message: format!(
                "this key was already rotated and its successor {successor} is active; rotate \
                 or revoke that one instead"
            ),
        });
    }
    let (name, scopes): (String, Vec<String>) = (old.get(0), old.get(1));
    let (key, row) = insert_key(&state, &tx, tenant_id, &name, &scopes, None).await?;
    // An earlier, shorter expiry stands: rotation never extends a key's life.
    let previous = tx
        .query_one(
            &format!(
                "UPDATE api_keys SET expires_at = least(coalesce(expires_at, 'infinity'), \
                        now() + make_interval(secs => $3)), replaced_by = $4 \
                 WHERE tenant_id = $1 AND id = $2 RETURNING {COLUMNS}"
            ),
            &[
                &tenant_id,
                &id.as_str(),
                &f64::from(overlap),
                &key.id().as_str(),
            ],
        )
        .await?;
    audit::record(
        &tx,
        &principal,
        AuditEntry {
            tenant_id: Some(tenant_id),
            action: "api_key.rotate",
            resource_type: "api_key",
            resource_id: id.as_str(),
            details: json!({ "new_key_id": key.id().as_str(), "overlap_seconds": overlap }),
        },
    )
    .await?;
    tx.commit().await?;
    Ok(HttpResponse::Created().json(CreatedApiKey {
        key: view(&row),
        secret: key.expose().to_owned(),
        previous: Some(view(&previous)),
    }))
}
