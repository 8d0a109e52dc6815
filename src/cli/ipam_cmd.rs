//! `tortie ipam show|check|release`, in calicoctl's layout or JSON. The agent does not serve IPAM
//! over its API yet, so these open the datastore the agent's configuration names (`--config`)
//! directly; once it does, they should go through the API (architecture invariant 5).

use super::table;
use super::{IpamCommand, OutputFormat};
use crate::config::{ConfigSource, DatastoreConfig, DatastoreType, load};
use crate::datastore::Datastore;
use crate::datastore::etcd::{EtcdBackend, EtcdOptions};
use crate::datastore::kubernetes::KubeBackend;
use crate::datastore::resources::{IpPool, IpamBlock};
use crate::datastore::sqlite::{SqliteBackend, SqliteOptions};
use crate::ipam::block_math::{block_of, ordinal_of};
use crate::ipam::check::{CheckInput, CheckReport, Usage};
use crate::ipam::{Ipam, IpamOptions, block_ops, check};
use std::net::IpAddr;
use std::path::Path;
use std::process::ExitCode;

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
        Err(e) => {
            eprintln!("tortie: {e:#}");
            ExitCode::from(1)
        }
    }
}

async fn dispatch(command: &IpamCommand) -> anyhow::Result<ExitCode> {
    match command {
        IpamCommand::Show { client, store, show_blocks, ip } => {
            let store = open(store.config.as_deref()).await?;
            match ip {
                Some(ip) => show_ip(&store, *ip, client.output).await,
                None => show(&store, *show_blocks, client.output).await,
            }
        }
        IpamCommand::Check { client, store } => {
            let store = open(store.config.as_deref()).await?;
            let report = check(&store, &CheckInput::default()).await?;
            print_check(&report, client.output)?;
            Ok(if report.is_clean() { ExitCode::SUCCESS } else { ExitCode::from(1) })
        }
        IpamCommand::Release { client, store, ip, handle } => {
            let store = open(store.config.as_deref()).await?;
            let ipam = Ipam::new(store, IpamOptions { node: "tortie-cli".into(), ..Default::default() });
            let released = match (ip, handle) {
                (Some(ip), _) => usize::from(ipam.release_ip(*ip, None).await?),
                (None, Some(handle)) => ipam.release_handle(handle).await?,
                (None, None) => 0,
            };
            match client.output {
                OutputFormat::Json => println!("{}", serde_json::json!({ "released": released })),
                OutputFormat::Table => println!("Released {released} address(es)"),
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// The datastore named by the configuration (file, then `TORTIE_*` variables, then defaults).
pub async fn open(config: Option<&Path>) -> anyhow::Result<Datastore> {
    let loaded = load(&ConfigSource::from_process(config))?;
    open_datastore(&loaded.config.datastore).await
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
        DatastoreType::Kubernetes => {
            let kube_config = match &config.kubeconfig {
                Some(path) => {
                    let file = kube::config::Kubeconfig::read_from(path)?;
                    kube::Config::from_custom_kubeconfig(file, &Default::default()).await?
                }
                None => kube::Config::infer().await?,
            };
            Datastore::new(KubeBackend::new(kube::Client::try_from(kube_config)?))
        }
    })
}

fn percent(part: u128, total: u128) -> String {
    let pct = (part * 100).checked_div(total).unwrap_or(0);
    format!("{part} ({pct}%)")
}

fn usage_row(grouping: &str, u: &Usage) -> Vec<String> {
    vec![
        grouping.to_string(),
        u.cidr.clone(),
        u.total.to_string(),
        percent(u.in_use, u.total),
        percent(u.reserved, u.total),
        percent(u.free, u.total),
    ]
}

async fn show(store: &Datastore, show_blocks: bool, output: OutputFormat) -> anyhow::Result<ExitCode> {
    let report = check(store, &CheckInput::default()).await?;
    if output == OutputFormat::Json {
        let blocks = if show_blocks { report.blocks.clone() } else { Vec::new() };
        println!("{}", serde_json::to_string_pretty(&serde_json::json!({ "pools": report.pools, "blocks": blocks }))?);
        return Ok(ExitCode::SUCCESS);
    }
    let mut rows = Vec::new();
    for pool in &report.pools {
        rows.push(usage_row("IP Pool", pool));
        if show_blocks {
            let net: Option<ipnetwork::IpNetwork> = pool.cidr.parse().ok();
            for block in report.blocks.iter().filter(|b| {
                let inner: Option<ipnetwork::IpNetwork> = b.cidr.parse().ok();
                matches!((net, inner), (Some(n), Some(i)) if n.contains(i.network()))
            }) {
                rows.push(usage_row("Block", block));
            }
        }
    }
    print!("{}", table::render(&["GROUPING", "CIDR", "IPS TOTAL", "IPS IN USE", "IPS RESERVED", "IPS FREE"], &rows));
    Ok(ExitCode::SUCCESS)
}

async fn show_ip(store: &Datastore, ip: IpAddr, output: OutputFormat) -> anyhow::Result<ExitCode> {
    let pools = store.list::<IpPool>().await?.items;
    let Some(pool) = pools.iter().find(|p| p.spec.cidr.contains(ip)) else {
        anyhow::bail!("{ip} is in no IP pool");
    };
    let cidr = block_of(ip, pool.spec.block_size).ok_or_else(|| anyhow::anyhow!("{ip}: no block"))?;
    let block = match store.get::<IpamBlock>(&crate::datastore::resources::cidr_name(&cidr)).await {
        Ok(b) => Some(b.spec),
        Err(crate::datastore::DatastoreError::NotFound { .. }) => None,
        Err(e) => return Err(e.into()),
    };
    let ordinal = ordinal_of(&cidr, ip).unwrap_or(0);
    let attrs = block
        .as_ref()
        .and_then(|b| b.allocations.get(ordinal).copied().flatten().and_then(|i| b.attributes.get(i as usize)));
    let json = serde_json::json!({
        "ip": ip,
        "pool": pool.name,
        "block": cidr.to_string(),
        "affinity": block.as_ref().and_then(|b| b.affinity.clone()),
        "allocated": attrs.is_some(),
        "handle": attrs.and_then(|a| a.handle_id.clone()),
        "attributes": attrs.map(|a| a.secondary.clone()),
        "sequenceNumber": block.as_ref().and_then(|b| b.sequence_number_for_allocation.get(&ordinal.to_string()).copied()),
    });
    match output {
        OutputFormat::Json => println!("{}", serde_json::to_string_pretty(&json)?),
        OutputFormat::Table => match attrs {
            None => println!("IP {ip} is not assigned (pool {}, block {cidr})", pool.name),
            Some(a) => {
                println!("IP {ip} is in use (pool {}, block {cidr})", pool.name);
                println!("Handle ID: {}", a.handle_id.as_deref().unwrap_or("<none>"));
                for (k, v) in &a.secondary {
                    println!("  {k}: {v}");
                }
                if let Some(b) = &block {
                    println!("Addresses in block: {} of {}", block_ops::in_use(b), b.allocations.len());
                }
            }
        },
    }
    Ok(ExitCode::SUCCESS)
}

fn print_check(report: &CheckReport, output: OutputFormat) -> anyhow::Result<()> {
    if output == OutputFormat::Json {
        println!("{}", serde_json::to_string_pretty(report)?);
        return Ok(());
    }
    println!("Checking IPAM for inconsistencies...");
    println!(
        "Found {} IP pools, {} blocks, {} allocations.",
        report.pools.len(),
        report.blocks.len(),
        report.allocations
    );
    let mut rows = Vec::new();
    let mut add = |kind: &str, what: String| rows.push(vec![kind.to_string(), what]);
    report.invalid_records.iter().for_each(|r| add("invalid record", r.clone()));
    report.unfinished_affinities.iter().for_each(|r| add("unfinished affinity", r.clone()));
    report.affinities_without_block.iter().for_each(|r| add("affinity without block", r.clone()));
    report.blocks_without_affinity.iter().for_each(|r| add("block without affinity", r.clone()));
    report.overlapping_blocks.iter().for_each(|(a, b)| add("overlapping blocks", format!("{a} {b}")));
    report.blocks_outside_pools.iter().for_each(|r| add("block outside pools", r.clone()));
    for p in &report.allocations_without_handle {
        add("allocation without handle", format!("{} in {} ({:?})", p.ip, p.block, p.handle));
    }
    for h in &report.handle_mismatches {
        add("handle mismatch", format!("{}: records {}, blocks hold {}", h.handle, h.recorded, h.actual));
    }
    report.leaked.iter().for_each(|p| add("leaked", format!("{} ({:?})", p.ip, p.handle)));
    report.in_use_not_allocated.iter().for_each(|ip| add("in use, not allocated", ip.to_string()));
    if rows.is_empty() {
        println!("No problems found.");
    } else {
        print!("{}", table::render(&["PROBLEM", "DETAIL"], &rows));
        println!("Found {} problem(s).", report.problems());
    }
    Ok(())
}
