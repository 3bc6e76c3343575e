//! Keys in the identity store: imported from an earlier version's file, rotated without
//! ending what the old key signed, and shared by every process on the store.

use std::time::Duration;

use berth_auth::{Identity, KeyPurpose, Principal, Scope, SigningKey};
use berth_oci::time::unix_now;

mod support;
use support::node_with;

fn token(identity: &Identity) -> String {
    let scopes = Scope::parse_all(["repository:app:pull"]);
    identity
        .checks()
        .issue_access_token(&Principal::Admin, "registry", &scopes)
        .token
}

#[tokio::test]
async fn a_key_given_at_first_start_is_the_one_that_signs() {
    let dir = tempfile::tempdir().unwrap();
    let legacy = SigningKey::generate();
    let identity = node_with(dir.path(), legacy.clone(), Duration::from_secs(3600)).await;
    let jwt = token(&identity);
    assert!(
        legacy.verify(&jwt, unix_now()).is_ok(),
        "signed with the imported key"
    );
    // Given again later, it is ignored: the stored key stays.
    let again = node_with(
        dir.path(),
        SigningKey::generate(),
        Duration::from_secs(3600),
    )
    .await;
    assert!(again.checks().verify_access_token(&jwt, "registry").is_ok());
}

#[tokio::test]
async fn a_rotation_keeps_what_the_old_key_signed_valid_everywhere() {
    let dir = tempfile::tempdir().unwrap();
    let a = node_with(
        dir.path(),
        SigningKey::generate(),
        Duration::from_secs(3600),
    )
    .await;
    let b = node_with(
        dir.path(),
        SigningKey::generate(),
        Duration::from_secs(3600),
    )
    .await;
    let old = token(&a);
    assert!(b.checks().verify_access_token(&old, "registry").is_ok());

    let fresh = a.management().rotate_key(KeyPurpose::Tokens).await.unwrap();
    let new = token(&a);
    assert!(a.checks().verify_access_token(&old, "registry").is_ok());
    assert!(a.checks().verify_access_token(&new, "registry").is_ok());
    // The other process picks the new key up from the change log, and keeps the old one.
    b.refresh().await.unwrap();
    assert!(b.checks().verify_access_token(&new, "registry").is_ok());
    assert!(b.checks().verify_access_token(&old, "registry").is_ok());
    let keys = b.management().keys();
    let tokens: Vec<_> = keys
        .iter()
        .filter(|k| k.purpose == KeyPurpose::Tokens)
        .collect();
    assert_eq!(tokens.len(), 2);
    assert_eq!(tokens[0].id, fresh.id);
    assert!(tokens[0].retired_at.is_none() && tokens[1].retired_at.is_some());
    // Data URL keys are apart: untouched by a token rotation.
    let ring = a.checks().keys(KeyPurpose::DataUrls);
    assert!(ring.is_err(), "no data URL key until one is ensured");
    a.management()
        .ensure_key(KeyPurpose::DataUrls, None)
        .await
        .unwrap();
    assert!(
        a.checks()
            .keys(KeyPurpose::DataUrls)
            .unwrap()
            .previous
            .is_empty()
    );
}

#[tokio::test]
async fn retired_keys_verify_within_their_grace() {
    let dir = tempfile::tempdir().unwrap();
    // A zero refresh lifetime: a retired token key verifies for the skew margin only.
    let a = node_with(dir.path(), SigningKey::generate(), Duration::ZERO).await;
    let grace = a.management().key_grace(KeyPurpose::Tokens);
    assert!(grace > 0 && grace < 3600);
    a.management().rotate_key(KeyPurpose::Tokens).await.unwrap();
    a.management().rotate_key(KeyPurpose::Tokens).await.unwrap();
    let ring = a.checks().keys(KeyPurpose::Tokens).unwrap();
    assert_eq!(
        ring.previous.len(),
        2,
        "both retired keys are within their grace"
    );
    assert_eq!(
        a.management()
            .keys()
            .iter()
            .filter(|k| k.purpose == KeyPurpose::Tokens)
            .count(),
        3
    );
}
