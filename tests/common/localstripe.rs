//! localstripe (PyPI), a real, stateful fake of Stripe's API, on a free 127.0.0.1 port.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// localstripe on a free 127.0.0.1 port, in its own process group (killed whole on drop).
pub struct LocalStripe {
    child: Child,
    pub base: String,
    http: reqwest::Client,
}

impl Drop for LocalStripe {
    fn drop(&mut self) {
        super::kill_process_group(&mut self.child);
    }
}

impl LocalStripe {
    pub async fn start() -> Option<Self> {
        use std::os::unix::process::CommandExt;
        let importable = Command::new("python3")
            .args(["-c", "import localstripe"])
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if !importable {
            super::skip::skip_unless_ci(
                "the localstripe test",
                "localstripe is not installed (pip install localstripe)",
            );
            return None;
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = Command::new("python3")
            // --from-scratch: its store (a fixed /tmp file) may hold another run's objects.
            .args([
                "-m",
                "localstripe",
                "--from-scratch",
                "--port",
                &port.to_string(),
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0)
            .spawn()
            .expect("spawn localstripe");
        let ls = LocalStripe {
            child,
            base: format!("http://127.0.0.1:{port}"),
            http: reqwest::Client::new(),
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        while ls
            .http
            .get(format!("{}/v1/plans", ls.base))
            .basic_auth("sk_test_1", Some(""))
            .send()
            .await
            .is_err()
        {
            assert!(Instant::now() < deadline, "localstripe did not start");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Some(ls)
    }

    /// A form-encoded Stripe API call, as Stripe's own clients make it.
    pub async fn post(&self, path: &str, form: &[(&str, &str)]) -> serde_json::Value {
        let resp = self
            .http
            .post(format!("{}{path}", self.base))
            .basic_auth("sk_test_1", Some(""))
            .form(form)
            .send()
            .await
            .expect("localstripe request");
        let status = resp.status();
        let body: serde_json::Value = resp.json().await.unwrap_or_default();
        assert!(status.is_success(), "POST {path}: {status} {body}");
        body
    }
}

impl LocalStripe {
    /// A GET on its API (e.g. `/v1/customers/cus_…`).
    pub async fn get(&self, path: &str) -> serde_json::Value {
        let resp = self
            .http
            .get(format!("{}{path}", self.base))
            .basic_auth("sk_test_1", Some(""))
            .send()
            .await
            .expect("localstripe request");
        let status = resp.status();
        let body: serde_json::Value = resp.json().await.unwrap_or_default();
        assert!(status.is_success(), "GET {path}: {status} {body}");
        body
    }
}

/// What sales sets up in the Stripe dashboard before selling outside Checkout.
impl LocalStripe {
    /// Sends localstripe's signed webhooks to `url`, signed with `secret`.
    pub async fn deliver_webhooks_to(&self, url: &str, secret: &str) {
        self.post(
            "/_config/webhooks/billing",
            &[("url", url), ("secret", secret)],
        )
        .await;
    }

    /// A "Professional" product `product` with the monthly EUR 249 plan `plan`.
    pub async fn professional_plan(&self, product: &str, plan: &str) {
        self.post("/v1/products", &[("id", product), ("name", "Professional")])
            .await;
        self.post(
            "/v1/plans",
            &[
                ("id", plan),
                ("product", product),
                ("amount", "24900"),
                ("currency", "eur"),
                ("interval", "month"),
            ],
        )
        .await;
    }

    /// A Stripe customer paying by a test card whose metadata names our `customer_id`.
    pub async fn customer_with_card(&self, email: &str, customer_id: &str) -> serde_json::Value {
        let token = self
            .post(
                "/v1/tokens",
                &[
                    ("card[number]", "4242424242424242"),
                    ("card[exp_month]", "12"),
                    ("card[exp_year]", "2030"),
                    ("card[cvc]", "123"),
                ],
            )
            .await;
        let source = token["id"].as_str().expect("a card token");
        self.post(
            "/v1/customers",
            &[
                ("email", email),
                ("source", source),
                ("metadata[customer_id]", customer_id),
            ],
        )
        .await
    }
}
