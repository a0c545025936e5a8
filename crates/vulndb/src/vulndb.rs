//! The local vulnerability database: OSV records indexed by package, and the scan of an
//! [`Sbom`] against them.
//!
//! Records come from a directory of OSV JSON files, one OSV JSON file, or a zip as OSV
//! publishes them (`<ecosystem>/all.zip`). They are checked into [`Advisory`] values
//! (see `osv.rs`), indexed by (ecosystem, normalised package name), so a lookup costs the
//! same whatever the database's size, and persisted as one JSON file, [`DB_FILE_NAME`], in
//! the directory the caller gives. A record with the id of an earlier one replaces it;
//! withdrawn records are dropped at import.

use std::collections::{BTreeMap, HashMap};
use std::io::Read;
use std::path::{Path, PathBuf};

use zerofn_types::excerpt;

use crate::error::ScanError;
use crate::osv::{Advisory, Severity, MAX_OSV_RECORD_BYTES};
use crate::sbom::{Package, Sbom};
use crate::version::Ecosystem;

/// The database file inside the database directory.
pub const DB_FILE_NAME: &str = "osv-db.json";

/// The `format` of the database file this code writes and reads.
const DB_FORMAT: &str = "zerofn-vulndb/1";

/// Most records one import reads (osv.dev's largest ecosystem export holds some 200,000).
const MAX_IMPORT_RECORDS: usize = 5_000_000;

/// Most bytes one zip import inflates in all, against zip bombs.
const MAX_ZIP_INFLATED_BYTES: u64 = 16 * 1024 * 1024 * 1024;

/// How deep an import walks into a directory.
const MAX_DIR_DEPTH: usize = 16;

/// How many malformed record names an [`ImportReport`] keeps.
const MAX_REPORTED_MALFORMED: usize = 20;

fn io_error(path: &Path) -> impl FnOnce(std::io::Error) -> ScanError + '_ {
    move |source| ScanError::Io {
        path: excerpt(&path.display().to_string()),
        source,
    }
}

/// What an import did.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct ImportReport {
    /// Records read and kept (new or replacing one with the same id).
    pub imported: usize,
    /// Of those, how many replaced a record with the same id.
    pub replaced: usize,
    /// Withdrawn records dropped.
    pub withdrawn: usize,
    /// Records that were not valid OSV and were skipped.
    pub malformed: usize,
    /// The first few skipped records: their file or entry name and why.
    pub malformed_examples: Vec<String>,
    /// Records in the database after the import.
    pub total: usize,
}

/// One vulnerability that affects one package of an SBOM.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Finding {
    /// The affected package.
    pub package: Package,
    /// The record's id and its aliases.
    pub advisory_ids: Vec<String>,
    /// The record's severity.
    pub severity: Severity,
    /// The record's summary, if any (untrusted text: escape it before display).
    pub summary: Option<String>,
}

/// The findings at or above `threshold` (see [`Severity`] for where `Unknown` sorts).
pub fn findings_at_or_above(findings: &[Finding], threshold: Severity) -> Vec<&Finding> {
    findings
        .iter()
        .filter(|f| f.severity >= threshold)
        .collect()
}

#[derive(serde::Serialize, serde::Deserialize)]
struct DbFile {
    format: String,
    advisories: Vec<Advisory>,
}

/// OSV advisories indexed by package.
#[derive(Debug, Default)]
pub struct VulnDb {
    // INVARIANT: `advisories` is sorted by id with unique ids, and `index` maps every
    // (ecosystem, name) of every non-withdrawn advisory's `affected` to its positions.
    advisories: Vec<Advisory>,
    index: HashMap<(Ecosystem, String), Vec<usize>>,
}

impl VulnDb {
    /// An empty database.
    pub fn new() -> VulnDb {
        VulnDb::default()
    }

    /// The number of advisories.
    pub fn len(&self) -> usize {
        self.advisories.len()
    }

    /// Is the database empty?
    pub fn is_empty(&self) -> bool {
        self.advisories.is_empty()
    }

    /// Builds a database from advisories (later ones replace earlier ones with the same id;
    /// withdrawn ones are dropped).
    pub fn from_advisories(advisories: impl IntoIterator<Item = Advisory>) -> VulnDb {
        let mut by_id = BTreeMap::new();
        for advisory in advisories {
            if !advisory.is_withdrawn() {
                by_id.insert(advisory.id.clone(), advisory);
            }
        }
        VulnDb::from_sorted(by_id)
    }

    fn from_sorted(by_id: BTreeMap<String, Advisory>) -> VulnDb {
        let advisories: Vec<Advisory> = by_id.into_values().collect();
        let mut index: HashMap<(Ecosystem, String), Vec<usize>> = HashMap::new();
        for (position, advisory) in advisories.iter().enumerate() {
            for affected in &advisory.affected {
                let slot = index
                    .entry((affected.ecosystem.clone(), affected.name.clone()))
                    .or_default();
                if slot.last() != Some(&position) {
                    slot.push(position);
                }
            }
        }
        VulnDb { advisories, index }
    }

    /// Loads the database in `dir` (written by [`VulnDb::save`]).
    pub fn load(dir: &Path) -> Result<VulnDb, ScanError> {
        let path = dir.join(DB_FILE_NAME);
        let file = match std::fs::File::open(&path) {
            Ok(file) => file,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(ScanError::DbMissing {
                    dir: excerpt(&dir.display().to_string()),
                })
            }
            Err(e) => return Err(io_error(&path)(e)),
        };
        let db: DbFile = serde_json::from_reader(std::io::BufReader::new(file)).map_err(|e| {
            ScanError::DbCorrupt {
                path: excerpt(&path.display().to_string()),
                reason: zerofn_types::sanitize_message(&e.to_string(), 200),
            }
        })?;
        if db.format != DB_FORMAT {
            return Err(ScanError::DbCorrupt {
                path: excerpt(&path.display().to_string()),
                reason: format!("format `{}` is not `{DB_FORMAT}`", excerpt(&db.format)),
            });
        }
        Ok(VulnDb::from_advisories(db.advisories))
    }

    /// Loads the database in `dir`, or an empty one if there is none yet.
    pub fn load_or_new(dir: &Path) -> Result<VulnDb, ScanError> {
        match VulnDb::load(dir) {
            Err(ScanError::DbMissing { .. }) => Ok(VulnDb::new()),
            other => other,
        }
    }

    /// Writes the database to `dir` (created if needed) atomically: a temporary file in the
    /// same directory, then a rename over [`DB_FILE_NAME`].
    pub fn save(&self, dir: &Path) -> Result<(), ScanError> {
        std::fs::create_dir_all(dir).map_err(io_error(dir))?;
        let path = dir.join(DB_FILE_NAME);
        let tmp = dir.join(format!("{DB_FILE_NAME}.tmp-{}", std::process::id()));
        let write = || -> Result<(), std::io::Error> {
            let file = std::fs::File::create(&tmp)?;
            let mut out = std::io::BufWriter::new(file);
            let db = DbFileRef {
                format: DB_FORMAT,
                advisories: &self.advisories,
            };
            serde_json::to_writer(&mut out, &db).map_err(std::io::Error::other)?;
            let file = out.into_inner().map_err(|e| e.into_error())?;
            file.sync_all()?;
            std::fs::rename(&tmp, &path)
        };
        write().map_err(|e| {
            let _ = std::fs::remove_file(&tmp);
            io_error(&path)(e)
        })
    }

    /// Imports OSV records from `path`: a directory (walked for `*.json` files), one
    /// `.json` record, or a `.zip` export. Malformed records are skipped and counted; I/O
    /// and archive errors fail the import and leave the database unchanged.
    pub fn import(&mut self, path: &Path) -> Result<ImportReport, ScanError> {
        let mut report = ImportReport::default();
        let mut parsed = Vec::new();
        let mut push = |name: String, bytes: Vec<u8>| match Advisory::from_json(&bytes) {
            Ok(advisory) => parsed.push(advisory),
            Err(e) => {
                report.malformed += 1;
                if report.malformed_examples.len() < MAX_REPORTED_MALFORMED {
                    report
                        .malformed_examples
                        .push(format!("{}: {e}", excerpt(&name)));
                }
            }
        };
        let metadata = std::fs::metadata(path).map_err(io_error(path))?;
        if metadata.is_dir() {
            let mut files = Vec::new();
            collect_json_files(path, 0, &mut files)?;
            files.sort();
            if files.len() > MAX_IMPORT_RECORDS {
                return Err(ScanError::TooManyRecords {
                    limit: MAX_IMPORT_RECORDS,
                });
            }
            for file in files {
                let bytes = read_limited(&file)?;
                push(file.display().to_string(), bytes);
            }
        } else if has_extension(path, "zip") {
            // Each entry is parsed as it is inflated: only the checked records are kept.
            read_zip(path, |name, bytes| {
                push(name, bytes);
                Ok(())
            })?;
        } else if has_extension(path, "json") {
            let bytes = read_limited(path)?;
            push(path.display().to_string(), bytes);
        } else {
            return Err(ScanError::ImportSourceUnsupported {
                path: excerpt(&path.display().to_string()),
            });
        }

        let mut by_id: BTreeMap<String, Advisory> = std::mem::take(&mut self.advisories)
            .into_iter()
            .map(|a| (a.id.clone(), a))
            .collect();
        for advisory in parsed {
            if advisory.is_withdrawn() {
                report.withdrawn += 1;
                by_id.remove(&advisory.id);
                continue;
            }
            report.imported += 1;
            if by_id.insert(advisory.id.clone(), advisory).is_some() {
                report.replaced += 1;
            }
        }
        *self = VulnDb::from_sorted(by_id);
        report.total = self.len();
        Ok(report)
    }

    /// The advisories that affect `package`.
    pub fn advisories_for<'a>(
        &'a self,
        package: &'a Package,
    ) -> impl Iterator<Item = &'a Advisory> + 'a {
        self.index
            .get(&(package.ecosystem.clone(), package.name.clone()))
            .into_iter()
            .flatten()
            .filter_map(|&i| self.advisories.get(i))
            .filter(|a| a.affects(&package.ecosystem, &package.name, &package.version))
    }

    /// Matches every package of `sbom`: one [`Finding`] per (package, advisory), most
    /// severe first, then by package.
    pub fn scan(&self, sbom: &Sbom) -> Vec<Finding> {
        let mut findings: Vec<Finding> = sbom
            .packages
            .iter()
            .flat_map(|package| {
                self.advisories_for(package).map(move |advisory| Finding {
                    package: package.clone(),
                    advisory_ids: advisory.ids(),
                    severity: advisory.severity,
                    summary: advisory.summary.clone(),
                })
            })
            .collect();
        findings.sort_by(|a, b| {
            b.severity
                .cmp(&a.severity)
                .then_with(|| a.package.name.cmp(&b.package.name))
                .then_with(|| a.package.version.cmp(&b.package.version))
                .then_with(|| a.advisory_ids.cmp(&b.advisory_ids))
        });
        findings
    }
}

#[derive(serde::Serialize)]
struct DbFileRef<'a> {
    format: &'a str,
    advisories: &'a [Advisory],
}

fn has_extension(path: &Path, ext: &str) -> bool {
    path.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| e.eq_ignore_ascii_case(ext))
}

/// Collects `*.json` files under `dir`, not following symbolic links.
fn collect_json_files(dir: &Path, depth: usize, out: &mut Vec<PathBuf>) -> Result<(), ScanError> {
    if depth > MAX_DIR_DEPTH {
        return Ok(());
    }
    for entry in std::fs::read_dir(dir).map_err(io_error(dir))? {
        let entry = entry.map_err(io_error(dir))?;
        let path = entry.path();
        let kind = entry.file_type().map_err(io_error(&path))?;
        if kind.is_dir() {
            collect_json_files(&path, depth + 1, out)?;
        } else if kind.is_file() && has_extension(&path, "json") {
            out.push(path);
            if out.len() > MAX_IMPORT_RECORDS {
                return Err(ScanError::TooManyRecords {
                    limit: MAX_IMPORT_RECORDS,
                });
            }
        }
    }
    Ok(())
}

/// Reads a record file, at most one byte past [`MAX_OSV_RECORD_BYTES`]: a larger file is
/// then refused by the parser (and counted as malformed) without being read whole.
fn read_limited(path: &Path) -> Result<Vec<u8>, ScanError> {
    let file = std::fs::File::open(path).map_err(io_error(path))?;
    let mut bytes = Vec::new();
    file.take(MAX_OSV_RECORD_BYTES as u64 + 1)
        .read_to_end(&mut bytes)
        .map_err(io_error(path))?;
    Ok(bytes)
}

/// Calls `each` with the name and bytes of every `*.json` entry of the zip at `path`. An
/// entry larger than a record may be is handed over cut at the limit (so it fails to parse
/// as a malformed record); the total inflated is capped.
fn read_zip(
    path: &Path,
    mut each: impl FnMut(String, Vec<u8>) -> Result<(), ScanError>,
) -> Result<(), ScanError> {
    let zip_error = |source| ScanError::ZipInvalid {
        path: excerpt(&path.display().to_string()),
        source,
    };
    let file = std::fs::File::open(path).map_err(io_error(path))?;
    let mut archive = zip::ZipArchive::new(std::io::BufReader::new(file)).map_err(zip_error)?;
    if archive.len() > MAX_IMPORT_RECORDS {
        return Err(ScanError::TooManyRecords {
            limit: MAX_IMPORT_RECORDS,
        });
    }
    let mut inflated: u64 = 0;
    for i in 0..archive.len() {
        let entry = archive.by_index(i).map_err(zip_error)?;
        if entry.is_dir() {
            continue;
        }
        let name = entry.name().map_err(zip_error)?.into_owned();
        if !name.to_ascii_lowercase().ends_with(".json") {
            continue;
        }
        let mut bytes = Vec::new();
        entry
            .take(MAX_OSV_RECORD_BYTES as u64 + 1)
            .read_to_end(&mut bytes)
            .map_err(io_error(path))?;
        inflated = inflated.saturating_add(bytes.len() as u64);
        if inflated > MAX_ZIP_INFLATED_BYTES {
            return Err(ScanError::ZipTooLarge {
                path: excerpt(&path.display().to_string()),
                limit: MAX_ZIP_INFLATED_BYTES,
            });
        }
        each(name, bytes)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    const OSV: zerofn_testkit::testdata::Dir = zerofn_testkit::testdata::dir("osv");
    const SBOM: zerofn_testkit::testdata::Dir = zerofn_testkit::testdata::dir("sbom");

    fn real_db() -> (VulnDb, ImportReport) {
        let mut db = VulnDb::new();
        let mut total = ImportReport::default();
        for dir in ["github-advisory-database", "rustsec-advisory-db-osv"] {
            let report = db.import(Path::new(&format!("{OSV}/{dir}"))).unwrap();
            total.imported += report.imported;
            total.withdrawn += report.withdrawn;
            total.malformed += report.malformed;
        }
        let report = db
            .import(Path::new(&format!(
                "{OSV}/osv-schema/ghsa-testdata/equals_with_patch.osv.json"
            )))
            .unwrap();
        total.imported += report.imported;
        // PyPA's YAML records, converted by the test (the importer reads JSON).
        let yaml: Vec<Advisory> = std::fs::read_dir(format!("{OSV}/pypa-advisory-database"))
            .unwrap()
            .map(|e| {
                let text = std::fs::read_to_string(e.unwrap().path()).unwrap();
                Advisory::from_value(serde_norway::from_str(&text).unwrap()).unwrap()
            })
            .collect();
        let mut all = db.advisories.clone();
        all.extend(yaml);
        total.total = all.len();
        (VulnDb::from_advisories(all), total)
    }

    fn sbom(rel: &str) -> Sbom {
        Sbom::from_json(&std::fs::read(format!("{SBOM}/{rel}")).unwrap()).unwrap()
    }

    fn ids_for<'a>(findings: &'a [Finding], name: &str, version: &str) -> Vec<&'a str> {
        findings
            .iter()
            .filter(|f| f.package.name == name && f.package.version == version)
            .map(|f| f.advisory_ids[0].as_str())
            .collect()
    }

    #[test]
    fn import_counts_and_withdrawn() {
        let (db, report) = real_db();
        // 4 GHSA + 12 RUSTSEC (one withdrawn) + 1 ghsa-testdata + 6 PYSEC.
        assert_eq!(report.imported, 4 + 11 + 1);
        assert_eq!(report.withdrawn, 1);
        assert_eq!(report.malformed, 0);
        assert_eq!(db.len(), 4 + 11 + 1 + 6);
    }

    /// The expected matches of the testdata README ("Expected SBOM x OSV matches").
    #[test]
    fn real_sboms_against_real_records() {
        let (db, _) = real_db();
        let juice = db.scan(&sbom("cyclonedx-node-npm/juice-shop.bom.1.6.json"));
        for (name, version, want) in [
            ("jsonwebtoken", "0.1.0", vec!["GHSA-c7hr-j4mj-j2w6"]),
            ("jsonwebtoken", "0.4.0", vec!["GHSA-c7hr-j4mj-j2w6"]),
            ("lodash", "2.4.2", vec!["GHSA-jf85-cpcp-j695"]),
            ("lodash", "4.17.21", vec![]),
            ("vm2", "3.9.11", vec!["GHSA-cchq-frgv-rjh5"]),
            ("minimist", "0.2.4", vec![]),
            ("minimist", "1.2.8", vec![]),
            ("mixin-deep", "1.3.2", vec![]),
        ] {
            assert_eq!(ids_for(&juice, name, version), want, "{name}@{version}");
        }
        let vm2 = juice.iter().find(|f| f.package.name == "vm2").unwrap();
        assert_eq!(vm2.severity, Severity::Critical);
        assert_eq!(vm2.advisory_ids, ["GHSA-cchq-frgv-rjh5", "CVE-2023-37466"]);
        assert_eq!(juice.first().map(|f| f.severity), Some(Severity::Critical));

        let pipenv = db.scan(&sbom(
            "cyclonedx-python/pipenv_plain_with-extras_1.6.json.bin",
        ));
        assert_eq!(ids_for(&pipenv, "idna", "3.6"), ["PYSEC-2024-60"]);
        let env = db.scan(&sbom(
            "cyclonedx-python/environment_plain_with-extras_1.6.json.bin",
        ));
        assert_eq!(ids_for(&env, "idna", "3.11"), Vec::<&str>::new());
        assert!(env.iter().all(|f| f.package.name != "lxml"));

        let trivy = db.scan(&sbom(
            "cyclonedx-rust-cargo/valid_sbom-1.4_trivy-0.36.1_alpine-3.13.1.cdx.json",
        ));
        assert!(trivy.is_empty());
    }

    fn synthetic(purl: &str) -> Sbom {
        let json = format!(
            r#"{{"bomFormat":"CycloneDX","specVersion":"1.5","components":[{{"type":"library","name":"x","purl":"{purl}"}}]}}"#
        );
        Sbom::from_json(json.as_bytes()).unwrap()
    }

    #[test]
    fn synthetic_sbom_inside_and_at_the_fix() {
        let (db, _) = real_db();
        for (inside, fixed, ids, severity) in [
            (
                "pkg:cargo/h2@0.4.1",
                "pkg:cargo/h2@0.4.2",
                vec!["RUSTSEC-2024-0003", "GHSA-8r5v-vm4m-4g25"],
                Severity::Unknown,
            ),
            (
                "pkg:cargo/tokio@1.13.0",
                "pkg:cargo/tokio@1.13.1",
                vec!["RUSTSEC-2021-0124", "CVE-2021-45710", "GHSA-fg7r-2g4j-5cgr"],
                Severity::Unknown,
            ),
            (
                "pkg:npm/minimist@1.2.5",
                "pkg:npm/minimist@1.2.6",
                vec!["GHSA-xvch-5gv4-984h", "CVE-2021-44906"],
                Severity::Critical,
            ),
            (
                "pkg:pypi/PyJWT@2.0.0a2",
                "pkg:pypi/pyjwt@2.4.0",
                vec!["PYSEC-2022-202", "CVE-2022-29217", "GHSA-ffqj-6fqr-9h24"],
                Severity::Unknown,
            ),
        ] {
            let found = db.scan(&synthetic(inside));
            assert_eq!(found.len(), 1, "{inside}: {found:?}");
            let mut got = found[0].advisory_ids.clone();
            let mut want: Vec<String> = ids.iter().map(|s| s.to_string()).collect();
            assert_eq!(got.remove(0), want.remove(0), "{inside}");
            got.sort();
            want.sort();
            assert_eq!(got, want, "{inside}");
            assert_eq!(found[0].severity, severity, "{inside}");
            assert!(db.scan(&synthetic(fixed)).is_empty(), "{fixed}");
        }
        let withdrawn = db.scan(&synthetic("pkg:cargo/ring@0.17.0"));
        assert!(withdrawn.is_empty());
    }

    #[test]
    fn threshold() {
        let (db, _) = real_db();
        let juice = db.scan(&sbom("cyclonedx-node-npm/juice-shop.bom.1.6.json"));
        let critical = findings_at_or_above(&juice, Severity::Critical);
        assert!(critical.iter().all(|f| f.severity == Severity::Critical));
        assert!(critical.iter().any(|f| f.package.name == "vm2"));
        assert!(findings_at_or_above(&juice, Severity::Low).len() >= critical.len());
        assert_eq!(
            findings_at_or_above(&juice, Severity::Unknown).len(),
            juice.len()
        );
    }

    #[test]
    fn save_load_round_trip_and_zip_import() {
        let dir = tempfile::tempdir().unwrap();
        let (db, _) = real_db();
        db.save(dir.path()).unwrap();
        let loaded = VulnDb::load(dir.path()).unwrap();
        assert_eq!(loaded.advisories, db.advisories);
        let juice = sbom("cyclonedx-node-npm/juice-shop.bom.1.6.json");
        assert_eq!(loaded.scan(&juice), db.scan(&juice));

        // A zip laid out as osv.dev's `npm/all.zip`, plus junk that is counted, not fatal.
        let zip_path = dir.path().join("all.zip");
        let mut zip = zip::ZipWriter::new(std::fs::File::create(&zip_path).unwrap());
        let options = zip::write::SimpleFileOptions::default()
            .compression_method(zip::CompressionMethod::Deflated);
        for name in ["GHSA-cchq-frgv-rjh5.json", "GHSA-jf85-cpcp-j695.json"] {
            zip.start_file(name, options).unwrap();
            zip.write_all(
                &std::fs::read(format!("{OSV}/github-advisory-database/{name}")).unwrap(),
            )
            .unwrap();
        }
        zip.start_file("broken.json", options).unwrap();
        zip.write_all(b"{\"id\":").unwrap();
        zip.start_file("README.txt", options).unwrap();
        zip.write_all(b"not a record").unwrap();
        zip.finish().unwrap();
        let mut fresh = VulnDb::new();
        let report = fresh.import(&zip_path).unwrap();
        assert_eq!((report.imported, report.malformed, report.total), (2, 1, 2));
        assert!(report.malformed_examples[0].starts_with("broken.json: OSV record is malformed"));
        // Importing again replaces, it does not duplicate.
        let again = fresh.import(&zip_path).unwrap();
        assert_eq!((again.replaced, again.total), (2, 2));
    }

    #[test]
    fn bad_sources_are_errors() {
        let dir = tempfile::tempdir().unwrap();
        assert!(matches!(
            VulnDb::load(dir.path()),
            Err(ScanError::DbMissing { .. })
        ));
        assert_eq!(VulnDb::load_or_new(dir.path()).unwrap().len(), 0);
        std::fs::write(
            dir.path().join(DB_FILE_NAME),
            b"{\"format\":\"other\",\"advisories\":[]}",
        )
        .unwrap();
        assert!(matches!(
            VulnDb::load(dir.path()),
            Err(ScanError::DbCorrupt { .. })
        ));
        std::fs::write(dir.path().join(DB_FILE_NAME), b"[").unwrap();
        assert!(matches!(
            VulnDb::load(dir.path()),
            Err(ScanError::DbCorrupt { .. })
        ));

        let not_zip = dir.path().join("all.zip");
        std::fs::write(&not_zip, b"PK but not really").unwrap();
        let mut db = VulnDb::new();
        assert!(matches!(
            db.import(&not_zip),
            Err(ScanError::ZipInvalid { .. })
        ));
        let txt = dir.path().join("records.txt");
        std::fs::write(&txt, b"x").unwrap();
        assert!(matches!(
            db.import(&txt),
            Err(ScanError::ImportSourceUnsupported { .. })
        ));
        assert!(matches!(
            db.import(&dir.path().join("missing.json")),
            Err(ScanError::Io { .. })
        ));
        assert!(db.is_empty());

        // An oversized record in a directory is skipped and counted, not fatal.
        let records = dir.path().join("records");
        std::fs::create_dir(&records).unwrap();
        std::fs::write(
            records.join("huge.json"),
            vec![b' '; MAX_OSV_RECORD_BYTES + 10],
        )
        .unwrap();
        std::fs::copy(
            format!("{OSV}/github-advisory-database/GHSA-cchq-frgv-rjh5.json"),
            records.join("vm2.json"),
        )
        .unwrap();
        let report = db.import(&records).unwrap();
        assert_eq!((report.imported, report.malformed), (1, 1));
        assert!(report.malformed_examples[0].contains("more than the limit"));
    }
}
