//! The cache's contents as plain values: the objects by name, the same
//! objects by the value of the indexed label, and the window of recent
//! events. Changes come in as [`Change`]s, in revision order, from the one
//! writer (the reflector); nothing here does IO or waits.

use std::{
    collections::{BTreeMap, HashMap, VecDeque},
    sync::{Arc, OnceLock},
};

use super::{CachedObject, Error, Result};
use crate::storage::Revision;

/// What a watcher is registered under: the only events it is told of are
/// those that can concern it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) enum Index {
    /// Objects whose indexed label has (or had) this value.
    Label(String),
    /// The object of this name.
    Name(String),
}

/// One change to apply, decoded from a store event.
#[derive(Debug)]
pub(super) enum Change {
    /// The object `name` was written at `revision`. `object` is `None` when
    /// the stored value could not be decoded: the cache then treats the
    /// object as gone.
    Put {
        name: String,
        revision: Revision,
        object: Option<Arc<CachedObject>>,
    },
    /// The object `name` was deleted at `revision`.
    Delete { name: String, revision: Revision },
    /// Nothing changed in the watched range up to `revision`.
    Progress { revision: Revision },
}

impl Change {
    fn revision(&self) -> Revision {
        match self {
            Change::Put { revision, .. }
            | Change::Delete { revision, .. }
            | Change::Progress { revision } => *revision,
        }
    }
}

/// Whether an event left the object in the cache.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum EventKind {
    /// Created or updated: `object` is the new state.
    Put,
    /// Deleted (or replaced by a value that cannot be decoded): `object`
    /// is the last state, stamped with the deletion's revision.
    Delete,
}

/// One event of the window, shared by every watcher it is sent to.
#[derive(Debug)]
pub(super) struct WindowEvent {
    pub(super) revision: Revision,
    pub(super) kind: EventKind,
    pub(super) object: Arc<CachedObject>,
    /// The object before this event, if the cache had it.
    pub(super) prev: Option<Arc<CachedObject>>,
    /// `prev` stamped with this event's revision, made when a watcher
    /// first needs it (a put that takes the object out of its filter).
    prev_at_revision: OnceLock<Arc<CachedObject>>,
}

impl WindowEvent {
    fn new(
        revision: Revision,
        kind: EventKind,
        object: Arc<CachedObject>,
        prev: Option<Arc<CachedObject>>,
    ) -> Self {
        WindowEvent {
            revision,
            kind,
            object,
            prev,
            prev_at_revision: OnceLock::new(),
        }
    }

    /// What a watcher that saw the object leave its view is sent: the last
    /// state it matched, at this event's revision (as Kubernetes' cacher
    /// does).
    pub(super) fn departed(&self) -> Option<Arc<CachedObject>> {
        match self.kind {
            EventKind::Delete => Some(self.object.clone()),
            EventKind::Put => {
                let prev = self.prev.as_ref()?;
                let stamped = self
                    .prev_at_revision
                    .get_or_init(|| Arc::new(prev.at_revision(self.revision)));
                Some(stamped.clone())
            }
        }
    }

    /// The values the indexed label had before and after the event: the
    /// event matters to watchers indexed on either.
    pub(super) fn index_values<'a>(&'a self, label: &str) -> [Option<&'a str>; 2] {
        let new = match self.kind {
            EventKind::Put => self.object.label(label),
            EventKind::Delete => None,
        };
        let old = self.prev.as_ref().and_then(|prev| prev.label(label));
        if old == new { [new, None] } else { [new, old] }
    }
}

/// The contents of one resource's cache.
#[derive(Debug)]
pub(super) struct CacheState {
    index_label: Option<String>,
    capacity: usize,
    ready: bool,
    revision: Revision,
    objects: BTreeMap<String, Arc<CachedObject>>,
    /// Objects by the value of the indexed label, then by name.
    by_index: HashMap<String, BTreeMap<String, Arc<CachedObject>>>,
    window: VecDeque<Arc<WindowEvent>>,
    /// The oldest revision a watch may start after: every event after it
    /// is in the window.
    oldest: Revision,
}

impl CacheState {
    pub(super) fn new(index_label: Option<String>, capacity: usize) -> Self {
        CacheState {
            index_label,
            capacity: capacity.max(1),
            ready: false,
            revision: 0,
            objects: BTreeMap::new(),
            by_index: HashMap::new(),
            window: VecDeque::new(),
            oldest: 0,
        }
    }

    pub(super) fn ready(&self) -> bool {
        self.ready
    }

    pub(super) fn revision(&self) -> Revision {
        self.revision
    }

    pub(super) fn window_len(&self) -> usize {
        self.window.len()
    }

    pub(super) fn len(&self) -> usize {
        self.objects.len()
    }

    pub(super) fn get(&self, name: &str) -> Option<Arc<CachedObject>> {
        self.objects.get(name).cloned()
    }

    /// The cache can no longer follow the store (its history is gone):
    /// until [`replace`](Self::replace), no watch can start.
    pub(super) fn invalidate(&mut self) {
        self.ready = false;
    }

    /// Replaces everything with a fresh list read at `revision`.
    pub(super) fn replace(&mut self, revision: Revision, objects: Vec<CachedObject>) {
        self.objects.clear();
        self.by_index.clear();
        for object in objects {
            self.insert(Arc::new(object));
        }
        self.window.clear();
        self.revision = revision;
        self.oldest = revision;
        self.ready = true;
    }

    /// Applies one change. Changes at or below the current revision were
    /// applied already (a watch restarted from an older point) and are
    /// ignored. Returns the event for the window and the watchers, if the
    /// change is one.
    pub(super) fn apply(&mut self, change: Change) -> Option<Arc<WindowEvent>> {
        let revision = change.revision();
        if revision <= self.revision {
            return None;
        }
        self.revision = revision;
        let event = match change {
            Change::Progress { .. } => return None,
            Change::Put {
                object: Some(object),
                ..
            } => {
                let prev = self.insert(object.clone());
                WindowEvent::new(revision, EventKind::Put, object, prev)
            }
            Change::Put {
                name, object: None, ..
            }
            | Change::Delete { name, .. } => {
                let prev = self.remove(&name)?;
                let object = Arc::new(prev.at_revision(revision));
                WindowEvent::new(revision, EventKind::Delete, object, Some(prev))
            }
        };
        let event = Arc::new(event);
        if self.window.len() >= self.capacity
            && let Some(evicted) = self.window.pop_front()
        {
            self.oldest = evicted.revision;
        }
        self.window.push_back(event.clone());
        Some(event)
    }

    fn insert(&mut self, object: Arc<CachedObject>) -> Option<Arc<CachedObject>> {
        let prev = self.objects.insert(object.name.clone(), object.clone());
        if let Some(label) = &self.index_label {
            if let Some(value) = prev.as_ref().and_then(|prev| prev.labels.get(label)) {
                remove_indexed(&mut self.by_index, value, &object.name);
            }
            if let Some(value) = object.labels.get(label) {
                self.by_index
                    .entry(value.clone())
                    .or_default()
                    .insert(object.name.clone(), object.clone());
            }
        }
        prev
    }

    fn remove(&mut self, name: &str) -> Option<Arc<CachedObject>> {
        let prev = self.objects.remove(name)?;
        if let Some(value) = self
            .index_label
            .as_ref()
            .and_then(|label| prev.labels.get(label))
        {
            remove_indexed(&mut self.by_index, value, name);
        }
        Some(prev)
    }

    /// Checks that a watch may start after `after`.
    pub(super) fn check_start(&self, resource: &str, after: Revision) -> Result<()> {
        if !self.ready {
            return Err(Error::NotReady {
                resource: resource.to_owned(),
            });
        }
        if after < self.oldest {
            return Err(Error::TooOld {
                requested: after,
                oldest: self.oldest,
            });
        }
        if after > self.revision {
            return Err(Error::TooLarge {
                requested: after,
                current: self.revision,
            });
        }
        Ok(())
    }

    /// The window's events after `after` (checked with
    /// [`check_start`](Self::check_start)), only those that concern the
    /// watchers of `index` when one is given (the object of that name, or
    /// objects whose indexed label is or was that value).
    pub(super) fn events_after(
        &self,
        after: Revision,
        index: Option<&Index>,
    ) -> VecDeque<Arc<WindowEvent>> {
        let start = self.window.partition_point(|event| event.revision <= after);
        let events = self.window.range(start..);
        match (index, &self.index_label) {
            (Some(Index::Name(name)), _) => events
                .filter(|event| event.object.name == *name)
                .cloned()
                .collect(),
            (Some(Index::Label(value)), Some(label)) => events
                .filter(|event| event.index_values(label).contains(&Some(value.as_str())))
                .cloned()
                .collect(),
            _ => events.cloned().collect(),
        }
    }

    /// Every object, sorted by name.
    pub(super) fn objects(&self) -> Vec<Arc<CachedObject>> {
        self.objects.values().cloned().collect()
    }

    /// The objects whose indexed label is `value`, sorted by name; `None`
    /// when this cache has no index.
    pub(super) fn indexed(&self, label: &str, value: &str) -> Option<Vec<Arc<CachedObject>>> {
        if self.index_label.as_deref() != Some(label) {
            return None;
        }
        Some(
            self.by_index
                .get(value)
                .map(|objects| objects.values().cloned().collect())
                .unwrap_or_default(),
        )
    }

    /// The objects as they were at `revision`, which must be within the
    /// window: today's objects with the window's later events undone.
    pub(super) fn objects_at(
        &self,
        resource: &str,
        revision: Revision,
    ) -> Result<Vec<Arc<CachedObject>>> {
        self.check_start(resource, revision)?;
        let start = self
            .window
            .partition_point(|event| event.revision <= revision);
        let mut objects = self.objects.clone();
        for event in self.window.range(start..).rev() {
            match &event.prev {
                Some(prev) => objects.insert(prev.name.clone(), prev.clone()),
                None => objects.remove(&event.object.name),
            };
        }
        Ok(objects.into_values().collect())
    }
}

fn remove_indexed(
    by_index: &mut HashMap<String, BTreeMap<String, Arc<CachedObject>>>,
    value: &str,
    name: &str,
) {
    if let Some(objects) = by_index.get_mut(value) {
        objects.remove(name);
        if objects.is_empty() {
            by_index.remove(value);
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use serde_json::json;

    use super::*;

    const NODE: &str = "nmstate.io/node";

    fn object(name: &str, revision: Revision, node: &str) -> CachedObject {
        let value = json!({"metadata": {"name": name, "labels": {NODE: node}}});
        CachedObject::from_value(name, revision, value).unwrap()
    }

    fn put(name: &str, revision: Revision, node: &str) -> Change {
        Change::Put {
            name: name.into(),
            revision,
            object: Some(Arc::new(object(name, revision, node))),
        }
    }

    fn names(objects: &[Arc<CachedObject>]) -> Vec<(&str, Revision)> {
        objects
            .iter()
            .map(|object| (object.name.as_str(), object.revision))
            .collect()
    }

    fn state() -> CacheState {
        let mut state = CacheState::new(Some(NODE.into()), 3);
        state.replace(10, vec![object("b", 5, "n1"), object("a", 9, "n2")]);
        state
    }

    #[test]
    fn a_list_replaces_everything_sorted_by_name() {
        let state = state();
        assert!(state.ready());
        assert_eq!(state.revision(), 10);
        assert_eq!(names(&state.objects()), [("a", 9), ("b", 5)]);
        assert_eq!(names(&state.indexed(NODE, "n1").unwrap()), [("b", 5)]);
        assert_eq!(state.indexed(NODE, "n3").unwrap().len(), 0);
        assert!(state.indexed("other", "n1").is_none());
    }

    #[test]
    fn events_carry_the_previous_object_and_old_ones_are_ignored() {
        let mut state = state();
        assert!(state.apply(put("a", 10, "n2")).is_none(), "already seen");
        let event = state.apply(put("a", 11, "n1")).unwrap();
        assert_eq!(event.kind, EventKind::Put);
        assert_eq!(event.prev.as_ref().unwrap().revision, 9);
        assert_eq!(event.index_values(NODE), [Some("n1"), Some("n2")]);
        assert_eq!(
            names(&state.indexed(NODE, "n1").unwrap()),
            [("a", 11), ("b", 5)]
        );
        assert_eq!(state.indexed(NODE, "n2").unwrap().len(), 0);

        let deleted = state
            .apply(Change::Delete {
                name: "b".into(),
                revision: 12,
            })
            .unwrap();
        assert_eq!(deleted.kind, EventKind::Delete);
        assert_eq!(deleted.object.revision, 12, "stamped with the deletion");
        assert_eq!(
            deleted.object.summary()["metadata"]["resourceVersion"],
            "12"
        );
        assert_eq!(deleted.index_values(NODE), [None, Some("n1")]);
        assert!(
            state
                .apply(Change::Delete {
                    name: "missing".into(),
                    revision: 13
                })
                .is_none()
        );
        assert_eq!(state.revision(), 13);
    }

    #[test]
    fn an_undecodable_put_removes_the_object() {
        let mut state = state();
        let event = state
            .apply(Change::Put {
                name: "a".into(),
                revision: 11,
                object: None,
            })
            .unwrap();
        assert_eq!(event.kind, EventKind::Delete);
        assert!(state.get("a").is_none());
        let nothing = state.apply(Change::Put {
            name: "new".into(),
            revision: 12,
            object: None,
        });
        assert!(nothing.is_none());
        assert_eq!(state.revision(), 12);
    }

    #[test]
    fn the_window_is_bounded_and_says_how_far_back_watches_may_start() {
        let mut state = state();
        for revision in 11..=14 {
            state.apply(put("a", revision, "n2"));
        }
        assert_eq!(state.window_len(), 3);
        assert_eq!(
            state.check_start("r", 10),
            Err(Error::TooOld {
                requested: 10,
                oldest: 11
            })
        );
        assert_eq!(
            state.check_start("r", 15),
            Err(Error::TooLarge {
                requested: 15,
                current: 14
            })
        );
        let after: Vec<_> = state
            .events_after(11, None)
            .iter()
            .map(|e| e.revision)
            .collect();
        assert_eq!(after, [12, 13, 14]);
        let label = |value: &str| Index::Label(value.to_owned());
        assert!(state.events_after(11, Some(&label("n1"))).is_empty());
        assert_eq!(state.events_after(11, Some(&label("n2"))).len(), 3);
    }

    #[test]
    fn objects_at_a_past_revision_undo_the_later_events() {
        let mut state = state();
        state.apply(put("c", 11, "n1"));
        state.apply(put("a", 12, "n1"));
        state.apply(Change::Delete {
            name: "b".into(),
            revision: 13,
        });
        let at = |revision| {
            names(&state.objects_at("r", revision).unwrap())
                .iter()
                .map(|(n, r)| format!("{n}@{r}"))
                .collect::<Vec<_>>()
                .join(" ")
        };
        assert_eq!(at(10), "a@9 b@5");
        assert_eq!(at(11), "a@9 b@5 c@11");
        assert_eq!(at(12), "a@12 b@5 c@11");
        assert_eq!(at(13), "a@12 c@11");
    }

    #[test]
    fn departed_objects_are_the_previous_state_at_the_event_revision() {
        let mut state = state();
        let event = state.apply(put("a", 11, "n1")).unwrap();
        let departed = event.departed().unwrap();
        assert_eq!(departed.revision, 11);
        assert_eq!(departed.label(NODE), Some("n2"));
        assert!(
            Arc::ptr_eq(&departed, &event.departed().unwrap()),
            "made once"
        );
    }
}
