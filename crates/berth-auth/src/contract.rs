//! The contract every [`IdentityStore`] keeps, written once and run against each
//! implementation (`tests/contract.rs`: SQLite today; PostgreSQL in the scale-out issue runs
//! the same suite with one more test).
//!
//! What it holds an implementation to:
//! - writes are applied in one transaction, only if the change log's head is the one the
//!   writer read, and a stale writer changes nothing;
//! - every write enters the change log, and `changes_since` brings a copy as of any head up
//!   to the store (values now, or deletions), with the head it reaches;
//! - of concurrent writers on one head, exactly one wins;
//! - `load` is consistent with its head;
//! - status reports and problems are kept per registry, problems current until resolved, the
//!   last past ones kept.

use std::sync::Arc;

use crate::SigningKey;
use crate::connected::{InstanceStatus, PAST_DETAILS_KEPT};
use crate::keys::{KeyPurpose, StoredKey};
use crate::scope_map::{RepositoryRule, ScopeMap};
use crate::store::{AdminRecord, Applied, IdentityStore, Write};
use crate::token::{Token, TokenStatus};

/// Runs every [`IdentityStore`] case, each on a fresh store from `make`.
pub async fn identity_store_contract(make: impl AsyncFn() -> Arc<dyn IdentityStore>) {
    writes_apply_only_on_the_head_they_were_decided_on(make().await).await;
    changes_since_brings_a_copy_up_to_date(make().await).await;
    one_of_concurrent_writers_wins(make().await).await;
    statuses_and_problems_per_registry(make().await).await;
    the_admin_is_kept_apart(make().await).await;
}

fn token(name: &str) -> Token {
    Token {
        name: name.into(),
        scope_map: "_repositories_pull".into(),
        status: TokenStatus::Enabled,
        password1: None,
        password2: None,
        created_at: 1,
    }
}

fn map(name: &str) -> ScopeMap {
    let mut map = ScopeMap::new(
        name,
        "",
        &[RepositoryRule {
            repository: "app".into(),
            actions: vec!["content/read".into()],
        }],
        &[],
    )
    .unwrap();
    map.created_at = 1;
    map
}

fn applied(result: Applied) -> i64 {
    match result {
        Applied::At(head) => head,
        Applied::Stale => panic!("the write was refused as stale"),
    }
}

async fn writes_apply_only_on_the_head_they_were_decided_on(store: Arc<dyn IdentityStore>) {
    let case = "writes_apply_only_on_the_head_they_were_decided_on";
    let start = store.load().await.unwrap().head;
    let head = applied(
        store
            .apply(
                start,
                &[
                    Write::PutScopeMap(map("app-pull")),
                    Write::PutToken(token("robot")),
                ],
            )
            .await
            .unwrap(),
    );
    assert!(head > start, "{case}: the head moves");
    // Decided on the old head: refused, and nothing of it is written.
    let stale = store
        .apply(start, &[Write::PutToken(token("intruder"))])
        .await
        .unwrap();
    assert_eq!(stale, Applied::Stale, "{case}");
    let loaded = store.load().await.unwrap();
    assert_eq!(loaded.head, head, "{case}: load is as of the head");
    assert!(loaded.tokens.iter().any(|t| t.name == "robot"), "{case}");
    assert!(
        !loaded.tokens.iter().any(|t| t.name == "intruder"),
        "{case}"
    );
    assert!(
        loaded.scope_maps.iter().any(|m| m.name == "app-pull"),
        "{case}"
    );
    // On the current head, it goes through.
    applied(
        store
            .apply(head, &[Write::DeleteToken("robot".into())])
            .await
            .unwrap(),
    );
    assert!(store.load().await.unwrap().tokens.is_empty(), "{case}");
}

async fn changes_since_brings_a_copy_up_to_date(store: Arc<dyn IdentityStore>) {
    let case = "changes_since_brings_a_copy_up_to_date";
    let start = store.load().await.unwrap().head;
    let key = StoredKey::new(KeyPurpose::Tokens, &SigningKey::generate(), 1);
    let mut head = applied(
        store
            .apply(
                start,
                &[
                    Write::PutToken(token("first")),
                    Write::PutToken(token("second")),
                    Write::PutSetting("anonymous_pull_enabled".into(), true.into()),
                    Write::PutKey(key.clone()),
                ],
            )
            .await
            .unwrap(),
    );
    let mut changed = token("second");
    changed.status = TokenStatus::Disabled;
    head = applied(
        store
            .apply(
                head,
                &[
                    Write::DeleteToken("first".into()),
                    Write::PutToken(changed.clone()),
                ],
            )
            .await
            .unwrap(),
    );
    let (reached, writes) = store.changes_since(start).await.unwrap();
    assert_eq!(reached, head, "{case}");
    // One write per object changed, its value now.
    let has = |w: &Write| writes.iter().any(|x| format!("{x:?}") == format!("{w:?}"));
    assert!(
        has(&Write::DeleteToken("first".into())),
        "{case}: {writes:?}"
    );
    assert!(has(&Write::PutToken(changed)), "{case}: {writes:?}");
    assert!(has(&Write::PutKey(key)), "{case}: {writes:?}");
    assert!(
        writes
            .iter()
            .any(|w| matches!(w, Write::PutSetting(k, v) if k == "anonymous_pull_enabled" && v == &serde_json::Value::Bool(true))),
        "{case}: {writes:?}"
    );
    assert_eq!(writes.len(), 4, "{case}: one per object: {writes:?}");
    let (same, none) = store.changes_since(head).await.unwrap();
    assert!(
        same == head && none.is_empty(),
        "{case}: nothing after the head"
    );
}

async fn one_of_concurrent_writers_wins(store: Arc<dyn IdentityStore>) {
    let case = "one_of_concurrent_writers_wins";
    let head = store.load().await.unwrap().head;
    let attempts = (0..8).map(|i| {
        let store = Arc::clone(&store);
        tokio::spawn(async move {
            store
                .apply(head, &[Write::PutToken(token(&format!("writer{i}")))])
                .await
                .unwrap()
        })
    });
    let mut won = 0;
    for attempt in attempts {
        if matches!(attempt.await.unwrap(), Applied::At(_)) {
            won += 1;
        }
    }
    assert_eq!(won, 1, "{case}: exactly one writer on a head wins");
    assert_eq!(store.load().await.unwrap().tokens.len(), 1, "{case}");
}

async fn statuses_and_problems_per_registry(store: Arc<dyn IdentityStore>) {
    let case = "statuses_and_problems_per_registry";
    let status = InstanceStatus {
        connection_state: "Online".into(),
        reported_at: 10,
        ..InstanceStatus::default()
    };
    store.put_status("factory", &status).await.unwrap();
    store
        .put_status("shop1", &InstanceStatus::default())
        .await
        .unwrap();
    assert_eq!(
        store.status("factory").await.unwrap(),
        Some(status),
        "{case}"
    );
    assert_eq!(store.statuses().await.unwrap().len(), 2, "{case}");
    store.delete_status("shop1").await.unwrap();
    assert_eq!(store.status("shop1").await.unwrap(), None, "{case}");

    store
        .put_event("factory", "ALREADY_ACTIVATED", "one", 1)
        .await
        .unwrap();
    store
        .put_event("factory", "ALREADY_ACTIVATED", "two", 2)
        .await
        .unwrap();
    let events = store.events("factory").await.unwrap();
    assert_eq!(
        events.len(),
        1,
        "{case}: a current problem is updated, not repeated"
    );
    assert_eq!(
        (events[0].at, events[0].description.as_str()),
        (1, "two"),
        "{case}"
    );
    assert!(events[0].is_current(), "{case}");
    store.resolve_events("factory", 3).await.unwrap();
    assert_eq!(
        store.events("factory").await.unwrap()[0].resolved_at,
        Some(3),
        "{case}"
    );
    for i in 0..(PAST_DETAILS_KEPT as i64 + 5) {
        store
            .put_event("factory", "X", "again", 10 + i)
            .await
            .unwrap();
        store.resolve_events("factory", 10 + i).await.unwrap();
    }
    assert_eq!(
        store.events("factory").await.unwrap().len(),
        PAST_DETAILS_KEPT,
        "{case}: the last past ones are kept"
    );
    assert!(store.events("shop1").await.unwrap().is_empty(), "{case}");
    store.delete_events("factory").await.unwrap();
    assert!(store.events("factory").await.unwrap().is_empty(), "{case}");
}

async fn the_admin_is_kept_apart(store: Arc<dyn IdentityStore>) {
    let case = "the_admin_is_kept_apart";
    let head = store.load().await.unwrap().head;
    let admin = AdminRecord {
        username: "admin".into(),
        password_hash: "$argon2id$…".into(),
    };
    store.put_admin(&admin).await.unwrap();
    let loaded = store.load().await.unwrap();
    assert_eq!(loaded.admin, Some(admin), "{case}");
    assert_eq!(
        loaded.head, head,
        "{case}: the admin never enters the change log"
    );
}
