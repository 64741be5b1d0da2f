//! A key written through the API is judged where it is used: by the proxy's configuration
//! snapshot, kept current by the proxy's own loader (LISTEN/NOTIFY), not by re-reading SQL.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use actix_web::test::TestRequest;
use serde_json::json;
use support::{Harness, PEPPER_HEX};
use time::OffsetDateTime;
use tokio::sync::watch;
use tollgate_core::{KeyPepper, ParsedApiKey};
use tollgate_proxy::loader::{self, LoaderSettings};
use tollgate_proxy::{KeyRejection, SnapshotHandle, load_snapshot};

/// How long the revocation may take to reach the proxy.
const REVOCATION_BUDGET: Duration = Duration::from_secs(1);

/// What the live snapshot says about `secret` now; `None` before the first load.
fn verdict(
    handle: &SnapshotHandle,
    secret: &str,
    pepper: &KeyPepper,
) -> Option<Result<(), KeyRejection>> {
    let snapshot = handle.load()?;
    let key = ParsedApiKey::parse(secret).unwrap();
    Some(
        snapshot
            .config
            .authenticate_key(&key, pepper, OffsetDateTime::now_utc())
            .map(|_| ()),
    )
}

/// Polls every 2 ms until `done` holds, for at most `limit`; returns how long it took.
async fn wait_for(limit: Duration, mut done: impl FnMut() -> bool) -> Option<Duration> {
    let started = Instant::now();
    while started.elapsed() < limit {
        if done() {
            return Some(started.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    None
}

#[actix_web::test]
async fn a_key_created_through_the_api_works_at_the_proxy_and_is_refused_within_one_second_of_revocation()
 {
    let h = Harness::new().await;
    let app = app!(h);
    let pepper = KeyPepper::from_hex(PEPPER_HEX).unwrap();
    let admin = h.token(&h.own.admin);
    let keys = format!("/api/v1/tenants/{}/api-keys", h.own.id);

    // The proxy's loader, with the periodic full reload out of the way: only the change
    // notifications can bring the revocation in time.
    let handle = Arc::new(SnapshotHandle::default());
    let (stop, stopped) = watch::channel(false);
    let mut settings = LoaderSettings::new(h.db.url());
    settings.full_reload_every = Duration::from_secs(3600);
    let loader = actix_web::rt::spawn(loader::run(settings, handle.clone(), stopped));
    assert!(
        wait_for(Duration::from_secs(10), || handle.load().is_some())
            .await
            .is_some(),
        "the loader never loaded a snapshot"
    );

    let (status, created) = call!(
        app,
        TestRequest::post()
            .uri(&keys)
            .insert_header(("Authorization", format!("Bearer {admin}")))
            .set_json(json!({ "name": "ci" }))
    );
    assert_eq!(status, 201, "{created}");
    let secret = created["secret"].as_str().unwrap().to_owned();
    let key_id = created["key"]["id"].as_str().unwrap().to_owned();

    // A snapshot read now, as a proxy starting up would, accepts the key for its tenant.
    let mut client = h.db.client().await;
    let fresh = load_snapshot(&mut client).await.unwrap();
    let (tenant, record) = fresh
        .authenticate_key(
            &ParsedApiKey::parse(&secret).unwrap(),
            &pepper,
            OffsetDateTime::now_utc(),
        )
        .unwrap();
    assert_eq!(*tenant.id.as_uuid(), h.own.id);
    assert_eq!(record.id.as_str(), key_id);

    // The running loader picks the new key up too.
    let usable_after = wait_for(Duration::from_secs(5), || {
        verdict(&handle, &secret, &pepper) == Some(Ok(()))
    })
    .await
    .expect("the live snapshot never accepted the new key");

    let revoke_sent = Instant::now();
    let (status, revoked) = call!(
        app,
        TestRequest::post()
            .uri(&format!("{keys}/{key_id}/revoke"))
            .insert_header(("Authorization", format!("Bearer {admin}")))
    );
    assert_eq!(status, 200, "{revoked}");
    let api_answered = revoke_sent.elapsed();
    let refused_after = wait_for(Duration::from_secs(5), || {
        verdict(&handle, &secret, &pepper) == Some(Err(KeyRejection::Revoked))
    })
    .await
    .map(|_| revoke_sent.elapsed());
    println!(
        "key usable at the proxy {usable_after:?} after creation; revoke answered in \
         {api_answered:?}; refused at the proxy {refused_after:?} after the revoke request"
    );
    let refused_after = refused_after.expect("the revoked key was still accepted after 5 s");
    assert!(
        refused_after < REVOCATION_BUDGET,
        "revocation took {refused_after:?} to reach the proxy"
    );
    // And a fresh snapshot agrees.
    let fresh = load_snapshot(&mut client).await.unwrap();
    assert_eq!(
        fresh
            .authenticate_key(
                &ParsedApiKey::parse(&secret).unwrap(),
                &pepper,
                OffsetDateTime::now_utc()
            )
            .map(|_| ()),
        Err(KeyRejection::Revoked)
    );

    stop.send(true).unwrap();
    tokio::time::timeout(Duration::from_secs(5), loader)
        .await
        .expect("the loader did not stop")
        .unwrap();
}
