//! The README's tables of fault kinds say what the code takes: every kind
//! and every field that serde accepts, in a scenario's `[[fault]]` and in
//! the proxy's control API, is in them, and nothing in them is unknown.
//!
//! For each kind the README lists, a document is built from the fields it
//! lists (each with a valid value) and parsed; serialising what was parsed
//! gives every field the code knows, which must be exactly the README's.

use std::collections::{BTreeMap, BTreeSet};

use holdfast_chaos::faults::{Fault, FaultAction};
use holdfast_chaos::scenario::FaultStep;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

const README: &str = include_str!("../../../README.md");

/// The heading of the README's section on fault kinds.
const SECTION: &str = "#### Fault kinds";

/// A valid value for each field a fault kind has, to build documents from
/// the README's lists; a field without one here is none the code knows.
fn example_value(field: &str) -> Option<Value> {
    Some(match field {
        "name" => json!("a label"),
        "at" | "for" | "short_at" | "short_for" | "every" | "restart_after" => json!("1s"),
        "target" => json!("redis"),
        "fault" => json!({"kind": "down"}),
        "ms" | "jitter_ms" | "bytes_per_sec" | "bytes" | "max_bytes" | "delay_us" => json!(7),
        "direction" => json!("upstream"),
        _ => return None,
    })
}

/// The section's lines, from its heading to the next heading.
fn section() -> Vec<&'static str> {
    let mut lines = README.lines().skip_while(|line| line.trim() != SECTION);
    assert!(lines.next().is_some(), "README has no {SECTION:?} section");
    lines.take_while(|line| !line.starts_with('#')).collect()
}

/// The `code` spans of a table cell.
fn code_spans(cell: &str) -> BTreeSet<String> {
    cell.split('`')
        .skip(1)
        .step_by(2)
        .map(str::to_owned)
        .collect()
}

/// The rows of the table whose first header cell is `header`, as cells,
/// without the header and separator rows.
fn table(header: &str) -> Vec<Vec<&'static str>> {
    let lines = section();
    let start = lines
        .iter()
        .position(|line| line.starts_with(&format!("| {header} |")))
        .unwrap_or_else(|| panic!("no table headed {header:?} in {SECTION:?}"));
    lines[start + 2..]
        .iter()
        .take_while(|line| line.starts_with('|'))
        .map(|line| {
            line.trim()
                .trim_matches('|')
                .split('|')
                .map(str::trim)
                .collect()
        })
        .collect()
}

/// A table of kinds: each row's kind and the fields it lists.
fn kinds(header: &str) -> BTreeMap<String, BTreeSet<String>> {
    let mut kinds = BTreeMap::new();
    for row in table(header) {
        let kind = code_spans(row[0]);
        assert_eq!(kind.len(), 1, "one kind per row: {row:?}");
        let kind = kind.into_iter().next().unwrap_or_default();
        let fields = code_spans(row.get(1).copied().unwrap_or_default());
        assert!(
            kinds.insert(kind.clone(), fields).is_none(),
            "{kind} listed twice"
        );
    }
    kinds
}

/// The kinds serde accepts for `T`, from its own answer to an unknown one.
fn serde_kinds<T: DeserializeOwned + std::fmt::Debug>() -> BTreeSet<String> {
    let err = serde_json::from_value::<T>(json!({"kind": "no such kind"}))
        .expect_err("an unknown kind is refused")
        .to_string();
    let expected = err
        .split_once("expected")
        .unwrap_or_else(|| panic!("serde names no kinds: {err}"))
        .1;
    code_spans(expected)
}

/// Parses a document of `kind` with `fields` as `T`, and gives back the
/// fields `T` writes (every field it has, the kind tag aside).
fn fields_known<T: DeserializeOwned + serde::Serialize>(
    kind: &str,
    fields: &BTreeSet<String>,
) -> BTreeSet<String> {
    let mut document = json!({"kind": kind});
    for field in fields {
        document[field] = example_value(field)
            .unwrap_or_else(|| panic!("the README lists `{field}` for `{kind}`: no fault has it"));
    }
    let parsed: T = serde_json::from_value(document.clone())
        .unwrap_or_else(|e| panic!("the README's `{kind}` does not parse ({e}): {document}"));
    let written = serde_json::to_value(&parsed).expect("a parsed fault serialises");
    let Value::Object(written) = written else {
        panic!("`{kind}` is not written as an object: {written}");
    };
    written.keys().filter(|k| *k != "kind").cloned().collect()
}

/// Checks the README's table headed `header` against the code: its kinds
/// against the ones `Kind` accepts, and each kind's fields (with `shared`,
/// the fields every kind of the table has) against the ones `Document`
/// writes for it.
fn assert_documented<Kind, Document>(header: &str, shared: &BTreeSet<String>)
where
    Kind: DeserializeOwned + std::fmt::Debug,
    Document: DeserializeOwned + serde::Serialize,
{
    let documented = kinds(header);

    assert_eq!(
        documented.keys().cloned().collect::<BTreeSet<_>>(),
        serde_kinds::<Kind>(),
        "kinds in the README's {header:?} table vs the code"
    );
    for (kind, fields) in &documented {
        let listed: BTreeSet<String> = shared.union(fields).cloned().collect();
        assert_eq!(
            fields_known::<Document>(kind, &listed),
            listed,
            "fields of `{kind}` in the code vs the README's {header:?} table"
        );
    }
}

#[test]
fn the_readme_lists_every_proxy_fault_and_its_fields() {
    assert_documented::<Fault, Fault>("proxy fault", &BTreeSet::new());
}

#[test]
fn the_readme_lists_every_scenario_fault_kind_and_its_fields() {
    let timeline: BTreeSet<String> = table("timeline field")
        .iter()
        .flat_map(|row| code_spans(row[0]))
        .collect();

    assert_documented::<FaultAction, FaultStep>("scenario kind", &timeline);
}
