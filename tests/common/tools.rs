//! The external tools some tests need, in one place, and what a test does when one is missing.
//!
//! | tool | tests | how it is provided |
//! |------|-------|--------------------|
//! | `capnp` | `schema_drift` | `scripts/install-tools.sh` (apt), run from here when root |
//! | `rsyslogd` | `clients::rsyslog_forwards_to_logmill` | the same script |
//! | Python with `grpcio`, `grpcio-tools`, `websockets`, the OpenTelemetry SDK and its OTLP exporters | the `python_grpcio_*` tests, `web::websocket_*`, `otlp_clients::python_*` | a virtualenv made here |
//! | Node with `@grpc/grpc-js`, `@grpc/proto-loader`, the OpenTelemetry logs SDK and its OTLP/HTTP exporter | the `node_grpc_js_*` tests, `otlp_clients::node_*` | `npm install` here |
//! | Node (no npm package) | `client_js` | Debian's `nodejs`, already needed by the rows above |
//! | Chromium, with `playwright-core` and `grpc-web` from npm | `browser`, `console_browser`, `tls::the_console_over_https_in_a_browser` | `scripts/install-browser.sh` (apt, as root) and `npm install` here |
//! | `clickhouse-server`, `clickhouse-client` (Debian's 18.16) | `forward` | `scripts/install-tools.sh` (apt), run from here when root |
//! | `go` (1.19 or later) | `client_go` | `scripts/install-tools.sh` (apt `golang-go`), run from here when root |
//! | `python3` (standard library only) | `client_python`, the `python_*` tests of `ship_rx`, `ship_tx` (`tests/ship/ship_rx.py`), `tls::python_ssl_*` | the system's Python |
//! | `openssl` | `tls::openssl_s_client_*` | `scripts/install-tools.sh` (apt) |
//! | `script` (bsdutils) | `ship_tx::progress_bars_on_a_terminal_only` | `scripts/install-tools.sh` (apt) |
//! | root (to mount a tmpfs) | `lifecycle::full_disk_degrades_pushes_back_and_recovers`, `ship_rx::a_full_ship_disk_refuses_with_a_clear_line_and_the_copy_resumes` | run as root |
//!
//! What can be installed without root is installed by the test itself, once, into
//! `target/tmp/tools/` (or `$LOGMILL_TOOLS_DIR`), under a file lock so that parallel tests and
//! test binaries do not race, and reused by later runs until its pinned versions change. What
//! needs apt is installed by `scripts/install-tools.sh`, which `.ci/run` calls and which this file
//! calls itself when the tests run as root (so `cargo test` on a fresh machine sets everything
//! up, as the README promises), unless `LOGMILL_NO_INSTALL=1`.
//!
//! A tool that is still missing is never a silent pass: [`require`] fails the test under CI
//! (`CI` set), and elsewhere prints `SKIPPED <test>: <why>` straight to stderr (not captured by
//! the test harness), while `tests/environment.rs` fails, listing every missing tool, unless
//! `LOGMILL_ALLOW_SKIP=1`.
//!
//! This file uses only `std`, so any test (or another crate's test) can include it with
//! `#[path = "common/tools.rs"] mod tools;`.

#![allow(dead_code)]

use std::fmt;
use std::fs::{self, File};
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicUsize, Ordering};

/// A tool a test needs and could not have: which, why, and how to get it.
#[derive(Debug, Clone)]
pub struct Missing {
    tool: &'static str,
    why: String,
    fix: &'static str,
}

impl Missing {
    fn new(tool: &'static str, why: impl Into<String>, fix: &'static str) -> Missing {
        Missing {
            tool,
            why: why.into(),
            fix,
        }
    }
}

impl fmt::Display for Missing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} is missing: {} (to get it: {})",
            self.tool, self.why, self.fix
        )
    }
}

/// True under CI (`CI` set to anything but empty, `0` or `false`), where no test may skip.
pub fn under_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "0" && v != "false")
}

/// The tool, or `None` after saying so: under CI it panics (the test fails) with what is
/// missing and how to install it; elsewhere it writes `SKIPPED <test>: ...` to the real stderr,
/// which the test harness does not capture, so the skip shows in a plain `cargo test`.
///
/// # Panics
///
/// Under CI when `tool` is `Err`.
pub fn require<T>(test: &str, tool: Result<T, Missing>) -> Option<T> {
    match tool {
        Ok(t) => Some(t),
        Err(missing) => {
            assert!(!under_ci(), "{test} must run under CI, but {missing}");
            let line = format!("SKIPPED {test}: {missing}\n");
            // Straight to file descriptor 2: `eprintln!` would be captured and never shown.
            if std::io::stderr().lock().write_all(line.as_bytes()).is_err() {
                panic!("could not report the skip: {line}");
            }
            None
        }
    }
}

/// The `capnp` compiler (Debian package `capnproto`).
pub fn capnp() -> Result<PathBuf, Missing> {
    apt_tool(
        "capnp",
        "capnp",
        "apt-get install capnproto, or run scripts/install-tools.sh as root",
    )
}

/// `rsyslogd` (Debian package `rsyslog`; it lives in `/usr/sbin`, which a user's `PATH` may lack).
pub fn rsyslogd() -> Result<PathBuf, Missing> {
    apt_tool(
        "rsyslogd",
        "rsyslogd",
        "apt-get install rsyslog, or run scripts/install-tools.sh as root; rsyslogd is in \
         /usr/sbin, which must be on PATH",
    )
}

/// `clickhouse-server` (Debian package `clickhouse-server`, 18.16), for the forwarding tests;
/// `clickhouse-client` comes with it for the benchmark.
pub fn clickhouse_server() -> Result<PathBuf, Missing> {
    apt_tool(
        "clickhouse-server",
        "clickhouse-server",
        "apt-get install clickhouse-server clickhouse-client, or run scripts/install-tools.sh as root",
    )
}

/// The Go toolchain (Debian package `golang-go`), for the Go client's tests (`clients/go`).
pub fn go() -> Result<PathBuf, Missing> {
    apt_tool(
        "go",
        "go",
        "apt-get install golang-go, or run scripts/install-tools.sh as root",
    )
}

/// The `openssl` command line (Debian package `openssl`), for `openssl s_client`.
pub fn openssl() -> Result<PathBuf, Missing> {
    apt_tool(
        "openssl",
        "openssl",
        "apt-get install openssl, or run scripts/install-tools.sh as root",
    )
}

/// `script` (Debian package `bsdutils`): runs a command on a new pseudo-terminal, for the test of
/// what `ship tx` draws on a terminal.
pub fn script() -> Result<PathBuf, Missing> {
    apt_tool(
        "script",
        "script",
        "apt-get install bsdutils, or run scripts/install-tools.sh as root",
    )
}

/// Root with the right to mount a tmpfs, for the full-disk test: checked by mounting a small
/// one and unmounting it.
pub fn root() -> Result<(), Missing> {
    const FIX: &str = "run the tests as root, as CI does (sudo -E env PATH=\"$PATH\" cargo test); \
                       in a container, with CAP_SYS_ADMIN (docker run --privileged)";
    if !is_root() {
        return Err(Missing::new("root", "mounting a tmpfs needs root", FIX));
    }
    static N: AtomicUsize = AtomicUsize::new(0);
    let probe = std::env::temp_dir().join(format!(
        "logmill-tmpfs-probe-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    fs::create_dir_all(&probe).map_err(|e| Missing::new("root", e.to_string(), FIX))?;
    let mounted = run(Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=1m", "tmpfs"])
        .arg(&probe));
    let result = mounted.and_then(|()| run(Command::new("umount").arg(&probe)));
    if let Err(e) = fs::remove_dir(&probe) {
        eprintln!("could not remove {}: {e}", probe.display());
    }
    result.map_err(|e| Missing::new("root", format!("mount -t tmpfs failed: {e}"), FIX))
}

/// `python3` on `PATH`: the Python client (`clients/python`, standard library only, run from its
/// folder through `PYTHONPATH`) needs nothing else, so no virtualenv is made for it.
pub fn python3() -> Result<PathBuf, Missing> {
    find("python3").ok_or_else(|| {
        Missing::new(
            "python3",
            "no python3 on PATH",
            "apt-get install python3 (3.8 or later)",
        )
    })
}

/// A third-party gRPC client program with the environment it needs: see [`ClientTool::command`].
#[derive(Debug, Clone)]
pub struct ClientTool {
    program: PathBuf,
    /// `PYTHONPATH` or `NODE_PATH`, and where it points.
    path_var: &'static str,
    path: PathBuf,
}

impl ClientTool {
    /// `program tests/grpc_interop/<script>`, with the packages on its module path.
    pub fn command(&self, script: &str) -> Command {
        let mut command = Command::new(&self.program);
        command
            .arg(manifest_dir().join("tests/grpc_interop").join(script))
            .env(self.path_var, &self.path);
        command
    }

    /// `program -c code` (Python) or `program -e code` (Node), with the packages on its module
    /// path.
    pub fn command_with_code(&self, code: &str) -> Command {
        let flag = if self.path_var == "PYTHONPATH" {
            "-c"
        } else {
            "-e"
        };
        let mut command = Command::new(&self.program);
        command.args([flag, code]).env(self.path_var, &self.path);
        command
    }
}

/// Python with `grpcio` (and `prometheus-client`, whose parser reads `/metrics` in
/// `tests/http.rs`, `websockets`, the WebSocket client of `tests/web.rs`, and the OpenTelemetry
/// SDK with both OTLP log exporters, for `tests/otlp_clients.rs`), and stubs generated from
/// `proto/` by `grpcio-tools`: one virtualenv made with `python3 -m venv` and the pins of
/// `tests/grpc_interop/requirements.txt`, which must resolve together (downloads from PyPI the
/// first time).
pub fn python_grpc() -> Result<ClientTool, Missing> {
    const FIX: &str = "python3 with the venv module (Debian: apt-get install python3-venv) and \
                       access to PyPI; or LOGMILL_TOOLS_DIR pointing at a ready cache";
    let fail = |why: String| Missing::new("Python grpcio", why, FIX);
    let pins = read(&manifest_dir().join("tests/grpc_interop/requirements.txt")).map_err(fail)?;
    let mut protos = String::new();
    for proto in ["proto/logmill.proto", "proto/grpc/health/v1/health.proto"] {
        protos.push_str(&read(&manifest_dir().join(proto)).map_err(fail)?);
    }
    let python3 = find("python3").ok_or_else(|| fail("no python3 on PATH".into()))?;
    locked(|dir| {
        let venv = dir.join("venv");
        let python = venv.join("bin/python");
        if !stamped(&venv, &pins) {
            remove(&venv)?;
            run(Command::new(&python3).args(["-m", "venv"]).arg(&venv))?;
            run(Command::new(venv.join("bin/pip"))
                .args(["install", "--quiet", "--disable-pip-version-check", "-r"])
                .arg(manifest_dir().join("tests/grpc_interop/requirements.txt")))?;
            stamp(&venv, &pins)?;
        }
        // Stubs are made again whenever the pins or the protos change.
        let stubs = dir.join("py");
        let key = format!("{pins}{protos}");
        if !stamped(&stubs, &key) {
            remove(&stubs)?;
            fs::create_dir_all(&stubs).map_err(|e| e.to_string())?;
            let proto = manifest_dir().join("proto");
            // health.proto is compiled from its own directory so that its module is `health_pb2`,
            // not a `grpc` package that would shadow grpcio's.
            for (include, file) in [
                (proto.clone(), "logmill.proto"),
                (proto.join("grpc/health/v1"), "health.proto"),
            ] {
                run(Command::new(&python)
                    .args(["-m", "grpc_tools.protoc"])
                    .arg(format!("-I{}", include.display()))
                    .arg(format!("--python_out={}", stubs.display()))
                    .arg(format!("--grpc_python_out={}", stubs.display()))
                    .arg(file))?;
            }
            stamp(&stubs, &key)?;
        }
        Ok(ClientTool {
            program: python,
            path_var: "PYTHONPATH",
            path: stubs,
        })
    })
    .map_err(fail)
}

/// Node with `@grpc/grpc-js` and `@grpc/proto-loader` (and the OpenTelemetry logs SDK with its
/// OTLP/HTTP exporter, for `tests/otlp_clients.rs`), installed by `npm install` from
/// `tests/grpc_interop/package.json` into a folder of its own (downloads from npm the first
/// time). One manifest for both: one install and one cache, and the packages do not meet.
pub fn node_grpc() -> Result<ClientTool, Missing> {
    const FIX: &str = "node and npm on PATH (Debian: apt-get install nodejs npm) and access to the \
                       npm registry; or LOGMILL_TOOLS_DIR pointing at a ready cache";
    let fail = |why: String| Missing::new("Node @grpc/grpc-js", why, FIX);
    let package = read(&manifest_dir().join("tests/grpc_interop/package.json")).map_err(fail)?;
    let node = find("node").ok_or_else(|| fail("no node on PATH".into()))?;
    let npm = find("npm").ok_or_else(|| fail("no npm on PATH".into()))?;
    locked(|dir| {
        let folder = dir.join("node");
        if !stamped(&folder, &package) {
            remove(&folder)?;
            fs::create_dir_all(&folder).map_err(|e| e.to_string())?;
            fs::write(folder.join("package.json"), &package).map_err(|e| e.to_string())?;
            run(Command::new(&npm)
                .args(["install", "--no-audit", "--no-fund", "--loglevel=error"])
                .current_dir(&folder))?;
            stamp(&folder, &package)?;
        }
        Ok(ClientTool {
            program: node,
            path_var: "NODE_PATH",
            path: folder.join("node_modules"),
        })
    })
    .map_err(fail)
}

/// Node alone, for the JavaScript client's tests (`tests/client_js.rs`): the client has no
/// dependencies, so nothing is installed.
pub fn node() -> Result<PathBuf, Missing> {
    find("node").ok_or_else(|| {
        Missing::new(
            "node",
            "no node on PATH",
            "apt-get install nodejs (Node 20 or later)",
        )
    })
}

/// What `tests/browser.rs` needs: Debian's Chromium, and Node with the pins of
/// `tests/browser/package.json` (`playwright-core` to drive it, `grpc-web` for the page).
#[derive(Debug, Clone)]
pub struct BrowserTool {
    pub node: PathBuf,
    pub chromium: PathBuf,
    /// The folder whose `node_modules` holds the packages.
    pub folder: PathBuf,
}

/// Chromium (Debian package `chromium`; installed by `scripts/install-browser.sh` when we are
/// root, unless `LOGMILL_NO_INSTALL=1`) and the npm packages of `tests/browser/package.json`,
/// installed into `tools_dir()/browser` as [`node_grpc`] installs its own (the script makes the
/// same install, with the same lock and stamp). Playwright never downloads a browser here.
pub fn browser() -> Result<BrowserTool, Missing> {
    const FIX: &str = "run scripts/install-browser.sh (as root for apt-get install chromium; \
                       node and npm on PATH, access to the npm registry)";
    let fail = |why: String| Missing::new("Chromium with playwright-core", why, FIX);
    let package = read(&manifest_dir().join("tests/browser/package.json")).map_err(fail)?;
    let chromium = match find("chromium") {
        Some(path) => path,
        None => {
            let why = match install_browser_as_root() {
                Ok(()) => "no chromium on PATH after scripts/install-browser.sh".to_owned(),
                Err(why) => format!("no chromium on PATH; {why}"),
            };
            find("chromium").ok_or_else(|| fail(why))?
        }
    };
    let node = find("node").ok_or_else(|| fail("no node on PATH".into()))?;
    let npm = find("npm").ok_or_else(|| fail("no npm on PATH".into()))?;
    locked(|dir| {
        let folder = dir.join("browser");
        if !stamped(&folder, &package) {
            remove(&folder)?;
            fs::create_dir_all(&folder).map_err(|e| e.to_string())?;
            fs::write(folder.join("package.json"), &package).map_err(|e| e.to_string())?;
            run(Command::new(&npm)
                .args(["install", "--no-audit", "--no-fund", "--loglevel=error"])
                .current_dir(&folder))?;
            stamp(&folder, &package)?;
        }
        Ok(BrowserTool {
            node,
            chromium,
            folder,
        })
    })
    .map_err(fail)
}

/// Runs `scripts/install-browser.sh` once per process, when root and allowed. Not under
/// [`locked`]: the script takes the same lock itself for its npm half.
fn install_browser_as_root() -> Result<(), String> {
    static DONE: OnceLock<Result<(), String>> = OnceLock::new();
    DONE.get_or_init(|| {
        if std::env::var_os("LOGMILL_NO_INSTALL").is_some_and(|v| v == "1") {
            return Err("not installed: LOGMILL_NO_INSTALL=1".into());
        }
        if !is_root() {
            return Err("installing it needs root".into());
        }
        let mut command = Command::new(manifest_dir().join("scripts/install-browser.sh"));
        run(command.env("LOGMILL_TOOLS_DIR", tools_dir()))
    })
    .clone()
}

/// Every tool above, with the tests that need it; for `tests/environment.rs`.
pub fn every_tool() -> Vec<(&'static str, Result<(), Missing>)> {
    vec![
        ("schema_drift (capnp)", capnp().map(drop)),
        ("clients::rsyslog_forwards_to_logmill", rsyslogd().map(drop)),
        (
            "the python_grpcio_* tests, http::metrics_*, web::websocket_* and otlp_clients::python_*",
            python_grpc().map(drop),
        ),
        (
            "the node_grpc_js_* tests and otlp_clients::node_*",
            node_grpc().map(drop),
        ),
        ("the client_js tests", node().map(drop)),
        (
            "browser::a_page_logs_over_grpc_web_and_websocket and console_browser",
            browser().map(drop),
        ),
        (
            "client_python and ship_rx::python_* (python3)",
            python3().map(drop),
        ),
        (
            "lifecycle::full_disk_degrades_pushes_back_and_recovers and ship_rx::a_full_ship_disk_*",
            root(),
        ),
        ("the client_go tests", go().map(drop)),
        ("tls::openssl_s_client_*", openssl().map(drop)),
        (
            "ship_tx::progress_bars_on_a_terminal_only (script)",
            script().map(drop),
        ),
        (
            "the forward tests (clickhouse-server)",
            clickhouse_server().map(drop),
        ),
    ]
}

/// The repository's root: the nearest directory above the including crate that holds
/// `scripts/install-tools.sh`, so that a workspace member's tests can include this file too.
fn manifest_dir() -> &'static Path {
    static ROOT: OnceLock<&'static Path> = OnceLock::new();
    ROOT.get_or_init(|| {
        let here = Path::new(env!("CARGO_MANIFEST_DIR"));
        here.ancestors()
            .find(|dir| dir.join("scripts/install-tools.sh").is_file())
            .unwrap_or(here)
    })
}

/// Where provisioned tools live: `$LOGMILL_TOOLS_DIR`, or `target/tmp/tools`.
fn tools_dir() -> PathBuf {
    std::env::var_os("LOGMILL_TOOLS_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_TARGET_TMPDIR")).join("tools"))
}

/// Runs `f` on the tools directory while holding an exclusive lock on `tools_dir()/.lock`
/// (`flock`, released when the file is closed, also by a crash): tests in parallel threads and
/// test binaries in parallel processes each wait for the one installing.
fn locked<T>(f: impl FnOnce(&Path) -> Result<T, String>) -> Result<T, String> {
    let dir = tools_dir();
    fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let lock = File::create(dir.join(".lock")).map_err(|e| e.to_string())?;
    lock.lock()
        .map_err(|e| format!("locking {}: {e}", dir.display()))?;
    f(&dir)
}

/// True when `dir/.stamp` holds exactly `key` (written last, after a complete install).
fn stamped(dir: &Path, key: &str) -> bool {
    fs::read_to_string(dir.join(".stamp")).is_ok_and(|s| s == key)
}

fn stamp(dir: &Path, key: &str) -> Result<(), String> {
    fs::write(dir.join(".stamp"), key).map_err(|e| e.to_string())
}

fn remove(dir: &Path) -> Result<(), String> {
    match fs::remove_dir_all(dir) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            Err(format!("{}: {e}", dir.display()))
        }
        _ => Ok(()),
    }
}

fn read(path: &Path) -> Result<String, String> {
    fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))
}

/// Runs `command` to completion; on failure, the command and the end of its stderr.
fn run(command: &mut Command) -> Result<(), String> {
    let out = command.output().map_err(|e| format!("{command:?}: {e}"))?;
    if out.status.success() {
        return Ok(());
    }
    // The first lines name the error (npm), the last ones the outcome (pip).
    let stderr = String::from_utf8_lossy(&out.stderr);
    let lines: Vec<&str> = stderr.lines().collect();
    let shown = if lines.len() <= 6 {
        lines.join(" / ")
    } else {
        format!(
            "{} / ... / {}",
            lines[..3].join(" / "),
            lines[lines.len() - 3..].join(" / ")
        )
    };
    Err(format!("{command:?}: {}: {shown}", out.status))
}

/// An executable named `name` on `PATH`.
fn find(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|p| fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0))
}

/// A program from a Debian package: found, or installed by `scripts/install-tools.sh` when we
/// are root (once per test process; the lock keeps two apt-gets apart).
fn apt_tool(tool: &'static str, program: &str, fix: &'static str) -> Result<PathBuf, Missing> {
    if let Some(path) = find(program) {
        return Ok(path);
    }
    let why = match install_as_root() {
        Ok(()) => format!("no {program} on PATH after scripts/install-tools.sh"),
        Err(why) => format!("no {program} on PATH; {why}"),
    };
    find(program).ok_or_else(|| Missing::new(tool, why, fix))
}

/// Runs `scripts/install-tools.sh` once per process, when root and allowed.
fn install_as_root() -> Result<(), String> {
    static DONE: OnceLock<Result<(), String>> = OnceLock::new();
    DONE.get_or_init(|| {
        if std::env::var_os("LOGMILL_NO_INSTALL").is_some_and(|v| v == "1") {
            return Err("not installed: LOGMILL_NO_INSTALL=1".into());
        }
        if !is_root() {
            return Err("installing it needs root".into());
        }
        locked(|_| {
            run(&mut Command::new(
                manifest_dir().join("scripts/install-tools.sh"),
            ))
        })
    })
    .clone()
}

/// The effective user id is 0 (read from `/proc/self/status`, which needs no unsafe call).
fn is_root() -> bool {
    fs::read_to_string("/proc/self/status").is_ok_and(|status| {
        status
            .lines()
            .find_map(|l| l.strip_prefix("Uid:"))
            .and_then(|ids| ids.split_whitespace().nth(1).map(|euid| euid == "0"))
            .unwrap_or(false)
    })
}
