//! The admin page in a real headless browser (Debian's chromium driven through chromedriver
//! over WebDriver): log in with the admin token, find a tenant created by a signup, open its
//! page, press Redeploy and see the new history row. Plus the refusals a browser cannot show
//! (status codes, cookies, CSRF) over plain HTTP. Screenshots go to target/admin-page/.

#[path = "common/cluster.rs"]
mod cluster;
mod common;
#[path = "common/rollout.rs"]
mod rollouts;

use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{kill_process_group, skip, Backend, TestServer, ADMIN_TOKEN};
use fantoccini::{Client, ClientBuilder, Locator};

/// chromedriver in its own process group (it starts chromium), killed on drop.
struct Driver {
    child: Child,
    port: u16,
}

impl Driver {
    fn start() -> Option<Driver> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .ok()?
            .local_addr()
            .ok()?
            .port();
        let child = Command::new("chromedriver")
            .process_group(0)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn();
        let child = match child {
            Ok(child) => child,
            Err(e) => {
                skip::skip_unless_ci("the admin page browser test", format!("chromedriver: {e}"));
                return None;
            }
        };
        let driver = Driver { child, port };
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "chromedriver did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
        Some(driver)
    }

    async fn browser(&self) -> Client {
        let mut caps = serde_json::Map::new();
        caps.insert(
            "goog:chromeOptions".into(),
            serde_json::json!({
                "binary": "/usr/bin/chromium",
                "args": ["--headless=new", "--no-sandbox", "--disable-gpu",
                         "--disable-dev-shm-usage", "--window-size=1400,1000"],
            }),
        );
        ClientBuilder::native()
            .capabilities(caps)
            .connect(&format!("http://127.0.0.1:{}", self.port))
            .await
            .expect("a chromium session")
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        kill_process_group(&mut self.child);
    }
}

fn screenshots() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/admin-page");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

async fn snap(browser: &Client, name: &str) {
    let png = browser.screenshot().await.unwrap();
    assert!(png.starts_with(b"\x89PNG"), "{name}: not a PNG");
    std::fs::write(screenshots().join(format!("{name}.png")), png).unwrap();
}

async fn text_of(browser: &Client, css: &str) -> String {
    browser
        .find(Locator::Css(css))
        .await
        .unwrap_or_else(|e| panic!("{css}: {e}"))
        .text()
        .await
        .unwrap()
}

async fn rows(browser: &Client, table: &str) -> usize {
    let rows = browser
        .find_all(Locator::Css(&format!("#{table} tr")))
        .await
        .unwrap();
    rows.len() - 1 // the header row
}

async fn log_in(browser: &Client, s: &TestServer, token: &str) {
    browser.goto(&s.url("/admin/login")).await.unwrap();
    let field = browser.find(Locator::Id("token")).await.unwrap();
    field.send_keys(token).await.unwrap();
    browser
        .find(Locator::Id("login"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn log_in_find_a_signup_and_redeploy_it_in_a_browser() {
    let Some(driver) = Driver::start() else {
        return;
    };
    let s = TestServer::start(Backend::Sqlite).await.unwrap();
    let id = s
        .signed_up("browser@acme.example", "Browser <b>Co</b>")
        .await;
    s.wait_for_status(&id, "committed", Duration::from_secs(30))
        .await;
    let browser = driver.browser().await;

    // Not logged in: the page sends the browser to the login form.
    browser.goto(&s.url("/admin/tenants")).await.unwrap();
    assert!(browser
        .current_url()
        .await
        .unwrap()
        .path()
        .ends_with("/admin/login"));
    snap(&browser, "1-login").await;
    log_in(&browser, &s, "not-the-token").await;
    assert!(text_of(&browser, "#error")
        .await
        .contains("Wrong admin token"));

    log_in(&browser, &s, ADMIN_TOKEN).await;
    assert!(browser
        .current_url()
        .await
        .unwrap()
        .path()
        .ends_with("/admin/tenants"));
    let list = text_of(&browser, "#tenants").await;
    assert!(list.contains("browser@acme.example"), "{list}");
    // Customer text is text: the company's markup shows as typed.
    assert!(list.contains("Browser <b>Co</b>"), "{list}");
    snap(&browser, "2-tenants").await;

    // Search by email start, then by an id that matches nobody.
    let search = browser
        .find(Locator::Css("#filter input[name=q]"))
        .await
        .unwrap();
    search.send_keys("BROWSER@").await.unwrap();
    browser
        .find(Locator::Css("#filter button"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    assert_eq!(rows(&browser, "tenants").await, 1);
    browser
        .goto(&s.url("/admin/tenants?q=zzz_nobody"))
        .await
        .unwrap();
    assert!(text_of(&browser, "#tenants")
        .await
        .contains("No tenant matches"));

    browser.goto(&s.url("/admin/tenants")).await.unwrap();
    browser
        .find(Locator::Css(&format!("a[href='/admin/tenants/{id}']")))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    assert_eq!(text_of(&browser, "#deployment-state").await, "committed");
    assert!(rows(&browser, "git-history").await >= 1);
    assert!(text_of(&browser, "#audit")
        .await
        .contains("customer.signup"));
    let history_before = rows(&browser, "deployment-history").await;
    let commits_before = rows(&browser, "git-history").await;
    let audit_before = rows(&browser, "audit").await;
    snap(&browser, "3-tenant").await;

    // Support moved the customer to another plan in the database; Redeploy renders it.
    sqlx::query("UPDATE subscriptions SET plan = 'professional' WHERE customer_id = $1")
        .bind(&id)
        .execute(&s.db().await)
        .await
        .unwrap();

    browser
        .find(Locator::Id("redeploy"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    assert!(text_of(&browser, "#notice")
        .await
        .contains("Redeploy queued"));
    // The worker commits the redeploy; the page then shows its history row.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        browser.refresh().await.unwrap();
        if rows(&browser, "deployment-history").await > history_before
            && rows(&browser, "git-history").await > commits_before
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no new history row after the redeploy"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(
        rows(&browser, "audit").await,
        audit_before + 1,
        "the redeploy is audited"
    );
    snap(&browser, "4-redeployed").await;

    // The clusters page, linked from the nav: the catalogue as `billing cluster list` has it.
    let add = [
        "cluster", "add", "eu-1", "--region", "eu", "--cpu", "2", "--memory", "4Gi",
    ];
    let (ok, _, err) = common::cli::run(&s, &add, &[]);
    assert!(ok, "{err}");
    browser
        .find(Locator::LinkText("Clusters"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    assert_eq!(rows(&browser, "clusters").await, 1);
    let row = text_of(&browser, "#cluster-eu-1").await;
    for cell in ["eu-1", "open", "4Gi"] {
        assert!(row.contains(cell), "{cell} not in {row:?}");
    }
    snap(&browser, "6-clusters").await;
    browser.close().await.unwrap();
}

/// What the browser hides: the status codes, the cookie's attributes and CSRF refusals.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn login_needs_the_token_and_the_form_s_csrf_token() {
    let s = TestServer::start(Backend::Sqlite).await.unwrap();
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let form = client.get(s.url("/admin/login")).send().await.unwrap();
    let csrf_cookie = form
        .headers()
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap().to_string())
        .find(|c| c.starts_with("billing_admin_login="))
        .expect("a login CSRF cookie");
    let csrf = csrf_cookie
        .split(';')
        .next()
        .unwrap()
        .trim_start_matches("billing_admin_login=")
        .to_string();
    let html = form.text().await.unwrap();
    assert!(html.contains(&format!("name=\"csrf_token\" value=\"{csrf}\"")));

    let post = |token: &str, csrf_field: &str| {
        client
            .post(s.url("/admin/login"))
            .header("cookie", format!("billing_admin_login={csrf}"))
            .form(&[("token", token), ("csrf_token", csrf_field)])
            .send()
    };
    assert_eq!(post(ADMIN_TOKEN, "forged").await.unwrap().status(), 403);
    assert_eq!(post("wrong", &csrf).await.unwrap().status(), 401);
    let ok = post(ADMIN_TOKEN, &csrf).await.unwrap();
    assert_eq!(ok.status(), 303);
    let session = ok
        .headers()
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap().to_string())
        .find(|c| c.starts_with("billing_admin="))
        .expect("a session cookie");
    for attribute in ["HttpOnly", "SameSite=Strict", "Path=/admin"] {
        assert!(session.contains(attribute), "{session}");
    }
    assert!(
        !session.contains("Secure"),
        "plain HTTP gets no Secure cookie: {session}"
    );
    let cookie = session.split(';').next().unwrap().to_string();

    // The session opens the pages; a button without the session's CSRF token is refused.
    let page = client
        .get(s.url("/admin/tenants"))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), 200);
    assert_eq!(page.headers()["cache-control"], "no-store");
    let id = s.signed_up("csrf@acme.example", "Csrf Co").await;
    let redeploy = client
        .post(s.url(&format!("/admin/tenants/{id}/redeploy")))
        .header("cookie", &cookie)
        .form(&[("csrf_token", "guess")])
        .send()
        .await
        .unwrap();
    assert_eq!(redeploy.status(), 403);
    let anonymous = client
        .post(s.url(&format!("/admin/tenants/{id}/redeploy")))
        .form(&[("csrf_token", "guess")])
        .send()
        .await
        .unwrap();
    assert_eq!(anonymous.status(), 401);
}

/// A template change under ROLLOUT_POLICY=manual: the rollouts page shows the tenants behind,
/// starts a rollout (canary 1, then the rest), and shows its waves advance as the cluster
/// reports each ready, until it completes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn start_and_watch_a_rollout_in_a_browser() {
    let Some(driver) = Driver::start() else {
        return;
    };
    let (_work, templates, templates_text) = rollouts::own_templates();
    let env = [
        ("TEMPLATES_DIR", templates_text.as_str()),
        ("ROLLOUT_POLICY", "manual"),
        ("FLUX_WEBHOOK_SECRET", cluster::FLUX_SECRET),
        ("WATCHER_KUBE_POLL", "off"),
        ("WATCHER_STALL_SECONDS", "3600"),
    ];
    let mut s = TestServer::start_with(Backend::Sqlite, &env).await.unwrap();
    rollouts::sign_up(&s, 3).await;
    s.wait_queue_drained(Duration::from_secs(60)).await;
    common::review::upgrade_quota_template(&templates, "admin page rollout");
    s.restart().await;
    let repo = git2::Repository::open_bare(s.data_dir().join("gitops.git")).unwrap();
    let before = rollouts::head(&repo);

    let browser = driver.browser().await;
    log_in(&browser, &s, ADMIN_TOKEN).await;
    browser.goto(&s.url("/admin/rollouts")).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while text_of(&browser, "#behind").await != "3" {
        assert!(
            Instant::now() < deadline,
            "the page never showed 3 tenants behind"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
        browser.refresh().await.unwrap();
    }
    snap(&browser, "5-rollouts-behind").await;
    assert_eq!(s.metric("billing_rollout_tenants_behind").await, 3);
    assert_eq!(
        s.metric("billing_rollout_waves").await,
        0,
        "no rollout runs yet"
    );

    let form = browser.find(Locator::Id("start-form")).await.unwrap();
    form.find(Locator::Css("input[name=canary]"))
        .await
        .unwrap()
        .send_keys("1")
        .await
        .unwrap();
    form.find(Locator::Css("input[name=waves]"))
        .await
        .unwrap()
        .send_keys("100%")
        .await
        .unwrap();
    browser
        .find(Locator::Id("start"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    let id = text_of(&browser, "#rollout-id").await;
    assert_eq!(text_of(&browser, "#rollout-status").await, "running");

    // Each wave as the repository holds it; the cluster reports its tenants ready.
    let wave1 = rollouts::wave_commit(&s, &env, &repo, &id, 1, before, 1).await;
    browser.refresh().await.unwrap();
    assert!(text_of(&browser, "#waves")
        .await
        .contains(&wave1.revision[..10]));
    snap(&browser, "6-rollout-canary").await;
    assert_eq!(s.metric("billing_rollout_wave").await, 1);
    assert_eq!(s.metric("billing_rollout_waves").await, 2);
    rollouts::ready(&s, &wave1).await;
    let wave2 = rollouts::wave_commit(&s, &env, &repo, &id, 2, wave1.oid, 2).await;
    rollouts::ready(&s, &wave2).await;
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        browser.refresh().await.unwrap();
        if text_of(&browser, "#rollout-status").await == "completed" {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the rollout never completed on the page"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert!(text_of(&browser, "#waves").await.contains("passed"));
    // Finished: the page offers a new rollout again.
    browser.find(Locator::Id("start-form")).await.unwrap();
    snap(&browser, "7-rollout-completed").await;
    browser.close().await.unwrap();
    s.stop();
}
