//! Objects written through this server, offered to the cache so that its
//! reflector need not parse their stored values again.
//!
//! A write registers the object it made and the bytes it is about to store
//! *before* the store's round trip ([`super::WatchCache::expect`]): the
//! store's event of the write often reaches the reflector before the
//! store's answer reaches the writer, and an offer made after the answer
//! would then come too late. The reflector takes an object in flight when
//! the event's value is the registered bytes, byte for byte (so a write by
//! anyone else, even of the same name at the same moment, is decoded as
//! usual), and an object already written when the event's revision is the
//! write's. Pure state: the locking is the cache's.

use std::sync::Arc;

use super::CachedObject;
use crate::storage::Revision;

/// The writes registered with one cache.
#[derive(Default)]
pub(super) struct Offers {
    next: u64,
    entries: Vec<Offer>,
}

struct Offer {
    id: u64,
    name: String,
    made: Made,
}

/// Where a registered write is.
enum Made {
    /// The store has not answered: the object (revision not known yet)
    /// and the bytes being stored.
    InFlight {
        object: Box<CachedObject>,
        value: Box<[u8]>,
    },
    /// The reflector took it from the store's event, before the store
    /// answered the writer.
    Taken(Arc<CachedObject>),
    /// The store answered: it waits for the event of its revision.
    Written(Arc<CachedObject>),
}

impl Offers {
    /// How many writes are registered.
    pub(super) fn len(&self) -> usize {
        self.entries.len()
    }

    /// Registers a write of `value`, which decodes to `object`, before it
    /// goes to the store; the id is for [`written`](Self::written) or
    /// [`withdraw`](Self::withdraw).
    pub(super) fn expect(&mut self, object: CachedObject, value: &[u8]) -> u64 {
        let id = self.next;
        self.next += 1;
        self.entries.push(Offer {
            id,
            name: object.name.clone(),
            made: Made::InFlight {
                object: Box::new(object),
                value: value.into(),
            },
        });
        id
    }

    /// The object of the store's event `(name, revision, value)`, if a
    /// write through this server made it. Events come in revision order,
    /// so objects written before `revision` are dropped: they can no
    /// longer be taken.
    pub(super) fn take(
        &mut self,
        name: &str,
        revision: Revision,
        value: &[u8],
    ) -> Option<Arc<CachedObject>> {
        if self.entries.is_empty() {
            return None;
        }
        self.drop_written(|at| at < revision);
        let index = self.entries.iter().position(|offer| {
            offer.name == name
                && match &offer.made {
                    Made::InFlight { value: written, .. } => **written == *value,
                    Made::Written(object) => object.revision == revision,
                    Made::Taken(_) => false,
                }
        })?;
        let Offer { id, name, made } = self.entries.swap_remove(index);
        match made {
            Made::Written(object) => Some(object),
            Made::InFlight { mut object, .. } => {
                object.set_revision(revision);
                let object = Arc::new(*object);
                // Kept for the writer, who learns the revision next.
                self.entries.push(Offer {
                    id,
                    name,
                    made: Made::Taken(object.clone()),
                });
                Some(object)
            }
            // Not matched above.
            Made::Taken(_) => None,
        }
    }

    /// The store took the write `id` at `revision`: its object, shared
    /// with the cache. `passed`: the cache has applied `revision` already,
    /// so the object can no longer be taken unless it was. `None` only if
    /// `id` is not registered (a bug: ids leave only through here and
    /// [`withdraw`](Self::withdraw)).
    pub(super) fn written(
        &mut self,
        id: u64,
        revision: Revision,
        passed: bool,
    ) -> Option<Arc<CachedObject>> {
        let index = self.entries.iter().position(|offer| offer.id == id)?;
        let Offer { name, made, .. } = self.entries.swap_remove(index);
        match made {
            // Taken for an event of the same bytes at another revision:
            // another write stored the same object.
            Made::Taken(object) if object.revision != revision => {
                Some(Arc::new(object.at_revision(revision)))
            }
            Made::Taken(object) => Some(object),
            Made::Written(object) => Some(object),
            Made::InFlight { mut object, .. } => {
                object.set_revision(revision);
                let object = Arc::new(*object);
                if !passed {
                    self.entries.push(Offer {
                        id,
                        name,
                        made: Made::Written(object.clone()),
                    });
                }
                Some(object)
            }
        }
    }

    /// The write `id` did not reach the store (or its writer gave up).
    pub(super) fn withdraw(&mut self, id: u64) {
        if let Some(index) = self.entries.iter().position(|offer| offer.id == id) {
            self.entries.swap_remove(index);
        }
    }

    /// Drops the written objects up to `revision` (the cache has passed
    /// them); writes still in flight stay.
    pub(super) fn drop_until(&mut self, revision: Revision) {
        self.drop_written(|at| at <= revision);
    }

    fn drop_written(&mut self, passed: impl Fn(Revision) -> bool) {
        self.entries.retain(|offer| match &offer.made {
            Made::Written(object) => !passed(object.revision),
            Made::InFlight { .. } | Made::Taken(_) => true,
        });
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn value(name: &str, data: &str) -> Vec<u8> {
        format!(r#"{{"kind":"NodeNetworkState","metadata":{{"name":"{name}"}},"data":"{data}"}}"#)
            .into_bytes()
    }

    /// Registers `object` (made from `made`) for a write of `stored`.
    fn expect(offers: &mut Offers, name: &str, made: &str, stored: &str) -> u64 {
        let object = CachedObject::decode(name, 0, &value(name, made)).unwrap();
        offers.expect(object, &value(name, stored))
    }

    fn data(object: &CachedObject) -> &str {
        object.summary()["data"].as_str().unwrap()
    }

    #[test]
    fn an_event_before_the_answer_takes_the_object_in_flight() {
        let mut offers = Offers::default();
        let id = expect(&mut offers, "a", "made", "x");
        let taken = offers.take("a", 7, &value("a", "x")).unwrap();
        assert_eq!((data(&taken), taken.revision), ("made", 7));
        assert_eq!(taken.summary()["metadata"]["resourceVersion"], "7");
        let written = offers.written(id, 7, true).unwrap();
        assert!(Arc::ptr_eq(&taken, &written), "one object for both");
        assert_eq!(offers.len(), 0);
    }

    #[test]
    fn an_answer_before_the_event_waits_for_the_event_of_its_revision() {
        let mut offers = Offers::default();
        let id = expect(&mut offers, "a", "made", "x");
        let written = offers.written(id, 7, false).unwrap();
        assert_eq!(written.revision, 7);
        assert!(
            offers.take("a", 6, &value("a", "x")).is_none(),
            "not its revision"
        );
        let taken = offers.take("a", 7, &value("a", "y")).unwrap();
        assert!(Arc::ptr_eq(&taken, &written));
        assert_eq!(offers.len(), 0);
    }

    #[test]
    fn other_writes_are_not_taken() {
        let mut offers = Offers::default();
        let a = expect(&mut offers, "a", "made", "x");
        // Another name, or other bytes under the name (another writer).
        assert!(offers.take("b", 7, &value("a", "x")).is_none());
        assert!(offers.take("a", 8, &value("a", "y")).is_none());
        // A write that failed.
        offers.withdraw(a);
        assert!(offers.take("a", 9, &value("a", "x")).is_none());
        // An answer after the cache passed its revision is not kept, and
        // one the cache never sees the event of is dropped once it passes.
        let b = expect(&mut offers, "b", "made", "x");
        assert_eq!(offers.written(b, 10, true).unwrap().revision, 10);
        let c = expect(&mut offers, "c", "made", "x");
        offers.written(c, 11, false).unwrap();
        assert_eq!(offers.len(), 1);
        offers.drop_until(11);
        assert_eq!(offers.len(), 0);
        let d = expect(&mut offers, "d", "made", "x");
        offers.written(d, 12, false).unwrap();
        assert!(offers.take("e", 13, &value("e", "x")).is_none());
        assert_eq!(offers.len(), 0, "an event after it drops it too");
    }

    #[test]
    fn a_write_in_flight_stays_until_its_writer_settles_it() {
        let mut offers = Offers::default();
        let id = expect(&mut offers, "a", "made", "x");
        offers.drop_until(100);
        assert!(offers.take("b", 101, &value("b", "x")).is_none());
        assert_eq!(offers.len(), 1);
        // The same bytes stored by another write at another revision: the
        // writer's answer carries its own.
        let taken = offers.take("a", 102, &value("a", "x")).unwrap();
        let written = offers.written(id, 103, true).unwrap();
        assert_eq!((taken.revision, written.revision), (102, 103));
        assert_eq!(written.summary()["metadata"]["resourceVersion"], "103");
        assert!(offers.written(id, 103, true).is_none(), "settled once");
    }
}
