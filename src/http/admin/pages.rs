//! The admin page's HTML: minijinja templates compiled into the binary (no front-end build),
//! auto-escaped as HTML, rendered into responses.

use std::sync::OnceLock;

use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};
use minijinja::Environment;
use serde::Serialize;

const TEMPLATES: &[(&str, &str)] = &[
    ("layout.html", include_str!("templates/layout.html")),
    ("login.html", include_str!("templates/login.html")),
    ("tenants.html", include_str!("templates/tenants.html")),
    ("tenant.html", include_str!("templates/tenant.html")),
    ("rollouts.html", include_str!("templates/rollouts.html")),
    ("clusters.html", include_str!("templates/clusters.html")),
];

fn environment() -> &'static Environment<'static> {
    static ENV: OnceLock<Environment<'static>> = OnceLock::new();
    ENV.get_or_init(|| {
        let mut env = Environment::new();
        // `.html` names turn on minijinja's HTML auto-escaping: customer text stays text.
        for (name, source) in TEMPLATES {
            env.add_template(name, source)
                .expect("admin templates compile (checked by tests)");
        }
        env
    })
}

/// `template` rendered with `context` as the body of a `status` answer.
pub fn page(status: StatusCode, template: &str, context: impl Serialize) -> Response {
    let rendered = environment()
        .get_template(template)
        .and_then(|t| t.render(context));
    match rendered {
        Ok(html) => (status, no_store(), Html(html)).into_response(),
        Err(err) => {
            tracing::error!(template, error = %err, "admin page failed to render");
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                "admin page failed to render",
            )
                .into_response()
        }
    }
}

/// Admin pages show personal data: no cache keeps them.
fn no_store() -> [(axum::http::HeaderName, &'static str); 1] {
    [(axum::http::header::CACHE_CONTROL, "no-store")]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_template_compiles_and_customer_text_is_escaped() {
        let env = environment();
        for (name, _) in TEMPLATES {
            env.get_template(name).unwrap();
        }
        let html = env
            .get_template("tenants.html")
            .unwrap()
            .render(minijinja::context! {
                csrf_token => "t",
                tenants => vec![minijinja::context! {
                    id => "c1", email => "a@b.example", company_name => "<script>x</script>",
                }],
            })
            .unwrap();
        assert!(html.contains("&lt;script&gt;x&lt;"), "{html}");
        assert!(!html.contains("<script>x"), "{html}");
    }
}
