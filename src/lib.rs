//! **umws**: the Exchange Unified Messaging (UM) web service, generated from
//! its schema.
//!
//! `build.rs` runs `umws-codegen` over `schemas/um.wsdl`; the result is
//! [`generated`]: the XML [`types`], the [`namespaces`], and
//! [`um_service_soap`] with the async service trait, its server dispatcher
//! and a typed client. [`service::UmService`] implements the trait over the
//! mailbox [`store`], [`pin_policy`] and [`mail`]; [`app`] assembles the
//! server that `umws serve` runs.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

/// The code generated from `schemas/um.wsdl` (see `generated/um.rs` for the
/// reviewed copy).
#[allow(
    missing_docs,
    dead_code,
    unused_imports,
    unused_variables,
    unused_mut,
    unreachable_patterns,
    clippy::all,
    clippy::pedantic,
    rustdoc::all
)]
pub mod generated {
    include!(concat!(env!("OUT_DIR"), "/um.rs"));
}

pub use generated::{namespaces, types, um_service_soap};

pub mod app;
pub mod auth;
pub mod config;
pub mod fault;
pub mod mail;
pub mod phone;
pub mod pin_policy;
pub mod service;
pub mod store;
pub mod throttle;
