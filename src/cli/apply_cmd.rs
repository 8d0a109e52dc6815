//! `tortie apply|get|delete`: tortie's resources as YAML or JSON documents, calicoctl-like, on
//! the datastore the agent's configuration names (as `tortie ipam` reaches it). Input that does
//! not parse or validate is refused as a whole (exit 2) before anything is written.

use super::{EXIT_CONFIG, ResourceFormat};
use crate::datastore::{Datastore, DatastoreError, Key};
use crate::migrate::{Object, Outcome, PlanError, execute, in_write_order, kind_named, plan_writes, read_documents};
use std::io::Read;
use std::path::Path;
use std::process::ExitCode;

/// Why a command failed: bad input (exit 2) or anything else (exit 1).
pub enum Failure {
    Input(Vec<String>),
    Other(anyhow::Error),
}

impl<E: Into<anyhow::Error>> From<E> for Failure {
    fn from(e: E) -> Failure {
        Failure::Other(e.into())
    }
}

/// Runs `work` on a single-threaded runtime and turns its failure into an exit status.
pub fn run_blocking(work: impl std::future::Future<Output = Result<ExitCode, Failure>>) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("tortie: cannot start the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    match runtime.block_on(work) {
        Ok(code) => code,
        Err(Failure::Input(lines)) => {
            lines.iter().for_each(|l| eprintln!("tortie: {l}"));
            eprintln!("tortie: nothing was written");
            ExitCode::from(EXIT_CONFIG)
        }
        Err(Failure::Other(e)) => {
            eprintln!("tortie: {e:#}");
            ExitCode::from(1)
        }
    }
}

/// The text of `path`, or standard input for `-`.
pub fn read_input(path: &Path) -> Result<String, Failure> {
    let mut text = String::new();
    let read = if path == Path::new("-") {
        std::io::stdin().read_to_string(&mut text).map(|_| ())
    } else {
        std::fs::read_to_string(path).map(|t| text = t)
    };
    read.map_err(|e| Failure::Input(vec![format!("{}: {e}", path.display())]))?;
    Ok(text)
}

/// tortie's objects in the documents of `path`.
fn objects_in(path: &Path) -> Result<Vec<Object>, Failure> {
    let documents = read_documents(&read_input(path)?).map_err(|e| Failure::Input(vec![e]))?;
    let (objects, errors): (Vec<_>, Vec<_>) = documents.iter().map(Object::from_document).partition(Result::is_ok);
    if !errors.is_empty() {
        return Err(Failure::Input(errors.into_iter().filter_map(Result::err).collect()));
    }
    Ok(objects.into_iter().filter_map(Result::ok).collect())
}

/// Plans and makes the writes, printing one line per object.
pub async fn write(store: &Datastore, objects: Vec<Object>, replace: bool) -> Result<ExitCode, Failure> {
    let plan = match plan_writes(store, objects, replace).await {
        Ok(plan) => plan,
        Err(PlanError::Refused(lines)) => return Err(Failure::Input(lines)),
        Err(PlanError::Datastore(e)) => return Err(e.into()),
    };
    execute(store, &plan, |key, outcome| {
        let what = match outcome {
            Outcome::Create => "created",
            Outcome::Unchanged => "unchanged",
            Outcome::Replace(_) => "replaced",
        };
        println!("{key} {what}");
    })
    .await?;
    Ok(ExitCode::SUCCESS)
}

pub async fn apply(file: &Path, config: Option<&Path>) -> Result<ExitCode, Failure> {
    let objects = objects_in(file)?;
    let store = super::ipam_cmd::open(config).await?;
    write(&store, objects, true).await
}

pub async fn get(
    kind: &str,
    name: Option<&str>,
    format: ResourceFormat,
    config: Option<&Path>,
) -> Result<ExitCode, Failure> {
    let kind =
        kind_named(kind).ok_or_else(|| Failure::Input(vec![format!("kind {kind:?} is not a tortie resource")]))?;
    let store = super::ipam_cmd::open(config).await?;
    let raw = match name {
        Some(name) => vec![store.backend().get(&Key::new(kind, name)).await?],
        None => store.backend().list(kind).await?.objects,
    };
    let mut documents = Vec::new();
    for object in raw {
        let spec = serde_json::from_slice(&object.value)
            .map_err(|e| anyhow::anyhow!("{}: stored record is not JSON: {e}", object.key))?;
        documents.push(Object { kind, name: object.key.name, spec }.to_document());
    }
    let output = match name {
        Some(_) => documents.pop().unwrap_or_default(),
        None => {
            serde_json::json!({"apiVersion": crate::migrate::object::api_version(), "kind": "List", "items": documents})
        }
    };
    print_value(&output, format)?;
    Ok(ExitCode::SUCCESS)
}

pub fn print_value(value: &serde_json::Value, format: ResourceFormat) -> anyhow::Result<()> {
    match format {
        ResourceFormat::Yaml => print!("{}", serde_norway::to_string(value)?),
        ResourceFormat::Json => println!("{}", serde_json::to_string_pretty(value)?),
    }
    Ok(())
}

pub async fn delete(file: Option<&Path>, kind_and_name: &[String], config: Option<&Path>) -> Result<ExitCode, Failure> {
    let keys: Vec<Key> = match (file, kind_and_name) {
        (Some(file), []) => {
            // Dependents first: the reverse of the write order.
            let mut objects = objects_in(file)?;
            in_write_order(&mut objects);
            objects.iter().rev().map(Object::key).collect()
        }
        (None, [kind, names @ ..]) if !names.is_empty() => {
            let kind = kind_named(kind)
                .ok_or_else(|| Failure::Input(vec![format!("kind {kind:?} is not a tortie resource")]))?;
            names.iter().map(|n| Key::new(kind, n.clone())).collect()
        }
        _ => return Err(Failure::Input(vec!["give either -f FILE or KIND NAME...".to_string()])),
    };
    let store = super::ipam_cmd::open(config).await?;
    let mut missing = false;
    for key in &keys {
        match delete_one(&store, key).await {
            Ok(()) => println!("{key} deleted"),
            Err(DatastoreError::NotFound { .. }) => {
                eprintln!("tortie: {key} not found");
                missing = true;
            }
            Err(e) => return Err(e.into()),
        }
    }
    Ok(if missing { ExitCode::from(1) } else { ExitCode::SUCCESS })
}

async fn delete_one(store: &Datastore, key: &Key) -> Result<(), DatastoreError> {
    let current = store.backend().get(key).await?;
    store.backend().delete(key, current.revision).await
}

/// Documents as YAML, separated by `---`.
pub fn documents_yaml(objects: &[Object]) -> anyhow::Result<String> {
    let mut text = String::new();
    for object in objects {
        text.push_str("---\n");
        text.push_str(&serde_norway::to_string(&object.to_document())?);
    }
    Ok(text)
}
