//! The Argon2id limit for the password benchmark (`bench/run.sh --scenarios
//! password`): how many password checks one core does per second with
//! Keyport's own parameters, one at a time, as the server runs them. Prints
//! one JSON line: `{"checks", "seconds", "checks_per_s"}`.
//!
//! Usage: argon2_rate [--secs 5]

use std::time::Instant;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let secs: f64 = args
        .iter()
        .position(|a| a == "--secs")
        .and_then(|i| args.get(i + 1))
        .and_then(|s| s.parse().ok())
        .unwrap_or(5.0);
    let phc = keyport::domain::signin::hash_password("a benchmark password").expect("hash");
    let start = Instant::now();
    let mut checks = 0u64;
    while start.elapsed().as_secs_f64() < secs {
        assert!(keyport::domain::signin::check_password_hash(
            "a benchmark password",
            &phc
        ));
        checks += 1;
    }
    let seconds = start.elapsed().as_secs_f64();
    println!(
        "{{\"checks\": {checks}, \"seconds\": {seconds:.3}, \"checks_per_s\": {:.1}}}",
        checks as f64 / seconds
    );
}
