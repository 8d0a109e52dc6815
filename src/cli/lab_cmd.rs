//! `tortie lab up | down | inspect | graph | exec`.

use super::{EXIT_CONFIG, LabArgs, LabCommand, ListFormat, NamespaceCommand, PodCommand};
use crate::lab;
use std::process::ExitCode;

fn plan(args: &LabArgs) -> Result<lab::LabPlan, ExitCode> {
    // Lab nodes of image tortie run this very binary.
    let tortie = std::env::current_exe().unwrap_or_else(|_| "tortie".into());
    lab::load(&args.topology, args.name.as_deref(), &tortie).map_err(|e| {
        eprintln!("tortie lab: {e}");
        ExitCode::from(EXIT_CONFIG)
    })
}

pub fn run(cmd: &LabCommand) -> ExitCode {
    let mut progress = |line: String| eprintln!("{line}");
    let result: Result<i32, Box<dyn std::error::Error>> = match cmd {
        LabCommand::Up(args) => match plan(args) {
            Ok(p) => lab::up(&p, &mut progress).map(|_| 0).map_err(Into::into),
            Err(code) => return code,
        },
        LabCommand::Down { lab: args, cleanup } => match plan(args) {
            Ok(p) => lab::down(&p, *cleanup, &mut progress).map(|_| 0).map_err(Into::into),
            Err(code) => return code,
        },
        LabCommand::Inspect { lab: args, output } => match plan(args) {
            Ok(p) => inspect(&p, *output),
            Err(code) => return code,
        },
        LabCommand::Graph { lab: args, output } => match plan(args) {
            Ok(p) => graph(&p, output.as_deref()),
            Err(code) => return code,
        },
        LabCommand::Exec { lab: args, node, command } => match plan(args) {
            Ok(p) => lab::exec(&p, node, command).map_err(Into::into),
            Err(code) => return code,
        },
        LabCommand::Pod(cmd) => return pod(cmd),
        LabCommand::Namespace(NamespaceCommand::Add { name, labels, config }) => {
            return super::apply_cmd::run_blocking(namespace_add(name, labels, config.as_deref()));
        }
    };
    match result {
        Ok(code) => ExitCode::from(u8::try_from(code).unwrap_or(1)),
        Err(e) => {
            eprintln!("tortie lab: {e}");
            ExitCode::from(1)
        }
    }
}

fn inspect(plan: &lab::LabPlan, output: ListFormat) -> Result<i32, Box<dyn std::error::Error>> {
    let found = lab::inspect::inspect(plan);
    Ok(if super::output::print(output, &found, super::lab_view::render) { 0 } else { 1 })
}

/// How long `lab graph` waits for each agent's status.
const AGENT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(3);

/// The sessions the lab's running tortie agents report (an agent that does not answer adds none).
fn sessions(plan: &lab::LabPlan, found: &lab::inspect::LabInspection) -> Vec<lab::graph::Session> {
    let Ok(runtime) = tokio::runtime::Builder::new_current_thread().enable_all().build() else { return Vec::new() };
    let mut all = Vec::new();
    for n in &plan.nodes {
        let running = found.nodes.iter().any(|i| i.name == n.name && i.processes.iter().any(|p| p.alive));
        let Some(socket) = n.env.get("TORTIE_API_SOCKET").filter(|_| running) else { continue };
        let status: Result<crate::api::StatusReport, _> = runtime.block_on(crate::api::client::request_json(
            std::path::Path::new(socket),
            "GET",
            "/v1/status",
            None::<&()>,
            AGENT_TIMEOUT,
        ));
        match status {
            Ok(status) => all.extend(status.peers.into_iter().map(|p| lab::graph::Session {
                node: n.name.clone(),
                peer_address: p.address,
                state: p.state,
            })),
            Err(e) => eprintln!("tortie lab graph: node {}: {e}", n.name),
        }
    }
    all
}

fn graph(plan: &lab::LabPlan, output: Option<&std::path::Path>) -> Result<i32, Box<dyn std::error::Error>> {
    let found = lab::inspect::inspect(plan);
    let sessions = if found.running() { sessions(plan, &found) } else { Vec::new() };
    let text = lab::graph::dot(plan, Some(&found), &sessions);
    match output {
        None => print!("{text}"),
        Some(path) => lab::graph::draw(&text, path)?,
    }
    Ok(0)
}

fn pod(cmd: &PodCommand) -> ExitCode {
    let result = match cmd {
        PodCommand::Add { name, annotations, wait_seconds, namespace, labels, ports, service_account } => {
            match lab::pod::parse_entry(name, namespace, labels, ports, service_account) {
                Ok((name, identity)) => {
                    lab::pod::add(&name, &identity, annotations, std::time::Duration::from_secs(*wait_seconds))
                }
                Err(e) => Err(e),
            }
        }
        .map(|out| {
            print!("{out}");
            0
        }),
        PodCommand::Del { name } => lab::pod::del(name).map(|_| 0),
        PodCommand::List => {
            for p in lab::pod::list() {
                println!("{p}");
            }
            Ok(0)
        }
        PodCommand::Exec { name, command } => lab::pod::exec_argv(name, command).and_then(|argv| {
            let status = std::process::Command::new(&argv[0]).args(&argv[1..]).status()?;
            Ok(status.code().unwrap_or(1))
        }),
    };
    match result {
        Ok(code) => ExitCode::from(u8::try_from(code).unwrap_or(1)),
        Err(e) => {
            eprintln!("tortie lab pod: {e}");
            ExitCode::from(1)
        }
    }
}

/// Writes namespace `name` with `labels` (created, or its labels replaced), compare-and-swap.
async fn namespace_add(
    name: &str,
    labels: &[String],
    config: Option<&std::path::Path>,
) -> Result<ExitCode, super::apply_cmd::Failure> {
    use crate::datastore::resources::Namespace;
    use crate::datastore::{DatastoreError, Key, Kind};
    let input = |e: String| super::apply_cmd::Failure::Input(vec![e]);
    if let Some(problem) = Key::problem_of(Kind::Namespace, name) {
        return Err(input(problem));
    }
    let mut spec = Namespace::default();
    for label in labels {
        let (k, v) = label.split_once('=').ok_or_else(|| input(format!("--label {label:?}: write key=value")))?;
        spec.labels.insert(k.to_string(), v.to_string());
    }
    crate::datastore::resources::check_labels(&spec.labels).map_err(|e| input(format!("--label: {e}")))?;
    let store = super::ipam_cmd::open(config).await?;
    loop {
        let written = match store.get::<Namespace>(name).await {
            Ok(found) => store.update(name, &spec, found.revision).await.map(|_| ()),
            Err(DatastoreError::NotFound { .. }) => store.create(name, &spec).await.map(|_| ()),
            Err(e) => return Err(e.into()),
        };
        match written {
            Ok(()) => return Ok(ExitCode::SUCCESS),
            Err(DatastoreError::Conflict { .. } | DatastoreError::AlreadyExists { .. }) => continue,
            Err(e) => return Err(e.into()),
        }
    }
}
