//! Helpers for the SQLite-only unit tests of the store (the rest is in `crate::store::suite`,
//! run on both backends): a store in a temporary directory, and a mailbox.

use super::Store;
use crate::store::{HashCost, NewMailbox};

pub(super) fn store() -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path())
        .unwrap()
        .with_hash_cost(HashCost::Test);
    (dir, store)
}

pub(super) fn alice() -> NewMailbox {
    NewMailbox {
        user: "Alice".into(),
        password: "correct horse".into(),
        um_enabled: true,
        extension: Some("36697".into()),
        email: Some("alice@example.org".into()),
    }
}
