//! `generated/um.rs` is the reviewed copy of what `build.rs` generates from
//! `schemas/`. This test fails when the two differ; run it with
//! `UPDATE_GENERATED=1` to refresh the copy after changing a schema or the
//! generator, and review the diff.

use std::path::Path;

const SNAPSHOT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/generated/um.rs");

/// What the API crate was compiled with.
const BUILT: &str = umws_api::GENERATED_SOURCE;

#[test]
fn generated_copy_matches_the_schemas() {
    // Regenerate from the schemas as build.rs does, so the test also catches
    // a stale OUT_DIR.
    let fresh = umws_codegen::configure()
        .server_feature("server")
        .client_feature("client")
        .emit_rerun_if_changed(false)
        .generate(concat!(env!("CARGO_MANIFEST_DIR"), "/schemas/um.wsdl"))
        .unwrap_or_else(|e| panic!("{e}"))
        .code;
    assert_eq!(
        fresh, BUILT,
        "build.rs output differs from a fresh generation"
    );
    assert!(fresh.starts_with(umws_codegen::GENERATED_HEADER));

    if std::env::var_os("UPDATE_GENERATED").is_some_and(|v| v == "1") {
        std::fs::write(SNAPSHOT, &fresh).expect("write generated/um.rs");
        eprintln!("updated {SNAPSHOT}");
        return;
    }
    let checked_in = std::fs::read_to_string(Path::new(SNAPSHOT)).unwrap_or_default();
    if checked_in != fresh {
        let line = checked_in
            .lines()
            .zip(fresh.lines())
            .position(|(a, b)| a != b)
            .map_or_else(
                || checked_in.lines().count().min(fresh.lines().count()) + 1,
                |i| i + 1,
            );
        panic!(
            "generated/um.rs is out of date (first difference at line {line}); \
             run `UPDATE_GENERATED=1 cargo test --test generated_snapshot` and review the diff"
        );
    }
}
