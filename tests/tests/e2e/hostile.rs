//! Hostile input against the real server binary: a corpus of malformed,
//! oversized and pathological requests, each answered with the documented
//! `metav1.Status`, with nothing stored, the server still healthy, and a
//! well-behaved client served all the while; then the protocol-level abuse
//! (slow senders, idle connections, many watches, HTTP/2 rapid reset,
//! header floods) and the limits that answer it (docs/api.md, "Limits").
#![allow(clippy::unwrap_used)]

use std::{
    io::Write,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use bytes::Bytes;
use http::StatusCode;
use http_body_util::Full;
use nmstate_e2e::{
    apiserver::ApiserverProcess,
    https::{HttpsClient, TestResponse},
    policies::bridge_policy as policy,
};
use serde_json::{Value, json};
use tokio::{io::AsyncWriteExt, task::JoinHandle};

const POLICIES: &str = "/apis/nmstate.io/v1/nodenetworkconfigurationpolicies";
/// kube-apiserver's `--max-mutating-requests-inflight` default.
const MAX_MUTATING_IN_FLIGHT: usize = 200;

/// `policy("hostile")` with `edit` applied.
fn edited(edit: impl FnOnce(&mut Value)) -> Value {
    let mut body = policy("hostile");
    edit(&mut body);
    body
}

/// One request of the corpus and the answer it must get.
struct Case {
    name: String,
    method: &'static str,
    path: String,
    headers: Vec<(&'static str, String)>,
    body: Option<Vec<u8>>,
    code: StatusCode,
    /// The `Status` reason; empty when the answer is not a `Status` (a
    /// successful read, or hyper's own 431 without a body).
    reason: &'static str,
}

fn case(
    name: impl Into<String>,
    method: &'static str,
    path: impl Into<String>,
    code: StatusCode,
    reason: &'static str,
) -> Case {
    Case {
        name: name.into(),
        method,
        path: path.into(),
        headers: Vec::new(),
        body: None,
        code,
        reason,
    }
}

impl Case {
    fn body(mut self, content_type: &str, body: impl Into<Vec<u8>>) -> Self {
        self.headers
            .push(("content-type", content_type.to_string()));
        self.body = Some(body.into());
        self
    }

    fn header(mut self, name: &'static str, value: impl Into<String>) -> Self {
        self.headers.push((name, value.into()));
        self
    }
}

const BAD_REQUEST: (StatusCode, &str) = (StatusCode::BAD_REQUEST, "BadRequest");
const INVALID: (StatusCode, &str) = (StatusCode::UNPROCESSABLE_ENTITY, "Invalid");

/// A create of `body`, as JSON and as YAML: two cases with one answer.
fn create_both(name: &str, body: &Value, (code, reason): (StatusCode, &'static str)) -> [Case; 2] {
    [
        case(format!("{name} (JSON)"), "POST", POLICIES, code, reason)
            .body("application/json", body.to_string()),
        case(format!("{name} (YAML)"), "POST", POLICIES, code, reason)
            .body("application/yaml", serde_yaml::to_string(body).unwrap()),
    ]
}

fn create_json(name: &str, body: impl Into<Vec<u8>>, expected: (StatusCode, &'static str)) -> Case {
    case(name, "POST", POLICIES, expected.0, expected.1).body("application/json", body)
}

fn create_yaml(name: &str, body: impl Into<Vec<u8>>, expected: (StatusCode, &'static str)) -> Case {
    case(name, "POST", POLICIES, expected.0, expected.1).body("application/yaml", body)
}

fn list(name: &str, query: &str, expected: (StatusCode, &'static str)) -> Case {
    case(
        name,
        "GET",
        format!("{POLICIES}?{query}"),
        expected.0,
        expected.1,
    )
}

/// A list with each of `selectors` as the query parameter `parameter`.
fn selected(
    parameter: &str,
    selectors: impl IntoIterator<Item = impl AsRef<str>>,
    expected: (StatusCode, &'static str),
) -> Vec<Case> {
    selectors
        .into_iter()
        .map(|selector| {
            let selector = selector.as_ref();
            let query = format!("{parameter}={}", percent(selector));
            list(&format!("{parameter} {selector:.40?}"), &query, expected)
        })
        .collect()
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    encoder.write_all(bytes).unwrap();
    encoder.finish().unwrap()
}

fn percent(text: &str) -> String {
    text.bytes()
        .map(|byte| match byte {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'.' | b'-' | b'_' => {
                (byte as char).to_string()
            }
            _ => format!("%{byte:02X}"),
        })
        .collect()
}

/// The corpus: tables of hostile values, each turned into requests.
fn corpus() -> Vec<Case> {
    let mut cases = Vec::new();
    let ok = (StatusCode::OK, "");

    // Names that are not DNS subdomains, NUL and control characters
    // included; each must be refused before anything is stored.
    let long = "x".repeat(254);
    let names = [
        "",
        "UPPER",
        "a_b",
        "-a",
        "a-",
        ".a",
        "a.",
        "a..b",
        "a b",
        "a\u{0}b",
        "a\nb",
        "a\tb",
        "a\u{7f}b",
        "a\u{1b}[31m",
        "ü",
        "a/b",
        "..",
        ".",
        "a%2Fb",
        "a:b",
        &long,
    ];
    for name in names {
        let body = edited(|body| body["metadata"]["name"] = name.into());
        cases.extend(create_both(&format!("name {name:?}"), &body, INVALID));
    }

    // Label keys and values that are not qualified names or label values.
    let long_value = "v".repeat(64);
    let long_prefix = format!("{}.io/a", "p".repeat(251));
    let labels = [
        ("", "v"),
        ("a b", "v"),
        ("-a", "v"),
        ("a\u{0}", "v"),
        (&long_value, "v"),
        ("p/", "v"),
        ("/n", "v"),
        ("a/b/c", "v"),
        ("UPPER.io/a", "v"),
        ("ü", "v"),
        (&long_prefix, "v"),
        ("k", &long_value),
        ("k", "a b"),
        ("k", "-a"),
        ("k", "a\nb"),
        ("k", "a\u{0}"),
        ("k", "\u{7f}"),
        ("k", "ü"),
    ];
    for (key, value) in labels {
        let body = edited(|body| body["metadata"]["labels"] = json!({key: value}));
        cases.extend(create_both(
            &format!("label {key:?}={value:?}"),
            &body,
            INVALID,
        ));
    }

    // Annotations: bad keys, and more than 256 KiB in all.
    let big = "a".repeat(300 * 1024);
    for (key, value) in [("a b", "v"), ("", "v"), ("a/b/c", "v"), ("k", big.as_str())] {
        let body = edited(|body| body["metadata"]["annotations"] = json!({key: value}));
        cases.extend(create_both(
            &format!("annotation {key:?} of {} bytes", value.len()),
            &body,
            INVALID,
        ));
    }

    // Numbers: out of range, negative, fractional, malformed.
    for number in [
        "1e999",
        "-1e999",
        "99999999999999999999999999",
        "1.5",
        "-1",
        "1e400",
    ] {
        let body = policy("hostile").to_string().replace(
            "\"maxUnavailable\":3",
            &format!("\"maxUnavailable\":{number}"),
        );
        let expected = if number.starts_with("-1e") || number.starts_with("1e") {
            BAD_REQUEST
        } else {
            INVALID
        };
        cases.push(create_json(
            &format!("maxUnavailable {number}"),
            body,
            expected,
        ));
    }
    for number in [
        "01", "1e", "--1", "0x10", "+1", ".5", "NaN", "Infinity", "1_000",
    ] {
        let body = policy("hostile").to_string().replace(
            "\"maxUnavailable\":3",
            &format!("\"maxUnavailable\":{number}"),
        );
        cases.push(create_json(
            &format!("malformed number {number}"),
            body,
            BAD_REQUEST,
        ));
    }
    for mtu in ["1e999", "99999999999999999999999", "-1", "1.5", "\"big\""] {
        let body = policy("hostile").to_string().replace(
            "\"state\":\"up\"",
            &format!("\"state\":\"up\",\"mtu\":{mtu}"),
        );
        let expected = if mtu == "1e999" { BAD_REQUEST } else { INVALID };
        cases.push(create_json(&format!("mtu {mtu}"), body, expected));
    }

    // Malformed JSON documents.
    let malformed = [
        "",
        "{",
        "}",
        "[",
        "]",
        "nul",
        "tru",
        "{\"a\":}",
        "{\"a\":1,}",
        "{'a':1}",
        "{a:1}",
        "{\"a\" 1}",
        "[1,]",
        "\"unterminated",
        "{\"a\":\"\\x\"}",
        "{\"a\":\"\\ud800\"}",
        "{\"a\":\"\\u12\"}",
        "{}}",
        "{} {}",
        "\u{feff}{}",
        "{\"a\":1}\u{0}",
        "\u{0}",
        "{\"apiVersion\":\"nmstate.io/v1\",",
    ];
    for document in malformed {
        cases.push(create_json(
            &format!("malformed JSON {document:?}"),
            document,
            BAD_REQUEST,
        ));
    }
    // JSON that is well formed but not an object.
    for document in ["1", "\"s\"", "null", "true", "[]", "[{}]"] {
        cases.push(create_json(
            &format!("JSON {document}"),
            document,
            BAD_REQUEST,
        ));
    }

    // Invalid UTF-8, in strings and outside them.
    let invalid_utf8: [&[u8]; 6] = [
        b"{\"metadata\":{\"name\":\"a\xffb\"}}",
        b"{\"metadata\":{\"name\":\"\xc0\x80\"}}",
        b"{\"metadata\":{\"name\":\"\xed\xa0\x80\"}}",
        b"{\"metadata\":{\"name\":\"\xf4\x90\x80\x80\"}}",
        b"\xff\xfe{}",
        b"{\"metadata\":{\"labels\":{\"a\":\"\xe2\x82\"}}}",
    ];
    for (index, document) in invalid_utf8.into_iter().enumerate() {
        cases.push(create_json(
            &format!("invalid UTF-8 #{index} (JSON)"),
            document,
            BAD_REQUEST,
        ));
        let yaml = String::from_utf8_lossy(document)
            .replace('\u{fffd}', "\u{0}")
            .into_bytes();
        let mut yaml_bytes = document.to_vec();
        if yaml_bytes == yaml {
            yaml_bytes.push(0xff);
        }
        cases.push(create_yaml(
            &format!("invalid UTF-8 #{index} (YAML)"),
            yaml_bytes,
            BAD_REQUEST,
        ));
    }

    // Deep nesting, far past and just past the decoders' limits.
    for depth in [129, 1_000, 10_000, 100_000] {
        let arrays = format!("{}{}", "[".repeat(depth), "]".repeat(depth));
        let objects = format!("{}1{}", "{\"a\":".repeat(depth), "}".repeat(depth));
        cases.push(create_json(
            &format!("JSON arrays {depth} deep"),
            arrays.clone(),
            BAD_REQUEST,
        ));
        cases.push(create_json(
            &format!("JSON objects {depth} deep"),
            objects,
            BAD_REQUEST,
        ));
        cases.push(create_yaml(
            &format!("YAML flow {depth} deep"),
            arrays,
            BAD_REQUEST,
        ));
        let mappings = format!("{}1{}", "{a: ".repeat(depth), "}".repeat(depth));
        cases.push(create_yaml(
            &format!("YAML mappings {depth} deep"),
            mappings,
            BAD_REQUEST,
        ));
        let labels = format!(
            "{{\"metadata\":{{\"name\":\"deep\",\"labels\":{}1{}}}}}",
            "{\"a\":".repeat(depth),
            "}".repeat(depth)
        );
        cases.push(create_json(
            &format!("labels {depth} deep"),
            labels,
            BAD_REQUEST,
        ));
    }
    let block = (0..100)
        .map(|level| format!("{}- ", " ".repeat(level * 2)))
        .collect::<Vec<_>>()
        .join("\n");
    cases.push(create_yaml(
        "YAML block sequences 100 deep",
        format!("{block}1"),
        BAD_REQUEST,
    ));

    // Duplicate keys: YAML forbids them; JSON under `fieldValidation=Strict`
    // too (kube-apiserver's "strict decoding error: duplicate field").
    // Each is a valid policy but for its duplicate key.
    let head = r#""apiVersion":"nmstate.io/v1","kind":"NodeNetworkConfigurationPolicy""#;
    let json_duplicates = [
        format!(
            r#"{{{head},"metadata":{{"name":"dup","name":"dup2"}},"spec":{{"desiredState":{{}}}}}}"#
        ),
        format!(
            r#"{{{head},"kind":"NodeNetworkConfigurationPolicy","metadata":{{"name":"dup"}},"spec":{{"desiredState":{{}}}}}}"#
        ),
        format!(
            r#"{{{head},"metadata":{{"name":"dup","labels":{{"a":"1","a":"2"}}}},"spec":{{"desiredState":{{}}}}}}"#
        ),
        format!(
            r#"{{{head},"spec":{{}},"spec":{{"desiredState":{{}}}},"metadata":{{"name":"dup"}}}}"#
        ),
        format!(
            r#"{{{head},"metadata":{{"name":"dup"}},"spec":{{"desiredState":{{"interfaces":[{{"name":"a","name":"b","type":"ethernet"}}]}}}}}}"#
        ),
    ];
    for (index, document) in json_duplicates.into_iter().enumerate() {
        cases.push(
            case(
                format!("duplicate key #{index} (JSON, strict)"),
                "POST",
                format!("{POLICIES}?fieldValidation=Strict"),
                BAD_REQUEST.0,
                BAD_REQUEST.1,
            )
            .body("application/json", document),
        );
    }
    let duplicates = [
        "metadata: {name: dup, name: dup2}",
        "apiVersion: nmstate.io/v1\napiVersion: nmstate.io/v1\nmetadata: {name: dup}",
        "metadata:\n  name: dup\n  labels: {a: '1', a: '2'}",
        "spec: {}\nspec: {}\nmetadata: {name: dup}",
        "metadata: {name: dup}\nmetadata: {name: dup}",
    ];
    for (index, document) in duplicates.into_iter().enumerate() {
        cases.push(create_yaml(
            &format!("duplicate key #{index} (YAML)"),
            document,
            BAD_REQUEST,
        ));
    }

    // YAML aliases that expand (billion laughs), and other YAML abuse.
    let mut laughs = String::from(
        "a: &a [\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\"]\n",
    );
    for level in 0..9u8 {
        let (this, previous) = ((b'b' + level) as char, (b'a' + level) as char);
        let refs = vec![format!("*{previous}"); 9].join(",");
        laughs.push_str(&format!("{this}: &{this} [{refs}]\n"));
    }
    cases.push(create_yaml("billion laughs", laughs.clone(), BAD_REQUEST));
    cases.push(
        case(
            "billion laughs as apply patch",
            "PATCH",
            format!("{POLICIES}/hostile?fieldManager=x"),
            StatusCode::BAD_REQUEST,
            "BadRequest",
        )
        .body("application/apply-patch+yaml", laughs),
    );
    let quadratic = format!(
        "a: &a {}\n{}",
        "x".repeat(1000),
        (0..5000).map(|i| format!("k{i}: *a\n")).collect::<String>()
    );
    cases.push(create_yaml("quadratic aliases", quadratic, BAD_REQUEST));
    for document in [
        "*undefined",
        "a: &a\nb: *a\nc: *b",
        "--- {}\n--- {}",
        "? [a]\n: b",
        "a: b: c",
        "\t- x",
        "%YAML 9.9\n--- {}",
    ] {
        cases.push(create_yaml(
            &format!("YAML {document:?}"),
            document,
            BAD_REQUEST,
        ));
    }
    // Tags are read past: what remains is a document without a name.
    for document in ["a: !!binary AAAA", "!<tag:x> {}", "!!map {}"] {
        cases.push(create_yaml(
            &format!("YAML {document:?}"),
            document,
            INVALID,
        ));
    }

    // A gzip bomb as Content-Encoding: request bodies are not decompressed.
    let bomb = gzip(&vec![b' '; 64 << 20]);
    for encoding in ["gzip", "deflate", "br", "x-unknown"] {
        cases.push(
            create_json(
                &format!("Content-Encoding {encoding}"),
                bomb.clone(),
                (StatusCode::UNSUPPORTED_MEDIA_TYPE, "UnsupportedMediaType"),
            )
            .header("content-encoding", encoding),
        );
    }

    // Bodies over the limit, whatever their content.
    let huge = vec![b'{'; 3 * 1024 * 1024 + 1];
    for content_type in [
        "application/json",
        "application/yaml",
        "application/merge-patch+json",
    ] {
        cases.push(
            case(
                format!("3 MiB + 1 of {content_type}"),
                "POST",
                POLICIES,
                StatusCode::PAYLOAD_TOO_LARGE,
                "RequestEntityTooLarge",
            )
            .body(content_type, huge.clone()),
        );
    }

    // Query parameters: thousands of them, repeated, malformed.
    let many: String = (0..5000).map(|i| format!("p{i}=1&")).collect();
    cases.push(list("5000 unknown query parameters", &many, ok));
    let repeated: String = (0..5000).map(|_| "limit=1&").collect();
    cases.push(list("limit repeated 5000 times", &repeated, ok));
    let bad_queries = [
        "limit=-1x",
        "limit=99999999999999999999999",
        "watch=maybe",
        "pretty=maybe",
        "timeoutSeconds=x",
        "timeoutSeconds=-1x",
        "resourceVersion=abc",
        "resourceVersionMatch=Bogus",
        "resourceVersion=1&resourceVersionMatch=Bogus",
        "allowWatchBookmarks=maybe",
        "sendInitialEvents=maybe",
        "continue=%ff%ff",
        "continue=eyJ9",
        "fieldValidation=Bogus",
    ];
    for query in bad_queries {
        cases.push(list(&format!("query {query}"), query, BAD_REQUEST));
    }
    for query in ["%", "%zz", "a=%ff", "=", "&&&&", "limit=", "limit"] {
        let expected = if query.starts_with("limit") {
            BAD_REQUEST
        } else {
            ok
        };
        cases.push(list(&format!("odd query {query:?}"), query, expected));
    }

    // Label selectors that do not parse.
    let label_selectors = [
        "a in b",
        "=a",
        "a==b==c",
        "!",
        "a!",
        "a in (",
        "a in (b",
        "a notin b",
        "a,,b",
        "a=b,",
        ",",
        "(a)",
        "a>b",
        "a<",
        "a=b=c",
        "a b",
        "!a=b",
        "ü=1",
        "a/b/c=1",
        "a=ü",
        "a in (ü)",
        "a>1.5",
        "a<<1",
        "a=(b)",
    ];
    let long = [
        format!("{}=1", "k".repeat(64)),
        format!("k={}", "v".repeat(64)),
    ];
    cases.extend(selected("labelSelector", label_selectors, BAD_REQUEST));
    cases.extend(selected("labelSelector", long, BAD_REQUEST));
    // What Kubernetes' parser accepts, odd as it looks: empty values, an
    // empty set (the empty value), and NUL, which its lexer reads as the
    // end of the selector.
    let odd = [
        "a=",
        "a!=",
        "a in ()",
        "a in (b,,c)",
        "a\u{0}",
        "a=\u{0}junk",
    ];
    cases.extend(selected("labelSelector", odd, ok));
    // Pathological but valid: many terms, many values.
    let values = (0..5000).map(|i| format!("v{i}")).collect::<Vec<_>>();
    let many = [
        vec!["a=b"; 5000].join(","),
        format!("a in ({})", values.join(",")),
    ];
    cases.extend(selected("labelSelector", many, ok));

    // Field selectors that do not parse or name unsupported fields.
    let field_selectors = [
        "spec.foo=x",
        "metadata.name",
        "=x",
        "metadata.name in (a)",
        "metadata.name=\\x",
        "metadata.labels=x",
        "status=x",
        "metadata.name\u{0}=a",
        "metadata.name>1",
        "metadata.name=a=b",
    ];
    cases.extend(selected("fieldSelector", field_selectors, BAD_REQUEST));
    let names = (0..2000).map(|i| format!("metadata.name!=n{i}"));
    cases.extend(selected(
        "fieldSelector",
        [names.collect::<Vec<_>>().join(",")],
        ok,
    ));

    // Names in the path that no object can have.
    for name in [
        "%00",
        "a%00b",
        "%ff",
        "a%0Ab",
        "..",
        "%2e%2e",
        &"x".repeat(10_000),
    ] {
        cases.push(case(
            format!("GET name {name:.20}"),
            "GET",
            format!("{POLICIES}/{name}"),
            StatusCode::NOT_FOUND,
            "NotFound",
        ));
    }

    // Capture expressions: malformed, oversized, self-referencing.
    let captures = [
        "routes.running.destination==\"",
        "| | |",
        "capture.missing.interfaces",
        "interfaces.name==",
        "interfaces.name=={{ capture.x }}",
        "capture.self | interfaces",
    ];

    let deep_pipe = vec!["capture.c0"; 2000].join(" | ");
    for (index, capture) in captures
        .iter()
        .copied()
        .chain([deep_pipe.as_str()])
        .enumerate()
    {
        let body = edited(|body| body["spec"]["capture"] = json!({"self": capture, "c0": capture}));
        cases.push(create_json(
            &format!("capture #{index} {capture:.40}"),
            body.to_string(),
            INVALID,
        ));
    }

    cases
}

/// Sends each case and checks its answer; every mismatch is reported at
/// once. Returns how many cases were sent.
async fn check(client: &HttpsClient, cases: Vec<Case>) -> usize {
    let count = cases.len();
    let mut failures = Vec::new();
    for case in cases {
        let headers: Vec<(&str, &str)> = case
            .headers
            .iter()
            .map(|(name, value)| (*name, value.as_str()))
            .collect();
        let failure = match client
            .request_with(case.method, &case.path, &headers, case.body.clone())
            .await
        {
            Ok(response) => mismatch(&response, case.code, case.reason),
            Err(e) => Some(format!("no answer: {e:#}")),
        };
        if let Some(failure) = failure {
            failures.push(format!("case {:?}: {failure}", case.name));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    count
}

/// How `response` differs from a `Status` with `code` and `reason` (or
/// any answer with `code` when `reason` is empty).
fn mismatch(response: &TestResponse, code: StatusCode, reason: &str) -> Option<String> {
    let body = format!("{:.300}", response.body);
    if response.status != code {
        return Some(format!("got {} instead of {code}: {body}", response.status));
    }
    if reason.is_empty() {
        return None;
    }
    let Ok(status) = serde_json::from_str::<Value>(&response.body) else {
        return Some(format!("not JSON: {body}"));
    };
    let says_why = status["message"].as_str().is_some_and(|m| !m.is_empty());
    (status["kind"] != "Status"
        || status["reason"] != reason
        || status["code"] != code.as_u16()
        || !says_why)
        .then(|| format!("not a Status with reason {reason} and a message: {body}"))
}

fn assert_status(name: &str, response: &TestResponse, code: StatusCode, reason: &str) {
    if let Some(failure) = mismatch(response, code, reason) {
        panic!("{name}: {failure}");
    }
}

/// A client that keeps reading one object until told to stop, as an
/// everyday controller would, and returns every answer's status.
fn bystander(client: HttpsClient) -> (Arc<AtomicBool>, JoinHandle<Vec<StatusCode>>) {
    let stop = Arc::new(AtomicBool::new(false));
    let task = tokio::spawn({
        let stop = stop.clone();
        async move {
            let mut statuses = Vec::new();
            while !stop.load(Ordering::Acquire) {
                let response = client.get(&format!("{POLICIES}/existing")).await;
                statuses.push(response.map_or(StatusCode::INTERNAL_SERVER_ERROR, |r| r.status));
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            }
            statuses
        }
    });
    (stop, task)
}

/// What a user checks after the abuse: the server is healthy, the
/// bystander was served every time, and only `existing` is stored.
async fn assert_unharmed(
    server: &ApiserverProcess,
    bystander: (Arc<AtomicBool>, JoinHandle<Vec<StatusCode>>),
) {
    let client = server.client().unwrap();
    let health = client.get("/readyz").await.unwrap();
    assert_eq!(health.status, StatusCode::OK, "{}", health.body);
    bystander.0.store(true, Ordering::Release);
    let statuses = bystander.1.await.unwrap();
    assert!(!statuses.is_empty());
    assert!(
        statuses.iter().all(|status| *status == StatusCode::OK),
        "the bystander got {statuses:?}"
    );
    let list: Value = serde_json::from_str(&client.get(POLICIES).await.unwrap().body).unwrap();
    let names: Vec<&str> = list["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|item| item["metadata"]["name"].as_str())
        .collect();
    assert_eq!(names, ["existing"], "nothing else is stored");
}

async fn start() -> (ApiserverProcess, HttpsClient) {
    let server = ApiserverProcess::start(&["--controller=false"])
        .await
        .unwrap();
    let client = server.client().unwrap();
    let created = client
        .send_json("POST", POLICIES, &policy("existing"))
        .await
        .unwrap();
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.body);
    (server, client)
}

#[tokio::test]
async fn the_hostile_corpus_is_answered_and_nothing_is_stored() {
    let _turn = nmstate_e2e::suite::turn(module_path!());
    let (server, client) = start().await;
    let watcher = bystander(server.client().unwrap());
    let count = check(&client, corpus()).await;
    println!("{count} hostile requests answered");
    assert!(count >= 200, "the corpus has {count} cases");
    assert_unharmed(&server, watcher).await;
}

/// Patches that grow an object past what a request may carry, and
/// server-side apply by two managers fighting over one field.
#[tokio::test]
async fn growing_patches_and_apply_conflicts_are_refused() {
    let _turn = nmstate_e2e::suite::turn(module_path!());
    let (server, client) = start().await;
    let watcher = bystander(server.client().unwrap());
    let object = format!("{POLICIES}/existing");
    let description = "d".repeat(1 << 20);
    let add = json!([{"op": "add", "path": "/spec/desiredState/interfaces/0/description", "value": description}]);
    let copies: Vec<Value> = (1..5)
        .map(|i| json!({"op": "copy", "from": "/spec/desiredState/interfaces/0/description", "path": format!("/metadata/annotations/copy{i}")}))
        .collect();
    let mut cases = vec![
        case(
            "JSON patch copies to 4 MiB",
            "PATCH",
            &object,
            StatusCode::UNPROCESSABLE_ENTITY,
            "Invalid",
        )
        .body(
            "application/json-patch+json",
            serde_json::to_vec(&[add.as_array().unwrap().clone(), copies].concat()).unwrap(),
        ),
    ];
    let mut grow = add.as_array().unwrap().clone();
    for i in 1..5 {
        grow.push(json!({"op": "copy", "from": "/spec/desiredState/interfaces/0", "path": format!("/spec/desiredState/interfaces/{i}")}));
        grow.push(json!({"op": "replace", "path": format!("/spec/desiredState/interfaces/{i}/name"), "value": format!("br{}", i + 1)}));
    }
    cases.push(
        case(
            "JSON patch grows the spec past 3 MiB",
            "PATCH",
            &object,
            StatusCode::PAYLOAD_TOO_LARGE,
            "RequestEntityTooLarge",
        )
        .body(
            "application/json-patch+json",
            serde_json::to_vec(&grow).unwrap(),
        ),
    );
    for (name, patch) in [
        ("not a list", json!({"op": "add"})),
        ("unknown op", json!([{"op": "explode", "path": "/a"}])),
        (
            "missing path",
            json!([{"op": "remove", "path": "/spec/nope"}]),
        ),
        (
            "bad pointer",
            json!([{"op": "add", "path": "spec", "value": 1}]),
        ),
        (
            "test fails",
            json!([{"op": "test", "path": "/metadata/name", "value": "other"}]),
        ),
        (
            "renames",
            json!([{"op": "replace", "path": "/metadata/name", "value": "other"}]),
        ),
    ] {
        let expected = if matches!(
            name,
            "not a list" | "unknown op" | "bad pointer" | "renames"
        ) {
            (StatusCode::BAD_REQUEST, "BadRequest")
        } else {
            (StatusCode::UNPROCESSABLE_ENTITY, "Invalid")
        };
        cases.push(
            case(
                format!("JSON patch {name}"),
                "PATCH",
                &object,
                expected.0,
                expected.1,
            )
            .body("application/json-patch+json", patch.to_string()),
        );
    }
    let merge_grow = json!({"spec": {"desiredState": {"x": "y".repeat(3 << 20)}}});
    cases.push(
        case(
            "merge patch over the body limit",
            "PATCH",
            &object,
            StatusCode::PAYLOAD_TOO_LARGE,
            "RequestEntityTooLarge",
        )
        .body("application/merge-patch+json", merge_grow.to_string()),
    );
    check(&client, cases).await;

    // Two managers apply different values to one field: the first owns it,
    // the second is told of the conflict every time until it forces.
    let apply = |value: u32| {
        json!({"apiVersion": "nmstate.io/v1", "kind": "NodeNetworkConfigurationPolicy",
               "metadata": {"name": "existing"}, "spec": {"maxUnavailable": value}})
        .to_string()
    };
    let first = client
        .request_with(
            "PATCH",
            &format!("{object}?fieldManager=first&force=true"),
            &[("content-type", "application/apply-patch+yaml")],
            Some(apply(5).into_bytes()),
        )
        .await
        .unwrap();
    assert_eq!(first.status, StatusCode::OK, "{}", first.body);
    let conflicts: Vec<Case> = (0..20)
        .map(|round| {
            case(
                format!("apply conflict, round {round}"),
                "PATCH",
                format!("{object}?fieldManager=second"),
                StatusCode::CONFLICT,
                "Conflict",
            )
            .body("application/apply-patch+yaml", apply(6 + round))
        })
        .collect();
    check(&client, conflicts).await;
    let stored: Value = serde_json::from_str(&client.get(&object).await.unwrap().body).unwrap();
    assert_eq!(
        stored["spec"]["maxUnavailable"], 5,
        "the first manager's value stays"
    );
    assert_unharmed(&server, watcher).await;
}

/// Slow senders hold mutating slots; past kube-apiserver's limit of 200
/// mutating requests in flight the next write waits in its priority
/// level's queue and, its 15 s up, gets 429 with `Retry-After`, while
/// reads (counted apart) and health checks still answer.
#[tokio::test]
async fn slow_senders_get_429_past_the_in_flight_limit_and_reads_still_answer() {
    let _turn = nmstate_e2e::suite::turn(module_path!());
    let (_server, client) = start().await;
    let mut senders = Vec::new();
    for _ in 0..MAX_MUTATING_IN_FLIGHT {
        let mut stream = client.raw().await.unwrap();
        let head = format!(
            "POST {POLICIES} HTTP/1.1\r\nhost: localhost\r\ncontent-type: application/json\r\ncontent-length: 1000\r\n\r\n{{"
        );
        stream.write_all(head.as_bytes()).await.unwrap();
        stream.flush().await.unwrap();
        senders.push(stream);
    }
    // The slow senders' requests are in flight once the server read their
    // heads; until then a write may still get through, so wait for the 429.
    let mut refused = None;
    for _ in 0..100 {
        let response = client
            .send_json("POST", POLICIES, &policy("one-too-many"))
            .await
            .unwrap();
        if response.status == StatusCode::TOO_MANY_REQUESTS {
            refused = Some(response);
            break;
        }
        assert_eq!(response.status, StatusCode::CREATED, "{}", response.body);
        let deleted = client
            .request("DELETE", &format!("{POLICIES}/one-too-many"), None)
            .await
            .unwrap();
        assert_eq!(deleted.status, StatusCode::OK);
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let refused = refused.expect("a write past the limit is refused");
    assert_status(
        "write past the limit",
        &refused,
        StatusCode::TOO_MANY_REQUESTS,
        "TooManyRequests",
    );
    let read = client.get(&format!("{POLICIES}/existing")).await.unwrap();
    assert_eq!(read.status, StatusCode::OK, "reads are counted apart");
    assert_eq!(client.get("/readyz").await.unwrap().status, StatusCode::OK);

    // Once the slow senders go, writes are served again.
    drop(senders);
    let mut created = StatusCode::TOO_MANY_REQUESTS;
    for _ in 0..100 {
        created = client
            .send_json("POST", POLICIES, &policy("after"))
            .await
            .unwrap()
            .status;
        if created != StatusCode::TOO_MANY_REQUESTS {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(created, StatusCode::CREATED);
}

/// Thousands of idle TLS connections, a thousand watches from one client, and streams reset as soon as they are opened (HTTP/2 rapid
/// reset): the server keeps serving everyone else.
#[tokio::test]
async fn idle_connections_many_watches_and_rapid_reset_leave_others_served() {
    let _turn = nmstate_e2e::suite::turn(module_path!());
    // 2000 idle connections and 1000 watches, or fewer where the open file
    // limit (which the server inherits) does not allow them.
    let limit = nmstate_e2e::bench::raise_open_file_limit();
    let idle_count = usize::try_from(limit.saturating_sub(1000) / 2).map_or(2000, |n| n.min(2000));
    let (server, client) = start().await;
    let watcher = bystander(server.client().unwrap());

    let mut idle = Vec::new();
    for _ in 0..idle_count {
        idle.push(client.raw().await.unwrap());
    }

    // The server allows 250 concurrent streams per HTTP/2 connection (Go's
    // default, which kube-apiserver keeps), so a client with many watches
    // spreads them over connections.
    let mut watches = Vec::new();
    for _ in 0..5 {
        let mut http2 = client.connect_http2().await.unwrap();
        for _ in 0..200 {
            http2.ready().await.unwrap();
            let request = http::Request::get(format!("https://localhost{POLICIES}?watch=1"))
                .body(Full::new(Bytes::new()))
                .unwrap();
            let response = http2.send_request(request).await.unwrap();
            assert_eq!(response.status(), StatusCode::OK);
            watches.push(response);
        }
    }

    let mut reset = client.connect_http2().await.unwrap();
    for _ in 0..5000 {
        if reset.ready().await.is_err() {
            // The server may end a connection that resets too much.
            reset = client.connect_http2().await.unwrap();
            continue;
        }
        let request = http::Request::get(format!("https://localhost{POLICIES}"))
            .body(Full::new(Bytes::new()))
            .unwrap();
        // Dropping the response future resets the stream.
        drop(reset.send_request(request));
    }

    assert_eq!(
        client
            .get(&format!("{POLICIES}/existing"))
            .await
            .unwrap()
            .status,
        StatusCode::OK
    );
    drop((idle, watches));
    assert_unharmed(&server, watcher).await;
}

/// Header floods over HTTP/2 (hyper's client: curl's nghttp2 will not send
/// a header block over 64 KiB). Go's limit holds: 1 MiB of header list
/// (RFC 7541 sizes) is served, more gets 431; a block that needs more
/// CONTINUATION frames than that limit can fill ends the connection with
/// GOAWAY (h2's guard against CONTINUATION floods). The server is unharmed.
#[tokio::test]
async fn header_floods_over_http2() {
    let _turn = nmstate_e2e::suite::turn(module_path!());
    let (server, client) = start().await;
    let watcher = bystander(server.client().unwrap());
    let floods: [(&str, usize, usize, Option<StatusCode>); 4] = [
        (
            "5000 small headers (225 KiB)",
            5000,
            1,
            Some(StatusCode::OK),
        ),
        (
            "one 1.1 MiB header",
            1,
            1_150_000,
            Some(StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE),
        ),
        (
            "20000 headers (1.7 MiB)",
            20_000,
            40,
            Some(StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE),
        ),
        ("one 2 MiB header", 1, 2 << 20, None),
    ];
    for (name, count, size, expected) in floods {
        let mut sender = client.connect_http2().await.unwrap();
        let mut request = http::Request::get(format!("https://localhost{POLICIES}"));
        for index in 0..count {
            request = request.header(format!("x-flood-{index}"), "v".repeat(size));
        }
        let request = request.body(Full::new(Bytes::new())).unwrap();
        let answer = tokio::time::timeout(Duration::from_secs(30), sender.send_request(request))
            .await
            .unwrap_or_else(|_| panic!("{name}: no answer in 30 s"));
        match (answer, expected) {
            (Ok(response), Some(code)) => assert_eq!(response.status(), code, "{name}"),
            (Err(error), None) => assert!(
                format!("{error:?}").contains("ENHANCE_YOUR_CALM"),
                "{name}: {error:?}"
            ),
            (answer, _) => panic!("{name}: expected {expected:?}, got {answer:?}"),
        }
    }
    assert_unharmed(&server, watcher).await;
}

/// Header floods: too many headers, and headers too large, are refused
/// with 431 (as kube-apiserver's Go server does) before any handler runs.
#[tokio::test]
async fn header_floods_get_431() {
    let _turn = nmstate_e2e::suite::turn(module_path!());
    let (server, client) = start().await;
    let watcher = bystander(server.client().unwrap());
    let many: Vec<(String, String)> = (0..1000)
        .map(|i| (format!("x-flood-{i}"), "1".into()))
        .collect();
    let big = "v".repeat(2 << 20);
    let floods: [(&str, Vec<(&str, &str)>); 2] = [
        (
            "1000 headers",
            many.iter().map(|(n, v)| (n.as_str(), v.as_str())).collect(),
        ),
        ("a 2 MiB header", vec![("x-big", big.as_str())]),
    ];
    for (name, headers) in floods {
        match client.request_with("GET", POLICIES, &headers, None).await {
            Ok(response) => assert_eq!(
                response.status,
                StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
                "{name}: {}",
                response.body
            ),
            // The server may also close the connection while the client
            // is still sending what it will not read.
            Err(e) => assert!(format!("{e:#}").contains("connection"), "{name}: {e:#}"),
        }
    }
    assert_unharmed(&server, watcher).await;
}
