//! Where access log lines go: a file, stdout or stderr, written off the request path. A log
//! line is appended to a bounded in-memory buffer (a full buffer drops the line and counts it
//! in `filesystem.write_failed`, it never blocks the stream); a writer thread per destination
//! flushes the buffer every `--file-flush-interval-msec` or as soon as it holds 64 KiB, as
//! Envoy's access log manager does. Loggers writing the same destination share one sink.
//! [`reopen_all`] makes every writer reopen its file (log rotation); [`flush_all`] writes out
//! what is buffered (at exit).
//!
//! Stats, in Envoy's `filesystem.` namespace: `write_buffered` (lines buffered),
//! `write_completed` (buffer writes done), `write_failed` (buffer writes that failed, and lines
//! dropped because the buffer was full), `flushed_by_timer`, `reopen_failed`, and the gauge
//! `write_total_buffered` (bytes waiting).

use crate::config::ConfigError;
use crate::stats::{Counter, Gauge, Store};
use std::io::Write;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, Weak};
use std::time::{Duration, Instant};

/// Envoy's minimum flush size: a buffer this full is written at once.
pub const FLUSH_SIZE: usize = 64 * 1024;
/// At most this much is buffered per destination; more is dropped.
pub const BUFFER_LIMIT: usize = 4 * 1024 * 1024;

static FLUSH_INTERVAL_MS: AtomicU64 = AtomicU64::new(10_000);

/// `--file-flush-interval-msec`: how often writers flush what they hold (for sinks opened
/// from now on).
pub fn set_flush_interval(d: Duration) {
    FLUSH_INTERVAL_MS.store(d.as_millis().max(1) as u64, Ordering::Relaxed);
}

fn flush_interval() -> Duration {
    Duration::from_millis(FLUSH_INTERVAL_MS.load(Ordering::Relaxed))
}

/// Where a sink writes.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Destination {
    /// A file, opened for appending (created if missing).
    File(PathBuf),
    /// The process's standard output.
    Stdout,
    /// The process's standard error.
    Stderr,
}

impl std::fmt::Display for Destination {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Destination::File(p) => write!(f, "{}", p.display()),
            Destination::Stdout => f.write_str("stdout"),
            Destination::Stderr => f.write_str("stderr"),
        }
    }
}

/// The `filesystem.*` stats.
#[derive(Debug, Clone)]
pub struct SinkStats {
    /// `filesystem.write_buffered`.
    pub write_buffered: Counter,
    /// `filesystem.write_completed`.
    pub write_completed: Counter,
    /// `filesystem.write_failed` (also lines dropped on a full buffer).
    pub write_failed: Counter,
    /// `filesystem.flushed_by_timer`.
    pub flushed_by_timer: Counter,
    /// `filesystem.reopen_failed`.
    pub reopen_failed: Counter,
    /// `filesystem.write_total_buffered`.
    pub write_total_buffered: Gauge,
}

impl SinkStats {
    /// The stats in `store`.
    pub fn new(store: &Store) -> SinkStats {
        let c = |n: &str| store.counter(format!("filesystem.{n}"));
        SinkStats {
            write_buffered: c("write_buffered"),
            write_completed: c("write_completed"),
            write_failed: c("write_failed"),
            flushed_by_timer: c("flushed_by_timer"),
            reopen_failed: c("reopen_failed"),
            write_total_buffered: store.gauge("filesystem.write_total_buffered"),
        }
    }
}

#[derive(Debug, Default)]
struct State {
    buf: Vec<u8>,
    reopen: bool,
    flush: bool,
    shutdown: bool,
}

#[derive(Debug)]
enum Output {
    File(std::fs::File),
    Stdout,
    Stderr,
    /// A file that could not be reopened: lines are counted as failed until a reopen works.
    Closed,
}

#[derive(Debug)]
struct Shared {
    dest: Destination,
    state: Mutex<State>,
    wake: Condvar,
    /// Locked before `state` wherever both are held, so batches reach the file in order.
    output: Mutex<Output>,
    limit: usize,
    interval: Duration,
    stats: SinkStats,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn open(dest: &Destination) -> std::io::Result<Output> {
    Ok(match dest {
        Destination::File(p) => Output::File(
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(p)?,
        ),
        Destination::Stdout => Output::Stdout,
        Destination::Stderr => Output::Stderr,
    })
}

impl Shared {
    /// Take what is buffered and write it, holding the output so batches stay in order.
    fn drain(&self, spare: &mut Vec<u8>) {
        let mut out = lock(&self.output);
        let reopen = {
            let mut st = lock(&self.state);
            std::mem::swap(&mut st.buf, spare);
            self.stats.write_total_buffered.set(0);
            std::mem::take(&mut st.reopen)
        };
        if reopen && let Destination::File(_) = self.dest {
            match open(&self.dest) {
                Ok(o) => *out = o,
                Err(e) => {
                    tracing::warn!(path = %self.dest, error = %e, "access log reopen failed");
                    self.stats.reopen_failed.inc();
                    *out = Output::Closed;
                }
            }
        }
        if spare.is_empty() {
            return;
        }
        let res = match &mut *out {
            Output::File(f) => f.write_all(spare),
            Output::Stdout => std::io::stdout().lock().write_all(spare),
            Output::Stderr => std::io::stderr().lock().write_all(spare),
            Output::Closed => Err(std::io::Error::other("file could not be reopened")),
        };
        match res {
            Ok(()) => self.stats.write_completed.inc(),
            Err(e) => {
                tracing::debug!(path = %self.dest, error = %e, "access log write failed");
                self.stats.write_failed.inc();
            }
        }
        spare.clear();
    }

    /// The writer thread: flush on a full buffer, on the timer, on request, and at the end.
    fn run(self: Arc<Self>) {
        let mut spare = Vec::new();
        let mut deadline = Instant::now() + self.interval;
        loop {
            let shutdown = {
                let mut st = lock(&self.state);
                loop {
                    if st.shutdown || st.reopen || st.flush || st.buf.len() >= FLUSH_SIZE {
                        break;
                    }
                    let now = Instant::now();
                    if now >= deadline {
                        if !st.buf.is_empty() {
                            self.stats.flushed_by_timer.inc();
                        }
                        break;
                    }
                    st = self
                        .wake
                        .wait_timeout(st, deadline - now)
                        .unwrap_or_else(|e| e.into_inner())
                        .0;
                }
                st.flush = false;
                st.shutdown
            };
            self.drain(&mut spare);
            if shutdown {
                return;
            }
            let now = Instant::now();
            if now >= deadline {
                deadline = now + self.interval;
            }
        }
    }
}

/// A destination's buffer and writer. Dropping the last handle flushes what is left and ends
/// the writer thread.
#[derive(Debug)]
pub struct Sink {
    shared: Arc<Shared>,
}

impl Drop for Sink {
    fn drop(&mut self) {
        lock(&self.shared.state).shutdown = true;
        self.shared.wake.notify_one();
    }
}

static REGISTRY: Mutex<Vec<(Destination, Weak<Sink>)>> = Mutex::new(Vec::new());

impl Sink {
    /// The sink of `dest`, shared with every other logger writing there; a file is opened
    /// (and created) now, so a path that cannot be written is a configuration error.
    pub fn open(dest: Destination, store: &Store) -> Result<Arc<Sink>, ConfigError> {
        let mut reg = lock(&REGISTRY);
        reg.retain(|(_, w)| w.strong_count() > 0);
        if let Some(s) = reg
            .iter()
            .find(|(d, _)| *d == dest)
            .and_then(|(_, w)| w.upgrade())
        {
            return Ok(s);
        }
        let sink = Arc::new(Sink::start(
            dest.clone(),
            BUFFER_LIMIT,
            flush_interval(),
            SinkStats::new(store),
        )?);
        reg.push((dest, Arc::downgrade(&sink)));
        Ok(sink)
    }

    /// A sink of its own (not shared), with its buffer limit and flush interval.
    pub fn start(
        dest: Destination,
        limit: usize,
        interval: Duration,
        stats: SinkStats,
    ) -> Result<Sink, ConfigError> {
        let output = open(&dest).map_err(|e| {
            ConfigError::new("path", format!("cannot open access log file {dest}: {e}"))
        })?;
        let shared = Arc::new(Shared {
            dest,
            state: Mutex::new(State::default()),
            wake: Condvar::new(),
            output: Mutex::new(output),
            limit,
            interval,
            stats,
        });
        let writer = shared.clone();
        std::thread::Builder::new()
            .name("tern-access-log".into())
            .spawn(move || writer.run())
            .map_err(|e| ConfigError::new("", format!("access log writer thread: {e}")))?;
        Ok(Sink { shared })
    }

    /// Buffer one line (or several); false when the buffer is full and the line was dropped.
    /// Never blocks on I/O.
    pub fn write(&self, line: &[u8]) -> bool {
        let s = &self.shared;
        let mut st = lock(&s.state);
        let before = st.buf.len();
        if before + line.len() > s.limit {
            drop(st);
            s.stats.write_failed.inc();
            return false;
        }
        st.buf.extend_from_slice(line);
        let after = st.buf.len();
        s.stats.write_total_buffered.set(after as i64);
        drop(st);
        s.stats.write_buffered.inc();
        if before < FLUSH_SIZE && after >= FLUSH_SIZE {
            s.wake.notify_one();
        }
        true
    }

    /// Write out what is buffered now, from the calling thread.
    pub fn flush(&self) {
        self.shared.drain(&mut Vec::new());
    }

    /// Ask the writer to reopen the file before its next write.
    pub fn reopen(&self) {
        lock(&self.shared.state).reopen = true;
        self.shared.wake.notify_one();
    }

    /// Where this sink writes.
    pub fn destination(&self) -> &Destination {
        &self.shared.dest
    }
}

fn live() -> Vec<Arc<Sink>> {
    lock(&REGISTRY)
        .iter()
        .filter_map(|(_, w)| w.upgrade())
        .collect()
}

/// Reopen every access log file (Envoy's `/reopen_logs`): after log rotation moved a file
/// away, lines go to a new file at the configured path.
pub fn reopen_all() {
    for s in live() {
        s.reopen();
    }
}

/// Write out every buffered line now (at exit, or before reading a log in a test).
pub fn flush_all() {
    for s in live() {
        s.flush();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("tern-sink-{}-{name}", std::process::id()));
        let _ = std::fs::remove_file(&dir);
        dir
    }

    #[test]
    fn a_full_buffer_drops_and_counts_instead_of_blocking() {
        let store = Store::new();
        let path = temp("full");
        let sink = Sink::start(
            Destination::File(path.clone()),
            100,
            Duration::from_secs(3600),
            SinkStats::new(&store),
        )
        .unwrap();
        assert!(sink.write(&[b'a'; 60]));
        assert!(!sink.write(&[b'b'; 60]), "over the limit: dropped");
        assert!(
            sink.write(&[b'c'; 40]),
            "exactly up to the limit still fits"
        );
        assert!(!sink.write(b"d"));
        assert_eq!(store.counter_value("filesystem.write_buffered"), Some(2));
        assert_eq!(store.counter_value("filesystem.write_failed"), Some(2));
        assert_eq!(
            store
                .gauges()
                .into_iter()
                .find(|(n, _)| n == "filesystem.write_total_buffered"),
            Some(("filesystem.write_total_buffered".into(), 100))
        );
        sink.flush();
        let got = std::fs::read(&path).unwrap();
        assert_eq!(got.len(), 100);
        assert!(got.starts_with(&[b'a'; 60]) && got.ends_with(&[b'c'; 40]));
        assert_eq!(store.counter_value("filesystem.write_completed"), Some(1));
        // Room again after the flush.
        assert!(sink.write(b"e"));
        let _ = std::fs::remove_file(path);
    }

    #[test]
    fn the_writer_flushes_on_its_timer_and_at_the_end() {
        let store = Store::new();
        let path = temp("timer");
        let sink = Sink::start(
            Destination::File(path.clone()),
            BUFFER_LIMIT,
            Duration::from_millis(20),
            SinkStats::new(&store),
        )
        .unwrap();
        sink.write(b"one\n");
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::fs::read(&path).unwrap().is_empty() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "one\n");
        assert!(store.counter_value("filesystem.flushed_by_timer").unwrap() >= 1);
        sink.write(b"two\n");
        drop(sink);
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::fs::read_to_string(&path).unwrap() != "one\ntwo\n" && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "one\ntwo\n");
        let _ = std::fs::remove_file(path);
    }

    #[test]
    fn a_large_buffer_is_written_without_waiting_for_the_timer() {
        let store = Store::new();
        let path = temp("size");
        let sink = Sink::start(
            Destination::File(path.clone()),
            BUFFER_LIMIT,
            Duration::from_secs(3600),
            SinkStats::new(&store),
        )
        .unwrap();
        let line = [b'x'; 1024];
        for _ in 0..64 {
            sink.write(&line);
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::fs::metadata(&path).unwrap().len() < FLUSH_SIZE as u64
            && Instant::now() < deadline
        {
            std::thread::sleep(Duration::from_millis(5));
        }
        assert_eq!(std::fs::metadata(&path).unwrap().len(), FLUSH_SIZE as u64);
        assert_eq!(store.counter_value("filesystem.flushed_by_timer"), Some(0));
        let _ = std::fs::remove_file(path);
    }

    #[test]
    fn reopen_follows_a_rotated_file_and_paths_share_a_sink() {
        let store = Store::new();
        let path = temp("rotate");
        let rotated = temp("rotate.1");
        let a = Sink::open(Destination::File(path.clone()), &store).unwrap();
        let b = Sink::open(Destination::File(path.clone()), &store).unwrap();
        assert!(Arc::ptr_eq(&a, &b), "one sink per path");
        a.write(b"before\n");
        a.flush();
        std::fs::rename(&path, &rotated).unwrap();
        reopen_all();
        b.write(b"after\n");
        let deadline = Instant::now() + Duration::from_secs(10);
        while !path.exists() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
        flush_all();
        assert_eq!(std::fs::read_to_string(&rotated).unwrap(), "before\n");
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "after\n");
        assert!(Sink::open(Destination::File("/nonexistent-dir/x.log".into()), &store).is_err());
        let _ = std::fs::remove_file(path);
        let _ = std::fs::remove_file(rotated);
    }
}
