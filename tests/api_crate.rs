//! The generated API as its own import: a client program outside the
//! workspace that depends on `umws-api` with the `client` feature alone pulls
//! nothing of the service.
//!
//! The dependency tree is read with `cargo tree --offline --locked` (no
//! compilation): a throwaway consumer crate in a temporary directory, outside
//! the workspace, with the workspace's `Cargo.lock` so that it resolves to the
//! same, already downloaded versions.

use std::path::Path;
use std::process::Command;

/// Crates of the service (store, password hashing, mail, CLI, config,
/// allocator, logging setup) that a client-only consumer must not build.
const SERVICE_ONLY: &[&str] = &[
    "umws",
    "rusqlite",
    "libsqlite3-sys",
    "argon2",
    "password-hash",
    "lettre",
    "clap",
    "mimalloc",
    "libmimalloc-sys",
    "toml",
    "uuid",
    "tracing-subscriber",
    "gethostname",
    "hyper-util/server",
];

/// tokio features only the service uses.
const SERVICE_ONLY_TOKIO_FEATURES: &[&str] = &["process", "signal", "fs"];

fn cargo() -> Command {
    Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
}

/// Writes a consumer crate into `dir` with `dependency` as its umws-api line.
fn consumer(dir: &Path, dependency: &str) {
    let root = env!("CARGO_MANIFEST_DIR");
    std::fs::create_dir_all(dir.join("src")).expect("consumer src/");
    std::fs::write(
        dir.join("Cargo.toml"),
        format!(
            "[package]\nname = \"um-consumer\"\nversion = \"0.0.0\"\nedition = \"2021\"\n\n\
             [dependencies]\n{dependency}\n\
             tokio = {{ version = \"1\", features = [\"rt-multi-thread\", \"macros\"] }}\n"
        ),
    )
    .expect("consumer Cargo.toml");
    std::fs::write(dir.join("src/main.rs"), "fn main() {}\n").expect("consumer main.rs");
    std::fs::copy(Path::new(root).join("Cargo.lock"), dir.join("Cargo.lock"))
        .expect("copy Cargo.lock");
}

/// `cargo tree` of the consumer in `dir` with `args`, one line per entry.
fn tree(dir: &Path, args: &[&str]) -> Vec<String> {
    let out = cargo()
        .current_dir(dir)
        .args(["tree", "--offline", "--prefix", "none"])
        .args(args)
        .env_remove("CARGO_TARGET_DIR")
        .output()
        .expect("run cargo tree");
    assert!(
        out.status.success(),
        "cargo tree {args:?} failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_owned)
        .collect()
}

fn api_dependency(features: &str) -> String {
    let api = Path::new(env!("CARGO_MANIFEST_DIR")).join("api");
    format!(
        "umws-api = {{ path = {:?}, default-features = false, features = [{features}] }}",
        api.display().to_string()
    )
}

#[test]
fn a_client_only_consumer_builds_nothing_of_the_service() {
    let dir = tempfile::tempdir().expect("temp dir");
    consumer(dir.path(), &api_dependency("\"client\""));

    // The normal (run-time) dependencies, with the features each is built with.
    let lines = tree(dir.path(), &["-e", "normal", "--format", "{p} {f}"]);
    let crates: Vec<&str> = lines
        .iter()
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    assert!(
        crates.contains(&"umws-api") && crates.contains(&"umws-soap"),
        "the consumer's tree lacks the API crate: {lines:#?}"
    );
    for name in SERVICE_ONLY {
        let (krate, feature) = name.split_once('/').unwrap_or((name, ""));
        let found = lines.iter().any(|l| {
            let mut parts = l.split_whitespace();
            parts.next() == Some(krate)
                && (feature.is_empty() || parts.any(|f| f.split(',').any(|f| f == feature)))
        });
        assert!(
            !found,
            "a client-only consumer of umws-api builds {name}, which only the service needs:\n{}",
            lines.join("\n")
        );
    }
    for line in lines.iter().filter(|l| l.starts_with("tokio v")) {
        let features: Vec<&str> = line
            .split_whitespace()
            .nth(2)
            .unwrap_or("")
            .split(',')
            .collect();
        for f in SERVICE_ONLY_TOKIO_FEATURES {
            assert!(
                !features.contains(f),
                "tokio is built with its {f} feature for a client-only consumer: {line}"
            );
        }
    }

    // No C code but the one crypto library TLS needs: the only crate that
    // builds C (through `cc`) is ring, rustls's provider.
    let c_builders = tree(
        dir.path(),
        &[
            "-i",
            "cc",
            "-e",
            "normal,build",
            "--depth",
            "1",
            "--format",
            "{p}",
        ],
    );
    let c_builders: Vec<&str> = c_builders
        .iter()
        .filter_map(|l| l.split_whitespace().next())
        .filter(|name| *name != "cc")
        .collect();
    assert_eq!(
        c_builders,
        ["ring"],
        "crates that compile C code for a client-only consumer"
    );
}

#[test]
fn the_whole_service_tree_does_hold_the_service_crates() {
    // The check above can fail: the same query over the service itself finds
    // its store, hashing and mail crates.
    let root = env!("CARGO_MANIFEST_DIR");
    let lines = tree(
        Path::new(root),
        &["-p", "umws", "-e", "normal", "--format", "{p}", "--locked"],
    );
    for name in ["rusqlite", "argon2", "lettre", "clap"] {
        assert!(
            lines.iter().any(|l| l.starts_with(&format!("{name} v"))),
            "the service's tree lacks {name}"
        );
    }
}

#[test]
fn the_server_side_stays_behind_its_feature() {
    let dir = tempfile::tempdir().expect("temp dir");
    consumer(dir.path(), &api_dependency("\"client\""));
    let client_only = tree(dir.path(), &["-e", "normal", "--format", "{p} {f}"]);
    assert!(
        !client_only
            .iter()
            .any(|l| l.starts_with("hyper v") && l.contains("server")),
        "hyper's server is built for a client-only consumer"
    );
    consumer(dir.path(), &api_dependency("\"server\""));
    let server = tree(dir.path(), &["-e", "normal", "--format", "{p} {f}"]);
    assert!(
        server
            .iter()
            .any(|l| l.starts_with("hyper v") && l.contains("server")),
        "hyper's server is missing with the server feature: {server:#?}"
    );
    assert!(
        !server.iter().any(|l| l.starts_with("hyper-rustls v")),
        "the client's transport is built for a server-only consumer"
    );
}
