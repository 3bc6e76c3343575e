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
//!   last past ones kept;
//! - the audit log reads back in order, filtered by time, paged by id, pruned by age;
//! - webhooks: unique names, positions per log set at creation and gone with the webhook,
//!   one delivery record per event id (updated in place), relayed events stored once per id.

use std::sync::Arc;

use crate::SigningKey;
use crate::action::RepositoryAction;
use crate::audit::AuditEntry;
use crate::connected::{InstanceStatus, PAST_DETAILS_KEPT};
use crate::keys::{KeyPurpose, StoredKey};
use crate::scope_map::{RepositoryRule, ScopeMap};
use crate::store::{AdminRecord, Applied, IdentityStore, Write};
use crate::token::{Token, TokenStatus};
use crate::webhook::{Delivery, DeliveryStatus, SiteEvent, Webhook, WebhookAction, WebhookStatus};

/// Runs every [`IdentityStore`] case, each on a fresh store from `make`.
pub async fn identity_store_contract(make: impl AsyncFn() -> Arc<dyn IdentityStore>) {
    writes_apply_only_on_the_head_they_were_decided_on(make().await).await;
    changes_since_brings_a_copy_up_to_date(make().await).await;
    one_of_concurrent_writers_wins(make().await).await;
    statuses_and_problems_per_registry(make().await).await;
    the_admin_is_kept_apart(make().await).await;
    the_audit_log_reads_in_order_and_prunes(make().await).await;
    webhooks_positions_and_deliveries(make().await).await;
    site_events_are_stored_once(make().await).await;
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
            actions: [RepositoryAction::ContentRead].into(),
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

fn entry(at: i64, action: &str) -> AuditEntry {
    AuditEntry {
        id: 0,
        at,
        actor: "admin".into(),
        client: "127.0.0.1".into(),
        action: action.into(),
        resource: "/berth/v1/registry".into(),
        status: 200,
        before: Some(serde_json::json!({"mode": "ReadWrite"})),
        after: None,
    }
}

async fn the_audit_log_reads_in_order_and_prunes(store: Arc<dyn IdentityStore>) {
    let case = "the_audit_log_reads_in_order_and_prunes";
    let head = store.load().await.unwrap().head;
    let mut ids = Vec::new();
    for (at, action) in [(100, "first"), (200, "second"), (300, "third")] {
        ids.push(store.append_audit(&entry(at, action)).await.unwrap());
    }
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "{case}: ids grow");
    let all = store.audit(0, 0, 10).await.unwrap();
    let actions: Vec<_> = all.iter().map(|e| e.action.as_str()).collect();
    assert_eq!(actions, ["first", "second", "third"], "{case}");
    assert_eq!(
        all[0],
        AuditEntry {
            id: ids[0],
            ..entry(100, "first")
        },
        "{case}: read back whole"
    );
    let since = store.audit(200, 0, 10).await.unwrap();
    assert_eq!(since.len(), 2, "{case}: since is inclusive");
    let page = store.audit(0, ids[0], 1).await.unwrap();
    assert_eq!(page[0].action, "second", "{case}: paged after an id");
    assert_eq!(store.prune_audit(250).await.unwrap(), 2, "{case}");
    assert_eq!(store.audit(0, 0, 10).await.unwrap().len(), 1, "{case}");
    assert_eq!(
        store.load().await.unwrap().head,
        head,
        "{case}: the audit log never enters the identity change log"
    );
}

fn webhook(name: &str) -> Webhook {
    Webhook {
        name: name.into(),
        uri: "http://127.0.0.1:9/hook".into(),
        actions: vec![WebhookAction::Push],
        scope: Some("app:*".into()),
        headers: [("X-Team".to_owned(), "ops".to_owned())].into(),
        status: WebhookStatus::Enabled,
        secret: "secret".into(),
        created_at: 1,
    }
}

fn delivery(id: &str, status: DeliveryStatus) -> Delivery {
    Delivery {
        id: id.into(),
        action: "push".into(),
        repository: Some("app".into()),
        tag: Some("v1".into()),
        digest: None,
        source: None,
        status,
        response_code: Some(500),
        error: None,
        attempts: 1,
        at: 10,
    }
}

async fn webhooks_positions_and_deliveries(store: Arc<dyn IdentityStore>) {
    let case = "webhooks_positions_and_deliveries";
    let hook = webhook("hook1");
    store
        .create_webhook(&hook, &[("content", 7), ("sites", 3)])
        .await
        .unwrap();
    assert!(
        store.create_webhook(&hook, &[]).await.is_err(),
        "{case}: names are unique"
    );
    assert_eq!(
        store.webhooks().await.unwrap(),
        vec![hook.clone()],
        "{case}"
    );
    assert_eq!(
        store.webhook_position("hook1", "content").await.unwrap(),
        Some(7),
        "{case}"
    );
    store
        .set_webhook_position("hook1", "content", 9)
        .await
        .unwrap();
    assert_eq!(
        store.webhook_position("hook1", "content").await.unwrap(),
        Some(9),
        "{case}"
    );
    assert_eq!(
        store.webhook_position("hook1", "sites").await.unwrap(),
        Some(3),
        "{case}"
    );
    let changed = Webhook {
        status: WebhookStatus::Disabled,
        ..hook.clone()
    };
    store.update_webhook(&changed).await.unwrap();
    assert_eq!(store.webhooks().await.unwrap(), vec![changed], "{case}");
    assert!(
        store.update_webhook(&webhook("absent")).await.is_err(),
        "{case}: update needs the webhook"
    );
    // One record per event: a retry updates it.
    store
        .put_delivery("hook1", &delivery("e1", DeliveryStatus::Retrying))
        .await
        .unwrap();
    store
        .put_delivery("hook1", &delivery("e2", DeliveryStatus::Succeeded))
        .await
        .unwrap();
    store
        .put_delivery("hook1", &delivery("e1", DeliveryStatus::Failed))
        .await
        .unwrap();
    let records = store.deliveries("hook1", 10).await.unwrap();
    assert_eq!(records.len(), 2, "{case}");
    assert_eq!(
        records[1].status,
        DeliveryStatus::Failed,
        "{case}: updated in place"
    );
    assert_eq!(
        store.deliveries("hook1", 1).await.unwrap().len(),
        1,
        "{case}: limit"
    );
    // About the last DELIVERIES_KEPT records are kept (trimmed every DELIVERIES_TRIM).
    let many = crate::store::DELIVERIES_KEPT + 2 * crate::store::DELIVERIES_TRIM;
    for i in 0..many {
        store
            .put_delivery(
                "hook1",
                &delivery(&format!("n{i}"), DeliveryStatus::Succeeded),
            )
            .await
            .unwrap();
    }
    let kept = store.deliveries("hook1", 100_000).await.unwrap();
    assert!(
        (crate::store::DELIVERIES_KEPT
            ..=crate::store::DELIVERIES_KEPT + crate::store::DELIVERIES_TRIM)
            .contains(&(kept.len() as i64)),
        "{case}: {} records kept",
        kept.len()
    );
    assert_eq!(
        kept[0].id,
        format!("n{}", many - 1),
        "{case}: the newest first"
    );
    assert!(store.delete_webhook("hook1").await.unwrap(), "{case}");
    assert!(!store.delete_webhook("hook1").await.unwrap(), "{case}");
    assert!(store.webhooks().await.unwrap().is_empty(), "{case}");
    assert_eq!(
        store.webhook_position("hook1", "content").await.unwrap(),
        None,
        "{case}"
    );
    assert!(
        store.deliveries("hook1", 10).await.unwrap().is_empty(),
        "{case}"
    );
}

fn site_event(id: &str) -> SiteEvent {
    SiteEvent {
        seq: 0,
        registry: "factory".into(),
        id: id.into(),
        action: WebhookAction::Push,
        repository: "app".into(),
        tag: Some("v1".into()),
        digest: "sha256:00".into(),
        media_type: Some("application/vnd.oci.image.manifest.v1+json".into()),
        size: Some(524),
        at: 5,
    }
}

async fn site_events_are_stored_once(store: Arc<dyn IdentityStore>) {
    let case = "site_events_are_stored_once";
    assert_eq!(store.site_events_head().await.unwrap(), 0, "{case}");
    store
        .append_site_events(&[site_event("a"), site_event("b")])
        .await
        .unwrap();
    // Resent after a lost answer: kept once.
    store
        .append_site_events(&[site_event("b"), site_event("c")])
        .await
        .unwrap();
    let events = store.site_events(0, 10).await.unwrap();
    let ids: Vec<_> = events.iter().map(|e| e.id.as_str()).collect();
    assert_eq!(ids, ["a", "b", "c"], "{case}");
    assert!(events.windows(2).all(|w| w[0].seq < w[1].seq), "{case}");
    // At least the last one's (PostgreSQL's sequence also counts the skipped resend).
    let head = store.site_events_head().await.unwrap();
    assert!(head >= events[2].seq, "{case}");
    assert_eq!(
        store.site_events(events[0].seq, 1).await.unwrap()[0].id,
        "b",
        "{case}"
    );
    assert_eq!(
        store.prune_site_events(i64::MAX).await.unwrap(),
        3,
        "{case}"
    );
    assert_eq!(
        store.site_events_head().await.unwrap(),
        head,
        "{case}: pruning does not rewind the head"
    );
}
