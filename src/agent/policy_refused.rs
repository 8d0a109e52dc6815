//! Finding the policies nft refuses. When a write of the policy section fails, the policies
//! are compiled in groups (with every endpoint, so their sets and dispatch are as in the
//! whole) and checked with `nft -c` in a scratch table, a refused group halved down to the
//! single policies nft refuses: those are left out, so one bad policy never holds back the
//! others. Only nft's own refusals count: a failure to run nft
//! says nothing about a policy.

use super::policy::Inputs;
use crate::dataplane::nftables::policy as nft_policy;
use crate::dataplane::nftables::render::{Desired, replace_table};
use crate::dataplane::nftables::{NftCommand, NftError};
use crate::policy::{Policy, compile};

/// The table the checks name (nothing is written: `nft -c`).
const CHECK_TABLE: &str = "tortie-policy-check";

/// A policy nft refuses, with nft's reason.
#[derive(Clone, Debug, PartialEq)]
pub struct Refused {
    pub policy: Policy,
    pub reason: String,
}

/// The policies of `inputs` that nft refuses alone: groups of policies are checked together
/// and a refused group is halved until the policies refused are found, so one bad policy
/// among n costs about 2·log2(n) checks, not n.
pub async fn find(command: &NftCommand, inputs: &Inputs) -> Vec<Refused> {
    let mut refused = Vec::new();
    let mut groups: Vec<&[Policy]> = vec![&inputs.policies];
    while let Some(group) = groups.pop() {
        let Some(reason) = check(command, inputs, group).await else { continue };
        match group {
            [] => {}
            [policy] => refused.push(Refused { policy: policy.clone(), reason }),
            _ => {
                let (first, second) = group.split_at(group.len() / 2);
                groups.push(second);
                groups.push(first);
            }
        }
    }
    refused
}

/// Why nft refuses `policies` compiled together (`None`: it takes them, or nft could not be
/// asked, which says nothing about a policy).
async fn check(command: &NftCommand, inputs: &Inputs, policies: &[Policy]) -> Option<String> {
    let program = compile(policies, &inputs.endpoints, &inputs.namespaces, &inputs.local);
    let batch = nft_policy::section(&program).and_then(|section| {
        replace_table(CHECK_TABLE, &Desired::from([(nft_policy::USER, section)])).map_err(|e| e.to_string())
    });
    match batch {
        Err(e) => Some(format!("its nftables rules do not render: {e}")),
        Ok(batch) => match command.check(&batch).await {
            Ok(()) => None,
            Err(NftError::Failed { stderr, .. }) => Some(format!("nftables refuses its rules: {stderr}")),
            Err(e) => {
                tracing::warn!(subsys = "policy", error = %e, "cannot check a policy's rules with nft");
                None
            }
        },
    }
}
