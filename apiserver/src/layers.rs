//! The layers of the server's modules, written once, and the test that
//! holds the code to them (in the manner of rust-analyzer's `tidy.rs`):
//! it reads every source file of the crate, collects the `crate::`,
//! `super::` and `self::` paths it uses, and fails when a module uses one
//! of its own layer or a higher one, naming the file, the line and both
//! layers.
//!
//! Test code (a `tests.rs` file, or an inline `#[cfg(test)] mod tests` to
//! the end of its file) may use any layer: a test of the write rules, for
//! instance, checks the `Status` their errors become in `api`.

use std::{
    fmt::Write as _,
    path::{Path, PathBuf},
};

/// The crate's top-level modules by layer, lowest first. A module uses
/// only modules of lower layers; the modules of one layer do not use one
/// another. The crate root (`lib.rs`, `main.rs`) wires them all and is in
/// no layer; nothing uses its items.
const LAYERS: &[&[&str]] = &[
    // Bytes at rest; what a request asks for; HTTP bodies; certificates.
    &["storage", "request", "body", "tls"],
    // The wire `Status`; metrics (and the metered store); the watch
    // caches; kubeconfig files (issued by the local CA).
    &["status", "metrics", "cache", "kubeconfig"],
    // The pure write rules; authentication and authorization.
    &["rules", "auth"],
    // What handlers and the controller share.
    &["state"],
    // The REST API and the policy controller, which never call each other.
    &["api", "controller"],
    // Connections, health, shutdown.
    &["server"],
    // Flags into a checked `Config`.
    &["config"],
];

/// Files of the crate root, in no layer.
const ROOT_FILES: &[&str] = &["lib.rs", "main.rs", "layers.rs"];

/// The layer of a top-level module, counted from 1 (as ARCHITECTURE.md
/// lists them).
fn layer_of(module: &str) -> Option<usize> {
    LAYERS
        .iter()
        .position(|layer| layer.contains(&module))
        .map(|index| index + 1)
}

/// One use of another module: where, and the path as written.
#[derive(Debug, PartialEq, Eq)]
struct Use {
    line: usize,
    path: String,
    /// The module path it resolves to (without `crate`).
    target: Vec<String>,
}

/// Every `crate::`/`super::`/`self::` path the non-test code of a file
/// uses, resolved from `module` (the file's module path).
fn uses(source: &str, module: &[String]) -> Vec<Use> {
    let code = strip(non_test(source));
    let mut found = Vec::new();
    let mut rest_start = 0;
    let mut outside = String::new();
    // `use` declarations, expanded into one path per leaf.
    let bytes = code.as_bytes();
    let mut index = 0;
    while let Some(offset) = code[index..].find("use ") {
        let start = index + offset;
        let word_start = start == 0 || !is_ident(bytes[start - 1]);
        let Some(end) = code[start..].find(';').map(|end| start + end) else {
            break;
        };
        if !word_start {
            index = start + 4;
            continue;
        }
        outside.push_str(&code[rest_start..start]);
        // Blanked, newlines kept: lines found later stay right.
        outside.extend(
            code[start..end]
                .chars()
                .map(|c| if c == '\n' { '\n' } else { ' ' }),
        );
        rest_start = end;
        let mut leaves = Vec::new();
        expand(
            &code[start + 4..end],
            start + 4,
            &mut Vec::new(),
            &mut leaves,
        );
        for (mut segments, at) in leaves {
            if let Some(target) = resolve(&segments, module) {
                // `a::{self, b}`: the `self` leaf is `a` itself.
                if segments.last().is_some_and(|last| last == "self") {
                    segments.pop();
                }
                found.push(Use {
                    line: line_of(&code, at),
                    path: segments.join("::"),
                    target,
                });
            }
        }
        index = end;
    }
    outside.push_str(&code[rest_start..]);
    // Paths elsewhere in the code.
    for prefix in ["crate::", "super::", "self::"] {
        let mut index = 0;
        while let Some(offset) = outside[index..].find(prefix) {
            let start = index + offset;
            index = start + prefix.len();
            if start > 0
                && (is_ident(outside.as_bytes()[start - 1]) || &outside[start - 1..start] == ":")
            {
                continue;
            }
            let end = outside[start..]
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == ':'))
                .map_or(outside.len(), |end| start + end);
            let segments: Vec<String> = outside[start..end]
                .split("::")
                .filter(|segment| !segment.is_empty())
                .map(str::to_owned)
                .collect();
            if let Some(target) = resolve(&segments, module) {
                found.push(Use {
                    line: line_of(&outside, start),
                    path: segments.join("::"),
                    target,
                });
            }
        }
    }
    found.sort_by_key(|found| found.line);
    found
}

fn is_ident(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || byte == b'_'
}

fn line_of(text: &str, at: usize) -> usize {
    text[..at].matches('\n').count() + 1
}

/// The code before an inline `#[cfg(test)] mod tests {` (tests are at
/// the end of a file).
fn non_test(source: &str) -> &str {
    let mut offset = 0;
    let mut lines = source.split_inclusive('\n').peekable();
    while let Some(line) = lines.next() {
        if line.trim() == "#[cfg(test)]"
            && lines.peek().is_some_and(|next| {
                next.trim_start().starts_with("mod ") && next.trim_end().ends_with('{')
            })
        {
            return &source[..offset];
        }
        offset += line.len();
    }
    source
}

/// `source` with comments, string and character literals blanked
/// (newlines kept, so that offsets still give lines).
fn strip(source: &str) -> String {
    let mut out = String::with_capacity(source.len());
    let mut chars = source.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            // A character literal ('"', '\''), not a lifetime ('a).
            '\'' => {
                out.push(' ');
                let mut ahead = chars.clone();
                let literal = match ahead.next() {
                    Some('\\') => true,
                    Some(_) => ahead.next() == Some('\''),
                    None => false,
                };
                if literal {
                    let mut escaped = false;
                    for c in chars.by_ref() {
                        out.push(' ');
                        match c {
                            '\\' if !escaped => escaped = true,
                            '\'' if !escaped => break,
                            _ => escaped = false,
                        }
                    }
                }
            }
            '/' if chars.peek() == Some(&'/') => {
                for c in chars.by_ref() {
                    if c == '\n' {
                        out.push('\n');
                        break;
                    }
                }
            }
            '"' => {
                out.push(' ');
                let mut escaped = false;
                for c in chars.by_ref() {
                    out.push(if c == '\n' { '\n' } else { ' ' });
                    match c {
                        '\\' if !escaped => escaped = true,
                        '"' if !escaped => break,
                        _ => escaped = false,
                    }
                }
            }
            c => out.push(c),
        }
    }
    out
}

/// Expands a use tree (`a::{b, c::d}`) starting at byte `at` of the file
/// into its leaves, each with the offset of its last segment.
fn expand(tree: &str, at: usize, prefix: &mut Vec<String>, leaves: &mut Vec<(Vec<String>, usize)>) {
    let depth = prefix.len();
    let mut segment_start = None;
    let mut last_at = at;
    let mut index = 0;
    let bytes = tree.as_bytes();
    while index < bytes.len() {
        let byte = bytes[index];
        if is_ident(byte) {
            if segment_start.is_none() {
                segment_start = Some(index);
            }
            index += 1;
            continue;
        }
        if let Some(start) = segment_start.take() {
            prefix.push(tree[start..index].to_owned());
            last_at = at + start;
        }
        match byte {
            b'{' => {
                let close = matching_brace(tree, index);
                for (item_start, item) in split_top_level(&tree[index + 1..close]) {
                    expand(item, at + index + 1 + item_start, prefix, leaves);
                }
                prefix.truncate(depth);
                return;
            }
            b' ' | b'\n' | b'\t' if tree[index..].trim_start().starts_with("as ") => {
                break;
            }
            _ => {}
        }
        index += 1;
    }
    if let Some(start) = segment_start {
        prefix.push(tree[start..].trim().to_owned());
        last_at = at + start;
    }
    if prefix.len() > depth || !prefix.is_empty() {
        leaves.push((prefix.clone(), last_at));
    }
    prefix.truncate(depth);
}

fn matching_brace(text: &str, open: usize) -> usize {
    let mut depth = 0;
    for (index, byte) in text.bytes().enumerate().skip(open) {
        match byte {
            b'{' => depth += 1,
            b'}' => {
                depth -= 1;
                if depth == 0 {
                    return index;
                }
            }
            _ => {}
        }
    }
    text.len()
}

/// The comma-separated items of a brace group, with their offsets.
fn split_top_level(text: &str) -> Vec<(usize, &str)> {
    let mut items = Vec::new();
    let mut depth = 0;
    let mut start = 0;
    for (index, byte) in text.bytes().enumerate() {
        match byte {
            b'{' => depth += 1,
            b'}' => depth -= 1,
            b',' if depth == 0 => {
                items.push((start, &text[start..index]));
                start = index + 1;
            }
            _ => {}
        }
    }
    items.push((start, &text[start..]));
    items
        .into_iter()
        .filter(|(_, item)| !item.trim().is_empty())
        .collect()
}

/// The module path (from the crate root) a path names, if it starts with
/// `crate`, `super` or `self`.
fn resolve(segments: &[String], module: &[String]) -> Option<Vec<String>> {
    let (first, rest) = segments.split_first()?;
    let mut base = match first.as_str() {
        "crate" => Vec::new(),
        "self" => module.to_vec(),
        "super" => module[..module.len().checked_sub(1)?].to_vec(),
        _ => return None,
    };
    let mut rest = rest.iter().peekable();
    while rest.peek().is_some_and(|segment| *segment == "super") {
        rest.next();
        base.pop();
    }
    base.extend(rest.filter(|segment| *segment != "self").cloned());
    Some(base)
}

/// The module path of a source file (`api/rest.rs` → `api::rest`).
fn module_of(relative: &Path) -> Vec<String> {
    let mut module: Vec<String> = relative
        .iter()
        .map(|part| part.to_string_lossy().trim_end_matches(".rs").to_owned())
        .collect();
    if module
        .last()
        .is_some_and(|last| last == "mod" || last == "lib" || last == "main")
    {
        module.pop();
    }
    module
}

fn is_test_file(relative: &Path) -> bool {
    relative.file_name().is_some_and(|name| name == "tests.rs")
}

fn source_files(dir: &Path, files: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            source_files(&path, files);
        } else if path.extension().is_some_and(|ext| ext == "rs") {
            files.push(path);
        }
    }
}

/// Every use of a module of the same or a higher layer under `src`, one
/// line each.
fn violations(src: &Path) -> Vec<String> {
    let mut files = Vec::new();
    source_files(src, &mut files);
    files.sort();
    let mut problems = Vec::new();
    for file in files {
        let relative = file.strip_prefix(src).unwrap_or(&file);
        let shown = Path::new("apiserver/src").join(relative);
        if ROOT_FILES.iter().any(|root| relative == Path::new(root)) || is_test_file(relative) {
            continue;
        }
        let module = module_of(relative);
        let Some(top) = module.first() else { continue };
        let Some(layer) = layer_of(top) else {
            problems.push(format!(
                "{}: module `{top}` is in no layer: add it to `LAYERS` in apiserver/src/layers.rs",
                shown.display()
            ));
            continue;
        };
        let Ok(source) = std::fs::read_to_string(&file) else {
            problems.push(format!("{}: unreadable", shown.display()));
            continue;
        };
        for used in uses(&source, &module) {
            let Some(target) = used.target.first() else {
                continue;
            };
            if target == top {
                continue;
            }
            let problem = match layer_of(target) {
                Some(target_layer) if target_layer < layer => continue,
                Some(target_layer) => format!(
                    "`{top}` (layer {layer}) uses `{target}` (layer {target_layer}{})",
                    if target_layer == layer {
                        ", the same"
                    } else {
                        ""
                    }
                ),
                None => format!("`{top}` (layer {layer}) uses the crate root's `{target}`"),
            };
            problems.push(format!(
                "{}:{}: {problem}: `{}`",
                shown.display(),
                used.line,
                used.path
            ));
        }
    }
    problems
}

#[test]
fn lower_layers_do_not_use_higher_ones() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let problems = violations(&src);
    let mut message = String::new();
    for problem in &problems {
        let _ = writeln!(message, "{problem}");
    }
    assert!(
        problems.is_empty(),
        "modules use their own layer or a higher one (LAYERS in apiserver/src/layers.rs):\n{message}"
    );
}

#[test]
fn uses_are_found_and_resolved() {
    let module = vec!["api".to_owned(), "rest".to_owned()];
    let source = r#"//! crate::server in a doc comment is no use.
use super::{
    codec::{self, Encoding},
    error::ApiError,
};
use crate::{auth::authorize::Obligation, state::AppState as State};
pub use crate::request::Verb;

fn f() {
    let _ = "crate::config in a string";
    crate::storage::open();
    super::super::lib_item();
}

#[cfg(test)]
mod tests {
    use crate::server::Listening;
}
"#;
    let found: Vec<(usize, String)> = uses(source, &module)
        .into_iter()
        .map(|used| (used.line, used.target.join("::")))
        .collect();
    assert_eq!(
        found,
        [
            (3, "api::codec".to_owned()),
            (3, "api::codec::Encoding".to_owned()),
            (4, "api::error::ApiError".to_owned()),
            (6, "auth::authorize::Obligation".to_owned()),
            (6, "state::AppState".to_owned()),
            (7, "request::Verb".to_owned()),
            (11, "storage::open".to_owned()),
            (12, "lib_item".to_owned()),
        ]
    );
}

#[test]
fn every_module_is_in_one_layer() {
    let mut seen = Vec::new();
    for module in LAYERS.iter().flat_map(|layer| layer.iter()) {
        assert!(!seen.contains(module), "`{module}` is in two layers");
        seen.push(module);
    }
}
