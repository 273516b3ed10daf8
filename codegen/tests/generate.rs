//! The generator (`umws_codegen::configure().generate`): one small WSDL per construct under
//! `tests/fixtures/gen/`, checked through the syntax tree of the output (which module, trait,
//! method, signature, constant and doc comment is emitted); the UM WSDL from `schemas/`; and,
//! when present, Microsoft's Exchange Web Services WSDL from `../shared/ews/`.
//!
//! The root crate's build compiles the UM output. `generated_fixtures_compile` (ignored: it
//! builds `umws-soap` in a target directory of its own, minutes on a cold cache) compiles the
//! fixtures' output: `cargo test -p umws-codegen --test generate -- --ignored`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use quote::ToTokens;
use umws_codegen::{configure, Builder, Error, Generated, GENERATED_HEADER};

const UM_WSDL: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../schemas/um.wsdl");
const EWS_WSDL: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../shared/ews/services.wsdl"
);

/// The fixtures the generator accepts.
const GOOD: [&str; 7] = [
    "wrapped.wsdl",
    "empty_types.wsdl",
    "multi.wsdl",
    "soap12_only.wsdl",
    "dual_binding.wsdl",
    "no_service.wsdl",
    "xml_lang.wsdl",
];

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/gen")
        .join(name)
}

fn generate_with(builder: &Builder, path: &Path) -> Generated {
    builder
        .generate(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn generate(name: &str) -> Generated {
    generate_with(&configure(), &fixture(name))
}

fn generate_err(name: &str) -> Error {
    match configure().generate(fixture(name)) {
        Ok(_) => panic!("{name} was accepted"),
        Err(e) => e,
    }
}

fn parse(generated: &Generated) -> syn::File {
    syn::parse_file(&generated.code).unwrap_or_else(|e| panic!("the output does not parse: {e}"))
}

/// Tokens as a string without spaces or trailing commas, for comparing types and paths.
fn flat(tokens: &impl ToTokens) -> String {
    let s: String = tokens
        .to_token_stream()
        .to_string()
        .split_whitespace()
        .collect();
    s.replace(",>", ">").replace(",)", ")").replace(",]", "]")
}

fn item_name(item: &syn::Item) -> Option<String> {
    Some(
        match item {
            syn::Item::Mod(m) => &m.ident,
            syn::Item::Struct(s) => &s.ident,
            syn::Item::Enum(e) => &e.ident,
            syn::Item::Type(t) => &t.ident,
            syn::Item::Trait(t) => &t.ident,
            syn::Item::Const(c) => &c.ident,
            syn::Item::Static(s) => &s.ident,
            syn::Item::Fn(f) => &f.sig.ident,
            _ => return None,
        }
        .to_string(),
    )
}

/// The names of the items of a module, in order (impls and uses left out).
fn names(items: &[syn::Item]) -> Vec<String> {
    items.iter().filter_map(item_name).collect()
}

/// The items of the inline module `name` among `items`.
fn module<'a>(items: &'a [syn::Item], name: &str) -> &'a [syn::Item] {
    items
        .iter()
        .find_map(|item| match item {
            syn::Item::Mod(m) if m.ident == name => m.content.as_ref().map(|(_, i)| &i[..]),
            _ => None,
        })
        .unwrap_or_else(|| panic!("no module {name}; items: {:?}", names(items)))
}

fn find_trait<'a>(items: &'a [syn::Item], name: &str) -> &'a syn::ItemTrait {
    items
        .iter()
        .find_map(|item| match item {
            syn::Item::Trait(t) if t.ident == name => Some(t),
            _ => None,
        })
        .unwrap_or_else(|| panic!("no trait {name}; items: {:?}", names(items)))
}

/// The `///` lines of an item, trimmed.
fn docs(attrs: &[syn::Attribute]) -> Vec<String> {
    attrs
        .iter()
        .filter(|a| a.path().is_ident("doc"))
        .filter_map(|a| match &a.meta {
            syn::Meta::NameValue(syn::MetaNameValue {
                value:
                    syn::Expr::Lit(syn::ExprLit {
                        lit: syn::Lit::Str(s),
                        ..
                    }),
                ..
            }) => Some(s.value().trim().to_owned()),
            _ => None,
        })
        .collect()
}

/// One trait method: `fn name(&self, ctx: &Ctx, request: Req) -> impl Future<Output = Result<Ok, Err>> + Send`.
#[derive(Debug)]
struct Method {
    name: String,
    ctx: String,
    request: String,
    ok: String,
    err: String,
    docs: Vec<String>,
}

fn methods(tr: &syn::ItemTrait) -> Vec<Method> {
    tr.items
        .iter()
        .filter_map(|item| match item {
            syn::TraitItem::Fn(f) => Some(f),
            _ => None,
        })
        .map(|f| {
            let args: Vec<&syn::PatType> = f
                .sig
                .inputs
                .iter()
                .filter_map(|a| match a {
                    syn::FnArg::Typed(t) => Some(t),
                    syn::FnArg::Receiver(_) => None,
                })
                .collect();
            assert_eq!(args.len(), 2, "{}: (&self, ctx, request)", f.sig.ident);
            let (ok, err) = future_result(&f.sig.output);
            Method {
                name: f.sig.ident.to_string(),
                ctx: flat(&args[0].ty),
                request: flat(&args[1].ty),
                ok,
                err,
                docs: docs(&f.attrs),
            }
        })
        .collect()
}

/// `T` and `E` of `-> impl Future<Output = Result<T, E>> + Send`.
fn future_result(output: &syn::ReturnType) -> (String, String) {
    let syn::ReturnType::Type(_, ty) = output else {
        panic!("no return type");
    };
    let syn::Type::ImplTrait(imp) = &**ty else {
        panic!("not `impl Trait`: {}", flat(ty));
    };
    let bounds: Vec<String> = imp.bounds.iter().map(flat).collect();
    assert!(
        bounds.contains(&"::core::marker::Send".to_owned()),
        "the future is not Send: {bounds:?}"
    );
    for bound in &imp.bounds {
        let syn::TypeParamBound::Trait(t) = bound else {
            continue;
        };
        let last = t.path.segments.last().expect("a path has a segment");
        if last.ident != "Future" {
            continue;
        }
        let syn::PathArguments::AngleBracketed(args) = &last.arguments else {
            panic!("Future without Output");
        };
        for arg in &args.args {
            if let syn::GenericArgument::AssocType(a) = arg {
                let syn::Type::Path(result) = &a.ty else {
                    panic!("Output is not a path");
                };
                let last = result.path.segments.last().expect("a path has a segment");
                assert_eq!(last.ident, "Result");
                let syn::PathArguments::AngleBracketed(r) = &last.arguments else {
                    panic!("Result without arguments");
                };
                let r: Vec<String> = r.args.iter().map(flat).collect();
                return (r[0].clone(), r[1].clone());
            }
        }
    }
    panic!("not a Future: {bounds:?}");
}

/// `pub const NAME: &str = "value";` of a module.
fn str_consts(items: &[syn::Item]) -> BTreeMap<String, String> {
    items
        .iter()
        .filter_map(|item| match item {
            syn::Item::Const(c) => match &*c.expr {
                syn::Expr::Lit(syn::ExprLit {
                    lit: syn::Lit::Str(s),
                    ..
                }) => Some((c.ident.to_string(), s.value())),
                _ => None,
            },
            _ => None,
        })
        .collect()
}

/// One entry of `OPERATIONS`, its fields as flat token strings (string literals unquoted).
fn operation_infos(items: &[syn::Item]) -> Vec<BTreeMap<String, String>> {
    let stat = items
        .iter()
        .find_map(|item| match item {
            syn::Item::Static(s) if s.ident == "OPERATIONS" => Some(s),
            _ => None,
        })
        .expect("a static OPERATIONS");
    let syn::Expr::Array(array) = &*stat.expr else {
        panic!("OPERATIONS is not an array");
    };
    let syn::Type::Array(ty) = &*stat.ty else {
        panic!("OPERATIONS is not typed as an array");
    };
    let len: usize = match &ty.len {
        syn::Expr::Lit(syn::ExprLit {
            lit: syn::Lit::Int(i),
            ..
        }) => i.base10_parse().expect("a length"),
        other => panic!("length {}", flat(other)),
    };
    assert_eq!(len, array.elems.len(), "the declared length");
    array
        .elems
        .iter()
        .map(|e| {
            let syn::Expr::Struct(s) = e else {
                panic!("not a struct expression: {}", flat(e));
            };
            assert!(flat(&s.path).ends_with("OperationInfo"));
            s.fields
                .iter()
                .map(|f| {
                    let value = match &f.expr {
                        syn::Expr::Lit(syn::ExprLit {
                            lit: syn::Lit::Str(s),
                            ..
                        }) => s.value(),
                        other => flat(other),
                    };
                    (flat(&f.member), value)
                })
                .collect()
        })
        .collect()
}

/// The methods of `impl <name> { ... }` (inherent).
fn inherent_fns<'a>(items: &'a [syn::Item], name: &str) -> Vec<&'a syn::ImplItemFn> {
    items
        .iter()
        .filter_map(|item| match item {
            syn::Item::Impl(i) if i.trait_.is_none() && flat(&i.self_ty) == name => Some(i),
            _ => None,
        })
        .flat_map(|i| &i.items)
        .filter_map(|item| match item {
            syn::ImplItem::Fn(f) => Some(f),
            _ => None,
        })
        .collect()
}

fn has_impl_of(items: &[syn::Item], trait_suffix: &str, self_ty: &str) -> bool {
    items.iter().any(|item| match item {
        syn::Item::Impl(i) => {
            flat(&i.self_ty) == self_ty
                && i.trait_
                    .as_ref()
                    .is_some_and(|(_, p, _)| flat(p).ends_with(trait_suffix))
        }
        _ => false,
    })
}

/// Item names that occur twice in one module, anywhere in the file (the
/// E0428 class of bugs: two schema types given one Rust name).
fn duplicate_names(items: &[syn::Item], path: &str, out: &mut Vec<String>) {
    let mut seen = BTreeMap::new();
    for item in items {
        let Some(name) = item_name(item) else {
            continue;
        };
        // A trait, a struct and a fn can not share a name; types and values
        // (consts, statics, fns) live in two namespaces.
        let ns = matches!(
            item,
            syn::Item::Const(_) | syn::Item::Static(_) | syn::Item::Fn(_)
        );
        if seen.insert((ns, name.clone()), ()).is_some() {
            out.push(format!("{path}::{name}"));
        }
        if let syn::Item::Mod(m) = item {
            if let Some((_, inner)) = &m.content {
                duplicate_names(inner, &format!("{path}::{}", m.ident), out);
            }
        }
    }
}

fn assert_no_duplicate_names(file: &syn::File) {
    let mut dups = Vec::new();
    duplicate_names(&file.items, "crate", &mut dups);
    assert!(dups.is_empty(), "defined more than once: {dups:?}");
}

// ---------------------------------------------------------------------------------------------
// document/literal wrapped (wrapped.wsdl)

#[test]
fn wrapped_trait_has_one_method_per_operation_with_typed_signatures() {
    let file = parse(&generate("wrapped.wsdl"));
    let calc = module(&file.items, "calc_soap");
    let methods = methods(find_trait(calc, "CalcSoap"));
    let summary: Vec<(&str, &str, &str)> = methods
        .iter()
        .map(|m| (m.name.as_str(), m.request.as_str(), m.ok.as_str()))
        .collect();
    assert_eq!(
        summary,
        [
            ("add", "types::Add", "types::AddResponse"),
            ("negate", "types::Negate", "types::NegateResponse"),
            ("reset", "types::Reset", "()"),
        ]
    );
    for m in &methods {
        assert_eq!(m.ctx, "&::umws_soap::CallContext", "{}", m.name);
        assert_eq!(m.err, "::umws_soap::SoapFault", "{}", m.name);
    }
    // Every request and response type named is defined in `types`.
    let types = names(module(&file.items, "types"));
    for m in &methods {
        for ty in [&m.request, &m.ok] {
            if let Some(name) = ty.strip_prefix("types::") {
                assert!(types.iter().any(|t| t == name), "types::{name} is missing");
            }
        }
    }
}

#[test]
fn wrapped_operation_and_action_constants() {
    let file = parse(&generate("wrapped.wsdl"));
    let calc = module(&file.items, "calc_soap");
    let operations = str_consts(module(calc, "operations"));
    assert_eq!(
        operations.into_iter().collect::<Vec<_>>(),
        [
            ("ADD".to_owned(), "Add".to_owned()),
            ("NEGATE".to_owned(), "Negate".to_owned()),
            ("RESET".to_owned(), "Reset".to_owned()),
        ]
    );
    // `soapAction=""` declares no action: no constant for Negate.
    let actions = str_consts(module(calc, "actions"));
    assert_eq!(
        actions.into_iter().collect::<Vec<_>>(),
        [
            ("ADD".to_owned(), "urn:example:calc/Add".to_owned()),
            ("RESET".to_owned(), "urn:example:calc/Reset".to_owned()),
        ]
    );
    let namespaces = str_consts(module(&file.items, "namespaces"));
    assert_eq!(namespaces["TARGET"], "urn:example:calc");
    assert!(namespaces.values().any(|v| v == "urn:example:calc:headers"));
}

#[test]
fn wrapped_operation_infos_carry_elements_actions_and_understood_headers() {
    let file = parse(&generate("wrapped.wsdl"));
    let infos = operation_infos(module(&file.items, "calc_soap"));
    assert_eq!(infos.len(), 3);

    // Namespaces are named by the constants of the `namespaces` module, not
    // repeated as literals.
    let namespaces = str_consts(module(&file.items, "namespaces"));
    assert_eq!(namespaces["CALC"], "urn:example:calc");
    assert_eq!(namespaces["HEADERS"], "urn:example:calc:headers");

    let add = &infos[0];
    assert_eq!(add["name"], "operations::ADD");
    assert_eq!(add["request_namespace"], "super::namespaces::CALC");
    assert_eq!(add["request_element"], "Add");
    assert_eq!(add["response_namespace"], "super::namespaces::CALC");
    assert_eq!(add["response_element"], "AddResponse");
    assert_eq!(
        add["soap_action"],
        "::core::option::Option::Some(actions::ADD)"
    );
    // The `soap:header` part of the input is understood; the body part only
    // names `parameters`, so the header element is not the request.
    assert_eq!(
        add["understood_headers"],
        r#"&[(super::namespaces::HEADERS,"Session")]"#
    );

    let negate = &infos[1];
    assert_eq!(negate["request_element"], "Negate");
    assert_eq!(negate["soap_action"], "::core::option::Option::None");
    assert_eq!(negate["understood_headers"], "&[]");

    let reset = &infos[2];
    assert_eq!(reset["request_element"], "Reset");
    assert_eq!(reset["response_element"], "");
    assert_eq!(reset["response_namespace"], "");
    assert_eq!(
        reset["soap_action"],
        "::core::option::Option::Some(actions::RESET)"
    );
}

#[test]
fn documentation_becomes_doc_comments() {
    let generated = generate("wrapped.wsdl");
    let file = parse(&generated);
    let calc = module(&file.items, "calc_soap");
    let tr = find_trait(calc, "CalcSoap");
    assert!(docs(&tr.attrs).contains(&"The calculator.".to_owned()));
    let methods = methods(tr);
    // wsdl:documentation of the operation, line by line, then what it serves.
    assert_eq!(
        methods[0].docs,
        [
            "Adds two numbers.",
            "Overflow wraps.",
            "",
            "Operation `Add`, SOAPAction `urn:example:calc/Add`."
        ]
    );
    assert_eq!(methods[1].docs, ["Operation `Negate` (no SOAPAction)."]);
    // xs:documentation of the elements, on their types.
    let types = module(&file.items, "types");
    let doc_of = |name: &str| {
        types
            .iter()
            .find_map(|item| match item {
                syn::Item::Struct(s) if s.ident == name => Some(docs(&s.attrs)),
                syn::Item::Type(t) if t.ident == name => Some(docs(&t.attrs)),
                _ => None,
            })
            .unwrap_or_else(|| panic!("no types::{name}"))
    };
    assert_eq!(doc_of("Add"), ["Two numbers to add."]);
    assert_eq!(doc_of("Negate"), ["A number to negate."]);
    // And they are printed as `///` comments.
    for line in [
        "/// Adds two numbers.",
        "/// Overflow wraps.",
        "/// The calculator.",
        "/// Operation `Add`, SOAPAction `urn:example:calc/Add`.",
    ] {
        assert!(generated.code.contains(line), "missing {line:?}");
    }
    assert!(generated.code.contains("///Two numbers to add."));
}

#[test]
fn one_way_operation_returns_unit_and_the_client_calls_one_way() {
    let file = parse(&generate("wrapped.wsdl"));
    let calc = module(&file.items, "calc_soap");
    let reset = methods(find_trait(calc, "CalcSoap"))
        .into_iter()
        .find(|m| m.name == "reset")
        .expect("reset");
    assert_eq!(reset.ok, "()");

    let client = inherent_fns(calc, "CalcSoapClient");
    let body_of = |name: &str| {
        let f = client
            .iter()
            .find(|f| f.sig.ident == name)
            .unwrap_or_else(|| panic!("no client method {name}"));
        assert!(f.sig.asyncness.is_some(), "{name} is not async");
        (flat(&f.sig.output), flat(&f.block))
    };
    let (output, body) = body_of("reset");
    assert_eq!(
        output,
        "->::core::result::Result<(),::umws_soap::client::ClientError>"
    );
    assert!(
        body.contains(".call_one_way(actions::RESET,request)"),
        "{body}"
    );
    let (output, body) = body_of("add");
    assert_eq!(
        output,
        "->::core::result::Result<types::AddResponse,::umws_soap::client::ClientError>"
    );
    assert!(body.contains(".call(actions::ADD,request)"), "{body}");
    // No SOAPAction: the client sends an empty one.
    let (_, body) = body_of("negate");
    assert!(body.contains(r#".call("",request)"#), "{body}");

    // The dispatcher answers a one-way operation with an empty reply.
    let server = calc
        .iter()
        .find_map(|item| match item {
            syn::Item::Impl(i)
                if flat(&i.self_ty) == "CalcSoapServer<T>"
                    && i.trait_
                        .as_ref()
                        .is_some_and(|(_, p, _)| flat(p).ends_with("SoapService")) =>
            {
                Some(flat(i))
            }
            _ => None,
        })
        .expect("impl SoapService for CalcSoapServer");
    assert!(server.contains("::umws_soap::server::EmptyReply"));

    // The operation walk hands every operation over, the one-way one without a response type.
    let walk = calc
        .iter()
        .find_map(|item| match item {
            syn::Item::Fn(f) if f.sig.ident == "for_each_operation" => Some(flat(&f.block)),
            _ => None,
        })
        .expect("fn for_each_operation");
    assert!(
        walk.contains("visitor.visit::<types::Add,types::AddResponse>(&OPERATIONS[0])"),
        "{walk}"
    );
    assert!(
        walk.contains("visitor.visit_one_way::<types::Reset>(&OPERATIONS[2])"),
        "{walk}"
    );
}

#[test]
fn server_and_client_are_emitted() {
    let file = parse(&generate("wrapped.wsdl"));
    let calc = module(&file.items, "calc_soap");
    assert_eq!(
        names(calc),
        [
            "operations",
            "actions",
            "OPERATIONS",
            "for_each_operation",
            "CalcSoap",
            "CalcSoapServer",
            "CalcSoapClient"
        ]
    );
    assert!(has_impl_of(
        calc,
        "server::SoapService",
        "CalcSoapServer<T>"
    ));
    let client: Vec<String> = inherent_fns(calc, "CalcSoapClient")
        .iter()
        .map(|f| f.sig.ident.to_string())
        .collect();
    assert_eq!(client, ["new", "transport", "add", "negate", "reset"]);
}

/// For each request element the dispatcher reads: its type, and whether a bare element is
/// answered without the deserializer.
fn request_reads(code: &str) -> Vec<(String, bool)> {
    code.split("let request: types::")
        .skip(1)
        .map(|rest| {
            let (name, after) = rest.split_once(' ').expect("a type name");
            (name.to_owned(), after.starts_with("= if body.bare {"))
        })
        .collect()
}

#[test]
fn bare_requests_of_types_without_data_skip_the_deserializer() {
    let generated = generate("empty_types.wsdl");
    let reads = request_reads(&generated.code);
    assert_eq!(
        reads,
        [
            ("Anonymous".to_owned(), true),
            ("Named".to_owned(), true),
            ("EmptySequence".to_owned(), true),
            ("WithAttribute".to_owned(), false),
            ("Mixed".to_owned(), false),
            ("WithChild".to_owned(), false),
        ]
    );
    // The value built for a bare element is the unit value, through the element's own name.
    assert!(generated.code.contains("types::Named {}"));
    // The UM schema: the operations whose request carries nothing.
    let um = generate_with(&configure(), Path::new(UM_WSDL));
    let bare: Vec<String> = request_reads(&um.code)
        .into_iter()
        .filter(|(_, bare)| *bare)
        .map(|(name, _)| name)
        .collect();
    assert_eq!(bare, ["IsUmEnabled", "GetUmProperties", "ResetPin"]);
}

/// `types::{name}` is a struct with a serializer and a deserializer that write and read the
/// element `tns:{name}`.
fn assert_element_struct(types: &[syn::Item], code: &str, name: &str) {
    assert!(
        types
            .iter()
            .any(|i| matches!(i, syn::Item::Struct(s) if s.ident == name)),
        "types::{name} is not a struct"
    );
    assert!(has_impl_of(types, "WithSerializer", name));
    assert!(has_impl_of(types, "WithDeserializer", name));
    let tag = format!("name.unwrap_or(\"tns:{name}\")");
    assert!(code.contains(&tag), "missing {tag}");
}

#[test]
fn element_declared_with_a_named_type_gets_a_struct_named_for_the_element() {
    // `<xs:element name="Negate" type="NegateType"/>`: `Negate` must write
    // `<Negate>`, not be an alias of `NegateType` (which would write
    // `<NegateType>` when serialised as a body element).
    let generated = generate("wrapped.wsdl");
    let file = parse(&generated);
    let types = module(&file.items, "types");
    for name in ["Negate", "NegateResponse"] {
        assert_element_struct(types, &generated.code, name);
    }
}

#[test]
fn element_with_an_anonymous_type_gets_a_struct_named_for_the_element() {
    // `<xs:element name="Add"><xs:complexType>...`: a struct `Add`, not an alias
    // `pub type Add = AddElementType;` that rustdoc and compiler errors would show.
    let generated = generate("wrapped.wsdl");
    let file = parse(&generated);
    let types = module(&file.items, "types");
    for name in ["Add", "AddResponse", "Reset"] {
        assert_element_struct(types, &generated.code, name);
    }
    assert!(
        !generated.code.contains("ElementType"),
        "no struct of an anonymous element type is left over"
    );
}

#[test]
fn um_message_elements_are_structs_without_aliases() {
    let file = parse(&generate_with(&configure(), Path::new(UM_WSDL)));
    let types = module(&file.items, "types");
    let aliases: Vec<String> = types
        .iter()
        .filter_map(|i| match i {
            syn::Item::Type(t) => Some(t.ident.to_string()),
            _ => None,
        })
        .collect();
    assert_eq!(aliases, Vec::<String>::new(), "type aliases in types");
    for name in [
        "IsUmEnabled",
        "GetUmPropertiesResponse",
        "ResetPin",
        "GetCallInfoResponse",
    ] {
        assert!(
            types
                .iter()
                .any(|i| matches!(i, syn::Item::Struct(s) if s.ident == name)),
            "types::{name} is not a struct"
        );
    }
}

#[test]
fn um_namespace_constants_are_named_for_the_namespace() {
    let generated = generate_with(&configure(), Path::new(UM_WSDL));
    let file = parse(&generated);
    // The messages namespace is the schemas' default namespace (no prefix);
    // xsd-parser alone would call its constant `NS_UNNAMED_<n>`.
    let consts: BTreeMap<String, String> = module(&file.items, "types")
        .iter()
        .filter_map(|i| match i {
            syn::Item::Const(c) if c.ident.to_string().starts_with("NS_") => {
                Some((c.ident.to_string(), flat(&c.expr)))
            }
            _ => None,
        })
        .collect();
    assert!(
        consts["NS_MESSAGES"]
            .contains("http://schemas.microsoft.com/exchange/services/2006/messages"),
        "{consts:?}"
    );
    assert!(consts["NS_T"].contains("http://schemas.microsoft.com/exchange/services/2006/types"));
    assert!(
        !generated.code.contains("NS_UNNAMED"),
        "an unnamed namespace constant is left"
    );
    // The operation table names the namespaces by their constants.
    let infos = operation_infos(module(&file.items, "um_service_soap"));
    // One per operation of the port type (each is named twice in the WSDL: port type, binding).
    let wsdl = std::fs::read_to_string(UM_WSDL).expect("read the UM WSDL");
    assert_eq!(
        infos.len(),
        wsdl.matches("<wsdl:operation name=").count() / 2
    );
    for info in &infos {
        assert_eq!(
            info["request_namespace"], "super::namespaces::MESSAGES",
            "{info:?}"
        );
        assert_eq!(
            info["response_namespace"], "super::namespaces::MESSAGES",
            "{info:?}"
        );
    }
    assert!(!generated.code.contains(
        "request_namespace: \"http://schemas.microsoft.com/exchange/services/2006/messages\""
    ));
}

#[test]
fn builder_settings_shape_the_output() {
    let path = fixture("wrapped.wsdl");
    let file = parse(&generate_with(
        &configure().build_server(false).client_feature("client"),
        &path,
    ));
    let calc = module(&file.items, "calc_soap");
    assert!(!names(calc).contains(&"CalcSoapServer".to_owned()));
    let client = calc
        .iter()
        .find_map(|i| match i {
            syn::Item::Struct(s) if s.ident == "CalcSoapClient" => Some(s),
            _ => None,
        })
        .expect("the client");
    assert!(client
        .attrs
        .iter()
        .any(|a| flat(a) == r#"#[cfg(feature="client")]"#));

    let file = parse(&generate_with(
        &configure()
            .build_client(false)
            .runtime_crate("crate::soap")
            .server_feature("server"),
        &path,
    ));
    let calc = module(&file.items, "calc_soap");
    assert!(!names(calc).contains(&"CalcSoapClient".to_owned()));
    let m = &methods(find_trait(calc, "CalcSoap"))[0];
    assert_eq!(m.ctx, "&crate::soap::CallContext");
    assert_eq!(m.err, "crate::soap::SoapFault");
}

// ---------------------------------------------------------------------------------------------
// Other shapes of WSDL

#[test]
fn several_port_types_over_several_schemas() {
    let file = parse(&generate("multi.wsdl"));
    assert_eq!(
        names(&file.items),
        ["types", "namespaces", "inventory_port", "orders_port"]
    );
    let inventory = methods(find_trait(
        module(&file.items, "inventory_port"),
        "InventoryPort",
    ));
    let orders = methods(find_trait(module(&file.items, "orders_port"), "OrdersPort"));
    let sig = |m: &Method| (m.name.clone(), m.request.clone(), m.ok.clone());
    assert_eq!(
        inventory.iter().map(sig).collect::<Vec<_>>(),
        [(
            "get_stock".into(),
            "types::GetStock".into(),
            "types::GetStockResponse".into()
        )]
    );
    assert_eq!(
        orders.iter().map(sig).collect::<Vec<_>>(),
        [
            (
                "place_order".into(),
                "types::PlaceOrder".into(),
                "types::PlaceOrderResponse".into()
            ),
            (
                "cancel_order".into(),
                "types::CancelOrder".into(),
                "types::CancelOrderResponse".into()
            ),
        ]
    );
    // Elements of the inline schema and of the imported file share one module.
    let types = names(module(&file.items, "types"));
    for name in [
        "GetStock",
        "PlaceOrder",
        "CancelOrderResponse",
        "ItemType",
        "LineType",
    ] {
        assert!(types.iter().any(|t| t == name), "types::{name} is missing");
    }
    let namespaces = str_consts(module(&file.items, "namespaces"));
    assert_eq!(namespaces["TARGET"], "urn:example:shop");
    for ns in ["urn:example:inventory", "urn:example:orders"] {
        assert!(namespaces.values().any(|v| v == ns), "no constant for {ns}");
    }
    let infos = operation_infos(module(&file.items, "orders_port"));
    assert_eq!(namespaces["ORDERS"], "urn:example:orders");
    assert_eq!(infos[1]["request_namespace"], "super::namespaces::ORDERS");
    assert_eq!(infos[1]["request_element"], "CancelOrder");
}

#[test]
fn soap12_only_binding() {
    let file = parse(&generate("soap12_only.wsdl"));
    assert_eq!(names(&file.items), ["types", "namespaces", "echo_port"]);
    let echo = module(&file.items, "echo_port");
    let module_docs = file
        .items
        .iter()
        .find_map(|i| match i {
            syn::Item::Mod(m) if m.ident == "echo_port" => Some(docs(&m.attrs)),
            _ => None,
        })
        .expect("echo_port");
    assert!(
        module_docs.contains(&"Bound by `EchoSoap12` (SOAP 1.2).".to_owned()),
        "{module_docs:?}"
    );
    assert_eq!(
        str_consts(module(echo, "actions"))["ECHO"],
        "urn:example:echo/Echo"
    );
    let m = &methods(find_trait(echo, "EchoPort"))[0];
    assert_eq!(
        (m.name.as_str(), m.request.as_str(), m.ok.as_str()),
        ("echo", "types::Echo", "types::EchoResponse")
    );
}

#[test]
fn wsdl_without_service() {
    let with = generate("soap12_only.wsdl");
    let without = generate("no_service.wsdl");
    // The service only says where the port lives; the code is the same.
    assert_eq!(without.code, with.code);
    assert_eq!(without.file_name, "no_service.rs");
}

#[test]
fn port_type_with_soap11_and_soap12_bindings_gets_one_module_from_the_soap11_binding() {
    let file = parse(&generate("dual_binding.wsdl"));
    assert_eq!(names(&file.items), ["types", "namespaces", "echo_port"]);
    let module_docs = file
        .items
        .iter()
        .find_map(|i| match i {
            syn::Item::Mod(m) if m.ident == "echo_port" => Some(docs(&m.attrs)),
            _ => None,
        })
        .expect("echo_port");
    assert!(
        module_docs.contains(&"Bound by `EchoSoap11` (SOAP 1.1).".to_owned()),
        "{module_docs:?}"
    );
    let echo = module(&file.items, "echo_port");
    assert_eq!(
        str_consts(module(echo, "actions"))["ECHO"],
        "urn:example:echo/Echo11"
    );
    assert_eq!(methods(find_trait(echo, "EchoPort")).len(), 1);
}

#[test]
fn xml_namespace_imported_without_location() {
    // `<xs:import namespace="http://www.w3.org/XML/1998/namespace"/>` and
    // `<xs:attribute ref="xml:lang"/>`, as in the EWS types.xsd.
    let file = parse(&generate("xml_lang.wsdl"));
    let types = module(&file.items, "types");
    let fields = types
        .iter()
        .find_map(|i| match i {
            syn::Item::Struct(s) if s.ident == "Greet" => Some(&s.fields),
            _ => None,
        })
        .expect("the Greet element's struct");
    let fields: Vec<(String, String)> = fields
        .iter()
        .map(|f| (flat(&f.ident), flat(&f.ty)))
        .collect();
    assert_eq!(
        fields,
        [
            ("lang".into(), "Option<String>".into()),
            ("name".into(), "String".into())
        ]
    );
}

// ---------------------------------------------------------------------------------------------
// Refusals

fn assert_names_file_and_operation(error: &Error, name: &str, operation: &str) {
    let text = error.to_string();
    let file = fixture(name);
    assert!(
        text.starts_with(&format!("{}: ", file.display())),
        "does not start with the file: {text}"
    );
    let element = format!("<wsdl:operation name=\"{operation}\">");
    assert!(text.contains(&element), "does not name {element}: {text}");
}

#[test]
fn rpc_style_is_refused() {
    let error = generate_err("rpc.wsdl");
    let Error::Unsupported {
        file,
        element,
        reason,
    } = &error
    else {
        panic!("not Unsupported: {error:?}");
    };
    assert_eq!(file, &fixture("rpc.wsdl"));
    assert_eq!(element, "<wsdl:operation name=\"Lookup\">");
    assert!(reason.contains("rpc"), "{reason}");
    assert_names_file_and_operation(&error, "rpc.wsdl", "Lookup");
}

#[test]
fn type_parts_in_document_style_are_refused() {
    let error = generate_err("type_part.wsdl");
    let Error::Unsupported {
        element, reason, ..
    } = &error
    else {
        panic!("not Unsupported: {error:?}");
    };
    assert_eq!(element, "<wsdl:operation name=\"Lookup\">");
    assert!(
        reason.contains("part \"city\"") && reason.contains("names a type"),
        "{reason}"
    );
    assert_names_file_and_operation(&error, "type_part.wsdl", "Lookup");
}

#[test]
fn part_naming_an_undefined_element_is_refused_with_its_operation() {
    let error = generate_err("unknown_element.wsdl");
    let Error::UnknownElement {
        element,
        namespace,
        local,
        ..
    } = &error
    else {
        panic!("not UnknownElement: {error:?}");
    };
    assert_eq!(element, "<wsdl:operation name=\"Lookup\">");
    assert_eq!(
        (namespace.as_str(), local.as_str()),
        ("urn:example:weather", "Lookup")
    );
    assert_names_file_and_operation(&error, "unknown_element.wsdl", "Lookup");
    assert!(error.to_string().contains("{urn:example:weather}Lookup"));
}

#[test]
fn part_naming_an_element_of_a_namespace_without_schema_is_refused() {
    let error = generate_err("unknown_namespace.wsdl");
    assert!(
        matches!(&error, Error::UnknownElement { namespace, .. } if namespace == "urn:example:elsewhere"),
        "{error:?}"
    );
    assert_names_file_and_operation(&error, "unknown_namespace.wsdl", "Lookup");
    assert!(error.to_string().contains("{urn:example:elsewhere}Lookup"));
}

// ---------------------------------------------------------------------------------------------
// Properties of every output

fn good_outputs() -> Vec<(String, Generated)> {
    GOOD.iter()
        .map(|name| (name.to_string(), generate(name)))
        .chain(std::iter::once((
            "um.wsdl".to_owned(),
            generate_with(&configure(), Path::new(UM_WSDL)),
        )))
        .collect()
}

#[test]
fn output_starts_with_the_header_and_parses() {
    for (name, generated) in good_outputs() {
        assert!(
            generated.code.starts_with(&format!("{GENERATED_HEADER}\n")),
            "{name}"
        );
        let file = parse(&generated);
        assert_no_duplicate_names(&file);
        assert_eq!(
            generated.file_name,
            name.replace(".wsdl", ".rs"),
            "the file is named for the WSDL"
        );
    }
}

#[test]
fn output_is_deterministic() {
    for (name, first) in good_outputs() {
        let path = if name == "um.wsdl" {
            PathBuf::from(UM_WSDL)
        } else {
            fixture(&name)
        };
        let second = generate_with(&configure(), &path);
        assert!(first.code == second.code, "{name}: two runs differ");
    }
}

#[test]
fn output_holds_no_path_of_this_machine() {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    let workspace = manifest.parent().expect("the workspace");
    for (name, generated) in good_outputs() {
        for needle in [
            manifest.display().to_string(),
            workspace.display().to_string(),
            "file:".to_owned(),
            ".xsd".to_owned(),
            ".wsdl".to_owned(),
        ] {
            assert!(
                !generated.code.contains(&needle),
                "{name}: the output contains {needle:?}"
            );
        }
    }
}

#[test]
fn um_public_names_stay() {
    // What the root crate and its users call.
    let file = parse(&generate_with(
        &configure()
            .server_feature("server")
            .client_feature("client"),
        Path::new(UM_WSDL),
    ));
    let types = module(&file.items, "types");
    let types_names = names(types);
    assert!(types_names.contains(&"ResetPin".to_owned()));
    // `IsUmEnabledResponse { is_um_enabled_response }`.
    let is_um_enabled = types
        .iter()
        .find_map(|i| match i {
            syn::Item::Struct(s) if s.ident == "IsUmEnabledResponse" => Some(s),
            _ => None,
        })
        .expect("the struct types::IsUmEnabledResponse");
    assert!(is_um_enabled
        .fields
        .iter()
        .any(|f| flat(&f.ident) == "is_um_enabled_response"));
    let um = module(&file.items, "um_service_soap");
    for name in [
        "operations",
        "actions",
        "OPERATIONS",
        "UmServiceSoap",
        "UmServiceSoapServer",
        "UmServiceSoapClient",
    ] {
        assert!(
            names(um).contains(&name.to_owned()),
            "um_service_soap::{name}"
        );
    }
    let namespaces = str_consts(module(&file.items, "namespaces"));
    for name in ["MESSAGES", "TYPES", "TARGET"] {
        assert!(namespaces.contains_key(name), "namespaces::{name}");
    }
}

// ---------------------------------------------------------------------------------------------
// Exchange Web Services

#[test]
fn ews_generates() {
    if !Path::new(EWS_WSDL).exists() {
        println!(
            "skipped: {EWS_WSDL} is absent (Microsoft's EWS WSDL is not part of the repository)"
        );
        return;
    }
    let started = Instant::now();
    let generated = generate_with(&configure(), Path::new(EWS_WSDL));
    let generating = started.elapsed();
    let file = parse(&generated);
    println!(
        "EWS: generated {} bytes in {generating:.1?}, parsed in {:.1?}",
        generated.code.len(),
        started.elapsed() - generating
    );
    assert_no_duplicate_names(&file);
    let port = module(&file.items, "exchange_service_port_type");
    let methods = methods(find_trait(port, "ExchangeServicePortType"));
    assert!(methods.len() > 100, "{} methods", methods.len());
    let resolve_names = methods
        .iter()
        .find(|m| m.name == "resolve_names")
        .expect("resolve_names");
    assert_eq!(resolve_names.request, "types::ResolveNames");
    assert_eq!(resolve_names.ok, "types::ResolveNamesResponse");
    let infos = operation_infos(port);
    assert_eq!(infos.len(), methods.len());
    let resolve = infos
        .iter()
        .find(|i| i["request_element"] == "ResolveNames")
        .expect("ResolveNames in OPERATIONS");
    assert!(resolve["understood_headers"].contains("RequestServerVersion"));
    // `<xs:element name="ResolveNames" type="m:ResolveNamesType"/>` gets a
    // struct of its own that writes `<m:ResolveNames>`.
    let types = module(&file.items, "types");
    assert!(types
        .iter()
        .any(|i| matches!(i, syn::Item::Struct(s) if s.ident == "ResolveNames")));
    assert!(generated
        .code
        .contains("name.unwrap_or(\"m:ResolveNames\")"));
}

// ---------------------------------------------------------------------------------------------
// Compiling the output

/// Writes every accepted fixture's output into a scratch crate that depends on `umws-soap` and
/// `xsd-parser-types`, and runs `cargo check` on it.
#[test]
#[ignore = "builds umws-soap in a target directory of its own; run with --ignored"]
fn generated_fixtures_compile() {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    let workspace = manifest.parent().expect("the workspace");
    let dir = tempfile::tempdir().expect("a scratch directory");
    let src = dir.path().join("src");
    std::fs::create_dir(&src).unwrap();
    let mut lib = String::from("#![allow(unused, clippy::all)]\n");
    for name in GOOD {
        let generated = generate_with(
            &configure()
                .server_feature("server")
                .client_feature("client"),
            &fixture(name),
        );
        let stem = name.trim_end_matches(".wsdl");
        std::fs::write(src.join(&generated.file_name), &generated.code).unwrap();
        lib.push_str(&format!(
            "pub mod {stem} {{ include!(\"{}\"); }}\n",
            generated.file_name
        ));
    }
    std::fs::write(src.join("lib.rs"), lib).unwrap();
    let soap = workspace.join("soap");
    std::fs::write(
        dir.path().join("Cargo.toml"),
        format!(
            r#"[package]
name = "umws-codegen-fixtures"
version = "0.0.0"
edition = "2021"
publish = false

[workspace]

[features]
default = ["server", "client"]
server = ["umws-soap/server"]
client = ["umws-soap/client"]

[dependencies]
umws-soap = {{ path = {soap:?} }}
xsd-parser-types = {{ version = "0.2", features = ["quick-xml"] }}
"#
        ),
    )
    .unwrap();
    // The workspace's lock file keeps the dependency versions (and offline
    // builds) the same.
    std::fs::copy(workspace.join("Cargo.lock"), dir.path().join("Cargo.lock")).unwrap();
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let started = Instant::now();
    let status = std::process::Command::new(cargo)
        .arg("check")
        .arg("--quiet")
        .arg("--manifest-path")
        .arg(dir.path().join("Cargo.toml"))
        .env(
            "CARGO_TARGET_DIR",
            workspace.join("target/codegen-fixtures"),
        )
        .status()
        .expect("cargo runs");
    println!("cargo check of the fixtures: {:.1?}", started.elapsed());
    assert!(status.success(), "the generated code does not compile");
}
