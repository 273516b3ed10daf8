//! The build script of the API crate (`api/`, `build = "../build.rs"`):
//! generates the UM types, service trait, dispatcher and client from
//! `schemas/um.wsdl` into `OUT_DIR/um.rs`, which `api/src/lib.rs` includes.

use std::path::Path;

fn main() {
    // Cargo runs a build script in its package's directory (`api/`); the
    // schemas sit at the top of the repository.
    let wsdl = Path::new(env!("CARGO_MANIFEST_DIR")).join("../schemas/um.wsdl");
    let result = umws_codegen::configure()
        .server_feature("server")
        .client_feature("client")
        .compile(&wsdl);
    if let Err(error) = result {
        eprintln!("error: {error}");
        std::process::exit(1);
    }
}
