//! `zerofn object`: a tenant's object storage (put, get, delete, list, and
//! its buckets) over the control API.

use std::io::Write as _;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use base64::Engine as _;
use clap::Subcommand;
use http::Method;

use crate::client::ApiClient;

#[derive(Subcommand)]
pub enum ObjectCommand {
    /// Store an object (replacing what KEY held); the bucket is made by its first put.
    /// Durable when this returns; functions bound with `[[triggers]] bucket` get a
    /// `created` event.
    Put {
        tenant: String,
        bucket: String,
        key: String,
        /// The object's bytes: TEXT, or @FILE for a file's bytes.
        #[arg(long, allow_hyphen_values = true)]
        data: String,
        /// The content type (default text/plain; charset=utf-8 for TEXT,
        /// application/octet-stream for @FILE).
        #[arg(long)]
        content_type: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// Print an object's bytes, or write them to FILE.
    Get {
        tenant: String,
        bucket: String,
        key: String,
        #[arg(long, value_name = "FILE")]
        out: Option<PathBuf>,
    },
    /// Delete an object; functions bound with `[[triggers]] bucket` get a `deleted` event.
    Delete {
        tenant: String,
        bucket: String,
        key: String,
        #[arg(long)]
        json: bool,
    },
    /// List a bucket's objects by key.
    List {
        tenant: String,
        bucket: String,
        /// Only keys starting with this.
        #[arg(long, default_value = "")]
        prefix: String,
        /// Most objects to show (1 to 1000).
        #[arg(long, default_value_t = 1000)]
        limit: u32,
        #[arg(long)]
        json: bool,
    },
    /// A tenant's buckets, or delete an empty one.
    #[command(subcommand)]
    Bucket(BucketCommand),
}

#[derive(Subcommand)]
pub enum BucketCommand {
    /// List a tenant's buckets with their object counts and bytes.
    List {
        tenant: String,
        #[arg(long)]
        json: bool,
    },
    /// Delete an empty bucket.
    Delete { tenant: String, bucket: String },
}

fn seg(text: &str) -> String {
    percent_encoding::utf8_percent_encode(text, percent_encoding::NON_ALPHANUMERIC).to_string()
}

fn object_path(tenant: &str, bucket: &str, key: &str) -> String {
    // Each segment of the key encoded alone: its `/`s stay separators.
    let key: Vec<String> = key.split('/').map(seg).collect();
    format!(
        "/v1/tenants/{}/buckets/{}/objects/{}",
        seg(tenant),
        seg(bucket),
        key.join("/")
    )
}

fn print_object(o: &zerofn_api::ObjectInfo) {
    println!(
        "{}\t{}\t{}\t{}\tv{}\t{}",
        o.key, o.size, o.content_type, o.digest, o.version, o.created_at
    );
}

pub async fn run(data_dir: &Path, cmd: ObjectCommand) -> Result<()> {
    let api = ApiClient::discover(data_dir)?;
    match cmd {
        ObjectCommand::Put {
            tenant,
            bucket,
            key,
            data,
            content_type,
            json,
        } => {
            let (bytes, default_type) = match data.strip_prefix('@') {
                Some(file) => (
                    std::fs::read(file).with_context(|| format!("cannot read {file}"))?,
                    "application/octet-stream",
                ),
                None => (data.into_bytes(), "text/plain; charset=utf-8"),
            };
            let body = zerofn_api::PutObject {
                data: base64::engine::general_purpose::STANDARD.encode(&bytes),
                content_type: Some(content_type.unwrap_or_else(|| default_type.to_owned())),
            };
            let o: zerofn_api::ObjectInfo = api
                .send(Method::PUT, &object_path(&tenant, &bucket, &key), &body)
                .await?;
            if json {
                println!("{}", serde_json::to_string(&o)?);
            } else {
                println!(
                    "stored {}/{} ({} bytes, {}, version {})",
                    o.bucket, o.key, o.size, o.digest, o.version
                );
            }
        }
        ObjectCommand::Get {
            tenant,
            bucket,
            key,
            out,
        } => {
            let got: zerofn_api::ObjectData = api
                .fetch(Method::GET, &object_path(&tenant, &bucket, &key))
                .await?;
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(got.data.as_bytes())
                .context("the control API answered data that is not base64")?;
            match out {
                Some(file) => std::fs::write(&file, &bytes)
                    .with_context(|| format!("cannot write {}", file.display()))?,
                None => {
                    let mut stdout = std::io::stdout().lock();
                    stdout.write_all(&bytes)?;
                    stdout.flush()?;
                }
            }
        }
        ObjectCommand::Delete {
            tenant,
            bucket,
            key,
            json,
        } => {
            let o: zerofn_api::ObjectInfo = api
                .fetch(Method::DELETE, &object_path(&tenant, &bucket, &key))
                .await?;
            if json {
                println!("{}", serde_json::to_string(&o)?);
            } else {
                println!("deleted {}/{} ({})", o.bucket, o.key, o.digest);
            }
        }
        ObjectCommand::List {
            tenant,
            bucket,
            prefix,
            limit,
            json,
        } => {
            if limit == 0 || limit > 1000 {
                bail!("`--limit` must be from 1 to 1000");
            }
            let list: zerofn_api::ObjectList = api
                .fetch(
                    Method::GET,
                    &format!(
                        "/v1/tenants/{}/buckets/{}/objects?prefix={}&limit={limit}",
                        seg(&tenant),
                        seg(&bucket),
                        seg(&prefix)
                    ),
                )
                .await?;
            if json {
                println!("{}", serde_json::to_string(&list.objects)?);
            } else {
                for o in &list.objects {
                    print_object(o);
                }
                if list.next_after.is_some() {
                    println!("(more objects follow; narrow --prefix or raise --limit)");
                }
            }
        }
        ObjectCommand::Bucket(BucketCommand::List { tenant, json }) => {
            let list: zerofn_api::BucketList = api
                .fetch(
                    Method::GET,
                    &format!("/v1/tenants/{}/buckets", seg(&tenant)),
                )
                .await?;
            if json {
                println!("{}", serde_json::to_string(&list.buckets)?);
            } else {
                for b in &list.buckets {
                    println!(
                        "{}\t{} objects\t{} bytes\t{}",
                        b.name, b.objects, b.bytes, b.created_at
                    );
                }
            }
        }
        ObjectCommand::Bucket(BucketCommand::Delete { tenant, bucket }) => {
            let d: zerofn_api::BucketDeleted = api
                .fetch(
                    Method::DELETE,
                    &format!("/v1/tenants/{}/buckets/{}", seg(&tenant), seg(&bucket)),
                )
                .await?;
            println!("deleted bucket {}", d.bucket);
        }
    }
    Ok(())
}
