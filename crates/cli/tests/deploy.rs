//! The deployment files under `deploy/` checked against the code they
//! deploy: the Kubernetes manifests (probes, ports, listen addresses,
//! `PROJSYNC__*` names, the grace period, the image's entrypoint, the
//! metric KEDA scales on) and the Grafana dashboard's metric names.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use yaml_rust2::{Yaml, YamlLoader};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn read(rel: &str) -> String {
    let path = root().join(rel);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Every document of every manifest in deploy/kubernetes, with its file.
fn manifests() -> Vec<(String, Yaml)> {
    let dir = root().join("deploy/kubernetes");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("deploy/kubernetes")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml" || e == "yml"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no manifest in {}", dir.display());
    let mut docs = Vec::new();
    for file in files {
        let name = file.file_name().unwrap().to_string_lossy().into_owned();
        let text = std::fs::read_to_string(&file).expect("read manifest");
        let parsed =
            YamlLoader::load_from_str(&text).unwrap_or_else(|e| panic!("{name}: not YAML: {e}"));
        for doc in parsed.into_iter().filter(|d| !d.is_null()) {
            assert!(
                doc["apiVersion"].as_str().is_some(),
                "{name}: no apiVersion"
            );
            assert!(doc["kind"].as_str().is_some(), "{name}: no kind");
            assert!(
                doc["metadata"]["name"].as_str().is_some(),
                "{name}: no metadata.name"
            );
            docs.push((name.clone(), doc));
        }
    }
    docs
}

fn kind(doc: &Yaml) -> &str {
    doc["kind"].as_str().unwrap_or_default()
}

fn name(doc: &Yaml) -> &str {
    doc["metadata"]["name"].as_str().unwrap_or_default()
}

fn list(y: &Yaml) -> &[Yaml] {
    y.as_vec().map(Vec::as_slice).unwrap_or_default()
}

fn int(y: &Yaml) -> Option<i64> {
    y.as_i64()
}

/// config/default.toml as nested JSON: every configuration key has a
/// default there.
fn defaults() -> serde_json::Value {
    config::Config::builder()
        .add_source(config::File::from_str(
            &read("config/default.toml"),
            config::FileFormat::Toml,
        ))
        .build()
        .and_then(|c| c.try_deserialize())
        .expect("config/default.toml")
}

/// The configuration key of `PROJSYNC__A__B` (`a.b`) with its default, if
/// the key exists.
fn config_key<'a>(defaults: &'a serde_json::Value, env: &str) -> Option<&'a serde_json::Value> {
    let path = env.strip_prefix("PROJSYNC__")?;
    let mut v = defaults;
    for part in path.split("__") {
        if part.is_empty() || part != part.to_ascii_uppercase() {
            return None;
        }
        v = v.as_object()?.get(&part.to_ascii_lowercase())?;
    }
    // A section is not a key; a map of free keys (the telemetry headers,
    // empty by default) is one, set as `Name=value,…` from the environment.
    let is_section = v.as_object().is_some_and(|o| !o.is_empty());
    (!is_section).then_some(v)
}

/// The pod templates of the workloads: (file, workload name, pod spec).
fn pod_specs(docs: &[(String, Yaml)]) -> Vec<(String, String, &Yaml)> {
    docs.iter()
        .filter(|(_, d)| matches!(kind(d), "Deployment" | "Job"))
        .map(|(f, d)| {
            (
                f.clone(),
                name(d).to_string(),
                &d["spec"]["template"]["spec"],
            )
        })
        .collect()
}

/// A container's env: literal values (None for valueFrom).
fn env(container: &Yaml) -> BTreeMap<String, Option<String>> {
    list(&container["env"])
        .iter()
        .map(|e| {
            let n = e["name"].as_str().expect("env name").to_string();
            (n, e["value"].as_str().map(str::to_string))
        })
        .collect()
}

/// The container port a probe or Service refers to (by number or name).
fn resolve_port(container: &Yaml, port: &Yaml) -> Option<i64> {
    let ports = list(&container["ports"]);
    match port {
        Yaml::Integer(n) => ports
            .iter()
            .any(|p| int(&p["containerPort"]) == Some(*n))
            .then_some(*n),
        Yaml::String(s) => ports
            .iter()
            .find(|p| p["name"].as_str() == Some(s))
            .and_then(|p| int(&p["containerPort"])),
        _ => None,
    }
}

#[test]
fn image_entrypoint_is_the_binary() {
    let dockerfile = read("deploy/Dockerfile");
    assert!(
        dockerfile
            .lines()
            .any(|l| l.trim() == r#"ENTRYPOINT ["projsync"]"#),
        "deploy/Dockerfile's ENTRYPOINT changed: the manifests pass the subcommand as args"
    );
    for (file, workload, spec) in pod_specs(&manifests()) {
        for c in list(&spec["containers"]) {
            assert!(
                c["command"].is_badvalue() || c["command"].is_null(),
                "{file} {workload}: `command` overrides the image's entrypoint; use args"
            );
            let sub = list(&c["args"]).first().and_then(Yaml::as_str);
            assert!(
                matches!(sub, Some("api" | "worker" | "migrate")),
                "{file} {workload}: args must start with api, worker or migrate, got {sub:?}"
            );
        }
    }
}

#[test]
fn env_names_are_configuration_keys() {
    let defaults = defaults();
    let docs = manifests();
    let mut seen = BTreeSet::new();
    for (file, workload, spec) in pod_specs(&docs) {
        for c in list(&spec["containers"]) {
            for (var, value) in env(c) {
                if !var.starts_with("PROJSYNC") {
                    continue;
                }
                let default = config_key(&defaults, &var).unwrap_or_else(|| {
                    panic!("{file} {workload}: {var} is not a key of config/default.toml")
                });
                // A literal value has the default's type.
                if let Some(value) = value {
                    match default {
                        serde_json::Value::Bool(_) => assert!(
                            value.parse::<bool>().is_ok(),
                            "{file} {workload}: {var}={value} is not a bool"
                        ),
                        serde_json::Value::Number(_) => assert!(
                            value.parse::<f64>().is_ok(),
                            "{file} {workload}: {var}={value} is not a number"
                        ),
                        _ => {}
                    }
                }
                seen.insert(var);
            }
        }
    }
    for var in [
        "PROJSYNC__DATABASE__URL",
        "PROJSYNC__DATABASE__ADMIN_URL",
        "PROJSYNC__REDIS__URL",
        "PROJSYNC__API__LISTEN",
        "PROJSYNC__API__ALLOWED_HOSTS",
        "PROJSYNC__WORKER__LISTEN",
    ] {
        assert!(seen.contains(var), "no workload sets {var}");
    }
}

#[test]
fn only_migrate_gets_the_admin_url() {
    for (file, workload, spec) in pod_specs(&manifests()) {
        for c in list(&spec["containers"]) {
            let is_migrate = list(&c["args"]).first().and_then(Yaml::as_str) == Some("migrate");
            let e = env(c);
            let has_admin = e.contains_key("PROJSYNC__DATABASE__ADMIN_URL");
            assert_eq!(
                has_admin, is_migrate,
                "{file} {workload}: PROJSYNC__DATABASE__ADMIN_URL belongs to the migrate Job only"
            );
            assert!(
                list(&c["envFrom"]).is_empty(),
                "{file} {workload}: envFrom would hide which variables a workload gets"
            );
            // Connection strings come from Secrets, never literals.
            for secret in [
                "PROJSYNC__DATABASE__URL",
                "PROJSYNC__DATABASE__ADMIN_URL",
                "PROJSYNC__REDIS__URL",
            ] {
                if let Some(v) = e.get(secret) {
                    assert!(
                        v.is_none(),
                        "{file} {workload}: {secret} must come from a Secret"
                    );
                }
            }
        }
    }
}

#[test]
fn probes_hit_the_health_routes_on_the_listen_port() {
    let health = read("crates/api/src/health.rs");
    let docs = manifests();
    let mut seen = BTreeSet::new();
    for (file, workload, spec) in pod_specs(&docs) {
        for c in list(&spec["containers"]) {
            let sub = list(&c["args"])
                .first()
                .and_then(Yaml::as_str)
                .unwrap_or_default();
            let listen_var = match sub {
                "api" => "PROJSYNC__API__LISTEN",
                "worker" => "PROJSYNC__WORKER__LISTEN",
                _ => continue,
            };
            seen.insert(sub.to_string());
            let e = env(c);
            let listen: SocketAddr = e
                .get(listen_var)
                .cloned()
                .flatten()
                .unwrap_or_else(|| panic!("{file} {workload}: no literal {listen_var}"))
                .parse()
                .unwrap_or_else(|err| panic!("{file} {workload}: {listen_var}: {err}"));
            assert!(
                listen.ip().is_unspecified(),
                "{file} {workload}: {listen_var} must listen on all interfaces for the kubelet"
            );
            for (probe, path) in [("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")] {
                let get = &c[probe]["httpGet"];
                assert_eq!(
                    get["path"].as_str(),
                    Some(path),
                    "{file} {workload}: {probe} path"
                );
                assert!(
                    projsync_api::health::PATHS.contains(&path)
                        && health.contains(&format!(".route(\"{path}\"")),
                    "{path} is not a route of crates/api/src/health.rs"
                );
                let port = resolve_port(c, &get["port"]).unwrap_or_else(|| {
                    panic!("{file} {workload}: {probe} port is no container port")
                });
                assert_eq!(
                    port,
                    i64::from(listen.port()),
                    "{file} {workload}: {probe} port is not {listen_var}'s"
                );
            }
        }
    }
    assert_eq!(
        seen,
        BTreeSet::from(["api".to_string(), "worker".to_string()]),
        "an api and a worker Deployment"
    );
}

#[test]
fn services_target_container_ports() {
    let docs = manifests();
    let specs = pod_specs(&docs);
    let deployments: Vec<_> = docs
        .iter()
        .filter(|(_, d)| kind(d) == "Deployment")
        .collect();
    for (file, svc) in docs.iter().filter(|(_, d)| kind(d) == "Service") {
        let selector = &svc["spec"]["selector"];
        let selected: Vec<_> = deployments
            .iter()
            .filter(|(_, d)| {
                let labels = &d["spec"]["template"]["metadata"]["labels"];
                selector
                    .as_hash()
                    .is_some_and(|s| s.iter().all(|(k, v)| &labels[k.as_str().unwrap()] == v))
            })
            .collect();
        assert_eq!(
            selected.len(),
            1,
            "{file} {}: selects one Deployment",
            name(svc)
        );
        let dep = name(&selected[0].1);
        let spec = specs.iter().find(|(_, n, _)| n == dep).unwrap().2;
        for port in list(&svc["spec"]["ports"]) {
            let target = &port["targetPort"];
            assert!(
                list(&spec["containers"])
                    .iter()
                    .any(|c| resolve_port(c, target).is_some()),
                "{file} {}: targetPort {target:?} is no container port of {dep}",
                name(svc)
            );
        }
    }
}

#[test]
fn workers_get_longer_than_their_shutdown_timeout() {
    let defaults = defaults();
    let default_timeout = defaults["worker"]["shutdown_timeout_secs"]
        .as_i64()
        .expect("worker.shutdown_timeout_secs");
    for (file, workload, spec) in pod_specs(&manifests()) {
        for c in list(&spec["containers"]) {
            if list(&c["args"]).first().and_then(Yaml::as_str) != Some("worker") {
                continue;
            }
            let timeout = env(c)
                .get("PROJSYNC__WORKER__SHUTDOWN_TIMEOUT_SECS")
                .cloned()
                .flatten()
                .map(|v| v.parse::<i64>().expect("shutdown timeout"))
                .unwrap_or(default_timeout)
                .max(default_timeout);
            let grace = int(&spec["terminationGracePeriodSeconds"])
                .unwrap_or_else(|| panic!("{file} {workload}: no terminationGracePeriodSeconds"));
            assert!(
                grace > timeout,
                "{file} {workload}: terminationGracePeriodSeconds {grace} <= shutdown timeout {timeout}"
            );
        }
    }
}

/// The metric families the code registers: the `"projsync_…"` names in
/// crates/metrics, with a histogram's series suffixes.
fn metric_names() -> BTreeSet<String> {
    let source = read("crates/metrics/src/lib.rs");
    // The string literal that starts at each `"projsync_`.
    let literals = |text: &str| -> Vec<String> {
        text.match_indices("\"projsync_")
            .filter_map(|(i, _)| {
                let lit = &text[i + 1..];
                let end = lit.find('"')?;
                let name = &lit[..end];
                name.chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
                    .then(|| name.to_string())
            })
            .collect()
    };
    let mut names: BTreeSet<String> = literals(&source).into_iter().collect();
    // A histogram (the first name after `HistogramOpts::new(`) also has
    // _bucket, _sum and _count series.
    for (i, _) in source.match_indices("HistogramOpts::new(") {
        let histogram = literals(&source[i..])
            .into_iter()
            .next()
            .expect("histogram name");
        for suffix in ["_bucket", "_sum", "_count"] {
            names.insert(format!("{histogram}{suffix}"));
        }
    }
    names
}

/// The `projsync_…` identifiers of a PromQL expression.
fn promql_metrics(expr: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = expr;
    while let Some(i) = rest.find("projsync_") {
        let boundary = rest[..i]
            .chars()
            .last()
            .is_none_or(|c| !(c.is_ascii_alphanumeric() || c == '_'));
        let tail = &rest[i..];
        let end = tail
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(tail.len());
        if boundary {
            out.push(tail[..end].to_string());
        }
        rest = &tail[end..];
    }
    out
}

#[test]
fn the_metric_names_exist() {
    let known = metric_names();
    assert!(known.contains("projsync_queue_depth"), "{known:?}");
    // Cross-check the source scan with a live registry.
    let m = projsync_metrics::Metrics::new(projsync_metrics::Process::Worker);
    let rendered = m.render(Some(&projsync_metrics::LedgerSnapshot::default()));
    for line in rendered.lines().filter(|l| l.starts_with("# TYPE ")) {
        let family = line.split_whitespace().nth(2).unwrap();
        assert!(
            known.contains(family),
            "{family} rendered but not found in the source"
        );
    }

    // KEDA.
    let docs = manifests();
    let scaled: Vec<_> = docs
        .iter()
        .filter(|(_, d)| kind(d) == "ScaledObject")
        .collect();
    assert_eq!(scaled.len(), 1, "one KEDA ScaledObject");
    let (file, so) = scaled[0];
    let target = so["spec"]["scaleTargetRef"]["name"]
        .as_str()
        .expect("scaleTargetRef");
    let worker = docs
        .iter()
        .find(|(_, d)| kind(d) == "Deployment" && name(d) == target)
        .unwrap_or_else(|| panic!("{file}: scaleTargetRef {target} is no Deployment"));
    let args = list(&worker.1["spec"]["template"]["spec"]["containers"][0]["args"]);
    assert_eq!(
        args.first().and_then(Yaml::as_str),
        Some("worker"),
        "{file}: scales the workers"
    );
    let mut keda_metrics = Vec::new();
    for t in list(&so["spec"]["triggers"]) {
        assert_eq!(
            t["type"].as_str(),
            Some("prometheus"),
            "{file}: trigger type"
        );
        assert!(
            t["metadata"]["serverAddress"].as_str().is_some(),
            "{file}: serverAddress"
        );
        assert!(
            t["metadata"]["threshold"].as_str().is_some(),
            "{file}: threshold is a string"
        );
        keda_metrics.extend(promql_metrics(
            t["metadata"]["query"].as_str().expect("query"),
        ));
    }
    assert_eq!(
        keda_metrics,
        ["projsync_queue_depth"],
        "{file}: scales on the queue depth"
    );

    // Grafana.
    let dash: serde_json::Value =
        serde_json::from_str(&read("deploy/grafana/projsync.json")).expect("dashboard JSON");
    assert!(
        dash["__inputs"]
            .as_array()
            .is_some_and(|i| i.iter().any(|i| i["name"] == "DS_PROMETHEUS")),
        "the dashboard's datasource is the DS_PROMETHEUS input"
    );
    let mut used = BTreeSet::new();
    for panel in dash["panels"].as_array().expect("panels") {
        if panel["type"] == "row" {
            continue;
        }
        assert_eq!(
            panel["datasource"]["uid"], "${DS_PROMETHEUS}",
            "{}",
            panel["title"]
        );
        for t in panel["targets"].as_array().expect("targets") {
            let expr = t["expr"].as_str().expect("expr");
            let names = promql_metrics(expr);
            assert!(!names.is_empty(), "{expr}: no projsync metric");
            for n in names {
                assert!(
                    known.contains(&n),
                    "dashboard: {n} is not a projsync metric"
                );
                used.insert(n);
            }
        }
    }
    // Every family the code exports has a panel.
    for n in known
        .iter()
        .filter(|n| !n.ends_with("_bucket") && !n.ends_with("_sum") && !n.ends_with("_count"))
    {
        let shown = used.iter().any(|u| {
            u == n
                || u.strip_prefix(n.as_str())
                    .is_some_and(|s| s.starts_with('_'))
        });
        assert!(shown, "dashboard: no panel shows {n}");
    }
}
