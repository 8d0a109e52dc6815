//! Running `nft`: a batch in, our table's listing out; and set elements
//! written over nfnetlink ([`super::elements`]). The command line is
//! configurable so tests can run it inside a namespace (`ip netns exec NAME
//! nft`); the netlink socket is then opened in that namespace too.

use super::elements::{self, ElementChange};
use nftables::schema::Nftables;
use serde_json::Value;
use std::process::Stdio;
use std::time::Duration;
use tokio::io::AsyncWriteExt;

/// How long one `nft` run may take before it is killed and counted as failed.
const NFT_TIMEOUT: Duration = Duration::from_secs(30);

/// Why an `nft` run failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NftError {
    #[error("cannot run {program}: {reason} (is the nftables package installed?)")]
    Spawn { program: String, reason: String },
    #[error("{program} {action} failed: {stderr}")]
    Failed { program: String, action: &'static str, stderr: String },
    #[error("{program} {action} took longer than {NFT_TIMEOUT:?}")]
    Timeout { program: String, action: &'static str },
    #[error("{program} listed the table as JSON it does not parse: {0}", program = "nft")]
    BadJson(String),
    #[error("writing set elements over nfnetlink failed: {0}")]
    Elements(String),
    #[error("nf_tables refused the batch: {0}")]
    Netlink(String),
    #[error("the batch holds what is not encoded over nfnetlink: {0}")]
    Unsupported(String),
}

/// The command that runs `nft` (its arguments follow).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NftCommand {
    pub argv: Vec<String>,
    /// The network namespace (under /run/netns) the netlink socket is opened in; `None`: ours.
    pub namespace: Option<String>,
    /// The netlink socket, kept between writes (shared by the command's clones).
    pub link: super::wire::Link,
}

impl Default for NftCommand {
    fn default() -> Self {
        NftCommand { argv: vec!["nft".to_string()], namespace: None, link: Default::default() }
    }
}

impl NftCommand {
    /// `nft` run inside the named network namespace.
    pub fn in_namespace(name: &str) -> NftCommand {
        NftCommand {
            argv: ["ip", "netns", "exec", name, "nft"].map(String::from).to_vec(),
            namespace: Some(name.to_string()),
            link: Default::default(),
        }
    }

    /// Runs `work` on a blocking thread, in this command's network namespace.
    async fn blocking<T: Send + 'static>(
        &self,
        work: impl FnOnce() -> std::io::Result<T> + Send + 'static,
    ) -> std::io::Result<T> {
        let namespace = self.namespace.clone();
        let run = move || match &namespace {
            Some(ns) => crate::netns::run_in_namespace(ns, work).and_then(|r| r),
            None => work(),
        };
        tokio::task::spawn_blocking(run).await.map_err(std::io::Error::other)?
    }

    /// Writes `changes` to table `table` (family inet) in one nfnetlink transaction.
    pub async fn write_elements(&self, table: &str, changes: Vec<ElementChange>) -> Result<(), NftError> {
        let table = table.to_string();
        let link = self.link.clone();
        self.blocking(move || elements::write(&link, &table, &changes))
            .await
            .map_err(|e| NftError::Elements(e.to_string()))
    }

    /// Writes `batch` in one transaction, all of it or nothing: over nfnetlink
    /// ([`super::batch`]) when every object in it is one tortie encodes, else by `nft -j -f -`.
    pub async fn apply(&self, batch: Nftables<'static>) -> Result<(), NftError> {
        // Encoded off the runtime too (a whole table is thousands of rules); a batch that is
        // not encoded comes back for nft.
        let link = self.link.clone();
        let sent = self
            .blocking(move || {
                Ok(match super::batch::encode(&batch) {
                    Ok(encoded) => Ok(link.send(&encoded.bytes, &encoded.finished)),
                    Err(reason) => Err((reason, batch)),
                })
            })
            .await
            .map_err(|e| NftError::Netlink(e.to_string()))?;
        match sent {
            Ok(written) => written.map_err(|e| NftError::Netlink(e.to_string())),
            Err((reason, batch)) => {
                tracing::debug!(subsys = "nftables", %reason, "writing the batch with nft");
                self.apply_nft(&batch).await
            }
        }
    }

    /// Writes `batch` by `nft -j -f -`.
    pub async fn apply_nft(&self, batch: &Nftables<'_>) -> Result<(), NftError> {
        let json = serde_json::to_string(batch).map_err(|e| NftError::BadJson(e.to_string()))?;
        self.run("-f", &["-j", "-f", "-"], Some(json)).await.map(|_| ())
    }

    /// Writes `batch` over nfnetlink; [`NftError::Unsupported`] when it holds an object or
    /// statement form that is not encoded here (nothing is written then).
    pub async fn apply_netlink(&self, batch: &Nftables<'_>) -> Result<(), NftError> {
        let encoded = super::batch::encode(batch).map_err(|e| NftError::Unsupported(e.0))?;
        let link = self.link.clone();
        self.blocking(move || link.send(&encoded.bytes, &encoded.finished))
            .await
            .map_err(|e| NftError::Netlink(e.to_string()))
    }

    /// Whether the kernel would take `batch` (`nft -c -j -f -`: checked, nothing applied).
    pub async fn check(&self, batch: &Nftables<'_>) -> Result<(), NftError> {
        let json = serde_json::to_string(batch).map_err(|e| NftError::BadJson(e.to_string()))?;
        self.run("-c -f", &["-c", "-j", "-f", "-"], Some(json)).await.map(|_| ())
    }

    /// The counters of every rule of table `name` (family inet), read over nfnetlink
    /// ([`super::dump`]); empty when the table does not exist.
    pub async fn rule_counters(&self, name: &str) -> Result<super::dump::ChainCounters, NftError> {
        let name = name.to_string();
        self.blocking(move || super::dump::rule_counters(&name)).await.map_err(|e| NftError::Netlink(e.to_string()))
    }

    /// nf_tables' generation in the command's namespace ([`super::dump::generation`]).
    pub async fn generation(&self) -> Result<u32, NftError> {
        self.blocking(super::dump::generation).await.map_err(|e| NftError::Netlink(e.to_string()))
    }

    /// Our table as `nft -j list table inet NAME` shows it, `None` when it does not exist.
    pub async fn list_table(&self, name: &str) -> Result<Option<Value>, NftError> {
        self.list_table_text(name).await?.as_deref().map(parse_listing).transpose()
    }

    /// [`Self::list_table`] unparsed (a large table's JSON takes long to parse: the caller
    /// chooses where).
    pub async fn list_table_text(&self, name: &str) -> Result<Option<String>, NftError> {
        match self.run("list table", &["-j", "list", "table", "inet", name], None).await {
            Ok(out) => Ok(Some(out)),
            Err(NftError::Failed { stderr, .. }) if stderr.contains("No such file or directory") => Ok(None),
            Err(e) => Err(e),
        }
    }

    async fn run(&self, action: &'static str, args: &[&str], stdin: Option<String>) -> Result<String, NftError> {
        let program = self.argv.join(" ");
        let (first, rest) = self
            .argv
            .split_first()
            .ok_or_else(|| NftError::Spawn { program: program.clone(), reason: "empty command".to_string() })?;
        let mut child = tokio::process::Command::new(first)
            .args(rest)
            .args(args)
            .stdin(if stdin.is_some() { Stdio::piped() } else { Stdio::null() })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| NftError::Spawn { program: program.clone(), reason: e.to_string() })?;
        let work = async {
            if let (Some(text), Some(mut pipe)) = (stdin, child.stdin.take()) {
                // A write error shows as nft's own failure below.
                let _ = pipe.write_all(text.as_bytes()).await;
            }
            child.wait_with_output().await
        };
        let output = tokio::time::timeout(NFT_TIMEOUT, work)
            .await
            .map_err(|_| NftError::Timeout { program: program.clone(), action })?
            .map_err(|e| NftError::Spawn { program: program.clone(), reason: e.to_string() })?;
        if output.status.success() {
            Ok(String::from_utf8_lossy(&output.stdout).into_owned())
        } else {
            let stderr = String::from_utf8_lossy(&output.stderr).trim().to_string();
            Err(NftError::Failed { program, action, stderr })
        }
    }
}

/// A listing's JSON parsed.
pub fn parse_listing(text: &str) -> Result<Value, NftError> {
    serde_json::from_str(text).map_err(|e| NftError::BadJson(e.to_string()))
}

/// A listing reduced to what we wrote: without the `metainfo` object,
/// the kernel's handles and counter values, so that two listings of the
/// same table compare equal.
pub fn normalize(listing: &Value) -> Value {
    fn strip(v: &Value) -> Value {
        match v {
            Value::Object(map) => Value::Object(
                map.iter()
                    .filter(|(k, _)| k.as_str() != "handle")
                    .map(|(k, v)| match (k.as_str(), v) {
                        ("counter", Value::Object(c)) if c.contains_key("packets") => {
                            (k.clone(), serde_json::json!({"packets": 0, "bytes": 0}))
                        }
                        _ => (k.clone(), strip(v)),
                    })
                    .collect(),
            ),
            Value::Array(items) => Value::Array(items.iter().map(strip).collect()),
            other => other.clone(),
        }
    }
    let objects = listing.get("nftables").and_then(Value::as_array).cloned().unwrap_or_default();
    Value::Array(objects.iter().filter(|o| o.get("metainfo").is_none()).map(strip).collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn normalize_drops_metainfo_handles_and_counter_values() {
        let a = json!({"nftables": [
            {"metainfo": {"version": "1.0.6"}},
            {"table": {"family": "inet", "name": "tortie", "handle": 7}},
            {"rule": {"chain": "c", "handle": 3, "expr": [{"counter": {"packets": 9, "bytes": 900}}, {"masquerade": null}]}}
        ]});
        let b = json!({"nftables": [
            {"metainfo": {"version": "1.0.9"}},
            {"table": {"family": "inet", "name": "tortie", "handle": 12}},
            {"rule": {"chain": "c", "handle": 5, "expr": [{"counter": {"packets": 0, "bytes": 0}}, {"masquerade": null}]}}
        ]});
        assert_eq!(normalize(&a), normalize(&b));
        let c = json!({"nftables": [{"table": {"family": "inet", "name": "tortie", "handle": 7}}]});
        assert_ne!(normalize(&a), normalize(&c));
    }
}
