//! Repository paths an import may name, and the resolution of those
//! candidates against the paths that exist.

use std::collections::HashSet;

use crate::Import;

/// Set each import's `target` to its first candidate among `known_paths`
/// (the repository's files, `/`-separated, no leading `/`), or `None`.
///
/// Kept apart from [`crate::analyze`] so that analysing a file needs only
/// the file: the set of paths belongs to a version of the whole tree, and a
/// caller can resolve again when the tree changes without parsing anew.
pub fn resolve_imports(imports: &mut [Import], known_paths: &HashSet<String>) {
    for import in imports {
        import.target = import
            .candidates
            .iter()
            .find(|c| known_paths.contains(c.as_str()))
            .cloned();
    }
}

/// The directory of a path, `""` at the root.
pub(crate) fn dir_of(path: &str) -> &str {
    path.rsplit_once('/').map_or("", |(d, _)| d)
}

/// `dir/rel` with `.` and `..` folded; `None` when `..` climbs above the
/// repository.
pub(crate) fn join_relative(dir: &str, rel: &str) -> Option<String> {
    let mut parts: Vec<&str> = dir.split('/').filter(|p| !p.is_empty()).collect();
    for part in rel.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                parts.pop()?;
            }
            p => parts.push(p),
        }
    }
    Some(parts.join("/"))
}

/// `dir/name`, or `name` at the root.
pub(crate) fn under(dir: &str, name: &str) -> String {
    if dir.is_empty() {
        name.to_string()
    } else {
        format!("{dir}/{name}")
    }
}

/// JS/TS: a relative specifier's files, in the order bundlers try them.
pub(crate) fn js_candidates(path: &str, spec: &str) -> Vec<String> {
    if !(spec.starts_with("./") || spec.starts_with("../") || spec == "." || spec == "..") {
        return Vec::new();
    }
    let Some(base) = join_relative(dir_of(path), spec) else {
        return Vec::new();
    };
    const EXTS: &[&str] = &[".ts", ".tsx", ".d.ts", ".js", ".jsx", ".mjs", ".cjs"];
    let name = base.rsplit('/').next().unwrap_or(&base);
    let mut out = Vec::new();
    if let Some((stem, ext)) = name.rsplit_once('.') {
        if !stem.is_empty() {
            out.push(base.clone());
            // TypeScript's ESM convention: `./x.js` names the file that
            // compiles to it.
            if matches!(ext, "js" | "jsx" | "mjs" | "cjs") {
                let stem_path = &base[..base.len() - ext.len() - 1];
                out.push(format!("{stem_path}.ts"));
                out.push(format!("{stem_path}.tsx"));
            }
            if matches!(
                ext,
                "ts" | "tsx" | "js" | "jsx" | "mjs" | "cjs" | "json" | "css"
            ) {
                return out;
            }
        }
    }
    out.extend(EXTS.iter().map(|e| format!("{base}{e}")));
    out.extend(
        ["index.ts", "index.tsx", "index.js", "index.jsx"]
            .iter()
            .map(|i| under(&base, i)),
    );
    out
}

/// Python: a module's files; `dots` is the number of leading dots (0 for
/// an absolute import), `module` the dotted rest.
pub(crate) fn python_candidates(path: &str, dots: usize, module: &str) -> Vec<String> {
    let rel = module.replace('.', "/");
    let bases: Vec<String> = if dots == 0 {
        vec![String::new(), "src".to_string()]
    } else {
        let mut dir = dir_of(path).to_string();
        for _ in 1..dots {
            match dir.rsplit_once('/') {
                Some((up, _)) => dir = up.to_string(),
                None if !dir.is_empty() => dir.clear(),
                None => return Vec::new(),
            }
        }
        vec![dir]
    };
    let mut out = Vec::new();
    for base in &bases {
        if rel.is_empty() {
            out.push(under(base, "__init__.py"));
        } else {
            out.push(under(base, &format!("{rel}.py")));
            out.push(under(base, &format!("{rel}/__init__.py")));
        }
    }
    out
}

/// Rust: the directory that holds a module file's submodules
/// (`src/lib.rs` → `src`, `src/store.rs` → `src/store`).
pub(crate) fn rust_module_dir(path: &str) -> String {
    let dir = dir_of(path);
    let name = path.rsplit('/').next().unwrap_or(path);
    match name {
        "lib.rs" | "main.rs" | "mod.rs" => dir.to_string(),
        _ => under(dir, name.strip_suffix(".rs").unwrap_or(name)),
    }
}

/// Rust: `mod name;` in `path`.
pub(crate) fn rust_mod_candidates(path: &str, name: &str) -> Vec<String> {
    let dir = rust_module_dir(path);
    vec![
        under(&dir, &format!("{name}.rs")),
        under(&dir, &format!("{name}/mod.rs")),
    ]
}

/// Rust: a `use` path that starts at this crate (`crate::`, `self::`,
/// `super::`): the module files of its longest prefixes first. The crate
/// root is the nearest `src` directory above the file.
pub(crate) fn rust_use_candidates(path: &str, use_path: &str) -> Vec<String> {
    let mut segments: Vec<&str> = use_path.split("::").map(str::trim).collect();
    let mut base = match segments.first() {
        Some(&"crate") => {
            let dir = dir_of(path);
            let mut parts: Vec<&str> = dir.split('/').collect();
            match parts.iter().rposition(|p| *p == "src") {
                Some(i) => {
                    parts.truncate(i + 1);
                    parts.join("/")
                }
                None => dir.to_string(),
            }
        }
        Some(&"self") => rust_module_dir(path),
        Some(&"super") => rust_module_dir(path),
        _ => return Vec::new(),
    };
    let first = segments.remove(0);
    if first == "super" {
        base = dir_of(&base).to_string();
        while segments.first() == Some(&"super") {
            segments.remove(0);
            base = dir_of(&base).to_string();
        }
    }
    segments.retain(|s| *s != "*" && *s != "self" && !s.is_empty());
    let mut out = Vec::new();
    for n in (1..=segments.len()).rev() {
        let rel = segments[..n].join("/");
        out.push(under(&base, &format!("{rel}.rs")));
        out.push(under(&base, &format!("{rel}/mod.rs")));
    }
    out
}

/// C/C++: `#include "x.h"` is looked up beside the file first, then from
/// the root and `include/`; `<x.h>` only from the root and `include/`.
pub(crate) fn include_candidates(path: &str, header: &str, quoted: bool) -> Vec<String> {
    let mut out = Vec::new();
    if quoted {
        if let Some(p) = join_relative(dir_of(path), header) {
            out.push(p);
        }
    }
    if let Some(p) = join_relative("", header) {
        out.push(p);
    }
    if let Some(p) = join_relative("include", header) {
        out.push(p);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative_paths_fold_dots_and_refuse_to_climb_out() {
        assert_eq!(
            join_relative("web/src", "../lib/x").as_deref(),
            Some("web/lib/x")
        );
        assert_eq!(join_relative("", "../x"), None);
    }

    #[test]
    fn rust_uses_map_to_module_files() {
        assert_eq!(
            rust_use_candidates("crates/a/src/store/mod.rs", "super::util::f"),
            vec![
                "crates/a/src/util/f.rs",
                "crates/a/src/util/f/mod.rs",
                "crates/a/src/util.rs",
                "crates/a/src/util/mod.rs"
            ]
        );
        assert!(rust_use_candidates("src/lib.rs", "std::fmt").is_empty());
    }
}
