//! The compressor's decision rules, header edits and stats, on responses built in memory; the
//! expectations were checked against Envoy 1.40 where noted.

use super::stream::{self, StreamCompression};
use super::*;
use crate::filters::HttpFilterConfig;
use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Empty, Full, StreamBody};
use serde_json::json;
use std::io::Write as _;

const GZIP: &str = "type.googleapis.com/envoy.extensions.compression.gzip.compressor.v3.Gzip";
const BROTLI: &str = "type.googleapis.com/envoy.extensions.compression.brotli.compressor.v3.Brotli";
const ZSTD: &str = "type.googleapis.com/envoy.extensions.compression.zstd.compressor.v3.Zstd";

fn filter(store: &Store, lib: &str, name: &str, extra: serde_json::Value) -> HttpFilterConfig {
    let mut v = json!({"compressor_library": {"name": name, "typed_config": {"@type": lib}}});
    if let (Some(o), Some(e)) = (v.as_object_mut(), extra.as_object()) {
        o.extend(e.clone());
    }
    let c: compressor_pb::Compressor = crate::config::resource_from_json(&v, true).expect("decode");
    HttpFilterConfig::Compressor(Box::new(
        CompressorConfig::compile(&c, "p", store).expect("compile"),
    ))
}

fn request(method: &str, accept: Option<&str>) -> Request<()> {
    let mut r = Request::builder().method(method).uri("/");
    if let Some(a) = accept {
        r = r.header("accept-encoding", a);
    }
    r.body(()).expect("request")
}

fn response(status: u16, headers: &[(&str, &str)], body: &'static str) -> Response<Full<Bytes>> {
    let mut r = Response::builder().status(status);
    for (k, v) in headers {
        r = r.header(*k, *v);
    }
    r.body(Full::new(Bytes::from_static(body.as_bytes())))
        .expect("response")
}

const JSON_BODY: &str = r#"{"k":"abcdefghijabcdefghijabcdefghijabcdefghij"}"#;

fn json_response() -> Response<Full<Bytes>> {
    let len = JSON_BODY.len().to_string();
    let len: &'static str = Box::leak(len.into_boxed_str());
    response(
        200,
        &[
            ("content-type", "application/json"),
            ("content-length", len),
        ],
        JSON_BODY,
    )
}

/// Run the chain; the response's headers after it and whether its body gets compressed.
fn run(
    chain: &[HttpFilterConfig],
    req: &mut Request<()>,
    resp: &mut Response<Full<Bytes>>,
) -> Option<stream::ResponseCompressor> {
    let s: StreamCompression<'_> = stream::decode(chain, req).expect("compressors");
    s.encode(resp)
}

fn stat(store: &Store, name: &str) -> u64 {
    store
        .counter_value(&format!("http.p.compressor.{name}"))
        .unwrap_or_else(|| panic!("no stat {name}"))
}

fn h<'a>(r: &'a Response<Full<Bytes>>, name: &str) -> Option<&'a str> {
    r.headers().get(name).map(|v| v.to_str().expect("ascii"))
}

#[test]
fn compresses_by_default_and_sets_headers() {
    let store = Store::new();
    let chain = [filter(&store, GZIP, "g", json!({}))];
    let mut resp = json_response();
    let c = run(&chain, &mut request("GET", Some("gzip")), &mut resp);
    assert!(c.is_some());
    assert_eq!(h(&resp, "content-encoding"), Some("gzip"));
    assert_eq!(h(&resp, "vary"), Some("Accept-Encoding"));
    assert_eq!(h(&resp, "content-length"), None);
    // Without response_direction_config the direction stats have no `response.`.
    assert_eq!(stat(&store, "g.gzip.compressed"), 1);
    assert_eq!(stat(&store, "g.gzip.header_compressor_used"), 1);
    assert_eq!(stat(&store, "g.gzip.request.not_compressed"), 1);
}

#[test]
fn small_head_empty_and_no_accept_are_left_alone() {
    let store = Store::new();
    let chain = [filter(&store, GZIP, "g", json!({}))];
    // 29 bytes < 30: no Vary either (it could never be compressed).
    let mut resp = response(
        200,
        &[("content-length", "29"), ("content-type", "text/plain")],
        "",
    );
    assert!(run(&chain, &mut request("GET", Some("gzip")), &mut resp).is_none());
    assert_eq!(h(&resp, "vary"), None);
    assert_eq!(stat(&store, "g.gzip.content_length_too_small"), 1);
    // HEAD: no body, but Vary says it would be compressed; no Accept-Encoding stat.
    let mut resp = json_response();
    assert!(run(&chain, &mut request("HEAD", Some("gzip")), &mut resp).is_none());
    assert_eq!(h(&resp, "vary"), Some("Accept-Encoding"));
    assert!(h(&resp, "content-length").is_some());
    assert_eq!(stat(&store, "g.gzip.header_compressor_used"), 0);
    // 304 has no body.
    let mut resp = response(304, &[("content-type", "text/plain")], "");
    assert!(run(&chain, &mut request("GET", Some("gzip")), &mut resp).is_none());
    // A protocol switch and a CONNECT tunnel are never touched, not even with Vary.
    let mut resp = response(101, &[("upgrade", "websocket")], "");
    assert!(run(&chain, &mut request("GET", Some("gzip")), &mut resp).is_none());
    assert_eq!(h(&resp, "vary"), None);
    let mut resp = response(200, &[], "tunnel bytes, more than thirty of them");
    assert!(run(&chain, &mut request("CONNECT", Some("gzip")), &mut resp).is_none());
    assert_eq!(h(&resp, "vary"), None);
    // No Accept-Encoding: counted, Vary added.
    let mut resp = json_response();
    assert!(run(&chain, &mut request("GET", None), &mut resp).is_none());
    assert_eq!(h(&resp, "vary"), Some("Accept-Encoding"));
    assert_eq!(stat(&store, "g.gzip.no_accept_header"), 1);
    assert_eq!(stat(&store, "g.gzip.not_compressed"), 6);
}

#[test]
fn content_types_no_transform_and_encoded_responses() {
    let store = Store::new();
    let chain = [filter(&store, GZIP, "g", json!({}))];
    let big = "x";
    let cases: &[(&[(&str, &str)], bool)] = &[
        (&[("content-type", "text/plain; version=0.0.4")], true),
        (&[("content-type", "TEXT/PLAIN")], true),
        (&[], true),
        (&[("content-type", "image/png")], false),
        (
            &[
                ("content-type", "text/plain"),
                ("cache-control", "public, No-Transform"),
            ],
            false,
        ),
        (
            &[
                ("content-type", "text/plain"),
                ("content-encoding", "identity"),
            ],
            false,
        ),
    ];
    for (headers, want) in cases {
        let mut resp = response(200, headers, big);
        let got = run(&chain, &mut request("GET", Some("gzip")), &mut resp).is_some();
        assert_eq!(got, *want, "{headers:?}");
        // Vary only where some Accept-Encoding would have compressed it.
        assert_eq!(h(&resp, "vary").is_some(), *want, "{headers:?}");
    }
}

#[test]
fn etags_are_removed_weakened_or_block() {
    let store = Store::new();
    let plain = [filter(&store, GZIP, "a", json!({}))];
    let mut resp = response(200, &[("etag", "\"abc\"")], "x");
    assert!(run(&plain, &mut request("GET", Some("gzip")), &mut resp).is_some());
    assert_eq!(h(&resp, "etag"), None);
    let mut resp = response(200, &[("etag", "W/\"abc\"")], "x");
    assert!(run(&plain, &mut request("GET", Some("gzip")), &mut resp).is_some());
    assert_eq!(h(&resp, "etag"), Some("W/\"abc\""));

    let weaken = [filter(
        &store,
        GZIP,
        "w",
        json!({"response_direction_config": {"weaken_etag_on_compress": true, "disable_on_etag_header": true}}),
    )];
    let mut resp = response(200, &[("etag", "\"abc\"")], "x");
    assert!(run(&weaken, &mut request("GET", Some("gzip")), &mut resp).is_some());
    assert_eq!(h(&resp, "etag"), Some("W/\"abc\""));

    let disable = [filter(
        &store,
        GZIP,
        "d",
        json!({"disable_on_etag_header": true}),
    )];
    let mut resp = response(200, &[("etag", "W/\"abc\"")], "x");
    assert!(run(&disable, &mut request("GET", Some("gzip")), &mut resp).is_none());
    assert_eq!(h(&resp, "vary"), None);
    assert_eq!(stat(&store, "d.gzip.not_compressed_etag"), 1);
}

#[test]
fn vary_is_appended_once() {
    let store = Store::new();
    let chain = [filter(&store, GZIP, "g", json!({}))];
    for (before, after) in [
        ("Origin", "Origin, Accept-Encoding"),
        ("Origin,Accept-Encoding", "Origin,Accept-Encoding"),
        // Envoy's check is case-sensitive.
        ("accept-encoding", "accept-encoding, Accept-Encoding"),
    ] {
        let mut resp = response(200, &[("vary", before)], "x");
        run(&chain, &mut request("GET", Some("gzip")), &mut resp);
        assert_eq!(h(&resp, "vary"), Some(after));
    }
}

#[test]
fn response_direction_config_codes_status_header_and_matchers() {
    let store = Store::new();
    let chain = [filter(
        &store,
        GZIP,
        "g",
        json!({"response_direction_config": {
            "uncompressible_response_codes": [206],
            "status_header_enabled": true,
            "common_config": {"min_content_length": 10,
                "content_type_matcher": [{"prefix": "text/"}, {"exact": "application/json"}]}}}),
    )];
    let status =
        |resp: &Response<Full<Bytes>>| h(resp, "x-envoy-compression-status").map(str::to_owned);
    let mut resp = json_response();
    assert!(run(&chain, &mut request("GET", Some("gzip")), &mut resp).is_some());
    let want = format!("gzip;Compressed;OriginalLength={}", JSON_BODY.len());
    assert_eq!(status(&resp), Some(want));
    let mut resp = response(206, &[("content-type", "text/foo")], "x");
    assert!(run(&chain, &mut request("GET", Some("gzip")), &mut resp).is_none());
    assert_eq!(status(&resp).as_deref(), Some("gzip;StatusCodeNotAllowed"));
    assert_eq!(h(&resp, "vary"), None);
    let mut resp = response(200, &[("content-type", "TEXT/foo")], "x");
    assert!(run(&chain, &mut request("GET", Some("gzip")), &mut resp).is_none());
    assert_eq!(status(&resp).as_deref(), Some("gzip;ContentTypeNotAllowed"));
    let mut resp = response(
        200,
        &[("content-length", "5"), ("content-type", "text/a")],
        "hello",
    );
    assert!(run(&chain, &mut request("GET", None), &mut resp).is_none());
    assert_eq!(status(&resp).as_deref(), Some("gzip;ContentLengthTooSmall"));
    // Chunked (no Content-Length) is compressed at any size.
    let mut resp = response(200, &[("content-type", "text/a")], "x");
    assert!(run(&chain, &mut request("GET", Some("gzip")), &mut resp).is_some());
    assert_eq!(
        status(&resp).as_deref(),
        Some("gzip;Compressed;OriginalLength=")
    );
    assert_eq!(stat(&store, "g.gzip.response.compressed"), 2);
    assert_eq!(stat(&store, "g.gzip.response.content_length_too_small"), 1);
}

#[test]
fn several_filters_negotiate_one_encoding() {
    let store = Store::new();
    // As Istio's 15090 listener: brotli, zstd, gzip.
    let chain = [
        filter(&store, BROTLI, "b", json!({})),
        filter(&store, ZSTD, "z", json!({})),
        filter(&store, GZIP, "g", json!({})),
    ];
    for (accept, want) in [
        ("gzip", Some("gzip")),
        ("br", Some("br")),
        ("zstd, gzip, br", Some("zstd")),
        ("*", Some("br")),
        ("identity", None),
        ("deflate", None),
    ] {
        let mut resp = json_response();
        run(&chain, &mut request("GET", Some(accept)), &mut resp);
        assert_eq!(h(&resp, "content-encoding"), want, "{accept}");
        assert_eq!(h(&resp, "vary"), Some("Accept-Encoding"), "{accept}");
    }
    assert_eq!(stat(&store, "b.brotli.header_compressor_used"), 1);
    assert_eq!(stat(&store, "b.brotli.header_compressor_overshadowed"), 2);
    assert_eq!(stat(&store, "z.zstd.header_wildcard"), 1);
    assert_eq!(stat(&store, "g.gzip.header_identity"), 1);
    assert_eq!(stat(&store, "g.gzip.header_not_valid"), 1);
}

#[test]
fn remove_accept_encoding_and_disabled_filters() {
    let store = Store::new();
    let chain = [
        filter(
            &store,
            GZIP,
            "g",
            json!({"remove_accept_encoding_header": true}),
        ),
        filter(&store, BROTLI, "b", json!({})),
    ];
    let mut req = request("GET", Some("gzip, br"));
    let s = stream::decode(&chain, &mut req).expect("compressors");
    assert!(req.headers().get("accept-encoding").is_none());
    let mut resp = json_response();
    assert!(s.encode(&mut resp).is_some());
    assert_eq!(h(&resp, "content-encoding"), Some("gzip"));
    // brotli came after the removal.
    assert_eq!(stat(&store, "b.brotli.no_accept_header"), 1);

    // A disabled filter still registers its encoding: `*` picks it and nothing compresses.
    let chain = [
        filter(
            &store,
            ZSTD,
            "zoff",
            json!({"response_direction_config": {"common_config": {"enabled": {"default_value": false, "runtime_key": "k"}}}}),
        ),
        filter(&store, GZIP, "g2", json!({})),
    ];
    let mut resp = json_response();
    assert!(run(&chain, &mut request("GET", Some("*")), &mut resp).is_none());
}

#[test]
fn config_errors_name_the_field() {
    let store = Store::new();
    let bad = |v: serde_json::Value| {
        let c: compressor_pb::Compressor =
            crate::config::resource_from_json(&v, true).expect("decode");
        CompressorConfig::compile(&c, "p", &store)
            .expect_err("must fail")
            .to_string()
    };
    let lib = |t: &str, extra: serde_json::Value| {
        let mut l = json!({"@type": t});
        if let (Some(o), Some(e)) = (l.as_object_mut(), extra.as_object()) {
            o.extend(e.clone());
        }
        json!({"compressor_library": {"name": "n", "typed_config": l}})
    };
    assert!(bad(json!({})).contains("compressor_library: is required"));
    assert!(bad(lib(GZIP, json!({"window_bits": 16}))).contains("window_bits"));
    assert!(bad(lib(BROTLI, json!({"quality": 12}))).contains("quality"));
    assert!(bad(lib(ZSTD, json!({"chunk_size": 100}))).contains("chunk_size"));
    let mut codes = lib(GZIP, json!({}));
    codes["response_direction_config"] = json!({"uncompressible_response_codes": [100]});
    assert!(bad(codes).contains("uncompressible_response_codes[0]"));
    let r = "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router";
    assert!(bad(lib(r, json!({}))).contains("unknown compressor library"));
}

fn decode_all(encoding: Encoding, data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    match encoding {
        Encoding::Gzip => {
            let mut d = flate2::write::GzDecoder::new(&mut out);
            d.write_all(data).expect("gzip");
            d.finish().expect("gzip end");
        }
        Encoding::Brotli => {
            let mut d = brotli::DecompressorWriter::new(&mut out, 4096);
            d.write_all(data).expect("brotli");
            d.close().expect("brotli end");
        }
        Encoding::Zstd => {
            let mut d = zstd::stream::write::Decoder::new(&mut out).expect("zstd");
            d.write_all(data).expect("zstd");
            d.flush().expect("zstd end");
        }
    }
    out
}

/// Each input frame comes out compressed and flushed at once: what has been sent so far
/// decodes to what has been received so far. Trailers follow the final bytes.
#[tokio::test]
async fn frames_are_flushed_as_they_come_and_trailers_kept() {
    for (lib, enc) in [
        (GZIP, Encoding::Gzip),
        (BROTLI, Encoding::Brotli),
        (ZSTD, Encoding::Zstd),
    ] {
        let store = Store::new();
        let chain = [filter(&store, lib, "l", json!({}))];
        let (tx, rx) =
            tokio::sync::mpsc::channel::<Result<http_body::Frame<Bytes>, std::io::Error>>(4);
        let body = StreamBody::new(futures_util::stream::unfold(rx, |mut rx| async move {
            rx.recv().await.map(|f| (f, rx))
        }));
        let mut resp = Response::builder()
            .header("content-type", "text/plain")
            .body(body)
            .expect("response");
        let mut req = request("GET", Some(enc.token()));
        let s = stream::decode(&chain, &mut req).expect("compressors");
        let c = s.encode(&mut resp).expect("compressed");
        let mut body = Box::pin(c.wrap(resp.into_body()));
        let first = "first line of a slow body\n".repeat(3);
        tx.send(Ok(http_body::Frame::data(Bytes::from(first.clone()))))
            .await
            .expect("send");
        let out1 = body
            .frame()
            .await
            .expect("frame")
            .expect("ok")
            .into_data()
            .expect("data");
        // Decoding a prefix: a streaming decoder yields what was flushed.
        let mut partial = Vec::new();
        match enc {
            Encoding::Gzip => {
                let mut d = flate2::write::GzDecoder::new(&mut partial);
                d.write_all(&out1).expect("gzip");
                d.flush().expect("flush");
            }
            Encoding::Brotli => {
                let mut d = brotli::DecompressorWriter::new(&mut partial, 4096);
                d.write_all(&out1).expect("brotli");
                d.flush().expect("flush");
                drop(d);
            }
            Encoding::Zstd => {
                let mut d = zstd::stream::write::Decoder::new(&mut partial).expect("zstd");
                d.write_all(&out1).expect("zstd");
                d.flush().expect("flush");
            }
        }
        assert_eq!(String::from_utf8_lossy(&partial), first, "{enc:?}");
        tx.send(Ok(http_body::Frame::data(Bytes::from_static(b"second"))))
            .await
            .expect("send");
        let mut trailers = http::HeaderMap::new();
        trailers.insert("grpc-status", "0".parse().expect("value"));
        tx.send(Ok(http_body::Frame::trailers(trailers)))
            .await
            .expect("send");
        drop(tx);
        let mut all = out1.to_vec();
        let mut got_trailers = None;
        while let Some(f) = body.frame().await {
            let f = f.expect("frame");
            match f.into_data() {
                Ok(d) => all.extend_from_slice(&d),
                Err(f) => got_trailers = f.into_trailers().ok(),
            }
        }
        assert_eq!(
            decode_all(enc, &all),
            format!("{first}second").into_bytes(),
            "{enc:?}"
        );
        assert_eq!(
            got_trailers.and_then(|t| t.get("grpc-status").cloned()),
            Some("0".parse().expect("v"))
        );
        let total = stat(
            &store,
            &format!("l.{}.total_uncompressed_bytes", enc.stat_name()),
        );
        assert_eq!(total, (first.len() + 6) as u64);
    }
}

#[tokio::test]
async fn a_whole_body_round_trips_in_each_encoding() {
    let text = JSON_BODY.repeat(50);
    for (lib, enc) in [
        (GZIP, Encoding::Gzip),
        (BROTLI, Encoding::Brotli),
        (ZSTD, Encoding::Zstd),
    ] {
        let store = Store::new();
        let chain = [filter(&store, lib, "l", json!({}))];
        let mut resp = Response::new(Full::new(Bytes::from(text.clone())));
        let c = run_any(&chain, enc.token(), &mut resp).expect("compressed");
        let data = c
            .wrap(resp.into_body())
            .collect()
            .await
            .expect("body")
            .to_bytes();
        assert!(data.len() < text.len() / 4, "{enc:?}");
        assert_eq!(decode_all(enc, &data), text.as_bytes(), "{enc:?}");
    }
    // An empty body is not compressed.
    let store = Store::new();
    let chain = [filter(&store, GZIP, "g", json!({}))];
    let mut resp = Response::new(Empty::<Bytes>::new());
    assert!(run_any(&chain, "gzip", &mut resp).is_none());
    assert_eq!(resp.status(), StatusCode::OK);
}

fn run_any<B: http_body::Body>(
    chain: &[HttpFilterConfig],
    accept: &str,
    resp: &mut Response<B>,
) -> Option<stream::ResponseCompressor> {
    stream::decode(chain, &mut request("GET", Some(accept)))
        .expect("compressors")
        .encode(resp)
}
