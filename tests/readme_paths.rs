//! The README's and the docs' maps of the code ("where each behaviour
//! lives", the layout table) name files and folders that exist: a rename
//! that forgets them fails here. Every `docs/*.md` is read beside
//! `README.md`. Paths outside the repository (`../shared/…`) are not
//! checked.

use std::path::{Path, PathBuf};

/// `README.md`, then every `docs/*.md` in name order.
fn documents(root: &Path) -> Vec<PathBuf> {
    let mut pages: Vec<PathBuf> = std::fs::read_dir(root.join("docs"))
        .expect("docs/ can be read")
        .map(|entry| entry.expect("a docs/ entry").path())
        .filter(|path| path.extension().and_then(|ext| ext.to_str()) == Some("md"))
        .collect();
    pages.sort();
    let mut documents = vec![root.join("README.md")];
    documents.extend(pages);
    documents
}

/// Whether a backticked span names a file or folder of the repository.
fn looks_like_path(span: &str) -> bool {
    !span.contains(' ')
        && !span.contains('<')
        && !span.contains('*')
        && !span.contains("://")
        && !span.starts_with("../")
        && (span.ends_with(".rs") || span.ends_with('/'))
        && span.contains('/')
}

#[test]
fn every_path_the_readme_and_docs_name_exists() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut checked = 0;
    let mut missing = Vec::new();
    for document in documents(root) {
        let text = std::fs::read_to_string(&document)
            .unwrap_or_else(|e| panic!("cannot read {}: {e}", document.display()));
        let name = document
            .strip_prefix(root)
            .unwrap_or(&document)
            .display()
            .to_string();
        for span in text.split('`').skip(1).step_by(2) {
            if !looks_like_path(span) {
                continue;
            }
            checked += 1;
            if !root.join(span).exists() {
                missing.push(format!("{name}: {span}"));
            }
        }
    }
    assert!(
        checked >= 30,
        "the README and docs/ name the code's files ({checked} found)"
    );
    assert!(
        missing.is_empty(),
        "the README and docs/ name paths that do not exist: {missing:?}"
    );
}
