//! A private Secret Service for the OS keyring test: a D-Bus session bus and
//! an unlocked GNOME Keyring, both living in a temporary directory.
//!
//! Only the kp processes are pointed at it, through their environment: the
//! test process's own environment is never changed, and nothing here can
//! reach the developer's session bus or keyring. The bus has a config of its
//! own with no service directories, so it never starts a daemon by
//! activation (the system's `org.freedesktop.secrets.service` would start a
//! keyring with the real `HOME`). The daemons are killed on drop, also when
//! the test panics.

use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How long the bus and the keyring may take to come up (a fraction of a
/// second on an idle machine).
const START_TIMEOUT: Duration = Duration::from_secs(10);

/// The well-known name and root object of the Secret Service API.
const SECRETS: &str = "org.freedesktop.secrets";
const SECRETS_PATH: &str = "/org/freedesktop/secrets";

/// A session bus with an unlocked GNOME Keyring on it, for kp to keep its
/// refresh tokens in.
pub struct SecretService {
    // Fields drop in declaration order: the keyring, then the bus, then
    // the directory they live in.
    keyring: Daemon,
    bus: Daemon,
    address: String,
    runtime_dir: PathBuf,
    _dir: tempfile::TempDir,
}

impl SecretService {
    /// Starts `dbus-daemon`, then `gnome-keyring-daemon --unlock` on it, and
    /// waits until the keyring owns `org.freedesktop.secrets`. Panics, naming
    /// the Debian package to install, when a program is missing.
    pub fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let private = |name: &str| {
            let path = dir.path().join(name);
            std::fs::DirBuilder::new()
                .mode(0o700)
                .create(&path)
                .unwrap();
            path
        };
        let (home, runtime_dir) = (private("home"), private("runtime"));
        let (data_home, config_home, cache_home) =
            (private("data"), private("config"), private("cache"));

        let address = format!("unix:path={}", dbus_escape(&dir.path().join("bus")));
        let config = dir.path().join("bus.conf");
        std::fs::write(&config, bus_config(&address)).unwrap();
        let config_arg = format!("--config-file={}", config.display());
        let mut bus = Daemon::spawn(
            "dbus-daemon",
            &[&config_arg, "--nofork", "--nopidfile"],
            dir.path(),
            &home,
            &[],
            None,
        );
        bus.wait_until("the session bus to answer", || {
            dbus_send(
                &address,
                &[
                    "--dest=org.freedesktop.DBus",
                    "/org/freedesktop/DBus",
                    "org.freedesktop.DBus.GetId",
                ],
            )
            .is_some()
        });

        // `--unlock` reads the password from stdin and creates the `login`
        // keyring with it, which becomes the default collection; in the
        // foreground the daemon stays the child we kill.
        let env = [
            ("DBUS_SESSION_BUS_ADDRESS", OsStr::new(&address)),
            ("XDG_RUNTIME_DIR", runtime_dir.as_os_str()),
            ("XDG_DATA_HOME", data_home.as_os_str()),
            ("XDG_CONFIG_HOME", config_home.as_os_str()),
            ("XDG_CACHE_HOME", cache_home.as_os_str()),
            // No dconf: its service could not be activated on this bus anyway.
            ("GSETTINGS_BACKEND", OsStr::new("memory")),
        ];
        let mut keyring = Daemon::spawn(
            "gnome-keyring-daemon",
            &["--unlock", "--foreground", "--components=secrets"],
            dir.path(),
            &home,
            &env,
            Some(b"e2e-keyring"),
        );
        keyring.wait_until(
            "gnome-keyring-daemon to own org.freedesktop.secrets",
            || {
                dbus_send(
                    &address,
                    &[
                        "--dest=org.freedesktop.DBus",
                        "/org/freedesktop/DBus",
                        "org.freedesktop.DBus.NameHasOwner",
                        &format!("string:{SECRETS}"),
                    ],
                )
                .is_some_and(|reply| reply.contains("boolean true"))
            },
        );

        Self {
            keyring,
            bus,
            address,
            runtime_dir,
            _dir: dir,
        }
    }

    /// What a kp process needs in its environment to use this keyring.
    pub fn env(&self) -> Vec<(&'static str, OsString)> {
        vec![
            ("DBUS_SESSION_BUS_ADDRESS", self.address.clone().into()),
            ("XDG_RUNTIME_DIR", self.runtime_dir.clone().into()),
        ]
    }

    /// The object paths of every item in the default collection.
    pub fn items(&self) -> Vec<String> {
        let reply = self.call(&[
            &format!("{SECRETS_PATH}/aliases/default"),
            "org.freedesktop.DBus.Properties.Get",
            "string:org.freedesktop.Secret.Collection",
            "string:Items",
        ]);
        object_paths(&reply)
    }

    /// The object paths of the items whose attributes include all of
    /// `attributes` (locked or not). No key or value may hold a comma,
    /// which separates them in dbus-send's `dict:` syntax.
    pub fn search(&self, attributes: &[(&str, &str)]) -> Vec<String> {
        let pairs: Vec<String> = attributes.iter().map(|(k, v)| format!("{k},{v}")).collect();
        let reply = self.call(&[
            SECRETS_PATH,
            "org.freedesktop.Secret.Service.SearchItems",
            &format!("dict:string:string:{}", pairs.join(",")),
        ]);
        object_paths(&reply)
    }

    /// A method call to the Secret Service; panics with the daemons' logs
    /// when it fails.
    fn call(&self, args: &[&str]) -> String {
        let mut full = vec![format!("--dest={SECRETS}")];
        full.extend(args.iter().map(|a| a.to_string()));
        let full: Vec<&str> = full.iter().map(String::as_str).collect();
        dbus_send(&self.address, &full).unwrap_or_else(|| {
            panic!(
                "dbus-send {full:?} failed\n{}\n{}",
                self.keyring.log(),
                self.bus.log()
            )
        })
    }
}

/// A child process killed (and reaped) on drop, its stderr kept in a log
/// file for failure messages.
struct Daemon {
    name: &'static str,
    child: Child,
    log: PathBuf,
}

impl Daemon {
    /// Runs `name` in `dir` with a cleared environment but for `PATH`,
    /// `HOME` and `env`, writing `stdin` to it if given.
    fn spawn(
        name: &'static str,
        args: &[&str],
        dir: &Path,
        home: &Path,
        env: &[(&str, &OsStr)],
        stdin: Option<&[u8]>,
    ) -> Self {
        let log = dir.join(format!("{name}.log"));
        let mut command = Command::new(name);
        command
            .args(args)
            .env_clear()
            .envs(std::env::var_os("PATH").map(|path| ("PATH", path)))
            .env("HOME", home)
            .envs(env.iter().copied())
            .current_dir(dir)
            .stdin(if stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::null())
            .stderr(File::create(&log).unwrap());
        let mut child = command
            .spawn()
            .unwrap_or_else(|error| missing(name, &error));
        if let Some(bytes) = stdin {
            use std::io::Write;
            // Dropping the pipe closes it: the daemon reads the password to
            // EOF. A daemon that already exited is reported, with its log,
            // by `wait_until`.
            let mut pipe = child.stdin.take().unwrap();
            let _ = pipe.write_all(bytes);
        }
        Self { name, child, log }
    }

    /// Polls `ready` until it holds; panics with the log when the daemon
    /// exits or the time runs out.
    fn wait_until(&mut self, what: &str, mut ready: impl FnMut() -> bool) {
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if ready() {
                return;
            }
            if let Some(status) = self.child.try_wait().unwrap() {
                panic!(
                    "{} exited ({status}) before {what}\n{}",
                    self.name,
                    self.log()
                );
            }
            if Instant::now() > deadline {
                panic!("waited {START_TIMEOUT:?} for {what}\n{}", self.log());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn log(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        format!("{} stderr:\n{text}", self.name)
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Fails the test for a program that could not be started, naming the
/// Debian package it comes from.
fn missing(program: &str, error: &std::io::Error) -> ! {
    let package = match program {
        "dbus-daemon" => "dbus-daemon",
        "dbus-send" => "dbus-bin (a dependency of dbus-daemon)",
        _ => "gnome-keyring",
    };
    panic!(
        "cannot run `{program}` ({error}): the OS keyring test runs a private D-Bus session \
         bus and GNOME Keyring; install Debian's {package} package \
         (`apt-get install --no-install-recommends dbus-daemon gnome-keyring`)"
    )
}

/// `dbus-send --print-reply` on the bus at `address`: its output if the call
/// succeeded, `None` if it failed (not listening yet, an error reply).
fn dbus_send(address: &str, args: &[&str]) -> Option<String> {
    let output = Command::new("dbus-send")
        .arg(format!("--bus={address}"))
        .args(["--print-reply", "--reply-timeout=2000"])
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|error| missing("dbus-send", &error));
    output
        .status
        .success()
        .then(|| String::from_utf8_lossy(&output.stdout).into_owned())
}

/// The `object path "…"` values in a `dbus-send --print-reply` output.
fn object_paths(reply: &str) -> Vec<String> {
    reply
        .lines()
        .filter_map(|line| line.trim().strip_prefix("object path \""))
        .filter_map(|rest| rest.strip_suffix('"'))
        .map(str::to_owned)
        .collect()
}

/// A bus that listens on `address` only, lets its clients do anything, and
/// has no service directories, so nothing is ever started by activation.
fn bus_config(address: &str) -> String {
    format!(
        r#"<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>session</type>
  <listen>{address}</listen>
  <auth>EXTERNAL</auth>
  <policy context="default">
    <allow send_destination="*" eavesdrop="true"/>
    <allow eavesdrop="true"/>
    <allow own="*"/>
  </policy>
</busconfig>
"#
    )
}

/// A path as a D-Bus address value: bytes outside `[-0-9A-Za-z_/.*]`
/// percent-encoded (which also keeps it safe inside the XML config).
fn dbus_escape(path: &Path) -> String {
    use std::os::unix::ffi::OsStrExt;
    path.as_os_str()
        .as_bytes()
        .iter()
        .map(|&b| match b {
            b'-' | b'_' | b'/' | b'.' | b'*' => (b as char).to_string(),
            b if b.is_ascii_alphanumeric() => (b as char).to_string(),
            b => format!("%{b:02x}"),
        })
        .collect()
}
