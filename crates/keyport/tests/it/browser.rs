//! The hosted device page (RFC 8628 §3.3) in a real headless Chromium: a
//! user signs in, compares the code and clicks Approve or Deny, found by
//! label and button text as a person would, while the CLI polls over HTTP.
//!
//! Needs Debian's `chromium` and `chromium-driver`; without them these tests
//! fail (they never skip), so CI cannot pass without exercising the page.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::elements::Element;
use fantoccini::{Client, ClientBuilder, Locator};
use hyper_util::client::legacy::connect::HttpConnector;
use reqwest::StatusCode;
use serde_json::json;

use crate::support::*;

const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";

/// How long a page may take to show what the test waits for. A page takes
/// well under a second; the margin is for a cold Chromium on a loaded CI box.
const PAGE_TIMEOUT: Duration = Duration::from_secs(10);

/// One Chromium at a time: two starting together on a small, busy machine
/// starve each other's renderers into WebDriver timeouts.
static ONE_BROWSER: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

#[tokio::test]
async fn device_login_by_clicking_the_hosted_page() {
    let server = TestServer::start().await;

    // WebDriver cannot see response headers, so check them over plain HTTP.
    let response = server.http.get(server.url("/device")).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let headers = response.headers();
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_else(|| panic!("/device lacks {name}: {headers:?}"))
    };
    assert!(
        header("content-security-policy").contains("frame-ancestors 'none'"),
        "{headers:?}"
    );
    assert_eq!(header("referrer-policy"), "no-referrer");
    assert_eq!(header("x-frame-options"), "DENY");

    let start = server.start_device(&[("cli_label", "browser test")]).await;
    let device_code = start["device_code"].as_str().unwrap();
    let user_code = start["user_code"].as_str().unwrap();

    let browser = Chromium::launch().await;
    browser
        .open(start["verification_uri_complete"].as_str().unwrap())
        .await;
    browser.sign_in_as_alice().await;

    // §5.4: even through verification_uri_complete the code is shown to compare.
    let shown_code = browser.find(Locator::Css("p.code.big")).await;
    assert_eq!(shown_code.text().await.unwrap(), user_code);
    let text = browser.page_text().await;
    assert!(text.contains("Test CLI"), "client name missing:\n{text}");
    assert!(
        text.contains("browser test"),
        "device label missing:\n{text}"
    );

    browser.click_button("Approve").await;
    browser.wait_for_heading("Device approved").await;

    server.clock.advance_secs(5);
    let (status, tokens) = server.poll(device_code).await;
    assert_eq!(status, StatusCode::OK, "{tokens}");
    assert!(
        tokens["access_token"]
            .as_str()
            .is_some_and(|t| !t.is_empty()),
        "{tokens}"
    );
    browser.close().await;
}

#[tokio::test]
async fn deny_in_the_browser_reaches_the_polling_client() {
    let server = TestServer::start().await;
    let start = server.start_device(&[("cli_label", "browser test")]).await;

    let browser = Chromium::launch().await;
    browser
        .open(start["verification_uri_complete"].as_str().unwrap())
        .await;
    browser.sign_in_as_alice().await;
    browser.click_button("Deny").await;
    browser.wait_for_heading("Request denied").await;

    // No clock advance: a denial reaches the client at its next poll.
    let (status, body) = server.poll(start["device_code"].as_str().unwrap()).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(body["error"], "access_denied");
    browser.close().await;
}

/// A headless Chromium session behind its own chromedriver.
struct Chromium {
    client: Client,
    // Fields drop in order: the driver outlives the session it serves, and
    // the next test's browser starts only once this one is gone.
    _driver: ChromeDriver,
    _turn: tokio::sync::MutexGuard<'static, ()>,
}

impl Chromium {
    async fn launch() -> Self {
        let missing: Vec<&str> = [CHROMIUM, CHROMEDRIVER]
            .into_iter()
            .filter(|path| !Path::new(path).exists())
            .collect();
        assert!(
            missing.is_empty(),
            "browser tests need Debian's chromium and chromium-driver; not found: {}. \
             Install them with `apt-get install -y chromium chromium-driver`",
            missing.join(" and ")
        );
        let turn = ONE_BROWSER.lock().await;
        let driver = ChromeDriver::spawn().await;
        let mut capabilities = serde_json::Map::new();
        capabilities.insert("browserName".into(), json!("chrome"));
        capabilities.insert(
            "timeouts".into(),
            json!({ "pageLoad": 30_000, "script": 10_000, "implicit": 0 }),
        );
        capabilities.insert(
            "goog:chromeOptions".into(),
            json!({
                "binary": CHROMIUM,
                "args": [
                    "--headless=new",
                    "--no-sandbox",
                    "--disable-gpu",
                    "--disable-dev-shm-usage",
                    "--no-first-run",
                    "--disable-background-networking",
                    "--disable-component-update",
                    "--disable-sync",
                    format!("--user-data-dir={}", driver.profile.display()),
                ],
            }),
        );
        let client = ClientBuilder::new(HttpConnector::new())
            .capabilities(capabilities)
            .connect(&format!("http://127.0.0.1:{}", driver.port))
            .await
            .unwrap_or_else(|e| panic!("chromedriver could not start {CHROMIUM}: {e}"));
        Chromium {
            client,
            _driver: driver,
            _turn: turn,
        }
    }

    async fn open(&self, url: &str) {
        self.client
            .goto(url)
            .await
            .unwrap_or_else(|e| panic!("could not open {url}: {e}"));
    }

    /// Waits up to `PAGE_TIMEOUT` for an element; on failure shows the page.
    async fn find(&self, locator: Locator<'_>) -> Element {
        match self
            .client
            .wait()
            .at_most(PAGE_TIMEOUT)
            .for_element(locator)
            .await
        {
            Ok(element) => element,
            Err(e) => panic!(
                "no element {locator:?} ({e}) on {}:\n{}",
                self.client.current_url().await.unwrap(),
                self.client.source().await.unwrap()
            ),
        }
    }

    /// The input a `<label>` with exactly this text points at.
    async fn field(&self, label: &str) -> Element {
        let label = self
            .find(Locator::XPath(&format!(
                "//label[normalize-space()={}]",
                xpath_literal(label)
            )))
            .await;
        let id = label
            .attr("for")
            .await
            .unwrap()
            .expect("every label names its input with `for`");
        self.find(Locator::Id(&id)).await
    }

    async fn click_button(&self, text: &str) {
        let xpath = format!("//button[normalize-space()={}]", xpath_literal(text));
        self.find(Locator::XPath(&xpath))
            .await
            .click()
            .await
            .unwrap();
    }

    async fn wait_for_heading(&self, text: &str) {
        let xpath = format!("//h1[normalize-space()={}]", xpath_literal(text));
        self.find(Locator::XPath(&xpath)).await;
    }

    async fn page_text(&self) -> String {
        self.find(Locator::Css("body")).await.text().await.unwrap()
    }

    /// Fills the sign-in form and waits for the approval page (alice has
    /// one workspace, so there is no workspace choice in between).
    async fn sign_in_as_alice(&self) {
        self.field("Email")
            .await
            .send_keys("alice@example.com")
            .await
            .unwrap();
        self.field("Password")
            .await
            .send_keys(PASSWORD)
            .await
            .unwrap();
        self.click_button("Sign in").await;
        self.wait_for_heading("Approve Test CLI?").await;
    }

    async fn close(self) {
        self.client.close().await.unwrap();
    }
}

/// XPath 1.0 has no escapes; the texts the tests look for have no `'`.
fn xpath_literal(text: &str) -> String {
    assert!(!text.contains('\''), "unsupported text for XPath: {text}");
    format!("'{text}'")
}

/// A chromedriver child on a free loopback port, with a fresh Chromium
/// profile directory; shut down and removed on drop, also when a test fails.
struct ChromeDriver {
    child: Child,
    port: u16,
    profile: PathBuf,
}

impl ChromeDriver {
    async fn spawn() -> Self {
        // The port is free when picked; another process taking it before
        // chromedriver binds is unlikely, and shows as chromedriver exiting.
        let port = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = Command::new(CHROMEDRIVER)
            .arg(format!("--port={port}"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "could not run {CHROMEDRIVER} ({e}); install Debian's chromium-driver \
                     with `apt-get install -y chromium chromium-driver`"
                )
            });
        let mut driver = ChromeDriver {
            child,
            port,
            profile: temp_dir(),
        };
        let deadline = Instant::now() + Duration::from_secs(5);
        while TcpStream::connect((Ipv4Addr::LOCALHOST, port)).is_err() {
            if let Some(status) = driver.child.try_wait().unwrap() {
                panic!("{CHROMEDRIVER} exited before listening on port {port}: {status}");
            }
            assert!(
                Instant::now() < deadline,
                "{CHROMEDRIVER} did not listen on port {port} within 5 s"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        driver
    }

    /// Asks chromedriver to quit its browsers and exit (`GET /shutdown`);
    /// killing it alone could leave Chromium running.
    fn request_shutdown(&self) -> std::io::Result<()> {
        let mut stream = TcpStream::connect((Ipv4Addr::LOCALHOST, self.port))?;
        stream.set_read_timeout(Some(Duration::from_secs(5)))?;
        write!(
            stream,
            "GET /shutdown HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nConnection: close\r\n\r\n",
            self.port
        )?;
        stream.read_to_end(&mut Vec::new())?;
        Ok(())
    }
}

impl Drop for ChromeDriver {
    fn drop(&mut self) {
        if self.request_shutdown().is_ok() {
            let deadline = Instant::now() + Duration::from_secs(3);
            while Instant::now() < deadline && matches!(self.child.try_wait(), Ok(None)) {
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.profile);
    }
}
