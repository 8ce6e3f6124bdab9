//! Each layer crate depends only on the crate of the layer directly below it
//! (DESIGN.md, "Layers"), in every kind of dependency: normal, dev and build.

use std::collections::BTreeMap;
use std::process::Command;

/// The ustack crate each package may depend on, top to bottom.
const LAYERS: [(&str, Option<&str>); 5] = [
    ("ustack", Some("ustack-app")),
    ("ustack-app", Some("ustack-transport")),
    ("ustack-transport", Some("ustack-net")),
    ("ustack-net", Some("ustack-link")),
    ("ustack-link", None),
];

/// Workspace tools beside the layers, with the only ustack-or-smoltcp dependencies each
/// may have: the bench's reference peer uses smoltcp, which no layer may.
const TOOLS: [(&str, &[&str]); 1] = [("ustack-bench-peer", &["smoltcp"])];

fn workspace_dependencies() -> BTreeMap<String, Vec<String>> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let out = Command::new(cargo)
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
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let meta: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    meta["packages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            let deps = p["dependencies"]
                .as_array()
                .unwrap()
                .iter()
                .map(|d| d["name"].as_str().unwrap().to_string())
                .filter(|n| n.starts_with("ustack") || n == "smoltcp")
                .collect();
            (p["name"].as_str().unwrap().to_string(), deps)
        })
        .collect()
}

#[test]
fn every_layer_calls_only_the_layer_below() {
    let deps = workspace_dependencies();
    for (package, below) in LAYERS {
        let found = deps
            .get(package)
            .unwrap_or_else(|| panic!("package {package} missing"));
        let expected: Vec<String> = below.iter().map(|s| s.to_string()).collect();
        assert_eq!(
            found, &expected,
            "{package} must depend on {below:?} alone among ustack crates"
        );
    }
    for (package, allowed) in TOOLS {
        assert_eq!(
            deps.get(package)
                .unwrap_or_else(|| panic!("package {package} missing")),
            &allowed.iter().map(|s| s.to_string()).collect::<Vec<_>>(),
            "{package} must depend on {allowed:?} alone among ustack crates and smoltcp"
        );
    }
    assert_eq!(
        deps.len(),
        LAYERS.len() + TOOLS.len(),
        "unexpected workspace packages: {:?}",
        deps.keys()
    );
}
