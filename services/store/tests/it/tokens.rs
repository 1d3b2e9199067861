//! Bearer tokens: created once per name, found by id, revoked once.

use crate::support::every;
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
    for b in every().await {
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

#[tokio::test]
async fn aws_principal_rules_are_created_once_listed_and_deleted() {
    use sluice_core::aws_identity::ArnRule;
    let rule = |pattern: &str, role| ArnRule {
        pattern: pattern.into(),
        role,
        scopes: vec!["sales.".into()],
    };
    for b in every().await {
        let tokens = b.store.tokens();
        let glue = rule("arn:aws:iam::*:role/glue-*", Role::Job);
        let ops = rule("arn:aws:iam::1:user/ops", Role::Operator);
        assert!(tokens.create_aws_principal(&glue, Millis(1)).await.unwrap());
        assert!(tokens.create_aws_principal(&ops, Millis(2)).await.unwrap());
        let again = rule("arn:aws:iam::*:role/glue-*", Role::Admin);
        assert!(
            !tokens
                .create_aws_principal(&again, Millis(3))
                .await
                .unwrap(),
            "{}: one rule per pattern",
            b.name
        );
        assert_eq!(
            tokens.aws_principals().await.unwrap(),
            vec![glue.clone(), ops.clone()],
            "{}",
            b.name
        );
        assert!(tokens.delete_aws_principal(&glue.pattern).await.unwrap());
        assert!(!tokens.delete_aws_principal(&glue.pattern).await.unwrap());
        assert_eq!(
            tokens.aws_principals().await.unwrap(),
            vec![ops],
            "{}",
            b.name
        );
    }
}

#[tokio::test]
async fn expired_login_tokens_are_pruned_and_no_other_token_is() {
    for b in every().await {
        let tokens = b.store.tokens();
        // Expired hours ago, not a month: the store's own pruner, running
        // beside the test, leaves them to the calls below.
        let hour = 3_600_000;
        let now = sluice_store::system_now().0;
        let login = |id: &str, expires: i64| TokenRecord {
            expires_at: Some(Millis(expires)),
            ..record(id, &format!("aws:arn:aws:sts::1:assumed-role/r/s#{id}"))
        };
        for t in [
            login("old1", now - 3 * hour),
            login("old2", now - 2 * hour),
            login("live", now + hour),
            // A token made by hand keeps its record after it expires.
            record("static", "ingest"),
        ] {
            assert!(tokens.create(&t).await.unwrap(), "{}", b.name);
        }
        let cutoff = Millis(now - hour);
        assert_eq!(
            tokens.prune_logins(cutoff, 1).await.unwrap(),
            1,
            "{}",
            b.name
        );
        assert_eq!(
            tokens.prune_logins(cutoff, 10).await.unwrap(),
            1,
            "{}",
            b.name
        );
        assert_eq!(
            tokens.prune_logins(cutoff, 10).await.unwrap(),
            0,
            "{}",
            b.name
        );
        let mut left: Vec<String> = tokens
            .list()
            .await
            .unwrap()
            .into_iter()
            .map(|t| t.id)
            .collect();
        left.sort();
        assert_eq!(left, ["live", "static"], "{}", b.name);
    }
}
