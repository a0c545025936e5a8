//! `zerofn dev [DIR]`: build, sign with a development key, deploy to the
//! platform of the data directory, then watch DIR and do it again on every
//! change, printing each step with its time. While it watches, it prints
//! every request to the function (status, time taken, caller, invocation
//! id; a refusal with its reason) and every line the function writes to
//! stdout and stderr or logs through `wasi:logging`, read from the audit log and the invocation logs
//! through the control API. Ctrl-C stops the loop (the function stays
//! deployed).
//!
//! Trust: the development key is an ordinary signing key (default
//! `DATA_DIR/dev/signing-key.pem`, made on first use, mode 0600). A tenant
//! that does not exist yet is created trusting it; an existing tenant that
//! does not trust it is left alone and the error says how to add the key,
//! so `dev` never widens what an existing tenant accepts. Every deploy goes
//! through admission like `zerofn deploy`: the signed manifest statement is
//! made for the next manifest version above the highest deployed, so
//! rollback protection holds as for any other signer.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use base64::Engine as _;
use clap::Args;
use http::Method;
use notify::Watcher as _;
use zerofn_admission::{sign_artifact, sign_manifest, Digest, Manifest, SigningKey};
use zerofn_api as api_types;
use zerofn_guest_build::project::{is_project_input, Project};

use crate::client::ApiClient;

/// How often requests and output are read while watching.
const FOLLOW_INTERVAL: Duration = Duration::from_secs(1);
/// Requests read per poll; more in one interval are summarised.
const FOLLOW_REQUESTS: u32 = 100;
/// Output lines read per poll.
const FOLLOW_LINES: u32 = 1000;
/// Polls an output line waits for its request's line before it is printed
/// anyway: output is stored before the request's audit record is committed,
/// so it often arrives first.
const HOLD_POLLS: u8 = 3;
/// Invocations remembered as printed, so their output follows at once.
const RECENT_REQUESTS: usize = 1024;

/// How long the directory must be quiet after a change before a rebuild:
/// editors write a file in several steps (temporary file, rename, chmod).
const DEBOUNCE: Duration = Duration::from_millis(300);

#[derive(Args)]
pub struct DevArgs {
    /// The function directory (or its zerofn.toml); default the current directory.
    #[arg(default_value = ".")]
    dir: PathBuf,
    /// The signing key (ECDSA P-256, PEM; default DATA_DIR/dev/signing-key.pem, made if
    /// missing). Its public key must be trusted by the function's tenant.
    #[arg(long)]
    key: Option<PathBuf>,
    /// Build, sign and deploy once, then exit instead of watching.
    #[arg(long)]
    once: bool,
    /// WIT directory to build against (as `zerofn build --wit`).
    #[arg(long)]
    wit: Option<PathBuf>,
}

/// The state of one development session.
struct Session {
    /// Requests and output since the session started.
    follower: Follower,
    dir: PathBuf,
    key: SigningKey,
    api: ApiClient,
    project: Project,
    gateway_url: Option<String>,
    /// The manifest version the next deploy signs.
    next_version: u64,
    /// What was last deployed (component digest and manifest text): an
    /// unchanged build is not deployed again.
    deployed: Option<(Digest, String)>,
}

pub async fn dev(data_dir: &Path, args: DevArgs) -> Result<()> {
    let (dir, manifest) = crate::project::read_manifest(&args.dir)?;
    if let Some(version) = manifest.version {
        bail!(
            "`version = {version}` in `{}`: `zerofn dev` numbers versions itself (one above the highest deployed); remove the line while developing",
            dir.join("zerofn.toml").display()
        );
    }
    let key_path = match args.key {
        Some(path) => path,
        None => dev_key(data_dir)?,
    };
    let key = crate::read_signing_key(&key_path)?;
    let api = ApiClient::discover(data_dir)?;
    ensure_tenant(&api, &manifest, &key, &key_path).await?;
    let next_version = highest_version(&api, &manifest).await?.saturating_add(1);
    let project = Project::open(&dir, &manifest.component, args.wit.as_deref())?;
    let gateway_url = std::fs::read_to_string(data_dir.join(zerofn_server::API_ENDPOINT_FILE))
        .ok()
        .and_then(|text| serde_json::from_str::<zerofn_server::ApiEndpoint>(&text).ok())
        .map(|endpoint| endpoint.gateway_url);
    let follower = Follower::start(&api, manifest.tenant.as_str(), manifest.name.as_str()).await;
    let mut session = Session {
        follower,
        dir,
        key,
        api,
        project,
        gateway_url,
        next_version,
        deployed: None,
    };
    let first = session.cycle().await;
    if args.once {
        return first;
    }
    if let Err(e) = first {
        report_error(&e);
    }
    session.watch().await
}

impl Session {
    /// One build, sign and deploy.
    async fn cycle(&mut self) -> Result<()> {
        let started = Instant::now();
        let project = &self.project;
        let built = tokio::task::block_in_place(|| project.build(false))?;
        step("build", &crate::project::describe(&built));

        let signing = Instant::now();
        let manifest_path = self.dir.join("zerofn.toml");
        let manifest_text = std::fs::read_to_string(&manifest_path)
            .with_context(|| format!("cannot read manifest `{}`", manifest_path.display()))?;
        let manifest = crate::diagnose::parse_manifest(&manifest_path, &manifest_text)?;
        let component = std::fs::read(&built.component)
            .with_context(|| format!("cannot read `{}`", built.component.display()))?;
        let digest = Digest::of(&component);
        if self.deployed.as_ref() == Some(&(digest, manifest_text.clone())) {
            step(
                "unchanged",
                "component and manifest as deployed; nothing to do",
            );
            return Ok(());
        }
        let version = self.next_version;
        let bundle = sign_artifact(&component, &self.key)?;
        let statement = sign_manifest(&manifest, &digest, version, &self.key)?;
        step(
            "sign",
            &format!(
                "{digest} at manifest version {version} ({} ms)",
                signing.elapsed().as_millis()
            ),
        );

        let deploying = Instant::now();
        let body = api_types::Deploy {
            manifest: manifest_text.clone(),
            component: base64::engine::general_purpose::STANDARD.encode(&component),
            bundle,
            attestations: vec![api_types::AttestationFile {
                name: zerofn_admission::MANIFEST_BUNDLE_FILE.to_owned(),
                content: statement,
            }],
            allow_rollback: None,
        };
        let answer = match self
            .api
            .call(
                Method::POST,
                "/v1/deployments",
                Some(serde_json::to_value(&body)?),
            )
            .await
        {
            Ok(answer) => answer,
            Err(e) => {
                crate::admission::print_refusal_checks(&e);
                return Err(e);
            }
        };
        let deployed: api_types::Deployed = crate::client::typed("/v1/deployments", answer)?;
        // Spent only once the platform took it: a refused version may be signed again.
        self.next_version = version.saturating_add(1);
        self.deployed = Some((digest, manifest_text));
        step(
            "deploy",
            &format!(
                "{}/{} as version {} ({} ms)",
                deployed.tenant,
                deployed.name,
                deployed.number,
                deploying.elapsed().as_millis()
            ),
        );
        let base = self.gateway_url.as_deref().unwrap_or("http://GATEWAY");
        for route in &deployed.routes {
            // A prefix route (`/api/...`) is shown as its prefix.
            let path = route.trim_end_matches("...");
            step("ready", &format!("curl {base}{path}"));
        }
        step(
            "done",
            &format!("in {:.1}s", started.elapsed().as_secs_f64()),
        );
        Ok(())
    }

    /// Watches the directory until Ctrl-C, running a cycle after each
    /// change to a build input (debounced).
    async fn watch(&mut self) -> Result<()> {
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<PathBuf>();
        let mut watcher =
            notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
                // Opening or reading a file is not a change: the build itself
                // reads every source, which would otherwise start the next build.
                let Ok(event) = event else { return };
                if !is_change(&event.kind) {
                    return;
                }
                for path in event.paths {
                    // The receiver is gone only when the loop has ended.
                    let _ = tx.send(path);
                }
            })
            .context("cannot start watching files")?;
        watcher
            .watch(&self.dir, notify::RecursiveMode::Recursive)
            .with_context(|| format!("cannot watch `{}`", self.dir.display()))?;
        let dir = std::fs::canonicalize(&self.dir).unwrap_or_else(|_| self.dir.clone());
        step("watch", &format!("{} (Ctrl-C stops)", self.dir.display()));
        let mut follow = tokio::time::interval(FOLLOW_INTERVAL);
        follow.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let changed = tokio::select! {
                _ = tokio::signal::ctrl_c() => break,
                _ = follow.tick() => {
                    self.follower.poll(&self.api).await;
                    continue;
                }
                path = rx.recv() => match path {
                    Some(path) => path,
                    None => bail!("the file watcher stopped"),
                },
            };
            let mut changes = Vec::new();
            note_change(&dir, &self.dir, changed, &mut changes);
            // Debounce: collect until the directory has been quiet for a while.
            loop {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => return stopped(),
                    more = tokio::time::timeout(DEBOUNCE, rx.recv()) => match more {
                        Ok(Some(path)) => note_change(&dir, &self.dir, path, &mut changes),
                        Ok(None) => bail!("the file watcher stopped"),
                        Err(_) => break,
                    },
                }
            }
            if changes.is_empty() {
                continue;
            }
            changes.sort();
            changes.dedup();
            step("change", &changes.join(", "));
            if let Err(e) = self.cycle().await {
                report_error(&e);
            }
        }
        stopped()
    }
}

/// Reads the function's requests (its `invoke` audit records) and output
/// (its invocation logs) that are newer than what was printed.
struct Follower {
    tenant: String,
    function: String,
    /// The newest invoke record printed (audit sequence number).
    last_request: i64,
    /// The invocation logs' cursor (`after`).
    log_cursor: i64,
    /// Whether the last poll failed (a failure is reported once, not every second).
    failing: bool,
    /// Invocation ids whose request line was printed (the newest, bounded).
    printed: std::collections::VecDeque<String>,
    /// Output lines waiting for their request's line, with the polls waited.
    held: Vec<(api_types::LogLine, u8)>,
}

fn encode(text: &str) -> String {
    percent_encoding::utf8_percent_encode(text, percent_encoding::NON_ALPHANUMERIC).to_string()
}

impl Follower {
    /// Starts after everything already recorded: only what happens from now on is printed.
    async fn start(api: &ApiClient, tenant: &str, function: &str) -> Follower {
        let mut follower = Follower {
            tenant: tenant.to_owned(),
            function: function.to_owned(),
            last_request: 0,
            log_cursor: 0,
            failing: false,
            printed: std::collections::VecDeque::new(),
            held: Vec::new(),
        };
        if let Ok(page) = follower.requests(api, 1).await {
            follower.last_request = page.records.first().map_or(0, |r| r.seq);
        }
        if let Ok(page) = follower.lines(api, None).await {
            follower.log_cursor = page.next;
        }
        follower
    }

    async fn requests(
        &self,
        api: &ApiClient,
        limit: u32,
    ) -> Result<api_types::AuditQueryPage<zerofn_audit::StoredRecord>> {
        let path = format!(
            "/v1/audit/query?tenant={}&function={}&action=invoke&limit={limit}",
            encode(&self.tenant),
            encode(&self.function)
        );
        api.fetch(Method::GET, &path).await
    }

    async fn lines(&self, api: &ApiClient, after: Option<i64>) -> Result<api_types::LogPage> {
        let mut path = format!(
            "/v1/tenants/{}/logs?function={}",
            encode(&self.tenant),
            encode(&self.function)
        );
        match after {
            Some(after) => path.push_str(&format!("&after={after}&limit={FOLLOW_LINES}")),
            None => path.push_str("&limit=1"),
        }
        api.fetch(Method::GET, &path).await
    }

    /// Prints what is new; a failure to read is printed once until reading works again.
    async fn poll(&mut self, api: &ApiClient) {
        let read = async {
            let requests = self.requests(api, FOLLOW_REQUESTS).await?;
            let lines = self.lines(api, Some(self.log_cursor)).await?;
            anyhow::Ok((requests, lines))
        };
        let (requests, lines) = match read.await {
            Ok(read) => read,
            Err(e) => {
                if !self.failing {
                    step("error", &format!("cannot read requests and output: {e:#}"));
                }
                self.failing = true;
                return;
            }
        };
        self.failing = false;
        let mut new: Vec<&zerofn_audit::StoredRecord> = requests
            .records
            .iter()
            .filter(|r| r.seq > self.last_request)
            .collect();
        new.sort_by_key(|r| r.seq);
        if new.len() >= FOLLOW_REQUESTS as usize && requests.next.is_some() {
            step("request", "(more requests than shown since the last line)");
        }
        for record in &new {
            step("request", &describe_request(record));
            if let Some(id) = &record.invocation_id {
                if self.printed.len() >= RECENT_REQUESTS {
                    self.printed.pop_front();
                }
                self.printed.push_back(id.clone());
            }
        }
        if let Some(last) = new.last() {
            self.last_request = last.seq;
        }
        // Output after its request's line when that comes within a few polls;
        // in order of arrival either way.
        let mut waiting = std::mem::take(&mut self.held);
        waiting.extend(lines.lines.into_iter().map(|l| (l, 0)));
        let overflow = waiting.len().saturating_sub(FOLLOW_LINES as usize);
        for (i, (line, polls)) in waiting.into_iter().enumerate() {
            let ready =
                i < overflow || polls >= HOLD_POLLS || self.printed.contains(&line.invocation_id);
            // Order is kept: once a line waits, the lines after it wait too.
            if ready && self.held.is_empty() {
                step(
                    "log",
                    &format!(
                        "{} {}",
                        zerofn_types::printable(&line.stream),
                        crate::logs::text(&line)
                    ),
                );
            } else {
                self.held.push((line, polls.saturating_add(1)));
            }
        }
        self.log_cursor = lines.next;
    }
}

/// One request as `dev` prints it: status, time taken, who called, and why
/// it was refused if it was; the invocation id finds its output later
/// (`zerofn logs T NAME --invocation ID`).
fn describe_request(r: &zerofn_audit::StoredRecord) -> String {
    let status = r.status.map_or_else(|| "-".to_owned(), |s| s.to_string());
    let took = r.duration_us.map_or_else(String::new, |us| {
        format!(" in {:.1} ms", us as f64 / 1000.0)
    });
    let caller = describe_caller(r.detail.as_ref().and_then(|d| d.get("caller")));
    let id = r.invocation_id.as_deref().unwrap_or("-");
    let mut text = format!(
        "{status}{took} from {caller} (invocation {})",
        zerofn_types::printable(id)
    );
    if r.decision != "allow" {
        if let Some(reason) = &r.reason {
            text.push_str(&format!(": {}", zerofn_types::printable(reason)));
        }
    }
    text
}

/// Who called, from an invoke record's `detail.caller` (written by the gateway).
fn describe_caller(caller: Option<&serde_json::Value>) -> String {
    let field = |name: &str| {
        caller
            .and_then(|c| c.get(name))
            .and_then(|v| match v {
                serde_json::Value::String(s) => Some(s.clone()),
                serde_json::Value::Number(n) => Some(n.to_string()),
                _ => None,
            })
            .unwrap_or_default()
    };
    let text = match field("kind").as_str() {
        "gateway" => format!("public {}", field("ip")),
        "jwt" => format!("jwt {} {}", field("issuer"), field("subject")),
        "apikey" => format!("apikey {}", field("name")),
        "function" => field("spiffe_id"),
        "event" => format!(
            "event {} {} attempt {}",
            field("source"),
            field("event_id"),
            field("attempt")
        ),
        "" => "an unknown caller".to_owned(),
        other => other.to_owned(),
    };
    zerofn_types::printable(text.trim())
}

/// Whether a watcher event can change a file's content or presence:
/// creating, writing, renaming, removing, or closing a file opened for
/// writing; not opening or reading one.
fn is_change(kind: &notify::EventKind) -> bool {
    use notify::event::{AccessKind, AccessMode, EventKind};
    match kind {
        EventKind::Access(AccessKind::Close(AccessMode::Write)) => true,
        EventKind::Access(_) => false,
        _ => true,
    }
}

fn stopped() -> Result<()> {
    step("stopped", "the function stays deployed");
    Ok(())
}

/// Records `path` if it is a build input or the manifest (not the build
/// directory, the component or signatures, which builds write).
fn note_change(canonical: &Path, dir: &Path, path: PathBuf, changes: &mut Vec<String>) {
    let relative = path
        .strip_prefix(canonical)
        .or_else(|_| path.strip_prefix(dir))
        .map(Path::to_path_buf)
        .unwrap_or(path);
    let text = relative.to_string_lossy().into_owned();
    let input = text == "zerofn.toml"
        || (!text.is_empty()
            && text
                .split('/')
                .scan(String::new(), |prefix, part| {
                    if !prefix.is_empty() {
                        prefix.push('/');
                    }
                    prefix.push_str(part);
                    Some(is_project_input(prefix))
                })
                .all(|keep| keep));
    if input {
        changes.push(text);
    }
}

/// Prints one step: the time of day, a label, what happened.
/// A failed cycle: one step line, and for a problem in the manifest the quoted line and
/// help under it (the session goes on; the user fixes the file).
fn report_error(e: &anyhow::Error) {
    match e.downcast_ref::<crate::diagnose::FileDiagnostic>() {
        Some(d) => {
            let rendered = crate::diagnose::render(d, false);
            let rendered = rendered.strip_prefix("error: ").unwrap_or(&rendered);
            step("error", rendered);
        }
        None => step("error", &format!("{e:#}")),
    }
}

fn step(label: &str, text: &str) {
    let now = time_of_day();
    println!("{now} {label:<9} {text}");
}

fn time_of_day() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let day = secs % 86_400;
    format!("{:02}:{:02}:{:02}", day / 3600, day % 3600 / 60, day % 60)
}

/// The default development key, made on first use.
fn dev_key(data_dir: &Path) -> Result<PathBuf> {
    let dir = data_dir.join("dev");
    let path = dir.join("signing-key.pem");
    if !path.exists() {
        std::fs::create_dir_all(&dir)
            .with_context(|| format!("cannot create `{}`", dir.display()))?;
        crate::keygen(&path)?;
    }
    Ok(path)
}

/// Creates the manifest's tenant trusting `key` if it does not exist; fails
/// if it exists without trusting `key`.
async fn ensure_tenant(
    api: &ApiClient,
    manifest: &Manifest,
    key: &SigningKey,
    key_path: &Path,
) -> Result<()> {
    let public = key.public_key();
    let key_id = public.key_id().to_string();
    let tenants: api_types::TenantList = api.fetch(Method::GET, "/v1/tenants").await?;
    let tenant = manifest.tenant.as_str();
    match tenants.tenants.iter().find(|t| t.name == tenant) {
        Some(t) if t.key_ids.contains(&key_id) => Ok(()),
        Some(_) => bail!(
            "tenant `{tenant}` does not trust the key `{}` ({key_id}); trust it with `zerofn tenant add-key {tenant} {}.pub`, or pass --key with a key the tenant trusts",
            key_path.display(),
            key_path.display()
        ),
        None => {
            let _: api_types::Tenant = api
                .send(
                    Method::POST,
                    "/v1/tenants",
                    &api_types::CreateTenant {
                        name: tenant.to_owned(),
                        signing_keys: vec![public.to_pem()],
                        route_prefixes: Vec::new(),
                    },
                )
                .await?;
            step(
                "tenant",
                &format!("created `{tenant}` trusting {key_id} (routes /{tenant}/...)"),
            );
            Ok(())
        }
    }
}

/// The highest manifest version deployed for the manifest's function (0 if none).
async fn highest_version(api: &ApiClient, manifest: &Manifest) -> Result<u64> {
    #[derive(serde::Deserialize)]
    struct Versions {
        versions: Vec<api_types::FunctionVersion>,
    }
    let path = format!(
        "/v1/functions/{}/{}/versions",
        manifest.tenant, manifest.name
    );
    match api.fetch::<Versions>(Method::GET, &path).await {
        Ok(listed) => Ok(listed
            .versions
            .iter()
            .map(|v| v.manifest_version)
            .max()
            .unwrap_or(0)),
        // A function never deployed has no versions.
        Err(e)
            if e.downcast_ref::<crate::client::ApiError>()
                .is_some_and(|e| e.status == 404) =>
        {
            Ok(0)
        }
        Err(e) => Err(e),
    }
}
