-- TLS to upstreams: a route whose upstreams are https:// verifies them against the system roots,
-- or against its own CA bundle (PEM) when it has one, and may present a client certificate
-- (mutual TLS). The key is write-only through the control API and never logged. A base path per
-- upstream is part of the upstream URL (https://host/v2) and needs no column.
ALTER TABLE routes
    ADD COLUMN tls_ca_pem text
        CHECK (tls_ca_pem IS NULL OR length(tls_ca_pem) BETWEEN 1 AND 65536),
    ADD COLUMN tls_client_cert_pem text
        CHECK (tls_client_cert_pem IS NULL OR length(tls_client_cert_pem) BETWEEN 1 AND 65536),
    ADD COLUMN tls_client_key_pem text
        CHECK (tls_client_key_pem IS NULL OR length(tls_client_key_pem) BETWEEN 1 AND 16384),
    ADD CONSTRAINT routes_tls_client_cert_and_key
        CHECK ((tls_client_cert_pem IS NULL) = (tls_client_key_pem IS NULL));
