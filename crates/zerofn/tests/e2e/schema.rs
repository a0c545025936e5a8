//! Request validation end to end: a function with `[schema]` for its body, query and
//! headers; requests that do not match get 400 `invalid_request` naming where and which
//! keyword failed, are audited, and never reach the function; no request value is echoed;
//! a schema changed after signing, or one that refers outside itself, is refused.

use super::*;

const SCHEMAS: &str = r##"[schema]
body = '''{"type": "object", "required": ["id", "items"],
  "properties": {"id": {"type": "string"},
    "items": {"type": "array", "minItems": 1,
      "items": {"type": "object", "required": ["qty"],
        "properties": {"qty": {"type": "integer", "minimum": 1}}}}}}'''
[schema.query]
type = "object"
additionalProperties = false
properties.dry_run = { enum = ["true", "false"] }
[schema.headers]
type = "object"
properties.x-api-token = { type = "string", pattern = "^[0-9]+$" }
"##;

fn post(s: &Setup, path: &str, headers: &[(&str, &str)], body: &[u8]) -> HttpResponse {
    http(&s.platform.gateway, "POST", path, headers, body)
}

/// The audit records of one invocation.
fn records_of(s: &Setup, id: &str) -> Vec<serde_json::Value> {
    s.audit(50)
        .into_iter()
        .filter(|r| r["invocation_id"] == id)
        .collect()
}

/// A refusal: 400 (or `status`), `invalid_request`, one deny record and no run.
#[track_caller]
fn refused(s: &Setup, r: &HttpResponse, status: u16) -> (serde_json::Value, serde_json::Value) {
    assert_eq!(r.status, status, "{}", r.text());
    let error = r.json()["error"].clone();
    assert_eq!(error["kind"], "invalid_request", "{error}");
    let id = r.header("x-zerofn-invocation-id").unwrap().to_owned();
    let records = records_of(s, &id);
    assert_eq!(records.len(), 1, "{records:?}");
    let record = records[0].clone();
    assert_eq!(record["decision"], "deny", "{record}");
    assert_eq!(record["status"], status, "{record}");
    (error, record)
}

#[test]
fn requests_are_validated_before_the_function_runs() {
    let s = Setup::new();
    let f = s.deploy("orders", "echo-c", &["/orders"], SCHEMAS);

    let good = br#"{"id": "o1", "items": [{"qty": 2}]}"#;
    let r = post(&s, "/orders?dry_run=true", &[("x-api-token", "123")], good);
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["body"], std::str::from_utf8(good).unwrap());

    // Body: the failing instance path and keyword, in the answer and the record.
    let r = post(
        &s,
        "/orders",
        &[],
        br#"{"id": "o1", "items": [{"qty": 0}]}"#,
    );
    let (error, record) = refused(&s, &r, 400);
    assert_eq!(error["part"], "body");
    assert_eq!(error["instance_path"], "/items/0/qty");
    assert_eq!(error["keyword"], "minimum");
    assert!(
        error["schema_path"].as_str().unwrap().ends_with("/minimum"),
        "{error}"
    );
    assert!(
        record["reason"]
            .as_str()
            .unwrap()
            .starts_with("schema: body /items/0/qty: "),
        "{record}"
    );
    assert_eq!(record["detail"]["schema"]["part"], "body");

    // Not JSON at all.
    let r = post(&s, "/orders", &[], b"id=o1");
    let (error, _) = refused(&s, &r, 400);
    assert_eq!(error["message"], "request body is not JSON");

    // Query: a parameter the schema does not allow, checked before the body is read.
    let r = post(&s, "/orders?debug=1", &[], good);
    let (error, _) = refused(&s, &r, 400);
    assert_eq!(
        (error["part"].as_str(), error["keyword"].as_str()),
        (Some("query"), Some("additionalProperties"))
    );

    // Headers: a secret-looking value fails its pattern; it is echoed nowhere.
    let secret = "sk_live_DO_NOT_ECHO_ME";
    let r = post(&s, "/orders", &[("X-Api-Token", secret)], good);
    let (error, record) = refused(&s, &r, 400);
    assert_eq!(error["instance_path"], "/x-api-token");
    assert!(!r.text().contains(secret), "{}", r.text());
    assert!(!record.to_string().contains(secret), "{record}");
    let all = ok(s.platform.cli(&["audit", "tail", "-n", "200", "--json"]));
    assert!(!all.contains(secret));

    // Hostile bodies: deep nesting and a huge number are refused, bounded. (Identical
    // refusals of one public address are counted into one audit record per interval, so
    // these are checked by their answers.)
    let deep = format!("{}{}", "[".repeat(5000), "]".repeat(5000));
    let huge = format!(r#"{{"id":"o1","items":[{{"qty":-1{}}}]}}"#, "0".repeat(300));
    for body in [deep.as_bytes(), huge.as_bytes()] {
        let r = post(&s, "/orders", &[], body);
        assert_eq!(r.status, 400, "{}", r.text());
        assert_eq!(r.json()["error"]["kind"], "invalid_request");
    }

    // Only the one valid request ran.
    let ran = s
        .audit(200)
        .into_iter()
        .filter(|r| {
            r["function"] == "orders" && r["decision"] == "allow" && r["action"] == "invoke"
        })
        .count();
    assert_eq!(ran, 1);

    // A schema changed after signing is refused at deploy, naming the key.
    let manifest = f.dir.join("zerofn.toml");
    let signed = std::fs::read_to_string(&manifest).unwrap();
    std::fs::write(
        &manifest,
        signed.replace("\"minimum\": 1", "\"minimum\": 0"),
    )
    .unwrap();
    let e = fails(s.platform.cli(&["deploy", f.dir.to_str().unwrap()]));
    assert!(e.contains("schema.body"), "{e}");
    // Still the signed schema after a restart.
    std::fs::write(&manifest, &signed).unwrap();
    let s = s.restart();
    let r = post(
        &s,
        "/orders",
        &[],
        br#"{"id": "o1", "items": [{"qty": 0}]}"#,
    );
    refused(&s, &r, 400);
    let r = post(&s, "/orders", &[], good);
    assert_eq!(r.status, 200, "{}", r.text());
}

#[test]
fn schemas_that_refer_outside_themselves_are_refused() {
    let s = Setup::new();
    let f = function_dir(
        s.root(),
        "remote",
        "acme",
        &guest("echo-c"),
        &["/remote"],
        "[schema]\nbody = '{\"$ref\": \"https://schemas.example.test/order.json\"}'\n",
    );
    let key = s.key.to_str().unwrap().to_owned();
    let e = fails(s.platform.cli(&[
        "sign",
        f.dir.to_str().unwrap(),
        "--key",
        &key,
        "--version",
        "1",
    ]));
    assert!(
        e.contains("`schema.body` is invalid") && e.contains("refers outside the schema"),
        "{e}"
    );
}
