//! `zerofn scan` and `zerofn vulndb import`: match a function's CycloneDX SBOM against the
//! local OSV database. Argument parsing and output only; parsing, matching and the database
//! are `zerofn_admission::{Sbom, VulnDb}`.

use std::io::Read;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand, ValueEnum};
use zerofn_admission::{findings_at_or_above, Finding, Manifest, Sbom, Severity, VulnDb};
use zerofn_types::printable;

/// Largest SBOM file read (the parser has the same limit; this avoids reading more).
const MAX_SBOM_FILE_BYTES: u64 = 64 * 1024 * 1024;

/// Scan a function's SBOM against the local vulnerability database.
#[derive(Args)]
pub struct ScanArgs {
    /// The function directory (with `zerofn.toml` and the SBOM).
    dir: PathBuf,
    /// The vulnerability database directory (default `<data-dir>/vulndb`).
    #[arg(long)]
    db: Option<PathBuf>,
    /// The CycloneDX JSON SBOM (default `DIR/<component>.cdx.json`, then
    /// `DIR/sbom.cdx.json`).
    #[arg(long)]
    sbom: Option<PathBuf>,
    /// Exit non-zero when a finding is at or above this severity.
    #[arg(long, value_enum, default_value_t = Threshold::High)]
    fail_on: Threshold,
    /// Print JSON instead of a table.
    #[arg(long)]
    json: bool,
}

/// Manage the local vulnerability database.
#[derive(Subcommand)]
pub enum VulndbCommand {
    /// Import OSV records: an osv.dev export (`<ecosystem>/all.zip`), a directory of OSV JSON
    /// files, or one file. Records with a known id replace the old ones.
    Import {
        path: PathBuf,
        /// The vulnerability database directory (default `<data-dir>/vulndb`).
        #[arg(long)]
        db: Option<PathBuf>,
    },
}

/// A `--fail-on` severity.
#[derive(Clone, Copy, ValueEnum)]
enum Threshold {
    Low,
    Medium,
    High,
    Critical,
}

impl From<Threshold> for Severity {
    fn from(threshold: Threshold) -> Severity {
        match threshold {
            Threshold::Low => Severity::Low,
            Threshold::Medium => Severity::Medium,
            Threshold::High => Severity::High,
            Threshold::Critical => Severity::Critical,
        }
    }
}

fn db_dir(data_dir: &Path, db: Option<PathBuf>) -> PathBuf {
    db.unwrap_or_else(|| data_dir.join("vulndb"))
}

/// Runs `zerofn vulndb …`.
pub fn vulndb(data_dir: &Path, cmd: VulndbCommand) -> Result<()> {
    match cmd {
        VulndbCommand::Import { path, db } => {
            let dir = db_dir(data_dir, db);
            let mut vulndb = VulnDb::load_or_new(&dir)?;
            let report = vulndb.import(&path)?;
            vulndb.save(&dir)?;
            for example in &report.malformed_examples {
                eprintln!("skipped {}", printable(example));
            }
            println!(
                "imported {} records ({} replaced, {} withdrawn dropped, {} malformed skipped); {} in `{}`",
                report.imported,
                report.replaced,
                report.withdrawn,
                report.malformed,
                report.total,
                dir.display()
            );
            Ok(())
        }
    }
}

/// Runs `zerofn scan`: prints the findings and fails when any reaches `--fail-on`.
pub fn scan(data_dir: &Path, args: ScanArgs) -> Result<()> {
    let sbom_path = match args.sbom {
        Some(path) => path,
        None => find_sbom(&args.dir)?,
    };
    let sbom = read_sbom(&sbom_path)?;
    let db = VulnDb::load(&db_dir(data_dir, args.db))?;
    let findings = db.scan(&sbom);
    let threshold = Severity::from(args.fail_on);
    let failing = findings_at_or_above(&findings, threshold);

    if args.json {
        let out = serde_json::json!({
            "sbom": sbom_path.display().to_string(),
            "packages": sbom.packages.len(),
            "skipped_components": sbom.skipped,
            "advisories": db.len(),
            "fail_on": threshold,
            "findings": findings,
            "failing": failing.len(),
        });
        println!("{}", serde_json::to_string_pretty(&out)?);
    } else {
        print_table(&findings);
        println!(
            "{} packages scanned ({} components skipped) against {} advisories: {} findings, {} at or above {threshold}",
            sbom.packages.len(),
            sbom.skipped,
            db.len(),
            findings.len(),
            failing.len()
        );
    }
    if !failing.is_empty() {
        let list: Vec<String> = failing.iter().map(|f| describe(f)).collect();
        bail!(
            "{} findings at or above `{threshold}`: {}; upgrade these packages or raise `--fail-on`",
            failing.len(),
            list.join(", ")
        );
    }
    Ok(())
}

/// The default SBOM of a function directory: `<component>.cdx.json` (the component named
/// by `zerofn.toml`, as its bundle is `<component>.sigstore.json`), `<component stem>.cdx.json`,
/// then `sbom.cdx.json`.
fn find_sbom(dir: &Path) -> Result<PathBuf> {
    let mut candidates = Vec::new();
    if let Ok(text) = std::fs::read_to_string(dir.join("zerofn.toml")) {
        if let Ok(manifest) = Manifest::from_toml(&text) {
            candidates.push(format!("{}.cdx.json", manifest.component));
            if let Some(stem) = manifest.component.strip_suffix(".wasm") {
                candidates.push(format!("{stem}.cdx.json"));
            }
        }
    }
    candidates.push("sbom.cdx.json".to_owned());
    for name in &candidates {
        let path = dir.join(name);
        if path.is_file() {
            return Ok(path);
        }
    }
    bail!(
        "no SBOM found in `{}` (looked for {}); generate a CycloneDX JSON SBOM there or pass `--sbom FILE`",
        dir.display(),
        candidates
            .iter()
            .map(|c| format!("`{c}`"))
            .collect::<Vec<_>>()
            .join(", ")
    )
}

fn read_sbom(path: &Path) -> Result<Sbom> {
    let file = std::fs::File::open(path)
        .with_context(|| format!("cannot read SBOM `{}`", path.display()))?;
    let mut bytes = Vec::new();
    file.take(MAX_SBOM_FILE_BYTES + 1)
        .read_to_end(&mut bytes)
        .with_context(|| format!("cannot read SBOM `{}`", path.display()))?;
    Sbom::from_json(&bytes).with_context(|| format!("cannot use SBOM `{}`", path.display()))
}

fn describe(finding: &Finding) -> String {
    format!(
        "{}@{} ({}, {})",
        printable(&finding.package.name),
        printable(&finding.package.version),
        finding.severity,
        printable(&finding.advisory_ids.join(" "))
    )
}

fn print_table(findings: &[Finding]) {
    let rows: Vec<[String; 4]> = findings
        .iter()
        .map(|f| {
            [
                format!("{}/{}", f.package.ecosystem, printable(&f.package.name)),
                printable(&f.package.version),
                f.severity.to_string(),
                printable(&f.advisory_ids.join(" ")),
            ]
        })
        .collect();
    let header = [
        "PACKAGE".to_owned(),
        "VERSION".to_owned(),
        "SEVERITY".to_owned(),
        "ADVISORIES".to_owned(),
    ];
    let mut widths = [0usize; 4];
    for row in std::iter::once(&header).chain(&rows) {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    for row in std::iter::once(&header).chain(&rows) {
        let [a, b, c, d] = row;
        let [wa, wb, wc, _] = widths;
        println!("{a:wa$}  {b:wb$}  {c:wc$}  {d}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn printable_escapes_terminal_controls() {
        assert_eq!(printable("lodash"), "lodash");
        assert_eq!(printable("a\u{1b}[2Jb"), "a\\u{1b}[2Jb");
        assert_eq!(printable("x\u{202e}y"), "x\\u{202e}y");
    }

    #[test]
    fn missing_sbom_is_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("zerofn.toml"),
            "name = \"hello\"\ntenant = \"acme\"\ncomponent = \"hello.wasm\"\nroutes = [\"/hello\"]\n",
        )
        .unwrap();
        let err = find_sbom(dir.path()).unwrap_err().to_string();
        assert!(err.starts_with("no SBOM found in"), "{err}");
        assert!(
            err.contains("`hello.wasm.cdx.json`, `hello.cdx.json`, `sbom.cdx.json`"),
            "{err}"
        );
        std::fs::write(dir.path().join("sbom.cdx.json"), "{}").unwrap();
        assert_eq!(
            find_sbom(dir.path()).unwrap(),
            dir.path().join("sbom.cdx.json")
        );
        std::fs::write(dir.path().join("hello.cdx.json"), "{}").unwrap();
        assert_eq!(
            find_sbom(dir.path()).unwrap(),
            dir.path().join("hello.cdx.json")
        );
    }
}
