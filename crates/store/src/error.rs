use std::path::PathBuf;

/// Everything that can go wrong in the store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot create or open the data directory `{path}`")]
    DataDir {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("no platform database at `{0}`")]
    NoDatabase(PathBuf),
    #[error("database error")]
    Sqlite(#[from] rusqlite::Error),
    #[error("cannot write or read the audit journal `{path}`")]
    Journal {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
    #[error("cannot sync `{path}` to disk")]
    Sync {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
    #[error("the audit journal `{0}` is held by another writer: another zerofn process (or audit log) uses this data directory; stop it first")]
    JournalInUse(std::path::PathBuf),
    #[error("the database fell behind the audit journal for {0:?}; the record is refused")]
    JournalFull(std::time::Duration),
    #[error("an audit journal block of {0} bytes is larger than the journal allows")]
    JournalBlockTooLarge(u64),
    #[error("audit rows could not be encoded for the journal")]
    JournalEncode,
    #[error("the audit journal `{path}` holds record {journal} but the database ends at record {database} with a different chain: acknowledged records would be lost or misplaced. Keep a copy of the journal and the database for investigation; to start anyway, move the journal aside (`zerofn audit verify` then reports what the database holds)")]
    JournalGap {
        path: std::path::PathBuf,
        database: i64,
        journal: i64,
    },
    #[error("tenant `{0}` already exists")]
    TenantExists(String),
    #[error("tenant `{0}` does not exist; create it with `zerofn tenant create`")]
    NoSuchTenant(String),
    #[error("key `{key_id}` is already trusted for tenant `{tenant}`")]
    KeyExists { tenant: String, key_id: String },
    #[error("key `{key_id}` is not trusted for tenant `{tenant}`")]
    NoSuchKey { tenant: String, key_id: String },
    #[error("signing identity `{id}` is already trusted for tenant `{tenant}`")]
    IdentityExists { tenant: String, id: String },
    #[error("signing identity `{id}` is not trusted for tenant `{tenant}`")]
    NoSuchIdentity { tenant: String, id: String },
    #[error("function `{tenant}/{name}` is not deployed")]
    NoSuchDeployment { tenant: String, name: String },
    #[error(
        "function `{tenant}/{name}` has no version {number}; see `zerofn versions {tenant} {name}`"
    )]
    NoSuchVersion {
        tenant: String,
        name: String,
        number: u64,
    },
    #[error("version {number} of `{tenant}/{name}` is no longer kept (the platform keeps the requests of the newest versions only; `zerofn up --keep-versions N`); deploy it again from its source")]
    VersionNotKept {
        tenant: String,
        name: String,
        number: u64,
    },
    #[error("route `{route}` is already served by `{owner}`; undeploy it or pick another route")]
    RouteTaken { route: String, owner: String },
    #[error("route prefix `{prefix}` is already assigned to tenant `{owner}`; pick another prefix or change `{owner}`'s with `zerofn tenant routes`")]
    PrefixTaken { prefix: String, owner: String },
    #[error("layer `{digest}` is already published for tenant `{tenant}`; layers are immutable, publish a changed layer (it gets a new digest)")]
    LayerExists { tenant: String, digest: String },
    #[error("layer `{digest}` is not published for tenant `{tenant}`; publish it with `zerofn layer publish` or pin a published digest (`zerofn layer list`)")]
    NoSuchLayer { tenant: String, digest: String },
    #[error("layer `{digest}` of tenant `{tenant}` is pinned by {functions}; deploy those functions pinning another digest (or undeploy them) first")]
    LayerPinned {
        tenant: String,
        digest: String,
        functions: String,
    },
    #[error("JWT issuer `{name}` is already registered for tenant `{tenant}`; remove it first to change it")]
    IssuerExists { tenant: String, name: String },
    #[error(
        "JWT issuer `{name}` is not registered for tenant `{tenant}`; see `zerofn auth jwt list`"
    )]
    NoSuchIssuer { tenant: String, name: String },
    #[error(
        "API key `{name}` already exists for tenant `{tenant}`; revoke it or pick another name"
    )]
    ApiKeyExists { tenant: String, name: String },
    #[error("API key `{name}` does not exist for tenant `{tenant}`; see `zerofn apikey list`")]
    NoSuchApiKey { tenant: String, name: String },
    #[error(
        "CA `{name}` is already registered for tenant `{tenant}`; remove it first to change it"
    )]
    MtlsCaExists { tenant: String, name: String },
    #[error("CA `{name}` is not registered for tenant `{tenant}`; see `zerofn auth mtls list`")]
    NoSuchMtlsCa { tenant: String, name: String },
    #[error("operator `{0}` does not exist; see `zerofn operator list`")]
    NoSuchOperator(String),
    #[error("the audit log changed while it was being pruned; nothing was removed (try again)")]
    PruneRaced,
    #[error("zone `{0}` does not exist; see `zerofn zone list`")]
    NoSuchZone(String),
    /// A write to a watched key-value bucket would pass a subscriber's bound
    /// of undelivered changes; nothing was written.
    #[error("bucket `{bucket}` has {pending} undelivered changes for its subscriber `{function}`, the most it may hold ({limit}); the write was refused: let the subscriber catch up or fix it")]
    KvStreamBacklog {
        bucket: String,
        function: String,
        pending: u64,
        limit: u64,
    },
    #[error("the database connection is unusable after an earlier panic")]
    Poisoned,
    #[error("a database task failed to complete")]
    TaskFailed,
    #[error("stored row is corrupt: {0}")]
    Corrupt(String),
    /// A saved plan was made against another state than the platform's now.
    #[error(
        "the platform's configuration changed since the plan was made (serial {planned}, now \
         {current}); make a new plan with `zerofn plan` and review it"
    )]
    StaleSerial { planned: u64, current: u64 },
}

impl StoreError {
    /// Whether the error names something that does not exist (a tenant, key, identity,
    /// deployment, layer or operator): the control API's "not found".
    pub fn is_not_found(&self) -> bool {
        matches!(
            self,
            StoreError::NoSuchTenant(_)
                | StoreError::NoSuchKey { .. }
                | StoreError::NoSuchIdentity { .. }
                | StoreError::NoSuchDeployment { .. }
                | StoreError::NoSuchVersion { .. }
                | StoreError::NoSuchLayer { .. }
                | StoreError::NoSuchOperator(_)
                | StoreError::NoSuchZone(_)
                | StoreError::NoSuchIssuer { .. }
                | StoreError::NoSuchApiKey { .. }
                | StoreError::NoSuchMtlsCa { .. }
        )
    }
}
