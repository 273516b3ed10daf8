//! The shared part of the failed-HTTP-logon throttle ([`crate::throttle`]) on PostgreSQL: each
//! user name's failure count and window, in the table `http_throttle`, keyed by the
//! throttle's digest of the name, so that a guesser spreading its attempts over several
//! instances gets no more attempts than against one. Times are the database server's clock
//! (milliseconds), the one clock every instance shares. The digest key is the database's own
//! (`http_throttle_key`, drawn at the migration), so every instance computes the same digest.

use std::time::Duration;

use deadpool_postgres::GenericClient;

use super::{begin, commit, exec, row, row_opt, rows, PgStore};
use crate::store::StoreError;

/// The database server's clock, in milliseconds since the epoch.
const NOW_MS: &str = "(extract(epoch FROM clock_timestamp()) * 1000)::bigint";

/// What a counted failure left in the shared table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SharedFailures {
    /// The failures counted (since the counter was last forgotten or cleared).
    pub failures: u32,
    /// How long the window they opened lasts from now (zero: none).
    pub window: Duration,
}

fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

fn duration(ms: i64) -> Duration {
    Duration::from_millis(u64::try_from(ms).unwrap_or(0))
}

/// [`PgStore::throttle_client`] on `c`.
fn client_count(c: &impl GenericClient, client: &[u8]) -> Result<(u32, Duration), StoreError> {
    let r = row(
        c,
        &format!(
            "SELECT count(*), {NOW_MS} - coalesce(max(at_ms), 0) FROM http_throttle_clients
             WHERE client = $1"
        ),
        &[&client],
    )?;
    let (n, age): (i64, i64) = (r.try_get(0)?, r.try_get(1)?);
    Ok((u32::try_from(n).unwrap_or(u32::MAX), duration(age)))
}

fn key16(bytes: &[u8]) -> Option<[u8; 16]> {
    bytes.try_into().ok()
}

impl PgStore {
    /// The key of the throttle's user name digests, the same for every instance on this
    /// database.
    pub fn throttle_key(&self) -> [u8; 32] {
        self.shared.throttle_key
    }

    /// How long the window of `user` (a throttle digest) stays open, if it is open.
    pub fn throttle_window(&self, user: &[u8; 16]) -> Result<Option<Duration>, StoreError> {
        let conn = self.conn()?;
        let found = row_opt(
            &conn,
            &format!("SELECT until_ms - {NOW_MS} FROM http_throttle WHERE key = $1"),
            &[&user.as_slice()],
        )?;
        Ok(match found {
            Some(r) => {
                let left: i64 = r.try_get(0)?;
                (left > 0).then(|| duration(left))
            }
            None => None,
        })
    }

    /// Counts one failure of `user`: its count starts afresh when the last failure is
    /// `forget_after` old or older; `window(n)` is the window after `n` failures. Serialised
    /// per user name by a row lock, whichever instance counts.
    pub fn throttle_count_failure(
        &self,
        user: &[u8; 16],
        forget_after: Duration,
        window: impl Fn(u32) -> Duration,
    ) -> Result<SharedFailures, StoreError> {
        let mut conn = self.conn()?;
        let tx = begin(&mut conn)?;
        exec(
            &tx,
            "INSERT INTO http_throttle (key, failures, last_ms, until_ms) VALUES ($1, 0, 0, 0)
             ON CONFLICT (key) DO NOTHING",
            &[&user.as_slice()],
        )?;
        let r = row(
            &tx,
            &format!(
                "SELECT failures, last_ms, {NOW_MS} FROM http_throttle WHERE key = $1 FOR UPDATE"
            ),
            &[&user.as_slice()],
        )?;
        let (failures, last, now): (i64, i64, i64) = (r.try_get(0)?, r.try_get(1)?, r.try_get(2)?);
        let failures = if now.saturating_sub(last) >= millis(forget_after) {
            1
        } else {
            u32::try_from(failures)
                .unwrap_or(u32::MAX)
                .saturating_add(1)
        };
        let open = window(failures);
        exec(
            &tx,
            "UPDATE http_throttle SET failures = $2, last_ms = $3, until_ms = $4 WHERE key = $1",
            &[
                &user.as_slice(),
                &i64::from(failures),
                &now,
                &now.saturating_add(millis(open)),
            ],
        )?;
        commit(tx)?;
        Ok(SharedFailures {
            failures,
            window: open,
        })
    }

    /// Forgets the failures of `user` (its password was right).
    pub fn throttle_clear(&self, user: &[u8; 16]) -> Result<(), StoreError> {
        let conn = self.conn()?;
        exec(
            &conn,
            "DELETE FROM http_throttle WHERE key = $1",
            &[&user.as_slice()],
        )?;
        Ok(())
    }

    /// The windows open now: (user digest, failures, time left).
    pub fn throttle_open_windows(&self) -> Result<Vec<([u8; 16], u32, Duration)>, StoreError> {
        let conn = self.conn()?;
        let found = rows(
            &conn,
            &format!(
                "SELECT key, failures, until_ms - {NOW_MS} FROM http_throttle
                 WHERE until_ms > {NOW_MS}"
            ),
            &[],
        )?;
        let mut open = Vec::with_capacity(found.len());
        for r in found {
            let key: Vec<u8> = r.try_get(0)?;
            let failures: i64 = r.try_get(1)?;
            let left: i64 = r.try_get(2)?;
            if let Some(key) = key16(&key) {
                open.push((
                    key,
                    u32::try_from(failures).unwrap_or(u32::MAX),
                    duration(left),
                ));
            }
        }
        Ok(open)
    }

    /// Drops the counters whose last failure is `forget_after` old or older.
    pub fn throttle_sweep(&self, forget_after: Duration) -> Result<u64, StoreError> {
        let conn = self.conn()?;
        let users = exec(
            &conn,
            &format!(
                "DELETE FROM http_throttle WHERE last_ms <= {NOW_MS} - $1 AND until_ms <= {NOW_MS}"
            ),
            &[&millis(forget_after)],
        )?;
        let clients = exec(
            &conn,
            &format!(
                "DELETE FROM http_throttle_clients c WHERE (SELECT max(at_ms)
                    FROM http_throttle_clients d WHERE d.client = c.client) <= {NOW_MS} - $1"
            ),
            &[&millis(forget_after)],
        )?;
        Ok(users + clients)
    }

    /// The distinct user names that failed from `client` (an address, as the throttle
    /// spells it) and how long ago the last of them failed; `(0, _)` when none.
    pub fn throttle_client(&self, client: &[u8]) -> Result<(u32, Duration), StoreError> {
        let conn = self.conn()?;
        client_count(&conn, client)
    }

    /// Counts a failure of `user` from `client`: each user name once, all of them forgotten
    /// when the last is `forget_after` old or older. The count afterwards.
    pub fn throttle_count_client_failure(
        &self,
        client: &[u8],
        user: &[u8; 16],
        forget_after: Duration,
    ) -> Result<u32, StoreError> {
        let conn = self.conn()?;
        exec(
            &conn,
            &format!(
                "DELETE FROM http_throttle_clients WHERE client = $1 AND (SELECT max(at_ms)
                    FROM http_throttle_clients WHERE client = $1) <= {NOW_MS} - $2"
            ),
            &[&client, &millis(forget_after)],
        )?;
        exec(
            &conn,
            &format!(
                "INSERT INTO http_throttle_clients (client, name, at_ms) VALUES ($1, $2, {NOW_MS})
                 ON CONFLICT (client, name) DO UPDATE SET at_ms = EXCLUDED.at_ms"
            ),
            &[&client, &user.as_slice()],
        )?;
        Ok(client_count(&conn, client)?.0)
    }

    /// A success of `user` from `client`: that name no longer counts, and the client's count
    /// is halved (the newest names stay).
    pub fn throttle_client_success(
        &self,
        client: &[u8],
        user: &[u8; 16],
    ) -> Result<(), StoreError> {
        let conn = self.conn()?;
        exec(
            &conn,
            "DELETE FROM http_throttle_clients WHERE client = $1 AND name = $2",
            &[&client, &user.as_slice()],
        )?;
        exec(
            &conn,
            "DELETE FROM http_throttle_clients WHERE client = $1 AND name NOT IN (
                SELECT name FROM http_throttle_clients WHERE client = $1
                ORDER BY at_ms DESC
                LIMIT (SELECT count(*) / 2 FROM http_throttle_clients WHERE client = $1))",
            &[&client],
        )?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_support::store;
    use super::*;

    fn window(n: u32) -> Duration {
        Duration::from_secs(u64::from(n) * 100)
    }

    /// Two handles stand for two instances: failures counted by either add up, in one count
    /// and one window, which both read; a success clears it for both; the key is the
    /// database's.
    #[test]
    fn failures_count_across_instances() {
        let (db, dir, a) = store();
        let b = PgStore::open(&db.url, dir.path()).unwrap();
        assert_eq!(a.throttle_key(), b.throttle_key());
        let user = [7u8; 16];
        let other = [8u8; 16];
        let forget = Duration::from_secs(600);
        assert_eq!(a.throttle_window(&user).unwrap(), None);
        assert_eq!(
            a.throttle_count_failure(&user, forget, window)
                .unwrap()
                .failures,
            1
        );
        let second = b.throttle_count_failure(&user, forget, window).unwrap();
        assert_eq!(second.failures, 2);
        assert_eq!(second.window, Duration::from_secs(200));
        let left = a.throttle_window(&user).unwrap().unwrap();
        assert!(left > Duration::from_secs(190) && left <= Duration::from_secs(200));
        assert_eq!(b.throttle_window(&other).unwrap(), None);
        let open = b.throttle_open_windows().unwrap();
        assert_eq!(open.len(), 1);
        assert_eq!((open[0].0, open[0].1), (user, 2));
        // Forgotten after `forget` without a failure: the count starts again.
        let again = a
            .throttle_count_failure(&user, Duration::ZERO, window)
            .unwrap();
        assert_eq!(again.failures, 1);
        b.throttle_clear(&user).unwrap();
        assert_eq!(a.throttle_window(&user).unwrap(), None);
        assert!(a.throttle_open_windows().unwrap().is_empty());
        // The sweep drops closed, forgotten counters only.
        a.throttle_count_failure(&other, forget, |_| Duration::ZERO)
            .unwrap();
        assert_eq!(a.throttle_sweep(forget).unwrap(), 0);
        assert_eq!(a.throttle_sweep(Duration::ZERO).unwrap(), 1);
    }

    /// A client's distinct failed names add up across instances, each name once; a success
    /// drops its name and halves the rest; a quiet client is forgotten.
    #[test]
    fn a_clients_names_count_across_instances() {
        let (db, dir, a) = store();
        let b = PgStore::open(&db.url, dir.path()).unwrap();
        let client = [4u8, 10, 0, 0, 1];
        let forget = Duration::from_secs(600);
        assert_eq!(a.throttle_client(&client).unwrap().0, 0);
        for (i, store) in [&a, &b, &a, &b].into_iter().enumerate() {
            store
                .throttle_count_client_failure(&client, &[i as u8; 16], forget)
                .unwrap();
        }
        // The same name again counts once.
        let n = b
            .throttle_count_client_failure(&client, &[0u8; 16], forget)
            .unwrap();
        assert_eq!(n, 4);
        let (n, age) = a.throttle_client(&client).unwrap();
        assert_eq!(n, 4);
        assert!(age < Duration::from_secs(60));
        assert_eq!(b.throttle_client(&[4u8, 10, 0, 0, 2]).unwrap().0, 0);
        a.throttle_client_success(&client, &[3u8; 16]).unwrap();
        assert_eq!(b.throttle_client(&client).unwrap().0, 1, "(4 - 1) / 2");
        // Quiet for `forget_after`: the count starts again.
        let n = a
            .throttle_count_client_failure(&client, &[9u8; 16], Duration::ZERO)
            .unwrap();
        assert_eq!(n, 1);
        assert_eq!(a.throttle_sweep(Duration::ZERO).unwrap(), 1);
        assert_eq!(a.throttle_client(&client).unwrap().0, 0);
    }
}
