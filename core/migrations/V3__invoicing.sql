-- Invoicing: exact hourly roll-ups, the invoice state machine with its step records, gapless
-- invoice numbers, and what correction lines need. See docs/architecture.md, "Invoicing".

-- ---------------------------------------------------------------------------------------
-- Exact roll-ups: an hour whose usage_minute rows changed since usage_hour was recomputed is
-- "dirty". Invariant: for every hour H not in usage_hour_dirty, usage_hour(H) equals the sum of
-- usage_minute over H. Readers (usage series, rating) take usage_hour for clean hours and
-- usage_minute for dirty ones, and get exact results whatever the roll-up's progress; a late
-- event of any age makes its hour dirty until `tollgate-invoicing hourly` recomputes it.
-- ---------------------------------------------------------------------------------------

CREATE TABLE usage_hour_dirty (
    hour       timestamptz PRIMARY KEY CHECK (date_trunc('hour', hour, 'UTC') = hour),
    marked_at  timestamptz NOT NULL DEFAULT now()
);

-- Statement-level with a transition table: one small upsert per metering batch, not per row.
-- DO UPDATE ... WHERE false writes nothing but locks an existing row, so a roll-up that deletes
-- the mark (same lock) either waits for this transaction's minute rows to commit, or has
-- deleted the mark first and this insert creates it again: the invariant holds at every
-- snapshot. Hours are locked in order, so two batches cannot deadlock.
CREATE FUNCTION tollgate_mark_usage_hours_dirty() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO usage_hour_dirty AS d (hour)
    SELECT DISTINCT date_trunc('hour', minute, 'UTC') FROM changed_minutes ORDER BY 1
    ON CONFLICT (hour) DO UPDATE SET hour = EXCLUDED.hour WHERE false;
    RETURN NULL;
END;
$$;

-- Transition tables allow one event per trigger, hence two.
CREATE TRIGGER usage_minute_marks_hours_on_insert AFTER INSERT ON usage_minute
    REFERENCING NEW TABLE AS changed_minutes
    FOR EACH STATEMENT EXECUTE FUNCTION tollgate_mark_usage_hours_dirty();
CREATE TRIGGER usage_minute_marks_hours_on_update AFTER UPDATE ON usage_minute
    REFERENCING NEW TABLE AS changed_minutes
    FOR EACH STATEMENT EXECUTE FUNCTION tollgate_mark_usage_hours_dirty();

-- Minutes stored before this migration have never been rolled up.
INSERT INTO usage_hour_dirty (hour)
SELECT DISTINCT date_trunc('hour', minute, 'UTC') FROM usage_minute
ON CONFLICT DO NOTHING;

-- Billable units of a tenant in [p_from, p_to), exact: whole clean hours from usage_hour, the
-- partial hours at either end and dirty hours from usage_minute. A minute's usage belongs to the
-- range holding the minute's first instant, so adjacent ranges split usage without overlap.
CREATE FUNCTION usage_billable_units(p_tenant uuid, p_from timestamptz, p_to timestamptz)
RETURNS bigint
LANGUAGE sql STABLE AS $$
    WITH bounds AS (
        SELECT CASE WHEN date_trunc('hour', p_from, 'UTC') = p_from THEN p_from
                    ELSE date_trunc('hour', p_from, 'UTC') + interval '1 hour' END AS first_hour,
               date_trunc('hour', p_to, 'UTC') AS end_hour
    ), whole AS (
        SELECT first_hour, greatest(first_hour, end_hour) AS end_hour FROM bounds
    )
    SELECT (coalesce((SELECT sum(h.billable_count) FROM usage_hour h, whole w
                       WHERE h.tenant_id = p_tenant AND h.hour >= w.first_hour AND h.hour < w.end_hour
                         AND NOT EXISTS (SELECT 1 FROM usage_hour_dirty d WHERE d.hour = h.hour)), 0)
          + coalesce((SELECT sum(m.billable_count) FROM usage_minute m, whole w
                       WHERE m.tenant_id = p_tenant AND m.minute >= p_from AND m.minute < p_to
                         AND (m.minute < w.first_hour OR m.minute >= w.end_hour)), 0)
          + coalesce((SELECT sum(m.billable_count)
                        FROM usage_hour_dirty d, whole w, usage_minute m
                       WHERE d.hour >= w.first_hour AND d.hour < w.end_hour
                         AND m.tenant_id = p_tenant AND m.minute >= d.hour
                         AND m.minute < d.hour + interval '1 hour'), 0))::bigint
$$;

-- ---------------------------------------------------------------------------------------
-- Invoices: draft → finalized → (delivery steps, recorded in invoice_steps) → paid /
-- payment_failed / uncollectible / void.
-- ---------------------------------------------------------------------------------------

ALTER TABLE invoices DROP CONSTRAINT invoices_status_check;
-- The delivery steps are step records now, not statuses.
UPDATE invoices SET status = 'finalized' WHERE status IN ('pushed', 'emailed', 'stored');
ALTER TABLE invoices
    ADD CONSTRAINT invoices_status_check
        CHECK (status IN ('draft', 'finalized', 'paid', 'payment_failed', 'uncollectible', 'void')),
    -- TG-<year>-<sequence>: assigned in the finalizing transaction from invoice_number_counters.
    ADD COLUMN number text UNIQUE CHECK (number ~ '^TG-[0-9]{4}-[0-9]{6,}$'),
    ADD COLUMN status_changed_at timestamptz NOT NULL DEFAULT now();
-- Invoices finalized under the old schema (none in production) are numbered in creation order.
UPDATE invoices i
   SET number = format('TG-%s-%s',
                       extract(year FROM coalesce(i.finalized_at, i.created_at) AT TIME ZONE 'UTC')::int,
                       lpad(n.seq::text, 6, '0'))
  FROM (SELECT id, row_number() OVER (ORDER BY created_at, id) AS seq FROM invoices
         WHERE status NOT IN ('draft', 'void')) n
 WHERE i.id = n.id;
ALTER TABLE invoices
    ADD CONSTRAINT invoices_numbered_when_final
        CHECK ((status = 'draft' AND number IS NULL) OR status = 'void' OR number IS NOT NULL);

-- The gapless counter: one row per calendar year (UTC) of finalization. Finalizing increments
-- it in the same transaction that sets the number, so a rolled-back finalization returns its
-- number and no number is ever skipped or used twice (a sequence would skip).
CREATE TABLE invoice_number_counters (
    year      integer PRIMARY KEY CHECK (year BETWEEN 2000 AND 9999),
    last_seq  bigint NOT NULL CHECK (last_seq > 0)
);
INSERT INTO invoice_number_counters (year, last_seq)
SELECT split_part(number, '-', 2)::int, max(split_part(number, '-', 3)::bigint)
  FROM invoices WHERE number IS NOT NULL GROUP BY 1;

-- Every status change, with its time: written by a trigger, so no code path can skip it.
CREATE TABLE invoice_transitions (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    invoice_id   uuid NOT NULL REFERENCES invoices (id) ON DELETE CASCADE,
    -- NULL when the invoice was created.
    from_status  text,
    to_status    text NOT NULL,
    at           timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX invoice_transitions_invoice_idx ON invoice_transitions (invoice_id, id);

-- One row per invoice and step (`draft`, `finalize`, and the delivery steps such as `stripe`,
-- `email`, `document`): where an invoice is, how often a step was tried, and why it failed.
CREATE TABLE invoice_steps (
    invoice_id        uuid NOT NULL REFERENCES invoices (id) ON DELETE CASCADE,
    step              text NOT NULL CHECK (step ~ '^[a-z][a-z0-9_]{0,39}$'),
    status            text NOT NULL CHECK (status IN ('running', 'succeeded', 'failed')),
    attempts          integer NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    last_error        text CHECK (length(last_error) <= 2000),
    first_attempt_at  timestamptz,
    last_attempt_at   timestamptz,
    succeeded_at      timestamptz,
    -- A failed step is retried from this instant on (backoff chosen by the step's runner).
    next_attempt_at   timestamptz,
    -- What the step produced that a retry or a later step needs (e.g. a provider's id).
    detail            jsonb NOT NULL DEFAULT '{}',
    updated_at        timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (invoice_id, step),
    CHECK ((status = 'succeeded') = (succeeded_at IS NOT NULL))
);
CREATE INDEX invoice_steps_unfinished_idx ON invoice_steps (step, next_attempt_at)
    WHERE status <> 'succeeded';

-- Lines: which subscription slice a line rates, and for a correction which invoice (and so
-- which period) it corrects.
ALTER TABLE invoice_lines
    ADD COLUMN subscription_id uuid,
    ADD COLUMN corrects_invoice_id uuid REFERENCES invoices (id),
    ADD COLUMN corrects_period_start timestamptz,
    ADD CONSTRAINT invoice_lines_correction_names_its_period
        CHECK ((kind = 'correction') = (corrects_invoice_id IS NOT NULL AND corrects_period_start IS NOT NULL));

-- The usage each invoice billed per subscription slice: its own period's (corrects_invoice_id
-- NULL) and the late usage of earlier invoices it corrects. The units billed for a slice are
-- the sum over non-void invoices, so the next correction bills exactly what is still unbilled.
CREATE TABLE invoice_usage (
    invoice_id           uuid NOT NULL REFERENCES invoices (id) ON DELETE CASCADE,
    subscription_id      uuid NOT NULL,
    plan_id              uuid NOT NULL,
    -- The plan as rated, so a correction prices late usage as the original did even after
    -- the plan was edited: its name, its tollgate_core::plan::Pricing, and the included units
    -- after proration.
    plan_name            text NOT NULL,
    pricing              jsonb NOT NULL,
    included_units       bigint NOT NULL CHECK (included_units >= 0),
    -- The slice of the (own or corrected) period the subscription covered.
    slice_start          timestamptz NOT NULL,
    slice_end            timestamptz NOT NULL CHECK (slice_end > slice_start),
    corrects_invoice_id  uuid REFERENCES invoices (id),
    -- Billable units billed here: measured (own period) or added since (correction).
    units                bigint NOT NULL CHECK (units >= 0),
    -- Usage charges billed here for them, minor units (base fee excluded).
    usage_minor          bigint NOT NULL,
    UNIQUE NULLS NOT DISTINCT (invoice_id, subscription_id, corrects_invoice_id)
);
CREATE INDEX invoice_usage_corrects_idx ON invoice_usage (corrects_invoice_id, subscription_id)
    WHERE corrects_invoice_id IS NOT NULL;
CREATE INDEX invoices_tenant_period_idx ON invoices (tenant_id, period_start DESC);

-- A finalized invoice never changes: its amounts, period, number and lines are frozen; only
-- the status moves on (along the allowed transitions) and delivery references are filled in.
CREATE FUNCTION tollgate_guard_invoice() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'UPDATE' THEN
        IF OLD.status <> 'draft' AND (NEW.tenant_id, NEW.subscription_id, NEW.period_start,
               NEW.period_end, NEW.currency, NEW.subtotal_minor, NEW.total_minor, NEW.number,
               NEW.finalized_at)
             IS DISTINCT FROM (OLD.tenant_id, OLD.subscription_id, OLD.period_start,
               OLD.period_end, OLD.currency, OLD.subtotal_minor, OLD.total_minor, OLD.number,
               OLD.finalized_at) THEN
            RAISE EXCEPTION 'invoice % is %, and a finalized invoice never changes', OLD.id, OLD.status
                USING ERRCODE = 'check_violation';
        END IF;
        IF NEW.status IS DISTINCT FROM OLD.status THEN
            IF NOT ((OLD.status = 'draft' AND NEW.status IN ('finalized', 'void'))
                 OR (OLD.status = 'finalized' AND NEW.status IN ('paid', 'payment_failed', 'uncollectible', 'void'))
                 OR (OLD.status = 'payment_failed' AND NEW.status IN ('paid', 'uncollectible', 'void'))
                 OR (OLD.status = 'uncollectible' AND NEW.status IN ('paid', 'void'))) THEN
                RAISE EXCEPTION 'invoice %: % → % is not an allowed transition', OLD.id, OLD.status, NEW.status
                    USING ERRCODE = 'check_violation';
            END IF;
            NEW.status_changed_at := now();
        END IF;
        NEW.updated_at := now();
    END IF;
    RETURN NEW;
END;
$$;
CREATE TRIGGER invoices_guard BEFORE UPDATE ON invoices
    FOR EACH ROW EXECUTE FUNCTION tollgate_guard_invoice();

CREATE FUNCTION tollgate_record_invoice_transition() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        INSERT INTO invoice_transitions (invoice_id, from_status, to_status) VALUES (NEW.id, NULL, NEW.status);
    ELSIF NEW.status IS DISTINCT FROM OLD.status THEN
        INSERT INTO invoice_transitions (invoice_id, from_status, to_status) VALUES (NEW.id, OLD.status, NEW.status);
    END IF;
    RETURN NULL;
END;
$$;
CREATE TRIGGER invoices_record_transition AFTER INSERT OR UPDATE ON invoices
    FOR EACH ROW EXECUTE FUNCTION tollgate_record_invoice_transition();

CREATE FUNCTION tollgate_guard_invoice_children() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    parent uuid;
    parent_status text;
BEGIN
    IF TG_OP = 'DELETE' THEN parent := OLD.invoice_id; ELSE parent := NEW.invoice_id; END IF;
    SELECT status INTO parent_status FROM invoices WHERE id = parent;
    -- A deleted parent (cascade) has no status left to protect.
    IF parent_status IS NOT NULL AND parent_status <> 'draft' THEN
        RAISE EXCEPTION 'invoice % is %: its % never change', parent, parent_status, TG_TABLE_NAME
            USING ERRCODE = 'check_violation';
    END IF;
    IF TG_OP = 'DELETE' THEN RETURN OLD; END IF;
    RETURN NEW;
END;
$$;
CREATE TRIGGER invoice_lines_guard BEFORE INSERT OR UPDATE OR DELETE ON invoice_lines
    FOR EACH ROW EXECUTE FUNCTION tollgate_guard_invoice_children();
CREATE TRIGGER invoice_usage_guard BEFORE INSERT OR UPDATE OR DELETE ON invoice_usage
    FOR EACH ROW EXECUTE FUNCTION tollgate_guard_invoice_children();

-- The subscription in force now, one per tenant, as the proxy loader, the control API's
-- subscription and current-usage endpoints all pick it: the latest started that has not ended.
CREATE VIEW current_subscriptions AS
SELECT DISTINCT ON (s.tenant_id) s.id, s.tenant_id, s.plan_id, s.starts_at, s.ends_at
  FROM subscriptions s
 WHERE s.starts_at <= now() AND (s.ends_at IS NULL OR s.ends_at > now())
 ORDER BY s.tenant_id, s.starts_at DESC, s.id DESC;
