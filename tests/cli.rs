//! The tern binary as pilot-agent runs it: Envoy's command line, `--mode validate`, the binary
//! installed under the name `envoy`, and signals.

#[path = "support/ports.rs"]
mod ports;

use ports::free_port;
use std::io::Read;
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const TERN: &str = env!("CARGO_BIN_EXE_tern");

fn example() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("examples/quickstart.yaml")
}

fn tmpdir(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("tern-cli-{tag}-{}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d
}

#[test]
fn validate_accepts_the_example_and_rejects_bad_config_with_its_path() {
    let out = Command::new(TERN)
        .args(["--mode", "validate", "-c"])
        .arg(example())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("configuration OK"));

    let dir = tmpdir("bad");
    let bad = dir.join("bad.yaml");
    std::fs::write(&bad, "static_resources:\n  clusters:\n  - name: c\n    connect_timeout: 1s\n    lb_policy: MAGLEV\n    maglev_lb_config: { table_size: 100 }\n").unwrap();
    let out = Command::new(TERN)
        .args(["--mode", "validate", "-c"])
        .arg(&bad)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("static_resources.clusters[0]")
            && err.contains("cluster c")
            && err.contains("table_size"),
        "{err}"
    );

    std::fs::write(
        &bad,
        "static_resources: {clusters: [{name: c, not_a_field: 1}]}",
    )
    .unwrap();
    let out = Command::new(TERN)
        .args(["--mode", "validate", "-c"])
        .arg(&bad)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("not_a_field"));
    let out = Command::new(TERN)
        .args(["--mode", "validate", "--allow-unknown-static-fields", "-c"])
        .arg(&bad)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn config_yaml_merges_over_the_file() {
    // The file alone is valid; --config-yaml adds a broken cluster, so validation fails.
    let out = Command::new(TERN)
        .args(["--mode", "validate", "-c"])
        .arg(example())
        .args([
            "--config-yaml",
            "static_resources: {clusters: [{name: extra, type: STRICT_DNS, connect_timeout: 1s}]}",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("cluster extra"));
}

#[test]
fn pilot_agent_command_line_is_accepted_and_unknown_flags_rejected() {
    let out = Command::new(TERN)
        .args(["-c"])
        .arg(example())
        .args([
            "--mode",
            "validate",
            "--drain-time-s",
            "45",
            "--drain-strategy",
            "immediate",
            "--local-address-ip-version",
            "v4",
            "--file-flush-interval-msec",
            "1000",
            "--disable-hot-restart",
            "--allow-unknown-static-fields",
            "--log-format",
            "%Y-%m-%dT%T.%fZ\t%l\tenvoy %n %g:%#\t%v\tthread=%t",
            "-l",
            "warning",
            "--component-log-level",
            "misc:error,upstream:debug",
            "--concurrency",
            "2",
            "--service-cluster",
            "c",
            "--service-node",
            "sidecar~10.0.0.1~pod.ns~ns.svc.cluster.local",
            "--restart-epoch",
            "0",
            "--base-id",
            "3",
            "--parent-shutdown-time-s",
            "60",
            "--service-zone",
            "z",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = Command::new(TERN)
        .args(["-c"])
        .arg(example())
        .arg("--definitely-not-a-flag")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let out = Command::new(TERN)
        .args(["--mode", "validate", "-c"])
        .arg(example())
        .args(["--component-log-level", "nosuch:debug"])
        .output()
        .unwrap();
    assert!(!out.status.success());
}

#[test]
fn installed_as_envoy_it_behaves_the_same() {
    let dir = tmpdir("envoy-name");
    let envoy = dir.join("envoy");
    std::fs::copy(TERN, &envoy).unwrap();
    // Another test forking while the copy's file was open for writing may hold it open for a
    // moment: exec fails with ETXTBSY ("Text file busy") until that child execs. Retry.
    let mut tries = 0;
    let out = loop {
        match Command::new(&envoy)
            .args(["--mode", "validate", "-c"])
            .arg(example())
            .output()
        {
            Err(e) if e.kind() == std::io::ErrorKind::ExecutableFileBusy && tries < 100 => {
                tries += 1;
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            r => break r.unwrap(),
        }
    };
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let _ = std::fs::remove_dir_all(dir);
}

fn config_on(port: u16) -> String {
    std::fs::read_to_string(example())
        .unwrap()
        .replace("port_value: 10000", &format!("port_value: {port}"))
        .replace("port_value: 10001", &format!("port_value: {}", free_port()))
        .replace("port_value: 9901", &format!("port_value: {}", free_port()))
}

fn wait_listening(port: u16) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "tern did not start listening");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn wait_exit(child: &mut std::process::Child) -> std::process::ExitStatus {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(s) = child.try_wait().unwrap() {
            return s;
        }
        assert!(Instant::now() < deadline, "tern did not exit");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn signal(pid: u32, sig: &str) {
    assert!(
        Command::new("kill")
            .args([sig, &pid.to_string()])
            .status()
            .unwrap()
            .success()
    );
}

#[test]
fn sigterm_drains_an_open_connection_then_exits_and_sigint_exits() {
    use std::io::Write;
    let port = free_port();
    let mut child = Command::new(TERN)
        .args(["--config-yaml", &config_on(port), "--drain-time-s", "5"])
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    wait_listening(port);
    // A keep-alive connection that is idle when the signal comes: tern closes it and exits
    // before the drain time is up.
    let mut conn = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    conn.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    conn.write_all(b"GET /direct HTTP/1.1\r\nhost: x\r\n\r\n")
        .unwrap();
    let mut buf = [0u8; 512];
    let n = conn.read(&mut buf).unwrap();
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"));
    let started = Instant::now();
    signal(child.id(), "-TERM");
    let status = wait_exit(&mut child);
    assert!(status.success(), "{status:?}");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "drained early because nothing was in flight"
    );
    let mut rest = Vec::new();
    let _ = conn.read_to_end(&mut rest);
    let mut log = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut log)
        .unwrap();
    assert!(log.contains("SIGTERM"), "{log}");

    let port = free_port();
    let mut child = Command::new(TERN)
        .args(["--config-yaml", &config_on(port)])
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_listening(port);
    signal(child.id(), "-INT");
    assert!(wait_exit(&mut child).success());
}

#[test]
fn bind_failure_is_a_clear_error() {
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let yaml = config_on(port).replace(
        "- name: ingress",
        "- name: ingress\n    enable_reuse_port: false",
    );
    let out = Command::new(TERN)
        .args(["--config-yaml", &yaml])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("listener ingress") && err.contains("cannot bind"),
        "{err}"
    );

    // The admin port taken: the same clear error, not a panic.
    let yaml = std::fs::read_to_string(example())
        .unwrap()
        .replace("port_value: 10000", &format!("port_value: {}", free_port()))
        .replace("port_value: 10001", &format!("port_value: {}", free_port()))
        .replace("port_value: 9901", &format!("port_value: {port}"));
    let out = Command::new(TERN)
        .args(["--config-yaml", &yaml])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("admin") && err.contains("cannot bind") && !err.contains("panicked"),
        "{err}"
    );
}
