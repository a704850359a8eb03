//! Field paths, field sets and their `FieldsV1` encoding, and the two ways
//! of deriving a set from objects: the fields an object sets
//! ([`fields_of`]) and the fields that differ between two objects
//! ([`compare`]).
//!
//! This is the part of Kubernetes' structured-merge-diff that a
//! cluster-scoped custom resource needs, specialised to the nmstate.io
//! schema:
//!
//! - Every list is atomic (owned as a whole): CRD schemas without
//!   `x-kubernetes-list-type` make lists atomic, and none of ours sets one.
//!   `metadata.finalizers` and `metadata.ownerReferences`, which kube types
//!   as a set and a map keyed by `uid`, are atomic here too.
//! - Maps are granular: every key is its own field. That covers the
//!   free-form nmstate documents (`spec.desiredState`, `status.currentState`,
//!   `status.desiredState`, `status.capturedStates.*.state`), which the CRDs
//!   mark `x-kubernetes-preserve-unknown-fields` and structured-merge-diff
//!   therefore treats as nested maps of deduced type.
//! - Struct fields (the schema's named properties) and map keys differ in one
//!   way only: an applied configuration owns a map key holding a non-empty
//!   map as well as its children (`FieldsV1` writes `".": {}`), but not a
//!   struct field holding one. [`is_struct`] says which objects are structs.
//!
//! Nothing here does IO; sets are small (one entry per field an object sets),
//! so the operations are plain scans over sorted sets.

use std::borrow::Cow;
use std::cmp::Ordering;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use serde_json::{Map, Value};

use super::DecodeError;
use crate::rules::{
    current_state::{self, SetAside, Side},
    patch::json_type,
};

/// A path to a field, as the keys of its `FieldsV1` encoding
/// (`["f:spec", "f:maxUnavailable"]`); it prints as `.spec.maxUnavailable`.
///
/// Paths computed here only hold `f:<name>` steps, because every list is
/// atomic. Sets read from stored entries may also hold `k:`, `v:` and `i:`
/// steps; they are kept verbatim so that writing the set back loses nothing.
///
/// Paths order the way structured-merge-diff iterates a set: at each level,
/// the fields that are members come before the subtrees below other fields,
/// each group by key. Conflict messages list paths in that order.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct Path(Vec<String>);

impl Path {
    /// The object itself (never a member of a field set).
    pub fn root() -> Self {
        Self(Vec::new())
    }

    /// A path through named fields: `Path::fields(["spec", "maxUnavailable"])`.
    pub fn fields<I, S>(names: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        Self(
            names
                .into_iter()
                .map(|name| format!("f:{}", name.as_ref()))
                .collect(),
        )
    }

    /// This path extended by the field `name`.
    pub fn child(&self, name: &str) -> Self {
        let mut elements = self.0.clone();
        elements.push(format!("f:{name}"));
        Self(elements)
    }

    /// The `FieldsV1` keys of the path.
    pub fn elements(&self) -> &[String] {
        &self.0
    }

    /// The number of steps.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether this is the root.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Whether `prefix` is this path or one of its ancestors.
    pub fn starts_with(&self, prefix: &Path) -> bool {
        self.0.starts_with(&prefix.0)
    }

    /// The path one step up, `None` for the root.
    pub fn parent(&self) -> Option<Path> {
        let (_, parent) = self.0.split_last()?;
        Some(Self(parent.to_vec()))
    }

    /// The field names along the path, or `None` if a step is not a field
    /// (a `k:`, `v:` or `i:` step read from a stored entry).
    pub fn field_names(&self) -> Option<Vec<&str>> {
        self.0
            .iter()
            .map(|element| element.strip_prefix("f:"))
            .collect()
    }

    fn with_raw(&self, element: &str) -> Self {
        let mut elements = self.0.clone();
        elements.push(element.to_owned());
        Self(elements)
    }
}

impl Ord for Path {
    fn cmp(&self, other: &Self) -> Ordering {
        // At each step, a path ending there (a member) sorts before a path
        // passing through (a child), then by key: structured-merge-diff's
        // Set.Iterate order. Two distinct paths always differ at some step by
        // this key, so the order agrees with equality.
        fn key(path: &Path, i: usize) -> (bool, Option<&String>) {
            (i + 1 != path.0.len(), path.0.get(i))
        }
        for i in 0..self.0.len().max(other.0.len()) {
            match key(self, i).cmp(&key(other, i)) {
                Ordering::Equal => continue,
                unequal => return unequal,
            }
        }
        Ordering::Equal
    }
}

impl PartialOrd for Path {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl fmt::Display for Path {
    /// Prints as structured-merge-diff does: `.spec.maxUnavailable`,
    /// `[name="eth0"]` for a key, `[="value"]` for a set value, `[0]` for an
    /// index.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for element in &self.0 {
            if let Some(name) = element.strip_prefix("f:") {
                write!(f, ".{name}")?;
            } else if let Some(index) = element.strip_prefix("i:") {
                write!(f, "[{index}]")?;
            } else if let Some(value) = element.strip_prefix("v:") {
                write!(f, "[={value}]")?;
            } else if let Some(key) = element.strip_prefix("k:") {
                match serde_json::from_str::<Map<String, Value>>(key) {
                    Ok(fields) => {
                        let fields: Vec<String> = fields
                            .iter()
                            .map(|(name, value)| format!("{name}={value}"))
                            .collect();
                        write!(f, "[{}]", fields.join(","))?;
                    }
                    Err(_) => write!(f, "[{key}]")?,
                }
            } else {
                write!(f, "{element}")?;
            }
        }
        Ok(())
    }
}

/// A set of field paths: what one manager owns, or what a write changed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FieldSet(BTreeSet<Path>);

impl FieldSet {
    /// The empty set.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a path; the root is never a member.
    pub fn insert(&mut self, path: Path) {
        if !path.is_empty() {
            self.0.insert(path);
        }
    }

    /// Removes a path, saying whether it was a member.
    pub fn remove(&mut self, path: &Path) -> bool {
        self.0.remove(path)
    }

    /// Whether `path` is a member.
    pub fn contains(&self, path: &Path) -> bool {
        self.0.contains(path)
    }

    /// Whether some member lies strictly below `path`.
    pub fn has_descendant(&self, path: &Path) -> bool {
        self.0
            .iter()
            .any(|member| member.len() > path.len() && member.starts_with(path))
    }

    /// Whether the set is empty.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The number of members.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// The members, in structured-merge-diff's iteration order.
    pub fn iter(&self) -> impl Iterator<Item = &Path> {
        self.0.iter()
    }

    /// Members of either set.
    pub fn union(&self, other: &FieldSet) -> FieldSet {
        Self(self.0.union(&other.0).cloned().collect())
    }

    /// Members of this set that are not members of `other`.
    pub fn difference(&self, other: &FieldSet) -> FieldSet {
        Self(self.0.difference(&other.0).cloned().collect())
    }

    /// Members of both sets.
    pub fn intersection(&self, other: &FieldSet) -> FieldSet {
        Self(self.0.intersection(&other.0).cloned().collect())
    }

    /// Keeps the members for which `keep` holds.
    pub fn retain(&mut self, keep: impl FnMut(&Path) -> bool) {
        self.0.retain(keep);
    }

    /// The `FieldsV1` encoding:
    /// `{"f:metadata":{"f:labels":{".":{},"f:app":{}}}}`. A member with no
    /// members below it is `{}`; a member with members below it carries
    /// `".": {}` beside them.
    pub fn to_fields_v1(&self) -> Value {
        #[derive(Default)]
        struct Node<'a> {
            member: bool,
            children: BTreeMap<&'a str, Node<'a>>,
        }
        fn render(node: &Node<'_>) -> Value {
            let mut object = Map::new();
            // kube writes "." first; the order only matters to readers.
            if node.member && !node.children.is_empty() {
                object.insert(".".to_owned(), Value::Object(Map::new()));
            }
            for (key, child) in &node.children {
                object.insert((*key).to_owned(), render(child));
            }
            Value::Object(object)
        }
        let mut root = Node::default();
        for path in &self.0 {
            let node = path.0.iter().fold(&mut root, |node, element| {
                node.children.entry(element.as_str()).or_default()
            });
            node.member = true;
        }
        render(&root)
    }

    /// Reads a `FieldsV1` encoding (see [`FieldSet::to_fields_v1`]).
    pub fn from_fields_v1(fields: &Value) -> Result<Self, DecodeError> {
        fn decode(
            prefix: &Path,
            object: &Map<String, Value>,
            set: &mut FieldSet,
        ) -> Result<(), DecodeError> {
            for (key, value) in object {
                if key == "." {
                    set.insert(prefix.clone());
                    continue;
                }
                if !["f:", "k:", "v:", "i:"].iter().any(|p| key.starts_with(p)) {
                    return Err(DecodeError::UnknownPathElement { key: key.clone() });
                }
                let path = prefix.with_raw(key);
                let Value::Object(children) = value else {
                    return Err(DecodeError::FieldsNotAnObject {
                        path: path.0.join("."),
                        found: json_type(value),
                    });
                };
                if children.is_empty() {
                    set.insert(path);
                } else {
                    decode(&path, children, set)?;
                }
            }
            Ok(())
        }
        let Value::Object(object) = fields else {
            return Err(DecodeError::FieldsNotAnObject {
                path: String::new(),
                found: json_type(fields),
            });
        };
        let mut set = FieldSet::new();
        decode(&Path::root(), object, &mut set)?;
        Ok(set)
    }
}

impl FromIterator<Path> for FieldSet {
    fn from_iter<T: IntoIterator<Item = Path>>(paths: T) -> Self {
        let mut set = FieldSet::new();
        for path in paths {
            set.insert(path);
        }
        set
    }
}

impl<'a> IntoIterator for &'a FieldSet {
    type Item = &'a Path;
    type IntoIter = std::collections::btree_set::Iter<'a, Path>;

    fn into_iter(self) -> Self::IntoIter {
        self.0.iter()
    }
}

/// Fields kube never records as anyone's: type meta and the metadata the
/// server owns (kube's `stripMetaManager`). They are removed as exact paths.
const STRIPPED: &[&[&str]] = &[
    &["apiVersion"],
    &["kind"],
    &["metadata"],
    &["metadata", "name"],
    &["metadata", "namespace"],
    &["metadata", "creationTimestamp"],
    &["metadata", "selfLink"],
    &["metadata", "uid"],
    &["metadata", "clusterName"],
    &["metadata", "generation"],
    &["metadata", "managedFields"],
    &["metadata", "resourceVersion"],
];

/// Whether `path` is one of the fields nobody owns (`apiVersion`,
/// `metadata.name`, `metadata.resourceVersion`, ...).
pub fn is_stripped(path: &Path) -> bool {
    path.field_names()
        .is_some_and(|names| STRIPPED.contains(&names.as_slice()))
}

/// Whether the object at `path` is a struct of the nmstate.io schema (its
/// keys are named properties) rather than a map (its keys are data): the
/// top level, `metadata`, `spec`, `status`, and each captured state with its
/// `metaInfo`. Everything else that holds an object is a map: labels,
/// annotations, `nodeSelector`, `capture`, `capturedStates` and the
/// free-form nmstate documents at every depth.
pub fn is_struct(path: &Path) -> bool {
    let Some(names) = path.field_names() else {
        return false;
    };
    matches!(
        names.as_slice(),
        [] | ["metadata"]
            | ["spec"]
            | ["status"]
            | ["status", "capturedStates", _]
            | ["status", "capturedStates", _, "metaInfo"]
    )
}

/// The fields an object sets, as an applied configuration owns them
/// (structured-merge-diff's `ToFieldSet`), without the fields nobody owns
/// (see [`is_stripped`]).
///
/// Every scalar, `null`, list and empty map is a member. A map key holding a
/// non-empty map is a member too, and so are its fields; a struct field
/// holding a non-empty map is not, only its fields are.
///
/// ```
/// # use nmstate_apiserver::rules::managed_fields::fields_of;
/// # use serde_json::json;
/// let policy = json!({
///     "apiVersion": "nmstate.io/v1",
///     "kind": "NodeNetworkConfigurationPolicy",
///     "metadata": {"name": "br1", "labels": {"app": "net"}},
///     "spec": {"maxUnavailable": 3, "desiredState": {"dns-resolver": {"config": {"server": ["8.8.8.8"]}}}},
/// });
/// assert_eq!(
///     fields_of(&policy).to_fields_v1(),
///     json!({
///         "f:metadata": {"f:labels": {"f:app": {}}},
///         "f:spec": {
///             "f:maxUnavailable": {},
///             "f:desiredState": {"f:dns-resolver": {".": {}, "f:config": {".": {}, "f:server": {}}}},
///         },
///     }),
/// );
/// ```
pub fn fields_of(object: &Value) -> FieldSet {
    fn collect(path: &Path, object: &Map<String, Value>, set: &mut FieldSet) {
        let is_struct = is_struct(path);
        for (key, value) in object {
            let child = path.child(key);
            match value {
                Value::Object(fields) if !fields.is_empty() => {
                    collect(&child, fields, set);
                    if !is_struct {
                        set.insert(child);
                    }
                }
                _ => set.insert(child),
            }
        }
    }
    let mut set = FieldSet::new();
    if let Value::Object(object) = object {
        collect(&Path::root(), object, &mut set);
    }
    set.retain(|path| !is_stripped(path));
    set
}

/// The fields that differ between two versions of an object.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Comparison {
    /// Present only in the new version; a map that appears is a member
    /// itself, besides its fields.
    pub added: FieldSet,
    /// Present in both with different values (or different kinds of value).
    pub modified: FieldSet,
    /// Present only in the old version; likewise for a map that disappears.
    pub removed: FieldSet,
}

impl Comparison {
    /// Whether nothing differs.
    pub fn is_same(&self) -> bool {
        self.added.is_empty() && self.modified.is_empty() && self.removed.is_empty()
    }

    /// The fields the new version sets differently: added or modified.
    pub fn changed(&self) -> FieldSet {
        self.added.union(&self.modified)
    }

    /// Keeps only the paths for which `keep` holds.
    pub fn retain(&mut self, mut keep: impl FnMut(&Path) -> bool) {
        self.added.retain(&mut keep);
        self.modified.retain(&mut keep);
        self.removed.retain(&mut keep);
    }
}

/// Compares two versions of an object field by field (structured-merge-diff's
/// `Compare`). Lists and scalars are compared as wholes; maps key by key.
/// Numbers compare by value, so `1` and `1.0` are the same.
pub fn compare(old: &Value, new: &Value) -> Comparison {
    let mut comparison = Comparison::default();
    walk(&Path::root(), Some(old), Some(new), &mut comparison);
    comparison
}

fn walk(path: &Path, old: Option<&Value>, new: Option<&Value>, out: &mut Comparison) {
    match (old, new) {
        (None, None) => {}
        (Some(Value::Object(old)), Some(Value::Object(new))) => {
            for (key, value) in old {
                walk(&path.child(key), Some(value), new.get(key), out);
            }
            for (key, value) in new {
                if !old.contains_key(key) {
                    walk(&path.child(key), None, Some(value), out);
                }
            }
        }
        (None, Some(Value::Object(new))) => {
            out.added.insert(path.clone());
            for (key, value) in new {
                walk(&path.child(key), None, Some(value), out);
            }
        }
        (Some(Value::Object(old)), None) => {
            out.removed.insert(path.clone());
            for (key, value) in old {
                walk(&path.child(key), Some(value), None, out);
            }
        }
        (None, Some(_)) => out.added.insert(path.clone()),
        (Some(_), None) => out.removed.insert(path.clone()),
        // A map replaced by a scalar or list, or the other way round: the
        // field itself changed, and the map's fields went or came.
        (Some(Value::Object(old)), Some(_)) => {
            out.modified.insert(path.clone());
            for (key, value) in old {
                walk(&path.child(key), Some(value), None, out);
            }
        }
        (Some(_), Some(Value::Object(new))) => {
            out.modified.insert(path.clone());
            for (key, value) in new {
                walk(&path.child(key), None, Some(value), out);
            }
        }
        (Some(old), Some(new)) => {
            if !same_value(old, new) {
                out.modified.insert(path.clone());
            }
        }
    }
}

/// [`compare`], for versions whose current states may be set aside (see
/// [`SetAside`]). Equal texts differ in nothing; otherwise the texts are
/// read as maps down to their lists and scalars, which are compared as
/// text and parsed only when their texts differ. The result is what
/// [`compare`] gives for the versions with their current states in place.
pub fn compare_setting_aside(old: &Value, new: &Value, aside: SetAside<'_>) -> Comparison {
    let mut comparison = compare(old, new);
    if aside.is_empty() {
        return comparison;
    }
    let at = Path::fields(["status", "currentState"]);
    comparison.retain(|path| !path.starts_with(&at));
    match (Side::of(old, aside.old), Side::of(new, aside.new)) {
        (Side::Text(old), Side::Text(new)) if old == new => {}
        (old @ (Side::Text(_) | Side::Absent), new @ (Side::Text(_) | Side::Absent)) => {
            let shape = |side| match side {
                Side::Text(text) => Some(Shape::of(text)),
                _ => None,
            };
            walk_shapes(
                &at,
                shape(old).as_ref(),
                shape(new).as_ref(),
                &mut comparison,
            );
        }
        (old, new) => walk(
            &at,
            old.to_value().as_ref(),
            new.to_value().as_ref(),
            &mut comparison,
        ),
    }
    comparison
}

/// A JSON text read as far as [`compare`] descends: maps key by key,
/// anything else as its text.
enum Shape<'a> {
    Map(BTreeMap<Cow<'a, str>, Shape<'a>>),
    Leaf(&'a str),
}

impl<'a> Shape<'a> {
    fn of(text: &'a str) -> Self {
        if !text.trim_start().starts_with('{') {
            return Shape::Leaf(text);
        }
        match current_state::members(text) {
            Some(members) => Shape::Map(
                members
                    .into_iter()
                    .map(|(key, value)| (key, Shape::of(value.get())))
                    .collect(),
            ),
            None => Shape::Leaf(text),
        }
    }
}

/// [`walk`] over shapes.
fn walk_shapes(
    path: &Path,
    old: Option<&Shape<'_>>,
    new: Option<&Shape<'_>>,
    out: &mut Comparison,
) {
    /// The members of a map only one side has.
    fn children(
        path: &Path,
        map: &BTreeMap<Cow<'_, str>, Shape<'_>>,
        old: bool,
        out: &mut Comparison,
    ) {
        for (key, value) in map {
            let (a, b) = if old {
                (Some(value), None)
            } else {
                (None, Some(value))
            };
            walk_shapes(&path.child(key), a, b, out);
        }
    }
    match (old, new) {
        (None, None) => {}
        (Some(Shape::Map(old)), Some(Shape::Map(new))) => {
            for (key, value) in old {
                walk_shapes(&path.child(key), Some(value), new.get(key), out);
            }
            for (key, value) in new {
                if !old.contains_key(key) {
                    walk_shapes(&path.child(key), None, Some(value), out);
                }
            }
        }
        (None, Some(Shape::Map(new))) => {
            out.added.insert(path.clone());
            children(path, new, false, out);
        }
        (Some(Shape::Map(old)), None) => {
            out.removed.insert(path.clone());
            children(path, old, true, out);
        }
        (None, Some(_)) => out.added.insert(path.clone()),
        (Some(_), None) => out.removed.insert(path.clone()),
        (Some(Shape::Map(old)), Some(_)) => {
            out.modified.insert(path.clone());
            children(path, old, true, out);
        }
        (Some(_), Some(Shape::Map(new))) => {
            out.modified.insert(path.clone());
            children(path, new, false, out);
        }
        (Some(Shape::Leaf(old)), Some(Shape::Leaf(new))) => {
            if !current_state::same_texts(old, new, &same_value) {
                out.modified.insert(path.clone());
            }
        }
    }
}

/// JSON equality with numbers compared by value, as structured-merge-diff
/// compares an integer with a float.
pub(crate) fn same_value(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => {
            x == y || ((x.is_f64() || y.is_f64()) && x.as_f64() == y.as_f64())
        }
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(x, y)| same_value(x, y))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len()
                && x.iter()
                    .all(|(key, x)| y.get(key).is_some_and(|y| same_value(x, y)))
        }
        _ => a == b,
    }
}
