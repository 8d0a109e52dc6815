//! The child roles of the multi-process IPAM tests: the test binary re-run with [`CHILD_ENV`]
//! set, so each simulated node is a separate process with its own datastore client.

use crate::datastore_support::harness::ChildTarget;
use futures::StreamExt;
use ipnetwork::IpNetwork;
use serde::{Deserialize, Serialize};
use std::io::Write;
use std::net::IpAddr;
use tortie::ipam::{Allocator, Ipam, IpamOptions, Request, claim};

pub const CHILD_ENV: &str = "TORTIE_IPAM_CHILD";
/// The line a churning child prints last: the addresses it still holds, as JSON.
pub const HELD: &str = "HELD ";
/// The line a claiming child prints when it has reached its stage and waits to be killed.
pub const STAGE_REACHED: &str = "CLAIM-STAGE-REACHED";
/// The line an allocating child prints after each address it got, with how many it has got.
pub const ALLOCATED: &str = "ALLOCATED ";

#[derive(Clone, Debug, Serialize, Deserialize)]
pub enum Role {
    /// Allocate `allocations` addresses, `concurrency` at a time, releasing every odd one at once.
    Churn { target: ChildTarget, node: String, allocations: u32, concurrency: usize },
    /// Stage 1: write the pending affinity; stage 2: also create the block. Then wait forever.
    Claim { target: ChildTarget, node: String, cidr: IpNetwork, stage: u8 },
    /// Repair, then allocate without end (handles `<prefix>-<i>`), `concurrency` at a time,
    /// until killed.
    Allocate { target: ChildTarget, node: String, prefix: String, concurrency: usize },
}

pub async fn run(spec: &str) {
    match serde_json::from_str::<Role>(spec).expect("child spec") {
        Role::Churn { target, node, allocations, concurrency } => {
            let ipam = Ipam::new(target.connect().await, IpamOptions { node: node.clone(), ..Default::default() });
            ipam.repair().await.expect("repair");
            let allocator = Allocator::spawn(ipam);
            let held: Vec<(String, IpAddr)> = futures::stream::iter(0..allocations)
                .map(|i| {
                    let allocator = allocator.clone();
                    let handle = format!("{node}-{i}");
                    async move {
                        let request = Request::workload(&handle, 4, &handle, "churn", "n");
                        let got = allocator.allocate(request).await.unwrap_or_else(|e| panic!("{handle}: {e}"));
                        if i % 2 == 1 {
                            assert_eq!(allocator.release_handle(&handle).await.expect("release"), 1);
                            None
                        } else {
                            Some((handle, got.ip))
                        }
                    }
                })
                .buffer_unordered(concurrency)
                .filter_map(|x| async move { x })
                .collect()
                .await;
            println!("{HELD}{}", serde_json::to_string(&held).unwrap());
        }
        Role::Allocate { target, node, prefix, concurrency } => {
            let ipam = Ipam::new(target.connect().await, IpamOptions { node: node.clone(), ..Default::default() });
            ipam.repair().await.expect("repair");
            let allocator = Allocator::spawn(ipam);
            let mut got = 0u64;
            let mut allocations = futures::stream::iter(0u64..)
                .map(|i| {
                    let (allocator, node) = (allocator.clone(), node.clone());
                    let handle = format!("{prefix}-{i}");
                    async move {
                        let request = Request::workload(&handle, 4, &handle, "crash", &node);
                        allocator.allocate(request).await.unwrap_or_else(|e| panic!("{handle}: {e}"))
                    }
                })
                .buffer_unordered(concurrency);
            // Killed by the parent somewhere in here, with `concurrency` allocations in flight.
            while allocations.next().await.is_some() {
                got += 1;
                println!("{ALLOCATED}{got}");
            }
        }
        Role::Claim { target, node, cidr, stage } => {
            let store = target.connect().await;
            claim::write_pending(&store, &node, cidr).await.expect("pending affinity");
            if stage >= 2 {
                claim::create_block(&store, &node, cidr).await.expect("block");
            }
            println!("{STAGE_REACHED}");
            std::io::stdout().flush().unwrap();
            // Killed here by the parent, mid-claim.
            std::future::pending::<()>().await;
        }
    }
}
