//! Keyport's shared test kit: drives a running Keyport's hosted pages over HTTP and in headless Chromium, for the server's and kp's tests alike.
//!
//! It knows nothing of the server's internals and does not depend on the
//! `keyport` crate: everything goes through a base URL and an account's
//! email and password, over HTTP or WebDriver.
//!
//! - [`Browser`] is a cookie-jar HTTP client that reads the pages' forms
//!   ([`form_fields`]) and submits them as a person would, and
//!   [`decide_device`] signs in and approves or denies a device request.
//! - [`Chromium`] is a real headless Chromium behind its own chromedriver,
//!   finding fields by their label and buttons by their text.
//! - [`json_of`] reads a response as status and JSON; [`jwt_claims`] a
//!   token's claims.

mod chromium;
mod pages;

pub use chromium::{Chromium, Element, Locator, PAGE_TIMEOUT};
pub use pages::{Browser, decide_device, form_fields, json_of, jwt_claims};
