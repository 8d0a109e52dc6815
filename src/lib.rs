//! tortie: a Kubernetes node agent that gives every pod a routable address and
//! spreads the routes with BGP.
//!
//! Module map (see ARCHITECTURE.md for the task diagram and the invariants):
//!
//! | module            | owns                                                              |
//! |-------------------|-------------------------------------------------------------------|
//! | [`config`]        | the YAML configuration, environment overrides, validation         |
//! | [`cli`]           | the `tortie` command line and its dispatch                        |
//! | [`logging`]       | the tracing subscriber (text or JSON)                             |
//! | [`api`]           | the agent's local HTTP API on a unix socket, and its client       |
//! | [`agent`]         | `tortie node`: starts and supervises the agent's tasks            |
//! | [`bfd`]           | BFD: Control packet codec and the session state machine           |
//! | [`bgp`]           | the BGP speaker: wire codec, sessions, RIB                        |
//! | [`ipam`]          | per-node blocks and per-pod addresses                             |
//! | [`datastore`]     | the shared datastore interface and its backends                   |
//! | [`dataplane`]     | kernel routes over rtnetlink                                      |
//! | [`fallback_ipip`] | IP-in-IP tunnels (kernel `tunl0` or userspace)                    |
//! | [`faults`]        | fault injection points for the fault-injection tests              |
//! | [`cni`]           | the CNI plugin entry point                                        |
//! | [`metrics`]       | Prometheus metrics and health endpoints                           |
//! | [`migrate`]       | resources as documents: apply/get/delete, migration from Calico   |
//! | [`lab`]           | the network-namespace runner for containerlab topologies          |
//! | [`netns`]         | network namespaces, veth links and processes inside them          |
//! | [`prefix_map`]    | compact per-prefix tables for the route path (RIB, programmer)    |
//! | [`selector`]      | Calico's selector language: parsing, matching, canonical text     |
//! | [`services`]      | which service addresses a node advertises over BGP (pure)         |
//! | [`testing`]       | helpers for tests: deadlines, JSON subset comparison               |
//! | [`vxlan`]         | the kernel VXLAN device and its remote VTEPs (neighbours, FDB)     |

pub mod agent;
pub mod allocator;
pub mod api;
pub mod bfd;
pub mod bgp;
pub mod cli;
pub mod cni;
pub mod config;
pub mod dataplane;
pub mod datastore;
pub mod fallback_ipip;
pub mod faults;
pub mod ipam;
pub mod lab;
pub mod logging;
pub mod metrics;
pub mod migrate;
pub mod netns;
pub mod policy;
pub mod prefix_map;
pub mod remote_routes;
pub mod selector;
pub mod services;
pub mod testing;
pub mod vxlan;

/// The version string printed by `tortie version` and exported as build info.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
