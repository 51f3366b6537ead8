//! The upstream servers and the request load through tern.

use super::*;

pub(crate) async fn upstream_server(listener: tokio::net::TcpListener) {
    loop {
        let Ok((io, _)) = listener.accept().await else {
            continue;
        };
        let _ = io.set_nodelay(true);
        tokio::spawn(async move {
            let svc = hyper::service::service_fn(|_req| async {
                Ok::<_, std::convert::Infallible>(hyper::Response::new(Full::new(
                    Bytes::from_static(b"hello from the upstream\n"),
                )))
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(io), svc)
                .await;
        });
    }
}

#[derive(Clone, Copy)]
pub(crate) struct Sample {
    /// When the request was due (fixed schedule per connection).
    pub(crate) due: Instant,
    pub(crate) start: Instant,
    pub(crate) end: Instant,
    pub(crate) ok: bool,
}

#[derive(Default)]
pub(crate) struct LoadRecord {
    pub(crate) samples: Vec<Sample>,
    pub(crate) errors: BTreeMap<String, usize>,
}

pub(crate) type Sender = hyper::client::conn::http1::SendRequest<Empty<Bytes>>;

pub(crate) async fn connect(addr: SocketAddr) -> anyhow::Result<Sender> {
    let s = tokio::net::TcpStream::connect(addr).await?;
    s.set_nodelay(true)?;
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(s)).await?;
    tokio::spawn(conn);
    Ok(sender)
}

pub(crate) async fn one_request(sender: &mut Sender, host: &str) -> anyhow::Result<()> {
    sender.ready().await?;
    let req = hyper::Request::get("/")
        .header(hyper::header::HOST, host)
        .body(Empty::new())?;
    let resp = sender.send_request(req).await?;
    let status = resp.status();
    resp.into_body().collect().await?;
    if status != hyper::StatusCode::OK {
        bail!("status {status}");
    }
    Ok(())
}

/// One keep-alive connection sending on a fixed schedule (at most one request in flight; a
/// late request delays the next, and `due` keeps the schedule it should have met).
pub(crate) async fn load_conn(
    addr: SocketAddr,
    host: String,
    period: Duration,
    phase: Duration,
    stop: tokio::sync::watch::Receiver<bool>,
    rec: Arc<Mutex<LoadRecord>>,
) {
    let mut sender: Option<Sender> = None;
    let mut due = tokio::time::Instant::now() + phase;
    while !*stop.borrow() {
        tokio::time::sleep_until(due).await;
        let this_due = due.into_std();
        due += period;
        let now = tokio::time::Instant::now();
        if due < now {
            due = now; // behind: send the next one at once, do not burst to catch up
        }
        let start = Instant::now();
        let result = async {
            if sender.as_ref().is_none_or(|s| s.is_closed()) {
                sender = Some(connect(addr).await?);
            }
            let s = sender.as_mut().expect("connected");
            tokio::time::timeout(Duration::from_secs(5), one_request(s, &host))
                .await
                .map_err(|_| anyhow!("timeout"))?
        }
        .await;
        let end = Instant::now();
        let mut r = rec.lock().unwrap();
        if let Err(e) = &result {
            sender = None;
            *r.errors.entry(format!("{e:#}")).or_default() += 1;
        }
        r.samples.push(Sample {
            due: this_due,
            start,
            end,
            ok: result.is_ok(),
        });
    }
}

pub(crate) struct WindowStats {
    pub(crate) name: String,
    pub(crate) secs: f64,
    pub(crate) requests: usize,
    pub(crate) failed: usize,
    pub(crate) p50: u64,
    pub(crate) p99: u64,
    pub(crate) p999: u64,
    pub(crate) max: u64,
    /// p99 of the latency from when the request was due (counts waiting behind a late one).
    pub(crate) p99_due: u64,
}

pub(crate) fn pct(sorted: &[u64], p: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let i = ((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[i]
}

/// Requests in flight at any time during [start, end).
pub(crate) fn window_stats(
    name: &str,
    samples: &[Sample],
    start: Instant,
    end: Instant,
) -> WindowStats {
    let inside: Vec<&Sample> = samples
        .iter()
        .filter(|s| s.start < end && s.end > start)
        .collect();
    let mut lat: Vec<u64> = inside
        .iter()
        .map(|s| (s.end - s.start).as_micros() as u64)
        .collect();
    let mut due: Vec<u64> = inside
        .iter()
        .map(|s| (s.end - s.due).as_micros() as u64)
        .collect();
    lat.sort_unstable();
    due.sort_unstable();
    WindowStats {
        name: name.to_owned(),
        secs: (end - start).as_secs_f64(),
        requests: inside.len(),
        failed: inside.iter().filter(|s| !s.ok).count(),
        p50: pct(&lat, 0.50),
        p99: pct(&lat, 0.99),
        p999: pct(&lat, 0.999),
        max: lat.last().copied().unwrap_or(0),
        p99_due: pct(&due, 0.99),
    }
}
