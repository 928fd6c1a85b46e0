//! API keys from the CLI (the real binary), and what Redis holds of them.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::process::{Command, Output};

use keymesh::api_keys::ApiKeyRecord;
use keymesh_core::apikey::{hash_key, is_well_formed, public_prefix};
use serde_json::{json, Value};
use support::*;

const BIN: &str = env!("CARGO_BIN_EXE_keymesh");
const ORDERS: &str = "https://orders.test";
const BILLING: &str = "https://billing.test";

fn keymesh(redis: &RedisServer, prefix: &str, args: &[&str]) -> Output {
    Command::new(BIN)
        .args(args)
        .env("KEYMESH_REDIS_URL", redis.url())
        .env("KEYMESH_KEY_PREFIX", prefix)
        .env_remove("KEYMESH_CONFIG")
        .env_remove("KEYMESH_ADMIN_TOKEN")
        .output()
        .unwrap()
}

fn json_out(output: &Output) -> Value {
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).unwrap()
}

fn failure(output: &Output) -> String {
    assert!(!output.status.success(), "unexpected success");
    String::from_utf8_lossy(&output.stderr).into_owned()
}

async fn record(redis: &RedisServer, prefix: &str, id: &str) -> Option<ApiKeyRecord> {
    let raw: Option<String> = redis::cmd("GET")
        .arg(format!("{prefix}apikey:{id}"))
        .query_async(&mut redis.conn().await)
        .await
        .unwrap();
    raw.map(|raw| serde_json::from_str(&raw).unwrap())
}

#[tokio::test]
async fn the_cli_creates_lists_regenerates_and_revokes_keys() {
    let redis = RedisServer::start();
    let p = "cli:";

    let created = json_out(&keymesh(
        &redis,
        p,
        &[
            "apikey",
            "create",
            "--owner",
            "alice",
            "--label",
            "CI deploy",
            "--resource",
            ORDERS,
            "--resource",
            BILLING,
            "--scope",
            "read",
            "--scope",
            "write",
            "--expires-in",
            "30d",
            "--tier",
            "free",
            "--json",
        ],
    ));
    let fields: Vec<&str> = created
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    let mut expected = vec![
        "id",
        "key",
        "owner",
        "label",
        "prefix",
        "resources",
        "scopes",
        "created_at",
        "expires_at",
        "tier",
    ];
    expected.sort_unstable();
    let mut sorted = fields.clone();
    sorted.sort_unstable();
    assert_eq!(sorted, expected);
    let key = created["key"].as_str().unwrap().to_owned();
    let id = created["id"].as_str().unwrap().to_owned();
    assert!(is_well_formed(&key), "{key}");
    assert!(id.starts_with("ak_"), "{id}");
    assert_eq!(created["owner"], "alice");
    assert_eq!(created["label"], "CI deploy");
    assert_eq!(created["prefix"], public_prefix(&key).as_str());
    assert_eq!(created["resources"], json!([ORDERS, BILLING]));
    assert_eq!(created["scopes"], json!(["read", "write"]));
    assert_eq!(created["tier"], "free");
    let created_at = created["created_at"].as_u64().unwrap();
    assert_eq!(
        created["expires_at"].as_u64().unwrap(),
        created_at + 30 * 86_400
    );

    // Stored: the hash and the metadata, not the key.
    let stored = record(&redis, p, &id).await.unwrap();
    assert_eq!(stored.hash, hash_key(&key));
    assert_eq!(stored.owner, "alice");
    let owner_ids: Vec<String> = redis::cmd("SMEMBERS")
        .arg(format!("{p}apikeys:owner:alice"))
        .query_async(&mut redis.conn().await)
        .await
        .unwrap();
    assert_eq!(owner_ids, [id.as_str()]);

    // Text output shows the key once, with a warning; no expiry means "never".
    let text = keymesh(
        &redis,
        p,
        &[
            "apikey",
            "create",
            "--owner",
            "alice",
            "--label",
            "laptop",
            "--resource",
            ORDERS,
        ],
    );
    assert!(text.status.success());
    let text = String::from_utf8(text.stdout).unwrap();
    let second_key = text
        .lines()
        .find_map(|line| line.strip_prefix("key:"))
        .unwrap()
        .trim()
        .to_owned();
    assert!(is_well_formed(&second_key), "{text}");
    assert!(text.contains("expires:   never"), "{text}");
    assert!(text.contains("will not be shown again"), "{text}");

    // Refusals: no resource, a bad label, a bad duration.
    let no_resource = failure(&keymesh(
        &redis,
        p,
        &["apikey", "create", "--owner", "alice", "--label", "x"],
    ));
    assert!(no_resource.contains("--resource"), "{no_resource}");
    let bad_label = failure(&keymesh(
        &redis,
        p,
        &[
            "apikey",
            "create",
            "--owner",
            "alice",
            "--label",
            "a\tb",
            "--resource",
            ORDERS,
        ],
    ));
    assert!(bad_label.contains("invalid label"), "{bad_label}");
    let bad_duration = failure(&keymesh(
        &redis,
        p,
        &[
            "apikey",
            "create",
            "--owner",
            "alice",
            "--label",
            "x",
            "--resource",
            ORDERS,
            "--expires-in",
            "30",
        ],
    ));
    assert!(bad_duration.contains("unit"), "{bad_duration}");
    let bad_tier = failure(&keymesh(
        &redis,
        p,
        &[
            "apikey",
            "create",
            "--owner",
            "alice",
            "--label",
            "x",
            "--resource",
            ORDERS,
            "--tier",
            "gold plus",
        ],
    ));
    assert!(bad_tier.contains("invalid tier"), "{bad_tier}");

    // List: metadata only, oldest first.
    let listed = keymesh(&redis, p, &["apikey", "list", "--owner", "alice", "--json"]);
    let listed_text = String::from_utf8_lossy(&listed.stdout).into_owned();
    assert!(!listed_text.contains(&key) && !listed_text.contains(&second_key));
    assert!(!listed_text.contains(&hash_key(&key)) && !listed_text.contains("hash"));
    let listed = json_out(&listed);
    let listed = listed.as_array().unwrap();
    assert_eq!(listed.len(), 2);
    let first = listed.iter().find(|k| k["id"] == id.as_str()).unwrap();
    assert_eq!(first["label"], "CI deploy");
    assert_eq!(first["prefix"], public_prefix(&key).as_str());
    assert_eq!(first["resources"], json!([ORDERS, BILLING]));
    assert_eq!(first["scopes"], json!(["read", "write"]));
    assert_eq!(first["expires_at"], created["expires_at"]);
    assert_eq!(first["tier"], "free");
    let table = keymesh(&redis, p, &["apikey", "list", "--owner", "alice"]);
    let table = String::from_utf8(table.stdout).unwrap();
    let line = table.lines().find(|l| l.starts_with(&id)).unwrap();
    assert!(
        line.contains("label=CI deploy") && line.contains("prefix=km_"),
        "{line}"
    );
    assert!(line.contains("created=") && line.contains('Z'), "{line}");
    assert!(line.contains("tier=free"), "{line}");
    assert!(table.contains("expires=never"), "{table}");
    let nobody = json_out(&keymesh(
        &redis,
        p,
        &["apikey", "list", "--owner", "bob", "--json"],
    ));
    assert_eq!(nobody, json!([]));
    let help = keymesh(&redis, p, &["apikey", "list", "--help"]);
    assert!(
        String::from_utf8_lossy(&help.stdout).contains("last used"),
        "the help says last use is shown"
    );
    assert!(
        line.contains("state=active") && line.contains("last_used=never"),
        "{line}"
    );

    // Disable and enable: the state shows in the listing; an unknown id fails.
    let disabled = keymesh(&redis, p, &["apikey", "disable", &id]);
    assert!(disabled.status.success(), "{}", failure(&disabled));
    let table =
        String::from_utf8(keymesh(&redis, p, &["apikey", "list", "--owner", "alice"]).stdout)
            .unwrap();
    assert!(
        table
            .lines()
            .any(|l| l.starts_with(&id) && l.contains("state=disabled")),
        "{table}"
    );
    assert!(record(&redis, p, &id).await.unwrap().disabled);
    assert!(keymesh(&redis, p, &["apikey", "enable", &id])
        .status
        .success());
    assert!(!record(&redis, p, &id).await.unwrap().disabled);
    assert!(failure(&keymesh(
        &redis,
        p,
        &["apikey", "disable", "ak_AAAAAAAAAAAAAAAA"]
    ))
    .contains("no api key"));
    assert!(failure(&keymesh(
        &redis,
        p,
        &["apikey", "enable", "ak_AAAAAAAAAAAAAAAA"]
    ))
    .contains("no api key"));
    // A grace period longer than 7 days is refused before anything changes.
    let too_long = failure(&keymesh(
        &redis,
        p,
        &["apikey", "regenerate", &id, "--grace", "8d"],
    ));
    assert!(too_long.contains("7 day"), "{too_long}");
    assert_eq!(record(&redis, p, &id).await.unwrap().hash, hash_key(&key));

    // Regenerate: same id, label, rights and expiry; a new key; the old hash is gone from Redis.
    let regenerated = json_out(&keymesh(
        &redis,
        p,
        &["apikey", "regenerate", &id, "--grace", "1h", "--json"],
    ));
    let previous_until = regenerated["previous_secret_until"].as_u64().unwrap();
    assert!(
        previous_until > created_at && previous_until <= created_at + 3_600 + 60,
        "{regenerated}"
    );
    let in_grace = record(&redis, p, &id).await.unwrap().previous.unwrap();
    assert_eq!(
        (in_grace.hash, in_grace.until),
        (hash_key(&key), previous_until)
    );
    let new_key = regenerated["key"].as_str().unwrap().to_owned();
    assert!(is_well_formed(&new_key) && new_key != key);
    for field in [
        "id",
        "owner",
        "label",
        "resources",
        "scopes",
        "created_at",
        "expires_at",
        "tier",
    ] {
        assert_eq!(regenerated[field], created[field], "{field}");
    }
    assert_eq!(regenerated["prefix"], public_prefix(&new_key).as_str());
    let stored = record(&redis, p, &id).await.unwrap();
    assert_eq!(stored.hash, hash_key(&new_key));

    // Revoke: the record and its index entry are gone; a second revoke fails.
    let revoked = keymesh(&redis, p, &["apikey", "revoke", &id]);
    assert!(revoked.status.success());
    assert!(String::from_utf8_lossy(&revoked.stdout).contains(&id));
    assert!(record(&redis, p, &id).await.is_none());
    let listed = json_out(&keymesh(
        &redis,
        p,
        &["apikey", "list", "--owner", "alice", "--json"],
    ));
    assert_eq!(listed.as_array().unwrap().len(), 1);
    assert!(failure(&keymesh(&redis, p, &["apikey", "revoke", &id])).contains("no api key"));
    assert!(failure(&keymesh(&redis, p, &["apikey", "regenerate", &id])).contains("no api key"));
    assert!(failure(&keymesh(&redis, p, &["apikey", "revoke", "ak_*"])).contains("no api key"));
}

#[tokio::test]
async fn redis_holds_hashes_and_never_a_key() {
    let redis = RedisServer::start();
    let p = "raw:";
    let _app = start_app(&redis, p).await;
    let first = create_key(&redis, p, "alice", &[ORDERS]).await;
    let second = create_key(&redis, p, "bob", &[BILLING]).await;
    let regenerated = keymesh::api_keys::ApiKeyStore::new(keymesh::store::names::KeyNames::new(p))
        .regenerate(
            &mut redis.conn().await,
            &second.id,
            keymesh::api_keys::Grace::NONE,
            NOW,
        )
        .await
        .unwrap()
        .unwrap();

    // Every value of every key under the prefix: strings, sets, hashes and the change log stream.
    let mut conn = redis.conn().await;
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{p}*"))
        .query_async(&mut conn)
        .await
        .unwrap();
    let mut dump = String::new();
    for name in &keys {
        let kind: String = redis::cmd("TYPE")
            .arg(name)
            .query_async(&mut conn)
            .await
            .unwrap();
        let value: redis::Value = match kind.as_str() {
            "string" => redis::cmd("GET").arg(name).query_async(&mut conn).await,
            "set" => {
                redis::cmd("SMEMBERS")
                    .arg(name)
                    .query_async(&mut conn)
                    .await
            }
            "hash" => redis::cmd("HGETALL").arg(name).query_async(&mut conn).await,
            "stream" => {
                redis::cmd("XRANGE")
                    .arg(name)
                    .arg("-")
                    .arg("+")
                    .query_async(&mut conn)
                    .await
            }
            other => panic!("unexpected {other} at {name}"),
        }
        .unwrap();
        dump.push_str(&format!("{name} = {value:?}\n"));
    }
    assert!(keys.contains(&format!("{p}changelog")), "{keys:?}");
    for key in [&first.key, &second.key, &regenerated.key] {
        assert!(
            !dump.contains(key.as_str()),
            "a key is stored in clear:\n{dump}"
        );
        assert!(dump.contains(&hash_key(key)), "hash missing:\n{dump}");
    }
}

#[tokio::test]
async fn a_full_scan_hands_every_record_over_once_batch_by_batch_and_skips_corrupt_ones() {
    // More records than one SCAN batch (1000) and one MGET (500), as the mirror's full load reads them.
    const RECORDS: usize = 2_345;
    let redis = RedisServer::start();
    let p = "scan:";
    let mut conn = redis.conn().await;
    let mut pipe = redis::pipe();
    for i in 0..RECORDS {
        let key = keymesh_core::apikey::format_key(&[(i % 251) as u8; 32]);
        let record = ApiKeyRecord {
            id: format!("ak_scan{i}"),
            owner: "scanner".to_owned(),
            label: "scanned".to_owned(),
            hash: format!("{}-{i}", hash_key(&key)),
            prefix: public_prefix(&key),
            resources: vec![ORDERS.to_owned()],
            ..ApiKeyRecord::default()
        };
        pipe.set(
            format!("{p}apikey:{}", record.id),
            serde_json::to_string(&record).unwrap(),
        )
        .ignore();
    }
    pipe.set(format!("{p}apikey:ak_corrupt"), "{not json")
        .ignore()
        .set(
            format!("{p}apikey:ak_elsewhere"),
            serde_json::to_string(&ApiKeyRecord {
                id: "ak_other".to_owned(),
                ..ApiKeyRecord::default()
            })
            .unwrap(),
        )
        .ignore()
        .sadd(format!("{p}apikeys:owner:scanner"), "ak_scan0")
        .ignore();
    let (): () = pipe.query_async(&mut conn).await.unwrap();

    let store = keymesh::api_keys::ApiKeyStore::new(keymesh::store::names::KeyNames::new(p));
    // SCAN may return a record twice (if the table is resized between calls): the mirror keys entries by hash.
    let mut seen = std::collections::HashSet::new();
    store
        .scan_each(&mut conn, |record| {
            seen.insert(record.id);
        })
        .await
        .unwrap();
    assert_eq!(
        seen.len(),
        RECORDS,
        "the corrupt and misfiled records are left out"
    );
    assert!((0..RECORDS).all(|i| seen.contains(&format!("ak_scan{i}"))));
}
