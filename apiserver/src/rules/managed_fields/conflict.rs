//! Server-side apply conflicts and the words kube uses for them.

use std::fmt;

use super::fieldset::Path;
use super::{Operation, Owner};
use crate::status::Cause;

/// The `reason` of each [`Cause`] of an apply conflict.
pub const CAUSE_FIELD_MANAGER_CONFLICT: &str = "FieldManagerConflict";

/// An apply that would change fields other managers own: a 409 Conflict.
///
/// Its [`Display`](fmt::Display) is kube's message, for one conflict
///
/// ```text
/// Apply failed with 1 conflict: conflict with "kubectl-client-side-apply" using nmstate.io/v1: .spec.maxUnavailable
/// ```
///
/// and for several, grouped by manager:
///
/// ```text
/// Apply failed with 2 conflicts: conflicts with "kubectl-edit" using nmstate.io/v1:
/// - .spec.maxUnavailable
/// conflicts with "other-applier":
/// - .metadata.labels.app
/// ```
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub struct ApplyConflict {
    /// Sorted by manager (its identifier, as kube sorts), then by path.
    conflicts: Vec<Conflict>,
}

/// One field another manager owns.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Conflict {
    /// Who owns it.
    pub manager: ConflictingManager,
    /// The field.
    pub path: Path,
}

/// The owner in a conflict, as its `managedFields` entry names it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConflictingManager {
    /// `manager`.
    pub manager: String,
    /// `operation`.
    pub operation: Operation,
    /// `apiVersion`; printed for `Update` entries only, as kube does.
    pub api_version: String,
    /// `subresource`, empty for the main resource.
    pub subresource: String,
    /// kube's manager identifier (the entry's JSON without fields and
    /// time), which orders the managers in the message.
    identifier: String,
}

impl ConflictingManager {
    pub(super) fn of(owner: &Owner) -> Self {
        Self {
            manager: owner.manager.clone(),
            operation: owner.operation,
            api_version: owner.api_version.clone(),
            subresource: owner.subresource.clone(),
            identifier: owner.identifier(),
        }
    }
}

impl fmt::Display for ConflictingManager {
    /// `"kubectl-edit" using nmstate.io/v1`,
    /// `"handler" with subresource "status" using nmstate.io/v1`, or for an
    /// applier just `"other-applier"`. kube's manager identifiers never hold
    /// a time, so kube never prints one here either.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.manager)?;
        if !self.subresource.is_empty() {
            write!(f, " with subresource {:?}", self.subresource)?;
        }
        if self.operation == Operation::Update {
            write!(f, " using {}", self.api_version)?;
        }
        Ok(())
    }
}

impl ApplyConflict {
    pub(super) fn new(mut conflicts: Vec<Conflict>) -> Self {
        conflicts.sort_by(|a, b| {
            (&a.manager.identifier, &a.path).cmp(&(&b.manager.identifier, &b.path))
        });
        Self { conflicts }
    }

    /// The conflicting fields.
    pub fn conflicts(&self) -> &[Conflict] {
        &self.conflicts
    }

    /// One `StatusCause` per conflict, as kube sends them:
    /// `{reason: FieldManagerConflict, message: 'conflict with "kubectl-edit" using nmstate.io/v1', field: .spec.maxUnavailable}`.
    pub fn causes(&self) -> Vec<Cause> {
        self.conflicts
            .iter()
            .map(|conflict| Cause {
                reason: CAUSE_FIELD_MANAGER_CONFLICT.to_owned(),
                message: format!("conflict with {}", conflict.manager),
                field: conflict.path.to_string(),
            })
            .collect()
    }
}

impl fmt::Display for ApplyConflict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let [conflict] = self.conflicts.as_slice() {
            return write!(
                f,
                "Apply failed with 1 conflict: conflict with {}: {}",
                conflict.manager, conflict.path
            );
        }
        write!(f, "Apply failed with {} conflicts: ", self.conflicts.len())?;
        let mut previous: Option<&ConflictingManager> = None;
        for conflict in &self.conflicts {
            if previous.is_none_or(|previous| previous.identifier != conflict.manager.identifier) {
                if previous.is_some() {
                    f.write_str("\n")?;
                }
                write!(f, "conflicts with {}:", conflict.manager)?;
                previous = Some(&conflict.manager);
            }
            write!(f, "\n- {}", conflict.path)?;
        }
        Ok(())
    }
}
