use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use super::{bitcoind, state_dir, store};
use crate::{
    AppRecord, Desired, EventRecord, NewEvent, OpOutcome, REDACTED, Redactor, SECRET_LEN_CHARS,
    StoreError,
};

fn mode(path: &Path) -> u32 {
    std::fs::symlink_metadata(path)
        .unwrap()
        .permissions()
        .mode()
        & 0o7777
}

fn names(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| (*s).to_owned()).collect()
}

#[test]
fn ensure_generates_once_with_private_modes() {
    let (_tmp, dir) = state_dir();
    let secrets = dir.secrets();
    assert!(secrets.ensure("bitcoin", "rpc-password").unwrap());
    let path = dir.root().join("secrets/bitcoin/rpc-password");
    let value = std::fs::read_to_string(&path).unwrap();
    assert_eq!(value.len(), SECRET_LEN_CHARS);
    assert!(value.bytes().all(|b| b.is_ascii_alphanumeric()), "{value}");
    assert_eq!(mode(&dir.root().join("secrets")), 0o700);
    assert_eq!(mode(&dir.root().join("secrets/bitcoin")), 0o700);
    assert_eq!(mode(&path), 0o600);

    // Idempotent: the value stays.
    assert!(!secrets.ensure("bitcoin", "rpc-password").unwrap());
    assert_eq!(std::fs::read_to_string(&path).unwrap(), value);

    // Values are random, not constant.
    assert!(secrets.ensure("bitcoin", "lnd-wallet").unwrap());
    let other = std::fs::read_to_string(dir.root().join("secrets/bitcoin/lnd-wallet")).unwrap();
    assert_ne!(other, value);

    assert_eq!(
        secrets.list_stack_secrets("bitcoin").unwrap(),
        ["lnd-wallet", "rpc-password"]
    );
    assert!(secrets.list_stack_secrets("monero").unwrap().is_empty());
    // No temporary files left behind.
    let entries = std::fs::read_dir(dir.root().join("secrets/bitcoin"))
        .unwrap()
        .count();
    assert_eq!(entries, 2);
}

#[test]
fn materialize_copies_read_only_and_removes_stale_files() {
    let (_tmp, dir) = state_dir();
    let secrets = dir.secrets();
    let app_dir = secrets
        .materialize("bitcoin", "electrs", &names(&["rpc-password", "cookie"]))
        .unwrap();
    assert_eq!(app_dir, secrets.app_dir("bitcoin", "electrs"));
    assert_eq!(app_dir, dir.root().join("secret-mounts/bitcoin/electrs"));
    let mode_dir = mode(&app_dir);
    assert!(mode_dir == 0o700 || mode_dir == 0o500, "{mode_dir:o}");
    for name in ["rpc-password", "cookie"] {
        let copy = app_dir.join(name);
        assert_eq!(mode(&copy), 0o400, "{name}");
        assert_eq!(
            std::fs::read_to_string(&copy).unwrap(),
            std::fs::read_to_string(dir.root().join("secrets/bitcoin").join(name)).unwrap()
        );
    }

    // The manifest no longer names "cookie"; a stray file goes too.
    std::fs::write(app_dir.join("leftover"), "x").unwrap();
    let again = secrets
        .materialize("bitcoin", "electrs", &names(&["rpc-password"]))
        .unwrap();
    assert_eq!(again, app_dir);
    let mut present: Vec<String> = std::fs::read_dir(&app_dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    present.sort();
    assert_eq!(present, ["rpc-password"]);
    // The stack secret itself stays.
    assert_eq!(
        secrets.list_stack_secrets("bitcoin").unwrap(),
        ["cookie", "rpc-password"]
    );

    // A changed stack secret reaches the copy on the next materialize.
    std::fs::write(dir.root().join("secrets/bitcoin/rpc-password"), "rotated").unwrap();
    secrets
        .materialize("bitcoin", "electrs", &names(&["rpc-password"]))
        .unwrap();
    assert_eq!(
        std::fs::read_to_string(app_dir.join("rpc-password")).unwrap(),
        "rotated"
    );
    assert_eq!(mode(&app_dir.join("rpc-password")), 0o400);

    // No secrets at all: an empty directory to mount.
    let empty = secrets.materialize("bitcoin", "mempool", &[]).unwrap();
    assert_eq!(std::fs::read_dir(&empty).unwrap().count(), 0);
}

#[test]
fn remove_app_and_remove_stack_secret() {
    let (_tmp, dir) = state_dir();
    let secrets = dir.secrets();
    let app_dir = secrets
        .materialize("monero", "p2pool", &names(&["wallet-rpc"]))
        .unwrap();
    assert!(secrets.remove_app("monero", "p2pool").unwrap());
    assert!(!app_dir.exists());
    assert!(!secrets.remove_app("monero", "p2pool").unwrap());
    assert!(!secrets.remove_app("monero", "never-installed").unwrap());

    assert!(secrets.remove_stack_secret("monero", "wallet-rpc").unwrap());
    assert!(!secrets.remove_stack_secret("monero", "wallet-rpc").unwrap());
    assert!(secrets.list_stack_secrets("monero").unwrap().is_empty());
}

#[test]
fn all_values_and_redactor() {
    let (_tmp, dir) = state_dir();
    let secrets = dir.secrets();
    assert!(secrets.all_values().unwrap().is_empty());
    secrets
        .materialize("bitcoin", "lnd", &names(&["rpc-password", "macaroon-key"]))
        .unwrap();
    secrets.ensure("monero", "wallet-rpc").unwrap();
    // A copy whose stack secret was since deleted still counts.
    let orphan = std::fs::read_to_string(dir.root().join("secrets/bitcoin/macaroon-key")).unwrap();
    secrets
        .remove_stack_secret("bitcoin", "macaroon-key")
        .unwrap();

    let values = secrets.all_values().unwrap();
    assert_eq!(values.len(), 3, "deduplicated across copies");
    for name in ["bitcoin/rpc-password", "monero/wallet-rpc"] {
        let v = std::fs::read_to_string(dir.root().join("secrets").join(name)).unwrap();
        assert!(values.contains(&v), "{name}");
    }
    assert!(values.contains(&orphan));

    let redactor = Redactor::new(values.clone());
    assert_eq!(redactor.len(), 3);
    let text = format!(
        "bitcoind -rpcpassword={} -x {}{}",
        values[0], values[1], values[0]
    );
    let redacted = redactor.redact(&text);
    assert_eq!(
        redacted,
        format!("bitcoind -rpcpassword={REDACTED} -x {REDACTED}{REDACTED}")
    );
    for v in &values {
        assert!(!redacted.contains(v.as_str()));
    }
    assert_eq!(redactor.redact("nothing secret"), "nothing secret");
}

#[test]
fn redactor_handles_overlapping_and_odd_values() {
    let redactor = Redactor::new(vec![
        "abc".into(),
        "abcdef".into(),
        String::new(),
        "line\n".into(),
        "abc".into(),
    ]);
    assert_eq!(redactor.len(), 3);
    assert_eq!(
        redactor.redact("xabcdefx abc"),
        format!("x{REDACTED}x {REDACTED}")
    );
    assert_eq!(redactor.redact("a line"), format!("a {REDACTED}"));
    assert!(Redactor::new(vec![]).is_empty());
}

#[test]
fn invalid_names_are_refused() {
    let (_tmp, dir) = state_dir();
    let secrets = dir.secrets();
    for bad in [
        "",
        "..",
        ".hidden",
        "a/b",
        "../etc",
        "x y",
        &"n".repeat(200),
    ] {
        let err = secrets.ensure("bitcoin", bad).unwrap_err();
        assert!(
            matches!(err, StoreError::InvalidName { .. }),
            "{bad:?}: {err:?}"
        );
        assert!(matches!(
            secrets.ensure(bad, "rpc"),
            Err(StoreError::InvalidName { .. })
        ));
        assert!(matches!(
            secrets.materialize("bitcoin", bad, &[]),
            Err(StoreError::InvalidName { .. })
        ));
    }
    assert!(matches!(
        secrets.materialize("bitcoin", "lnd", &names(&["ok", "../../escape"])),
        Err(StoreError::InvalidName { .. })
    ));
    // Nothing was written for the refused request.
    assert!(!secrets.app_dir("bitcoin", "lnd").exists());
    assert!(secrets.list_stack_secrets("bitcoin").unwrap().is_empty());
}

#[test]
fn errors_name_the_file_not_the_value() {
    let (_tmp, dir) = state_dir();
    let secrets = dir.secrets();
    secrets.ensure("bitcoin", "rpc-password").unwrap();
    let value = secrets.all_values().unwrap().remove(0);
    // Make the stack secret unreadable as a file: replace it with a directory.
    let path = dir.root().join("secrets/bitcoin/rpc-password");
    std::fs::remove_file(&path).unwrap();
    std::fs::create_dir(&path).unwrap();
    let err = secrets
        .materialize("bitcoin", "lnd", &names(&["rpc-password"]))
        .unwrap_err();
    assert!(err.to_string().contains("rpc-password"), "{err}");
    assert!(!err.to_string().contains(&value));
    assert!(!format!("{err:?}").contains(&value));
}

#[test]
fn no_secret_value_leaks_through_debug_or_display() {
    let (_tmp, dir, store) = store();
    let secrets = dir.secrets();
    let app_dir = secrets
        .materialize("bitcoin", "bitcoind", &names(&["rpc-password", "cookie"]))
        .unwrap();
    let values = secrets.all_values().unwrap();
    assert_eq!(values.len(), 2);

    let lock = dir.lock().unwrap();
    let locked = dir.lock().unwrap_err();
    let redactor = Redactor::new(values.clone());
    let record = AppRecord {
        id: "bitcoind".into(),
        stack: "bitcoin".into(),
        stack_file: None,
        network: "berth-bitcoin".into(),
        app: bitcoind(),
        desired: Desired::Running,
        installed_at_ms: 1,
        updated_at_ms: 1,
    };
    store.put_app(&record).unwrap();
    let op = store.begin_op("install", "bitcoind", 1).unwrap();
    let step = store
        .record_step(op, "secrets", &app_dir.to_string_lossy(), 2)
        .unwrap();
    store.complete_step(step, true, 3).unwrap();
    store.finish_op(op, OpOutcome::Succeeded, None, 4).unwrap();
    store
        .add_event(&NewEvent {
            at_ms: 5,
            app: Some("bitcoind".into()),
            kind: "secrets".into(),
            message: "materialized 2 secrets".into(),
        })
        .unwrap();
    let events: Vec<EventRecord> = store.events(None, None, 10).unwrap();
    let bad_name = secrets.ensure("bitcoin", "../x").unwrap_err();
    let not_found = store.set_desired("lnd", Desired::Stopped, 1).unwrap_err();

    let outputs = [
        format!("{dir:?}"),
        format!("{secrets:?}"),
        format!("{redactor:?}"),
        format!("{store:?}"),
        format!("{lock:?}"),
        format!("{locked:?} {locked}"),
        format!("{bad_name:?} {bad_name}"),
        format!("{not_found:?} {not_found}"),
        format!("{:?}", store.get_app("bitcoind").unwrap()),
        format!("{:?}", store.op(op).unwrap()),
        format!("{events:?}"),
        format!("{:?}", store.list_apps().unwrap()),
    ];
    for output in &outputs {
        for value in &values {
            assert!(
                !output.contains(value.as_str()),
                "secret leaked in {output}"
            );
        }
    }
    assert!(format!("{redactor:?}").contains("2 redacted"));
    // The database never holds a secret value either.
    drop(store);
    let db = std::fs::read(dir.db_path()).unwrap();
    let wal = std::fs::read(dir.root().join("berth.db-wal")).unwrap_or_default();
    for value in &values {
        for bytes in [&db, &wal] {
            assert!(
                !bytes.windows(value.len()).any(|w| w == value.as_bytes()),
                "secret value in the database"
            );
        }
    }
}

#[test]
fn concurrent_ensure_generates_exactly_one_value() {
    let (_tmp, dir) = state_dir();
    let handles: Vec<_> = (0..8)
        .map(|_| {
            let secrets = crate::StateDir::open(dir.root()).unwrap().secrets();
            std::thread::spawn(move || secrets.ensure("monero", "p2pool-rpc").unwrap())
        })
        .collect();
    let generated = handles
        .into_iter()
        .map(|h| h.join().unwrap())
        .filter(|created| *created)
        .count();
    assert_eq!(generated, 1);
    assert_eq!(dir.secrets().all_values().unwrap().len(), 1);
    assert_eq!(
        std::fs::read_dir(dir.root().join("secrets/monero"))
            .unwrap()
            .count(),
        1,
        "no temporary files left"
    );
}
