//! Which Redis deployment a service talks to, as settings. Plain data, built without the `redis`
//! feature too, so a settings type can name it without pulling in a Redis client.

use groundwork_config::Secret;
use serde::{Deserialize, Serialize};

/// The shape of the Redis deployment behind a service's URL.
#[derive(
    Debug, Default, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, schemars::JsonSchema,
)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum RedisTopology {
    /// One server (or a proxy in front of several): the URL names it.
    #[default]
    Single,
    /// A Redis Cluster: the URL and `nodes` name seed nodes; the client learns the slot map from
    /// them and follows `MOVED`/`ASK` redirections.
    Cluster,
    /// Redis Sentinel: the URL and `nodes` name sentinels; the client asks them for the current
    /// master of `sentinel_master` and asks again after a failover.
    Sentinel,
}

impl RedisTopology {
    /// `single`, `cluster` or `sentinel`, as in the settings.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Single => "single",
            Self::Cluster => "cluster",
            Self::Sentinel => "sentinel",
        }
    }
}

impl std::fmt::Display for RedisTopology {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The Redis settings beyond the URL and TLS: the topology and the nodes it needs.
///
/// Embedded in a service's settings as a field named `redis`, groundwork-config reads it from
/// `REDIS_TOPOLOGY`, `REDIS_NODES`, `REDIS_SENTINEL_MASTER` and `REDIS_SENTINEL_PASSWORD`. The
/// URL keeps its meaning for everything but the host: its scheme (`rediss://` for TLS), user,
/// password and database apply to every node the client reaches.
#[derive(Clone, Deserialize, Serialize, schemars::JsonSchema)]
pub struct RedisTopologySettings {
    /// `single` (the URL's server), `cluster` (a Redis Cluster; the URL and `nodes` are seed
    /// nodes) or `sentinel` (the URL and `nodes` are sentinels watching `sentinel_master`).
    #[serde(default)]
    pub topology: RedisTopology,
    /// More `host:port` addresses besides the URL's, comma-separated: the cluster's other seed
    /// nodes, or the other sentinels, e.g. `10.0.0.2:6379,10.0.0.3:6379`. Unset: the URL's host
    /// alone.
    #[serde(default)]
    pub nodes: Option<String>,
    /// The name the sentinels monitor the master under (`sentinel monitor <name> ...`).
    #[serde(default = "default_sentinel_master")]
    pub sentinel_master: String,
    /// Password of the sentinels themselves (`requirepass` in sentinel.conf), when they have one;
    /// the URL's password is the data nodes'.
    #[serde(default)]
    pub sentinel_password: Option<Secret>,
}

fn default_sentinel_master() -> String {
    "mymaster".to_owned()
}

impl Default for RedisTopologySettings {
    fn default() -> Self {
        Self {
            topology: RedisTopology::Single,
            nodes: None,
            sentinel_master: default_sentinel_master(),
            sentinel_password: None,
        }
    }
}

impl std::fmt::Debug for RedisTopologySettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisTopologySettings")
            .field("topology", &self.topology)
            .field("nodes", &self.nodes)
            .field("sentinel_master", &self.sentinel_master)
            .field("sentinel_password", &self.sentinel_password)
            .finish()
    }
}

impl RedisTopologySettings {
    /// Settings for `topology` with no extra nodes.
    pub fn new(topology: RedisTopology) -> Self {
        Self {
            topology,
            ..Self::default()
        }
    }

    /// The same settings with `nodes` (`host:port`, comma-separated) added.
    #[must_use]
    pub fn with_nodes(mut self, nodes: impl Into<String>) -> Self {
        self.nodes = Some(nodes.into());
        self
    }

    /// The same settings monitoring `name` (sentinel only).
    #[must_use]
    pub fn with_sentinel_master(mut self, name: impl Into<String>) -> Self {
        self.sentinel_master = name.into();
        self
    }

    /// The extra nodes as `(host, port)` pairs, in order; an entry that is not `host:port` is an
    /// error naming it.
    #[cfg_attr(
        not(feature = "redis"),
        allow(dead_code, reason = "used by the redis pools")
    )]
    pub(crate) fn node_addresses(&self) -> Result<Vec<(String, u16)>, String> {
        let Some(nodes) = &self.nodes else {
            return Ok(Vec::new());
        };
        nodes
            .split(',')
            .map(str::trim)
            .filter(|entry| !entry.is_empty())
            .map(|entry| {
                let (host, port) = entry
                    .rsplit_once(':')
                    .ok_or_else(|| format!("node `{entry}` in `nodes` is not `host:port`"))?;
                let host = host.trim_start_matches('[').trim_end_matches(']');
                let port = port
                    .parse::<u16>()
                    .ok()
                    .filter(|port| *port != 0)
                    .ok_or_else(|| {
                        format!("node `{entry}` in `nodes` has no valid port (1 to 65535)")
                    })?;
                if host.is_empty() {
                    return Err(format!("node `{entry}` in `nodes` has no host"));
                }
                Ok((host.to_owned(), port))
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nodes_parse_into_host_port_pairs() -> Result<(), String> {
        let settings = RedisTopologySettings::new(RedisTopology::Cluster)
            .with_nodes(" 10.0.0.2:6379, [::1]:7000 ,");
        assert_eq!(
            settings.node_addresses()?,
            vec![("10.0.0.2".to_owned(), 6379), ("::1".to_owned(), 7000)]
        );
        Ok(())
    }

    #[test]
    fn a_node_without_a_port_is_named_in_the_error() {
        let settings = RedisTopologySettings::new(RedisTopology::Cluster).with_nodes("a:1,b");
        let error = settings.node_addresses().err().unwrap_or_default();
        assert!(error.contains("`b`"), "{error}");
        let settings = RedisTopologySettings::new(RedisTopology::Cluster).with_nodes("a:0");
        let error = settings.node_addresses().err().unwrap_or_default();
        assert!(error.contains("no valid port"), "{error}");
    }
}
