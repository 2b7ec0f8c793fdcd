//! Verified credentials, remembered for a short while so that a busy client
//! does not cost a store lookup per request.
//!
//! Entries are keyed by the credential's SHA-256 (as stored; the secret
//! itself is not kept) and trusted for [`VERIFIED_TTL`]; a session's entry
//! also stops at the session's expiry. Forgetting is what matters:
//! - revoking a key or ending a session through this process's store clears
//!   the cache at once;
//! - every revocation and sign-out also bumps `auth_revision.revision` in the
//!   store, in the same transaction, and the store re-reads that number at
//!   most every [`REVOCATION_POLL`] before it answers from the cache, so a
//!   key revoked by `ocs-dash keys revoke` (another process) or a session
//!   ended on another replica stops working within that time.
//!
//! Unknown or revoked credentials are never remembered: they always reach
//! the store.

use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Mutex, RwLock};
use std::time::{Duration, Instant};

use crate::store::Credential;

/// How long a verified credential is trusted without asking the store again.
pub const VERIFIED_TTL: Duration = Duration::from_secs(10);
/// How often (at most) the store's revocation counter is read.
pub const REVOCATION_POLL: Duration = Duration::from_millis(100);
/// Entries kept at most (one per active key or session); when full, the cache starts over.
const MAX_ENTRIES: usize = 10_000;

#[derive(Debug)]
struct Entry {
    cred: Credential,
    verified: Instant,
    /// A session's end (UTC microseconds).
    expires_at: Option<i64>,
}

#[derive(Debug)]
pub(crate) struct CredentialCache {
    entries: RwLock<HashMap<String, Entry>>,
    /// Bumped whenever entries are forgotten; a lookup that started before
    /// a bump does not store its (maybe stale) answer.
    generation: AtomicU64,
    /// The store's revocation counter as last read (-1: not yet).
    revision: AtomicI64,
    next_poll: Mutex<Instant>,
    /// One revision read at a time; the others go on with the cache.
    pub(crate) polling: tokio::sync::Mutex<()>,
}

impl Default for CredentialCache {
    fn default() -> Self {
        CredentialCache {
            entries: RwLock::default(),
            generation: AtomicU64::new(0),
            revision: AtomicI64::new(-1),
            next_poll: Mutex::new(Instant::now()),
            polling: tokio::sync::Mutex::new(()),
        }
    }
}

impl CredentialCache {
    /// The remembered credential for this hash, if still trusted at `now_micros`.
    pub(crate) fn get(&self, hash: &str, now_micros: i64) -> Option<Credential> {
        let entries = self.entries.read().expect("credential cache lock");
        let e = entries.get(hash)?;
        let fresh = e.verified.elapsed() < VERIFIED_TTL && e.expires_at.is_none_or(|t| t > now_micros);
        fresh.then(|| e.cred.clone())
    }

    /// The generation to pass to [`CredentialCache::put`] after a store lookup.
    pub(crate) fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// Remembers a credential the store just verified, unless the cache was
    /// cleared since `generation` was read.
    pub(crate) fn put(&self, hash: &str, cred: Credential, expires_at: Option<i64>, generation: u64) {
        let mut entries = self.entries.write().expect("credential cache lock");
        if self.generation.load(Ordering::Acquire) != generation {
            return;
        }
        if entries.len() >= MAX_ENTRIES {
            entries.clear();
        }
        entries.insert(
            hash.to_string(),
            Entry {
                cred,
                verified: Instant::now(),
                expires_at,
            },
        );
    }

    /// Forgets everything (a revocation or sign-out happened).
    pub(crate) fn clear(&self) {
        let mut entries = self.entries.write().expect("credential cache lock");
        self.generation.fetch_add(1, Ordering::AcqRel);
        entries.clear();
    }

    /// True when the revocation counter is due to be read again (and marks it read).
    pub(crate) fn poll_due(&self) -> bool {
        let mut next = self.next_poll.lock().expect("credential cache lock");
        let now = Instant::now();
        if now < *next {
            return false;
        }
        *next = now + REVOCATION_POLL;
        true
    }

    /// Takes the counter just read; a change forgets everything.
    pub(crate) fn saw_revision(&self, revision: i64) {
        if self.revision.swap(revision, Ordering::AcqRel) != revision {
            self.clear();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cred(key_id: i64) -> Credential {
        Credential {
            key_id,
            team_id: 1,
            team_slug: "t".into(),
            user: "u".into(),
            csrf: None,
        }
    }

    #[test]
    fn remembers_until_cleared() {
        let c = CredentialCache::default();
        assert_eq!(c.get("h", 0), None);
        c.put("h", cred(1), None, c.generation());
        assert_eq!(c.get("h", 0), Some(cred(1)));
        c.clear();
        assert_eq!(c.get("h", 0), None);
    }

    #[test]
    fn a_lookup_older_than_a_clear_is_not_stored() {
        let c = CredentialCache::default();
        let before = c.generation();
        c.clear();
        c.put("h", cred(1), None, before);
        assert_eq!(c.get("h", 0), None);
    }

    #[test]
    fn sessions_end_at_their_expiry() {
        let c = CredentialCache::default();
        c.put("s", cred(2), Some(1_000), c.generation());
        assert_eq!(c.get("s", 999), Some(cred(2)));
        assert_eq!(c.get("s", 1_000), None);
    }

    #[test]
    fn a_new_revision_forgets_everything() {
        let c = CredentialCache::default();
        c.saw_revision(3);
        c.put("h", cred(1), None, c.generation());
        c.saw_revision(3);
        assert_eq!(c.get("h", 0), Some(cred(1)));
        c.saw_revision(4);
        assert_eq!(c.get("h", 0), None);
    }
}
