//! The live event feed, `GET /v1/events/stream` (Server-Sent Events): a
//! client that reconnects with `Last-Event-ID` misses no event and sees
//! none twice, across a kill -9 and restart of sluice; filters and token
//! scopes hold; malformed resumes are refused with the JSON error body.

use crate::harness::Server;
use reqwest::Method;
use serde_json::{json, Value};
use std::time::Duration;

/// One event as the feed sent it.
#[derive(Debug)]
struct Frame {
    id: Option<i64>,
    event: String,
    data: Value,
}

/// An open feed, read frame by frame.
struct Feed {
    response: reqwest::Response,
    buffer: String,
}

impl Feed {
    async fn open(server: &Server, query: &str, last: Option<i64>, token: Option<&str>) -> Feed {
        let mut request =
            reqwest::Client::new().get(format!("{}/v1/events/stream{query}", server.url));
        if let Some(last) = last {
            request = request.header("Last-Event-ID", last.to_string());
        }
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        let response = request.send().await.expect("open the feed");
        assert_eq!(response.status(), 200);
        assert_eq!(
            response.headers()["content-type"].to_str().unwrap(),
            "text/event-stream"
        );
        Feed {
            response,
            buffer: String::new(),
        }
    }

    /// The next event with data (keep-alive comments skipped); None once
    /// the connection ends or nothing comes within `within`.
    async fn next(&mut self, within: Duration) -> Option<Frame> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            if let Some(end) = self.buffer.find("\n\n") {
                let block: String = self.buffer.drain(..end + 2).collect();
                let (mut id, mut event, mut data) = (None, String::from("message"), None);
                for line in block.lines() {
                    if let Some(v) = line.strip_prefix("id: ") {
                        id = v.parse().ok();
                    } else if let Some(v) = line.strip_prefix("event: ") {
                        event = v.to_owned();
                    } else if let Some(v) = line.strip_prefix("data: ") {
                        data = Some(serde_json::from_str(v).expect("data is JSON"));
                    }
                }
                if let Some(data) = data {
                    return Some(Frame { id, event, data });
                }
                continue;
            }
            let chunk = tokio::time::timeout_at(deadline, self.response.chunk()).await;
            match chunk {
                Ok(Ok(Some(bytes))) => self.buffer.push_str(&String::from_utf8_lossy(&bytes)),
                _ => return None,
            }
        }
    }
}

async fn lease_events(server: &Server, table: &str, n: usize) {
    for _ in 0..n {
        let answer = server
            .call(
                Method::POST,
                &format!("/v1/tables/{table}/leases"),
                Some(json!({ "mode": "read", "ttl_seconds": 60, "holder": "feed-test" })),
            )
            .await;
        assert_eq!(answer.status, 201, "{}", answer.body);
        let released = server
            .client
            .release(
                answer.body["lease_id"].as_str().unwrap(),
                answer.body["token"].as_i64(),
            )
            .await
            .unwrap();
        assert_eq!(released.status, 200);
    }
}

fn ids(events: &[Value]) -> Vec<i64> {
    events.iter().map(|e| e["id"].as_i64().unwrap()).collect()
}

/// Read frames until the feed has sent `count` events, or fail.
async fn read(feed: &mut Feed, count: usize, seen: &mut Vec<Frame>) {
    while seen.len() < count {
        let frame = feed.next(Duration::from_secs(10)).await.unwrap_or_else(|| {
            panic!("the feed stopped after {} of {count}: {seen:?}", seen.len())
        });
        seen.push(frame);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_feed_resumed_with_last_event_id_misses_nothing_and_repeats_nothing_across_a_restart() {
    let mut server = Server::sqlite().await;
    for table in ["sales.a", "sales.b"] {
        let put = server.client.put_table(table, json!({})).await.unwrap();
        assert_eq!(put.status, 201, "{put:?}");
    }
    lease_events(&server, "sales.a", 2).await;
    let before = server.client.all_events(0, None).await.unwrap();

    // From the start: what is in the log, then what happens live.
    let mut feed = Feed::open(&server, "", None, None).await;
    let mut seen = Vec::new();
    read(&mut feed, before.len(), &mut seen).await;
    lease_events(&server, "sales.b", 1).await;
    let live = server.client.all_events(0, None).await.unwrap();
    read(&mut feed, live.len(), &mut seen).await;
    for (frame, event) in seen.iter().zip(&live) {
        assert_eq!(frame.id, event["id"].as_i64());
        assert_eq!(frame.event, event["kind"].as_str().unwrap());
        assert_eq!(&frame.data, event);
    }

    // sluice dies: the feed ends. Events happen before the client is back.
    server.kill9();
    assert!(feed.next(Duration::from_secs(5)).await.is_none());
    server.restart().await;
    lease_events(&server, "sales.a", 2).await;
    let last = seen.last().unwrap().id;
    let mut resumed = Feed::open(&server, "", last, None).await;
    let all = server.client.all_events(0, None).await.unwrap();
    read(&mut resumed, all.len(), &mut seen).await;
    let got: Vec<i64> = seen.iter().map(|f| f.id.unwrap()).collect();
    assert_eq!(got, ids(&all), "every event once, in order");
    assert!(
        resumed.next(Duration::from_millis(800)).await.is_none(),
        "nothing twice"
    );

    // Filtered like the listing.
    let mut only_b = Feed::open(&server, "?table=sales.b", None, None).await;
    let b = server.client.all_events(0, Some("sales.b")).await.unwrap();
    assert!(!b.is_empty());
    let mut frames = Vec::new();
    read(&mut only_b, b.len(), &mut frames).await;
    assert!(
        frames.iter().all(|f| f.data["table"] == "sales.b"),
        "{frames:?}"
    );
    assert!(only_b.next(Duration::from_millis(800)).await.is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scoped_token_follows_only_its_tables_and_bad_resumes_are_refused() {
    let server = Server::sqlite_with(&["--auth", "on"]).await;
    let admin = server.create_token("admin", "admin", &[], &[]);
    let as_admin = server.client_with(&admin);
    for table in ["sales.a", "hr.people"] {
        let put = as_admin.put_table(table, json!({})).await.unwrap();
        assert_eq!(put.status, 201, "{put:?}");
    }
    let scoped = server.create_token("ops-sales", "operator", &["sales."], &[]);
    let all = as_admin.all_events(0, None).await.unwrap();
    let sales: Vec<&Value> = all.iter().filter(|e| e["table"] == "sales.a").collect();
    let mut feed = Feed::open(&server, "", None, Some(&scoped)).await;
    let mut frames = Vec::new();
    read(&mut feed, sales.len(), &mut frames).await;
    assert!(
        frames.iter().all(|f| f.data["table"] == "sales.a"),
        "{frames:?}"
    );
    assert!(feed.next(Duration::from_millis(800)).await.is_none());

    let http = reqwest::Client::new();
    let url = format!("{}/v1/events/stream", server.url);
    for (query, last, status, kind) in [
        ("", Some("abc"), 400, "bad_last_event_id"),
        ("", Some("-1"), 400, "bad_last_event_id"),
        ("?kind=nope", None, 422, ""),
        ("?table=hr.people", None, 403, ""),
    ] {
        let mut request = http.get(format!("{url}{query}")).bearer_auth(&scoped);
        if let Some(last) = last {
            request = request.header("Last-Event-ID", last);
        }
        let answer = request.send().await.unwrap();
        let got = answer.status().as_u16();
        let body: Value = answer.json().await.expect("a JSON error body");
        assert_eq!(got, status, "{query} {last:?}: {body}");
        assert!(body["error"]["type"].is_string(), "{body}");
        if !kind.is_empty() {
            assert_eq!(body["error"]["type"], kind);
        }
    }
    let unauthenticated = http.get(&url).send().await.unwrap();
    assert_eq!(unauthenticated.status(), 401);
}

/// 4000 leases on `table`, 16 at a time: 12,000 events (requested,
/// granted, released) of about 500 bytes (a long holder), more than the
/// socket buffers on the way hold (the kernel grows a send buffer to 4 MiB).
async fn many_events(server: &Server, table: &'static str) {
    let mut makers = tokio::task::JoinSet::new();
    for _ in 0..16 {
        let client = server.client.clone();
        makers.spawn(async move {
            for _ in 0..4000 / 16 {
                let holder = "feed-test-".repeat(25);
                let ask = json!({ "mode": "read", "ttl_seconds": 60, "holder": holder });
                let lease = client
                    .send(
                        Method::POST,
                        &format!("/v1/tables/{table}/leases"),
                        Some(&ask),
                    )
                    .await
                    .unwrap();
                assert_eq!(lease.status, 201, "{}", lease.body);
                let id = lease.body["lease_id"].as_str().unwrap();
                let released = client
                    .release(id, lease.body["token"].as_i64())
                    .await
                    .unwrap();
                assert_eq!(released.status, 200);
            }
        });
    }
    while let Some(done) = makers.join_next().await {
        done.unwrap();
    }
}

/// A feed asked for on a raw socket with a small receive buffer, whose
/// answer is left for the caller to read (or not).
async fn raw_feed(server: &Server, query: &str) -> tokio::net::TcpStream {
    use tokio::io::AsyncWriteExt;
    let address: std::net::SocketAddr = server.url.trim_start_matches("http://").parse().unwrap();
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let mut stream = socket.connect(address).await.unwrap();
    let request = format!(
        "GET /v1/events/stream{query} HTTP/1.1\r\nHost: sluice\r\nAccept: text/event-stream\r\n\r\n"
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    stream
}

/// A client that opens a feed and never reads it: once the socket is full
/// nothing polls the feed (not its drop, its cap or its token check), so
/// the connection itself is closed after `--write-stall-timeout-seconds`
/// without progress, and its long-poll place comes back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_feed_whose_client_reads_nothing_is_closed_and_gives_its_place_back() {
    use tokio::io::AsyncReadExt;
    let server = Server::sqlite_with(&[
        "--max-long-polls",
        "1",
        "--write-stall-timeout-seconds",
        "2",
        "--event-feed-drop-after-seconds",
        "3600",
    ])
    .await;
    let put = server
        .client
        .put_table("feed.stall", json!({}))
        .await
        .unwrap();
    assert_eq!(put.status, 201, "{put:?}");
    many_events(&server, "feed.stall").await;
    let mut stream = raw_feed(&server, "?table=feed.stall").await;
    let url = format!("{}/v1/events/stream", server.url);
    let http = reqwest::Client::new();
    // The stalled feed holds the only place...
    tokio::time::sleep(Duration::from_millis(500)).await;
    let refused = http.get(&url).send().await.unwrap();
    assert_eq!(
        refused.status(),
        429,
        "the stalled feed did not take the place"
    );
    // ...until the server gives up on its client.
    place_comes_back(&http, &url, Duration::from_secs(30), "a feed nobody reads").await;
    // What is left in the socket ends, cut short: the server closed it.
    let mut rest = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut rest)).await;
    assert!(read.is_ok(), "the stalled connection is still open");
    let all_events_bytes = 12_000 * 400;
    assert!(
        rest.len() < all_events_bytes,
        "{} bytes: the feed was not cut",
        rest.len()
    );
}

/// A consumer that reads slower than the log grows, staying a page or more
/// behind for longer than `--event-feed-drop-after-seconds`, is sent a last
/// `dropped` event naming where to resume, and the stream ends; resuming
/// there gets the rest, nothing missed and nothing twice. The consumer is
/// a raw socket with a small receive buffer that pauses before it reads.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_consumer_is_dropped_with_a_clear_close_and_resumes_where_it_was() {
    use tokio::io::{AsyncBufReadExt, AsyncReadExt, BufReader};
    let server = Server::sqlite_with(&["--event-feed-drop-after-seconds", "1"]).await;
    let table = json!({});
    assert_eq!(
        server
            .client
            .put_table("feed.slow", table)
            .await
            .unwrap()
            .status,
        201
    );
    many_events(&server, "feed.slow").await;
    let all = ids(&server
        .client
        .all_events(0, Some("feed.slow"))
        .await
        .unwrap());

    let stream = raw_feed(&server, "?table=feed.slow&limit=1").await;
    let mut reader = BufReader::with_capacity(256, stream);
    let mut line = String::new();
    // The head, to its blank line.
    loop {
        line.clear();
        reader.read_line(&mut line).await.unwrap();
        if line == "\r\n" {
            break;
        }
    }
    // Read nothing for 2 s: the feed fills the buffers and stays behind.
    // Then read the chunked body, decoded, to its end.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let mut text = String::new();
    let started = std::time::Instant::now();
    loop {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "not dropped in 60 s: {} bytes read",
            text.len()
        );
        line.clear();
        if reader.read_line(&mut line).await.unwrap() == 0 {
            break;
        }
        let size = usize::from_str_radix(line.trim(), 16).unwrap();
        if size == 0 {
            break;
        }
        let mut chunk = vec![0; size + 2];
        reader.read_exact(&mut chunk).await.unwrap();
        text.push_str(std::str::from_utf8(&chunk[..size]).unwrap());
    }
    let mut seen: Vec<i64> = Vec::new();
    let mut dropped = None;
    for block in text.split("\n\n").filter(|b| !b.trim().is_empty()) {
        let field = |name: &str| {
            block
                .lines()
                .find_map(|l| l.strip_prefix(name))
                .map(str::to_owned)
        };
        match field("event: ").as_deref() {
            Some("dropped") => {
                let data: Value = serde_json::from_str(&field("data: ").unwrap()).unwrap();
                dropped = Some(data);
            }
            Some(_) => seen.push(field("id: ").unwrap().parse().unwrap()),
            None => {} // a keep-alive comment
        }
    }
    let dropped = dropped.unwrap_or_else(|| panic!("no `dropped` event after {seen:?}"));
    assert!(
        dropped["reason"].as_str().unwrap().contains("behind"),
        "{dropped}"
    );
    let last = dropped["last_event_id"].as_i64().unwrap();
    assert_eq!(Some(&last), seen.last(), "{dropped}");
    assert!(seen.len() < all.len(), "dropped only after the end");
    // Resumed there, it gets the rest.
    let mut rest = Feed::open(&server, "?table=feed.slow", Some(last), None).await;
    while seen.len() < all.len() {
        let frame = rest.next(Duration::from_secs(10)).await.expect("the rest");
        match frame.id {
            Some(id) => seen.push(id),
            // Dropped again (on a loaded machine this reader is slow too):
            // resumed again where it says, still nothing missed or twice.
            None if frame.event == "dropped" => {
                let last = frame.data["last_event_id"].as_i64();
                assert_eq!(last.as_ref(), seen.last(), "{}", frame.data);
                rest = Feed::open(&server, "?table=feed.slow", last, None).await;
            }
            None => panic!("a frame without an id: {} {}", frame.event, frame.data),
        }
    }
    assert_eq!(seen, all);
}

/// An open feed outlives the check of the request that opened it: its
/// token is checked again while it is open. Revoked (`sluice token
/// revoke`), the feed ends within seconds with a last `end` event saying
/// why and where it was, and the connection closes; the token is refused
/// from then on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoked_tokens_open_feed_ends_within_seconds_with_a_last_end_event() {
    let server = Server::sqlite_with(&["--auth", "on"]).await;
    let admin = server.client_with(&server.create_token("admin", "admin", &[], &[]));
    let put = admin.put_table("sales.a", json!({})).await.unwrap();
    assert_eq!(put.status, 201, "{put:?}");
    let watcher = server.create_token("watcher", "operator", &[], &[]);
    let all = admin.all_events(0, None).await.unwrap();
    let mut feed = Feed::open(&server, "", None, Some(&watcher)).await;
    let mut seen = Vec::new();
    read(&mut feed, all.len(), &mut seen).await;

    server.revoke_token("watcher");
    let revoked = std::time::Instant::now();
    let end = loop {
        let frame = feed
            .next(Duration::from_secs(15))
            .await
            .expect("the feed ends with an `end` event");
        if frame.event == "end" {
            break frame;
        }
        seen.push(frame);
    };
    let took = revoked.elapsed();
    assert!(took < Duration::from_secs(10), "ended after {took:?}");
    assert_eq!(end.id, None, "{end:?}");
    assert_eq!(end.data["reason"], "token_revoked", "{end:?}");
    assert!(end.data["message"].is_string(), "{end:?}");
    assert_eq!(end.data["last_event_id"].as_i64(), seen.last().unwrap().id);
    assert!(
        feed.next(Duration::from_secs(2)).await.is_none(),
        "nothing after the last event: the connection closes"
    );
    let again = reqwest::Client::new()
        .get(format!("{}/v1/events/stream", server.url))
        .bearer_auth(&watcher)
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), 401);
}

/// Every open feed takes a place among the long-polls: over
/// `--max-long-polls` the next one is refused, 429 with the JSON error
/// body, and the place comes back when the feed's client goes away.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn open_feeds_count_against_the_long_poll_limit() {
    let server = Server::sqlite_with(&["--max-long-polls", "1"]).await;
    let put = server.client.put_table("sales.a", json!({})).await.unwrap();
    assert_eq!(put.status, 201, "{put:?}");
    let open = Feed::open(&server, "", None, None).await;
    let url = format!("{}/v1/events/stream", server.url);
    let http = reqwest::Client::new();
    let refused = http.get(&url).send().await.unwrap();
    assert_eq!(refused.status(), 429);
    let body: Value = refused.json().await.expect("a JSON error body");
    assert_eq!(body["error"]["type"], "too_many_long_polls", "{body}");
    // A lease's long-poll shares the limit.
    let ask = json!({ "mode": "read", "ttl_seconds": 60, "holder": "h", "wait_seconds": 1 });
    let acquire = server
        .call(Method::POST, "/v1/tables/sales.a/leases", Some(ask))
        .await;
    assert_eq!(acquire.status, 429, "{}", acquire.body);

    drop(open);
    place_comes_back(&http, &url, Duration::from_secs(10), "the closed feed").await;
}

/// A new feed at `url` is refused (429) until a place comes back `within`.
async fn place_comes_back(http: &reqwest::Client, url: &str, within: Duration, holder: &str) {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        let answer = http.get(url).send().await.unwrap();
        if answer.status() == 200 {
            return;
        }
        assert_eq!(answer.status(), 429);
        assert!(
            tokio::time::Instant::now() < deadline,
            "{holder} kept its place for {within:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
