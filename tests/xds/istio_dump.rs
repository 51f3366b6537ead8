//! The real Istio sidecar's listeners (`sidecar_config_dump_listeners.json`, Envoy's own
//! `/config_dump`), pushed through the test ADS server, come back out of tern's `/config_dump`
//! as Envoy printed them: same field names, nesting, `@type`s and values, every Istio
//! extension config (`istio.stats`, `TypedStruct`s...) included. Only what the test itself
//! changes differs: listeners that bind are moved to 127.0.0.1 port 0 (see `on_loopback`).

use super::istio::{DUMP, istio_listeners, on_loopback};
use super::support::ads::{AdsServer, Batch};
use super::support::{self, within};
use super::tern_client::tern_bootstrap;
use super::{Cluster, lds};
use serde_json::{Value as Json, json};
use std::collections::HashMap;
use tern::admin::config_dump::{DumpQuery, render};

/// The listeners of the dump as JSON, by name, moved to loopback as `on_loopback` moves them.
fn expected() -> HashMap<String, Vec<Json>> {
    let text = std::fs::read_to_string(DUMP).expect("testdata");
    let dump: Json = serde_json::from_str(&text).expect("JSON");
    let section = &dump["configs"][0];
    let statics = section["static_listeners"]
        .as_array()
        .expect("static listeners");
    let dynamics = section["dynamic_listeners"]
        .as_array()
        .expect("dynamic listeners");
    let mut out: HashMap<String, Vec<Json>> = HashMap::new();
    let all = statics
        .iter()
        .map(|s| &s["listener"])
        .chain(dynamics.iter().map(|d| &d["active_state"]["listener"]));
    for l in all {
        let mut l = l.clone();
        let binds = l.get("bind_to_port").is_none_or(|b| b == &json!(true));
        if binds && l["address"]["socket_address"].is_object() {
            l["address"]["socket_address"]["address"] = json!("127.0.0.1");
            l["address"]["socket_address"]["port_value"] = json!(0);
        }
        let name = l["name"].as_str().unwrap_or("").to_string();
        out.entry(name).or_default().push(l);
    }
    out
}

/// Where two JSON values differ, by path (the first few).
fn diff(path: &str, e: &Json, t: &Json, out: &mut Vec<String>) {
    match (e, t) {
        (Json::Object(a), Json::Object(b)) => {
            for (k, v) in a {
                match b.get(k) {
                    Some(w) => diff(&format!("{path}.{k}"), v, w, out),
                    None => out.push(format!("{path}.{k}: missing from tern's dump")),
                }
            }
            for k in b.keys().filter(|k| !a.contains_key(*k)) {
                out.push(format!("{path}.{k}: only in tern's dump"));
            }
        }
        (Json::Array(a), Json::Array(b)) if a.len() == b.len() => {
            for (i, (v, w)) in a.iter().zip(b).enumerate() {
                diff(&format!("{path}[{i}]"), v, w, out);
            }
        }
        _ if e != t => out.push(format!("{path}: Envoy {e}, tern {t}")),
        _ => {}
    }
}

#[tokio::test]
async fn istio_listeners_render_back_from_config_dump() {
    let ads = AdsServer::tcp().await;
    let mut batch = Batch::new().cluster(&Cluster {
        name: "BlackHoleCluster".into(),
        connect_timeout: Some(envoy_types::pb::google::protobuf::Duration {
            seconds: 10,
            nanos: 0,
        }),
        ..Default::default()
    });
    for l in istio_listeners() {
        batch = batch.listener(&on_loopback(l));
    }
    ads.apply(batch);
    let served = ads.names(&lds()).len();
    let yaml = format!(
        "{}{}",
        tern_bootstrap(&ads, false, ""),
        ads.cluster_yaml("sds-grpc")
    );
    let server = support::start_tern(&yaml).await;
    let xds = server.xds.as_ref().expect("xds");
    let held = || xds.with_store(|s| s.listeners.len() + s.warming_listeners.len());
    assert!(
        within(10, async {
            support::eventually(8, || held() == served).await
        })
        .await,
        "tern holds {} of the {served} listeners",
        held()
    );

    let q = DumpQuery::parse(Some("resource=dynamic_listeners")).expect("query");
    let text = render(&server.bootstrap, &server.world, server.xds.as_ref(), &q).expect("dump");
    let dump: Json = serde_json::from_str(&text).expect("tern's dump is JSON");
    let configs = dump["configs"].as_array().expect("configs");
    assert_eq!(configs.len(), served);
    let expected = expected();
    let mut problems = Vec::new();
    for c in configs {
        // A listener without a name (the dump's static ones) has no `name` either.
        let name = c["name"].as_str().unwrap_or("");
        // The listeners wait for routes and secrets nobody sends: warming, or active.
        let state = if c["warming_state"].is_object() {
            &c["warming_state"]
        } else {
            &c["active_state"]
        };
        let got = &state["listener"];
        let candidates = expected.get(name).map(Vec::as_slice).unwrap_or_default();
        if candidates.iter().any(|e| e == got) {
            continue;
        }
        let mut out = Vec::new();
        match candidates.first() {
            Some(e) => diff(&format!("listener {name:?}"), e, got, &mut out),
            None => out.push(format!("listener {name:?}: not in the Istio dump")),
        }
        problems.extend(out.into_iter().take(10));
    }
    assert!(
        problems.is_empty(),
        "tern's dump of Istio's listeners differs from Envoy's:\n{}",
        problems.join("\n")
    );
}
