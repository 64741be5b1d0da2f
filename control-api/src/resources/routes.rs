//! A tenant's routes: which upstream pool serves which host and path prefix. Tenant admins
//! write them, viewers read them; proxies pick changes up through the `routes` triggers.

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
use crate::resources::route_spec::{MAX_UPSTREAMS, RouteInput, RouteSpec};
use crate::state::AppState;
use crate::validate;

/// A route.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct RouteView {
    /// Id.
    pub id: Uuid,
    /// A label.
    pub name: String,
    /// Host the route answers (optionally with a port); absent: any host.
    pub host: Option<String>,
    /// Path prefix the route answers; the longest matching prefix wins.
    pub path_prefix: String,
    /// Whether the prefix is removed before forwarding.
    pub strip_prefix: bool,
    /// The upstream pool: `host:port`, `http://host[:port][/base]` or
    /// `https://host[:port][/base]`; a base path is prefixed to every forwarded path.
    pub upstreams: Vec<String>,
    /// PEM CA bundle `https://` upstreams are verified against; absent: the system roots.
    pub tls_ca_pem: Option<String>,
    /// PEM client certificate presented to `https://` upstreams (mutual TLS).
    pub tls_client_cert_pem: Option<String>,
    /// Whether a client key is stored (the key itself is never returned).
    pub tls_client_key_set: bool,
    /// Connect timeout per attempt.
    pub connect_timeout_ms: i32,
    /// Read timeout per attempt.
    pub read_timeout_ms: i32,
    /// Retries of idempotent requests on another upstream.
    pub retries: i16,
    /// Largest request body forwarded.
    pub max_body_bytes: i64,
    /// A scope the calling API key must hold.
    pub required_scope: Option<String>,
    /// When it was created.
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    /// When it last changed.
    #[serde(with = "time::serde::rfc3339")]
    pub updated_at: OffsetDateTime,
}

/// An upstream as [`RouteInput::validate`] reads it (`host:port`, or an `http(s)://` URL with an
/// optional port and base path). The upstreams' schema is built by hand because utoipa has no
/// attribute for the pattern of an array's items.
const UPSTREAM_PATTERN: &str = r"^([A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*|\[[0-9A-Fa-f:.]+\]):([1-9][0-9]{0,3}|[1-5][0-9]{4}|6[0-4][0-9]{3}|65[0-4][0-9]{2}|655[0-2][0-9]|6553[0-5])$|^https?://([A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*|\[[0-9A-Fa-f:.]+\])(:([1-9][0-9]{0,3}|[1-5][0-9]{4}|6[0-4][0-9]{3}|65[0-4][0-9]{2}|655[0-2][0-9]|6553[0-5]))?(/[A-Za-z0-9._~-]+)*/?$";

fn upstreams_schema() -> utoipa::openapi::Array {
    use utoipa::openapi::schema::{ArrayBuilder, ObjectBuilder, Type};
    ArrayBuilder::new()
        .items(
            ObjectBuilder::new()
                .schema_type(Type::String)
                .pattern(Some(UPSTREAM_PATTERN))
                .max_length(Some(2048)),
        )
        .min_items(Some(1))
        .max_items(Some(MAX_UPSTREAMS))
        .build()
}

/// A new route.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({
    "name": "Orders",
    "path_prefix": "/orders",
    "upstreams": ["orders.example.com:8080"],
    "strip_prefix": false,
    "required_scope": "orders:read"
}))]
pub struct CreateRoute {
    /// A label, at most 200 characters.
    #[schema(max_length = 200, pattern = r"^[^\u0000-\u001f\u007f-\u009f]*$")]
    pub name: Option<String>,
    /// Host name with an optional port; omit to match any host.
    #[schema(
        max_length = 259,
        pattern = r"^[A-Za-z0-9.*-]{1,253}(:([1-9][0-9]{0,3}|[1-5][0-9]{4}|6[0-4][0-9]{3}|65[0-4][0-9]{2}|655[0-2][0-9]|6553[0-5]))?$"
    )]
    pub host: Option<String>,
    /// Starts with `/`; at most 1024 bytes.
    #[schema(
        min_length = 1,
        max_length = 1024,
        pattern = r"^/[^\s\u0000-\u001f\u007f-\u009f?#]*$"
    )]
    pub path_prefix: String,
    /// Remove the prefix before forwarding (default false).
    pub strip_prefix: Option<bool>,
    /// 1 to 64 of `host:port`, `http://host[:port][/base]` or `https://host[:port][/base]`.
    #[schema(schema_with = upstreams_schema)]
    pub upstreams: Vec<String>,
    /// PEM CA bundle to verify `https://` upstreams with instead of the system roots.
    #[schema(min_length = 1, max_length = 65536)]
    pub tls_ca_pem: Option<String>,
    /// PEM client certificate chain for mutual TLS (with `tls_client_key_pem`).
    #[schema(min_length = 1, max_length = 65536)]
    pub tls_client_cert_pem: Option<String>,
    /// PEM private key of the client certificate; write-only.
    #[schema(min_length = 1, max_length = 16384)]
    pub tls_client_key_pem: Option<String>,
    /// 1 to 60000 (default 2000).
    #[schema(minimum = 1, maximum = 60000)]
    pub connect_timeout_ms: Option<u64>,
    /// 1 to 600000 (default 30000).
    #[schema(minimum = 1, maximum = 600000)]
    pub read_timeout_ms: Option<u64>,
    /// 0 to 5 (default 1).
    #[schema(minimum = 0, maximum = 5)]
    pub retries: Option<u64>,
    /// Default 10485760.
    #[schema(minimum = 0, maximum = 9_007_199_254_740_991_i64)]
    pub max_body_bytes: Option<u64>,
    /// A scope the calling key must hold; omit for none.
    #[schema(pattern = r"^[a-z0-9:._-]{1,64}$")]
    pub required_scope: Option<String>,
}

/// Changes to a route; absent fields stay as they are, `null` clears `host` or
/// `required_scope`.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateRoute {
    /// A label.
    #[schema(max_length = 200, pattern = r"^[^\u0000-\u001f\u007f-\u009f]*$")]
    pub name: Option<String>,
    /// Host, or `null` for any host.
    #[serde(default, deserialize_with = "validate::nullable")]
    #[schema(value_type = Option<String>, nullable)]
    #[schema(
        max_length = 259,
        pattern = r"^[A-Za-z0-9.*-]{1,253}(:([1-9][0-9]{0,3}|[1-5][0-9]{4}|6[0-4][0-9]{3}|65[0-4][0-9]{2}|655[0-2][0-9]|6553[0-5]))?$"
    )]
    pub host: Option<Option<String>>,
    /// Path prefix.
    #[schema(
        min_length = 1,
        max_length = 1024,
        pattern = r"^/[^\s\u0000-\u001f\u007f-\u009f?#]*$"
    )]
    pub path_prefix: Option<String>,
    /// Remove the prefix before forwarding.
    pub strip_prefix: Option<bool>,
    /// The upstream pool.
    #[schema(schema_with = upstreams_schema, required = false)]
    pub upstreams: Option<Vec<String>>,
    /// PEM CA bundle, or `null` for the system roots.
    #[serde(default, deserialize_with = "validate::nullable")]
    #[schema(value_type = Option<String>, nullable)]
    #[schema(min_length = 1, max_length = 65536)]
    pub tls_ca_pem: Option<Option<String>>,
    /// PEM client certificate, or `null` for none (with the key).
    #[serde(default, deserialize_with = "validate::nullable")]
    #[schema(value_type = Option<String>, nullable)]
    #[schema(min_length = 1, max_length = 65536)]
    pub tls_client_cert_pem: Option<Option<String>>,
    /// PEM client key (write-only), or `null` for none (with the certificate).
    #[serde(default, deserialize_with = "validate::nullable")]
    #[schema(value_type = Option<String>, nullable)]
    #[schema(min_length = 1, max_length = 16384)]
    pub tls_client_key_pem: Option<Option<String>>,
    /// Connect timeout.
    #[schema(minimum = 1, maximum = 60000)]
    pub connect_timeout_ms: Option<u64>,
    /// Read timeout.
    #[schema(minimum = 1, maximum = 600000)]
    pub read_timeout_ms: Option<u64>,
    /// Retries.
    #[schema(minimum = 0, maximum = 5)]
    pub retries: Option<u64>,
    /// Largest request body.
    #[schema(minimum = 0, maximum = 9_007_199_254_740_991_i64)]
    pub max_body_bytes: Option<u64>,
    /// Required scope, or `null` for none.
    #[serde(default, deserialize_with = "validate::nullable")]
    #[schema(value_type = Option<String>, nullable)]
    #[schema(pattern = r"^[a-z0-9:._-]{1,64}$")]
    pub required_scope: Option<Option<String>>,
}

const COLUMNS: &str = "id, name, host, path_prefix, strip_prefix, upstreams, connect_timeout_ms, \
                       read_timeout_ms, retries, max_body_bytes, required_scope, created_at, \
                       updated_at, tls_ca_pem, tls_client_cert_pem, tls_client_key_pem IS NOT NULL";

fn view(row: &Row) -> RouteView {
    RouteView {
        id: row.get(0),
        name: row.get(1),
        host: row.get(2),
        path_prefix: row.get(3),
        strip_prefix: row.get(4),
        upstreams: row.get(5),
        connect_timeout_ms: row.get(6),
        read_timeout_ms: row.get(7),
        retries: row.get(8),
        max_body_bytes: row.get(9),
        required_scope: row.get(10),
        created_at: row.get(11),
        updated_at: row.get(12),
        tls_ca_pem: row.get(13),
        tls_client_cert_pem: row.get(14),
        tls_client_key_set: row.get(15),
    }
}

/// The current values of a route (and its stored client key), as the starting point of a
/// partial update.
fn input_of(route: RouteView, tls_client_key_pem: Option<String>) -> RouteInput {
    let unsigned = |n: i64| u64::try_from(n).unwrap_or(0);
    RouteInput {
        name: route.name,
        host: route.host,
        path_prefix: route.path_prefix,
        strip_prefix: route.strip_prefix,
        upstreams: route.upstreams,
        connect_timeout_ms: unsigned(route.connect_timeout_ms.into()),
        read_timeout_ms: unsigned(route.read_timeout_ms.into()),
        retries: unsigned(route.retries.into()),
        max_body_bytes: unsigned(route.max_body_bytes),
        required_scope: route.required_scope,
        tls_ca_pem: route.tls_ca_pem,
        tls_client_cert_pem: route.tls_client_cert_pem,
        tls_client_key_pem,
    }
}

fn details(spec: &RouteSpec) -> serde_json::Value {
    json!({
        "name": spec.name,
        "host": spec.host,
        "path_prefix": spec.path_prefix,
        "strip_prefix": spec.strip_prefix,
        "upstreams": spec.upstreams,
        "connect_timeout_ms": spec.connect_timeout_ms,
        "read_timeout_ms": spec.read_timeout_ms,
        "retries": spec.retries,
        "max_body_bytes": spec.max_body_bytes,
        "required_scope": spec.required_scope,
        // Whether TLS material is set, never the material.
        "tls_ca": spec.tls_ca_pem.is_some(),
        "tls_client_cert": spec.tls_client_cert_pem.is_some(),
    })
}

/// The 409 for a second route on the same host and prefix.
fn conflict_or(error: tokio_postgres::Error) -> ApiError {
    if is_unique_violation(&error, "routes_match_key") {
        ApiError::Conflict {
            code: "route_exists",
            field: Some("path_prefix".into()),
            message: "the tenant already has a route for this host and path prefix".into(),
        }
    } else {
        error.into()
    }
}

/// Lists a tenant's routes, newest first.
#[utoipa::path(get, operation_id = "listRoutes", path = "/api/v1/tenants/{tenant_id}/routes", tag = "routes",
    security(("bearer" = [])),
    params(("tenant_id" = Uuid, Path, description = "Tenant id"), PageQuery),
    responses((status = 200, body = Page<RouteView>), (status = "4XX", body = ErrorBody)))]
pub async fn list(
    principal: Principal,
    state: web::Data<AppState>,
    path: web::Path<Uuid>,
    query: web::Query<PageQuery>,
) -> Result<HttpResponse, ApiError> {
    let tenant_id = path.into_inner();
    principal.require_reader_of(tenant_id)?;
    let limit = query.limit()?;
    let (after_at, after_id) = after_created::<Uuid>(&query)?;
    let client = state.pool.get().await?;
    let rows = client
        .query(
            &format!(
                "SELECT {COLUMNS} FROM routes WHERE tenant_id = $1 \
                   AND ($2::timestamptz IS NULL OR (created_at, id) < ($2, $3)) \
                 ORDER BY created_at DESC, id DESC LIMIT $4"
            ),
            &[&tenant_id, &after_at, &after_id, &query.fetch_limit()?],
        )
        .await?;
    let items = rows.iter().map(view).collect();
    Ok(
        HttpResponse::Ok().json(Page::from_fetched(items, limit, |r: &RouteView| {
            created_position(r.created_at, r.id)
        })),
    )
}

/// Creates a route.
#[utoipa::path(post, operation_id = "createRoute", path = "/api/v1/tenants/{tenant_id}/routes", tag = "routes",
    security(("bearer" = [])), request_body = CreateRoute,
    params(("tenant_id" = Uuid, Path, description = "Tenant id")),
    responses((status = 201, body = RouteView),
        (status = 409, description = "A route for this host and prefix exists", body = ErrorBody),
        (status = "4XX", body = ErrorBody)))]
pub async fn create(
    principal: Principal,
    state: web::Data<AppState>,
    path: web::Path<Uuid>,
    JsonBody(body): JsonBody<CreateRoute>,
) -> Result<HttpResponse, ApiError> {
    let tenant_id = path.into_inner();
    principal.require_admin_of(tenant_id)?;
    let spec = RouteInput {
        name: body.name.unwrap_or_default(),
        host: body.host,
        path_prefix: body.path_prefix,
        strip_prefix: body.strip_prefix.unwrap_or(false),
        upstreams: body.upstreams,
        connect_timeout_ms: body.connect_timeout_ms.unwrap_or(2000),
        read_timeout_ms: body.read_timeout_ms.unwrap_or(30_000),
        retries: body.retries.unwrap_or(1),
        max_body_bytes: body.max_body_bytes.unwrap_or(10 * 1024 * 1024),
        required_scope: body.required_scope,
        tls_ca_pem: body.tls_ca_pem,
        tls_client_cert_pem: body.tls_client_cert_pem,
        tls_client_key_pem: body.tls_client_key_pem,
    }
    .validate(&state.upstream_policy)?;
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
                "INSERT INTO routes (id, tenant_id, name, host, path_prefix, strip_prefix, \
                   upstreams, connect_timeout_ms, read_timeout_ms, retries, max_body_bytes, \
                   required_scope, tls_ca_pem, tls_client_cert_pem, tls_client_key_pem) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15) \
                 RETURNING {COLUMNS}"
            ),
            &[
                &id,
                &tenant_id,
                &spec.name,
                &spec.host,
                &spec.path_prefix,
                &spec.strip_prefix,
                &spec.upstreams,
                &spec.connect_timeout_ms,
                &spec.read_timeout_ms,
                &spec.retries,
                &spec.max_body_bytes,
                &spec.required_scope,
                &spec.tls_ca_pem,
                &spec.tls_client_cert_pem,
                &spec.tls_client_key_pem,
            ],
        )
        .await
        .map_err(conflict_or)?;
    audit::record(
        &tx,
        &principal,
        AuditEntry {
            tenant_id: Some(tenant_id),
            action: "route.create",
            resource_type: "route",
            resource_id: &id.to_string(),
            details: details(&spec),
        },
    )
    .await?;
    tx.commit().await?;
    tracing::info!(%tenant_id, route_id = %id, "Route created.");
    Ok(HttpResponse::Created().json(view(&row)))
}

/// One route.
#[utoipa::path(get, operation_id = "getRoute", path = "/api/v1/tenants/{tenant_id}/routes/{route_id}", tag = "routes",
    security(("bearer" = [])),
    params(("tenant_id" = Uuid, Path, description = "Tenant id"),
           ("route_id" = Uuid, Path, description = "Route id")),
    responses((status = 200, body = RouteView), (status = "4XX", body = ErrorBody)))]
pub async fn get(
    principal: Principal,
    state: web::Data<AppState>,
    path: web::Path<(Uuid, Uuid)>,
) -> Result<HttpResponse, ApiError> {
    let (tenant_id, route_id) = path.into_inner();
    principal.require_reader_of(tenant_id)?;
    let client = state.pool.get().await?;
    let row = client
        .query_opt(
            &format!("SELECT {COLUMNS} FROM routes WHERE tenant_id = $1 AND id = $2"),
            &[&tenant_id, &route_id],
        )
        .await?
        .ok_or(ApiError::NotFound)?;
    Ok(HttpResponse::Ok().json(view(&row)))
}

/// Changes a route; fields left out keep their values.
#[utoipa::path(patch, operation_id = "updateRoute", path = "/api/v1/tenants/{tenant_id}/routes/{route_id}", tag = "routes",
    security(("bearer" = [])), request_body = UpdateRoute,
    params(("tenant_id" = Uuid, Path, description = "Tenant id"),
           ("route_id" = Uuid, Path, description = "Route id")),
    responses((status = 200, body = RouteView),
        (status = 409, description = "A route for this host and prefix exists", body = ErrorBody),
        (status = "4XX", body = ErrorBody)))]
pub async fn update(
    principal: Principal,
    state: web::Data<AppState>,
    path: web::Path<(Uuid, Uuid)>,
    JsonBody(body): JsonBody<UpdateRoute>,
) -> Result<HttpResponse, ApiError> {
    let (tenant_id, route_id) = path.into_inner();
    principal.require_admin_of(tenant_id)?;
    let mut client = state.pool.get().await?;
    let tx = client.transaction().await?;
    let current = tx
        .query_opt(
            &format!(
                "SELECT {COLUMNS}, tls_client_key_pem FROM routes \
                 WHERE tenant_id = $1 AND id = $2 FOR UPDATE"
            ),
            &[&tenant_id, &route_id],
        )
        .await?
        .ok_or(ApiError::NotFound)?;
    let current = input_of(view(&current), current.get(16));
    let spec = RouteInput {
        name: body.name.unwrap_or(current.name),
        host: body.host.unwrap_or(current.host),
        path_prefix: body.path_prefix.unwrap_or(current.path_prefix),
        strip_prefix: body.strip_prefix.unwrap_or(current.strip_prefix),
        upstreams: body.upstreams.unwrap_or(current.upstreams),
        connect_timeout_ms: body
            .connect_timeout_ms
            .unwrap_or(current.connect_timeout_ms),
        read_timeout_ms: body.read_timeout_ms.unwrap_or(current.read_timeout_ms),
        retries: body.retries.unwrap_or(current.retries),
        max_body_bytes: body.max_body_bytes.unwrap_or(current.max_body_bytes),
        required_scope: body.required_scope.unwrap_or(current.required_scope),
        tls_ca_pem: body.tls_ca_pem.unwrap_or(current.tls_ca_pem),
        tls_client_cert_pem: body
            .tls_client_cert_pem
            .unwrap_or(current.tls_client_cert_pem),
        tls_client_key_pem: body
            .tls_client_key_pem
            .unwrap_or(current.tls_client_key_pem),
    }
    .validate(&state.upstream_policy)?;
    let row = tx
        .query_one(
            &format!(
                "UPDATE routes SET name = $3, host = $4, path_prefix = $5, strip_prefix = $6, \
                   upstreams = $7, connect_timeout_ms = $8, read_timeout_ms = $9, retries = $10, \
                   max_body_bytes = $11, required_scope = $12, tls_ca_pem = $13, \
                   tls_client_cert_pem = $14, tls_client_key_pem = $15, updated_at = now() \
                 WHERE tenant_id = $1 AND id = $2 RETURNING {COLUMNS}"
            ),
            &[
                &tenant_id,
                &route_id,
                &spec.name,
                &spec.host,
                &spec.path_prefix,
                &spec.strip_prefix,
                &spec.upstreams,
                &spec.connect_timeout_ms,
                &spec.read_timeout_ms,
                &spec.retries,
                &spec.max_body_bytes,
                &spec.required_scope,
                &spec.tls_ca_pem,
                &spec.tls_client_cert_pem,
                &spec.tls_client_key_pem,
            ],
        )
        .await
        .map_err(conflict_or)?;
    audit::record(
        &tx,
        &principal,
        AuditEntry {
            tenant_id: Some(tenant_id),
            action: "route.update",
            resource_type: "route",
            resource_id: &route_id.to_string(),
            details: details(&spec),
        },
    )
    .await?;
    tx.commit().await?;
    Ok(HttpResponse::Ok().json(view(&row)))
}

/// Deletes a route; proxies stop serving it on their next reload.
#[utoipa::path(delete, operation_id = "deleteRoute", path = "/api/v1/tenants/{tenant_id}/routes/{route_id}", tag = "routes",
    security(("bearer" = [])),
    params(("tenant_id" = Uuid, Path, description = "Tenant id"),
           ("route_id" = Uuid, Path, description = "Route id")),
    responses((status = 204, description = "Deleted"), (status = "4XX", body = ErrorBody)))]
pub async fn delete(
    principal: Principal,
    state: web::Data<AppState>,
    path: web::Path<(Uuid, Uuid)>,
) -> Result<HttpResponse, ApiError> {
    let (tenant_id, route_id) = path.into_inner();
    principal.require_admin_of(tenant_id)?;
    let mut client = state.pool.get().await?;
    let tx = client.transaction().await?;
    let row = tx
        .query_opt(
            "DELETE FROM routes WHERE tenant_id = $1 AND id = $2 RETURNING host, path_prefix",
            &[&tenant_id, &route_id],
        )
        .await?
        .ok_or(ApiError::NotFound)?;
    let (host, path_prefix): (Option<String>, String) = (row.get(0), row.get(1));
    audit::record(
        &tx,
        &principal,
        AuditEntry {
            tenant_id: Some(tenant_id),
            action: "route.delete",
            resource_type: "route",
            resource_id: &route_id.to_string(),
            details: json!({ "host": host, "path_prefix": path_prefix }),
        },
    )
    .await?;
    tx.commit().await?;
    Ok(HttpResponse::NoContent().finish())
}
