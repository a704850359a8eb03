//! Checks of the nmpolicy parts of a policy: capture expressions (parsed by
//! the `nmstate` crate's policy engine), references between captures, and
//! `{{ capture.<name>.<path> }}` templates in the desired state.
//!
//! A templated desired state cannot be typed before a node's captures are
//! known. What can be checked without a node is: every template parses (by
//! nmstate's own parser), names a defined capture and a property path, and
//! the parts of the document without templates type-check.
//!
//! nmstate exposes no parser for a single template, only
//! `NetworkStateTemplate::fill_with_captured_data`. Filling with *no*
//! captures stops every template right after parsing, at the capture lookup,
//! with `Failed to find capture <name>`; any other policy error is a syntax
//! error. That is how syntax and references are told apart without
//! re-implementing nmstate's tokenizer.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};

use nmstate::{ErrorKind, NetworkCaptureRules, NetworkStateTemplate, NmstateError};
use serde_json::Value;

use super::{FieldError, FieldPath, network};
use crate::State;

/// Characters that end a token in nmpolicy expressions and templates, so a
/// capture whose name holds one can never be referred to.
const CAPTURE_NAME_FORBIDDEN: [char; 9] = ['.', '|', '=', '!', ':', '"', '{', '}', ' '];
const CAPTURE_NAME_MESSAGE: &str =
    "a capture name must not contain whitespace or any of '.', '|', '=', '!', ':', '\"', '{', '}'";
const NOT_FOUND_PREFIX: &str = "Failed to find capture ";
const REFERENCE_FORMAT_MESSAGE: &str = "Invalid capture reference string, should be in the format capture.<capture_name>.<property_path>";

/// Whether `state` holds a capture template (a string containing `{{` or
/// `}}`). Such a state is rendered per node by nmstate's template engine; a
/// state without one is used as it is (nmstate's engine would reject a lone
/// brace that a plain state may well contain, e.g. in a description).
pub fn desired_state_has_templates(state: &State) -> bool {
    has_templates(&state.0)
}

fn has_templates(value: &Value) -> bool {
    match value {
        Value::String(text) => text.contains("{{") || text.contains("}}"),
        Value::Array(items) => items.iter().any(has_templates),
        Value::Object(object) => object.values().any(has_templates),
        _ => false,
    }
}

/// Checks capture names and expressions, references to undefined captures
/// and reference cycles. Errors are at `<path>[<name>]`.
pub(crate) fn validate_captures(
    captures: &BTreeMap<String, String>,
    path: &FieldPath,
) -> Vec<FieldError> {
    let mut errors = Vec::new();
    let mut dependencies: BTreeMap<&str, BTreeSet<String>> = BTreeMap::new();
    for (name, expression) in captures {
        let entry = path.key(name);
        if name.is_empty() {
            errors.push(FieldError::required(
                entry.as_str(),
                "capture name must not be empty",
            ));
        } else if name.contains(|c: char| c.is_whitespace() || CAPTURE_NAME_FORBIDDEN.contains(&c))
        {
            errors.push(FieldError::invalid(
                entry.as_str(),
                name.as_str(),
                CAPTURE_NAME_MESSAGE,
            ));
        }
        let mut one = serde_json::Map::new();
        one.insert(name.clone(), Value::String(expression.clone()));
        if let Err(error) = serde_json::from_value::<NetworkCaptureRules>(Value::Object(one)) {
            errors.push(FieldError::invalid(
                entry.as_str(),
                expression.as_str(),
                error.to_string(),
            ));
            continue;
        }
        let line = normalise(expression);
        let mut references = BTreeSet::new();
        for (reference, position) in capture_references(expression) {
            if captures.contains_key(&reference) {
                references.insert(reference);
            } else {
                // nmstate's own runtime message, with its caret.
                let error = NmstateError::new_policy_error(
                    format!("Capture {reference} not found"),
                    &line,
                    position,
                );
                errors.push(FieldError::invalid(
                    entry.as_str(),
                    expression.as_str(),
                    error.to_string(),
                ));
            }
        }
        dependencies.insert(name.as_str(), references);
    }
    errors.extend(cycles(&dependencies).into_iter().map(|cycle| {
        let first = cycle[0].as_str();
        FieldError::invalid(
            path.key(first).as_str(),
            captures.get(first).map(String::as_str).unwrap_or_default(),
            format!("capture dependency cycle: {}", cycle.join(" -> ")),
        )
    }));
    errors
}

/// How nmstate cleans an expression before tokenising it; positions refer
/// to this form.
fn normalise(expression: &str) -> String {
    expression.trim().replace('\u{A0}', " ").trim().to_owned()
}

/// The captures an nmpolicy expression refers to (`capture.<name>...`), with
/// the byte position of each name in the normalised expression. Follows
/// nmstate's tokenizer: tokens end at space, `=`, `!`, `|`, `"` and `:`,
/// and quoted strings are values.
pub fn capture_references(expression: &str) -> Vec<(String, usize)> {
    const TOKEN_END: [char; 6] = [' ', '=', '!', '|', '"', ':'];
    let line = normalise(expression);
    let mut references = Vec::new();
    let mut chars = line.char_indices().peekable();
    while let Some((start, c)) = chars.next() {
        if c == '"' {
            for (_, c) in chars.by_ref() {
                if c == '"' {
                    break;
                }
            }
            continue;
        }
        if c.is_whitespace() || TOKEN_END.contains(&c) {
            continue;
        }
        let mut end = start + c.len_utf8();
        while let Some((index, c)) = chars.peek().copied() {
            if TOKEN_END.contains(&c) {
                break;
            }
            end = index + c.len_utf8();
            chars.next();
        }
        let block = line[start..end].trim();
        let offset = start + (line[start..end].len() - line[start..end].trim_start().len());
        let mut parts = block.split('.');
        if block.contains('.')
            && parts.next() == Some("capture")
            && let Some(name) = parts.next().filter(|name| !name.is_empty())
        {
            references.push((name.to_owned(), offset + "capture.".len()));
        }
    }
    references
}

/// Every reference cycle, each as `[a, b, ..., a]` starting at its
/// alphabetically first member, reported once.
fn cycles(dependencies: &BTreeMap<&str, BTreeSet<String>>) -> Vec<Vec<String>> {
    let mut found: Vec<Vec<String>> = Vec::new();
    for start in dependencies.keys() {
        if found
            .iter()
            .any(|cycle| cycle.iter().any(|member| member == start))
        {
            continue;
        }
        if let Some(cycle) = path_back_to(dependencies, start) {
            // Only report a cycle from its smallest member, so each cycle
            // appears once however the search reaches it.
            if cycle.iter().all(|member| member.as_str() >= *start) {
                found.push(cycle);
            }
        }
    }
    found
}

/// The shortest chain of references from `start` back to itself.
fn path_back_to<'a>(
    dependencies: &'a BTreeMap<&'a str, BTreeSet<String>>,
    start: &'a str,
) -> Option<Vec<String>> {
    let mut previous: HashMap<&str, &str> = HashMap::new();
    let mut queue = VecDeque::from([start]);
    while let Some(current) = queue.pop_front() {
        for next in dependencies.get(current).into_iter().flatten() {
            let next = next.as_str();
            if next == start {
                let mut chain = vec![current];
                let mut at = current;
                while at != start {
                    let Some(before) = previous.get(at) else {
                        break;
                    };
                    at = before;
                    chain.push(at);
                }
                chain.reverse();
                chain.push(start);
                return Some(chain.into_iter().map(str::to_owned).collect());
            }
            if !previous.contains_key(next) && dependencies.contains_key(next) {
                previous.insert(next, current);
                queue.push_back(next);
            }
        }
    }
    None
}

/// Checks every string of a templated desired state that nmstate's template
/// engine will parse (those holding `{` or `}`): syntax, a defined capture,
/// and a property path after the capture name.
pub(crate) fn validate_templates(
    value: &Value,
    captures: &BTreeMap<String, String>,
    path: &FieldPath,
) -> Vec<FieldError> {
    let mut errors = Vec::new();
    walk_strings(value, path, &mut |text, at| {
        if let Some(message) = check_template(text, captures) {
            errors.push(FieldError::invalid(at.as_str(), text, message));
        }
    });
    errors
}

fn walk_strings(value: &Value, path: &FieldPath, visit: &mut impl FnMut(&str, &FieldPath)) {
    match value {
        Value::String(text) if text.contains(['{', '}']) => visit(text, path),
        Value::Array(items) => {
            for (index, item) in items.iter().enumerate() {
                walk_strings(item, &path.index(index), visit);
            }
        }
        Value::Object(object) => {
            for (key, item) in object {
                walk_strings(item, &path.child(key), visit);
            }
        }
        _ => {}
    }
}

/// nmstate's error for one template string, or `None` when it is fine as
/// far as can be told without a node.
fn check_template(text: &str, captures: &BTreeMap<String, String>) -> Option<String> {
    // `description` is a plain string field of `NetworkState`, so a string
    // without any reference fills without error.
    let mut holder = serde_json::Map::new();
    holder.insert("description".to_owned(), Value::String(text.to_owned()));
    let template: NetworkStateTemplate = serde_json::from_value(Value::Object(holder)).ok()?;
    let error = template.fill_with_captured_data(&HashMap::new()).err()?;
    if error.kind() != ErrorKind::PolicyError {
        return None;
    }
    let Some(name) = error.msg().strip_prefix(NOT_FOUND_PREFIX) else {
        return Some(error.to_string());
    };
    if !captures.contains_key(name) {
        return Some(error.to_string());
    }
    // nmstate needs `capture.<name>.<path>`; with no path it fails at render
    // time with an internal error, so say what it means here.
    let after_name = error
        .line()
        .get(error.position() + name.len()..)
        .unwrap_or_default();
    if after_name.starts_with('.') {
        None
    } else {
        let start = error.position().saturating_sub("capture.".len());
        Some(
            NmstateError::new_policy_error(
                REFERENCE_FORMAT_MESSAGE.to_owned(),
                error.line(),
                start,
            )
            .to_string(),
        )
    }
}

/// Every problem nmstate finds typing a templated desired state, except
/// those due to its templates (the strings nmstate's template engine parses,
/// i.e. those holding a brace).
pub(crate) fn validate_templated_network_state(
    document: &Value,
    path: &FieldPath,
) -> Vec<FieldError> {
    network::validate_templated_network_state(document, path, &|text| text.contains(['{', '}']))
}
