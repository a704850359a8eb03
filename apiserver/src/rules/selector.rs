//! Label and field selectors of list, watch and deletecollection requests
//! (`?labelSelector=`, `?fieldSelector=`): parsing them with Kubernetes'
//! grammar and error messages, and matching stored objects against them.
//!
//! This module owns the selector languages and which fields each kind can
//! be selected by. It does no IO and knows nothing about requests: handlers
//! parse the query parameters here, turn a [`SelectorError`] into a 400
//! BadRequest whose message is the error's text, and filter objects with
//! [`LabelSelector::matches_object`] and [`FieldSelector::matches_object`].
//! [`LabelSelector::exact_value`] and [`FieldSelector::exact_value`] tell a
//! handler when a selector pins one value (`nmstate.io/node=node01`), so it
//! can read a narrower index instead of filtering everything.
//!
//! The grammar and messages follow `k8s.io/apimachinery/pkg/labels` and
//! `pkg/fields` (Kubernetes 1.32, with the later fix that lets
//! `a in (x,,)` parse), and the field labels follow what kube-apiserver
//! accepts for custom resources.
//!
//! ```
//! use nmstate_apiserver::rules::selector::{FieldSelector, LabelSelector};
//! use nmstate_openapi::ResourceKind;
//! use serde_json::json;
//!
//! let enactment = json!({"metadata": {
//!     "name": "node01.br1",
//!     "labels": {"nmstate.io/node": "node01", "nmstate.io/policy": "br1"},
//! }});
//! let labels = LabelSelector::parse("nmstate.io/node in (node01), !app").unwrap();
//! assert!(labels.matches_object(&enactment));
//! assert_eq!(labels.exact_value("nmstate.io/node"), Some("node01"));
//!
//! let kind = ResourceKind::NodeNetworkConfigurationEnactment;
//! let fields = FieldSelector::parse("policy=br1,metadata.name!=x", kind).unwrap();
//! assert!(fields.matches_object(&enactment));
//! assert_eq!(
//!     FieldSelector::parse("spec.foo=x", kind).unwrap_err().to_string(),
//!     "field label not supported: spec.foo"
//! );
//! ```

use std::{
    collections::{BTreeMap, BTreeSet},
    fmt,
};

use nmstate_openapi::{
    ENACTMENT_NODE_LABEL, ENACTMENT_POLICY_LABEL, FieldError, ResourceKind,
    validation::names::{is_qualified_name, is_valid_label_value},
};
use serde_json::Value;

/// Results of this module.
pub type Result<T, E = SelectorError> = std::result::Result<T, E>;

/// Why a selector was rejected. The text is the message kube-apiserver puts
/// in its 400 BadRequest `Status` for the same selector.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SelectorError {
    /// A label selector has a token where a requirement, a comma or the end
    /// must be (`found ')', expected: !, identifier, or 'end of string'`).
    #[error("found '{found}', expected: {expected}")]
    Unexpected {
        /// The token as written; empty for the end of the string.
        found: String,
        /// What Kubernetes says it expected.
        expected: &'static str,
    },
    /// One comma-separated requirement of a label selector is malformed or
    /// holds an invalid key or value.
    #[error("unable to parse requirement: {0}")]
    Requirement(RequirementError),
    /// A field selector term has no `=`, `==` or `!=`.
    #[error("invalid selector: '{selector}'; can't understand '{term}'")]
    FieldTerm {
        /// The whole field selector.
        selector: String,
        /// The term without an operator.
        term: String,
    },
    /// A field selector value has a backslash not followed by `\`, `,` or
    /// `=`.
    #[error("invalid field selector: invalid escape sequence: {0}")]
    InvalidEscape(String),
    /// A field selector value holds an unescaped `=` (or `,`). Kubernetes
    /// prints the character as its code point (`61` for `=`).
    #[error("invalid field selector: unescaped character in value: {}", u32::from(*.0))]
    UnescapedCharacter(char),
    /// A field selector names a field this kind cannot be selected by.
    #[error("field label not supported: {0}")]
    UnsupportedField(String),
}

/// What is wrong with one requirement of a label selector.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RequirementError {
    /// A token where another was expected (`found '', expected:
    /// identifier`).
    #[error("found '{found}', expected: {expected}")]
    Unexpected {
        /// The token as written; empty for the end of the string.
        found: String,
        /// What Kubernetes says it expected.
        expected: &'static str,
    },
    /// `in` or `notin` not followed by `(` (Kubernetes words this one
    /// without a comma).
    #[error("found '{found}' expected: '('")]
    ExpectedOpenParenthesis {
        /// The token as written; empty for the end of the string.
        found: String,
    },
    /// The key is not a qualified name, or values are not label values (or
    /// not integers for `>` and `<`); one field error each, printed as
    /// Kubernetes aggregates them.
    #[error("{}", aggregate(.0))]
    Invalid(Vec<FieldError>),
}

/// Kubernetes' aggregate error text: one message alone, several as
/// `[a, b]`, duplicates dropped.
fn aggregate(errors: &[FieldError]) -> String {
    let mut messages: Vec<String> = Vec::new();
    for error in errors {
        let message = error.to_string();
        if !messages.contains(&message) {
            messages.push(message);
        }
    }
    match messages.as_slice() {
        [one] => one.clone(),
        many => format!("[{}]", many.join(", ")),
    }
}

/// A requirement's operator (`k8s.io/apimachinery/pkg/selection`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Operator {
    /// `key=value`.
    Equals,
    /// `key==value`.
    DoubleEquals,
    /// `key!=value`.
    NotEquals,
    /// `key in (a,b)`.
    In,
    /// `key notin (a,b)`.
    NotIn,
    /// `key`.
    Exists,
    /// `!key`.
    DoesNotExist,
    /// `key>5` (integer comparison).
    GreaterThan,
    /// `key<5` (integer comparison).
    LessThan,
}

/// One term of a label selector: a key, an operator and its values.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Requirement {
    key: String,
    operator: Operator,
    /// Sorted and without duplicates, as Kubernetes keeps them.
    values: Vec<String>,
}

impl Requirement {
    fn matches(&self, label: Option<&str>) -> bool {
        let has = |value: &str| self.values.iter().any(|v| v == value);
        match self.operator {
            Operator::Equals | Operator::DoubleEquals | Operator::In => label.is_some_and(has),
            Operator::NotEquals | Operator::NotIn => !label.is_some_and(has),
            Operator::Exists => label.is_some(),
            Operator::DoesNotExist => label.is_none(),
            Operator::GreaterThan | Operator::LessThan => {
                let (Some(label), [value]) = (label, self.values.as_slice()) else {
                    return false;
                };
                match (label.parse::<i64>(), value.parse::<i64>()) {
                    (Ok(label), Ok(value)) if self.operator == Operator::GreaterThan => {
                        label > value
                    }
                    (Ok(label), Ok(value)) => label < value,
                    _ => false,
                }
            }
        }
    }

    /// The one value this requirement forces the key to have.
    fn exact_value(&self) -> Option<&str> {
        match (self.operator, self.values.as_slice()) {
            (Operator::Equals | Operator::DoubleEquals | Operator::In, [value]) => Some(value),
            _ => None,
        }
    }
}

impl fmt::Display for Requirement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let values = self.values.join(",");
        let key = &self.key;
        match self.operator {
            Operator::Equals => write!(f, "{key}={values}"),
            Operator::DoubleEquals => write!(f, "{key}=={values}"),
            Operator::NotEquals => write!(f, "{key}!={values}"),
            Operator::In => write!(f, "{key} in ({values})"),
            Operator::NotIn => write!(f, "{key} notin ({values})"),
            Operator::Exists => write!(f, "{key}"),
            Operator::DoesNotExist => write!(f, "!{key}"),
            Operator::GreaterThan => write!(f, "{key}>{values}"),
            Operator::LessThan => write!(f, "{key}<{values}"),
        }
    }
}

/// A parsed `labelSelector`: requirements that must all hold. The empty
/// selector matches every object.
///
/// Grammar (`k8s.io/apimachinery/pkg/labels.Parse`):
///
/// ```text
/// selector    ::= requirement | requirement "," selector
/// requirement ::= ["!"] KEY [ ("in" | "notin") "(" VALUES ")"
///                           | ("=" | "==" | "!=" | ">" | "<") VALUE ]
/// ```
///
/// `KEY` is a qualified name (`example.com/name`), `VALUE` a label value
/// (possibly empty); blanks between tokens are ignored.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LabelSelector {
    /// Sorted by key, as Kubernetes sorts them.
    requirements: Vec<Requirement>,
}

impl LabelSelector {
    /// Parses `selector`, with Kubernetes' error messages.
    pub fn parse(selector: &str) -> Result<Self> {
        let mut requirements = Parser::new(selector).parse()?;
        requirements.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(Self { requirements })
    }

    /// Whether the selector matches everything.
    pub fn is_empty(&self) -> bool {
        self.requirements.is_empty()
    }

    /// Whether `labels` satisfy every requirement.
    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        self.matches_with(|key| labels.get(key).map(String::as_str))
    }

    /// Whether the object's `metadata.labels` satisfy every requirement
    /// (non-string label values count as absent).
    pub fn matches_object(&self, object: &Value) -> bool {
        let labels = object.pointer("/metadata/labels");
        self.matches_with(|key| labels?.get(key)?.as_str())
    }

    fn matches_with<'a>(&self, label: impl Fn(&str) -> Option<&'a str>) -> bool {
        self.requirements
            .iter()
            .all(|requirement| requirement.matches(label(&requirement.key)))
    }

    /// The value every matching object has for label `key`, when a
    /// requirement pins it (`key=v`, `key==v` or `key in (v)`).
    pub fn exact_value(&self, key: &str) -> Option<&str> {
        self.requirements
            .iter()
            .filter(|requirement| requirement.key == key)
            .find_map(Requirement::exact_value)
    }
}

impl fmt::Display for LabelSelector {
    /// The canonical form Kubernetes prints (`a=b,c in (d,e),!f`).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (index, requirement) in self.requirements.iter().enumerate() {
            if index > 0 {
                f.write_str(",")?;
            }
            write!(f, "{requirement}")?;
        }
        Ok(())
    }
}

/// A token of the label selector language.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Token {
    EndOfString,
    ClosedParenthesis,
    Comma,
    DoesNotExist,
    DoubleEquals,
    Equals,
    GreaterThan,
    Identifier,
    In,
    LessThan,
    NotEquals,
    NotIn,
    OpenParenthesis,
}

/// The token spelt `text`, when it is an operator, a parenthesis, a comma
/// or a keyword.
fn keyword(text: &str) -> Option<Token> {
    Some(match text {
        ")" => Token::ClosedParenthesis,
        "," => Token::Comma,
        "!" => Token::DoesNotExist,
        "==" => Token::DoubleEquals,
        "=" => Token::Equals,
        ">" => Token::GreaterThan,
        "in" => Token::In,
        "<" => Token::LessThan,
        "!=" => Token::NotEquals,
        "notin" => Token::NotIn,
        "(" => Token::OpenParenthesis,
        _ => return None,
    })
}

fn is_whitespace(byte: u8) -> bool {
    matches!(byte, b' ' | b'\t' | b'\r' | b'\n')
}

fn is_special_symbol(byte: u8) -> bool {
    matches!(byte, b'=' | b'!' | b'(' | b')' | b',' | b'>' | b'<')
}

/// Splits a label selector into tokens, byte by byte as Kubernetes does (a
/// NUL byte ends the input). Every delimiter is ASCII, so literals are
/// always whole UTF-8 slices of the input.
struct Lexer<'a> {
    input: &'a str,
    position: usize,
}

impl<'a> Lexer<'a> {
    /// The next byte, or 0 at the end.
    fn read(&mut self) -> u8 {
        match self.input.as_bytes().get(self.position) {
            Some(&byte) => {
                self.position += 1;
                byte
            }
            None => 0,
        }
    }

    /// Steps back over the byte just read (never called after reading the
    /// end).
    fn unread(&mut self) {
        self.position -= 1;
    }

    fn slice(&self, start: usize, end: usize) -> &'a str {
        self.input.get(start..end).unwrap_or_default()
    }

    fn lex(&mut self) -> (Token, &'a str) {
        let mut byte = self.read();
        while is_whitespace(byte) {
            byte = self.read();
        }
        if byte == 0 {
            return (Token::EndOfString, "");
        }
        self.unread();
        if is_special_symbol(byte) {
            self.scan_special_symbol()
        } else {
            self.scan_identifier_or_keyword()
        }
    }

    fn scan_identifier_or_keyword(&mut self) -> (Token, &'a str) {
        let start = self.position;
        let mut end = start;
        loop {
            let byte = self.read();
            if byte == 0 {
                break;
            }
            if is_special_symbol(byte) || is_whitespace(byte) {
                self.unread();
                break;
            }
            end = self.position;
        }
        let text = self.slice(start, end);
        match keyword(text) {
            Some(token @ (Token::In | Token::NotIn)) => (token, text),
            _ => (Token::Identifier, text),
        }
    }

    /// The longest operator at this position (`!=` rather than `!`).
    fn scan_special_symbol(&mut self) -> (Token, &'a str) {
        let start = self.position;
        // The first byte is a special symbol, and each of those is a token
        // on its own, so this is set after the first iteration.
        let mut longest = (Token::EndOfString, "");
        loop {
            let byte = self.read();
            if byte == 0 {
                break;
            }
            if !is_special_symbol(byte) {
                self.unread();
                break;
            }
            let text = self.slice(start, self.position);
            match keyword(text) {
                Some(token) => longest = (token, text),
                None => {
                    self.unread();
                    break;
                }
            }
        }
        longest
    }
}

/// Whether `in` and `notin` are keywords (after a key) or plain values.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Context {
    KeyAndOperator,
    Values,
}

/// Kubernetes' recursive-descent label selector parser over the scanned
/// tokens.
struct Parser<'a> {
    tokens: Vec<(Token, &'a str)>,
    position: usize,
}

/// The operators Kubernetes lists when it expected one.
const BINARY_OPERATORS: &str = "in, notin, =, ==, !=, gt, lt";

impl<'a> Parser<'a> {
    fn new(selector: &'a str) -> Self {
        let mut lexer = Lexer {
            input: selector,
            position: 0,
        };
        let mut tokens = Vec::new();
        loop {
            let token = lexer.lex();
            tokens.push(token);
            if token.0 == Token::EndOfString {
                break;
            }
        }
        Self {
            tokens,
            position: 0,
        }
    }

    fn lookahead(&self, context: Context) -> (Token, &'a str) {
        let (token, text) = self
            .tokens
            .get(self.position)
            .copied()
            .unwrap_or((Token::EndOfString, ""));
        match token {
            Token::In | Token::NotIn if context == Context::Values => (Token::Identifier, text),
            _ => (token, text),
        }
    }

    fn consume(&mut self, context: Context) -> (Token, &'a str) {
        let token = self.lookahead(context);
        self.position += 1;
        token
    }

    fn parse(&mut self) -> Result<Vec<Requirement>> {
        let mut requirements = Vec::new();
        loop {
            let (token, text) = self.lookahead(Context::Values);
            match token {
                Token::Identifier | Token::DoesNotExist => {
                    requirements.push(
                        self.parse_requirement()
                            .map_err(SelectorError::Requirement)?,
                    );
                    let (token, text) = self.consume(Context::Values);
                    match token {
                        Token::EndOfString => return Ok(requirements),
                        Token::Comma => {
                            let (next, text) = self.lookahead(Context::Values);
                            if !matches!(next, Token::Identifier | Token::DoesNotExist) {
                                return Err(unexpected(text, "identifier after ','"));
                            }
                        }
                        _ => return Err(unexpected(text, "',' or 'end of string'")),
                    }
                }
                Token::EndOfString => return Ok(requirements),
                _ => return Err(unexpected(text, "!, identifier, or 'end of string'")),
            }
        }
    }

    fn parse_requirement(&mut self) -> Result<Requirement, RequirementError> {
        let (key, operator) = self.parse_key_and_infer_operator()?;
        if let Some(operator) = operator {
            return new_requirement(key, operator, BTreeSet::new());
        }
        let operator = self.parse_operator()?;
        let values = match operator {
            Operator::In | Operator::NotIn => self.parse_values()?,
            _ => self.parse_exact_value()?,
        };
        new_requirement(key, operator, values)
    }

    /// The key, and `Exists` or `DoesNotExist` when no binary operator
    /// follows.
    fn parse_key_and_infer_operator(
        &mut self,
    ) -> Result<(&'a str, Option<Operator>), RequirementError> {
        let mut operator = None;
        let (mut token, mut text) = self.consume(Context::Values);
        if token == Token::DoesNotExist {
            operator = Some(Operator::DoesNotExist);
            (token, text) = self.consume(Context::Values);
        }
        if token != Token::Identifier {
            return Err(requirement_unexpected(text, "identifier"));
        }
        let errors = is_qualified_name(text);
        if !errors.is_empty() {
            // Kubernetes validates the key with a nil field path, which it
            // prints as `<nil>`.
            return Err(RequirementError::Invalid(vec![FieldError::invalid(
                "<nil>",
                text,
                errors.join("; "),
            )]));
        }
        let (next, _) = self.lookahead(Context::Values);
        if matches!(next, Token::EndOfString | Token::Comma) && operator.is_none() {
            operator = Some(Operator::Exists);
        }
        Ok((text, operator))
    }

    fn parse_operator(&mut self) -> Result<Operator, RequirementError> {
        let (token, text) = self.consume(Context::KeyAndOperator);
        Ok(match token {
            Token::In => Operator::In,
            Token::Equals => Operator::Equals,
            Token::DoubleEquals => Operator::DoubleEquals,
            Token::GreaterThan => Operator::GreaterThan,
            Token::LessThan => Operator::LessThan,
            Token::NotIn => Operator::NotIn,
            Token::NotEquals => Operator::NotEquals,
            _ => return Err(requirement_unexpected(text, BINARY_OPERATORS)),
        })
    }

    /// `(a,b,c)`; empty entries are the empty value.
    fn parse_values(&mut self) -> Result<BTreeSet<String>, RequirementError> {
        let (token, text) = self.consume(Context::Values);
        if token != Token::OpenParenthesis {
            return Err(RequirementError::ExpectedOpenParenthesis {
                found: text.to_owned(),
            });
        }
        let (token, text) = self.lookahead(Context::Values);
        match token {
            Token::Identifier | Token::Comma => {
                let values = self.parse_identifiers_list()?;
                // The list ends only before `)`, so this holds; Kubernetes
                // checks it anyway (naming the token before the list).
                let (token, _) = self.consume(Context::Values);
                if token != Token::ClosedParenthesis {
                    return Err(requirement_unexpected(text, "')'"));
                }
                Ok(values)
            }
            Token::ClosedParenthesis => {
                self.consume(Context::Values);
                Ok(BTreeSet::from([String::new()]))
            }
            _ => Err(requirement_unexpected(text, "',', ')' or identifier")),
        }
    }

    fn parse_identifiers_list(&mut self) -> Result<BTreeSet<String>, RequirementError> {
        let mut values = BTreeSet::new();
        loop {
            let (token, text) = self.consume(Context::Values);
            match token {
                Token::Identifier => {
                    values.insert(text.to_owned());
                    let (next, text) = self.lookahead(Context::Values);
                    match next {
                        Token::Comma => continue,
                        Token::ClosedParenthesis => return Ok(values),
                        _ => return Err(requirement_unexpected(text, "',' or ')'")),
                    }
                }
                Token::Comma => {
                    // A comma with nothing before or after it stands for the
                    // empty value: `(,a)`, `(a,)`, `(a,,b)`.
                    if values.is_empty() {
                        values.insert(String::new());
                    }
                    let (next, _) = self.lookahead(Context::Values);
                    if matches!(next, Token::ClosedParenthesis | Token::Comma) {
                        values.insert(String::new());
                    }
                    if next == Token::ClosedParenthesis {
                        return Ok(values);
                    }
                }
                _ => return Err(requirement_unexpected(text, "',', or identifier")),
            }
        }
    }

    /// The value after `=`, `==`, `!=`, `>` or `<`; none is the empty value.
    fn parse_exact_value(&mut self) -> Result<BTreeSet<String>, RequirementError> {
        let (token, _) = self.lookahead(Context::Values);
        if matches!(token, Token::EndOfString | Token::Comma) {
            return Ok(BTreeSet::from([String::new()]));
        }
        let (token, text) = self.consume(Context::Values);
        if token == Token::Identifier {
            Ok(BTreeSet::from([text.to_owned()]))
        } else {
            Err(requirement_unexpected(text, "identifier"))
        }
    }
}

fn unexpected(found: &str, expected: &'static str) -> SelectorError {
    SelectorError::Unexpected {
        found: found.to_owned(),
        expected,
    }
}

fn requirement_unexpected(found: &str, expected: &'static str) -> RequirementError {
    RequirementError::Unexpected {
        found: found.to_owned(),
        expected,
    }
}

/// Kubernetes' `NewRequirement` checks on the values (the key was checked
/// while parsing): integers for `>` and `<`, label values for all.
fn new_requirement(
    key: &str,
    operator: Operator,
    values: BTreeSet<String>,
) -> Result<Requirement, RequirementError> {
    let values: Vec<String> = values.into_iter().collect();
    let mut errors = Vec::new();
    if matches!(operator, Operator::GreaterThan | Operator::LessThan) {
        for (index, value) in values.iter().enumerate() {
            if value.parse::<i64>().is_err() {
                errors.push(FieldError::invalid(
                    format!("values[{index}]"),
                    value.as_str(),
                    "for 'Gt', 'Lt' operators, the value must be an integer",
                ));
            }
        }
    }
    for (index, value) in values.iter().enumerate() {
        let problems = is_valid_label_value(value);
        if !problems.is_empty() {
            errors.push(FieldError::invalid(
                format!("values[{index}][{key}]"),
                value.as_str(),
                problems.join("; "),
            ));
        }
    }
    if !errors.is_empty() {
        return Err(RequirementError::Invalid(errors));
    }
    Ok(Requirement {
        key: key.to_owned(),
        operator,
        values,
    })
}

/// A field an object can be selected by with `fieldSelector`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Field {
    /// `metadata.name`, every kind.
    Name,
    /// `metadata.namespace`, every kind; always empty, as all kinds are
    /// cluster-scoped.
    Namespace,
    /// `node`, enactments: their `nmstate.io/node` label.
    Node,
    /// `policy`, enactments: their `nmstate.io/policy` label.
    Policy,
}

const FIELDS_OF_EVERY_KIND: &[&str] = &["metadata.name", "metadata.namespace"];
const FIELDS_OF_ENACTMENTS: &[&str] = &["metadata.name", "metadata.namespace", "node", "policy"];

impl Field {
    fn from_name(kind: ResourceKind, name: &str) -> Option<Self> {
        match (name, kind) {
            ("metadata.name", _) => Some(Self::Name),
            ("metadata.namespace", _) => Some(Self::Namespace),
            ("node", ResourceKind::NodeNetworkConfigurationEnactment) => Some(Self::Node),
            ("policy", ResourceKind::NodeNetworkConfigurationEnactment) => Some(Self::Policy),
            _ => None,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Self::Name => "metadata.name",
            Self::Namespace => "metadata.namespace",
            Self::Node => "node",
            Self::Policy => "policy",
        }
    }

    /// The field's value in `object`; missing is the empty string, as in
    /// Kubernetes' field sets.
    fn value_in(self, object: &Value) -> &str {
        let label = |key: &str| object.pointer("/metadata/labels")?.get(key);
        let value = match self {
            Self::Name => object.pointer("/metadata/name"),
            Self::Namespace => object.pointer("/metadata/namespace"),
            Self::Node => label(ENACTMENT_NODE_LABEL),
            Self::Policy => label(ENACTMENT_POLICY_LABEL),
        };
        value.and_then(Value::as_str).unwrap_or_default()
    }
}

/// One term of a field selector.
#[derive(Clone, Debug, PartialEq, Eq)]
struct FieldTerm {
    field: Field,
    /// `=` and `==` (true) or `!=` (false).
    equals: bool,
    /// Unescaped.
    value: String,
}

/// A parsed `fieldSelector`: `field=value`, `field==value` and
/// `field!=value` terms separated by commas, all of which must hold. In
/// values, `\,`, `\=` and `\\` stand for `,`, `=` and `\`. The empty
/// selector matches every object.
///
/// Every kind can be selected by `metadata.name` and `metadata.namespace`
/// (always empty: all kinds are cluster-scoped); enactments also by `node`
/// and `policy`, the values of their `nmstate.io/node` and
/// `nmstate.io/policy` labels.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FieldSelector {
    /// In the order of their sorted source text, as Kubernetes keeps them.
    terms: Vec<FieldTerm>,
}

impl FieldSelector {
    /// The fields objects of `kind` can be selected by.
    pub fn supported_fields(kind: ResourceKind) -> &'static [&'static str] {
        match kind {
            ResourceKind::NodeNetworkConfigurationEnactment => FIELDS_OF_ENACTMENTS,
            _ => FIELDS_OF_EVERY_KIND,
        }
    }

    /// Parses `selector` for objects of `kind`, with Kubernetes' error
    /// messages. Syntax is checked for every term before the field names.
    pub fn parse(selector: &str, kind: ResourceKind) -> Result<Self> {
        let mut source_terms = split_terms(selector);
        source_terms.sort_unstable();
        let mut parsed = Vec::new();
        for term in source_terms.into_iter().filter(|term| !term.is_empty()) {
            let (field, equals, value) =
                split_term(term).ok_or_else(|| SelectorError::FieldTerm {
                    selector: selector.to_owned(),
                    term: term.to_owned(),
                })?;
            parsed.push((field, equals, unescape_value(value)?));
        }
        let terms = parsed
            .into_iter()
            .map(|(name, equals, value)| {
                let field = Field::from_name(kind, name)
                    .ok_or_else(|| SelectorError::UnsupportedField(name.to_owned()))?;
                Ok(FieldTerm {
                    field,
                    equals,
                    value,
                })
            })
            .collect::<Result<_>>()?;
        Ok(Self { terms })
    }

    /// Whether the selector matches everything.
    pub fn is_empty(&self) -> bool {
        self.terms.is_empty()
    }

    /// Whether `object` satisfies every term.
    pub fn matches_object(&self, object: &Value) -> bool {
        self.terms
            .iter()
            .all(|term| (term.field.value_in(object) == term.value) == term.equals)
    }

    /// The value every matching object has for `field` (a name from
    /// [`Self::supported_fields`]), when a `field=value` term pins it.
    pub fn exact_value(&self, field: &str) -> Option<&str> {
        self.terms
            .iter()
            .find(|term| term.equals && term.field.name() == field)
            .map(|term| term.value.as_str())
    }
}

impl fmt::Display for FieldSelector {
    /// The canonical form Kubernetes prints (`a=b,c!=d`, values escaped).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (index, term) in self.terms.iter().enumerate() {
            if index > 0 {
                f.write_str(",")?;
            }
            let operator = if term.equals { "=" } else { "!=" };
            write!(f, "{}{operator}", term.field.name())?;
            for c in term.value.chars() {
                if matches!(c, '\\' | ',' | '=') {
                    f.write_str("\\")?;
                }
                write!(f, "{c}")?;
            }
        }
        Ok(())
    }
}

/// The comma-separated terms, keeping backslash-escaped commas (and their
/// backslash) inside a term.
fn split_terms(selector: &str) -> Vec<&str> {
    if selector.is_empty() {
        return Vec::new();
    }
    let mut terms = Vec::new();
    let mut start = 0;
    let mut escaped = false;
    for (index, byte) in selector.bytes().enumerate() {
        if escaped {
            escaped = false;
        } else if byte == b'\\' {
            escaped = true;
        } else if byte == b',' {
            terms.push(selector.get(start..index).unwrap_or_default());
            start = index + 1;
        }
    }
    terms.push(selector.get(start..).unwrap_or_default());
    terms
}

/// Splits a term at its first operator (`!=`, then `==`, then `=` at each
/// position): the field, whether it is an equality, and the raw value.
fn split_term(term: &str) -> Option<(&str, bool, &str)> {
    (0..term.len()).find_map(|index| {
        let rest = term.get(index..)?;
        let field = term.get(..index)?;
        if let Some(value) = rest.strip_prefix("!=") {
            Some((field, false, value))
        } else if let Some(value) = rest.strip_prefix("==") {
            Some((field, true, value))
        } else {
            rest.strip_prefix('=').map(|value| (field, true, value))
        }
    })
}

/// Kubernetes' `UnescapeValue`.
fn unescape_value(value: &str) -> Result<String> {
    if !value.contains(['\\', ',', '=']) {
        return Ok(value.to_owned());
    }
    let mut unescaped = String::with_capacity(value.len());
    let mut escaped = false;
    for c in value.chars() {
        if escaped {
            if !matches!(c, '\\' | ',' | '=') {
                return Err(SelectorError::InvalidEscape(format!("\\{c}")));
            }
            unescaped.push(c);
            escaped = false;
        } else {
            match c {
                '\\' => escaped = true,
                ',' | '=' => return Err(SelectorError::UnescapedCharacter(c)),
                c => unescaped.push(c),
            }
        }
    }
    if escaped {
        return Err(SelectorError::InvalidEscape("\\".to_owned()));
    }
    Ok(unescaped)
}

#[cfg(test)]
mod tests;
