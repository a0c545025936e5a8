//! What each file of the directory may contain, as `zerofn config schema` prints it.

/// The layout and every file's keys. Kept beside the loader's types: a key added there is
/// added here (the unit tests load the example below).
pub const SCHEMA: &str = r#"zerofn configuration directory (see docs/config-dir.md)

control.cedar                         the control policy (Cedar, the platform schema);
                                      absent: the platform default (nothing but the token)
operators/<name>.toml                 an operator who may hold a control-API certificate:
    public_key = "alice.pem"          optional: their P-256 public key (PEM, path relative
                                      to the file); apply issues them a certificate for it
                                      when they hold none valid (or one for another key);
                                      without it, enrol with `zerofn operator add`; an
                                      operator not declared has their certificates revoked
tenants/<tenant>/tenant.toml          the tenant:
    routes = ["/acme/"]               route prefixes the tenant owns (required)
    keys = ["keys/ci.pub"]            trusted signing keys: PEM files (paths relative
                                      to tenant.toml, inside the directory)
    [limits]                          all optional; absent = no limit
    rate_per_second = 100
    burst = 200
    max_concurrency = 10
    [admission]
    policy = "admission.cedar"        Cedar admission policy file (absent: admit what
                                      verifies)
    severity_threshold = "high"       critical | high | medium | low | unknown
    require_sbom = false
    [[identities]]                    keyless signers (Sigstore)
    certificate_identity = "..."      or certificate_identity_regexp = "..."
    oidc_issuer = "https://..."
    trusted_root = "roots/trusted_root.json"
    [[jwt_issuers]]                   callers authenticated by JWT (`jwt:<name>`)
    name = "corp"
    issuer = "https://..."
    audience = "..."
    algorithms = ["ES256"]
    leeway_secs = 60
    require_jti = true                optional: each token's `jti` accepted once
    jwks = "jwks/corp.json"           the JWKS document (public keys only), or:
    jwks_url = "https://..."          where the platform fetches it (exactly one of the two)
    [[mtls_cas]]                      callers authenticated by client certificate
    name = "partners"                 (`mtls:<name>`; not `spiffe`, the platform bundle)
    ca = "cas/partners.pem"           its CA certificates, PEM (never a key)
tenants/<tenant>/policies/*.cedar     the tenant's runtime policy, every file in name
                                      order, as one policy set
tenants/<tenant>/functions/<name>/    a function, as `zerofn deploy DIR` reads it:
    zerofn.toml                       the manifest (tenant and name must match the path)
    <component>.wasm                  the component the manifest names (its sha256 is the
                                      function's digest)
    <component>.wasm.sigstore.json    its signature bundle
    *.sigstore.json, *.intoto.jsonl   attestations (the signed manifest among them)
zones/<name>.toml                     a trust zone (docs/zones.md); applied as the whole
                                      set: a zone not in the directory is deleted
    name = "payments"                 must match the file name (required)
    tenants = ["acme"]                tenants it groups; each declared under tenants/
                                      and in at most one zone
    calls = ["platform"]              zones its functions may call (the callee's zone
                                      must list this one in `called_from`)
    called_from = ["edge"]            zones whose functions may call its functions
    egress = ["https://api.stripe.com"]
                                      the egress ceiling over its functions' grants
    signers = ["sha256:<hex>"]        key ids or certificate SANs, one of which must
                                      have signed code deployed into the zone
README.md                             anywhere; ignored

Not in the layout: API keys (secrets: the platform keeps only a salted hash and shows a
key once, so a directory would have to hold the key itself).
Every TOML file refuses unknown keys; every file must be claimed by the layout or
referenced by a file that is. Limits: 1 MiB per text file, 64 MiB per component,
256 MiB and 10,000 files in all, 8 directories deep; no symbolic links.
"#;
