//! `tortie ipam show|check|release`, in calicoctl's layout or as documents. They go through the
//! agent's API when it answers on `--socket` (the node's one writer, architecture invariant 5);
//! otherwise they act on the datastore the configuration names (`--config`) themselves and say
//! so on standard error. Both ways run [`Admin`]; the tables are in [`super::ipam_view`].

use super::ipam_view as view;
use super::{IpamCommand, ListFormat};
use crate::api::client::{self, ClientError};
use crate::config::{ConfigSource, DatastoreConfig, DatastoreType, load};
use crate::datastore::Datastore;
use crate::datastore::etcd::{EtcdBackend, EtcdOptions};
use crate::datastore::kubernetes::KubeBackend;
use crate::datastore::sqlite::{SqliteBackend, SqliteOptions};
use crate::ipam::admin::{Admin, AdminError, ReleaseRequest};
use crate::ipam::check::CheckReport;
use clap::Args;
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

/// `-o`: a format, or (for `ipam check`, as calicoctl's `-o report.json`) the file to write the
/// report to. A file named like a format is written as `./json`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum IpamOutput {
    Format(ListFormat),
    File(PathBuf),
}

fn parse_output(text: &str) -> Result<IpamOutput, String> {
    use clap::ValueEnum;
    match ListFormat::from_str(text, true) {
        Ok(format) => Ok(IpamOutput::Format(format)),
        Err(_) if text.is_empty() => Err("give table, wide, json, yaml, or (ipam check) a file".into()),
        Err(_) => Ok(IpamOutput::File(PathBuf::from(text))),
    }
}

/// How the `ipam` commands reach the agent, and how they print.
#[derive(Debug, Args)]
pub struct IpamClientArgs {
    /// The agent's API socket; when nothing answers there, the datastore is used directly.
    #[arg(long, env = "TORTIE_API_SOCKET", default_value = crate::config::DEFAULT_API_SOCKET)]
    pub socket: PathBuf,
    /// table, wide, json or yaml; for `ipam check` also a file to write the report to.
    #[arg(long, short, value_name = "FORMAT|FILE", value_parser = parse_output, default_value = "table")]
    pub output: IpamOutput,
    /// How long to wait for the agent's answer, in seconds (then exit 1).
    #[arg(long, value_name = "SECONDS", default_value_t = client::DEFAULT_TIMEOUT.as_secs())]
    pub timeout: u64,
}

/// Why a command failed, as printed.
struct Failure(String);

impl From<AdminError> for Failure {
    fn from(e: AdminError) -> Self {
        Failure(e.to_string())
    }
}

impl From<anyhow::Error> for Failure {
    fn from(e: anyhow::Error) -> Self {
        Failure(format!("{e:#}"))
    }
}

/// Where the operations run.
enum Backend {
    Agent { socket: PathBuf, timeout: Duration },
    Local(Admin),
}

impl Backend {
    /// The agent when its socket answers, else the datastore itself (said on stderr).
    async fn choose(client: &IpamClientArgs, config: Option<&Path>) -> Result<Backend, Failure> {
        if tokio::net::UnixStream::connect(&client.socket).await.is_ok() {
            return Ok(Backend::Agent { socket: client.socket.clone(), timeout: Duration::from_secs(client.timeout) });
        }
        eprintln!("tortie: no agent answers on {}: acting on the datastore directly", client.socket.display());
        let loaded = load(&ConfigSource::from_process(config)).map_err(anyhow::Error::from)?;
        let store = open_datastore(&loaded.config.datastore).await?;
        let kube = match loaded.config.datastore.kind {
            DatastoreType::Kubernetes => Some(kube_client(&loaded.config.datastore).await?),
            _ => None,
        };
        Ok(Backend::Local(Admin::new(store, kube)))
    }

    async fn call<T: DeserializeOwned, B: Serialize>(
        socket: &Path,
        timeout: Duration,
        method: &str,
        path: &str,
        body: Option<&B>,
    ) -> Result<T, Failure> {
        client::request_json(socket, method, path, body, timeout).await.map_err(|e| {
            Failure(match &e {
                ClientError::Status { body, .. } => serde_json::from_str::<serde_json::Value>(body)
                    .ok()
                    .and_then(|v| v["error"].as_str().map(str::to_string))
                    .unwrap_or_else(|| e.to_string()),
                _ => e.to_string(),
            })
        })
    }

    async fn check(&self) -> Result<CheckReport, Failure> {
        match self {
            Backend::Agent { socket, timeout } => {
                Self::call(socket, *timeout, "GET", "/v1/ipam/check", None::<&()>).await
            }
            Backend::Local(admin) => Ok(admin.check().await?),
        }
    }

    async fn configuration(&self) -> Result<crate::ipam::admin::ConfigurationView, Failure> {
        match self {
            Backend::Agent { socket, timeout } => {
                Self::call(socket, *timeout, "GET", "/v1/ipam/configuration", None::<&()>).await
            }
            Backend::Local(admin) => Ok(admin.configuration().await?),
        }
    }

    async fn address(&self, ip: std::net::IpAddr) -> Result<crate::ipam::admin::AddressView, Failure> {
        match self {
            Backend::Agent { socket, timeout } => {
                Self::call(socket, *timeout, "GET", &format!("/v1/ipam/addresses/{ip}"), None::<&()>).await
            }
            Backend::Local(admin) => Ok(admin.address(ip).await?),
        }
    }

    async fn release(&self, request: &ReleaseRequest) -> Result<crate::ipam::admin::ReleaseAnswer, Failure> {
        match self {
            Backend::Agent { socket, timeout } => {
                Self::call(socket, *timeout, "POST", "/v1/ipam/release", Some(request)).await
            }
            Backend::Local(admin) => Ok(admin.release(request).await?),
        }
    }
}

pub fn run(command: &IpamCommand) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("tortie: cannot start the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    match runtime.block_on(dispatch(command)) {
        Ok(code) => code,
        Err(Failure(message)) => {
            eprintln!("tortie: {message}");
            ExitCode::from(1)
        }
    }
}

/// The format of `-o`, refusing a file where no report is written.
fn format_of(output: &IpamOutput) -> Result<ListFormat, Failure> {
    match output {
        IpamOutput::Format(format) => Ok(*format),
        IpamOutput::File(path) => Err(Failure(format!(
            "-o {}: give table, wide, json or yaml (only `ipam check` writes a report to a file)",
            path.display()
        ))),
    }
}

fn emit<T: Serialize>(format: ListFormat, value: &T, table: impl FnOnce(&T, bool) -> String) -> Result<(), Failure> {
    print!("{}", super::output::render(format, value, table).map_err(Failure)?);
    Ok(())
}

async fn dispatch(command: &IpamCommand) -> Result<ExitCode, Failure> {
    match command {
        IpamCommand::Show { client, store, show_blocks, show_borrowed, show_configuration, ip } => {
            let format = format_of(&client.output)?;
            let backend = Backend::choose(client, store.config.as_deref()).await?;
            if *show_configuration {
                emit(format, &backend.configuration().await?, |c, _| view::configuration(c))?;
            } else if let Some(ip) = ip {
                emit(format, &backend.address(*ip).await?, |a, _| view::address(a))?;
            } else {
                let report = backend.check().await?;
                if *show_borrowed {
                    emit(format, &report.borrowed, |b, _| view::borrowed(b))?;
                } else {
                    let usage = view::UsageView::of(&report, *show_blocks);
                    emit(format, &usage, view::usage)?;
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        IpamCommand::Check { client, store } => {
            let backend = Backend::choose(client, store.config.as_deref()).await?;
            let report = backend.check().await?;
            match &client.output {
                IpamOutput::File(path) => {
                    let json = serde_json::to_string_pretty(&report).map_err(anyhow::Error::from)?;
                    std::fs::write(path, json + "\n")
                        .map_err(|e| Failure(format!("cannot write the report {}: {e}", path.display())))?;
                    print!("{}", view::check(&report, false));
                    println!("Report written to {}.", path.display());
                }
                IpamOutput::Format(format) => emit(*format, &report, view::check)?,
            }
            Ok(if report.is_clean() { ExitCode::SUCCESS } else { ExitCode::from(1) })
        }
        IpamCommand::Release { client, store, ip, handle, from_report, force, dry_run } => {
            let format = format_of(&client.output)?;
            let leaked = match from_report {
                Some(path) => Some(read_report(path)?.leaked),
                None => None,
            };
            let request = ReleaseRequest { ip: *ip, handle: handle.clone(), leaked, force: *force, dry_run: *dry_run };
            let backend = Backend::choose(client, store.config.as_deref()).await?;
            let answer = backend.release(&request).await?;
            emit(format, &answer, |a, _| view::release(a))?;
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// A report `ipam check -o FILE` wrote; the error names the file.
fn read_report(path: &Path) -> Result<CheckReport, Failure> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| Failure(format!("--from-report {}: cannot read it: {e}", path.display())))?;
    serde_json::from_str(&text).map_err(|e| {
        Failure(format!("--from-report {}: not a report of `tortie ipam check -o FILE`: {e}", path.display()))
    })
}

/// The datastore named by the configuration (file, then `TORTIE_*` variables, then defaults).
pub async fn open(config: Option<&Path>) -> anyhow::Result<Datastore> {
    let loaded = load(&ConfigSource::from_process(config))?;
    open_datastore(&loaded.config.datastore).await
}

/// The Kubernetes client a datastore section names (its kubeconfig, else the usual inference).
async fn kube_client(config: &DatastoreConfig) -> anyhow::Result<kube::Client> {
    let kube_config = match &config.kubeconfig {
        Some(path) => {
            let file = kube::config::Kubeconfig::read_from(path)?;
            kube::Config::from_custom_kubeconfig(file, &Default::default()).await?
        }
        None => kube::Config::infer().await?,
    };
    Ok(kube::Client::try_from(kube_config)?)
}

/// Opens the backend a datastore section names.
pub async fn open_datastore(config: &DatastoreConfig) -> anyhow::Result<Datastore> {
    Ok(match config.kind {
        DatastoreType::Sqlite => {
            Datastore::new(SqliteBackend::open(&config.sqlite_path, SqliteOptions::default()).await?)
        }
        DatastoreType::Etcd => Datastore::new(
            EtcdBackend::connect(EtcdOptions {
                prefix: config.etcd_prefix.clone(),
                ..EtcdOptions::new(config.etcd_endpoints.clone())
            })
            .await?,
        ),
        DatastoreType::Kubernetes => Datastore::new(KubeBackend::new(kube_client(config).await?)),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn output_is_a_format_or_a_report_file() {
        assert_eq!(parse_output("wide"), Ok(IpamOutput::Format(ListFormat::Wide)));
        assert_eq!(parse_output("YAML"), Ok(IpamOutput::Format(ListFormat::Yaml)));
        assert_eq!(parse_output("report.json"), Ok(IpamOutput::File("report.json".into())));
        assert!(parse_output("").is_err());
    }
}
