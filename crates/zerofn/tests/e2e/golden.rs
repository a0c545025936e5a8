//! Golden files for the CLI's user-facing error messages (as Spin's `.err`
//! tests): each case runs the real `zerofn` against a real platform, and its
//! standard error, with the paths and ports of this run replaced by
//! placeholders, must equal `tests/golden/<case>.err`. A change of wording is
//! then a reviewed diff. `ZEROFN_BLESS=1` rewrites the files from the output.

use std::path::Path;

use crate::harness::*;
use crate::Setup;

/// The error cases: a name, the files to write under the run's root, and the
/// CLI arguments (`$ROOT` is the root).
/// One case: its name, the files to write under its root, its arguments.
type Case = (
    &'static str,
    Vec<(&'static str, &'static [u8])>,
    Vec<&'static str>,
);

fn cases() -> Vec<Case> {
    vec![
        (
            "deploy-unknown-manifest-key",
            vec![(
                "f/zerofn.toml",
                b"name = \"a\"\ntenant = \"acme\"\ncomponent = \"a.wasm\"\nroutes = [\"/a\"]\ncolour = \"red\"\n",
            )],
            vec!["deploy", "$ROOT/f"],
        ),
        (
            "deploy-misspelt-manifest-key",
            vec![(
                "f/zerofn.toml",
                b"name = \"a\"\ntenant = \"acme\"\ncomponent = \"a.wasm\"\nrotues = [\"/a\"]\n",
            )],
            vec!["deploy", "$ROOT/f"],
        ),
        (
            "deploy-toml-syntax",
            vec![("f/zerofn.toml", b"name = \"a\nroutes = [")],
            vec!["deploy", "$ROOT/f"],
        ),
        (
            "deploy-bad-function-name",
            vec![(
                "f/zerofn.toml",
                b"name = \"Hello\"\ntenant = \"acme\"\ncomponent = \"a.wasm\"\nroutes = [\"/a\"]\n",
            )],
            vec!["deploy", "$ROOT/f"],
        ),
        (
            "deploy-missing-component",
            vec![(
                "f/zerofn.toml",
                b"name = \"a\"\ntenant = \"acme\"\ncomponent = \"nothere.wasm\"\nroutes = [\"/a\"]\n",
            )],
            vec!["deploy", "$ROOT/f"],
        ),
        (
            "deploy-unsigned",
            vec![
                ("f/zerofn.toml", b"name = \"a\"\ntenant = \"acme\"\ncomponent = \"a.wasm\"\nroutes = [\"/a\"]\n"),
                ("f/a.wasm", b"\0asm\x0d\0\x01\0"),
            ],
            vec!["deploy", "$ROOT/f"],
        ),
        ("deploy-no-directory", vec![], vec!["deploy", "$ROOT/nothere"]),
        // Any error of a command given `--json` is JSON; one without a file has no place.
        (
            "deploy-no-directory-json",
            vec![],
            vec!["deploy", "$ROOT/nothere", "--json"],
        ),
        (
            "sign-missing-key",
            vec![("a.wasm", b"\0asm\x0d\0\x01\0")],
            vec!["sign", "$ROOT/a.wasm", "--key", "$ROOT/nothere.key"],
        ),
        (
            "tenant-create-without-key",
            vec![],
            vec!["tenant", "create", "Bad_Name"],
        ),
        ("unknown-command", vec![], vec!["frobnicate"]),
        (
            "deploy-manifest-type-error",
            vec![(
                "f/zerofn.toml",
                b"name = \"a\"\ntenant = \"acme\"\ncomponent = \"a.wasm\"\nroutes = [\"/a\"]\n[limits]\nmemory_mb = \"lots\"\n",
            )],
            vec!["deploy", "$ROOT/f"],
        ),
        (
            "deploy-bad-route",
            vec![(
                "f/zerofn.toml",
                b"name = \"a\"\ntenant = \"acme\"\ncomponent = \"a.wasm\"\nroutes = [\"/a\", \"/api/*\"]\n",
            )],
            vec!["deploy", "$ROOT/f"],
        ),
        (
            "deploy-misspelt-manifest-key-json",
            vec![(
                "f/zerofn.toml",
                b"name = \"a\"\ntenant = \"acme\"\ncomponent = \"a.wasm\"\nrotues = [\"/a\"]\n",
            )],
            vec!["deploy", "$ROOT/f", "--json"],
        ),
        (
            "plan-tenant-file-unknown-key",
            vec![(
                "config/tenants/x/tenant.toml",
                b"routes = [\"/x/\"]\n\n[limits]\nrate_per_secnd = 5\n",
            )],
            vec!["plan", "$ROOT/config"],
        ),
        (
            "zone-set-unknown-key",
            vec![(
                "payments.toml",
                b"name = \"payments\"\ntenants = [\"acme\"]\ncalled_frm = [\"shop\"]\n",
            )],
            vec!["zone", "set", "$ROOT/payments.toml"],
        ),
        (
            "deploy-bad-limit",
            vec![(
                "f/zerofn.toml",
                b"name = \"a\"\ntenant = \"acme\"\ncomponent = \"a.wasm\"\nroutes = [\"/a\"]\n[limits]\nmemory_mb = 0\n",
            )],
            vec!["deploy", "$ROOT/f"],
        ),
    ]
}

/// The output with this run's temporary root, data directory and ports
/// replaced by placeholders.
fn normalise(text: &str, root: &Path) -> String {
    let mut out = text.replace(&root.display().to_string(), "$ROOT");
    // Loopback addresses of this run's listeners.
    while let Some(start) = out.find("127.0.0.1:") {
        let digits = out[start + 10..]
            .chars()
            .take_while(char::is_ascii_digit)
            .count();
        if digits == 0 {
            break;
        }
        out.replace_range(start..start + 10 + digits, "127.0.0.1:$PORT");
    }
    out
}

#[test]
fn cli_error_messages_match_their_golden_files() {
    let s = Setup::new();
    let golden_dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden");
    let bless = std::env::var_os("ZEROFN_BLESS").is_some();
    let mut mismatches = Vec::new();
    for (name, files, args) in cases() {
        let root = s.root().join(format!("golden-{name}"));
        std::fs::create_dir_all(&root).unwrap();
        for (path, bytes) in files {
            let path = root.join(path);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, bytes).unwrap();
        }
        let root_text = root.display().to_string();
        let args: Vec<String> = args
            .iter()
            .map(|a| a.replace("$ROOT", &root_text))
            .collect();
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let out = s.platform.cli(&args);
        assert!(!out.status.success(), "{name}: `zerofn {args:?}` succeeded");
        let got = normalise(&stderr(&out), &root);
        let file = golden_dir.join(format!("{name}.err"));
        if bless {
            std::fs::write(&file, &got).unwrap();
            continue;
        }
        match std::fs::read_to_string(&file) {
            Ok(want) if want == got => {}
            Ok(want) => mismatches.push(format!(
                "{name}: stderr differs from {}\n--- want\n{want}--- got\n{got}",
                file.display()
            )),
            Err(e) => mismatches.push(format!(
                "{name}: no golden file {} ({e}); run with ZEROFN_BLESS=1 to write it\n--- got\n{got}",
                file.display()
            )),
        }
    }
    assert!(mismatches.is_empty(), "{}", mismatches.join("\n"));
}
