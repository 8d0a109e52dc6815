//! Splitting input into resource documents: YAML (several `---` documents) or JSON, with
//! Kubernetes' `kind: List` and calicoctl's `<Kind>List` wrappers unwrapped into their items.

use serde::Deserialize;
use serde_json::Value;

/// One resource read from the input, with where it was, for error messages.
#[derive(Clone, Debug, PartialEq)]
pub struct Document {
    /// `document 2` or `document 2, item 5` (both 1-based).
    pub position: String,
    pub value: Value,
}

impl Document {
    /// A top-level string field (`apiVersion`, `kind`), if present.
    pub fn text(&self, field: &str) -> Option<&str> {
        self.value.get(field).and_then(Value::as_str)
    }

    /// `metadata.name`, if present.
    pub fn name(&self) -> Option<&str> {
        self.value.pointer("/metadata/name").and_then(Value::as_str)
    }
}

/// Every resource in `text`; empty documents are skipped. An error names the document.
pub fn read_documents(text: &str) -> Result<Vec<Document>, String> {
    let mut documents = Vec::new();
    for (i, doc) in serde_norway::Deserializer::from_str(text).enumerate() {
        let position = format!("document {}", i + 1);
        let value = Value::deserialize(doc).map_err(|e| format!("{position}: not valid YAML or JSON: {e}"))?;
        match value {
            Value::Null => {}
            Value::Object(_) => unwrap_list(Document { position, value }, &mut documents)?,
            other => return Err(format!("{position}: expected a resource (a mapping), found {other}")),
        }
    }
    Ok(documents)
}

/// Pushes `doc`, or each of its items when it is a list; items without `apiVersion` or `kind`
/// take the list's (`IPPoolList` → `IPPool`).
fn unwrap_list(doc: Document, out: &mut Vec<Document>) -> Result<(), String> {
    let kind = doc.text("kind").unwrap_or_default().to_string();
    let Some(item_kind) = kind.strip_suffix("List") else {
        out.push(doc);
        return Ok(());
    };
    let items = match doc.value.get("items") {
        Some(Value::Array(items)) => items.clone(),
        Some(Value::Null) | None => Vec::new(),
        Some(other) => return Err(format!("{}: items: expected a list, found {other}", doc.position)),
    };
    let api_version = doc.value.get("apiVersion").cloned();
    for (j, mut item) in items.into_iter().enumerate() {
        let position = format!("{}, item {}", doc.position, j + 1);
        let Value::Object(fields) = &mut item else {
            return Err(format!("{position}: expected a resource (a mapping), found {item}"));
        };
        if let Some(v) = &api_version {
            fields.entry("apiVersion").or_insert_with(|| v.clone());
        }
        if !item_kind.is_empty() {
            fields.entry("kind").or_insert_with(|| Value::String(item_kind.to_string()));
        }
        out.push(Document { position, value: item });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn lists_are_unwrapped_and_items_inherit_the_list_kind() {
        let text = "apiVersion: projectcalico.org/v3\nkind: IPPoolList\nitems:\n- metadata: {name: a}\n---\n\
                    ---\napiVersion: v1\nkind: List\nitems:\n- {apiVersion: x/v1, kind: Y, metadata: {name: b}}\n";
        let docs = read_documents(text).unwrap();
        assert_eq!(docs.len(), 2);
        assert_eq!(docs[0].position, "document 1, item 1");
        assert_eq!(
            docs[0].value,
            json!({"apiVersion": "projectcalico.org/v3", "kind": "IPPool", "metadata": {"name": "a"}})
        );
        assert_eq!(docs[1].position, "document 3, item 1");
        assert_eq!(docs[1].text("kind"), Some("Y"));
    }

    #[test]
    fn json_is_read_and_malformed_input_names_the_document() {
        assert_eq!(read_documents(r#"{"kind": "IPPool"}"#).unwrap()[0].text("kind"), Some("IPPool"));
        let err = read_documents("kind: A\n---\nkind: [\n").unwrap_err();
        assert!(err.starts_with("document 2: not valid YAML"), "{err}");
        let err = read_documents("- 1\n").unwrap_err();
        assert!(err.starts_with("document 1: expected a resource"), "{err}");
    }
}
