//! [`IntOrString`]: Kubernetes' int-or-string (`maxUnavailable: 3` or
//! `maxUnavailable: "25%"`) and its scaling against a node count, with the
//! semantics of apimachinery's `GetScaledValueFromIntOrPercent`.

use serde::{Deserialize, Deserializer, Serialize, Serializer, de};

/// An integer or a string, serialised as whichever it holds.
///
/// ```yaml
/// maxUnavailable: 3        # Int(3)
/// maxUnavailable: "25%"    # String("25%")
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum IntOrString {
    /// A 32-bit integer, as in Kubernetes.
    Int(i32),
    /// A string; for percentages, digits followed by `%`.
    String(String),
}

/// Why an [`IntOrString`] could not be scaled.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum IntOrStringError {
    /// The string is not `<digits>%`.
    #[error("invalid value for IntOrString: invalid type: string is not a percentage: {0:?}")]
    NotAPercentage(String),
}

impl IntOrString {
    /// The percentage a string such as `"25%"` holds: digits then `%`,
    /// nothing else (as Kubernetes' `IsValidPercent`). `None` for integers
    /// and other strings. Percentages too large for `u64` saturate.
    pub fn percent(&self) -> Option<u64> {
        let Self::String(text) = self else {
            return None;
        };
        let digits = text.strip_suffix('%')?;
        if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        Some(digits.parse().unwrap_or(u64::MAX))
    }

    /// The value against `total`: integers as they are, percentages of
    /// `total`, rounded up when `round_up` (ceiling) else down. Negative
    /// integers are returned as they are; callers clamp.
    pub fn scaled_value(&self, total: u64, round_up: bool) -> Result<i64, IntOrStringError> {
        match self {
            Self::Int(value) => Ok(i64::from(*value)),
            Self::String(text) => {
                let percent = self
                    .percent()
                    .ok_or_else(|| IntOrStringError::NotAPercentage(text.clone()))?;
                let product = u128::from(percent) * u128::from(total);
                let scaled = if round_up {
                    product.div_ceil(100)
                } else {
                    product / 100
                };
                Ok(i64::try_from(scaled).unwrap_or(i64::MAX))
            }
        }
    }
}

impl std::fmt::Display for IntOrString {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Int(value) => write!(f, "{value}"),
            Self::String(text) => f.write_str(text),
        }
    }
}

impl From<i32> for IntOrString {
    fn from(value: i32) -> Self {
        Self::Int(value)
    }
}

impl From<&str> for IntOrString {
    fn from(value: &str) -> Self {
        Self::String(value.to_owned())
    }
}

impl From<k8s_openapi::apimachinery::pkg::util::intstr::IntOrString> for IntOrString {
    fn from(value: k8s_openapi::apimachinery::pkg::util::intstr::IntOrString) -> Self {
        use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString as K8s;
        match value {
            K8s::Int(value) => Self::Int(value),
            K8s::String(value) => Self::String(value),
        }
    }
}

impl From<IntOrString> for k8s_openapi::apimachinery::pkg::util::intstr::IntOrString {
    fn from(value: IntOrString) -> Self {
        match value {
            IntOrString::Int(value) => Self::Int(value),
            IntOrString::String(value) => Self::String(value),
        }
    }
}

impl Serialize for IntOrString {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            Self::Int(value) => serializer.serialize_i32(*value),
            Self::String(text) => serializer.serialize_str(text),
        }
    }
}

impl<'de> Deserialize<'de> for IntOrString {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;

        impl de::Visitor<'_> for Visitor {
            type Value = IntOrString;

            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a 32-bit integer or a string")
            }

            fn visit_i64<E: de::Error>(self, value: i64) -> Result<IntOrString, E> {
                i32::try_from(value)
                    .map(IntOrString::Int)
                    .map_err(|_| E::invalid_value(de::Unexpected::Signed(value), &self))
            }

            fn visit_u64<E: de::Error>(self, value: u64) -> Result<IntOrString, E> {
                i32::try_from(value)
                    .map(IntOrString::Int)
                    .map_err(|_| E::invalid_value(de::Unexpected::Unsigned(value), &self))
            }

            fn visit_f64<E: de::Error>(self, value: f64) -> Result<IntOrString, E> {
                Err(E::invalid_type(de::Unexpected::Float(value), &self))
            }

            fn visit_str<E: de::Error>(self, value: &str) -> Result<IntOrString, E> {
                Ok(IntOrString::String(value.to_owned()))
            }
        }

        deserializer.deserialize_any(Visitor)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn scaled_value() {
        type Case = (
            &'static str,
            IntOrString,
            u64,
            bool,
            Result<i64, IntOrStringError>,
        );
        let cases: [Case; 9] = [
            ("int", 3.into(), 10, true, Ok(3)),
            ("negative int kept", (-1).into(), 10, true, Ok(-1)),
            ("percent rounds up", "25%".into(), 10, true, Ok(3)),
            ("percent rounds down", "25%".into(), 10, false, Ok(2)),
            ("fifty percent of one", "50%".into(), 1, true, Ok(1)),
            ("zero nodes", "50%".into(), 0, true, Ok(0)),
            ("more than all", "150%".into(), 4, true, Ok(6)),
            (
                "huge percent saturates",
                "99999999999999999999999%".into(),
                1000,
                true,
                Ok(i64::MAX),
            ),
            (
                "not a percent",
                "50".into(),
                10,
                true,
                Err(IntOrStringError::NotAPercentage("50".into())),
            ),
        ];
        for (name, value, total, round_up, expected) in cases {
            assert_eq!(value.scaled_value(total, round_up), expected, "{name}");
        }
        for text in ["%", "-5%", "+5%", "5 %", "5%%", "five%"] {
            assert_eq!(IntOrString::from(text).percent(), None, "{text}");
        }
    }

    #[test]
    fn wire_format() {
        let cases = [
            ("3", IntOrString::Int(3)),
            (r#""25%""#, IntOrString::String("25%".into())),
        ];
        for (json, value) in cases {
            assert_eq!(serde_json::from_str::<IntOrString>(json).unwrap(), value);
            assert_eq!(serde_json::to_string(&value).unwrap(), json);
        }
        let errors = [
            (
                "true",
                "invalid type: boolean `true`, expected a 32-bit integer or a string",
            ),
            (
                "1.5",
                "invalid type: floating point `1.5`, expected a 32-bit integer or a string",
            ),
            (
                "5000000000",
                "invalid value: integer `5000000000`, expected a 32-bit integer or a string",
            ),
        ];
        for (json, message) in errors {
            let error = serde_json::from_value::<IntOrString>(serde_json::from_str(json).unwrap())
                .unwrap_err();
            assert_eq!(error.to_string(), message, "{json}");
        }
    }
}
