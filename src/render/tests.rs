//! Unit tests of the renderer: template loading, validation, determinism and the post-render
//! checks. End-to-end properties (hostile text, Kubernetes schemas) are in tests/render.rs.

use std::ops::Range;
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
            .map(|f| format!("{}/{f}", crate::render::tenant_dir("demo")))
            .collect();
        expected.push(crate::render::flux_kustomization_path("demo"));
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
    assert!(!String::from_utf8_lossy(
        &plain.files[&format!("{}/postgres.yaml", crate::render::tenant_dir("demo"))]
    )
    .contains("storageClassName"));
    settings.storage_class = Some("fast-ssd".into());
    let out = Renderer::builtin()
        .render(&demo_spec(), &starter(), &settings, &demo_sealed_values())
        .unwrap();
    for file in ["postgres.yaml", "backup.yaml"] {
        let text = String::from_utf8_lossy(
            &out.files[&format!("{}/{file}", crate::render::tenant_dir("demo"))],
        )
        .into_owned();
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
            "kustomization.yaml",
            "resources:\n",
            "namePrefix: x-\nresources:\n",
            "unexpected fields",
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
    assert_eq!(
        paths,
        [&format!(
            "{}/namespace.yaml",
            crate::render::tenant_dir("demo")
        )]
    );
    assert_eq!(
        partial.files[&format!("{}/namespace.yaml", crate::render::tenant_dir("demo"))],
        full.files[&format!("{}/namespace.yaml", crate::render::tenant_dir("demo"))]
    );
    assert!(String::from_utf8_lossy(
        &partial.files[&format!("{}/namespace.yaml", crate::render::tenant_dir("demo"))]
    )
    .contains("iotistic.io/changed"));
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
fn a_lock_is_current_until_a_template_or_an_input_changes() {
    let (spec, plan, settings, sealed) = (
        demo_spec(),
        starter(),
        RenderSettings::default(),
        demo_sealed_values(),
    );
    let lock = render(&spec).unwrap().lock;
    let builtin = Renderer::builtin();
    assert!(builtin.is_current(&spec, &plan, &settings, &sealed, &lock));
    assert!(!with_changed_namespace().is_current(&spec, &plan, &settings, &sealed, &lock));
    let mut bigger = plan.clone();
    bigger.resources.quota_pods += 1;
    assert!(!builtin.is_current(&spec, &bigger, &settings, &sealed, &lock));
    let mut partial = lock.clone();
    partial.templates.remove("namespace.yaml");
    assert!(!builtin.is_current(&spec, &plan, &settings, &sealed, &partial));
}

#[test]
fn customer_text_is_quoted_in_the_namespace_annotations() {
    let spec = TenantSpec {
        company_name: "Evil\"\n---\nkind: Secret".into(),
        full_name: Some("{{ 7*7 }} {% raw %}".into()),
        ..demo_spec()
    };
    let out = render(&spec).unwrap();
    let docs = parse_documents(
        &out.files[&format!("{}/namespace.yaml", crate::render::tenant_dir("demo"))],
    )
    .unwrap();
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

/// Every file of a starter tenant's render, split as the renderer splits it.
fn rendered_files(renderer: &Renderer, spec: &TenantSpec) -> Vec<RenderedFile> {
    let (plan, settings, sealed) = (starter(), RenderSettings::default(), demo_sealed_values());
    let ctx = minijinja::Value::from_serialize(Context::new(spec, &plan, &settings, &sealed));
    output_templates()
        .filter(|t| *t != KUSTOMIZATION_TEMPLATE) // always parsed in full
        .map(|t| renderer.render_file(t, &spec.id, &ctx).unwrap())
        .collect()
}

/// The fields the check reads, through the renderer's skeletons (before and after it learns
/// the file's shape) and by parsing each file; returns how many were known before.
fn check_fields_agree(renderer: &Renderer, spec: &TenantSpec) -> usize {
    let mut known = 0;
    for file in rendered_files(renderer, spec) {
        let learnt = || {
            renderer
                .skeletons
                .learnt_objects(file.template, &file.split)
        };
        let before = learnt();
        let checked = renderer.skeletons.objects(file.template, &file.split);
        let parsed = objects::objects(file.split.clean.as_bytes());
        match (&checked, &parsed) {
            (Ok(checked), Ok(parsed)) => assert_eq!(checked, parsed, "{}", file.path),
            _ => assert_eq!(checked.is_ok(), parsed.is_ok(), "{}", file.path),
        }
        let parsed = parsed.map_err(|e| e.to_string());
        for objects in [&before, &learnt()].into_iter().flatten() {
            assert_eq!(Ok(objects), parsed.as_ref(), "{}", file.path);
        }
        known += usize::from(before.is_some());
    }
    known
}

#[test]
fn every_built_in_template_shape_is_learnt_once() {
    let renderer = Renderer::builtin();
    let files = rendered_files(&renderer, &demo_spec()).len();
    assert_eq!(
        check_fields_agree(&renderer, &demo_spec()),
        0,
        "nothing learnt yet"
    );
    assert_eq!(renderer.skeletons.counts(), (files, 0), "all cacheable");
    assert_eq!(check_fields_agree(&renderer, &demo_spec()), files);
    let other = TenantSpec {
        id: "other".into(),
        company_name: "x".repeat(400),
        email: "ops@other.example".into(),
        ..demo_spec()
    };
    // The long company name is another shape of namespace.yaml only.
    assert_eq!(check_fields_agree(&renderer, &other), files - 1);
    assert_eq!(check_fields_agree(&renderer, &other), files);
    assert_eq!(renderer.skeletons.counts(), (files + 1, 0));
}

#[test]
fn split_removes_value_marks_and_refuses_odd_ones() {
    let split = Split::new("a: \u{e000}\"x\"\u{e001}\nb: \u{e000}3\u{e001}\n").unwrap();
    assert_eq!(split.clean, "a: \"x\"\nb: 3\n");
    assert_eq!(split.skeleton, "a: \u{e000}S\nb: 3\n");
    assert_eq!(split.strings, vec![Range { start: 3, end: 6 }]);
    for odd in [
        "a: \u{e000}\"x\"",
        "a: \u{e000}\"\u{e000}\"\u{e001}",
        "a: \u{e000}\"\\u0041\"\u{e001}",
        "a: \u{e000}\"\u{2028}\"\u{e001}",
    ] {
        assert!(Split::new(odd).is_err(), "{odd:?}");
    }
    let sources = BUILTIN_TEMPLATES.iter().map(|(name, text)| {
        let text = text.replace("kind: Namespace", "kind: Namespace\u{e001}");
        (name.to_string(), text)
    });
    let err = Renderer::from_sources(sources)
        .err()
        .expect("reserved mark");
    assert!(err.to_string().contains("reserved"), "{err}");
}

/// The built-in templates with `namespace.yaml`'s company annotation replaced.
fn with_company_annotation(line: &str) -> Renderer {
    let sources = BUILTIN_TEMPLATES.iter().map(|(name, text)| {
        let text = match *name {
            "namespace.yaml" => {
                let from = "iotistic.io/company-name: {{ tenant.company_name }}";
                assert!(text.contains(from));
                text.replace(from, line)
            }
            _ => text.to_string(),
        };
        (name.to_string(), text)
    });
    Renderer::from_sources(sources).unwrap()
}

#[test]
fn a_value_inside_a_larger_scalar_is_parsed_every_time() {
    let renderer =
        with_company_annotation("iotistic.io/company-name: co-{{ tenant.company_name }}");
    let files = rendered_files(&renderer, &demo_spec()).len();
    check_fields_agree(&renderer, &demo_spec());
    assert_eq!(renderer.skeletons.counts(), (files - 1, 1));
    // So text that breaks the plain scalar is still caught by the parse.
    let hostile = TenantSpec {
        company_name: "a: b".into(),
        ..demo_spec()
    };
    let plan = starter();
    let err = renderer
        .render(
            &hostile,
            &plan,
            &RenderSettings::default(),
            &demo_sealed_values(),
        )
        .unwrap_err();
    assert!(err.to_string().contains("not valid YAML"), "{err}");
}

#[test]
fn a_value_used_as_a_key_must_match_the_learnt_one() {
    let renderer = with_company_annotation("{{ tenant.company_name }}: company");
    let spec = |company: &str, email: &str| TenantSpec {
        company_name: company.into(),
        email: email.into(),
        ..demo_spec()
    };
    let files = rendered_files(&renderer, &demo_spec()).len();
    check_fields_agree(&renderer, &spec("acme", "a@example.com"));
    assert_eq!(renderer.skeletons.counts(), (files, 0));
    assert_eq!(
        check_fields_agree(&renderer, &spec("acme", "b@example.com")),
        files
    );
    // Another key: parsed (it could now equal another key of the mapping).
    assert_eq!(
        check_fields_agree(
            &renderer,
            &spec("iotistic.io/plan-display-name", "c@example.com")
        ),
        files - 1
    );
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(64))]

    /// Customer text, however hostile, never makes the learnt check read something a parse
    /// would not.
    #[test]
    fn learnt_checks_read_what_a_parse_reads(
        company in "\\PC{0,300}|.{0,40}[\\u{e000}-\\u{e003}\"\\\\:\\n#&*!|>'%@`{}\\[\\],-].{0,40}",
        email in proptest::prelude::any::<String>(),
        full_name in proptest::option::of("\\PC{0,30}"),
    ) {
        static RENDERER: std::sync::LazyLock<Renderer> = std::sync::LazyLock::new(Renderer::builtin);
        let spec = TenantSpec { company_name: company, email, full_name, ..demo_spec() };
        check_fields_agree(&RENDERER, &spec);
        // The second time every shape is known.
        let files = rendered_files(&RENDERER, &spec).len();
        proptest::prop_assert_eq!(check_fields_agree(&RENDERER, &spec), files);
    }
}

#[test]
fn every_plan_stack_fits_its_own_quota_and_bigger_plans_ask_for_more() {
    let catalogue = Catalogue::builtin().unwrap();
    let renderer = Renderer::builtin();
    let mut by_quota = Vec::new();
    for (name, plan) in &catalogue.plans {
        let spec = TenantSpec {
            plan: name.clone(),
            ..demo_spec()
        };
        let rendered = renderer
            .render(
                &spec,
                plan,
                &RenderSettings::default(),
                &demo_sealed_values(),
            )
            .unwrap();
        let need = footprint::footprint(&rendered.files).unwrap();
        let r = &plan.resources;
        let cpu = crate::quantity::cpu_millis(&r.quota_cpu).unwrap();
        let memory = crate::quantity::bytes(&r.quota_memory).unwrap();
        assert!(
            need.cpu_millis > 0 && need.memory_bytes > 0,
            "{name}: {need:?}"
        );
        // The ResourceQuota counts requests too: a stack above it would never schedule.
        assert!(need.cpu_millis <= cpu, "{name}: {need:?} > {cpu}m");
        assert!(need.memory_bytes <= memory, "{name}: {need:?} > {memory}");
        by_quota.push((cpu, memory, need));
    }
    by_quota.sort_by_key(|(cpu, memory, _)| (*cpu, *memory));
    for pair in by_quota.windows(2) {
        assert!(pair[0].2.cpu_millis <= pair[1].2.cpu_millis, "{by_quota:?}");
    }
}
