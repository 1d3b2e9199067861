//! The committed OpenAPI document is the one the code serves.

use crate::harness::{binary, Server};

fn committed() -> serde_json::Value {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../openapi/openapi.json");
    let text = std::fs::read_to_string(path).expect("openapi/openapi.json is committed");
    serde_json::from_str(&text).expect("valid JSON")
}

#[test]
fn the_committed_openapi_spec_matches_the_code() {
    let output = std::process::Command::new(binary())
        .arg("openapi")
        .output()
        .unwrap();
    assert!(output.status.success());
    let generated: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert!(
        generated == committed(),
        "openapi/openapi.json is stale: run `cargo run --bin sluice -- openapi > openapi/openapi.json`"
    );
}

#[tokio::test]
async fn the_served_spec_is_the_committed_one() {
    let s = Server::sqlite().await;
    let served = s
        .client
        .send(reqwest::Method::GET, "/openapi.json", None)
        .await
        .unwrap();
    assert_eq!(served.status, 200);
    assert!(served.body == committed());
}

/// The spec as `sluice openapi` prints it.
fn generated() -> serde_json::Value {
    let output = std::process::Command::new(binary())
        .arg("openapi")
        .output()
        .unwrap();
    assert!(output.status.success());
    serde_json::from_slice(&output.stdout).unwrap()
}

/// Every `$ref` in `node`, with where it is.
fn refs<'a>(node: &'a serde_json::Value, at: String, out: &mut Vec<(String, &'a str)>) {
    match node {
        serde_json::Value::Object(map) => {
            for (key, value) in map {
                match (key.as_str(), value.as_str()) {
                    ("$ref", Some(target)) => out.push((at.clone(), target)),
                    _ => refs(value, format!("{at}/{key}"), out),
                }
            }
        }
        serde_json::Value::Array(items) => {
            for (i, value) in items.iter().enumerate() {
                refs(value, format!("{at}/{i}"), out);
            }
        }
        _ => {}
    }
}

/// Every `$ref` names something in the document itself (`GET /v1/runs`'s
/// `order` named a `RunOrder` schema the document did not hold: clients
/// generated from it left the operation out). scripts/check-spec.sh also
/// runs a validator and a client generator over the committed spec.
#[test]
fn every_ref_in_the_spec_resolves() {
    for (name, spec) in [("generated", generated()), ("committed", committed())] {
        let mut found = Vec::new();
        refs(&spec, String::new(), &mut found);
        assert!(found.len() > 100, "{name}: {} refs", found.len());
        let dangling: Vec<_> = found
            .iter()
            .filter(|(_, target)| {
                target
                    .strip_prefix('#')
                    .and_then(|pointer| spec.pointer(pointer))
                    .is_none()
            })
            .collect();
        assert!(dangling.is_empty(), "{name}: unresolvable: {dangling:?}");
    }
}

/// The spec's description says what each part of the API is for, not only
/// its first parts.
#[test]
fn the_spec_description_names_every_part_of_the_api() {
    let spec = generated();
    let description = spec["info"]["description"].as_str().unwrap().to_lowercase();
    for part in [
        "leases",
        "streams",
        "bookmark",
        "tables",
        "snapshot log",
        "hydrations",
        "containers",
        "views",
        "jobs",
        "runs",
        "compaction",
        "events",
        "token",
        "/v1/auth/aws",
    ] {
        assert!(description.contains(part), "no `{part}` in: {description}");
    }
    // And every tag operations use is described.
    let tags: Vec<&str> = spec["tags"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    for item in spec["paths"].as_object().unwrap().values() {
        for op in item.as_object().unwrap().values() {
            for tag in op["tags"].as_array().into_iter().flatten() {
                assert!(tags.contains(&tag.as_str().unwrap()), "{tag}");
            }
        }
    }
}
