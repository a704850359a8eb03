//! Checking an nmstate document against the `nmstate` crate's
//! `NetworkState`, with errors that name the offending field.
//!
//! nmstate deserialises each interface by first reading it into a JSON
//! value and then into the type its `type` selects, so the path
//! `serde_path_to_error` reports stops at `interfaces[N]` and the message
//! does not say where inside the interface the problem is. We recover the
//! field by deletion: below the reported path, the child whose removal makes
//! the reported message go away holds the problem. Removing a required
//! field only ever produces a `missing field` error, so such errors do not
//! count as "gone". When no child qualifies but the message quotes the
//! offending value (as in ``unknown variant `foo` ``), the single field
//! holding that value is taken.
//!
//! serde stops at the first problem; to report every problem the located
//! field is removed and the document checked again, up to
//! [`MAX_REPORTED`] problems.
//!
//! A desired state with capture templates is typed with each template
//! replaced by a placeholder string; problems the placeholders cause are
//! dropped, so only the plain parts of the document are judged.

use serde::Deserialize;
use serde_json::Value;

use super::{BadValue, FieldError, FieldErrorKind, FieldPath};

/// Most problems examined in one document; beyond that the user has enough
/// to fix.
const MAX_REPORTED: usize = 16;

/// One step into a JSON document.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Step {
    Key(String),
    Index(usize),
}

/// Every problem nmstate finds parsing `document` as a `NetworkState`,
/// with paths below `path` (e.g. `spec.desiredState.interfaces[0].mtu`).
/// Messages are nmstate's (serde's) own.
pub fn validate_network_state(document: &Value, path: &FieldPath) -> Vec<FieldError> {
    check(document.clone(), &[], path)
}

/// Prefix of the strings that stand in for templates while typing.
const PLACEHOLDER: &str = "nmstate-openapi-template-";

/// Like [`validate_network_state`] for a document some of whose strings
/// (`is_template`) will be replaced per node by nmstate's template engine:
/// each is typed as a unique placeholder string, and problems it causes are
/// not reported, since the template may resolve to the list, object or
/// number the field needs.
pub(crate) fn validate_templated_network_state(
    document: &Value,
    path: &FieldPath,
    is_template: &dyn Fn(&str) -> bool,
) -> Vec<FieldError> {
    let mut typable = document.clone();
    let mut templates = Vec::new();
    replace_templates(&mut typable, &mut Vec::new(), is_template, &mut templates);
    check(typable, &templates, path)
}

fn replace_templates(
    value: &mut Value,
    at: &mut Vec<Step>,
    is_template: &dyn Fn(&str) -> bool,
    templates: &mut Vec<Vec<Step>>,
) {
    match value {
        Value::String(text) if is_template(text) => {
            *text = format!("{PLACEHOLDER}{}", templates.len());
            templates.push(at.clone());
        }
        Value::Array(items) => {
            for (index, item) in items.iter_mut().enumerate() {
                at.push(Step::Index(index));
                replace_templates(item, at, is_template, templates);
                at.pop();
            }
        }
        Value::Object(object) => {
            for (key, item) in object.iter_mut() {
                at.push(Step::Key(key.clone()));
                replace_templates(item, at, is_template, templates);
                at.pop();
            }
        }
        _ => {}
    }
}

/// Whether the problem `message` at `steps` comes from template
/// placeholders: it is at one or quotes one, or it goes away when the
/// placeholders below `steps` are nulled.
fn caused_by_templates(
    work: &Value,
    steps: &[Step],
    message: &str,
    templates: &[Vec<Step>],
) -> bool {
    if message.contains(PLACEHOLDER) || templates.iter().any(|template| template == steps) {
        return true;
    }
    let below: Vec<&Vec<Step>> = templates
        .iter()
        .filter(|template| template.starts_with(steps))
        .collect();
    if below.is_empty() {
        return false;
    }
    let mut trial = work.clone();
    for template in below {
        if let Some(value) = get_mut(&mut trial, template) {
            *value = Value::Null;
        }
    }
    match parse(&trial) {
        Ok(()) => true,
        Err((_, other)) => other != message,
    }
}

fn check(mut work: Value, templates: &[Vec<Step>], path: &FieldPath) -> Vec<FieldError> {
    let mut reported: Vec<Vec<Step>> = Vec::new();
    let mut errors = Vec::new();
    for _ in 0..MAX_REPORTED {
        let Err((steps, message)) = parse(&work) else {
            break;
        };
        let steps = locate(&work, existing_prefix(&work, steps), &message);
        // Once a field was removed, an error at or above it (typically
        // "missing field") is a consequence of the removal, not news.
        if reported.iter().any(|earlier| earlier.starts_with(&steps)) {
            break;
        }
        if !caused_by_templates(&work, &steps, &message, templates) {
            let value = if message.starts_with("unknown field") {
                None
            } else {
                get(&work, &steps).and_then(BadValue::from_json)
            };
            errors.push(FieldError::new(
                FieldErrorKind::Invalid,
                render(path, &steps),
                value,
                message,
            ));
        }
        // Only object members are removed, so list indices of later errors
        // still match the user's document.
        let removed = match steps.split_last() {
            Some((Step::Key(key), parent)) => get_mut(&mut work, parent)
                .and_then(Value::as_object_mut)
                .and_then(|object| object.shift_remove(key))
                .is_some(),
            _ => false,
        };
        if !removed {
            break;
        }
        reported.push(steps);
    }
    errors
}

/// Parses `document` as a `NetworkState`; on failure, where serde says the
/// problem is and its message.
fn parse(document: &Value) -> Result<(), (Vec<Step>, String)> {
    // The path is tracked only to say where a parse failed.
    if nmstate::NetworkState::deserialize(document).is_ok() {
        return Ok(());
    }
    match serde_path_to_error::deserialize::<_, nmstate::NetworkState>(document) {
        Ok(_) => Ok(()),
        Err(error) => {
            let steps = error
                .path()
                .iter()
                .map_while(|segment| match segment {
                    serde_path_to_error::Segment::Seq { index } => Some(Step::Index(*index)),
                    serde_path_to_error::Segment::Map { key } => Some(Step::Key(key.clone())),
                    serde_path_to_error::Segment::Enum { variant } => {
                        Some(Step::Key(variant.clone()))
                    }
                    serde_path_to_error::Segment::Unknown => None,
                })
                .collect();
            Err((steps, error.into_inner().to_string()))
        }
    }
}

/// The longest prefix of `steps` that exists in `document` (custom
/// deserialisers may report paths that do not).
fn existing_prefix(document: &Value, mut steps: Vec<Step>) -> Vec<Step> {
    while get(document, &steps).is_none() {
        steps.pop();
    }
    steps
}

/// Narrows `steps` to the field below it that holds the problem `message`.
fn locate(document: &Value, steps: Vec<Step>, message: &str) -> Vec<Step> {
    // Trials only need the branch the problem is in; cutting the rest away
    // keeps them cheap in documents with hundreds of interfaces. If the cut
    // document fails differently, fall back to the whole one.
    let (branch, branch_steps) = cut_to_branch(document, &steps);
    if matches!(parse(&branch), Err((_, ref other)) if other == message) {
        let below = narrow(&branch, branch_steps.clone(), message);
        let mut located = steps;
        located.extend(below.into_iter().skip(branch_steps.len()));
        located
    } else {
        narrow(document, steps, message)
    }
}

/// A copy of `document` holding only the members and list entries on
/// `steps` (list entries moved to index 0), and `steps` in that copy.
fn cut_to_branch(document: &Value, steps: &[Step]) -> (Value, Vec<Step>) {
    let Some((step, rest)) = steps.split_first() else {
        return (document.clone(), Vec::new());
    };
    let child = match step {
        Step::Key(key) => document.as_object().and_then(|object| object.get(key)),
        Step::Index(index) => document.as_array().and_then(|items| items.get(*index)),
    };
    let Some(child) = child else {
        return (document.clone(), steps.to_vec());
    };
    let (child, mut child_steps) = cut_to_branch(child, rest);
    match step {
        Step::Key(key) => {
            let mut object = serde_json::Map::new();
            object.insert(key.clone(), child);
            child_steps.insert(0, step.clone());
            (Value::Object(object), child_steps)
        }
        Step::Index(_) => {
            child_steps.insert(0, Step::Index(0));
            (Value::Array(vec![child]), child_steps)
        }
    }
}

fn narrow(document: &Value, mut steps: Vec<Step>, message: &str) -> Vec<Step> {
    loop {
        let children = match get(document, &steps) {
            Some(Value::Object(object)) => {
                // Removing `type` turns an interface into one of unknown
                // type, which accepts anything; try it last so it is only
                // blamed when nothing else is.
                let mut keys: Vec<Step> = object
                    .keys()
                    .filter(|key| *key != "type")
                    .map(|key| Step::Key(key.clone()))
                    .collect();
                if object.contains_key("type") {
                    keys.push(Step::Key("type".to_owned()));
                }
                keys
            }
            Some(Value::Array(items)) => (0..items.len()).map(Step::Index).collect(),
            _ => return steps,
        };
        let culprit = children.into_iter().find(|child| {
            let mut trial = document.clone();
            remove(&mut trial, &steps, child);
            match parse(&trial) {
                Ok(()) => true,
                Err((_, other)) => other != message && !other.starts_with("missing field"),
            }
        });
        match culprit {
            Some(child) => steps.push(child),
            None => {
                if let Some(deeper) =
                    get(document, &steps).and_then(|node| find_quoted_value(node, message))
                {
                    steps.extend(deeper);
                }
                return steps;
            }
        }
    }
}

/// The path below `node` of the single leaf (or key) equal to the first
/// value `message` quotes, as in "unknown variant `foo`" or "invalid type:
/// string \"abc\"". `None` when the message quotes nothing or the value
/// occurs more than once.
fn find_quoted_value(node: &Value, message: &str) -> Option<Vec<Step>> {
    let quoted = first_quoted(message)?;
    let mut found = Vec::new();
    collect_matches(node, &quoted, &mut Vec::new(), &mut found);
    match found.as_slice() {
        [one] => Some(one.clone()),
        _ => None,
    }
}

fn first_quoted(message: &str) -> Option<String> {
    let start = message.find(['`', '"'])?;
    let quote = message[start..].chars().next()?;
    let rest = &message[start + 1..];
    let end = rest.find(quote)?;
    Some(rest[..end].to_owned())
}

fn collect_matches(node: &Value, wanted: &str, at: &mut Vec<Step>, found: &mut Vec<Vec<Step>>) {
    match node {
        Value::Object(object) => {
            for (key, value) in object {
                at.push(Step::Key(key.clone()));
                if key == wanted && !value.is_object() && !value.is_array() {
                    found.push(at.clone());
                } else {
                    collect_matches(value, wanted, at, found);
                }
                at.pop();
            }
        }
        Value::Array(items) => {
            for (index, item) in items.iter().enumerate() {
                at.push(Step::Index(index));
                collect_matches(item, wanted, at, found);
                at.pop();
            }
        }
        Value::String(text) if text == wanted => found.push(at.clone()),
        Value::Number(number) if number.to_string() == wanted => found.push(at.clone()),
        Value::Bool(flag) if flag.to_string() == wanted => found.push(at.clone()),
        _ => {}
    }
}

fn get<'a>(document: &'a Value, steps: &[Step]) -> Option<&'a Value> {
    steps.iter().try_fold(document, |node, step| match step {
        Step::Key(key) => node.as_object()?.get(key),
        Step::Index(index) => node.as_array()?.get(*index),
    })
}

fn get_mut<'a>(document: &'a mut Value, steps: &[Step]) -> Option<&'a mut Value> {
    steps.iter().try_fold(document, |node, step| match step {
        Step::Key(key) => node.as_object_mut()?.get_mut(key),
        Step::Index(index) => node.as_array_mut()?.get_mut(*index),
    })
}

fn remove(document: &mut Value, parent: &[Step], child: &Step) {
    match (get_mut(document, parent), child) {
        (Some(Value::Object(object)), Step::Key(key)) => {
            object.shift_remove(key);
        }
        (Some(Value::Array(items)), Step::Index(index)) if *index < items.len() => {
            items.remove(*index);
        }
        _ => {}
    }
}

fn render(path: &FieldPath, steps: &[Step]) -> String {
    steps
        .iter()
        .fold(path.clone(), |path, step| match step {
            Step::Key(key) => path.child(key),
            Step::Index(index) => path.index(*index),
        })
        .into()
}
