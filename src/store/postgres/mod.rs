//! The PostgreSQL implementation of the mailbox store, for several umws instances on one
//! database. Same records, same guarantees as [`super::sqlite`], now across processes and
//! machines; the differences are said where they are made:
//!
//! - `schema.rs`: the schema and its versions, applied at start under an advisory lock.
//! - `mailboxes.rs`: mailbox rows and policies.
//! - `pins.rs`: PIN checks, changes and resets (a row lock `SELECT ... FOR UPDATE` on the
//!   mailbox serialises the write transactions of one mailbox across instances).
//! - `outbox.rs`: the queued PIN mails (leases, `FOR UPDATE SKIP LOCKED`), voice messages and
//!   greetings.
//!
//! # Driver, pool, and the synchronous API
//!
//! The store's API is synchronous (the service calls it on blocking threads, the command line
//! directly, and the credentials cache now and then from a request's task). The driver is
//! `tokio-postgres` with the `deadpool-postgres` pool: each connection's I/O runs as a task on
//! a small runtime of the store's own (two threads, `runtime`), and a store call sends its
//! statements to the connection and waits for the answers with a plain thread park
//! (`futures_executor::block_on`). That works on any thread, including a tokio worker of the
//! caller's runtime (where the synchronous `postgres` crate, which runs a runtime per
//! connection, would panic), and a blocked caller never holds up another connection's I/O.
//!
//! Connections are plain TCP (or a unix socket), or TLS when the URL asks for it with libpq's
//! `sslmode` and `sslrootcert` (`tls.rs`).

pub mod calls;
pub mod copy;
mod mailboxes;
mod outbox;
mod pins;
mod schema;
#[cfg(test)]
pub(crate) mod test_support;
mod throttle;
mod tls;

use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use deadpool_postgres::{GenericClient, Manager, ManagerConfig, Object, Pool, RecyclingMethod};
use rand::RngCore;
use tokio_postgres::types::ToSql;
use tokio_postgres::Row;
use tokio_postgres_rustls::MakeRustlsConnect;

use super::private::{check_data_dir, private_entries};
use super::spool::Spool;
use super::{hash_secret, verify_secret, HashCost, MailboxId, PinWorkHook, ResetLimit, StoreError};
pub use schema::MIGRATIONS;
pub use throttle::SharedFailures;

/// The environment variable naming a file whose content is the database password, used when
/// the URL has none.
pub const PASSWORD_FILE_ENV: &str = "UMWS_DATABASE_PASSWORD_FILE";
/// The environment variable holding the database password, used when the URL has none and
/// [`PASSWORD_FILE_ENV`] is not set (libpq's name).
pub const PASSWORD_ENV: &str = "PGPASSWORD";

/// The channel on which the triggers announce commits that change mailboxes or policies.
const CHANGES_CHANNEL: &str = "umws_changes";

/// The channel on which a Disconnect through one instance announces the call it asks the
/// owner to hang up (the payload is the call id; see `calls.rs`).
pub(super) const HANG_UPS_CHANNEL: &str = "umws_hang_ups";

/// How long opening the store waits for its change listener to connect.
const LISTENER_START: Duration = Duration::from_secs(5);

/// The most connections of one store's pool.
const MAX_CONNECTIONS: usize = 16;

/// How long a store call waits for a connection, and a new connection for the server.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// The longest a statement (or a transaction's `BEGIN` or `COMMIT`) waits for the server's
/// answer. A server that does not answer (hung, overloaded, or cut off) costs a request at
/// most this (plus [`CONNECT_TIMEOUT`] for a connection), then it fails with
/// [`StoreError::DatabaseUnavailable`]; whether a `COMMIT` that timed out took effect is not
/// known, as after a crash (the outbox's mail is then delivered all the same).
const STATEMENT_TIMEOUT: Duration = Duration::from_secs(10);

/// How long the change listener waits before it connects again after losing its connection.
const LISTEN_RETRY: Duration = Duration::from_secs(1);

/// How often the change listener asks its connection for an answer. A connection that stops
/// answering without closing (a network partition, a hung server process) delivers no
/// notifications and reports no error; without this the caches would go on trusting a change
/// version that no longer moves. With it, such a connection counts as lost (and the caches
/// stop trusting) at most [`LISTENER_HEARTBEAT`] + [`LISTENER_ANSWER`] after it went silent.
const LISTENER_HEARTBEAT: Duration = Duration::from_secs(5);

/// How long the change listener's heartbeat waits for its answer.
const LISTENER_ANSWER: Duration = Duration::from_secs(5);

/// `request`'s answer on the change listener's connection, or [`ListenerLost::Silent`] when
/// none comes within `within`.
async fn answered<T>(
    within: Duration,
    request: impl std::future::Future<Output = Result<T, tokio_postgres::Error>>,
) -> Result<T, ListenerLost> {
    match tokio::time::timeout(within, request).await {
        Ok(answer) => Ok(answer?),
        Err(_) => Err(ListenerLost::Silent(within)),
    }
}

/// Why the change listener's connection was given up.
#[derive(Debug, thiserror::Error)]
enum ListenerLost {
    #[error(transparent)]
    Database(#[from] tokio_postgres::Error),
    #[error("the connection did not answer within {0:?}")]
    Silent(Duration),
}

fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

/// The runtime that drives the connections of every PostgreSQL store of the process.
fn runtime() -> Result<&'static tokio::runtime::Runtime, StoreError> {
    static RUNTIME: OnceLock<Result<tokio::runtime::Runtime, String>> = OnceLock::new();
    RUNTIME
        .get_or_init(|| {
            tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .thread_name("umws-postgres")
                .enable_all()
                .build()
                .map_err(|e| e.to_string())
        })
        .as_ref()
        .map_err(|e| unavailable(e.clone()))
}

fn unavailable(e: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> StoreError {
    StoreError::DatabaseUnavailable(e.into())
}

/// Waits on this thread for `future`, whose I/O (if any) runs on [`runtime`].
pub(super) fn block<F: Future>(future: F) -> F::Output {
    futures_executor::block_on(future)
}

/// [`block`] for a database round trip: at most [`STATEMENT_TIMEOUT`].
pub(super) fn block_db<T, E: Into<StoreError>>(
    future: impl Future<Output = Result<T, E>>,
) -> Result<T, StoreError> {
    let timed = {
        // The timer is the store runtime's, whichever thread waits.
        let _runtime = runtime()?.enter();
        tokio::time::timeout(STATEMENT_TIMEOUT, future)
    };
    match block(timed) {
        Ok(done) => done.map_err(Into::into),
        Err(_) => Err(unavailable("the database did not answer in time")),
    }
}

/// Begins a transaction on `conn`, waiting at most [`STATEMENT_TIMEOUT`]. (A `BEGIN` that
/// timed out is followed by a `ROLLBACK`, which `tokio-postgres` queues when the future is
/// dropped, so the connection goes back to the pool outside a transaction.)
pub(super) fn begin(conn: &mut Object) -> Result<deadpool_postgres::Transaction<'_>, StoreError> {
    block_db(conn.transaction())
}

/// Commits `tx`, waiting at most [`STATEMENT_TIMEOUT`].
pub(super) fn commit(tx: deadpool_postgres::Transaction<'_>) -> Result<(), StoreError> {
    block_db(tx.commit())
}

/// Runs `future` on [`runtime`] and waits for it.
fn on_runtime<T: Send + 'static>(
    future: impl Future<Output = Result<T, StoreError>> + Send + 'static,
) -> Result<T, StoreError> {
    block(runtime()?.spawn(future)).map_err(unavailable)?
}

/// The rows of `sql` (a cached prepared statement of the connection).
pub(super) fn rows(
    c: &impl GenericClient,
    sql: &str,
    params: &[&(dyn ToSql + Sync)],
) -> Result<Vec<Row>, StoreError> {
    block_db(async {
        let statement = c.prepare_cached(sql).await?;
        c.query(&statement, params).await
    })
}

/// The row of `sql`, if any.
pub(super) fn row_opt(
    c: &impl GenericClient,
    sql: &str,
    params: &[&(dyn ToSql + Sync)],
) -> Result<Option<Row>, StoreError> {
    block_db(async {
        let statement = c.prepare_cached(sql).await?;
        c.query_opt(&statement, params).await
    })
}

/// The one row of `sql`.
pub(super) fn row(
    c: &impl GenericClient,
    sql: &str,
    params: &[&(dyn ToSql + Sync)],
) -> Result<Row, StoreError> {
    block_db(async {
        let statement = c.prepare_cached(sql).await?;
        c.query_one(&statement, params).await
    })
}

/// Runs `sql`; the number of rows it changed.
pub(super) fn exec(
    c: &impl GenericClient,
    sql: &str,
    params: &[&(dyn ToSql + Sync)],
) -> Result<u64, StoreError> {
    block_db(async {
        let statement = c.prepare_cached(sql).await?;
        c.execute(&statement, params).await
    })
}

/// A count or limit kept as `BIGINT`, read back as the `u32` of the records.
pub(super) fn get_u32(r: &Row, idx: usize) -> Result<u32, StoreError> {
    let v: i64 = r.try_get(idx)?;
    u32::try_from(v).map_err(|_| StoreError::InvalidInput {
        field: "stored count",
        reason: "out of range",
    })
}

/// An optional [`get_u32`].
pub(super) fn get_opt_u32(r: &Row, idx: usize) -> Result<Option<u32>, StoreError> {
    let v: Option<i64> = r.try_get(idx)?;
    v.map(|v| {
        u32::try_from(v).map_err(|_| StoreError::InvalidInput {
            field: "stored count",
            reason: "out of range",
        })
    })
    .transpose()
}

/// Whether `e` is the server's refusal of `state`.
pub(super) fn is_state(e: &StoreError, state: &tokio_postgres::error::SqlState) -> bool {
    matches!(e, StoreError::Postgres(e) if e.code() == Some(state))
}

/// How to connect to the database: the driver's settings, and the TLS connector it uses when
/// the URL's `sslmode` is not `disable` (see `tls.rs`).
#[derive(Clone)]
pub struct ConnectConfig {
    /// The driver's settings (its `ssl_mode` says whether TLS is asked for, or required).
    pub config: tokio_postgres::Config,
    /// The TLS connector, checking the server's certificate as the URL says.
    pub tls: MakeRustlsConnect,
}

impl fmt::Debug for ConnectConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The driver's `Debug` hides the password.
        f.debug_struct("ConnectConfig")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl ConnectConfig {
    /// A connection and the future that runs it.
    pub async fn connect(
        &self,
    ) -> Result<
        (
            tokio_postgres::Client,
            tokio_postgres::Connection<
                tokio_postgres::Socket,
                <MakeRustlsConnect as tokio_postgres::tls::MakeTlsConnect<
                    tokio_postgres::Socket,
                >>::Stream,
            >,
        ),
        tokio_postgres::Error,
    > {
        self.config.connect(self.tls.clone()).await
    }
}

/// The connection settings of `url`; a password the URL does not give comes from the file
/// named by [`PASSWORD_FILE_ENV`] or from [`PASSWORD_ENV`]. Neither the URL nor the password
/// ever appears in an error or a log. TLS as the URL's `sslmode` and `sslrootcert` say (as
/// for libpq; none without `sslmode`).
pub fn connect_config(url: &str) -> Result<ConnectConfig, StoreError> {
    connect_config_from(url, |name| std::env::var_os(name))
}

/// [`connect_config`] with the environment read through `env`.
fn connect_config_from(
    url: &str,
    env: impl Fn(&str) -> Option<std::ffi::OsString>,
) -> Result<ConnectConfig, StoreError> {
    let bad = |reason| StoreError::InvalidInput {
        field: "database URL",
        reason,
    };
    if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
        return Err(bad("must begin with postgres:// or postgresql://"));
    }
    let (url, url_tls) = tls::split_url(url)?;
    let mut config: tokio_postgres::Config = url
        .parse()
        .map_err(|_| bad("not a PostgreSQL connection URL (postgres://user@host:port/db)"))?;
    if config.get_password().is_none() {
        if let Some(path) = env(PASSWORD_FILE_ENV).filter(|p| !p.is_empty()) {
            let path = PathBuf::from(path);
            let text = std::fs::read_to_string(&path).map_err(|source| StoreError::Private {
                path: path.clone(),
                source,
            })?;
            config.password(text.trim_end_matches(['\r', '\n']));
        } else if let Some(password) = env(PASSWORD_ENV) {
            config.password(password.as_encoded_bytes());
        }
    }
    if config.get_connect_timeout().is_none() {
        config.connect_timeout(CONNECT_TIMEOUT);
    }
    if config.get_application_name().is_none() {
        config.application_name("umws");
    }
    config.ssl_mode(url_tls.mode.driver());
    let tls = tls::connector(&url_tls)?;
    Ok(ConnectConfig { config, tls })
}

/// What the change listener tells the store handles.
struct Signals {
    /// The change version of [`PgStore::change_version`].
    version: AtomicU64,
    /// Whether the listener is connected and listening now; while it is not, every call of
    /// `change_version` returns a new number (nothing read can be trusted to be current).
    listening: AtomicBool,
    /// The key of the liveness lock (`LIVENESS_CLASS`, key) that the listener's session holds
    /// now, or -1 while it holds none. Other instances take this instance's outbox leases
    /// over at once when the lock is gone (the process died and its connection closed).
    live_key: AtomicI64,
    /// The call ids of hang-ups asked for on [`HANG_UPS_CHANNEL`], as they arrive.
    hang_ups: tokio::sync::broadcast::Sender<String>,
}

/// The first key of the session advisory locks by which instances show that they are alive
/// ("live" in ASCII); the second is a random non-negative number chosen by each instance.
const LIVENESS_CLASS: i32 = 0x6c69_7665;

/// How many keys the listener tries for its liveness lock.
const LIVENESS_TRIES: usize = 8;

/// The state shared by all clones of a [`PgStore`].
struct Shared {
    pool: Pool,
    data_dir: PathBuf,
    spool: Spool,
    dummy_hash: OnceLock<String>,
    /// One lock per mailbox with a PIN change in flight in this process: a process's own
    /// changes of a mailbox wait here rather than race for the row lock and start over.
    pin_locks: Mutex<HashMap<MailboxId, Arc<Mutex<()>>>>,
    signals: Arc<Signals>,
    /// Dropped with the last handle: ends the change listener.
    _stop_listener: tokio::sync::oneshot::Sender<()>,
    /// This process's name in the outbox's leases.
    instance: String,
    /// The key of the failed-logon throttle's user name digests (`throttle.rs`).
    throttle_key: [u8; 32],
}

/// The PostgreSQL mailbox store. Cheap to clone; all clones share one pool of connections.
#[derive(Clone)]
pub struct PgStore {
    shared: Arc<Shared>,
    cost: HashCost,
    pin_work_hook: Option<PinWorkHook>,
    reset_limit: Option<ResetLimit>,
    /// A test hook called inside a reset's write transaction, once it holds the row lock and
    /// found the state unchanged.
    #[cfg(test)]
    tx_hook: Option<PinWorkHook>,
}

impl fmt::Debug for PgStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Not the URL: it may hold the password.
        f.debug_struct("PgStore")
            .field("data_dir", &self.shared.data_dir)
            .field("cost", &self.cost)
            .finish()
    }
}

impl PgStore {
    /// Opens the store in the database at `url` (applying the migrations that it lacks), with
    /// `data_dir` (which must exist and be private, as for SQLite) for the outbox spool.
    pub fn open(url: &str, data_dir: &Path) -> Result<PgStore, StoreError> {
        if !data_dir.is_dir() {
            return Err(StoreError::DataDirMissing {
                path: data_dir.to_path_buf(),
            });
        }
        check_data_dir(data_dir)?;
        private_entries(data_dir)?;
        let spool = Spool::open(data_dir)?;
        let config = connect_config(url)?;
        let manager = Manager::from_config(
            config.config.clone(),
            config.tls.clone(),
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(MAX_CONNECTIONS)
            .runtime(deadpool_postgres::Runtime::Tokio1)
            .wait_timeout(Some(CONNECT_TIMEOUT))
            .create_timeout(Some(CONNECT_TIMEOUT))
            .recycle_timeout(Some(CONNECT_TIMEOUT))
            .build()
            .map_err(unavailable)?;
        {
            let config = config.clone();
            on_runtime(async move { schema::migrate(&config).await })?;
        }
        let throttle_key = {
            let pool = pool.clone();
            on_runtime(async move {
                let conn = pool.get().await.map_err(unavailable)?;
                let key: Vec<u8> = conn
                    .query_one("SELECT key FROM http_throttle_key", &[])
                    .await?
                    .try_get(0)?;
                <[u8; 32]>::try_from(key.as_slice()).map_err(|_| StoreError::InvalidInput {
                    field: "stored throttle key",
                    reason: "not 32 bytes",
                })
            })?
        };
        let signals = Arc::new(Signals {
            version: AtomicU64::new(0),
            listening: AtomicBool::new(false),
            live_key: AtomicI64::new(-1),
            hang_ups: tokio::sync::broadcast::channel(64).0,
        });
        let instance = format!(
            "{}:{}:{}",
            gethostname::gethostname().to_string_lossy(),
            std::process::id(),
            uuid::Uuid::new_v4().simple()
        );
        let (stop, stopped) = tokio::sync::oneshot::channel();
        runtime()?.spawn(listen(
            config,
            instance.clone(),
            Arc::clone(&signals),
            stopped,
        ));
        // The listener is up before anything is served (bounded: should it not connect, the
        // store works without it, as while it reconnects): its liveness lock then names
        // this instance's first leases and calls, and the caches trust the change version.
        let waited = Instant::now();
        while !signals.listening.load(Ordering::Acquire) && waited.elapsed() < LISTENER_START {
            std::thread::sleep(Duration::from_millis(2));
        }
        let store = PgStore {
            shared: Arc::new(Shared {
                pool,
                data_dir: data_dir.to_path_buf(),
                spool,
                dummy_hash: OnceLock::new(),
                pin_locks: Mutex::new(HashMap::new()),
                signals,
                _stop_listener: stop,
                instance,
                throttle_key,
            }),
            cost: HashCost::default(),
            pin_work_hook: None,
            reset_limit: None,
            #[cfg(test)]
            tx_hook: None,
        };
        store.sweep_spool()?;
        Ok(store)
    }

    /// See [`super::Store::with_reset_limit`].
    pub fn with_reset_limit(mut self, limit: Option<ResetLimit>) -> PgStore {
        self.reset_limit = limit;
        self
    }

    /// See [`super::Store::with_hash_cost`].
    pub fn with_hash_cost(mut self, cost: HashCost) -> PgStore {
        self.cost = cost;
        self
    }

    /// See [`super::Store::with_pin_work_hook`].
    pub fn with_pin_work_hook(mut self, hook: PinWorkHook) -> PgStore {
        self.pin_work_hook = Some(hook);
        self
    }

    /// Installs [`tx_hook`](Self::tx_hook).
    #[cfg(test)]
    pub(crate) fn with_tx_hook(mut self, hook: PinWorkHook) -> PgStore {
        self.tx_hook = Some(hook);
        self
    }

    /// How many mailboxes have a lock in the map of per-mailbox locks.
    #[cfg(test)]
    pub(crate) fn pin_locks_len(&self) -> usize {
        self.shared
            .pin_locks
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }

    /// The data directory (the outbox spool).
    pub fn data_dir(&self) -> &Path {
        &self.shared.data_dir
    }

    /// A connection of the pool (waits for one at most [`CONNECT_TIMEOUT`]).
    pub(super) fn conn(&self) -> Result<Object, StoreError> {
        let pool = self.shared.pool.clone();
        on_runtime(async move { pool.get().await.map_err(unavailable) })
    }

    /// The call ids of the hang-ups other instances ask this one's calls for
    /// ([`PgStore::call_request_hang_up`]), as the listener hears them; nothing is heard
    /// while it has no connection (then only a look at the calls' rows tells).
    pub fn hang_ups(&self) -> tokio::sync::broadcast::Receiver<String> {
        self.shared.signals.hang_ups.subscribe()
    }

    /// The key of the liveness lock this instance holds now, if it holds one.
    pub(super) fn live_key(&self) -> Option<i32> {
        i32::try_from(self.shared.signals.live_key.load(Ordering::Acquire))
            .ok()
            .filter(|k| *k >= 0)
    }

    /// Notes a commit by this handle: the change version moves at once (other handles and
    /// instances see it through the listener).
    pub(super) fn wrote(&self) {
        self.shared.signals.version.fetch_add(1, Ordering::AcqRel);
    }

    /// A number that changes after every commit that changes a mailbox or a policy: at once
    /// for commits through this store, within the notification's delay (milliseconds) for
    /// commits by other instances or the command line (PostgreSQL's `LISTEN`/`NOTIFY`,
    /// delivered after the commit). While the listener has no connection every call returns a
    /// new number, so that nothing cached is trusted. Never waits for the database.
    pub fn change_version(&self) -> Result<u64, StoreError> {
        let signals = &self.shared.signals;
        if !signals.listening.load(Ordering::Acquire) {
            return Ok(signals.version.fetch_add(1, Ordering::AcqRel) + 1);
        }
        Ok(signals.version.load(Ordering::Acquire))
    }

    /// [`change_version`](Self::change_version) (the time is not needed here).
    pub fn change_version_at(&self, _now: Instant) -> Result<u64, StoreError> {
        self.change_version()
    }

    /// The same as [`change_version`](Self::change_version).
    pub fn data_version(&self) -> Result<u64, StoreError> {
        self.change_version()
    }

    fn verify_dummy(&self, secret: &[u8]) -> Result<(), StoreError> {
        let dummy = match self.shared.dummy_hash.get() {
            Some(hash) => hash,
            None => {
                let mut random = [0u8; 32];
                rand::rngs::OsRng.fill_bytes(&mut random);
                let hash = hash_secret(self.cost, &random)?;
                self.shared.dummy_hash.get_or_init(|| hash)
            }
        };
        verify_secret(dummy, secret)?;
        Ok(())
    }

    /// The lock that serialises PIN changes of mailbox `id` in this process.
    fn mailbox_lock(&self, id: MailboxId) -> Arc<Mutex<()>> {
        let mut locks = self
            .shared
            .pin_locks
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        locks.retain(|_, lock| Arc::strong_count(lock) > 1);
        Arc::clone(locks.entry(id).or_default())
    }

    fn pin_work_done(&self, id: MailboxId) {
        if let Some(hook) = &self.pin_work_hook {
            hook(id);
        }
    }
}

/// A key for the liveness lock: random, non-negative (so that it reads the same as the
/// `objid` of `pg_locks`).
fn random_live_key() -> i32 {
    i32::try_from(rand::random::<u32>() >> 1).unwrap_or(0)
}

/// The change listener: `LISTEN umws_changes` on a connection of its own, moving the version
/// at every notification; connects again after a loss (moving the version then too, since
/// commits may have been missed), until `stop` fires or its sender is dropped. A connection
/// that does not answer the [`LISTENER_HEARTBEAT`] (or a setup step) within
/// [`LISTENER_ANSWER`], or a connect that takes over [`CONNECT_TIMEOUT`], is lost too.
/// Its session also holds this instance's liveness lock (see `Signals::live_key`).
async fn listen(
    config: ConnectConfig,
    instance: String,
    signals: Arc<Signals>,
    mut stop: tokio::sync::oneshot::Receiver<()>,
) {
    use futures_util::StreamExt as _;
    let mut wanted_key: Option<i32> = None;
    // The key this instance's leases and running calls name.
    let mut rows_key: Option<i32> = None;
    loop {
        let session = async {
            let (client, mut connection) = answered(CONNECT_TIMEOUT, config.connect()).await?;
            let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
            let hang_ups = signals.hang_ups.clone();
            let driver = tokio::spawn(async move {
                let mut messages =
                    futures_util::stream::poll_fn(move |cx| connection.poll_message(cx));
                while let Some(Ok(message)) = messages.next().await {
                    if let tokio_postgres::AsyncMessage::Notification(n) = message {
                        if n.channel() == HANG_UPS_CHANNEL {
                            // (no one following calls: nothing to do)
                            let _ = hang_ups.send(n.payload().to_owned());
                        } else if tx.send(()).is_err() {
                            break;
                        }
                    }
                }
            });
            let listened = async {
                answered(
                    LISTENER_ANSWER,
                    client.batch_execute(&format!(
                        "LISTEN {CHANGES_CHANNEL}; LISTEN {HANG_UPS_CHANNEL}"
                    )),
                )
                .await?;
                // The liveness lock: the key held before a reconnect when it is free, else a
                // new one (another live instance holds it by chance, or the server has not yet
                // noticed that the previous connection is gone). Without one, leases and calls
                // name none.
                let mut held_key = None;
                for attempt in 0..LIVENESS_TRIES {
                    let key = match wanted_key {
                        Some(key) if attempt == 0 => key,
                        _ => random_live_key(),
                    };
                    let held: bool = answered(
                        LISTENER_ANSWER,
                        client.query_one(
                            "SELECT pg_try_advisory_lock($1, $2)",
                            &[&LIVENESS_CLASS, &key],
                        ),
                    )
                    .await?
                    .try_get(0)?;
                    if held {
                        held_key = Some(key);
                        wanted_key = Some(key);
                        signals.live_key.store(i64::from(key), Ordering::Release);
                        break;
                    }
                }
                // A key other than the one the rows name (the lock of the connection before
                // this one was still held, by a server process that had not yet noticed that
                // connection gone): the rows move to it now, before that process goes and
                // takes the old lock with it, which would make this live instance's leases
                // and calls look dead.
                if held_key.is_some() && rows_key != held_key {
                    answered(
                        LISTENER_ANSWER,
                        client.execute(
                            "UPDATE calls SET owner_key = $1
                             WHERE instance = $2 AND ended_at IS NULL",
                            &[&held_key, &instance],
                        ),
                    )
                    .await?;
                    answered(
                        LISTENER_ANSWER,
                        client.execute(
                            "UPDATE outbox SET leased_key = $1 WHERE leased_by = $2",
                            &[&held_key, &instance],
                        ),
                    )
                    .await?;
                    rows_key = held_key;
                }
                signals.listening.store(true, Ordering::Release);
                signals.version.fetch_add(1, Ordering::AcqRel);
                let mut heartbeat = tokio::time::interval(LISTENER_HEARTBEAT);
                heartbeat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                heartbeat.reset();
                loop {
                    tokio::select! {
                        note = rx.recv() => match note {
                            Some(()) => {
                                signals.version.fetch_add(1, Ordering::AcqRel);
                            }
                            // The connection ended (its driver stopped).
                            None => return Ok::<(), ListenerLost>(()),
                        },
                        _ = heartbeat.tick() => {
                            answered(LISTENER_ANSWER, client.simple_query("SELECT 1")).await?;
                        }
                    }
                }
            }
            .await;
            drop(client);
            driver.abort();
            listened
        };
        tokio::select! {
            _ = &mut stop => return,
            ended = session => {
                signals.live_key.store(-1, Ordering::Release);
                signals.listening.store(false, Ordering::Release);
                signals.version.fetch_add(1, Ordering::AcqRel);
                if let Err(e) = ended {
                    tracing::warn!(error = %crate::fault::ErrorChain(&e), "database change listener lost its connection; reconnecting");
                }
            }
        }
        tokio::select! {
            _ = &mut stop => return,
            () = tokio::time::sleep(LISTEN_RETRY) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Condvar, Mutex};

    use super::test_support::store;
    use super::*;
    use crate::store::{NewMailbox, OutgoingMail, ResetReason};

    fn alice() -> NewMailbox {
        NewMailbox {
            user: "Alice".into(),
            password: "pw".into(),
            um_enabled: true,
            extension: Some("36697".into()),
            email: Some("alice@example.org".into()),
        }
    }

    /// Two instances (two handles, each with its own per-mailbox locks, so only the database
    /// serialises them) reset one mailbox at once, both having made their PIN for the same
    /// state. The first, inside its transaction, waits for the second to get into its own:
    /// the row lock keeps the second out until the first commits, so the second finds the
    /// state changed, starts over, and the PIN record is both PINs in order. (Without the row
    /// lock both transactions run at once and the second overwrites the first's PIN.)
    #[test]
    fn resets_of_one_mailbox_serialise_across_instances() {
        #[derive(Default)]
        struct Seen {
            a_in_tx: bool,
            b_in_tx_while_a: bool,
            b_waited: bool,
        }
        let state = Arc::new((Mutex::new(Seen::default()), Condvar::new()));
        let (_db, dir, a) = store();
        let id = a.add_mailbox(alice()).unwrap();
        let url = _db.url.clone();
        let a_hook: PinWorkHook = {
            let state = Arc::clone(&state);
            Arc::new(move |_| {
                let (seen, cv) = &*state;
                let mut s = seen.lock().unwrap();
                s.a_in_tx = true;
                cv.notify_all();
                // Bounded: B must not get in; if it cannot, this ends and A commits.
                let (mut s, _) = cv
                    .wait_timeout_while(s, Duration::from_secs(2), |s| !s.b_in_tx_while_a)
                    .unwrap();
                s.a_in_tx = false;
            })
        };
        let a = a.with_tx_hook(a_hook);
        let b_work: PinWorkHook = {
            let state = Arc::clone(&state);
            Arc::new(move |_| {
                // B's first attempt starts its transaction only once A is in its own.
                let (seen, cv) = &*state;
                let mut s = seen.lock().unwrap();
                if !s.b_waited {
                    s.b_waited = true;
                    s = cv.wait_while(s, |s| !s.a_in_tx).unwrap();
                }
                drop(s);
            })
        };
        let b_tx: PinWorkHook = {
            let state = Arc::clone(&state);
            Arc::new(move |_| {
                let (seen, cv) = &*state;
                let mut s = seen.lock().unwrap();
                if s.a_in_tx {
                    s.b_in_tx_while_a = true;
                    cv.notify_all();
                }
            })
        };
        let b = PgStore::open(&url, dir.path())
            .unwrap()
            .with_hash_cost(HashCost::Test)
            .with_pin_work_hook(b_work)
            .with_tx_hook(b_tx);
        let (pa, pb) = std::thread::scope(|s| {
            let b = &b;
            let first = s.spawn(|| a.reset_pin(id, &mut rand::rngs::OsRng).unwrap());
            let second = s.spawn(move || {
                // A prepares and gets into its transaction first.
                let (seen, cv) = &*state;
                drop(cv.wait_while(seen.lock().unwrap(), |s| !s.a_in_tx).unwrap());
                b.reset_pin(id, &mut rand::rngs::OsRng).unwrap()
            });
            (first.join().unwrap(), second.join().unwrap())
        });
        let record = a.match_pin_record(id, &[&pa, &pb]).unwrap();
        assert!(record.is_exact(), "{record:?}");
        assert_eq!(a.pin_changes(id).unwrap(), 2);
    }

    #[test]
    fn the_password_comes_from_the_url_a_file_or_the_environment_and_is_never_shown() {
        let file = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(file.path(), "from-file\n").unwrap();
        let path = file.path().as_os_str().to_owned();
        let env = |file: bool, var: bool| {
            let path = path.clone();
            move |name: &str| match name {
                PASSWORD_FILE_ENV if file => Some(path.clone()),
                PASSWORD_ENV if var => Some("from-env".into()),
                _ => None,
            }
        };
        let url = "postgres://umws@127.0.0.1:5432/umws";
        let password = |c: ConnectConfig| c.config.get_password().map(<[u8]>::to_vec);
        assert_eq!(
            password(connect_config_from("postgres://u:in-url@h/db", env(true, true)).unwrap()),
            Some(b"in-url".to_vec())
        );
        assert_eq!(
            password(connect_config_from(url, env(true, true)).unwrap()),
            Some(b"from-file".to_vec())
        );
        assert_eq!(
            password(connect_config_from(url, env(false, true)).unwrap()),
            Some(b"from-env".to_vec())
        );
        assert_eq!(
            password(connect_config_from(url, env(false, false)).unwrap()),
            None
        );
        let config = connect_config_from("postgres://u:secret@h/db", env(false, false)).unwrap();
        assert!(!format!("{:?}", config.config).contains("secret"));
        for bad in ["mysql://u:secret@h/db", "postgres://u:secret@h:notaport/db"] {
            let err = connect_config_from(bad, env(false, false)).unwrap_err();
            let text = crate::fault::ErrorChain(&err).to_string();
            assert!(text.contains("database URL"), "{text}");
            assert!(!text.contains("secret"), "{text}");
        }
        // The store's Debug shows no URL either.
        let (db, dir, store) = store();
        assert!(!format!("{store:?}").contains(&db.url));
        drop(dir);
    }

    /// Resets mailbox `id`'s PIN, queueing its mail.
    fn queue_a_mail(store: &PgStore, id: MailboxId) -> crate::store::OutboxMail {
        store
            .reset_pin_queued(
                id,
                &mut rand::rngs::OsRng,
                ResetReason::Requested,
                |_, _| {
                    Ok::<_, std::convert::Infallible>(OutgoingMail {
                        recipient: "alice@example.org".into(),
                        message: b"mail".to_vec(),
                    })
                },
            )
            .unwrap()
    }

    /// One instance at a time has a queued mail: a lease (claimed with `SKIP LOCKED`) keeps
    /// the others off until it is given back by a failure's wait running out.
    #[test]
    fn outbox_leases_keep_other_instances_off() {
        let (db, dir, a) = store();
        let b = PgStore::open(&db.url, dir.path()).unwrap();
        let id = a.add_mailbox(alice()).unwrap();
        let mail = queue_a_mail(&a, id);
        let lease = Duration::from_secs(60);
        assert!(a.outbox_claim(mail.id, lease).unwrap());
        assert!(!b.outbox_claim(mail.id, lease).unwrap(), "A holds it");
        assert!(
            a.outbox_claim(mail.id, lease).unwrap(),
            "A may renew its own"
        );
        a.outbox_record_failure(mail.id, Duration::from_secs(60))
            .unwrap();
        assert!(
            !a.outbox_claim(mail.id, lease).unwrap(),
            "waiting out the backoff"
        );
        assert!(
            !b.outbox_claim(mail.id, lease).unwrap(),
            "waiting out the backoff"
        );
        // The wait (or the lease of an instance that died) runs out: anyone may take it.
        let conn = a.conn().unwrap();
        block(conn.batch_execute("UPDATE outbox SET leased_until = leased_until - 61")).unwrap();
        drop(conn);
        assert!(b.outbox_claim(mail.id, lease).unwrap());
        assert!(!a.outbox_claim(mail.id, lease).unwrap(), "B holds it now");
        assert!(b.outbox_remove(mail.id).unwrap());
        assert!(!a.outbox_claim(mail.id, lease).unwrap(), "gone");
    }

    /// The schema's `umws_alive` sees exactly the liveness locks (`LIVENESS_CLASS`, key).
    #[test]
    fn umws_alive_sees_the_liveness_locks() {
        let (_db, _dir, store) = store();
        let conn = store.conn().unwrap();
        let alive = |key: i32| -> bool {
            block(conn.query_one("SELECT umws_alive($1)", &[&key]))
                .unwrap()
                .get(0)
        };
        let lock = |sql: &str, class: i32, key: i32| {
            block(conn.execute(sql, &[&class, &key])).unwrap();
        };
        assert!(!alive(7));
        lock("SELECT pg_advisory_lock($1, $2)", LIVENESS_CLASS + 1, 7);
        assert!(!alive(7), "another class");
        lock("SELECT pg_advisory_lock($1, $2)", LIVENESS_CLASS, 7);
        assert!(alive(7));
        assert!(!alive(8));
        lock("SELECT pg_advisory_unlock($1, $2)", LIVENESS_CLASS, 7);
        assert!(!alive(7));
        lock("SELECT pg_advisory_unlock($1, $2)", LIVENESS_CLASS + 1, 7);
    }

    /// The lease of an instance that died is taken over as soon as its liveness lock is gone
    /// with its connections, long before the lease runs out; while it lives, it keeps it.
    #[test]
    fn the_lease_of_an_instance_that_died_is_taken_over_at_once() {
        let (db, dir, a) = store();
        let b = PgStore::open(&db.url, dir.path()).unwrap();
        let id = a.add_mailbox(alice()).unwrap();
        let mail = queue_a_mail(&a, id);
        let deadline = Instant::now() + Duration::from_secs(20);
        while a.live_key().is_none() || b.live_key().is_none() {
            assert!(Instant::now() < deadline, "no liveness lock");
            std::thread::sleep(Duration::from_millis(10));
        }
        assert_ne!(a.live_key(), b.live_key());
        let lease = Duration::from_secs(600);
        assert!(a.outbox_claim(mail.id, lease).unwrap());
        std::thread::sleep(Duration::from_millis(200));
        assert!(
            !b.outbox_claim(mail.id, lease).unwrap(),
            "A lives and holds it"
        );
        // A goes, and with it its connections and its liveness lock.
        drop(a);
        let deadline = Instant::now() + Duration::from_secs(20);
        while !b.outbox_claim(mail.id, lease).unwrap() {
            assert!(
                Instant::now() < deadline,
                "the lease of a dead instance was not taken over"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        let c = PgStore::open(&db.url, dir.path()).unwrap();
        while c.live_key().is_none() {
            std::thread::sleep(Duration::from_millis(10));
        }
        assert!(
            !c.outbox_claim(mail.id, lease).unwrap(),
            "B lives and holds it"
        );
        assert!(b.outbox_remove(mail.id).unwrap());
    }
}
