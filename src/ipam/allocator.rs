//! The per-node allocator task: one task owns the node's allocation path and takes requests over a
//! bounded channel. While it writes one batch, new requests queue; it then takes all of them
//! (up to `MAX_BATCH`) as the next batch, and requests landing in one block share a single
//! compare-and-swap (group commit). So a burst of pod starts on a node costs a few block writes
//! instead of a burst of conflicting writes to the same block.

use super::client::{Allocation, BlockCache, Ipam, Request};
use super::error::{IpamError, Result};
use tokio::sync::{mpsc, oneshot};

/// Requests queued before senders wait.
pub const CHANNEL_CAPACITY: usize = 1024;
/// Most requests served by one batch.
pub const MAX_BATCH: usize = 256;

type Job = (Request, oneshot::Sender<Result<Allocation>>);

/// A handle on the allocator task; cheap to clone. The task ends when every handle is dropped.
#[derive(Clone)]
pub struct Allocator {
    requests: mpsc::Sender<Job>,
    ipam: Ipam,
}

impl Allocator {
    /// Starts the task for `ipam`'s node.
    pub fn spawn(ipam: Ipam) -> Allocator {
        let (requests, receiver) = mpsc::channel(CHANNEL_CAPACITY);
        tokio::spawn(run(ipam.clone(), receiver));
        Allocator { requests, ipam }
    }

    /// One address, batched with whatever else is waiting.
    pub async fn allocate(&self, request: Request) -> Result<Allocation> {
        let (reply, answer) = oneshot::channel();
        self.requests.send((request, reply)).await.map_err(|_| IpamError::Stopped)?;
        answer.await.map_err(|_| IpamError::Stopped)?
    }

    /// Releases run directly: each touches the blocks its handle names, with compare-and-swap.
    pub async fn release_handle(&self, handle: &str) -> Result<usize> {
        self.ipam.release_handle(handle).await
    }

    pub fn ipam(&self) -> &Ipam {
        &self.ipam
    }
}

async fn run(ipam: Ipam, mut receiver: mpsc::Receiver<Job>) {
    let mut batch: Vec<Job> = Vec::with_capacity(MAX_BATCH);
    let mut cache = BlockCache::default();
    while receiver.recv_many(&mut batch, MAX_BATCH).await > 0 {
        let (requests, replies): (Vec<Request>, Vec<_>) = batch.drain(..).unzip();
        // Each block's addresses and their handle records are written in one transaction, so
        // a requester that gives up (drops its future) cannot leave an address without its
        // handle record.
        let results = ipam.assign_batch(&requests, &mut cache).await;
        for (reply, result) in replies.into_iter().zip(results) {
            let _ = reply.send(result);
        }
    }
}
