//! Keyport's integration tests: one binary, the real server on a free
//! loopback port, driven over HTTP.

mod support;

mod device_errors;
mod device_flow;
