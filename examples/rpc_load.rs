//! Load generator and upstream for `benches/rpc.sh`: a fixed number of requests in flight on
//! ONE downstream connection, for Dubbo and Bolt and, for comparison,
//! HTTP/2 through the HTTP connection manager.
//!
//! ```text
//! rpc_load server PROTO LISTEN_ADDR              # upstream: answers every request at once
//! rpc_load client PROTO TARGET CONCURRENCY SECS  # "requests=N seconds=S rps=R errors=E total=T"
//! ```
//!
//! PROTO is `dubbo`, `bolt` or `h2`. A new RPC protocol adds an arm to `codec`, `request` and
//! `response`.

use bytes::{Bytes, BytesMut};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tern::protocol::xprotocol::bolt::{self, Bolt};
use tern::protocol::xprotocol::dubbo::{self, Dubbo};
use tern::protocol::xprotocol::{Codec, Frame, FrameKind};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

type Error = Box<dyn std::error::Error + Send + Sync>;

fn codec(proto: &str) -> Result<Codec, Error> {
    match proto {
        "dubbo" => Ok(Arc::new(Dubbo::default())),
        "bolt" => Ok(Arc::new(Bolt::default())),
        other => Err(format!("unknown protocol {other} (dubbo, bolt, h2)").into()),
    }
}

/// A request of about 100 bytes of arguments.
fn request(proto: &str, id: u64) -> BytesMut {
    match proto {
        "dubbo" => {
            let mut rest = dubbo::build::string("Ljava/lang/String;");
            rest.extend(dubbo::build::string(&"x".repeat(64)));
            rest.extend_from_slice(b"HZ");
            dubbo::build::request(
                id,
                true,
                "org.apache.dubbo.samples.DemoService",
                "1.0.0",
                "sayHello",
                &rest,
            )
        }
        // A SOFARPC request as a Java client writes it: SofaRequest class, the header map
        // (service, method, target app and service), protobuf content.
        "bolt" => bolt::Command::build(
            bolt::CommandHead::request(id as u32, false, 3000).codec(bolt::CODEC_PROTOBUF),
            bolt::SOFA_REQUEST_CLASS.as_bytes(),
            &[
                (b"service", b"org.apache.dubbo.samples.DemoService:1.0"),
                (b"sofa_head_method_name", b"sayHello"),
                (b"sofa_head_target_app", b"bench"),
                (
                    b"sofa_head_target_service",
                    b"org.apache.dubbo.samples.DemoService:1.0",
                ),
            ],
            &[b'x'; 100],
        )
        .map(|c| BytesMut::from(c.as_bytes()))
        .unwrap_or_default(),
        _ => BytesMut::new(),
    }
}

/// The answer to a request: about 100 bytes of result.
fn response(proto: &str, req: &Frame) -> BytesMut {
    match proto {
        "dubbo" => {
            let mut body = vec![0x91];
            body.extend(dubbo::build::string(&"y".repeat(96)));
            dubbo::build::response(req.request_id, dubbo::status::OK, &body)
        }
        "bolt" => bolt::Command::build(
            bolt::CommandHead::response(req.request_id as u32, bolt::ResponseStatus::SUCCESS)
                .codec(bolt::CODEC_PROTOBUF),
            bolt::SOFA_RESPONSE_CLASS.as_bytes(),
            &[],
            &[b'y'; 100],
        )
        .map(|c| BytesMut::from(c.as_bytes()))
        .unwrap_or_default(),
        _ => BytesMut::new(),
    }
}

fn main() -> Result<(), Error> {
    let args: Vec<String> = std::env::args().collect();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    match args.get(1..).unwrap_or_default() {
        [mode, proto, addr] if mode == "server" => {
            let addr: SocketAddr = addr.parse()?;
            rt.block_on(server(proto.clone(), addr))
        }
        [mode, proto, target, conc, secs] if mode == "client" => {
            let target: SocketAddr = target.parse()?;
            let (conc, secs): (usize, u64) = (conc.parse()?, secs.parse()?);
            let (n, errors, total, took) = rt.block_on(async {
                if proto == "h2" {
                    h2_client(target, conc, Duration::from_secs(secs)).await
                } else {
                    client(proto, target, conc, Duration::from_secs(secs)).await
                }
            })?;
            let s = took.as_secs_f64();
            println!(
                "requests={n} seconds={s:.3} rps={:.0} errors={errors} total={total}",
                n as f64 / s
            );
            Ok(())
        }
        _ => Err(
            "usage: rpc_load server PROTO ADDR | rpc_load client PROTO TARGET CONCURRENCY SECS"
                .into(),
        ),
    }
}

async fn server(proto: String, addr: SocketAddr) -> Result<(), Error> {
    let listener = TcpListener::bind(addr).await?;
    if proto == "h2" {
        return h2_server(listener).await;
    }
    let codec = codec(&proto)?;
    loop {
        let (sock, _) = listener.accept().await?;
        sock.set_nodelay(true)?;
        let (codec, proto) = (codec.clone(), proto.clone());
        tokio::spawn(async move {
            let (mut rd, mut wr) = sock.into_split();
            let mut buf = BytesMut::with_capacity(64 * 1024);
            let mut out = BytesMut::with_capacity(64 * 1024);
            loop {
                match rd.read_buf(&mut buf).await {
                    Ok(0) | Err(_) => return,
                    Ok(_) => {}
                }
                while let Ok(Some(f)) = codec.decode(&mut buf) {
                    match f.kind {
                        FrameKind::Request => out.extend_from_slice(&response(&proto, &f)),
                        FrameKind::Heartbeat => {
                            out.extend_from_slice(&codec.heartbeat_response(&f).raw)
                        }
                        _ => {}
                    }
                }
                if !out.is_empty() {
                    if wr.write_all(&out).await.is_err() {
                        return;
                    }
                    out.clear();
                }
            }
        });
    }
}

/// Keep `conc` requests in flight on one connection for `warm-up + secs`; count the responses
/// after a 1 s warm-up.
async fn client(
    proto: &str,
    target: SocketAddr,
    conc: usize,
    secs: Duration,
) -> Result<(u64, u64, u64, Duration), Error> {
    let codec = codec(proto)?;
    let sock = TcpStream::connect(target).await?;
    sock.set_nodelay(true)?;
    let (mut rd, mut wr) = sock.into_split();
    let mut next_id = 1u64;
    let mut first = BytesMut::new();
    for _ in 0..conc {
        first.extend_from_slice(&request(proto, next_id));
        next_id += 1;
    }
    wr.write_all(&first).await?;
    let warm_until = Instant::now() + Duration::from_secs(1);
    let mut started: Option<Instant> = None;
    let (mut n, mut errors) = (0u64, 0u64);
    let mut total = 0u64;
    let mut buf = BytesMut::with_capacity(64 * 1024);
    let mut out = BytesMut::with_capacity(64 * 1024);
    loop {
        if rd.read_buf(&mut buf).await? == 0 {
            return Err("connection closed by the proxy".into());
        }
        let now = Instant::now();
        if started.is_none() && now >= warm_until {
            started = Some(now);
        }
        if let Some(t) = started
            && now.duration_since(t) >= secs
        {
            return Ok((n, errors, total, now.duration_since(t)));
        }
        while let Some(f) = codec.decode(&mut buf)? {
            if f.kind != FrameKind::Response {
                continue;
            }
            total += 1;
            if started.is_some() {
                n += 1;
                if !f.status.is_some_and(|s| s.ok) {
                    errors += 1;
                }
            }
            out.extend_from_slice(&request(proto, next_id));
            next_id += 1;
        }
        wr.write_all(&out).await?;
        out.clear();
    }
}

async fn h2_server(listener: TcpListener) -> Result<(), Error> {
    loop {
        let (sock, _) = listener.accept().await?;
        sock.set_nodelay(true)?;
        tokio::spawn(async move {
            let Ok(mut conn) = h2::server::handshake(sock).await else {
                return;
            };
            while let Some(Ok((req, mut respond))) = conn.accept().await {
                // Read the whole request body, then answer (an answer before the request has
                // ended would reset the request stream).
                tokio::spawn(async move {
                    let mut body = req.into_body();
                    while let Some(chunk) = body.data().await {
                        let Ok(chunk) = chunk else { return };
                        let _ = body.flow_control().release_capacity(chunk.len());
                    }
                    let resp = http::Response::builder()
                        .status(200)
                        .body(())
                        .unwrap_or_default();
                    if let Ok(mut send) = respond.send_response(resp, false) {
                        let _ = send.send_data(Bytes::from(vec![b'y'; 100]), true);
                    }
                });
            }
        });
    }
}

async fn h2_client(
    target: SocketAddr,
    conc: usize,
    secs: Duration,
) -> Result<(u64, u64, u64, Duration), Error> {
    let sock = TcpStream::connect(target).await?;
    sock.set_nodelay(true)?;
    let (send, conn) = h2::client::handshake(sock).await?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    let warm_until = Instant::now() + Duration::from_secs(1);
    let end = warm_until + secs;
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..conc {
        let mut send = send.clone();
        tasks.spawn(async move {
            let (mut n, mut errors, mut total) = (0u64, 0u64, 0u64);
            loop {
                let now = Instant::now();
                if now >= end {
                    return Ok::<_, Error>((n, errors, total));
                }
                send = send.ready().await?;
                let req = http::Request::post(format!("http://{target}/")).body(())?;
                let (resp, mut body) = send.send_request(req, false)?;
                body.send_data(Bytes::from(vec![b'x'; 100]), true)?;
                let resp = resp.await?;
                let ok = resp.status().is_success();
                let mut rb = resp.into_body();
                while let Some(chunk) = rb.data().await {
                    let chunk = chunk?;
                    let _ = rb.flow_control().release_capacity(chunk.len());
                }
                total += 1;
                if now >= warm_until {
                    n += 1;
                    if !ok {
                        errors += 1;
                    }
                }
            }
        });
    }
    let (mut n, mut errors, mut total) = (0, 0, 0);
    while let Some(r) = tasks.join_next().await {
        let (a, b, c) = r??;
        n += a;
        errors += b;
        total += c;
    }
    Ok((n, errors, total, secs))
}
