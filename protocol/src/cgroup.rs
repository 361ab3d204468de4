//! What a cgroup's path says about what runs in it: the systemd unit, the
//! container, the Kubernetes pod. Only the path's segments are read, as
//! systemd, docker, containerd, CRI-O, podman and kubelet name them.

use serde::{Deserialize, Serialize};

/// The names a cgroup's path carries (each `None` where it has none).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CgroupNames {
    /// The innermost systemd unit: a service or a scope, such as
    /// `nginx.service` or `user@1000.service`.
    pub unit: Option<String>,
    /// A container's id (64 hex digits).
    pub container_id: Option<String>,
    /// A Kubernetes pod's uid (with dashes).
    pub pod_uid: Option<String>,
    /// The pod's QoS class: `guaranteed`, `burstable` or `besteffort`.
    pub qos: Option<String>,
}

/// Prefixes of container scopes (systemd cgroup driver): docker,
/// containerd (under kubelet), CRI-O, podman.
const CONTAINER_SCOPES: [&str; 4] = ["docker-", "cri-containerd-", "crio-", "libpod-"];

fn is_container_id(s: &str) -> bool {
    s.len() == 64
        && s.bytes()
            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
}

/// The container id a segment names, if any: `docker-<id>.scope` and the
/// like, or the bare id of the cgroupfs driver (`/docker/<id>`).
fn container_of(segment: &str) -> Option<&str> {
    if is_container_id(segment) {
        return Some(segment);
    }
    let scope = segment.strip_suffix(".scope")?;
    CONTAINER_SCOPES
        .iter()
        .find_map(|p| scope.strip_prefix(p))
        .filter(|id| is_container_id(id))
}

/// The pod (uid, QoS) a segment names, given the segment before it:
/// `kubepods-burstable-pod<uid>.slice` (systemd driver, the uid's dashes
/// written as underscores), `kubepods-pod<uid>.slice` (guaranteed), or
/// `pod<uid>` under `burstable`, `besteffort` or `kubepods` (cgroupfs).
fn pod_of(segment: &str, parent: &str) -> Option<(String, String)> {
    if let Some(slice) = segment.strip_suffix(".slice") {
        let rest = slice.strip_prefix("kubepods-")?;
        let (qos, uid) = match rest.split_once("-pod") {
            Some((qos, uid)) => (qos, uid),
            None => ("guaranteed", rest.strip_prefix("pod")?),
        };
        return Some((uid.replace('_', "-"), qos.to_owned()));
    }
    let uid = segment.strip_prefix("pod")?;
    let qos = match parent {
        "burstable" | "besteffort" => parent,
        "kubepods" => "guaranteed",
        _ => return None,
    };
    Some((uid.to_owned(), qos.to_owned()))
}

/// The names in `path` (a cgroup v2 path such as
/// `/system.slice/nginx.service`); the innermost of each kind wins.
pub fn names(path: &str) -> CgroupNames {
    let mut n = CgroupNames::default();
    let mut parent = "";
    for segment in path.split('/').filter(|s| !s.is_empty()) {
        if segment.ends_with(".service") || segment.ends_with(".scope") {
            n.unit = Some(segment.to_owned());
        }
        if let Some(id) = container_of(segment) {
            n.container_id = Some(id.to_owned());
        }
        if let Some((uid, qos)) = pod_of(segment, parent) {
            n.pod_uid = Some(uid);
            n.qos = Some(qos);
        }
        parent = segment;
    }
    n
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "3f4b5c6d7e8f90a1b2c3d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f6071829";

    #[test]
    fn systemd_units() {
        let n = names("/system.slice/nginx.service");
        assert_eq!(n.unit.as_deref(), Some("nginx.service"));
        assert_eq!((n.container_id, n.pod_uid), (None, None));
        let n = names("/user.slice/user-1000.slice/user@1000.service/app.slice/x.scope");
        assert_eq!(n.unit.as_deref(), Some("x.scope"));
        assert_eq!(
            names("/user.slice/user-1000.slice/user@1000.service")
                .unit
                .as_deref(),
            Some("user@1000.service")
        );
        assert_eq!(names("/").unit, None);
        assert_eq!(names("/system.slice").unit, None);
    }

    #[test]
    fn containers() {
        for path in [
            format!("/system.slice/docker-{ID}.scope"),
            format!("/machine.slice/libpod-{ID}.scope"),
            format!("/docker/{ID}"),
        ] {
            assert_eq!(names(&path).container_id.as_deref(), Some(ID), "{path}");
        }
        // Not 64 lowercase hex digits: no container.
        assert_eq!(names("/system.slice/docker-abc.scope").container_id, None);
        assert_eq!(
            names(&format!("/system.slice/docker-{}.scope", ID.to_uppercase())).container_id,
            None
        );
    }

    #[test]
    fn kubernetes_pods() {
        let n = names(&format!(
            "/kubepods.slice/kubepods-burstable.slice/\
             kubepods-burstable-pod1a2b3c4d_0000_4e5f_8a9b_0c1d2e3f4a5b.slice/cri-containerd-{ID}.scope"
        ));
        assert_eq!(
            n.pod_uid.as_deref(),
            Some("1a2b3c4d-0000-4e5f-8a9b-0c1d2e3f4a5b")
        );
        assert_eq!(n.qos.as_deref(), Some("burstable"));
        assert_eq!(n.container_id.as_deref(), Some(ID));
        assert_eq!(
            n.unit.as_deref(),
            Some(format!("cri-containerd-{ID}.scope").as_str())
        );
        let n = names("/kubepods.slice/kubepods-podabc_def.slice");
        assert_eq!(
            (n.pod_uid.as_deref(), n.qos.as_deref()),
            (Some("abc-def"), Some("guaranteed"))
        );
        let n = names(&format!("/kubepods/besteffort/pod9f8e-77/{ID}"));
        assert_eq!(
            (n.pod_uid.as_deref(), n.qos.as_deref()),
            (Some("9f8e-77"), Some("besteffort"))
        );
        assert_eq!(n.container_id.as_deref(), Some(ID));
        // `pod...` elsewhere is not a pod.
        assert_eq!(names("/system.slice/podman.service").pod_uid, None);
    }
}
