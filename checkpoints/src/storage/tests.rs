use super::*;
use crate::key_group::KeyGroupRange;
use crate::snapshot::NativeSnapshot;

fn snapshot(v: u8) -> StateSnapshot {
    let mut s = StateSnapshot::default();
    s.add_keyed(1, "state/x", vec![v; 100]);
    s
}

/// A snapshot holding one database with SST file `name` (written to `dir` with `contents`).
fn with_sst(dir: &Path, name: &str, contents: &[u8]) -> StateSnapshot {
    let path = dir.join(name);
    fs::write(&path, contents).unwrap();
    let mut s = snapshot(1);
    s.native.push(NativeSnapshot {
        range: KeyGroupRange { start: 0, end: 128 },
        sst: vec![SstFile {
            local_name: "000012.sst".into(),
            shared_name: name.into(),
            bytes: contents.len() as u64,
            path,
            checksum: None,
        }],
        private: vec![("CURRENT".into(), b"MANIFEST-000001\n".to_vec())],
        local_dir: None,
    });
    s
}

fn complete(st: &CheckpointStorage, id: u64, files: Vec<StateFile>) {
    st.complete(&Manifest {
        job: "j".into(),
        checkpoint_id: id,
        parallelism: vec![1],
        operators: vec![OperatorIdentity {
            uid: "op".into(),
            name: "op".into(),
        }],
        files,
        ..Manifest::default()
    })
    .unwrap();
}

fn checkpoint(st: &CheckpointStorage, id: u64) {
    let files = vec![st.write_state(id, 0, 0, &snapshot(id as u8)).unwrap()];
    complete(st, id, files);
}

fn flip_a_bit(path: &Path) {
    let mut bytes = fs::read(path).unwrap();
    let at = bytes.len() / 2;
    bytes[at] ^= 0x04;
    fs::write(path, bytes).unwrap();
}

fn chk_dir(root: &Path, id: u64) -> PathBuf {
    root.join(chk(id))
}

fn unrestorable(r: Result<Option<RestoredCheckpoint>>) -> (String, Vec<String>) {
    match r {
        Err(StateError::Unrestorable { location, problems }) => (location, problems),
        Err(e) => panic!("another error: {e}"),
        Ok(r) => panic!("restorable: {:?}", r.map(|r| r.manifest.checkpoint_id)),
    }
}

#[test]
fn keeps_the_newest_and_falls_back_past_corruption() {
    let dir = tempfile::tempdir().unwrap();
    let st = CheckpointStorage::new(dir.path(), 2).unwrap();
    assert!(st.latest().unwrap().is_none());
    for id in 1..=4 {
        checkpoint(&st, id);
    }
    assert_eq!(st.ids().unwrap(), vec![3, 4], "newest two kept");
    // A partial checkpoint 5 (no manifest) and a truncated state file in 4.
    st.write_state(5, 0, 0, &snapshot(5)).unwrap();
    let f = chk_dir(dir.path(), 4).join("0-0.state");
    let len = fs::metadata(&f).unwrap().len();
    fs::OpenOptions::new()
        .write(true)
        .open(&f)
        .unwrap()
        .set_len(len / 2)
        .unwrap();
    let r = st.latest().unwrap().unwrap();
    assert_eq!(r.manifest.checkpoint_id, 3);
    assert_eq!(r.snapshots[&(0, 0)], snapshot(3));
    assert_eq!(r.incomplete, vec![5]);
    assert_eq!(r.skipped.len(), 1, "{:?}", r.skipped);
    assert_eq!(r.skipped[0].0, 4);
    assert!(r.skipped[0].1.contains("0-0.state is corrupt"), "{:?}", r.skipped);
}

#[test]
fn a_bit_flipped_in_a_state_file_of_the_same_size_is_caught() {
    let dir = tempfile::tempdir().unwrap();
    let st = CheckpointStorage::new(dir.path(), 3).unwrap();
    checkpoint(&st, 1);
    checkpoint(&st, 2);
    let f = chk_dir(dir.path(), 2).join("0-0.state");
    let len = fs::metadata(&f).unwrap().len();
    flip_a_bit(&f);
    assert_eq!(fs::metadata(&f).unwrap().len(), len);
    let r = st.latest().unwrap().unwrap();
    assert_eq!(r.manifest.checkpoint_id, 1);
    assert_eq!(r.skipped.len(), 1);
    assert!(r.skipped[0].1.contains("checksum"), "{:?}", r.skipped);
}

#[test]
fn a_bit_flipped_in_a_shared_file_of_the_same_size_is_caught() {
    let dir = tempfile::tempdir().unwrap();
    let local = tempfile::tempdir().unwrap();
    let st = CheckpointStorage::new(dir.path(), 3).unwrap();
    let files = vec![st
        .write_state(1, 0, 0, &with_sst(local.path(), "db-1.sst", &[7u8; 4096]))
        .unwrap()];
    assert!(files[0].shared[0].checksum.is_some());
    complete(&st, 1, files);
    let loaded = st.load(1).unwrap();
    let sst = &loaded.snapshots[&(0, 0)].native[0].sst[0];
    assert_eq!(sst.path, dir.path().join("shared/db-1.sst"));
    assert_eq!(sst.checksum, loaded.manifest.files[0].shared[0].checksum);

    flip_a_bit(&dir.path().join("shared/db-1.sst"));
    let (location, problems) = unrestorable(st.latest());
    assert_eq!(location, dir.path().to_string_lossy());
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert!(
        problems[0].starts_with("checkpoint 1: ") && problems[0].contains("shared/db-1.sst is corrupt: checksum"),
        "{problems:?}"
    );
    fs::remove_file(dir.path().join("shared/db-1.sst")).unwrap();
    let (_, problems) = unrestorable(st.latest());
    assert!(problems[0].contains("shared/db-1.sst is missing"), "{problems:?}");
}

#[test]
fn a_truncated_manifest_is_corruption_not_a_partial_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let st = CheckpointStorage::new(dir.path(), 3).unwrap();
    checkpoint(&st, 1);
    checkpoint(&st, 2);
    let m = chk_dir(dir.path(), 2).join(MANIFEST);
    let len = fs::metadata(&m).unwrap().len();
    fs::OpenOptions::new()
        .write(true)
        .open(&m)
        .unwrap()
        .set_len(len / 2)
        .unwrap();
    let r = st.latest().unwrap().unwrap();
    assert_eq!((r.manifest.checkpoint_id, r.incomplete.len()), (1, 0));
    assert_eq!(r.skipped[0].0, 2);
    assert!(r.skipped[0].1.contains("manifest is invalid"), "{:?}", r.skipped);
}

#[test]
fn every_checkpoint_corrupt_is_an_error_naming_the_directory_and_each_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let st = CheckpointStorage::new(dir.path(), 3).unwrap();
    for id in 1..=3 {
        checkpoint(&st, id);
    }
    st.write_state(4, 0, 0, &snapshot(4)).unwrap(); // in flight when the job died
    flip_a_bit(&chk_dir(dir.path(), 1).join("0-0.state"));
    fs::write(chk_dir(dir.path(), 2).join(MANIFEST), b"{\"job\":").unwrap();
    fs::remove_file(chk_dir(dir.path(), 3).join("0-0.state")).unwrap();
    let e = st.latest().unwrap_err().to_string();
    let (location, problems) = unrestorable(st.latest());
    assert_eq!(location, dir.path().to_string_lossy());
    assert!(e.contains(&*dir.path().to_string_lossy()), "{e}");
    assert_eq!(problems.len(), 4, "{problems:?}");
    assert!(problems[0].starts_with("checkpoint 3: ") && problems[0].contains("0-0.state"));
    assert!(problems[1].starts_with("checkpoint 2: ") && problems[1].contains("manifest is invalid"));
    assert!(problems[2].starts_with("checkpoint 1: ") && problems[2].contains("checksum"));
    assert_eq!(problems[3], "checkpoints [4] never completed");
    // A savepoint directory is restored from its newest checkpoint or not at all.
    assert!(matches!(st.newest_complete(), Err(StateError::Unrestorable { .. })));
}

#[test]
fn only_partial_checkpoints_or_none_start_afresh() {
    let dir = tempfile::tempdir().unwrap();
    let st = CheckpointStorage::new(dir.path(), 3).unwrap();
    assert!(st.latest().unwrap().is_none());
    // Killed before its first checkpoint completed: state files, no manifest.
    st.write_state(1, 0, 0, &snapshot(1)).unwrap();
    st.write_state(2, 0, 0, &snapshot(2)).unwrap();
    assert!(st.latest().unwrap().is_none());
    assert!(st.newest_complete().unwrap().is_none());
}

#[test]
fn checkpoints_that_completed_and_are_gone_are_missed() {
    let dir = tempfile::tempdir().unwrap();
    let st = CheckpointStorage::new(dir.path(), 3).unwrap();
    checkpoint(&st, 1);
    checkpoint(&st, 2);
    // The newest lost its manifest: it completed (the record says so), unlike a partial one.
    fs::remove_file(chk_dir(dir.path(), 2).join(MANIFEST)).unwrap();
    let r = st.latest().unwrap().unwrap();
    assert_eq!(r.manifest.checkpoint_id, 1);
    assert_eq!(
        r.skipped,
        vec![(2, "it completed, but its manifest is gone".to_string())]
    );
    assert!(r.incomplete.is_empty());
    // Every checkpoint directory gone: the record still tells.
    for id in 1..=2 {
        fs::remove_dir_all(chk_dir(dir.path(), id)).unwrap();
    }
    let (_, problems) = unrestorable(st.latest());
    assert_eq!(
        problems,
        vec!["checkpoint 2: it completed, but its directory is gone".to_string()]
    );
    fs::write(dir.path().join(COMPLETED), b"garbage").unwrap();
    let (_, problems) = unrestorable(st.latest());
    assert!(problems[0].contains("_completed.json records"), "{problems:?}");
}

#[test]
fn newest_complete_never_falls_back() {
    let dir = tempfile::tempdir().unwrap();
    let st = CheckpointStorage::new(dir.path(), 3).unwrap();
    checkpoint(&st, 1);
    checkpoint(&st, 2);
    assert_eq!(st.newest_complete().unwrap().unwrap().manifest.checkpoint_id, 2);
    flip_a_bit(&chk_dir(dir.path(), 2).join("0-0.state"));
    let e = st.newest_complete().unwrap_err().to_string();
    assert!(e.contains("checkpoint 2: ") && e.contains("checksum"), "{e}");
}

#[test]
fn version_1_checkpoints_still_restore_and_their_corruption_is_caught() {
    let dir = tempfile::tempdir().unwrap();
    let st = CheckpointStorage::new(dir.path(), 3).unwrap();
    let bytes = encode(&snapshot(9)).unwrap();
    let write_v1 = |id: u64, bytes: &[u8]| {
        let d = chk_dir(dir.path(), id);
        fs::create_dir_all(&d).unwrap();
        fs::write(d.join("0-0.state"), bytes).unwrap();
        let manifest = format!(
            r#"{{"job":"j","checkpoint_id":{id},"timestamp":0,"is_savepoint":false,"parallelism":[1],
                "files":[{{"node":0,"subtask":0,"file":"0-0.state","bytes":{},"checksum":{}}}]}}"#,
            bytes.len(),
            checksum::fnv(bytes)
        );
        fs::write(d.join(MANIFEST), manifest).unwrap();
    };
    write_v1(1, &bytes);
    write_v1(2, &bytes);
    flip_a_bit(&chk_dir(dir.path(), 2).join("0-0.state"));
    let r = st.latest().unwrap().unwrap();
    assert_eq!((r.manifest.version, r.manifest.checkpoint_id), (1, 1));
    assert_eq!(r.snapshots[&(0, 0)], snapshot(9));
    assert!(r.skipped[0].1.contains("checksum"), "{:?}", r.skipped);
}

#[test]
fn checksums_of_shared_files_are_read_once_and_forgotten_when_no_longer_referenced() {
    let dir = tempfile::tempdir().unwrap();
    let local = tempfile::tempdir().unwrap();
    let st = CheckpointStorage::new(dir.path(), 3).unwrap();
    let s = with_sst(local.path(), "db-1.sst", &[3u8; 1000]);
    let first = st.write_state(1, 0, 0, &s).unwrap();
    assert_eq!(first.uploaded, 1000 + first.bytes);
    // The local file is gone (compacted away, say); storage holds it and its checksum is
    // known, so checkpoint 2 references it without reading it.
    fs::remove_file(local.path().join("db-1.sst")).unwrap();
    let second = st.write_state(2, 0, 0, &s).unwrap();
    assert_eq!(second.shared, first.shared);
    assert_eq!(second.uploaded, second.bytes, "nothing uploaded again");
    // Not referenced by checkpoint 3: forgotten by checkpoint 4, which must read it again.
    st.write_state(3, 0, 1, &snapshot(3)).unwrap();
    st.write_state(4, 0, 1, &snapshot(4)).unwrap();
    let e = st.write_state(5, 0, 0, &s).unwrap_err().to_string();
    assert!(e.contains("db-1.sst") && e.contains("to upload it"), "{e}");
    // A checksum carried by the snapshot (verified when it was restored) is used as is.
    let mut restored = s.clone();
    restored.native[0].sst[0].checksum = first.shared[0].checksum;
    assert_eq!(st.write_state(6, 0, 0, &restored).unwrap().shared, first.shared);
}

#[test]
fn remote_stores_verify_what_they_fetch() {
    let local = tempfile::tempdir().unwrap();
    let st = CheckpointStorage::new("memory://", 3).unwrap();
    let files = vec![st
        .write_state(1, 0, 0, &with_sst(local.path(), "db-9.sst", &[5u8; 2048]))
        .unwrap()];
    complete(&st, 1, files);
    let r = st.load(1).unwrap();
    let fetched = r.snapshots[&(0, 0)].native[0].sst[0].path.clone();
    assert_eq!(fs::read(&fetched).unwrap(), vec![5u8; 2048]);
    // Same size, one byte changed, in the store and in the fetched copy.
    let mut bad = vec![5u8; 2048];
    bad[100] = 6;
    st.objects.put("shared/db-9.sst", bad.clone()).unwrap();
    fs::write(&fetched, &bad).unwrap();
    let (_, problems) = unrestorable(st.latest());
    assert!(
        problems[0].contains("shared/db-9.sst is corrupt: checksum"),
        "{problems:?}"
    );
    let _ = fs::remove_file(fetched);
}

/// What verifying checksums costs a restore: a checkpoint referencing 1 GB of shared files
/// (16 files of 64 MB, as RocksDB writes them), written (checksummed on upload) and loaded
/// (every byte read and summed). Run with
/// `cargo test --release -p floe-checkpoints --lib verification_cost -- --ignored --nocapture`.
#[test]
#[ignore]
fn verification_cost_of_a_gigabyte() {
    let dir = tempfile::tempdir().unwrap();
    let local = tempfile::tempdir().unwrap();
    let st = CheckpointStorage::new(dir.path(), 3).unwrap();
    let mut s = snapshot(1);
    let mut native = NativeSnapshot {
        range: KeyGroupRange { start: 0, end: 128 },
        ..NativeSnapshot::default()
    };
    let chunk: Vec<u8> = (0..64u32 << 20)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    for i in 0..16 {
        let path = local.path().join(format!("{i:06}.sst"));
        fs::write(&path, &chunk).unwrap();
        native.sst.push(SstFile {
            local_name: format!("{i:06}.sst"),
            shared_name: format!("db-{i:06}.sst"),
            bytes: chunk.len() as u64,
            path,
            checksum: None,
        });
    }
    s.native.push(native);
    let start = std::time::Instant::now();
    let files = vec![st.write_state(1, 0, 0, &s).unwrap()];
    let write = start.elapsed();
    complete(&st, 1, files);
    let start = std::time::Instant::now();
    let sizes: u64 = fs::read_dir(dir.path().join(SHARED))
        .unwrap()
        .map(|e| e.unwrap().metadata().unwrap().len())
        .sum();
    let by_size = start.elapsed();
    let start = std::time::Instant::now();
    let r = st.latest().unwrap().unwrap();
    let load = start.elapsed();
    assert_eq!(r.manifest.size() - r.manifest.files[0].bytes, sizes);
    println!(
        "{} MB: upload with checksums {write:?}, load with checksums {load:?} ({:.1} GB/s), sizes only {by_size:?}",
        sizes >> 20,
        sizes as f64 / load.as_secs_f64() / 1e9
    );
}
