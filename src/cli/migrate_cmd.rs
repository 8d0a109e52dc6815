//! `tortie migrate from-calico FILE|-...`: converts Calico's exported resources and writes them
//! with `apply`'s code, refusing to overwrite a differing object unless `--force`. The report
//! (every field changed or not carried, what to copy by hand) goes to standard error; with
//! `--dry-run` the converted resources go to standard output as tortie's YAML and nothing is
//! written (the datastore is not even opened).

use super::apply_cmd::{Failure, documents_yaml, read_input, write};
use crate::migrate::calico::convert;
use crate::migrate::{in_write_order, read_documents};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

pub async fn from_calico(
    files: &[PathBuf],
    dry_run: bool,
    force: bool,
    config: Option<&Path>,
) -> Result<ExitCode, Failure> {
    let mut documents = Vec::new();
    for file in files {
        let mut read =
            read_documents(&read_input(file)?).map_err(|e| Failure::Input(vec![format!("{}: {e}", file.display())]))?;
        if files.len() > 1 {
            read.iter_mut().for_each(|d| d.position = format!("{}: {}", file.display(), d.position));
        }
        documents.append(&mut read);
    }
    let mut migration = convert(&documents).map_err(Failure::Input)?;
    in_write_order(&mut migration.objects);
    let code = if dry_run {
        print!("{}", documents_yaml(&migration.objects)?);
        ExitCode::SUCCESS
    } else {
        let store = super::ipam_cmd::open(config).await?;
        write(&store, std::mem::take(&mut migration.objects), force).await?
    };
    for line in &migration.report {
        eprintln!("{line}");
    }
    Ok(code)
}
