//! Validation of `[cluster]`: node, peers, the shared secret and the vote rule.

use super::*;
use crate::config::MIN_CLUSTER_SECRET;
use crate::model::{ClusterHealth, ClusterSettings};

impl Validator<'_> {
    /// `[cluster]`: node, peers and secret_file are required; the secret must be at
    /// least [`MIN_CLUSTER_SECRET`] bytes (it keys the HMAC of every peer message).
    pub(in crate::config) fn cluster(
        &mut self,
        c: &raw::RawCluster,
        base: &Path,
    ) -> Option<ClusterSettings> {
        let mut ok = true;
        for (k, missing) in [
            ("node", c.node.is_none()),
            ("peers", c.peers.is_none()),
            ("secret_file", c.secret_file.is_none()),
        ] {
            if missing {
                // Reported at the table: the key is not in the file to point at.
                self.err(&["cluster"], format!("[cluster] needs {k}"));
                ok = false;
            }
        }
        let node = c.node.clone().unwrap_or_default();
        if c.node.is_some()
            && (node.is_empty()
                || node.len() > 64
                || !node
                    .chars()
                    .all(|ch| ch.is_ascii_alphanumeric() || "-_.".contains(ch)))
        {
            self.err(
                &["cluster", "node"],
                format!("node {node:?} must be 1 to 64 of A-Z a-z 0-9 - _ . (e.g. \"fra-1\")"),
            );
            ok = false;
        }
        let mut peers = Vec::new();
        for (i, p) in c.peers.iter().flatten().enumerate() {
            match p.parse::<SocketAddr>() {
                Ok(a) if peers.contains(&a) => {
                    self.err(&["cluster", "peers"], format!("peer {a} is listed twice"));
                    ok = false;
                }
                Ok(a) => peers.push(a),
                Err(_) => {
                    self.err(
                        &["cluster", "peers"],
                        format!(
                            "peers[{i}] = {p:?} is not ip:port (a peer's http_listen, e.g. \"10.0.0.2:9153\")"
                        ),
                    );
                    ok = false;
                }
            }
        }
        let health = match c.health.as_deref() {
            None | Some("quorum") => ClusterHealth::Quorum,
            Some("local") => ClusterHealth::Local,
            Some("all") => ClusterHealth::All,
            Some("any") => ClusterHealth::Any,
            Some(other) => {
                self.err(
                    &["cluster", "health"],
                    format!("health {other:?} is not one of local, quorum, all, any"),
                );
                ok = false;
                ClusterHealth::Quorum
            }
        };
        let stale_after = self.duration(
            &["cluster", "stale_after"],
            c.stale_after.as_deref(),
            Duration::from_secs(5),
        );
        if stale_after < Duration::from_millis(200) {
            self.err(
                &["cluster", "stale_after"],
                "stale_after must be at least 200ms (votes are refreshed every stale_after/4)",
            );
            ok = false;
        }
        let secret_file = base.join(c.secret_file.as_deref()?);
        let secret = self.secret_file(
            &["cluster", "secret_file"],
            &secret_file,
            "the cluster secret",
        )?;
        if secret.as_bytes().len() < MIN_CLUSTER_SECRET {
            self.err(
                &["cluster", "secret_file"],
                format!(
                    "{} holds {} bytes; the cluster secret needs at least {MIN_CLUSTER_SECRET} (e.g. openssl rand -hex 32)",
                    secret_file.display(),
                    secret.as_bytes().len()
                ),
            );
            return None;
        }
        ok.then_some(ClusterSettings {
            node,
            peers,
            secret_file,
            secret,
            health,
            stale_after,
        })
    }
}
