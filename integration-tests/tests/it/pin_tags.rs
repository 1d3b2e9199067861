//! Pins mirrored as Iceberg tags, written by sluice's tag writer into the
//! embedded SQL catalog and read back, and expired against, by pyiceberg:
//! a tagged snapshot survives another engine's `expire_snapshots`, the
//! tag moves and goes, and a writer committing to the table meanwhile
//! loses nothing (the tag's commit is made again on its metadata).

use crate::snapshots::{py, sql_catalog};
use serde_json::Value;
use sluice_core::TableName;
use sluice_iceberg::{CatalogConfig, Catalogs, TagTarget};

const TABLE: &str = "lake.orders";
const TAG: &str = "sluice-pin-test";
const DAY_MS: i64 = 86_400_000;

async fn catalogs(dir: &std::path::Path) -> Catalogs {
    let config = CatalogConfig::embedded("local", dir);
    Catalogs::connect(&[config], Some("local")).await.unwrap()
}

async fn refs(catalog: &Value) -> Value {
    serde_json::from_str(&py(catalog, &["refs", TABLE]).await).unwrap()
}

async fn snapshot_ids(catalog: &Value) -> Vec<i64> {
    let all: Value = serde_json::from_str(&py(catalog, &["snapshots", TABLE]).await).unwrap();
    all["snapshots"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["snapshot_id"].as_i64().unwrap())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tagged_snapshot_survives_another_engines_expiry_and_the_tag_moves_and_goes() {
    let dir = tempfile::tempdir().unwrap();
    // sluice's catalog first: it makes the catalog database as the
    // `iceberg` crate reads it, and pyiceberg then uses it.
    let sluice = catalogs(dir.path()).await;
    let catalog = sql_catalog(dir.path());
    py(&catalog, &["create", TABLE]).await;
    let s1: i64 = py(&catalog, &["append", TABLE, "3"]).await.parse().unwrap();
    let s2: i64 = py(&catalog, &["append", TABLE, "2"]).await.parse().unwrap();
    let s3: i64 = py(&catalog, &["append", TABLE, "1"]).await.parse().unwrap();
    let table = TableName::parse(TABLE).unwrap();
    let at = |snapshot_id| {
        Some(TagTarget {
            snapshot_id,
            max_ref_age_ms: DAY_MS,
        })
    };

    assert!(sluice.set_tag("local", &table, TAG, at(s1)).await.unwrap());
    // Again: already so, no commit.
    assert!(!sluice.set_tag("local", &table, TAG, at(s1)).await.unwrap());
    let tagged = refs(&catalog).await;
    assert_eq!(tagged[TAG]["snapshot_id"], s1, "{tagged}");
    assert_eq!(tagged[TAG]["type"], "tag", "{tagged}");
    assert_eq!(tagged[TAG]["max_ref_age_ms"], DAY_MS, "{tagged}");
    assert_eq!(tagged["main"]["snapshot_id"], s3, "{tagged}");

    // pyiceberg expires everything older than now but what refs hold.
    let now = "2100-01-01T00:00:00";
    py(&catalog, &["expire-older-than", TABLE, now]).await;
    let kept = snapshot_ids(&catalog).await;
    assert!(kept.contains(&s1), "the tagged snapshot expired: {kept:?}");
    assert!(!kept.contains(&s2), "{kept:?}");
    assert!(kept.contains(&s3), "{kept:?}");

    // The tag moves with the pin, and goes when the pin goes.
    assert!(sluice.set_tag("local", &table, TAG, at(s3)).await.unwrap());
    assert_eq!(refs(&catalog).await[TAG]["snapshot_id"], s3);
    assert!(sluice.set_tag("local", &table, TAG, None).await.unwrap());
    assert!(refs(&catalog).await.get(TAG).is_none());
    assert!(!sluice.set_tag("local", &table, TAG, None).await.unwrap());
    py(&catalog, &["expire-older-than", TABLE, now]).await;
    assert_eq!(snapshot_ids(&catalog).await, vec![s3]);

    // Refused, nothing written: a snapshot the table does not have.
    let missing = sluice.set_tag("local", &table, TAG, at(12345)).await;
    assert!(
        matches!(missing, Err(sluice_iceberg::TagError::Refused(_))),
        "{missing:?}"
    );
}

/// A writer appends while the tag is moved again and again: every append
/// lands, and the tag ends where it was last set.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_writer_committing_while_the_tag_is_written_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let sluice = catalogs(dir.path()).await;
    let catalog = sql_catalog(dir.path());
    py(&catalog, &["create", TABLE]).await;
    let first: i64 = py(&catalog, &["append", TABLE, "1"]).await.parse().unwrap();
    let table = TableName::parse(TABLE).unwrap();
    let writer = {
        let catalog = catalog.clone();
        tokio::spawn(async move {
            let mut appended = Vec::new();
            for _ in 0..8 {
                appended.push(
                    py(&catalog, &["append", TABLE, "1"])
                        .await
                        .parse::<i64>()
                        .unwrap(),
                );
            }
            appended
        })
    };
    let mut moves = 0;
    while !writer.is_finished() {
        let target = if moves % 2 == 0 { None } else { Some(first) };
        let target = target.map(|snapshot_id| TagTarget {
            snapshot_id,
            max_ref_age_ms: DAY_MS,
        });
        sluice.set_tag("local", &table, TAG, target).await.unwrap();
        moves += 1;
        // As often as pins move when copies report progress many times a
        // second, not in a tight loop that no writer could ever pass.
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let appended = writer.await.unwrap();
    sluice
        .set_tag(
            "local",
            &table,
            TAG,
            Some(TagTarget {
                snapshot_id: first,
                max_ref_age_ms: DAY_MS,
            }),
        )
        .await
        .unwrap();
    let ids = snapshot_ids(&catalog).await;
    for id in appended.iter().chain([&first]) {
        assert!(ids.contains(id), "snapshot {id} lost: {ids:?}");
    }
    let refs = refs(&catalog).await;
    assert_eq!(
        refs["main"]["snapshot_id"],
        *appended.last().unwrap(),
        "{refs}"
    );
    assert_eq!(refs[TAG]["snapshot_id"], first, "{refs}");
    assert!(moves > 1, "the tag was never written during the appends");
}
