//! Kubernetes' string-format checks (apimachinery
//! `pkg/util/validation/validation.go` as of Kubernetes 1.32): DNS-1123
//! subdomains, qualified names (label keys), label values and percentages.
//! Each returns every message that applies, worded exactly as Kubernetes
//! words it, so users see the messages they know from kubectl.
//!
//! The regular expressions are matched by hand (they are simple character
//! classes), which keeps the crate free of a regex engine.

/// Longest DNS-1123 subdomain, hence longest object name.
pub const DNS1123_SUBDOMAIN_MAX_LENGTH: usize = 253;
/// Longest label value and longest name part of a qualified name.
pub const LABEL_VALUE_MAX_LENGTH: usize = 63;
/// Longest qualified-name name part.
pub const QUALIFIED_NAME_MAX_LENGTH: usize = 63;

/// The DNS-1123 subdomain expression, as Kubernetes prints it.
pub const DNS1123_SUBDOMAIN_FMT: &str =
    r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*";
const DNS1123_SUBDOMAIN_ERR_MSG: &str = "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character";

/// The qualified-name name part expression, as Kubernetes prints it.
pub const QUALIFIED_NAME_FMT: &str = "([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]";
const QUALIFIED_NAME_ERR_MSG: &str = "must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character";

/// The label value expression, as Kubernetes prints it.
pub const LABEL_VALUE_FMT: &str = "(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?";
const LABEL_VALUE_ERR_MSG: &str = "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character";

/// The percentage expression, as Kubernetes prints it.
pub const PERCENT_FMT: &str = "[0-9]+%";
const PERCENT_ERR_MSG: &str =
    "a valid percent string must be a numeric string followed by an ending '%'";

/// Kubernetes' `MaxLenError`.
pub fn max_len_error(length: usize) -> String {
    format!("must be no more than {length} characters")
}

/// Kubernetes' `RegexError`: `msg (e.g. 'a',  or 'b', regex used for
/// validation is 'fmt')`.
pub fn regex_error(msg: &str, fmt: &str, examples: &[&str]) -> String {
    if examples.is_empty() {
        return format!("{msg} (regex used for validation is '{fmt}')");
    }
    let examples = examples
        .iter()
        .map(|example| format!("'{example}', "))
        .collect::<Vec<_>>()
        // Go appends " or " after "'example', ", hence the double space
        // users know from kubectl.
        .join(" or ");
    format!("{msg} (e.g. {examples}regex used for validation is '{fmt}')")
}

/// Kubernetes' `EmptyError`.
pub fn empty_error() -> &'static str {
    "must be non-empty"
}

/// Kubernetes' `IsDNS1123Subdomain`: at most 253 characters of lower-case
/// alphanumerics, `-` and `.`, each dot-separated part starting and ending
/// with an alphanumeric.
pub fn is_dns1123_subdomain(value: &str) -> Vec<String> {
    let mut errors = Vec::new();
    if value.len() > DNS1123_SUBDOMAIN_MAX_LENGTH {
        errors.push(max_len_error(DNS1123_SUBDOMAIN_MAX_LENGTH));
    }
    if !matches_dns1123_subdomain(value) {
        errors.push(dns1123_subdomain_regex_error());
    }
    errors
}

/// The regular-expression message of [`is_dns1123_subdomain`].
pub(crate) fn dns1123_subdomain_regex_error() -> String {
    regex_error(
        DNS1123_SUBDOMAIN_ERR_MSG,
        DNS1123_SUBDOMAIN_FMT,
        &["example.com"],
    )
}

/// Whether `value` matches [`DNS1123_SUBDOMAIN_FMT`] (length not checked).
pub(crate) fn matches_dns1123_subdomain(value: &str) -> bool {
    value.split('.').all(|label| {
        let bytes = label.as_bytes();
        let edge = |b: &u8| b.is_ascii_lowercase() || b.is_ascii_digit();
        let inner = |b: &u8| edge(b) || *b == b'-';
        match (bytes.first(), bytes.last()) {
            (Some(first), Some(last)) => edge(first) && edge(last) && bytes.iter().all(inner),
            _ => false,
        }
    })
}

/// Whether `value` matches [`QUALIFIED_NAME_FMT`] (length not checked).
fn matches_qualified_name(value: &str) -> bool {
    let bytes = value.as_bytes();
    let edge = |b: &u8| b.is_ascii_alphanumeric();
    let inner = |b: &u8| edge(b) || matches!(b, b'-' | b'_' | b'.');
    match (bytes.first(), bytes.last()) {
        (Some(first), Some(last)) => edge(first) && edge(last) && bytes.iter().all(inner),
        _ => false,
    }
}

/// Kubernetes' `IsQualifiedName` (label keys, annotation keys, node
/// selector keys): an optional DNS-1123 subdomain prefix and `/`, then a
/// name of at most 63 alphanumerics, `-`, `_` and `.`, starting and ending
/// with an alphanumeric.
pub fn is_qualified_name(value: &str) -> Vec<String> {
    let mut errors = Vec::new();
    let parts: Vec<&str> = value.split('/').collect();
    let name = match parts.as_slice() {
        [name] => *name,
        [prefix, name] => {
            if prefix.is_empty() {
                errors.push(format!("prefix part {}", empty_error()));
            } else {
                errors.extend(
                    is_dns1123_subdomain(prefix)
                        .into_iter()
                        .map(|message| format!("prefix part {message}")),
                );
            }
            *name
        }
        _ => {
            return vec![format!(
                "a qualified name {} with an optional DNS subdomain prefix and '/' (e.g. 'example.com/MyName')",
                regex_error(
                    QUALIFIED_NAME_ERR_MSG,
                    QUALIFIED_NAME_FMT,
                    &["MyName", "my.name", "123-abc"]
                )
            )];
        }
    };
    if name.is_empty() {
        errors.push(format!("name part {}", empty_error()));
    } else if name.len() > QUALIFIED_NAME_MAX_LENGTH {
        errors.push(format!(
            "name part {}",
            max_len_error(QUALIFIED_NAME_MAX_LENGTH)
        ));
    }
    if !matches_qualified_name(name) {
        errors.push(format!(
            "name part {}",
            regex_error(
                QUALIFIED_NAME_ERR_MSG,
                QUALIFIED_NAME_FMT,
                &["MyName", "my.name", "123-abc"]
            )
        ));
    }
    errors
}

/// Kubernetes' `IsValidLabelValue`: empty, or at most 63 alphanumerics,
/// `-`, `_` and `.`, starting and ending with an alphanumeric.
pub fn is_valid_label_value(value: &str) -> Vec<String> {
    let mut errors = Vec::new();
    if value.len() > LABEL_VALUE_MAX_LENGTH {
        errors.push(max_len_error(LABEL_VALUE_MAX_LENGTH));
    }
    if !value.is_empty() && !matches_qualified_name(value) {
        errors.push(regex_error(
            LABEL_VALUE_ERR_MSG,
            LABEL_VALUE_FMT,
            &["MyValue", "my_value", "12345"],
        ));
    }
    errors
}

/// Kubernetes' `IsValidPercent`: digits followed by `%`.
pub fn is_valid_percent(value: &str) -> Vec<String> {
    let valid = value
        .strip_suffix('%')
        .is_some_and(|digits| !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()));
    if valid {
        Vec::new()
    } else {
        vec![regex_error(PERCENT_ERR_MSG, PERCENT_FMT, &["1%", "93%"])]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SUBDOMAIN: &str = "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')";
    const NAME_PART: &str = "name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')";
    const LABEL_VALUE: &str = "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyValue',  or 'my_value',  or '12345', regex used for validation is '(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')";

    fn check(name: &str, actual: Vec<String>, expected: &[&str]) {
        assert_eq!(actual, expected, "{name}");
    }

    #[test]
    fn dns1123_subdomain() {
        let too_long = "a".repeat(254);
        let cases: [(&str, &str, &[&str]); 12] = [
            ("simple", "node01", &[]),
            ("dotted", "worker-1.example.com", &[]),
            ("digits only", "123", &[]),
            ("253 characters", &"a".repeat(253), &[]),
            ("empty", "", &[SUBDOMAIN]),
            ("upper case", "Foo", &[SUBDOMAIN]),
            ("underscore", "a_b", &[SUBDOMAIN]),
            ("leading dash", "-a", &[SUBDOMAIN]),
            ("trailing dot", "a.", &[SUBDOMAIN]),
            ("double dot", "a..b", &[SUBDOMAIN]),
            ("non-ascii", "nœud", &[SUBDOMAIN]),
            (
                "too long",
                &too_long,
                &["must be no more than 253 characters"],
            ),
        ];
        for (name, value, expected) in cases {
            check(name, is_dns1123_subdomain(value), expected);
        }
    }

    #[test]
    fn qualified_name() {
        let long_name = "a".repeat(64);
        let cases: [(&str, &str, Vec<String>); 10] = [
            ("plain", "app", vec![]),
            ("prefixed", "kubernetes.io/hostname", vec![]),
            ("mixed case name", "example.com/MyName_1.x", vec![]),
            ("empty", "", vec!["name part must be non-empty".into(), NAME_PART.into()]),
            ("empty prefix", "/name", vec!["prefix part must be non-empty".into()]),
            ("bad prefix", "Example.com/name", vec![format!("prefix part {SUBDOMAIN}")]),
            ("empty name", "example.com/", vec!["name part must be non-empty".into(), NAME_PART.into()]),
            ("bad name", "example.com/-x", vec![NAME_PART.into()]),
            ("long name", &long_name, vec!["name part must be no more than 63 characters".into()]),
            (
                "two slashes",
                "a/b/c",
                vec!["a qualified name must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]') with an optional DNS subdomain prefix and '/' (e.g. 'example.com/MyName')".into()],
            ),
        ];
        for (name, value, expected) in cases {
            let expected: Vec<&str> = expected.iter().map(String::as_str).collect();
            check(name, is_qualified_name(value), &expected);
        }
    }

    #[test]
    fn label_value() {
        let long = "a".repeat(64);
        let long_bad = format!("{}-", "a".repeat(63));
        let cases: [(&str, &str, &[&str]); 7] = [
            ("empty", "", &[]),
            ("plain", "node01", &[]),
            ("mixed", "My_value.1", &[]),
            ("space", "b a d", &[LABEL_VALUE]),
            ("trailing dash", "a-", &[LABEL_VALUE]),
            ("too long", &long, &["must be no more than 63 characters"]),
            (
                "too long and bad",
                &long_bad,
                &["must be no more than 63 characters", LABEL_VALUE],
            ),
        ];
        for (name, value, expected) in cases {
            check(name, is_valid_label_value(value), expected);
        }
    }

    #[test]
    fn percent() {
        const PERCENT: &str = "a valid percent string must be a numeric string followed by an ending '%' (e.g. '1%',  or '93%', regex used for validation is '[0-9]+%')";
        let cases: [(&str, &str, &[&str]); 6] = [
            ("percent", "25%", &[]),
            ("zero", "0%", &[]),
            ("no sign", "25", &[PERCENT]),
            ("bare sign", "%", &[PERCENT]),
            ("negative", "-5%", &[PERCENT]),
            ("space", "5 %", &[PERCENT]),
        ];
        for (name, value, expected) in cases {
            check(name, is_valid_percent(value), expected);
        }
    }
}
