//! The committed schema is the one the parsing types generate: editors and taplo read the file,
//! so a stale copy would accept or refuse what apf does not.

use std::process::Command;

#[test]
fn committed_schema_is_current() {
    let out = Command::new(env!("CARGO_BIN_EXE_apf")).arg("schema").output().unwrap();
    assert!(out.status.success());
    let generated = String::from_utf8(out.stdout).unwrap();
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/schemas/experiment.schema.json");
    let committed = std::fs::read_to_string(path).unwrap();
    assert!(
        generated == committed,
        "schemas/experiment.schema.json is stale; regenerate it with `cargo run -- schema > schemas/experiment.schema.json`"
    );
}
