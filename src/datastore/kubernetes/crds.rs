//! The CustomResourceDefinitions for tortie's kinds, generated from the Rust types with the same
//! schema settings kube's derive uses (structural, inlined, OpenAPI v3), with printer columns.

use super::{GROUP, VERSION};
use crate::datastore::Kind;
use crate::datastore::resources::{
    BgpConfiguration, BgpFilter, BgpPeer, BlockAffinity, GlobalNetworkPolicy, IpPool, IpReservation, IpamBlock,
    IpamConfig, IpamHandle, Lease, NetworkPolicy, NodeStatus, Resource,
};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::{
    CustomResourceColumnDefinition, CustomResourceDefinition, CustomResourceDefinitionNames,
    CustomResourceDefinitionSpec, CustomResourceDefinitionVersion, CustomResourceValidation, JSONSchemaProps,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

/// `tortie crds`: every CRD as one multi-document YAML stream, ready for `kubectl apply -f -`.
pub fn crds_yaml() -> String {
    let mut out = String::new();
    for crd in crds() {
        out.push_str("---\n");
        // Serialising plain data structures cannot fail; an empty document would show it if so.
        out.push_str(&serde_norway::to_string(&crd).unwrap_or_default());
    }
    out
}

/// Every CRD tortie uses (Node, Secret, Namespace, KubernetesNetworkPolicy, Service and
/// EndpointSlice are Kubernetes' own kinds, so not among them).
pub fn crds() -> Vec<CustomResourceDefinition> {
    vec![
        crd::<IpPool>(&[
            ("CIDR", "string", ".spec.cidr"),
            ("Block Size", "integer", ".spec.blockSize"),
            ("IPIP", "string", ".spec.ipipMode"),
            ("VXLAN", "string", ".spec.vxlanMode"),
            ("Disabled", "boolean", ".spec.disabled"),
        ]),
        crd::<IpamBlock>(&[
            ("CIDR", "string", ".spec.cidr"),
            ("Affinity", "string", ".spec.affinity"),
            ("Deleted", "boolean", ".spec.deleted"),
        ]),
        crd::<BlockAffinity>(&[
            ("Node", "string", ".spec.node"),
            ("CIDR", "string", ".spec.cidr"),
            ("State", "string", ".spec.state"),
        ]),
        crd::<IpamHandle>(&[("Handle", "string", ".spec.handleID")]),
        crd::<IpamConfig>(&[
            ("Strict Affinity", "boolean", ".spec.strictAffinity"),
            ("Max Blocks Per Host", "integer", ".spec.maxBlocksPerHost"),
        ]),
        crd::<IpReservation>(&[("Reserved CIDRs", "string", ".spec.reservedCIDRs")]),
        crd::<BgpPeer>(&[
            ("Peer IP", "string", ".spec.peerIP"),
            ("AS", "integer", ".spec.asNumber"),
            ("Node", "string", ".spec.node"),
        ]),
        crd::<BgpConfiguration>(&[
            ("Mesh", "boolean", ".spec.nodeToNodeMeshEnabled"),
            ("AS", "integer", ".spec.asNumber"),
        ]),
        crd::<BgpFilter>(&[
            ("Export V4", "string", ".spec.exportV4[*].cidr"),
            ("Import V4", "string", ".spec.importV4[*].cidr"),
        ]),
        crd::<NetworkPolicy>(&[("Order", "number", ".spec.order"), ("Selector", "string", ".spec.selector")]),
        crd::<GlobalNetworkPolicy>(&[("Order", "number", ".spec.order"), ("Selector", "string", ".spec.selector")]),
        crd::<Lease>(&[("Holder", "string", ".spec.holderIdentity"), ("Renewed", "string", ".spec.renewTime")]),
        crd::<NodeStatus>(&[
            ("Ready", "boolean", ".spec.ready"),
            ("Version", "string", ".spec.agentVersion"),
            ("Pod Addresses", "integer", ".spec.podAddresses"),
        ]),
    ]
}

/// The OpenAPI v3 schema of `R`, structural as Kubernetes requires.
fn spec_schema<R: Resource>() -> JSONSchemaProps {
    let generator = schemars::generate::SchemaSettings::openapi3()
        .with(|s| {
            s.inline_subschemas = true;
            s.meta_schema = None;
        })
        .with_transform(schemars::transform::AddNullable::default())
        .with_transform(kube::core::schema::StructuralSchemaRewriter)
        .with_transform(kube::core::schema::OptionalEnum)
        .with_transform(kube::core::schema::OptionalIntOrString)
        .into_generator();
    let schema = generator.into_root_schema_for::<R>();
    // schemars output always fits JSONSchemaProps (kube's derive relies on the same); an
    // unconstrained object is the fallback should it ever not.
    serde_json::to_value(schema).and_then(serde_json::from_value).unwrap_or_else(|_| JSONSchemaProps {
        type_: Some("object".into()),
        x_kubernetes_preserve_unknown_fields: Some(true),
        ..Default::default()
    })
}

fn crd<R: Resource>(columns: &[(&str, &str, &str)]) -> CustomResourceDefinition {
    let kind: Kind = R::KIND;
    let mut spec = spec_schema::<R>();
    spec.title = None;
    let root = JSONSchemaProps {
        type_: Some("object".into()),
        required: Some(vec!["spec".into()]),
        properties: Some([("spec".to_string(), spec)].into()),
        ..Default::default()
    };
    let mut printer_columns: Vec<_> = columns
        .iter()
        .map(|(name, type_, path)| CustomResourceColumnDefinition {
            name: name.to_string(),
            type_: type_.to_string(),
            json_path: path.to_string(),
            ..Default::default()
        })
        .collect();
    printer_columns.push(CustomResourceColumnDefinition {
        name: "Age".into(),
        type_: "date".into(),
        json_path: ".metadata.creationTimestamp".into(),
        ..Default::default()
    });
    CustomResourceDefinition {
        metadata: ObjectMeta { name: Some(format!("{}.{GROUP}", kind.plural())), ..Default::default() },
        spec: CustomResourceDefinitionSpec {
            group: GROUP.into(),
            names: CustomResourceDefinitionNames {
                kind: kind.as_str().into(),
                plural: kind.plural().into(),
                singular: Some(kind.as_str().to_lowercase()),
                list_kind: Some(format!("{}List", kind.as_str())),
                categories: Some(vec!["tortie".into()]),
                ..Default::default()
            },
            scope: if kind.namespaced() { "Namespaced" } else { "Cluster" }.into(),
            versions: vec![CustomResourceDefinitionVersion {
                name: VERSION.into(),
                served: true,
                storage: true,
                schema: Some(CustomResourceValidation { open_api_v3_schema: Some(root) }),
                additional_printer_columns: Some(printer_columns),
                ..Default::default()
            }],
            ..Default::default()
        },
        status: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_custom_kind_has_a_structural_crd_with_columns() {
        let crds = crds();
        // Node, Secret, Namespace, KubernetesNetworkPolicy, Service and EndpointSlice are
        // Kubernetes' own kinds.
        let custom = Kind::ALL
            .iter()
            .filter(|k| {
                !matches!(
                    k,
                    Kind::Node
                        | Kind::Secret
                        | Kind::Namespace
                        | Kind::KubeNetworkPolicy
                        | Kind::Service
                        | Kind::EndpointSlice
                )
            })
            .count();
        assert_eq!(crds.len(), custom);
        for crd in &crds {
            let version = &crd.spec.versions[0];
            let schema = version.schema.as_ref().unwrap().open_api_v3_schema.as_ref().unwrap();
            let spec = &schema.properties.as_ref().unwrap()["spec"];
            assert_eq!(spec.type_.as_deref(), Some("object"), "{}", crd.spec.names.kind);
            assert!(version.additional_printer_columns.as_ref().unwrap().len() >= 2);
        }
        let yaml = crds_yaml();
        assert!(yaml.contains("name: ippools.crd.tortie.io"));
        assert!(yaml.contains("disableBGPExport"));
        assert!(yaml.contains("jsonPath: .spec.cidr"));
    }
}
