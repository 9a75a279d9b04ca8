//! Keyport's integration tests: one binary, the real server on a free
//! loopback port, driven over HTTP.

mod support;

mod agents;
mod api_v1;
mod audit;
mod backup;
mod bad_input;
mod binary;
mod browser;
mod browser_code;
mod browser_dashboard;
mod browser_two_step;
mod code_flow;
mod connections;
mod crash;
mod dashboard;
mod device_errors;
mod device_flow;
mod embed;
mod headless;
mod instances;
mod metrics;
mod native_tls;
mod oidc_clients;
mod pg;
mod profiles;
mod resource;
mod retention;
mod review;
mod rotation;
mod sqlos;
mod third_party;
mod tidy;
mod tls;
mod two_step;
