//! The byte layout of the records in the embedded store's redb file.
//!
//! This module owns encoding and decoding only; it never opens the database.
//! Every record starts with a format byte so that a later version can still
//! read files written by this one. Bytes this version did not write are
//! reported as [`DecodeError`], never trusted and never a panic; the caller
//! names the key when it turns that into [`super::Error::Corrupt`].
//!
//! Layout (integers little-endian):
//! - current value (`kv` table): `FORMAT, create_revision: i64,
//!   mod_revision: i64, value...`
//! - history record (`history` table, keyed by revision): `FORMAT,
//!   kind: u8 (0 put, 1 delete), key_len: u32, key, has_prev: u8,
//!   [prev: create_revision: i64, mod_revision: i64, value_len: u32, value],
//!   [put only: create_revision: i64, mod_revision: i64, value...]`
//! - meta values: a revision is 8 bytes (`i64`), the format marker 1 byte.

use std::fmt;

use crate::storage::{KeyValue, Revision, WatchEvent};

/// The record format this version writes and reads.
pub const FORMAT: u8 = 1;

const KIND_PUT: u8 = 0;
const KIND_DELETE: u8 = 1;

/// Why some stored bytes could not be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecodeError(pub String);

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A key's value with its revisions, as kept in the `kv` table and inside
/// history records.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredValue {
    pub(super) create_revision: Revision,
    pub(super) mod_revision: Revision,
    pub(super) value: Vec<u8>,
}

impl StoredValue {
    pub(super) fn into_key_value(self, key: String) -> KeyValue {
        KeyValue {
            key,
            value: self.value,
            mod_revision: self.mod_revision,
        }
    }
}

/// One write, as kept in the `history` table under its revision.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HistoryRecord {
    pub(super) key: String,
    /// The new value of a put; `None` for a delete.
    pub(super) put: Option<StoredValue>,
    /// The value before the write, if the key existed.
    pub(super) prev: Option<StoredValue>,
}

impl HistoryRecord {
    /// The watch event this record describes.
    pub(super) fn into_event(self, revision: Revision) -> WatchEvent {
        let prev = self.prev.map(|prev| prev.into_key_value(self.key.clone()));
        match self.put {
            Some(put) => WatchEvent::Put {
                kv: put.into_key_value(self.key),
                prev,
            },
            None => WatchEvent::Delete {
                key: self.key,
                revision,
                prev,
            },
        }
    }
}

pub fn encode_value(stored: &StoredValue) -> Vec<u8> {
    let mut bytes = Vec::with_capacity(17 + stored.value.len());
    bytes.push(FORMAT);
    bytes.extend_from_slice(&stored.create_revision.to_le_bytes());
    bytes.extend_from_slice(&stored.mod_revision.to_le_bytes());
    bytes.extend_from_slice(&stored.value);
    bytes
}

pub fn decode_value(bytes: &[u8]) -> Result<StoredValue, DecodeError> {
    let mut reader = Reader::new(bytes);
    reader.format()?;
    let create_revision = reader.i64()?;
    let mod_revision = reader.i64()?;
    let value = reader.rest().to_vec();
    check_revisions(create_revision, mod_revision)?;
    Ok(StoredValue {
        create_revision,
        mod_revision,
        value,
    })
}

pub fn encode_history(record: &HistoryRecord) -> Vec<u8> {
    let mut bytes = Vec::new();
    bytes.push(FORMAT);
    bytes.push(if record.put.is_some() {
        KIND_PUT
    } else {
        KIND_DELETE
    });
    push_len_prefixed(&mut bytes, record.key.as_bytes());
    match &record.prev {
        Some(prev) => {
            bytes.push(1);
            bytes.extend_from_slice(&prev.create_revision.to_le_bytes());
            bytes.extend_from_slice(&prev.mod_revision.to_le_bytes());
            push_len_prefixed(&mut bytes, &prev.value);
        }
        None => bytes.push(0),
    }
    if let Some(put) = &record.put {
        bytes.extend_from_slice(&put.create_revision.to_le_bytes());
        bytes.extend_from_slice(&put.mod_revision.to_le_bytes());
        bytes.extend_from_slice(&put.value);
    }
    bytes
}

pub fn decode_history(bytes: &[u8]) -> Result<HistoryRecord, DecodeError> {
    let mut reader = Reader::new(bytes);
    reader.format()?;
    let kind = reader.u8()?;
    let key = reader.len_prefixed()?;
    let key = String::from_utf8(key.to_vec())
        .map_err(|_| DecodeError("history record key is not UTF-8".into()))?;
    let prev = match reader.u8()? {
        0 => None,
        1 => {
            let create_revision = reader.i64()?;
            let mod_revision = reader.i64()?;
            let value = reader.len_prefixed()?.to_vec();
            check_revisions(create_revision, mod_revision)?;
            Some(StoredValue {
                create_revision,
                mod_revision,
                value,
            })
        }
        other => return Err(DecodeError(format!("bad previous-value flag {other}"))),
    };
    let put = match kind {
        KIND_PUT => {
            let create_revision = reader.i64()?;
            let mod_revision = reader.i64()?;
            check_revisions(create_revision, mod_revision)?;
            Some(StoredValue {
                create_revision,
                mod_revision,
                value: reader.rest().to_vec(),
            })
        }
        KIND_DELETE => {
            reader.end()?;
            None
        }
        other => return Err(DecodeError(format!("unknown event kind {other}"))),
    };
    Ok(HistoryRecord { key, put, prev })
}

pub fn encode_revision(revision: Revision) -> [u8; 8] {
    revision.to_le_bytes()
}

pub fn decode_revision(bytes: &[u8]) -> Result<Revision, DecodeError> {
    let mut reader = Reader::new(bytes);
    let revision = reader.i64()?;
    reader.end()?;
    if revision < 0 {
        return Err(DecodeError(format!("negative revision {revision}")));
    }
    Ok(revision)
}

fn push_len_prefixed(bytes: &mut Vec<u8>, data: &[u8]) {
    // Keys and values are far below 4 GiB (etcd's limit is 1.5 MiB); a
    // larger one would be a bug upstream, so saturate rather than wrap.
    let len = u32::try_from(data.len()).unwrap_or(u32::MAX);
    bytes.extend_from_slice(&len.to_le_bytes());
    bytes.extend_from_slice(data);
}

/// Revisions a record may carry: positive, created no later than modified.
fn check_revisions(create: Revision, modified: Revision) -> Result<(), DecodeError> {
    if create <= 0 || modified < create {
        return Err(DecodeError(format!(
            "impossible revisions: created {create}, modified {modified}"
        )));
    }
    Ok(())
}

/// A cursor over stored bytes whose every read is bounds-checked.
struct Reader<'a> {
    bytes: &'a [u8],
}

impl<'a> Reader<'a> {
    fn new(bytes: &'a [u8]) -> Self {
        Reader { bytes }
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        if self.bytes.len() < n {
            return Err(DecodeError(format!(
                "record truncated: wanted {n} more bytes, found {}",
                self.bytes.len()
            )));
        }
        let (head, tail) = self.bytes.split_at(n);
        self.bytes = tail;
        Ok(head)
    }

    fn u8(&mut self) -> Result<u8, DecodeError> {
        Ok(self.take(1)?[0])
    }

    fn i64(&mut self) -> Result<i64, DecodeError> {
        let mut buf = [0u8; 8];
        buf.copy_from_slice(self.take(8)?);
        Ok(i64::from_le_bytes(buf))
    }

    fn len_prefixed(&mut self) -> Result<&'a [u8], DecodeError> {
        let mut buf = [0u8; 4];
        buf.copy_from_slice(self.take(4)?);
        let len = usize::try_from(u32::from_le_bytes(buf))
            .map_err(|_| DecodeError("length does not fit in memory".into()))?;
        self.take(len)
    }

    fn format(&mut self) -> Result<(), DecodeError> {
        match self.u8()? {
            FORMAT => Ok(()),
            other => Err(DecodeError(format!(
                "unknown record format {other} (this version reads {FORMAT})"
            ))),
        }
    }

    fn rest(&mut self) -> &'a [u8] {
        std::mem::take(&mut self.bytes)
    }

    fn end(&self) -> Result<(), DecodeError> {
        if self.bytes.is_empty() {
            Ok(())
        } else {
            Err(DecodeError(format!(
                "{} unexpected trailing bytes",
                self.bytes.len()
            )))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stored(create: Revision, modified: Revision, value: &[u8]) -> StoredValue {
        StoredValue {
            create_revision: create,
            mod_revision: modified,
            value: value.to_vec(),
        }
    }

    #[test]
    fn values_round_trip() {
        for value in [stored(1, 1, b""), stored(3, 9, b"{\"a\":1}")] {
            assert_eq!(decode_value(&encode_value(&value)), Ok(value));
        }
    }

    #[test]
    fn history_records_round_trip() {
        let cases = [
            HistoryRecord {
                key: "/a".into(),
                put: Some(stored(2, 2, b"new")),
                prev: None,
            },
            HistoryRecord {
                key: "/a".into(),
                put: Some(stored(2, 5, b"newer")),
                prev: Some(stored(2, 2, b"new")),
            },
            HistoryRecord {
                key: "/a".into(),
                put: None,
                prev: Some(stored(2, 5, b"")),
            },
        ];
        for record in cases {
            assert_eq!(decode_history(&encode_history(&record)), Ok(record));
        }
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        let inputs: [&[u8]; 6] = [
            b"",
            b"\x02",
            b"\x01\x00",
            b"not a record at all",
            b"\x01\x00\xff\xff\xff\xff",
            &[1, 1, 1, 0, 0, 0, b'k', 7],
        ];
        for bytes in inputs {
            assert!(decode_value(bytes).is_err(), "value {bytes:?}");
            assert!(decode_history(bytes).is_err(), "history {bytes:?}");
        }
        assert!(decode_revision(b"1234567").is_err());
        assert!(decode_revision(&(-1i64).to_le_bytes()).is_err());
    }
}
