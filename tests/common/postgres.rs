//! A real PostgreSQL server for the tests of the PostgreSQL store, each test in a database of its
//! own ([`TestDatabase`]).
//!
//! With `UMWS_TEST_DATABASE_URL` set (a role that may `CREATE DATABASE`), the databases are made
//! on that server. Otherwise the tests run a private cluster of the PostgreSQL installed on this
//! machine (Debian's `postgresql`, installed when missing through the caller's installer, see
//! [`cluster_url`]): made once with `initdb` in `target/test-env/postgres/data`, listening on
//! 127.0.0.1 only, on a free port, its unix socket in its own directory, password (SCRAM)
//! authentication with a random password kept in `target/test-env/postgres/password` (`0600`).
//! Tests running as root run `initdb` and the server as `nobody` (PostgreSQL refuses root),
//! which then owns the cluster's directory.
//!
//! The cluster is shared by all test binaries and left running after them: the test harness has
//! no hook that runs when the last test of the last binary ends, and starting a cluster costs a
//! second or two per binary. The next run finds it by its port file (`port`) and `pg_ctl
//! status`, or starts it again on a new free port. Test binaries provision it one at a time
//! under an exclusive lock on `target/test-env/postgres.lock`. Each test's database is dropped
//! when its [`TestDatabase`] is (left behind when a test panics; the cluster can be removed with
//! `pg_ctl -D target/test-env/postgres/data stop` and `rm -r target/test-env/postgres`).
//!
//! This file is also the lib's unit tests' provisioning (`src/store/postgres/test_support.rs`
//! includes it), so it names nothing of `tests/common` but what the caller hands in.

use std::fs;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;

/// The role of the private cluster.
const ROLE: &str = "umws";

/// Installs Debian packages (`packages`, needed for `why`), or says why it cannot.
pub type Installer = fn(packages: &[&str], why: &str) -> Result<(), String>;

/// A database of its own for one test; dropped (with its connections) on drop.
pub struct TestDatabase {
    /// `postgres://...` of the database, password included.
    pub url: String,
    name: String,
    admin: String,
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        let _ = run_sql(
            &self.admin,
            &format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name),
        );
    }
}

/// A fresh, empty database on the test server (see the module docs); panics with what to do
/// when there is none.
pub fn test_database(env_dir: &Path, install: Installer) -> TestDatabase {
    static ADMIN: OnceLock<Result<String, String>> = OnceLock::new();
    let admin = match ADMIN.get_or_init(|| match std::env::var("UMWS_TEST_DATABASE_URL") {
        Ok(url) if !url.is_empty() => Ok(url),
        _ => cluster_url(env_dir, install),
    }) {
        Ok(url) => url.clone(),
        Err(e) => panic!("no PostgreSQL server for the tests: {e}"),
    };
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    let name = format!(
        "umws_test_{}_{}_{nanos}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    );
    if let Err(e) = run_sql(&admin, &format!("CREATE DATABASE {name}")) {
        panic!("cannot create the test database {name}: {e}");
    }
    TestDatabase {
        url: with_database(&admin, &name),
        name,
        admin,
    }
}

/// `url` naming database `name` instead of its own.
fn with_database(url: &str, name: &str) -> String {
    let scheme_end = url.find("://").map_or(0, |i| i + 3);
    let (head, rest) = url.split_at(scheme_end);
    let (authority, tail) = match rest.find(['/', '?']) {
        Some(i) => rest.split_at(i),
        None => (rest, ""),
    };
    let query = tail.find('?').map_or("", |i| &tail[i..]);
    format!("{head}{authority}/{name}{query}")
}

/// Runs `f` with a client of the server at `url` (on a thread of its own, with a runtime of
/// its own, so that it works inside and outside a tokio runtime).
fn with_client<T: Send + 'static>(
    url: &str,
    f: impl FnOnce(
            tokio_postgres::Client,
        ) -> futures_util::future::BoxFuture<'static, Result<T, String>>
        + Send
        + 'static,
) -> Result<T, String> {
    let url = url.to_owned();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| e.to_string())?;
        rt.block_on(async {
            let (client, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
                .await
                .map_err(|e| format!("cannot connect: {e}"))?;
            let driver = tokio::spawn(connection);
            let done = f(client).await;
            let _ = driver.await;
            done
        })
    })
    .join()
    .map_err(|_| "the SQL thread panicked".to_string())?
}

/// Runs `sql` on the server at `url`.
pub fn run_sql(url: &str, sql: &str) -> Result<(), String> {
    let sql = sql.to_owned();
    with_client(url, move |client| {
        Box::pin(async move {
            client
                .batch_execute(&sql)
                .await
                .map_err(|e| format!("{sql}: {e}"))
        })
    })
}

/// The rows of `sql` on the server at `url`, every value as text (`NULL` for null), for
/// reports of what a test found.
pub fn query_text(url: &str, sql: &str) -> Result<Vec<Vec<String>>, String> {
    let sql = sql.to_owned();
    with_client(url, move |client| {
        Box::pin(async move {
            let messages = client
                .simple_query(&sql)
                .await
                .map_err(|e| format!("{sql}: {e}"))?;
            Ok(messages
                .into_iter()
                .filter_map(|m| match m {
                    tokio_postgres::SimpleQueryMessage::Row(r) => Some(
                        (0..r.len())
                            .map(|i| r.get(i).unwrap_or("NULL").to_owned())
                            .collect(),
                    ),
                    _ => None,
                })
                .collect())
        })
    })
}

/// The directory of PostgreSQL's programs (`initdb`, `pg_ctl`), the newest installed.
fn bin_dir() -> Option<PathBuf> {
    let mut found: Vec<(u32, PathBuf)> = fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(|e| {
            let e = e.ok()?;
            let version = e.file_name().to_str()?.parse::<u32>().ok()?;
            let bin = e.path().join("bin");
            bin.join("initdb").is_file().then_some((version, bin))
        })
        .collect();
    found.sort();
    found.pop().map(|(_, bin)| bin)
}

/// Whether this process runs as root.
fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| o.status.success() && String::from_utf8_lossy(&o.stdout).trim() == "0")
}

/// The unprivileged user that runs the cluster when the tests run as root.
const RUN_AS: (&str, &str) = ("nobody", "nogroup");

/// `program` of `bin`, run as [`RUN_AS`] when `as_other`.
fn pg_command(bin: &Path, program: &str, as_other: bool) -> Command {
    if as_other {
        let mut c = Command::new("setpriv");
        c.arg(format!("--reuid={}", RUN_AS.0))
            .arg(format!("--regid={}", RUN_AS.1))
            .args(["--clear-groups", "--"])
            .arg(bin.join(program));
        c
    } else {
        Command::new(bin.join(program))
    }
}

fn run(command: &mut Command, what: &str) -> Result<String, String> {
    let out = command
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("`{what}` could not be started: {e}"))?;
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    if out.status.success() {
        Ok(text)
    } else {
        Err(format!("`{what}` failed ({}):\n{text}", out.status))
    }
}

/// The uid and gid of [`RUN_AS`].
fn run_as_ids() -> Result<(u32, u32), String> {
    let id = |flag: &str| -> Result<u32, String> {
        let out = run(Command::new("id").args([flag, RUN_AS.0]), "id")?;
        out.trim()
            .parse()
            .map_err(|_| format!("`id {flag} {}` said {out:?}", RUN_AS.0))
    };
    Ok((id("-u")?, id("-g")?))
}

/// Makes `path` (and everything in it) belong to [`RUN_AS`].
fn chown_tree(path: &Path, ids: (u32, u32)) -> Result<(), String> {
    std::os::unix::fs::chown(path, Some(ids.0), Some(ids.1))
        .map_err(|e| format!("cannot chown {}: {e}", path.display()))?;
    if path.is_dir() {
        for entry in fs::read_dir(path).map_err(|e| e.to_string())? {
            chown_tree(&entry.map_err(|e| e.to_string())?.path(), ids)?;
        }
    }
    Ok(())
}

/// The URL of the private cluster's `postgres` database, the cluster made and started when
/// needed (see the module docs).
pub fn cluster_url(env_dir: &Path, install: Installer) -> Result<String, String> {
    fs::create_dir_all(env_dir).map_err(|e| format!("cannot create {}: {e}", env_dir.display()))?;
    let lock_path = env_dir.join("postgres.lock");
    let file = fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .map_err(|e| format!("cannot open {}: {e}", lock_path.display()))?;
    let mut lock = fd_lock::RwLock::new(file);
    let _held = lock
        .write()
        .map_err(|e| format!("cannot lock {}: {e}", lock_path.display()))?;

    let bin = match bin_dir() {
        Some(bin) => bin,
        None => {
            install(
                &["postgresql"],
                "the PostgreSQL store's tests need a PostgreSQL server (or UMWS_TEST_DATABASE_URL)",
            )?;
            bin_dir()
                .ok_or("postgresql is installed but /usr/lib/postgresql/*/bin/initdb is not")?
        }
    };
    let as_other = is_root();
    let dir = env_dir.join("postgres");
    let data = dir.join("data");
    let password_file = dir.join("password");
    let port_file = dir.join("port");
    if !data.join("PG_VERSION").is_file() {
        // A first run, or one that died half-way: start afresh.
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        let password: String = {
            use std::fmt::Write as _;
            let mut bytes = [0u8; 16];
            fs::File::open("/dev/urandom")
                .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut bytes))
                .map_err(|e| format!("cannot read /dev/urandom: {e}"))?;
            bytes.iter().fold(String::new(), |mut s, b| {
                let _ = write!(s, "{b:02x}");
                s
            })
        };
        write_private(&password_file, &password)?;
        if as_other {
            chown_tree(&dir, run_as_ids()?)?;
        }
        run(
            pg_command(&bin, "initdb", as_other)
                .arg("-D")
                .arg(&data)
                .args([
                    "-U",
                    ROLE,
                    "--auth=scram-sha-256",
                    "-E",
                    "UTF8",
                    "--no-sync",
                ])
                .arg(format!("--pwfile={}", password_file.display())),
            "initdb",
        )?;
    }
    let password = fs::read_to_string(&password_file)
        .map_err(|e| format!("cannot read {}: {e}", password_file.display()))?;
    let url = |port: u16| {
        format!(
            "postgres://{ROLE}:{}@127.0.0.1:{port}/postgres",
            password.trim()
        )
    };

    let running = pg_command(&bin, "pg_ctl", as_other)
        .arg("status")
        .arg("-D")
        .arg(&data)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if running {
        if let Some(port) = fs::read_to_string(&port_file)
            .ok()
            .and_then(|p| p.trim().parse::<u16>().ok())
        {
            if run_sql(&url(port), "SELECT 1").is_ok() {
                return Ok(url(port));
            }
        }
        // Running but not answering where we expect: stop it and start it again.
        let _ = run(
            pg_command(&bin, "pg_ctl", as_other)
                .arg("stop")
                .arg("-D")
                .arg(&data)
                .args(["-m", "fast", "-w"]),
            "pg_ctl stop",
        );
    }
    let mut last_error = String::new();
    for _ in 0..5 {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map_err(|e| format!("no free port: {e}"))?
            .port();
        let options = format!(
            "-c listen_addresses=127.0.0.1 -p {port} -k {} -c max_connections=400 \
             -c fsync=off -c synchronous_commit=off -c full_page_writes=off \
             -c shared_buffers=32MB",
            data.display()
        );
        let started = run(
            pg_command(&bin, "pg_ctl", as_other)
                .arg("start")
                .arg("-D")
                .arg(&data)
                .arg("-l")
                .arg(data.join("server.log"))
                .args(["-w", "-t", "60", "-o", &options]),
            "pg_ctl start",
        );
        match started {
            Ok(_) => {
                fs::write(&port_file, port.to_string())
                    .map_err(|e| format!("cannot write {}: {e}", port_file.display()))?;
                run_sql(&url(port), "SELECT 1")?;
                return Ok(url(port));
            }
            Err(e) => {
                let log = fs::read_to_string(data.join("server.log")).unwrap_or_default();
                let tail: Vec<&str> = log.lines().rev().take(10).collect();
                last_error = format!("{e}\nserver log (newest first):\n{}", tail.join("\n"));
            }
        }
    }
    Err(last_error)
}

fn write_private(path: &Path, text: &str) -> Result<(), String> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .and_then(|mut f| f.write_all(text.as_bytes()))
        .map_err(|e| format!("cannot write {}: {e}", path.display()))
}

/// A throwaway PostgreSQL cluster of one test's own, for a test that stops and starts the
/// server (the shared cluster of [`test_database`] must stay up for the other tests): made
/// with `initdb` in a temporary directory, listening on 127.0.0.1 on a free port, password
/// authentication as for the shared one. Stopped (`-m immediate`) and removed on drop.
pub struct PrivateCluster {
    /// `postgres://...` of its `postgres` database, password included.
    pub url: String,
    port: u16,
    bin: PathBuf,
    as_other: bool,
    data: PathBuf,
    /// Whether the server has TLS and refuses TCP connections without it ([`Self::start_tls`]).
    tls: bool,
    // Removed last (after the server is stopped).
    _dir: tempfile::TempDir,
}

impl PrivateCluster {
    /// Makes and starts a cluster (installing PostgreSQL through `install` when missing).
    pub fn start(install: Installer) -> Result<PrivateCluster, String> {
        PrivateCluster::make(install, None)
    }

    /// [`start`](Self::start) with TLS: the server certificate chain `cert` and its key
    /// `key` (PEM), and TCP connections accepted only over TLS (`hostssl` alone in
    /// `pg_hba.conf`; the unix socket still takes plain ones).
    pub fn start_tls(install: Installer, cert: &str, key: &str) -> Result<PrivateCluster, String> {
        PrivateCluster::make(install, Some((cert, key)))
    }

    fn make(install: Installer, tls: Option<(&str, &str)>) -> Result<PrivateCluster, String> {
        let bin = match bin_dir() {
            Some(bin) => bin,
            None => {
                install(&["postgresql"], "a test needs a PostgreSQL server")?;
                bin_dir().ok_or("postgresql is installed but initdb is not")?
            }
        };
        let as_other = is_root();
        let dir = tempfile::tempdir().map_err(|e| format!("no temporary directory: {e}"))?;
        let data = dir.path().join("data");
        let password_file = dir.path().join("password");
        let password = format!(
            "{:016x}{:016x}",
            rand_u64(),
            rand_u64() ^ u64::from(std::process::id())
        );
        write_private(&password_file, &password)?;
        if as_other {
            chown_tree(dir.path(), run_as_ids()?)?;
        }
        run(
            pg_command(&bin, "initdb", as_other)
                .arg("-D")
                .arg(&data)
                .args([
                    "-U",
                    ROLE,
                    "--auth=scram-sha-256",
                    "-E",
                    "UTF8",
                    "--no-sync",
                ])
                .arg(format!("--pwfile={}", password_file.display())),
            "initdb",
        )?;
        if let Some((cert, key)) = tls {
            // Beside the data directory, owned by the server's user and private (PostgreSQL
            // refuses a key that others may read).
            write_private(&dir.path().join("server.crt"), cert)?;
            write_private(&dir.path().join("server.key"), key)?;
            fs::write(
                data.join("pg_hba.conf"),
                "local all all scram-sha-256\nhostssl all all 127.0.0.1/32 scram-sha-256\n",
            )
            .map_err(|e| format!("cannot write pg_hba.conf: {e}"))?;
            if as_other {
                chown_tree(dir.path(), run_as_ids()?)?;
            }
        }
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map_err(|e| format!("no free port: {e}"))?
            .port();
        let cluster = PrivateCluster {
            url: format!("postgres://{ROLE}:{password}@127.0.0.1:{port}/postgres"),
            port,
            bin,
            as_other,
            data,
            tls: tls.is_some(),
            _dir: dir,
        };
        cluster.start_server()?;
        Ok(cluster)
    }

    /// Starts the server again (on the same port), waiting until it accepts connections.
    pub fn start_server(&self) -> Result<(), String> {
        let mut options = format!(
            "-c listen_addresses=127.0.0.1 -p {} -k {} -c max_connections=200 \
             -c fsync=off -c synchronous_commit=off -c full_page_writes=off \
             -c shared_buffers=16MB",
            self.port,
            self.data.display()
        );
        if self.tls {
            let dir = self.data.parent().unwrap_or(&self.data);
            options.push_str(&format!(
                " -c ssl=on -c ssl_cert_file={} -c ssl_key_file={}",
                dir.join("server.crt").display(),
                dir.join("server.key").display()
            ));
        }
        run(
            pg_command(&self.bin, "pg_ctl", self.as_other)
                .arg("start")
                .arg("-D")
                .arg(&self.data)
                .arg("-l")
                .arg(self.data.join("server.log"))
                .args(["-w", "-t", "60", "-o", &options]),
            "pg_ctl start",
        )?;
        if self.tls {
            // A plain connection is refused; `pg_ctl -w` waited for the server to be ready.
            return Ok(());
        }
        run_sql(&self.url, "SELECT 1")
    }

    /// Stops the server the way an administrator does (`pg_ctl stop -m fast`: sessions are
    /// ended, transactions in flight rolled back), waiting until it is down.
    pub fn stop_server(&self) -> Result<(), String> {
        run(
            pg_command(&self.bin, "pg_ctl", self.as_other)
                .arg("stop")
                .arg("-D")
                .arg(&self.data)
                .args(["-m", "fast", "-w", "-t", "60"]),
            "pg_ctl stop",
        )
        .map(drop)
    }
}

impl PrivateCluster {
    /// Sends `signal` (`STOP`, `CONT`) to the server and all its processes: `STOP` freezes
    /// it as a hung machine would (connections stay open, nothing answers).
    pub fn signal_all(&self, signal: &str) -> Result<(), String> {
        let pid_file = self.data.join("postmaster.pid");
        let text = fs::read_to_string(&pid_file)
            .map_err(|e| format!("cannot read {}: {e}", pid_file.display()))?;
        let postmaster = text.lines().next().unwrap_or("").trim().to_owned();
        let mut pids = vec![postmaster.clone()];
        for entry in fs::read_dir("/proc").map_err(|e| e.to_string())?.flatten() {
            let stat = fs::read_to_string(entry.path().join("stat")).unwrap_or_default();
            // The parent pid is the second field after the command name in parentheses.
            let ppid = stat
                .rfind(')')
                .and_then(|i| stat[i + 1..].split_whitespace().nth(1));
            if ppid == Some(postmaster.as_str()) {
                pids.push(entry.file_name().to_string_lossy().into_owned());
            }
        }
        run(
            Command::new("kill").arg(format!("-{signal}")).args(&pids),
            "kill",
        )
        .map(drop)
    }
}

impl Drop for PrivateCluster {
    fn drop(&mut self) {
        // A frozen server cannot stop.
        let _ = self.signal_all("CONT");
        let _ = run(
            pg_command(&self.bin, "pg_ctl", self.as_other)
                .arg("stop")
                .arg("-D")
                .arg(&self.data)
                .args(["-m", "immediate", "-w"]),
            "pg_ctl stop",
        );
    }
}

/// 64 random bits from `/dev/urandom` (0 when it cannot be read; the password is then
/// still unique enough for a throwaway cluster on 127.0.0.1).
fn rand_u64() -> u64 {
    let mut bytes = [0u8; 8];
    let _ = fs::File::open("/dev/urandom")
        .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut bytes));
    u64::from_ne_bytes(bytes)
}

/// A liveness lock of a umws instance (the session advisory lock its change listener holds).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LivenessLock {
    /// The server process of the session that holds it.
    pub pid: u32,
    /// Its key (what `outbox.leased_key` and `calls.owner_key` name).
    pub key: i64,
}

/// The liveness locks held in the database of `url`.
pub fn liveness_locks(url: &str) -> Vec<LivenessLock> {
    // (class 0x6c697665, "live"; a two-key advisory lock has objsubid 2)
    let rows = query_text(
        url,
        "SELECT pid, objid FROM pg_locks WHERE locktype = 'advisory' AND granted \
         AND classid = 1818850917 AND objsubid = 2 \
         AND database = (SELECT oid FROM pg_database WHERE datname = current_database()) \
         ORDER BY pid",
    )
    .expect("pg_locks");
    rows.iter()
        .map(|r| LivenessLock {
            pid: r[0].parse().expect("a pid"),
            key: r[1].parse().expect("a key"),
        })
        .collect()
}

/// A server process stopped with SIGSTOP (as one behind a network partition: its connection
/// stays open and nothing answers), continued when this is dropped.
pub struct Stopped(u32);

impl Stopped {
    pub fn new(pid: u32) -> Stopped {
        let ok = Command::new("kill")
            .args(["-STOP", &pid.to_string()])
            .status()
            .is_ok_and(|s| s.success());
        assert!(ok, "kill -STOP {pid}");
        Stopped(pid)
    }
}

impl Drop for Stopped {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-CONT", &self.0.to_string()])
            .status();
    }
}
