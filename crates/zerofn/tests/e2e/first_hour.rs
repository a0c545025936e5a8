//! From zero to one's own function: `zerofn new`, `zerofn build`, `zerofn dev`
//! against a real platform over real sockets, in each language (the test
//! command installs all three toolchains; see scripts/install-test-deps).

use std::io::{BufRead as _, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use crate::harness::*;

/// `zerofn new NAME --lang LANG` in `root`, then `zerofn build`, then
/// `zerofn dev --once`; the function answers with its greeting.
fn new_build_and_deploy(platform: &Platform, root: &Path, name: &str, lang: &str) {
    let dir = root.join(name);
    let out = ok(platform.cli(&["new", name, "--lang", lang, "--dir", dir.to_str().unwrap()]));
    assert!(
        out.contains(&format!("wrote {lang} function dev/{name}")),
        "{out}"
    );
    assert!(dir.join("zerofn.toml").is_file());
    assert!(dir.join("README.md").is_file());

    let out = ok(platform.cli(&["build", dir.to_str().unwrap(), "--json"]));
    let built: serde_json::Value = serde_json::from_str(&out).unwrap();
    let component = dir.join(format!("{name}.wasm"));
    assert_eq!(built["component"], component.display().to_string());
    assert_eq!(built["cached"], false);
    let bytes = std::fs::read(&component).unwrap();
    assert_eq!(built["size"], bytes.len());
    assert_eq!(&bytes[..8], b"\0asm\x0d\0\x01\0", "a component");
    // Nothing changed: the second build is the cached one.
    let again: serde_json::Value = serde_json::from_str(&ok(platform.cli(&[
        "build",
        dir.to_str().unwrap(),
        "--json",
    ])))
    .unwrap();
    assert_eq!(again["cached"], true);

    let out = ok(platform.cli(&["dev", dir.to_str().unwrap(), "--once"]));
    assert!(out.contains(&format!("dev/{name} as version 1")), "{out}");
    assert!(
        out.contains(&format!("curl http://{}/dev/{name}", platform.gateway)),
        "{out}"
    );
    let r = platform.get(&format!("/dev/{name}"));
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.text(), format!("hello from {name}\n"));
}

#[test]
fn a_new_c_function_builds_deploys_and_redeploys_on_change() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let platform = Platform::start(&data);
    new_build_and_deploy(&platform, tmp.path(), "hello", "c");
    // The development key was made on first use and the tenant trusts it.
    assert!(data.join("dev/signing-key.pem").is_file());

    // `zerofn dev` watching: an edit is rebuilt, signed at the next manifest version
    // and deployed; Ctrl-C stops it cleanly.
    let dir = tmp.path().join("hello");
    let mut child = Command::new(bin())
        .arg("--data-dir")
        .arg(&data)
        .args(["dev", dir.to_str().unwrap()])
        .env_remove("ZEROFN_API_URL")
        .env_remove("ZEROFN_TOKEN")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (tx, rx) = mpsc::channel::<String>();
    let stdout = child.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let seen = std::cell::RefCell::new(Vec::<String>::new());
    // Bounded: 120 s without a line, or 2,000 lines without the one wanted.
    let wait_for = |needle: &str| {
        for _ in 0..2_000 {
            let line = rx
                .recv_timeout(Duration::from_secs(120))
                .unwrap_or_else(|_| {
                    panic!(
                        "no `{needle}` from zerofn dev; saw:\n{}",
                        seen.borrow().join("\n")
                    )
                });
            seen.borrow_mut().push(line.clone());
            if line.contains(needle) {
                return line;
            }
        }
        panic!("no `{needle}` from zerofn dev in 2,000 lines")
    };
    // Started, it deploys what is there (the next version), then watches.
    let line = wait_for(" deploy ");
    assert!(line.contains("dev/hello as version 2"), "{line}");
    wait_for(" watch ");

    let source = dir.join("main.c");
    let text = std::fs::read_to_string(&source).unwrap();
    // The edit also writes a line to stderr for each request, which `dev` prints.
    let edited = text
        .replace("hello from hello", "hello again")
        .replace(
            "#include \"zerofn_http.h\"",
            "#include \"zerofn_http.h\"\n#include <stdio.h>",
        )
        .replace(
            "    wasi_http_types_incoming_request_drop_own(request);",
            "    fputs(\"serving a request\\n\", stderr);\n    wasi_http_types_incoming_request_drop_own(request);",
        );
    assert_ne!(edited, text);
    std::fs::write(&source, edited).unwrap();
    let line = wait_for(" change ");
    assert!(line.contains("main.c"), "{line}");
    let line = wait_for(" deploy ");
    assert!(line.contains("dev/hello as version 3"), "{line}");
    wait_for(" ready ");
    let r = platform.get("/dev/hello");
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.text(), "hello again\n");
    // While watching, dev prints each request and what the function wrote;
    // its own build reading the sources is not a change (no rebuild loop).
    // The request's line normally comes first (output waits a few polls for
    // it); on a slow machine the output may be printed before it.
    let line = wait_for(" request ");
    assert!(
        !seen
            .borrow()
            .iter()
            .rev()
            .take_while(|l| !l.contains(" done "))
            .any(|l| l.contains(" change ")),
        "a rebuild without an edit: {:?}",
        seen.borrow()
    );
    assert!(
        line.contains("200 in ") && line.contains("from public 127.0.0.1"),
        "{line}"
    );
    let invocation = r.header("x-zerofn-invocation-id").unwrap();
    assert!(line.contains(invocation), "{line}");
    let logged = |l: &String| l.contains(" log ") && l.contains("stderr serving a request");
    let already = seen.borrow().iter().any(logged);
    if !already {
        let line = wait_for(" log ");
        assert!(logged(&line), "{line}");
    }

    // The signed manifest version rose with the deploy number.
    let versions: serde_json::Value =
        serde_json::from_str(&ok(platform.cli(&["versions", "dev", "hello", "--json"]))).unwrap();
    let listed = versions["versions"].as_array().unwrap();
    assert_eq!(listed.len(), 3, "{versions}");
    assert_eq!(listed[0]["manifest_version"], 3);

    let status = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    wait_for("stopped");
    let status = child.wait().unwrap();
    assert!(status.success(), "zerofn dev exited with {status}");
}

#[test]
fn new_refuses_to_overwrite_and_names_an_unknown_language() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let dir = tmp.path().join("mine");
    std::fs::create_dir(&dir).unwrap();
    std::fs::write(dir.join("main.c"), "/* mine */\n").unwrap();
    let err = fails(cli(&data, &["new", "mine", "--dir", dir.to_str().unwrap()]));
    assert!(err.contains("already exist"), "{err}");
    assert!(err.contains("main.c"), "{err}");
    // All or nothing: the file is untouched and nothing else was written.
    assert_eq!(
        std::fs::read_to_string(dir.join("main.c")).unwrap(),
        "/* mine */\n"
    );
    assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 1);

    let out = cli(&data, &["new", "x", "--lang", "rust"]);
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(err.contains("invalid value 'rust'"), "{err}");
    assert!(err.contains("[possible values: c, python, js]"), "{err}");

    let err = fails(cli(
        &data,
        &["new", "Not_A_Label", "--dir", dir.to_str().unwrap()],
    ));
    assert!(err.contains("cannot name a function"), "{err}");
}

#[test]
fn a_new_python_function_builds_and_deploys() {
    let tmp = tempfile::tempdir().unwrap();
    let platform = Platform::start(&tmp.path().join("data"));
    new_build_and_deploy(&platform, tmp.path(), "hello-py", "python");
}

#[test]
fn a_new_javascript_function_builds_and_deploys() {
    let tmp = tempfile::tempdir().unwrap();
    let platform = Platform::start(&tmp.path().join("data"));
    new_build_and_deploy(&platform, tmp.path(), "hello-js", "js");
}

/// `scripts/demo --check` (the CI mode of the demo): starts the platform with the C
/// examples on free ports, runs every example line it prints and checks each status.
/// Uses this build's `zerofn` and guests, so it builds nothing.
#[test]
fn the_demo_serves_every_example_it_prints() {
    let scratch = tempfile::tempdir().unwrap();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/demo");
    let out = Command::new("bash")
        .arg(&script)
        .arg("--check")
        .env("ZEROFN_BIN", bin())
        .env("ZEROFN_GUESTS_DIR", zerofn_testkit::guests_dir())
        .env("CARGO_TARGET_DIR", scratch.path())
        .env_remove("ZEROFN_DATA_DIR")
        .output()
        .unwrap();
    let text = stdout(&out);
    assert!(out.status.success(), "{text}\n{}", stderr(&out));
    assert!(
        text.contains("==> all 13 examples answered as expected"),
        "{text}"
    );
    assert!(
        text.contains("refused (expected): loop-c hits its time limit"),
        "{text}"
    );
    assert!(text.contains("export ZEROFN_DATA_DIR="), "{text}");
    assert!(!text.contains("FAILED"), "{text}");
}

/// `zerofn dev` never widens an existing tenant's trust: a tenant that does not trust the
/// development key is left as it was and the error says how to add the key. A manifest
/// with its own `version` is refused (dev numbers versions itself). Neither deploys.
#[test]
fn dev_leaves_an_existing_tenant_alone_and_refuses_a_fixed_version() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let platform = Platform::start(&data);
    let other = tmp.path().join("other.key");
    ok(platform.cli(&["keygen", "--out", other.to_str().unwrap()]));
    ok(platform.cli(&[
        "tenant",
        "create",
        "dev",
        "--signing-key",
        &format!("{}.pub", other.display()),
    ]));
    let before = ok(platform.cli(&["tenant", "list", "--json"]));
    let dir = tmp.path().join("hello");
    ok(platform.cli(&["new", "hello", "--dir", dir.to_str().unwrap()]));

    let err = fails(platform.cli(&["dev", dir.to_str().unwrap(), "--once"]));
    assert!(err.contains("tenant `dev` does not trust the key"), "{err}");
    assert!(err.contains("zerofn tenant add-key dev"), "{err}");
    assert_eq!(ok(platform.cli(&["tenant", "list", "--json"])), before);
    assert_eq!(platform.get("/dev/hello").status, 404);

    let manifest = dir.join("zerofn.toml");
    let text = std::fs::read_to_string(&manifest).unwrap();
    std::fs::write(&manifest, format!("version = 7\n{text}")).unwrap();
    let err = fails(platform.cli(&[
        "dev",
        dir.to_str().unwrap(),
        "--once",
        "--key",
        other.to_str().unwrap(),
    ]));
    assert!(err.contains("`version = 7`"), "{err}");
    assert!(err.contains("remove the line while developing"), "{err}");
    assert_eq!(platform.get("/dev/hello").status, 404);
}
