//! Side-by-side runs: one bootstrap template rendered twice (only the ports differ), real
//! Envoy and the `tern` binary started as child processes on it, and helpers to reduce what a
//! client sees to a comparable form.
//!
//! Envoy is found through `ENVOY_BIN`, else under `target/envoy-venv` (where `.ci/run`
//! installs it). Without Envoy a test is skipped with a notice, except in CI where it fails.
#![allow(dead_code)]

#[path = "ports.rs"]
mod ports;
pub use ports::free_port;

use std::collections::BTreeMap;
use std::io::Read as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The Envoy binary, or `None` (with a notice) when there is none and this is not CI.
pub fn envoy_bin() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("ENVOY_BIN").filter(|p| !p.is_empty()) {
        let p = PathBuf::from(p);
        assert!(p.exists(), "ENVOY_BIN={} does not exist", p.display());
        return Some(p);
    }
    let lib = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/envoy-venv/lib");
    let found = std::fs::read_dir(&lib).ok().and_then(|dir| {
        dir.filter_map(Result::ok)
            .filter(|e| e.file_name().to_string_lossy().starts_with("python3"))
            .map(|e| e.path().join("site-packages/envoy/_bin/envoy"))
            .find(|p| p.exists())
    });
    if found.is_none() {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI is set but no Envoy found: set ENVOY_BIN or install it under {}",
            lib.display()
        );
        eprintln!(
            "notice: no Envoy (ENVOY_BIN unset, none under {}); skipping",
            lib.display()
        );
    }
    found
}

/// A child process killed on drop; its stderr goes to a file that is printed if the test
/// panics.
pub struct Proc {
    pub name: &'static str,
    child: Child,
    log: PathBuf,
}

impl Proc {
    fn spawn(name: &'static str, mut cmd: Command, log: PathBuf) -> Proc {
        let file = std::fs::File::create(&log).expect("create log file");
        cmd.stdin(Stdio::null())
            .stdout(file.try_clone().expect("clone log file"))
            .stderr(file);
        let child = cmd.spawn().unwrap_or_else(|e| panic!("spawn {name}: {e}"));
        Proc { name, child, log }
    }

    /// Everything the process wrote so far.
    pub fn log(&self) -> String {
        let mut s = String::new();
        if let Ok(mut f) = std::fs::File::open(&self.log) {
            let _ = f.read_to_string(&mut s);
        }
        s
    }

    /// Has the process exited already?
    fn exited(&mut self) -> Option<std::process::ExitStatus> {
        self.child.try_wait().ok().flatten()
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            let log = self.log();
            let lines: Vec<&str> = log.lines().collect();
            let tail = lines[lines.len().saturating_sub(30)..].join("\n");
            eprintln!(
                "----- {} output, last 30 lines (all in {}) -----\n{tail}\n----- end of {} -----",
                self.name,
                self.log.display(),
                self.name
            );
        }
    }
}

/// Envoy and tern running the same bootstrap.
pub struct Pair {
    pub envoy: SocketAddr,
    pub tern: SocketAddr,
    /// The admin addresses (`@ADMIN_PORT@`).
    pub envoy_admin: SocketAddr,
    pub tern_admin: SocketAddr,
    // Dropped last: the processes are killed when the pair goes.
    _procs: Vec<Proc>,
}

/// Where a test's files go.
fn work_dir(test: &str) -> PathBuf {
    let d = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join("compat")
        .join(format!("{test}-{}", std::process::id()));
    std::fs::create_dir_all(&d).expect("create work dir");
    d
}

/// Render `template` (with `@PORT@` for the listener port and `@ADMIN_PORT@` for the admin
/// port) for Envoy and for tern, start both, and wait until both accept connections.
/// Returns `None` when there is no Envoy (see [`envoy_bin`]).
pub async fn start_pair(test: &str, template: &str) -> Option<Pair> {
    let envoy_bin = envoy_bin()?;
    let dir = work_dir(test);
    let render = |port: u16, admin: u16| {
        template
            .replace("@PORT@", &port.to_string())
            .replace("@ADMIN_PORT@", &admin.to_string())
    };
    let (envoy_port, envoy_admin) = (free_port(), free_port());
    let (tern_port, tern_admin) = (free_port(), free_port());
    let envoy_cfg = dir.join("envoy.yaml");
    let tern_cfg = dir.join("tern.yaml");
    std::fs::write(&envoy_cfg, render(envoy_port, envoy_admin)).expect("write envoy.yaml");
    std::fs::write(&tern_cfg, render(tern_port, tern_admin)).expect("write tern.yaml");

    let mut cmd = Command::new(&envoy_bin);
    cmd.arg("-c")
        .arg(&envoy_cfg)
        .args(["--disable-hot-restart", "--concurrency", "1", "-l", "info"])
        .args(["--base-id", &rand::random::<u16>().to_string()]);
    let envoy = Proc::spawn("envoy", cmd, dir.join("envoy.log"));
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_tern"));
    cmd.arg("-c")
        .arg(&tern_cfg)
        .args(["--concurrency", "1", "-l", "info"]);
    let tern = Proc::spawn("tern", cmd, dir.join("tern.log"));

    let mut procs = vec![envoy, tern];
    let addrs = [envoy_port, tern_port].map(|p| SocketAddr::from(([127, 0, 0, 1], p)));
    for (proc, addr) in procs.iter_mut().zip(addrs) {
        wait_accepting(proc, addr, Duration::from_secs(30)).await;
    }
    let loopback = |p: u16| SocketAddr::from(([127, 0, 0, 1], p));
    Some(Pair {
        envoy: addrs[0],
        tern: addrs[1],
        envoy_admin: loopback(envoy_admin),
        tern_admin: loopback(tern_admin),
        _procs: procs,
    })
}

/// Envoy alone, for tests that compare something other than a listener's traffic (its admin
/// API): `@ADMIN_PORT@` in the template becomes its admin port.
pub struct Envoy {
    pub admin: SocketAddr,
    /// The configuration as Envoy got it.
    pub config: String,
    _proc: Proc,
}

/// Start Envoy on `template` and wait until its admin port accepts connections.
pub async fn start_envoy_admin(test: &str, template: &str) -> Option<Envoy> {
    let port = free_port();
    let config = template.replace("@ADMIN_PORT@", &port.to_string());
    let admin = SocketAddr::from(([127, 0, 0, 1], port));
    let proc = start_envoy(test, &config, admin).await?;
    Some(Envoy {
        admin,
        config,
        _proc: proc,
    })
}

/// Start Envoy alone on `config` (already rendered) and wait until `addr` accepts
/// connections. `None` when there is no Envoy (see [`envoy_bin`]).
pub async fn start_envoy(test: &str, config: &str, addr: SocketAddr) -> Option<Proc> {
    let envoy_bin = envoy_bin()?;
    let dir = work_dir(test);
    let cfg = dir.join("envoy.yaml");
    std::fs::write(&cfg, config).expect("write envoy.yaml");
    let mut cmd = Command::new(&envoy_bin);
    cmd.arg("-c")
        .arg(&cfg)
        .args(["--disable-hot-restart", "--concurrency", "1", "-l", "info"])
        .args(["--base-id", &rand::random::<u16>().to_string()]);
    let mut proc = Proc::spawn("envoy", cmd, dir.join("envoy.log"));
    wait_accepting(&mut proc, addr, Duration::from_secs(30)).await;
    Some(proc)
}

/// Poll until `addr` accepts a connection; panic (with the process output) if the process
/// exits or the deadline passes.
async fn wait_accepting(proc: &mut Proc, addr: SocketAddr, limit: Duration) {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(status) = proc.exited() {
            panic!("{} exited ({status}) before listening on {addr}", proc.name);
        }
        let connect = tokio::net::TcpStream::connect(addr);
        if let Ok(Ok(_)) = tokio::time::timeout(Duration::from_millis(500), connect).await {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{} did not listen on {addr} within {limit:?}",
            proc.name
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// One HCM listener on `@PORT@` with inline routes. `virtual_hosts` is YAML list items
/// indented by 12; `hcm_extra` extra HCM fields indented by 10; `router_extra` extra Router
/// fields indented by 14.
pub fn listener(virtual_hosts: &str, hcm_extra: &str, router_extra: &str) -> String {
    format!(
        r#"
  - name: main
    address: {{ socket_address: {{ address: 127.0.0.1, port_value: @PORT@ }} }}
    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: main
{hcm_extra}
          route_config:
            name: main
            validate_clusters: false
            virtual_hosts:
{virtual_hosts}
          http_filters:
          - name: envoy.filters.http.router
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router
{router_extra}
"#
    )
}

/// A bootstrap with an admin listener on `@ADMIN_PORT@`.
pub fn bootstrap(listeners: &[String], clusters: &[String]) -> String {
    let mut y = String::from(
        "admin:\n  address: { socket_address: { address: 127.0.0.1, port_value: @ADMIN_PORT@ } }\n",
    );
    y.push_str(&crate::support::bootstrap(listeners, clusters));
    y
}

/// What a client saw, reduced to what is compared: status, body and chosen headers. A header
/// listed in `present_only` is compared for presence, not value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Seen {
    pub status: u16,
    pub headers: BTreeMap<String, String>,
    pub body: String,
}

impl Seen {
    pub fn from(got: &crate::support::Got, headers: &[&str], present_only: &[&str]) -> Seen {
        let mut h = BTreeMap::new();
        for name in headers.iter().chain(present_only) {
            let values: Vec<&str> = got
                .headers
                .get_all(*name)
                .iter()
                .map(|v| v.to_str().unwrap_or("<non-ascii>"))
                .collect();
            if values.is_empty() {
                continue;
            }
            let v = if present_only.contains(name) {
                "<present>".to_owned()
            } else {
                values.join(", ")
            };
            h.insert((*name).to_owned(), v);
        }
        Seen {
            status: got.status,
            headers: h,
            body: got.body.clone(),
        }
    }
}

/// The body of the scripted upstream's default answer, with request header lines sorted and
/// per-request values (`x-request-id`) masked, so that two proxies' upstream requests compare.
pub fn echo_view(body: &str) -> String {
    let mut head = Vec::new();
    let mut headers = Vec::new();
    for line in body.lines() {
        let is_header = ["upstream ", "method ", "path ", "version "]
            .iter()
            .all(|p| !line.starts_with(p));
        if !is_header {
            head.push(line.to_owned());
        } else if let Some(v) = line.strip_prefix("x-request-id: ") {
            let uuid = v.len() == 36 && v.chars().filter(|c| *c == '-').count() == 4;
            headers.push(format!("x-request-id: {}", if uuid { "<uuid>" } else { v }));
        } else {
            headers.push(line.to_owned());
        }
    }
    headers.sort();
    head.extend(headers);
    head.join("\n")
}

/// A raw HTTP/1 response for comparison: the status line, then the header lines sorted
/// (`date` masked; header order is not compared), then the body (an upstream echo through
/// [`echo_view`]).
pub fn raw_view(raw: &str) -> String {
    let (head, body) = raw.split_once("\r\n\r\n").unwrap_or((raw, ""));
    let mut lines = head.split("\r\n");
    let status = lines.next().unwrap_or("").to_owned();
    let mut headers: Vec<String> = lines
        .map(|l| {
            if l.to_ascii_lowercase().starts_with("date:") {
                "date: <date>".to_owned()
            } else {
                l.to_owned()
            }
        })
        .collect();
    headers.sort();
    let body = if body.starts_with("upstream ") {
        echo_view(body)
    } else {
        body.to_owned()
    };
    format!("{status}\n{}\n\n{body}", headers.join("\n"))
}
