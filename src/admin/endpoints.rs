//! The admin endpoints: the table that routes a path to its handler (and gives `/help`), and
//! the handlers that need no module of their own.

use super::json::{pretty, to_json};
use super::{AdminCtx, AdminRequest, JSON, Reply, TEXT};
use crate::server::logging::{self, LevelChange, LevelError};
use envoy_types::pb::envoy::admin::v3 as admin_pb;
use envoy_types::pb::google::protobuf::Duration as PbDuration;
use http::{Method, StatusCode};
use std::fmt::Write as _;

/// One endpoint: its path, what it does, whether it changes state (POST only, as Envoy), its
/// parameters, and its handler.
struct Endpoint {
    path: &'static str,
    help: &'static str,
    mutates: bool,
    params: &'static [(&'static str, &'static str)],
    handler: fn(&AdminRequest, &AdminCtx) -> Reply,
}

const ENDPOINTS: &[Endpoint] = &[
    Endpoint {
        path: "/",
        help: "Admin home page",
        mutates: false,
        params: &[],
        handler: home,
    },
    Endpoint {
        path: "/certs",
        help: "certificates loaded by the TLS contexts",
        mutates: false,
        params: &[],
        handler: certs,
    },
    Endpoint {
        path: "/clusters",
        help: "upstream clusters: circuit breakers and, per host, stats and health",
        mutates: false,
        params: &[
            ("format", "text (default) or json"),
            ("filter", "regular expression on cluster names"),
        ],
        handler: super::clusters::clusters,
    },
    Endpoint {
        path: "/config_dump",
        help: "the configuration in force (Envoy's ConfigDump JSON)",
        mutates: false,
        params: &[
            (
                "resource",
                "only this repeated field of the dump, one element per resource",
            ),
            (
                "mask",
                "a FieldMask applied to each resource (or to each section)",
            ),
            (
                "name_regex",
                "only resources whose name matches this regular expression",
            ),
            ("include_eds", "add the endpoints of every cluster"),
        ],
        handler: config_dump,
    },
    Endpoint {
        path: "/drain_listeners",
        help: "stop the listeners (or drain them first)",
        mutates: true,
        params: &[
            (
                "graceful",
                "drain connections for --drain-time-s before the listeners stop",
            ),
            (
                "inboundonly",
                "only listeners with traffic_direction INBOUND",
            ),
            (
                "skip_exit",
                "with graceful: keep the listeners open after the drain",
            ),
        ],
        handler: drain_listeners,
    },
    Endpoint {
        path: "/healthcheck/fail",
        help: "report the server as failing health checks (state DRAINING)",
        mutates: true,
        params: &[],
        handler: healthcheck_fail,
    },
    Endpoint {
        path: "/healthcheck/ok",
        help: "undo /healthcheck/fail",
        mutates: true,
        params: &[],
        handler: healthcheck_ok,
    },
    Endpoint {
        path: "/help",
        help: "this list",
        mutates: false,
        params: &[],
        handler: help,
    },
    Endpoint {
        path: "/listeners",
        help: "the listeners and their bound addresses",
        mutates: false,
        params: &[("format", "text (default) or json")],
        handler: listeners,
    },
    Endpoint {
        path: "/logging",
        help: "show or change log levels",
        mutates: true,
        params: &[
            ("level", "set every logger to this level"),
            ("paths", "name1:level1,name2:level2,... sets these loggers"),
            ("<name>", "?<name>=<level> sets one logger"),
        ],
        handler: logging_levels,
    },
    Endpoint {
        path: "/memory",
        help: "heap figures of the allocator",
        mutates: false,
        params: &[],
        handler: memory,
    },
    Endpoint {
        path: "/quitquitquit",
        help: "exit the server",
        mutates: true,
        params: &[],
        handler: quit,
    },
    Endpoint {
        path: "/ready",
        help: "the server state; 200 only when LIVE",
        mutates: false,
        params: &[],
        handler: ready,
    },
    Endpoint {
        path: "/reopen_logs",
        help: "reopen the access log files (as SIGUSR1 does)",
        mutates: true,
        params: &[],
        handler: reopen_logs,
    },
    Endpoint {
        path: "/runtime",
        help: "runtime values by layer",
        mutates: false,
        params: &[],
        handler: runtime,
    },
    Endpoint {
        path: "/stats",
        help: "counters, gauges and histograms",
        mutates: false,
        params: &[
            ("usedonly", "only stats that have been written"),
            ("filter", "regular expression on stat names"),
            ("format", "text (default), json or prometheus"),
            ("type", "All, Counters, Gauges, Histograms or TextReadouts"),
            (
                "histogram_buckets",
                "cumulative, disjoint, detailed or none",
            ),
        ],
        handler: stats,
    },
    Endpoint {
        path: "/stats/prometheus",
        help: "the stats in Prometheus text format 0.0.4",
        mutates: false,
        params: &[
            ("usedonly", "only stats that have been written"),
            ("filter", "regular expression on stat names"),
        ],
        handler: stats_prometheus,
    },
    Endpoint {
        path: "/server_info",
        help: "version, state, uptime, command line and node",
        mutates: false,
        params: &[],
        handler: server_info,
    },
];

/// Route a request to its endpoint. GET on an endpoint that changes state is refused with
/// 405, as Envoy; an unknown path gets 404 and the list of endpoints.
pub(super) fn dispatch(r: &AdminRequest, ctx: &AdminCtx) -> Reply {
    let Some(e) = ENDPOINTS.iter().find(|e| e.path == r.path) else {
        return Reply::with(
            StatusCode::NOT_FOUND,
            TEXT,
            format!("invalid path. {}", help_text()),
        );
    };
    if e.mutates && r.method != Method::POST {
        return Reply::with(
            StatusCode::METHOD_NOT_ALLOWED,
            TEXT,
            format!("Method {} not allowed, POST required.\n", r.method),
        );
    }
    (e.handler)(r, ctx)
}

fn help_text() -> String {
    let mut out = String::from("admin commands are:\n");
    for e in ENDPOINTS {
        let post = if e.mutates { " (POST)" } else { "" };
        let _ = writeln!(out, "  {}{post}: {}", e.path, e.help);
        for (p, h) in e.params {
            let _ = writeln!(out, "      {p}: {h}");
        }
    }
    out
}

fn help(_: &AdminRequest, _: &AdminCtx) -> Reply {
    Reply::text(help_text())
}

fn home(_: &AdminRequest, _: &AdminCtx) -> Reply {
    let mut out = String::from(
        "<!DOCTYPE html>\n<html lang='en'>\n<head><title>tern admin</title></head>\n<body>\n<table>\n",
    );
    for e in ENDPOINTS.iter().filter(|e| e.path != "/") {
        let link = if e.mutates {
            format!(
                "<form action='{0}' method='post'><button type='submit'>{0}</button></form>",
                e.path
            )
        } else {
            format!("<a href='{0}'>{0}</a>", e.path)
        };
        let _ = writeln!(out, "<tr><td>{link}</td><td>{}</td></tr>", e.help);
    }
    out.push_str("</table>\n</body>\n</html>\n");
    Reply::with(StatusCode::OK, "text/html; charset=UTF-8", out)
}

fn ready(_: &AdminRequest, ctx: &AdminCtx) -> Reply {
    use admin_pb::server_info::State;
    let state = ctx.status.state();
    let status = if state == State::Live {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    Reply::with(status, TEXT, format!("{}\n", state.as_str_name()))
}

fn pb_duration(d: std::time::Duration) -> Option<PbDuration> {
    Some(PbDuration {
        seconds: d.as_secs() as i64,
        nanos: d.subsec_nanos() as i32,
    })
}

/// The command line as Envoy reports it in `/server_info`.
fn command_line(ctx: &AdminCtx) -> admin_pb::CommandLineOptions {
    use admin_pb::command_line_options::{DrainStrategy, IpVersion, Mode};
    let o = &ctx.options;
    let secs = |s: u64| pb_duration(std::time::Duration::from_secs(s));
    admin_pb::CommandLineOptions {
        base_id: u64::from(o.base_id),
        use_dynamic_base_id: o.use_dynamic_base_id,
        base_id_path: o.base_id_path.clone().unwrap_or_default(),
        concurrency: ctx.concurrency as u32,
        config_path: o.config_path.clone().unwrap_or_default(),
        config_yaml: o.config_yaml.clone().unwrap_or_default(),
        allow_unknown_static_fields: o.allow_unknown_static_fields,
        reject_unknown_dynamic_fields: o.reject_unknown_dynamic_fields,
        ignore_unknown_dynamic_fields: o.ignore_unknown_dynamic_fields,
        skip_deprecated_logs: o.skip_deprecated_logs,
        local_address_ip_version: if o.local_address_ip_version == "v6" {
            IpVersion::V6 as i32
        } else {
            IpVersion::V4 as i32
        },
        log_level: o.log_level.clone(),
        component_log_level: o.component_log_level.clone().unwrap_or_default(),
        log_format: o.log_format.clone().unwrap_or_default(),
        log_format_escaped: o.log_format_escaped,
        log_path: o.log_path.clone().unwrap_or_default(),
        service_cluster: o.service_cluster.clone().unwrap_or_default(),
        service_node: o.service_node.clone().unwrap_or_default(),
        service_zone: o.service_zone.clone().unwrap_or_default(),
        file_flush_interval: pb_duration(std::time::Duration::from_millis(
            o.file_flush_interval_msec,
        )),
        drain_time: secs(o.drain_time_s),
        drain_strategy: if o.drain_strategy == "immediate" {
            DrainStrategy::Immediate as i32
        } else {
            DrainStrategy::Gradual as i32
        },
        parent_shutdown_time: secs(o.parent_shutdown_time_s),
        mode: match o.mode.as_str() {
            "validate" => Mode::Validate as i32,
            "init_only" => Mode::InitOnly as i32,
            _ => Mode::Serve as i32,
        },
        disable_hot_restart: o.disable_hot_restart,
        restart_epoch: o.restart_epoch,
        disabled_extensions: o
            .disable_extensions
            .iter()
            .flat_map(|s| s.split(','))
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect(),
        enable_fine_grain_logging: o.enable_fine_grain_logging,
        enable_core_dump: o.enable_core_dump,
        ..Default::default()
    }
}

fn server_info(_: &AdminRequest, ctx: &AdminCtx) -> Reply {
    let uptime = pb_duration(ctx.status.started.elapsed());
    let info = admin_pb::ServerInfo {
        version: format!("tern/{}", env!("CARGO_PKG_VERSION")),
        state: ctx.status.state() as i32,
        uptime_current_epoch: uptime,
        uptime_all_epochs: uptime,
        hot_restart_version: "disabled".into(),
        command_line_options: Some(command_line(ctx)),
        node: Some(crate::xds::node::node(&ctx.bootstrap)),
        hot_restart_initializing: false,
    };
    match to_json(&info, true) {
        Ok(v) => Reply::json(pretty(&v)),
        Err(e) => Reply::with(StatusCode::INTERNAL_SERVER_ERROR, TEXT, format!("{e}\n")),
    }
}

fn config_dump(r: &AdminRequest, ctx: &AdminCtx) -> Reply {
    use super::config_dump::{DumpQuery, render};
    let q = match DumpQuery::parse(r.query.as_deref()) {
        Ok(q) => q,
        Err(e) => return Reply::bad_request(e),
    };
    match render(&ctx.bootstrap, &ctx.world, ctx.xds.get(), &q) {
        Ok(body) => Reply::json(body),
        Err(e) => Reply::with(
            StatusCode::from_u16(e.status).unwrap_or(StatusCode::BAD_REQUEST),
            TEXT,
            e.message,
        ),
    }
}

fn stats(r: &AdminRequest, ctx: &AdminCtx) -> Reply {
    use crate::stats::Format;
    let q = match crate::stats::StatsQuery::parse(r.query.as_deref().unwrap_or("")) {
        Ok(q) => q,
        Err(e) => return Reply::bad_request(e),
    };
    ctx.status.refresh(&ctx.world.stats);
    let store = &ctx.world.stats;
    match q.format {
        Format::Json => Reply::json(store.render_json(&q)),
        Format::Prometheus => prometheus_reply(store.render_prometheus(&q)),
        _ => Reply::text(store.render_text(&q)),
    }
}

fn stats_prometheus(r: &AdminRequest, ctx: &AdminCtx) -> Reply {
    let q = match crate::stats::StatsQuery::parse(r.query.as_deref().unwrap_or("")) {
        Ok(q) => q,
        Err(e) => return Reply::bad_request(e),
    };
    ctx.status.refresh(&ctx.world.stats);
    prometheus_reply(ctx.world.stats.render_prometheus(&q))
}

/// Prometheus' classic text format (0.0.4), labelled plain text as Envoy labels it.
fn prometheus_reply(body: String) -> Reply {
    Reply::text(body)
}

fn healthcheck_fail(_: &AdminRequest, ctx: &AdminCtx) -> Reply {
    ctx.status.set_health_failed(true);
    ctx.status.refresh(&ctx.world.stats);
    Reply::text("OK\n")
}

fn healthcheck_ok(_: &AdminRequest, ctx: &AdminCtx) -> Reply {
    ctx.status.set_health_failed(false);
    ctx.status.refresh(&ctx.world.stats);
    Reply::text("OK\n")
}

fn drain_listeners(r: &AdminRequest, ctx: &AdminCtx) -> Reply {
    let graceful = r.has("graceful");
    ctx.listeners
        .drain_listeners(r.has("inboundonly"), graceful, r.has("skip_exit"));
    if graceful {
        ctx.status.set_draining();
        ctx.status.refresh(&ctx.world.stats);
    }
    Reply::text("OK\n")
}

fn quit(_: &AdminRequest, ctx: &AdminCtx) -> Reply {
    tracing::info!("quitquitquit: exiting");
    ctx.status.quit.notify_one();
    Reply::text("OK\n")
}

fn reopen_logs(_: &AdminRequest, _: &AdminCtx) -> Reply {
    crate::access_log::reopen_all();
    Reply::text("OK\n")
}

fn memory(_: &AdminRequest, _: &AdminCtx) -> Reply {
    let u = crate::server::memory::usage();
    let m = admin_pb::Memory {
        allocated: u.allocated,
        heap_size: u.heap_size,
        pageheap_unmapped: 0,
        pageheap_free: u.heap_free,
        total_thread_cache: 0,
        total_physical_bytes: u.resident,
    };
    match to_json(&m, true) {
        Ok(v) => Reply::json(pretty(&v)),
        Err(e) => Reply::with(StatusCode::INTERNAL_SERVER_ERROR, TEXT, format!("{e}\n")),
    }
}

fn certs(_: &AdminRequest, ctx: &AdminCtx) -> Reply {
    match to_json(&super::certs::certificates(&ctx.world), true) {
        Ok(v) => Reply::json(pretty(&v)),
        Err(e) => Reply::with(StatusCode::INTERNAL_SERVER_ERROR, TEXT, format!("{e}\n")),
    }
}

fn listeners(r: &AdminRequest, ctx: &AdminCtx) -> Reply {
    let snapshot = ctx.world.listeners.load();
    let json = r.get("format") == Some("json");
    let mut statuses = Vec::new();
    let mut text = String::new();
    for (name, l) in snapshot.iter() {
        // The bound address when there is one (port 0 becomes the real port).
        let address = match (&l.address, ctx.listeners.local_addr(name)) {
            (crate::config::Address::Tcp(_), Some(bound)) => crate::config::Address::Tcp(bound),
            (a, _) => a.clone(),
        };
        let _ = writeln!(text, "{name}::{address}");
        statuses.push(admin_pb::ListenerStatus {
            name: name.clone(),
            local_address: Some(super::config_dump::endpoints::address(&address)),
            additional_local_addresses: Vec::new(),
        });
    }
    if !json {
        return Reply::text(text);
    }
    match to_json(
        &admin_pb::Listeners {
            listener_statuses: statuses,
        },
        false,
    ) {
        Ok(v) => Reply::json(pretty(&v)),
        Err(e) => Reply::with(StatusCode::INTERNAL_SERVER_ERROR, TEXT, format!("{e}\n")),
    }
}

const LOGGING_USAGE: &str = "usage: /logging?<name>=<level> (change single level)\n\
usage: /logging?paths=name1:level1,name2:level2,... (change multiple levels)\n\
usage: /logging?level=<level> (change all levels)\n\
levels: trace debug info warning error critical off \n";

fn logging_levels(r: &AdminRequest, _: &AdminCtx) -> Reply {
    let change = if let Some(level) = r.get("level") {
        Some(LevelChange::All(level.to_string()))
    } else if let Some(paths) = r.get("paths") {
        let mut list = Vec::new();
        for item in paths.split(',').filter(|s| !s.is_empty()) {
            match item.split_once(':') {
                Some((n, l)) => list.push((n.to_string(), l.to_string())),
                None => return logging_error(LevelError::Name),
            }
        }
        Some(LevelChange::Some(list))
    } else {
        match r.params.as_slice() {
            [] => None,
            [(name, level)] => Some(LevelChange::Some(vec![(name.clone(), level.clone())])),
            _ => return logging_error(LevelError::Name),
        }
    };
    if let Some(change) = change
        && let Err(e) = logging::set_levels(&change)
    {
        return logging_error(e);
    }
    Reply::text(logging::render_levels())
}

fn logging_error(e: LevelError) -> Reply {
    Reply::with(
        StatusCode::BAD_REQUEST,
        TEXT,
        format!("error: {e}\n\n{LOGGING_USAGE}"),
    )
}

fn runtime(_: &AdminRequest, ctx: &AdminCtx) -> Reply {
    Reply::with(StatusCode::OK, JSON, pretty(&runtime_json(&ctx.bootstrap)))
}

/// `/runtime`: the layers of `layered_runtime` and, per key, its value in each layer and the
/// value that wins (the last layer that has it). Static layers are flattened as Envoy does
/// (`a: {b: 1}` is key `a.b`); admin layers start empty; RTDS and disk layers are listed with
/// no values (tern does not load them).
pub(super) fn runtime_json(
    b: &envoy_types::pb::envoy::config::bootstrap::v3::Bootstrap,
) -> serde_json::Value {
    use envoy_types::pb::envoy::config::bootstrap::v3::runtime_layer::LayerSpecifier;
    let mut names = Vec::new();
    let mut layers: Vec<std::collections::BTreeMap<String, String>> = Vec::new();
    for layer in b.layered_runtime.iter().flat_map(|r| r.layers.iter()) {
        names.push(layer.name.clone());
        let mut values = std::collections::BTreeMap::new();
        if let Some(LayerSpecifier::StaticLayer(s)) = &layer.layer_specifier {
            flatten("", &crate::config::struct_to_json(s), &mut values);
        }
        layers.push(values);
    }
    let mut keys: Vec<&String> = layers.iter().flat_map(|l| l.keys()).collect();
    keys.sort();
    keys.dedup();
    let mut entries = serde_json::Map::new();
    for k in keys {
        let per_layer: Vec<String> = layers
            .iter()
            .map(|l| l.get(k).cloned().unwrap_or_default())
            .collect();
        let last = layers.iter().rev().find_map(|l| l.get(k)).cloned();
        entries.insert(
            k.clone(),
            serde_json::json!({ "final_value": last.unwrap_or_default(), "layer_values": per_layer }),
        );
    }
    serde_json::json!({ "layers": names, "entries": entries })
}

fn flatten(
    prefix: &str,
    v: &serde_json::Value,
    out: &mut std::collections::BTreeMap<String, String>,
) {
    use serde_json::Value;
    match v {
        Value::Object(m) => {
            for (k, v) in m {
                let key = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                flatten(&key, v, out);
            }
        }
        Value::Null => {}
        Value::String(s) => {
            out.insert(prefix.to_string(), s.clone());
        }
        Value::Bool(b) => {
            out.insert(prefix.to_string(), b.to_string());
        }
        Value::Number(n) => {
            // C's `%g`, as Envoy shows runtime numbers.
            out.insert(
                prefix.to_string(),
                crate::stats::fmt_g(n.as_f64().unwrap_or(0.0), 6),
            );
        }
        Value::Array(a) => {
            out.insert(prefix.to_string(), Value::Array(a.clone()).to_string());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn g6(x: f64) -> String {
        crate::stats::fmt_g(x, 6)
    }

    #[test]
    fn numbers_print_as_envoy_runtime_shows_them() {
        assert_eq!(g6(2147483647.0), "2.14748e+09");
        assert_eq!(g6(1.0), "1");
        assert_eq!(g6(0.5), "0.5");
        assert_eq!(g6(123456.0), "123456");
        assert_eq!(g6(1234567.0), "1.23457e+06");
        assert_eq!(g6(0.0001), "0.0001");
        assert_eq!(g6(0.00001), "1e-05");
        assert_eq!(g6(999999.5), "1e+06");
    }

    #[test]
    fn runtime_layers_flatten() {
        let b: envoy_types::pb::envoy::config::bootstrap::v3::Bootstrap =
            crate::config::from_json(serde_json::json!({
                "layered_runtime": {"layers": [
                    {"name": "static", "static_layer": {"overload.x": 2147483647, "a": {"b": true}}},
                    {"name": "admin", "admin_layer": {}}
                ]}
            }))
            .unwrap();
        let v = runtime_json(&b);
        assert_eq!(v["layers"], serde_json::json!(["static", "admin"]));
        assert_eq!(v["entries"]["overload.x"]["final_value"], "2.14748e+09");
        assert_eq!(
            v["entries"]["a.b"]["layer_values"],
            serde_json::json!(["true", ""])
        );
    }

    #[test]
    fn help_lists_post_endpoints() {
        let h = help_text();
        assert!(h.starts_with("admin commands are:\n"));
        assert!(h.contains("  /drain_listeners (POST): "));
        assert!(h.contains("      inboundonly: "));
    }
}
