//! podman with storage and state of the test's own (nothing under
//! /var/lib/containers or /run that it leaves behind), and the podman run
//! command lines of the DaemonSet's pod template
//! (deploy/kubernetes/netatopd.yaml): every field the template has is
//! either turned into a flag or named here as one a single node has no
//! use for; any other field fails the test, so the manifest cannot grow
//! what was not run.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Command;

use yaml_rust2::{Yaml, YamlLoader};

/// podman, its storage, state and runtime root under `dir`.
pub struct Podman {
    dir: PathBuf,
    /// Paths podman makes wherever it is told; removed at the end if they
    /// were not there before.
    made: Vec<PathBuf>,
}

impl Podman {
    pub fn new(dir: &Path) -> Podman {
        let made = [
            "/var/lib/containers",
            "/run/containers",
            "/run/libpod",
            "/run/runc",
        ]
        .iter()
        .map(PathBuf::from)
        .filter(|p| !p.exists())
        .collect();
        std::fs::create_dir_all(dir).unwrap();
        Podman {
            dir: dir.to_owned(),
            made,
        }
    }

    /// A podman command.
    pub fn cmd(&self) -> Command {
        let d = |s: &str| self.dir.join(s);
        let mut c = Command::new("podman");
        c.arg("--root")
            .arg(d("storage"))
            .arg("--runroot")
            .arg(d("run"))
            .arg("--tmpdir")
            .arg(d("tmp"))
            .args(["--storage-driver", "vfs", "--cgroup-manager", "cgroupfs"])
            .args(["--events-backend", "none", "--runtime", "runc"])
            .arg("--runtime-flag")
            .arg(format!("root={}", d("runc").display()));
        c
    }

    /// Runs `args`; their standard output, or a panic with their error.
    pub fn run(&self, args: &[&str]) -> String {
        let out = self.cmd().args(args).output().expect("podman");
        assert!(
            out.status.success(),
            "podman {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

impl Drop for Podman {
    fn drop(&mut self) {
        let _ = self.cmd().args(["rm", "-a", "-f", "-t", "10"]).output();
        let _ = self.cmd().args(["rmi", "-a", "-f"]).output();
        let _ = std::fs::remove_dir_all(&self.dir);
        for p in &self.made {
            let _ = std::fs::remove_dir_all(p);
        }
    }
}

/// The DaemonSet in `manifest`.
pub fn daemonset(manifest: &Path) -> Yaml {
    let text = std::fs::read_to_string(manifest).expect("the manifest");
    let mut docs = YamlLoader::load_from_str(&text).expect("the manifest is YAML");
    assert_eq!(docs.len(), 1, "one document");
    let d = docs.remove(0);
    assert_eq!(d["kind"].as_str(), Some("DaemonSet"));
    d
}

fn keys(y: &Yaml) -> Vec<String> {
    y.as_hash()
        .map(|h| {
            h.keys()
                .filter_map(|k| k.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

/// Asserts that `y` has only keys of `known`.
fn only(y: &Yaml, what: &str, known: &[&str]) {
    for k in keys(y) {
        assert!(
            known.contains(&k.as_str()),
            "{what}.{k} is not run by the test: add it to tests/tests/image/podman.rs"
        );
    }
}

fn strs(y: &Yaml) -> Vec<String> {
    y.as_vec()
        .map(|v| {
            v.iter()
                .filter_map(|s| s.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

/// `podman run` arguments (after `run`) of each container of the pod template
/// `template`, by name, with the host path `/run` replaced by `run`:
/// the one change the test makes, so that its atop socket is its own.
pub fn run_args(template: &Yaml, run: &Path) -> Vec<(String, Vec<OsString>)> {
    only(template, "template", &["metadata", "spec"]);
    let spec = &template["spec"];
    // Kept by a scheduler, not a single node.
    only(
        spec,
        "spec",
        &[
            "hostPID",
            "hostNetwork",
            "dnsPolicy",
            "priorityClassName",
            "tolerations",
            "terminationGracePeriodSeconds",
            "containers",
            "securityContext",
            "volumes",
        ],
    );
    only(
        &spec["securityContext"],
        "securityContext",
        &["supplementalGroups"],
    );
    let mut common: Vec<OsString> = Vec::new();
    if spec["hostPID"].as_bool() == Some(true) {
        common.push("--pid=host".into());
    }
    if spec["hostNetwork"].as_bool() == Some(true) {
        common.push("--network=host".into());
    }
    if let Some(t) = spec["terminationGracePeriodSeconds"].as_i64() {
        common.push(format!("--stop-timeout={t}").into());
    }
    for g in spec["securityContext"]["supplementalGroups"]
        .as_vec()
        .unwrap_or(&vec![])
    {
        common.push(format!("--group-add={}", g.as_i64().expect("a gid")).into());
    }
    let mut volumes = std::collections::HashMap::new();
    for v in spec["volumes"].as_vec().expect("volumes") {
        only(v, "volume", &["name", "hostPath"]);
        only(&v["hostPath"], "hostPath", &["path", "type"]);
        let path = v["hostPath"]["path"].as_str().expect("a host path");
        let host = if path == "/run" {
            run.to_owned()
        } else {
            PathBuf::from(path)
        };
        volumes.insert(v["name"].as_str().expect("a name").to_owned(), host);
    }
    let mut out = Vec::new();
    for c in spec["containers"].as_vec().expect("containers") {
        let name = c["name"].as_str().expect("a name").to_owned();
        only(
            c,
            "container",
            &[
                "name",
                "image",
                "imagePullPolicy",
                "command",
                "args",
                "securityContext",
                "resources",
                "volumeMounts",
            ],
        );
        let mut a = common.clone();
        a.push(format!("--name=netatopd-test-{name}").into());
        let sc = &c["securityContext"];
        only(
            sc,
            "securityContext",
            &[
                "runAsUser",
                "runAsGroup",
                "privileged",
                "allowPrivilegeEscalation",
                "readOnlyRootFilesystem",
                "capabilities",
                "seccompProfile",
            ],
        );
        assert_ne!(sc["privileged"].as_bool(), Some(true), "{name}: privileged");
        if let Some(u) = sc["runAsUser"].as_i64() {
            let g = sc["runAsGroup"].as_i64().unwrap_or(u);
            a.push(format!("--user={u}:{g}").into());
        }
        if sc["allowPrivilegeEscalation"].as_bool() == Some(false) {
            a.push("--security-opt=no-new-privileges".into());
        }
        if sc["readOnlyRootFilesystem"].as_bool() == Some(true) {
            a.push("--read-only".into());
        }
        for cap in strs(&sc["capabilities"]["drop"]) {
            a.push(format!("--cap-drop={cap}").into());
        }
        for cap in strs(&sc["capabilities"]["add"]) {
            a.push(format!("--cap-add={cap}").into());
        }
        match sc["seccompProfile"]["type"].as_str() {
            None | Some("RuntimeDefault") => {}
            Some("Unconfined") => a.push("--security-opt=seccomp=unconfined".into()),
            Some(t) => panic!("{name}: seccompProfile {t} is not run by the test"),
        }
        let limits = &c["resources"]["limits"];
        if let Some(m) = limits["memory"].as_str() {
            let mib = m.strip_suffix("Mi").expect("a limit in Mi");
            a.push(format!("--memory={mib}m").into());
        }
        if let Some(cpu) = limits["cpu"].as_str() {
            let milli: f64 = cpu
                .strip_suffix('m')
                .expect("a limit in m")
                .parse()
                .unwrap();
            a.push(format!("--cpus={}", milli / 1000.0).into());
        }
        for m in c["volumeMounts"].as_vec().unwrap_or(&vec![]) {
            only(m, "volumeMount", &["name", "mountPath", "readOnly"]);
            let host = &volumes[m["name"].as_str().expect("a volume")];
            let ro = if m["readOnly"].as_bool() == Some(true) {
                ":ro"
            } else {
                ""
            };
            let mut v = OsString::from("--volume=");
            v.push(host);
            v.push(format!(":{}{ro}", m["mountPath"].as_str().expect("a path")));
            a.push(v);
        }
        // Kubernetes's command replaces the image's entrypoint; its args
        // follow the command.
        let command = strs(&c["command"]);
        if let Some(cmd) = command.first() {
            a.push(format!("--entrypoint={cmd}").into());
        }
        a.push(c["image"].as_str().expect("an image").into());
        a.extend(command.iter().skip(1).map(OsString::from));
        a.extend(strs(&c["args"]).into_iter().map(OsString::from));
        out.push((name, a));
    }
    out
}
