//! End-to-end properties of `billing::render`: every plan renders the full, hardened stack;
//! output is deterministic; hostile customer text changes scalar values only; and the output
//! builds with kustomize and validates strictly against the Kubernetes 1.30 OpenAPI schemas.

use std::collections::BTreeSet;
use std::path::Path;

use billing::plans::{Catalogue, Plan};
use billing::render::*;
use serde_norway::Value;

#[path = "tools/skip.rs"]
mod skip;
#[path = "tools/validate_manifests.rs"]
mod validate_manifests;
use validate_manifests::{kustomize_build, tool, validate_builtin, write_tree};

fn catalogue() -> Catalogue {
    Catalogue::builtin().unwrap()
}

fn render_plan(spec: &TenantSpec, plan: &Plan) -> RenderedTenant {
    Renderer::builtin()
        .render(
            spec,
            plan,
            &RenderSettings::default(),
            &demo_sealed_values(),
        )
        .unwrap_or_else(|e| panic!("{}: {e}", spec.id))
}

fn render(spec: &TenantSpec) -> RenderedTenant {
    render_plan(spec, catalogue().get(&spec.plan).unwrap())
}

/// (file, document) for every document of every rendered file, kustomization.yaml excluded.
fn objects(out: &RenderedTenant) -> Vec<(String, Value)> {
    out.files
        .iter()
        .filter(|(path, _)| !path.ends_with("/kustomization.yaml"))
        .flat_map(|(path, bytes)| {
            let docs = parse_documents(bytes).unwrap_or_else(|e| panic!("{path}: {e}"));
            docs.into_iter().map(move |d| (path.clone(), d))
        })
        .collect()
}

fn s<'a>(v: &'a Value, path: &[&str]) -> &'a str {
    path.iter()
        .try_fold(v, |v, k| v.get(k))
        .and_then(Value::as_str)
        .unwrap_or_else(|| panic!("no string at {path:?} in {v:?}"))
}

/// Pod spec and replica count of a workload (a CronJob runs one pod at a time: Forbid).
fn pod_spec(doc: &Value) -> Option<(&Value, i64)> {
    let kind = doc["kind"].as_str()?;
    match kind {
        "Deployment" | "StatefulSet" => Some((
            &doc["spec"]["template"]["spec"],
            doc["spec"]["replicas"].as_i64()?,
        )),
        "CronJob" => Some((&doc["spec"]["jobTemplate"]["spec"]["template"]["spec"], 1)),
        _ => None,
    }
}

fn containers(pod: &Value, list: &str) -> Vec<Value> {
    pod.get(list)
        .and_then(Value::as_sequence)
        .cloned()
        .unwrap_or_default()
}

/// kind/name of every object rendered for tenant `demo`.
const EXPECTED_OBJECTS: &str = "
    Namespace/customer-demo ResourceQuota/tenant-quota LimitRange/tenant-limits
    ServiceAccount/tenant-reconciler RoleBinding/tenant-reconciler-admin SealedSecret/tenant-secrets
    Service/postgres StatefulSet/postgres ConfigMap/mosquitto-config Service/mosquitto
    Deployment/mosquitto Service/api Deployment/api Service/dashboard Deployment/dashboard
    Service/exporter Deployment/exporter Ingress/tenant ConfigMap/suspended-page Service/suspended
    Deployment/suspended PersistentVolumeClaim/backups
    CronJob/postgres-backup Kustomization/tenant-demo NetworkPolicy/default-deny
    NetworkPolicy/allow-dns NetworkPolicy/postgres NetworkPolicy/mosquitto NetworkPolicy/api
    NetworkPolicy/dashboard NetworkPolicy/exporter NetworkPolicy/suspended NetworkPolicy/backup";

#[test]
fn every_plan_renders_the_expected_objects_in_the_tenant_namespace() {
    let expected: BTreeSet<String> = EXPECTED_OBJECTS
        .split_whitespace()
        .map(String::from)
        .collect();
    for (name, plan) in &catalogue().plans {
        let spec = TenantSpec {
            plan: name.clone(),
            ..demo_spec()
        };
        let objs = objects(&render_plan(&spec, plan));
        let got: BTreeSet<_> = objs
            .iter()
            .map(|(_, d)| format!("{}/{}", s(d, &["kind"]), s(d, &["metadata", "name"])))
            .collect();
        assert_eq!(got, expected, "plan {name}");
        assert_eq!(objs.len(), expected.len(), "plan {name}: duplicates");
        for (file, doc) in &objs {
            let kind = s(doc, &["kind"]);
            let ns = doc["metadata"].get("namespace").and_then(Value::as_str);
            match kind {
                "Namespace" => assert_eq!(ns, None),
                "Kustomization" => {
                    assert_eq!(
                        (file.as_str(), ns),
                        (
                            billing::render::flux_kustomization_path("demo").as_str(),
                            Some("flux-system")
                        )
                    );
                }
                _ => assert_eq!(ns, Some("customer-demo"), "{file}: {kind}"),
            }
        }
    }
}

#[test]
fn every_container_is_pinned_bounded_probed_and_non_root() {
    for (name, plan) in &catalogue().plans {
        let spec = TenantSpec {
            plan: name.clone(),
            ..demo_spec()
        };
        let out = render_plan(&spec, plan);
        for bytes in out.files.values() {
            assert!(!String::from_utf8_lossy(bytes).contains(":latest"));
        }
        let mut seen = 0;
        for (file, doc) in objects(&out) {
            let Some((pod, _)) = pod_spec(&doc) else {
                continue;
            };
            let batch = doc["kind"] == "CronJob";
            assert_eq!(
                pod["automountServiceAccountToken"].as_bool(),
                Some(false),
                "{file}"
            );
            assert_eq!(
                pod["securityContext"]["runAsNonRoot"].as_bool(),
                Some(true),
                "{file}"
            );
            for list in ["containers", "initContainers"] {
                for c in containers(pod, list) {
                    seen += 1;
                    let what = format!("{file}: {}", s(&c, &["name"]));
                    let image = s(&c, &["image"]);
                    assert!(image.contains(':') && !image.ends_with(":latest"), "{what}");
                    for part in ["requests", "limits"] {
                        for res in ["cpu", "memory"] {
                            assert!(
                                c["resources"][part].get(res).is_some(),
                                "{what}: {part}.{res}"
                            );
                        }
                    }
                    let sc = &c["securityContext"];
                    assert_eq!(sc["runAsNonRoot"].as_bool(), Some(true), "{what}");
                    assert!(sc["runAsUser"].as_i64().unwrap() > 0, "{what}");
                    assert_eq!(
                        sc["allowPrivilegeEscalation"].as_bool(),
                        Some(false),
                        "{what}"
                    );
                    assert_eq!(sc["readOnlyRootFilesystem"].as_bool(), Some(true), "{what}");
                    assert_eq!(
                        sc["capabilities"]["drop"][0].as_str(),
                        Some("ALL"),
                        "{what}"
                    );
                    assert_eq!(
                        s(sc, &["seccompProfile", "type"]),
                        "RuntimeDefault",
                        "{what}"
                    );
                    // Init containers cannot have probes; batch pods run to completion, bounded by
                    // activeDeadlineSeconds instead.
                    if list == "containers" && !batch {
                        assert!(c.get("livenessProbe").is_some(), "{what}: liveness");
                        assert!(c.get("readinessProbe").is_some(), "{what}: readiness");
                    }
                }
            }
        }
        assert_eq!(seen, 8, "plan {name}: containers checked");
    }
}

/// CPU in millicores or memory in bytes.
fn quantity(q: &str) -> u64 {
    let units = [
        ("m", 1),
        ("Ki", 1 << 10),
        ("Mi", 1 << 20),
        ("Gi", 1 << 30),
        ("Ti", 1 << 40),
    ];
    for (suffix, factor) in units {
        if let Some(n) = q.strip_suffix(suffix) {
            return n.parse::<u64>().unwrap() * factor;
        }
    }
    q.parse::<u64>().unwrap() * 1000 // whole CPUs
}

/// All replicas, one surge pod per Deployment (maxSurge 1, possibly all rolling at once) and the
/// backup job fit the plan's quota; every container fits the LimitRange.
#[test]
fn workloads_fit_the_plan_quota_and_limit_range() {
    for (name, plan) in &catalogue().plans {
        let spec = TenantSpec {
            plan: name.clone(),
            ..demo_spec()
        };
        let objs = objects(&render_plan(&spec, plan));
        let find = |kind: &str| {
            objs.iter()
                .map(|(_, d)| d)
                .find(|d| d["kind"] == kind)
                .unwrap()
                .clone()
        };
        let quota = find("ResourceQuota");
        let max = &find("LimitRange")["spec"]["limits"][0]["max"];
        let hard = |k: &str| quantity(s(&quota, &["spec", "hard", k]));
        let (mut pods, mut totals) = (0, [0u64; 4]);
        for (_, doc) in &objs {
            let Some((pod, replicas)) = pod_spec(doc) else {
                continue;
            };
            let surge = i64::from(doc["kind"] == "Deployment");
            let n = (replicas + surge) as u64;
            pods += n;
            for c in containers(pod, "containers") {
                let r = &c["resources"];
                let vals = [
                    &r["requests"]["cpu"],
                    &r["requests"]["memory"],
                    &r["limits"]["cpu"],
                    &r["limits"]["memory"],
                ];
                for (total, v) in totals.iter_mut().zip(vals) {
                    *total += n * quantity(v.as_str().unwrap());
                }
                assert!(quantity(s(r, &["limits", "cpu"])) <= quantity(s(max, &["cpu"])));
                assert!(quantity(s(r, &["limits", "memory"])) <= quantity(s(max, &["memory"])));
            }
        }
        let keys = [
            "requests.cpu",
            "requests.memory",
            "limits.cpu",
            "limits.memory",
        ];
        for (key, total) in keys.iter().zip(totals) {
            assert!(
                total <= hard(key),
                "plan {name}: {key} needs {total}, quota {}",
                hard(key)
            );
        }
        assert!(pods <= hard("pods") / 1000, "plan {name}: {pods} pods");
    }
}

#[test]
fn plan_storage_fits_the_quota() {
    for (name, plan) in &catalogue().plans {
        let r = &plan.resources;
        let claims = quantity(&r.postgres_storage) + quantity(&r.backup_storage);
        assert!(
            claims <= quantity(&r.quota_storage),
            "plan {name}: claims {claims} > quota"
        );
    }
}

#[test]
fn rendering_is_deterministic_across_renderers() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("templates");
    let a = render(&demo_spec());
    let b = Renderer::from_dir(&dir)
        .unwrap()
        .render(
            &demo_spec(),
            catalogue().get("starter").unwrap(),
            &RenderSettings::default(),
            &demo_sealed_values(),
        )
        .unwrap();
    assert_eq!(a.files, b.files);
    assert_eq!(a.files, render(&demo_spec()).files);
}

/// A path into a parsed document.
#[derive(Clone, Debug)]
enum Seg {
    Key(Value),
    Index(usize),
}

/// Paths of every string scalar equal to one of `needles`, with the needle's index.
fn find_strings(
    v: &Value,
    needles: &[&str],
    path: &mut Vec<Seg>,
    found: &mut Vec<(Vec<Seg>, usize)>,
) {
    match v {
        Value::String(text) => {
            if let Some(i) = needles.iter().position(|n| n == text) {
                found.push((path.clone(), i));
            }
        }
        Value::Mapping(m) => {
            for (k, child) in m {
                path.push(Seg::Key(k.clone()));
                find_strings(child, needles, path, found);
                path.pop();
            }
        }
        Value::Sequence(items) => {
            for (i, child) in items.iter().enumerate() {
                path.push(Seg::Index(i));
                find_strings(child, needles, path, found);
                path.pop();
            }
        }
        _ => {}
    }
}

fn at_mut<'a>(v: &'a mut Value, path: &[Seg]) -> Option<&'a mut Value> {
    path.iter().try_fold(v, |v, seg| match seg {
        Seg::Key(k) => v.as_mapping_mut()?.get_mut(k),
        Seg::Index(i) => v.as_sequence_mut()?.get_mut(*i),
    })
}

fn hostile_texts() -> Vec<String> {
    let fixed = [
        "line one\nline two\r\nthree",
        "---\napiVersion: v1\nkind: Secret\nmetadata:\n  name: pwned",
        "...\n--- !!binary x",
        r#"He said "hi" and 'bye' \ back\slash"#,
        "{{ 7*7 }} {% if true %}x{% endif %} {# c #} {{ settings }}",
        "# not a comment",
        "key: value",
        "- item",
        "{a: b}",
        "[x, y]",
        "&anchor *alias <<: *alias",
        "!!python/object/apply:os.system ['id']",
        "!<tag:yaml.org,2002:str> x",
        "RTL \u{202e}txet\u{202c} עברית والعربية",
        "emoji 🚀👩‍💻🏳️‍🌈",
        "sep\u{2028}a\u{2029}b",
        "ctrl\u{0}\u{7}\u{1b}\u{1f}\u{feff}\u{a0}\u{200d}",
        "${HOME} $(id) `id` %s %n",
        "true",
        "null",
        "~",
        "0o17",
        "1e3",
        "yes",
        "  leading and trailing  ",
        "",
        "|\n  block",
        ">- folded",
        "\t tab: \"x\"",
    ];
    let mut texts: Vec<String> = fixed.iter().map(|s| s.to_string()).collect();
    texts.push("Ünïcødé & very long ".repeat(2000));
    texts
}

const PLACEHOLDERS: [&str; 3] = ["PLAIN-COMPANY", "plain@example.com", "PLAIN-NAME"];

/// Renders a tenant whose company, email and full name are `values`, and asserts that every
/// document has the structure of a plain tenant's, with exactly those scalars replaced and
/// round-tripped byte for byte.
fn assert_only_its_own_scalars_change(label: &str, plain: &[(String, Value)], values: [String; 3]) {
    let spec = TenantSpec {
        company_name: values[0].clone(),
        email: values[1].clone(),
        full_name: Some(values[2].clone()),
        ..demo_spec()
    };
    let hostile = objects(&render(&spec));
    assert_eq!(
        hostile.len(),
        plain.len(),
        "{label}: document count changed"
    );
    let mut appearances = [0; 3];
    for ((file, plain_doc), (hostile_file, hostile_doc)) in plain.iter().zip(&hostile) {
        assert_eq!(file, hostile_file);
        let mut found = Vec::new();
        find_strings(plain_doc, &PLACEHOLDERS, &mut Vec::new(), &mut found);
        let mut substituted = hostile_doc.clone();
        for (path, which) in found {
            let slot = at_mut(&mut substituted, &path)
                .unwrap_or_else(|| panic!("{label}: {file}: path {path:?} gone"));
            assert_eq!(
                slot.as_str(),
                Some(values[which].as_str()),
                "{label}: {file}: not round-tripped"
            );
            *slot = Value::String(PLACEHOLDERS[which].into());
            appearances[which] += 1;
        }
        assert_eq!(
            &substituted, plain_doc,
            "{label}: {file}: structure changed"
        );
    }
    assert!(
        appearances.iter().all(|n| *n > 0),
        "{label}: every field appears"
    );
}

fn plain_objects() -> Vec<(String, Value)> {
    let plain_spec = TenantSpec {
        company_name: PLACEHOLDERS[0].into(),
        email: PLACEHOLDERS[1].into(),
        full_name: Some(PLACEHOLDERS[2].into()),
        ..demo_spec()
    };
    objects(&render(&plain_spec))
}

/// Hostile customer text renders, leaves every document's structure identical to a plain
/// tenant's, and round-trips exactly: compare the parse trees with the text fields substituted.
#[test]
fn hostile_customer_text_changes_only_its_own_scalars() {
    let plain = plain_objects();
    let texts = hostile_texts();
    for (i, text) in texts.iter().enumerate() {
        // Each field gets a different hostile text, so a mix-up between fields would show.
        let values = [
            text.clone(),
            texts[(i + 1) % texts.len()].clone(),
            texts[(i + 2) % texts.len()].clone(),
        ];
        assert_only_its_own_scalars_change(&format!("text {i}"), &plain, values);
    }
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(64))]

    /// Arbitrary text (any Unicode, YAML and Jinja syntax mixed in) never changes a manifest's
    /// structure; the few characters kustomize cannot carry are refused with an error, never a panic.
    #[test]
    fn arbitrary_customer_text_changes_only_its_own_scalars(
        company in "(\\PC|[\\n\\r\\t\\x00-\\x1f\\x7f-\\x9f\\u{fffe}:#&*!|>'\"{}%\\[\\]-]|---|\\{\\{|\\{%){0,40}",
        email in "\\PC{0,30}",
        name in "(\\PC|[\\n:#\\-{}]){0,30}",
    ) {
        let values = [company, email, name];
        if values.iter().any(|v| v.chars().any(billing::render::untransportable)) {
            let spec = TenantSpec { company_name: values[0].clone(), email: values[1].clone(), full_name: Some(values[2].clone()), ..demo_spec() };
            let catalogue = catalogue();
            let plan = catalogue.get(&spec.plan).unwrap();
            let result = Renderer::builtin().render(&spec, plan, &RenderSettings::default(), &demo_sealed_values());
            proptest::prop_assert!(result.is_err());
        } else {
            assert_only_its_own_scalars_change("arbitrary", &plain_objects(), values);
        }
    }
}

#[test]
fn tenants_build_with_kustomize_and_validate_against_kubernetes_schemas() {
    let (Some(kubectl), Some(validator)) = (
        tool("kubectl", &["version", "--client"]),
        tool("kubernetes-validate", &["--version"]),
    ) else {
        return;
    };
    let short: Vec<_> = hostile_texts()
        .into_iter()
        .filter(|t| t.len() < 1000)
        .collect();
    let hostile = TenantSpec {
        company_name: short.join(" | "),
        full_name: Some("Zoë 🚀\u{2028}x".into()),
        ..demo_spec()
    };
    for (name, plan) in &catalogue().plans {
        for spec in [
            TenantSpec {
                plan: name.clone(),
                ..demo_spec()
            },
            TenantSpec {
                plan: name.clone(),
                ..hostile.clone()
            },
        ] {
            let tmp = tempfile::tempdir().unwrap();
            let out = render_plan(&spec, plan);
            write_tree(&out, tmp.path());
            let built = kustomize_build(
                &kubectl,
                &tmp.path().join(billing::render::tenant_dir("demo")),
            );
            let docs = parse_documents(built.as_bytes()).unwrap();
            // kustomize (kyaml, go-yaml) reads customer text back exactly as written.
            let ns = docs.iter().find(|d| d["kind"] == "Namespace").unwrap();
            assert_eq!(
                s(ns, &["metadata", "annotations", "iotistic.io/company-name"]),
                spec.company_name
            );
            assert_eq!(
                docs.len() + 1,
                objects(&out).len(),
                "kustomize output = tenants/demo objects"
            );

            let mut custom = validate_builtin(&docs, tmp.path(), &validator);
            let flux =
                parse_documents(&out.files[&billing::render::flux_kustomization_path("demo")])
                    .unwrap();
            custom.extend(validate_builtin(&flux, tmp.path(), &validator));
            check_custom_resources(&custom);
        }
    }
}

/// Structural checks of the custom resources (no OpenAPI schema available offline).
fn check_custom_resources(custom: &[Value]) {
    let kinds: Vec<_> = custom.iter().map(|d| s(d, &["kind"])).collect();
    assert_eq!(kinds, ["SealedSecret", "Kustomization"]);
    let sealed = &custom[0];
    assert_eq!(s(sealed, &["apiVersion"]), "bitnami.com/v1alpha1");
    let keys: Vec<_> = sealed["spec"]["encryptedData"]
        .as_mapping()
        .unwrap()
        .keys()
        .map(|k| k.as_str().unwrap())
        .collect();
    assert_eq!(
        keys,
        ["DATABASE_PASSWORD", "LICENSE_KEY", "MQTT_ADMIN_PASSWORD"]
    );
    let template = &sealed["spec"]["template"];
    assert_eq!(s(template, &["metadata", "name"]), SECRET_NAME);
    assert_eq!(s(template, &["metadata", "namespace"]), "customer-demo");
    assert_eq!(
        s(template, &["metadata", "labels", "iotistic.io/tenant-id"]),
        "demo"
    );
    assert_eq!(s(template, &["type"]), "Opaque");

    let flux = &custom[1];
    assert_eq!(s(flux, &["apiVersion"]), "kustomize.toolkit.fluxcd.io/v1");
    let spec = &flux["spec"];
    assert_eq!(s(spec, &["path"]), "./tenants/d/e/m/demo");
    assert_eq!(
        (spec["prune"].as_bool(), spec["wait"].as_bool()),
        (Some(true), Some(true))
    );
    assert_eq!(
        (s(spec, &["interval"]), s(spec, &["timeout"])),
        ("5m", "5m")
    );
    assert_eq!(
        (
            s(spec, &["sourceRef", "kind"]),
            s(spec, &["sourceRef", "name"])
        ),
        ("GitRepository", "tenants")
    );
    assert_eq!(s(spec, &["serviceAccountName"]), "tenant-reconciler");
    assert!(
        spec.get("postBuild").is_none(),
        "variable substitution must stay off"
    );
}

/// The operator manifests in flux/ validate too (their Flux/Argo CD objects structurally).
#[test]
fn operator_manifests_validate() {
    let Some(validator) = tool("kubernetes-validate", &["--version"]) else {
        return;
    };
    let flux = Path::new(env!("CARGO_MANIFEST_DIR")).join("flux");
    let tmp = tempfile::tempdir().unwrap();
    let mut custom = Vec::new();
    for dir in [flux.clone(), flux.join("argocd")] {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_some_and(|e| e == "yaml") {
                let docs = parse_documents(&std::fs::read(&path).unwrap()).unwrap();
                custom.extend(validate_builtin(&docs, tmp.path(), &validator));
            }
        }
    }
    let mut kinds: Vec<_> = custom
        .iter()
        .map(|d| format!("{}/{}", s(d, &["kind"]), s(d, &["metadata", "name"])))
        .collect();
    kinds.sort();
    assert_eq!(
        kinds,
        [
            "Alert/billing",
            "AppProject/tenants",
            "ApplicationSet/tenants",
            "GitRepository/tenants",
            "Kustomization/tenants",
            "Provider/billing"
        ]
    );
    for doc in &custom {
        let spec = &doc["spec"];
        match s(doc, &["kind"]) {
            "GitRepository" => assert_eq!(s(spec, &["ref", "branch"]), "main"),
            "Kustomization" => assert_eq!(
                (s(spec, &["path"]), spec["prune"].as_bool()),
                ("./flux-tenants", Some(true))
            ),
            "ApplicationSet" => {
                assert_eq!(
                    s(&spec["generators"][0]["git"]["directories"][0], &["path"]),
                    "tenants/*/*/*/*"
                );
                assert_eq!(
                    s(spec, &["template", "spec", "destination", "namespace"]),
                    "customer-{{path.basename}}"
                );
            }
            // The sync watcher's wiring (src/watcher/flux.rs parses what these send).
            "Provider" => assert_eq!(
                (s(spec, &["type"]), s(spec, &["secretRef", "name"])),
                ("generic-hmac", "billing-webhook")
            ),
            "Alert" => assert_eq!(
                (
                    s(spec, &["eventSeverity"]),
                    s(&spec["eventSources"][0], &["kind"])
                ),
                ("info", "Kustomization")
            ),
            _ => assert_eq!(s(&spec["destinations"][0], &["namespace"]), "customer-*"),
        }
    }
}
