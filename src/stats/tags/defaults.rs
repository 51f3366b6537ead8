//! Envoy's default tag extractors, in Envoy's order (`well_known_names.cc`).

// Envoy's `<ADDRESS>` (an IPv4 address or a bracketed IPv6 one with colons turned into
// underscores, an underscore and a port) is spelled out in `WORKER_ID` and `LISTENER_ADDRESS`.

/// How a default extractor matches.
pub(super) enum Pattern {
    /// An RE2-style regex, tried only when the name contains `substr`; the tag is skipped
    /// when its value equals `negative`.
    Re2(&'static str, &'static str, Option<&'static str>),
    /// A token pattern: `$` is the value, `*` one token, `**` any number of tokens.
    Tokens(&'static str),
}

/// Envoy's default tag extractors, in Envoy's order (`well_known_names.cc`); the last ones
/// (connection limit, RBAC, proxy protocol, scoped RDS) are written from Envoy's documented
/// examples.
pub(super) fn defaults() -> Vec<(&'static str, Pattern)> {
    use Pattern::*;
    vec![
        ("envoy.response_code", Re2(r"_rq(_(\d{3}))$", "_rq_", None)),
        (
            "envoy.response_code_class",
            Re2(r"_rq_((\d))xx$", "_rq_", None),
        ),
        (
            "envoy.dynamo_partition_id",
            Re2(
                r"^http\.[^.]+\.dynamodb\.table\.[^.]+\.capacity\.[^.]+(\.__partition_id=(\w{7}))$",
                ".dynamodb.table.",
                None,
            ),
        ),
        (
            "envoy.dynamo_operation",
            Re2(
                r"^http\.[^.]+\.dynamodb.(?:operation|table\.[^.]+\.capacity)(\.([^.]+))(?:\.|$)",
                ".dynamodb.",
                None,
            ),
        ),
        (
            "envoy.mongo_callsite",
            Tokens("mongo.*.collection.*.callsite.$.query.**"),
        ),
        (
            "envoy.dynamo_table",
            Re2(
                r"^http\.[^.]+\.dynamodb.(?:table|error)\.(([^.]+)\.)",
                ".dynamodb.",
                None,
            ),
        ),
        (
            "envoy.mongo_collection",
            Tokens("mongo.*.collection.$.**.query.*"),
        ),
        ("envoy.mongo_cmd", Tokens("mongo.*.cmd.$.**")),
        ("envoy.grpc_bridge_method", Tokens("cluster.*.grpc.*.$.**")),
        ("envoy.http_user_agent", Tokens("http.*.user_agent.$.**")),
        ("envoy.virtual_cluster", Tokens("vhost.*.vcluster.$.**")),
        (
            "envoy.fault_downstream_cluster",
            Tokens("http.*.fault.$.**"),
        ),
        (
            "envoy.ssl_cipher",
            Re2(
                r"^listener\..*?\.ssl\.ciphers(\.([\w-]+))$",
                ".ssl.ciphers.",
                None,
            ),
        ),
        (
            "envoy.ssl_curve",
            Re2(
                r"^(?:listener|cluster)\..*?\.ssl\.curves(\.([\w-]+))$",
                ".ssl.curves.",
                None,
            ),
        ),
        (
            "envoy.ssl_sigalg",
            Re2(
                r"^(?:listener|cluster)\..*?\.ssl\.sigalgs(\.([\w-]+))$",
                ".ssl.sigalgs.",
                None,
            ),
        ),
        (
            "envoy.ssl_version",
            Re2(
                r"^(?:listener|cluster)\..*?\.ssl\.versions(\.(TLSv\d\.\d))$",
                ".ssl.versions.",
                None,
            ),
        ),
        (
            "cipher_suite",
            Re2(
                r"^cluster\.[^.]+\.ssl\.ciphers(\.([\w-]+))$",
                ".ssl.ciphers.",
                None,
            ),
        ),
        ("envoy.grpc_bridge_service", Tokens("cluster.*.grpc.$.**")),
        ("envoy.tcp_prefix", Tokens("tcp.$.**")),
        ("envoy.udp_prefix", Tokens("udp.$.**")),
        ("envoy.clientssl_prefix", Tokens("auth.clientssl.$.**")),
        ("envoy.ratelimit_prefix", Tokens("ratelimit.$.**")),
        ("envoy.cluster_name", Tokens("cluster.$.**")),
        (
            "envoy.http_conn_manager_prefix",
            Re2(r"^listener\..*?\.http\.(([^.]+)\.)", ".http.", None),
        ),
        ("envoy.ext_authz_prefix", Tokens("cluster.*.ext_authz.$.**")),
        ("envoy.ext_authz_prefix", Tokens("http.*.ext_authz.$.**")),
        ("envoy.http_conn_manager_prefix", Tokens("http.$.**")),
        ("envoy.worker_id", Re2(WORKER_ID, "", None)),
        (
            "envoy.listener_address",
            Re2(LISTENER_ADDRESS, "", Some("admin")),
        ),
        ("envoy.virtual_host", Tokens("vhost.$.**")),
        ("envoy.mongo_prefix", Tokens("mongo.$.**")),
        (
            "envoy.rds_route_config",
            Re2(r"^http\.[^.]+\.rds\.(([\w\-./]+)\.)\w+?$", ".rds.", None),
        ),
        ("envoy.route", Tokens("vhost.*.route.$.**")),
        ("envoy.thrift_prefix", Tokens("thrift.$.**")),
        ("envoy.redis_prefix", Tokens("redis.$.**")),
        (
            "envoy.local_http_ratelimit_prefix",
            Tokens("$.http_local_rate_limit.**"),
        ),
        (
            "envoy.local_network_ratelimit_prefix",
            Tokens("local_rate_limit.$.**"),
        ),
        (
            "envoy.local_listener_ratelimit_prefix",
            Tokens("listener_local_ratelimit.$.**"),
        ),
        ("envoy.dns_filter_prefix", Tokens("dns_filter.$.**")),
        (
            "envoy.connection_limit_prefix",
            Tokens("connection_limit.$.**"),
        ),
        ("envoy.rbac_prefix", Tokens("$.rbac.**")),
        (
            "envoy.rbac_http_prefix",
            Re2(
                r"^http\.[^.]+\.rbac\.(([^.]+)\.)(?:allowed|denied|shadow_allowed|shadow_denied|logged|not_logged|policy\.)",
                ".rbac.",
                Some("policy"),
            ),
        ),
        (
            "envoy.rbac_policy_name",
            Re2(
                r"^http\.[^.]+\.rbac\.(?:[^.]+\.)?policy\.(([^.]+)\.)",
                ".policy.",
                None,
            ),
        ),
        (
            "envoy.proxy_protocol_prefix",
            Re2(
                r"^proxy_proto\.(([^.]+)\.)(?:versions\.[^.]+\.)?[^.]+$",
                "proxy_proto.",
                Some("versions"),
            ),
        ),
        (
            "envoy.proxy_protocol_version",
            Re2(
                r"^proxy_proto\.(?:[^.]+\.)?(versions\.v(\d)\.)\w+$",
                ".versions.",
                None,
            ),
        ),
        (
            "envoy.scoped_rds_config",
            Re2(
                r"^http\.[^.]+\.scoped_rds\.(([\w\-.]+)\.)\w+?$",
                ".scoped_rds.",
                None,
            ),
        ),
    ]
}

const WORKER_ID: &str = concat!(
    r"^(?:listener\.(?:",
    r"(?:(?:\d{1,3}\.\d{1,3}\.\d{1,3}\.\d{1,3}|\[[a-fA-F_\d]+\])_\d+)",
    r"|[^.]+)\.|server\.|listener_manager\.)worker_((\d+)\.)"
);
const LISTENER_ADDRESS: &str = concat!(
    r"^listener\.((",
    r"(?:(?:\d{1,3}\.\d{1,3}\.\d{1,3}\.\d{1,3}|\[[a-fA-F_\d]+\])_\d+)",
    r"|[^.]+)\.)"
);
