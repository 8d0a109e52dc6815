//! `tortie apply|get|delete`: tortie's resources as YAML or JSON documents, calicoctl-like, on
//! the datastore the agent's configuration names (as `tortie ipam` reaches it). Input that does
//! not parse or validate is refused as a whole (exit 2) before anything is written.

use super::{EXIT_CONFIG, ListFormat};
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
    format: ListFormat,
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
    print!("{}", super::output::render(format, &output, render_resources).map_err(anyhow::Error::msg)?);
    Ok(ExitCode::SUCCESS)
}

/// A resource document, or a `List` of them, as a table: kind and name (`namespace/name` for the
/// namespaced kinds); `wide` adds the spec on one line.
pub fn render_resources(value: &serde_json::Value, wide: bool) -> String {
    let documents = match value["kind"].as_str() {
        Some("List") => value["items"].as_array().cloned().unwrap_or_default(),
        _ => vec![value.clone()],
    };
    if documents.is_empty() {
        return "No resources found.\n".to_string();
    }
    let rows: Vec<Vec<String>> = documents
        .iter()
        .map(|d| {
            let name = d["metadata"]["name"].as_str().unwrap_or_default();
            let name = match d["metadata"]["namespace"].as_str() {
                Some(namespace) => format!("{namespace}/{name}"),
                None => name.to_string(),
            };
            let mut row = vec![d["kind"].as_str().unwrap_or_default().to_string(), name];
            if wide {
                row.push(d["spec"].to_string());
            }
            row
        })
        .collect();
    let headers: &[&str] = if wide { &["KIND", "NAME", "SPEC"] } else { &["KIND", "NAME"] };
    super::table::render(headers, &rows)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn golden_resources_in_every_format() {
        let pool = Object {
            kind: kind_named("ippool").unwrap(),
            name: "pool-a".into(),
            spec: serde_json::json!({"cidr": "10.60.0.0/16", "blockSize": 26, "natOutgoing": true}),
        };
        let node = Object {
            kind: kind_named("node").unwrap(),
            name: "n1".into(),
            spec: serde_json::json!({"bgp": {"ipv4Address": "192.0.2.10/24"}}),
        };
        let list = serde_json::json!({
            "apiVersion": crate::migrate::object::api_version(),
            "kind": "List",
            "items": [pool.to_document(), node.to_document()],
        });
        crate::cli::output::assert_golden_formats("get", &list, render_resources);
        let empty = serde_json::json!({"kind": "List", "items": []});
        assert_eq!(render_resources(&empty, false), "No resources found.\n");
    }
}
