//! A tenant's JWT issuers: tokens with this `iss` and `aud`, signed with the pinned algorithm
//! and key, authenticate as the tenant at the proxy. Tenant admins manage them.
//!
//! The key material is write-only: it is never returned, logged or audited. The (issuer,
//! audience) pair is unique within a tenant only: registering one says nothing about other
//! tenants, and the proxy finds a token's tenant by the key that verifies it.

use actix_web::{HttpResponse, web};
use serde::{Deserialize, Serialize};
use serde_json::json;
use time::OffsetDateTime;
use tokio_postgres::Row;
use utoipa::ToSchema;
use uuid::Uuid;

use crate::audit::{self, AuditEntry};
use crate::auth::Principal;
use crate::body::JsonBody;
use crate::error::{ApiError, ErrorBody, is_unique_violation};
use crate::pagination::{Page, PageQuery, after_created, created_position};
use crate::resources::issuer_key;
use crate::state::AppState;

/// An issuer, without its key material.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct JwtIssuerView {
    /// Id.
    pub id: Uuid,
    /// The `iss` claim.
    pub issuer: String,
    /// The `aud` claim.
    pub audience: String,
    /// The only algorithm accepted: `HS256`, `RS256`, `ES256` or `EdDSA`.
    pub algorithm: String,
    /// When it was created.
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
}

/// The signing algorithms an issuer may pin.
#[derive(Debug, Deserialize, ToSchema)]
#[allow(dead_code, clippy::upper_case_acronyms)]
pub enum JwtAlgorithm {
    /// HMAC with SHA-256 over a shared secret.
    HS256,
    /// RSASSA-PKCS1-v1_5 with SHA-256.
    RS256,
    /// ECDSA on P-256 with SHA-256.
    ES256,
    /// Ed25519.
    EdDSA,
}

/// A new issuer.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({
    "issuer": "https://login.example.com/",
    "audience": "orders-api",
    "algorithm": "HS256",
    "key_material": "a-shared-secret-of-at-least-32-bytes"
}))]
pub struct CreateJwtIssuer {
    /// The `iss` claim, 1 to 2048 characters (compared byte for byte: not trimmed).
    #[schema(
        min_length = 1,
        max_length = 2048,
        pattern = r"^[^\u0000-\u001f\u007f-\u009f]+$"
    )]
    pub issuer: String,
    /// The `aud` claim, 1 to 2048 characters.
    #[schema(
        min_length = 1,
        max_length = 2048,
        pattern = r"^[^\u0000-\u001f\u007f-\u009f]+$"
    )]
    pub audience: String,
    /// `HS256`, `RS256`, `ES256` or `EdDSA`.
    #[schema(value_type = JwtAlgorithm)]
    pub algorithm: String,
    /// The HS256 shared secret (32 to 16384 bytes) or, for the other algorithms, a PEM public
    /// key (`-----BEGIN PUBLIC KEY-----`; RSA at least 2048 bits); never returned.
    #[schema(write_only, min_length = 32, max_length = 16384)]
    pub key_material: String,
}

impl std::fmt::Debug for CreateJwtIssuer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CreateJwtIssuer")
            .field("issuer", &self.issuer)
            .field("audience", &self.audience)
            .field("algorithm", &self.algorithm)
            .finish_non_exhaustive()
    }
}

const COLUMNS: &str = "id, issuer, audience, algorithm, created_at";

fn view(row: &Row) -> JwtIssuerView {
    JwtIssuerView {
        id: row.get(0),
        issuer: row.get(1),
        audience: row.get(2),
        algorithm: row.get(3),
        created_at: row.get(4),
    }
}

/// Lists a tenant's issuers, newest first.
#[utoipa::path(get, operation_id = "listJwtIssuers", path = "/api/v1/tenants/{tenant_id}/jwt-issuers", tag = "jwt-issuers",
    security(("bearer" = [])),
    params(("tenant_id" = Uuid, Path, description = "Tenant id"), PageQuery),
    responses((status = 200, body = Page<JwtIssuerView>), (status = "4XX", body = ErrorBody)))]
pub async fn list(
    principal: Principal,
    state: web::Data<AppState>,
    path: web::Path<Uuid>,
    query: web::Query<PageQuery>,
) -> Result<HttpResponse, ApiError> {
    let tenant_id = path.into_inner();
    principal.require_admin_of(tenant_id)?;
    let limit = query.limit()?;
    let (after_at, after_id) = after_created::<Uuid>(&query)?;
    let client = state.pool.get().await?;
    let rows = client
        .query(
            &format!(
                "SELECT {COLUMNS} FROM jwt_issuers WHERE tenant_id = $1 \
                   AND ($2::timestamptz IS NULL OR (created_at, id) < ($2, $3)) \
                 ORDER BY created_at DESC, id DESC LIMIT $4"
            ),
            &[&tenant_id, &after_at, &after_id, &query.fetch_limit()?],
        )
        .await?;
    let items = rows.iter().map(view).collect();
    Ok(
        HttpResponse::Ok().json(Page::from_fetched(items, limit, |i: &JwtIssuerView| {
            created_position(i.created_at, i.id)
        })),
    )
}

/// Registers an issuer; the key material is checked as the proxy will use it.
#[utoipa::path(post, operation_id = "createJwtIssuer", path = "/api/v1/tenants/{tenant_id}/jwt-issuers", tag = "jwt-issuers",
    security(("bearer" = [])), request_body = CreateJwtIssuer,
    params(("tenant_id" = Uuid, Path, description = "Tenant id")),
    responses((status = 201, body = JwtIssuerView),
        (status = 409, description = "The tenant already has this issuer and audience", body = ErrorBody),
        (status = "4XX", body = ErrorBody)))]
pub async fn create(
    principal: Principal,
    state: web::Data<AppState>,
    path: web::Path<Uuid>,
    JsonBody(body): JsonBody<CreateJwtIssuer>,
) -> Result<HttpResponse, ApiError> {
    let tenant_id = path.into_inner();
    principal.require_admin_of(tenant_id)?;
    // Not trimmed: the claims must match byte for byte.
    let issuer = claim("issuer", &body.issuer)?;
    let audience = claim("audience", &body.audience)?;
    let algorithm = body.algorithm.as_str();
    if !issuer_key::ALGORITHMS.contains(&algorithm) {
        return Err(ApiError::invalid(
            "algorithm",
            "must be one of HS256, RS256, ES256, EdDSA",
        ));
    }
    issuer_key::check(algorithm, &body.key_material)?;
    let mut client = state.pool.get().await?;
    let tx = client.transaction().await?;
    let exists = tx
        .query_opt("SELECT 1 FROM tenants WHERE id = $1", &[&tenant_id])
        .await?;
    if exists.is_none() {
        return Err(ApiError::NotFound);
    }
    let id = Uuid::now_v7();
    let row = tx
        .query_one(
            &format!(
                "INSERT INTO jwt_issuers (id, tenant_id, issuer, audience, algorithm, key_material) \
                 VALUES ($1, $2, $3, $4, $5, $6) RETURNING {COLUMNS}"
            ),
            &[
                &id,
                &tenant_id,
                &issuer,
                &audience,
                &algorithm,
                &body.key_material,
            ],
        )
        .await
        .map_err(|e| {
            if is_unique_violation(&e, "jwt_issuers_tenant_issuer_audience_key") {
                ApiError::Conflict {
                    code: "issuer_exists",
                    field: Some("issuer".into()),
                    message: "this tenant already has an issuer with this issuer and audience"
                        .into(),
                }
            } else {
                e.into()
            }
        })?;
    audit::record(
        &tx,
        &principal,
        AuditEntry {
            tenant_id: Some(tenant_id),
            action: "jwt_issuer.create",
            resource_type: "jwt_issuer",
            resource_id: &id.to_string(),
            details: json!({ "issuer": issuer, "audience": audience, "algorithm": algorithm }),
        },
    )
    .await?;
    tx.commit().await?;
    tracing::info!(%tenant_id, issuer_id = %id, algorithm, "JWT issuer registered.");
    Ok(HttpResponse::Created().json(view(&row)))
}

/// Removes an issuer; its tokens stop working on the proxies' next reload.
#[utoipa::path(delete, operation_id = "deleteJwtIssuer", path = "/api/v1/tenants/{tenant_id}/jwt-issuers/{issuer_id}",
    tag = "jwt-issuers", security(("bearer" = [])),
    params(("tenant_id" = Uuid, Path, description = "Tenant id"),
           ("issuer_id" = Uuid, Path, description = "Issuer id")),
    responses((status = 204, description = "Deleted"), (status = "4XX", body = ErrorBody)))]
pub async fn delete(
    principal: Principal,
    state: web::Data<AppState>,
    path: web::Path<(Uuid, Uuid)>,
) -> Result<HttpResponse, ApiError> {
    let (tenant_id, issuer_id) = path.into_inner();
    principal.require_admin_of(tenant_id)?;
    let mut client = state.pool.get().await?;
    let tx = client.transaction().await?;
    let row = tx
        .query_opt(
            "DELETE FROM jwt_issuers WHERE tenant_id = $1 AND id = $2 \
             RETURNING issuer, audience, algorithm",
            &[&tenant_id, &issuer_id],
        )
        .await?
        .ok_or(ApiError::NotFound)?;
    let (issuer, audience, algorithm): (String, String, String) =
        (row.get(0), row.get(1), row.get(2));
    audit::record(
        &tx,
        &principal,
        AuditEntry {
            tenant_id: Some(tenant_id),
            action: "jwt_issuer.delete",
            resource_type: "jwt_issuer",
            resource_id: &issuer_id.to_string(),
            details: json!({ "issuer": issuer, "audience": audience, "algorithm": algorithm }),
        },
    )
    .await?;
    tx.commit().await?;
    Ok(HttpResponse::NoContent().finish())
}

/// A claim value: 1 to 2048 characters without control characters, kept exactly.
fn claim(field: &str, value: &str) -> Result<String, ApiError> {
    if value.is_empty() || value.chars().count() > 2048 {
        return Err(ApiError::invalid(field, "must be 1 to 2048 characters"));
    }
    if value.chars().any(char::is_control) {
        return Err(ApiError::invalid(
            field,
            "must not contain control characters",
        ));
    }
    Ok(value.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The document's enum is the list the validation accepts, no more and no less.
    #[test]
    fn the_documented_algorithms_are_the_accepted_ones() {
        let documented = |algorithm: &JwtAlgorithm| match algorithm {
            JwtAlgorithm::HS256 => "HS256",
            JwtAlgorithm::RS256 => "RS256",
            JwtAlgorithm::ES256 => "ES256",
            JwtAlgorithm::EdDSA => "EdDSA",
        };
        for accepted in issuer_key::ALGORITHMS {
            let parsed: JwtAlgorithm = serde_json::from_value(serde_json::json!(accepted))
                .unwrap_or_else(|e| panic!("{accepted} is accepted but not documented: {e}"));
            assert_eq!(documented(&parsed), accepted);
        }
        let all = [
            JwtAlgorithm::HS256,
            JwtAlgorithm::RS256,
            JwtAlgorithm::ES256,
            JwtAlgorithm::EdDSA,
        ];
        assert_eq!(all.len(), issuer_key::ALGORITHMS.len());
    }
}
