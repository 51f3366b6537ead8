//! Istio's peer metadata exchange on one stream: the downstream peer is read from the request
//! as it arrives, our metadata goes to the upstream once the cluster is known, and the
//! response is read for the upstream peer (and carries ours back downstream when the request
//! carried the exchange headers). What is found goes into the stream's record for Istio's
//! metrics.

use super::record::Recorder;
use crate::stats::istio::IstioCluster;
use crate::stats::istio::exchange::{Discovered, ExchangeState, PeerExchange, UpstreamTarget};
use crate::upstream::cluster::Cluster;
use http::HeaderMap;
use std::sync::Arc;

/// The exchange of one stream.
pub(crate) struct StreamExchange {
    exchange: Arc<PeerExchange>,
    state: ExchangeState,
    /// The cluster the request went to (name, `istio` metadata).
    cluster: Option<(Arc<str>, Option<Arc<IstioCluster>>)>,
}

fn found(d: Discovered) -> Option<Arc<crate::stats::istio::WorkloadMetadata>> {
    if d.bad_header {
        tracing::debug!("peer metadata header present but unreadable");
    }
    d.peer.map(Arc::new)
}

impl StreamExchange {
    /// The request as it arrives: discover the downstream peer.
    pub(crate) fn request(
        exchange: &Arc<PeerExchange>,
        headers: &mut HeaderMap,
        rec: &mut Recorder,
    ) -> StreamExchange {
        let mut state = ExchangeState::default();
        let peer = found(exchange.discover_downstream(headers, &mut state));
        if peer.is_some() {
            rec.with(|i| i.istio.downstream_peer = peer);
        }
        StreamExchange {
            exchange: exchange.clone(),
            state,
            cluster: None,
        }
    }

    /// The cluster is chosen: add our metadata to the upstream request.
    pub(crate) fn upstream(&mut self, headers: &mut HeaderMap, cluster: &Cluster) {
        let target = UpstreamTarget::new(&cluster.name, cluster.istio.as_deref());
        self.exchange
            .propagate_upstream(headers, &self.state, &target);
        self.cluster = Some((cluster.name.clone(), cluster.istio.clone()));
    }

    /// The response headers, before they go downstream.
    pub(crate) fn response(&self, headers: &mut HeaderMap, rec: &mut Recorder) {
        let target = match &self.cluster {
            Some((name, istio)) => UpstreamTarget::new(name, istio.as_deref()),
            None => UpstreamTarget::default(),
        };
        let peer = found(self.exchange.on_response(headers, &self.state, &target));
        if peer.is_some() {
            rec.with(|i| i.istio.upstream_peer = peer);
        }
    }
}
