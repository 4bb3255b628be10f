//! Build script: the git commit of the build, for `chat_build_info`.
//! A tree without git (a source tarball) builds too, with "unknown".

use std::process::Command;

fn main() {
    let commit = Command::new("git")
        .args(["rev-parse", "--short", "HEAD"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "unknown".to_owned());
    println!("cargo:rustc-env=GATRIX_GIT_COMMIT={commit}");
    // Rebuild when HEAD moves: HEAD itself and the branch it names
    // (`--git-path` finds them in a worktree too).
    let git = |args: &[&str]| {
        Command::new("git")
            .args(args)
            .output()
            .ok()
            .filter(|o| o.status.success())
            .and_then(|o| String::from_utf8(o.stdout).ok())
            .map(|s| s.trim().to_owned())
    };
    // Only paths that exist: cargo reruns a build script on every build
    // while a watched path is missing (a clone without packed-refs). A ref
    // that moves into packed-refs later is a watched file that goes away,
    // which reruns it too.
    for name in ["HEAD", "packed-refs"] {
        if let Some(path) = git(&["rev-parse", "--git-path", name])
            && std::path::Path::new(&path).exists()
        {
            println!("cargo:rerun-if-changed={path}");
        }
    }
    // A branch whose ref is only in packed-refs has no file yet: its
    // directory is watched instead (cargo scans a watched directory), so
    // the first commit, which writes the file, reruns it. Never above
    // refs/: .git itself changes on every git command.
    if let Some(branch) = git(&["symbolic-ref", "-q", "HEAD"])
        && let Some(path) = git(&["rev-parse", "--git-path", &branch])
        && let Some(existing) = std::path::Path::new(&path)
            .ancestors()
            .take_while(|p| !p.ends_with("refs"))
            .find(|p| p.exists())
    {
        println!("cargo:rerun-if-changed={}", existing.display());
    }
    println!("cargo:rerun-if-changed=build.rs");
}
