//! Keyport: an OAuth 2.0 / OpenID Connect authorization server for CLI and
//! device logins. The library exposes the server as an axum `Router`
//! ([`http::router`]) and as an in-process service ([`Keyport`]).
pub mod clock;
pub mod config;
pub mod crypto;
pub mod domain;
pub mod embed;
pub mod fetch;
pub mod hashing;
pub mod mail;
pub mod service;
pub mod store;
pub mod telemetry;

pub use domain::admin;
pub use service::{Caller, Keyport};
pub mod http;
pub mod pages;
