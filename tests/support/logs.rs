//! Access log files written by tern in a test: a fresh path per test, and their lines once
//! tern has written them (buffered lines are flushed while waiting).

use std::path::{Path, PathBuf};
use std::time::Duration;

/// A fresh file path in the temp directory for this test process.
pub fn temp_log(name: &str) -> PathBuf {
    let p = std::env::temp_dir().join(format!("tern-it-{}-{name}.log", std::process::id()));
    let _ = std::fs::remove_file(&p);
    p
}

/// The file's lines once it has at least `n` (flushing tern's buffers while waiting); what
/// is there after 10 s otherwise.
pub async fn lines(path: &Path, n: usize) -> Vec<String> {
    let read = || {
        tern::access_log::flush_all();
        std::fs::read_to_string(path)
            .unwrap_or_default()
            .lines()
            .map(str::to_owned)
            .collect::<Vec<_>>()
    };
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let got = read();
        if got.len() >= n || tokio::time::Instant::now() >= deadline {
            return got;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The file's lines as JSON objects, once it has at least `n`.
pub async fn json_lines(path: &Path, n: usize) -> Vec<serde_json::Value> {
    lines(path, n)
        .await
        .iter()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect()
}

/// An `access_log` entry (YAML, indented by `indent` spaces) writing `log_format` (YAML
/// fields of `SubstitutionFormatString`, or empty for Envoy's default) to `path`, with an
/// optional `filter` (YAML of `AccessLogFilter`).
pub fn file_access_log(path: &Path, log_format: &str, filter: &str, indent: usize) -> String {
    let pad = " ".repeat(indent);
    let mut y = format!("{pad}- name: envoy.access_loggers.file\n");
    if !filter.is_empty() {
        y.push_str(&format!("{pad}  filter: {filter}\n"));
    }
    y.push_str(&format!(
        "{pad}  typed_config:\n{pad}    \"@type\": type.googleapis.com/envoy.extensions.access_loggers.file.v3.FileAccessLog\n{pad}    path: {}\n",
        path.display()
    ));
    if !log_format.is_empty() {
        y.push_str(&format!("{pad}    log_format: {log_format}\n"));
    }
    y
}
