//! Tidy: structural rules of the workspace that the compiler cannot check, read from
//! `cargo metadata` (after TigerBeetle's tidy.zig). A forbidden dependency edge fails the build
//! here rather than in review.

use std::process::Command;

/// (crate, dependency it must never have, why)
const FORBIDDEN: &[(&str, &str, &str)] = &[
    ("sluice-core", "glommio", "core is pure: no executors"),
    ("sluice-core", "io-uring", "core is pure: no I/O"),
    ("sluice-core", "hyper", "core is pure: no sockets"),
    ("sluice-core", "tokio", "core is pure: no runtime"),
    ("sluice-core", "rkyv", "core knows no storage encoding"),
    ("sluice-core", "sluice-io", "edges point down: core <- io"),
    (
        "sluice-core",
        "sluice-protocols",
        "edges point down: core <- protocols",
    ),
    ("sluice-io", "hyper", "io knows no HTTP"),
    ("sluice-io", "h2", "io knows no HTTP"),
    ("sluice-io", "sonic-rs", "io knows no wire JSON"),
    (
        "sluice-io",
        "sluice-protocols",
        "edges point down: io <- protocols",
    ),
    (
        "sluice-protocols",
        "glommio",
        "protocols is a runtime-free codec",
    ),
    ("sluice-protocols", "io-uring", "protocols knows no storage"),
    (
        "sluice-protocols",
        "rkyv",
        "protocols knows no storage encoding",
    ),
];

fn metadata() -> serde_json::Value {
    let output = Command::new(env!("CARGO"))
        .args([
            "metadata",
            "--format-version",
            "1",
            "--no-deps",
            "--offline",
        ])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("cargo metadata runs");
    assert!(
        output.status.success(),
        "cargo metadata failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).expect("cargo metadata prints JSON")
}

#[test]
fn no_crate_has_a_forbidden_dependency_edge() {
    let meta = metadata();
    let packages = meta["packages"].as_array().expect("packages array");
    let mut violations = Vec::new();
    for (krate, dependency, why) in FORBIDDEN {
        let package = packages
            .iter()
            .find(|p| p["name"] == *krate)
            .unwrap_or_else(|| panic!("workspace has no package {krate}"));
        let has = package["dependencies"]
            .as_array()
            .expect("dependencies array")
            .iter()
            .any(|d| d["name"] == *dependency && d["kind"].is_null());
        if has {
            violations.push(format!("{krate} -> {dependency}: {why}"));
        }
    }
    assert!(
        violations.is_empty(),
        "forbidden edges:\n{}",
        violations.join("\n")
    );
}

#[test]
fn every_library_crate_opens_with_a_doc_saying_what_it_owns() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    for krate in ["core", "io", "protocols"] {
        let path = root.join(krate).join("src/lib.rs");
        let text = std::fs::read_to_string(&path).expect("lib.rs is readable");
        let first = text.lines().next().unwrap_or_default();
        assert!(
            first.starts_with("//! "),
            "{} must open with a //! doc",
            path.display()
        );
        assert!(
            text.contains("Must not") || text.contains("must not"),
            "{} must say what it must not touch",
            path.display()
        );
    }
}
