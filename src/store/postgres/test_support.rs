//! A PostgreSQL store for the unit tests: a fresh database on the test server of
//! `tests/common/postgres.rs` (included here; see there for the server and
//! `UMWS_TEST_DATABASE_URL`).

#[path = "../../../tests/common/postgres.rs"]
#[allow(dead_code)]
mod provision;

use std::path::PathBuf;

pub(crate) use provision::TestDatabase;

/// `target/test-env`, found from the test binary (`target/debug/deps/umws-...`).
fn test_env_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("the test binary's path");
    let target = exe
        .ancestors()
        .nth(3)
        .expect("the test binary is in target/<profile>/deps");
    target.join("test-env")
}

/// `apt-get install -y` (through `sudo -n` when not root); otherwise the line to run.
fn install(packages: &[&str], why: &str) -> Result<(), String> {
    let line = format!("apt-get install -y {}", packages.join(" "));
    let root = std::process::Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0");
    let mut command = if root {
        std::process::Command::new("apt-get")
    } else {
        let mut sudo = std::process::Command::new("sudo");
        sudo.args(["-n", "env", "DEBIAN_FRONTEND=noninteractive", "apt-get"]);
        sudo
    };
    let installed = command
        .args(["install", "-y", "-q", "-o", "DPkg::Lock::Timeout=600"])
        .args(packages)
        .env("DEBIAN_FRONTEND", "noninteractive")
        .status()
        .is_ok_and(|s| s.success());
    if installed {
        Ok(())
    } else {
        Err(format!(
            "{why}; install it with `sudo {line}` (or run `cargo test --test postgres`, \
             which does) and try again"
        ))
    }
}

/// A fresh, empty database for one test.
pub(crate) fn database() -> TestDatabase {
    provision::test_database(&test_env_dir(), install)
}

/// A PostgreSQL store in a fresh database, with a fresh data directory (the spool), cheap
/// hashes. The database is dropped with the first element.
pub(crate) fn store() -> (TestDatabase, tempfile::TempDir, super::PgStore) {
    let db = database();
    let dir = tempfile::tempdir().unwrap();
    let store = super::PgStore::open(&db.url, dir.path())
        .unwrap()
        .with_hash_cost(crate::store::HashCost::Test);
    (db, dir, store)
}
