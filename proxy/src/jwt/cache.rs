//! Tokens a snapshot has verified, so the signature is checked once per token and snapshot.
//!
//! Only tokens that verified are stored, so forged or junk tokens cannot fill the cache. The
//! map is keyed by a keyed hash of the token's signature segment (unpredictable to clients) and
//! a hit compares the whole token, so two tokens can never be mistaken for each other. Memory is
//! bounded: each shard holds at most [`SHARD_ENTRIES`] tokens and [`SHARD_BYTES`] of them, and a
//! full shard is emptied (the tokens in it verify again on their next request).

use std::collections::HashMap;
use std::hash::BuildHasher;
use std::sync::Arc;

use parking_lot::RwLock;
use tollgate_core::TenantId;

use super::{JwtPrincipal, JwtRejection, LEEWAY_SECONDS};

const SHARDS: usize = 16;
/// Tokens per shard before it is emptied.
pub const SHARD_ENTRIES: usize = 2048;
/// Token bytes per shard before it is emptied (the cache's memory is bounded by about
/// `SHARDS × SHARD_BYTES` plus the principals).
pub const SHARD_BYTES: usize = 1 << 20;

/// A token whose signature, issuer and audience verified.
#[derive(Debug)]
pub struct Verified {
    pub(super) token: Box<str>,
    pub(super) tenant_id: TenantId,
    pub(super) exp: i64,
    pub(super) nbf: Option<i64>,
    pub(super) principal: Arc<JwtPrincipal>,
}

impl Verified {
    /// The issuer's tenant.
    pub fn tenant_id(&self) -> TenantId {
        self.tenant_id
    }

    /// Checks `exp` and `nbf` (seconds since the epoch) with [`LEEWAY_SECONDS`].
    pub fn check_times(&self, now: i64) -> Result<(), JwtRejection> {
        if now > self.exp.saturating_add(LEEWAY_SECONDS) {
            return Err(JwtRejection::Expired);
        }
        if self
            .nbf
            .is_some_and(|nbf| nbf > now.saturating_add(LEEWAY_SECONDS))
        {
            return Err(JwtRejection::NotYetValid);
        }
        Ok(())
    }
}

#[derive(Debug, Default)]
struct Shard {
    tokens: HashMap<u64, Arc<Verified>>,
    bytes: usize,
}

/// The verified-token cache of one snapshot.
#[derive(Debug)]
pub struct VerifiedTokens {
    shards: Box<[RwLock<Shard>]>,
    hasher: std::collections::hash_map::RandomState,
}

impl Default for VerifiedTokens {
    fn default() -> Self {
        Self {
            shards: (0..SHARDS).map(|_| RwLock::default()).collect(),
            hasher: std::collections::hash_map::RandomState::new(),
        }
    }
}

impl VerifiedTokens {
    /// The signature segment (the token's tail, unique per token) is what is hashed: it is
    /// short, and hashing the whole token would cost more than the rest of a hit.
    fn slot(&self, token: &str) -> (usize, u64) {
        let signature = token.rsplit_once('.').map_or(token, |(_, s)| s);
        let hash = self.hasher.hash_one(signature.as_bytes());
        // The low bits pick the shard; the map re-hashes the whole value.
        (usize::try_from(hash % SHARDS as u64).unwrap_or(0), hash)
    }

    /// The verified entry for exactly this token.
    pub fn get(&self, token: &str) -> Option<Arc<Verified>> {
        let (shard, hash) = self.slot(token);
        let shard = self.shards[shard].read();
        let verified = shard.tokens.get(&hash)?;
        (*verified.token == *token).then(|| verified.clone())
    }

    /// Remembers a verified token (replacing a colliding one).
    pub fn insert(&self, token: &str, verified: Arc<Verified>) {
        let (shard, hash) = self.slot(token);
        let mut shard = self.shards[shard].write();
        if shard.tokens.len() >= SHARD_ENTRIES || shard.bytes + token.len() > SHARD_BYTES {
            shard.tokens.clear();
            shard.bytes = 0;
        }
        if let Some(replaced) = shard.tokens.insert(hash, verified) {
            shard.bytes -= replaced.token.len();
        }
        shard.bytes += token.len();
    }

    /// How many tokens are remembered.
    pub fn len(&self) -> usize {
        self.shards.iter().map(|s| s.read().tokens.len()).sum()
    }

    /// Whether no token is remembered.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn verified(token: &str) -> Arc<Verified> {
        Arc::new(Verified {
            token: token.into(),
            tenant_id: TenantId::new(),
            exp: 1000,
            nbf: Some(500),
            principal: Arc::new(JwtPrincipal {
                subject: None,
                scopes: Vec::new(),
            }),
        })
    }

    #[test]
    fn a_hit_needs_the_whole_token_not_only_its_signature() {
        let cache = VerifiedTokens::default();
        cache.insert("h.p.sig", verified("h.p.sig"));
        assert!(cache.get("h.p.sig").is_some());
        // Same signature segment, other header/payload: same slot, but not the same token.
        assert!(cache.get("h.forged.sig").is_none());
        assert!(cache.get("h.p.other").is_none());
    }

    #[test]
    fn memory_stays_bounded_by_entries_and_bytes() {
        let cache = VerifiedTokens::default();
        for i in 0..(SHARDS * SHARD_ENTRIES * 3) {
            let token = format!("h.p.{i}");
            cache.insert(&token, verified(&token));
        }
        assert!(cache.len() <= SHARDS * SHARD_ENTRIES);
        let big = "x".repeat(SHARD_BYTES / 4);
        for i in 0..(SHARDS * 16) {
            let token = format!("h.{big}.{i}");
            cache.insert(&token, verified(&token));
        }
        for shard in cache.shards.iter() {
            assert!(shard.read().bytes <= SHARD_BYTES);
        }
        assert!(cache.len() <= SHARDS * 4);
    }

    #[test]
    fn times_are_checked_with_the_leeway() {
        let entry = verified("t");
        assert_eq!(entry.check_times(1000 + LEEWAY_SECONDS), Ok(()));
        assert_eq!(
            entry.check_times(1001 + LEEWAY_SECONDS),
            Err(JwtRejection::Expired)
        );
        assert_eq!(entry.check_times(500 - LEEWAY_SECONDS), Ok(()));
        assert_eq!(
            entry.check_times(499 - LEEWAY_SECONDS),
            Err(JwtRejection::NotYetValid)
        );
    }
}
