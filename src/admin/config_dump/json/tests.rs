use super::*;
use envoy_types::pb::envoy::config::core::v3 as core_pb;
use envoy_types::pb::envoy::config::listener::v3 as listener_pb;
use envoy_types::pb::envoy::extensions::transport_sockets::tls::v3 as tls_pb;
use envoy_types::pb::google::protobuf::{Any, Struct, Value as PbValue, value::Kind as PbKind};
use prost::{Message, Name};

/// `m` printed as a dump prints a resource, read back as JSON.
fn print<M: Message + Name>(m: &M) -> serde_json::Value {
    let text = print_text(m);
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}"))
}

fn print_text<M: Message + Name>(m: &M) -> String {
    let pool = crate::config::pool();
    let desc = pool
        .get_message_by_name(&M::full_name())
        .expect("in the pool");
    let dm = DynamicMessage::decode(desc, m.encode_to_vec().as_slice()).expect("decodes");
    let mut w = Writer::default();
    Printer::new(&pool).typed(&mut w, &M::type_url(), &dm, false);
    w.finish()
}

fn inline(s: &str) -> Option<core_pb::DataSource> {
    Some(core_pb::DataSource {
        specifier: Some(core_pb::data_source::Specifier::InlineString(s.into())),
        ..Default::default()
    })
}

fn string(s: &str) -> PbValue {
    PbValue {
        kind: Some(PbKind::StringValue(s.into())),
    }
}

fn object(fields: &[(&str, PbValue)]) -> PbValue {
    PbValue {
        kind: Some(PbKind::StructValue(Struct {
            fields: fields
                .iter()
                .map(|(k, v)| (k.to_string(), v.clone()))
                .collect(),
        })),
    }
}

/// A listener whose one filter has `typed_config`.
fn listener_with(typed_config: Any) -> listener_pb::Listener {
    listener_pb::Listener {
        name: "l".into(),
        filter_chains: vec![listener_pb::FilterChain {
            filters: vec![listener_pb::Filter {
                name: "f".into(),
                config_type: Some(listener_pb::filter::ConfigType::TypedConfig(typed_config)),
            }],
            ..Default::default()
        }],
        ..Default::default()
    }
}

#[test]
fn secret_material_is_redacted() {
    let secret = tls_pb::Secret {
        name: "default".into(),
        r#type: Some(tls_pb::secret::Type::TlsCertificate(
            tls_pb::TlsCertificate {
                certificate_chain: inline("chain"),
                private_key: inline("key"),
                password: Some(core_pb::DataSource {
                    specifier: Some(core_pb::data_source::Specifier::InlineBytes(b"pw".to_vec())),
                    ..Default::default()
                }),
                ..Default::default()
            },
        )),
    };
    let j = print(&secret);
    let cert = &j["tls_certificate"];
    assert_eq!(cert["certificate_chain"]["inline_string"], "chain");
    assert_eq!(cert["private_key"]["inline_string"], "[redacted]");
    // Bytes become the bytes of "[redacted]", in base64.
    assert_eq!(cert["password"]["inline_bytes"], "W3JlZGFjdGVkXQ==");
    assert_eq!(j["name"], "default");

    // A map of secrets: the values are redacted, the keys stay.
    let generic = tls_pb::Secret {
        name: "g".into(),
        r#type: Some(tls_pb::secret::Type::GenericSecret(tls_pb::GenericSecret {
            secret: inline("one"),
            secrets: [("token".to_string(), inline("two").unwrap_or_default())]
                .into_iter()
                .collect(),
        })),
    };
    let j = print(&generic);
    assert_eq!(j["generic_secret"]["secret"]["inline_string"], "[redacted]");
    assert_eq!(
        j["generic_secret"]["secrets"]["token"]["inline_string"],
        "[redacted]"
    );
    assert!(!print_text(&generic).contains("two"));
}

#[test]
fn redaction_reaches_into_any_and_typed_struct() {
    let secret = tls_pb::Secret {
        name: "inner".into(),
        r#type: Some(tls_pb::secret::Type::TlsCertificate(
            tls_pb::TlsCertificate {
                private_key: inline("key-in-any"),
                ..Default::default()
            },
        )),
    };
    let j = print(&listener_with(Any {
        type_url: tls_pb::Secret::type_url(),
        value: secret.encode_to_vec(),
    }));
    let tc = &j["filter_chains"][0]["filters"][0]["typed_config"];
    assert_eq!(tc["@type"], tls_pb::Secret::type_url());
    assert_eq!(
        tc["tls_certificate"]["private_key"]["inline_string"],
        "[redacted]"
    );

    // The same secret written as a TypedStruct: read as its type to be redacted.
    let ts = crate::config::istio::typed_struct::XdsTypedStruct {
        type_url: tls_pb::Secret::type_url(),
        value: Some(Struct {
            fields: [
                ("name".to_string(), string("inner")),
                (
                    "tls_certificate".to_string(),
                    object(&[("private_key", object(&[("inline_string", string("k"))]))]),
                ),
            ]
            .into_iter()
            .collect(),
        }),
    };
    let any = Any {
        type_url: crate::config::istio::typed_struct::XdsTypedStruct::type_url(),
        value: ts.encode_to_vec(),
    };
    let text = print_text(&listener_with(any));
    let j: serde_json::Value = serde_json::from_str(&text).unwrap();
    let tc = &j["filter_chains"][0]["filters"][0]["typed_config"];
    assert_eq!(tc["type_url"], tls_pb::Secret::type_url());
    assert_eq!(
        tc["value"]["tls_certificate"]["private_key"]["inline_string"],
        "[redacted]"
    );
    assert!(!text.contains("\"k\""), "{text}");
}

#[test]
fn typed_struct_without_secrets_prints_as_given() {
    let ts = crate::config::istio::typed_struct::UdpaTypedStruct {
        type_url: "type.googleapis.com/io.istio.network.authn.Config".into(),
        value: Some(Struct {
            fields: [
                ("shared".to_string(), string("x")),
                ("a_field_from_the_future".to_string(), string("kept")),
            ]
            .into_iter()
            .collect(),
        }),
    };
    let j = print(&listener_with(Any {
        type_url: crate::config::istio::typed_struct::UdpaTypedStruct::type_url(),
        value: ts.encode_to_vec(),
    }));
    let tc = &j["filter_chains"][0]["filters"][0]["typed_config"];
    assert_eq!(tc["@type"], "type.googleapis.com/udpa.type.v1.TypedStruct");
    assert_eq!(tc["value"]["a_field_from_the_future"], "kept");
    assert_eq!(tc["value"]["shared"], "x");
}

#[test]
fn an_any_that_cannot_be_read_prints_its_bytes() {
    let unknown = listener_with(Any {
        type_url: "type.googleapis.com/no.such.Type".into(),
        value: vec![1, 2, 3],
    });
    let j = print(&unknown);
    let tc = &j["filter_chains"][0]["filters"][0]["typed_config"];
    assert_eq!(tc["@type"], "type.googleapis.com/no.such.Type");
    assert_eq!(tc["value"], "AQID");
    assert_eq!(j["name"], "l", "the rest of the resource prints");

    // A known type whose bytes do not decode as it.
    let garbled = listener_with(Any {
        type_url: tls_pb::Secret::type_url(),
        value: vec![0xff, 0xff, 0xff],
    });
    let j = print(&garbled);
    let tc = &j["filter_chains"][0]["filters"][0]["typed_config"];
    assert_eq!(tc["@type"], tls_pb::Secret::type_url());
    assert_eq!(tc["value"], "////");

    // An empty Any is `{}`.
    let empty = listener_with(Any::default());
    let j = print(&empty);
    assert_eq!(
        j["filter_chains"][0]["filters"][0]["typed_config"],
        serde_json::json!({})
    );
}

#[test]
fn writer_pretty_prints_as_protobuf() {
    let mut w = Writer::default();
    w.open('{');
    w.key("s");
    w.string("<a href='x'>&amp; \"q\" \\ \n\t\u{1} é");
    w.key("list");
    w.open('[');
    w.element();
    w.raw("1");
    w.element();
    w.open('{');
    w.close('}');
    w.close(']');
    w.key("empty");
    w.open('[');
    w.close(']');
    w.close('}');
    assert_eq!(
        w.finish(),
        "{\n \"s\": \"\\u003ca href='x'\\u003e&amp; \\\"q\\\" \\\\ \\n\\t\\u0001 é\",\n \"list\": [\n  1,\n  {}\n ],\n \"empty\": []\n}\n"
    );
}

#[test]
fn struct_and_map_keys_are_sorted() {
    let md = core_pb::Metadata {
        filter_metadata: [
            (
                "zz".to_string(),
                Struct {
                    fields: [
                        ("b".to_string(), string("1")),
                        ("a".to_string(), string("2")),
                    ]
                    .into_iter()
                    .collect(),
                },
            ),
            ("aa".to_string(), Struct::default()),
        ]
        .into_iter()
        .collect(),
        ..Default::default()
    };
    let text = print_text(&md);
    let (aa, zz) = (text.find("\"aa\"").unwrap(), text.find("\"zz\"").unwrap());
    assert!(aa < zz, "{text}");
    let (a, b) = (text.find("\"a\"").unwrap(), text.find("\"b\"").unwrap());
    assert!(a < b, "{text}");
}
