//! JavaScript guests (componentize-js): deployed signed, answering over
//! real sockets like the C and Python ones.
//!
//! Each deploy compiles a ~14 MiB component (the SpiderMonkey engine plus
//! the guest's snapshot) with wasmtime before `zerofn deploy` returns; that
//! takes tens of seconds in a debug build, which the CLI and the harness
//! wait for (neither has a deploy deadline; HTTP reads allow 60 s).

use crate::harness::*;
use crate::Setup;

const LIMITS: &str = "[limits]\nmemory_mb = 128\ntimeout_ms = 5000\n";

#[test]
fn javascript_guests_answer_hello_and_echo() {
    let s = Setup::new();

    s.deploy("hello-js", "hello-js", &["/hello-js"], LIMITS);
    let r = s.platform.get("/hello-js");
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("content-type"), Some("text/plain"));
    assert_eq!(r.text(), "hello from javascript\n");
    // A fresh instance per request: the second answer is the same.
    assert_eq!(
        s.platform.get("/hello-js").text(),
        "hello from javascript\n"
    );

    s.deploy("echo-js", "echo-js", &["/echo-js/..."], LIMITS);
    let body = br#"{"a":"quote\" and \\ backslash","n":1}"#;
    let r = s.platform.post("/echo-js/x?y=1", body);
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("content-type"), Some("application/json"));
    let v = r.json();
    assert_eq!(v["method"], "POST");
    assert_eq!(v["path"], "/echo-js/x?y=1");
    assert_eq!(v["body"], std::str::from_utf8(body).unwrap());

    // Larger than one read chunk and one write, with control characters and
    // bytes that are not UTF-8 (one U+FFFD each, like echo-py).
    let mut big = b"line\n\ttab \x01 ".repeat(4000);
    big.extend_from_slice(b"\xff\xfe end");
    let r = s.platform.post("/echo-js", &big);
    assert_eq!(r.status, 200, "{}", r.text());
    let v = r.json();
    assert_eq!(v["method"], "POST");
    assert_eq!(v["path"], "/echo-js");
    assert_eq!(
        v["body"].as_str().unwrap(),
        String::from_utf8_lossy(&big).as_ref()
    );
    let r = s.platform.get("/echo-js");
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["method"], "GET");
    assert_eq!(r.json()["body"], "");

    // Both deploys and every invocation are audited against their digests.
    let fns = s.functions();
    let records = s.audit(50);
    for name in ["hello-js", "echo-js"] {
        let f = fns
            .as_array()
            .unwrap()
            .iter()
            .find(|f| f["name"] == name)
            .unwrap_or_else(|| panic!("{name} not listed: {fns}"));
        assert!(records.iter().any(|r| r["action"] == "deploy"
            && r["decision"] == "allow"
            && r["function"] == name
            && r["digest"] == f["digest"]));
        assert!(records
            .iter()
            .any(|r| r["action"] == "invoke" && r["function"] == name && r["status"] == 200));
    }
    ok(s.platform.cli(&["audit", "verify"]));
}
