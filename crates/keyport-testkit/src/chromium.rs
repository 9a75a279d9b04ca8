//! A real headless Chromium behind its own chromedriver, driven over
//! WebDriver (fantoccini) the way a person uses a page: fields found by
//! their label, buttons by their text.
//!
//! Needs Debian's `chromium` and `chromium-driver`; without them
//! [`Chromium::launch`] panics with how to install them (tests using it
//! fail, never skip).

use std::io::{Read, Write};
use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use fantoccini::{Client, ClientBuilder};
use hyper_util::client::legacy::connect::HttpConnector;
use serde_json::json;

pub use fantoccini::Locator;
pub use fantoccini::elements::Element;

const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";

/// How long a page may take to show what a test waits for. A page takes
/// well under a second; the margin is for a cold Chromium on a loaded CI box.
pub const PAGE_TIMEOUT: Duration = Duration::from_secs(10);

/// One test's Chromium at a time in a test binary: two starting together on a
/// small, busy machine starve each other's renderers into WebDriver timeouts.
static ONE_BROWSER: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// A headless Chromium session behind its own chromedriver, with a fresh
/// profile. Dropping it (also when a test panics) shuts both down.
pub struct Chromium {
    client: Client,
    // Fields drop in order: the driver outlives the session it serves, and
    // the next test's browser starts only once this one is gone.
    _driver: ChromeDriver,
    _turn: Arc<tokio::sync::MutexGuard<'static, ()>>,
}

impl Chromium {
    /// Starts chromedriver on a free loopback port and a headless Chromium
    /// through it, waiting first for any other Chromium of this test binary
    /// to close.
    pub async fn launch() -> Self {
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
        let turn = Arc::new(ONE_BROWSER.lock().await);
        Self::start(turn).await
    }

    /// A second, separate browser (its own profile, cookies and driver)
    /// for a test with two people in it, sharing this one's turn.
    pub async fn another(&self) -> Self {
        Self::start(Arc::clone(&self._turn)).await
    }

    async fn start(turn: Arc<tokio::sync::MutexGuard<'static, ()>>) -> Self {
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
                    format!("--user-data-dir={}", driver.profile.path().display()),
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

    /// Navigates to `url` and waits for it to load.
    pub async fn open(&self, url: &str) {
        self.client
            .goto(url)
            .await
            .unwrap_or_else(|e| panic!("could not open {url}: {e}"));
    }

    /// Waits up to [`PAGE_TIMEOUT`] for an element; on failure panics with
    /// the page's URL and source.
    pub async fn find(&self, locator: Locator<'_>) -> Element {
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

    /// The input a `<label>` with exactly this text points at (`for`).
    pub async fn field(&self, label: &str) -> Element {
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

    /// Types `text` into the input labelled `label`.
    pub async fn fill(&self, label: &str, text: &str) {
        self.field(label)
            .await
            .send_keys(text)
            .await
            .unwrap_or_else(|e| panic!("could not type into {label:?}: {e}"));
    }

    /// Clicks the button whose text is exactly `text`.
    pub async fn click_button(&self, text: &str) {
        let xpath = format!("//button[normalize-space()={}]", xpath_literal(text));
        self.find(Locator::XPath(&xpath))
            .await
            .click()
            .await
            .unwrap();
    }

    /// Waits for an `<h1>` whose text is exactly `text`.
    pub async fn wait_for_heading(&self, text: &str) {
        let xpath = format!("//h1[normalize-space()={}]", xpath_literal(text));
        self.find(Locator::XPath(&xpath)).await;
    }

    /// Waits until the page's text contains `text` (whitespace normalised).
    pub async fn wait_for_text(&self, text: &str) {
        let xpath = format!(
            "//body[contains(normalize-space(), {})]",
            xpath_literal(text)
        );
        self.find(Locator::XPath(&xpath)).await;
    }

    /// The visible text of the page's body.
    pub async fn page_text(&self) -> String {
        self.find(Locator::Css("body")).await.text().await.unwrap()
    }

    /// The WebDriver client, for what the helpers here do not cover.
    pub fn client(&self) -> &fantoccini::Client {
        &self.client
    }

    /// The URL the browser is on now (after any redirects).
    pub async fn current_url(&self) -> String {
        self.client.current_url().await.unwrap().to_string()
    }

    /// Ends the WebDriver session; the driver and profile go on drop.
    pub async fn close(self) {
        self.client.close().await.unwrap();
    }
}

/// XPath 1.0 has no escapes; the texts looked for must have no `'`.
fn xpath_literal(text: &str) -> String {
    assert!(!text.contains('\''), "unsupported text for XPath: {text}");
    format!("'{text}'")
}

/// A chromedriver child on a free loopback port, with a fresh Chromium
/// profile directory; shut down and removed on drop, also when a test fails.
struct ChromeDriver {
    child: Child,
    port: u16,
    // Removed when dropped, after `Drop::drop` has stopped the browser.
    profile: tempfile::TempDir,
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
        let profile = tempfile::Builder::new()
            .prefix("keyport-chromium-")
            .tempdir()
            .unwrap();
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
            profile,
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
    }
}
