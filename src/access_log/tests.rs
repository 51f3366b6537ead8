use super::*;
use crate::stream_info::{LogType, Protocol, ResponseFlag};
use std::path::{Path, PathBuf};
use std::time::Duration;

fn log_of(yaml: &str) -> al_pb::AccessLog {
    crate::config::decode_message_file(Path::new("log.yaml"), yaml.as_bytes()).expect("AccessLog")
}

fn temp(name: &str) -> PathBuf {
    let p = std::env::temp_dir().join(format!("tern-alog-{}-{name}.log", std::process::id()));
    let _ = std::fs::remove_file(&p);
    p
}

fn file_log(path: &Path, format: &str, filter: &str) -> String {
    format!(
        "name: envoy.access_loggers.file\n{filter}typed_config:\n  \"@type\": type.googleapis.com/envoy.extensions.access_loggers.file.v3.FileAccessLog\n  path: {}\n{format}",
        path.display()
    )
}

fn record(code: u16) -> StreamInfo {
    let mut i = StreamInfo::new(LogType::DownstreamEnd, 1, "l".into());
    i.protocol = Some(Protocol::Http11);
    i.method = Some(http::Method::GET);
    i.path = Some("/p".into());
    i.authority = Some("a".into());
    i.response_code = Some(code);
    i.duration = Some(Duration::from_millis(7));
    let mut h = http::HeaderMap::new();
    h.insert(
        "x-request-id",
        "00000005-0000-4000-8000-000000000000".parse().unwrap(),
    );
    h.insert("x-canary", "yes".parse().unwrap());
    i.request_headers = Some(h);
    i
}

/// Compile, log `infos`, and read the file back.
fn run(yaml: &str, path: &Path, infos: &[StreamInfo]) -> String {
    let store = Store::new();
    let log = compile_one(&log_of(yaml), &store)
        .expect("compiles")
        .expect("writes");
    for i in infos {
        log.on_stream_end(i);
    }
    log.sink.flush();
    std::fs::read_to_string(path).unwrap_or_default()
}

#[test]
fn default_format_is_envoys() {
    let p = temp("default");
    let out = run(&file_log(&p, "", ""), &p, &[record(200)]);
    assert!(
        out.ends_with("] \"GET /p HTTP/1.1\" 200 - 0 0 7 - \"-\" \"-\" \"00000005-0000-4000-8000-000000000000\" \"a\" \"-\"\n"),
        "{out}"
    );
    let _ = std::fs::remove_file(p);
}

#[test]
fn formats_text_source_legacy_and_json() {
    let p = temp("formats");
    let text = "  log_format:\n    text_format_source: { inline_string: \"%RESPONSE_CODE% %REQ(:PATH)% [%ROUTE_NAME%]\\n\" }\n    omit_empty_values: true\n";
    assert_eq!(
        run(&file_log(&p, text, ""), &p, &[record(201)]),
        "201 /p []\n"
    );
    let _ = std::fs::remove_file(&p);
    let legacy = "  format: \"%RESPONSE_CODE%|%REQ(x-canary)%\\n\"\n";
    assert_eq!(
        run(&file_log(&p, legacy, ""), &p, &[record(202)]),
        "202|yes\n"
    );
    let _ = std::fs::remove_file(&p);
    let json = "  log_format:\n    json_format: { code: \"%RESPONSE_CODE%\", path: \"%REQ(:PATH)%\", route: \"%ROUTE_NAME%\" }\n";
    assert_eq!(
        run(&file_log(&p, json, ""), &p, &[record(203)]),
        "{\"code\":203,\"path\":\"/p\",\"route\":null}\n"
    );
    let _ = std::fs::remove_file(&p);
    let legacy_json = "  json_format: { code: \"%RESPONSE_CODE%\" }\n";
    assert_eq!(
        run(&file_log(&p, legacy_json, ""), &p, &[record(204)]),
        "{\"code\":204}\n"
    );
    let _ = std::fs::remove_file(&p);
    let rwq = "  log_format:\n    text_format: \"%REQ_WITHOUT_QUERY(:PATH)%\\n\"\n    formatters:\n    - name: envoy.formatter.req_without_query\n      typed_config: { \"@type\": type.googleapis.com/envoy.extensions.formatter.req_without_query.v3.ReqWithoutQuery }\n";
    let mut r = record(200);
    r.path = Some("/q?secret=1".into());
    assert_eq!(run(&file_log(&p, rwq, ""), &p, &[r]), "/q\n");
    let _ = std::fs::remove_file(&p);
}

#[test]
fn filters_istio_generates() {
    let p = temp("filters");
    // The listener log: NR only.
    let nr = "filter: { response_flag_filter: { flags: [NR] } }\n";
    let mut a = record(404);
    a.response_flags.insert(ResponseFlag::NoRouteFound);
    let b = record(200);
    let fmt = "  log_format: { text_format_source: { inline_string: \"%RESPONSE_CODE% %RESPONSE_FLAGS%\\n\" } }\n";
    assert_eq!(
        run(&file_log(&p, fmt, nr), &p, &[a.clone(), b.clone()]),
        "404 NR\n"
    );
    let _ = std::fs::remove_file(&p);
    // HBONE termination: status >= 400, and'ed with another filter.
    let ge400 = "filter:\n  and_filter:\n    filters:\n    - status_code_filter: { comparison: { op: GE, value: { default_value: 400, runtime_key: istio.io/unset } } }\n    - not_health_check_filter: {}\n";
    assert_eq!(
        run(&file_log(&p, fmt, ge400), &p, &[a.clone(), b.clone()]),
        "404 NR\n"
    );
    let _ = std::fs::remove_file(&p);
    // or, header, duration, any flag.
    let or = "filter:\n  or_filter:\n    filters:\n    - header_filter: { header: { name: x-canary, string_match: { exact: \"no\" } } }\n    - duration_filter: { comparison: { op: LE, value: { default_value: 7, runtime_key: k } } }\n";
    let mut slow = record(500);
    slow.duration = Some(Duration::from_millis(900));
    assert_eq!(
        run(&file_log(&p, fmt, or), &p, &[b.clone(), slow.clone()]),
        "200 -\n"
    );
    let _ = std::fs::remove_file(&p);
    let any = "filter: { response_flag_filter: {} }\n";
    assert_eq!(
        run(&file_log(&p, fmt, any), &p, &[b.clone(), a.clone()]),
        "404 NR\n"
    );
    let _ = std::fs::remove_file(&p);
}

#[test]
fn filter_evaluation() {
    let store = Store::new();
    let f = |yaml: &str| {
        let f: al_pb::AccessLogFilter =
            crate::config::decode_message_file(Path::new("f.yaml"), yaml.as_bytes()).unwrap();
        Filter::compile(&f, &store).unwrap()
    };
    let r = record(503);
    // x-request-id 00000005-...: the sampling value is 5.
    assert!(f("runtime_filter: { runtime_key: k, percent_sampled: { numerator: 6, denominator: TEN_THOUSAND } }").evaluate(&r));
    assert!(!f("runtime_filter: { runtime_key: k, percent_sampled: { numerator: 5, denominator: TEN_THOUSAND } }").evaluate(&r));
    assert!(f("runtime_filter: { runtime_key: k, percent_sampled: { numerator: 100 }, use_independent_randomness: true }").evaluate(&r));
    assert!(
        f("grpc_status_filter: { statuses: [UNAVAILABLE] }").evaluate(&r),
        "503 maps to UNAVAILABLE"
    );
    assert!(!f("grpc_status_filter: { statuses: [UNAVAILABLE], exclude: true }").evaluate(&r));
    assert!(f("metadata_filter: { matcher: { filter: envoy.lb, path: [ { key: x } ], value: { bool_match: true } } }").evaluate(&r));
    assert!(!f("metadata_filter: { match_if_key_not_found: false }").evaluate(&r));
    assert!(f("log_type_filter: { types: [DownstreamEnd] }").evaluate(&r));
    assert!(!f("log_type_filter: { types: [DownstreamEnd], exclude: true }").evaluate(&r));
    assert!(!f("traceable_filter: {}").evaluate(&r));
    assert!(f("status_code_filter: { comparison: { op: NE, value: { default_value: 200, runtime_key: k } } }").evaluate(&r));
    assert!(f("response_flag_filter: { flags: [DR] }").needs() == Needs::default());
    let cel = f(
        "extension_filter: { name: envoy.access_loggers.extension_filters.cel, typed_config: { \"@type\": type.googleapis.com/envoy.extensions.access_loggers.filters.cel.v3.ExpressionFilter, expression: \"response.code >= 400\" } }",
    );
    assert!(
        cel.evaluate(&record(200)),
        "CEL is not enforced: everything passes"
    );
    assert_eq!(
        store.counter_value("tern.config.not_enforced.envoy.access_loggers.extension_filters.cel"),
        Some(1)
    );
    assert!(
        f("header_filter: { header: { name: x-canary, present_match: true } }")
            .needs()
            .request_headers
    );
}

#[test]
fn config_errors_and_not_enforced_types() {
    let store = Store::new();
    let err = |yaml: &str| compile_one(&log_of(yaml), &store).unwrap_err().to_string();
    let p = temp("errors");
    let e = err(&file_log(&p, "  format: \"%NOPE%\"\n", ""));
    assert!(e.contains("NOPE"), "{e}");
    let e = err(&file_log(
        &p,
        "",
        "filter: { response_flag_filter: { flags: [XX] } }\n",
    ));
    assert!(e.contains("XX") && e.contains("filter"), "{e}");
    let e = err(&file_log(
        &p,
        "",
        "filter: { and_filter: { filters: [ { traceable_filter: {} } ] } }\n",
    ));
    assert!(e.contains("at least 2"), "{e}");
    let e = err(&file_log(Path::new("/nonexistent-dir/x.log"), "", ""));
    assert!(e.contains("cannot open"), "{e}");
    let e = err(
        "name: x\ntyped_config: { \"@type\": type.googleapis.com/google.protobuf.Empty, value: {} }\n",
    );
    assert!(e.contains("unsupported type"), "{e}");
    let als = "name: envoy.access_loggers.http_grpc\ntyped_config:\n  \"@type\": type.googleapis.com/envoy.extensions.access_loggers.grpc.v3.HttpGrpcAccessLogConfig\n  common_config: { log_name: l, transport_api_version: V3, grpc_service: { envoy_grpc: { cluster_name: c } } }\n";
    assert!(compile_one(&log_of(als), &store).unwrap().is_none());
    assert_eq!(
        store.counter_value("tern.config.not_enforced.envoy.access_loggers.http_grpc"),
        Some(1)
    );
    let stdout = "name: envoy.access_loggers.stdout\ntyped_config: { \"@type\": type.googleapis.com/envoy.extensions.access_loggers.stream.v3.StdoutAccessLog }\n";
    let log = compile_one(&log_of(stdout), &store).unwrap().unwrap();
    assert_eq!(log.sink.destination(), &Destination::Stdout);
    let mut obs = Observers::new();
    compile_into(&[log_of(stdout), log_of(als)], &store, &mut obs).unwrap();
    assert_eq!(obs.len(), 1);
    assert!(
        obs.needs().request_headers,
        "the default format reads request headers"
    );
    let _ = std::fs::remove_file(p);
}
