//! `tortie lab up | down | exec`.

use super::{EXIT_CONFIG, LabArgs, LabCommand, PodCommand};
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
    let result = match cmd {
        LabCommand::Up(args) => match plan(args) {
            Ok(p) => lab::up(&p, &mut progress).map(|_| 0),
            Err(code) => return code,
        },
        LabCommand::Down(args) => match plan(args) {
            Ok(p) => lab::down(&p, &mut progress).map(|_| 0),
            Err(code) => return code,
        },
        LabCommand::Exec { lab: args, node, command } => match plan(args) {
            Ok(p) => lab::exec(&p, node, command),
            Err(code) => return code,
        },
        LabCommand::Pod(cmd) => return pod(cmd),
    };
    match result {
        Ok(code) => ExitCode::from(u8::try_from(code).unwrap_or(1)),
        Err(e) => {
            eprintln!("tortie lab: {e}");
            ExitCode::from(1)
        }
    }
}

fn pod(cmd: &PodCommand) -> ExitCode {
    let result = match cmd {
        PodCommand::Add { name, wait_seconds, namespace, labels, ports, service_account } => {
            match lab::pod::parse_entry(name, namespace, labels, ports, service_account) {
                Ok((name, identity)) => lab::pod::add(&name, &identity, std::time::Duration::from_secs(*wait_seconds)),
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
