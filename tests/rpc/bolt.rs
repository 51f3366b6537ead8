//! SOFARPC Bolt through tern's generic proxy, with a real Bolt client and server that nobody
//! on this team wrote: sofa-bolt-node 2.0.1 (npm), driven by the scripts in `tests/rpc/node/`
//! (hessian 2 and protobuf content). The scripts print JSON lines; the tests read them.
//!
//! Node and the npm packages are found through `BOLT_NODE_DIR` (a directory holding the
//! scripts and their `node_modules`; `.ci/run` runs `npm ci` there and sets it), else
//! `tests/rpc/node` when its `node_modules` is installed. Without them the tests that need
//! them are skipped with a notice, except in CI where they fail. The tests with frames built
//! here from the protocol's layout run everywhere.

use crate::support::{bootstrap, start_tern, static_cluster, within};
use serde_json::Value;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tern::protocol::xprotocol::bolt::{
    CODEC_PROTOBUF, Command, CommandHead, DEFAULT_MAX_FRAME_SIZE, ResponseStatus,
    SOFA_REQUEST_CLASS,
};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, Command as Process};

/// The directory with `server.js`, `client.js` and an installed `node_modules`, or `None`
/// (with a notice) when there is none and this is not CI.
fn node_dir() -> Option<PathBuf> {
    let (dir, from_env) = match std::env::var_os("BOLT_NODE_DIR").filter(|d| !d.is_empty()) {
        Some(d) => (PathBuf::from(d), true),
        None => (
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/rpc/node"),
            false,
        ),
    };
    let installed = dir
        .join("node_modules/sofa-bolt-node/package.json")
        .exists()
        && std::process::Command::new("node")
            .arg("--version")
            .stdout(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
    if !installed {
        assert!(
            !from_env && std::env::var_os("CI").is_none(),
            "BOLT_NODE_DIR={} (or CI) is set but node or sofa-bolt-node is missing there: run `npm ci` in tests/rpc/node",
            dir.display()
        );
        eprintln!(
            "notice: no sofa-bolt-node (BOLT_NODE_DIR unset, no node_modules in {}); skipping",
            dir.display()
        );
        return None;
    }
    Some(dir)
}

/// A sofa-bolt-node server (`server.js`): its port and the JSON lines it printed.
struct BoltServer {
    child: Child,
    addr: SocketAddr,
    lines: Arc<Mutex<Vec<Value>>>,
}

impl BoltServer {
    async fn start(dir: &PathBuf, name: &str) -> BoltServer {
        let mut child = Process::new("node")
            .arg(dir.join("server.js"))
            .args(["--name", name])
            .current_dir(dir)
            // The server exits when its stdin closes: no orphan if a test panics.
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("node server.js");
        let stdout = child.stdout.take().expect("stdout");
        let lines = Arc::new(Mutex::new(Vec::new()));
        let (port_tx, port_rx) = tokio::sync::oneshot::channel();
        let sink = lines.clone();
        tokio::spawn(async move {
            let mut port_tx = Some(port_tx);
            let mut reader = BufReader::new(stdout).lines();
            while let Ok(Some(line)) = reader.next_line().await {
                let Ok(v) = serde_json::from_str::<Value>(&line) else {
                    continue;
                };
                if v["event"] == "listening"
                    && let Some(tx) = port_tx.take()
                {
                    let _ = tx.send(v["port"].as_u64().unwrap_or(0) as u16);
                }
                sink.lock().unwrap().push(v);
            }
        });
        let port = within(20, port_rx).await.expect("server.js listening");
        BoltServer {
            child,
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
            lines,
        }
    }

    fn events(&self, event: &str) -> Vec<Value> {
        self.lines
            .lock()
            .unwrap()
            .iter()
            .filter(|v| v["event"] == event)
            .cloned()
            .collect()
    }

    async fn kill(&mut self) {
        self.child.start_kill().expect("kill server.js");
        let _ = within(10, self.child.wait()).await;
    }
}

/// Run `client.js` against `addr` with these flags and return its JSON lines.
async fn client(dir: &PathBuf, addr: SocketAddr, flags: &[&str]) -> Vec<Value> {
    let out = within(60, spawn_client(dir, addr, flags).wait_with_output())
        .await
        .expect("client.js");
    parse_lines(&out.stdout)
}

fn spawn_client(dir: &PathBuf, addr: SocketAddr, flags: &[&str]) -> Child {
    Process::new("node")
        .arg(dir.join("client.js"))
        .args(["--addr", &addr.to_string()])
        .args(flags)
        .current_dir(dir)
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("node client.js")
}

fn parse_lines(out: &[u8]) -> Vec<Value> {
    String::from_utf8_lossy(out)
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

fn of(lines: &[Value], event: &str) -> Vec<Value> {
    lines
        .iter()
        .filter(|v| v["event"] == event)
        .cloned()
        .collect()
}

const SERVICE_MATCH: &str = "type.googleapis.com/envoy.extensions.filters.network.generic_proxy.matcher.v3.ServiceMatchInput";
const METHOD_MATCH: &str = "type.googleapis.com/envoy.extensions.filters.network.generic_proxy.matcher.v3.MethodMatchInput";
const PROPERTY_MATCH: &str = "type.googleapis.com/envoy.extensions.filters.network.generic_proxy.matcher.v3.PropertyMatchInput";

/// One route of a matcher list: every `(input type URL, extra input fields, exact value)`
/// must match.
fn route(conditions: &[(&str, &str, &str)], cluster: &str) -> String {
    let single = |indent: &str, (input, extra, value): &(&str, &str, &str)| {
        format!(
            "{indent}single_predicate:\n{indent}  input: {{ name: in, typed_config: {{ \"@type\": {input} {extra} }} }}\n{indent}  value_match: {{ exact: \"{value}\" }}\n"
        )
    };
    let predicate = match conditions {
        [one] => single("              ", one),
        many => {
            let mut p = String::from("              and_matcher:\n                predicate:\n");
            for c in many {
                // A list item: the first line after "- ", the others aligned with it.
                p.push_str(
                    &single("                - ", c)
                        .replace("\n                -   ", "\n                    "),
                );
            }
            p
        }
    };
    format!(
        r#"
          - predicate:
{predicate}            on_match:
              action:
                name: route
                typed_config:
                  "@type": type.googleapis.com/envoy.extensions.filters.network.generic_proxy.action.v3.RouteAction
                  cluster: {cluster}
                  timeout: 10s"#
    )
}

/// A listener with the generic proxy, the Bolt codec (tern's `BoltCodecConfig`) and these
/// routes (a matcher list), as a YAML `Listener` at column 0 (what LDS carries).
fn bolt_listener_resource(name: &str, codec_extra: &str, routes: &[String]) -> String {
    format!(
        r#"name: {name}
address: {{ socket_address: {{ address: 127.0.0.1, port_value: 0 }} }}
filter_chains:
- filters:
  - name: envoy.filters.network.generic_proxy
    typed_config:
      "@type": type.googleapis.com/envoy.extensions.filters.network.generic_proxy.v3.GenericProxy
      stat_prefix: {name}
      codec_config:
        name: bolt
        typed_config:
          "@type": type.googleapis.com/tern.generic_proxy.codecs.bolt.v1.BoltCodecConfig
          {codec_extra}
      filters:
      - name: envoy.filters.generic.router
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.generic_proxy.router.v3.Router
      route_config:
        name: {name}
        routes:
          matcher_list:
            matchers:{routes}
"#,
        // The route snippets are written for a list at 10 spaces; this one is at 12.
        routes = routes.concat().replace('\n', "\n  ")
    )
}

/// The same listener as an item of a bootstrap's `static_resources.listeners`.
fn bolt_listener(name: &str, codec_extra: &str, routes: &[String]) -> String {
    let body = bolt_listener_resource(name, codec_extra, routes);
    let mut item = String::from("\n");
    for (i, line) in body.lines().enumerate() {
        item.push_str(if i == 0 { "  - " } else { "    " });
        item.push_str(line);
        item.push('\n');
    }
    item
}

/// Every request to cluster `cluster`.
fn everything_to(cluster: &str) -> Vec<String> {
    vec![route(
        &[(
            PROPERTY_MATCH,
            ", property_name: bolt.class_name",
            SOFA_REQUEST_CLASS,
        )],
        cluster,
    )]
}

/// tern with a Bolt listener `bolt` sending everything to cluster `a`, the server.
async fn tern_in_front_of(server: &BoltServer) -> (tern::server::Server, std::net::SocketAddr) {
    let tern = start_tern(&bootstrap(
        &[bolt_listener("bolt", "", &everything_to("a"))],
        &[static_cluster("a", &[server.addr], "")],
    ))
    .await;
    let addr = tern.listener_addr("bolt").unwrap();
    (tern, addr)
}

fn counter(tern: &tern::server::Server, name: &str) -> u64 {
    tern.world.stats.counter_value(name).unwrap_or(0)
}

#[tokio::test]
async fn requests_from_a_real_client_are_proxied_and_answered() {
    let Some(dir) = node_dir() else { return };
    let server = BoltServer::start(&dir, "A").await;
    let (_tern, addr) = tern_in_front_of(&server).await;
    // 200 hessian 2 requests, 32 at a time on one connection.
    let lines = client(
        &dir,
        addr,
        &[
            "--service",
            "com.example.Hello:1.0",
            "--method",
            "echo",
            "--count",
            "200",
            "--concurrency",
            "32",
        ],
    )
    .await;
    let responses = of(&lines, "response");
    assert_eq!(responses.len(), 200, "{lines:?}");
    for r in &responses {
        assert_eq!(r["ok"], true, "{r}");
        assert_eq!(r["status"], 0);
        let id = r["id"].as_u64().unwrap();
        assert_eq!(r["value"], format!("A:req{}", id - 1), "{r}");
    }
    // Protobuf content too: tern never looks into it.
    let lines = client(
        &dir,
        addr,
        &[
            "--service",
            "tern.test.EchoService:1.0",
            "--method",
            "upper",
            "--codec",
            "protobuf",
            "--count",
            "20",
            "--concurrency",
            "8",
        ],
    )
    .await;
    let responses = of(&lines, "response");
    assert_eq!(responses.len(), 20, "{lines:?}");
    assert!(
        responses
            .iter()
            .all(|r| r["ok"] == true && r["value"].as_str().unwrap().starts_with("A:REQ")),
        "{responses:?}"
    );
    // Answers out of order on the shared upstream connection still reach the right request.
    let lines = client(
        &dir,
        addr,
        &[
            "--service",
            "com.example.Hello:1.0",
            "--method",
            "slow",
            "--delays",
            "120,0,60,20",
            "--count",
            "16",
            "--concurrency",
            "16",
        ],
    )
    .await;
    let responses = of(&lines, "response");
    assert_eq!(responses.len(), 16, "{lines:?}");
    let order: Vec<u64> = responses
        .iter()
        .map(|r| r["id"].as_u64().unwrap())
        .collect();
    for r in &responses {
        let id = r["id"].as_u64().unwrap();
        assert_eq!(r["value"], format!("A:req{}", id - 1), "{r}");
    }
    assert_ne!(
        order,
        (1..=16).collect::<Vec<u64>>(),
        "answers came back in order"
    );
    // A server-side exception comes back with the server's own status (SERVER_EXCEPTION).
    let lines = client(
        &dir,
        addr,
        &["--service", "com.example.Hello:1.0", "--method", "fail"],
    )
    .await;
    let r = &of(&lines, "response")[0];
    assert_eq!(r["ok"], false);
    assert_eq!(r["status"], 2, "{r}");
    assert!(
        r["error"].as_str().unwrap().contains("failed on purpose"),
        "{r}"
    );
    assert_eq!(server.events("request").len(), 237);
}

#[tokio::test]
async fn requests_are_routed_by_service_and_method_to_two_clusters() {
    let Some(dir) = node_dir() else { return };
    let a = BoltServer::start(&dir, "A").await;
    let b = BoltServer::start(&dir, "B").await;
    let routes = vec![
        // EchoService.upper → b; the rest of EchoService → a; Hello.upper → a; Hello → b.
        route(
            &[
                (SERVICE_MATCH, "", "tern.test.EchoService:1.0"),
                (METHOD_MATCH, "", "upper"),
            ],
            "b",
        ),
        route(&[(SERVICE_MATCH, "", "tern.test.EchoService:1.0")], "a"),
        // sofa-bolt-node's hessian requests name the method only inside the SofaRequest.
        route(
            &[
                (SERVICE_MATCH, "", "com.example.Hello:1.0"),
                (METHOD_MATCH, "", "upper"),
            ],
            "a",
        ),
        route(&[(SERVICE_MATCH, "", "com.example.Hello:1.0")], "b"),
    ];
    let tern = start_tern(&bootstrap(
        &[bolt_listener("bolt", "", &routes)],
        &[
            static_cluster("a", &[a.addr], ""),
            static_cluster("b", &[b.addr], ""),
        ],
    ))
    .await;
    let addr = tern.listener_addr("bolt").unwrap();
    let run = |service: &'static str, method: &'static str, codec: &'static str| {
        let dir = dir.clone();
        async move {
            let lines = client(
                &dir,
                addr,
                &[
                    "--service",
                    service,
                    "--method",
                    method,
                    "--codec",
                    codec,
                    "--count",
                    "10",
                    "--concurrency",
                    "10",
                ],
            )
            .await;
            let values: Vec<String> = of(&lines, "response")
                .iter()
                .map(|r| r["value"].as_str().unwrap_or("").to_owned())
                .collect();
            assert_eq!(values.len(), 10, "{lines:?}");
            values
        }
    };
    let upper = run("tern.test.EchoService:1.0", "upper", "protobuf").await;
    assert!(upper.iter().all(|v| v.starts_with("B:REQ")), "{upper:?}");
    let echo = run("tern.test.EchoService:1.0", "echo", "protobuf").await;
    assert!(echo.iter().all(|v| v.starts_with("A:req")), "{echo:?}");
    let hello = run("com.example.Hello:1.0", "echo", "hessian2").await;
    assert!(hello.iter().all(|v| v.starts_with("B:req")), "{hello:?}");
    let hello_upper = run("com.example.Hello:1.0", "upper", "hessian2").await;
    assert!(
        hello_upper.iter().all(|v| v.starts_with("A:REQ")),
        "{hello_upper:?}"
    );
    assert_eq!(a.events("request").len(), 20);
    assert_eq!(b.events("request").len(), 20);

    // A service no route names: tern answers NO_PROCESSOR itself.
    let lines = client(
        &dir,
        addr,
        &[
            "--service",
            "com.example.Nobody:1.0",
            "--method",
            "echo",
            "--count",
            "3",
        ],
    )
    .await;
    let rs = of(&lines, "response");
    assert_eq!(rs.len(), 3, "{lines:?}");
    assert!(
        rs.iter()
            .all(|r| r["ok"] == false && r["status"] == ResponseStatus::NO_PROCESSOR.0),
        "{rs:?}"
    );
    assert_eq!(a.events("request").len() + b.events("request").len(), 40);
}

#[tokio::test]
async fn heartbeats_are_answered_by_tern() {
    let Some(dir) = node_dir() else { return };
    let server = BoltServer::start(&dir, "A").await;
    let (tern, addr) = tern_in_front_of(&server).await;
    let lines = client(
        &dir,
        addr,
        &[
            "--service",
            "com.example.Hello:1.0",
            "--heartbeats",
            "3",
            "--count",
            "2",
        ],
    )
    .await;
    let acks = of(&lines, "heartbeat_ack");
    assert_eq!(acks.len(), 3, "{lines:?}");
    let mut ids: Vec<u64> = acks.iter().map(|a| a["id"].as_u64().unwrap()).collect();
    ids.sort();
    assert_eq!(ids, [1_000_000, 1_000_001, 1_000_002]);
    assert_eq!(of(&lines, "response").len(), 2);
    // The server answers heartbeats too (see server.js), but none reached it.
    assert_eq!(server.events("heartbeat").len(), 0);
    assert_eq!(server.events("request").len(), 2);
    assert_eq!(
        counter(&tern, "generic_proxy.bolt.downstream_rq_heartbeat"),
        3
    );
}

#[tokio::test]
async fn oneway_requests_are_forwarded_and_never_wait() {
    let Some(dir) = node_dir() else { return };
    let server = BoltServer::start(&dir, "A").await;
    let (tern, addr) = tern_in_front_of(&server).await;
    // `notify` never answers; the client does not wait for it.
    let lines = client(
        &dir,
        addr,
        &[
            "--service",
            "com.example.Hello:1.0",
            "--method",
            "notify",
            "--oneway",
            "--count",
            "5",
            "--linger",
            "300",
        ],
    )
    .await;
    assert_eq!(of(&lines, "sent").len(), 5, "{lines:?}");
    assert!(of(&lines, "response").is_empty(), "{lines:?}");
    assert!(
        crate::support::eventually(10, || server.events("request").len() == 5).await,
        "{:?}",
        server.events("request")
    );
    assert_eq!(counter(&tern, "generic_proxy.bolt.downstream_rq_oneway"), 5);
    // No request stays pending in tern for the one-way ones.
    let active = tern
        .world
        .stats
        .gauge_value("generic_proxy.bolt.downstream_rq_active");
    assert!(
        crate::support::eventually(5, || tern
            .world
            .stats
            .gauge_value("generic_proxy.bolt.downstream_rq_active")
            .unwrap_or(0)
            == 0)
        .await,
        "{active:?}"
    );
}

#[tokio::test]
async fn upstream_killed_mid_flight_answers_every_pending_request() {
    let Some(dir) = node_dir() else { return };
    let mut server = BoltServer::start(&dir, "A").await;
    let (_tern, addr) = tern_in_front_of(&server).await;
    // 20 requests the server never answers, all in flight at once; the client would wait 30 s.
    let pending = spawn_client(
        &dir,
        addr,
        &[
            "--service",
            "com.example.Hello:1.0",
            "--method",
            "hang",
            "--count",
            "20",
            "--concurrency",
            "20",
            "--timeout",
            "30000",
        ],
    );
    assert!(
        crate::support::eventually(20, || server.events("request").len() == 20).await,
        "{:?}",
        server.events("request")
    );
    server.kill().await;
    let started = std::time::Instant::now();
    let out = within(20, pending.wait_with_output()).await.unwrap();
    let lines = parse_lines(&out.stdout);
    let rs = of(&lines, "response");
    assert_eq!(rs.len(), 20, "{lines:?}");
    for r in &rs {
        assert_eq!(r["ok"], false, "{r}");
        assert_eq!(r["status"], ResponseStatus::CONNECTION_CLOSED.0, "{r}");
    }
    assert!(of(&lines, "timeout").is_empty(), "{lines:?}");
    assert!(started.elapsed() < Duration::from_secs(10));
    // The downstream connection survives: the next request gets a prompt answer (no host
    // accepts connections now, so an error of tern's own).
    let lines = client(
        &dir,
        addr,
        &["--service", "com.example.Hello:1.0", "--method", "echo"],
    )
    .await;
    let r = &of(&lines, "response")[0];
    assert_eq!(r["ok"], false, "{r}");
    assert_eq!(r["status"], ResponseStatus::ERROR_COMM.0, "{r}");
}

#[tokio::test]
async fn route_timeout_answers_with_bolt_timeout() {
    let Some(dir) = node_dir() else { return };
    let server = BoltServer::start(&dir, "A").await;
    let routes: Vec<String> = everything_to("a")
        .into_iter()
        .map(|r| r.replace("timeout: 10s", "timeout: 0.3s"))
        .collect();
    let tern = start_tern(&bootstrap(
        &[bolt_listener("bolt", "", &routes)],
        &[static_cluster("a", &[server.addr], "")],
    ))
    .await;
    let addr = tern.listener_addr("bolt").unwrap();
    let lines = client(
        &dir,
        addr,
        &[
            "--service",
            "com.example.Hello:1.0",
            "--method",
            "hang",
            "--count",
            "3",
            "--concurrency",
            "3",
            "--timeout",
            "10000",
        ],
    )
    .await;
    let rs = of(&lines, "response");
    assert_eq!(rs.len(), 3, "{lines:?}");
    for r in &rs {
        assert_eq!(r["status"], ResponseStatus::TIMEOUT.0, "{r}");
        assert!(r["ms"].as_u64().unwrap() < 5000, "{r}");
    }
    // Requests answered in time still go through.
    let lines = client(
        &dir,
        addr,
        &["--service", "com.example.Hello:1.0", "--method", "echo"],
    )
    .await;
    assert_eq!(of(&lines, "response")[0]["value"], "A:req0");
}

/// Frames built here from the layout in SOFABolt's protocol documentation, for tests that
/// need bytes no well-behaved client sends.
fn request_frame(id: u32, service: &str) -> Vec<u8> {
    Command::build(
        CommandHead::request(id, false, 3000).codec(CODEC_PROTOBUF),
        SOFA_REQUEST_CLASS.as_bytes(),
        &[
            (b"service", service.as_bytes()),
            (b"sofa_head_method_name", b"echo"),
        ],
        b"\x0a\x02hi",
    )
    .unwrap()
    .as_bytes()
    .to_vec()
}

/// Read whole Bolt frames from `s` until `n` have arrived or the connection closes.
async fn read_frames(s: &mut tokio::net::TcpStream, n: usize) -> (Vec<Command>, bool) {
    let mut buf = bytes::BytesMut::new();
    let mut frames = Vec::new();
    loop {
        while let Some(f) = Command::decode(&mut buf, DEFAULT_MAX_FRAME_SIZE).unwrap() {
            frames.push(f);
        }
        if frames.len() >= n {
            return (frames, false);
        }
        let mut chunk = [0u8; 4096];
        match within(10, s.read(&mut chunk)).await {
            Ok(0) | Err(_) => return (frames, true),
            Ok(k) => buf.extend_from_slice(&chunk[..k]),
        }
    }
}

#[tokio::test]
async fn malformed_and_truncated_frames_close_the_connection() {
    // No upstream is needed: the frames never get that far, and routed ones fail fast.
    let tern = start_tern(&bootstrap(
        &[bolt_listener(
            "bolt",
            "max_frame_size: 1024",
            &everything_to("a"),
        )],
        &[static_cluster("a", &[crate::support::dead_addr()], "")],
    ))
    .await;
    let addr = tern.listener_addr("bolt").unwrap();
    let connect = || async {
        within(5, tokio::net::TcpStream::connect(addr))
            .await
            .unwrap()
    };

    // A heartbeat is answered, then a bad command type closes the connection.
    let mut s = connect().await;
    let hb = Command::build(CommandHead::heartbeat(5), &[], &[], &[]).unwrap();
    let mut bytes = hb.as_bytes().to_vec();
    bytes.extend_from_slice(&[0x01, 0x07, 0, 1, 1, 0, 0, 0, 9]);
    s.write_all(&bytes).await.unwrap();
    let (frames, closed) = read_frames(&mut s, 2).await;
    assert_eq!(frames.len(), 1);
    assert!(frames[0].is_heartbeat() && frames[0].request_id() == 5);
    assert!(closed, "a bad command type closes the connection");

    // Not Bolt at all.
    let mut s = connect().await;
    s.write_all(b"GET / HTTP/1.1\r\nhost: x\r\n\r\n")
        .await
        .unwrap();
    assert_eq!(read_frames(&mut s, 1).await, (vec![], true));

    // A negative content length.
    let mut s = connect().await;
    let mut bad = request_frame(1, "com.example.Hello:1.0");
    bad[18] = 0xff;
    s.write_all(&bad).await.unwrap();
    assert_eq!(read_frames(&mut s, 1).await, (vec![], true));

    // Over max_frame_size: closed as soon as the header is read, the rest never sent.
    let mut s = connect().await;
    let big = Command::build(
        CommandHead::request(2, false, 3000),
        SOFA_REQUEST_CLASS.as_bytes(),
        &[(b"service", b"com.example.Hello:1.0")],
        &vec![0u8; 4096],
    )
    .unwrap();
    s.write_all(&big.as_bytes()[..22]).await.unwrap();
    assert_eq!(read_frames(&mut s, 1).await, (vec![], true));

    // A header map whose lengths run past its end.
    let mut s = connect().await;
    let mut bad = request_frame(3, "com.example.Hello:1.0");
    let header_at = 22 + SOFA_REQUEST_CLASS.len();
    bad[header_at..header_at + 4].copy_from_slice(&[0, 0, 0x7f, 0]);
    s.write_all(&bad).await.unwrap();
    assert_eq!(read_frames(&mut s, 1).await, (vec![], true));

    // Truncated: half a frame, then the client closes its side. tern closes too, no answer.
    let mut s = connect().await;
    let whole = request_frame(4, "com.example.Hello:1.0");
    s.write_all(&whole[..whole.len() / 2]).await.unwrap();
    s.shutdown().await.unwrap();
    assert_eq!(read_frames(&mut s, 1).await, (vec![], true));

    // tern is still serving: a whole request is answered (ERROR_COMM: the host is down).
    let mut s = connect().await;
    s.write_all(&request_frame(6, "com.example.Hello:1.0"))
        .await
        .unwrap();
    let (frames, _) = read_frames(&mut s, 1).await;
    assert_eq!(frames.len(), 1);
    assert_eq!(frames[0].request_id(), 6);
    assert_eq!(frames[0].status(), ResponseStatus::ERROR_COMM);
    let errors = counter(&tern, "generic_proxy.bolt.downstream_rq_decoding_error");
    assert!(errors >= 4, "protocol errors counted: {errors}");
}

/// The Bolt codec config arrives over LDS as well as in the bootstrap: a listener with it
/// serves Bolt, `/config_dump` shows tern's own message with its fields, and an invalid one is
/// NACKed with a reason an operator can read.
#[tokio::test]
async fn bolt_codec_config_over_lds_and_in_config_dump() {
    use crate::support::ads::{AdsServer, Batch, dynamic_resources_yaml};
    use envoy_types::pb::envoy::config::listener::v3::Listener;
    use prost::Name;
    let listener = |name: &str, extra: &str| -> Listener {
        tern::config::decode_message_file(
            std::path::Path::new("l.yaml"),
            bolt_listener_resource(name, extra, &everything_to("a")).as_bytes(),
        )
        .expect("listener YAML")
    };
    // Cluster `a` (a host nobody listens on) over CDS, the listener over LDS.
    let dead = crate::support::dead_addr();
    let cluster: envoy_types::pb::envoy::config::cluster::v3::Cluster =
        tern::config::decode_message_file(
            std::path::Path::new("c.yaml"),
            format!(
                "name: a\ntype: STATIC\nconnect_timeout: 1s\nload_assignment: {{cluster_name: a, endpoints: [{{lb_endpoints: [{{endpoint: {{address: {{socket_address: {{address: '{}', port_value: {}}}}}}}}}]}}]}}\n",
                dead.ip(),
                dead.port()
            )
            .as_bytes(),
        )
        .expect("cluster YAML");
    let ads = AdsServer::tcp().await;
    ads.apply(
        Batch::new()
            .cluster(&cluster)
            .listener(&listener("bolt_lds", "max_frame_size: 2048")),
    );
    let yaml = format!(
        "admin:\n  address: {{ socket_address: {{ address: 127.0.0.1, port_value: 0 }} }}\n{}static_resources:\n  clusters:\n{}",
        dynamic_resources_yaml("xds-grpc", true),
        ads.cluster_yaml("xds-grpc"),
    );
    let tern = start_tern(&yaml).await;
    within(10, tern.wait_initialized()).await;
    let mut addr = None;
    assert!(
        crate::support::eventually(10, || {
            addr = tern.listener_addr("bolt_lds");
            addr.is_some()
        })
        .await
    );
    let addr = addr.unwrap();

    // It speaks Bolt: a heartbeat is answered, a request gets tern's ERROR_COMM (dead host),
    // and the LDS-given limit holds (a 4 KiB frame closes the connection).
    let mut s = within(5, tokio::net::TcpStream::connect(addr))
        .await
        .unwrap();
    let mut bytes = Command::build(CommandHead::heartbeat(1), &[], &[], &[])
        .unwrap()
        .as_bytes()
        .to_vec();
    bytes.extend(request_frame(2, "com.example.Hello:1.0"));
    s.write_all(&bytes).await.unwrap();
    let (frames, _) = read_frames(&mut s, 2).await;
    assert_eq!(frames.len(), 2, "{frames:?}");
    assert!(frames[0].is_heartbeat());
    assert_eq!(frames[1].status(), ResponseStatus::ERROR_COMM);
    let big = Command::build(
        CommandHead::request(3, false, 3000),
        SOFA_REQUEST_CLASS.as_bytes(),
        &[],
        &vec![0u8; 4096],
    )
    .unwrap();
    s.write_all(&big.as_bytes()[..22]).await.unwrap();
    assert_eq!(read_frames(&mut s, 1).await, (vec![], true));

    // /config_dump prints the codec config with its type URL and fields.
    let admin = tern.admin_addr().expect("admin");
    let got = crate::support::get(&crate::support::h1_client(), admin, "x", "/config_dump").await;
    assert_eq!(got.status, 200);
    let type_url = tern::config::tern::bolt::BoltCodecConfig::type_url();
    let dump: Value = serde_json::from_str(&got.body).unwrap();
    let mut found = None;
    fn walk<'a>(v: &'a Value, url: &str, found: &mut Option<&'a Value>) {
        match v {
            Value::Object(m) => {
                if m.get("@type").and_then(Value::as_str) == Some(url) {
                    *found = Some(v);
                }
                m.values().for_each(|x| walk(x, url, found));
            }
            Value::Array(a) => a.iter().for_each(|x| walk(x, url, found)),
            _ => {}
        }
    }
    walk(&dump, &type_url, &mut found);
    let found = found.unwrap_or_else(|| panic!("{type_url} not in /config_dump"));
    assert_eq!(found["max_frame_size"], 2048, "{found}");

    // An invalid codec config is NACKed, naming the field; the listener keeps serving.
    let before = ads.request_count();
    ads.apply(Batch::new().listener(&listener("bolt_lds", "max_frame_size: 10")));
    let nack = ads
        .wait_for_since(
            before,
            |r| r.type_url() == Listener::type_url() && r.is_nack(),
            Duration::from_secs(5),
        )
        .await;
    let detail = format!("{nack:?}");
    assert!(
        detail.contains("max_frame_size: 10 is smaller than a Bolt request header"),
        "{detail}"
    );
    let mut s = within(5, tokio::net::TcpStream::connect(addr))
        .await
        .unwrap();
    s.write_all(&request_frame(4, "com.example.Hello:1.0"))
        .await
        .unwrap();
    assert_eq!(read_frames(&mut s, 1).await.0.len(), 1);
}

/// Bolt beside Dubbo on one listener (tern's `MultiCodecConfig`): each connection's first bytes
/// pick its codec, and each gets answers in its own protocol.
#[tokio::test]
async fn bolt_and_dubbo_share_a_listener() {
    use tern::protocol::xprotocol::dubbo;
    let multi = r#""@type": type.googleapis.com/tern.generic_proxy.codecs.multi.v3.MultiCodecConfig
              codecs:
              - name: dubbo
                typed_config: { "@type": type.googleapis.com/envoy.extensions.filters.network.generic_proxy.codecs.dubbo.v3.DubboCodecConfig }
              - name: bolt
                typed_config: { "@type": type.googleapis.com/tern.generic_proxy.codecs.bolt.v1.BoltCodecConfig, max_frame_size: 4096 }"#;
    let listener = bolt_listener("rpc", "", &everything_to("a")).replace(
        "\"@type\": type.googleapis.com/tern.generic_proxy.codecs.bolt.v1.BoltCodecConfig",
        multi,
    );
    let tern = start_tern(&bootstrap(
        &[listener],
        &[static_cluster("a", &[crate::support::dead_addr()], "")],
    ))
    .await;
    let addr = tern.listener_addr("rpc").unwrap();

    let mut bolt = within(5, tokio::net::TcpStream::connect(addr))
        .await
        .unwrap();
    let hb = Command::build(CommandHead::heartbeat(7), &[], &[], &[]).unwrap();
    bolt.write_all(hb.as_bytes()).await.unwrap();
    let (frames, _) = read_frames(&mut bolt, 1).await;
    assert_eq!(frames.len(), 1);
    assert!(frames[0].is_heartbeat() && !frames[0].is_request());
    assert_eq!(frames[0].request_id(), 7);
    // The Bolt codec's own limit applies on its connections.
    let big = Command::build(
        CommandHead::request(8, false, 3000),
        SOFA_REQUEST_CLASS.as_bytes(),
        &[],
        &vec![0u8; 8192],
    )
    .unwrap();
    bolt.write_all(&big.as_bytes()[..22]).await.unwrap();
    assert_eq!(read_frames(&mut bolt, 1).await, (vec![], true));

    let mut d = within(5, tokio::net::TcpStream::connect(addr))
        .await
        .unwrap();
    d.write_all(&dubbo::build::heartbeat(9)).await.unwrap();
    let mut head = [0u8; 16];
    within(5, d.read_exact(&mut head)).await.unwrap();
    assert_eq!(&head[..2], &[0xda, 0xbb], "a Dubbo answer");
    assert_eq!(u64::from_be_bytes(head[4..12].try_into().unwrap()), 9);
}
