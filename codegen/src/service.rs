//! The service layer: constants, service traits, dispatchers and clients.

use std::collections::{BTreeMap, BTreeSet};

use proc_macro2::TokenStream;
use quote::{format_ident, quote};

use crate::error::Error;
use crate::model::{Model, PortTypeModel};
use crate::naming::{constant_case, ident, namespace_constant, pascal_case, snake_case, type_name};
use crate::types::Types;
use crate::wsdl::{QName, SoapVersion};
use crate::Builder;

/// Emits the namespace constants and one module per port type.
pub(crate) fn emit(model: &Model, types: &Types, builder: &Builder) -> Result<TokenStream, Error> {
    let runtime: syn::Path = syn::parse_str(&builder.runtime).map_err(|source| Error::Emit {
        file: model.file.clone(),
        source,
    })?;
    let (namespaces, namespace_consts) = emit_namespaces(model, types);
    let mut modules = Vec::new();
    for port_type in &model.port_types {
        modules.push(emit_port_type(
            model,
            port_type,
            types,
            &namespace_consts,
            builder,
            &runtime,
        )?);
    }
    Ok(quote! {
        #namespaces
        #(#modules)*
    })
}

/// The `namespaces` module, and the constant that names each namespace in it.
fn emit_namespaces(model: &Model, types: &Types) -> (TokenStream, BTreeMap<String, syn::Ident>) {
    let mut names: BTreeSet<&str> = types.namespaces.iter().map(String::as_str).collect();
    let headers = model
        .port_types
        .iter()
        .flat_map(|p| &p.operations)
        .flat_map(|o| &o.headers);
    for q in model.elements().chain(headers) {
        if let Some(ns) = &q.namespace {
            names.insert(ns);
        }
    }
    let mut used = BTreeSet::new();
    let mut consts = Vec::new();
    if let Some(tns) = &model.target_namespace {
        consts.push(quote! {
            /// The WSDL's target namespace.
            pub const TARGET: &str = #tns;
        });
        used.insert("TARGET".to_owned());
    }
    let mut idents = BTreeMap::new();
    for ns in names {
        let base = namespace_constant(ns);
        let mut name = base.clone();
        let mut n = 2;
        while !used.insert(name.clone()) {
            name = format!("{base}_{n}");
            n += 1;
        }
        let id = format_ident!("{}", name);
        let doc = format!(" `{ns}`");
        consts.push(quote! {
            #[doc = #doc]
            pub const #id: &str = #ns;
        });
        idents.insert(ns.to_owned(), id);
    }
    let module = quote! {
        /// The namespace names of the service's elements.
        pub mod namespaces {
            #(#consts)*
        }
    };
    (module, idents)
}

fn doc_lines(text: &Option<String>) -> Vec<TokenStream> {
    text.iter()
        .flat_map(|t| t.lines())
        .map(|l| {
            let l = format!(" {}", l.trim());
            quote!(#[doc = #l])
        })
        .collect()
}

/// The Rust type xsd-parser generated for the element `q` that operation
/// `op` names.
fn type_path(model: &Model, types: &Types, q: &QName, op: &str) -> Result<syn::Ident, Error> {
    let element = format!("<wsdl:operation name=\"{op}\">");
    if let Some(ident) = types.elements.get(q) {
        return Ok(ident.clone());
    }
    let namespace = q.namespace.clone().unwrap_or_default();
    let local = q.local.clone();
    Err(if types.defined.contains(q) {
        Error::MissingType {
            file: model.file.clone(),
            element,
            namespace,
            expected: type_name(&local),
            local,
        }
    } else {
        Error::UnknownElement {
            file: model.file.clone(),
            element,
            namespace,
            local,
        }
    })
}

fn emit_port_type(
    model: &Model,
    pt: &PortTypeModel,
    types: &Types,
    namespace_consts: &BTreeMap<String, syn::Ident>,
    builder: &Builder,
    rt: &syn::Path,
) -> Result<TokenStream, Error> {
    // A namespace as the constant of the `namespaces` module that names it.
    let namespace = |q: Option<&QName>| -> TokenStream {
        let ns = q.and_then(|q| q.namespace.as_deref()).unwrap_or_default();
        match namespace_consts.get(ns) {
            Some(id) => quote!(super::namespaces::#id),
            None => quote!(#ns),
        }
    };
    let module = ident(&snake_case(&pt.name));
    let trait_name = format_ident!("{}", pascal_case(&pt.name));
    let server_name = format_ident!("{}Server", trait_name);
    let client_name = format_ident!("{}Client", trait_name);
    let pt_docs = doc_lines(&pt.doc);
    let binding_doc = format!(
        " Bound by `{}` ({}).",
        pt.binding,
        match pt.version {
            SoapVersion::Soap11 => "SOAP 1.1",
            SoapVersion::Soap12 => "SOAP 1.2",
        }
    );

    let mut op_consts = Vec::new();
    let mut action_consts = Vec::new();
    let mut infos = Vec::new();
    let mut methods = Vec::new();
    let mut arms = Vec::new();
    let mut client_methods = Vec::new();
    let mut visits = Vec::new();
    for (index, op) in pt.operations.iter().enumerate() {
        let const_name = format_ident!("{}", constant_case(&op.name));
        let method = ident(&snake_case(&op.name));
        let op_name = &op.name;
        let op_doc = format!(" `{op_name}`");
        op_consts.push(quote! {
            #[doc = #op_doc]
            pub const #const_name: &str = #op_name;
        });
        let action_tokens = match &op.action {
            Some(action) => {
                let doc = format!(" The SOAPAction of `{op_name}`.");
                action_consts.push(quote! {
                    #[doc = #doc]
                    pub const #const_name: &str = #action;
                });
                quote!(::core::option::Option::Some(actions::#const_name))
            }
            None => quote!(::core::option::Option::None),
        };
        let action_str = match &op.action {
            Some(_) => quote!(actions::#const_name),
            None => quote!(""),
        };
        let req_ty = type_path(model, types, &op.input, op_name)?;
        let (req_ns, req_local) = (namespace(Some(&op.input)), &op.input.local);
        let (resp_ty, resp_local) = match &op.output {
            Some(q) => {
                let t = type_path(model, types, q, op_name)?;
                (quote!(types::#t), q.local.clone())
            }
            None => (quote!(()), String::new()),
        };
        let resp_ns = namespace(op.output.as_ref());
        let headers = op.headers.iter().map(|h| {
            let ns = namespace(Some(h));
            let local = &h.local;
            quote!((#ns, #local))
        });
        infos.push(quote! {
            #rt::OperationInfo {
                name: operations::#const_name,
                request_namespace: #req_ns,
                request_element: #req_local,
                response_namespace: #resp_ns,
                response_element: #resp_local,
                soap_action: #action_tokens,
                understood_headers: &[#(#headers),*],
            }
        });
        let mut docs = doc_lines(&op.doc);
        if !docs.is_empty() {
            docs.push(quote!(#[doc = ""]));
        }
        let action_doc = match &op.action {
            Some(a) => format!(" Operation `{op_name}`, SOAPAction `{a}`."),
            None => format!(" Operation `{op_name}` (no SOAPAction)."),
        };
        docs.push(quote!(#[doc = #action_doc]));
        methods.push(quote! {
            #(#docs)*
            fn #method(
                &self,
                ctx: &#rt::CallContext,
                request: types::#req_ty,
            ) -> impl ::core::future::Future<Output = ::core::result::Result<#resp_ty, #rt::SoapFault>> + ::core::marker::Send;
        });
        let index_lit = proc_macro2::Literal::usize_unsuffixed(index);
        visits.push(if op.output.is_some() {
            quote!(visitor.visit::<types::#req_ty, #resp_ty>(&OPERATIONS[#index_lit]);)
        } else {
            quote!(visitor.visit_one_way::<types::#req_ty>(&OPERATIONS[#index_lit]);)
        });
        let reply = if op.output.is_some() {
            quote! {
                let response = self.inner.#method(ctx, request).await?;
                ::core::result::Result::Ok(::std::boxed::Box::new(response) as #rt::server::Reply)
            }
        } else {
            quote! {
                self.inner.#method(ctx, request).await?;
                ::core::result::Result::Ok(::std::boxed::Box::new(#rt::server::EmptyReply) as #rt::server::Reply)
            }
        };
        let client_call = if op.output.is_some() {
            quote!(self.transport.call(#action_str, request).await)
        } else {
            quote!(self.transport.call_one_way(#action_str, request).await)
        };
        // A type that carries no data has one value; a bare element needs no deserializer.
        let deserialize = quote! {
            #rt::xml::from_request_fragment(&body.xml)
                .map_err(#rt::server::CallError::InvalidRequest)?
        };
        let read = if types.unit.contains(&op.input) {
            quote!(if body.bare { types::#req_ty {} } else { #deserialize })
        } else {
            deserialize
        };
        arms.push(quote! {
            #index_lit => {
                let request: types::#req_ty = #read;
                #reply
            }
        });
        let client_doc = format!(" Calls `{op_name}`.");
        client_methods.push(quote! {
            #[doc = #client_doc]
            pub async fn #method(
                &self,
                request: &types::#req_ty,
            ) -> ::core::result::Result<#resp_ty, #rt::client::ClientError> {
                #client_call
            }
        });
    }
    let count = pt.operations.len();

    let server_cfg = builder
        .server_feature
        .as_ref()
        .map(|f| quote!(#[cfg(feature = #f)]));
    let client_cfg = builder
        .client_feature
        .as_ref()
        .map(|f| quote!(#[cfg(feature = #f)]));
    let server = builder.build_server.then(|| {
        let server_doc = format!(" Serves a [`{trait_name}`] implementation through `umws-soap`.");
        quote! {
            #server_cfg
            #[doc = #server_doc]
            #[derive(Debug)]
            pub struct #server_name<T> {
                inner: ::std::sync::Arc<T>,
            }

            #server_cfg
            impl<T> ::core::clone::Clone for #server_name<T> {
                fn clone(&self) -> Self {
                    Self { inner: ::std::sync::Arc::clone(&self.inner) }
                }
            }

            #server_cfg
            impl<T: #trait_name> #server_name<T> {
                /// Wraps a service implementation.
                pub fn new(inner: T) -> Self {
                    Self { inner: ::std::sync::Arc::new(inner) }
                }

                /// Wraps a shared service implementation.
                pub fn from_arc(inner: ::std::sync::Arc<T>) -> Self {
                    Self { inner }
                }

                /// The service implementation.
                pub fn get_ref(&self) -> &T {
                    &self.inner
                }
            }

            #server_cfg
            impl<T: #trait_name> #rt::server::SoapService for #server_name<T> {
                fn operations(&self) -> &'static [#rt::OperationInfo] {
                    &OPERATIONS
                }

                fn call<'a>(
                    &'a self,
                    ctx: &'a #rt::CallContext,
                    op: usize,
                    body: &'a #rt::envelope::BodyElement,
                ) -> impl ::core::future::Future<
                    Output = ::core::result::Result<#rt::server::Reply, #rt::server::CallError>,
                > + ::core::marker::Send + 'a {
                    async move {
                        match op {
                            #(#arms)*
                            _ => ::core::result::Result::Err(#rt::server::CallError::Fault(
                                #rt::SoapFault::server("no such operation"),
                            )),
                        }
                    }
                }
            }
        }
    });
    let client = builder.build_client.then(|| {
        let client_doc = format!(
            " A typed client of `{}`: one async method per operation.",
            pt.name
        );
        quote! {
            #client_cfg
            #[doc = #client_doc]
            #[derive(Debug, Clone)]
            pub struct #client_name {
                transport: #rt::client::Transport,
            }

            #client_cfg
            impl #client_name {
                /// A client that calls through `transport`.
                pub fn new(transport: #rt::client::Transport) -> Self {
                    Self { transport }
                }

                /// The transport (endpoint, credentials, timeout).
                pub fn transport(&self) -> &#rt::client::Transport {
                    &self.transport
                }

                #(#client_methods)*
            }
        }
    });
    let module_doc = format!(" The port type `{}`.", pt.name);
    let trait_doc = format!(" The operations of the port type `{}`.", pt.name);
    Ok(quote! {
        #[doc = #module_doc]
        #(#pt_docs)*
        #[doc = ""]
        #[doc = #binding_doc]
        pub mod #module {
            use super::types;

            /// The operation names, as in the WSDL.
            pub mod operations {
                #(#op_consts)*
            }

            /// The SOAP actions of the operations.
            pub mod actions {
                #(#action_consts)*
            }

            /// The operations, as the server dispatches them.
            pub static OPERATIONS: [#rt::OperationInfo; #count] = [#(#infos),*];

            /// Hands every operation to `visitor` with its request and response
            /// types, in the order of [`OPERATIONS`].
            pub fn for_each_operation<V: #rt::OperationVisitor + ?::core::marker::Sized>(visitor: &mut V) {
                #(#visits)*
            }

            #[doc = #trait_doc]
            #(#pt_docs)*
            pub trait #trait_name: ::core::marker::Send + ::core::marker::Sync + 'static {
                #(#methods)*
            }

            #server
            #client
        }
    })
}
