//! Two `Identity`s over one store, as two nodes sharing a database will be: each picks up
//! the other's changes from the store's change log, and the store serialises their writes,
//! so a rule checked on one can never be broken by a concurrent change on the other.

use std::net::{IpAddr, Ipv4Addr};

use berth_auth::connected::Mode;
use berth_auth::hierarchy::NewConnectedRegistry;
use berth_auth::{IdentityError, LoginError, NewToken, TokenStatus};

mod support;
use support::node;

const IP: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

fn token(name: &str) -> NewToken {
    NewToken {
        name: name.into(),
        scope_map: Some("_repositories_pull".into()),
        ..NewToken::default()
    }
}

#[tokio::test]
async fn a_node_picks_up_the_other_nodes_changes_from_the_log() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (node(dir.path()).await, node(dir.path()).await);
    let (_, passwords) = a.management().create_token(token("robot")).await.unwrap();
    let password = passwords[0].value.clone();
    assert!(
        b.management().token("robot").is_err(),
        "not seen before a refresh"
    );
    assert!(b.refresh().await.unwrap());
    assert!(!b.refresh().await.unwrap(), "nothing new the second time");
    assert!(b.checks().login("robot", &password, IP).await.is_ok());

    // Disabled through B: refused by A once A has read the log.
    b.management()
        .update_token("robot", None, Some(TokenStatus::Disabled))
        .await
        .unwrap();
    a.refresh().await.unwrap();
    assert_eq!(
        a.checks().login("robot", &password, IP).await,
        Err(LoginError::Invalid)
    );
    // Deleted through A: gone on B.
    a.management().delete_token("robot").await.unwrap();
    b.refresh().await.unwrap();
    assert!(b.management().token("robot").is_err());
}

#[tokio::test]
async fn a_change_decided_on_stale_records_is_decided_again() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (node(dir.path()).await, node(dir.path()).await);
    // B has not seen A's token: its create must still be refused, not overwrite it.
    a.management().create_token(token("robot")).await.unwrap();
    let refused = b.management().create_token(token("robot")).await;
    assert!(
        matches!(
            refused,
            Err(IdentityError::AlreadyExists { kind: "token", .. })
        ),
        "{refused:?}"
    );
    // Different names from both sides, concurrently: every one lands.
    let (left, right) = tokio::join!(
        async {
            for i in 0..10 {
                a.management()
                    .create_token(token(&format!("node-a-{i}")))
                    .await
                    .unwrap();
            }
        },
        async {
            for i in 0..10 {
                b.management()
                    .create_token(token(&format!("node-b-{i}")))
                    .await
                    .unwrap();
            }
        }
    );
    let ((), ()) = (left, right);
    a.refresh().await.unwrap();
    b.refresh().await.unwrap();
    assert_eq!(a.management().tokens().len(), 21);
    assert_eq!(b.management().tokens().len(), 21);
}

#[tokio::test]
async fn two_nodes_never_both_admit_an_instance() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (node(dir.path()).await, node(dir.path()).await);
    a.hierarchy()
        .create_connected_registry(NewConnectedRegistry {
            name: "factory".into(),
            mode: Mode::ReadWrite,
            repositories: vec!["*".into()],
            ..NewConnectedRegistry::default()
        })
        .await
        .unwrap();
    for round in 0..5 {
        let (one, two) = (format!("one-{round}"), format!("two-{round}"));
        let (first, second) = tokio::join!(
            a.hierarchy().instances().activate("factory", &one),
            b.hierarchy().instances().activate("factory", &two),
        );
        let admitted = [first.is_ok(), second.is_ok()];
        assert_eq!(
            admitted.iter().filter(|ok| **ok).count(),
            1,
            "round {round}: exactly one instance is admitted: {first:?} / {second:?}"
        );
        let refused = if first.is_ok() { second } else { first };
        assert!(
            matches!(refused, Err(IdentityError::AlreadyActivated { .. })),
            "round {round}: {refused:?}"
        );
        a.hierarchy()
            .instances()
            .deactivate("factory")
            .await
            .unwrap();
        b.refresh().await.unwrap();
    }
}
