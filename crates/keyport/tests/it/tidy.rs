//! The architecture's invariants, checked on the source: the domain knows
//! nothing of HTTP or SQL, and pages and the HTTP layer reach storage only
//! through domain operations.

use std::path::{Path, PathBuf};

fn sources(dir: &str) -> Vec<(PathBuf, String)> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src").join(dir);
    let mut files = Vec::new();
    let mut pending = vec![root];
    while let Some(dir) = pending.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                pending.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                let text = std::fs::read_to_string(&path).unwrap();
                files.push((path, text));
            }
        }
    }
    assert!(!files.is_empty(), "no sources under src/{dir}");
    files
}

fn offenders(dir: &str, forbidden: &[&str]) -> Vec<String> {
    let mut found = Vec::new();
    for (path, text) in sources(dir) {
        for (n, line) in text.lines().enumerate() {
            let code = line.split("//").next().unwrap_or("");
            for word in forbidden {
                if code.contains(word) {
                    found.push(format!("{}:{}: {}", path.display(), n + 1, line.trim()));
                }
            }
        }
    }
    found
}

#[test]
fn the_domain_imports_neither_axum_nor_sqlx() {
    let found = offenders("domain", &["axum", "sqlx"]);
    assert!(found.is_empty(), "{}", found.join("\n"));
}

#[test]
fn pages_and_http_reach_storage_only_through_the_domain() {
    for dir in ["pages", "http"] {
        let found = offenders(
            dir,
            &[
                ".store.",
                ".store()",
                "store::directory",
                "store::sessions",
                "store::clients",
                "store::device",
                "store::codes",
            ],
        );
        assert!(found.is_empty(), "{}", found.join("\n"));
    }
}

#[test]
fn grant_types_are_never_compared_as_strings_past_the_edge() {
    let found = offenders(
        "domain",
        &[
            "== \"refresh_token\"",
            "== \"client_credentials\"",
            "== \"authorization_code\"",
            "== DEVICE_CODE_GRANT",
        ],
    );
    assert!(found.is_empty(), "{}", found.join("\n"));
}
