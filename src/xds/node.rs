//! The `Node` tern identifies itself with: the bootstrap's node (with the CLI's
//! `--service-cluster`/`--service-node`/`--service-zone` already applied) as given, metadata and
//! locality untouched, plus the user agent and the client features tern implements.

use envoy_types::pb::envoy::config::bootstrap::v3::Bootstrap;
use envoy_types::pb::envoy::config::core::v3::{BuildVersion, Node, node::UserAgentVersionType};
use envoy_types::pb::envoy::r#type::v3::SemanticVersion;

/// Client features tern supports, as Envoy advertises its own.
pub const CLIENT_FEATURES: &[&str] = &[
    // SotW responses may wrap each resource in `envoy.service.discovery.v3.Resource`.
    "xds.config.resource-in-sotw",
    // tern does not apply an overprovisioning factor other than the one the config says.
    "envoy.lb.does_not_support_overprovisioning",
];

/// The node sent to the control plane.
pub fn node(b: &Bootstrap) -> Node {
    let mut n = b.node.clone().unwrap_or_default();
    n.user_agent_name = "tern".into();
    let v = |i: usize| {
        env!("CARGO_PKG_VERSION")
            .split('.')
            .nth(i)
            .and_then(|s| s.parse().ok())
            .unwrap_or(0)
    };
    n.user_agent_version_type = Some(UserAgentVersionType::UserAgentBuildVersion(BuildVersion {
        version: Some(SemanticVersion {
            major_number: v(0),
            minor_number: v(1),
            patch: v(2),
        }),
        metadata: None,
    }));
    n.client_features = CLIENT_FEATURES.iter().map(|s| s.to_string()).collect();
    n
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_keeps_identity_and_sets_user_agent() {
        let b = Bootstrap {
            node: Some(Node {
                id: "sidecar~10.0.0.1~pod.ns~ns.svc.cluster.local".into(),
                cluster: "pod.ns".into(),
                ..Default::default()
            }),
            ..Default::default()
        };
        let n = node(&b);
        assert_eq!(n.id, "sidecar~10.0.0.1~pod.ns~ns.svc.cluster.local");
        assert_eq!(n.cluster, "pod.ns");
        assert_eq!(n.user_agent_name, "tern");
        assert!(matches!(
            n.user_agent_version_type,
            Some(UserAgentVersionType::UserAgentBuildVersion(_))
        ));
        assert!(
            n.client_features
                .iter()
                .any(|f| f == "xds.config.resource-in-sotw")
        );
    }
}
