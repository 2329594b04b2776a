//! Golden tests of the pure `translate()`: every `tests/golden/NAME.in.yaml` is loaded and
//! translated; the table, statuses and diagnostics must equal `NAME.out.yaml`.
//! Regenerate after an intended change with `UPDATE_GOLDEN=1 cargo test --test translate_golden`.

use serde::Serialize;
use std::path::Path;
use wsgate::source::files;
use wsgate::translate::{self, Options};

#[derive(Serialize)]
struct Golden {
    load_errors: Vec<String>,
    load_warnings: Vec<String>,
    diagnostics: Vec<String>,
    gateway_statuses: Vec<(String, translate::GatewayConditions)>,
    table: wsgate::ir::RouteTable,
}

#[test]
fn golden_files_match() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden");
    let update = std::env::var_os("UPDATE_GOLDEN").is_some();
    let mut cases = 0;
    let mut failures = Vec::new();
    let mut entries: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    entries.sort();
    for input in entries {
        let name = input.file_name().unwrap().to_string_lossy().into_owned();
        let Some(stem) = name.strip_suffix(".in.yaml") else {
            continue;
        };
        cases += 1;
        let text = std::fs::read_to_string(&input).unwrap();
        let mut loaded = files::Loaded::default();
        files::parse_into(&name, &text, &mut loaded);
        let t = translate::translate(&loaded.snapshot, &Options::default());
        assert_eq!(
            t.table.validate(),
            Ok(()),
            "{stem}: table must be consistent"
        );
        let golden = Golden {
            load_errors: loaded.errors.iter().map(|e| e.to_string()).collect(),
            load_warnings: loaded.warnings.iter().map(|e| e.to_string()).collect(),
            diagnostics: t.diagnostics.iter().map(|d| d.to_string()).collect(),
            gateway_statuses: t
                .gateway_statuses
                .iter()
                .map(|(o, c)| (o.to_string(), c.clone()))
                .collect(),
            table: t.table,
        };
        let got = serde_yaml::to_string(&golden).unwrap();
        let out = dir.join(format!("{stem}.out.yaml"));
        if update {
            std::fs::write(&out, &got).unwrap();
            continue;
        }
        let want = std::fs::read_to_string(&out).unwrap_or_default();
        if want != got {
            failures.push(format!(
                "{stem}: output differs from {}\n--- got:\n{got}",
                out.display()
            ));
        }
    }
    assert!(cases >= 5, "expected golden cases in {}", dir.display());
    assert!(
        failures.is_empty(),
        "{}\n(rerun with UPDATE_GOLDEN=1 if the change is intended)",
        failures.join("\n")
    );
}

#[test]
fn translation_is_deterministic_under_input_order() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden");
    let text = std::fs::read_to_string(dir.join("ingress-precedence.in.yaml")).unwrap();
    let mut loaded = files::Loaded::default();
    files::parse_into("x", &text, &mut loaded);
    let a = translate::translate(&loaded.snapshot, &Options::default());
    loaded.snapshot.ingresses.reverse();
    loaded.snapshot.services.reverse();
    loaded.snapshot.endpoint_slices.reverse();
    let b = translate::translate(&loaded.snapshot, &Options::default());
    assert_eq!(a.table, b.table);
    assert_eq!(a.diagnostics, b.diagnostics);
}
