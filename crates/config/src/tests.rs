//! Loading, diffing and exporting whole directories.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::collections::BTreeMap;

use super::*;

const RUNTIME: &str = r#"@id("public-invoke") permit (principal == Zerofn::Caller::"public", action == Zerofn::Action::"invoke", resource);"#;
const CONTROL: &str =
    r#"@id("readers") permit (principal, action == Zerofn::Action::"tenant.read", resource);"#;

fn pem() -> String {
    zerofn_sigstore::SigningKey::generate()
        .public_key()
        .to_pem()
}

fn base(key: &str) -> BTreeMap<String, Vec<u8>> {
    let mut m = BTreeMap::new();
    let mut put = |p: &str, s: &str| {
        m.insert(p.to_owned(), s.as_bytes().to_vec());
    };
    put("control.cedar", CONTROL);
    put("operators/alice.toml", "");
    put(
        "tenants/acme/tenant.toml",
        "routes = [\"/acme/\"]\nkeys = [\"keys/ci.pub\"]\n\n[limits]\nrate_per_second = 100\n\n[admission]\nseverity_threshold = \"high\"\n",
    );
    put("tenants/acme/keys/ci.pub", key);
    put("tenants/acme/policies/10-public.cedar", RUNTIME);
    put("README.md", "notes");
    m
}

fn load_map(m: BTreeMap<String, Vec<u8>>) -> Result<PlatformConfig, ConfigError> {
    load(&ConfigFiles::from_map(m)?)
}

#[test]
fn a_whole_directory_loads() {
    let key = pem();
    let c = load_map(base(&key)).unwrap();
    assert_eq!(c.control_policy.as_deref(), Some(CONTROL));
    assert!(c.operators.contains_key("alice"));
    let t = &c.tenants["acme"];
    assert_eq!(t.routes, vec!["/acme/".to_owned()]);
    assert_eq!(t.keys.len(), 1);
    assert_eq!(t.limits.rate_per_second, Some(100));
    assert_eq!(t.admission.severity_threshold.as_deref(), Some("high"));
    assert_eq!(t.policy.as_deref(), Some(RUNTIME));
}

#[test]
fn errors_name_the_file_and_line() {
    let key = pem();
    for (path, text, line, problem) in [
        (
            "tenants/acme/tenant.toml",
            "routes = [\"/acme/\"]\nkeys = []\ncolour = \"blue\"\n",
            Some(3),
            "unknown field `colour`",
        ),
        (
            "tenants/acme/tenant.toml",
            "routes = [\"/acme/\"]\nkeys = [\"../../etc/passwd\"]\n",
            Some(2),
            "`..`",
        ),
        (
            "tenants/acme/tenant.toml",
            "routes = [\"/acme/\"]\nkeys = [\"keys/ci.pub\", \"./keys/ci.pub\"]\n",
            Some(2),
            "listed twice",
        ),
        (
            "tenants/acme/tenant.toml",
            "routes = [\"/acme/\"]\nroutes = [\"/b/\"]\n",
            Some(2),
            "duplicate key",
        ),
        (
            "tenants/acme/tenant.toml",
            "routes = [\"/acme/\"]\n[admission]\nseverity_threshold = \"dire\"\n",
            Some(3),
            "severity_threshold",
        ),
        (
            "tenants/acme/policies/10-public.cedar",
            "permit (principal, action == Zerofn::Action::\"nosuch\", resource);",
            None,
            "",
        ),
        ("control.cedar", "permit (", None, "parse"),
        (
            "operators/alice.toml",
            "admin = true\n",
            Some(1),
            "unknown field",
        ),
        (
            "tenants/acme/notes.txt",
            "x",
            None,
            "not part of the layout",
        ),
        ("stray.toml", "", None, "not part of the layout"),
        (
            "tenants/acme/keys/ci.pub",
            "not a key",
            None,
            "not a public key",
        ),
    ] {
        let mut m = base(&key);
        m.insert(path.to_owned(), text.as_bytes().to_vec());
        let e = load_map(m).unwrap_err();
        match &e {
            ConfigError::Invalid {
                file,
                line: l,
                problem: p,
                span,
            } => {
                assert_eq!(file, path, "{e}");
                if line.is_some() {
                    assert_eq!(*l, line, "{e}");
                    // The span the CLI underlines is on that line.
                    let start = span.clone().expect("a span where the line is known").start;
                    let line_of_span = text[..start].matches('\n').count() + 1;
                    assert_eq!(Some(line_of_span), line, "{e}: {span:?}");
                }
                assert!(p.contains(problem), "{e}");
            }
            other => panic!("{path}: {other}"),
        }
        assert!(e.to_string().contains(path), "{e}");
    }
}

#[test]
fn a_missing_reference_and_a_misplaced_function_are_refused() {
    let key = pem();
    let mut m = base(&key);
    m.remove("tenants/acme/keys/ci.pub");
    let e = load_map(m).unwrap_err().to_string();
    assert!(
        e.contains("tenants/acme/tenant.toml") && e.contains("keys/ci.pub"),
        "{e}"
    );
    let mut m = base(&key);
    m.insert("tenants/acme/functions/x.toml".into(), Vec::new());
    let e = load_map(m).unwrap_err().to_string();
    assert!(e.contains("functions/<name>/"), "{e}");
    let mut m = base(&key);
    m.insert(
        "tenants/Bad_Name/tenant.toml".into(),
        b"routes = []".to_vec(),
    );
    let e = load_map(m).unwrap_err().to_string();
    assert!(e.contains("tenants/Bad_Name"), "{e}");
}

#[test]
fn a_directory_read_from_disk_refuses_what_it_cannot_hold() {
    let dir = tempfile::tempdir().unwrap();
    for (p, b) in base(&pem()) {
        let path = dir.path().join(&p);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, b).unwrap();
    }
    let files = ConfigFiles::read(dir.path()).unwrap();
    load(&files).unwrap();
    // A key file that links out of the directory.
    let outside = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(outside.path(), pem()).unwrap();
    let key = dir.path().join("tenants/acme/keys/ci.pub");
    std::fs::remove_file(&key).unwrap();
    std::os::unix::fs::symlink(outside.path(), &key).unwrap();
    let e = ConfigFiles::read(dir.path()).unwrap_err();
    assert!(
        matches!(e, ConfigError::Symlink(ref p) if p == "tenants/acme/keys/ci.pub"),
        "{e}"
    );
}

#[test]
fn diff_lists_every_object_with_its_effect() {
    let key = pem();
    let desired = load_map(base(&key)).unwrap();
    assert!(diff(&desired, &desired).is_empty());
    let changes = diff(&PlatformConfig::default(), &desired);
    let objects: Vec<&str> = changes.iter().map(|c| c.object.as_str()).collect();
    assert!(objects.contains(&"tenant acme"), "{objects:?}");
    assert!(objects.contains(&"control policy"), "{objects:?}");
    assert!(
        objects.contains(&"tenant acme runtime policy"),
        "{objects:?}"
    );
    assert!(
        objects
            .iter()
            .any(|o| o.starts_with("tenant acme key sha256:")),
        "{objects:?}"
    );
    let operator = changes
        .iter()
        .find(|c| c.object == "operator alice")
        .unwrap();
    assert!(operator
        .manual
        .as_deref()
        .unwrap()
        .contains("zerofn operator add alice"));
    let policy = changes
        .iter()
        .find(|c| c.object == "tenant acme runtime policy")
        .unwrap();
    assert_eq!(
        policy.effects,
        vec!["`acme`'s runtime policy gains policy `public-invoke`"]
    );

    // A platform change the directory does not have: limits raised through the API.
    let mut running = desired.clone();
    running
        .tenants
        .get_mut("acme")
        .unwrap()
        .limits
        .rate_per_second = Some(5000);
    let changes = diff(&running, &desired);
    assert_eq!(changes.len(), 1);
    assert_eq!(changes[0].object, "tenant acme limits");
    assert_eq!(
        changes[0].effects,
        vec!["`acme`'s rate per second limit goes from 5000 to 100"]
    );
    // A key removed from the directory.
    let mut fewer = desired.clone();
    fewer.tenants.get_mut("acme").unwrap().keys.clear();
    let changes = diff(&desired, &fewer);
    assert_eq!(changes[0].kind, ChangeKind::Remove);
    assert!(changes[0].effects[0].contains("may no longer publish code into `acme`"));
}

#[test]
fn egress_grants_are_named_in_the_plan() {
    let manifest = |egress: &str| {
        format!(
            "name = \"checkout\"\ntenant = \"payments\"\ncomponent = \"checkout.wasm\"\nroutes = [\"/checkout\"]\n\n[egress]\nallow = [{egress}]\n"
        )
    };
    let f = |egress: &str| FunctionConfig {
        digest: "sha256:00".into(),
        manifest: manifest(egress),
    };
    let mut a = PlatformConfig::default();
    a.tenants.insert("payments".into(), TenantConfig::default());
    let mut b = a.clone();
    a.tenants
        .get_mut("payments")
        .unwrap()
        .functions
        .insert("checkout".into(), f(""));
    b.tenants
        .get_mut("payments")
        .unwrap()
        .functions
        .insert("checkout".into(), f("\"https://api.stripe.com\""));
    zerofn_manifest::Manifest::from_toml(&manifest("\"https://api.stripe.com\"")).unwrap();
    let changes = diff(&a, &b);
    assert_eq!(changes.len(), 1, "{changes:?}");
    assert!(
        changes[0]
            .effects
            .iter()
            .any(|e| e.starts_with("`payments/checkout` gains egress to https://api.stripe.com")),
        "{:?}",
        changes[0].effects
    );
}

#[test]
fn an_export_loads_back_to_what_it_was_made_from() {
    let key = pem();
    let config = load_map(base(&key)).unwrap();
    let files = export(&config, &BTreeMap::new()).unwrap();
    let again = load_map(files).unwrap();
    assert_eq!(again, config);
    assert!(diff(&config, &again).is_empty());
}

#[test]
fn the_schema_names_every_file_kind() {
    for needle in [
        "control.cedar",
        "operators/",
        "tenant.toml",
        "policies/*.cedar",
        "functions/<name>/",
        "zones/<name>.toml",
        "called_from",
        "mtls_cas",
        "API keys",
    ] {
        assert!(SCHEMA.contains(needle), "{needle}");
    }
}

#[test]
fn jwt_issuers_load_normalised_and_duplicates_are_refused() {
    let key = pem();
    let issuer = |name: &str| {
        format!(
            "[[jwt_issuers]]\nname = \"{name}\"\nissuer = \"https://login.example.com\"\naudience = \"acme\"\nalgorithms = [\"ES256\"]\nleeway_secs = 60\njwks = \"jwks/corp.json\"\n"
        )
    };
    let tenant = format!(
        "routes = [\"/acme/\"]\nkeys = [\"keys/ci.pub\"]\n\n{}",
        issuer("corp")
    );
    let mut m = base(&key);
    m.insert(
        "tenants/acme/tenant.toml".into(),
        tenant.clone().into_bytes(),
    );
    m.insert(
        "tenants/acme/jwks/corp.json".into(),
        b"{\n  \"keys\": []\n}\n".to_vec(),
    );
    let a = load_map(m.clone()).unwrap();
    // The same document formatted otherwise is the same configuration.
    m.insert(
        "tenants/acme/jwks/corp.json".into(),
        b"{\"keys\":[]}".to_vec(),
    );
    let b = load_map(m.clone()).unwrap();
    assert_eq!(a, b);
    assert_eq!(a.tenants["acme"].jwt_issuers["corp"].jwks, "{\"keys\":[]}");
    // Two issuers of one name.
    m.insert(
        "tenants/acme/tenant.toml".into(),
        format!("{tenant}\n{}", issuer("corp")).into_bytes(),
    );
    let e = load_map(m.clone()).unwrap_err().to_string();
    assert!(
        e.contains("tenants/acme/tenant.toml") && e.contains("listed twice"),
        "{e}"
    );
    // A JWKS that is not JSON names its file and line.
    m.insert("tenants/acme/tenant.toml".into(), tenant.into_bytes());
    m.insert(
        "tenants/acme/jwks/corp.json".into(),
        b"{\n  \"keys\": [,]\n}".to_vec(),
    );
    let e = load_map(m).unwrap_err().to_string();
    assert!(e.contains("tenants/acme/jwks/corp.json` line 2"), "{e}");
    // Added to a platform without it: the plan says who may now authenticate.
    let mut without = a.clone();
    without.tenants.get_mut("acme").unwrap().jwt_issuers.clear();
    let changes = diff(&without, &a);
    assert_eq!(changes.len(), 1);
    assert!(changes[0].effects[0].contains("may authenticate callers of `acme`'s functions"));
    // Single-use tokens: off unless asked for, kept through export, and a change in the plan.
    assert!(!a.tenants["acme"].jwt_issuers["corp"].require_jti);
    let mut jti = a.clone();
    if let Some(j) = jti
        .tenants
        .get_mut("acme")
        .and_then(|t| t.jwt_issuers.get_mut("corp"))
    {
        j.require_jti = true;
    }
    assert_eq!(diff(&a, &jti).len(), 1);
    let files = export(&jti, &BTreeMap::new()).unwrap();
    let toml = String::from_utf8(files["tenants/acme/tenant.toml"].clone()).unwrap();
    assert!(toml.contains("require_jti = true"), "{toml}");
    assert_eq!(load_map(files).unwrap(), jti);
}

#[test]
fn jwt_issuers_with_a_jwks_url_load_export_and_need_exactly_one_source() {
    let key = pem();
    let issuer = |source: &str| {
        format!(
            "routes = [\"/acme/\"]\nkeys = [\"keys/ci.pub\"]\n\n[[jwt_issuers]]\nname = \"corp\"\nissuer = \"https://login.example.com\"\naudience = \"acme\"\nalgorithms = [\"ES256\"]\nleeway_secs = 60\n{source}"
        )
    };
    let mut m = base(&key);
    m.insert(
        "tenants/acme/jwks/corp.json".into(),
        b"{\"keys\":[]}".to_vec(),
    );
    m.insert(
        "tenants/acme/tenant.toml".into(),
        issuer("jwks_url = \"https://login.example.com/jwks\"\n").into_bytes(),
    );
    let mut url_only = m.clone();
    url_only.remove("tenants/acme/jwks/corp.json");
    let a = load_map(url_only).unwrap();
    let corp = &a.tenants["acme"].jwt_issuers["corp"];
    assert_eq!(
        corp.jwks_url.as_deref(),
        Some("https://login.example.com/jwks")
    );
    // The fetched document is the platform's state, not configuration.
    assert_eq!(corp.jwks, "");
    // Exported as the URL, with no document file; it loads back the same.
    let files = export(&a, &BTreeMap::new()).unwrap();
    let toml = String::from_utf8(files["tenants/acme/tenant.toml"].clone()).unwrap();
    assert!(
        toml.contains("jwks_url = \"https://login.example.com/jwks\"") && !toml.contains("jwks ="),
        "{toml}"
    );
    assert!(!files.keys().any(|k| k.contains("/jwks/")), "{files:?}");
    assert_eq!(load_map(files).unwrap(), a);
    // A file issuer becoming a URL issuer is a change in the plan.
    let mut from_file = m.clone();
    from_file.insert(
        "tenants/acme/tenant.toml".into(),
        issuer("jwks = \"jwks/corp.json\"\n").into_bytes(),
    );
    let b = load_map(from_file).unwrap();
    assert_eq!(b.tenants["acme"].jwt_issuers["corp"].jwks_url, None);
    assert_eq!(diff(&b, &a).len(), 1);
    // Both, neither, or a URL that is not https: refused, naming the file.
    for (source, why) in [
        (
            "jwks = \"jwks/corp.json\"\njwks_url = \"https://login.example.com/jwks\"\n",
            "exactly one of `jwks` (a file) and `jwks_url`",
        ),
        ("", "exactly one of `jwks` (a file) and `jwks_url`"),
        (
            "jwks_url = \"http://login.example.com/jwks\"\n",
            "`jwks_url` must be an `https://` URL",
        ),
    ] {
        let mut bad = m.clone();
        bad.insert(
            "tenants/acme/tenant.toml".into(),
            issuer(source).into_bytes(),
        );
        let e = load_map(bad).unwrap_err().to_string();
        assert!(
            e.contains("tenants/acme/tenant.toml") && e.contains(why),
            "{source}: {e}"
        );
    }
}

#[test]
fn many_files_and_deep_trees_are_refused() {
    let mut m = BTreeMap::new();
    for i in 0..=MAX_FILES {
        m.insert(format!("f{i}"), Vec::new());
    }
    assert!(matches!(
        ConfigFiles::from_map(m),
        Err(ConfigError::TooManyFiles { .. })
    ));
    let dir = tempfile::tempdir().unwrap();
    let deep = (0..=MAX_DEPTH + 1).fold(dir.path().to_path_buf(), |p, i| p.join(format!("d{i}")));
    std::fs::create_dir_all(&deep).unwrap();
    assert!(matches!(
        ConfigFiles::read(dir.path()),
        Err(ConfigError::TooDeep { .. })
    ));
}

const PAYMENTS: &str = "# the payments zone\nname = \"payments\"\ntenants = [\"acme\"]\ncalls = [\"platform\"]\negress = [\"https://api.stripe.com\"]\n";
const PLATFORM: &str = "name = \"platform\"\ncalled_from = [\"payments\"]\n";

fn with_zones(key: &str) -> BTreeMap<String, Vec<u8>> {
    let mut m = base(key);
    m.insert("zones/payments.toml".into(), PAYMENTS.as_bytes().to_vec());
    m.insert("zones/platform.toml".into(), PLATFORM.as_bytes().to_vec());
    m
}

#[test]
fn zones_load_diff_and_export() {
    let key = pem();
    let c = load_map(with_zones(&key)).unwrap();
    assert_eq!(c.zones.len(), 2);
    assert_eq!(c.zones["payments"], PAYMENTS);

    // From no zones: both created, with their effects in words.
    let mut before = c.clone();
    before.zones.clear();
    let changes = diff(&before, &c);
    let zone_changes: Vec<&Change> = changes
        .iter()
        .filter(|ch| ch.object.starts_with("zone "))
        .collect();
    assert_eq!(zone_changes.len(), 2, "{changes:?}");
    let effects: Vec<&String> = zone_changes.iter().flat_map(|c| &c.effects).collect();
    for needle in [
        "zone `payments` is created",
        "tenant `acme` joins zone `payments`",
        "zone `payments` may now call zone `platform`",
        "zone `payments` egress ceiling gains https://api.stripe.com",
    ] {
        assert!(
            effects.iter().any(|e| e.contains(needle)),
            "{needle}: {effects:?}"
        );
    }
    assert!(zone_changes.iter().all(|c| c.kind == ChangeKind::Create));

    // A reformatted document is no change; a changed ceiling and a withdrawn call are.
    let mut same = c.clone();
    same.zones.insert(
        "payments".into(),
        "name = 'payments'\negress = ['https://api.stripe.com']\ncalls = ['platform']\ntenants = ['acme']\n".into(),
    );
    assert!(diff(&c, &same).is_empty(), "{:?}", diff(&c, &same));
    let mut edited = c.clone();
    edited.zones.insert(
        "payments".into(),
        "name = \"payments\"\ntenants = [\"acme\"]\negress = [\"https://api.example.com\"]\n"
            .into(),
    );
    let changes = diff(&c, &edited);
    assert_eq!(changes.len(), 1, "{changes:?}");
    assert_eq!(changes[0].kind, ChangeKind::Change);
    for needle in [
        "egress ceiling gains https://api.example.com",
        "egress ceiling loses https://api.stripe.com",
        "zone `payments` may no longer call zone `platform`",
    ] {
        assert!(
            changes[0].effects.iter().any(|e| e.contains(needle)),
            "{needle}: {changes:?}"
        );
    }
    // A removed zone.
    let mut fewer = edited.clone();
    fewer.zones.remove("payments");
    let changes = diff(&edited, &fewer);
    assert_eq!(changes.len(), 1);
    assert_eq!(changes[0].kind, ChangeKind::Remove);

    // Export writes the documents as they are; loading the export is no change.
    let files = export(&c, &BTreeMap::new()).unwrap();
    assert_eq!(files["zones/payments.toml"], PAYMENTS.as_bytes());
    let again = load_map(files).unwrap();
    assert_eq!(again, c);
}

#[test]
fn zone_errors_name_the_file_and_line() {
    let key = pem();
    for (path, text, line, problem) in [
        (
            "zones/payments.toml",
            "name = \"payments\"\ncolour = \"blue\"\n",
            Some(2),
            "unknown field `colour`",
        ),
        (
            "zones/payments.toml",
            "name = \"billing\"\n",
            Some(1),
            "declares zone `billing`",
        ),
        (
            "zones/payments.toml",
            "name = \"payments\"\ncalls = [\"nowhere\"]\n",
            Some(2),
            "`nowhere`, which does not exist",
        ),
        (
            "zones/payments.toml",
            "name = \"payments\"\ntenants = [\"ghost\"]\n",
            Some(2),
            "does not declare",
        ),
        (
            "zones/platform.toml",
            "name = \"platform\"\ncalled_from = [\"payments\"]\ntenants = [\"acme\"]\n",
            Some(3),
            "in at most one zone",
        ),
        (
            "zones/payments.toml",
            "name = \"payments\"\negress = [\"ftp://x\"]\n",
            None,
            "egress",
        ),
        (
            "zones/nested/x.toml",
            "name = \"x\"\n",
            None,
            "not part of the layout",
        ),
    ] {
        let mut m = with_zones(&key);
        m.insert(path.to_owned(), text.as_bytes().to_vec());
        let e = load_map(m).unwrap_err();
        match &e {
            ConfigError::Invalid {
                file,
                line: l,
                problem: p,
                span,
            } => {
                assert_eq!(file, path, "{e}");
                if line.is_some() {
                    assert_eq!(*l, line, "{e}");
                    // The span the CLI underlines is on that line.
                    let start = span.clone().expect("a span where the line is known").start;
                    let line_of_span = text[..start].matches('\n').count() + 1;
                    assert_eq!(Some(line_of_span), line, "{e}: {span:?}");
                }
                assert!(p.contains(problem), "{e}");
            }
            other => panic!("{path}: {other}"),
        }
    }
}

#[test]
fn operators_with_keys_are_enrolled_rekeyed_and_revoked_by_apply() {
    let key = pem();
    let other = pem();
    let mut m = base(&key);
    m.insert(
        "operators/bob.toml".into(),
        b"public_key = \"keys/bob.pem\"\n".to_vec(),
    );
    m.insert("operators/keys/bob.pem".into(), key.clone().into_bytes());
    let desired = load_map(m.clone()).unwrap();
    assert_eq!(
        desired.operators["bob"].public_key.as_deref(),
        Some(key.as_str())
    );
    assert_eq!(desired.operators["alice"].public_key, None);
    // Not enrolled yet: bob is issued a certificate by apply, alice stays manual.
    let mut current = desired.clone();
    current.operators.clear();
    let changes = diff(&current, &desired);
    let bob = changes.iter().find(|c| c.object == "operator bob").unwrap();
    assert_eq!(bob.kind, ChangeKind::Create);
    assert!(bob.manual.is_none(), "{bob:?}");
    assert!(bob.effects[0].contains("sha256:"), "{bob:?}");
    let alice = changes
        .iter()
        .find(|c| c.object == "operator alice")
        .unwrap();
    assert!(alice.manual.is_some());
    // Enrolled with another key: re-keyed (revoked and issued again).
    current.operators = desired.operators.clone();
    if let Some(b) = current.operators.get_mut("bob") {
        b.public_key = Some(other.clone());
    }
    let changes = diff(&current, &desired);
    assert_eq!(changes.len(), 1, "{changes:?}");
    assert_eq!(changes[0].kind, ChangeKind::Change);
    assert!(changes[0].manual.is_none());
    // An operator the platform has but the directory does not declare: revoked by apply.
    current.operators = desired.operators.clone();
    current
        .operators
        .insert("carol".into(), OperatorConfig::default());
    let changes = diff(&current, &desired);
    assert_eq!(changes.len(), 1, "{changes:?}");
    assert_eq!(changes[0].object, "operator carol");
    assert_eq!(changes[0].kind, ChangeKind::Remove);
    assert!(changes[0].manual.is_none());
    // A declared operator whose key the platform matches: no change. Export writes the
    // key beside the file, and the export loads back to the same operators.
    current.operators = desired.operators.clone();
    assert!(diff(&current, &desired).is_empty());
    let files = export(&desired, &BTreeMap::new()).unwrap();
    assert!(files.contains_key("operators/bob.pem"));
    let mut again = files.clone();
    again.retain(|p, _| p.starts_with("operators/") || p == "control.cedar");
    let back = load_map(again).unwrap();
    assert_eq!(back.operators, desired.operators);
    // A key that is not a P-256 public key is refused, naming the key file.
    m.insert("operators/keys/bob.pem".into(), b"not a key".to_vec());
    let e = load_map(m).unwrap_err().to_string();
    assert!(e.contains("operators/keys/bob.pem"), "{e}");
}

#[test]
fn mtls_cas_load_export_and_diff() {
    let key = pem();
    let ca = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n";
    let tenant = "routes = [\"/acme/\"]\nkeys = [\"keys/ci.pub\"]\n\n[[mtls_cas]]\nname = \"partners\"\nca = \"cas/partners.pem\"\n";
    let mut m = base(&key);
    m.insert(
        "tenants/acme/tenant.toml".into(),
        tenant.as_bytes().to_vec(),
    );
    m.insert(
        "tenants/acme/cas/partners.pem".into(),
        ca.as_bytes().to_vec(),
    );
    let a = load_map(m.clone()).unwrap();
    assert_eq!(a.tenants["acme"].mtls_cas["partners"], ca);
    // Export writes the file beside tenant.toml and loads back the same.
    let files = export(&a, &BTreeMap::new()).unwrap();
    assert_eq!(files["tenants/acme/cas/partners.pem"], ca.as_bytes());
    let again = load_map(files).unwrap();
    assert_eq!(again, a);
    // A CA added to a platform without it: the plan says who may now authenticate.
    let mut without = a.clone();
    without.tenants.get_mut("acme").unwrap().mtls_cas.clear();
    let changes = diff(&without, &a);
    assert_eq!(changes.len(), 1, "{changes:?}");
    assert!(
        changes[0].effects[0].contains("`mtls:partners`"),
        "{changes:?}"
    );
    assert_eq!(diff(&a, &without).len(), 1);
    // Twice under one name; a file that is not in the directory.
    m.insert(
        "tenants/acme/tenant.toml".into(),
        format!("{tenant}\n[[mtls_cas]]\nname = \"partners\"\nca = \"cas/partners.pem\"\n")
            .into_bytes(),
    );
    let e = load_map(m.clone()).unwrap_err().to_string();
    assert!(e.contains("listed twice"), "{e}");
    m.insert(
        "tenants/acme/tenant.toml".into(),
        tenant
            .replace("cas/partners.pem", "cas/missing.pem")
            .into_bytes(),
    );
    let e = load_map(m).unwrap_err().to_string();
    assert!(e.contains("cas/missing.pem"), "{e}");
}
