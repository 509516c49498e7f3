//! Unit tests of the renderer: template loading, validation, determinism and the post-render
//! checks. End-to-end properties (hostile text, Kubernetes schemas) are in tests/render.rs.

use std::path::Path;

use super::validate::{is_pinned_image, is_quantity, is_tenant_id};
use super::*;
use crate::plans::Catalogue;

fn starter() -> Plan {
    Catalogue::builtin()
        .unwrap()
        .get("starter")
        .unwrap()
        .clone()
}

fn render(spec: &TenantSpec) -> Result<RenderedTenant, RenderError> {
    Renderer::builtin().render(
        spec,
        &starter(),
        &RenderSettings::default(),
        &demo_sealed_values(),
    )
}

fn templates_dir() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/templates"))
}

#[test]
fn builtin_and_directory_templates_render_identically() {
    let from_dir = Renderer::from_dir(templates_dir()).unwrap();
    let a = render(&demo_spec()).unwrap();
    let b = from_dir
        .render(
            &demo_spec(),
            &starter(),
            &RenderSettings::default(),
            &demo_sealed_values(),
        )
        .unwrap();
    assert_eq!(
        a, b,
        "builtin_templates! must list every file of templates/"
    );
    let on_disk = std::fs::read_dir(templates_dir()).unwrap().count();
    assert_eq!(on_disk, BUILTIN_TEMPLATES.len());
}

#[test]
fn every_plan_renders_deterministically() {
    let catalogue = Catalogue::builtin().unwrap();
    let renderer = Renderer::builtin();
    for (name, plan) in &catalogue.plans {
        let spec = TenantSpec {
            plan: name.clone(),
            ..demo_spec()
        };
        let one = renderer
            .render(
                &spec,
                plan,
                &RenderSettings::default(),
                &demo_sealed_values(),
            )
            .unwrap_or_else(|e| panic!("plan {name}: {e}"));
        let two = renderer
            .render(
                &spec,
                plan,
                &RenderSettings::default(),
                &demo_sealed_values(),
            )
            .unwrap();
        assert_eq!(one, two);
        let paths: Vec<_> = one.files.keys().cloned().collect();
        let mut expected: Vec<_> = TENANT_MANIFESTS
            .iter()
            .chain(["kustomization.yaml"].iter())
            .map(|f| format!("tenants/demo/{f}"))
            .collect();
        expected.push("flux-tenants/demo.yaml".into());
        expected.sort();
        assert_eq!(paths, expected);
    }
}

#[test]
fn tenant_ids_are_dns_labels() {
    for ok in ["demo", "a1", "abcdefghijkl", "x2b4c6d8e0f1", "ab-cd"] {
        assert!(is_tenant_id(ok), "{ok}");
    }
    let long = "a".repeat(43);
    for bad in [
        "",
        "a",
        "1abc",
        "Demo",
        "de_mo",
        "demo-",
        "-demo",
        "de.mo",
        "../x",
        "dé",
        long.as_str(),
    ] {
        assert!(!is_tenant_id(bad), "{bad}");
        let spec = TenantSpec {
            id: bad.into(),
            ..demo_spec()
        };
        assert!(
            matches!(
                render(&spec),
                Err(RenderError::InvalidSpec { field: "id", .. })
            ),
            "{bad}"
        );
    }
}

#[test]
fn label_fields_are_validated() {
    let spec = TenantSpec {
        plan: "gold plan".into(),
        ..demo_spec()
    };
    assert!(matches!(
        render(&spec),
        Err(RenderError::InvalidSpec { field: "plan", .. })
    ));
    let spec = TenantSpec {
        subscription_status: "past due\n".into(),
        ..demo_spec()
    };
    assert!(render(&spec).is_err());
    let spec = TenantSpec {
        company_name: "x".repeat(validate::MAX_TEXT_LEN + 1),
        ..demo_spec()
    };
    assert!(matches!(
        render(&spec),
        Err(RenderError::InvalidSpec {
            field: "company_name",
            ..
        })
    ));
    for c in ['\u{7f}', '\u{85}', '\u{9b}', '\u{fffe}'] {
        let spec = TenantSpec {
            full_name: Some(format!("a{c}b")),
            ..demo_spec()
        };
        let err = render(&spec).unwrap_err();
        assert!(
            matches!(
                err,
                RenderError::InvalidSpec {
                    field: "full_name",
                    ..
                }
            ),
            "{err}"
        );
    }
}

#[test]
fn images_must_be_pinned() {
    for ok in [
        "postgres:15.10-alpine",
        "registry.local:5000/team/api:1.2.3",
        "ghcr.io/x/y@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
    ] {
        assert!(is_pinned_image(ok), "{ok}");
    }
    for bad in [
        "postgres",
        "postgres:latest",
        "registry.local:5000/api",
        "a:b c",
        "x:",
        "api:1\n",
    ] {
        assert!(!is_pinned_image(bad), "{bad}");
    }
    let mut settings = RenderSettings::default();
    settings.images.api = "ghcr.io/iotistic/api:latest".into();
    let err = Renderer::builtin()
        .render(&demo_spec(), &starter(), &settings, &demo_sealed_values())
        .unwrap_err();
    assert!(err.to_string().contains("images.api"), "{err}");
}

#[test]
fn quantities_are_validated() {
    for ok in ["4", "500m", "1.5", "16Gi", "10G", "0.25"] {
        assert!(is_quantity(ok), "{ok}");
    }
    for bad in ["", "Gi", "4 Gi", "4gb", "-1", "1.", ".5", "1e3"] {
        assert!(!is_quantity(bad), "{bad}");
    }
    let mut plan = starter();
    plan.resources.quota_memory = "4Gi\nkind: Secret".into();
    let err = Renderer::builtin()
        .render(
            &demo_spec(),
            &plan,
            &RenderSettings::default(),
            &demo_sealed_values(),
        )
        .unwrap_err();
    assert!(
        matches!(
            err,
            RenderError::InvalidPlan {
                field: "quota_memory",
                ..
            }
        ),
        "{err}"
    );
}

#[test]
fn settings_names_are_validated() {
    let renderer = Renderer::builtin();
    let cases: [fn(&mut RenderSettings); 4] = [
        |s| s.base_domain = "Example.com".into(),
        |s| s.cluster_issuer = "issuer: evil".into(),
        |s| s.storage_class = Some("".into()),
        |s| s.reconciler_service_account = "a.b".into(),
    ];
    for change in cases {
        let mut settings = RenderSettings::default();
        change(&mut settings);
        let result = renderer.render(&demo_spec(), &starter(), &settings, &demo_sealed_values());
        assert!(
            matches!(result, Err(RenderError::InvalidSettings { .. })),
            "{settings:?}"
        );
    }
}

#[test]
fn sealed_values_must_match_the_secret_the_workloads_read() {
    let renderer = Renderer::builtin();
    let try_render = |sealed: &SealedValues| {
        renderer.render(&demo_spec(), &starter(), &RenderSettings::default(), sealed)
    };
    let mut sealed = demo_sealed_values();
    sealed.secret_name = "other".into();
    assert!(try_render(&sealed).is_err());
    let mut sealed = demo_sealed_values();
    sealed.encrypted.remove("LICENSE_KEY");
    assert!(try_render(&sealed)
        .unwrap_err()
        .to_string()
        .contains("LICENSE_KEY"));
    let mut sealed = demo_sealed_values();
    sealed
        .encrypted
        .insert("EXTRA".into(), "not base64: {x}".into());
    assert!(try_render(&sealed).is_err());
}

#[test]
fn storage_class_is_rendered_only_when_set() {
    let mut settings = RenderSettings::default();
    let plain = render(&demo_spec()).unwrap();
    assert!(
        !String::from_utf8_lossy(&plain.files["tenants/demo/postgres.yaml"])
            .contains("storageClassName")
    );
    settings.storage_class = Some("fast-ssd".into());
    let out = Renderer::builtin()
        .render(&demo_spec(), &starter(), &settings, &demo_sealed_values())
        .unwrap();
    for file in ["postgres.yaml", "backup.yaml"] {
        let text =
            String::from_utf8_lossy(&out.files[&format!("tenants/demo/{file}")]).into_owned();
        assert!(text.contains("storageClassName: \"fast-ssd\""), "{file}");
    }
}

/// The post-render check rejects a template that strays from the tenant namespace, renders an
/// unexpected object or an unpinned image.
#[test]
fn post_render_check_catches_template_mistakes() {
    let variants = [
        (
            "api.yaml",
            "namespace: {{ tenant.namespace }}",
            "namespace: default",
            "namespace",
        ),
        (
            "ingress.yaml",
            "name: tenant\n",
            "name: other\n",
            "object set differs",
        ),
        (
            "api.yaml",
            "image: {{ settings.images.api }}",
            "image: api:latest",
            "unpinned",
        ),
        (
            "backup.yaml",
            "image: {{ settings.images.backup }}",
            "image: postgres",
            "CronJob/postgres-backup uses unpinned image",
        ),
        (
            "rbac.yaml",
            "automountServiceAccountToken: false\n---",
            "automountServiceAccountToken: false\n---\n: [",
            "YAML",
        ),
    ];
    for (file, from, to, expected) in variants {
        let sources = BUILTIN_TEMPLATES.iter().map(|(name, text)| {
            let text = if *name == file {
                text.replacen(from, to, 1)
            } else {
                text.to_string()
            };
            assert!(
                *name != file || text.contains(to),
                "{file}: pattern {from:?} not found"
            );
            (name.to_string(), text)
        });
        let renderer = Renderer::from_sources(sources).unwrap();
        // In full, and as the only changed template after a good render.
        let good = render(&demo_spec()).unwrap().lock;
        for previous in [None, Some(&good)] {
            let err = renderer
                .render_update(
                    &demo_spec(),
                    &starter(),
                    &RenderSettings::default(),
                    &demo_sealed_values(),
                    previous,
                )
                .unwrap_err();
            assert!(matches!(err, RenderError::Check { .. }), "{file}: {err}");
            assert!(err.to_string().contains(expected), "{file}: {err}");
        }
    }
}

/// The built-in templates with `namespace.yaml` carrying one more annotation.
fn with_changed_namespace() -> Renderer {
    let sources = BUILTIN_TEMPLATES.iter().map(|(name, text)| {
        let text = match *name {
            "namespace.yaml" => text.replacen(
                "  annotations:\n",
                "  annotations:\n    iotistic.io/changed: \"yes\"\n",
                1,
            ),
            _ => text.to_string(),
        };
        (name.to_string(), text)
    });
    Renderer::from_sources(sources).unwrap()
}

#[test]
fn a_changed_template_re_renders_only_its_files() {
    let (spec, plan, settings, sealed) = (
        demo_spec(),
        starter(),
        RenderSettings::default(),
        demo_sealed_values(),
    );
    let before = render(&spec).unwrap();
    assert!(before.complete);
    assert_eq!(before.lock.templates.len(), TENANT_MANIFESTS.len() + 2);
    assert_eq!(
        before.lock.templates["namespace.yaml"].objects,
        [("Namespace".to_string(), namespace_of("demo"))]
    );
    let unchanged = Renderer::builtin()
        .render_update(&spec, &plan, &settings, &sealed, Some(&before.lock))
        .unwrap();
    assert!(!unchanged.complete);
    assert!(unchanged.files.is_empty(), "same templates, same inputs");
    assert_eq!(unchanged.lock, before.lock);

    let changed = with_changed_namespace();
    let full = changed.render(&spec, &plan, &settings, &sealed).unwrap();
    let partial = changed
        .render_update(&spec, &plan, &settings, &sealed, Some(&before.lock))
        .unwrap();
    assert!(!partial.complete);
    let paths: Vec<_> = partial.files.keys().collect();
    assert_eq!(paths, ["tenants/demo/namespace.yaml"]);
    assert_eq!(
        partial.files["tenants/demo/namespace.yaml"],
        full.files["tenants/demo/namespace.yaml"]
    );
    assert!(
        String::from_utf8_lossy(&partial.files["tenants/demo/namespace.yaml"])
            .contains("iotistic.io/changed")
    );
    assert_eq!(partial.lock, full.lock, "the same record as a full render");
    assert_ne!(partial.lock, before.lock);

    // Any other input change (here the customer's company name) renders everything.
    let mut renamed = spec.clone();
    renamed.company_name = "Renamed Ltd".into();
    let again = changed
        .render_update(&renamed, &plan, &settings, &sealed, Some(&before.lock))
        .unwrap();
    assert!(again.complete);
    assert_eq!(again.files.len(), full.files.len());
    assert_ne!(again.lock.inputs, before.lock.inputs);
    // A lock that does not parse is no lock.
    assert_eq!(RenderLock::from_bytes(b"not json"), None);
    assert_eq!(
        RenderLock::from_bytes(&before.lock.to_bytes()),
        Some(before.lock)
    );
}

#[test]
fn customer_text_is_quoted_in_the_namespace_annotations() {
    let spec = TenantSpec {
        company_name: "Evil\"\n---\nkind: Secret".into(),
        full_name: Some("{{ 7*7 }} {% raw %}".into()),
        ..demo_spec()
    };
    let out = render(&spec).unwrap();
    let docs = parse_documents(&out.files["tenants/demo/namespace.yaml"]).unwrap();
    assert_eq!(docs.len(), 1);
    let annotations = &docs[0]["metadata"]["annotations"];
    assert_eq!(
        annotations["iotistic.io/company-name"].as_str(),
        Some(spec.company_name.as_str())
    );
    assert_eq!(
        annotations["iotistic.io/contact-name"].as_str(),
        spec.full_name.as_deref()
    );
}

#[test]
fn missing_template_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("namespace.yaml"), "kind: Namespace\n").unwrap();
    let err = Renderer::from_dir(dir.path())
        .err()
        .expect("incomplete template set");
    assert!(matches!(err, RenderError::Template { .. }), "{err}");
    assert!(Renderer::from_dir(&dir.path().join("absent")).is_err());
}
