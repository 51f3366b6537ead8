//! Listener filters at run time: the TLS inspector (`envoy.filters.listener.tls_inspector`)
//! and the HTTP inspector (`envoy.filters.listener.http_inspector`) read the first bytes of a
//! TCP connection with `MSG_PEEK`, so the bytes stay in the kernel for the network filter (or
//! the TLS handshake), and record what they learn for filter chain matching: the transport
//! protocol, the requested server name and the application protocols.
//!
//! The filters run in the listener's order under `listener_filters_timeout`. On timeout the
//! connection is closed, or with `continue_on_listener_filters_timeout` goes on with what the
//! filters that finished have found. A peer that closes before the filters decide is closed.
//! Reads are bounded: the TLS inspector by `max_client_hello_size`, the HTTP inspector by
//! 64 KiB.

use crate::protocol::client_hello::{self, Parse};
use crate::protocol::detect::{HttpInspect, HttpProtocol};
use crate::snapshot::{
    HTTP_INITIAL_READ, HTTP_MAX_INSPECT, HttpInspector, Listener, ListenerFilterConfig,
    TlsInspector,
};
use std::io;
use tokio::net::TcpStream;
use tracing::debug;

mod peek;
#[cfg(test)]
mod tests;

use peek::Peeker;

/// What the listener filters found out about a connection.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(super) struct Detected {
    /// The SNI of a TLS ClientHello.
    pub server_name: Option<String>,
    /// `tls` when the TLS inspector found a ClientHello; unset means `raw_buffer`.
    pub transport_protocol: Option<&'static str>,
    /// ALPN from the ClientHello, or the protocol the HTTP inspector recognised.
    pub application_protocols: Vec<String>,
}

impl Detected {
    /// The transport protocol for filter chain matching.
    pub fn transport_protocol(&self) -> &'static str {
        self.transport_protocol.unwrap_or("raw_buffer")
    }
}

/// Whether a filter lets the connection go on to filter chain matching.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Verdict {
    /// Next filter, or filter chain matching.
    Continue,
    /// Close the connection (the reason is counted and logged where it was found).
    Close,
}

/// Run `l`'s listener filters on `stream`, connected to `local_port`, under the listener's
/// timeout; fill `detected` as they go. The stream comes back unless a filter (or the
/// timeout) closes the connection.
pub(super) async fn run(
    stream: TcpStream,
    l: &Listener,
    local_port: Option<u16>,
    detected: &mut Detected,
) -> Option<TcpStream> {
    let filters = run_filters(&stream, l, local_port, detected);
    let verdict = match l.listener_filters_timeout {
        None => filters.await,
        Some(limit) => match tokio::time::timeout(limit, filters).await {
            Ok(v) => v,
            Err(_) => {
                l.stats.downstream_pre_cx_timeout.inc();
                debug!(listener = %l.name, "listener filters timed out");
                if !l.continue_on_listener_filters_timeout {
                    return None;
                }
                // A filter waiting for more bytes has told the reactor the socket is drained
                // while the bytes it peeked are still queued: register the socket afresh so
                // that the reactor reports them to the network filter.
                return match stream.into_std().and_then(TcpStream::from_std) {
                    Ok(s) => Some(s),
                    Err(e) => {
                        debug!(listener = %l.name, error = %e, "re-registering the socket failed");
                        None
                    }
                };
            }
        },
    };
    // A filter decides only on bytes a peek just returned, which leaves the socket's readiness
    // as it is: the network filter reads them at once.
    (verdict == Verdict::Continue).then_some(stream)
}

async fn run_filters(
    stream: &TcpStream,
    l: &Listener,
    local_port: Option<u16>,
    detected: &mut Detected,
) -> Verdict {
    let mut peeker: Option<Peeker<'_>> = None;
    for f in &l.listener_filters {
        if !f.enabled_for(local_port) {
            continue;
        }
        let verdict = match &f.config {
            ListenerFilterConfig::TlsInspector(t) => match peeker_for(&mut peeker, stream) {
                Ok(p) => tls_inspector(p, t, detected).await,
                Err(e) => read_failed(&f.name, &e),
            },
            ListenerFilterConfig::HttpInspector(h) => {
                // Only plaintext: after a TLS inspector found TLS there is nothing to read.
                if detected.transport_protocol() != "raw_buffer" {
                    continue;
                }
                match peeker_for(&mut peeker, stream) {
                    Ok(p) => http_inspector(p, h, detected).await,
                    Err(e) => {
                        h.stats.read_error.inc();
                        read_failed(&f.name, &e)
                    }
                }
            }
            // Decoded and counted as not enforced when compiled.
            ListenerFilterConfig::OriginalDst(_)
            | ListenerFilterConfig::SetInternalDstAddress(_) => Verdict::Continue,
        };
        if verdict == Verdict::Close {
            return Verdict::Close;
        }
    }
    Verdict::Continue
}

fn peeker_for<'a, 'b>(
    slot: &'b mut Option<Peeker<'a>>,
    stream: &'a TcpStream,
) -> io::Result<&'b mut Peeker<'a>> {
    if slot.is_none() {
        *slot = Some(Peeker::new(stream)?);
    }
    Ok(slot.as_mut().expect("just filled"))
}

fn read_failed(filter: &str, e: &io::Error) -> Verdict {
    debug!(filter, error = %e, "listener filter read failed; connection closed");
    Verdict::Close
}

/// The TLS inspector: peek until the bytes are a whole ClientHello, or not TLS, or too large.
async fn tls_inspector(p: &mut Peeker<'_>, t: &TlsInspector, detected: &mut Detected) -> Verdict {
    let stats = &t.stats;
    let mut window = t.initial_read_buffer_size;
    let mut at_least = 1;
    loop {
        let bytes = match p.fill(at_least, window).await {
            Ok(Some(b)) => b,
            Ok(None) => {
                debug!("peer closed during tls_inspector");
                return Verdict::Close;
            }
            Err(e) => return read_failed("envoy.filters.listener.tls_inspector", &e),
        };
        match client_hello::parse(bytes) {
            Parse::NeedMore(n) if n > t.max_client_hello_size => {
                stats.client_hello_too_large.inc();
                stats.bytes_processed.record(bytes.len() as u64);
                debug!(
                    needed = n,
                    limit = t.max_client_hello_size,
                    "ClientHello too large"
                );
                return Verdict::Close;
            }
            Parse::NeedMore(n) => {
                at_least = n;
                if n > window {
                    window = (window * 2).max(n).min(t.max_client_hello_size);
                }
            }
            Parse::Hello(h) => {
                stats.tls_found.inc();
                stats.bytes_processed.record(h.consumed as u64);
                if h.alpn_present {
                    stats.alpn_found.inc();
                } else {
                    stats.alpn_not_found.inc();
                }
                if h.server_name.is_some() {
                    stats.sni_found.inc();
                } else {
                    stats.sni_not_found.inc();
                }
                debug!(sni = ?h.server_name, alpn = ?h.alpn, "tls_inspector: ClientHello");
                detected.transport_protocol = Some("tls");
                detected.server_name = h.server_name;
                if h.alpn_present {
                    detected.application_protocols = h.alpn;
                }
                return Verdict::Continue;
            }
            Parse::NotTls { at, reason } => {
                stats.tls_not_found.inc();
                stats.bytes_processed.record(at as u64);
                debug!(reason, "tls_inspector: not TLS");
                return if t.close_on_parse_error {
                    Verdict::Close
                } else {
                    Verdict::Continue
                };
            }
        }
    }
}

/// The HTTP inspector: peek until the h2c preface or a whole request line, or not HTTP.
async fn http_inspector(p: &mut Peeker<'_>, h: &HttpInspector, detected: &mut Detected) -> Verdict {
    let stats = &h.stats;
    let mut scan = HttpInspect::default();
    let mut window = HTTP_INITIAL_READ;
    let mut at_least = 1;
    loop {
        let bytes = match p.fill(at_least, window).await {
            Ok(Some(b)) => b,
            Ok(None) => {
                debug!("peer closed during http_inspector");
                return Verdict::Close;
            }
            Err(e) => {
                stats.read_error.inc();
                return read_failed("envoy.filters.listener.http_inspector", &e);
            }
        };
        let found = scan.scan(bytes);
        let counter = match found {
            HttpProtocol::NeedMore => {
                if bytes.len() >= HTTP_MAX_INSPECT {
                    // No request line in 64 KiB: Envoy gives up and closes.
                    stats.read_error.inc();
                    debug!("http_inspector: no request line within the read limit");
                    return Verdict::Close;
                }
                at_least = bytes.len() + 1;
                if at_least > window {
                    window = (window * 2).min(HTTP_MAX_INSPECT);
                }
                continue;
            }
            HttpProtocol::NotHttp => &stats.http_not_found,
            HttpProtocol::Http10 => &stats.http10_found,
            HttpProtocol::Http11 => &stats.http11_found,
            HttpProtocol::Http2 => &stats.http2_found,
        };
        counter.inc();
        if let Some(alpn) = found.alpn() {
            debug!(protocol = alpn, "http_inspector");
            detected.application_protocols = vec![alpn.to_owned()];
        }
        return Verdict::Continue;
    }
}
