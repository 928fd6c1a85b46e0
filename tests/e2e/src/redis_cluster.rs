//! A local Redis Cluster for the end-to-end tests: masters only, on free ports, joined with
//! `redis-cli --cluster create`. The processes belong to the [`crate::Stack`] that started them; this handle only
//! knows where they listen and talks to them with `redis-cli`.

use std::process::Command;
use std::time::Duration;

use crate::wait_for;

/// One node of the cluster.
#[derive(Debug, Clone)]
pub struct ClusterNode {
    /// Client port on 127.0.0.1.
    pub port: u16,
    /// The cluster node id (`CLUSTER MYID`).
    pub id: String,
    /// Name of its process in the stack (for [`crate::Stack::process`]).
    pub process: String,
}

/// A running Redis Cluster.
#[derive(Debug, Clone)]
pub struct RedisCluster {
    pub nodes: Vec<ClusterNode>,
    /// `requirepass` (and `masterauth`) of every node, if any.
    pub password: Option<String>,
}

impl RedisCluster {
    /// `redis-cli -p PORT ARGS…` against one node (no redirections followed); its stdout, or the test fails.
    pub fn cli(&self, port: u16, args: &[&str]) -> String {
        let out = self
            .command(port)
            .args(args)
            .output()
            .expect("cannot run redis-cli");
        assert!(
            out.status.success(),
            "redis-cli -p {port} {}: {}{}",
            args.join(" "),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    }

    /// Like [`RedisCluster::cli`], but `None` when the node does not answer.
    pub fn try_cli(&self, port: u16, args: &[&str]) -> Option<String> {
        let out = self.command(port).args(args).output().ok()?;
        let stdout = String::from_utf8_lossy(&out.stdout).trim().to_owned();
        (out.status.success() && !stdout.starts_with("Could not connect")).then_some(stdout)
    }

    fn command(&self, port: u16) -> Command {
        let mut cmd = Command::new("redis-cli");
        cmd.args(["-h", "127.0.0.1", "-p", &port.to_string()]);
        // The environment rather than `-a`: no password on a command line, no warning on stderr.
        if let Some(password) = &self.password {
            cmd.env("REDISCLI_AUTH", password);
        }
        cmd
    }

    /// The `redis://` URL of the node on `port`, with the password.
    pub fn url(&self, port: u16) -> String {
        match &self.password {
            Some(password) => format!("redis://:{password}@127.0.0.1:{port}/"),
            None => format!("redis://127.0.0.1:{port}/"),
        }
    }

    /// The node on `port`.
    pub fn node(&self, port: u16) -> &ClusterNode {
        self.nodes
            .iter()
            .find(|node| node.port == port)
            .unwrap_or_else(|| panic!("no cluster node on port {port}"))
    }

    /// `CLUSTER KEYSLOT key`, as the node on `port` computes it.
    pub fn keyslot(&self, port: u16, key: &str) -> u16 {
        self.cli(port, &["CLUSTER", "KEYSLOT", key])
            .parse()
            .expect("CLUSTER KEYSLOT answers a number")
    }

    /// The port of the master that holds `slot`, as the node on `asked` sees the cluster.
    pub fn owner_of(&self, asked: u16, slot: u16) -> u16 {
        let nodes = self.cli(asked, &["CLUSTER", "NODES"]);
        for line in nodes.lines() {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let [_, addr, flags, ..] = fields[..] else {
                continue;
            };
            if !flags.contains("master") {
                continue;
            }
            let holds = fields.iter().skip(8).any(|range| {
                let (low, high) = range.split_once('-').unwrap_or((range, range));
                matches!((low.parse::<u16>(), high.parse::<u16>()), (Ok(low), Ok(high)) if (low..=high).contains(&slot))
            });
            if holds {
                let port = addr.split(['@', ':']).nth(1).expect("ip:port@cport");
                return port.parse().expect("a port");
            }
        }
        panic!("no master holds slot {slot}:\n{nodes}");
    }

    /// Every key matching `pattern` stored on the node on `port` itself (`SCAN`, no redirection).
    pub fn keys_on(&self, port: u16, pattern: &str) -> Vec<String> {
        let mut keys: Vec<String> = self
            .cli(port, &["--scan", "--pattern", pattern])
            .lines()
            .map(str::to_owned)
            .collect();
        keys.sort();
        keys
    }

    /// Moves `slot` and its keys from `from` to `to`, the way `redis-cli --cluster reshard` does for one slot:
    /// IMPORTING/MIGRATING, `MIGRATE` of the keys, then the new owner announced to every live node. Clients that
    /// still send the slot's commands to `from` get `MOVED`.
    pub fn move_slot(&self, slot: u16, from: u16, to: u16) {
        let slot_arg = slot.to_string();
        let (from_id, to_id) = (self.node(from).id.clone(), self.node(to).id.clone());
        self.cli(
            to,
            &["CLUSTER", "SETSLOT", &slot_arg, "IMPORTING", &from_id],
        );
        self.cli(
            from,
            &["CLUSTER", "SETSLOT", &slot_arg, "MIGRATING", &to_id],
        );
        loop {
            let keys = self.cli(from, &["CLUSTER", "GETKEYSINSLOT", &slot_arg, "100"]);
            let keys: Vec<&str> = keys.lines().filter(|k| !k.is_empty()).collect();
            if keys.is_empty() {
                break;
            }
            let to_port = to.to_string();
            let mut migrate = vec!["MIGRATE", "127.0.0.1", &to_port, "", "0", "5000"];
            if let Some(password) = &self.password {
                migrate.extend(["AUTH", password]);
            }
            migrate.push("KEYS");
            migrate.extend(keys);
            let answer = self.cli(from, &migrate);
            assert_eq!(answer, "OK", "MIGRATE answered {answer}");
        }
        for node in &self.nodes {
            // A stopped node learns the new owner from the others when it comes back.
            let _ = self.try_cli(
                node.port,
                &["CLUSTER", "SETSLOT", &slot_arg, "NODE", &to_id],
            );
        }
        wait_for(
            &format!("every live node to see slot {slot} on :{to}"),
            Duration::from_secs(10),
            || {
                self.nodes
                    .iter()
                    .filter(|node| self.try_cli(node.port, &["PING"]).is_some())
                    .all(|node| self.owner_of(node.port, slot) == to)
                    .then_some(())
            },
        );
    }
}
