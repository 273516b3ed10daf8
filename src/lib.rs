//! **umws**: the Exchange Unified Messaging (UM) web service, generated from
//! its schema.
//!
//! `build.rs` runs `umws-codegen` over `schemas/um.wsdl` for the API crate
//! `umws-api` (`api/`): the XML [`types`], the [`namespaces`], and
//! [`um_service_soap`] with the async service trait, its server dispatcher
//! and a typed client; this crate re-exports them as [`generated`].
//! [`service::UmService`] implements the trait over the mailbox [`store`],
//! [`pin_policy`] and [`mail`]; [`app`] assembles the server that
//! `umws serve` runs.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

/// The code generated from `schemas/um.wsdl`: the API crate `umws-api`
/// (see `generated/um.rs` for the reviewed copy).
pub mod generated {
    pub use umws_api::{namespaces, types, um_service_soap};
}

pub use generated::{namespaces, types, um_service_soap};

pub mod app;
pub mod audio;
pub mod auth;
pub mod config;
pub mod fault;
pub mod mail;
pub mod phone;
pub mod pin_policy;
pub mod service;
pub mod store;
pub mod subscriber;
pub mod telephony;
pub mod throttle;
