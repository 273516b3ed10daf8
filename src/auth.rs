//! HTTP Basic authentication against the mailbox store, with a cache of verified credentials
//! so that a known-good user/password pair does not cost an argon2 verification per request.
//!
//! The cache maps a normalised user name to a keyed SHA-256 digest of the password (the key is
//! 32 random bytes drawn per [`Authenticator`], so the digests are useless outside this process),
//! the mailbox record as read when the entry was made or last refreshed, the store's
//! [`change_version`](Store::change_version) read just before that record, and when the entry
//! was inserted. A request is a **hit** when an entry exists, is younger than the TTL, and its
//! digest equals the presented password's (compared in constant time). If the store's change
//! version is still the entry's, the cached record is current and the hit costs one SHA-256, a
//! lock and an atomic load; otherwise the record is read again (one indexed SQLite read) and the
//! hit stands only if the store still has the same password hash ([`CredentialStamp`](crate::store::CredentialStamp)) for the
//! same mailbox. So a password changed through this process's store takes effect on the next
//! request, and one changed by another process (the `mailbox` command) within the store's
//! external poll interval (100 ms by default), not after the TTL. Anything else is a **miss**: a
//! full argon2 verification through [`Store::verify_password`], whose success (only) is
//! cached.
//!
//! [`Authenticator::authenticate`] is synchronous and may block for the argon2 verification;
//! async callers use [`Authenticator::authenticate_async`], which answers hits inline and runs
//! misses on tokio's blocking pool.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use rand::RngCore;
use sha2::{Digest, Sha256};
use tokio::sync::watch;

use crate::store::{normalize_user, Mailbox, MailboxId, Store, StoreError};

/// How long a verified credential is trusted without a new argon2 verification.
pub const DEFAULT_TTL: Duration = Duration::from_secs(5 * 60);

/// How many users the cache holds at most.
pub const DEFAULT_CAPACITY: usize = 10_000;

/// The longest user name, in characters: the store's own limit. A longer one is refused
/// before the throttle, argon2 or the log see it.
pub use crate::store::MAX_USER_CHARS;

/// How many characters of a user name [`LogUser`] shows.
pub const LOGGED_USER_CHARS: usize = 64;

/// Whether `user` is longer than [`MAX_USER_CHARS`] (counting no further than needed).
pub fn user_name_too_long(user: &str) -> bool {
    user.len() > MAX_USER_CHARS && user.chars().nth(MAX_USER_CHARS).is_some()
}

/// A user name as the log shows it: at most [`LOGGED_USER_CHARS`] characters (then `...`),
/// and `?` for every control character, line or paragraph separator and bidirectional
/// control, so that a name can neither forge a log line nor disguise one.
pub struct LogUser<'a>(pub &'a str);

impl LogUser<'_> {
    fn safe(c: char) -> char {
        let unsafe_char = c.is_control()
            || matches!(
                c,
                '\u{2028}' | '\u{2029}' // line and paragraph separator
                | '\u{200e}' | '\u{200f}' | '\u{061c}' // direction marks
                | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}' // embeddings, isolates
                | '\u{feff}'
            );
        if unsafe_char {
            '?'
        } else {
            c
        }
    }
}

impl std::fmt::Display for LogUser<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        use std::fmt::Write as _;
        let mut chars = self.0.chars();
        for c in chars.by_ref().take(LOGGED_USER_CHARS) {
            f.write_char(Self::safe(c))?;
        }
        if chars.next().is_some() {
            f.write_str("...")?;
        }
        Ok(())
    }
}

/// A failure to authenticate that is not a wrong password (which is `Ok(None)`).
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// The credential store failed.
    #[error("credential store failed")]
    Store(#[from] StoreError),
    /// The blocking task running the verification panicked or was cancelled.
    #[error("credential verification task failed")]
    Task(#[source] tokio::task::JoinError),
    /// The verification this request shared with others failed.
    #[error("shared credential verification failed")]
    Shared(#[source] Arc<AuthError>),
    /// The verification this request waited for ended without an outcome.
    #[error("credential verification ended without an outcome")]
    Abandoned,
}

/// Counters of the cache, for tests and benchmarks.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AuthStats {
    /// Requests answered from the cache.
    pub hits: u64,
    /// Requests that needed an argon2 verification.
    pub slow_verifications: u64,
}

/// What the cache knows of a (user, password) pair ([`Authenticator::lookup`]).
#[derive(Debug, Clone)]
pub enum Lookup {
    /// The password was verified for this user, and the mailbox record is current.
    Hit(Arc<Mailbox>),
    /// Another password was verified for this user: this one is wrong (or changed by another
    /// process a moment ago).
    Mismatch,
    /// Nothing is known: only a verification can tell.
    Absent,
}

/// What a full verification found.
#[derive(Debug, Clone)]
pub enum Verified {
    /// The password is right.
    Right(Arc<Mailbox>),
    /// The password is wrong or there is no such user; `known_user` tells which, for the log
    /// only (the answer must not).
    Wrong {
        /// A mailbox of this name exists.
        known_user: bool,
    },
}

impl Verified {
    /// The mailbox, when the password is right.
    pub fn mailbox(self) -> Option<Arc<Mailbox>> {
        match self {
            Verified::Right(mailbox) => Some(mailbox),
            Verified::Wrong { .. } => None,
        }
    }
}

/// The outcome of one verification, shared by every request that waited for it.
type Outcome = Result<Verified, Arc<AuthError>>;

/// Runs once a verification started by [`Authenticator::verify_admitted`] has ended, also when
/// the request that started it went away: with what it found, or `None` when the check itself
/// failed.
pub type Completion = Box<dyn FnOnce(Option<&Verified>) + Send>;

struct Entry {
    digest: [u8; 32],
    /// The mailbox as read at `version`.
    mailbox: Arc<Mailbox>,
    version: u64,
    inserted: Instant,
}

struct Inner {
    store: Store,
    key: [u8; 32],
    ttl: Duration,
    capacity: usize,
    cache: Mutex<HashMap<String, Entry>>,
    /// The verifications in flight, per (user, password digest), with the channel their
    /// outcome will be published on (see [`Authenticator::verify_admitted`]).
    inflight: Mutex<HashMap<FlightKey, watch::Receiver<Option<Outcome>>>>,
    hits: AtomicU64,
    slow: AtomicU64,
}

type FlightKey = (String, [u8; 32]);

/// Takes a verification off the in-flight map when it ends, also if its task panics.
struct Flight {
    auth: Authenticator,
    key: FlightKey,
}

impl Drop for Flight {
    fn drop(&mut self) {
        self.auth
            .inner
            .inflight
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&self.key);
    }
}

/// Checks HTTP Basic credentials against the [`Store`], caching successes (see the module
/// docs). Cheap to clone; clones share the cache.
#[derive(Clone)]
pub struct Authenticator {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Authenticator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Authenticator")
            .field("ttl", &self.inner.ttl)
            .field("capacity", &self.inner.capacity)
            .finish_non_exhaustive()
    }
}

/// Compares two digests in time independent of where they differ.
fn digests_equal(a: &[u8; 32], b: &[u8; 32]) -> bool {
    let diff = a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y));
    std::hint::black_box(diff) == 0
}

impl Authenticator {
    /// An authenticator with [`DEFAULT_TTL`] and [`DEFAULT_CAPACITY`].
    pub fn new(store: Store) -> Self {
        Self::with_limits(store, DEFAULT_TTL, DEFAULT_CAPACITY)
    }

    /// An authenticator trusting a verified credential for `ttl` and caching at most
    /// `capacity` users (`capacity` 0 or `ttl` zero turns the cache off).
    pub fn with_limits(store: Store, ttl: Duration, capacity: usize) -> Self {
        let mut key = [0u8; 32];
        rand::rngs::OsRng.fill_bytes(&mut key);
        Self {
            inner: Arc::new(Inner {
                store,
                key,
                ttl,
                capacity,
                cache: Mutex::new(HashMap::new()),
                inflight: Mutex::new(HashMap::new()),
                hits: AtomicU64::new(0),
                slow: AtomicU64::new(0),
            }),
        }
    }

    fn cache(&self) -> MutexGuard<'_, HashMap<String, Entry>> {
        // The map stays consistent whatever panicked while holding the lock.
        self.inner
            .cache
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    fn digest(&self, user_key: &str, password: &str) -> [u8; 32] {
        let mut h = Sha256::new();
        h.update(self.inner.key);
        h.update((user_key.len() as u64).to_be_bytes());
        h.update(user_key.as_bytes());
        h.update(password.as_bytes());
        h.finalize().into()
    }

    /// The fast path alone: `Some(id)` when the credentials are a cache hit, `None` when they
    /// need a full verification (which this does not do). Costs one SHA-256, and one indexed
    /// database read only when the store changed since the entry's record was read.
    pub fn cached(&self, user: &str, password: &str) -> Result<Option<MailboxId>, AuthError> {
        Ok(self.cached_mailbox(user, password)?.map(|m| m.id))
    }

    /// Like [`cached`](Self::cached), returning the caller's mailbox record, current as of
    /// the check (so a request needs no read of its own to know its caller).
    pub fn cached_mailbox(
        &self,
        user: &str,
        password: &str,
    ) -> Result<Option<Arc<Mailbox>>, AuthError> {
        Ok(match self.lookup(user, password)? {
            Lookup::Hit(mailbox) => Some(mailbox),
            Lookup::Mismatch | Lookup::Absent => None,
        })
    }

    /// What the cache knows of `user` and `password`, without a verification: a hit costs
    /// one SHA-256, and one indexed database read only when the store changed since the
    /// entry's record was read.
    pub fn lookup(&self, user: &str, password: &str) -> Result<Lookup, AuthError> {
        let key = normalize_user(user);
        let key: &str = key.as_ref();
        let digest = self.digest(key, password);
        // One clock read for both checks below.
        let now = Instant::now();
        // Before any read of the record below: a change after this is seen next time.
        let version = self.inner.store.change_version_at(now)?;
        let found = {
            let mut cache = self.cache();
            match cache.get(key) {
                Some(e) if now.saturating_duration_since(e.inserted) >= self.inner.ttl => {
                    cache.remove(key);
                    None
                }
                Some(e) if digests_equal(&e.digest, &digest) => {
                    Some((Arc::clone(&e.mailbox), e.version))
                }
                Some(_) => return Ok(Lookup::Mismatch),
                None => None,
            }
        };
        let Some((cached, seen)) = found else {
            return Ok(Lookup::Absent);
        };
        if seen == version {
            self.inner.hits.fetch_add(1, Ordering::Relaxed);
            return Ok(Lookup::Hit(cached));
        }
        let fresh = self
            .inner
            .store
            .mailbox(user)?
            .filter(|m| m.id == cached.id && m.credential_stamp() == cached.credential_stamp());
        let Some(fresh) = fresh else {
            // Password changed or mailbox gone since the entry was made.
            self.invalidate(user);
            return Ok(Lookup::Absent);
        };
        let fresh = Arc::new(fresh);
        if let Some(e) = self.cache().get_mut(key) {
            // Unless another request replaced the entry meanwhile.
            if digests_equal(&e.digest, &digest) && e.mailbox.id == fresh.id {
                e.mailbox = Arc::clone(&fresh);
                e.version = version;
            }
        }
        self.inner.hits.fetch_add(1, Ordering::Relaxed);
        Ok(Lookup::Hit(fresh))
    }

    /// The slow path: one argon2 verification; caches a success. A failure costs one more
    /// indexed read, known and unknown users alike, to tell the log which it was.
    fn verify_and_cache(&self, user: &str, password: &str) -> Result<Verified, AuthError> {
        self.inner.slow.fetch_add(1, Ordering::Relaxed);
        let version = self.inner.store.change_version()?;
        let Some(mailbox) = self.inner.store.verify_password(user, password)? else {
            let known_user = self.inner.store.mailbox(user)?.is_some();
            return Ok(Verified::Wrong { known_user });
        };
        let mailbox = Arc::new(mailbox);
        if self.inner.capacity > 0 && !self.inner.ttl.is_zero() {
            let key = normalize_user(user).into_owned();
            let entry = Entry {
                digest: self.digest(&key, password),
                mailbox: Arc::clone(&mailbox),
                version,
                inserted: Instant::now(),
            };
            let mut cache = self.cache();
            if cache.len() >= self.inner.capacity && !cache.contains_key(&key) {
                let ttl = self.inner.ttl;
                cache.retain(|_, e| e.inserted.elapsed() < ttl);
                if cache.len() >= self.inner.capacity {
                    let oldest = cache
                        .iter()
                        .min_by_key(|(_, e)| e.inserted)
                        .map(|(k, _)| k.clone());
                    if let Some(oldest) = oldest {
                        cache.remove(&oldest);
                    }
                }
            }
            cache.insert(key, entry);
        }
        Ok(Verified::Right(mailbox))
    }

    /// Checks `user`'s `password`: `Ok(Some(id))` if right, `Ok(None)` if wrong or unknown.
    ///
    /// A cache hit costs no argon2 verification; a miss costs one and **blocks** the thread
    /// for it (tens of milliseconds), so from async code use
    /// [`authenticate_async`](Self::authenticate_async) instead.
    pub fn authenticate(&self, user: &str, password: &str) -> Result<Option<MailboxId>, AuthError> {
        if let Some(id) = self.cached(user, password)? {
            return Ok(Some(id));
        }
        Ok(self
            .verify_and_cache(user, password)?
            .mailbox()
            .map(|m| m.id))
    }

    /// [`authenticate`](Self::authenticate) for async callers: a hit is answered inline, a miss
    /// runs on tokio's blocking pool when an argon2 turn is free
    /// ([`spawn_argon2`](crate::store::spawn_argon2)). Must be called within a tokio runtime.
    pub async fn authenticate_async(
        &self,
        user: &str,
        password: &str,
    ) -> Result<Option<MailboxId>, AuthError> {
        Ok(self
            .authenticate_mailbox(user, password)
            .await?
            .map(|m| m.id))
    }

    /// [`authenticate_async`](Self::authenticate_async), returning the
    /// caller's mailbox as read for the check.
    ///
    /// Misses are single-flight ([`verify_admitted`](Self::verify_admitted)): while one
    /// request verifies a (user, password) pair, others with the same pair wait for it and
    /// share its outcome, so a cold cache under many concurrent requests costs one argon2
    /// verification, not one per request - and so does a wrong password sent many times.
    pub async fn authenticate_mailbox(
        &self,
        user: &str,
        password: &str,
    ) -> Result<Option<Arc<Mailbox>>, AuthError> {
        if let Some(m) = self.cached_mailbox(user, password)? {
            return Ok(Some(m));
        }
        // Boxed: the future of every request holds only what the hit needs.
        let admitted = Box::pin(self.verify_admitted(user, password, || {
            Ok::<Completion, std::convert::Infallible>(Box::new(|_| {}))
        }))
        .await?;
        match admitted {
            Ok(verified) => Ok(verified.mailbox()),
            Err(never) => match never {},
        }
    }

    /// The miss: one argon2 verification per (user, password) pair at a time. When the pair
    /// is being verified already, waits for that verification and returns its outcome.
    /// Otherwise asks `admit` (under the lock that makes verifications single-flight, so two
    /// requests with one pair never both ask): `Err` refuses the attempt unchecked, `Ok` gives
    /// the [`Completion`] to run when the verification ends.
    ///
    /// The verification runs in a task of its own ([`spawn_argon2`](crate::store::spawn_argon2)),
    /// so its outcome is recorded and shared even if the request that started it is dropped.
    /// Must be called within a tokio runtime.
    pub async fn verify_admitted<R>(
        &self,
        user: &str,
        password: &str,
        admit: impl FnOnce() -> Result<Completion, R>,
    ) -> Result<Result<Verified, R>, AuthError> {
        let user_key = normalize_user(user).into_owned();
        let digest = self.digest(&user_key, password);
        let key = (user_key, digest);
        let (mut outcome, start) = {
            let mut inflight = self
                .inner
                .inflight
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            match inflight.get(&key) {
                Some(outcome) => (outcome.clone(), None),
                None => {
                    let completion = match admit() {
                        Ok(completion) => completion,
                        Err(refusal) => return Ok(Err(refusal)),
                    };
                    let (publish, outcome) = watch::channel(None);
                    inflight.insert(key.clone(), outcome.clone());
                    (outcome, Some((publish, completion)))
                }
            }
        };
        if let Some((publish, completion)) = start {
            // Made after the lock is released: should the spawn fail, this takes the
            // verification off the map again.
            let flight = Flight {
                auth: self.clone(),
                key,
            };
            let user = user.to_owned();
            let password = password.to_owned();
            tokio::spawn(async move {
                let auth = flight.auth.clone();
                let verified =
                    crate::store::spawn_argon2(move || auth.verify_and_cache(&user, &password))
                        .await;
                let verified: Outcome = match verified {
                    Ok(Ok(verified)) => Ok(verified),
                    Ok(Err(error)) => Err(Arc::new(error)),
                    Err(error) => Err(Arc::new(AuthError::Task(error))),
                };
                completion(verified.as_ref().ok());
                // Off the map before the waiters wake, so that none finds it there.
                drop(flight);
                publish.send_replace(Some(verified));
            });
        }
        let published = outcome
            .wait_for(Option::is_some)
            .await
            .map_err(|_| AuthError::Abandoned)?;
        match published.as_ref() {
            Some(Ok(verified)) => Ok(Ok(verified.clone())),
            Some(Err(error)) => Err(AuthError::Shared(Arc::clone(error))),
            None => Err(AuthError::Abandoned),
        }
    }

    /// Forgets the cached credentials of `user`; call it when the password changes.
    pub fn invalidate(&self, user: &str) {
        self.cache().remove(normalize_user(user).as_ref());
    }

    /// Forgets all cached credentials.
    pub fn clear(&self) {
        self.cache().clear();
    }

    /// How many users are cached now.
    pub fn cached_users(&self) -> usize {
        self.cache().len()
    }

    /// The hit and slow-verification counters since creation.
    pub fn stats(&self) -> AuthStats {
        AuthStats {
            hits: self.inner.hits.load(Ordering::Relaxed),
            slow_verifications: self.inner.slow.load(Ordering::Relaxed),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{HashCost, NewMailbox};

    fn setup(users: &[&str]) -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path())
            .unwrap()
            .with_hash_cost(HashCost::Test);
        for user in users {
            store
                .add_mailbox(NewMailbox {
                    user: (*user).to_string(),
                    password: format!("{user}-pw"),
                    um_enabled: true,
                    extension: None,
                    email: None,
                })
                .unwrap();
        }
        (dir, store)
    }

    fn stats(hits: u64, slow_verifications: u64) -> AuthStats {
        AuthStats {
            hits,
            slow_verifications,
        }
    }

    #[test]
    fn second_request_skips_argon2() {
        let (_dir, store) = setup(&["alice"]);
        let id = store.mailbox("alice").unwrap().unwrap().id;
        let auth = Authenticator::new(store);
        assert_eq!(auth.authenticate("alice", "alice-pw").unwrap(), Some(id));
        assert_eq!(auth.stats(), stats(0, 1));
        assert_eq!(auth.authenticate("alice", "alice-pw").unwrap(), Some(id));
        assert_eq!(auth.authenticate("ALICE", "alice-pw").unwrap(), Some(id));
        assert_eq!(auth.stats(), stats(2, 1));
    }

    #[test]
    fn wrong_passwords_are_never_cached() {
        let (_dir, store) = setup(&["alice"]);
        let auth = Authenticator::new(store);
        assert!(auth.authenticate("alice", "alice-pw").unwrap().is_some());
        for _ in 0..2 {
            assert_eq!(auth.authenticate("alice", "guess").unwrap(), None);
        }
        assert_eq!(auth.authenticate("nobody", "x").unwrap(), None);
        assert_eq!(auth.stats(), stats(0, 4));
        // The good entry survived the wrong attempts.
        assert!(auth.authenticate("alice", "alice-pw").unwrap().is_some());
        assert_eq!(auth.stats(), stats(1, 4));
        assert_eq!(auth.cached_users(), 1);
    }

    #[test]
    fn password_change_takes_effect_at_once() {
        let (_dir, store) = setup(&["alice"]);
        let id = store.mailbox("alice").unwrap().unwrap().id;
        let auth = Authenticator::new(store.clone());
        assert!(auth.authenticate("alice", "alice-pw").unwrap().is_some());
        // Changed behind the authenticator's back (another process).
        store.set_password(id, "new-pw").unwrap();
        assert_eq!(auth.authenticate("alice", "alice-pw").unwrap(), None);
        assert_eq!(auth.authenticate("alice", "new-pw").unwrap(), Some(id));
        assert_eq!(auth.authenticate("alice", "new-pw").unwrap(), Some(id));
        assert_eq!(auth.stats(), stats(1, 3));
    }

    #[test]
    fn a_hit_answers_from_memory_until_the_store_changes() {
        let (_dir, store) = setup(&["alice", "bob"]);
        let auth = Authenticator::new(store.clone());
        let first = auth.cached_mailbox("alice", "alice-pw").unwrap();
        assert!(first.is_none(), "nothing cached yet");
        auth.authenticate("alice", "alice-pw").unwrap().unwrap();
        let a = auth.cached_mailbox("alice", "alice-pw").unwrap().unwrap();
        let b = auth.cached_mailbox("alice", "alice-pw").unwrap().unwrap();
        assert!(Arc::ptr_eq(&a, &b), "no commit in between: the same record");
        assert!(!a.oof_status);

        // A write through any clone of the store is seen by the next hit.
        store.set_oof_status(a.id, true).unwrap();
        let c = auth.cached_mailbox("alice", "alice-pw").unwrap().unwrap();
        assert!(c.oof_status, "the record was read again after the commit");
        let d = auth.cached_mailbox("alice", "alice-pw").unwrap().unwrap();
        assert!(Arc::ptr_eq(&c, &d));

        // A write to another mailbox costs a re-read, not a verification.
        let bob = store.mailbox("bob").unwrap().unwrap().id;
        store.set_oof_status(bob, true).unwrap();
        assert!(
            auth.cached_mailbox("alice", "alice-pw")
                .unwrap()
                .unwrap()
                .oof_status
        );
        assert_eq!(auth.stats(), stats(5, 1));
    }

    #[test]
    fn a_write_that_returned_is_seen_by_every_later_hit() {
        // A writer counts up through a clone of the store while readers authenticate from the
        // cache: a reader that starts after write n returned must see n or a later write,
        // never an earlier one.
        let (_dir, store) = setup(&["alice"]);
        let id = store.mailbox("alice").unwrap().unwrap().id;
        let auth = Authenticator::new(store.clone());
        auth.authenticate("alice", "alice-pw").unwrap().unwrap();
        const WRITES: u64 = 40;
        let written = Arc::new(AtomicU64::new(0));
        std::thread::scope(|scope| {
            for _ in 0..2 {
                let auth = auth.clone();
                let written = Arc::clone(&written);
                scope.spawn(move || loop {
                    let returned = written.load(Ordering::SeqCst);
                    let m = auth.cached_mailbox("alice", "alice-pw").unwrap().unwrap();
                    let seen: u64 = m
                        .play_on_phone_dial_string
                        .as_deref()
                        .map_or(0, |s| s.parse().unwrap());
                    assert!(
                        seen >= returned,
                        "read {seen} after write {returned} returned"
                    );
                    if returned == WRITES {
                        break;
                    }
                });
            }
            for n in 1..=WRITES {
                store
                    .set_play_on_phone_dial_string(id, Some(&n.to_string()))
                    .unwrap();
                written.store(n, Ordering::SeqCst);
            }
        });
    }

    #[test]
    fn another_process_is_seen_within_the_poll_interval() {
        let (dir, store) = setup(&["alice"]);
        let id = store.mailbox("alice").unwrap().unwrap().id;
        // Polls on every call.
        let auth = Authenticator::new(store.clone().with_external_poll(Duration::ZERO));
        assert!(auth.authenticate("alice", "alice-pw").unwrap().is_some());
        // Another Store on the same file stands for another process (its commits are not
        // counted by this one's hooks).
        let other = Store::open(dir.path())
            .unwrap()
            .with_hash_cost(HashCost::Test);
        other.set_oof_status(id, true).unwrap();
        let seen = auth.cached_mailbox("alice", "alice-pw").unwrap().unwrap();
        assert!(seen.oof_status);
        other.set_password(id, "changed").unwrap();
        assert_eq!(auth.cached("alice", "alice-pw").unwrap(), None);

        // With the default interval, a change is seen once the interval has passed.
        let auth = Authenticator::new(store.clone());
        assert!(auth.authenticate("alice", "changed").unwrap().is_some());
        other.set_password(id, "again").unwrap();
        std::thread::sleep(crate::store::DEFAULT_EXTERNAL_POLL + Duration::from_millis(50));
        assert_eq!(auth.cached("alice", "changed").unwrap(), None);
    }

    #[test]
    fn invalidate_and_ttl_force_verification() {
        let (_dir, store) = setup(&["alice"]);
        let auth = Authenticator::new(store.clone());
        auth.authenticate("alice", "alice-pw").unwrap();
        auth.invalidate("Alice");
        auth.authenticate("alice", "alice-pw").unwrap();
        assert_eq!(auth.stats(), stats(0, 2));
        auth.clear();
        assert_eq!(auth.cached_users(), 0);

        let no_cache = Authenticator::with_limits(store, Duration::ZERO, 10);
        for _ in 0..2 {
            assert!(no_cache
                .authenticate("alice", "alice-pw")
                .unwrap()
                .is_some());
        }
        assert_eq!(no_cache.stats(), stats(0, 2));
    }

    #[test]
    fn cache_is_bounded() {
        let (_dir, store) = setup(&["a", "b", "c", "d"]);
        let auth = Authenticator::with_limits(store, DEFAULT_TTL, 2);
        for user in ["a", "b", "c", "d"] {
            auth.authenticate(user, &format!("{user}-pw"))
                .unwrap()
                .unwrap();
            assert!(auth.cached_users() <= 2);
        }
        // The newest stays cached.
        auth.authenticate("d", "d-pw").unwrap().unwrap();
        assert_eq!(auth.stats().hits, 1);
    }

    #[test]
    fn log_user_escapes_and_shortens() {
        assert_eq!(LogUser("alice").to_string(), "alice");
        assert_eq!(
            LogUser("x\r\n2026 INFO forged\u{1b}[2J\u{2028}\u{202e}").to_string(),
            "x??2026 INFO forged?[2J??"
        );
        let long = "ä".repeat(300);
        let shown = LogUser(&long).to_string();
        assert_eq!(shown, format!("{}...", "ä".repeat(LOGGED_USER_CHARS)));
        assert!(!user_name_too_long(&"ä".repeat(MAX_USER_CHARS)));
        assert!(user_name_too_long(&"a".repeat(MAX_USER_CHARS + 1)));
    }

    #[test]
    fn digest_compare_is_exact() {
        let a = [7u8; 32];
        let mut b = a;
        assert!(digests_equal(&a, &b));
        b[31] ^= 1;
        assert!(!digests_equal(&a, &b));
    }

    /// `n` concurrent logons of alice with `password`: whether each was let in.
    async fn concurrent_logons(
        auth: &Authenticator,
        password: &'static str,
        n: usize,
    ) -> Vec<bool> {
        let tasks: Vec<_> = (0..n)
            .map(|_| {
                let auth = auth.clone();
                tokio::spawn(async move { auth.authenticate_mailbox("alice", password).await })
            })
            .collect();
        let mut allowed = Vec::new();
        for task in tasks {
            allowed.push(task.await.unwrap().unwrap().is_some());
        }
        allowed
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_misses_verify_once() {
        let (_dir, store) = setup(&["alice"]);
        let auth = Authenticator::new(store);
        assert_eq!(concurrent_logons(&auth, "alice-pw", 16).await, [true; 16]);
        assert_eq!(
            auth.stats().slow_verifications,
            1,
            "one argon2 for 16 requests"
        );
        // The others shared its outcome, or came after it and hit the cache.
        assert!(auth.stats().hits <= 15);
        // A wrong password is shared as well: those that came while it was being verified
        // got its outcome.
        assert_eq!(concurrent_logons(&auth, "guess", 3).await, [false; 3]);
        assert!((2..=4).contains(&auth.stats().slow_verifications));
        assert!(
            auth.inner.inflight.lock().unwrap().is_empty(),
            "no gate is left behind"
        );
    }

    #[tokio::test]
    async fn a_cancelled_wait_leaves_no_gate_and_the_verification_ends() {
        let (_dir, store) = setup(&["alice"]);
        let auth = Authenticator::new(store);
        let waiting = auth.authenticate_mailbox("alice", "alice-pw");
        // Dropped before it finished (the client went away).
        let _ = tokio::time::timeout(Duration::from_micros(1), waiting).await;
        // The verification it started goes on; this one shares it or hits its result.
        assert!(auth
            .authenticate_mailbox("alice", "alice-pw")
            .await
            .unwrap()
            .is_some());
        assert_eq!(auth.stats().slow_verifications, 1);
        // The flight's task takes itself off the map right after caching its result.
        for _ in 0..1000 {
            if auth.inner.inflight.lock().unwrap().is_empty() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        assert!(auth.inner.inflight.lock().unwrap().is_empty());
    }

    #[tokio::test]
    async fn async_path_uses_cache() {
        let (_dir, store) = setup(&["alice"]);
        let id = store.mailbox("alice").unwrap().unwrap().id;
        let auth = Authenticator::new(store);
        assert_eq!(
            auth.authenticate_async("alice", "alice-pw").await.unwrap(),
            Some(id)
        );
        assert_eq!(
            auth.authenticate_async("alice", "alice-pw").await.unwrap(),
            Some(id)
        );
        assert_eq!(
            auth.authenticate_async("alice", "nope").await.unwrap(),
            None
        );
        assert_eq!(auth.stats(), stats(1, 2));
    }
}
