//! Finding the policies nft refuses. When a write of the policy section fails, each policy is
//! compiled alone (with every endpoint, so its sets and dispatch are as in the whole) and
//! checked with `nft -c` in a scratch table: those nft refuses are left out, so one bad
//! policy never holds back the others. Only nft's own refusals count: a failure to run nft
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

/// The policies of `inputs` that nft refuses alone.
pub async fn find(command: &NftCommand, inputs: &Inputs) -> Vec<Refused> {
    let mut refused = Vec::new();
    for policy in &inputs.policies {
        let program = compile(std::slice::from_ref(policy), &inputs.endpoints, &inputs.namespaces, &inputs.local);
        let checked = nft_policy::section(&program)
            .and_then(|section| {
                replace_table(CHECK_TABLE, &Desired::from([(nft_policy::USER, section)])).map_err(|e| e.to_string())
            })
            .map(|batch| async move { command.check(&batch).await });
        let reason = match checked {
            Err(e) => format!("its nftables rules do not render: {e}"),
            Ok(check) => match check.await {
                Ok(()) => continue,
                Err(NftError::Failed { stderr, .. }) => format!("nftables refuses its rules: {stderr}"),
                Err(e) => {
                    tracing::warn!(subsys = "policy", error = %e, "cannot check a policy's rules with nft");
                    continue;
                }
            },
        };
        refused.push(Refused { policy: policy.clone(), reason });
    }
    refused
}
