//! keymesh on a Redis Cluster: three password-protected masters started by the test, the real sidecar in cluster
//! mode given only the two masters that do *not* hold its keys as seeds, and real Envoy. Tokens and API keys work
//! through Envoy; all of keymesh's keys are on one master; the sidecar keeps working when the node it listens on
//! for changes goes and when its keys move to another master (`MOVED`); with that master gone, token requests get
//! an RFC 6749 503 while Envoy keeps the last keys. A key prefix without a hash tag is refused at start.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::process::Command;
use std::time::{Duration, Instant};

use keymesh_e2e::{bearer, request, sidecar_bin, wait_for, RedisCluster, Stack};
use serde_json::Value;

const PASSWORD: &str = "e2e-cluster-s3cret";
/// The hash tag `{e2e}` puts every key in one slot.
const PREFIX: &str = "{e2e}:";
const ORDERS: &str = "https://orders.local";
const PAYMENTS: &str = "https://payments.local";
const SECRET: &str = "cluster-client-secret";

/// Waits until `port` answers `status` for `authorization` (changes reach Envoy asynchronously).
fn eventually(stack: &Stack, port: u16, authorization: &str, status: u16) {
    wait_for(
        &format!("{status} at :{port}"),
        Duration::from_secs(10),
        || {
            (stack
                .get(port, "/x", &[("authorization", authorization)])
                .status
                == status)
                .then_some(())
        },
    );
}

/// Creates an API key for orders with the CLI; returns `(id, "apikey <key>")`.
fn new_api_key(stack: &Stack, owner: &str) -> (String, String) {
    let out = stack.keymesh(&[
        "apikey",
        "create",
        "--owner",
        owner,
        "--label",
        "cluster",
        "--resource",
        ORDERS,
        "--scope",
        "orders:read",
        "--json",
    ]);
    let created: Value = serde_json::from_slice(&out.stdout).unwrap();
    (
        created["id"].as_str().unwrap().to_owned(),
        format!("apikey {}", created["key"].as_str().unwrap()),
    )
}

/// Subscribers of keymesh's change channel on the node on `port`.
fn subscribers(cluster: &RedisCluster, port: u16) -> u32 {
    let answer = cluster.cli(port, &["PUBSUB", "NUMSUB", &format!("{PREFIX}changes")]);
    answer.lines().nth(1).unwrap().parse().unwrap()
}

/// `MOVED` replies the node on `port` has sent (`INFO errorstats`).
fn moved_replies(cluster: &RedisCluster, port: u16) -> u64 {
    let stats = cluster.cli(port, &["INFO", "errorstats"]);
    stats
        .lines()
        .find_map(|line| line.strip_prefix("errorstat_MOVED:count="))
        .map_or(0, |count| count.trim().parse().unwrap())
}

/// Full loads of the mirror so far (one per Redis session), from the sidecar's log.
fn full_loads(stack: &Stack) -> usize {
    std::fs::read_to_string(stack.dir.path().join("sidecar.log"))
        .unwrap()
        .matches("bundle content loaded")
        .count()
}

/// `keymesh serve` with a prefix that has no hash tag: it must exit at once, naming the setting.
fn refuses_a_prefix_without_hash_tag(stack: &Stack) {
    let mut serve = Command::new(sidecar_bin())
        .arg("serve")
        .envs(stack.sidecar_env())
        .env("KEYMESH_KEY_PREFIX", "e2e:")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while serve.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = serve.kill();
            let _ = serve.wait();
            panic!("keymesh serve started with a key prefix that has no hash tag");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = serve.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(
        stderr.contains("key_prefix")
            && stderr.contains("KEYMESH_KEY_PREFIX")
            && stderr.contains("hash tag"),
        "{stderr}"
    );
    assert!(
        !stderr.contains(PASSWORD),
        "the password was printed: {stderr}"
    );
}

#[test]
fn keymesh_on_a_redis_cluster() {
    let started = Instant::now();
    let mut stack = Stack::new();
    let cluster = stack.start_redis_cluster(3, Some(PASSWORD));
    let any = cluster.nodes[0].port;
    let slot = cluster.keyslot(any, &format!("{PREFIX}version"));
    assert_eq!(
        slot,
        cluster.keyslot(any, "e2e"),
        "the hash tag decides the slot"
    );
    let owner = cluster.owner_of(any, slot);
    let seeds: Vec<u16> = cluster
        .nodes
        .iter()
        .map(|node| node.port)
        .filter(|port| *port != owner)
        .collect();
    assert_eq!(seeds.len(), 2);
    // Seeds that do not hold keymesh's slot: the sidecar finds the owner through them.
    let seed_urls: Vec<String> = seeds.iter().map(|port| cluster.url(*port)).collect();
    stack.set_env("KEYMESH_REDIS_CLUSTER", "true");
    stack.set_env("KEYMESH_REDIS_URL", seed_urls.join(","));
    stack.set_env("KEYMESH_KEY_PREFIX", PREFIX);

    refuses_a_prefix_without_hash_tag(&stack);

    stack.start_sidecar();
    stack.start_mesh();
    let p = stack.ports;

    // A token issued by the sidecar works at both APIs through Envoy.
    stack.create_client(
        "cluster-client",
        SECRET,
        &[ORDERS, PAYMENTS],
        &["orders:read", "payments:read"],
    );
    let token = stack.token("cluster-client", SECRET, &[ORDERS, PAYMENTS], "");
    let auth = bearer(&token);
    eventually(&stack, p.orders, &auth, 200);
    stack.responds_with(200, p.payments, "/x", &[("authorization", &auth)]);

    // Every keymesh key is on the master that holds the slot; the other masters hold nothing.
    let on_owner = cluster.keys_on(owner, "*");
    for key in [
        "version",
        "changelog",
        "signing:keys",
        "client:cluster-client",
    ] {
        let key = format!("{PREFIX}{key}");
        assert!(
            on_owner.contains(&key),
            "{key} not on :{owner}: {on_owner:?}"
        );
    }
    assert!(
        on_owner.iter().all(|key| key.starts_with(PREFIX)),
        "{on_owner:?}"
    );
    for seed in &seeds {
        assert_eq!(
            cluster.keys_on(*seed, "*"),
            Vec::<String>::new(),
            "keys on :{seed}"
        );
    }

    // An API key created with the CLI works, and is refused once revoked.
    let (id, key) = new_api_key(&stack, "alice");
    eventually(&stack, p.orders, &key, 200);
    stack.keymesh(&["apikey", "revoke", &id]);
    eventually(&stack, p.orders, &key, 401);

    // The seed the mirror listens on for changes goes: it subscribes on the other seed, loads everything again
    // (SCAN, sent to keymesh's master) and follows changes.
    let (_, before_failover) = new_api_key(&stack, "dave");
    eventually(&stack, p.orders, &before_failover, 200);
    let loads = full_loads(&stack);
    let listening = wait_for("the mirror's subscription", Duration::from_secs(5), || {
        seeds
            .iter()
            .copied()
            .find(|seed| subscribers(&cluster, *seed) == 1)
    });
    let other_seed = seeds
        .iter()
        .copied()
        .find(|seed| *seed != listening)
        .unwrap();
    stack
        .process(&cluster.node(listening).process.clone())
        .stop(Duration::from_secs(3));
    let (_, after_failover) = new_api_key(&stack, "bob");
    eventually(&stack, p.orders, &after_failover, 200);
    assert_eq!(subscribers(&cluster, other_seed), 1);
    assert!(
        full_loads(&stack) > loads,
        "the mirror did not start a new session"
    );
    stack.responds_with(200, p.orders, "/x", &[("authorization", &before_failover)]);

    // keymesh's slot moves, with its keys, to the surviving seed: the sidecar's connections still send to the old
    // owner, which answers MOVED, and the sidecar follows.
    let moved_before = moved_replies(&cluster, owner);
    cluster.move_slot(slot, owner, other_seed);
    assert!(cluster.keys_on(owner, "*").is_empty());
    assert!(cluster
        .keys_on(other_seed, "*")
        .contains(&format!("{PREFIX}version")));
    let token = stack.token("cluster-client", SECRET, &[ORDERS], "");
    assert!(
        moved_replies(&cluster, owner) > moved_before,
        "the old owner sent no MOVED: the sidecar did not use its old slot map"
    );
    let clients = stack.keymesh(&["client", "list"]);
    assert!(
        String::from_utf8_lossy(&clients.stdout).starts_with("cluster-client\t"),
        "{}",
        String::from_utf8_lossy(&clients.stdout)
    );
    let (moved_id, moved_key) = new_api_key(&stack, "carol");
    eventually(&stack, p.orders, &moved_key, 200);
    eventually(&stack, p.orders, &bearer(&token), 200);
    stack.keymesh(&["apikey", "revoke", &moved_id]);
    eventually(&stack, p.orders, &moved_key, 401);

    // Revoking an access token (a script whose marker key is built in Lua from the prefix) reaches Envoy too.
    let revoked = request(
        "POST",
        p.sidecar,
        "/oauth/revoke",
        &[
            (
                "authorization",
                &keymesh_e2e::basic("cluster-client", SECRET),
            ),
            ("content-type", "application/x-www-form-urlencoded"),
        ],
        Some(&format!("token={token}")),
    )
    .unwrap();
    assert_eq!(revoked.status, 200, "{}", revoked.body);
    eventually(&stack, p.orders, &bearer(&token), 401);

    // keymesh's master goes too: token requests get an RFC 6749 error with 503, Envoy keeps the last keys.
    stack
        .process(&cluster.node(other_seed).process.clone())
        .stop(Duration::from_secs(3));
    let asked = Instant::now();
    let refused = stack.token_response(
        "cluster-client",
        SECRET,
        &format!(
            "grant_type=client_credentials&resource={}",
            keymesh_e2e::form_urlencode(ORDERS)
        ),
    );
    assert_eq!(refused.status, 503, "{}", refused.body);
    assert_eq!(
        refused.json()["error"],
        "temporarily_unavailable",
        "{}",
        refused.body
    );
    assert!(
        asked.elapsed() < Duration::from_secs(5),
        "took {:?}",
        asked.elapsed()
    );
    stack.responds_with(200, p.payments, "/x", &[("authorization", &auth)]);

    let log = std::fs::read_to_string(stack.dir.path().join("sidecar.log")).unwrap();
    assert!(
        !log.contains(PASSWORD),
        "the Redis password is in the sidecar log"
    );
    eprintln!("redis cluster scenario took {:?}", started.elapsed());
}
