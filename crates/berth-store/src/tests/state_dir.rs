use std::os::unix::fs::PermissionsExt;
use std::time::{Duration, Instant};

use super::state_dir;
use crate::{StateDir, StoreError};

#[test]
fn open_creates_the_directory_with_mode_0700() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("var/lib/berth");
    let dir = StateDir::open(&root).unwrap();
    assert_eq!(dir.root(), root);
    let mode = std::fs::metadata(&root).unwrap().permissions().mode() & 0o7777;
    assert_eq!(mode, 0o700);
    // Opening again is fine.
    StateDir::open(&root).unwrap();
}

#[test]
fn open_refuses_a_file() {
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("state");
    std::fs::write(&file, "x").unwrap();
    let err = StateDir::open(&file).unwrap_err();
    assert!(matches!(err, StoreError::Io { .. }), "{err:?}");
    assert!(err.to_string().contains(&*file.to_string_lossy()), "{err}");
}

#[test]
fn lock_is_exclusive_across_handles_and_names_the_holder() {
    let (_tmp, a) = state_dir();
    let b = StateDir::open(a.root()).unwrap();
    let held = a.lock().unwrap();
    let pid_in_file = std::fs::read_to_string(held.path()).unwrap();
    assert_eq!(pid_in_file.trim(), std::process::id().to_string());

    let err = b.lock().unwrap_err();
    match &err {
        StoreError::Locked { path, pid } => {
            assert_eq!(path, &a.lock_path());
            assert_eq!(*pid, Some(std::process::id()));
        }
        other => panic!("expected Locked, got {other:?}"),
    }
    let message = err.to_string();
    assert!(
        message.contains(&format!(
            "another berth process (pid {})",
            std::process::id()
        )),
        "{message}"
    );
    assert!(
        message.contains("is changing this state directory"),
        "{message}"
    );
    assert!(message.contains(&*a.root().to_string_lossy()), "{message}");
    // The same handle cannot take it twice either.
    assert!(matches!(a.lock(), Err(StoreError::Locked { .. })));
}

#[test]
fn lock_is_released_on_drop() {
    let (_tmp, a) = state_dir();
    let b = StateDir::open(a.root()).unwrap();
    let held = a.lock().unwrap();
    drop(held);
    let again = b.lock().unwrap();
    assert_eq!(
        std::fs::read_to_string(again.path()).unwrap().trim(),
        std::process::id().to_string()
    );
    drop(again);
    // Our pid does not linger once released.
    assert_eq!(std::fs::read_to_string(a.lock_path()).unwrap(), "");
}

#[test]
fn lock_error_without_a_readable_pid_still_explains() {
    let (_tmp, a) = state_dir();
    let held = a.lock().unwrap();
    // A holder that has locked but not yet written its pid.
    std::fs::write(held.path(), "").unwrap();
    let err = a.lock().unwrap_err();
    assert!(
        matches!(err, StoreError::Locked { pid: None, .. }),
        "{err:?}"
    );
    assert!(
        err.to_string()
            .starts_with("another berth process is changing this state directory"),
        "{err}"
    );
}

#[test]
fn lock_wait_times_out_then_succeeds_once_released() {
    let (_tmp, a) = state_dir();
    let b = StateDir::open(a.root()).unwrap();
    let held = a.lock().unwrap();

    let started = Instant::now();
    let err = b.lock_wait(Duration::from_millis(120)).unwrap_err();
    assert!(matches!(err, StoreError::Locked { .. }), "{err:?}");
    assert!(started.elapsed() >= Duration::from_millis(120));
    assert!(started.elapsed() < Duration::from_secs(5));

    // Released by another thread while we wait.
    let releaser = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(100));
        drop(held);
    });
    let got = b.lock_wait(Duration::from_secs(10)).unwrap();
    releaser.join().unwrap();
    drop(got);
}

#[test]
fn lock_wait_with_zero_timeout_tries_once() {
    let (_tmp, a) = state_dir();
    let lock = a.lock_wait(Duration::ZERO).unwrap();
    assert!(matches!(
        a.lock_wait(Duration::ZERO),
        Err(StoreError::Locked { .. })
    ));
    drop(lock);
}
