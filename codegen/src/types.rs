//! The `types` module: xsd-parser over the WSDL's schemas.
//!
//! The pipeline runs stage by stage (parse, interpret, optimize, generate,
//! render) rather than through `xsd_parser::generate`, so that the Rust name
//! xsd-parser gives each message element can be read from its own result
//! instead of being re-derived, and an element no schema defines is reported
//! against the WSDL operation that names it.

use std::collections::{BTreeMap, BTreeSet};

use proc_macro2::{Group, Ident, TokenStream, TokenTree};
use quote::quote;
use xsd_parser::config::{
    Generate, GeneratorFlags, IdentQuadruple, Namespace, NamespaceIdent, OptimizerFlags,
    ParserFlags, RendererFlags, Schema, SchemaIdent, TypePostfix,
};
use xsd_parser::models::data::{ComplexData, DataTypeVariant, DataTypes, Occurs};
use xsd_parser::models::meta::{MetaTypeVariant, MetaTypes};
use xsd_parser::models::schema::Schemas;
use xsd_parser::pipeline::interpreter::Error as InterpreterError;
use xsd_parser::{Config, IdentType, TypeIdent};

use crate::error::Error;
use crate::model::Model;
use crate::naming::namespace_constant;
use crate::wsdl::{Definitions, QName, SchemaSource};

/// The namespace of `xml:lang`, `xml:space`, `xml:base` and `xml:id`.
const XML_NS: &str = "http://www.w3.org/XML/1998/namespace";

/// The attributes of the XML namespace, for schemas that import it without a
/// `schemaLocation` (as many do, relying on the processor to know it).
/// A reduced form of <https://www.w3.org/2001/xml.xsd>.
const XML_NS_SCHEMA: &str = r#"<?xml version="1.0"?>
<xs:schema xmlns:xs="http://www.w3.org/2001/XMLSchema"
           targetNamespace="http://www.w3.org/XML/1998/namespace">
  <xs:attribute name="lang" type="xs:language"/>
  <xs:attribute name="space">
    <xs:simpleType>
      <xs:restriction base="xs:NCName">
        <xs:enumeration value="default"/>
        <xs:enumeration value="preserve"/>
      </xs:restriction>
    </xs:simpleType>
  </xs:attribute>
  <xs:attribute name="base" type="xs:anyURI"/>
  <xs:attribute name="id" type="xs:ID"/>
  <xs:attributeGroup name="specialAttrs">
    <xs:attribute ref="xml:base"/>
    <xs:attribute ref="xml:lang"/>
    <xs:attribute ref="xml:space"/>
    <xs:attribute ref="xml:id"/>
  </xs:attributeGroup>
</xs:schema>
"#;

/// The generated `types` module and the names it defines.
pub(crate) struct Types {
    /// `pub mod types { ... }`.
    pub tokens: TokenStream,
    /// The message elements the schemas define.
    pub defined: BTreeSet<QName>,
    /// The Rust type xsd-parser generated for each of them.
    pub elements: BTreeMap<QName, syn::Ident>,
    /// The message elements whose type carries no data (a unit struct: no attributes, no
    /// content), so that a bare element can be read without a deserializer.
    pub unit: BTreeSet<QName>,
    /// The namespace names of the schemas (not XML's own).
    pub namespaces: Vec<String>,
}

/// Runs xsd-parser for every element the messages of `model` name.
/// The generated code names the `xsd_parser_types` crate directly, so the
/// crate that includes it depends on `xsd-parser-types` (feature
/// `quick-xml`).
pub(crate) fn generate(defs: &Definitions, model: &Model) -> Result<Types, Error> {
    let schema_error = |source: xsd_parser::Error| Error::Schema {
        file: defs.source.clone(),
        source: Box::new(source),
    };
    let config = config(defs, false);
    let mut schemas = xsd_parser::exec_parser(config.parser.clone()).map_err(schema_error)?;
    if !defines_namespace(&schemas, XML_NS) {
        // Parsing is cheap next to the rest; parse again with the XML
        // namespace's attributes known.
        schemas = xsd_parser::exec_parser(self::config(defs, true).parser).map_err(schema_error)?;
    }
    let (meta_types, ident_cache) =
        xsd_parser::exec_interpreter_with_ident_cache(config.interpreter, &schemas)
            .map_err(schema_error)?;
    let mut meta_types =
        xsd_parser::exec_optimizer(config.optimizer, meta_types).map_err(schema_error)?;

    // The type identifier of each message element the schemas define.
    let mut wanted: Vec<(QName, TypeIdent)> = Vec::new();
    for q in model.elements() {
        let quadruple = IdentQuadruple::new(q.local.clone(), IdentType::Element).with_ns(
            NamespaceIdent::Namespace(Namespace::new(
                q.namespace.clone().unwrap_or_default().into_bytes(),
            )),
        );
        // An element that is not found is reported, with the operation that
        // names it, by the service emitter.
        let ident = match quadruple.resolve(&schemas) {
            Ok(ident) => ident,
            Err(InterpreterError::UnknownNamespace(_)) => continue,
            Err(e) => return Err(schema_error(e.into())),
        };
        let ident = match ident_cache.resolve(ident) {
            Ok(ident) => ident,
            Err(InterpreterError::UnknownType(_)) => continue,
            Err(e) => return Err(schema_error(e.into())),
        };
        if meta_types.get_resolved_type(&ident).is_some() {
            wanted.push((q.clone(), ident));
        }
    }

    own_element_types(&mut meta_types, wanted.iter().map(|(_, ident)| ident));
    unique_type_names(&mut meta_types, &postfixes(&config.generator.type_postfix));

    let mut generator = config.generator;
    generator.generate = Generate::Types(
        wanted
            .iter()
            .map(|(_, ident)| IdentQuadruple {
                ns: Some(NamespaceIdent::Id(ident.ns)),
                schema: Some(SchemaIdent::Id(ident.schema)),
                name: ident.name.to_string(),
                type_: ident.type_,
            })
            .collect(),
    );
    let data_types = xsd_parser::exec_generator_with_ident_cache(
        generator,
        &schemas,
        Some(&ident_cache),
        &meta_types,
    )
    .map_err(schema_error)?;
    let defined = wanted.iter().map(|(q, _)| q.clone()).collect();
    let unit = wanted
        .iter()
        .filter(|(_, ident)| is_unit(&data_types, ident))
        .map(|(q, _)| q.clone())
        .collect();
    let elements = wanted
        .into_iter()
        .filter_map(|(q, ident)| {
            let ty = data_types.items.get(&ident)?;
            Some((q, rust_ident(&ty.variant)?.clone()))
        })
        .collect();

    let module = xsd_parser::exec_render(config.renderer, &data_types)
        .map_err(|e| schema_error(e.into()))?;
    let module = name_unnamed_namespaces(quote!(#module), &meta_types);
    let namespaces = schemas
        .namespaces()
        .filter_map(|(_, info)| info.namespace.as_ref())
        .map(|ns| String::from_utf8_lossy(ns).into_owned())
        .filter(|ns| !ns.starts_with("http://www.w3.org/"))
        .collect();
    Ok(Types {
        tokens: quote! {
            /// The XML types of the schemas, with quick-xml (de)serializers
            /// (generated by xsd-parser).
            pub mod types {
                #module
            }
        },
        defined,
        elements,
        unit,
        namespaces,
    })
}

/// The xsd-parser configuration: every schema of `defs`, plus the XML
/// namespace's when `with_xml_ns`.
fn config(defs: &Definitions, with_xml_ns: bool) -> Config {
    let mut config = Config::default();
    let file = defs
        .source
        .file_name()
        .map(|f| f.to_string_lossy().into_owned())
        .unwrap_or_default();
    for (i, source) in defs.schemas.iter().enumerate() {
        config.parser.schemas.push(match source {
            SchemaSource::Inline { text, .. } => {
                Schema::NamedSchema(format!("{file}#schema{i}"), text.clone())
            }
            SchemaSource::File(path) => Schema::File(path.clone()),
        });
    }
    if with_xml_ns {
        config
            .parser
            .schemas
            .push(Schema::NamedSchema("xml.xsd".into(), XML_NS_SCHEMA.into()));
    }
    config = config
        .with_quick_xml()
        .with_derive(["Debug", "Clone", "PartialEq"])
        .with_renderer_flags(RendererFlags::RENDER_DOCS);
    // A namespace a schema uses as its default keeps no prefix (the WSDL's
    // `tns` is not borrowed for it), so answers are written the way the
    // schema's authors wrote them: `<ResetPINResponse xmlns="...">`.
    config
        .parser
        .flags
        .remove(ParserFlags::ALTERNATIVE_PREFIXES);
    // Substitution groups and derived types become enums rather than
    // `Box<dyn Trait>`, which cannot derive `Clone` and `PartialEq`.
    config.optimizer.flags |=
        OptimizerFlags::RESOLVE_TYPEDEFS | OptimizerFlags::CONVERT_DYNAMIC_TO_CHOICE;
    // `xs:any` content is kept as `AnyElement`s (without, a choice of only
    // `xs:any` becomes an empty enum whose serializer does not compile).
    config.generator.flags |= GeneratorFlags::FLATTEN_CONTENT | GeneratorFlags::ANY_TYPE_SUPPORT;
    config
}

/// Gives each message element its complex type as its own, so that
/// xsd-parser emits a struct named after the element (`X`) that reads and
/// writes `<X>`, rather than an alias `pub type X = ...;` of another struct
/// (which rustdoc and compiler errors would then show):
///
/// - an element declared with a named complex type
///   (`<xs:element name="X" type="XType"/>`) gets a copy of that type; left
///   alone, `X` is an alias of `XType`, whose serializer, asked for no
///   particular name (as the SOAP runtime asks for a body element), writes
///   `<XType>`;
/// - an element with an anonymous complex type (`<xs:element name="X">
///   <xs:complexType>...`) takes that type's place; left alone, `X` is an
///   alias of a struct `XElementType`. The anonymous type is then no longer
///   referenced and so not emitted.
fn own_element_types<'a>(
    meta_types: &mut MetaTypes,
    elements: impl Iterator<Item = &'a TypeIdent>,
) {
    for ident in elements {
        let Some(element) = meta_types.items.get(ident) else {
            continue;
        };
        let MetaTypeVariant::Reference(reference) = &element.variant else {
            continue;
        };
        if !reference.is_simple() {
            continue;
        }
        let Some((target_ident, target)) = meta_types.get_resolved(ident) else {
            continue;
        };
        if !matches!(target_ident.type_, IdentType::Type | IdentType::ElementType) {
            continue;
        }
        let MetaTypeVariant::ComplexType(complex) = &target.variant else {
            continue;
        };
        if complex.is_dynamic {
            continue;
        }
        let mut own = target.clone();
        own.form = element.form;
        own.schema = element.schema;
        own.display_name = element.display_name.clone();
        own.redefined_base = None;
        if !element.documentation.is_empty() {
            own.documentation = element.documentation.clone();
        }
        meta_types.items.insert(ident.clone(), own);
    }
}

/// The type name postfixes of the generator, indexed by `IdentType as usize`
/// (as `xsd_parser::Generator` keeps them).
fn postfixes(config: &TypePostfix) -> [String; 10] {
    let mut postfixes: [String; 10] = Default::default();
    postfixes[IdentType::Type as usize] = config.type_.clone();
    postfixes[IdentType::Element as usize] = config.element.clone();
    postfixes[IdentType::ElementType as usize] = config.element_type.clone();
    postfixes[IdentType::NillableContent as usize] = config.nillable_content.clone();
    postfixes[IdentType::DynamicElement as usize] = config.dynamic_element.clone();
    postfixes
}

/// Gives every type a Rust name of its own. xsd-parser names a schema type
/// `X` as `XType` (its type postfix), which is also the name of a schema
/// type spelled `XType`; both would be emitted under one name. Of types
/// that would share a name, an element keeps it first, then a type whose
/// name is spelled that way in the schema; the others are named `X` when
/// that is free, else `XType2`, `XType3`, ...
fn unique_type_names(meta_types: &mut MetaTypes, postfixes: &[String; 10]) {
    let naming = meta_types.naming.clone_boxed();
    let mut by_name: BTreeMap<String, Vec<(u8, TypeIdent)>> = BTreeMap::new();
    for (ident, ty) in &meta_types.items {
        if matches!(
            ty.variant,
            MetaTypeVariant::BuildIn(_) | MetaTypeVariant::Custom(_)
        ) {
            continue;
        }
        let name = naming.make_type_name(postfixes, ty, ident);
        let rust = naming
            .format_type_ident(&name, ty.display_name.as_deref())
            .to_string();
        let rank = match (ident.type_, name.is_named()) {
            (IdentType::Element, true) => 0,
            (_, true) => 1,
            _ => 2,
        };
        by_name.entry(rust).or_default().push((rank, ident.clone()));
    }
    let mut taken: BTreeSet<String> = by_name.keys().cloned().collect();
    let mut renames = Vec::new();
    for (name, mut idents) in by_name {
        idents.sort();
        for (_, ident) in idents.into_iter().skip(1) {
            let bare = naming.format_type_name(ident.name.as_str());
            let new = std::iter::once(bare)
                .chain((2..).map(|n| format!("{name}{n}")))
                .find(|candidate| {
                    naming.format_type_name(candidate) == *candidate && !taken.contains(candidate)
                })
                .expect("an unbounded sequence of candidates has a free one");
            taken.insert(new.clone());
            renames.push((ident, new));
        }
    }
    for (ident, new) in renames {
        if let Some(ty) = meta_types.items.get_mut(&ident) {
            ty.display_name = Some(new);
        }
    }
}

/// Renames the constants xsd-parser gives namespaces without a prefix.
///
/// xsd-parser names a namespace constant after the namespace's prefix
/// (`NS_T` for `xmlns:t`), and one that schemas only use as their default
/// namespace `NS_UNNAMED_<n>`, `n` being an internal index. A prefix cannot
/// be given to it instead: xsd-parser writes every element of a namespace
/// with a prefix under that prefix, and answers would then read
/// `<m:ResetPINResponse xmlns:m="...">` instead of the schema's
/// `<ResetPINResponse xmlns="...">`. So the constant is renamed afterwards,
/// after the namespace's last segment as in the `namespaces` module
/// (`NS_MESSAGES`), with `_2`, `_3`, ... when that name is taken. An
/// identifier token is renamed as a whole, so nothing else can change.
fn name_unnamed_namespaces(tokens: TokenStream, meta_types: &MetaTypes) -> TokenStream {
    fn idents(tokens: &TokenStream, out: &mut BTreeSet<String>) {
        for token in tokens.clone() {
            match token {
                TokenTree::Ident(ident) => {
                    out.insert(ident.to_string());
                }
                TokenTree::Group(group) => idents(&group.stream(), out),
                _ => {}
            }
        }
    }
    fn rename(tokens: TokenStream, names: &BTreeMap<String, String>) -> TokenStream {
        tokens
            .into_iter()
            .map(|token| match token {
                TokenTree::Ident(ident) => match names.get(&ident.to_string()) {
                    Some(new) => TokenTree::Ident(Ident::new(new, ident.span())),
                    None => TokenTree::Ident(ident),
                },
                TokenTree::Group(group) => {
                    let mut new = Group::new(group.delimiter(), rename(group.stream(), names));
                    new.set_span(group.span());
                    TokenTree::Group(new)
                }
                other => other,
            })
            .collect()
    }
    let mut taken = BTreeSet::new();
    idents(&tokens, &mut taken);
    let mut names = BTreeMap::new();
    for module in meta_types.modules.values() {
        let (None, Some(namespace)) = (module.name(), &module.namespace) else {
            continue;
        };
        let old = format!("NS_UNNAMED_{}", module.namespace_id.0);
        if !taken.contains(&old) {
            continue;
        }
        let base = format!(
            "NS_{}",
            namespace_constant(&String::from_utf8_lossy(namespace))
        );
        let new = std::iter::once(base.clone())
            .chain((2..).map(|n| format!("{base}_{n}")))
            .find(|candidate| !taken.contains(candidate))
            .expect("an unbounded sequence of candidates has a free one");
        taken.insert(new.clone());
        names.insert(old, new);
    }
    rename(tokens, &names)
}

/// Whether some parsed schema has `namespace` as its target namespace.
fn defines_namespace(schemas: &Schemas, namespace: &str) -> bool {
    schemas
        .get_namespace_info_by_namespace(&Some(Namespace::new(namespace.as_bytes().to_vec())))
        .is_some_and(|info| !info.schemas.is_empty())
}

/// Whether the type `ident` is a unit struct (no attributes, no content, neither mixed nor
/// dynamic), directly or through plain references (exactly once, not nillable). Its
/// deserializer accepts a bare element (`<x/>`, no attributes but namespace declarations)
/// and returns the only value there is, which the dispatcher can then build itself.
fn is_unit(data_types: &DataTypes<'_>, ident: &TypeIdent) -> bool {
    let mut ident = ident;
    // References to references are followed, within reason.
    for _ in 0..8 {
        let Some(ty) = data_types.items.get(ident) else {
            return false;
        };
        match &ty.variant {
            DataTypeVariant::Reference(r) if r.occurs == Occurs::Single && !r.meta.nillable => {
                ident = &r.meta.type_;
            }
            DataTypeVariant::Complex(ComplexData::Struct { type_, .. }) => {
                return type_.is_unit_struct()
                    && !type_.base.is_mixed()
                    && !type_.base.is_dynamic();
            }
            _ => return false,
        }
    }
    false
}

/// The name of the Rust item xsd-parser emits for a type.
fn rust_ident<'a>(variant: &'a DataTypeVariant<'_>) -> Option<&'a syn::Ident> {
    match variant {
        DataTypeVariant::BuildIn(_) | DataTypeVariant::Custom(_) => None,
        DataTypeVariant::Union(u) => Some(&u.type_ident),
        DataTypeVariant::Dynamic(d) => Some(&d.type_ident),
        DataTypeVariant::Reference(r) => Some(&r.type_ident),
        DataTypeVariant::Enumeration(e) => Some(&e.type_ident),
        DataTypeVariant::Simple(s) => Some(&s.type_ident),
        DataTypeVariant::Complex(ComplexData::Enum { type_, .. }) => Some(&type_.type_ident),
        DataTypeVariant::Complex(ComplexData::Struct { type_, .. }) => Some(&type_.type_ident),
    }
}
