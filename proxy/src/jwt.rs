//! JWT authentication against per-tenant issuers with pinned algorithms (in progress).
