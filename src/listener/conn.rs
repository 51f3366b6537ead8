//! One accepted connection, on its own task: what the listener learns about it (its listener
//! filters fill the connection metadata filter chain matching reads), the filter chain it
//! selects, and the network filter that serves it until it closes.

use super::{Generation, inspect};
use crate::proxy::{self, ConnInfo, Drain};
use crate::snapshot::{ConnMeta, FilterChain, Listener, World};
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::io::{AsyncRead, AsyncWrite};
use tracing::debug;

/// An accepted stream.
pub(super) enum Io {
    Tcp(tokio::net::TcpStream),
    Unix(tokio::net::UnixStream),
}

/// A connection as the accept loop hands it over.
pub(super) struct Accepted {
    pub io: Io,
    pub id: u64,
    pub local: Option<SocketAddr>,
    pub remote: Option<SocketAddr>,
}

/// Select the filter chain of `generation`'s listener for the connection and serve it.
pub(super) async fn run(a: Accepted, generation: Arc<Generation>, world: Arc<World>) {
    let l = &generation.listener;
    let Accepted {
        io,
        id,
        local,
        remote,
    } = a;
    // Listener filters (TCP only: a Unix socket has no peek here; counted when compiled).
    let mut detected = inspect::Detected::default();
    let io = match io {
        Io::Tcp(s) if !l.listener_filters.is_empty() => {
            let s = {
                let _active = PreConnection::new(&l.stats.downstream_pre_cx_active);
                inspect::run(s, l, local.map(|a| a.port()), &mut detected).await
            };
            let Some(s) = s else {
                debug!(listener = %l.name, conn = id, "closed by a listener filter");
                return;
            };
            Io::Tcp(s)
        }
        io => io,
    };
    let meta = ConnMeta {
        local,
        remote,
        server_name: detected.server_name.as_deref(),
        transport_protocol: detected.transport_protocol(),
        application_protocols: &detected.application_protocols,
        ..Default::default()
    };
    let Some((index, chain)) = l
        .select_chain_index(&meta)
        .and_then(|i| l.chains.get(i).or(l.default_chain.as_ref()).map(|c| (i, c)))
    else {
        debug!(listener = %l.name, conn = id, "no filter chain match");
        l.stats.no_filter_chain_match.inc();
        if !l.access_log.is_empty() {
            log_no_filter_chain(l, id, local, remote);
        }
        return;
    };
    let Some(drain) = generation.drains.get(index).cloned() else {
        return;
    };
    let conn = ConnInfo {
        id,
        local,
        remote,
        listener: l.name.as_str().into(),
        buffer_limit: l.per_connection_buffer_limit,
        direction: l.direction,
        tls: None,
    };
    // Envoy counts a connection once a filter chain takes it.
    let stats = l.stats.clone();
    stats.downstream_cx_total.inc();
    stats.downstream_cx_active.inc();
    let accepted_at = std::time::Instant::now();
    match io {
        Io::Tcp(s) => serve(s, chain, world, conn, drain).await,
        Io::Unix(s) => serve(s, chain, world, conn, drain).await,
    }
    stats.downstream_cx_active.dec();
    stats.downstream_cx_destroy.inc();
    stats
        .downstream_cx_length_ms
        .record_duration(accepted_at.elapsed());
}

/// `downstream_pre_cx_active` for as long as the listener filters run, even if the task is
/// dropped on the way.
struct PreConnection<'a>(&'a crate::stats::Gauge);

impl<'a> PreConnection<'a> {
    fn new(g: &'a crate::stats::Gauge) -> Self {
        g.inc();
        Self(g)
    }
}

impl Drop for PreConnection<'_> {
    fn drop(&mut self) {
        self.0.dec();
    }
}

/// Terminate TLS if the chain asks for it (the handshake bounded by the chain's
/// `transport_socket_connect_timeout`), then run the chain's network filter.
async fn serve<IO>(io: IO, chain: &FilterChain, world: Arc<World>, mut conn: ConnInfo, drain: Drain)
where
    IO: AsyncRead + AsyncWrite + Send + Unpin + 'static,
{
    let network = chain.network.clone();
    let Some(tls) = chain.tls() else {
        proxy::serve_connection(io, network, world, conn, drain).await;
        return;
    };
    let secrets = world.secrets.load_full();
    match tls.accept(io, &secrets, chain.handshake_timeout).await {
        Ok((stream, info)) => {
            drop(secrets);
            conn.tls = Some(Arc::new(info));
            proxy::serve_connection(stream, network, world, conn, drain).await;
        }
        Err(e) => {
            debug!(listener = %conn.listener, conn = conn.id, chain = %chain.name, error = %e, "TLS handshake failed; connection closed");
        }
    }
}

/// The listener's access log for a connection no filter chain took: Envoy's `NR` with
/// `filter_chain_not_found`, and the connection closes at once.
fn log_no_filter_chain(
    l: &Listener,
    id: u64,
    local: Option<SocketAddr>,
    remote: Option<SocketAddr>,
) {
    use crate::stream_info::{LogType, ResponseFlag, StreamInfo};
    let mut info = StreamInfo::new(LogType::NotSet, id, l.name.as_str().into());
    info.direction = l.direction;
    info.downstream_local = local;
    info.downstream_remote = remote;
    info.downstream_direct_remote = remote;
    info.response_flags.insert(ResponseFlag::NoRouteFound);
    info.response_code_details = Some("filter_chain_not_found".into());
    info.duration = Some(info.elapsed());
    l.access_log.notify(&info);
}
