-- Opt-in strict rate limiting per plan: every request is decided by one atomic Redis script
-- (exact cluster-wide, one round trip per request) instead of local GCRA with delayed sync.
ALTER TABLE plans ADD COLUMN rate_strict boolean NOT NULL DEFAULT false;
