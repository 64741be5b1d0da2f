-- Billing delivery: where a tenant's invoices go (email, Stripe collection method), the Stripe
-- customer each tenant maps to, and the dedup record of Stripe's webhook events.

-- The address invoices are emailed to; NULL means "no email step" (the step records why).
ALTER TABLE tenants
    ADD COLUMN billing_email text
        CHECK (billing_email IS NULL OR (billing_email ~ '^[^@\s]+@[^@\s]+$' AND length(billing_email) <= 254)),
    -- Stripe's collection method: charge a saved payment method, or email the invoice for payment.
    ADD COLUMN collection_method text NOT NULL DEFAULT 'charge_automatically'
        CHECK (collection_method IN ('charge_automatically', 'send_invoice'));

-- Billing details are not proxy configuration: changing them must not make every proxy
-- reload. The trigger now fires on updates of the columns proxies read (add a column here
-- when the proxy starts reading it).
DROP TRIGGER tenants_notify ON tenants;
CREATE TRIGGER tenants_notify AFTER INSERT OR DELETE ON tenants
    FOR EACH ROW EXECUTE FUNCTION tollgate_notify_config_change();
CREATE TRIGGER tenants_notify_update AFTER UPDATE ON tenants
    FOR EACH ROW
    WHEN ((OLD.slug, OLD.name, OLD.status) IS DISTINCT FROM (NEW.slug, NEW.name, NEW.status))
    EXECUTE FUNCTION tollgate_notify_config_change();

-- One Stripe customer per tenant. Its own table: a crash between Stripe creating the customer
-- and this insert is covered by the idempotency key (and a metadata search), and the first
-- id stored wins if two jobs race.
CREATE TABLE stripe_customers (
    tenant_id    uuid PRIMARY KEY REFERENCES tenants (id) ON DELETE CASCADE,
    customer_id  text NOT NULL UNIQUE CHECK (customer_id ~ '^cus_[A-Za-z0-9]+$'),
    created_at   timestamptz NOT NULL DEFAULT now()
);

-- Payment results move invoices.status along V3's state machine (finalized → paid /
-- payment_failed / uncollectible / void); delivery steps are invoice_steps records, so a
-- payment reported before our email step ran changes nothing about delivery.
-- One of our invoices per Stripe invoice: the webhook finds ours by Stripe's id.
CREATE UNIQUE INDEX invoices_stripe_invoice_id_key ON invoices (stripe_invoice_id)
    WHERE stripe_invoice_id IS NOT NULL;

-- Every Stripe event handled, by its id: Stripe delivers at least once, so a repeated event is
-- acknowledged and changes nothing.
CREATE TABLE stripe_webhook_events (
    event_id      text PRIMARY KEY CHECK (length(event_id) BETWEEN 1 AND 255),
    event_type    text NOT NULL CHECK (length(event_type) BETWEEN 1 AND 255),
    invoice_id    uuid REFERENCES invoices (id) ON DELETE SET NULL,
    received_at   timestamptz NOT NULL DEFAULT now()
);
