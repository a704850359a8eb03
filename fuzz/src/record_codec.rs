//! The embedded store's records, as read from its file: bytes it did not
//! write are an error, never a panic, and bytes that decode encode back to
//! themselves.

use nmstate_apiserver::storage::embedded::codec;

/// Panics when `data` breaks an invariant (see the module).
pub fn check(data: &[u8]) {
    if let Ok(value) = codec::decode_value(data) {
        assert_eq!(codec::encode_value(&value), data);
    }
    if let Ok(record) = codec::decode_history(data) {
        assert_eq!(codec::encode_history(&record), data);
    }
    if let Ok(revision) = codec::decode_revision(data) {
        assert_eq!(codec::encode_revision(revision), data);
    }
}
