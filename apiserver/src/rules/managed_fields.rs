//! `metadata.managedFields` (who owns which field of an object) and
//! server-side apply, as kube-apiserver does them for custom resources.
//!
//! Two entry points, both pure functions over `serde_json::Value` objects:
//!
//! - [`update_managed_fields`] for every write that is not an apply (create,
//!   update, JSON and merge patch): the writing manager takes the fields it
//!   changed, every other manager loses them, and everyone loses the fields
//!   that went away.
//! - [`server_side_apply`] for `application/apply-patch+yaml`: merges an
//!   applied configuration into the live object, removes what the manager
//!   applied last time and no longer applies (unless someone else owns it),
//!   and refuses to change another manager's field unless forced.
//!
//! Ownership is tracked per scope: a write to the main resource never owns or
//! disowns `status`, and a write to `/status` owns nothing but `status`. The
//! field-level model (which paths an object sets, how lists and free-form
//! nmstate documents count) is described at [`fields_of`].
//!
//! This module does not validate objects, reset fields a strategy owns
//! (copying `status` from the live object on a main-resource write, say), or
//! fill in system metadata (`uid`, `generation`, `resourceVersion`...): the
//! handler does that before storing what these functions return.

use std::collections::HashMap;

use nmstate_openapi::validation::TOTAL_ANNOTATION_SIZE_LIMIT;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::{current_state::SetAside, patch::PatchType};
use crate::status::Cause;

mod conflict;
pub(crate) mod fieldset;
#[cfg(test)]
mod tests;

pub use conflict::{ApplyConflict, CAUSE_FIELD_MANAGER_CONFLICT, Conflict, ConflictingManager};
pub use fieldset::{
    Comparison, FieldSet, Path, compare, compare_setting_aside, fields_of, is_stripped, is_struct,
};

/// The annotation `kubectl apply` (client-side) keeps its last applied
/// configuration in.
pub const LAST_APPLIED_ANNOTATION: &str = "kubectl.kubernetes.io/last-applied-configuration";

/// At most this many `Update` entries are kept; older ones are merged into
/// `ancient-changes` (kube's `DefaultMaxUpdateManagers`).
pub const MAX_UPDATE_MANAGERS: usize = 10;

/// The longest field manager name kube accepts, in bytes.
pub const FIELD_MANAGER_MAX_LENGTH: usize = 128;

/// The `Update` entry that older `Update` entries are merged into.
const ANCIENT_CHANGES: &str = "ancient-changes";

/// The `Update` entry that takes the fields of an object without managed
/// fields when it is first applied to.
const BEFORE_FIRST_APPLY: &str = "before-first-apply";

/// The only manager whose apply upgrades from client-side apply (see
/// [`server_side_apply`]).
const KUBECTL: &str = "kubectl";

/// How a `managedFields` entry got its fields.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Operation {
    /// Server-side apply: the entry is exactly the applied configuration.
    Apply,
    /// Any other write: the entry holds the fields the manager changed.
    Update,
}

impl Operation {
    fn as_str(self) -> &'static str {
        match self {
            Operation::Apply => "Apply",
            Operation::Update => "Update",
        }
    }
}

/// Who is writing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Manager<'a> {
    /// The field manager: `?fieldManager=`, or else derived from the
    /// User-Agent by [`field_manager`].
    pub name: &'a str,
    /// The group/version of the request, `nmstate.io/v1` or
    /// `nmstate.io/v1beta1`; recorded in the entry.
    pub api_version: &'a str,
    /// `Some("status")` for a write to `/status`, `None` for the main
    /// resource.
    pub subresource: Option<&'a str>,
}

/// `metav1.ManagedFieldsEntry`, as it appears in `metadata.managedFields`.
///
/// ```yaml
/// - manager: kubectl-client-side-apply
///   operation: Update
///   apiVersion: nmstate.io/v1
///   time: "2025-01-01T00:00:00Z"
///   fieldsType: FieldsV1
///   fieldsV1:
///     f:spec:
///       .: {}
///       f:maxUnavailable: {}
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ManagedFieldsEntry {
    /// The field manager.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub manager: String,
    /// `Apply` or `Update`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub operation: String,
    /// The group/version the fields are named in.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub api_version: String,
    /// When the manager last changed the object (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time: Option<String>,
    /// Always `FieldsV1`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub fields_type: String,
    /// The owned fields (see [`FieldSet::to_fields_v1`]).
    #[serde(default, rename = "fieldsV1", skip_serializing_if = "Option::is_none")]
    pub fields_v1: Option<Value>,
    /// `status` for an entry written through `/status`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub subresource: String,
}

/// Why `metadata.managedFields` could not be read. kube's messages.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeError {
    /// `managedFields` is not a list.
    #[error("managedFields must be a list")]
    NotAList,
    /// An entry does not have the shape of a `ManagedFieldsEntry`.
    #[error("managed fields entry {index}: {source}")]
    Entry {
        /// Its position.
        index: usize,
        /// What is wrong with it.
        #[source]
        source: serde_json::Error,
    },
    /// An entry's operation is neither `Apply` nor `Update`.
    #[error("operation must be `Apply` or `Update`")]
    Operation,
    /// An entry has no `apiVersion`.
    #[error("apiVersion must not be empty")]
    MissingApiVersion,
    /// An entry has no `fieldsType`.
    #[error("missing fieldsType in managed fields entry {index}")]
    MissingFieldsType {
        /// Its position.
        index: usize,
    },
    /// An entry's `fieldsType` is not `FieldsV1`.
    #[error("invalid fieldsType {fields_type:?} in managed fields entry {index}")]
    InvalidFieldsType {
        /// Its position.
        index: usize,
        /// What it says.
        fields_type: String,
    },
    /// A member of a `fieldsV1` value is not a JSON object.
    #[error("error decoding set: {path}: expected an object, found {found}")]
    FieldsNotAnObject {
        /// Where, in `FieldsV1` keys joined by dots.
        path: String,
        /// The JSON type found instead.
        found: &'static str,
    },
    /// A `fieldsV1` key is not `.` and has no known prefix.
    #[error(
        "error decoding set: unknown path element {key:?}: expected a prefix of f:, k:, v: or i:"
    )]
    UnknownPathElement {
        /// The key.
        key: String,
    },
}

/// Why a server-side apply was refused.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ApplyError {
    /// The apply would change fields other managers own (409).
    #[error(transparent)]
    Conflict(#[from] ApplyConflict),
    /// The applied configuration carries `metadata.managedFields` (400).
    #[error("metadata.managedFields must be nil")]
    ManagedFieldsInBody,
    /// The applied configuration's `apiVersion` is not the request's (400).
    #[error(
        "Incorrect version specified in apply patch. Specified patch version: {specified}, expected: {expected}"
    )]
    WrongVersion {
        /// What the body says (empty when it says nothing).
        specified: String,
        /// The request's group/version.
        expected: String,
    },
    /// The live object's `managedFields` cannot be read (500).
    #[error("failed to decode managed fields: {0}")]
    LiveManagedFields(#[source] DecodeError),
}

impl ApplyError {
    /// The `Status` causes: one per conflicting field, none otherwise.
    pub fn causes(&self) -> Vec<Cause> {
        match self {
            ApplyError::Conflict(conflict) => conflict.causes(),
            _ => Vec::new(),
        }
    }
}

/// Which options struct a write's query parameters decode into, for
/// [`validate_options`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Options {
    /// `POST`.
    Create,
    /// `PUT`.
    Update,
    /// `PATCH` with this content type.
    Patch(PatchType),
}

impl Options {
    fn kind(self) -> &'static str {
        match self {
            Options::Create => "CreateOptions",
            Options::Update => "UpdateOptions",
            Options::Patch(_) => "PatchOptions",
        }
    }
}

/// Query parameters kube rejects (422 Invalid), with kube's message:
/// `PatchOptions.meta.k8s.io "" is invalid: fieldManager: Required value: is required for apply patch`.
///
/// The `Status` details kube sends carry `group: meta.k8s.io`,
/// `kind: <kind>` and the causes.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{kind}.meta.k8s.io \"\" is invalid: {}", summary(.errors))]
pub struct InvalidOptions {
    /// `CreateOptions`, `UpdateOptions` or `PatchOptions`.
    pub kind: &'static str,
    errors: Vec<(Cause, String)>,
}

impl InvalidOptions {
    /// One cause per problem: `{reason: FieldValueRequired, message: "Required value: is required for apply patch", field: fieldManager}`.
    pub fn causes(&self) -> Vec<Cause> {
        self.errors.iter().map(|(cause, _)| cause.clone()).collect()
    }
}

fn summary(errors: &[(Cause, String)]) -> String {
    let lines: Vec<&str> = errors.iter().map(|(_, line)| line.as_str()).collect();
    match lines.as_slice() {
        [line] => (*line).to_owned(),
        lines => format!("[{}]", lines.join(", ")),
    }
}

/// Checks `fieldManager` and `force` as kube's `ValidatePatchOptions` (and
/// its create and update twins) do: apply needs a field manager, only apply
/// takes `force`, and a field manager is at most 128 bytes of printable
/// characters.
pub fn validate_options(
    options: Options,
    field_manager: Option<&str>,
    force: Option<bool>,
) -> Result<(), InvalidOptions> {
    let mut errors = Vec::new();
    let mut push = |reason: &str, field: &str, body: String| {
        errors.push((
            Cause {
                reason: reason.to_owned(),
                message: body.clone(),
                field: field.to_owned(),
            },
            format!("{field}: {body}"),
        ));
    };
    let field_manager = field_manager.unwrap_or_default();
    if let Options::Patch(patch_type) = options {
        if patch_type == PatchType::Apply {
            if field_manager.is_empty() {
                push(
                    "FieldValueRequired",
                    "fieldManager",
                    "Required value: is required for apply patch".to_owned(),
                );
            }
        } else if force.is_some() {
            push(
                "FieldValueForbidden",
                "force",
                "Forbidden: may not be specified for non-apply patch".to_owned(),
            );
        }
    }
    if field_manager.len() > FIELD_MANAGER_MAX_LENGTH {
        push(
            "FieldValueTooLong",
            "fieldManager",
            format!("Too long: may not be more than {FIELD_MANAGER_MAX_LENGTH} bytes"),
        );
    }
    for (position, character) in field_manager.char_indices() {
        if !is_print(character) {
            push(
                "FieldValueInvalid",
                "fieldManager",
                format!(
                    "Invalid value: {field_manager:?}: invalid character U+{:04X} (at position {position})",
                    u32::from(character)
                ),
            );
        }
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(InvalidOptions {
            kind: options.kind(),
            errors,
        })
    }
}

/// The field manager of a write: `?fieldManager=` when given, else the
/// User-Agent up to its first `/` (kube's `managerOrUserAgent`), without
/// unprintable characters and cut to 128 bytes. kubectl always sends a
/// field manager; `curl/8.5.0` becomes `curl`.
pub fn field_manager(requested: Option<&str>, user_agent: Option<&str>) -> String {
    if let Some(requested) = requested.filter(|requested| !requested.is_empty()) {
        return requested.to_owned();
    }
    let prefix = user_agent
        .unwrap_or_default()
        .split('/')
        .next()
        .unwrap_or_default();
    let mut manager = String::new();
    for character in prefix.chars().filter(|c| is_print(*c)) {
        if manager.len() + character.len_utf8() > FIELD_MANAGER_MAX_LENGTH {
            break;
        }
        manager.push(character);
    }
    manager
}

/// Go's `unicode.IsPrint`, near enough: no control characters, and no
/// spaces other than U+0020.
fn is_print(character: char) -> bool {
    character == ' ' || !(character.is_control() || character.is_whitespace())
}

/// Records a non-apply write (create, update, JSON or merge patch) in
/// `new`'s `metadata.managedFields`. `live` is the stored object, `None` for
/// a create; `now` is the RFC 3339 time to stamp (`2025-01-01T00:00:00Z`).
///
/// As kube does:
/// - The base is the `managedFields` the request carries (a client may edit
///   them), unless they are absent or unreadable, or the write is to a
///   subresource: then the live object's. A request carrying `[]` or `[{}]`
///   clears them, and an existing object without managed fields stays
///   without until it is applied to.
/// - The manager's `Update` entry (one per manager, API version and
///   subresource) gains the fields the write added or modified, and its time
///   becomes `now`; every other entry loses them (updates always win), and
///   all entries lose the fields the write removed. A write that changes
///   nothing leaves the entries as they were.
/// - Entries left empty disappear; beyond [`MAX_UPDATE_MANAGERS`] `Update`
///   entries, the oldest are merged into `ancient-changes`.
pub fn update_managed_fields(
    live: Option<&Value>,
    new: &mut Value,
    manager: &Manager<'_>,
    now: &str,
) {
    update_managed_fields_setting_aside(live, new, manager, now, SetAside::default());
}

/// [`update_managed_fields`] for versions whose current states may be set
/// aside (see [`SetAside`]): the fields are those of the versions with
/// their current states in place.
pub fn update_managed_fields_setting_aside(
    live: Option<&Value>,
    new: &mut Value,
    manager: &Manager<'_>,
    now: &str,
    aside: SetAside<'_>,
) {
    let requested = managed_fields_of(new).cloned();
    let from_live = || {
        live.and_then(|live| decode(managed_fields_of(live)).ok())
            .unwrap_or_default()
    };
    let owners = if manager.subresource.is_some() {
        from_live()
    } else if is_reset(requested.as_ref()) {
        Vec::new()
    } else {
        match decode(requested.as_ref()) {
            Ok(owners) if !owners.is_empty() => owners,
            _ => from_live(),
        }
    };
    remove_managed_fields(new);
    if owners.is_empty() && live.is_some() {
        // kube's skipNonAppliedManager: an object that has lost its managed
        // fields is only tracked again once something applies to it.
        return;
    }
    // Compared in place: the live object can be large (a node state's
    // current state), and a copy of it would serve nothing.
    let empty = empty_object();
    let old = live.unwrap_or(&empty);
    let owners = record_update(owners, old, new, manager, now, aside);
    let owners = cap_update_managers(owners);
    set_managed_fields(new, &owners);
}

/// Server-side apply: merges the applied configuration into `live` (`None`
/// when the object does not exist yet; the handler then creates what this
/// returns, after filling in system metadata) and records `manager`'s
/// `Apply` entry as exactly the fields it applied. `applied` comes from
/// [`parse_apply_body`](super::patch::parse_apply_body).
///
/// - Maps merge key by key; lists and scalars in the applied configuration
///   replace the live ones (every list is atomic). An explicit `null` is
///   stored as `null`.
/// - Fields the manager applied last time and not this time are removed
///   from the object, unless another manager (applier or updater) owns them
///   or something below them; maps left empty by that go too.
/// - A field the apply adds or changes that another manager owns is a
///   conflict ([`ApplyError::Conflict`]) unless `force`, which moves it to
///   this manager. Applying the value a field already has is no conflict:
///   both managers then own it.
/// - For the manager `kubectl`, conflicts are allowed on fields whose value
///   in the live object's `kubectl.kubernetes.io/last-applied-configuration`
///   equals the live value (kube's upgrade path from client-side apply), and
///   that annotation, if present, is rewritten to the applied configuration.
/// - A live object without managed fields first gets a `before-first-apply`
///   `Update` entry owning all its fields.
/// - With `manager.subresource == Some("status")` only `status` is merged
///   and owned; otherwise `status` in the applied configuration is ignored.
///   Applying to the status of a missing object is the handler's 404.
///
/// `metadata.resourceVersion` in the applied configuration is merged like
/// any field, so the handler's optimistic-concurrency check sees it.
pub fn server_side_apply(
    live: Option<&Value>,
    applied: &Value,
    manager: &Manager<'_>,
    force: bool,
    now: &str,
) -> Result<Value, ApplyError> {
    let specified = applied
        .get("apiVersion")
        .and_then(Value::as_str)
        .unwrap_or_default();
    if specified != manager.api_version {
        return Err(ApplyError::WrongVersion {
            specified: specified.to_owned(),
            expected: manager.api_version.to_owned(),
        });
    }
    if managed_fields_of(applied).is_some_and(|fields| !fields.is_null()) {
        return Err(ApplyError::ManagedFieldsInBody);
    }
    let mut owners = match live {
        Some(live) => decode(managed_fields_of(live)).map_err(ApplyError::LiveManagedFields)?,
        None => Vec::new(),
    };
    let mut live_object = live.cloned().unwrap_or_else(empty_object);
    remove_managed_fields(&mut live_object);
    if owners.is_empty() && live.is_some() {
        let before_first_apply = Manager {
            name: BEFORE_FIRST_APPLY,
            ..*manager
        };
        owners = record_update(
            owners,
            &empty_object(),
            &live_object,
            &before_first_apply,
            now,
            SetAside::default(),
        );
    }

    let subresource = manager.subresource.unwrap_or_default();
    let scoped = applied_in_scope(applied, manager.subresource);
    let mut applied_fields = fields_of(&scoped);
    applied_fields.retain(|path| in_scope(path, manager.subresource));
    // From here on `owners` holds the other entries only.
    let previous = owners
        .iter()
        .position(|owner| {
            owner.is(
                manager.name,
                Operation::Apply,
                manager.api_version,
                subresource,
            )
        })
        .map(|index| owners.remove(index));
    let last_applied = previous
        .as_ref()
        .map(|owner| owner.fields.clone())
        .unwrap_or_default();
    let keep = owners.iter().fold(applied_fields.clone(), |set, owner| {
        set.union(&owner.fields)
    });

    let mut merged = merge(&live_object, &scoped);
    prune(&mut merged, &last_applied.difference(&keep), &keep);

    let mut comparison = compare(&live_object, &merged);
    comparison.retain(|path| !is_stripped(path) && in_scope(path, manager.subresource));
    let changed = comparison.changed();
    if !force {
        let conflicts = conflicts(&owners, &changed);
        let conflicts = if manager.name == KUBECTL {
            forgiven_by_last_applied(conflicts, &live_object, manager.api_version)
        } else {
            conflicts
        };
        if !conflicts.is_empty() {
            return Err(ApplyConflict::new(conflicts).into());
        }
    }

    for owner in &mut owners {
        owner.fields = owner
            .fields
            .difference(&changed)
            .difference(&comparison.removed);
    }
    // kube stamps the time only when the apply changed the object.
    let time = if fieldset::same_value(&live_object, &merged) {
        previous.and_then(|owner| owner.time)
    } else {
        Some(now.to_owned())
    };
    owners.push(Owner {
        manager: manager.name.to_owned(),
        operation: Operation::Apply,
        api_version: manager.api_version.to_owned(),
        subresource: subresource.to_owned(),
        time,
        fields: applied_fields,
    });
    owners.retain(|owner| !owner.fields.is_empty());

    if manager.name == KUBECTL {
        sync_last_applied(&mut merged, applied);
    }
    set_managed_fields(&mut merged, &owners);
    Ok(merged)
}

/// One decoded `managedFields` entry.
#[derive(Clone, Debug)]
struct Owner {
    manager: String,
    operation: Operation,
    api_version: String,
    subresource: String,
    time: Option<String>,
    fields: FieldSet,
}

impl Owner {
    /// Whether this is the entry of that manager. Entries are told apart by
    /// manager, operation and subresource, and `Update` entries also by API
    /// version (an applier has one entry whatever version it applies in).
    fn is(
        &self,
        manager: &str,
        operation: Operation,
        api_version: &str,
        subresource: &str,
    ) -> bool {
        self.manager == manager
            && self.operation == operation
            && self.subresource == subresource
            && (operation == Operation::Apply || self.api_version == api_version)
    }

    /// kube's manager identifier: the entry as JSON without fields and time,
    /// and without API version for an applier. It orders conflicts and
    /// breaks ties when capping entries.
    fn identifier(&self) -> String {
        let entry = ManagedFieldsEntry {
            manager: self.manager.clone(),
            operation: self.operation.as_str().to_owned(),
            api_version: match self.operation {
                Operation::Apply => String::new(),
                Operation::Update => self.api_version.clone(),
            },
            subresource: self.subresource.clone(),
            ..ManagedFieldsEntry::default()
        };
        serde_json::to_string(&entry).unwrap_or_default()
    }

    fn to_entry(&self) -> ManagedFieldsEntry {
        ManagedFieldsEntry {
            manager: self.manager.clone(),
            operation: self.operation.as_str().to_owned(),
            api_version: self.api_version.clone(),
            time: self.time.clone(),
            fields_type: "FieldsV1".to_owned(),
            fields_v1: Some(self.fields.to_fields_v1()),
            subresource: self.subresource.clone(),
        }
    }
}

fn empty_object() -> Value {
    Value::Object(Map::new())
}

fn managed_fields_of(object: &Value) -> Option<&Value> {
    object.get("metadata")?.get("managedFields")
}

fn remove_managed_fields(object: &mut Value) {
    if let Some(Value::Object(metadata)) = object.get_mut("metadata") {
        metadata.shift_remove("managedFields");
    }
}

fn set_managed_fields(object: &mut Value, owners: &[Owner]) {
    if owners.is_empty() {
        remove_managed_fields(object);
        return;
    }
    let Value::Object(object) = object else {
        return;
    };
    let metadata = object.entry("metadata").or_insert_with(empty_object);
    if let Value::Object(metadata) = metadata {
        metadata.insert("managedFields".to_owned(), encode(owners));
    }
}

/// Whether the request asks to clear the managed fields: `[]` or `[{}]`.
fn is_reset(requested: Option<&Value>) -> bool {
    match requested {
        Some(Value::Array(entries)) => match entries.as_slice() {
            [] => true,
            [entry] => serde_json::from_value::<ManagedFieldsEntry>(entry.clone())
                .is_ok_and(|entry| entry == ManagedFieldsEntry::default()),
            _ => false,
        },
        _ => false,
    }
}

/// Reads `managedFields`; absent or `null` is no entries. A later entry of
/// the same manager replaces an earlier one, as in kube.
fn decode(entries: Option<&Value>) -> Result<Vec<Owner>, DecodeError> {
    let entries = match entries {
        None | Some(Value::Null) => return Ok(Vec::new()),
        Some(Value::Array(entries)) => entries,
        Some(_) => return Err(DecodeError::NotAList),
    };
    let mut owners: Vec<Owner> = Vec::with_capacity(entries.len());
    for (index, entry) in entries.iter().enumerate() {
        let entry: ManagedFieldsEntry = serde_json::from_value(entry.clone())
            .map_err(|source| DecodeError::Entry { index, source })?;
        let operation = match entry.operation.as_str() {
            "Apply" => Operation::Apply,
            "Update" => Operation::Update,
            _ => return Err(DecodeError::Operation),
        };
        if entry.api_version.is_empty() {
            return Err(DecodeError::MissingApiVersion);
        }
        match entry.fields_type.as_str() {
            "FieldsV1" => {}
            "" => return Err(DecodeError::MissingFieldsType { index }),
            _ => {
                return Err(DecodeError::InvalidFieldsType {
                    index,
                    fields_type: entry.fields_type,
                });
            }
        }
        let fields = match &entry.fields_v1 {
            Some(fields) => FieldSet::from_fields_v1(fields)?,
            None => FieldSet::new(),
        };
        owners.retain(|owner| {
            !owner.is(
                &entry.manager,
                operation,
                &entry.api_version,
                &entry.subresource,
            )
        });
        owners.push(Owner {
            manager: entry.manager,
            operation,
            api_version: entry.api_version,
            subresource: entry.subresource,
            time: entry.time,
            fields,
        });
    }
    Ok(owners)
}

/// Writes the entries in kube's order: `Apply` before `Update`, then oldest
/// first, then by manager, API version and subresource.
fn encode(owners: &[Owner]) -> Value {
    let mut entries: Vec<ManagedFieldsEntry> = owners.iter().map(Owner::to_entry).collect();
    entries.sort_by(|a, b| {
        (
            &a.operation,
            &a.time,
            &a.manager,
            &a.api_version,
            &a.subresource,
        )
            .cmp(&(
                &b.operation,
                &b.time,
                &b.manager,
                &b.api_version,
                &b.subresource,
            ))
    });
    serde_json::to_value(entries).unwrap_or_else(|_| Value::Array(Vec::new()))
}

/// Whether a path belongs to the part of the object a write through
/// `subresource` may own: `status` and below for `/status`, everything else
/// for the main resource.
fn in_scope(path: &Path, subresource: Option<&str>) -> bool {
    let under_status = path
        .elements()
        .first()
        .is_some_and(|step| step == "f:status");
    if subresource == Some("status") {
        under_status
    } else {
        !under_status
    }
}

/// The part of an applied configuration a write through `subresource`
/// applies: without `status` for the main resource; for `/status`, `status`
/// and what identifies the object.
fn applied_in_scope(applied: &Value, subresource: Option<&str>) -> Value {
    let mut scoped = applied.clone();
    if let Value::Object(object) = &mut scoped {
        if subresource == Some("status") {
            object.retain(|key, _| {
                matches!(key.as_str(), "apiVersion" | "kind" | "metadata" | "status")
            });
            if let Some(Value::Object(metadata)) = object.get_mut("metadata") {
                metadata
                    .retain(|key, _| matches!(key.as_str(), "name" | "uid" | "resourceVersion"));
            }
        } else {
            object.shift_remove("status");
        }
    }
    scoped
}

/// The ownership changes of a non-apply write (see
/// [`update_managed_fields`]).
fn record_update(
    mut owners: Vec<Owner>,
    old: &Value,
    new: &Value,
    manager: &Manager<'_>,
    now: &str,
    aside: SetAside<'_>,
) -> Vec<Owner> {
    let mut comparison = compare_setting_aside(old, new, aside);
    comparison.retain(|path| !is_stripped(path) && in_scope(path, manager.subresource));
    if comparison.is_same() {
        return owners;
    }
    let changed = comparison.changed();
    for owner in &mut owners {
        owner.fields = owner
            .fields
            .difference(&changed)
            .difference(&comparison.removed);
    }
    owners.retain(|owner| !owner.fields.is_empty());
    if changed.is_empty() {
        return owners;
    }
    let subresource = manager.subresource.unwrap_or_default();
    match owners.iter_mut().find(|owner| {
        owner.is(
            manager.name,
            Operation::Update,
            manager.api_version,
            subresource,
        )
    }) {
        Some(owner) => {
            owner.fields = owner.fields.union(&changed);
            owner.time = Some(now.to_owned());
        }
        None => owners.push(Owner {
            manager: manager.name.to_owned(),
            operation: Operation::Update,
            api_version: manager.api_version.to_owned(),
            subresource: subresource.to_owned(),
            time: Some(now.to_owned()),
            fields: changed,
        }),
    }
    owners
}

/// kube's capManagersManager: while there are more than
/// [`MAX_UPDATE_MANAGERS`] `Update` entries, the oldest are merged into an
/// `ancient-changes` entry per API version. The first old entry of a version
/// becomes that bucket (renamed) when a second one is merged.
fn cap_update_managers(owners: Vec<Owner>) -> Vec<Owner> {
    let updaters = owners
        .iter()
        .filter(|owner| owner.operation == Operation::Update)
        .count();
    if updaters <= MAX_UPDATE_MANAGERS {
        return owners;
    }
    let mut oldest_first: Vec<usize> = (0..owners.len())
        .filter(|index| owners[*index].operation == Operation::Update)
        .collect();
    oldest_first
        .sort_by_cached_key(|index| (owners[*index].time.clone(), owners[*index].identifier()));
    let mut slots: Vec<Option<Owner>> = owners.into_iter().map(Some).collect();
    let mut first_of_version: HashMap<String, usize> = HashMap::new();
    let mut remaining = updaters;
    for index in oldest_first {
        if remaining <= MAX_UPDATE_MANAGERS {
            break;
        }
        let Some(version) = slots[index].as_ref().map(|owner| owner.api_version.clone()) else {
            continue;
        };
        let Some(&first) = first_of_version.get(&version) else {
            first_of_version.insert(version, index);
            continue;
        };
        let bucket = slots.iter().position(|slot| {
            slot.as_ref()
                .is_some_and(|owner| owner.is(ANCIENT_CHANGES, Operation::Update, &version, ""))
        });
        let bucket = match bucket {
            Some(bucket) => bucket,
            None => {
                let Some(mut renamed) = slots[first].take() else {
                    continue;
                };
                renamed.manager = ANCIENT_CHANGES.to_owned();
                renamed.subresource = String::new();
                slots.push(Some(renamed));
                slots.len() - 1
            }
        };
        if bucket == index {
            continue;
        }
        let Some(merged) = slots[index].take() else {
            continue;
        };
        if let Some(bucket) = slots[bucket].as_mut() {
            bucket.fields = bucket.fields.union(&merged.fields);
            bucket.time = merged.time;
        }
        remaining -= 1;
    }
    slots.into_iter().flatten().collect()
}

/// structured-merge-diff's merge of an applied configuration into the live
/// object: maps key by key, anything else replaced by the applied value.
fn merge(live: &Value, applied: &Value) -> Value {
    match (live, applied) {
        (Value::Object(live), Value::Object(applied)) => {
            let mut merged = live.clone();
            for (key, value) in applied {
                let value = match live.get(key) {
                    Some(live) => merge(live, value),
                    None => value.clone(),
                };
                merged.insert(key.clone(), value);
            }
            Value::Object(merged)
        }
        _ => applied.clone(),
    }
}

/// Removes the fields in `candidates` from the object, deepest first, except
/// those with something owned (in `keep`) below them; a map the removal
/// leaves empty goes too unless it is owned itself.
fn prune(object: &mut Value, candidates: &FieldSet, keep: &FieldSet) {
    let mut paths: Vec<&Path> = candidates.iter().collect();
    paths.sort_by_key(|path| std::cmp::Reverse(path.len()));
    for path in paths {
        if keep.has_descendant(path) || !remove_path(object, path) {
            continue;
        }
        let mut ancestor = path.parent();
        while let Some(current) = ancestor {
            let emptied = get_path(object, &current)
                .is_some_and(|value| value.as_object().is_some_and(Map::is_empty));
            if current.is_empty() || keep.contains(&current) || !emptied {
                break;
            }
            remove_path(object, &current);
            ancestor = current.parent();
        }
    }
}

fn get_path<'a>(object: &'a Value, path: &Path) -> Option<&'a Value> {
    path.field_names()?
        .into_iter()
        .try_fold(object, |value, name| value.get(name))
}

fn remove_path(object: &mut Value, path: &Path) -> bool {
    let Some(names) = path.field_names() else {
        return false;
    };
    let Some((last, parents)) = names.split_last() else {
        return false;
    };
    let mut current = object;
    for name in parents {
        match current.get_mut(*name) {
            Some(next) => current = next,
            None => return false,
        }
    }
    current
        .as_object_mut()
        .is_some_and(|map| map.shift_remove(*last).is_some())
}

/// The fields of other managers that an apply changes.
fn conflicts(others: &[Owner], changed: &FieldSet) -> Vec<Conflict> {
    others
        .iter()
        .flat_map(|owner| {
            let manager = ConflictingManager::of(owner);
            owner
                .fields
                .intersection(changed)
                .iter()
                .map(|path| Conflict {
                    manager: manager.clone(),
                    path: path.clone(),
                })
                .collect::<Vec<_>>()
        })
        .collect()
}

/// The conflicts left once `kubectl` may take over from client-side apply
/// (kube's lastAppliedManager): a field is no conflict if the live object's
/// last-applied configuration sets it to its live value. Without a usable
/// annotation (missing, unreadable, or of another API version) every
/// conflict stays. When some remain, kube reports only those.
fn forgiven_by_last_applied(
    conflicts: Vec<Conflict>,
    live: &Value,
    api_version: &str,
) -> Vec<Conflict> {
    match unchanged_since_last_applied(live, api_version) {
        Some(allowed) => conflicts
            .into_iter()
            .filter(|conflict| !allowed.contains(&conflict.path))
            .collect(),
        None => conflicts,
    }
}

/// The fields the live object's last-applied configuration sets to their
/// live values; `None` without a usable annotation.
fn unchanged_since_last_applied(live: &Value, api_version: &str) -> Option<FieldSet> {
    let text = live
        .get("metadata")?
        .get("annotations")?
        .get(LAST_APPLIED_ANNOTATION)?
        .as_str()
        .filter(|text| !text.is_empty())?;
    let last_applied: Value = serde_json::from_str(text).ok()?;
    if last_applied.get("apiVersion").and_then(Value::as_str) != Some(api_version) {
        return None;
    }
    let comparison = compare(&last_applied, live);
    Some(
        fields_of(&last_applied)
            .difference(&comparison.modified)
            .difference(&comparison.added)
            .difference(&comparison.removed),
    )
}

/// kube's lastAppliedUpdater: an apply by `kubectl` to an object that has
/// the client-side apply annotation rewrites it to the applied configuration
/// (without the annotation itself), so that a later client-side apply
/// computes its patch from what was applied last. The annotation is dropped
/// if it would push the annotations past kube's 256 KiB limit.
fn sync_last_applied(object: &mut Value, applied: &Value) {
    let Some(Value::Object(annotations)) = object
        .get_mut("metadata")
        .and_then(|metadata| metadata.get_mut("annotations"))
    else {
        return;
    };
    let present = annotations
        .get(LAST_APPLIED_ANNOTATION)
        .and_then(Value::as_str)
        .is_some_and(|text| !text.is_empty());
    if !present {
        return;
    }
    let mut applied = applied.clone();
    if let Some(Value::Object(applied_annotations)) = applied
        .get_mut("metadata")
        .and_then(|metadata| metadata.get_mut("annotations"))
    {
        applied_annotations.shift_remove(LAST_APPLIED_ANNOTATION);
    }
    // kubectl's encoder ends the document with a newline; so does kube's.
    let text = format!("{applied}\n");
    annotations.insert(LAST_APPLIED_ANNOTATION.to_owned(), Value::String(text));
    let size: usize = annotations
        .iter()
        .map(|(key, value)| key.len() + value.as_str().map_or(0, str::len))
        .sum();
    if size > TOTAL_ANNOTATION_SIZE_LIMIT {
        annotations.shift_remove(LAST_APPLIED_ANNOTATION);
    }
}
