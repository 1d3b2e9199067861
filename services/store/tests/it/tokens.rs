//! Bearer tokens: created once per name, found by id, revoked once.

use crate::support::both;
use sluice_core::{Millis, Role};
use sluice_store::TokenRecord;

fn record(id: &str, name: &str) -> TokenRecord {
    TokenRecord {
        id: id.into(),
        name: name.into(),
        role: Role::Job,
        scopes: vec!["sales.".into()],
        secret_sha256: "ab".repeat(32),
        created_at: Millis(1_000),
        expires_at: Some(Millis(9_000)),
        revoked_at: None,
    }
}

#[tokio::test]
async fn a_token_is_created_once_found_listed_and_revoked_once() {
    for b in both().await {
        let tokens = b.store.tokens();
        assert!(
            tokens.create(&record("t1", "ingest")).await.unwrap(),
            "{}",
            b.name
        );
        assert!(
            !tokens.create(&record("t2", "ingest")).await.unwrap(),
            "{}: the name is taken",
            b.name
        );
        let found = tokens.find("t1").await.unwrap();
        assert_eq!(found, Some(record("t1", "ingest")), "{}", b.name);
        assert_eq!(tokens.find("t2").await.unwrap(), None, "{}", b.name);
        assert_eq!(tokens.list().await.unwrap().len(), 1, "{}", b.name);
        assert!(
            tokens.revoke("ingest", Millis(5_000)).await.unwrap(),
            "{}",
            b.name
        );
        assert!(
            !tokens.revoke("ingest", Millis(6_000)).await.unwrap(),
            "{}",
            b.name
        );
        let revoked = tokens.find("t1").await.unwrap().unwrap();
        assert_eq!(revoked.revoked_at, Some(Millis(5_000)), "{}", b.name);
    }
}
