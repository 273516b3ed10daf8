//! Generates the UM types, service trait, dispatcher and client from
//! `schemas/um.wsdl` into `OUT_DIR/um.rs`.

fn main() {
    let result = umws_codegen::configure()
        .server_feature("server")
        .client_feature("client")
        .compile("schemas/um.wsdl");
    if let Err(error) = result {
        eprintln!("error: {error}");
        std::process::exit(1);
    }
}
