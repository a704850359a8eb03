//! Validation of every field a user, controller or agent writes, reporting
//! every problem (not only the first) as a [`FieldError`] that reads like
//! Kubernetes' own (`metadata.name: Invalid value: "Foo": a lowercase RFC
//! 1123 subdomain must ...`).
//!
//! Entry points: [`validate_policy`], [`validate_policy_status`],
//! [`validate_state`], [`validate_enactment`], [`validate_object_name`],
//! [`validate_object_meta`]; [`decode`] and [`unknown_fields`] for turning a
//! request body into a typed object. Nothing here mutates its input or does
//! IO; turning the errors into a `Status` is the API server's job
//! ([`invalid_message`] gives it the message text).

mod decode;
pub mod names;
mod network;
pub(crate) mod nmpolicy;

use std::collections::BTreeMap;

pub use self::{
    decode::{decode, unknown_fields, unknown_fields_between},
    network::validate_network_state,
    nmpolicy::{capture_references, desired_state_has_templates},
};
use crate::{
    ENACTMENT_NODE_LABEL, ENACTMENT_POLICY_LABEL, IntOrString, NodeNetworkConfigurationEnactment,
    NodeNetworkConfigurationPolicy, NodeNetworkConfigurationPolicySpec,
    NodeNetworkConfigurationPolicyStatus, NodeNetworkState, ObjectMeta, ResourceKind, State,
    condition::{
        Condition, ConditionType, ENACTMENT_CONDITION_TYPES, POLICY_CONDITION_TYPES,
        STATE_CONDITION_TYPES,
    },
};

/// Most entries a node selector may have (upstream's CRD `maxProperties`).
pub const MAX_NODE_SELECTOR_ENTRIES: usize = 256;
/// Largest total size of a object's annotations, as Kubernetes.
pub const TOTAL_ANNOTATION_SIZE_LIMIT: usize = 256 * 1024;
/// Longest policy name: it becomes the `nmstate.io/policy` label value.
pub const MAX_POLICY_NAME_LENGTH: usize = names::LABEL_VALUE_MAX_LENGTH;

/// The kind of a field problem, mirroring Kubernetes' `field.ErrorType`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum FieldErrorKind {
    /// A referenced value was not found.
    NotFound,
    /// A required value is missing.
    Required,
    /// A value that must be unique is repeated.
    Duplicate,
    /// A value is malformed.
    Invalid,
    /// A value is not one of the supported ones.
    NotSupported,
    /// A valid value is not allowed here.
    Forbidden,
    /// A value is too long.
    TooLong,
    /// A list or map has too many entries.
    TooMany,
    /// Something went wrong that is not the user's fault.
    Internal,
    /// A value has the wrong JSON type.
    TypeInvalid,
}

impl FieldErrorKind {
    /// The `StatusCause.type` Kubernetes uses, e.g. `FieldValueInvalid`.
    pub fn cause_type(self) -> &'static str {
        match self {
            Self::NotFound => "FieldValueNotFound",
            Self::Required => "FieldValueRequired",
            Self::Duplicate => "FieldValueDuplicate",
            Self::Invalid => "FieldValueInvalid",
            Self::NotSupported => "FieldValueNotSupported",
            Self::Forbidden => "FieldValueForbidden",
            Self::TooLong => "FieldValueTooLong",
            Self::TooMany => "FieldValueTooMany",
            Self::Internal => "InternalError",
            Self::TypeInvalid => "FieldValueTypeInvalid",
        }
    }

    /// The words Kubernetes prints for it, e.g. `Invalid value`.
    pub fn description(self) -> &'static str {
        match self {
            Self::NotFound => "Not found",
            Self::Required => "Required value",
            Self::Duplicate => "Duplicate value",
            Self::Invalid | Self::TypeInvalid => "Invalid value",
            Self::NotSupported => "Unsupported value",
            Self::Forbidden => "Forbidden",
            Self::TooLong => "Too long",
            Self::TooMany => "Too many",
            Self::Internal => "Internal error",
        }
    }

    /// Whether Kubernetes leaves the offending value out of the message.
    fn omits_value(self) -> bool {
        matches!(
            self,
            Self::Required | Self::Forbidden | Self::TooLong | Self::Internal
        )
    }
}

/// The offending value of a [`FieldError`], printed as Kubernetes prints
/// it: strings quoted, numbers and booleans bare.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BadValue {
    /// Printed quoted, with Go's escapes.
    String(String),
    /// Printed as is (numbers, booleans, `null`).
    Raw(String),
}

impl BadValue {
    /// The value of a JSON scalar; `None` for objects and arrays, which
    /// Kubernetes does not print readably either.
    pub fn from_json(value: &serde_json::Value) -> Option<Self> {
        match value {
            serde_json::Value::String(text) => Some(Self::String(text.clone())),
            serde_json::Value::Number(number) => Some(Self::Raw(number.to_string())),
            serde_json::Value::Bool(flag) => Some(Self::Raw(flag.to_string())),
            serde_json::Value::Null => Some(Self::Raw("null".to_owned())),
            serde_json::Value::Array(_) | serde_json::Value::Object(_) => None,
        }
    }
}

impl std::fmt::Display for BadValue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::String(text) => f.write_str(&go_quote(text)),
            Self::Raw(text) => f.write_str(text),
        }
    }
}

impl From<&str> for BadValue {
    fn from(text: &str) -> Self {
        Self::String(text.to_owned())
    }
}

impl From<String> for BadValue {
    fn from(text: String) -> Self {
        Self::String(text)
    }
}

impl From<i64> for BadValue {
    fn from(value: i64) -> Self {
        Self::Raw(value.to_string())
    }
}

impl From<i32> for BadValue {
    fn from(value: i32) -> Self {
        Self::Raw(value.to_string())
    }
}

impl From<usize> for BadValue {
    fn from(value: usize) -> Self {
        Self::Raw(value.to_string())
    }
}

/// Quotes like Go's `%q`, so values print exactly as in Kubernetes.
pub(crate) fn go_quote(text: &str) -> String {
    let mut quoted = String::with_capacity(text.len() + 2);
    quoted.push('"');
    for c in text.chars() {
        match c {
            '"' => quoted.push_str("\\\""),
            '\\' => quoted.push_str("\\\\"),
            '\n' => quoted.push_str("\\n"),
            '\r' => quoted.push_str("\\r"),
            '\t' => quoted.push_str("\\t"),
            '\u{7}' => quoted.push_str("\\a"),
            '\u{8}' => quoted.push_str("\\b"),
            '\u{c}' => quoted.push_str("\\f"),
            '\u{b}' => quoted.push_str("\\v"),
            c if u32::from(c) < 0x20 || c == '\u{7f}' => {
                quoted.push_str(&format!("\\x{:02x}", u32::from(c)))
            }
            c if c.is_control() => quoted.push_str(&format!("\\u{:04x}", u32::from(c))),
            c => quoted.push(c),
        }
    }
    quoted.push('"');
    quoted
}

/// A path to a field as Kubernetes prints it: `spec.nodeSelector[foo/bar]`,
/// `spec.desiredState.interfaces[0].mtu`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct FieldPath(String);

impl FieldPath {
    /// A path starting at top-level field `root`.
    pub fn new(root: &str) -> Self {
        Self(root.to_owned())
    }

    /// The path of field `name` below this one.
    pub fn child(&self, name: &str) -> Self {
        if self.0.is_empty() {
            Self(name.to_owned())
        } else {
            Self(format!("{}.{name}", self.0))
        }
    }

    /// The path of map entry `key` below this one.
    pub fn key(&self, key: &str) -> Self {
        Self(format!("{}[{key}]", self.0))
    }

    /// The path of list element `index` below this one.
    pub fn index(&self, index: usize) -> Self {
        Self(format!("{}[{index}]", self.0))
    }

    /// The path as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for FieldPath {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl From<FieldPath> for String {
    fn from(path: FieldPath) -> Self {
        path.0
    }
}

/// One problem with one field, as Kubernetes' `field.Error`.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{}", self.display())]
pub struct FieldError {
    /// Where, e.g. `spec.desiredState.interfaces[0].mtu`; empty for the
    /// whole object.
    pub path: String,
    /// What kind of problem.
    pub kind: FieldErrorKind,
    /// The offending value, when Kubernetes would print one.
    pub value: Option<BadValue>,
    /// Why, in Kubernetes' or nmstate's words.
    pub message: String,
}

impl FieldError {
    /// A problem of `kind` at `path`.
    pub fn new(
        kind: FieldErrorKind,
        path: impl Into<String>,
        value: Option<BadValue>,
        message: impl Into<String>,
    ) -> Self {
        Self {
            path: path.into(),
            kind,
            value,
            message: message.into(),
        }
    }

    /// `path: Invalid value: <value>: message`.
    pub fn invalid(
        path: impl Into<String>,
        value: impl Into<BadValue>,
        message: impl Into<String>,
    ) -> Self {
        Self::new(FieldErrorKind::Invalid, path, Some(value.into()), message)
    }

    /// `path: Required value: message`.
    pub fn required(path: impl Into<String>, message: impl Into<String>) -> Self {
        Self::new(FieldErrorKind::Required, path, None, message)
    }

    /// `path: Forbidden: message`.
    pub fn forbidden(path: impl Into<String>, message: impl Into<String>) -> Self {
        Self::new(FieldErrorKind::Forbidden, path, None, message)
    }

    /// `path: Duplicate value: <value>`.
    pub fn duplicate(path: impl Into<String>, value: impl Into<BadValue>) -> Self {
        Self::new(FieldErrorKind::Duplicate, path, Some(value.into()), "")
    }

    /// `path: Unsupported value: <value>: supported values: "a", "b"`.
    pub fn not_supported(
        path: impl Into<String>,
        value: impl Into<BadValue>,
        supported: &[&str],
    ) -> Self {
        let message = if supported.is_empty() {
            String::new()
        } else {
            let quoted: Vec<String> = supported.iter().map(|value| go_quote(value)).collect();
            format!("supported values: {}", quoted.join(", "))
        };
        Self::new(
            FieldErrorKind::NotSupported,
            path,
            Some(value.into()),
            message,
        )
    }

    /// `path: Too long: must have at most <max> bytes`.
    pub fn too_long(path: impl Into<String>, max: usize) -> Self {
        Self::new(
            FieldErrorKind::TooLong,
            path,
            None,
            format!("must have at most {max} bytes"),
        )
    }

    /// `path: Too many: <actual>: must have at most <max> items`.
    pub fn too_many(path: impl Into<String>, actual: usize, max: usize) -> Self {
        Self::new(
            FieldErrorKind::TooMany,
            path,
            Some(actual.into()),
            format!("must have at most {max} items"),
        )
    }

    /// The message without the path (Kubernetes' `ErrorBody`, used as
    /// `StatusCause.message`).
    pub fn body(&self) -> String {
        let mut body = self.kind.description().to_owned();
        if !self.kind.omits_value()
            && let Some(value) = &self.value
        {
            body.push_str(&format!(": {value}"));
        }
        if !self.message.is_empty() {
            body.push_str(": ");
            body.push_str(&self.message);
        }
        body
    }

    fn display(&self) -> String {
        if self.path.is_empty() {
            self.body()
        } else {
            format!("{}: {}", self.path, self.body())
        }
    }
}

/// The message of Kubernetes' 422 Invalid status for `errors` on object
/// `name` of `kind`: `NodeNetworkConfigurationPolicy.nmstate.io "p" is
/// invalid: <error>` with several errors in `[a, b]` (duplicates dropped).
pub fn invalid_message(kind: ResourceKind, name: &str, errors: &[FieldError]) -> String {
    let mut messages: Vec<String> = Vec::new();
    for error in errors {
        let message = error.to_string();
        if !messages.contains(&message) {
            messages.push(message);
        }
    }
    let prefix = format!("{} {} is invalid", kind.group_kind(), go_quote(name));
    match messages.as_slice() {
        [] => prefix,
        [one] => format!("{prefix}: {one}"),
        many => format!("{prefix}: [{}]", many.join(", ")),
    }
}

/// Checks an object name: a DNS-1123 subdomain for every kind; policies
/// also at most 63 characters, because their name becomes the
/// `nmstate.io/policy` label value of their enactments (as upstream's
/// admission policy demands).
pub fn validate_object_name(kind: ResourceKind, name: &str) -> Vec<FieldError> {
    let path = "metadata.name";
    if name.is_empty() {
        return vec![FieldError::required(
            path,
            "name or generateName is required",
        )];
    }
    name_messages(kind, name)
        .into_iter()
        .map(|message| FieldError::invalid(path, name, message))
        .collect()
}

fn name_messages(kind: ResourceKind, name: &str) -> Vec<String> {
    if kind != ResourceKind::NodeNetworkConfigurationPolicy {
        return names::is_dns1123_subdomain(name);
    }
    // The 63-character limit implies the 253 one; report only the tighter.
    let mut messages = Vec::new();
    if name.len() > MAX_POLICY_NAME_LENGTH {
        messages.push(names::max_len_error(MAX_POLICY_NAME_LENGTH));
    }
    if !names::matches_dns1123_subdomain(name) {
        messages.push(names::dns1123_subdomain_regex_error());
    }
    messages
}

/// Checks metadata as Kubernetes does for a cluster-scoped object: name
/// (see [`validate_object_name`]), `generateName`, no namespace, label keys
/// and values, annotation keys and total size. The API server fills in a
/// generated name before calling this.
pub fn validate_object_meta(kind: ResourceKind, metadata: &ObjectMeta) -> Vec<FieldError> {
    let mut errors = validate_object_name(kind, metadata.name.as_deref().unwrap_or_default());
    if let Some(prefix) = metadata
        .generate_name
        .as_deref()
        .filter(|prefix| !prefix.is_empty())
    {
        // Kubernetes appends random characters, so a trailing '-' is fine.
        let masked = prefix.strip_suffix('-').unwrap_or(prefix);
        errors.extend(
            name_messages(kind, masked)
                .into_iter()
                .map(|message| FieldError::invalid("metadata.generateName", prefix, message)),
        );
    }
    if metadata
        .namespace
        .as_deref()
        .is_some_and(|namespace| !namespace.is_empty())
    {
        errors.push(FieldError::forbidden(
            "metadata.namespace",
            "not allowed on this type",
        ));
    }
    if let Some(labels) = &metadata.labels {
        errors.extend(validate_labels(labels, "metadata.labels"));
    }
    if let Some(annotations) = &metadata.annotations {
        let path = "metadata.annotations";
        let mut total = 0;
        for (key, value) in annotations {
            errors.extend(
                names::is_qualified_name(&key.to_ascii_lowercase())
                    .into_iter()
                    .map(|message| FieldError::invalid(path, key.as_str(), message)),
            );
            total += key.len() + value.len();
        }
        if total > TOTAL_ANNOTATION_SIZE_LIMIT {
            errors.push(FieldError::too_long(path, TOTAL_ANNOTATION_SIZE_LIMIT));
        }
    }
    errors
}

/// Label keys must be qualified names and values label values; like
/// Kubernetes, errors name the map, not the key.
fn validate_labels(labels: &BTreeMap<String, String>, path: &str) -> Vec<FieldError> {
    let mut errors = Vec::new();
    for (key, value) in labels {
        for message in names::is_qualified_name(key) {
            errors.push(FieldError::invalid(path, key.as_str(), message));
        }
        for message in names::is_valid_label_value(value) {
            errors.push(FieldError::invalid(path, value.as_str(), message));
        }
    }
    errors
}

/// Checks a policy on create and update: metadata and spec. (Status is
/// reset or ignored on those writes; [`validate_policy_status`] checks
/// status writes.)
pub fn validate_policy(policy: &NodeNetworkConfigurationPolicy) -> Vec<FieldError> {
    let mut errors = validate_object_meta(
        ResourceKind::NodeNetworkConfigurationPolicy,
        &policy.metadata,
    );
    errors.extend(validate_policy_spec(&policy.spec, &FieldPath::new("spec")));
    errors
}

/// Checks a policy spec found at `path` (`spec` in a policy, elsewhere in a
/// dry-run request): node selector, `maxUnavailable`, captures and desired
/// state.
pub fn validate_policy_spec(
    spec: &NodeNetworkConfigurationPolicySpec,
    path: &FieldPath,
) -> Vec<FieldError> {
    let mut errors = validate_node_selector(&spec.node_selector, &path.child("nodeSelector"));
    if let Some(max_unavailable) = &spec.max_unavailable {
        errors.extend(validate_max_unavailable(
            max_unavailable,
            &path.child("maxUnavailable"),
        ));
    }
    errors.extend(nmpolicy::validate_captures(
        &spec.capture,
        &path.child("capture"),
    ));
    if let Some(state) = &spec.desired_state {
        errors.extend(validate_desired_state(
            state,
            &spec.capture,
            &path.child("desiredState"),
        ));
    }
    errors
}

/// Node selector keys must be qualified names and values label values
/// (upstream's CRD and admission rules), with at most 256 entries.
fn validate_node_selector(
    selector: &BTreeMap<String, String>,
    path: &FieldPath,
) -> Vec<FieldError> {
    let mut errors = Vec::new();
    if selector.len() > MAX_NODE_SELECTOR_ENTRIES {
        errors.push(FieldError::too_many(
            path.as_str(),
            selector.len(),
            MAX_NODE_SELECTOR_ENTRIES,
        ));
    }
    for (key, value) in selector {
        let entry = path.key(key);
        for message in names::is_qualified_name(key) {
            errors.push(FieldError::invalid(entry.as_str(), key.as_str(), message));
        }
        for message in names::is_valid_label_value(value) {
            errors.push(FieldError::invalid(entry.as_str(), value.as_str(), message));
        }
    }
    errors
}

/// `maxUnavailable` is a non-negative integer or `<digits>%`.
fn validate_max_unavailable(value: &IntOrString, path: &FieldPath) -> Vec<FieldError> {
    match value {
        IntOrString::Int(count) if *count < 0 => {
            vec![FieldError::invalid(
                path.as_str(),
                *count,
                "must be greater than or equal to 0",
            )]
        }
        IntOrString::Int(_) => Vec::new(),
        IntOrString::String(text) => names::is_valid_percent(text)
            .into_iter()
            .map(|message| FieldError::invalid(path.as_str(), text.as_str(), message))
            .collect(),
    }
}

/// A policy's desired state: a JSON object; without capture templates it
/// must parse as an nmstate `NetworkState`; with templates, their syntax
/// and capture names are checked, and the parts without templates are
/// typed.
fn validate_desired_state(
    state: &State,
    captures: &BTreeMap<String, String>,
    path: &FieldPath,
) -> Vec<FieldError> {
    if let Some(error) = require_object(state, path) {
        return vec![error];
    }
    if desired_state_has_templates(state) {
        let mut errors = nmpolicy::validate_templates(&state.0, captures, path);
        errors.extend(nmpolicy::validate_templated_network_state(&state.0, path));
        errors
    } else {
        validate_network_state(&state.0, path)
    }
}

/// States are JSON objects; anything else is refused here, before nmstate
/// gives a less direct message.
fn require_object(state: &State, path: &FieldPath) -> Option<FieldError> {
    if state.0.is_object() {
        None
    } else {
        Some(FieldError::new(
            FieldErrorKind::TypeInvalid,
            path.as_str(),
            BadValue::from_json(&state.0),
            "must be an object",
        ))
    }
}

/// Checks the status a policy's controller writes.
pub fn validate_policy_status(status: &NodeNetworkConfigurationPolicyStatus) -> Vec<FieldError> {
    let path = FieldPath::new("status");
    let mut errors = validate_conditions(
        &status.conditions,
        &POLICY_CONDITION_TYPES,
        &path.child("conditions"),
    );
    errors.extend(non_negative(
        status.observed_generation,
        &path.child("observedGeneration"),
    ));
    let counts = [
        ("matchingNodes", status.matching_nodes),
        ("availableNodes", status.available_nodes),
        ("progressingNodes", status.progressing_nodes),
        ("pendingNodes", status.pending_nodes),
        ("failingNodes", status.failing_nodes),
        ("abortedNodes", status.aborted_nodes),
        ("unavailableNodeCount", status.unavailable_node_count),
    ];
    for (field, count) in counts {
        errors.extend(non_negative(count.map(i64::from), &path.child(field)));
    }
    for (generation, count) in &status.unavailable_node_count_map {
        errors.extend(non_negative(
            Some(i64::from(*count)),
            &path.child("unavailableNodeCountMap").key(generation),
        ));
    }
    errors
}

/// Checks a node state (metadata and the status it consists of). The
/// current state must be a JSON object; its content is what nmstate
/// reported and is not second-guessed.
pub fn validate_state(state: &NodeNetworkState) -> Vec<FieldError> {
    let mut errors = validate_object_meta(ResourceKind::NodeNetworkState, &state.metadata);
    if let Some(status) = &state.status {
        let path = FieldPath::new("status");
        if let Some(current) = &status.current_state {
            errors.extend(require_object(current, &path.child("currentState")));
        }
        errors.extend(validate_conditions(
            &status.conditions,
            &STATE_CONDITION_TYPES,
            &path.child("conditions"),
        ));
    }
    errors
}

/// Checks an enactment: metadata, the `nmstate.io/node` and
/// `nmstate.io/policy` labels agents and the controller find it by, and the
/// status. The rendered desired state must parse as an nmstate
/// `NetworkState` (it is what the agent applies); captured states must be
/// JSON objects.
pub fn validate_enactment(enactment: &NodeNetworkConfigurationEnactment) -> Vec<FieldError> {
    let mut errors = validate_object_meta(
        ResourceKind::NodeNetworkConfigurationEnactment,
        &enactment.metadata,
    );
    let labels = FieldPath::new("metadata.labels");
    for label in [ENACTMENT_NODE_LABEL, ENACTMENT_POLICY_LABEL] {
        let value = enactment
            .metadata
            .labels
            .as_ref()
            .and_then(|labels| labels.get(label));
        if value.is_none_or(String::is_empty) {
            errors.push(FieldError::required(labels.key(label).as_str(), ""));
        }
    }
    let Some(status) = &enactment.status else {
        return errors;
    };
    let path = FieldPath::new("status");
    if let Some(desired) = &status.desired_state {
        let desired_path = path.child("desiredState");
        match require_object(desired, &desired_path) {
            Some(error) => errors.push(error),
            None => errors.extend(validate_network_state(&desired.0, &desired_path)),
        }
    }
    for (name, captured) in &status.captured_states {
        let entry = path.child("capturedStates").key(name);
        if name.is_empty() {
            errors.push(FieldError::required(
                entry.as_str(),
                "capture name must not be empty",
            ));
        }
        if let Some(state) = &captured.state {
            errors.extend(require_object(state, &entry.child("state")));
        }
    }
    errors.extend(non_negative(
        status.policy_generation,
        &path.child("policyGeneration"),
    ));
    errors.extend(validate_conditions(
        &status.conditions,
        &ENACTMENT_CONDITION_TYPES,
        &path.child("conditions"),
    ));
    for (generation, count) in &status.retry_count {
        let entry = path.child("retryCount").key(generation);
        if generation.parse::<i64>().is_err() {
            errors.push(FieldError::invalid(
                entry.as_str(),
                generation.as_str(),
                "must be a policy generation (a decimal integer)",
            ));
        }
        errors.extend(non_negative(Some(i64::from(*count)), &entry));
    }
    errors
}

fn non_negative(value: Option<i64>, path: &FieldPath) -> Option<FieldError> {
    value.filter(|value| *value < 0).map(|value| {
        FieldError::invalid(path.as_str(), value, "must be greater than or equal to 0")
    })
}

/// Condition types must be ones the kind uses, each at most once.
fn validate_conditions(
    conditions: &[Condition],
    allowed: &[ConditionType],
    path: &FieldPath,
) -> Vec<FieldError> {
    let supported: Vec<&str> = allowed.iter().map(ConditionType::as_str).collect();
    let mut errors = Vec::new();
    for (index, condition) in conditions.iter().enumerate() {
        let type_path = path.index(index).child("type");
        if !allowed.contains(&condition.type_) {
            errors.push(FieldError::not_supported(
                type_path.as_str(),
                condition.type_.as_str(),
                &supported,
            ));
        } else if conditions[..index]
            .iter()
            .any(|earlier| earlier.type_ == condition.type_)
        {
            errors.push(FieldError::duplicate(
                type_path.as_str(),
                condition.type_.as_str(),
            ));
        }
    }
    errors
}

#[cfg(test)]
mod tests;
