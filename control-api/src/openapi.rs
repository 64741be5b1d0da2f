//! The OpenAPI 3 document, assembled from the handlers' `#[utoipa::path]` annotations. The
//! route table in [`crate::app`] and this list are checked against each other by a test.

use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use crate::auth::endpoints as auth;
use crate::auth::session_cookie;
use crate::resources::{
    api_keys, audit_log, invoices, jwt_issuers, plans, routes, subscriptions, tenants, usage,
    users, webhooks,
};

/// The control API's OpenAPI document.
#[derive(Debug, OpenApi)]
#[openapi(
    info(
        title = "Tollgate control API",
        description = "Tenants, users, API keys, routes, JWT issuers, plans, subscriptions, usage, invoices and the audit log of the Tollgate API gateway. \
                       Errors are `{\"error\":{\"code\",\"message\",\"field\"?}}` with stable codes."
    ),
    paths(
        auth::login, auth::refresh, auth::me,
        session_cookie::create, session_cookie::refresh, session_cookie::logout,
        auth::logout, auth::change_password,
        tenants::list, tenants::create, tenants::get, tenants::update, tenants::suspend, tenants::reactivate,
        api_keys::list, api_keys::create, api_keys::get, api_keys::revoke, api_keys::rotate,
        users::list, users::create, users::get, users::disable,
        routes::list, routes::create, routes::get, routes::update, routes::delete,
        jwt_issuers::list, jwt_issuers::create, jwt_issuers::delete,
        plans::list, plans::create, plans::get, plans::update, plans::delete,
        subscriptions::get, subscriptions::switch, subscriptions::list,
        usage::series, usage::current,
        invoices::list, invoices::upcoming, invoices::get, invoices::document,
        audit_log::list,
        webhooks::stripe,
    ),
    modifiers(&BearerAuth),
)]
pub struct ApiDoc;

/// Declares the `bearer` security scheme the paths refer to.
#[derive(Debug)]
struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .build(),
            ),
        );
    }
}
