//! build.rs watches only paths that exist: cargo treats a watched path
//! that is missing as changed, so one missing file (`.git/packed-refs` in a
//! fresh clone) made every `cargo build` and `cargo run --release` rerun the
//! build script and rebuild the crate and every test target.

use std::path::Path;

#[test]
fn every_path_the_build_script_watches_exists() {
    // The build script's output sits next to its OUT_DIR.
    let out_dir = Path::new(env!("OUT_DIR"));
    let output = std::fs::read_to_string(
        out_dir
            .parent()
            .expect("OUT_DIR has a parent")
            .join("output"),
    )
    .expect("read the build script's output");
    let watched: Vec<&str> = output
        .lines()
        .filter_map(|l| l.strip_prefix("cargo:rerun-if-changed="))
        .collect();
    assert!(watched.contains(&"build.rs"), "{output}");
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    for path in &watched {
        // Relative paths are relative to the package root, as cargo reads them.
        assert!(
            root.join(path).exists(),
            "{path} is watched but missing:\n{output}"
        );
    }
    // In a git checkout HEAD is watched, so a commit updates the build's
    // commit label (a source tarball has no .git and builds "unknown").
    if root.join(".git").exists() {
        assert!(watched.iter().any(|p| p.ends_with("HEAD")), "{output}");
    }
}
