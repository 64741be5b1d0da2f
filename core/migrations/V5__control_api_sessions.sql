-- Control-API hardening: sessions that can end (logout, password change, refresh-token
-- reuse), one successor per rotated API key, and JWT issuers unique per tenant only.

-- One row per login. Every access token names its session, and the control API checks the
-- session, its user and the user's tenant on every request, so ending any of them stops the
-- token at once. Refresh tokens rotate: only `refresh_token_id` may be exchanged next; a
-- validly signed older one is a replay, and its whole session is revoked.
CREATE TABLE auth_sessions (
    id               uuid PRIMARY KEY,
    user_id          uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    refresh_token_id uuid NOT NULL,
    created_at       timestamptz NOT NULL DEFAULT now(),
    refreshed_at     timestamptz,
    -- Slides forward with each refresh, by the refresh-token lifetime.
    expires_at       timestamptz NOT NULL,
    revoked_at       timestamptz,
    revoked_reason   text CHECK (revoked_reason IN ('logout', 'refresh_token_reuse', 'password_change')),
    CHECK ((revoked_at IS NULL) = (revoked_reason IS NULL))
);
CREATE INDEX auth_sessions_user_idx ON auth_sessions (user_id) WHERE revoked_at IS NULL;

-- A rotated key names its successor: a second rotation while that successor is active is
-- refused instead of leaving two active successors.
ALTER TABLE api_keys ADD COLUMN replaced_by text REFERENCES api_keys (id) ON DELETE SET NULL;

-- JWT issuers are unique per tenant only: a tenant can neither claim an issuer for the whole
-- platform nor learn that another tenant uses it. The proxy finds a token's tenant by the
-- registered key that verifies it (docs/architecture.md, "JWT issuers and tenants").
ALTER TABLE jwt_issuers DROP CONSTRAINT jwt_issuers_issuer_audience_key;
ALTER TABLE jwt_issuers ADD CONSTRAINT jwt_issuers_tenant_issuer_audience_key
    UNIQUE (tenant_id, issuer, audience);
