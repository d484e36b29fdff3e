//! `vet` for real on this machine: every stage runs against the real host
//! and, for the Engine stage, against each engine in `BERTH_TEST_ENGINES`
//! (comma list, default `podman,docker`). A requested engine that cannot be
//! reached fails the test: nothing is skipped silently. Disk and memory
//! tests are bounded (the defaults: 64 MiB per data path, 256 MiB of RAM),
//! and each whole vet must finish well under 30 s on the 2-core CI VM.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use berth_core::pipeline::{self, OperatorAction, RunState, StageState, Verdict};
use berth_engine::podman_service::{self, PodmanOptions};
use berth_engine::{Engine, EngineKind};
use berth_verify::vet::{VET_STAGES, VetOptions, engine::container_name};
use berth_verify::{MemoryRunStore, RunStore, RunSummary, resume_vet, vet};

/// The bar the issue sets for one whole vet on the CI VM.
const VET_WALL_S_MAX: u64 = 30;

fn requested_engines() -> Vec<EngineKind> {
    let raw = std::env::var("BERTH_TEST_ENGINES").unwrap_or_else(|_| "podman,docker".into());
    raw.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| match s {
            "podman" => EngineKind::Podman,
            "docker" => EngineKind::Docker,
            other => panic!("BERTH_TEST_ENGINES: unknown engine {other:?} (use podman, docker)"),
        })
        .collect()
}

async fn connect(kind: EngineKind) -> Arc<dyn Engine> {
    let result = match kind {
        EngineKind::Podman => podman_service::connect_podman(&PodmanOptions::default())
            .await
            .map(|e| Arc::new(e) as Arc<dyn Engine>),
        _ => podman_service::connect_docker(None)
            .await
            .map(|e| Arc::new(e) as Arc<dyn Engine>),
    };
    result.unwrap_or_else(|e| {
        panic!(
            "BERTH_TEST_ENGINES requests {kind}, but it is unavailable: {e}\n\
             Start it (docker: `dockerd >/var/log/dockerd.log 2>&1 &`) or set \
             BERTH_TEST_ENGINES to the engines present here."
        )
    })
}

/// A data directory on the disk the build runs on (not a tmpfs /tmp).
fn data_dir() -> tempfile::TempDir {
    tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).expect("create a data dir")
}

fn write_spec(dir: &Path, text: &str) -> PathBuf {
    let path = dir.join("expected-spec.toml");
    std::fs::write(&path, text).unwrap();
    path
}

fn explain(s: &RunSummary) -> String {
    s.stages
        .iter()
        .map(|l| format!("  {} [{}] {}", l.name, l.state, l.summary))
        .collect::<Vec<_>>()
        .join("\n")
}

fn stage<'a>(s: &'a RunSummary, name: &str) -> &'a berth_verify::vet::StageLine {
    s.stages.iter().find(|l| l.name == name).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vet_runs_every_stage_on_this_host_against_each_engine() {
    for kind in requested_engines() {
        let engine = connect(kind).await;
        let work = data_dir();
        let data = work.path().join("data");
        std::fs::create_dir(&data).unwrap();
        let spec = write_spec(
            work.path(),
            &format!(
                "min_cpus = 1\nmin_memory_gib = 1\nengine = \"{kind}\"\n[min_free_gib]\n\"{}\" = 0.5\n",
                data.display()
            ),
        );
        let mut opts = VetOptions::new(work.path().join("report"));
        opts.data_paths = vec![data.clone()];
        opts.expected_spec = Some(spec);
        opts.run_id = Some(format!("vet-test-{kind}-{}", std::process::id()));
        let transitions = Arc::new(Mutex::new(0u32));
        let seen = transitions.clone();
        opts.observer = Some(Arc::new(move |_| *seen.lock().unwrap() += 1));
        let store = MemoryRunStore::new();

        let started = Instant::now();
        let summary = vet(Some(engine.clone()), opts, &store).await.unwrap();
        let took = started.elapsed();
        eprintln!("vet on {kind} took {took:?}:\n{}", explain(&summary));

        assert_eq!(
            summary.verdict,
            Some(Verdict::Passed),
            "vet on {kind} did not pass:\n{}",
            explain(&summary)
        );
        assert!(
            took < Duration::from_secs(VET_WALL_S_MAX),
            "vet on {kind} took {took:?}"
        );
        let names: Vec<&str> = summary.stages.iter().map(|l| l.name.as_str()).collect();
        assert_eq!(names, VET_STAGES);
        assert!(summary.stages.iter().all(|l| l.state == StageState::Passed));
        // 1 create + 2 per stage + 1 completion.
        assert_eq!(*transitions.lock().unwrap(), 1 + 2 * 7 + 1);

        // Tolerated absences are reported, not failed: this VM's virtio disk
        // has no SMART (and smartctl may not even be installed).
        let disk = &stage(&summary, "Disk").summary;
        assert!(
            disk.contains("SMART"),
            "Disk says nothing about SMART: {disk}"
        );
        assert!(disk.contains("write") && disk.contains(" p99 "), "{disk}");
        let clock = &stage(&summary, "Clock").summary;
        assert!(clock.contains("sources:"), "{clock}");
        let engine_line = &stage(&summary, "Engine").summary;
        assert!(
            engine_line.contains("exec `true` exited 0"),
            "{engine_line}"
        );
        assert_eq!(
            engine.inspect_container(&container_name()).await.unwrap(),
            None,
            "the probe container is gone"
        );
        let spec_line = &stage(&summary, "SpecValidate").summary;
        assert!(spec_line.starts_with("0 critical"), "{spec_line}");

        // The data directory holds nothing but what it held before.
        assert_eq!(std::fs::read_dir(&data).unwrap().count(), 0);

        // Reports: both written, self-contained, with the same data.
        let html = std::fs::read_to_string(summary.report_html.as_ref().unwrap()).unwrap();
        assert!(html.contains("<style>"));
        for forbidden in ["http://", "https://", "<script", "<link"] {
            assert!(
                !html.contains(forbidden),
                "report.html contains {forbidden}"
            );
        }
        let json: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(summary.report_json.as_ref().unwrap()).unwrap(),
        )
        .unwrap();
        assert_eq!(json["format"], "berth-report/1");
        assert_eq!(json["run"]["state"], "completed");
        assert_eq!(json["run"]["verdict"], "passed");
        assert_eq!(json["environment"]["engine.kind"], kind.to_string());
        assert!(
            json["environment"]["engine.version"]
                .as_str()
                .is_some_and(|v| !v.is_empty())
        );
        assert_eq!(
            json["environment"]["image.localhost/berth-demo:latest"],
            "present"
        );
        assert_eq!(json["stages"].as_array().unwrap().len(), 7);
        let inventory = &json["stages"][0]["artifacts"][0];
        assert_eq!(inventory["name"], "inventory.json");
        assert!(
            inventory["excerpt"]
                .as_str()
                .unwrap()
                .contains("logical_cpus")
        );

        // The store holds the same completed run.
        let run = store.load_run(&summary.run_id).unwrap().unwrap();
        assert_eq!(run.state, RunState::Completed);
        assert_eq!(
            run.stages[6].artifacts.len(),
            2,
            "report artifacts recorded"
        );
    }
}

/// Small, fast options without an engine, holding on an impossible spec.
fn holding_options(work: &Path, min_cpus: u32) -> VetOptions {
    let data = work.join("data");
    std::fs::create_dir_all(&data).unwrap();
    let spec = write_spec(work, &format!("min_cpus = {min_cpus}\n"));
    let mut opts = VetOptions::new(work.join("report"));
    opts.data_paths = vec![data];
    opts.expected_spec = Some(spec);
    opts.disk_test_mib = 8;
    opts.memory_test_mib = 32;
    // These tests are about holding and resuming, not about this disk: a
    // neighbour's build must not make a slow fsync fail them.
    opts.floors.disk_write_mb_s_min = 0.0;
    opts.floors.disk_read_mb_s_min = 0.0;
    opts.floors.disk_fsync_p99_ms_max = f64::MAX;
    opts
}

async fn held_run(work: &Path, store: &MemoryRunStore) -> (VetOptions, RunSummary) {
    let opts = holding_options(work, 100_000);
    let summary = vet(None, opts.clone(), store).await.unwrap();
    assert_eq!(
        summary.state,
        RunState::FailedHolding,
        "{}",
        explain(&summary)
    );
    assert_eq!(summary.failed_stage.as_deref(), Some("SpecValidate"));
    assert!(
        stage(&summary, "SpecValidate")
            .summary
            .starts_with("1 critical")
    );
    assert_eq!(stage(&summary, "Disk").state, StageState::Pending);
    // A held run has a report that says where it holds.
    let html = std::fs::read_to_string(summary.report_html.as_ref().unwrap()).unwrap();
    assert!(html.contains("holding on failed stage SpecValidate"));
    (opts, summary)
}

#[tokio::test]
async fn a_held_vet_continues_after_an_override() {
    let work = data_dir();
    let store = MemoryRunStore::new();
    let (opts, held) = held_run(work.path(), &store).await;
    let summary = resume_vet(
        None,
        opts,
        &store,
        &held.run_id,
        Some(OperatorAction::Override),
    )
    .await
    .unwrap();
    assert_eq!(
        summary.verdict,
        Some(Verdict::PassedWithOverrides),
        "{}",
        explain(&summary)
    );
    assert_eq!(
        stage(&summary, "SpecValidate").state,
        StageState::Overridden
    );
    assert_eq!(
        stage(&summary, "Engine").summary,
        "no engine given: container round trip not checked"
    );
    let json = std::fs::read_to_string(summary.report_json.unwrap()).unwrap();
    assert!(json.contains("\"passed_with_overrides\""));
}

#[tokio::test]
async fn a_held_vet_passes_on_retry_once_the_spec_is_fixed() {
    let work = data_dir();
    let store = MemoryRunStore::new();
    let (opts, held) = held_run(work.path(), &store).await;
    write_spec(work.path(), "min_cpus = 1\n");
    let summary = resume_vet(
        None,
        opts,
        &store,
        &held.run_id,
        Some(OperatorAction::Retry),
    )
    .await
    .unwrap();
    assert_eq!(
        summary.verdict,
        Some(Verdict::Passed),
        "{}",
        explain(&summary)
    );
    assert_eq!(stage(&summary, "SpecValidate").attempts, 2);
}

#[tokio::test]
async fn an_abandoned_vet_ends_and_keeps_its_report() {
    let work = data_dir();
    let store = MemoryRunStore::new();
    let (opts, held) = held_run(work.path(), &store).await;
    let summary = resume_vet(
        None,
        opts.clone(),
        &store,
        &held.run_id,
        Some(OperatorAction::Abandon),
    )
    .await
    .unwrap();
    assert_eq!(summary.verdict, Some(Verdict::Abandoned));
    assert_eq!(stage(&summary, "Memory").state, StageState::Skipped);
    let html = std::fs::read_to_string(summary.report_html.unwrap()).unwrap();
    assert!(html.contains("abandoned"));
    // An abandoned run cannot be resumed.
    let err = resume_vet(
        None,
        opts,
        &store,
        &held.run_id,
        Some(OperatorAction::Retry),
    )
    .await
    .unwrap_err();
    assert!(err.to_string().ends_with("is already abandoned"), "{err}");
}

#[tokio::test]
async fn a_vet_interrupted_mid_stage_continues_after_a_restart() {
    let work = data_dir();
    let store = MemoryRunStore::new();
    let (opts, held) = held_run(work.path(), &store).await;
    // What a berth that died during Disk leaves behind: the hold released,
    // Disk persisted as running.
    let mut run = store.load_run(&held.run_id).unwrap().unwrap();
    pipeline::operator(&mut run, OperatorAction::Override, 1).unwrap();
    pipeline::next(&mut run, 2);
    store.save_run(&run).unwrap();
    assert_eq!(run.stages[2].state, StageState::Running);

    // The restarted berth just drives it on.
    let summary = resume_vet(None, opts, &store, &held.run_id, None)
        .await
        .unwrap();
    assert_eq!(
        summary.verdict,
        Some(Verdict::PassedWithOverrides),
        "{}",
        explain(&summary)
    );
    assert_eq!(stage(&summary, "Disk").attempts, 2);
    let run = store.load_run(&held.run_id).unwrap().unwrap();
    assert!(run.stages[2].history[0].summary.starts_with("interrupted"));
}

#[tokio::test]
async fn a_bad_spec_file_is_refused_before_a_run_starts() {
    let work = data_dir();
    let store = MemoryRunStore::new();
    let mut opts = VetOptions::new(work.path().join("report"));
    opts.expected_spec = Some(write_spec(work.path(), "min_cpus = \"many\"\n"));
    let err = vet(None, opts, &store).await.unwrap_err();
    assert!(err.to_string().starts_with("expected spec "), "{err}");
    assert!(store.list_runs(10).unwrap().is_empty());
}
