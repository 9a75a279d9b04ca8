//! Opening a URL in the user's browser: the `$BROWSER` command when one is set (run and its failure noticed, as gh does), else the desktop's default through webbrowser.

use std::process::Stdio;
use std::time::Duration;

/// How long a `$BROWSER` command may run before it counts as a browser that
/// opened. Launchers (xdg-open, a script) hand the URL on and exit at once;
/// a browser named directly keeps running until its window closes.
const LAUNCH_GRACE: Duration = Duration::from_secs(5);

/// The parts of the environment that decide whether and how a browser can
/// be opened.
#[derive(Debug, Default)]
pub struct BrowserEnv {
    /// `$BROWSER`: the commands to try, `:`-separated. It works without a
    /// display (tests point it at a script).
    pub browser: Option<String>,
    pub ssh: bool,
    pub display: bool,
}

impl BrowserEnv {
    pub fn current() -> Self {
        let set = |name: &str| std::env::var_os(name).is_some_and(|v| !v.is_empty());
        Self {
            browser: std::env::var("BROWSER")
                .ok()
                .filter(|b| b.split(':').any(|c| !c.trim().is_empty())),
            ssh: set("SSH_CONNECTION"),
            display: set("DISPLAY") || set("WAYLAND_DISPLAY"),
        }
    }

    /// Why no browser can reach the user here, if none can. Over SSH the
    /// browser would open on the wrong machine, and on a Linux box without
    /// a display webbrowser falls back to a text browser that takes over
    /// the terminal kp is waiting in (Azure/azure-cli#21112).
    pub fn unavailable(&self) -> Option<&'static str> {
        let needs_display = cfg!(all(unix, not(target_os = "macos")));
        if self.ssh {
            Some("connected over SSH")
        } else if needs_display && !self.display && self.browser.is_none() {
            Some("no display, and BROWSER is not set")
        } else {
            None
        }
    }
}

/// Opens `url`. With `$BROWSER` set, each of its commands is tried in turn
/// and one that exits with a failure, or cannot be run, counts as not
/// opened; without it, the desktop's opener is asked.
pub async fn open(url: &str, env: &BrowserEnv) -> Result<(), String> {
    if let Some(commands) = &env.browser {
        return open_with(commands, url).await;
    }
    let target = url.to_owned();
    match tokio::task::spawn_blocking(move || webbrowser::open(&target)).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(error)) => Err(error.to_string()),
        Err(error) => Err(error.to_string()),
    }
}

async fn open_with(commands: &str, url: &str) -> Result<(), String> {
    let mut failure = String::from("BROWSER names no command");
    for candidate in commands.split(':').filter(|c| !c.trim().is_empty()) {
        let argv = browser_command(candidate, url);
        let program = &argv[0];
        // The browser's own output goes to stderr: stdout is kp's data.
        let spawned = tokio::process::Command::new(program)
            .args(&argv[1..])
            .stdout(Stdio::from(std::io::stderr()))
            .spawn();
        let mut child = match spawned {
            Ok(child) => child,
            Err(error) => {
                failure = format!("cannot run {program:?} from BROWSER: {error}");
                continue;
            }
        };
        match tokio::time::timeout(LAUNCH_GRACE, child.wait()).await {
            Ok(Ok(status)) if status.success() => return Ok(()),
            Ok(Ok(status)) => failure = format!("{program:?} from BROWSER failed ({status})"),
            Ok(Err(error)) => failure = format!("{program:?} from BROWSER: {error}"),
            // Still running: a browser that is up is a browser that opened.
            // It is left running when kp moves on.
            Err(_) => return Ok(()),
        }
    }
    Err(failure)
}

/// One `$BROWSER` entry as a command line, the way webbrowser and Python's
/// webbrowser module read it: words split on whitespace, `%s` replaced by
/// the URL (appended as the last word when there is none), `%c` by `:` and
/// `%%` by `%`. The URL is one word whatever it holds: no shell is involved.
fn browser_command(entry: &str, url: &str) -> Vec<String> {
    let mut has_url = false;
    let mut argv: Vec<String> = entry
        .split_ascii_whitespace()
        .map(|word| {
            let mut expanded = String::with_capacity(word.len());
            let mut chars = word.chars();
            while let Some(c) = chars.next() {
                if c != '%' {
                    expanded.push(c);
                    continue;
                }
                match chars.next() {
                    Some('s') => {
                        expanded.push_str(url);
                        has_url = true;
                    }
                    Some('c') => expanded.push(':'),
                    Some('%') => expanded.push('%'),
                    Some(other) => {
                        expanded.push('%');
                        expanded.push(other);
                    }
                    None => expanded.push('%'),
                }
            }
            expanded
        })
        .collect();
    if !has_url {
        argv.push(url.to_owned());
    }
    argv
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_browser_opens_only_where_it_can_reach_the_user() {
        let desktop = BrowserEnv {
            display: true,
            ..Default::default()
        };
        assert_eq!(desktop.unavailable(), None);

        let over_ssh = BrowserEnv {
            display: true,
            ssh: true,
            browser: Some("firefox".into()),
        };
        assert_eq!(over_ssh.unavailable(), Some("connected over SSH"));

        let headless = BrowserEnv::default();
        let scripted = BrowserEnv {
            browser: Some("/usr/local/bin/open-url".into()),
            ..Default::default()
        };
        if cfg!(target_os = "linux") {
            assert!(headless.unavailable().is_some());
        }
        assert_eq!(scripted.unavailable(), None);
    }

    #[test]
    fn browser_entries_read_as_webbrowser_reads_them() {
        let url = "http://127.0.0.1:8080/oauth/authorize?a=1&b=%20";
        assert_eq!(browser_command("firefox", url), ["firefox", url]);
        assert_eq!(
            browser_command("  open  -a  Safari ", url),
            ["open", "-a", "Safari", url]
        );
        assert_eq!(
            browser_command("w3m --url=%s -o %c%%", url),
            [
                "w3m".to_owned(),
                format!("--url={url}"),
                "-o".into(),
                ":%".into()
            ]
        );
    }

    #[cfg(unix)]
    #[tokio::test]
    async fn a_failing_browser_command_is_noticed_and_the_next_one_tried() {
        let env = |browser: &str| BrowserEnv {
            browser: Some(browser.into()),
            ..Default::default()
        };
        let url = "http://127.0.0.1:1/callback";
        let error = open(url, &env("false")).await.unwrap_err();
        assert!(error.contains("\"false\" from BROWSER failed"), "{error}");
        let error = open(url, &env("/nonexistent/browser")).await.unwrap_err();
        assert!(error.contains("cannot run"), "{error}");
        assert_eq!(
            open(url, &env("/nonexistent/browser:false:true")).await,
            Ok(())
        );
    }
}
