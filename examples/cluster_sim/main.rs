//! Cluster simulator for route-reflector scale runs (`bench/rr_scale.sh`):
//! one process speaking a real BGP session from each of N simulated nodes to
//! each reflector. Node `i` connects from `--first-address + i` (the
//! addresses must be on an interface of the namespace it runs in), announces
//! one block, `--block-base + i` blocks on, with itself as next hop, and
//! checks everything it is sent: every other node's block, with that node's
//! address as next hop (reflected routes keep the originator's).
//!
//! Output on standard output, one line per event, `<event> <unix time> k=v…`:
//! `start`; `converged` when every session holds exactly the announced
//! blocks of every other node; `diverged` when that stops being true (a
//! command, a session lost). Commands on standard input, one per line:
//! `withdraw I` and `announce I` (node I withdraws or announces its block
//! again on every session), `status` (prints a `status` line). With
//! `--progress-ms T`, a `progress` line every T ms: `complete` sessions,
//! `established` sessions and `held`, the blocks held summed over every
//! session (`sessions × (nodes − 1)` once converged), for plotting.
//!
//! Built for a thousand nodes on two cores: the expected state is one shared
//! bit per node; each session keeps one bit per node and compares whole
//! words; the runtime is one thread by default, so the reflectors keep the
//! other core.
//!
//! `ip netns exec sim target/release/examples/cluster_sim --clients 1000
//!  --first-address 10.100.0.1 --reflector 10.100.255.1 --reflector 10.100.255.2`

mod cluster;
mod scan;
mod session;

use std::net::Ipv4Addr;
use std::sync::Arc;
use std::time::Duration;

use clap::Parser;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::sync::watch;

use cluster::Cluster;

#[derive(Parser, Debug)]
struct Args {
    /// Simulated nodes.
    #[arg(long)]
    clients: u32,
    /// Address of node 0; node i uses the i-th address after it.
    #[arg(long)]
    first_address: Ipv4Addr,
    /// A reflector every node peers with (repeat for each).
    #[arg(long, required = true)]
    reflector: Vec<Ipv4Addr>,
    /// Block of node 0; node i's follows i blocks later.
    #[arg(long, default_value = "10.244.0.0")]
    block_base: Ipv4Addr,
    #[arg(long, default_value_t = 26)]
    block_len: u8,
    /// The cluster's AS (iBGP with the reflectors).
    #[arg(long, default_value_t = 64512)]
    as_number: u32,
    #[arg(long, default_value_t = 90)]
    hold_time: u16,
    /// Wait between a failed or lost session and the next attempt.
    #[arg(long, default_value_t = 500)]
    retry_ms: u64,
    /// Offer ADD-PATH receive, as a tortie client of a reflector does.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    add_path: bool,
    /// Print a `progress` line this often (0: never).
    #[arg(long, default_value_t = 0)]
    progress_ms: u64,
    /// Runtime worker threads (1 = a current-thread runtime).
    #[arg(long, default_value_t = 1)]
    threads: usize,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let runtime = if args.threads <= 1 {
        tokio::runtime::Builder::new_current_thread().enable_all().build()?
    } else {
        tokio::runtime::Builder::new_multi_thread().worker_threads(args.threads).enable_all().build()?
    };
    runtime.block_on(simulate(args))
}

async fn simulate(args: Args) -> anyhow::Result<()> {
    let cluster = Cluster::new(
        args.clients,
        args.first_address,
        args.block_base,
        args.block_len,
        args.as_number,
        args.reflector.len(),
    )
    .map_err(anyhow::Error::msg)?;
    let cluster = Arc::new(cluster);
    let (changes, watching) = watch::channel(0u64);
    let options = session::Options {
        hold_time: args.hold_time,
        retry: Duration::from_millis(args.retry_ms),
        add_path: args.add_path,
    };
    cluster.event("start");
    if args.progress_ms > 0 {
        let cluster = cluster.clone();
        let mut tick = tokio::time::interval(Duration::from_millis(args.progress_ms));
        tokio::spawn(async move {
            loop {
                tick.tick().await;
                cluster.event("progress");
            }
        });
    }
    for &reflector in &args.reflector {
        for client in 0..args.clients {
            tokio::spawn(session::run(cluster.clone(), client, reflector, options, watching.clone()));
        }
    }
    let mut lines = BufReader::new(tokio::io::stdin()).lines();
    while let Some(line) = lines.next_line().await? {
        match command(&cluster, &line) {
            Ok(Some(event)) => {
                // The event first: the sessions' `diverged` follows it.
                cluster.event(event);
                changes.send_modify(|generation| *generation += 1);
            }
            Ok(None) => cluster.event("status"),
            Err(error) => eprintln!("{error}"),
        }
    }
    // Standard input closed: keep the sessions until killed.
    std::future::pending::<()>().await;
    Ok(())
}

/// Applies one command line; `Some(event)` when the announced blocks changed.
fn command(cluster: &Cluster, line: &str) -> Result<Option<&'static str>, String> {
    let words: Vec<&str> = line.split_whitespace().collect();
    let client = |word: Option<&&str>| -> Result<u32, String> {
        let text = word.ok_or_else(|| format!("{line:?}: which node?"))?;
        let client = text.parse::<u32>().map_err(|_| format!("{line:?}: node {text:?} is not a number"))?;
        if client >= cluster.clients {
            return Err(format!("{line:?}: node {client} is past the last, {}", cluster.clients - 1));
        }
        Ok(client)
    };
    match words.first().copied() {
        Some("withdraw") => {
            cluster.set_announced(client(words.get(1))?, false);
            Ok(Some("withdraw"))
        }
        Some("announce") => {
            cluster.set_announced(client(words.get(1))?, true);
            Ok(Some("announce"))
        }
        Some("status") => Ok(None),
        _ => Err(format!("{line:?}: commands are `withdraw I`, `announce I`, `status`")),
    }
}
