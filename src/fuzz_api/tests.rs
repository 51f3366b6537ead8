use super::*;
use proptest::prelude::*;
use std::path::Path;

type Target = (&'static str, fn(&[u8]));

const TARGETS: &[Target] = &[
    ("bootstrap_text", bootstrap_text),
    ("route_config_proto", route_config_proto),
    ("cluster_proto", cluster_proto),
    ("listener_proto", listener_proto),
    ("request_path", request_path),
    ("access_log_format", access_log_format),
    ("listener_inspectors", listener_inspectors),
    ("bolt_codec", bolt_codec),
    ("dubbo_frames", dubbo_frames),
    ("http1_response", http1_response),
    ("http1_request", http1_request),
];

fn corpus(target: &str) -> Vec<(String, Vec<u8>)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/corpus")
        .join(target);
    let mut files: Vec<(String, Vec<u8>)> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_file())
        .map(|p| {
            let name = p.file_name().unwrap().to_string_lossy().into_owned();
            (name, std::fs::read(&p).unwrap())
        })
        .collect();
    files.sort();
    files
}

/// Every seed (and every crash input kept since) goes through its target without a panic.
#[test]
fn seed_corpora_do_not_panic() {
    for (target, run) in TARGETS {
        let files = corpus(target);
        assert!(!files.is_empty(), "fuzz/corpus/{target} is empty");
        for (name, data) in &files {
            eprintln!("{target}/{name}");
            run(data);
        }
    }
}

/// The seeds are meaningful: the real resources among them parse, and those tern supports
/// compile, so the fuzzer starts from inputs that reach deep into each compiler.
#[test]
fn real_seeds_compile() {
    for (name, data) in corpus("bootstrap_text") {
        let text = std::str::from_utf8(&data).unwrap();
        let json = name.ends_with(".json");
        if name == "istio_golden.json" {
            parse_bootstrap(text, json, false).unwrap_or_else(|e| panic!("{name}: {e}"));
        }
        if ["quickstart", "strict_dns", "aliases", "istio_listeners"]
            .iter()
            .any(|p| name.starts_with(p))
        {
            let b = parse_bootstrap(text, json, false).unwrap_or_else(|e| panic!("{name}: {e}"));
            World::new(Store::new())
                .compile_static(&b)
                .unwrap_or_else(|e| panic!("{name}: {e}"));
        }
    }
    for (name, data) in corpus("listener_proto") {
        let l = listener_pb::Listener::decode(data.as_slice()).unwrap();
        let compiled = compile_listener(&l, &Store::new());
        eprintln!("{name}: {:?}", compiled.as_ref().err());
        if ["quickstart", "tcp_proxy", "subset_", "istio_"]
            .iter()
            .any(|p| name.starts_with(p))
        {
            compiled.unwrap_or_else(|e| panic!("{name}: {e}"));
        }
    }
    for (name, data) in corpus("route_config_proto") {
        let rc = route_pb::RouteConfiguration::decode(data.as_slice()).unwrap();
        RouteTable::compile(&rc).unwrap_or_else(|e| panic!("{name}: {e}"));
    }
    for (name, data) in corpus("listener_inspectors") {
        let parsed = crate::protocol::client_hello::parse(&data);
        if name.starts_with("hello_") {
            assert!(
                matches!(parsed, crate::protocol::client_hello::Parse::Hello(_)),
                "{name}: {parsed:?}"
            );
        }
    }
    for (name, data) in corpus("bolt_codec") {
        if name.starts_with("crash_") {
            continue;
        }
        let (frames, rest) = crate::protocol::xprotocol::bolt::decode_all(&data[1..], 1 << 20);
        assert!(!frames.is_empty() && rest.is_ok(), "{name}: {rest:?}");
    }
    for (name, data) in corpus("http1_response") {
        if name.starts_with("crash_") {
            continue;
        }
        let read = read_response(&data);
        if name.starts_with("bad_") {
            assert!(read.is_err(), "{name}: {read:?}");
        } else {
            let (body, left) = read.unwrap_or_else(|e| panic!("{name}: {e}"));
            assert!(!body.is_empty() || name.contains("no_body"), "{name}");
            assert!(
                left.is_empty() || name.contains("pipelined"),
                "{name}: {left:?}"
            );
        }
    }
    for (name, data) in corpus("http1_request") {
        if name.starts_with("crash_") {
            continue;
        }
        let read = read_requests(&data);
        if name.starts_with("bad_") {
            assert!(read.is_err(), "{name}: {read:?}");
        } else {
            let n = read.unwrap_or_else(|e| panic!("{name}: {e}"));
            let several = ["pipelined", "http10_keep_alive", "targets"].contains(&name.as_str());
            assert_eq!(n > 1, several, "{name}: {n} requests");
        }
    }
    for (name, data) in corpus("cluster_proto") {
        let c = cluster_pb::Cluster::decode(data.as_slice()).unwrap();
        Cluster::compile(&c, &Store::new()).unwrap_or_else(|e| panic!("{name}: {e}"));
    }
}

/// A whole response as the pool reads it: informational heads skipped, the final head, its
/// body for a GET; the body and the bytes after it.
fn read_response(data: &[u8]) -> Result<(Vec<u8>, Vec<u8>), String> {
    use crate::protocol::http1::{parse_response_head, response_framing};
    let mut buf = bytes::BytesMut::from(data);
    let head = loop {
        match parse_response_head(&mut buf, 100) {
            Ok(Some(h)) if h.is_informational() => {}
            Ok(Some(h)) => break h,
            Ok(None) => return Err("incomplete head".to_owned()),
            Err(e) => return Err(e.to_string()),
        }
    };
    let framing = response_framing(&http::Method::GET, &head).map_err(|e| e.to_string())?;
    read_body(framing, &buf, &[]).map_err(|e| e.to_string())
}

/// Requests as the connection reads them: heads and their bodies, one after another while
/// the connection may carry another (an upgrade's bytes are the tunnel's); how many.
fn read_requests(data: &[u8]) -> Result<usize, String> {
    use crate::protocol::http1::server::parse_request_head;
    let mut buf = bytes::BytesMut::from(data);
    let mut n = 0;
    loop {
        let head = parse_request_head(&mut buf, 100, 60 * 1024)
            .map_err(|e| e.to_string())?
            .ok_or("incomplete head")?;
        n += 1;
        let (_, left) = read_body(head.framing, &buf, &[]).map_err(|e| e.to_string())?;
        if !head.keep_alive || head.is_upgrade() || left.is_empty() {
            return Ok(n);
        }
        buf = bytes::BytesMut::from(&left[..]);
    }
}

fn mutated(seeds: Vec<(String, Vec<u8>)>) -> impl Strategy<Value = Vec<u8>> {
    let seeds: Vec<Vec<u8>> = seeds.into_iter().map(|(_, d)| d).collect();
    (
        0..seeds.len(),
        proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8),
        any::<prop::sample::Index>(),
    )
        .prop_map(move |(i, edits, cut)| {
            let mut data = seeds[i].clone();
            for (at, byte) in edits {
                if !data.is_empty() {
                    let at = at.index(data.len());
                    data[at] = byte;
                }
            }
            data.truncate(cut.index(data.len() + 1));
            data
        })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    /// Arbitrary bytes never panic any target.
    #[test]
    fn arbitrary_bytes_do_not_panic(data in proptest::collection::vec(any::<u8>(), 0..256)) {
        for (_, run) in TARGETS {
            run(&data);
        }
    }

    /// Arbitrary text (the bootstrap and request path targets want UTF-8).
    #[test]
    fn arbitrary_text_does_not_panic(text in proptest::collection::vec(any::<char>(), 0..128)) {
        let text: String = text.into_iter().collect();
        bootstrap_text(text.as_bytes());
        request_path(text.as_bytes());
        access_log_format(text.as_bytes());
    }

    /// Seeds with a few bytes changed and a tail cut off (cheap structure-aware fuzzing on
    /// stable: most of these still decode).
    #[test]
    fn mutated_routes_do_not_panic(data in mutated(corpus("route_config_proto"))) {
        route_config_proto(&data);
    }

    #[test]
    fn mutated_clusters_do_not_panic(data in mutated(corpus("cluster_proto"))) {
        cluster_proto(&data);
    }

    #[test]
    fn mutated_listeners_do_not_panic(data in mutated(corpus("listener_proto"))) {
        listener_proto(&data);
    }

    #[test]
    fn mutated_bootstraps_do_not_panic(data in mutated(corpus("bootstrap_text"))) {
        bootstrap_text(&data);
    }

    #[test]
    fn mutated_requests_do_not_panic(data in mutated(corpus("request_path"))) {
        request_path(&data);
    }

    #[test]
    fn mutated_first_bytes_do_not_panic(data in mutated(corpus("listener_inspectors"))) {
        listener_inspectors(&data);
    }

    #[test]
    fn mutated_access_log_formats_do_not_panic(data in mutated(corpus("access_log_format"))) {
        access_log_format(&data);
    }

    #[test]
    fn mutated_bolt_frames_do_not_panic(data in mutated(corpus("bolt_codec"))) {
        bolt_codec(&data);
    }

    #[test]
    fn mutated_http1_responses_do_not_panic(data in mutated(corpus("http1_response"))) {
        http1_response(&data);
    }

    #[test]
    fn mutated_http1_requests_do_not_panic(data in mutated(corpus("http1_request"))) {
        http1_request(&data);
    }
}
