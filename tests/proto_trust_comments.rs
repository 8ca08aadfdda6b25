//! The `.proto` comments (which `grpcurl describe` shows) state the trust
//! model the services apply: a caller is proven by a credential the service
//! verifies itself (the user's access token, a component's service token),
//! never by a header that names a user or a role. A comment that points
//! client authors at such a header fails here.

use std::path::{Path, PathBuf};

/// Headers no service takes as identity.
const IDENTITY_HEADERS: [&str; 2] = ["x-user-id", "x-user-roles"];

/// Every `.proto` file under `dir`, at any depth.
fn proto_files(dir: &Path, found: &mut Vec<PathBuf>) {
    let entries =
        std::fs::read_dir(dir).unwrap_or_else(|e| panic!("cannot read {}: {e}", dir.display()));
    for entry in entries {
        let path = entry.expect("a directory entry").path();
        if path.is_dir() {
            proto_files(&path, found);
        } else if path.extension().and_then(|ext| ext.to_str()) == Some("proto") {
            found.push(path);
        }
    }
}

#[test]
fn proto_comments_name_no_header_as_identity() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files = Vec::new();
    proto_files(&root.join("proto"), &mut files);
    files.sort();
    let mut wrong = Vec::new();
    for file in &files {
        let text = std::fs::read_to_string(file)
            .unwrap_or_else(|e| panic!("cannot read {}: {e}", file.display()));
        let name = file
            .strip_prefix(root)
            .unwrap_or(file)
            .display()
            .to_string();
        for (index, line) in text.lines().enumerate() {
            let lower = line.to_ascii_lowercase();
            if IDENTITY_HEADERS.iter().any(|header| lower.contains(header)) {
                wrong.push(format!("{name}:{}: {}", index + 1, line.trim()));
            }
        }
    }
    assert!(
        files.len() >= 8,
        "expected the service contracts under proto/ ({} .proto files found)",
        files.len()
    );
    assert!(
        wrong.is_empty(),
        "these lines name a header as where identity comes from; services \
         verify the access token and the service token instead:\n{}",
        wrong.join("\n")
    );
}
