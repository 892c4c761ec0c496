//! The README's first-five-minutes recipes, checked against the code they describe: the bytes of
//! the native example, the Node snippet's loader options, the "Try it" block, and which packages
//! hold the code generators. A recipe that drifts from the code fails here, not on a newcomer.

use std::path::Path;

use logmill::protocol::native;
use logmill::record::{Body, Level, Record};

fn read(path: &str) -> String {
    let full = Path::new(env!("CARGO_MANIFEST_DIR")).join(path);
    std::fs::read_to_string(&full).unwrap_or_else(|e| panic!("{}: {e}", full.display()))
}

/// The first fenced block after the line containing `marker`, without its fences.
fn block_after<'a>(text: &'a str, marker: &str) -> &'a str {
    let at = text
        .find(marker)
        .unwrap_or_else(|| panic!("README has no {marker:?}"));
    let rest = &text[at..];
    let open = rest.find("```").expect("no block after the marker");
    let body = &rest[open..];
    let body = &body[body.find('\n').unwrap() + 1..];
    &body[..body.find("```").expect("unclosed block")]
}

/// The leading hex bytes of an example row, up to the description.
fn hex_bytes(row: &str) -> Vec<u8> {
    row.split(' ')
        .take_while(|t| t.len() == 2 && t.bytes().all(|b| b.is_ascii_hexdigit()))
        .map(|t| u8::from_str_radix(t, 16).unwrap())
        .collect()
}

/// Every row of "A byte-level example" is the encoder's output for a warning record `hello`,
/// at the place the row stands for, and the counts the rows spell out are the ones in the bytes.
#[test]
fn byte_level_example_matches_the_encoder() {
    let readme = read("README.md");
    let block = block_after(&readme, "A byte-level example");
    let mut frame = Vec::new();
    native::encode_records(
        &[Record {
            level: Level::Warning,
            body: Body::Message("hello".into()),
            ..Record::default()
        }],
        &mut frame,
    );
    let mut offset = 0;
    for row in block.lines() {
        if let Some(tail) = row.strip_prefix("... ") {
            let bytes = hex_bytes(tail);
            assert!(
                frame.ends_with(&bytes),
                "row {row:?} is not the frame's end"
            );
            continue;
        }
        let bytes = hex_bytes(row);
        assert!(!bytes.is_empty(), "row {row:?} shows no bytes");
        assert_eq!(
            frame[offset..offset + bytes.len()],
            bytes[..],
            "row {row:?} at byte {offset}"
        );
        offset += bytes.len();
    }
    assert!(
        block.contains(&format!("length: {} bytes", frame.len() - 4)),
        "{block}"
    );
    // The LogRecord pointer: the word after ClientFrame's data word (bytes 4 + 8 + 16 ..).
    let pointer = &frame[28..36];
    let data_words = u16::from_le_bytes([pointer[4], pointer[5]]);
    let pointers = u16::from_le_bytes([pointer[6], pointer[7]]);
    assert!(
        block.contains(&format!("{data_words} data words"))
            && block.contains(&format!("0x{pointers:02x} = {pointers} pointers")),
        "the README's LogRecord pointer row should say {data_words} data words and \
         {pointers} pointers:\n{block}"
    );
}

/// The Node snippet's `loadSync` options are the interop client's (the README says the snippets
/// are cut from it), and include `longs`, without which replies print `Long { low: .. }`.
#[test]
fn node_snippet_uses_the_interop_clients_loader_options() {
    let readme = read("README.md");
    let client = read("tests/grpc_interop/client.js");
    let line = readme
        .lines()
        .find(|l| l.contains("loader.loadSync("))
        .expect("README has no Node snippet");
    let options = &line[line.find('{').unwrap() + 1..line.find('}').unwrap()];
    let options: Vec<&str> = options.split(',').map(str::trim).collect();
    assert!(
        options.iter().any(|o| o.starts_with("longs:")),
        "the Node snippet must set longs: {line}"
    );
    for option in options {
        assert!(
            client.contains(&format!("  {option},\n")),
            "tests/grpc_interop/client.js does not set `{option}` as the README's snippet does"
        );
    }
}

/// "Try it" works when pasted on a fresh machine next to the daemon: no `nc`, no bare `logmill`,
/// a port and directory of its own, and a wait for the server before the first request.
#[test]
fn try_it_block_needs_no_third_party_tool_and_waits_for_the_server() {
    let readme = read("README.md");
    let block = block_after(&readme, "Try it");
    let commands: Vec<&str> = block
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .collect();
    for command in &commands {
        let program = command.split_whitespace().next().unwrap();
        assert!(
            ["cargo", "target/release/logmill", "cat", "kill"].contains(&program),
            "`{command}` needs a program a fresh machine may lack"
        );
    }
    let server = commands
        .iter()
        .position(|c| c.ends_with('&'))
        .expect("the block starts a server in the background");
    assert!(
        commands[server].contains("--port 4030") && commands[server].contains("--dir /tmp/"),
        "the server must not clash with the daemon on 4020 and ./logs: {}",
        commands[server]
    );
    assert!(
        commands[server + 1].contains(" health --addr 127.0.0.1:4030 --wait "),
        "the first command after the server must wait for it: {}",
        commands[server + 1]
    );
    assert!(
        commands[..server].contains(&"cargo build --release"),
        "the binary must be built before it is started"
    );
}

/// Examples run in the release profile (one build for daemon and examples), and the code
/// generators are dev-dependencies of codegen-check only, which `cargo test` at the root runs.
#[test]
fn examples_build_without_the_code_generators() {
    for (path, text) in [
        ("README.md", read("README.md")),
        ("examples/send.rs", read("examples/send.rs")),
    ] {
        for line in text.lines().filter(|l| l.contains("--example")) {
            assert!(
                line.contains("cargo run --release --example"),
                "{path}: `{line}` builds a second, debug profile"
            );
        }
    }
    let manifest = read("Cargo.toml");
    let section = |name: &str| -> String {
        let start = manifest
            .find(&format!("\n[{name}]\n"))
            .unwrap_or_else(|| panic!("Cargo.toml has no [{name}]"));
        let body = &manifest[start + name.len() + 4..];
        body[..body.find("\n[").unwrap_or(body.len())].to_string()
    };
    let dev = section("dev-dependencies");
    let generators = ["capnpc", "prost-build", "protox"];
    for generator in generators {
        assert!(
            !dev.lines().any(|l| l.starts_with(generator)),
            "{generator} is a dev-dependency of logmill: every example build compiles it"
        );
    }
    let check = read("codegen-check/Cargo.toml");
    assert!(
        generators
            .iter()
            .all(|g| check.contains(&format!("\n{g} = ")))
    );
    let workspace = section("workspace");
    assert!(
        workspace.contains(r#"default-members = [".", "codegen-check"]"#),
        "`cargo test` at the root must run the drift tests:\n{workspace}"
    );
}
