//! Runs the request collection `deploy/shopmesh.http` against a whole mesh,
//! in order, and checks every request answers the status its `# @expect`
//! line names. The conventions the file uses (`@name`, `@expect`, `@assert`,
//! `@retry-until`, `@sign-hmac`, `{{$guid}}`, `< ./file` in a body) are
//! described at its top.

mod common;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use common::TestMesh;
use serde_json::Value;

const COLLECTION: &str = "deploy/shopmesh.http";

/// How often a `@retry-until` request is sent again.
const POLL: Duration = Duration::from_millis(100);

/// One request of the collection, as written (variables not yet replaced).
#[derive(Debug, Default)]
struct Request {
    /// The text after `###`, for messages.
    title: String,
    /// Line of the method line in the file.
    line: usize,
    name: Option<String>,
    expect: Option<u16>,
    /// `<json path> == <JSON value>` checks on the final response.
    asserts: Vec<String>,
    retry: Option<Retry>,
    /// (header, variable holding the key)
    sign: Option<(String, String)>,
    method: String,
    url: String,
    headers: Vec<(String, String)>,
    body: Option<String>,
}

#[derive(Debug)]
struct Retry {
    timeout: Duration,
    until: Option<String>,
}

#[derive(Debug, Default)]
struct Collection {
    vars: HashMap<String, String>,
    requests: Vec<Request>,
}

/// What one named request sent and got, for `{{name.request|response...}}`.
struct Exchange {
    request_headers: Vec<(String, String)>,
    request_body: String,
    response_headers: Vec<(String, String)>,
    response_body: String,
}

fn directive(comment: &str) -> Option<&str> {
    let text = comment
        .strip_prefix('#')
        .or_else(|| comment.strip_prefix("//"))?
        .trim();
    text.strip_prefix('@')
}

fn is_comment(line: &str) -> bool {
    line.starts_with('#') || line.starts_with("//")
}

fn parse_duration(raw: &str) -> Result<Duration, String> {
    let number = |s: &str| {
        s.parse::<u64>()
            .map_err(|_| format!("bad duration {raw:?} (say 500ms, 15s or 2m)"))
    };
    if let Some(ms) = raw.strip_suffix("ms") {
        Ok(Duration::from_millis(number(ms)?))
    } else if let Some(s) = raw.strip_suffix('s') {
        Ok(Duration::from_secs(number(s)?))
    } else if let Some(m) = raw.strip_suffix('m') {
        Ok(Duration::from_secs(60 * number(m)?))
    } else {
        Err(format!("bad duration {raw:?} (say 500ms, 15s or 2m)"))
    }
}

fn apply_directive(request: &mut Request, text: &str, line: usize) -> Result<(), String> {
    let (key, rest) = text.split_once(char::is_whitespace).unwrap_or((text, ""));
    let rest = rest.trim();
    let at = |message: String| format!("{COLLECTION}:{line}: {message}");
    match key {
        "name" => {
            if rest.is_empty() || rest.contains(char::is_whitespace) {
                return Err(at(format!("bad request name {rest:?}")));
            }
            request.name = Some(rest.to_string());
        }
        "expect" => {
            if request.expect.is_some() {
                return Err(at("a second @expect for one request".into()));
            }
            let status = rest
                .parse::<u16>()
                .ok()
                .filter(|s| (100..600).contains(s))
                .ok_or_else(|| at(format!("@expect needs a status code, not {rest:?}")))?;
            request.expect = Some(status);
        }
        "assert" => {
            if !rest.contains(" == ") {
                return Err(at(format!("@assert needs `<path> == <value>`: {rest:?}")));
            }
            request.asserts.push(rest.to_string());
        }
        "retry-until" => {
            let (timeout, until) = rest.split_once(char::is_whitespace).unwrap_or((rest, ""));
            let until = until.trim();
            if !until.is_empty() && !until.contains(" == ") {
                return Err(at(format!(
                    "@retry-until takes a timeout and optionally `<path> == <value>`: {rest:?}"
                )));
            }
            request.retry = Some(Retry {
                timeout: parse_duration(timeout).map_err(at)?,
                until: Some(until.to_string()).filter(|u| !u.is_empty()),
            });
        }
        "sign-hmac" => {
            let parts: Vec<&str> = rest.split_whitespace().collect();
            let [header, var] = parts[..] else {
                return Err(at(format!(
                    "@sign-hmac takes a header and a variable: {rest:?}"
                )));
            };
            request.sign = Some((header.to_string(), var.to_string()));
        }
        other => return Err(at(format!("unknown directive @{other}"))),
    }
    Ok(())
}

fn parse(text: &str) -> Result<Collection, String> {
    let mut collection = Collection::default();
    let lines: Vec<&str> = text.lines().collect();
    // Blocks start at lines beginning with `###`; the text before the first
    // one is a block too (the file's header and variables).
    let mut starts = vec![0];
    starts.extend(
        lines
            .iter()
            .enumerate()
            .filter(|(_, l)| l.starts_with("###"))
            .map(|(i, _)| i),
    );
    starts.push(lines.len());
    for pair in starts.windows(2) {
        let (from, to) = (pair[0], pair[1]);
        let mut request = Request::default();
        let mut block = &lines[from..to];
        let titled = block.first().is_some_and(|l| l.starts_with("###"));
        if titled {
            request.title = block[0].trim_start_matches('#').trim().to_string();
            block = &block[1..];
        }
        // 1-based number of the block's first line after its `###` line.
        let first_line = from + 1 + usize::from(titled);
        let mut rest = block.iter().enumerate().map(|(i, l)| (first_line + i, *l));
        let mut saw_directive = false;
        // Before the method line: comments, directives and file variables.
        for (line, raw) in rest.by_ref() {
            let trimmed = raw.trim();
            if trimmed.is_empty() {
                continue;
            }
            if is_comment(trimmed) {
                if let Some(text) = directive(trimmed) {
                    apply_directive(&mut request, text, line)?;
                    saw_directive = true;
                }
                continue;
            }
            if let Some(var) = trimmed.strip_prefix('@') {
                let (name, value) = var
                    .split_once('=')
                    .ok_or_else(|| format!("{COLLECTION}:{line}: `@name = value` expected"))?;
                collection
                    .vars
                    .insert(name.trim().to_string(), value.trim().to_string());
                continue;
            }
            let mut words = trimmed.split_whitespace();
            let (Some(method), Some(url)) = (words.next(), words.next()) else {
                return Err(format!(
                    "{COLLECTION}:{line}: `METHOD URL` expected: {trimmed:?}"
                ));
            };
            if !method.chars().all(|c| c.is_ascii_uppercase()) {
                return Err(format!("{COLLECTION}:{line}: bad method {method:?}"));
            }
            request.method = method.to_string();
            request.url = url.to_string();
            request.line = line;
            break;
        }
        if request.method.is_empty() {
            if saw_directive {
                return Err(format!(
                    "{COLLECTION}:{}: directives without a request",
                    first_line
                ));
            }
            continue;
        }
        // Headers up to the first blank line, then the body.
        let mut body: Vec<&str> = Vec::new();
        let mut in_body = false;
        for (line, raw) in rest {
            if in_body {
                body.push(raw);
            } else if raw.trim().is_empty() {
                in_body = true;
            } else if !is_comment(raw.trim()) {
                let (name, value) = raw
                    .split_once(':')
                    .ok_or_else(|| format!("{COLLECTION}:{line}: `Header: value` expected"))?;
                request
                    .headers
                    .push((name.trim().to_string(), value.trim().to_string()));
            }
        }
        while body.last().is_some_and(|l| l.trim().is_empty()) {
            body.pop();
        }
        if !body.is_empty() {
            request.body = Some(body.join("\n"));
        }
        collection.requests.push(request);
    }

    let mut problems = Vec::new();
    let mut names = HashMap::new();
    for r in &collection.requests {
        if r.expect.is_none() {
            problems.push(format!(
                "{COLLECTION}:{}: {:?} has no `# @expect <status>`",
                r.line, r.title
            ));
        }
        if let Some(name) = &r.name
            && let Some(other) = names.insert(name.clone(), r.line)
        {
            problems.push(format!(
                "{COLLECTION}:{}: @name {name} already used on line {other}",
                r.line
            ));
        }
    }
    if problems.is_empty() {
        Ok(collection)
    } else {
        Err(problems.join("\n"))
    }
}

/// `$.a.b[0].c`, `a.b` or `$` inside `value`.
fn json_path<'a>(value: &'a Value, path: &str) -> Option<&'a Value> {
    let path = path.trim();
    let path = path.strip_prefix('$').unwrap_or(path);
    let path = path.strip_prefix('.').unwrap_or(path);
    let mut current = value;
    if path.is_empty() {
        return Some(current);
    }
    for segment in path.split('.') {
        let (key, mut indexes) = match segment.find('[') {
            Some(i) => (&segment[..i], &segment[i..]),
            None => (segment, ""),
        };
        if !key.is_empty() {
            current = current.get(key)?;
        }
        while let Some(inner) = indexes.strip_prefix('[') {
            let (index, after) = inner.split_once(']')?;
            current = current.get(index.trim().parse::<usize>().ok()?)?;
            indexes = after;
        }
        if !indexes.is_empty() {
            return None;
        }
    }
    Some(current)
}

/// A JSON value as it is substituted into text: strings without quotes.
fn plain(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

struct Runner {
    vars: HashMap<String, String>,
    exchanges: HashMap<String, Exchange>,
}

impl Runner {
    fn substitute(&self, text: &str) -> Result<String, String> {
        self.substitute_depth(text, 0)
    }

    fn substitute_depth(&self, text: &str, depth: usize) -> Result<String, String> {
        if depth > 10 {
            return Err(format!("variables nested too deep in {text:?}"));
        }
        let mut out = String::new();
        let mut rest = text;
        while let Some(start) = rest.find("{{") {
            out.push_str(&rest[..start]);
            let after = &rest[start + 2..];
            let end = after
                .find("}}")
                .ok_or_else(|| format!("unclosed {{{{ in {text:?}"))?;
            out.push_str(&self.resolve(after[..end].trim(), depth)?);
            rest = &after[end + 2..];
        }
        out.push_str(rest);
        Ok(out)
    }

    fn resolve(&self, reference: &str, depth: usize) -> Result<String, String> {
        if let Some(function) = reference.strip_prefix('$') {
            return match function {
                "guid" | "uuid" | "random.uuid" => Ok(uuid::Uuid::now_v7().to_string()),
                other => Err(format!("unknown system variable ${other}")),
            };
        }
        if let Some(value) = self.vars.get(reference) {
            return self.substitute_depth(value, depth + 1);
        }
        let mut parts = reference.splitn(4, '.');
        let (Some(name), Some(side), Some(part), rest) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(format!("unknown variable {{{{{reference}}}}}"));
        };
        let exchange = self.exchanges.get(name).ok_or_else(|| {
            format!("{{{{{reference}}}}}: no request named {name} has run before this one")
        })?;
        let (headers, body) = match side {
            "request" => (&exchange.request_headers, &exchange.request_body),
            "response" => (&exchange.response_headers, &exchange.response_body),
            _ => return Err(format!("{{{{{reference}}}}}: request or response expected")),
        };
        let rest = rest.unwrap_or("*");
        match part {
            "headers" => header(headers, rest)
                .map(str::to_string)
                .ok_or_else(|| format!("{{{{{reference}}}}}: no header {rest}")),
            "body" if rest == "*" => Ok(body.clone()),
            "body" => {
                let json: Value = serde_json::from_str(body)
                    .map_err(|_| format!("{{{{{reference}}}}}: the body is not JSON: {body}"))?;
                json_path(&json, rest)
                    .map(plain)
                    .ok_or_else(|| format!("{{{{{reference}}}}}: nothing at {rest} in {body}"))
            }
            _ => Err(format!("{{{{{reference}}}}}: body or headers expected")),
        }
    }

    /// Whether `condition` (`<path> == <JSON value>`, variables replaced)
    /// holds for the JSON `body`.
    fn holds(&self, condition: &str, body: &str) -> Result<bool, String> {
        let condition = self.substitute(condition)?;
        let (path, expected) = condition
            .split_once(" == ")
            .ok_or_else(|| format!("`<path> == <value>` expected: {condition}"))?;
        let expected = expected.trim();
        let expected: Value =
            serde_json::from_str(expected).unwrap_or_else(|_| Value::String(expected.to_string()));
        let Ok(body) = serde_json::from_str::<Value>(body) else {
            return Ok(false);
        };
        Ok(json_path(&body, path) == Some(&expected))
    }
}

/// `sha256=<hex HMAC-SHA256 of body under key>`, as
/// `openssl dgst -sha256 -hmac` computes it.
fn hmac_signature(key: &str, body: &str) -> String {
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, key.as_bytes());
    let tag = ring::hmac::sign(&key, body.as_bytes());
    let hex: String = tag.as_ref().iter().map(|b| format!("{b:02x}")).collect();
    format!("sha256={hex}")
}

/// The bytes a request sends for its `body` (variables replaced): a line
/// `< <path>` is the file at that path, relative to the collection, and a
/// multipart body's lines end in CRLF, as editors send them.
fn bytes_to_send(body: &str, headers: &[(String, String)]) -> Result<Vec<u8>, String> {
    let multipart = header(headers, "content-type")
        .is_some_and(|t| t.trim().to_ascii_lowercase().starts_with("multipart/"));
    if !multipart && !body.lines().any(|l| l.starts_with("< ")) {
        return Ok(body.as_bytes().to_vec());
    }
    let collection = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(COLLECTION);
    let dir = collection
        .parent()
        .expect("the collection is in a directory");
    let newline: &[u8] = if multipart { &b"\r\n"[..] } else { &b"\n"[..] };
    let mut out = Vec::new();
    for (i, line) in body.lines().enumerate() {
        if i > 0 {
            out.extend_from_slice(newline);
        }
        match line.strip_prefix("< ") {
            Some(file) => {
                let path = dir.join(file.trim());
                let bytes = std::fs::read(&path).map_err(|e| format!("{}: {e}", path.display()))?;
                out.extend_from_slice(&bytes);
            }
            None => out.extend_from_slice(line.as_bytes()),
        }
    }
    if multipart {
        out.extend_from_slice(newline);
    }
    Ok(out)
}

struct Reply {
    status: u16,
    headers: Vec<(String, String)>,
    body: String,
}

async fn send(
    http: &reqwest::Client,
    method: &reqwest::Method,
    url: &str,
    headers: &[(String, String)],
    body: &[u8],
) -> Result<Reply, String> {
    let mut request = http
        .request(method.clone(), url)
        .timeout(Duration::from_secs(30));
    for (name, value) in headers {
        request = request.header(name, value);
    }
    if !body.is_empty() {
        request = request.body(body.to_vec());
    }
    let response = request
        .send()
        .await
        .map_err(|e| format!("no answer: {e}"))?;
    let status = response.status().as_u16();
    let headers = response
        .headers()
        .iter()
        .map(|(n, v)| {
            (
                n.as_str().to_string(),
                String::from_utf8_lossy(v.as_bytes()).into_owned(),
            )
        })
        .collect();
    let body = response.text().await.map_err(|e| format!("no body: {e}"))?;
    Ok(Reply {
        status,
        headers,
        body,
    })
}

/// Runs every request in order; the error names the request that failed.
async fn run(collection: &Collection, base_url: &str) -> Result<(), String> {
    let mut vars = collection.vars.clone();
    vars.insert("baseUrl".into(), base_url.to_string());
    let mut runner = Runner {
        vars,
        exchanges: HashMap::new(),
    };
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("HTTP client");
    let total = collection.requests.len();
    for (i, r) in collection.requests.iter().enumerate() {
        let label = format!(
            "request {}/{total} {:?}{} ({COLLECTION}:{})",
            i + 1,
            r.title,
            r.name
                .as_ref()
                .map(|n| format!(" @name {n}"))
                .unwrap_or_default(),
            r.line
        );
        let fail = |message: String| format!("{label}: {message}");
        let url = runner.substitute(&r.url).map_err(fail)?;
        let method = reqwest::Method::from_bytes(r.method.as_bytes())
            .map_err(|_| fail(format!("bad method {}", r.method)))?;
        let body = match &r.body {
            Some(b) => runner.substitute(b).map_err(fail)?,
            None => String::new(),
        };
        let mut headers = Vec::new();
        for (name, value) in &r.headers {
            headers.push((name.clone(), runner.substitute(value).map_err(fail)?));
        }
        if let Some((name, var)) = &r.sign {
            let key = runner.substitute(&format!("{{{{{var}}}}}")).map_err(fail)?;
            headers.retain(|(n, _)| !n.eq_ignore_ascii_case(name));
            headers.push((name.clone(), hmac_signature(&key, &body)));
        }
        let payload = bytes_to_send(&body, &headers).map_err(fail)?;
        let expect = r.expect.expect("parse checks every request has @expect");

        let started = Instant::now();
        let deadline = r.retry.as_ref().map(|retry| started + retry.timeout);
        let mut attempts = 0;
        let reply = loop {
            attempts += 1;
            let reply = send(&http, &method, &url, &headers, &payload)
                .await
                .map_err(fail)?;
            let Some(deadline) = deadline else {
                break reply;
            };
            let until = match r.retry.as_ref().and_then(|retry| retry.until.as_ref()) {
                Some(condition) => runner.holds(condition, &reply.body).map_err(fail)?,
                None => true,
            };
            if (reply.status == expect && until) || Instant::now() >= deadline {
                break reply;
            }
            tokio::time::sleep(POLL).await;
        };
        let elapsed = started.elapsed();
        eprintln!(
            "[{}/{total}] {} {url} -> {} ({} ms, {attempts} attempt{})",
            i + 1,
            r.method,
            reply.status,
            elapsed.as_millis(),
            if attempts == 1 { "" } else { "s" }
        );
        let waited = match &r.retry {
            Some(retry) => format!(" after retrying for {:?}", retry.timeout),
            None => String::new(),
        };
        if reply.status != expect {
            return Err(fail(format!(
                "{} {url}: expected status {expect}, got {}{waited}\nbody: {}",
                r.method, reply.status, reply.body
            )));
        }
        if let Some(condition) = r.retry.as_ref().and_then(|retry| retry.until.as_ref())
            && !runner.holds(condition, &reply.body).map_err(fail)?
        {
            return Err(fail(format!(
                "{} {url}: status {} but `{condition}` never held{waited}\nbody: {}",
                r.method, reply.status, reply.body
            )));
        }
        for condition in &r.asserts {
            if !runner.holds(condition, &reply.body).map_err(fail)? {
                return Err(fail(format!(
                    "{} {url}: status {} but `@assert {condition}` does not hold\nbody: {}",
                    r.method, reply.status, reply.body
                )));
            }
        }
        if let Some(name) = &r.name {
            runner.exchanges.insert(
                name.clone(),
                Exchange {
                    request_headers: headers,
                    request_body: body,
                    response_headers: reply.headers,
                    response_body: reply.body,
                },
            );
        }
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_request_collection_runs_against_the_mesh() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(COLLECTION);
    let text = std::fs::read_to_string(&path).expect("the collection is readable");
    let collection = parse(&text).unwrap_or_else(|e| panic!("{e}"));
    assert!(
        collection.requests.len() >= 30,
        "the collection lost requests: {}",
        collection.requests.len()
    );
    // The mesh gets the credentials and secret the file tells editor users
    // to start theirs with.
    let var = |name: &str| {
        collection
            .vars
            .get(name)
            .unwrap_or_else(|| panic!("{COLLECTION} sets @{name}"))
            .clone()
    };
    let (email, password, secret) = (
        var("adminEmail"),
        var("adminPassword"),
        var("webhookSecret"),
    );
    let t = TestMesh::start_with(&[
        ("ADMIN_EMAIL", &email),
        ("ADMIN_PASSWORD", &password),
        ("SHIPPING_WEBHOOK_SECRET", &secret),
    ])
    .await;
    let started = Instant::now();
    let outcome = run(&collection, &t.mesh.gateway_url()).await;
    eprintln!(
        "{} requests in {:?}",
        collection.requests.len(),
        started.elapsed()
    );
    t.shutdown().await;
    if let Err(e) = outcome {
        panic!("{e}");
    }
}

#[test]
fn the_parser_reads_the_conventions_and_refuses_a_request_without_an_expected_status() {
    let text = "@host = http://h\n\
                ### one\n\
                # @name first\n\
                # @expect 201\n\
                # @retry-until 2s $.a[1].b == \"x\"\n\
                # @sign-hmac X-Signature secret\n\
                POST {{host}}/x HTTP/1.1\n\
                Content-Type: application/json\n\
                \n\
                {\"a\": 1}\n\
                \n\
                ### two\n\
                GET {{host}}/y\n";
    let err = parse(text).unwrap_err();
    assert!(err.contains("\"two\" has no `# @expect"), "{err}");

    let ok = parse(&text.replace("### two\n", "### two\n# @expect 200\n")).unwrap();
    assert_eq!(ok.vars["host"], "http://h");
    let first = &ok.requests[0];
    assert_eq!(
        (first.name.as_deref(), first.expect, first.method.as_str()),
        (Some("first"), Some(201), "POST")
    );
    assert_eq!(
        first.retry.as_ref().unwrap().timeout,
        Duration::from_secs(2)
    );
    assert_eq!(first.body.as_deref(), Some("{\"a\": 1}"));
    assert_eq!(first.headers.len(), 1);
    assert_eq!(ok.requests[1].body, None);

    let runner = Runner {
        vars: ok.vars.clone(),
        exchanges: HashMap::from([(
            "first".to_string(),
            Exchange {
                request_headers: vec![("Idempotency-Key".into(), "k1".into())],
                request_body: String::new(),
                response_headers: Vec::new(),
                response_body: r#"{"a": [0, {"b": "x", "n": 3}]}"#.into(),
            },
        )]),
    };
    assert_eq!(
        runner
            .substitute("{{host}}/{{first.response.body.$.a[1].b}}/{{first.response.body.a[1].n}}")
            .unwrap(),
        "http://h/x/3"
    );
    assert_eq!(
        runner
            .substitute("{{first.request.headers.idempotency-key}}")
            .unwrap(),
        "k1"
    );
    assert!(runner.substitute("{{nope}}").is_err());
    assert!(
        runner
            .holds("$.a[1].b == \"x\"", r#"{"a": [0, {"b": "x"}]}"#)
            .unwrap()
    );
    assert!(!runner.holds("$.a[1].b == \"y\"", r#"{"a": []}"#).unwrap());
    assert_eq!(
        hmac_signature("key", "The quick brown fox jumps over the lazy dog"),
        "sha256=f7bc83f430538424b13298e6aa6fb143ef4d59a14946175997479dbc2d1a3cd8"
    );
}
