//! Captures and templates evaluated on the JSON of the node's state, for
//! the expression forms policies use nearly always; everything else goes
//! to nmstate's own engine (see [`super::render_with_captured`]).
//!
//! nmstate's engine types the whole current state with its model, then
//! serialises it back to JSON for every capture (and every item it
//! compares), cloning it each time: for a 50-interface node most of a
//! render. Here the current state is read as the JSON it is, and only what
//! a capture keeps is typed with nmstate's model (and serialised back), so
//! captured states are exactly nmstate's. That gives nmstate's answer only
//! where reading the JSON as written and reading nmstate's serialisation of
//! it cannot differ, so this evaluator declines, and the caller runs
//! nmstate's engine, whenever:
//!
//! - an expression is not one of `[capture.<x> |] <path>==<value>`,
//!   `[capture.<x> |] <path>:=<value>` (on a captured state only),
//!   `capture.<x>.<path>==<value>` or `capture.<x> | <path>`, with
//!   `<value>` a literal, `null` or `capture.<y>.<path>` (and not both an
//!   input capture and a value capture: nmstate orders captures by only
//!   one of them), or the captures do not form a tree at most ten deep;
//! - a filter reads the current state itself by anything but fields nmstate
//!   keeps as the string it was given: an interface's `name`, `type` (when
//!   every interface has one) or `mac-address` (names unique, as nmstate
//!   keeps only the last interface of a name) and a route's
//!   `destination`, `next-hop-interface` or `next-hop-address`; captured
//!   states are nmstate's serialisation already, so any field of them is;
//! - anything fails: no match, a missing capture or index, a part that
//!   nmstate cannot type. nmstate's engine then fails in its own words.
//!
//! A template string is resolved here when it is a single reference
//! `{{ capture.<x>.<path> }}` that resolves, and by nmstate's template
//! engine otherwise.
//!
//! One difference remains, on purpose: nmstate's engine types the whole
//! current state first, so a current state nmstate cannot type fails every
//! capture; here only what the captures keep is typed, so captures that do
//! not touch the part nmstate cannot type (a newer agent's field, say)
//! still render.

use std::{
    borrow::Cow,
    collections::{BTreeMap, HashMap, HashSet},
};

use nmstate::NetworkState;
use serde::Deserialize;
use serde_json::{Map, Value};

/// The longest chain of captures nmstate orders (its sorting gives up after
/// ten rounds).
const MAX_DEPTH: usize = 10;

/// Interface fields nmstate's model keeps as the string it was given.
/// (`type` only when every interface has one: nmstate says `unknown` for
/// an interface without.)
const VERBATIM_INTERFACE_FIELDS: [&str; 3] = ["name", "mac-address", "type"];

/// Route fields nmstate's model keeps as the string it was given.
const VERBATIM_ROUTE_FIELDS: [&str; 3] = ["destination", "next-hop-interface", "next-hop-address"];

/// A capture's result: nmstate's typed state and its serialisation.
pub(super) struct Captured {
    pub(super) typed: NetworkState,
    pub(super) json: Value,
}

/// Runs `expressions` against `current`, or `None` when nmstate's engine
/// must (see the module documentation).
pub(super) fn run_captures(
    expressions: &BTreeMap<String, String>,
    current: &Value,
) -> Option<HashMap<String, Captured>> {
    let commands = expressions
        .iter()
        .map(|(name, expression)| Some((name.as_str(), Command::parse(expression)?)))
        .collect::<Option<HashMap<_, _>>>()?;
    let mut order = Vec::with_capacity(commands.len());
    for name in commands.keys() {
        order.push((depth(name, &commands)?, *name));
    }
    order.sort_unstable();
    let mut captured = HashMap::with_capacity(commands.len());
    for (_, name) in order {
        let document = commands[name].execute(current, &captured)?;
        let typed = NetworkState::deserialize(&document).ok()?;
        let json = serde_json::to_value(&typed).ok()?;
        captured.insert(name.to_owned(), Captured { typed, json });
    }
    Some(captured)
}

/// How many captures `name` depends on in a chain, counting itself; `None`
/// for a missing capture, a cycle or a chain longer than nmstate orders.
fn depth(name: &str, commands: &HashMap<&str, Command>) -> Option<usize> {
    let mut depth = 1;
    let mut current = commands.get(name)?;
    while let Some(parent) = current.parent() {
        depth += 1;
        if depth > MAX_DEPTH {
            return None;
        }
        current = commands.get(parent)?;
    }
    Some(depth)
}

/// What a filter compares with or a replacement writes.
#[derive(Debug, PartialEq)]
enum Operand {
    /// A quoted or bare literal.
    Literal(String),
    /// `null`: compares as the empty string, replaces with JSON null.
    Null,
    /// `capture.<name>.<path>`: the value at the path of a captured state.
    Capture { name: String, path: Vec<String> },
}

/// What a capture does with its input.
#[derive(Debug, PartialEq)]
enum Action {
    /// `<path>`: keep only what is at the path.
    Retain,
    /// `<path>==<operand>`: keep the items whose field matches.
    Filter(Operand),
    /// `<path>:=<operand>`: every item with the field set.
    Replace(Operand),
}

/// One capture expression of a supported form.
#[derive(Debug, PartialEq)]
struct Command {
    /// `capture.<input> |`: the captured state it reads instead of the
    /// current state.
    input: Option<String>,
    /// The property path: `interfaces...`, `routes.running.<field>`, ...
    path: Vec<String>,
    action: Action,
}

/// A token of a capture expression, split as nmstate's tokenizer does.
#[derive(Debug, PartialEq)]
enum Token {
    Path(Vec<String>),
    Value(String),
    Null,
    Pipe,
    Equal,
    Replace,
}

/// Characters that end a bare word, as in nmstate's tokenizer.
const WORD_END: [char; 6] = [' ', '=', '!', '|', '"', ':'];

/// Splits `line` into tokens, or `None` for what nmstate would reject or
/// this evaluator does not take (`!`).
fn tokenize(line: &str) -> Option<Vec<Token>> {
    let mut tokens = Vec::new();
    let mut chars = line.char_indices().peekable();
    while let Some((start, c)) = chars.next() {
        match c {
            '=' | ':' => {
                chars.next().filter(|(_, next)| *next == '=')?;
                tokens.push(if c == '=' {
                    Token::Equal
                } else {
                    Token::Replace
                });
            }
            '|' => tokens.push(Token::Pipe),
            '"' => {
                let rest = &line[start + 1..];
                let end = rest.find('"')?;
                // nmstate keeps no token for an empty quoted string.
                if end > 0 {
                    tokens.push(Token::Value(rest[..end].to_owned()));
                }
                while chars
                    .next_if(|(index, _)| *index <= start + 1 + end)
                    .is_some()
                {}
            }
            '!' => return None,
            c if c.is_whitespace() => {}
            _ => {
                let mut end = start + c.len_utf8();
                while let Some((index, c)) = chars.next_if(|(_, c)| !WORD_END.contains(c)) {
                    end = index + c.len_utf8();
                }
                let word = line[start..end].trim();
                if word.contains('.') {
                    tokens.push(Token::Path(word.split('.').map(str::to_owned).collect()));
                } else if word.eq_ignore_ascii_case("null") {
                    tokens.push(Token::Null);
                } else if !word.is_empty() {
                    tokens.push(Token::Value(word.to_owned()));
                }
            }
        }
    }
    Some(tokens)
}

/// `capture.<name>` and nothing more.
fn capture_name(path: &[String]) -> Option<&str> {
    match path {
        [capture, name] if capture == "capture" && !name.is_empty() => Some(name),
        _ => None,
    }
}

impl Command {
    /// Parses one of the supported forms (see the module documentation).
    fn parse(expression: &str) -> Option<Command> {
        let line = expression.trim().replace('\u{A0}', " ");
        let tokens = tokenize(line.trim())?;
        let (input, tokens) = match tokens.iter().position(|token| *token == Token::Pipe) {
            Some(pipe) => match &tokens[..pipe] {
                [Token::Path(source)] => {
                    (Some(capture_name(source)?.to_owned()), &tokens[pipe + 1..])
                }
                _ => return None,
            },
            None => (None, &tokens[..]),
        };
        let (path, action) = match tokens {
            [Token::Path(path)] => (path, Action::Retain),
            [Token::Path(path), operator, value] => {
                let operand = match value {
                    Token::Value(literal) => Operand::Literal(literal.clone()),
                    Token::Null => Operand::Null,
                    Token::Path(reference) => match reference.as_slice() {
                        [capture, name, path @ ..] if capture == "capture" && !path.is_empty() => {
                            Operand::Capture {
                                name: name.clone(),
                                path: path.to_vec(),
                            }
                        }
                        _ => return None,
                    },
                    _ => return None,
                };
                match operator {
                    Token::Equal => (path, Action::Filter(operand)),
                    Token::Replace => (path, Action::Replace(operand)),
                    _ => return None,
                }
            }
            _ => return None,
        };
        // `capture.<x>.<path>==...` reads capture x, as `capture.<x> |
        // <path>==...` does (nmstate ignores the x of such a path after a
        // pipe, and keeps `capture` as the path of a bare one: left to it).
        let (input, path) = match path.as_slice() {
            [capture, ..] if capture != "capture" => (input, path.clone()),
            [_, name, rest @ ..]
                if input.is_none() && action != Action::Retain && !rest.is_empty() =>
            {
                (Some(name.clone()), rest.to_vec())
            }
            _ => return None,
        };
        let command = Command {
            input,
            path,
            action,
        };
        let reads_value_capture = matches!(
            &command.action,
            Action::Filter(Operand::Capture { .. }) | Action::Replace(Operand::Capture { .. })
        );
        // A capture reading two others, or retaining from the current state
        // (rare: nmstate's engine does these).
        if command.input.is_some() && reads_value_capture
            || command.input.is_none() && command.action == Action::Retain
        {
            return None;
        }
        Some(command)
    }

    /// The capture nmstate orders this one after.
    fn parent(&self) -> Option<&str> {
        self.input.as_deref().or(match &self.action {
            Action::Filter(Operand::Capture { name, .. })
            | Action::Replace(Operand::Capture { name, .. }) => Some(name),
            _ => None,
        })
    }

    /// The document (to be typed) this capture keeps, or `None`.
    fn execute(&self, current: &Value, captured: &HashMap<String, Captured>) -> Option<Value> {
        let (input, raw) = match &self.input {
            Some(name) => (&captured.get(name)?.json, false),
            None => (current, true),
        };
        let operand = match &self.action {
            Action::Retain => {
                let mut document = input.clone();
                retain_only(&mut document, &self.path);
                return Some(document);
            }
            Action::Filter(operand) | Action::Replace(operand) => operand,
        };
        let value: Option<Cow<'_, str>> = match operand {
            Operand::Literal(literal) => Some(Cow::Borrowed(literal)),
            Operand::Null => None,
            Operand::Capture { name, path } => {
                match lookup(path, captured.get(name)?.json.as_object()?)? {
                    Cow::Borrowed(Value::Null) => None,
                    Cow::Owned(Value::Null) => None,
                    value => Some(Cow::Owned(value_to_string(&value))),
                }
            }
        };
        let replace = matches!(self.action, Action::Replace(_));
        match self.path.first().map(String::as_str) {
            Some("routes") => {
                let [_, table, field] = self.path.as_slice() else {
                    return None;
                };
                if table != "running" && table != "config" {
                    return None;
                }
                let items = match input.get("routes").and_then(|routes| routes.get(table)) {
                    None | Some(Value::Null) => &[][..],
                    Some(items) => items.as_array()?,
                };
                if raw && (replace || !verbatim_strings(items, field, &VERBATIM_ROUTE_FIELDS)) {
                    return None;
                }
                let items = if replace {
                    replaced(items, &self.path[2..], value.as_deref())?
                } else {
                    filtered(items, &self.path[2..], value.as_deref().unwrap_or_default())?
                };
                let mut routes = Map::new();
                routes.insert(table.clone(), Value::Array(items));
                Some(object("routes", Value::Object(routes)))
            }
            Some("interfaces") => {
                let items = match input.get("interfaces") {
                    None | Some(Value::Null) => &[][..],
                    Some(items) => items.as_array()?,
                };
                let field = &self.path[1..];
                if raw
                    && (replace
                        || !matches!(field, [field] if verbatim_strings(items, field, &VERBATIM_INTERFACE_FIELDS)
                            && (field != "type" || items.iter().all(|item| item.get("type").is_some())))
                        || !unique_names(items))
                {
                    return None;
                }
                let items = if replace {
                    replaced(items, field, value.as_deref())?
                } else {
                    filtered(items, field, value.as_deref().unwrap_or_default())?
                };
                Some(object("interfaces", Value::Array(items)))
            }
            _ => None,
        }
    }
}

/// `{key: value}`.
fn object(key: &str, value: Value) -> Value {
    let mut map = Map::new();
    map.insert(key.to_owned(), value);
    Value::Object(map)
}

/// Whether `field` is one of `verbatim` and every item is an object whose
/// `field`, when present, is a string: then nmstate's serialisation of the
/// items has the same value there.
fn verbatim_strings(items: &[Value], field: &str, verbatim: &[&str]) -> bool {
    verbatim.contains(&field)
        && items.iter().all(|item| {
            item.as_object()
                .is_some_and(|item| item.get(field).is_none_or(Value::is_string))
        })
}

/// Whether every item has a distinct string `name` (nmstate keeps only the
/// last interface of a name).
fn unique_names(items: &[Value]) -> bool {
    let mut names = HashSet::with_capacity(items.len());
    items.iter().all(|item| {
        item.get("name")
            .and_then(Value::as_str)
            .is_some_and(|name| names.insert(name))
    })
}

/// nmstate's `search_item`: the items whose value at `path` matches
/// `target`; `None` when none does.
fn filtered(items: &[Value], path: &[String], target: &str) -> Option<Vec<Value>> {
    let matched: Vec<Value> = items
        .iter()
        .filter(|item| {
            item.as_object()
                .and_then(|item| lookup(path, item))
                .is_some_and(|value| matches_target(&value, target))
        })
        .cloned()
        .collect();
    (!matched.is_empty()).then_some(matched)
}

/// nmstate's `update_items`: every item with `value` (a string, or null)
/// written at `path`.
fn replaced(items: &[Value], path: &[String], value: Option<&str>) -> Option<Vec<Value>> {
    items
        .iter()
        .filter_map(Value::as_object)
        .map(|item| {
            let mut item = item.clone();
            write(&mut item, path, value)?;
            Some(Value::Object(item))
        })
        .collect()
}

/// nmstate's `get_value_from_json`: a numeric step indexes a list, a step
/// into a list maps over its objects.
fn lookup<'a>(path: &[String], data: &'a Map<String, Value>) -> Option<Cow<'a, Value>> {
    let (first, rest) = path.split_first()?;
    let value = data.get(first)?;
    let Some(next) = rest.first() else {
        return Some(Cow::Borrowed(value));
    };
    if let Ok(index) = next.parse::<usize>() {
        let leaf = value.as_array()?.get(index)?;
        return match &rest[1..] {
            [] => Some(Cow::Borrowed(leaf)),
            deeper => lookup(deeper, leaf.as_object()?),
        };
    }
    match value {
        Value::Object(leaf) => lookup(rest, leaf),
        Value::Array(items) => Some(Cow::Owned(Value::Array(
            items
                .iter()
                .filter_map(Value::as_object)
                .filter_map(|item| lookup(rest, item).map(Cow::into_owned))
                .collect(),
        ))),
        _ => None,
    }
}

/// nmstate's `value_to_string`: a string as it is, anything else as JSON.
fn value_to_string(value: &Value) -> String {
    match value {
        Value::String(text) => text.clone(),
        other => other.to_string(),
    }
}

/// nmstate's `is_value_match`: a list matches when an element does.
fn matches_target(value: &Value, target: &str) -> bool {
    match value {
        Value::Array(items) => items.iter().any(|item| matches_target(item, target)),
        Value::String(text) => text == target,
        // Not `Value == &str`, which is false for every non-string.
        other => {
            let text = other.to_string();
            text == target
        }
    }
}

/// nmstate's `update_json_value`: missing objects on the way are created.
fn write(data: &mut Map<String, Value>, path: &[String], value: Option<&str>) -> Option<()> {
    let (first, rest) = path.split_first()?;
    if rest.is_empty() {
        let value = value.map_or(Value::Null, |text| Value::String(text.to_owned()));
        data.insert(first.clone(), value);
        return Some(());
    }
    let leaf = data
        .entry(first.clone())
        .or_insert_with(|| Value::Object(Map::new()));
    write(leaf.as_object_mut()?, rest, value)
}

/// nmstate's `value_retain_only`: only the branch along `path` is kept.
fn retain_only(data: &mut Value, path: &[String]) {
    if let (Some(data), Some((first, rest))) = (data.as_object_mut(), path.split_first()) {
        data.retain(|key, _| key == first);
        if !rest.is_empty()
            && let Some(leaf) = data.get_mut(first)
        {
            retain_only(leaf, rest);
        }
    }
}

/// A template string that is one reference `{{ capture.<x>.<path> }}`
/// resolved against `captured`; `None` for any other string or a reference
/// that does not resolve (nmstate's template engine then answers).
pub(super) fn resolve_reference(text: &str, captured: &HashMap<String, Captured>) -> Option<Value> {
    let inner = text.trim().strip_prefix("{{")?.strip_suffix("}}")?.trim();
    if inner.is_empty()
        || inner.starts_with('.')
        || inner.contains(|c: char| c.is_whitespace() || c == '{' || c == '}')
    {
        return None;
    }
    let mut steps = inner.split('.');
    if steps.next() != Some("capture") {
        return None;
    }
    let name = steps.next()?;
    let path: Vec<String> = steps.map(str::to_owned).collect();
    let value = lookup(&path, captured.get(name)?.json.as_object()?)?;
    Some(value.into_owned())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn path(text: &str) -> Vec<String> {
        text.split('.').map(str::to_owned).collect()
    }

    #[test]
    fn supported_forms_parse() {
        assert_eq!(
            Command::parse(r#"routes.running.destination=="0.0.0.0/0""#),
            Some(Command {
                input: None,
                path: path("routes.running.destination"),
                action: Action::Filter(Operand::Literal("0.0.0.0/0".to_owned())),
            })
        );
        assert_eq!(
            Command::parse("interfaces.name == capture.gw.routes.running.0.next-hop-interface"),
            Some(Command {
                input: None,
                path: path("interfaces.name"),
                action: Action::Filter(Operand::Capture {
                    name: "gw".to_owned(),
                    path: path("routes.running.0.next-hop-interface"),
                }),
            })
        );
        assert_eq!(
            Command::parse("capture.r | routes.running.next-hop-interface:=\"br1\""),
            Some(Command {
                input: Some("r".to_owned()),
                path: path("routes.running.next-hop-interface"),
                action: Action::Replace(Operand::Literal("br1".to_owned())),
            })
        );
        assert_eq!(
            Command::parse("capture.r | interfaces.ipv4.dhcp:=NULL"),
            Some(Command {
                input: Some("r".to_owned()),
                path: path("interfaces.ipv4.dhcp"),
                action: Action::Replace(Operand::Null),
            })
        );
        assert_eq!(
            Command::parse("capture.r | routes.running"),
            Some(Command {
                input: Some("r".to_owned()),
                path: path("routes.running"),
                action: Action::Retain,
            })
        );
    }

    #[test]
    fn other_forms_are_left_to_nmstate() {
        assert_eq!(
            Command::parse("capture.eth.interfaces.state==\"up\""),
            Some(Command {
                input: Some("eth".to_owned()),
                path: path("interfaces.state"),
                action: Action::Filter(Operand::Literal("up".to_owned())),
            })
        );
        for expression in [
            "routes.running",
            "capture.eth.interfaces",
            "capture.a | capture.b.interfaces.name==\"eth1\"",
            "capture.eth==\"eth1\"",
            "capture.a.interfaces.name==capture.b.interfaces.0.name",
            "interfaces.name!=\"eth1\"",
            "interfaces.name==\"\"",
            "interfaces.name=\"eth1\"",
            "capture.a | interfaces.name==capture.b.interfaces.0.name",
            "interfaces.name==routes.running.0.next-hop-interface",
            "interfaces.name==capture.b",
            "capture.a | capture.b | routes.running",
            "capture.a |",
            "\"eth1\"==interfaces.name",
            "interfaces.name==\"eth1",
        ] {
            assert_eq!(Command::parse(expression), None, "{expression}");
        }
    }

    #[test]
    fn lookup_follows_nmstate() {
        let data = serde_json::json!({
            "interfaces": [
                {"name": "eth1", "ipv4": {"address": [{"ip": "10.0.0.1"}, {"ip": "10.0.0.2"}]}},
                {"name": "eth2"},
            ],
        });
        let data = data.as_object().unwrap();
        let get = |text: &str| lookup(&path(text), data).map(Cow::into_owned);
        assert_eq!(get("interfaces.1.name"), Some("eth2".into()));
        assert_eq!(get("interfaces.2.name"), None);
        assert_eq!(
            get("interfaces.name"),
            Some(serde_json::json!(["eth1", "eth2"]))
        );
        assert_eq!(
            get("interfaces.0.ipv4.address.ip"),
            Some(serde_json::json!(["10.0.0.1", "10.0.0.2"]))
        );
        assert_eq!(get("interfaces.0.ipv6"), None);
    }

    #[test]
    fn only_single_references_resolve_here() {
        let typed: NetworkState =
            serde_json::from_value(serde_json::json!({"interfaces": [{"name": "eth1"}]})).unwrap();
        let json = serde_json::to_value(&typed).unwrap();
        let captured = HashMap::from([("eth".to_owned(), Captured { typed, json })]);
        assert_eq!(
            resolve_reference(" {{ capture.eth.interfaces.0.name }} ", &captured),
            Some("eth1".into())
        );
        for text in [
            "{{ capture.eth.interfaces.0.name }}.10",
            "{{ capture.eth.interfaces.1.name }}",
            "{{ capture.other.interfaces.0.name }}",
            "{{ capture.eth }}",
            "{{ capture .eth.interfaces }}",
        ] {
            assert_eq!(resolve_reference(text, &captured), None, "{text}");
        }
    }
}
