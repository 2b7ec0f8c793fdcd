//! Compiles the dashboard page and everything under `assets/static/` into
//! the binary (a table of `include_bytes!`), so the server works offline and
//! from any directory. Cargo re-runs this when anything under `assets/` changes.

use std::path::{Path, PathBuf};
use std::{env, fs};

fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if entry.file_name().to_string_lossy().starts_with('.') {
            continue;
        }
        if path.is_dir() {
            walk(&path, out);
        } else {
            out.push(path);
        }
    }
}

fn main() {
    let root = PathBuf::from(env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR")).join("assets");
    println!("cargo:rerun-if-changed={}", root.display());
    let static_dir = root.join("static");
    let mut files = Vec::new();
    walk(&static_dir, &mut files);
    files.sort();
    let mut code = String::from(
        "/// Files under `assets/static/`, by their path below it.\npub static STATIC_FILES: &[(&str, &[u8])] = &[\n",
    );
    for file in &files {
        let rel = file.strip_prefix(&static_dir).expect("walked below static/");
        let name = rel
            .components()
            .map(|c| c.as_os_str().to_string_lossy())
            .collect::<Vec<_>>()
            .join("/");
        code.push_str(&format!(
            "    ({name:?}, include_bytes!({:?})),\n",
            file.display().to_string()
        ));
    }
    code.push_str("];\n");
    code.push_str(&format!(
        "/// The dashboard page template.\npub static DASHBOARD_HTML: &str = include_str!({:?});\n",
        root.join("dashboard.html").display().to_string()
    ));
    let out = PathBuf::from(env::var("OUT_DIR").expect("cargo sets OUT_DIR")).join("assets.rs");
    fs::write(out, code).expect("writing assets.rs");
}
