//! HTTP/1.1 upgrades (WebSocket and others allowed by `upgrade_configs`) and CONNECT. An
//! upgrade goes upstream on a connection of its own; once the upstream answers 101 both
//! connections are upgraded and bytes are copied both ways. CONNECT is terminated here: tern
//! connects to the chosen host and answers 200, then tunnels.

use super::local_reply::{local_reply, reset_reason, upstream_reset_text};
use super::record::{Recorder, details};
use crate::protocol::body::{self, Body, BoxError};
use crate::proxy::tcp_proxy::{Moved, pipe};
use crate::stats::Counter;
use crate::upstream::cluster::Cluster;
use crate::upstream::host::Host;
use crate::upstream::pool::{self, UpstreamError};
use http::{Response, StatusCode};
use hyper_util::rt::TokioIo;
use std::sync::Arc;
use tracing::debug;

/// Proxy an upgrade or CONNECT request to `host`.
pub(crate) async fn proxy(
    req: http::Request<Body>,
    downstream: Option<super::h1::DownstreamUpgrade>,
    upgrade_type: &str,
    host: Arc<Host>,
    cluster: &Cluster,
    secrets: &arc_swap::ArcSwap<crate::tls::SecretMap>,
    rec: &mut Recorder,
) -> Response<Body> {
    let Some(downstream) = downstream else {
        // HTTP/2 streams have no HTTP/1.1 upgrade.
        rec.details(details::UPGRADE_FAILED);
        return local_reply(StatusCode::FORBIDDEN, "");
    };
    let tls = pool::UpstreamTls::for_host(
        cluster,
        &host,
        || secrets.load_full(),
        Some(pool::UpstreamProtocol::Http1),
        req.headers()
            .get(http::header::HOST)
            .and_then(|h| h.to_str().ok()),
        None,
    );
    let connect = pool::connect_host(
        &host,
        &cluster.stats,
        cluster.pool.connect_timeout,
        tls.as_ref(),
    );
    let io = match connect.await {
        Ok(io) => io,
        Err(e) => {
            debug!(error = %e, "upgrade: upstream connect failed");
            rec.upstream_failure(&e);
            return local_reply(
                StatusCode::SERVICE_UNAVAILABLE,
                &upstream_reset_text(false, reset_reason(&e)),
            );
        }
    };
    cluster.stats.upstream_rq_total().inc();
    rec.upstream_response(io.local());
    if upgrade_type == "connect" {
        // The tunnel ends the stream's record when it closes.
        let mut record = rec.detach();
        record.response(200);
        tokio::spawn(async move {
            let _inflight = host.start_request();
            match downstream.connected().await {
                Ok(up) => {
                    let (rx, tx) = (Counter::default(), Counter::default());
                    let moved = Moved::default();
                    pipe(up, io, None, &rx, &tx, &moved).await;
                    record.tunnel_closed(moved.rx.into_inner(), moved.tx.into_inner());
                }
                Err(e) => debug!(error = %e, "CONNECT: downstream upgrade failed"),
            }
        });
        let mut r = Response::new(body::empty());
        *r.status_mut() = StatusCode::OK;
        return r;
    }
    let (mut sender, conn) = match hyper::client::conn::http1::handshake(TokioIo::new(io)).await {
        Ok(x) => x,
        Err(e) => {
            debug!(error = %e, "upgrade: upstream handshake failed");
            rec.upstream_failure(&UpstreamError::Handshake(e));
            return local_reply(
                StatusCode::SERVICE_UNAVAILABLE,
                &upstream_reset_text(false, "protocol error"),
            );
        }
    };
    tokio::spawn(async move {
        let _ = conn.with_upgrades().await;
    });
    let mut resp = match sender.send_request(req).await {
        Ok(r) => r,
        Err(e) => {
            debug!(error = %e, "upgrade: upstream request failed");
            rec.upstream_failure(&UpstreamError::Reset(e.into()));
            return local_reply(
                StatusCode::SERVICE_UNAVAILABLE,
                &upstream_reset_text(false, "connection termination"),
            );
        }
    };
    if resp.status() != StatusCode::SWITCHING_PROTOCOLS {
        return resp.map(body::boxed);
    }
    let upstream = hyper::upgrade::on(&mut resp);
    let mut record = rec.detach();
    record.response(StatusCode::SWITCHING_PROTOCOLS.as_u16());
    tokio::spawn(async move {
        let _inflight = host.start_request();
        match tokio::try_join!(downstream.connected(), async {
            upstream.await.map_err(BoxError::from)
        }) {
            Ok((d, u)) => {
                let (rx, tx) = (Counter::default(), Counter::default());
                let moved = Moved::default();
                pipe(d, TokioIo::new(u), None, &rx, &tx, &moved).await;
                record.tunnel_closed(moved.rx.into_inner(), moved.tx.into_inner());
            }
            Err(e) => debug!(error = %e, "upgrade failed"),
        }
    });
    resp.map(body::boxed)
}
