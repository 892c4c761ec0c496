//! One test that makes skipped tests visible in a plain `cargo test` summary: it fails, listing
//! every external tool that is missing and the tests that therefore did not run, unless
//! `LOGMILL_ALLOW_SKIP=1` says that is accepted (never under CI, where those tests fail
//! themselves). The tools and how each is provided are in `tests/common/tools.rs`; asking for
//! them here also installs what can be installed, so this test may take a while the first time.

#[path = "common/tools.rs"]
mod tools;

use std::io::Write;
use std::process::Command;

#[test]
fn environment_has_every_tool() {
    let missing: Vec<String> = tools::every_tool()
        .into_iter()
        .filter_map(|(tests, tool)| tool.err().map(|m| format!("  {tests}: {m}")))
        .collect();
    if missing.is_empty() {
        return;
    }
    let list = missing.join("\n");
    let allowed = std::env::var_os("LOGMILL_ALLOW_SKIP").is_some_and(|v| v == "1");
    assert!(
        allowed && !tools::under_ci(),
        "these tests are skipped (or, under CI, fail) because a tool is missing:\n{list}\n\
         install what is missing, or set LOGMILL_ALLOW_SKIP=1 to accept the skips (not under CI)"
    );
    // Straight to the real stderr, as the SKIPPED lines are: `eprintln!` would be captured.
    let note = format!("skips accepted (LOGMILL_ALLOW_SKIP=1):\n{list}\n");
    std::io::stderr()
        .write_all(note.as_bytes())
        .expect("write to stderr");
}

/// Runs the test `name` of this binary alone, with no tool within reach (an empty `PATH`, an
/// empty tools directory, no installing), under CI or not, with `LOGMILL_ALLOW_SKIP=1` or not.
/// Returns whether it passed and everything it printed.
fn run_without_tools(name: &str, ci: bool, allow_skip: bool) -> (bool, String) {
    let empty =
        std::env::temp_dir().join(format!("logmill-no-tools-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&empty).expect("create an empty directory");
    let mut command = Command::new(std::env::current_exe().expect("this test binary"));
    command
        .args([name, "--exact", "--test-threads=1"])
        .env("PATH", &empty)
        .env("LOGMILL_TOOLS_DIR", &empty)
        .env("LOGMILL_NO_INSTALL", "1")
        .env("LOGMILL_TOOLS_PROBE", "1")
        .env("RUST_BACKTRACE", "0")
        .env_remove("CI")
        .env_remove("LOGMILL_ALLOW_SKIP");
    if ci {
        command.env("CI", "true");
    }
    if allow_skip {
        command.env("LOGMILL_ALLOW_SKIP", "1");
    }
    let out = command.output().expect("run this test binary");
    std::fs::remove_dir_all(&empty).expect("remove the empty directory");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

/// `tools::require` on a missing tool: under CI the test fails saying what is missing; elsewhere
/// it passes with a `SKIPPED` line that shows although the harness captures the test's output.
#[test]
fn a_missing_tool_fails_under_ci_and_shows_elsewhere() {
    if std::env::var_os("LOGMILL_TOOLS_PROBE").is_some() {
        // Run by the parent below, where `capnp` is out of reach.
        assert!(tools::require("probe", tools::capnp()).is_none());
        return;
    }
    let name = "a_missing_tool_fails_under_ci_and_shows_elsewhere";
    let (passed, out) = run_without_tools(name, true, false);
    assert!(!passed, "passed under CI without capnp:\n{out}");
    assert!(
        out.contains("probe must run under CI, but capnp is missing"),
        "{out}"
    );
    assert!(!out.contains("SKIPPED"), "{out}");
    let (passed, out) = run_without_tools(name, false, false);
    assert!(passed, "{out}");
    assert!(out.contains("SKIPPED probe: capnp is missing"), "{out}");
}

/// The environment test fails listing every missing tool, outside CI too, unless
/// `LOGMILL_ALLOW_SKIP=1`; under CI that variable changes nothing.
#[test]
fn the_environment_test_lists_every_missing_tool() {
    if std::env::var_os("LOGMILL_TOOLS_PROBE").is_some() {
        return; // only the parent checks; the child runs `environment_has_every_tool`
    }
    let name = "environment_has_every_tool";
    for (ci, allow_skip, passes) in [
        (true, false, false),
        (true, true, false),
        (false, false, false),
        (false, true, true),
    ] {
        let (passed, out) = run_without_tools(name, ci, allow_skip);
        assert_eq!(passed, passes, "CI {ci}, allow {allow_skip}:\n{out}");
        for tool in [
            "capnp is missing",
            "rsyslogd is missing",
            "Python grpcio is missing",
            "Node @grpc/grpc-js is missing",
            "Chromium with playwright-core is missing",
            "root is missing",
        ] {
            assert!(out.contains(tool), "{tool} not listed:\n{out}");
        }
    }
}
