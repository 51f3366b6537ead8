//! The attributes metric-override expressions can read, named as Envoy's CEL attributes
//! (`request.*`, `response.*`, `source.*`, `destination.*`, `upstream.*`, `connection.*`,
//! `xds.*`, `node`) plus Istio's peer objects (`filter_state.downstream_peer`,
//! `filter_state.upstream_peer`, and the older top-level `downstream_peer` / `upstream_peer`).
//! Anything else is an evaluation error, which Istio reports as `unknown`.

use super::expr::{Attributes, EvalError, Seg, Value};
use super::peer::WorkloadMetadata;
use super::record::{ConnectionInfo, HttpObservation, UpstreamInfo};
use envoy_types::pb::envoy::config::core::v3::Node;
use envoy_types::pb::google::protobuf::{Struct, value::Kind as PbKind};
use http::HeaderMap;
use std::borrow::Cow;
use std::net::SocketAddr;

/// This proxy's node, for `xds.node` / `node`.
#[derive(Debug, Clone, Default)]
pub struct NodeInfo {
    /// `node.id`.
    pub id: String,
    /// `node.cluster`.
    pub cluster: String,
    /// `node.metadata`.
    pub metadata: Struct,
    /// `node.locality.region`.
    pub region: String,
    /// `node.locality.zone`.
    pub zone: String,
}

impl NodeInfo {
    /// The bootstrap's `node`.
    pub fn from_node(node: &Node) -> Self {
        let locality = node.locality.as_ref();
        NodeInfo {
            id: node.id.clone(),
            cluster: node.cluster.clone(),
            metadata: node.metadata.clone().unwrap_or_default(),
            region: locality.map(|l| l.region.clone()).unwrap_or_default(),
            zone: locality.map(|l| l.zone.clone()).unwrap_or_default(),
        }
    }
}

pub(crate) struct Ctx<'a> {
    pub node: &'a NodeInfo,
    pub http: Option<&'a HttpObservation<'a>>,
    pub upstream: &'a UpstreamInfo<'a>,
    pub connection: &'a ConnectionInfo<'a>,
    pub downstream_peer: Option<&'a WorkloadMetadata>,
    pub upstream_peer: Option<&'a WorkloadMetadata>,
    pub route_name: Option<&'a str>,
    pub listener_direction: i64,
    pub grpc_status: Option<u64>,
}

const NOT_FOUND: EvalError = EvalError::NotFound;

fn s(v: &str) -> Value<'_> {
    Value::Str(Cow::Borrowed(v))
}

fn int(v: u64) -> Value<'static> {
    i64::try_from(v).map_or(Value::Uint(v), Value::Int)
}

fn leaf<'v>(path: &[Seg<'_>], v: Value<'v>) -> Result<Value<'v>, EvalError> {
    if path.is_empty() {
        Ok(v)
    } else {
        Err(EvalError::Failed("selection on a scalar"))
    }
}

fn field<'p>(seg: &'p Seg<'_>) -> Option<&'p str> {
    match seg {
        Seg::Field(f) => Some(f),
        Seg::Key(Value::Str(k)) => Some(k),
        Seg::Key(_) => None,
    }
}

fn header<'h>(headers: Option<&'h HeaderMap>, path: &[Seg<'_>]) -> Result<Value<'h>, EvalError> {
    let Some(headers) = headers else {
        return Err(NOT_FOUND);
    };
    let [seg] = path else {
        return if path.is_empty() {
            Ok(Value::Container("map"))
        } else {
            Err(EvalError::Failed("selection on a header value"))
        };
    };
    let name = field(seg).ok_or(EvalError::Failed("header names are strings"))?;
    let name = name.to_ascii_lowercase();
    let mut values = headers.get_all(name.as_str()).iter();
    let first = values.next().ok_or(NOT_FOUND)?;
    let first = first
        .to_str()
        .map_err(|_| EvalError::Failed("header is not text"))?;
    let rest: Vec<&str> = values.filter_map(|v| v.to_str().ok()).collect();
    if rest.is_empty() {
        return Ok(s(first));
    }
    // Envoy's header map joins repeated headers with commas.
    let mut joined = first.to_owned();
    for r in rest {
        joined.push(',');
        joined.push_str(r);
    }
    Ok(Value::Str(Cow::Owned(joined)))
}

fn address<'v>(addr: Option<SocketAddr>, path: &[Seg<'_>]) -> Result<Value<'v>, EvalError> {
    let addr = addr.ok_or(NOT_FOUND)?;
    let (first, rest) = path
        .split_first()
        .ok_or(EvalError::Failed("address root"))?;
    match field(first) {
        Some("address") => leaf(rest, Value::Str(Cow::Owned(addr.to_string()))),
        Some("port") => leaf(rest, Value::Int(i64::from(addr.port()))),
        _ => Err(NOT_FOUND),
    }
}

/// Walk a protobuf `Struct`.
pub(crate) fn walk_struct<'v>(st: &'v Struct, path: &[Seg<'_>]) -> Result<Value<'v>, EvalError> {
    let Some((first, rest)) = path.split_first() else {
        return Ok(Value::Container("map"));
    };
    let key = field(first).ok_or(EvalError::Failed("struct keys are strings"))?;
    let v = st.fields.get(key).ok_or(NOT_FOUND)?;
    walk_value(v.kind.as_ref(), rest)
}

fn walk_value<'v>(kind: Option<&'v PbKind>, path: &[Seg<'_>]) -> Result<Value<'v>, EvalError> {
    match kind {
        Some(PbKind::StructValue(st)) => walk_struct(st, path),
        Some(PbKind::ListValue(list)) => {
            let Some((first, rest)) = path.split_first() else {
                return Ok(Value::Container("list"));
            };
            let i = match first {
                Seg::Key(Value::Int(i)) => usize::try_from(*i).ok(),
                Seg::Key(Value::Uint(u)) => usize::try_from(*u).ok(),
                _ => return Err(EvalError::Failed("list index is not a number")),
            };
            let v = i.and_then(|i| list.values.get(i)).ok_or(NOT_FOUND)?;
            walk_value(v.kind.as_ref(), rest)
        }
        Some(PbKind::StringValue(v)) => leaf(path, s(v)),
        Some(PbKind::NumberValue(n)) => leaf(path, Value::Double(*n)),
        Some(PbKind::BoolValue(b)) => leaf(path, Value::Bool(*b)),
        Some(PbKind::NullValue(_)) | None => leaf(path, Value::Null),
    }
}

fn node<'v>(n: &'v NodeInfo, path: &[Seg<'_>]) -> Result<Value<'v>, EvalError> {
    let Some((first, rest)) = path.split_first() else {
        return Ok(Value::Container("message"));
    };
    match field(first) {
        Some("id") => leaf(rest, s(&n.id)),
        Some("cluster") => leaf(rest, s(&n.cluster)),
        Some("metadata") => walk_struct(&n.metadata, rest),
        _ => Err(NOT_FOUND),
    }
}

fn peer<'v>(p: Option<&'v WorkloadMetadata>, path: &[Seg<'_>]) -> Result<Value<'v>, EvalError> {
    let p = p.ok_or(NOT_FOUND)?;
    let Some((first, rest)) = path.split_first() else {
        return Ok(Value::Container("message"));
    };
    let name = field(first).ok_or(EvalError::Failed("peer fields are strings"))?;
    if name == "labels" {
        let Some((label, rest)) = rest.split_first() else {
            return Ok(Value::Container("map"));
        };
        let label = field(label).ok_or(EvalError::Failed("label names are strings"))?;
        return leaf(rest, s(p.label(label).ok_or(NOT_FOUND)?));
    }
    leaf(rest, s(p.field(name).ok_or(NOT_FOUND)?))
}

impl Ctx<'_> {
    fn request<'v>(&'v self, path: &[Seg<'_>]) -> Result<Value<'v>, EvalError> {
        let h = self.http.ok_or(NOT_FOUND)?;
        let (first, rest) = path
            .split_first()
            .ok_or(EvalError::Failed("request root"))?;
        let opt = |v: Option<&'v str>| v.map(s).ok_or(NOT_FOUND);
        let hdr = |name: &str| header(h.request_headers, &[Seg::Field(name)]);
        let path_str = h.path.unwrap_or("");
        let v = match field(first).ok_or(NOT_FOUND)? {
            "headers" => return header(h.request_headers, rest),
            "path" => opt(h.path)?,
            "url_path" => s(path_str.split('?').next().unwrap_or("")),
            "query" => s(path_str.split_once('?').map_or("", |(_, q)| q)),
            "host" => opt(h.authority)?,
            "scheme" => opt(h.scheme)?,
            "method" => opt(h.method)?,
            "protocol" => s(h.protocol),
            "id" => hdr("x-request-id")?,
            "referer" => hdr("referer")?,
            "useragent" => hdr("user-agent")?,
            "size" => int(h.request_body_bytes),
            "total_size" => int(h.wire_bytes.ok_or(NOT_FOUND)?.0),
            _ => return Err(NOT_FOUND),
        };
        leaf(rest, v)
    }

    fn response<'v>(&'v self, path: &[Seg<'_>]) -> Result<Value<'v>, EvalError> {
        let h = self.http.ok_or(NOT_FOUND)?;
        let (first, rest) = path
            .split_first()
            .ok_or(EvalError::Failed("response root"))?;
        let v = match field(first).ok_or(NOT_FOUND)? {
            "headers" => return header(h.response_headers, rest),
            "trailers" => return header(h.response_trailers, rest),
            "code" => Value::Int(i64::from(h.response_code.ok_or(NOT_FOUND)?)),
            "grpc_status" => int(self.grpc_status.ok_or(NOT_FOUND)?),
            "size" => int(h.response_body_bytes),
            "total_size" => int(h.wire_bytes.ok_or(NOT_FOUND)?.1),
            _ => return Err(NOT_FOUND),
        };
        leaf(rest, v)
    }

    fn xds<'v>(&'v self, path: &[Seg<'_>]) -> Result<Value<'v>, EvalError> {
        let (first, rest) = path.split_first().ok_or(EvalError::Failed("xds root"))?;
        let cluster = self.upstream.cluster;
        match field(first).ok_or(NOT_FOUND)? {
            "node" => node(self.node, rest),
            "cluster_name" => leaf(rest, s(cluster.ok_or(NOT_FOUND)?.name)),
            "cluster_metadata" => {
                let md = self.upstream.cluster_metadata.ok_or(NOT_FOUND)?;
                let Some((first, rest)) = rest.split_first() else {
                    return Ok(Value::Container("message"));
                };
                if field(first) != Some("filter_metadata") {
                    return Err(NOT_FOUND);
                }
                let Some((ns, rest)) = rest.split_first() else {
                    return Ok(Value::Container("map"));
                };
                let ns = field(ns).ok_or(EvalError::Failed("filter names are strings"))?;
                walk_struct(md.filter_metadata.get(ns).ok_or(NOT_FOUND)?, rest)
            }
            "route_name" => leaf(rest, s(self.route_name.ok_or(NOT_FOUND)?)),
            "listener_direction" => leaf(rest, Value::Int(self.listener_direction)),
            _ => Err(NOT_FOUND),
        }
    }

    fn connection<'v>(&'v self, path: &[Seg<'_>]) -> Result<Value<'v>, EvalError> {
        let (first, rest) = path
            .split_first()
            .ok_or(EvalError::Failed("connection root"))?;
        let c = self.connection;
        let v = match field(first).ok_or(NOT_FOUND)? {
            "mtls" => Value::Bool(c.principals.peer.is_some() && c.principals.local.is_some()),
            "requested_server_name" => s(c.requested_server_name.unwrap_or("")),
            "uri_san_peer_certificate" => s(c.principals.peer.ok_or(NOT_FOUND)?),
            "uri_san_local_certificate" => s(c.principals.local.ok_or(NOT_FOUND)?),
            _ => return Err(NOT_FOUND),
        };
        leaf(rest, v)
    }

    fn filter_state<'v>(&'v self, path: &[Seg<'_>]) -> Result<Value<'v>, EvalError> {
        let (first, rest) = path
            .split_first()
            .ok_or(EvalError::Failed("filter_state root"))?;
        match field(first).ok_or(NOT_FOUND)? {
            "downstream_peer" | "wasm.downstream_peer" => peer(self.downstream_peer, rest),
            "upstream_peer" | "wasm.upstream_peer" => peer(self.upstream_peer, rest),
            _ => Err(NOT_FOUND),
        }
    }
}

impl Attributes for Ctx<'_> {
    fn resolve(&self, root: &str, path: &[Seg<'_>]) -> Result<Value<'_>, EvalError> {
        match root {
            "request" => self.request(path),
            "response" => self.response(path),
            "source" => address(self.connection.source, path),
            "destination" => address(self.connection.destination, path),
            "upstream" => address(self.upstream.address, path),
            "connection" => self.connection(path),
            "xds" => self.xds(path),
            "node" => node(self.node, path),
            "filter_state" => self.filter_state(path),
            "downstream_peer" => peer(self.downstream_peer, path),
            "upstream_peer" => peer(self.upstream_peer, path),
            _ => Err(NOT_FOUND),
        }
    }
}
