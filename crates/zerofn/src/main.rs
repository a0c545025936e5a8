#![forbid(unsafe_code)]
//! The `zerofn` command: runs the platform (`up`), makes and uses signing
//! keys, and drives the control API. Argument parsing and output only;
//! everything else lives in the library crates.

mod admission;
mod attest;
mod audit;
mod callers;
mod client;
mod configdir;
mod dev;
mod diagnose;
mod layer;
mod logs;
mod mtls;
mod object;
mod operator;
mod policy;
mod progress;
mod project;
mod queue;
mod scan;
mod verify;
mod versions;
mod zone;

use std::net::SocketAddr;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use clap::{Args, Parser, Subcommand};
use http::Method;
use zerofn_admission::{sign_artifact, PublicKey, SigningKey};

use crate::client::ApiClient;

/// The process allocator. A request allocates and frees many small buffers on
/// the gateway's worker threads and the audit writer's (headers, the audit
/// record, its JSON and hashes); glibc malloc spent about 15% of the platform's
/// CPU on them at 16 connections (perf, BENCHMARKS.md "The allocator"), much of
/// it in `malloc_consolidate` and arena locking across threads. mimalloc's
/// per-thread free lists cost a fraction of that.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;
use zerofn_api as api_types;

#[derive(Parser)]
#[command(
    name = "zerofn",
    version,
    about = "Zero-trust serverless platform for signed WebAssembly functions"
)]
struct Cli {
    /// Data directory of the platform (database, code cache, operator token).
    #[arg(long, global = true, env = "ZEROFN_DATA_DIR")]
    data_dir: Option<PathBuf>,
    /// Operator client certificate (PEM) to authenticate to an https:// control
    /// API with, instead of the operator token.
    #[arg(long, global = true, env = "ZEROFN_CLIENT_CERT")]
    client_cert: Option<PathBuf>,
    /// Private key (PEM) of --client-cert.
    #[arg(long, global = true, env = "ZEROFN_CLIENT_KEY")]
    client_key: Option<PathBuf>,
    /// Platform CA bundle (PEM) to verify an https:// control API with
    /// (default: identity/ca.pem in the data directory).
    #[arg(long, global = true, env = "ZEROFN_CA_BUNDLE")]
    ca_bundle: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the platform: public gateway and control API.
    Up(Box<UpArgs>),
    /// Print a completion script for SHELL, e.g. `zerofn completions bash >
    /// ~/.local/share/bash-completion/completions/zerofn`.
    Completions {
        /// bash, zsh, fish, elvish or powershell.
        shell: clap_complete::Shell,
    },
    /// Write a new ECDSA P-256 signing key pair: KEY (0600) and KEY.pub.
    Keygen {
        #[arg(long)]
        out: PathBuf,
    },
    /// Sign a function directory (its component and its manifest, at a version), or one
    /// artifact: writes ARTIFACT.sigstore.json (Sigstore bundle v0.3).
    ///
    /// For a directory with a zerofn.toml, writes the component's bundle and
    /// zerofn.manifest.sigstore.json: an in-toto statement about the component whose
    /// predicate is the manifest's signed form at VERSION. A deploy needs both.
    Sign {
        /// A function directory (with zerofn.toml), or a file.
        artifact: PathBuf,
        /// The signing key (ECDSA P-256, PEM). Without it, a directory's manifest predicate
        /// can still be written with `--predicate` for a keyless signer (cosign).
        #[arg(long)]
        key: Option<PathBuf>,
        /// Where to write a file's bundle (default ARTIFACT.sigstore.json).
        #[arg(long)]
        out: Option<PathBuf>,
        /// The manifest version to sign (a directory only): 1 or more, higher for every
        /// release; default the manifest's `version`.
        #[arg(long)]
        version: Option<u64>,
        /// Also write the manifest predicate to this file (a directory only), to sign it
        /// keylessly: `cosign attest-blob --type https://zerofn.dev/attestations/manifest/v1
        /// --predicate FILE ...`.
        #[arg(long)]
        predicate: Option<PathBuf>,
        /// Print what was written as one JSON object instead of lines of text.
        #[arg(long)]
        json: bool,
    },
    /// Write a new function directory (manifest, source, README) from a template.
    New(project::NewArgs),
    /// Build the component of a function directory (default: the current one).
    Build(project::BuildArgs),
    /// Build, sign with a development key, deploy, and redeploy on every change.
    Dev(dev::DevArgs),
    /// Manage tenants and the keys allowed to sign for them.
    #[command(subcommand)]
    Tenant(TenantCommand),
    /// Publish, list and delete layers: shared library components functions
    /// pin by digest in their manifest's `[layers]`.
    #[command(subcommand)]
    Layer(layer::LayerCommand),
    /// Durable queues of a tenant: create, publish, peek, stats, redrive, purge. Functions
    /// bound with `[[triggers]] queue = "NAME"` receive the messages as CloudEvents.
    #[command(subcommand)]
    Queue(queue::QueueCommand),
    /// The schedules of a tenant's functions (`[[triggers]] schedule`) with their last and
    /// next runs.
    #[command(subcommand)]
    Schedule(queue::ScheduleCommand),
    /// Object storage of a tenant: put, get, delete, list objects in buckets. Functions
    /// bound with `[[triggers]] bucket = "NAME"` receive its object events as CloudEvents.
    #[command(subcommand)]
    Object(object::ObjectCommand),
    /// Deploy the function in DIR (zerofn.toml, component, bundle, and the
    /// attestations beside them: *.intoto.jsonl and other *.sigstore.json); DIR may
    /// also be the path of the function's zerofn.toml.
    Deploy {
        dir: PathBuf,
        /// Deploy a manifest version below the highest deployed for the function, for
        /// this reason (audited; needs `deploy.rollback` on the tenant).
        #[arg(long, value_name = "REASON")]
        allow_rollback: Option<String>,
        /// Print the platform's answer as JSON (one object) instead of a line of text.
        #[arg(long)]
        json: bool,
    },
    /// List deployed functions.
    Functions {
        #[arg(long)]
        json: bool,
    },
    /// Remove a deployed function.
    Undeploy {
        tenant: String,
        name: String,
        /// Print the platform's answer as JSON (one object).
        #[arg(long)]
        json: bool,
    },
    /// A function's numbered deploys, newest first (deploy number, manifest version, who,
    /// when, digest, whether a rollback to it is possible).
    Versions(versions::VersionsArgs),
    /// Deploy an earlier version of a function again (`zerofn versions` lists them): its
    /// kept request goes through admission anew and becomes the next version. Needs
    /// `deploy.rollback` on the tenant.
    Rollback(versions::RollbackArgs),
    /// Inspect, query and verify the audit log.
    #[command(subcommand)]
    Audit(AuditCommand),
    /// What a tenant's functions wrote to stdout and stderr, by invocation.
    Logs(logs::LogsArgs),
    /// Workload identities (SPIFFE X.509-SVIDs) of deployed functions.
    #[command(subcommand)]
    Svid(SvidCommand),
    /// Verify a Sigstore bundle over an artifact, offline (like `cosign verify-blob`).
    Verify(verify::VerifyArgs),
    /// Sign an in-toto attestation about an artifact, or verify one (`attest verify`).
    Attest(attest::AttestArgs),
    /// Match a function's CycloneDX SBOM against the local OSV vulnerability database.
    Scan(scan::ScanArgs),
    /// The configuration directory's layout (`zerofn config schema`).
    #[command(subcommand)]
    Config(configdir::ConfigCommand),
    /// What applying a configuration directory would change, per object, with its effect;
    /// exit 0 when nothing would change, 2 when something would, 1 on error.
    Plan(configdir::PlanArgs),
    /// Apply a configuration directory, or a plan saved with `zerofn plan --out`, in one
    /// transaction (a saved plan only if the platform has not changed since).
    Apply(configdir::ApplyArgs),
    /// Every difference between a configuration directory and the running platform;
    /// exit 0 when none, 2 when there is drift, 1 on error.
    Drift(configdir::DriftArgs),
    /// Write the running configuration as a configuration directory.
    Export(configdir::ExportArgs),
    /// Manage the local OSV vulnerability database.
    #[command(subcommand)]
    Vulndb(scan::VulndbCommand),
    /// Tenants' admission rules, and every admission check without deploying.
    #[command(subcommand)]
    Admission(admission::AdmissionCommand),
    /// Runtime Cedar policies: show a function's, set a tenant's.
    #[command(subcommand)]
    Policy(policy::PolicyCommand),
    /// Granted versus used permissions per function, from the audit log,
    /// with a least-privilege suggestion in manifest form.
    AccessAnalyzer(policy::AnalyzerArgs),
    /// Operators' client certificates and the control policy.
    #[command(subcommand)]
    Operator(operator::OperatorCommand),
    /// Trust zones: groups of tenants with call, egress and signer ceilings
    /// (`zone set|list|show|delete`; docs/zones.md).
    #[command(subcommand)]
    Zone(zone::ZoneCommand),
    /// External callers' JWT issuers and mTLS CAs (`auth jwt|mtls add|list|remove`).
    #[command(subcommand)]
    Auth(callers::AuthCommand),
    /// API keys for external callers (`apikey create|list|revoke`).
    #[command(subcommand)]
    Apikey(callers::ApiKeyCommand),
}

#[derive(Args)]
struct UpArgs {
    #[arg(long, default_value = "127.0.0.1:8080")]
    gateway_addr: SocketAddr,
    #[arg(long, default_value = "127.0.0.1:8081")]
    api_addr: SocketAddr,
    /// Also deploy the example functions, signed with a demo key.
    #[arg(long)]
    demo: bool,
    /// Where the built example functions are (with --demo).
    #[arg(long, default_value = "examples/build")]
    demo_dir: PathBuf,
    /// Function instances that may run at once.
    #[arg(long, default_value_t = 256)]
    max_instances: u32,
    /// Function instances one tenant may run at once; its further requests
    /// wait while other tenants are served (default: half of
    /// --max-instances, rounded up).
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..))]
    max_instances_per_tenant: Option<u32>,
    /// Open connections per listener (gateway, control API); more are
    /// closed at once.
    #[arg(long, default_value_t = 10_000, value_parser = clap::value_parser!(u64).range(1..))]
    max_connections: u64,
    /// Open connections per client address, per listener.
    #[arg(long, default_value_t = 512, value_parser = clap::value_parser!(u64).range(1..))]
    max_connections_per_ip: u64,
    /// Invocations one public request may cause in all, through
    /// function-to-function calls, itself included.
    #[arg(long, default_value_t = 16, value_parser = clap::value_parser!(u32).range(1..=1024))]
    max_invocations_per_request: u32,
    /// DNS server the egress gateway asks for functions' outbound hosts
    /// (IP:PORT); default: the first nameserver in /etc/resolv.conf.
    #[arg(long, value_name = "IP:PORT")]
    egress_dns: Option<SocketAddr>,
    /// PEM file of CA certificates trusted for functions' outbound HTTPS,
    /// beside Mozilla's roots.
    #[arg(long, value_name = "FILE")]
    egress_ca_bundle: Option<PathBuf>,
    /// SPIFFE trust domain of the functions' identities.
    #[arg(long, default_value = "zerofn.local")]
    trust_domain: String,
    /// Lifetime of each function's X.509-SVID in seconds (renewed at half).
    #[arg(long, default_value_t = 300, value_parser = clap::value_parser!(u64).range(10..=86400))]
    svid_ttl_secs: u64,
    /// When an audit record counts as appended: `disk` (fsync'd before the
    /// action proceeds; survives power loss) or `process` (in the log file;
    /// survives the platform being killed, synced to disk every
    /// --audit-flush-ms).
    #[arg(long, value_enum, default_value_t = AuditDurabilityArg::Disk)]
    audit_durability: AuditDurabilityArg,
    /// With --audit-durability process: how often committed records are
    /// synced to disk, in milliseconds (the most a power loss can cost).
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u64).range(1..=60000))]
    audit_flush_ms: u64,
    /// Serve the control API over HTTPS (certificate from the platform CA) and
    /// accept operators' client certificates beside the token.
    #[arg(long)]
    control_tls: bool,
    /// Serve the gateway over HTTPS (TLS 1.2/1.3, HTTP/1.1 and HTTP/2) with
    /// this PEM certificate chain, end-entity first; reloaded when it
    /// changes (or on SIGHUP). Needs --gateway-tls-key.
    #[arg(long, requires = "gateway_tls_key")]
    gateway_tls_cert: Option<PathBuf>,
    /// The PEM private key of --gateway-tls-cert.
    #[arg(long, requires = "gateway_tls_cert")]
    gateway_tls_key: Option<PathBuf>,
    /// Time a client has to send a complete request head, in milliseconds
    /// (and, over TLS, to complete the handshake); later: 408.
    #[arg(long, default_value_t = 10_000, value_parser = clap::value_parser!(u64).range(100..=600_000))]
    header_read_timeout_ms: u64,
    /// Time a client has to send a complete request body, in milliseconds;
    /// later: 408.
    #[arg(long, default_value_t = 30_000, value_parser = clap::value_parser!(u64).range(100..=3_600_000))]
    body_read_timeout_ms: u64,
    /// KiB of stored stdout/stderr lines kept per function (`zerofn logs`);
    /// the oldest lines go first.
    #[arg(long, default_value_t = 1024, value_parser = clap::value_parser!(u64).range(1..=1_048_576))]
    log_max_kib_per_function: u64,
    /// Seconds stored stdout/stderr lines are kept (default 7 days).
    #[arg(long, default_value_t = 604_800, value_parser = clap::value_parser!(u64).range(60..=31_536_000))]
    log_max_age_secs: u64,
    /// Versions of each function whose request (component, signatures, manifest) is kept,
    /// so `zerofn rollback` can deploy them again; older versions stay listed by
    /// `zerofn versions` without it.
    #[arg(long, default_value_t = zerofn_server::DEFAULT_KEEP_VERSIONS, value_parser = clap::value_parser!(u32).range(1..=1000))]
    keep_versions: u32,
    /// Also serve Prometheus metrics, unauthenticated, at `http://ADDR/metrics` (for
    /// example 127.0.0.1:9464; keep it off public interfaces). The control API serves
    /// `GET /metrics` to operators allowed `audit.read` either way.
    #[arg(long, value_name = "ADDR")]
    metrics_addr: Option<std::net::SocketAddr>,
    /// How the platform's own log lines (stderr) are written: `text` for people,
    /// `json` for log collectors (one JSON object per line).
    #[arg(long, value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
    /// Apply this configuration directory at start, before serving (see
    /// docs/config-dir.md); a directory that does not apply stops the start.
    #[arg(long, value_name = "DIR")]
    config_dir: Option<PathBuf>,
    /// Refuse configuration changes through the control API and the CLI other than
    /// `zerofn apply` (GitOps): the directory is the only way in.
    #[arg(long)]
    locked_config: bool,
    /// Export OpenTelemetry traces of every request (OTLP/HTTP, protobuf) to this
    /// collector, e.g. http://127.0.0.1:4318: spans are posted to URL/v1/traces (or to
    /// URL itself when it ends in /v1/traces). Off by default. Export runs in the
    /// background and never slows or fails a request (see docs/tracing.md).
    #[arg(long, value_name = "URL")]
    otlp_endpoint: Option<String>,
    /// With --otlp-endpoint: the share of new traces recorded, from 0 to 1 (default
    /// 0.05). A request carrying a valid W3C `traceparent` follows its caller's
    /// sampled flag.
    #[arg(
        long,
        default_value_t = zerofn_server::DEFAULT_SAMPLE_RATIO,
        requires = "otlp_endpoint",
        value_name = "RATIO"
    )]
    otlp_sample_ratio: f64,
    /// With --otlp-endpoint: new traces recorded each second whatever the ratio
    /// decides (the first of each second), so a function with little traffic is
    /// still traced; 0 leaves it to the ratio.
    #[arg(
        long,
        default_value_t = zerofn_server::DEFAULT_SAMPLE_MIN_PER_SECOND,
        requires = "otlp_endpoint",
        value_name = "N"
    )]
    otlp_sample_min_per_second: u32,
}

/// The format of the platform's own log lines.
#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum AuditDurabilityArg {
    Disk,
    Process,
}

#[derive(Subcommand)]
enum TenantCommand {
    /// Create a tenant trusting one or more signing keys.
    Create {
        tenant: String,
        #[arg(long = "signing-key", required = true)]
        signing_keys: Vec<PathBuf>,
        /// A route prefix the tenant owns (`/shop/...`, or an exact path
        /// `/shop`); repeatable. Default: `/<tenant>/...`.
        #[arg(long = "route-prefix")]
        route_prefixes: Vec<String>,
    },
    /// Show a tenant's route prefixes, or replace them with --set.
    Routes {
        tenant: String,
        /// The tenant's new route prefixes, replacing all of them.
        #[arg(long, num_args = 1..)]
        set: Option<Vec<String>>,
        #[arg(long)]
        json: bool,
    },
    /// Show a tenant's invocation limits, or replace them (across all its
    /// functions; needs tenant.manage on the platform). Any of --rate,
    /// --burst, --max-concurrency replaces all three; --clear removes them.
    Limits {
        tenant: String,
        /// Requests per second across the tenant's functions (over it: 429).
        #[arg(long, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
        rate: Option<u32>,
        /// Requests allowed at once above the rate (default: the rate).
        #[arg(long, requires = "rate", value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
        burst: Option<u32>,
        /// Invocations in flight at once across the tenant's functions (over it: 503).
        #[arg(long, value_parser = clap::value_parser!(u32).range(1..=100_000))]
        max_concurrency: Option<u32>,
        /// Remove the tenant's limits.
        #[arg(long, conflicts_with_all = ["rate", "burst", "max_concurrency"])]
        clear: bool,
        #[arg(long)]
        json: bool,
    },
    /// Trust one more signing key for a tenant.
    AddKey { tenant: String, key: PathBuf },
    /// Stop trusting a key (by key id, `sha256:<hex>`).
    RemoveKey { tenant: String, key_id: String },
    /// Trust a keyless (Sigstore/Fulcio) signing identity for a tenant.
    AddIdentity(admission::AddIdentityArgs),
    /// Stop trusting a keyless signing identity (by the id `admission show` lists).
    RemoveIdentity { tenant: String, id: String },
    /// List tenants.
    List {
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand)]
enum SvidCommand {
    /// Show a function's SPIFFE ID, current serial and expiry.
    Show {
        tenant: String,
        name: String,
        /// Print the certificate (PEM) instead.
        #[arg(long)]
        pem: bool,
    },
    /// Revoke a function's current SVID: refused at once everywhere the
    /// platform verifies identities (a new one is issued at the next rotation).
    Revoke { tenant: String, name: String },
}

#[derive(Subcommand)]
enum AuditCommand {
    /// Walk the hash chain and recompute the Merkle tree against the latest
    /// signed checkpoint; exit non-zero naming the first problem.
    Verify(audit::VerifyArgs),
    /// Show the newest records.
    Tail {
        #[arg(short = 'n', default_value_t = 20)]
        n: u32,
        #[arg(long)]
        json: bool,
    },
    /// Records across functions matching every filter given, newest first.
    Query(audit::QueryArgs),
    #[command(flatten)]
    Tree(audit::TreeCommand),
}

fn main() -> ExitCode {
    use clap::{CommandFactory as _, FromArgMatches as _};
    let matches = Cli::command().get_matches();
    let json = wants_json(&matches);
    let cli = match Cli::from_arg_matches(&matches) {
        Ok(cli) => cli,
        Err(e) => e.exit(),
    };
    if !matches!(cli.command, Command::Up(_)) {
        // Client commands print and exit: `zerofn audit tail | head` should
        // end quietly when the reader goes away, as Unix tools do, instead
        // of panicking in `println!` (Rust ignores SIGPIPE). The server
        // keeps ignoring it: a peer closing a socket must never kill it.
        sigpipe::reset();
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        // `plan` and `drift` found differences: their own exit status, nothing more to say.
        Err(e) if e.downcast_ref::<configdir::Differences>().is_some() => ExitCode::from(2),
        Err(e) => {
            if JSON_LOGS.load(std::sync::atomic::Ordering::Relaxed) {
                // `zerofn up --log-format json`: every stderr line stays a JSON object.
                tracing::error!(error = %one_line(&e), "zerofn up failed");
            } else {
                eprintln!("{}", error_text(&e, json));
            }
            ExitCode::FAILURE
        }
    }
}

/// Whether the command run was given `--json` (whichever subcommand defines it): its
/// errors are then JSON too.
fn wants_json(matches: &clap::ArgMatches) -> bool {
    let mut m = matches;
    loop {
        if let Ok(Some(true)) = m.try_get_one::<bool>("json") {
            return true;
        }
        match m.subcommand() {
            Some((_, sub)) => m = sub,
            None => return false,
        }
    }
}

/// How a failed command reports `e` on standard error. A problem in a file the CLI read
/// is drawn as rustc does (the line, the place, help); any other error is one line. With
/// `--json`, one JSON object in the control API's error shape (`{"error": {"message"}}`),
/// with the file, line and column of a file's problem.
fn error_text(e: &anyhow::Error, json: bool) -> String {
    let file = e.downcast_ref::<diagnose::FileDiagnostic>();
    match (file, json) {
        (Some(d), true) => d.to_json().to_string(),
        (Some(d), false) => diagnose::render(d, diagnose::stderr_wants_colour()),
        (None, true) => serde_json::json!({ "error": { "message": one_line(e) } }).to_string(),
        (None, false) => format!("error: {}", one_line(e)),
    }
}

/// Set once `zerofn up --log-format json` installed its logger.
static JSON_LOGS: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// The error and its causes on one line, without control characters.
fn one_line(e: &anyhow::Error) -> String {
    format!("{e:#}").replace(['\n', '\r'], " ")
}

async fn run(cli: Cli) -> Result<()> {
    let data_dir = cli.data_dir.unwrap_or_else(zerofn_server::default_data_dir);
    client::configure(client::ClientOptions {
        client_cert: cli.client_cert,
        client_key: cli.client_key,
        ca_bundle: cli.ca_bundle,
    });
    match cli.command {
        Command::Up(args) => up(data_dir, *args).await,
        Command::Completions { shell } => {
            use clap::CommandFactory as _;
            clap_complete::generate(shell, &mut Cli::command(), "zerofn", &mut std::io::stdout());
            Ok(())
        }
        Command::Keygen { out } => keygen(&out),
        Command::Sign {
            artifact,
            key,
            out,
            version,
            predicate,
            json,
        } => {
            let signed = if artifact.is_dir() {
                if out.is_some() {
                    bail!("`--out` names a file's bundle; a directory's bundles are written beside its zerofn.toml");
                }
                sign_dir(&artifact, key.as_deref(), version, predicate.as_deref())?
            } else {
                if version.is_some() || predicate.is_some() {
                    bail!("`--version` and `--predicate` sign a manifest: give the function's directory, not `{}`", artifact.display());
                }
                let Some(key) = key else {
                    bail!("`--key KEY` is needed to sign `{}`", artifact.display());
                };
                sign(&artifact, &key, out)?
            };
            signed.print(json)
        }
        Command::New(args) => project::new(args),
        Command::Build(args) => project::build(args),
        Command::Dev(args) => dev::dev(&data_dir, args).await,
        Command::Tenant(cmd) => tenant(&data_dir, cmd).await,
        Command::Config(cmd) => configdir::config(cmd),
        Command::Plan(args) => configdir::plan(&data_dir, args).await,
        Command::Apply(args) => configdir::apply(&data_dir, args).await,
        Command::Drift(args) => configdir::drift(&data_dir, args).await,
        Command::Export(args) => configdir::export(&data_dir, args).await,
        Command::Layer(cmd) => layer::run(&data_dir, cmd).await,
        Command::Queue(cmd) => queue::run(&data_dir, cmd).await,
        Command::Schedule(cmd) => queue::schedules(&data_dir, cmd).await,
        Command::Object(cmd) => object::run(&data_dir, cmd).await,
        Command::Deploy {
            dir,
            allow_rollback,
            json,
        } => deploy(&data_dir, &dir, allow_rollback, json).await,
        Command::Functions { json } => functions(&data_dir, json).await,
        Command::Undeploy { tenant, name, json } => {
            let api = ApiClient::discover(&data_dir)?;
            let undeployed: api_types::Undeployed = api
                .fetch(Method::DELETE, &format!("/v1/functions/{tenant}/{name}"))
                .await?;
            if json {
                println!("{}", serde_json::to_string(&undeployed)?);
            } else {
                println!("undeployed {tenant}/{name}");
            }
            Ok(())
        }
        Command::Versions(args) => versions::versions(&data_dir, args).await,
        Command::Rollback(args) => versions::rollback(&data_dir, args).await,
        Command::Audit(cmd) => audit(&data_dir, cmd).await,
        Command::Logs(args) => logs::run(&data_dir, args).await,
        Command::Svid(SvidCommand::Show { tenant, name, pem }) => {
            let api = ApiClient::discover(&data_dir)?;
            let svid: api_types::Svid = api
                .fetch(Method::GET, &format!("/v1/functions/{tenant}/{name}/svid"))
                .await?;
            if pem {
                print!("{}", svid.certificate);
            } else {
                println!(
                    "{}\tserial {}\texpires {}",
                    svid.spiffe_id, svid.serial, svid.not_after
                );
            }
            Ok(())
        }
        Command::Verify(args) => verify::run(args),
        Command::Attest(args) => attest::run(args),
        Command::Scan(args) => scan::scan(&data_dir, args),
        Command::Vulndb(cmd) => scan::vulndb(&data_dir, cmd),
        Command::Admission(cmd) => admission::run(&data_dir, cmd).await,
        Command::Policy(cmd) => policy::run(&data_dir, cmd).await,
        Command::AccessAnalyzer(args) => policy::analyze(&data_dir, args).await,
        Command::Svid(SvidCommand::Revoke { tenant, name }) => {
            let api = ApiClient::discover(&data_dir)?;
            let revoked: api_types::Revoked = api
                .fetch(
                    Method::POST,
                    &format!("/v1/functions/{tenant}/{name}/svid/revoke"),
                )
                .await?;
            println!("revoked serial {} of {tenant}/{name}", revoked.revoked);
            Ok(())
        }
        Command::Operator(cmd) => operator::run(&data_dir, cmd).await,
        Command::Zone(cmd) => zone::run(&data_dir, cmd).await,
        Command::Auth(cmd) => callers::run_auth(&data_dir, cmd).await,
        Command::Apikey(cmd) => callers::run_apikey(&data_dir, cmd).await,
    }
}

fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Text => builder.try_init(),
        // One JSON object per line: time, level, target, message and fields at the top
        // level (`flatten_event`), the span list for context.
        LogFormat::Json => {
            JSON_LOGS.store(true, std::sync::atomic::Ordering::Relaxed);
            builder
                .json()
                .flatten_event(true)
                .with_current_span(false)
                .with_span_list(true)
                .try_init()
        }
    };
}

async fn up(data_dir: PathBuf, args: UpArgs) -> Result<()> {
    init_logging(args.log_format);
    let cfg = zerofn_server::PlatformConfig {
        data_dir,
        gateway_addr: args.gateway_addr,
        api_addr: args.api_addr,
        max_instances: args.max_instances,
        max_instances_per_tenant: args.max_instances_per_tenant,
        gateway: zerofn_gateway_config(&args)?,
        demo_dir: args.demo.then_some(args.demo_dir),
        trust_domain: zerofn_server::TrustDomain::new(&args.trust_domain)
            .context("invalid --trust-domain")?,
        svid_ttl: std::time::Duration::from_secs(args.svid_ttl_secs),
        audit_durability: match args.audit_durability {
            AuditDurabilityArg::Disk => zerofn_server::AuditDurability::Disk,
            AuditDurabilityArg::Process => zerofn_server::AuditDurability::Process {
                flush_interval: std::time::Duration::from_millis(args.audit_flush_ms),
            },
        },
        control_tls: args.control_tls,
        gateway_tls: match (&args.gateway_tls_cert, &args.gateway_tls_key) {
            (Some(cert), Some(key)) => Some(zerofn_server::GatewayTls {
                cert: cert.clone(),
                key: key.clone(),
                reload_interval: std::time::Duration::from_secs(1),
            }),
            _ => None,
        },
        log_retention: zerofn_server::LogRetention {
            max_bytes_per_function: args.log_max_kib_per_function.saturating_mul(1024),
            max_age: std::time::Duration::from_secs(args.log_max_age_secs),
        },
        keep_versions: args.keep_versions,
        metrics_addr: args.metrics_addr,
        config_dir: args.config_dir.clone(),
        locked_config: args.locked_config,
        otlp: match &args.otlp_endpoint {
            Some(url) => {
                let mut otlp = zerofn_server::OtlpConfig::new(url, args.otlp_sample_ratio)
                    .context("invalid --otlp-endpoint or --otlp-sample-ratio")?
                    .with_min_per_second(args.otlp_sample_min_per_second);
                otlp.service_version = env!("CARGO_PKG_VERSION").to_owned();
                Some(otlp)
            }
            None => None,
        },
    };
    // Handlers first: a supervisor may send SIGTERM as soon as it reads
    // the listening lines, and that must shut down cleanly, not kill.
    let stop = shutdown_signal()?;
    let running = zerofn_server::up(cfg).await?;
    println!("gateway listening on {}", running.gateway_url);
    println!("api listening on {}", running.api_url);
    if let Some(addr) = running.metrics_addr {
        println!("metrics listening on http://{addr}/metrics");
    }
    for f in &running.demo {
        for route in &f.routes {
            let path = route.trim_end_matches("/...");
            println!(
                "demo: {}/{} ({}) -> curl -s {}{}",
                f.tenant, f.name, f.digest, running.gateway_url, path
            );
        }
    }
    stop.await;
    if JSON_LOGS.load(std::sync::atomic::Ordering::Relaxed) {
        tracing::info!("shutting down: finishing in-flight requests");
    } else {
        eprintln!("shutting down: finishing in-flight requests");
    }
    running.stop().await;
    Ok(())
}

fn zerofn_gateway_config(args: &UpArgs) -> Result<zerofn_server::GatewayConfig> {
    let extra_roots_pem = match &args.egress_ca_bundle {
        Some(path) => Some(
            std::fs::read(path)
                .with_context(|| format!("reading --egress-ca-bundle {}", path.display()))?,
        ),
        None => None,
    };
    let egress = zerofn_server::EgressConfig {
        dns: args.egress_dns,
        extra_roots_pem,
        limits: zerofn_server::EgressLimits::default(),
    };
    // Refuse a bad bundle now, not at the first outbound request.
    zerofn_server::EgressClient::new(&egress).context("invalid --egress-ca-bundle")?;
    Ok(zerofn_server::GatewayConfig {
        max_connections: usize::try_from(args.max_connections).unwrap_or(usize::MAX),
        max_connections_per_ip: usize::try_from(args.max_connections_per_ip).unwrap_or(usize::MAX),
        max_invocations_per_request: args.max_invocations_per_request,
        header_read_timeout: std::time::Duration::from_millis(args.header_read_timeout_ms),
        body_read_timeout: std::time::Duration::from_millis(args.body_read_timeout_ms),
        egress,
        ..zerofn_server::GatewayConfig::default()
    })
}

/// Installs the SIGTERM and SIGINT handlers now; the future ends at the
/// first of either.
fn shutdown_signal() -> Result<impl std::future::Future<Output = ()>> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
    let mut int = signal(SignalKind::interrupt()).context("installing the SIGINT handler")?;
    Ok(async move {
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
        }
    })
}

fn keygen(out: &Path) -> Result<()> {
    let key = SigningKey::generate();
    let pem = key.to_pkcs8_pem().context("encoding the private key")?;
    let pub_path = append_ext(out, "pub");
    if out.exists() || pub_path.exists() {
        bail!(
            "`{}` or `{}` already exists; refusing to overwrite a key",
            out.display(),
            pub_path.display()
        );
    }
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(out)
        .with_context(|| format!("creating `{}`", out.display()))?;
    std::io::Write::write_all(&mut f, pem.as_bytes())
        .with_context(|| format!("writing `{}`", out.display()))?;
    let public = key.public_key();
    std::fs::write(&pub_path, public.to_pem())
        .with_context(|| format!("writing `{}`", pub_path.display()))?;
    println!(
        "wrote {} and {} (key id {})",
        out.display(),
        pub_path.display(),
        public.key_id()
    );
    Ok(())
}

pub(crate) fn append_ext(path: &Path, ext: &str) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(".");
    s.push(ext);
    PathBuf::from(s)
}

fn read_signing_key(key_path: &Path) -> Result<SigningKey> {
    let pem = std::fs::read_to_string(key_path)
        .with_context(|| format!("cannot read signing key `{}`", key_path.display()))?;
    SigningKey::from_pem(&pem)
        .with_context(|| format!("`{}` is not a usable signing key", key_path.display()))
}

/// Signs a function directory: the component, and the manifest at a version.
/// What `zerofn sign` wrote: printed as lines, or as one JSON object with `--json`.
#[derive(serde::Serialize)]
struct Signed {
    /// The signed component's or file's digest.
    digest: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    key_id: Option<String>,
    /// The bundle of the component or file.
    #[serde(skip_serializing_if = "Option::is_none")]
    bundle: Option<String>,
    /// The signed manifest statement (a directory).
    #[serde(skip_serializing_if = "Option::is_none")]
    manifest_bundle: Option<String>,
    /// The manifest predicate written for keyless signing (`--predicate`).
    #[serde(skip_serializing_if = "Option::is_none")]
    predicate: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    version: Option<u64>,
    #[serde(skip)]
    lines: Vec<String>,
}

impl Signed {
    fn print(&self, as_json: bool) -> Result<()> {
        if as_json {
            println!("{}", serde_json::to_string(self)?);
        } else {
            for line in &self.lines {
                println!("{line}");
            }
        }
        Ok(())
    }
}

fn sign_dir(
    dir: &Path,
    key_path: Option<&Path>,
    version: Option<u64>,
    predicate_out: Option<&Path>,
) -> Result<Signed> {
    let manifest_path = dir.join("zerofn.toml");
    let text = std::fs::read_to_string(&manifest_path).with_context(|| {
        format!(
            "`{}` is a directory without a readable zerofn.toml",
            dir.display()
        )
    })?;
    let manifest = diagnose::parse_manifest(&manifest_path, &text)?;
    let version = match (version, manifest.version) {
        (Some(flag), Some(written)) if flag != written => bail!(
            "`--version {flag}` differs from `version = {written}` in `{}`; sign the version the manifest says, or change it",
            manifest_path.display()
        ),
        (Some(v), _) | (None, Some(v)) => v,
        (None, None) => bail!(
            "choose the version to sign: `--version N`, or `version = N` in `{}` (1 or more, higher than any version deployed before)",
            manifest_path.display()
        ),
    };
    if !(1..=zerofn_admission::MAX_MANIFEST_VERSION).contains(&version) {
        bail!(
            "version {version} is not from 1 to {}",
            zerofn_admission::MAX_MANIFEST_VERSION
        );
    }
    let component = admission::read_component(dir, &manifest)?;
    let digest = zerofn_admission::Digest::of(&component);
    let mut signed = Signed {
        digest: digest.to_string(),
        key_id: None,
        bundle: None,
        manifest_bundle: None,
        predicate: None,
        version: Some(version),
        lines: Vec::new(),
    };
    if let Some(out) = predicate_out {
        let predicate = zerofn_admission::manifest_predicate(&manifest, version);
        std::fs::write(out, serde_json::to_vec_pretty(&predicate)?)
            .with_context(|| format!("writing `{}`", out.display()))?;
        signed.lines.push(format!(
            "wrote {} (manifest predicate, version {version}, type {})",
            out.display(),
            zerofn_admission::MANIFEST_PREDICATE_V1
        ));
        signed.predicate = Some(out.display().to_string());
    }
    let Some(key_path) = key_path else {
        if predicate_out.is_some() {
            return Ok(signed);
        }
        bail!("`--key KEY` is needed to sign `{}` (or `--predicate FILE` to sign the manifest keylessly)", dir.display());
    };
    let key = read_signing_key(key_path)?;
    let bundle_path = dir.join(manifest.bundle_file_name());
    std::fs::write(&bundle_path, sign_artifact(&component, &key)?)
        .with_context(|| format!("writing `{}`", bundle_path.display()))?;
    let statement = zerofn_admission::sign_manifest(&manifest, &digest, version, &key)?;
    let statement_path = dir.join(zerofn_admission::MANIFEST_BUNDLE_FILE);
    std::fs::write(&statement_path, statement)
        .with_context(|| format!("writing `{}`", statement_path.display()))?;
    let key_id = key.public_key().key_id().to_string();
    signed.lines.push(format!(
        "wrote {} (signed {digest} with key {key_id})",
        bundle_path.display(),
    ));
    signed.lines.push(format!(
        "wrote {} (manifest of {}/{} at version {version})",
        statement_path.display(),
        manifest.tenant,
        manifest.name
    ));
    signed.key_id = Some(key_id);
    signed.bundle = Some(bundle_path.display().to_string());
    signed.manifest_bundle = Some(statement_path.display().to_string());
    Ok(signed)
}

fn sign(artifact: &Path, key_path: &Path, out: Option<PathBuf>) -> Result<Signed> {
    let key = read_signing_key(key_path)?;
    let bytes = std::fs::read(artifact)
        .with_context(|| format!("cannot read artifact `{}`", artifact.display()))?;
    let bundle = sign_artifact(&bytes, &key)?;
    let out = out.unwrap_or_else(|| append_ext(artifact, "sigstore.json"));
    std::fs::write(&out, bundle).with_context(|| format!("writing `{}`", out.display()))?;
    let digest = zerofn_admission::Digest::of(&bytes).to_string();
    let key_id = key.public_key().key_id().to_string();
    Ok(Signed {
        lines: vec![format!(
            "wrote {} (signed {digest} with key {key_id})",
            out.display()
        )],
        digest,
        key_id: Some(key_id),
        bundle: Some(out.display().to_string()),
        manifest_bundle: None,
        predicate: None,
        version: None,
    })
}

fn read_public_key(path: &Path) -> Result<String> {
    let pem = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read public key `{}`", path.display()))?;
    PublicKey::from_pem(&pem)
        .with_context(|| format!("`{}` is not a usable public key", path.display()))?;
    Ok(pem)
}

async fn tenant(data_dir: &Path, cmd: TenantCommand) -> Result<()> {
    match cmd {
        TenantCommand::Create {
            tenant,
            signing_keys,
            route_prefixes,
        } => {
            let keys = signing_keys
                .iter()
                .map(|p| read_public_key(p))
                .collect::<Result<Vec<_>>>()?;
            let api = ApiClient::discover(data_dir)?;
            let created: api_types::Tenant = api
                .send(
                    Method::POST,
                    "/v1/tenants",
                    &api_types::CreateTenant {
                        name: tenant.clone(),
                        signing_keys: keys,
                        route_prefixes,
                    },
                )
                .await?;
            println!(
                "created tenant {tenant} trusting {}, owning routes {}",
                created.key_ids.join(","),
                created.route_prefixes.unwrap_or_default().join(",")
            );
        }
        TenantCommand::Routes { tenant, set, json } => {
            let api = ApiClient::discover(data_dir)?;
            let path = format!("/v1/tenants/{tenant}/routes");
            let routes: api_types::TenantRoutes = match set {
                None => api.fetch(Method::GET, &path).await?,
                Some(route_prefixes) => {
                    api.send(Method::PUT, &path, &api_types::SetRoutes { route_prefixes })
                        .await?
                }
            };
            if json {
                println!("{}", serde_json::to_string(&routes.route_prefixes)?);
            } else {
                for p in &routes.route_prefixes {
                    println!("{p}");
                }
            }
        }
        TenantCommand::Limits {
            tenant,
            rate,
            burst,
            max_concurrency,
            clear,
            json,
        } => {
            let api = ApiClient::discover(data_dir)?;
            let path = format!("/v1/tenants/{tenant}/limits");
            let set = api_types::SetTenantLimits {
                rate_per_second: rate,
                burst,
                max_concurrency,
            };
            let limits: api_types::TenantLimits =
                if clear || set != api_types::SetTenantLimits::default() {
                    api.send(Method::PUT, &path, &set).await?
                } else {
                    api.fetch(Method::GET, &path).await?
                };
            if json {
                println!("{}", serde_json::to_string(&limits)?);
            } else {
                let show = |v: Option<u32>| v.map_or("none".to_owned(), |v| v.to_string());
                println!(
                    "tenant {}: rate {}/s, burst {}, max concurrency {}",
                    limits.tenant,
                    show(limits.rate_per_second),
                    show(limits.burst),
                    show(limits.max_concurrency)
                );
            }
        }
        TenantCommand::AddKey { tenant, key } => {
            let pem = read_public_key(&key)?;
            let api = ApiClient::discover(data_dir)?;
            let added: api_types::KeyAdded = api
                .send(
                    Method::POST,
                    &format!("/v1/tenants/{tenant}/keys"),
                    &api_types::AddKey { public_key: pem },
                )
                .await?;
            println!("tenant {tenant} now trusts {}", added.key_id);
        }
        TenantCommand::RemoveKey { tenant, key_id } => {
            ApiClient::discover(data_dir)?
                .remove(&format!("/v1/tenants/{tenant}/keys/{key_id}"))
                .await?;
            println!("tenant {tenant} no longer trusts {key_id}");
        }
        TenantCommand::AddIdentity(args) => admission::add_identity(data_dir, args).await?,
        TenantCommand::RemoveIdentity { tenant, id } => {
            admission::remove_identity(data_dir, &tenant, &id).await?
        }
        TenantCommand::List { json } => {
            let api = ApiClient::discover(data_dir)?;
            let v = api.call(Method::GET, "/v1/tenants", None).await?;
            if json {
                // The answer as it came, not as this CLI's types know it.
                let tenants = v.get("tenants").cloned().unwrap_or_default();
                println!("{tenants}");
            } else {
                let list: api_types::TenantList = client::typed("/v1/tenants", v)?;
                for t in list.tenants {
                    println!("{}\t{}", t.name, t.key_ids.join(","));
                }
            }
        }
    }
    Ok(())
}

async fn deploy(
    data_dir: &Path,
    dir: &Path,
    allow_rollback: Option<String>,
    as_json: bool,
) -> Result<()> {
    let (_, mut body) = admission::function_request(dir)?;
    body.allow_rollback = allow_rollback;
    let api = ApiClient::discover(data_dir)?;
    let spinner = progress::Spinner::start(format!(
        "deploying {} ({:.1} MiB: upload, admission, compiling)",
        dir.display(),
        body.component.len() as f64 * 0.75 / (1024.0 * 1024.0)
    ));
    let body = serde_json::to_value(&body)?;
    let answer = api.call(Method::POST, "/v1/deployments", Some(body)).await;
    drop(spinner);
    let v = match answer {
        Ok(v) => v,
        Err(e) => {
            admission::print_refusal_checks(&e);
            return Err(e);
        }
    };
    if as_json {
        // The answer as it came (checked to be a deployment first).
        let _: api_types::Deployed = client::typed("/v1/deployments", v.clone())?;
        println!("{v}");
        return Ok(());
    }
    let deployed: api_types::Deployed = client::typed("/v1/deployments", v)?;
    println!(
        "deployed {}/{} as version {} (manifest version {}) {} signed by {} on {}",
        deployed.tenant,
        deployed.name,
        deployed.number,
        deployed.version,
        deployed.digest,
        deployed.signer,
        deployed.routes.join(",")
    );
    // The server leaves `layers` out when there are none.
    if !deployed.layers.is_empty() {
        for (import, digest) in &deployed.layers {
            println!("  layer {import} = {digest}");
        }
        println!(
            "  composed {}",
            deployed.composed_digest.unwrap_or_default()
        );
    }
    Ok(())
}

async fn functions(data_dir: &Path, as_json: bool) -> Result<()> {
    let api = ApiClient::discover(data_dir)?;
    let v = api.call(Method::GET, "/v1/functions", None).await?;
    if as_json {
        // The answer as it came, not as this CLI's types know it.
        let fns = v.get("functions").cloned().unwrap_or_default();
        println!("{fns}");
        return Ok(());
    }
    let list: api_types::FunctionList = client::typed("/v1/functions", v)?;
    println!("TENANT\tNAME\tVERSION\tDIGEST\tSIGNER\tROUTES\tDEPLOYED");
    for f in list.functions {
        println!(
            "{}\t{}\t{}\t{}\t{}\t{}\t{}",
            f.tenant,
            f.name,
            f.version,
            f.digest,
            f.signer,
            f.routes.join(","),
            f.deployed_at
        );
    }
    Ok(())
}

async fn audit(data_dir: &Path, cmd: AuditCommand) -> Result<()> {
    match cmd {
        AuditCommand::Verify(args) => audit::verify(data_dir, args).await,
        AuditCommand::Tree(cmd) => audit::run(data_dir, cmd).await,
        AuditCommand::Query(args) => audit::query(data_dir, args).await,
        AuditCommand::Tail { n, json } => {
            let api = ApiClient::discover(data_dir)?;
            let v = api
                .call(Method::GET, &format!("/v1/audit?n={n}"), None)
                .await?;
            if json {
                // Each record as it came, not as this CLI's types know it.
                let records = v.get("records").cloned().unwrap_or_default();
                for r in records.as_array().into_iter().flatten() {
                    println!("{r}");
                }
                return Ok(());
            }
            let tail: api_types::AuditTail<zerofn_audit::StoredRecord> =
                client::typed("/v1/audit", v)?;
            for r in tail.records {
                println!(
                    "{}\t{}\t{}\t{}\t{}\t{}\t{}",
                    r.seq,
                    r.time,
                    r.actor,
                    r.action,
                    [r.tenant.unwrap_or_default(), r.function.unwrap_or_default()]
                        .into_iter()
                        .filter(|s| !s.is_empty())
                        .collect::<Vec<_>>()
                        .join("/"),
                    r.decision,
                    r.reason.unwrap_or_default().escape_debug()
                );
            }
            Ok(())
        }
    }
}
