//! Limiter unit tests (in-memory paths).
