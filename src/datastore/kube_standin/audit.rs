//! The stand-in's audit log: every request reduced to the attributes Kubernetes authorises on
//! (verb, API group, resource, subresource, namespace, name), as the API server's `RequestInfo`
//! derives them from the method and path. Tests check these against a ClusterRole; the stand-in
//! itself authorises nothing.

use axum::http::Method;

/// One request as an authoriser sees it.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ApiCall {
    /// `get`, `list`, `watch`, `create`, `update`, `patch`, `delete` or `deletecollection`.
    pub verb: String,
    /// The API group; `""` for the core group.
    pub group: String,
    /// The resource's plural name (`nodes`, `ippools`).
    pub resource: String,
    /// `status` for the status subresource; `""` for none.
    pub subresource: String,
    /// `""` for cluster-scoped requests and lists across namespaces.
    pub namespace: String,
    /// `""` for collection requests.
    pub name: String,
}

/// The attributes of a request; `None` for paths outside the resource API (discovery, /version).
pub fn attributes(method: &Method, path: &str, query: &str) -> Option<ApiCall> {
    let parts: Vec<&str> = path.trim_matches('/').split('/').collect();
    let (group, rest) = match parts.as_slice() {
        ["api", _version, rest @ ..] => (String::new(), rest),
        ["apis", group, _version, rest @ ..] => (group.to_string(), rest),
        _ => return None,
    };
    let (namespace, rest) = match rest {
        // `/api/v1/namespaces/<ns>` alone is the Namespace itself.
        ["namespaces", ns, rest @ ..] if !rest.is_empty() => (ns.to_string(), rest),
        _ => (String::new(), rest),
    };
    let (resource, name, subresource) = match rest {
        [resource] => (*resource, "", ""),
        [resource, name] => (*resource, *name, ""),
        [resource, name, sub] => (*resource, *name, *sub),
        _ => return None,
    };
    let watch = query.split('&').any(|p| p == "watch=true" || p == "watch=1");
    let verb = match (method.as_str(), name.is_empty()) {
        ("GET", _) if watch => "watch",
        ("GET", true) => "list",
        ("GET", false) => "get",
        ("POST", _) => "create",
        ("PUT", _) => "update",
        ("PATCH", _) => "patch",
        ("DELETE", true) => "deletecollection",
        ("DELETE", false) => "delete",
        _ => return None,
    };
    Some(ApiCall {
        verb: verb.to_string(),
        group,
        resource: resource.to_string(),
        subresource: subresource.to_string(),
        namespace,
        name: name.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn call(method: Method, path: &str, query: &str) -> (String, String, String, String) {
        let c = attributes(&method, path, query).unwrap();
        (c.verb, c.group, c.resource, c.subresource)
    }

    #[test]
    fn request_attributes_follow_the_api_servers_request_info() {
        let s = |v: &str| v.to_string();
        assert_eq!(call(Method::GET, "/api/v1/nodes", ""), (s("list"), s(""), s("nodes"), s("")));
        assert_eq!(
            call(Method::GET, "/api/v1/nodes", "watch=true&resourceVersion=3"),
            (s("watch"), s(""), s("nodes"), s(""))
        );
        assert_eq!(call(Method::PATCH, "/api/v1/nodes/n1/status", ""), (s("patch"), s(""), s("nodes"), s("status")));
        assert_eq!(
            call(Method::PUT, "/apis/crd.tortie.io/v1/ippools/p", ""),
            (s("update"), s("crd.tortie.io"), s("ippools"), s(""))
        );
        let pods = attributes(&Method::GET, "/api/v1/namespaces/default/pods/web", "").unwrap();
        assert_eq!((pods.verb.as_str(), pods.namespace.as_str(), pods.name.as_str()), ("get", "default", "web"));
        assert_eq!(call(Method::GET, "/api/v1/namespaces/default", "").2, "namespaces");
        assert_eq!(attributes(&Method::GET, "/version", ""), None);
    }
}
