//! The dump's sections as Envoy's admin protos (`envoy.admin.v3.*ConfigDump`), built outside
//! the store's lock from the bootstrap, the world and a [`Dynamic`] copy. Resources go in as
//! their encodings (`Any`); they are decoded only when printed.

use super::collect::Dynamic;
use super::endpoints;
use super::{DumpQuery, Section};
use crate::snapshot::World;
use crate::xds::Kind;
use crate::xds::store::{ErrorState, Meta};
use envoy_types::pb::envoy::admin::v3 as admin_pb;
use envoy_types::pb::envoy::config::bootstrap::v3::Bootstrap;
use envoy_types::pb::envoy::config::listener::v3 as listener_pb;
use envoy_types::pb::envoy::config::route::v3::RouteConfiguration;
use envoy_types::pb::envoy::extensions::filters::network::http_connection_manager::v3 as hcm_pb;
use envoy_types::pb::envoy::extensions::transport_sockets::tls::v3::Secret;
use envoy_types::pb::envoy::service::discovery::v3::Resource;
use envoy_types::pb::google::protobuf::{Any, Timestamp};
use prost::{Message, Name};
use std::collections::{BTreeMap, HashSet};
use std::time::{SystemTime, UNIX_EPOCH};

/// Everything the sections are built from.
pub(super) struct Inputs<'a> {
    pub(super) bootstrap: &'a Bootstrap,
    pub(super) world: &'a World,
    pub(super) dynamic: Dynamic,
    pub(super) query: &'a DumpQuery,
}

/// Every section, in Envoy's order (its config tracker's keys sorted: `bootstrap`, `clusters`,
/// `endpoint`, `listeners`, `route_scopes`, `routes`, `secrets`). Endpoints only with
/// `?include_eds` and at least one active cluster, as in Envoy.
pub(super) fn sections(i: &Inputs<'_>) -> Vec<Section> {
    let mut out = vec![section(&bootstrap(i)), section(&clusters(i))];
    if i.query.include_eds
        && let Some(e) = endpoints(i)
    {
        out.push(section(&e));
    }
    out.push(section(&listeners(i)));
    out.push(section(&admin_pb::ScopedRoutesConfigDump::default()));
    out.push(section(&routes(i)));
    out.push(section(&secrets(i)));
    out
}

fn section<M: Message + Name>(m: &M) -> Section {
    Section {
        type_name: M::full_name(),
        bytes: m.encode_to_vec(),
    }
}

fn any<M: Message + Name>(m: &M) -> Any {
    Any {
        type_url: M::type_url(),
        value: m.encode_to_vec(),
    }
}

fn any_bytes(kind: Kind, bytes: &[u8]) -> Any {
    Any {
        type_url: kind.type_url().to_string(),
        value: bytes.to_vec(),
    }
}

/// A time as Envoy keeps it: milliseconds.
pub(super) fn timestamp(t: SystemTime) -> Timestamp {
    let ms = match t.duration_since(UNIX_EPOCH) {
        Ok(d) => d.as_millis() as i64,
        Err(e) => -(e.duration().as_millis() as i64),
    };
    Timestamp {
        seconds: ms.div_euclid(1000),
        nanos: (ms.rem_euclid(1000) * 1_000_000) as i32,
    }
}

fn error_state(e: &ErrorState) -> admin_pb::UpdateFailureState {
    // A SotW resource may come wrapped in a `Resource`; the dump shows what it wraps.
    let failed = e.failed.as_ref().map(|a| {
        if a.type_url == Resource::type_url() {
            Resource::decode(a.value.as_slice())
                .ok()
                .and_then(|r| r.resource)
                .unwrap_or_else(|| a.clone())
        } else {
            a.clone()
        }
    });
    admin_pb::UpdateFailureState {
        failed_configuration: failed,
        last_update_attempt: Some(timestamp(e.at)),
        details: e.details.clone(),
        version_info: e.version.clone(),
    }
}

fn bootstrap(i: &Inputs<'_>) -> admin_pb::BootstrapConfigDump {
    let mut b = i.bootstrap.clone();
    // The node as tern presents it to control planes (Envoy shows its user agent there too).
    let mut node = crate::xds::node::node(i.bootstrap);
    node.client_features.clear();
    b.node = Some(node);
    admin_pb::BootstrapConfigDump {
        bootstrap: Some(b),
        last_updated: Some(timestamp(i.world.created)),
    }
}

fn clusters(i: &Inputs<'_>) -> admin_pb::ClustersConfigDump {
    use admin_pb::clusters_config_dump::{DynamicCluster, StaticCluster};
    let q = i.query;
    let d = &i.dynamic;
    // By name, as Envoy's cluster manager keeps them.
    let mut statics: Vec<_> = i
        .bootstrap
        .static_resources
        .iter()
        .flat_map(|s| &s.clusters)
        .filter(|c| q.name_matches(&c.name))
        .collect();
    statics.sort_by(|a, b| a.name.cmp(&b.name));
    let statics = statics
        .into_iter()
        .map(|c| StaticCluster {
            cluster: Some(any(c)),
            last_updated: Some(timestamp(i.world.created)),
        })
        .collect();
    let dynamic = |list: &[(Meta, std::sync::Arc<crate::upstream::cluster::Cluster>)]| {
        list.iter()
            .filter(|(_, c)| q.name_matches(&c.name))
            .map(|(meta, c)| DynamicCluster {
                version_info: meta.version.clone(),
                cluster: Some(any_bytes(Kind::Cluster, c.source_bytes())),
                last_updated: Some(timestamp(meta.last_updated)),
                error_state: d.error(Kind::Cluster, &c.name).map(error_state),
                client_status: 0,
            })
            .collect()
    };
    admin_pb::ClustersConfigDump {
        version_info: d.versions.get(&Kind::Cluster).cloned().unwrap_or_default(),
        static_clusters: statics,
        dynamic_active_clusters: dynamic(&d.clusters),
        dynamic_warming_clusters: dynamic(&d.warming_clusters),
    }
}

fn endpoints(i: &Inputs<'_>) -> Option<admin_pb::EndpointsConfigDump> {
    use admin_pb::endpoints_config_dump::{DynamicEndpointConfig, StaticEndpointConfig};
    let active = i.world.clusters.load();
    if active.is_empty() {
        return None;
    }
    let statics: HashSet<&str> = i
        .bootstrap
        .static_resources
        .iter()
        .flat_map(|s| &s.clusters)
        .map(|c| c.name.as_str())
        .collect();
    let mut sorted: Vec<_> = active.values().collect();
    sorted.sort_by(|a, b| a.name.cmp(&b.name));
    let mut out = admin_pb::EndpointsConfigDump::default();
    for c in sorted {
        if !i.query.name_matches(endpoints::assignment_name(c)) {
            continue;
        }
        let cla = Some(any(&endpoints::assignment(c)));
        if statics.contains(&*c.name) {
            out.static_endpoint_configs.push(StaticEndpointConfig {
                endpoint_config: cla,
                last_updated: None,
            });
        } else {
            out.dynamic_endpoint_configs.push(DynamicEndpointConfig {
                endpoint_config: cla,
                ..Default::default()
            });
        }
    }
    Some(out)
}

fn listeners(i: &Inputs<'_>) -> admin_pb::ListenersConfigDump {
    use admin_pb::listeners_config_dump::{DynamicListener, DynamicListenerState, StaticListener};
    let q = i.query;
    let d = &i.dynamic;
    let statics = static_listeners(i.bootstrap)
        .filter(|l| q.name_matches(&l.name))
        .map(|l| StaticListener {
            listener: Some(any(l)),
            last_updated: Some(timestamp(i.world.created)),
        })
        .collect();
    let state = |meta: &Meta, l: &crate::snapshot::Listener| DynamicListenerState {
        version_info: meta.version.clone(),
        listener: Some(any(&l.source)),
        last_updated: Some(timestamp(meta.last_updated)),
    };
    // One entry per name, with each state it is in.
    let mut dynamic: BTreeMap<&str, DynamicListener> = BTreeMap::new();
    fn entry<'a, 'b>(
        m: &'b mut BTreeMap<&'a str, DynamicListener>,
        name: &'a str,
    ) -> &'b mut DynamicListener {
        m.entry(name).or_insert_with(|| DynamicListener {
            name: name.to_string(),
            ..Default::default()
        })
    }
    for (name, meta, l) in &d.listeners {
        entry(&mut dynamic, name).active_state = Some(state(meta, l));
    }
    for (name, meta, l) in &d.warming_listeners {
        entry(&mut dynamic, name).warming_state = Some(state(meta, l));
    }
    for ((kind, name), e) in &d.errors {
        if *kind == Kind::Listener {
            entry(&mut dynamic, name).error_state = Some(error_state(e));
        }
    }
    admin_pb::ListenersConfigDump {
        version_info: d.versions.get(&Kind::Listener).cloned().unwrap_or_default(),
        static_listeners: statics,
        dynamic_listeners: dynamic
            .into_values()
            .filter(|l| q.name_matches(&l.name))
            .collect(),
    }
}

fn static_listeners(b: &Bootstrap) -> impl Iterator<Item = &listener_pb::Listener> {
    b.static_resources.iter().flat_map(|s| &s.listeners)
}

/// The route configurations written inline in the HTTP connection managers of `l`.
fn inline_routes(l: &listener_pb::Listener) -> Vec<RouteConfiguration> {
    use hcm_pb::http_connection_manager::RouteSpecifier;
    l.filter_chains
        .iter()
        .chain(l.default_filter_chain.iter())
        .flat_map(|c| &c.filters)
        .filter_map(|f| match &f.config_type {
            Some(listener_pb::filter::ConfigType::TypedConfig(a))
                if a.type_url == hcm_pb::HttpConnectionManager::type_url() =>
            {
                hcm_pb::HttpConnectionManager::decode(a.value.as_slice()).ok()
            }
            _ => None,
        })
        .filter_map(|h| match h.route_specifier {
            Some(RouteSpecifier::RouteConfig(rc)) => Some(rc),
            _ => None,
        })
        .collect()
}

fn routes(i: &Inputs<'_>) -> admin_pb::RoutesConfigDump {
    use admin_pb::routes_config_dump::{DynamicRouteConfig, StaticRouteConfig};
    let q = i.query;
    let d = &i.dynamic;
    // Envoy lists the inline route configuration of every connection manager it built:
    // those of static listeners and of dynamic ones (active or warming).
    let mut with_time: Vec<(&listener_pb::Listener, SystemTime)> = static_listeners(i.bootstrap)
        .map(|l| (l, i.world.created))
        .collect();
    for (_, meta, l) in d.listeners.iter().chain(&d.warming_listeners) {
        with_time.push((&l.source, meta.last_updated));
    }
    let mut statics = Vec::new();
    for (l, at) in with_time {
        for rc in inline_routes(l) {
            if q.name_matches(&rc.name) {
                statics.push(StaticRouteConfig {
                    route_config: Some(any(&rc)),
                    last_updated: Some(timestamp(at)),
                });
            }
        }
    }
    let mut rds: Vec<_> = d.routes.iter().filter(|r| q.name_matches(&r.0)).collect();
    rds.sort_by(|a, b| a.0.cmp(&b.0));
    admin_pb::RoutesConfigDump {
        static_route_configs: statics,
        dynamic_route_configs: rds
            .into_iter()
            .map(|(name, meta, raw)| DynamicRouteConfig {
                version_info: meta.version.clone(),
                route_config: Some(any_bytes(Kind::Route, raw)),
                last_updated: Some(timestamp(meta.last_updated)),
                error_state: d.error(Kind::Route, name).map(error_state),
                client_status: 0,
            })
            .collect(),
    }
}

fn secrets(i: &Inputs<'_>) -> admin_pb::SecretsConfigDump {
    use admin_pb::secrets_config_dump::{DynamicSecret, StaticSecret};
    let q = i.query;
    let d = &i.dynamic;
    let statics = i
        .bootstrap
        .static_resources
        .iter()
        .flat_map(|s| &s.secrets)
        .filter(|s| q.name_matches(&s.name))
        .map(|s| StaticSecret {
            name: s.name.clone(),
            last_updated: None,
            secret: Some(any(s)),
        })
        .collect();
    let mut active: Vec<_> = d.secrets.iter().filter(|s| q.name_matches(&s.0)).collect();
    active.sort_by(|a, b| a.0.cmp(&b.0));
    let held: HashSet<&str> = d.secrets.iter().map(|s| s.0.as_str()).collect();
    admin_pb::SecretsConfigDump {
        static_secrets: statics,
        dynamic_active_secrets: active
            .into_iter()
            .map(|(name, meta, s)| DynamicSecret {
                name: name.clone(),
                version_info: meta.version.clone(),
                last_updated: Some(timestamp(meta.last_updated)),
                secret: Some(any(&**s)),
                error_state: d.error(Kind::Secret, name).map(error_state),
                client_status: 0,
            })
            .collect(),
        // Asked for and not received yet: Envoy shows the name and "uninitialized".
        dynamic_warming_secrets: d
            .wanted_secrets
            .iter()
            .filter(|n| !held.contains(n.as_str()) && q.name_matches(n))
            .map(|n| DynamicSecret {
                name: n.clone(),
                version_info: "uninitialized".into(),
                secret: Some(any(&Secret {
                    name: n.clone(),
                    ..Default::default()
                })),
                ..Default::default()
            })
            .collect(),
    }
}
