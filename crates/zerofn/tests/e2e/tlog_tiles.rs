//! The audit log served as a C2SP tlog-tiles log, fetched over HTTP from the real binary
//! by a client written from https://c2sp.org/tlog-tiles alone: it reads the checkpoint,
//! fetches the level-0 tiles (full and partial) and recomputes the signed root with RFC
//! 6962's MTH, checks each level-1 hash is the MTH of its level-0 tile, and that every
//! entry in the entry bundles hashes to its level-0 hash.

use crate::audit_log::reference::{self, Hash};
use crate::harness::*;
use crate::Setup;

const PREFIX: &str = "/v1/audit/tlog";

/// `<N>` as the spec encodes it: zero-padded 3-digit elements, all but the last with `x`.
fn encode_index(mut n: u64) -> String {
    let mut elements = vec![format!("{:03}", n % 1000)];
    n /= 1000;
    while n > 0 {
        elements.push(format!("x{:03}", n % 1000));
        n /= 1000;
    }
    elements.reverse();
    elements.join("/")
}

/// RFC 6962 §2.1 MTH over leaf hashes.
fn mth(leaves: &[Hash]) -> Hash {
    match leaves.len() {
        0 => sha2::Sha256::digest([]).into(),
        1 => leaves[0],
        n => {
            let mut k = 1;
            while k * 2 < n {
                k *= 2;
            }
            reference::node(&mth(&leaves[..k]), &mth(&leaves[k..]))
        }
    }
}

use sha2::Digest as _;

struct Client<'a> {
    api: &'a str,
    auth: String,
}

impl Client<'_> {
    fn get(&self, path: &str) -> HttpResponse {
        http(
            self.api,
            "GET",
            &format!("{PREFIX}/{path}"),
            &[("Authorization", &self.auth)],
            b"",
        )
    }

    fn tile(&self, level: &str, n: u64, width: Option<u64>) -> HttpResponse {
        let suffix = width.map(|w| format!(".p/{w}")).unwrap_or_default();
        self.get(&format!("tile/{level}/{}{suffix}", encode_index(n)))
    }
}

fn hashes(body: &[u8]) -> Vec<Hash> {
    assert_eq!(body.len() % 32, 0, "a tile is whole hashes");
    body.chunks(32).map(|c| c.try_into().unwrap()).collect()
}

#[test]
fn a_tlog_client_recomputes_the_signed_root_from_tiles_and_entry_bundles() {
    let s = Setup::new();
    s.deploy("hello", "hello-c", &["/hello"], "");
    // More than one full tile of records.
    for _ in 0..300 {
        assert_eq!(s.platform.get("/hello").status, 200);
    }
    ok(s.platform.cli(&["audit", "checkpoint", "--now"]));
    let token = std::fs::read_to_string(s.platform.data_dir.join("operator-token")).unwrap();
    let c = Client {
        api: &s.platform.api,
        auth: format!("Bearer {}", token.trim()),
    };
    assert_eq!(
        http(
            &s.platform.api,
            "GET",
            &format!("{PREFIX}/checkpoint"),
            &[],
            b""
        )
        .status,
        401,
        "tiles are read with an operator's grant"
    );

    let vkey = ok(s.platform.cli(&["audit", "public-key"]));
    let (size, root) = loop {
        let cp = c.get("checkpoint");
        assert_eq!(cp.status, 200);
        assert_eq!(cp.header("content-type"), Some("text/plain; charset=utf-8"));
        let (_, size, root) = reference::open_checkpoint(&cp.text(), vkey.trim())
            .expect("the checkpoint verifies with the log's key");
        assert!(size > 300, "{size}");
        if size % 256 != 0 {
            break (size, root);
        }
        // One more record, so that the tree ends in a partial tile.
        assert_eq!(s.platform.get("/hello").status, 200);
        ok(s.platform.cli(&["audit", "checkpoint", "--now"]));
    };

    // Level 0: full tiles, then the partial one of width size % 256.
    let full = size / 256;
    let width = size % 256;
    let mut leaves: Vec<Hash> = Vec::new();
    for n in 0..full {
        let t = c.tile("0", n, None);
        assert_eq!(t.status, 200, "{}", t.text());
        assert_eq!(t.header("content-type"), Some("application/octet-stream"));
        assert_eq!(t.body.len(), 8192, "a full tile is 256 hashes");
        leaves.extend(hashes(&t.body));
    }
    let partial = c.tile("0", full, Some(width));
    assert_eq!(partial.status, 200, "{}", partial.text());
    assert_eq!(partial.body.len() as u64, width * 32);
    leaves.extend(hashes(&partial.body));
    assert_eq!(mth(&leaves), root, "the tiles recompute the signed root");

    // A narrower partial tile (an earlier tree's) is the prefix of the wider one. A wider
    // one than the tree holds, and the full tile, are not there yet, unless the platform
    // signed a larger tree meanwhile (every control request is an audit record, signed
    // within a second): then they extend the tile read above.
    let narrow = c.tile("0", full, Some(1));
    assert_eq!(narrow.status, 200);
    assert_eq!(narrow.body, partial.body[..32]);
    for w in [Some(width + 1), None] {
        let t = c.tile("0", full, w);
        match t.status {
            404 => {}
            200 => assert_eq!(t.body[..partial.body.len()], partial.body[..], "{w:?}"),
            other => panic!("tile 0/{full} width {w:?}: {other}"),
        }
    }
    // Far beyond the tree: never there.
    assert_eq!(c.tile("0", full + 1000, Some(1)).status, 404);
    assert_eq!(c.tile("0", full + 1000, None).status, 404);

    // Level 1: each hash is the MTH of the full level-0 tile below it.
    let level1 = c.tile("1", 0, Some(full));
    assert_eq!(level1.status, 200, "{}", level1.text());
    for (i, h) in hashes(&level1.body).iter().enumerate() {
        assert_eq!(*h, mth(&leaves[i * 256..(i + 1) * 256]), "level-1 hash {i}");
    }
    // The tree has no level-2 hash yet (fewer than 65536 leaves).
    assert_eq!(c.tile("2", 0, Some(1)).status, 404);

    // Entry bundles: uint16 big-endian length-prefixed leaves hashing to level 0.
    let mut index = 0usize;
    for (n, w) in (0..full).map(|n| (n, None)).chain([(full, Some(width))]) {
        let suffix = w.map(|w| format!(".p/{w}")).unwrap_or_default();
        let b = c.get(&format!("tile/entries/{}{suffix}", encode_index(n)));
        assert_eq!(b.status, 200, "{}", b.text());
        let mut rest = &b.body[..];
        let mut count = 0;
        while !rest.is_empty() {
            let len = u16::from_be_bytes([rest[0], rest[1]]) as usize;
            let entry = &rest[2..2 + len];
            assert_eq!(reference::leaf_hash(entry), leaves[index], "entry {index}");
            let record: serde_json::Value = serde_json::from_slice(entry).unwrap();
            assert_eq!(record["seq"], index as u64 + 1);
            rest = &rest[2 + len..];
            index += 1;
            count += 1;
        }
        assert_eq!(count, w.unwrap_or(256), "bundle {n}");
    }
    assert_eq!(index as u64, size);

    // Paths that are not the canonical encoding name nothing.
    for path in [
        "tile/0/0",
        "tile/0/x000/001",
        "tile/00/000",
        "tile/0/000.p/0",
        "tile/64/000",
        "tile/0/000.p/256",
    ] {
        assert_eq!(c.get(path).status, 404, "{path}");
    }
}
