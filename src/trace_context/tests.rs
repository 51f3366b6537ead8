//! The behaviours below were observed with Envoy 1.40 and the same tracing configuration.

use super::*;

const RID: &str = "11111111-2222-4333-8444-555555555555";

fn cfg(random: f64, provider: Provider) -> TracingConfig {
    TracingConfig {
        client_sampling: Sampling(10_000),
        random_sampling: Sampling((random * 100.0) as u64),
        overall_sampling: Sampling(10_000),
        provider,
        pack_trace_reason: true,
        use_request_id_for_sampling: true,
    }
}

const ZIPKIN: Provider = Provider::Zipkin {
    trace_id_128bit: false,
    shared_span_context: true,
};

fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
    let mut h = HeaderMap::new();
    for (k, v) in pairs {
        h.insert(*k, v.parse().unwrap());
    }
    h
}

fn get<'a>(h: &'a HeaderMap, k: &str) -> Option<&'a str> {
    h.get(k).map(|v| v.to_str().unwrap())
}

#[test]
fn the_decision_is_packed_into_the_request_id() {
    let mut h = headers(&[("x-request-id", RID)]);
    assert_eq!(
        sample(&cfg(100.0, Provider::None), &mut h, false),
        Reason::Sampling
    );
    assert_eq!(
        get(&h, "x-request-id"),
        Some("11111111-2222-9333-8444-555555555555")
    );
    // Already decided upstream: kept.
    assert_eq!(
        sample(&cfg(0.0, Provider::None), &mut h, false),
        Reason::Sampling
    );
    let mut h = headers(&[("x-request-id", RID)]);
    assert_eq!(
        sample(&cfg(0.0, Provider::None), &mut h, false),
        Reason::NotTraceable
    );
    assert_eq!(get(&h, "x-request-id"), Some(RID), "not sampled: untouched");
    // 0x11111111 % 10000 = 1153: sampled at 11.54 %, not at 11.53 %.
    let mut c = cfg(0.0, Provider::None);
    c.random_sampling = Sampling::from_percent(Some(&type_pb::Percent { value: 11.54 }));
    let mut h = headers(&[("x-request-id", RID)]);
    assert_eq!(sample(&c, &mut h, false), Reason::Sampling);
    c.random_sampling = Sampling::from_percent(Some(&type_pb::Percent { value: 11.53 }));
    let mut h = headers(&[("x-request-id", RID)]);
    assert_eq!(sample(&c, &mut h, false), Reason::NotTraceable);
    let mut h = headers(&[("x-request-id", RID), ("x-client-trace-id", "abc")]);
    assert_eq!(
        sample(&cfg(0.0, Provider::None), &mut h, false),
        Reason::ClientForced
    );
    assert_eq!(&get(&h, "x-request-id").unwrap()[14..15], "b");
    let mut h = headers(&[("x-request-id", RID), ("x-envoy-force-trace", "1")]);
    assert_eq!(
        sample(&cfg(0.0, Provider::None), &mut h, true),
        Reason::ServiceForced
    );
    assert_eq!(&get(&h, "x-request-id").unwrap()[14..15], "a");
    let mut h = headers(&[("x-request-id", RID), ("x-envoy-force-trace", "1")]);
    assert_eq!(
        sample(&cfg(0.0, Provider::None), &mut h, false),
        Reason::NotTraceable,
        "force-trace from an external client is not honoured"
    );
    // overall_sampling overrides.
    let mut c = cfg(100.0, Provider::None);
    c.overall_sampling = Sampling(0);
    let mut h = headers(&[("x-request-id", RID)]);
    assert_eq!(sample(&c, &mut h, false), Reason::NotTraceable);
    assert_eq!(get(&h, "x-request-id"), Some(RID));
    // Not a UUID: no decision, no change.
    let mut h = headers(&[("x-request-id", "abc")]);
    assert_eq!(
        sample(&cfg(100.0, Provider::None), &mut h, false),
        Reason::NotTraceable
    );
    assert_eq!(get(&h, "x-request-id"), Some("abc"));
    // pack_trace_reason: false keeps the id as it is.
    let mut c = cfg(100.0, Provider::None);
    c.pack_trace_reason = false;
    let mut h = headers(&[("x-request-id", RID)]);
    assert_eq!(sample(&c, &mut h, false), Reason::Sampling);
    assert_eq!(get(&h, "x-request-id"), Some(RID));
}

#[test]
fn zipkin_root_span_when_nothing_comes_in() {
    let mut h = headers(&[("x-request-id", RID)]);
    let d = apply(
        &cfg(100.0, ZIPKIN),
        &mut h,
        false,
        TrafficDirection::Inbound,
    );
    let trace = get(&h, "x-b3-traceid").unwrap();
    assert_eq!(trace.len(), 16);
    assert_eq!(
        get(&h, "x-b3-spanid"),
        Some(trace),
        "a root span's id is the trace id"
    );
    assert_eq!(get(&h, "x-b3-sampled"), Some("1"));
    assert!(h.get("x-b3-parentspanid").is_none());
    assert_eq!(d.trace_id.as_deref(), Some(trace));
    assert!(d.traced());
    let mut h = headers(&[("x-request-id", RID)]);
    let c = cfg(
        0.0,
        Provider::Zipkin {
            trace_id_128bit: true,
            shared_span_context: true,
        },
    );
    apply(&c, &mut h, false, TrafficDirection::Outbound);
    assert_eq!(get(&h, "x-b3-traceid").unwrap().len(), 32);
    assert_eq!(get(&h, "x-b3-sampled"), Some("0"));
    let mut h = headers(&[("x-request-id", RID), ("x-b3-sampled", "true")]);
    apply(&cfg(0.0, ZIPKIN), &mut h, false, TrafficDirection::Outbound);
    assert_eq!(
        get(&h, "x-b3-sampled"),
        Some("1"),
        "the client's sampling wins"
    );
}

#[test]
fn zipkin_inbound_shares_the_span_and_outbound_makes_a_child() {
    let b3 = [
        ("x-request-id", RID),
        ("x-b3-traceid", "463ac35c9f6413ad48485a3953bb6124"),
        ("x-b3-spanid", "a2fb4a1d1a96d312"),
        ("x-b3-parentspanid", "0020000000000001"),
        ("x-b3-sampled", "1"),
        (
            "traceparent",
            "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
        ),
    ];
    let mut h = headers(&b3);
    apply(
        &cfg(100.0, ZIPKIN),
        &mut h,
        false,
        TrafficDirection::Inbound,
    );
    for (k, v) in &b3[1..] {
        assert_eq!(get(&h, k), Some(*v), "{k} passes unchanged inbound");
    }
    let mut h = headers(&b3);
    let d = apply(&cfg(0.0, ZIPKIN), &mut h, false, TrafficDirection::Outbound);
    assert_eq!(
        get(&h, "x-b3-traceid"),
        Some("463ac35c9f6413ad48485a3953bb6124")
    );
    assert_ne!(get(&h, "x-b3-spanid"), Some("a2fb4a1d1a96d312"));
    assert_eq!(get(&h, "x-b3-spanid").unwrap().len(), 16);
    assert_eq!(get(&h, "x-b3-parentspanid"), Some("a2fb4a1d1a96d312"));
    assert_eq!(get(&h, "x-b3-sampled"), Some("1"));
    assert_eq!(
        get(&h, "traceparent"),
        Some(b3[5].1),
        "W3C passes untouched under Zipkin"
    );
    assert_eq!(get(&h, "x-request-id"), Some(RID));
    assert!(!d.traced());
    // The single header stays single.
    let mut h = headers(&[(
        "b3",
        "80f198ee56343ba864fe8b2a57d3eff7-e457b5a2e4d86bd1-1-05e3ac9a4f6e3b90",
    )]);
    apply(&cfg(0.0, ZIPKIN), &mut h, false, TrafficDirection::Outbound);
    let v = get(&h, "b3").unwrap();
    assert!(
        v.starts_with("80f198ee56343ba864fe8b2a57d3eff7-") && v.ends_with("-1-e457b5a2e4d86bd1"),
        "{v}"
    );
    assert!(h.get("x-b3-traceid").is_none());
    let mut h = headers(&[("b3", "0")]);
    apply(
        &cfg(100.0, ZIPKIN),
        &mut h,
        false,
        TrafficDirection::Outbound,
    );
    assert!(get(&h, "b3").unwrap().ends_with("-0"));
    // What does not parse is left alone, and nothing is added.
    for bad in [
        &[("x-b3-traceid", "463ac35c9f6413ad"), ("x-b3-spanid", "zz")][..],
        &[("b3", "bad-x")][..],
    ] {
        let mut h = headers(bad);
        let before = h.clone();
        let d = apply(
            &cfg(100.0, ZIPKIN),
            &mut h,
            false,
            TrafficDirection::Outbound,
        );
        assert_eq!(h, before);
        assert_eq!(d.trace_id, None);
    }
}

#[test]
fn opentelemetry_keeps_the_trace_and_makes_a_new_span() {
    let mut h = headers(&[("x-request-id", RID)]);
    let d = apply(
        &cfg(100.0, Provider::OpenTelemetry),
        &mut h,
        false,
        TrafficDirection::Outbound,
    );
    let tp = get(&h, "traceparent").unwrap().to_owned();
    assert_eq!(tp.len(), 55);
    assert!(tp.starts_with("00-") && tp.ends_with("-01"), "{tp}");
    assert_eq!(get(&h, "tracestate"), Some(""));
    assert_eq!(d.trace_id.as_deref(), Some(&tp[3..35]));
    let mut h = headers(&[
        (
            "traceparent",
            "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-00",
        ),
        ("tracestate", "congo=t61rcWkgMzE"),
        ("x-b3-traceid", "463ac35c9f6413ad"),
        ("x-b3-spanid", "a2fb4a1d1a96d312"),
    ]);
    apply(
        &cfg(100.0, Provider::OpenTelemetry),
        &mut h,
        false,
        TrafficDirection::Inbound,
    );
    let tp = get(&h, "traceparent").unwrap();
    assert!(
        tp.starts_with("00-0af7651916cd43dd8448eb211c80319c-") && tp.ends_with("-00"),
        "{tp}"
    );
    assert!(!tp.contains("b7ad6b7169203331"), "a new span id");
    assert_eq!(get(&h, "tracestate"), Some("congo=t61rcWkgMzE"));
    assert_eq!(
        get(&h, "x-b3-spanid"),
        Some("a2fb4a1d1a96d312"),
        "B3 passes untouched"
    );
    let mut h = headers(&[("traceparent", "garbage")]);
    apply(
        &cfg(100.0, Provider::OpenTelemetry),
        &mut h,
        false,
        TrafficDirection::Outbound,
    );
    assert_eq!(get(&h, "traceparent"), Some("garbage"));
    assert!(h.get("tracestate").is_none());
}

#[test]
fn compile_counts_tracers_as_not_enforced() {
    let store = Store::new();
    let t: hcm_pb::http_connection_manager::Tracing = crate::config::decode_message_file(
        std::path::Path::new("t.yaml"),
        br#"
random_sampling: { value: 1 }
provider:
  name: envoy.tracers.zipkin
  typed_config:
    "@type": type.googleapis.com/envoy.config.trace.v3.ZipkinConfig
    collector_cluster: zipkin
    collector_endpoint: /api/v2/spans
    trace_id_128bit: true
"#,
    )
    .unwrap();
    let c = TracingConfig::compile(&t, (true, true), &store).unwrap();
    assert_eq!(c.random_sampling, Sampling(100));
    assert_eq!(c.client_sampling, Sampling(10_000));
    assert_eq!(
        c.provider,
        Provider::Zipkin {
            trace_id_128bit: true,
            shared_span_context: true
        }
    );
    assert_eq!(
        store.counter_value("tern.config.not_enforced.envoy.tracers.zipkin"),
        Some(1)
    );
    let ext: hcm_pb::RequestIdExtension = crate::config::decode_message_file(
        std::path::Path::new("r.yaml"),
        br#"typed_config: { "@type": type.googleapis.com/envoy.extensions.request_id.uuid.v3.UuidRequestIdConfig, use_request_id_for_trace_sampling: true, pack_trace_reason: false }"#,
    )
    .unwrap();
    assert_eq!(request_id_options(Some(&ext)).unwrap(), (false, true));
    assert_eq!(request_id_options(None).unwrap(), (true, true));
}
