//! Serving: binding, the accept loop, the gRPC services, and the stream tasks.

use super::*;

/// The accept loop of a started server.
pub(super) struct Serving {
    pub(super) stop: oneshot::Sender<()>,
    pub(super) task: tokio::task::JoinHandle<()>,
}

pub(super) enum Bound {
    Tcp(TcpListener),
    Unix(UnixListener),
}

/// Bind `addr`; returns the listener and the address with the bound port.
pub(super) async fn bind(addr: &AdsAddr) -> std::io::Result<(Bound, AdsAddr)> {
    match addr {
        AdsAddr::Tcp(a) => {
            let socket = if a.is_ipv4() {
                TcpSocket::new_v4()?
            } else {
                TcpSocket::new_v6()?
            };
            // The port may still have connections in TIME_WAIT from before a stop.
            socket.set_reuseaddr(true)?;
            socket.bind(*a)?;
            let listener = socket.listen(128)?;
            let bound = listener.local_addr()?;
            Ok((Bound::Tcp(listener), AdsAddr::Tcp(bound)))
        }
        AdsAddr::Unix(p) => {
            let _ = std::fs::remove_file(p);
            Ok((Bound::Unix(UnixListener::bind(p)?), addr.clone()))
        }
    }
}

impl Serving {
    pub(super) fn spawn(shared: Arc<Shared>, bound: Bound) -> Serving {
        let (stop, stopped) = oneshot::channel();
        let service = Services {
            ads: AggregatedDiscoveryServiceServer::new(Handler(shared.clone())),
            sds: SecretDiscoveryServiceServer::new(Handler(shared)),
        };
        let task = tokio::spawn(accept_loop(bound, service, stopped));
        Serving { stop, task }
    }
}

/// ADS, and SDS on a stream of its own (as pilot-agent serves it on its SDS socket); both
/// streams share the store and the records.
#[derive(Clone)]
pub(super) struct Services {
    pub(super) ads: AggregatedDiscoveryServiceServer<Handler>,
    pub(super) sds: SecretDiscoveryServiceServer<Handler>,
}

pub(super) type AdsService = Services;

/// Accept connections until told to stop (or the handle is gone), then drop them all.
pub(super) async fn accept_loop(
    bound: Bound,
    service: AdsService,
    mut stop: oneshot::Receiver<()>,
) {
    let mut connections = tokio::task::JoinSet::new();
    loop {
        tokio::select! {
            _ = &mut stop => break,
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
            accepted = accept(&bound, &service) => match accepted {
                Ok(connection) => {
                    connections.spawn(connection);
                }
                // Out of file descriptors or the like: try again shortly, without spinning.
                Err(_) => tokio::time::sleep(Duration::from_millis(10)).await,
            },
        }
    }
    drop(bound);
    connections.shutdown().await;
}

pub(super) type Connection = Pin<Box<dyn Future<Output = ()> + Send>>;

pub(super) async fn accept(bound: &Bound, service: &AdsService) -> std::io::Result<Connection> {
    Ok(match bound {
        Bound::Tcp(l) => {
            let (io, _) = l.accept().await?;
            let _ = io.set_nodelay(true);
            Box::pin(serve_connection(io, service.clone()))
        }
        Bound::Unix(l) => Box::pin(serve_connection(l.accept().await?.0, service.clone())),
    })
}

/// Serve gRPC (HTTP/2) on one connection.
pub(super) async fn serve_connection<I>(io: I, service: AdsService)
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let service = hyper::service::service_fn(move |req: http::Request<hyper::body::Incoming>| {
        let services = service.clone();
        async move {
            if req
                .uri()
                .path()
                .starts_with("/envoy.service.secret.v3.SecretDiscoveryService/")
            {
                services.sds.clone().call(req).await
            } else {
                services.ads.clone().call(req).await
            }
        }
    });
    let _ = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
        .serve_connection(TokioIo::new(io), service)
        .await;
}

/// The gRPC service: each call opens a stream, run by its own task.
pub(super) struct Handler(pub(super) Arc<Shared>);

#[tonic::async_trait]
impl AggregatedDiscoveryService for Handler {
    type StreamAggregatedResourcesStream =
        UnboundedReceiverStream<Result<DiscoveryResponse, Status>>;
    type DeltaAggregatedResourcesStream =
        UnboundedReceiverStream<Result<DeltaDiscoveryResponse, Status>>;

    async fn stream_aggregated_resources(
        &self,
        request: tonic::Request<Streaming<DiscoveryRequest>>,
    ) -> Result<tonic::Response<Self::StreamAggregatedResourcesStream>, Status> {
        Ok(tonic::Response::new(open_stream(
            &self.0,
            request,
            SotwSession::default(),
        )))
    }

    async fn delta_aggregated_resources(
        &self,
        request: tonic::Request<Streaming<DeltaDiscoveryRequest>>,
    ) -> Result<tonic::Response<Self::DeltaAggregatedResourcesStream>, Status> {
        Ok(tonic::Response::new(open_stream(
            &self.0,
            request,
            DeltaSession::default(),
        )))
    }
}

#[tonic::async_trait]
impl SecretDiscoveryService for Handler {
    type StreamSecretsStream = UnboundedReceiverStream<Result<DiscoveryResponse, Status>>;
    type DeltaSecretsStream = UnboundedReceiverStream<Result<DeltaDiscoveryResponse, Status>>;

    async fn stream_secrets(
        &self,
        request: tonic::Request<Streaming<DiscoveryRequest>>,
    ) -> Result<tonic::Response<Self::StreamSecretsStream>, Status> {
        Ok(tonic::Response::new(open_stream(
            &self.0,
            request,
            SotwSession::default(),
        )))
    }

    async fn delta_secrets(
        &self,
        request: tonic::Request<Streaming<DeltaDiscoveryRequest>>,
    ) -> Result<tonic::Response<Self::DeltaSecretsStream>, Status> {
        Ok(tonic::Response::new(open_stream(
            &self.0,
            request,
            DeltaSession::default(),
        )))
    }

    async fn fetch_secrets(
        &self,
        _request: tonic::Request<DiscoveryRequest>,
    ) -> Result<tonic::Response<DiscoveryResponse>, Status> {
        Err(Status::unimplemented("REST-style fetch is not served"))
    }
}

/// What the handle tells a stream's task.
pub(super) enum Control {
    /// Send what the store changed for these types (`None`: all types).
    Sync(Option<BTreeSet<String>>),
    Raw(XdsResponse),
    /// End the stream with this status.
    Break(Status),
    /// End the stream's task now (the server stops).
    Kill,
}

/// The protocol state of one stream.
pub(super) trait Session: Send + 'static {
    type Request: Clone + Send + Into<XdsRequest> + 'static;
    type Response: Send + Clone + Into<XdsResponse> + 'static;
    const PROTOCOL: Protocol;
    /// Handle a request; returns the responses to send.
    fn on_request(&mut self, inner: &mut Inner, request: Self::Request) -> Vec<Self::Response>;
    /// Send what changed in these types (all when `None`).
    fn on_sync(
        &mut self,
        inner: &mut Inner,
        types: Option<&BTreeSet<String>>,
    ) -> Vec<Self::Response>;
    /// A raw response to pass on, if it is of this protocol.
    fn on_raw(&mut self, response: XdsResponse) -> Option<Self::Response>;
}

pub(super) fn open_stream<S: Session>(
    shared: &Arc<Shared>,
    request: tonic::Request<Streaming<S::Request>>,
    session: S,
) -> UnboundedReceiverStream<Result<S::Response, Status>> {
    let metadata = request.metadata().clone();
    let inbound = request.into_inner();
    let (out, responses) = mpsc::unbounded_channel();
    let (control_tx, control) = mpsc::unbounded_channel();
    let id = {
        let mut inner = shared.lock();
        let id = inner.streams.len() as StreamId + 1;
        let info = StreamInfo {
            id,
            protocol: S::PROTOCOL,
            metadata,
            open: true,
        };
        let control = Some(control_tx);
        inner.streams.insert(id, StreamEntry { info, control });
        id
    };
    shared.notify();
    tokio::spawn(run_stream(
        shared.clone(),
        id,
        session,
        inbound,
        out,
        control,
    ));
    UnboundedReceiverStream::new(responses)
}

pub(super) async fn run_stream<S: Session>(
    shared: Arc<Shared>,
    id: StreamId,
    mut session: S,
    mut inbound: Streaming<S::Request>,
    out: mpsc::UnboundedSender<Result<S::Response, Status>>,
    mut control: mpsc::UnboundedReceiver<Control>,
) {
    loop {
        // Each event is handled, recorded and answered under one lock, so a test that sees a
        // request recorded also sees the responses it caused.
        let delivered = tokio::select! {
            request = inbound.next() => {
                // The client ended its side, sent something undecodable, or went away.
                let Some(Ok(request)) = request else { break };
                let at = Instant::now();
                let mut inner = shared.lock();
                let responses = session.on_request(&mut inner, request.clone());
                let request = request.into();
                inner.requests.push(Received { stream: id, at, request });
                deliver(&mut inner, id, &out, responses)
            }
            c = control.recv() => match c {
                Some(Control::Sync(types)) => {
                    let mut inner = shared.lock();
                    let responses = session.on_sync(&mut inner, types.as_ref());
                    deliver(&mut inner, id, &out, responses)
                }
                Some(Control::Raw(r)) => {
                    let responses = session.on_raw(r).into_iter().collect();
                    deliver(&mut shared.lock(), id, &out, responses)
                }
                Some(Control::Break(status)) => {
                    let _ = out.send(Err(status));
                    break;
                }
                Some(Control::Kill) | None => break,
            },
            () = out.closed() => break,
        };
        shared.notify();
        if !delivered {
            break;
        }
    }
    let mut inner = shared.lock();
    if let Some(s) = inner.streams.get_mut(&id) {
        s.info.open = false;
        s.control = None;
    }
    drop(inner);
    shared.notify();
}

/// Record and send responses; false once the client is gone.
pub(super) fn deliver<R: Clone + Into<XdsResponse>>(
    inner: &mut Inner,
    id: StreamId,
    out: &mpsc::UnboundedSender<Result<R, Status>>,
    responses: Vec<R>,
) -> bool {
    for r in responses {
        let response = r.clone().into();
        inner.responses.push(Sent {
            stream: id,
            at: Instant::now(),
            response,
        });
        if out.send(Ok(r)).is_err() {
            return false;
        }
    }
    true
}

impl From<DiscoveryRequest> for XdsRequest {
    fn from(r: DiscoveryRequest) -> Self {
        Self::Sotw(r)
    }
}

impl From<DeltaDiscoveryRequest> for XdsRequest {
    fn from(r: DeltaDiscoveryRequest) -> Self {
        Self::Delta(r)
    }
}

impl From<DiscoveryResponse> for XdsResponse {
    fn from(r: DiscoveryResponse) -> Self {
        Self::Sotw(r)
    }
}

impl From<DeltaDiscoveryResponse> for XdsResponse {
    fn from(r: DeltaDiscoveryResponse) -> Self {
        Self::Delta(r)
    }
}

/// Connects a tonic channel to a Unix socket.
#[derive(Clone)]
pub(super) struct UdsConnector(pub(super) PathBuf);

impl Service<http::Uri> for UdsConnector {
    type Response = TokioIo<UnixStream>;
    type Error = std::io::Error;
    type Future = Pin<Box<dyn Future<Output = std::io::Result<Self::Response>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, _: http::Uri) -> Self::Future {
        let path = self.0.clone();
        Box::pin(async move { Ok(TokioIo::new(UnixStream::connect(path).await?)) })
    }
}
