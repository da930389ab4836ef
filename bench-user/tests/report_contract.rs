//! The report.json contract, without root: the published JSON Schema is the
//! one the report types generate, reports are valid against it (and the
//! validator rejects what breaks it), older reports are refused by render,
//! compare and baseline in one line naming the version, and the stacks'
//! side files are read (and copied into baselines) only when their BLAKE3
//! matches.

mod support;

use std::{
    path::{Path, PathBuf},
    process::{Command, Output},
};

use protoprof::{
    baseline::{self, BaselineIndex, Key},
    report::{self, Report, SCHEMA_VERSION},
};
use support::{assert_run_valid, out_dir, published_schema, schema_errors, workspace, PROTOPROF};

fn fixture_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/run-tcp")
}

/// A schema-2 report as protoprof wrote them before this schema.
fn schema2_text() -> String {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/report-tcp-schema2.json");
    std::fs::read_to_string(p).expect("schema 2 fixture")
}

/// A copy of the fixture run (report.json and stacks/) under `root`.
fn copy_fixture(root: &Path, name: &str) -> PathBuf {
    let to = root.join(name);
    std::fs::create_dir_all(to.join("stacks")).expect("dir");
    std::fs::copy(fixture_dir().join("report.json"), to.join("report.json")).expect("copy");
    for e in std::fs::read_dir(fixture_dir().join("stacks")).expect("stacks") {
        let e = e.expect("entry");
        std::fs::copy(e.path(), to.join("stacks").join(e.file_name())).expect("copy");
    }
    to
}

/// `protoprof compare A B --out OUT` with the shipped gates.
fn compare(a: &Path, b: &Path, out: &Path) -> Output {
    Command::new(PROTOPROF)
        .arg("compare")
        .arg(a)
        .arg(b)
        .arg("--out")
        .arg(out)
        .arg("--gates")
        .arg(workspace().join("profiles/gates.toml"))
        .output()
        .expect("protoprof compare")
}

fn one_line_error(o: &Output) -> String {
    let stderr = String::from_utf8_lossy(&o.stderr).into_owned();
    assert_eq!(o.status.code(), Some(2), "{stderr}");
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
    stderr
}

#[test]
fn the_published_schema_is_the_one_the_types_generate() {
    let generated = report::json_schema();
    assert_eq!(
        published_schema(),
        generated,
        "docs/report.schema.json is stale: regenerate it with \
         `cargo run --release -p bench-user --bin protoprof -- schema > docs/report.schema.json`"
    );
    // And it is a schema of this version's layout: the fields that moved.
    let text = generated.to_string();
    for field in ["ge_bytes", "lt_bytes", "blake3", "\"client\"", "\"server\""] {
        assert!(text.contains(field), "schema lacks {field}");
    }
}

#[test]
fn the_fixture_is_valid_and_breaking_it_is_caught() {
    let r = assert_run_valid(&fixture_dir());
    assert_eq!(r.schema_version, SCHEMA_VERSION);
    assert_eq!(r.stacks.len(), 4);
    let value: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(fixture_dir().join("report.json")).expect("read"),
    )
    .expect("json");
    // The validator can fail: a role outside the enum, a missing section,
    // an embedded stack list where the side-file entries belong.
    let mut bad_role = value.clone();
    bad_role["targets"][0]["role"] = "proxy".into();
    assert_eq!(schema_errors(&bad_role).len(), 1, "role not checked");
    let mut no_run = value.clone();
    no_run.as_object_mut().expect("object").remove("run");
    assert!(!schema_errors(&no_run).is_empty(), "missing run accepted");
    let mut embedded = value.clone();
    embedded["stacks"][0]["stacks"] = serde_json::json!([{"stack": "a;b", "count": 1}]);
    assert!(
        !schema_errors(&embedded).is_empty(),
        "embedded stacks accepted"
    );
}

#[test]
fn a_schema_2_report_is_refused_by_render_compare_and_baseline() {
    let root = out_dir("contract-v2");
    let old = root.join("old");
    std::fs::create_dir_all(&old).expect("dir");
    std::fs::write(old.join("report.json"), schema2_text()).expect("write");

    // render
    let o = Command::new(PROTOPROF)
        .arg("render")
        .arg(&old)
        .output()
        .expect("protoprof render");
    let e = one_line_error(&o);
    assert!(
        e.contains("schema_version 2") && e.contains("re-run"),
        "{e}"
    );
    assert!(!old.join("report.md").exists(), "rendered anyway");

    // compare, on either side
    let new = copy_fixture(&root, "new");
    for (a, b) in [(&old, &new), (&new, &old)] {
        let o = compare(a, b, &root.join("cmp"));
        let e = one_line_error(&o);
        assert!(e.contains("schema_version 2"), "{e}");
        assert!(e.contains(&old.display().to_string()), "{e}");
    }

    // baseline: a stored baseline of schema 2 must be re-recorded.
    let r: serde_json::Value = serde_json::from_str(&schema2_text()).expect("json");
    let machine: report::Machine =
        serde_json::from_value(r["run"]["machine"].clone()).expect("machine");
    let key = Key {
        spec_blake3: r["run"]["spec_blake3"].as_str().expect("spec").into(),
        machine: machine.clone(),
    };
    let store = root.join("baselines");
    let d = baseline::dir(&store, "tcp", &key);
    std::fs::create_dir_all(d.join("run-1")).expect("dir");
    std::fs::write(d.join("run-1/report.json"), schema2_text()).expect("write");
    let index = BaselineIndex {
        profile: "tcp".into(),
        spec_blake3: key.spec_blake3.clone(),
        machine,
        tool_version: "0.1.0".into(),
        created_at: "2026-11-26T17:48:21Z".into(),
        overrides: Vec::new(),
        duration: None,
        runs: vec!["run-1".into()],
    };
    std::fs::write(
        d.join("baseline.json"),
        serde_json::to_string(&index).expect("index"),
    )
    .expect("write");
    let err = baseline::load(&store, "tcp", &key).expect_err("schema 2 baseline loaded");
    let msg = err.to_string();
    assert_eq!(err.exit_code(), 2, "{msg}");
    assert_eq!(msg.lines().count(), 1, "{msg}");
    assert!(
        msg.contains("schema_version 2") && msg.contains("re-record"),
        "{msg}"
    );
    let _ = std::fs::remove_dir_all(&root);
}

#[test]
fn a_changed_side_file_is_refused_in_one_line() {
    let root = out_dir("contract-hash");
    let run = copy_fixture(&root, "run");
    let cpu = run.join("stacks/cpu.folded");
    let mut text = std::fs::read_to_string(&cpu).expect("read");
    text.push_str("client;main;added 1\n");
    std::fs::write(&cpu, text).expect("write");
    let o = Command::new(PROTOPROF)
        .arg("render")
        .arg(&run)
        .output()
        .expect("protoprof render");
    let e = one_line_error(&o);
    assert!(e.contains("cpu.folded") && e.contains("BLAKE3"), "{e}");
    // compare reads the cpu graph of each run through its report too.
    let good = copy_fixture(&root, "good");
    let o = compare(&good, &run, &root.join("cmp"));
    let e = one_line_error(&o);
    assert!(e.contains("cpu.folded") && e.contains("BLAKE3"), "{e}");
    let _ = std::fs::remove_dir_all(&root);
}

#[test]
fn render_reads_the_side_files_through_report_json() {
    let root = out_dir("contract-render");
    let run = copy_fixture(&root, "run");
    let o = Command::new(PROTOPROF)
        .arg("render")
        .arg(&run)
        .output()
        .expect("protoprof render");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let html = std::fs::read_to_string(run.join("report.html")).expect("html");
    // Every graph the report names is drawn, none more.
    assert_eq!(html.matches("<iframe class=\"flame\"").count(), 4);
    assert!(html.contains("tcp_recvmsg"), "cpu frames missing");
    let _ = std::fs::remove_dir_all(&root);
}

#[test]
fn baselines_copy_the_side_files_and_read_them_back() {
    let root = out_dir("contract-baseline");
    let run = copy_fixture(&root, "run");
    let r: Report = protoprof::render::read_json(&run.join("report.json")).expect("report");
    let key = Key {
        spec_blake3: r.run.spec_blake3.clone(),
        machine: r.run.machine.clone(),
    };
    let index = BaselineIndex {
        profile: "tcp".into(),
        spec_blake3: key.spec_blake3.clone(),
        machine: key.machine.clone(),
        tool_version: r.run.tool_version.clone(),
        created_at: r.run.started_at.clone(),
        overrides: Vec::new(),
        duration: None,
        runs: Vec::new(),
    };
    let store = root.join("baselines");
    let d = baseline::save(&store, &index, &key, &[(run.clone(), r.clone())], false).expect("save");
    for entry in &r.stacks {
        let from = std::fs::read(run.join(&entry.file)).expect("source");
        let to = std::fs::read(d.join("run-1").join(&entry.file)).expect("copied side file");
        assert_eq!(from, to, "{}", entry.file);
    }
    let set = baseline::load(&store, "tcp", &key).expect("load");
    assert_eq!(set.runs.len(), 1);
    let cpu = protoprof::compare::diff::merged_cpu(&set).expect("cpu stacks");
    let want = r.stacks.iter().find(|s| s.name == "cpu").expect("cpu");
    assert_eq!(cpu.iter().map(|s| s.count).sum::<u64>(), want.total);

    // A run whose side file changed is not saved.
    std::fs::write(run.join("stacks/offcpu.folded"), "x 1\n").expect("tamper");
    let err = baseline::save(&store, &index, &key, &[(run, r)], true).expect_err("saved");
    assert!(err.to_string().contains("offcpu.folded"), "{err}");
    let _ = std::fs::remove_dir_all(&root);
}
