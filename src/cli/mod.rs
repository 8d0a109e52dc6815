//! The `tortie` command line. Each subcommand's handler lives in its own
//! module; this file only declares the commands and dispatches.

mod apply_cmd;
mod bgp_cmd;
mod cluster_cmd;
pub mod cluster_view;
mod config_cmd;
mod docs_cmd;
pub mod ipam_cmd;
mod ipam_view;
mod lab_cmd;
mod lab_view;
mod migrate_cmd;
pub mod output;
mod policy_cmd;
mod status_cmd;
pub mod table;

use crate::config::LogFormat;
use clap::{Args, Parser, Subcommand, ValueEnum};
use std::path::PathBuf;
use std::process::ExitCode;

/// Exit code for a usage or configuration error (as clap uses for usage errors).
pub const EXIT_CONFIG: u8 = 2;

#[derive(Debug, Parser)]
#[command(name = "tortie", version = crate::VERSION, about = "Kubernetes node agent: routable pod addresses, IPAM and BGP", long_about = None)]
pub struct Cli {
    /// Log filter (`info`, `debug`, `info,tortie::bgp=debug`); overrides log.level.
    #[arg(long, global = true)]
    pub log_level: Option<String>,
    /// Log format; overrides log.format.
    #[arg(long, global = true, value_enum)]
    pub log_format: Option<LogFormat>,
    #[command(subcommand)]
    pub command: Command,
    /// Run as the kubectl plugin `kubectl-tortie` (set from the binary's file name).
    #[arg(skip)]
    pub kubectl_plugin: bool,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the node agent.
    Node(NodeArgs),
    /// Show the state of the agent running on this host (BGP peers, readiness).
    Status(StatusArgs),
    /// Every node at once, from the status records the agents publish in the datastore (also
    /// `kubectl tortie …` through a `kubectl-tortie` link to this binary).
    #[command(subcommand)]
    Cluster(ClusterCommand),
    /// IP address management: show, check and release addresses.
    #[command(subcommand)]
    Ipam(IpamCommand),
    /// BGP: inspect peers and routes, decode and encode wire messages.
    #[command(subcommand)]
    Bgp(BgpCommand),
    /// Network policies as the agent programs them: list, trace a packet.
    #[command(subcommand)]
    Policy(PolicyCommand),
    /// The CNI plugin entry point (also run when the binary is invoked as `tortie-cni`).
    Cni,
    /// Run containerlab topologies in network namespaces, without Docker.
    #[command(subcommand)]
    Lab(LabCommand),
    /// Work with configuration files.
    #[command(subcommand)]
    Config(ConfigCommand),
    /// Create or replace resources from YAML or JSON documents (like `calicoctl apply -f`).
    Apply {
        /// The documents (`-` for standard input); `kind: List` and `<Kind>List` are unwrapped.
        #[arg(long, short)]
        file: PathBuf,
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Print the resources of a kind, or one of them, as documents `apply` reads.
    Get {
        /// IPPool, IPAMBlock, BlockAffinity, IPAMHandle, IPAMConfig, Node, BGPPeer, BGPConfiguration (any case, or plural).
        kind: String,
        name: Option<String>,
        /// `table` and `wide` list kind and name (`wide`: and the spec); `yaml` and `json` print
        /// the documents.
        #[arg(long, short, value_enum, default_value_t = ListFormat::Yaml)]
        output: ListFormat,
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Delete the resources named in documents (`-f`), or by kind and name.
    Delete {
        #[arg(long, short, conflicts_with = "kind_and_name")]
        file: Option<PathBuf>,
        /// KIND NAME...
        kind_and_name: Vec<String>,
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Move another network plugin's resources to tortie.
    #[command(subcommand)]
    Migrate(MigrateCommand),
    /// Print the CustomResourceDefinitions of tortie's resources (for `kubectl apply -f -`).
    Crds,
    /// Print a shell completion script (`source <(tortie completion bash)`).
    Completion {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Write the manual pages (one per command and subcommand) into a directory.
    Man {
        /// Where to write them (created if missing).
        #[arg(long, default_value = ".")]
        dir: PathBuf,
    },
    /// Print the version.
    Version,
}

/// The output formats of every command that prints data (`-o`): a table, a table with more
/// columns, or the whole data as JSON or YAML; printed by [`output::print`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ListFormat {
    Table,
    Wide,
    Json,
    Yaml,
}

#[derive(Debug, Subcommand)]
pub enum ClusterCommand {
    /// One line per node (ready, version, sessions up/total), the sessions one end sees
    /// Established and the other does not, and the nodes whose status went stale; exit 3 if any.
    Status {
        #[arg(long, short, value_enum, default_value_t = ListFormat::Table)]
        output: ListFormat,
        #[command(flatten)]
        store: StoreArgs,
    },
}

#[derive(Debug, Subcommand)]
pub enum MigrateCommand {
    /// Convert Calico's resources (kubectl or calicoctl exports) and write them; the report of
    /// every field changed or not carried goes to standard error.
    FromCalico {
        /// The exports (`-` for standard input); give the IPAM and the Node exports together so
        /// that tunnel addresses are checked against the blocks.
        #[arg(required = true)]
        files: Vec<PathBuf>,
        /// Print the converted resources as YAML instead of writing them.
        #[arg(long)]
        dry_run: bool,
        /// Replace existing resources that differ (else they are refused and nothing is written).
        #[arg(long)]
        force: bool,
        #[command(flatten)]
        store: StoreArgs,
    },
}

#[derive(Debug, Args)]
pub struct NodeArgs {
    /// The YAML configuration file; absent = defaults plus TORTIE_* variables.
    #[arg(long, short, env = "TORTIE_CONFIG")]
    pub config: Option<PathBuf>,
}

/// How a command asks the agent's API and prints the answer.
#[derive(Debug, Args)]
pub struct AgentArgs {
    /// The agent's API socket.
    #[arg(long, env = "TORTIE_API_SOCKET", default_value = crate::config::DEFAULT_API_SOCKET)]
    pub socket: PathBuf,
    /// Output format: `wide` adds columns.
    #[arg(long, short, value_enum, default_value_t = ListFormat::Table)]
    pub output: ListFormat,
    /// How long to wait for the agent's answer, in seconds (then exit 1).
    #[arg(long, value_name = "SECONDS", default_value_t = crate::api::client::DEFAULT_TIMEOUT.as_secs())]
    pub timeout: u64,
}

impl AgentArgs {
    /// `--timeout` as a duration.
    pub fn timeout(&self) -> std::time::Duration {
        std::time::Duration::from_secs(self.timeout)
    }
}

#[derive(Debug, Args)]
pub struct StatusArgs {
    #[command(flatten)]
    pub client: AgentArgs,
}

/// Where a command finds the datastore (the `ipam` commands: when no agent answers).
#[derive(Debug, Args)]
pub struct StoreArgs {
    /// The agent's configuration file; its `datastore` section names the datastore.
    #[arg(long, env = "TORTIE_CONFIG")]
    pub config: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
pub enum IpamCommand {
    /// Show pools, blocks and addresses in use.
    Show {
        #[command(flatten)]
        client: ipam_cmd::IpamClientArgs,
        #[command(flatten)]
        store: StoreArgs,
        /// Also list every block.
        #[arg(long)]
        show_blocks: bool,
        /// List the blocks whose addresses nodes other than their affine node use.
        #[arg(long)]
        show_borrowed: bool,
        /// Show the IPAM configuration (IPAMConfig `default`, or the defaults).
        #[arg(long)]
        show_configuration: bool,
        /// Show who holds this address.
        #[arg(long)]
        ip: Option<std::net::IpAddr>,
    },
    /// Compare allocations with live workloads (leaked, missing, borrowed, affinities of gone
    /// nodes) and find broken records; `-o FILE` also writes the report `release --from-report`
    /// reads. Exit 1 when a problem is found.
    Check {
        #[command(flatten)]
        client: ipam_cmd::IpamClientArgs,
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Release an address, every address of a handle, or a report's leaked addresses; an
    /// address a live workload holds is refused unless `--force`.
    #[command(group(clap::ArgGroup::new("what").required(true)))]
    Release {
        #[command(flatten)]
        client: ipam_cmd::IpamClientArgs,
        #[command(flatten)]
        store: StoreArgs,
        /// The address to release.
        #[arg(long, group = "what")]
        ip: Option<std::net::IpAddr>,
        /// The handle (container id) whose addresses to release.
        #[arg(long, group = "what")]
        handle: Option<String>,
        /// The report `ipam check -o FILE` wrote: release exactly its leaked addresses.
        #[arg(long, value_name = "FILE", group = "what")]
        from_report: Option<PathBuf>,
        /// Release addresses live workloads hold; with a report, the addresses unchanged since it.
        #[arg(long)]
        force: bool,
        /// Print what would be released and write nothing.
        #[arg(long)]
        dry_run: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum BgpCommand {
    /// Show BGP peers with their state, since when, uptime and prefix counts.
    Peers {
        #[command(flatten)]
        client: AgentArgs,
    },
    /// Show the routes in the RIB, or those BIRD's `show route for PREFIX` would.
    Routes {
        #[command(flatten)]
        client: AgentArgs,
        #[command(flatten)]
        query: RoutesQueryArgs,
    },
    /// Decode raw BGP messages (as on the wire) into JSON lines.
    Decode(crate::bgp::cli::DecodeArgs),
    /// Encode JSON lines (as `tortie bgp decode` prints them) into raw BGP messages.
    Encode(crate::bgp::cli::EncodeArgs),
}

/// Which routes `tortie bgp routes` shows.
#[derive(Debug, Args)]
pub struct RoutesQueryArgs {
    /// An address or prefix: the routes of the longest prefix covering it (the prefix itself
    /// when in the RIB).
    pub prefix: Option<ipnetwork::IpNetwork>,
    /// Every prefix within PREFIX instead, PREFIX included.
    #[arg(long, requires = "prefix")]
    pub longer: bool,
    /// Only the paths learned from this peer.
    #[arg(long, value_name = "ADDR")]
    pub peer: Option<std::net::IpAddr>,
}

#[derive(Debug, Subcommand)]
pub enum PolicyCommand {
    /// List the network policies: kind, name, order, selector, types, rule counts, valid or why not.
    List {
        #[command(flatten)]
        client: AgentArgs,
    },
    /// Which policy and rule decide a packet, per direction (egress at the source, ingress at
    /// the destination), from the rules the agent programs.
    Trace {
        #[command(flatten)]
        client: AgentArgs,
        /// The source pod, NAMESPACE/POD.
        #[arg(long)]
        from: String,
        /// The destination: a pod, NAMESPACE/POD, or an address.
        #[arg(long)]
        to: String,
        /// The destination port and protocol: PORT/tcp, PORT/udp or PORT/sctp.
        #[arg(long, value_name = "PORT/PROTOCOL")]
        port: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum LabCommand {
    /// Build a topology (idempotent: what exists is kept).
    Up(LabArgs),
    /// Stop every process and remove every namespace, link and bridge of a topology; the
    /// processes' logs stay in the lab directory unless `--cleanup`.
    Down {
        #[command(flatten)]
        lab: LabArgs,
        /// Remove the lab directory with the logs.
        #[arg(long)]
        cleanup: bool,
    },
    /// What of a topology exists: each node's namespace, addresses, processes (pid, alive)
    /// and pods (as `containerlab inspect`).
    Inspect {
        #[command(flatten)]
        lab: LabArgs,
        #[arg(long, short, value_enum, default_value_t = ListFormat::Table)]
        output: ListFormat,
    },
    /// Draw the topology with Graphviz: nodes, links and, while the lab runs, the BGP sessions
    /// its tortie agents report, coloured by state.
    Graph {
        #[command(flatten)]
        lab: LabArgs,
        /// The picture to write, `*.svg` or `*.png` (Graphviz's `dot` draws it); without it the
        /// DOT text goes to standard output.
        #[arg(long, short)]
        output: Option<PathBuf>,
    },
    /// Run a command inside a lab node, with the node's environment.
    Exec {
        #[command(flatten)]
        lab: LabArgs,
        /// The node to run the command in.
        node: String,
        /// The command and its arguments (after `--`).
        #[arg(last = true, required = true)]
        command: Vec<String>,
    },
    /// Pods on this node, made as a container runtime would (run inside a lab node).
    #[command(subcommand)]
    Pod(PodCommand),
    /// Namespaces' labels for network policy, in the datastore of the node's configuration.
    #[command(subcommand)]
    Namespace(NamespaceCommand),
}

#[derive(Debug, Subcommand)]
pub enum NamespaceCommand {
    /// Create a namespace record, or replace its labels.
    Add {
        name: String,
        /// A label `key=value` (repeatable).
        #[arg(long = "label")]
        labels: Vec<String>,
        /// The configuration file naming the datastore (TORTIE_* overrides apply).
        #[arg(long)]
        config: Option<PathBuf>,
    },
}

#[derive(Debug, Subcommand)]
pub enum PodCommand {
    /// Create a pod: a network namespace, then the CNI plugin's ADD; prints the CNI result.
    Add {
        /// The pod's name, optionally followed by `,namespace=NS`, `,label=k=v`,
        /// `,port=name:proto:number`, `,service-account=SA` items (a `TORTIE_LAB_PODS` entry).
        name: String,
        /// A pod annotation, `KEY=VALUE` (repeatable): Calico's IPAM ones, e.g.
        /// `cni.projectcalico.org/ipAddrs=["10.244.0.7"]`, reach the agent in CNI_ARGS.
        #[arg(long = "annotation", value_name = "KEY=VALUE")]
        annotations: Vec<String>,
        /// How long to keep retrying while the node's agent is not ready.
        #[arg(long, default_value_t = 60)]
        wait_seconds: u64,
        /// The pod's Kubernetes namespace (network policy's namespace).
        #[arg(long, default_value = "default")]
        namespace: String,
        /// A label `key=value` (repeatable).
        #[arg(long = "label")]
        labels: Vec<String>,
        /// A named port `name:protocol:number`, as `http:tcp:80` (repeatable).
        #[arg(long = "port")]
        ports: Vec<String>,
        /// The pod's service account.
        #[arg(long, default_value = "")]
        service_account: String,
    },
    /// Delete a pod: the CNI plugin's DEL, then its namespace.
    Del { name: String },
    /// List this node's pods.
    List,
    /// Run a command inside a pod's network namespace.
    Exec {
        name: String,
        /// The command and its arguments (after `--`).
        #[arg(last = true, required = true)]
        command: Vec<String>,
    },
}

#[derive(Debug, Args)]
pub struct LabArgs {
    /// The containerlab topology file (`*.clab.yml`).
    pub topology: PathBuf,
    /// Run the topology under this lab name instead of its `name:`.
    #[arg(long)]
    pub name: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Validate a configuration file (with TORTIE_* overrides applied); exit 2 on any problem.
    Check {
        /// The YAML configuration file.
        file: PathBuf,
        /// Print the effective configuration (secrets redacted) when valid.
        #[arg(long)]
        print: bool,
    },
}

/// Entry point of the binary.
pub fn main() -> ExitCode {
    output::end_quietly_on_broken_stdout();
    let invoked_as = std::env::args_os().next().map(PathBuf::from);
    // A container runtime runs a CNI plugin by the netconf's `type` from its plugin
    // directory, with no arguments and CNI_COMMAND set: then this binary is the plugin,
    // whatever its file is called (`tortie` as installed, or a `tortie-cni` link).
    let runtime_call = std::env::args_os().len() == 1 && std::env::var_os("CNI_COMMAND").is_some();
    if runtime_call || invoked_as.as_deref().and_then(|p| p.file_name()).is_some_and(|n| n == "tortie-cni") {
        return crate::cni::main();
    }
    if invoked_as.as_deref().and_then(|p| p.file_name()).is_some_and(|n| n == cluster_cmd::KUBECTL_PLUGIN) {
        let mut cli = Cli::parse_from(cluster_cmd::kubectl_plugin_args(std::env::args_os().collect()));
        cli.kubectl_plugin = true;
        return run(cli);
    }
    let cli = Cli::parse();
    run(cli)
}

/// Runs a parsed command line.
pub fn run(cli: Cli) -> ExitCode {
    let log_format = cli.log_format.unwrap_or_default();
    match cli.command {
        Command::Node(args) => config_cmd::run_node(&args, cli.log_level.as_deref(), cli.log_format),
        Command::Status(args) => {
            crate::logging::init(cli.log_level.as_deref().unwrap_or("warn"), log_format);
            status_cmd::run(&args.client)
        }
        Command::Config(ConfigCommand::Check { file, print }) => config_cmd::check(&file, print),
        Command::Bgp(BgpCommand::Decode(args)) => crate::bgp::cli::decode_command(&args),
        Command::Bgp(BgpCommand::Encode(args)) => crate::bgp::cli::encode_command(&args),
        Command::Bgp(BgpCommand::Peers { client }) => {
            crate::logging::init(cli.log_level.as_deref().unwrap_or("warn"), log_format);
            bgp_cmd::peers(&client)
        }
        Command::Bgp(BgpCommand::Routes { client, query }) => {
            crate::logging::init(cli.log_level.as_deref().unwrap_or("warn"), log_format);
            bgp_cmd::routes(&client, &query)
        }
        Command::Cluster(ClusterCommand::Status { output, store }) => {
            crate::logging::init(cli.log_level.as_deref().unwrap_or("warn"), log_format);
            apply_cmd::run_blocking(cluster_cmd::status(&store, output, cli.kubectl_plugin))
        }
        Command::Policy(PolicyCommand::List { client }) => {
            crate::logging::init(cli.log_level.as_deref().unwrap_or("warn"), log_format);
            policy_cmd::list(&client)
        }
        Command::Policy(PolicyCommand::Trace { client, from, to, port }) => {
            crate::logging::init(cli.log_level.as_deref().unwrap_or("warn"), log_format);
            policy_cmd::trace(&client, &from, &to, &port)
        }
        Command::Ipam(cmd) => {
            crate::logging::init(cli.log_level.as_deref().unwrap_or("warn"), log_format);
            ipam_cmd::run(&cmd)
        }
        Command::Apply { file, store } => {
            crate::logging::init(cli.log_level.as_deref().unwrap_or("warn"), log_format);
            apply_cmd::run_blocking(apply_cmd::apply(&file, store.config.as_deref()))
        }
        Command::Get { kind, name, output, store } => {
            crate::logging::init(cli.log_level.as_deref().unwrap_or("warn"), log_format);
            apply_cmd::run_blocking(apply_cmd::get(&kind, name.as_deref(), output, store.config.as_deref()))
        }
        Command::Delete { file, kind_and_name, store } => {
            crate::logging::init(cli.log_level.as_deref().unwrap_or("warn"), log_format);
            apply_cmd::run_blocking(apply_cmd::delete(file.as_deref(), &kind_and_name, store.config.as_deref()))
        }
        Command::Migrate(MigrateCommand::FromCalico { files, dry_run, force, store }) => {
            crate::logging::init(cli.log_level.as_deref().unwrap_or("warn"), log_format);
            apply_cmd::run_blocking(migrate_cmd::from_calico(&files, dry_run, force, store.config.as_deref()))
        }
        Command::Cni => crate::cni::main(),
        Command::Lab(cmd) => lab_cmd::run(&cmd),
        Command::Completion { shell } => docs_cmd::completion(shell),
        Command::Man { dir } => docs_cmd::man(&dir),
        Command::Crds => {
            print!("{}", crate::datastore::crds_yaml());
            ExitCode::SUCCESS
        }
        Command::Version => {
            println!("tortie {}", crate::VERSION);
            ExitCode::SUCCESS
        }
    }
}
