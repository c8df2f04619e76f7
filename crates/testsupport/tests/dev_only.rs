//! banger-testsupport stays a dev-dependency: no binary or library of the
//! workspace links it.

use std::path::Path;

#[test]
fn only_dev_dependencies_name_testsupport() {
    let crates = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    let mut checked = 0;
    for entry in std::fs::read_dir(crates).unwrap() {
        let manifest = entry.unwrap().path().join("Cargo.toml");
        let Ok(text) = std::fs::read_to_string(&manifest) else {
            continue;
        };
        checked += 1;
        let mut section = String::new();
        for line in text.lines().map(str::trim) {
            if line.starts_with('[') {
                section = line.to_string();
            } else if line.starts_with("banger-testsupport") {
                assert!(
                    section.ends_with("dev-dependencies]"),
                    "{}: banger-testsupport under {section}; it is for tests only ([dev-dependencies])",
                    manifest.display()
                );
            }
        }
    }
    assert!(
        checked > 10,
        "read only {checked} manifests under {}",
        crates.display()
    );
}
