//! Plan limits: request rate (GCRA, cluster-wide through Redis) and monthly quota (in progress).
