//! moto's Glue behind the Glue-protocol test double
//! (`integration-tests/glue/glue_double.py`): moto runs the job API; the
//! double scripts what moto cannot (failed and stopped runs, lost answers,
//! concurrent-runs refusals, job code that really runs) and counts calls.

use crate::lake::{venv, Lake};
use serde_json::{json, Value};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct GlueDouble {
    /// Where sluice's `[aws] endpoint_url` points.
    pub url: String,
    pub lake: Lake,
    child: Child,
    http: reqwest::Client,
}

impl GlueDouble {
    pub async fn start() -> GlueDouble {
        let lake = Lake::start().await;
        let port = crate::harness::free_port();
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/glue/glue_double.py");
        let child = Command::new(venv().join("bin/python"))
            .args([script, &port.to_string(), &lake.url])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start the Glue double");
        let double = GlueDouble {
            url: format!("http://127.0.0.1:{port}"),
            lake,
            child,
            http: reqwest::Client::new(),
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        while double.calls_now().await.is_none() {
            assert!(Instant::now() < deadline, "the Glue double did not start");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        double
    }

    async fn calls_now(&self) -> Option<Value> {
        let answer = self
            .http
            .get(format!("{}/_double/calls", self.url))
            .send()
            .await
            .ok()?;
        answer.json().await.ok()
    }

    /// Calls seen so far, by action (`StartJobRun`) and `StartJobRun:JOB`.
    pub async fn calls(&self, key: &str) -> i64 {
        self.calls_now().await.expect("the double answers")[key]
            .as_i64()
            .unwrap_or(0)
    }

    /// Script outcomes (see the double's docs).
    pub async fn script(&self, script: Value) {
        let answer = self
            .http
            .post(format!("{}/_double/script", self.url))
            .json(&script)
            .send()
            .await
            .expect("script the double");
        assert!(answer.status().is_success());
    }

    /// Every RUNNING-scripted run of `job` now SUCCEEDED.
    pub async fn finish(&self, job: &str) {
        let answer = self
            .http
            .post(format!("{}/_double/finish", self.url))
            .json(&json!({ "job": job }))
            .send()
            .await
            .expect("finish the runs");
        assert!(answer.status().is_success());
    }

    /// A Glue API call straight to moto.
    pub async fn glue(&self, action: &str, body: Value) -> Value {
        let answer = self
            .http
            .post(&self.lake.url)
            .header("X-Amz-Target", format!("AWSGlue.{action}"))
            .header("Content-Type", "application/x-amz-json-1.1")
            .header(
                "Authorization",
                "AWS4-HMAC-SHA256 Credential=testing/20260101/us-east-1/glue/aws4_request, SignedHeaders=host, Signature=0",
            )
            .body(body.to_string())
            .send()
            .await
            .expect("call moto's Glue");
        let status = answer.status();
        let body: Value = answer.json().await.unwrap_or(Value::Null);
        assert!(status.is_success(), "{action}: {status} {body}");
        body
    }

    /// A Glue job in moto.
    pub async fn create_job(&self, name: &str, max_concurrent_runs: u32) {
        self.glue(
            "CreateJob",
            json!({
                "Name": name, "Role": "arn:aws:iam::123456789012:role/glue",
                "Command": {"Name": "glueetl", "ScriptLocation": "s3://scripts/job.py"},
                "ExecutionProperty": {"MaxConcurrentRuns": max_concurrent_runs},
            }),
        )
        .await;
    }

    /// Every run of `job` that Glue (moto) holds.
    pub async fn runs(&self, job: &str) -> Vec<Value> {
        let answer = self.glue("GetJobRuns", json!({ "JobName": job })).await;
        answer["JobRuns"].as_array().cloned().unwrap_or_default()
    }

    /// sluice's configuration: its own AWS calls through the double, the
    /// lake's catalog straight to moto.
    pub fn config(&self, dir: &std::path::Path) -> String {
        let path = crate::snapshots::glue_config(dir, &self.lake);
        let text = std::fs::read_to_string(&path).unwrap();
        std::fs::write(
            &path,
            format!(
                "[aws]\nregion = \"us-east-1\"\nendpoint_url = \"{}\"\n\n{text}",
                self.url
            ),
        )
        .unwrap();
        for (key, value) in [
            ("LAKE_KEY_ID", "testing"),
            ("LAKE_SECRET", "testing"),
            ("AWS_ACCESS_KEY_ID", "testing"),
            ("AWS_SECRET_ACCESS_KEY", "testing"),
        ] {
            std::env::set_var(key, value);
        }
        path.display().to_string()
    }
}

impl Drop for GlueDouble {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
