//! Create and update bodies of each kind, JSON or YAML, under each
//! `fieldValidation`: reading, the type checks and validation never panic,
//! and an object the rules accept (what would be stored) reads back as the
//! same valid object.
//!
//! Input: one byte (kind: its value modulo 3; bit 2: YAML; bits 3-4:
//! Strict, Warn, Ignore; bit 5: a status update), then the body.

use nmstate_apiserver::{
    api::codec::{RequestFormat, parse_document},
    request::FieldValidation,
    rules::object::{check_type_meta, creation_name, decode_object},
};
use nmstate_openapi::ResourceKind;

/// Panics when `data` breaks an invariant (see the module).
pub fn check(data: &[u8]) {
    let Some((&flags, body)) = data.split_first() else {
        return;
    };
    let kind = ResourceKind::ALL[usize::from(flags % 3)];
    let format = if flags & 4 != 0 {
        RequestFormat::Yaml
    } else {
        RequestFormat::Json
    };
    let validation = match (flags >> 3) & 3 {
        0 => FieldValidation::Strict,
        1 => FieldValidation::Warn,
        _ => FieldValidation::Ignore,
    };
    let status_only = flags & 32 != 0;
    let Ok((mut value, duplicates)) = parse_document(body, format) else {
        return;
    };
    if check_type_meta(&mut value, kind, "v1").is_err() {
        return;
    }
    let Ok(name) = creation_name(&mut value, kind) else {
        return;
    };
    let Ok((decoded, _)) = decode_object(kind, &name, value, &duplicates, validation, status_only)
    else {
        return;
    };
    if decoded.errors.is_empty() {
        // Stored as JSON text and read back.
        let text = serde_json::to_vec(&decoded.value).expect("a value serialises");
        let (stored, duplicates) =
            parse_document(&text, RequestFormat::Json).expect("stored JSON parses");
        assert!(duplicates.is_empty());
        let (again, _) = decode_object(
            kind,
            &name,
            stored,
            &[],
            FieldValidation::Strict,
            status_only,
        )
        .expect("a stored object decodes");
        assert!(again.errors.is_empty(), "{:?}", again.errors);
        assert!(again.unknown.is_empty(), "{:?}", again.unknown);
        assert_eq!(again.value, decoded.value);
    }
}
