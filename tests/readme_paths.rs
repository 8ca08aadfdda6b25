//! The README's map of the code ("where each behaviour lives", the layout
//! table) names files and folders that exist: a rename that forgets it
//! fails here. Paths outside the repository (`../shared/…`) are not
//! checked.

use std::path::Path;

#[test]
fn every_path_the_readme_names_exists() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let readme = std::fs::read_to_string(root.join("README.md")).unwrap();
    let mut checked = 0;
    let mut missing = Vec::new();
    for span in readme.split('`').skip(1).step_by(2) {
        let looks_like_path = !span.contains(' ')
            && !span.contains('<')
            && !span.contains('*')
            && !span.contains("://")
            && !span.starts_with("../")
            && (span.ends_with(".rs") || span.ends_with('/'))
            && span.contains('/');
        if !looks_like_path {
            continue;
        }
        checked += 1;
        if !root.join(span).exists() {
            missing.push(span.to_string());
        }
    }
    assert!(
        checked >= 30,
        "the README names the code's files ({checked} found)"
    );
    assert!(
        missing.is_empty(),
        "the README names paths that do not exist: {missing:?}"
    );
}
