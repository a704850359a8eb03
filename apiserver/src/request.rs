//! What a request asks for in Kubernetes' terms, apart from how it was
//! spelled: the verb, the subresource and how strictly a written object's
//! fields are checked, and how large its body may be. Routing
//! (`api::route`) finds them; authorization (`auth::authorize`) and the
//! write rules (`rules`) read them. They live here, below all three, so
//! that neither reaches up into `api`.

/// The largest request body accepted (as kube-apiserver: 3 MiB).
pub const MAX_BODY_BYTES: usize = 3 * 1024 * 1024;

/// Subresources.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Subresource {
    /// `/status`
    Status,
    /// `/render` (policies)
    Render,
    /// `/dry-run` (policies)
    DryRun,
}

impl Subresource {
    /// The path segment.
    pub fn as_str(self) -> &'static str {
        match self {
            Subresource::Status => "status",
            Subresource::Render => "render",
            Subresource::DryRun => "dry-run",
        }
    }
}

/// The Kubernetes verb of a request.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Verb {
    /// GET one object.
    Get,
    /// GET a collection.
    List,
    /// GET a collection with `watch=true`.
    Watch,
    /// POST to a collection.
    Create,
    /// PUT one object.
    Update,
    /// PATCH one object.
    Patch,
    /// DELETE one object.
    Delete,
    /// DELETE a collection.
    DeleteCollection,
}

impl Verb {
    /// The lower-case name, as in RBAC rules and metrics labels.
    pub fn as_str(self) -> &'static str {
        match self {
            Verb::Get => "get",
            Verb::List => "list",
            Verb::Watch => "watch",
            Verb::Create => "create",
            Verb::Update => "update",
            Verb::Patch => "patch",
            Verb::Delete => "delete",
            Verb::DeleteCollection => "deletecollection",
        }
    }
}

/// `fieldValidation`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum FieldValidation {
    /// Unknown and duplicate fields fail the request.
    Strict,
    /// They are dropped with a warning header (the default, as Kubernetes).
    #[default]
    Warn,
    /// They are dropped silently.
    Ignore,
}
