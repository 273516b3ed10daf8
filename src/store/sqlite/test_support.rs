//! Helpers for the unit tests of the store: a store in a temporary directory, a mailbox, a
//! seeded random generator, and a reset that queues its mail.

use rand::rngs::StdRng;
use rand::SeedableRng;

use super::Store;
use crate::store::{HashCost, MailboxId, NewMailbox, OutboxMail, OutgoingMail, ResetReason};

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

/// Adds `n` mailboxes like [`alice`], named `user0`, `user1`, ...
pub(super) fn users(store: &Store, n: usize) -> Vec<MailboxId> {
    (0..n)
        .map(|i| {
            let mut new = alice();
            new.user = format!("user{i}");
            store.add_mailbox(new).unwrap()
        })
        .collect()
}

pub(super) fn rng() -> StdRng {
    StdRng::seed_from_u64(99)
}

pub(super) fn history_len(store: &Store, id: MailboxId) -> i64 {
    store
        .conn()
        .unwrap()
        .query_row(
            "SELECT COUNT(*) FROM pin_history WHERE mailbox_id = ?1",
            [id.0],
            |r| r.get(0),
        )
        .unwrap()
}

#[derive(Debug, thiserror::Error)]
#[error("mail down")]
pub(super) struct MailDown;

pub(super) fn queue(store: &Store, id: MailboxId, reason: ResetReason) -> (OutboxMail, String) {
    let mut pin = String::new();
    let mail = store
        .reset_pin_queued(id, &mut rand::rngs::OsRng, reason, |o, _| {
            pin.clone_from(&o.pin);
            Ok::<_, MailDown>(OutgoingMail {
                recipient: "alice@example.org".into(),
                message: b"mail".to_vec(),
            })
        })
        .unwrap();
    (mail, pin)
}
