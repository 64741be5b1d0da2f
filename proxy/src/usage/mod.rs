//! Usage events: queued from the request path without waiting, produced to Kafka, spooled to
//! disk when the broker is unreachable (in progress).
