//! Checkpoints of large RocksDB state: the synchronous pause, a full and an incremental
//! checkpoint, and the time from restart to the first processed record.
//!
//! ```text
//! cargo run --release -p floe-benches --bin state-checkpoint -- --keys 10000000 --value-bytes 100
//! ```
//!
//! Loads `keys` values of `value-bytes` bytes into one RocksDB backend through its write-back
//! cache, takes checkpoint 1, changes `changed` of the keys, takes checkpoint 2 (incremental),
//! then restores a fresh backend from checkpoint storage and reads a key.

use std::path::PathBuf;
use std::time::Instant;

use clap::Parser;
use floe_checkpoints::{
    assign_key_group, CheckpointStorage, KeyGroupRange, KeyedStateBackend, Manifest, StateBackendKind, StateSnapshot,
};

#[derive(Parser, Debug)]
#[command(about = "Checkpoint pause, incremental size and restore time of large RocksDB state")]
struct Args {
    /// Keys in state
    #[arg(long, default_value_t = 10_000_000)]
    keys: u64,
    /// Bytes per value
    #[arg(long, default_value_t = 100)]
    value_bytes: usize,
    /// Fraction of keys changed between the two checkpoints
    #[arg(long, default_value_t = 0.1)]
    changed: f64,
    /// Working directory (state and checkpoints) [default: a temporary directory]
    #[arg(long)]
    dir: Option<PathBuf>,
}

const MAX_PARALLELISM: u16 = 128;

fn kind(dir: PathBuf) -> StateBackendKind {
    StateBackendKind::RocksDb {
        dir,
        cache_entries: 100_000,
        block_cache_bytes: 64 << 20,
    }
}

/// A value of `len` bytes that compresses about as well as real payloads (not to nothing).
fn fill(value: &mut Vec<u8>, key: u64, round: u64, len: usize) {
    value.clear();
    let mut x = key.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ round.wrapping_add(1).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    while value.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        value.push(b'a' + (x % 16) as u8);
    }
}

/// Takes checkpoint `id`; returns (synchronous ms, total ms, manifest).
fn checkpoint(
    storage: &CheckpointStorage,
    b: &mut KeyedStateBackend<u64>,
    id: u64,
) -> anyhow::Result<(f64, f64, Manifest)> {
    let start = Instant::now();
    let mut s = StateSnapshot::default();
    b.snapshot(&mut s)?;
    let sync = start.elapsed().as_secs_f64() * 1e3;
    let manifest = Manifest {
        job: "state-checkpoint".into(),
        checkpoint_id: id,
        timestamp: 0,
        is_savepoint: false,
        parallelism: vec![1],
        files: vec![storage.write_state(id, 0, 0, &s)?],
        ..Manifest::default()
    };
    storage.complete(&manifest)?;
    Ok((sync, start.elapsed().as_secs_f64() * 1e3, manifest))
}

fn mb(bytes: u64) -> f64 {
    bytes as f64 / 1e6
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let tmp = tempfile_dir(args.dir.clone())?;
    let storage = CheckpointStorage::new(tmp.join("checkpoints"), 3)?;
    let range = KeyGroupRange::for_subtask(MAX_PARALLELISM, 1, 0);
    let mut b = KeyedStateBackend::<u64>::new(kind(tmp.join("state")), MAX_PARALLELISM, range)?;
    let state = b.value_state::<Vec<u8>, ()>("value", None)?;
    let mut value = Vec::with_capacity(args.value_bytes);

    let start = Instant::now();
    for key in 0..args.keys {
        fill(&mut value, key, 0, args.value_bytes);
        b.value_set(
            &state,
            assign_key_group(&key, MAX_PARALLELISM),
            &key,
            &(),
            value.clone(),
        )?;
        if key % 1024 == 0 {
            b.set_processing_time(0)?;
        }
    }
    let load = start.elapsed().as_secs_f64();
    println!(
        "loaded {} keys x {} B in {load:.1} s ({:.0} keys/s)",
        args.keys,
        args.value_bytes,
        args.keys as f64 / load
    );

    let (sync1, total1, m1) = checkpoint(&storage, &mut b, 1)?;
    println!(
        "checkpoint 1 (full):        sync {sync1:.0} ms, total {total1:.0} ms, state {:.0} MB, uploaded {:.0} MB",
        mb(m1.size()),
        mb(m1.uploaded())
    );

    let step = (1.0 / args.changed.clamp(1e-6, 1.0)).round() as u64;
    let start = Instant::now();
    let mut changed = 0u64;
    for key in (0..args.keys).step_by(step as usize) {
        fill(&mut value, key, 1, args.value_bytes);
        b.value_set(
            &state,
            assign_key_group(&key, MAX_PARALLELISM),
            &key,
            &(),
            value.clone(),
        )?;
        changed += 1;
        if changed.is_multiple_of(1024) {
            b.set_processing_time(0)?;
        }
    }
    let update = start.elapsed().as_secs_f64();
    let (sync2, total2, m2) = checkpoint(&storage, &mut b, 2)?;
    println!("changed {changed} keys in {update:.1} s");
    println!(
        "checkpoint 2 (incremental): sync {sync2:.0} ms, total {total2:.0} ms, state {:.0} MB, uploaded {:.0} MB ({:.1}% of checkpoint 1)",
        mb(m2.size()),
        mb(m2.uploaded()),
        100.0 * m2.uploaded() as f64 / m1.uploaded().max(1) as f64
    );
    drop(b);

    // Restart: find the checkpoint, restore, process one record.
    let start = Instant::now();
    let latest = storage
        .latest()?
        .ok_or_else(|| anyhow::anyhow!("no checkpoint to restore"))?;
    let part = StateSnapshot::for_subtask(&latest.node_snapshots(0), range, 0, 1);
    let mut r = KeyedStateBackend::<u64>::new(kind(tmp.join("restored")), MAX_PARALLELISM, range)?;
    r.restore(&part)?;
    let state = r.value_state::<Vec<u8>, ()>("value", None)?;
    let key = args.keys / 2;
    let got = r.value_get(&state, assign_key_group(&key, MAX_PARALLELISM), &key, &())?;
    let restore = start.elapsed().as_secs_f64() * 1e3;
    anyhow::ensure!(got.is_some(), "key {key} missing after restore");
    println!("restore to first record:    {restore:.0} ms");
    drop(r);
    if args.dir.is_none() {
        let _ = std::fs::remove_dir_all(&tmp);
    }
    Ok(())
}

fn tempfile_dir(dir: Option<PathBuf>) -> anyhow::Result<PathBuf> {
    let dir = dir.unwrap_or_else(|| std::env::temp_dir().join(format!("floe-state-checkpoint-{}", std::process::id())));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}
