//! Signed layers: a shared library component published once, pinned by
//! digest in a function's manifest and composed in at admission.
//!
//! `greet-layer-wat` exports `zerofn:greet/greeter`; `hello-layered-c`
//! imports it and answers with its greeting.

use std::path::{Path, PathBuf};

use zerofn_admission::Digest;

use crate::harness::*;
use crate::Setup;

const GREETING_V1: &str = "hello, zerofn (from greet-layer v1)\n";
const GREETING_V2: &str = "hello, zerofn (from greet-layer v2)\n";

/// Writes a layer component to `root/layers/<name>.wasm`.
fn layer_file(root: &Path, name: &str, bytes: &[u8]) -> PathBuf {
    let dir = root.join("layers");
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(format!("{name}.wasm"));
    std::fs::write(&path, bytes).unwrap();
    path
}

/// The layer's second version: the same component with `v1` changed to
/// `v2` in its greeting (same length, so still a valid component).
fn layer_v2(v1: &[u8]) -> Vec<u8> {
    let needle = b"greet-layer v1";
    let at = v1
        .windows(needle.len())
        .position(|w| w == needle)
        .expect("greeting in the layer's data segment");
    let mut v2 = v1.to_vec();
    v2[at + needle.len() - 1] = b'2';
    v2
}

fn pin(digest: &Digest) -> String {
    format!("[layers]\n\"zerofn:greet/greeter\" = \"{digest}\"\n")
}

fn deploy_layered(s: &Setup, name: &str, route: &str, layer: &Digest) -> String {
    let f = function_dir(
        s.root(),
        name,
        "acme",
        &guest("hello-layered-c"),
        &[route],
        &pin(layer),
    );
    s.sign(&f.wasm, &s.key);
    ok(s.platform.cli(&["deploy", f.dir.to_str().unwrap()]))
}

fn layers(s: &Setup) -> serde_json::Value {
    serde_json::from_str(&ok(s.platform.cli(&["layer", "list", "acme", "--json"]))).unwrap()
}

#[test]
fn layered_function_is_composed_pinned_and_survives_restart() {
    let s = Setup::new();
    let v1_bytes = guest("greet-layer-wat");
    let v1 = Digest::of(&v1_bytes);

    // A layer without a bundle, or signed by a key the tenant does not
    // trust, is refused; nothing is stored.
    let unsigned = layer_file(s.root(), "unsigned", &v1_bytes);
    let err = fails(
        s.platform
            .cli(&["layer", "publish", "acme", unsigned.to_str().unwrap()]),
    );
    assert!(err.contains("cannot read the layer's bundle"), "{err}");
    let stranger = s.root().join("stranger.key");
    ok(s.platform
        .cli(&["keygen", "--out", stranger.to_str().unwrap()]));
    let untrusted = layer_file(s.root(), "untrusted", &v1_bytes);
    s.sign(&untrusted, &stranger);
    let err = fails(
        s.platform
            .cli(&["layer", "publish", "acme", untrusted.to_str().unwrap()]),
    );
    assert!(err.contains("does not verify"), "{err}");
    assert!(err.contains("HTTP 403"), "{err}");
    assert_eq!(layers(&s), serde_json::json!([]));

    // Published signed by the tenant's key.
    let published = layer_file(s.root(), "greet-v1", &v1_bytes);
    s.sign(&published, &s.key);
    let out = ok(s
        .platform
        .cli(&["layer", "publish", "acme", published.to_str().unwrap()]));
    assert!(out.contains(&v1.to_string()), "{out}");
    assert!(out.contains("zerofn:greet/greeter"), "{out}");
    // Immutable: the same digest cannot be published again.
    let err = fails(
        s.platform
            .cli(&["layer", "publish", "acme", published.to_str().unwrap()]),
    );
    assert!(err.contains("already published"), "{err}");

    // A function pinning a digest nobody published is refused, naming it.
    let unknown = Digest::of(b"no such layer");
    let f = function_dir(
        s.root(),
        "orphan",
        "acme",
        &guest("hello-layered-c"),
        &["/orphan"],
        &pin(&unknown),
    );
    s.sign(&f.wasm, &s.key);
    let err = fails(s.platform.cli(&["deploy", f.dir.to_str().unwrap()]));
    assert!(err.contains(&unknown.to_string()), "{err}");
    assert!(err.contains("not published"), "{err}");
    assert_eq!(s.platform.get("/orphan").status, 404);
    // `admission explain` runs the layer check too.
    let out = s
        .platform
        .cli(&["admission", "explain", f.dir.to_str().unwrap(), "--json"]);
    assert!(!out.status.success());
    let v: serde_json::Value = serde_json::from_str(stdout(&out).trim()).unwrap();
    let last = v["checks"].as_array().unwrap().last().unwrap().clone();
    assert_eq!(last["check"], "layers");
    assert_eq!(last["result"], "fail");
    assert!(
        last["detail"]
            .as_str()
            .unwrap()
            .contains(&unknown.to_string()),
        "{last}"
    );

    // A pinned layer that does not export the interface is refused.
    let wrong_bytes = guest("hello-c");
    let wrong = layer_file(s.root(), "wrong", &wrong_bytes);
    s.sign(&wrong, &s.key);
    ok(s.platform
        .cli(&["layer", "publish", "acme", wrong.to_str().unwrap()]));
    let f = function_dir(
        s.root(),
        "wrong",
        "acme",
        &guest("hello-layered-c"),
        &["/wrong"],
        &pin(&Digest::of(&wrong_bytes)),
    );
    s.sign(&f.wasm, &s.key);
    let err = fails(s.platform.cli(&["deploy", f.dir.to_str().unwrap()]));
    assert!(
        err.contains("does not export `zerofn:greet/greeter`"),
        "{err}"
    );

    // The layered function: composed at admission, answering with the
    // layer's greeting.
    let out = deploy_layered(&s, "hello-layered", "/hello-layered", &v1);
    assert!(
        out.contains(&format!("layer zerofn:greet/greeter = {v1}")),
        "{out}"
    );
    let r = s.platform.get("/hello-layered");
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("content-type"), Some("text/plain"));
    assert_eq!(r.text(), GREETING_V1);

    // The function keeps its own signed digest as its identity; the audit
    // record names the layer and the composed digest.
    let signed = Digest::of(&guest("hello-layered-c")).to_string();
    let fns = s.functions();
    let f = fns
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["name"] == "hello-layered")
        .unwrap();
    assert_eq!(f["digest"], signed.as_str());
    let records = s.audit(100);
    let deploy = records
        .iter()
        .find(|r| {
            r["action"] == "deploy" && r["decision"] == "allow" && r["function"] == "hello-layered"
        })
        .expect("deploy record");
    assert_eq!(deploy["digest"], signed.as_str());
    let reason = deploy["reason"].as_str().unwrap();
    assert!(
        reason.contains(&format!(
            "layers zerofn:greet/greeter={v1}; composed sha256:"
        )),
        "{reason}"
    );
    assert!(records.iter().any(|r| r["decision"] == "allow"
        && r["action"] == "layer.publish"
        && r["digest"] == v1.to_string().as_str()
        && r["reason"]
            .as_str()
            .unwrap_or_default()
            .starts_with("layer publish")));
    assert!(records.iter().any(|r| r["decision"] == "deny"
        && r["reason"]
            .as_str()
            .unwrap_or_default()
            .starts_with("layer publish")
        && r["reason"]
            .as_str()
            .unwrap_or_default()
            .contains("does not verify")));

    // A new version of the layer changes nothing for the deployed function.
    let v2_bytes = layer_v2(&v1_bytes);
    let v2 = Digest::of(&v2_bytes);
    let v2_file = layer_file(s.root(), "greet-v2", &v2_bytes);
    s.sign(&v2_file, &s.key);
    ok(s.platform
        .cli(&["layer", "publish", "acme", v2_file.to_str().unwrap()]));
    assert_eq!(s.platform.get("/hello-layered").text(), GREETING_V1);
    // Another function pinning v2 gets v2.
    deploy_layered(&s, "hello-layered-two", "/hello-layered-two", &v2);
    assert_eq!(s.platform.get("/hello-layered-two").text(), GREETING_V2);
    assert_eq!(s.platform.get("/hello-layered").text(), GREETING_V1);

    let listed = layers(&s);
    let pinned = |d: &Digest| {
        listed
            .as_array()
            .unwrap()
            .iter()
            .find(|l| l["digest"] == d.to_string().as_str())
            .unwrap()["pinned_by"]
            .clone()
    };
    assert_eq!(pinned(&v1), serde_json::json!(["hello-layered"]));
    assert_eq!(pinned(&v2), serde_json::json!(["hello-layered-two"]));

    // A pinned layer cannot be deleted; an unpinned one can.
    let err = fails(
        s.platform
            .cli(&["layer", "delete", "acme", &v1.to_string()]),
    );
    assert!(err.contains("pinned by hello-layered"), "{err}");
    assert!(err.contains("HTTP 409"), "{err}");
    ok(s.platform.cli(&[
        "layer",
        "delete",
        "acme",
        &Digest::of(&wrong_bytes).to_string(),
    ]));
    assert_eq!(layers(&s).as_array().unwrap().len(), 2);
    let records = s.audit(10);
    assert!(records.iter().any(|r| r["action"] == "layer.delete"
        && r["decision"] == "deny"
        && r["reason"]
            .as_str()
            .unwrap_or_default()
            .starts_with("layer delete")));
    assert!(records.iter().any(|r| r["action"] == "layer.delete"
        && r["decision"] == "allow"
        && r["reason"]
            .as_str()
            .unwrap_or_default()
            .starts_with("layer delete")));

    // Restart: both functions are admitted and composed again, each with
    // the layer it pinned.
    let data = s.platform.data_dir.clone();
    let Setup {
        platform,
        tmp: _keep,
        ..
    } = s;
    assert!(platform.stop().success());
    let platform = Platform::start(&data);
    let r = platform.get("/hello-layered");
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.text(), GREETING_V1);
    assert_eq!(platform.get("/hello-layered-two").text(), GREETING_V2);
    let err = fails(platform.cli(&["layer", "delete", "acme", &v2.to_string()]));
    assert!(err.contains("pinned by hello-layered-two"), "{err}");
    // Undeploying releases the pin.
    ok(platform.cli(&["undeploy", "acme", "hello-layered-two"]));
    ok(platform.cli(&["layer", "delete", "acme", &v2.to_string()]));
    ok(platform.cli(&["audit", "verify"]));
}
