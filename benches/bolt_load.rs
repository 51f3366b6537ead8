//! Bolt through tern under load: requests per second and tern's CPU time per request, with a
//! fixed number of requests in flight (64 by default) on ONE downstream connection.
//!
//! ```sh
//! cargo bench --bench bolt_load                       # builds tern (release) and runs
//! cargo bench --bench bolt_load -- --duration 20 --inflight 64
//! TERN_BIN=target/release/tern cargo bench --bench bolt_load
//! ```
//!
//! What runs, all on loopback: a Bolt upstream written here on tern's codec (answers every
//! request at once with a SofaResponse carrying the request's content), tern as a child process
//! (`--concurrency 1`, a generic_proxy listener with the Bolt codec routing on the `service`
//! header), and a load generator that keeps `--inflight` requests (protobuf-style SOFARPC
//! requests with the SOFARPC header map and a 100-byte content) outstanding on one connection.
//! The upstream and the generator share this process on a single-threaded runtime. First the
//! generator runs straight against the upstream (`direct`), then through tern.
//!
//! tern's CPU is the change of `utime + stime` in `/proc/PID/stat` (all threads) over the
//! measured window, divided by the responses received in it; the window follows a 1 s warm-up.
//! The figure moves with whatever else runs on the machine: compare runs made side by side.

use bytes::BytesMut;
use std::collections::HashMap;
use std::io::Write as _;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command as Process, Stdio};
use std::time::{Duration, Instant};
use tern::protocol::xprotocol::bolt::{
    CODEC_PROTOBUF, Command, CommandHead, DEFAULT_MAX_FRAME_SIZE, ResponseStatus,
    SOFA_REQUEST_CLASS, SOFA_RESPONSE_CLASS,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

struct Args {
    duration: Duration,
    inflight: usize,
    tern: PathBuf,
}

fn args() -> Args {
    let mut a = Args {
        duration: Duration::from_secs(10),
        inflight: 64,
        tern: std::env::var_os("TERN_BIN")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_tern"))),
    };
    let argv: Vec<String> = std::env::args().collect();
    let mut i = 1;
    while i < argv.len() {
        let next = argv.get(i + 1).cloned().unwrap_or_default();
        match argv[i].as_str() {
            "--duration" => a.duration = Duration::from_secs(next.parse().expect("--duration")),
            "--inflight" => a.inflight = next.parse().expect("--inflight"),
            "--tern" => a.tern = PathBuf::from(next),
            _ => {
                i += 1;
                continue;
            }
        }
        i += 2;
    }
    a
}

/// The Bolt upstream: answers each request with a success response carrying its content.
async fn upstream() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            s.set_nodelay(true).ok();
            tokio::spawn(async move {
                let mut buf = BytesMut::with_capacity(64 << 10);
                let mut out = BytesMut::with_capacity(64 << 10);
                loop {
                    match s.read_buf(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(_) => {}
                    }
                    while let Ok(Some(rq)) = Command::decode(&mut buf, DEFAULT_MAX_FRAME_SIZE) {
                        if rq.is_oneway() {
                            continue;
                        }
                        let rs = Command::build(
                            CommandHead::response(rq.request_id(), ResponseStatus::SUCCESS)
                                .codec(rq.codec()),
                            SOFA_RESPONSE_CLASS.as_bytes(),
                            &[],
                            rq.content(),
                        )
                        .expect("response fits");
                        rs.encode(&mut out);
                    }
                    if s.write_all(&out).await.is_err() {
                        return;
                    }
                    out.clear();
                }
            });
        }
    });
    addr
}

/// What one load run measured.
struct Run {
    responses: u64,
    errors: u64,
    elapsed: Duration,
    latencies_us: Vec<u64>,
    tern_ticks: Option<u64>,
}

fn ticks_of(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name (which may hold spaces) start at field 3.
    let rest = &stat[stat.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    Some(f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?)
}

fn clk_tck() -> u64 {
    Process::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
        .unwrap_or(100)
}

/// One connection, `inflight` requests outstanding, for a 1 s warm-up then `duration`.
async fn load(addr: SocketAddr, inflight: usize, duration: Duration, pid: Option<u32>) -> Run {
    let s = TcpStream::connect(addr).await.expect("connect");
    s.set_nodelay(true).ok();
    let (mut rd, mut wr) = s.into_split();
    let content = vec![0x5a_u8; 100];
    let request = |id: u32| {
        Command::build(
            CommandHead::request(id, false, 3000).codec(CODEC_PROTOBUF),
            SOFA_REQUEST_CLASS.as_bytes(),
            &[
                (b"service", b"com.example.Bench:1.0"),
                (b"sofa_head_method_name", b"echo"),
                (b"sofa_head_target_app", b"bench"),
                (b"sofa_head_target_service", b"com.example.Bench:1.0"),
            ],
            &content,
        )
        .expect("request fits")
    };
    let mut sent: HashMap<u32, Instant> = HashMap::with_capacity(inflight * 2);
    let mut next_id = 1u32;
    let mut out = BytesMut::new();
    for _ in 0..inflight {
        request(next_id).encode(&mut out);
        sent.insert(next_id, Instant::now());
        next_id += 1;
    }
    wr.write_all(&out).await.expect("write");
    out.clear();
    let start = Instant::now();
    let warm = start + Duration::from_secs(1);
    let end = warm + duration;
    let mut measuring = false;
    let mut run = Run {
        responses: 0,
        errors: 0,
        elapsed: Duration::ZERO,
        latencies_us: Vec::new(),
        tern_ticks: None,
    };
    let mut ticks_at_warm = None;
    let mut buf = BytesMut::with_capacity(64 << 10);
    loop {
        let now = Instant::now();
        if !measuring && now >= warm {
            measuring = true;
            ticks_at_warm = pid.and_then(ticks_of);
        }
        if now >= end {
            run.elapsed = now - warm;
            run.tern_ticks = match (pid.and_then(ticks_of), ticks_at_warm) {
                (Some(b), Some(a)) => Some(b - a),
                _ => None,
            };
            return run;
        }
        match tokio::time::timeout(Duration::from_secs(5), rd.read_buf(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) | Err(_) => panic!("connection to {addr} closed or stalled"),
            Ok(Ok(_)) => {}
        }
        let mut answered = 0;
        while let Some(rs) = Command::decode(&mut buf, DEFAULT_MAX_FRAME_SIZE).expect("response") {
            let t0 = sent.remove(&rs.request_id());
            if measuring {
                run.responses += 1;
                if rs.status() != ResponseStatus::SUCCESS {
                    run.errors += 1;
                }
                if let Some(t0) = t0 {
                    run.latencies_us.push(t0.elapsed().as_micros() as u64);
                }
            }
            answered += 1;
        }
        for _ in 0..answered {
            request(next_id).encode(&mut out);
            sent.insert(next_id, Instant::now());
            next_id = next_id.wrapping_add(1).max(1);
        }
        if !out.is_empty() {
            wr.write_all(&out).await.expect("write");
            out.clear();
        }
    }
}

fn bootstrap(port: u16, admin: u16, upstream: SocketAddr) -> String {
    format!(
        r#"admin:
  address: {{ socket_address: {{ address: 127.0.0.1, port_value: {admin} }} }}
static_resources:
  listeners:
  - name: bolt
    address: {{ socket_address: {{ address: 127.0.0.1, port_value: {port} }} }}
    filter_chains:
    - filters:
      - name: envoy.filters.network.generic_proxy
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.generic_proxy.v3.GenericProxy
          stat_prefix: bolt
          codec_config:
            name: bolt
            typed_config:
              "@type": type.googleapis.com/tern.generic_proxy.codecs.bolt.v1.BoltCodecConfig
          filters:
          - name: envoy.filters.generic.router
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.network.generic_proxy.router.v3.Router
          route_config:
            name: bolt
            routes:
              matcher_list:
                matchers:
                - predicate:
                    single_predicate:
                      input: {{ name: service, typed_config: {{ "@type": type.googleapis.com/envoy.extensions.filters.network.generic_proxy.matcher.v3.ServiceMatchInput }} }}
                      value_match: {{ exact: "com.example.Bench:1.0" }}
                  on_match:
                    action:
                      name: route
                      typed_config:
                        "@type": type.googleapis.com/envoy.extensions.filters.network.generic_proxy.action.v3.RouteAction
                        cluster: upstream
  clusters:
  - name: upstream
    type: STATIC
    connect_timeout: 1s
    load_assignment:
      cluster_name: upstream
      endpoints:
      - lb_endpoints:
        - endpoint: {{ address: {{ socket_address: {{ address: 127.0.0.1, port_value: {up} }} }} }}
"#,
        up = upstream.port()
    )
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("bind")
        .port()
}

struct Tern(Child);

impl Drop for Tern {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn report(name: &str, run: &Run, tck: u64) -> String {
    let mut l = run.latencies_us.clone();
    l.sort_unstable();
    let pct = |p: f64| l.get(((l.len() as f64 * p) as usize).min(l.len().saturating_sub(1)));
    let rps = run.responses as f64 / run.elapsed.as_secs_f64();
    let cpu = run
        .tern_ticks
        .map(|t| {
            let us = t as f64 * 1e6 / tck as f64;
            format!(
                ", tern CPU {:.1} µs/request ({:.0} % of a core)",
                us / run.responses.max(1) as f64,
                us / run.elapsed.as_secs_f64() / 1e4
            )
        })
        .unwrap_or_default();
    format!(
        "{name}: {rps:.0} requests/s, {} errors, latency p50 {} µs p99 {} µs{cpu}",
        run.errors,
        pct(0.5).copied().unwrap_or(0),
        pct(0.99).copied().unwrap_or(0),
    )
}

fn main() {
    let a = args();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let tck = clk_tck();
    rt.block_on(async {
        let up = upstream().await;
        let direct = load(up, a.inflight, a.duration, None).await;
        println!("{}", report("direct", &direct, tck));

        let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("bolt_load");
        std::fs::create_dir_all(&dir).expect("mkdir");
        let (port, admin) = (free_port(), free_port());
        let config = dir.join("tern.yaml");
        std::fs::File::create(&config)
            .and_then(|mut f| f.write_all(bootstrap(port, admin, up).as_bytes()))
            .expect("write config");
        let log = std::fs::File::create(dir.join("tern.log")).expect("log");
        let child = Process::new(&a.tern)
            .args(["-c", config.to_str().expect("utf-8 path")])
            .args([
                "--concurrency",
                "1",
                "--disable-hot-restart",
                "-l",
                "warning",
            ])
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("{}: {e}", a.tern.display()));
        let tern = Tern(child);
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let deadline = Instant::now() + Duration::from_secs(20);
        while TcpStream::connect(addr).await.is_err() {
            assert!(Instant::now() < deadline, "tern did not listen on {addr}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let through = load(addr, a.inflight, a.duration, Some(tern.0.id())).await;
        println!("{}", report("tern", &through, tck));
        println!(
            "{} requests in flight on one connection, {} s measured after 1 s of warm-up",
            a.inflight,
            a.duration.as_secs()
        );
        drop(tern);
    });
}
