-- Tollgate schema v1. Money is integer minor units; time is timestamptz (UTC);
-- ids minted by the application are UUIDv7. Enumerations are CHECKed text, which stays
-- readable in psql and extends without an enum-type migration dance.

-- ---------------------------------------------------------------------------------------
-- Configuration: what the proxy loads into its snapshot.
-- ---------------------------------------------------------------------------------------

CREATE TABLE plans (
    id                      uuid PRIMARY KEY,
    name                    text NOT NULL UNIQUE CHECK (length(btrim(name)) BETWEEN 1 AND 100),
    rate_per_second         integer NOT NULL CHECK (rate_per_second > 0),
    burst                   integer NOT NULL CHECK (burst > 0),
    quota_included_requests bigint CHECK (quota_included_requests > 0),
    quota_cap               text CHECK (quota_cap IN ('hard', 'soft')),
    failure_mode            text NOT NULL DEFAULT 'open' CHECK (failure_mode IN ('open', 'closed')),
    -- tollgate_core::plan::Pricing as JSON, validated by the application on write.
    pricing                 jsonb NOT NULL,
    created_at              timestamptz NOT NULL DEFAULT now(),
    updated_at              timestamptz NOT NULL DEFAULT now(),
    CHECK ((quota_included_requests IS NULL) = (quota_cap IS NULL))
);

CREATE TABLE tenants (
    id          uuid PRIMARY KEY,
    slug        text NOT NULL UNIQUE CHECK (slug ~ '^[a-z0-9][a-z0-9-]{0,62}$'),
    name        text NOT NULL CHECK (length(btrim(name)) BETWEEN 1 AND 200),
    status      text NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'suspended')),
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE subscriptions (
    id          uuid PRIMARY KEY,
    tenant_id   uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    plan_id     uuid NOT NULL REFERENCES plans (id),
    starts_at   timestamptz NOT NULL,
    ends_at     timestamptz,
    created_at  timestamptz NOT NULL DEFAULT now(),
    CHECK (ends_at IS NULL OR ends_at > starts_at)
);
CREATE INDEX subscriptions_tenant_idx ON subscriptions (tenant_id, starts_at DESC);

CREATE TABLE users (
    id             uuid PRIMARY KEY,
    -- NULL for platform admins, who belong to no tenant.
    tenant_id      uuid REFERENCES tenants (id) ON DELETE CASCADE,
    email          text NOT NULL CHECK (email ~ '^[^@\s]+@[^@\s]+$' AND length(email) <= 254),
    -- argon2id PHC string.
    password_hash  text NOT NULL CHECK (password_hash LIKE '$argon2id$%'),
    role           text NOT NULL CHECK (role IN ('platform_admin', 'tenant_admin', 'tenant_viewer')),
    disabled_at    timestamptz,
    created_at     timestamptz NOT NULL DEFAULT now(),
    updated_at     timestamptz NOT NULL DEFAULT now(),
    CHECK ((role = 'platform_admin') = (tenant_id IS NULL))
);
CREATE UNIQUE INDEX users_email_key ON users (lower(email));

CREATE TABLE api_keys (
    -- The 16-character key id embedded in the key (tg_<env>_<id>_<secret>).
    id            text PRIMARY KEY CHECK (id ~ '^[A-Za-z0-9]{16}$'),
    tenant_id     uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    name          text NOT NULL DEFAULT '' CHECK (length(name) <= 200),
    -- tg_<env>_<id>: safe to show in lists.
    display_prefix text NOT NULL,
    -- HMAC-SHA-256 of the whole key under the server pepper; the key itself is never stored.
    secret_hmac   bytea NOT NULL CHECK (length(secret_hmac) = 32),
    status        text NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'revoked')),
    scopes        text[] NOT NULL DEFAULT '{}',
    created_at    timestamptz NOT NULL DEFAULT now(),
    -- Set on rotation: the old key keeps working until then.
    expires_at    timestamptz,
    revoked_at    timestamptz,
    last_used_at  timestamptz
);
CREATE INDEX api_keys_tenant_idx ON api_keys (tenant_id, created_at DESC);

CREATE TABLE routes (
    id                uuid PRIMARY KEY,
    tenant_id         uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    name              text NOT NULL DEFAULT '' CHECK (length(name) <= 200),
    -- NULL matches any host.
    host              text CHECK (host IS NULL OR host ~ '^[A-Za-z0-9.*-]{1,253}(:[0-9]{1,5})?$'),
    path_prefix       text NOT NULL DEFAULT '/' CHECK (path_prefix LIKE '/%' AND length(path_prefix) <= 1024),
    strip_prefix      boolean NOT NULL DEFAULT false,
    -- host:port (or http(s)://host:port) of each upstream in the pool.
    upstreams         text[] NOT NULL CHECK (cardinality(upstreams) BETWEEN 1 AND 64),
    connect_timeout_ms integer NOT NULL DEFAULT 2000 CHECK (connect_timeout_ms BETWEEN 1 AND 60000),
    read_timeout_ms   integer NOT NULL DEFAULT 30000 CHECK (read_timeout_ms BETWEEN 1 AND 600000),
    retries           smallint NOT NULL DEFAULT 1 CHECK (retries BETWEEN 0 AND 5),
    max_body_bytes    bigint NOT NULL DEFAULT 10485760 CHECK (max_body_bytes >= 0),
    required_scope    text,
    created_at        timestamptz NOT NULL DEFAULT now(),
    updated_at        timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX routes_match_key ON routes (tenant_id, coalesce(host, ''), path_prefix);

CREATE TABLE jwt_issuers (
    id           uuid PRIMARY KEY,
    tenant_id    uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    issuer       text NOT NULL CHECK (length(issuer) BETWEEN 1 AND 2048),
    audience     text NOT NULL CHECK (length(audience) BETWEEN 1 AND 2048),
    -- Pinned: a token signed with any other algorithm is refused.
    algorithm    text NOT NULL CHECK (algorithm IN ('HS256', 'RS256', 'ES256', 'EdDSA')),
    -- PEM public key, or the shared secret for HS256 (at least 32 bytes).
    key_material text NOT NULL CHECK (length(key_material) >= 32),
    created_at   timestamptz NOT NULL DEFAULT now(),
    updated_at   timestamptz NOT NULL DEFAULT now(),
    -- The (issuer, audience) pair finds the tenant, so it must be unique across tenants.
    UNIQUE (issuer, audience)
);

-- Every change to a config table is announced on one channel; proxies LISTEN and reload.
-- The payload names the table, the operation and the row id, so a proxy can reload only
-- what changed; a periodic full reload covers anything missed while disconnected.
CREATE FUNCTION tollgate_notify_config_change() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    row_id text;
BEGIN
    IF TG_OP = 'DELETE' THEN
        row_id := OLD.id::text;
    ELSE
        row_id := NEW.id::text;
    END IF;
    PERFORM pg_notify(
        'tollgate_config',
        json_build_object('table', TG_TABLE_NAME, 'op', lower(TG_OP), 'id', row_id)::text
    );
    RETURN NULL;
END;
$$;

CREATE TRIGGER plans_notify AFTER INSERT OR UPDATE OR DELETE ON plans
    FOR EACH ROW EXECUTE FUNCTION tollgate_notify_config_change();
CREATE TRIGGER tenants_notify AFTER INSERT OR UPDATE OR DELETE ON tenants
    FOR EACH ROW EXECUTE FUNCTION tollgate_notify_config_change();
CREATE TRIGGER subscriptions_notify AFTER INSERT OR UPDATE OR DELETE ON subscriptions
    FOR EACH ROW EXECUTE FUNCTION tollgate_notify_config_change();
-- last_used_at is bookkeeping, not config: updating only it must not make every proxy reload.
CREATE TRIGGER api_keys_notify AFTER INSERT OR DELETE ON api_keys
    FOR EACH ROW EXECUTE FUNCTION tollgate_notify_config_change();
CREATE TRIGGER api_keys_notify_update AFTER UPDATE ON api_keys
    FOR EACH ROW
    WHEN ((OLD.tenant_id, OLD.secret_hmac, OLD.status, OLD.scopes, OLD.expires_at)
          IS DISTINCT FROM (NEW.tenant_id, NEW.secret_hmac, NEW.status, NEW.scopes, NEW.expires_at))
    EXECUTE FUNCTION tollgate_notify_config_change();
CREATE TRIGGER routes_notify AFTER INSERT OR UPDATE OR DELETE ON routes
    FOR EACH ROW EXECUTE FUNCTION tollgate_notify_config_change();
CREATE TRIGGER jwt_issuers_notify AFTER INSERT OR UPDATE OR DELETE ON jwt_issuers
    FOR EACH ROW EXECUTE FUNCTION tollgate_notify_config_change();

-- ---------------------------------------------------------------------------------------
-- Usage: raw events (deduplicated) and roll-ups.
-- ---------------------------------------------------------------------------------------

-- No foreign keys: usage must be stored even for a tenant deleted meanwhile, and the
-- insert path must not pay for lookups. Metering creates daily partitions ahead of time;
-- the default partition catches anything outside them so no event is ever refused.
CREATE TABLE usage_events (
    event_id            uuid NOT NULL,
    event_time          timestamptz NOT NULL,
    tenant_id           uuid,
    key_id              text,
    route_id            uuid,
    method              text NOT NULL,
    status              smallint NOT NULL,
    outcome             text NOT NULL,
    request_bytes       bigint NOT NULL,
    response_bytes      bigint NOT NULL,
    upstream_latency_us bigint,
    total_latency_us    bigint NOT NULL,
    source              text NOT NULL,
    received_at         timestamptz NOT NULL DEFAULT now(),
    -- The deduplication key; the partition key must be part of it.
    PRIMARY KEY (event_id, event_time)
) PARTITION BY RANGE (event_time);
CREATE TABLE usage_events_default PARTITION OF usage_events DEFAULT;
CREATE INDEX usage_events_tenant_time_idx ON usage_events (tenant_id, event_time);

-- Per minute, per (tenant, key, route, status class). NULL key/route/tenant are values of
-- their own here (unauthenticated requests, no route), hence NULLS NOT DISTINCT.
CREATE TABLE usage_minute (
    minute          timestamptz NOT NULL CHECK (date_trunc('minute', minute) = minute),
    tenant_id       uuid,
    key_id          text,
    route_id        uuid,
    status_class    smallint NOT NULL CHECK (status_class BETWEEN 1 AND 5),
    request_count   bigint NOT NULL CHECK (request_count >= 0),
    billable_count  bigint NOT NULL CHECK (billable_count >= 0),
    request_bytes   bigint NOT NULL,
    response_bytes  bigint NOT NULL,
    latency_us_sum  bigint NOT NULL,
    CONSTRAINT usage_minute_key UNIQUE NULLS NOT DISTINCT (minute, tenant_id, key_id, route_id, status_class)
);
CREATE INDEX usage_minute_tenant_idx ON usage_minute (tenant_id, minute);

CREATE TABLE usage_hour (
    hour            timestamptz NOT NULL CHECK (date_trunc('hour', hour) = hour),
    tenant_id       uuid,
    key_id          text,
    route_id        uuid,
    status_class    smallint NOT NULL CHECK (status_class BETWEEN 1 AND 5),
    request_count   bigint NOT NULL CHECK (request_count >= 0),
    billable_count  bigint NOT NULL CHECK (billable_count >= 0),
    request_bytes   bigint NOT NULL,
    response_bytes  bigint NOT NULL,
    latency_us_sum  bigint NOT NULL,
    CONSTRAINT usage_hour_key UNIQUE NULLS NOT DISTINCT (hour, tenant_id, key_id, route_id, status_class)
);
CREATE INDEX usage_hour_tenant_idx ON usage_hour (tenant_id, hour);

-- ---------------------------------------------------------------------------------------
-- Billing.
-- ---------------------------------------------------------------------------------------

CREATE TABLE invoices (
    id               uuid PRIMARY KEY,
    tenant_id        uuid NOT NULL REFERENCES tenants (id),
    subscription_id  uuid REFERENCES subscriptions (id),
    -- UTC calendar month: [period_start, period_end).
    period_start     timestamptz NOT NULL,
    period_end       timestamptz NOT NULL CHECK (period_end > period_start),
    currency         char(3) NOT NULL CHECK (currency ~ '^[A-Z]{3}$'),
    status           text NOT NULL DEFAULT 'draft'
                     CHECK (status IN ('draft', 'finalized', 'pushed', 'emailed', 'stored', 'void')),
    subtotal_minor   bigint NOT NULL DEFAULT 0,
    total_minor      bigint NOT NULL DEFAULT 0,
    stripe_invoice_id text,
    document_key     text,
    created_at       timestamptz NOT NULL DEFAULT now(),
    finalized_at     timestamptz,
    updated_at       timestamptz NOT NULL DEFAULT now(),
    -- A retried or concurrent monthly job produces exactly one invoice.
    CONSTRAINT invoices_one_per_period UNIQUE (tenant_id, period_start)
);

CREATE TABLE invoice_lines (
    id             uuid PRIMARY KEY,
    invoice_id     uuid NOT NULL REFERENCES invoices (id) ON DELETE CASCADE,
    position       integer NOT NULL CHECK (position >= 0),
    kind           text NOT NULL CHECK (kind IN ('base_fee', 'usage', 'overage', 'correction')),
    description    text NOT NULL,
    quantity       bigint NOT NULL,
    -- Exact decimal unit price in major units, as rated (display only; amount is authoritative).
    unit_price     numeric(30, 12) NOT NULL,
    amount_minor   bigint NOT NULL,
    UNIQUE (invoice_id, position)
);

-- ---------------------------------------------------------------------------------------
-- Audit.
-- ---------------------------------------------------------------------------------------

CREATE TABLE audit_log (
    id             bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at             timestamptz NOT NULL DEFAULT now(),
    actor_user_id  uuid,
    -- Who, readable even after the user is deleted (email or 'system').
    actor          text NOT NULL,
    tenant_id      uuid,
    action         text NOT NULL,
    resource_type  text NOT NULL,
    resource_id    text,
    details        jsonb NOT NULL DEFAULT '{}'
);
CREATE INDEX audit_log_tenant_idx ON audit_log (tenant_id, at DESC);
