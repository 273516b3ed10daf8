//! Every operation of the schema, walked through the generated
//! `for_each_operation` rather than listed here: an operation added to the
//! schema is checked without an edit of this file, and a test names what is
//! still missing for it (its example messages, its `umws client` command).

use std::path::{Path, PathBuf};
use std::process::Command;

use umws::um_service_soap::{for_each_operation, OPERATIONS};
use umws_soap::operation::{Message, OperationInfo, OperationVisitor};
use umws_soap::xml::{from_fragment, to_fragment};

/// The example messages of every operation: `<Op>.request.xml` and
/// `<Op>.response.xml`, the request and response elements as Exchange's
/// documentation writes them.
pub fn example(op: &str, kind: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/messages")
        .join(format!("{op}.{kind}.xml"))
}

/// Reads `path` as `T`, writes it back, reads that again: the two values
/// are equal, and the written element has the name and namespace the
/// operation table gives.
fn round_trip<T: Message>(path: &Path, namespace: &str, element: &str) -> Result<(), String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("{}: cannot read ({e}); add it", path.display()))?;
    let value: T =
        from_fragment(text.trim()).map_err(|e| format!("{}: not read: {e}", path.display()))?;
    let written =
        to_fragment(&value).map_err(|e| format!("{}: not written: {e}", path.display()))?;
    let written = String::from_utf8(written).map_err(|e| e.to_string())?;
    let again: T = from_fragment(&written).map_err(|e| {
        format!(
            "{}: written form not read back: {e}\n{written}",
            path.display()
        )
    })?;
    if again != value {
        return Err(format!(
            "{}: changed in a round trip:\n{value:?}\n{again:?}",
            path.display()
        ));
    }
    let open = format!("<{element} ");
    let prefixed = format!(":{element} ");
    if !(written.starts_with(&open) || written.contains(&prefixed)) || !written.contains(namespace)
    {
        return Err(format!(
            "{}: written as another element than {{{namespace}}}{element}: {written}",
            path.display()
        ));
    }
    Ok(())
}

struct RoundTrips {
    problems: Vec<String>,
    seen: usize,
}

impl OperationVisitor for RoundTrips {
    fn visit<Req: Message, Resp: Message>(&mut self, op: &'static OperationInfo) {
        self.seen += 1;
        let checks = [
            round_trip::<Req>(
                &example(op.name, "request"),
                op.request_namespace,
                op.request_element,
            ),
            round_trip::<Resp>(
                &example(op.name, "response"),
                op.response_namespace,
                op.response_element,
            ),
        ];
        self.problems
            .extend(checks.into_iter().filter_map(Result::err));
    }

    fn visit_one_way<Req: Message>(&mut self, op: &'static OperationInfo) {
        self.seen += 1;
        if let Err(e) = round_trip::<Req>(
            &example(op.name, "request"),
            op.request_namespace,
            op.request_element,
        ) {
            self.problems.push(e);
        }
    }
}

#[test]
fn every_operation_has_example_messages_that_round_trip() {
    let mut visitor = RoundTrips {
        problems: Vec::new(),
        seen: 0,
    };
    for_each_operation(&mut visitor);
    assert_eq!(
        visitor.seen,
        OPERATIONS.len(),
        "for_each_operation skipped operations"
    );
    assert!(
        visitor.problems.is_empty(),
        "example messages (tests/fixtures/messages/):\n{}",
        visitor.problems.join("\n")
    );
}

#[test]
fn a_broken_example_is_reported() {
    // The check above can fail: a request element in a response's place.
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("x.xml");
    std::fs::write(
        &path,
        std::fs::read(example("ResetPIN", "request")).expect("ResetPIN example"),
    )
    .expect("write");
    let op = &OPERATIONS[0];
    assert!(
        round_trip::<umws::types::IsUmEnabledResponse>(&path, op.response_namespace, "x").is_err()
    );
    assert!(round_trip::<umws::types::ResetPin>(&dir.path().join("missing.xml"), "", "x").is_err());
}

/// The `umws client` command name of an operation: the generated method's name in kebab
/// case (`ResetPIN` -> `reset-pin`, `IsUMEnabled` -> `is-um-enabled`).
fn command_name(op: &str) -> String {
    umws_codegen::method_name(op).replace('_', "-")
}

#[test]
fn command_names_follow_the_wsdl_names() {
    assert_eq!(command_name("ResetPIN"), "reset-pin");
    assert_eq!(command_name("IsUMEnabled"), "is-um-enabled");
    assert_eq!(command_name("GetUMProperties"), "get-um-properties");
    assert_eq!(
        command_name("SetMissedCallNotificationEnabled"),
        "set-missed-call-notification-enabled"
    );
}

#[test]
fn umws_client_has_a_command_for_every_operation() {
    let missing: Vec<String> = OPERATIONS
        .iter()
        .map(|op| command_name(op.name))
        .filter(|name| {
            let out = Command::new(env!("CARGO_BIN_EXE_umws"))
                .args(["client", name, "--help"])
                .output()
                .expect("run umws");
            !out.status.success()
        })
        .collect();
    assert!(
        missing.is_empty(),
        "`umws client` has no command for {missing:?}: add one to src/cli/client.rs (enum Operation)"
    );
}
