//! Limiting failed HTTP authentication, per user name and per client, so that passwords
//! cannot be guessed at full speed - neither one after another nor in parallel.
//!
//! Verified failures open a **window** for their user name and for their client: until it
//! closes, an attempt that would need an argon2 verification is refused at once (the caller
//! answers 429 with `Retry-After`), without checking the password, so a burst of guesses
//! costs no more than one. A window lasts `base * 2^(n-1)`, capped at `max`, after the `n`th
//! failure beyond an allowance (for a user name [`ThrottlePolicy::user_allowance`], one by
//! default: a typo followed at once by the right password is not refused). Besides, a user name has at most one verification in flight, and a client one
//! once it has failed (a few while it has not), and an attempt beyond that is refused the same
//! way. A password already verified (the credentials cache of [`crate::auth`]) needs no
//! verification: it is let in inside the client's window, but not inside its user's window
//! nor while its user has a verification in flight, so that the cache is no oracle for
//! guesses.
//!
//! The two counters count differently. A user name counts its failures. A client counts the
//! *distinct* user names that failed from it, and the first [`ThrottlePolicy::client_allowance`]
//! of them open no window: one person mistyping again and again behind a NAT or a proxy slows
//! themselves, not everyone behind it, while trying many names from one place is slowed. A
//! client is an IPv4 address or an IPv6 /64 (one subscriber's network). A verified success
//! clears its user name's counter and halves its client's (a typo followed by the right
//! password leaves no trace). Counters are forgotten after `forget_after` without a failure;
//! a timer ([`Throttle::spawn_sweeper`]) drops them, and the tables never hold more than
//! `capacity` entries each.
//!
//! User names are kept as keyed digests of their normalised form ([`UserKey`]), so an entry
//! is small whatever the name's length. The answer never says which part was wrong.
//!
//! # Several instances on one PostgreSQL database
//!
//! On the PostgreSQL store ([`Throttle::with_store`]) a user name's failure count and window
//! are the database's (the table `http_throttle`, keyed by the digest, whose key is then the
//! database's too, so every instance digests a name alike): every verified failure, on any
//! instance, is counted there in one transaction under the row's lock, and an attempt that
//! needs a verification first reads the name's window there. So a guesser spreading its
//! attempts over N instances is refused after as many failures as against one, for as long.
//! A success anywhere clears the count. A cached password ([`Throttle::admit_verified`]) is
//! checked against a copy of the open windows that each instance reads every
//! [`SHARED_POLL`] (so within that bound of a window opening elsewhere, the cache is no
//! oracle there either). A client's count of distinct user names is shared the same way (the
//! table `http_throttle_clients`, one row per client and name), read before a verification
//! and counted after a failure. What stays per instance is the verifications in flight (one
//! per user name, and one per counting client, per instance). On SQLite nothing of this
//! applies. Another throttle on the same tables (the phone logons' PIN checks) keeps its
//! counts apart with a namespace ([`Throttle::with_namespace`]) in its digests and client
//! keys.

use std::collections::HashMap;
use std::hash::Hash;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};
use std::time::{Duration, Instant};

use rand::RngCore;
use sha2::{Digest, Sha256};

use crate::store::postgres::PgStore;
use crate::store::{normalize_user, Store, StoreError};

/// How often an instance on a shared database copies the open windows of every instance
/// (see the module docs).
pub const SHARED_POLL: Duration = Duration::from_millis(100);

/// The settings of a [`Throttle`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ThrottlePolicy {
    /// The window after the first failure.
    pub base: Duration,
    /// The longest window.
    pub max: Duration,
    /// After this long without a failure, a counter is forgotten.
    pub forget_after: Duration,
    /// How many failures of one user name open no window (so that a client that sends the
    /// same wrong password twice, or a typo followed by the right password, is not refused).
    pub user_allowance: u32,
    /// How many distinct user names may fail from one client before its window opens.
    pub client_allowance: u32,
    /// How many verifications one client may have in flight while none of its failures
    /// counts (once one does: one).
    pub client_parallel: u32,
    /// The most user names, and the most clients, remembered.
    pub capacity: usize,
    /// How often [`Throttle::spawn_sweeper`] drops forgotten counters.
    pub sweep_every: Duration,
}

impl Default for ThrottlePolicy {
    fn default() -> Self {
        Self {
            base: Duration::from_millis(200),
            max: Duration::from_secs(10),
            forget_after: Duration::from_secs(15 * 60),
            user_allowance: 1,
            client_allowance: 2,
            client_parallel: 8,
            capacity: 100_000,
            sweep_every: Duration::from_secs(60),
        }
    }
}

/// A user name as the throttle knows it: a keyed digest of its normalised form.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct UserKey([u8; 16]);

impl UserKey {
    /// A short tag of the name, for a client's list of names that failed from it.
    fn tag(&self) -> u32 {
        u32::from_be_bytes([self.0[0], self.0[1], self.0[2], self.0[3]])
    }
}

/// A client as the throttle knows it: an IPv4 address, or the /64 an IPv6 address is in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ClientKey {
    /// An IPv4 address (also when written as an IPv4-mapped IPv6 address).
    V4(Ipv4Addr),
    /// The first 64 bits of an IPv6 address.
    V6Net(u64),
}

impl ClientKey {
    /// The client `ip` belongs to.
    pub fn of(ip: IpAddr) -> Self {
        match ip {
            IpAddr::V4(v4) => Self::V4(v4),
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => Self::V4(v4),
                None => Self::V6Net((u128::from(v6) >> 64) as u64),
            },
        }
    }
}

impl ClientKey {
    /// The client as the shared database keys it: the family (4 or 6), then the address or
    /// the /64.
    fn bytes(self) -> Vec<u8> {
        match self {
            Self::V4(v4) => [&[4u8][..], &v4.octets()].concat(),
            Self::V6Net(net) => [&[6u8][..], &net.to_be_bytes()].concat(),
        }
    }
}

/// What the shared database has for an attempt's user name and client
/// ([`Throttle::shared_windows`]); nothing when the throttle is not shared.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SharedWindows {
    /// The time left in the user name's window, if open.
    user: Option<Duration>,
    /// The distinct user names that failed from the client and how long ago the last did.
    client: Option<(u32, Duration)>,
}

/// Why an attempt was refused unchecked, and when to come back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Refusal {
    /// How long until the window that refused the attempt closes (for a verification in
    /// flight: the shortest window).
    pub retry_after: Duration,
}

/// How many distinct user names a client remembers for its count.
const RECENT_NAMES: usize = 8;

#[derive(Debug, Clone, Copy)]
struct UserEntry {
    failures: u32,
    last: Instant,
    /// The window is open before this.
    until: Instant,
    /// A verification of this user name is in flight.
    busy: bool,
}

#[derive(Debug, Clone, Copy)]
struct ClientEntry {
    /// Distinct user names that failed (see [`RECENT_NAMES`]).
    failures: u32,
    last: Instant,
    until: Instant,
    /// Verifications in flight.
    busy: u32,
    /// Tags of the user names that failed last, to count each once.
    recent: [Option<u32>; RECENT_NAMES],
    next: usize,
}

trait Entry: Copy {
    fn last(&self) -> Instant;
    fn busy(&self) -> bool;
}

impl Entry for UserEntry {
    fn last(&self) -> Instant {
        self.last
    }
    fn busy(&self) -> bool {
        self.busy
    }
}

impl Entry for ClientEntry {
    fn last(&self) -> Instant {
        self.last
    }
    fn busy(&self) -> bool {
        self.busy > 0
    }
}

#[derive(Debug, Default)]
struct Tables {
    users: HashMap<UserKey, UserEntry>,
    clients: HashMap<ClientKey, ClientEntry>,
}

/// Failure counters, windows and verifications in flight (see the module docs).
#[derive(Debug)]
pub struct Throttle {
    policy: ThrottlePolicy,
    /// The key of [`UserKey`] digests, drawn per throttle.
    key: [u8; 32],
    tables: Mutex<Tables>,
    /// Entries in `tables`, readable without the lock: when nothing has failed and nothing is
    /// being verified (the usual case), a cached logon costs no lock at all.
    entries: AtomicUsize,
    /// The database that holds the user names' counters of all instances, if shared.
    shared: Option<PgStore>,
    /// What sets this throttle's counters apart from another's in the shared database
    /// ([`Throttle::with_namespace`]); empty for the HTTP logons'.
    namespace: &'static [u8],
}

impl Default for Throttle {
    fn default() -> Self {
        Self::new(ThrottlePolicy::default())
    }
}

impl Throttle {
    /// A throttle with `policy`.
    pub fn new(policy: ThrottlePolicy) -> Self {
        let mut key = [0u8; 32];
        rand::rngs::OsRng.fill_bytes(&mut key);
        Self {
            policy,
            key,
            tables: Mutex::new(Tables::default()),
            entries: AtomicUsize::new(0),
            shared: None,
            namespace: b"",
        }
    }

    /// This throttle with its counters apart from those of throttles of other namespaces in
    /// the shared database (its user name digests and client keys are prefixed with
    /// `namespace`), e.g. phone logons apart from HTTP logons.
    pub fn with_namespace(mut self, namespace: &'static [u8]) -> Self {
        self.namespace = namespace;
        self
    }

    /// `client` as the shared database keys it, in this throttle's namespace.
    fn client_bytes(&self, client: ClientKey) -> Vec<u8> {
        [self.namespace, &client.bytes()].concat()
    }

    /// This throttle with its user names' counters kept in `store` when that is a PostgreSQL
    /// store, shared with every instance on it (see the module docs); on SQLite, unchanged.
    pub fn with_store(mut self, store: &Store) -> Self {
        if let Some(pg) = store.as_postgres() {
            self.key = pg.throttle_key();
            self.shared = Some(pg.clone());
        }
        self
    }

    /// Whether the counters of user names are shared with other instances.
    pub fn is_shared(&self) -> bool {
        self.shared.is_some()
    }

    /// What the shared database has for `user` and `client` (nothing when not shared).
    /// Reads the database on a blocking thread; call it before
    /// [`admit_shared`](Self::admit_shared).
    pub async fn shared_windows(
        &self,
        user: UserKey,
        client: Option<ClientKey>,
    ) -> Result<SharedWindows, StoreError> {
        let Some(store) = self.shared.clone() else {
            return Ok(SharedWindows::default());
        };
        let client = client.map(|c| self.client_bytes(c));
        tokio::task::spawn_blocking(move || {
            Ok(SharedWindows {
                user: store.throttle_window(&user.0)?,
                client: match client {
                    Some(c) => Some(store.throttle_client(&c)?),
                    None => None,
                },
            })
        })
        .await
        .map_err(|e| StoreError::DatabaseUnavailable(Box::new(e)))?
    }

    /// The policy.
    pub fn policy(&self) -> &ThrottlePolicy {
        &self.policy
    }

    /// The key of `user`: the same for every spelling [`normalize_user`] does not tell apart.
    pub fn user_key(&self, user: &str) -> UserKey {
        let mut digest = Sha256::new().chain_update(self.key);
        if !self.namespace.is_empty() {
            // (length first: no namespace and name run into another pair)
            digest.update((self.namespace.len() as u64).to_be_bytes());
            digest.update(self.namespace);
        }
        let digest = digest
            .chain_update(normalize_user(user).as_bytes())
            .finalize();
        let mut key = [0u8; 16];
        key.copy_from_slice(&digest[..16]);
        UserKey(key)
    }

    fn tables(&self) -> MutexGuard<'_, Tables> {
        // The tables stay consistent whatever panicked while holding the lock.
        self.tables.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn publish(&self, tables: &Tables) {
        self.entries
            .store(tables.users.len() + tables.clients.len(), Ordering::Release);
    }

    /// How many user names and clients are remembered.
    pub fn len(&self) -> usize {
        self.entries.load(Ordering::Acquire)
    }

    /// Whether nothing is remembered (then every attempt is admitted).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The window of a user name after `failures` failures.
    fn user_window(&self, failures: u32) -> Duration {
        match failures.checked_sub(self.policy.user_allowance) {
            Some(n) if n > 0 => self.window(n),
            _ => Duration::ZERO,
        }
    }

    /// The window after `n` counted failures (`n` >= 1).
    fn window(&self, n: u32) -> Duration {
        let factor = 1u32
            .checked_shl(n.saturating_sub(1).min(20))
            .unwrap_or(u32::MAX);
        self.policy.base.saturating_mul(factor).min(self.policy.max)
    }

    /// Whether `entry` has been quiet long enough to be forgotten at `now`.
    fn forgotten(&self, last: Instant, now: Instant) -> bool {
        now.saturating_duration_since(last) >= self.policy.forget_after
    }

    /// Admits an attempt of `user` whose password is already verified (a cache hit):
    /// refused while the user's window is open or a verification of the user is in flight.
    /// When nothing is remembered (the usual case) this costs one atomic load: no digest, no
    /// lock, no clock (`now` is asked only when needed).
    pub fn admit_verified(&self, user: &str, now: impl FnOnce() -> Instant) -> Result<(), Refusal> {
        if self.is_empty() {
            return Ok(());
        }
        let user = self.user_key(user);
        let now = now();
        let tables = self.tables();
        match tables.users.get(&user) {
            Some(u) if u.busy => Err(Refusal {
                retry_after: self.policy.base,
            }),
            Some(u) if now < u.until => Err(Refusal {
                retry_after: u.until - now,
            }),
            _ => Ok(()),
        }
    }

    /// Admits an attempt that needs a verification: refused while `user`'s or `client`'s
    /// window is open or either has as many verifications in flight as it may. An admitted
    /// attempt holds a [`Permit`] until its verification ends.
    ///
    /// `known_wrong` says the password differs from one verified for `user` (a cache entry):
    /// such an attempt refused for its client's sake counts as a failure of `user`, or else a
    /// client inside its window could test guesses against the cache for free.
    pub fn admit(
        self: &Arc<Self>,
        user: UserKey,
        client: Option<ClientKey>,
        known_wrong: bool,
        now: Instant,
    ) -> Result<Permit, Refusal> {
        self.admit_shared(user, client, known_wrong, SharedWindows::default(), now)
    }

    /// [`admit`](Self::admit) with what the shared database has for `user` and `client`
    /// ([`shared_windows`](Self::shared_windows)) taken into account as if counted here.
    pub fn admit_shared(
        self: &Arc<Self>,
        user: UserKey,
        client: Option<ClientKey>,
        known_wrong: bool,
        shared: SharedWindows,
        now: Instant,
    ) -> Result<Permit, Refusal> {
        let mut tables = self.tables();
        if let Some(left) = shared.user.filter(|left| !left.is_zero()) {
            self.mirror(&mut tables, user, 0, left, now);
            self.publish(&tables);
            return Err(Refusal { retry_after: left });
        }
        if let (Some(client), Some((failures, age))) = (client, shared.client) {
            self.mirror_client(&mut tables, client, failures, age, now);
        }
        if let Some(u) = tables.users.get(&user) {
            if u.busy {
                return Err(Refusal {
                    retry_after: self.policy.base,
                });
            }
            if now < u.until {
                return Err(Refusal {
                    retry_after: u.until - now,
                });
            }
        }
        if let Some(c) = client.and_then(|c| tables.clients.get(&c)) {
            let counts = c.failures > self.policy.client_allowance && !self.forgotten(c.last, now);
            let parallel = if counts {
                1
            } else {
                self.policy.client_parallel
            };
            let refusal = if counts && now < c.until {
                Some(c.until - now)
            } else if c.busy >= parallel {
                Some(self.policy.base)
            } else {
                None
            };
            if let Some(retry_after) = refusal {
                if known_wrong {
                    self.count_user_failure(&mut tables, user, now);
                    self.publish(&tables);
                    drop(tables);
                    self.count_shared_failure_later(user);
                }
                return Err(Refusal { retry_after });
            }
        }
        self.make_room(&mut tables, now);
        tables
            .users
            .entry(user)
            .or_insert(UserEntry {
                failures: 0,
                last: now,
                until: now,
                busy: false,
            })
            .busy = true;
        if let Some(client) = client {
            tables
                .clients
                .entry(client)
                .or_insert(ClientEntry {
                    failures: 0,
                    last: now,
                    until: now,
                    busy: 0,
                    recent: [None; RECENT_NAMES],
                    next: 0,
                })
                .busy += 1;
        }
        self.publish(&tables);
        Ok(Permit {
            throttle: Arc::clone(self),
            user,
            client,
            finished: false,
        })
    }

    fn count_user_failure(&self, tables: &mut Tables, user: UserKey, now: Instant) {
        if !tables.users.contains_key(&user) {
            self.make_room(tables, now);
        }
        let u = tables.users.entry(user).or_insert(UserEntry {
            failures: 0,
            last: now,
            until: now,
            busy: false,
        });
        if self.forgotten(u.last, now) {
            u.failures = 0;
        }
        u.failures = u.failures.saturating_add(1);
        u.last = now;
        u.until = now + self.user_window(u.failures);
    }

    /// Takes what the shared database has for `user` (`failures` counted, a window of `left`)
    /// into this instance's table, never shortening a window.
    fn mirror(
        &self,
        tables: &mut Tables,
        user: UserKey,
        failures: u32,
        left: Duration,
        now: Instant,
    ) {
        if !tables.users.contains_key(&user) {
            self.make_room(tables, now);
        }
        let u = tables.users.entry(user).or_insert(UserEntry {
            failures: 0,
            last: now,
            until: now,
            busy: false,
        });
        u.failures = u.failures.max(failures).max(1);
        u.last = now;
        u.until = u.until.max(now + left);
    }

    /// Takes what the shared database has for `client` (`failures` distinct user names, the
    /// last `age` ago) into this instance's table, never lowering the count.
    fn mirror_client(
        &self,
        tables: &mut Tables,
        client: ClientKey,
        failures: u32,
        age: Duration,
        now: Instant,
    ) {
        if failures == 0 || age >= self.policy.forget_after {
            return;
        }
        let last = now.checked_sub(age).unwrap_or(now);
        if !tables.clients.contains_key(&client) {
            self.make_room(tables, now);
        }
        let c = tables.clients.entry(client).or_insert(ClientEntry {
            failures: 0,
            last,
            until: last,
            busy: 0,
            recent: [None; RECENT_NAMES],
            next: 0,
        });
        c.failures = c.failures.max(failures);
        c.last = c.last.max(last);
        if let Some(n) = failures.checked_sub(self.policy.client_allowance) {
            if n > 0 {
                c.until = c.until.max(last + self.window(n));
            }
        }
    }

    /// Counts a failure of `user` from `client` in the shared database (when shared) and
    /// takes its count, the client's across instances, into this instance's table.
    fn count_shared_client_failure(&self, client: ClientKey, user: UserKey) {
        let Some(store) = &self.shared else {
            return;
        };
        match store.throttle_count_client_failure(
            &self.client_bytes(client),
            &user.0,
            self.policy.forget_after,
        ) {
            Ok(failures) => {
                let now = Instant::now();
                let mut tables = self.tables();
                if let Some(c) = tables.clients.get_mut(&client) {
                    c.failures = failures;
                    c.last = now;
                    c.until = match failures.checked_sub(self.policy.client_allowance) {
                        Some(n) if n > 0 => now + self.window(n),
                        _ => now,
                    };
                }
                self.publish(&tables);
            }
            Err(e) => tracing::warn!(
                error = %crate::fault::ErrorChain(&e),
                "cannot count a client's failed logon in the shared database; counted here only"
            ),
        }
    }

    /// Counts a failure of `user` in the shared database (when shared); what it opened there
    /// is taken into this instance's table. A database that fails leaves the count to this
    /// instance (logged).
    fn count_shared_failure(&self, user: UserKey) {
        let Some(store) = &self.shared else {
            return;
        };
        match store
            .throttle_count_failure(&user.0, self.policy.forget_after, |n| self.user_window(n))
        {
            Ok(counted) => {
                let now = Instant::now();
                let mut tables = self.tables();
                self.mirror(&mut tables, user, counted.failures, counted.window, now);
                if let Some(u) = tables.users.get_mut(&user) {
                    // The database's count is the one of all instances (a success elsewhere
                    // may have cleared it since this instance last looked).
                    u.failures = counted.failures;
                    u.until = now + counted.window;
                }
                self.publish(&tables);
            }
            Err(e) => tracing::warn!(
                error = %crate::fault::ErrorChain(&e),
                "cannot count a failed logon in the shared database; counted here only"
            ),
        }
    }

    /// [`count_shared_failure`](Self::count_shared_failure) on a blocking thread, for callers
    /// that hold a lock.
    fn count_shared_failure_later(self: &Arc<Self>, user: UserKey) {
        if self.shared.is_none() {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let throttle = Arc::clone(self);
        runtime.spawn_blocking(move || throttle.count_shared_failure(user));
    }

    /// Clears the shared count of `user` (its password was right).
    fn clear_shared(&self, user: UserKey) {
        if let Some(store) = &self.shared {
            if let Err(e) = store.throttle_clear(&user.0) {
                tracing::warn!(
                    error = %crate::fault::ErrorChain(&e),
                    "cannot clear a user's failed logons in the shared database"
                );
            }
        }
    }

    fn count_client_failure(
        &self,
        tables: &mut Tables,
        client: ClientKey,
        user: UserKey,
        now: Instant,
    ) {
        let Some(c) = tables.clients.get_mut(&client) else {
            return;
        };
        if self.forgotten(c.last, now) {
            c.failures = 0;
            c.recent = [None; RECENT_NAMES];
        }
        let tag = Some(user.tag());
        if !c.recent.contains(&tag) {
            c.recent[c.next] = tag;
            c.next = (c.next + 1) % RECENT_NAMES;
            c.failures = c.failures.saturating_add(1);
        }
        c.last = now;
        c.until = match c.failures.checked_sub(self.policy.client_allowance) {
            Some(n) if n > 0 => now + self.window(n),
            _ => now,
        };
    }

    /// The end of a verification admitted for `user` from `client`: `Some(true)` the
    /// password was right, `Some(false)` wrong, `None` the check itself failed (nothing is
    /// counted).
    fn finish(&self, user: UserKey, client: Option<ClientKey>, right: Option<bool>, now: Instant) {
        // The database first, without the lock (the local count follows below, then the
        // database's count, which includes it, is taken over).
        let shared_failure = right == Some(false) && self.shared.is_some();
        if right == Some(true) {
            self.clear_shared(user);
            if let (Some(store), Some(client)) = (&self.shared, client) {
                if let Err(e) = store.throttle_client_success(&self.client_bytes(client), &user.0) {
                    tracing::warn!(
                        error = %crate::fault::ErrorChain(&e),
                        "cannot relax a client's failed logons in the shared database"
                    );
                }
            }
        }
        self.finish_local(user, client, right, now);
        if shared_failure {
            self.count_shared_failure(user);
            if let Some(client) = client {
                self.count_shared_client_failure(client, user);
            }
        }
    }

    fn finish_local(
        &self,
        user: UserKey,
        client: Option<ClientKey>,
        right: Option<bool>,
        now: Instant,
    ) {
        let mut tables = self.tables();
        if let Some(u) = tables.users.get_mut(&user) {
            u.busy = false;
        }
        if let Some(c) = client.and_then(|c| tables.clients.get_mut(&c)) {
            c.busy = c.busy.saturating_sub(1);
        }
        match right {
            Some(false) => {
                self.count_user_failure(&mut tables, user, now);
                if let Some(client) = client {
                    self.count_client_failure(&mut tables, client, user, now);
                }
            }
            Some(true) => {
                tables.users.remove(&user);
                if let Some(c) = client.and_then(|c| tables.clients.get_mut(&c)) {
                    let tag = Some(user.tag());
                    if let Some(slot) = c.recent.iter_mut().find(|t| **t == tag) {
                        *slot = None;
                    }
                    c.failures /= 2;
                    let end = match c.failures.checked_sub(self.policy.client_allowance) {
                        Some(n) if n > 0 => c.last + self.window(n),
                        _ => c.last,
                    };
                    c.until = c.until.min(end);
                }
            }
            None => {}
        }
        // Entries that hold nothing any more.
        if tables
            .users
            .get(&user)
            .is_some_and(|u| u.failures == 0 && !u.busy)
        {
            tables.users.remove(&user);
        }
        if let Some(client) = client {
            if tables
                .clients
                .get(&client)
                .is_some_and(|c| c.failures == 0 && c.busy == 0)
            {
                tables.clients.remove(&client);
            }
        }
        self.publish(&tables);
    }

    /// Drops the counters forgotten at `now` (never an entry with a verification in flight).
    pub fn sweep(&self, now: Instant) {
        let mut tables = self.tables();
        self.sweep_tables(&mut tables, now);
        self.publish(&tables);
    }

    fn sweep_tables(&self, tables: &mut Tables, now: Instant) {
        tables
            .users
            .retain(|_, u| u.busy || !self.forgotten(u.last, now));
        tables
            .clients
            .retain(|_, c| c.busy > 0 || !self.forgotten(c.last, now));
    }

    /// Keeps each table below `capacity` before an insertion: drops the forgotten counters,
    /// then, if still full, the older half (once per half a table of insertions, so the
    /// cost per insertion stays constant).
    fn make_room(&self, tables: &mut Tables, now: Instant) {
        let capacity = self.policy.capacity.max(2);
        if tables.users.len() + 1 < capacity && tables.clients.len() + 1 < capacity {
            return;
        }
        self.sweep_tables(tables, now);
        evict_older_half(&mut tables.users, capacity);
        evict_older_half(&mut tables.clients, capacity);
    }

    /// Starts a task (on the current tokio runtime, when there is one) that drops forgotten
    /// counters every [`sweep_every`](ThrottlePolicy::sweep_every). It ends when the
    /// throttle is dropped.
    pub fn spawn_sweeper(self: &Arc<Self>) {
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let throttle: Weak<Self> = Arc::downgrade(self);
        let every = self.policy.sweep_every.max(Duration::from_millis(1));
        if self.shared.is_some() {
            runtime.spawn(poll_shared(Weak::clone(&throttle)));
        }
        runtime.spawn(async move {
            let mut ticks = tokio::time::interval(every);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                ticks.tick().await;
                let Some(throttle) = throttle.upgrade() else {
                    break;
                };
                if !throttle.is_empty() {
                    throttle.sweep(Instant::now());
                }
                if let Some(store) = throttle.shared.clone() {
                    let forget_after = throttle.policy.forget_after;
                    let swept =
                        tokio::task::spawn_blocking(move || store.throttle_sweep(forget_after))
                            .await;
                    if let Ok(Err(e)) = swept {
                        tracing::debug!(
                            error = %crate::fault::ErrorChain(&e),
                            "cannot drop forgotten failed logons from the shared database"
                        );
                    }
                }
            }
        });
    }

    /// The time left in the window of `user` and of `client` (zero when closed), for tests
    /// and diagnostics.
    pub fn windows(&self, user: &UserKey, client: Option<ClientKey>, now: Instant) -> Duration {
        let tables = self.tables();
        let user_left = tables
            .users
            .get(user)
            .map_or(Duration::ZERO, |u| u.until.saturating_duration_since(now));
        let client_left = client
            .and_then(|c| tables.clients.get(&c))
            .filter(|c| c.failures > self.policy.client_allowance)
            .map_or(Duration::ZERO, |c| c.until.saturating_duration_since(now));
        user_left.max(client_left)
    }
}

/// Copies the windows open in the shared database into the throttle's table every
/// [`SHARED_POLL`], until the throttle is dropped.
async fn poll_shared(throttle: Weak<Throttle>) {
    let mut ticks = tokio::time::interval(SHARED_POLL);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        let Some(store) = throttle.upgrade().and_then(|t| t.shared.clone()) else {
            break;
        };
        let open = tokio::task::spawn_blocking(move || store.throttle_open_windows()).await;
        let Some(throttle) = throttle.upgrade() else {
            break;
        };
        match open {
            Ok(Ok(open)) if !open.is_empty() => {
                let now = Instant::now();
                let mut tables = throttle.tables();
                for (key, failures, left) in open {
                    throttle.mirror(&mut tables, UserKey(key), failures, left, now);
                }
                throttle.publish(&tables);
            }
            Ok(Ok(_)) => {}
            Ok(Err(e)) => tracing::debug!(
                error = %crate::fault::ErrorChain(&e),
                "cannot read the shared failed-logon windows"
            ),
            Err(_) => {}
        }
    }
}

/// Drops the older half of `table` (by last failure) when it has reached `capacity`;
/// entries with a verification in flight stay.
fn evict_older_half<K: Copy + Eq + Hash, E: Entry>(table: &mut HashMap<K, E>, capacity: usize) {
    if table.len() + 1 < capacity {
        return;
    }
    let mut ages: Vec<(Instant, K)> = table
        .iter()
        .filter(|(_, e)| !e.busy())
        .map(|(k, e)| (e.last(), *k))
        .collect();
    let drop = (capacity / 2).min(ages.len());
    if drop == 0 {
        return;
    }
    ages.select_nth_unstable_by_key(drop - 1, |(last, _)| *last);
    for (_, key) in &ages[..drop] {
        table.remove(key);
    }
}

/// An admitted verification's place in the throttle ([`Throttle::admit`]). Report its end
/// with [`finish`](Self::finish); dropped unfinished, it only gives its place back.
#[derive(Debug)]
pub struct Permit {
    throttle: Arc<Throttle>,
    user: UserKey,
    client: Option<ClientKey>,
    finished: bool,
}

impl Permit {
    /// The verification ended at `now`: `Some(true)` the password was right, `Some(false)`
    /// wrong, `None` not checked.
    pub fn finish(mut self, right: Option<bool>, now: Instant) {
        self.finished = true;
        self.throttle.finish(self.user, self.client, right, now);
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        if !self.finished {
            self.throttle
                .finish(self.user, self.client, None, Instant::now());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn throttle() -> Arc<Throttle> {
        Arc::new(Throttle::new(ThrottlePolicy {
            base: Duration::from_millis(100),
            max: Duration::from_secs(2),
            forget_after: Duration::from_secs(60),
            user_allowance: 0,
            client_allowance: 2,
            client_parallel: 3,
            capacity: 8,
            sweep_every: Duration::from_millis(10),
        }))
    }

    const IP: ClientKey = ClientKey::V4(Ipv4Addr::new(10, 0, 0, 1));

    /// One admitted, verified, wrong attempt of `user` from `client`.
    fn fail(t: &Arc<Throttle>, user: &str, client: Option<ClientKey>, now: Instant) {
        t.admit(t.user_key(user), client, false, now)
            .expect("admitted")
            .finish(Some(false), now);
    }

    #[test]
    fn windows_double_per_failure_up_to_the_cap() {
        let t = throttle();
        let mut now = Instant::now();
        let alice = t.user_key("alice");
        assert!(t.is_empty());
        let mut seen = Vec::new();
        for _ in 0..7 {
            fail(&t, "alice", None, now);
            let left = t.windows(&alice, None, now);
            seen.push(left.as_millis());
            now += left;
        }
        assert_eq!(seen, [100, 200, 400, 800, 1600, 2000, 2000]);
        // Per user name, whatever its spelling and client.
        assert_eq!(t.user_key("ALICE"), alice);
        let refused = t.admit(alice, Some(IP), false, now - Duration::from_millis(500));
        assert_eq!(refused.unwrap_err().retry_after.as_millis(), 500);
        assert!(t.admit(alice, Some(IP), false, now).is_ok());
    }

    #[test]
    fn by_default_a_second_failure_opens_the_first_window() {
        let t = Arc::new(Throttle::default());
        let now = Instant::now();
        let alice = t.user_key("alice");
        fail(&t, "alice", Some(IP), now);
        assert_eq!(t.windows(&alice, Some(IP), now), Duration::ZERO);
        fail(&t, "alice", Some(IP), now);
        assert_eq!(t.windows(&alice, Some(IP), now).as_millis(), 200);
        assert!(t.admit_verified("alice", || now).is_err());
    }

    #[test]
    fn inside_a_window_or_in_flight_every_attempt_is_refused() {
        let t = throttle();
        let now = Instant::now();
        let alice = t.user_key("alice");
        fail(&t, "alice", Some(IP), now);
        // Refused unchecked, also with the cached (verified) password.
        assert!(t.admit(alice, Some(IP), false, now).is_err());
        assert!(t.admit_verified("alice", || now).is_err());
        let later = now + Duration::from_millis(100);
        assert!(t.admit_verified("alice", || later).is_ok());
        // One verification of a user name at a time; the cache waits for it too.
        let permit = t.admit(alice, Some(IP), false, later).unwrap();
        assert!(t.admit(alice, None, false, later).is_err());
        assert!(t.admit_verified("alice", || later).is_err());
        drop(permit);
        assert!(t.admit_verified("alice", || later).is_ok());
        assert!(t.admit(alice, None, false, later).is_ok());
        // Nothing left over but the counter.
        assert_eq!(t.len(), 2);
    }

    #[test]
    fn a_client_counts_distinct_names_beyond_its_allowance() {
        let t = throttle();
        let now = Instant::now();
        let bob = t.user_key("bob");
        // One user mistyping again and again slows only that user.
        for i in 0..4 {
            fail(&t, "alice", Some(IP), now + Duration::from_secs(3 * i));
        }
        let now = now + Duration::from_secs(20);
        assert_eq!(t.windows(&bob, Some(IP), now), Duration::ZERO);
        assert!(t.admit(bob, Some(IP), false, now).is_ok());
        // Many names from one client slow the client (after the allowance of 2).
        fail(&t, "x1", Some(IP), now);
        assert_eq!(t.windows(&bob, Some(IP), now), Duration::ZERO);
        fail(&t, "x2", Some(IP), now);
        assert_eq!(t.windows(&bob, Some(IP), now).as_millis(), 100);
        assert!(t.admit(bob, Some(IP), false, now).is_err());
        // Not another client.
        let other = ClientKey::of([10, 0, 0, 2].into());
        assert!(t.admit(bob, Some(other), false, now).is_ok());
        // A cache hit is not the client's business.
        assert!(t.admit_verified("bob", || now).is_ok());
    }

    #[test]
    fn a_wrong_password_refused_for_its_client_counts_for_its_user() {
        let t = throttle();
        let now = Instant::now();
        for name in ["x1", "x2", "x3"] {
            fail(&t, name, Some(IP), now);
        }
        let bob = t.user_key("bob");
        // Unknown whether right: refused, not counted.
        assert!(t.admit(bob, Some(IP), false, now).is_err());
        assert!(t.admit_verified("bob", || now).is_ok());
        // Known to differ from bob's verified password: counted, so the cache is no oracle.
        assert!(t.admit(bob, Some(IP), true, now).is_err());
        assert!(t.admit_verified("bob", || now).is_err());
    }

    #[test]
    fn a_success_clears_the_user_and_relaxes_the_client() {
        let t = throttle();
        let mut now = Instant::now();
        for name in ["x1", "x2", "x3", "x4", "alice"] {
            now += Duration::from_secs(1);
            fail(&t, name, Some(IP), now);
        }
        let alice = t.user_key("alice");
        assert_eq!(t.windows(&alice, Some(IP), now).as_millis(), 400);
        let later = now + Duration::from_millis(400);
        let permit = t.admit(alice, Some(IP), false, later).unwrap();
        permit.finish(Some(true), later);
        // The count is halved (5 names -> 2, within the allowance): the window closes.
        assert_eq!(t.windows(&alice, Some(IP), later), Duration::ZERO);
        assert!(t.admit(t.user_key("x5"), Some(IP), false, later).is_ok());
    }

    #[test]
    fn a_client_has_few_verifications_in_flight() {
        let t = throttle();
        let now = Instant::now();
        let permits: Vec<_> = (0..3)
            .map(|i| {
                t.admit(t.user_key(&format!("u{i}")), Some(IP), false, now)
                    .unwrap()
            })
            .collect();
        assert!(t.admit(t.user_key("u3"), Some(IP), false, now).is_err());
        drop(permits);
        assert!(t.is_empty(), "nothing remembered of successes");
        // Once its failures count, one at a time.
        for name in ["x1", "x2", "x3"] {
            fail(&t, name, Some(IP), now - Duration::from_secs(5));
        }
        let first = t.admit(t.user_key("u0"), Some(IP), false, now).unwrap();
        assert!(t.admit(t.user_key("u1"), Some(IP), false, now).is_err());
        drop(first);
    }

    #[test]
    fn an_ipv6_slash_64_is_one_client() {
        let a: IpAddr = "2001:db8:1:2::1".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2:ffff::9".parse().unwrap();
        let c: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        assert_eq!(ClientKey::of(a), ClientKey::of(b));
        assert_ne!(ClientKey::of(a), ClientKey::of(c));
        let mapped: IpAddr = "::ffff:10.0.0.1".parse().unwrap();
        assert_eq!(ClientKey::of(mapped), IP);
    }

    #[test]
    fn counters_are_forgotten_and_memory_is_bounded() {
        let t = throttle();
        let now = Instant::now();
        fail(&t, "alice", Some(IP), now);
        assert_eq!(t.len(), 2);
        t.sweep(now + Duration::from_secs(59));
        assert_eq!(t.len(), 2);
        let later = now + Duration::from_secs(61);
        t.sweep(later);
        assert!(t.is_empty());
        for i in 0..100u32 {
            let client = ClientKey::of([10, 1, (i / 250) as u8, (i % 250) as u8].into());
            fail(&t, &format!("u{i}"), Some(client), later);
        }
        let tables = t.tables();
        assert!(tables.users.len() < 8 && tables.clients.len() < 8);
    }

    #[tokio::test]
    async fn the_sweeper_drops_forgotten_counters_on_its_own() {
        let t = Arc::new(Throttle::new(ThrottlePolicy {
            forget_after: Duration::from_millis(1),
            sweep_every: Duration::from_millis(5),
            ..ThrottlePolicy::default()
        }));
        fail(&t, "alice", Some(IP), Instant::now());
        assert_eq!(t.len(), 2);
        t.spawn_sweeper();
        for _ in 0..2000 {
            if t.is_empty() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        assert!(
            t.is_empty(),
            "no request came, yet the counters were dropped"
        );
    }

    #[test]
    fn a_user_key_is_small_whatever_the_name() {
        let t = throttle();
        let long = "x".repeat(300_000);
        assert_eq!(std::mem::size_of_val(&t.user_key(&long)), 16);
        assert_ne!(t.user_key(&long), t.user_key(&long[1..]));
    }
}
