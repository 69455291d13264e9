//! The RocksDB store behind keyed state: one column family per state, keys laid out as
//! `key group (2 bytes, big endian) | bincode(key, namespace)` so that a key group is one
//! prefix range, values as `bincode(value, expiry)`. Writes skip the WAL: checkpoints are the
//! durability. The heap tables in front of it act as a write-back cache of hot keys.

use std::collections::HashMap;
use std::fs;
use std::marker::PhantomData;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use rocksdb::checkpoint::Checkpoint;
use rocksdb::{
    BlockBasedOptions, Cache, ColumnFamilyDescriptor, DBWithThreadMode, Direction, FlushOptions, IteratorMode,
    MultiThreaded, Options, WriteBatch, WriteOptions,
};
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::error::{Result, StateError};
use crate::key_group::{KeyGroup, KeyGroupRange};
use crate::snapshot::{decode, encode, NativeSnapshot, SstFile};

/// A RocksDB database shared by the states of one backend.
pub(crate) type Db = DBWithThreadMode<MultiThreaded>;

fn err(e: rocksdb::Error) -> StateError {
    StateError::Storage(format!("rocksdb: {e}"))
}

/// Options of the database and of every column family: LZ4, the shared block cache, and
/// memtables small enough that the flush at a checkpoint stays short.
fn options(cache: &Cache) -> Options {
    let mut table = BlockBasedOptions::default();
    table.set_block_cache(cache);
    table.set_bloom_filter(10.0, false);
    let mut opts = Options::default();
    opts.create_if_missing(true);
    opts.create_missing_column_families(true);
    opts.set_compression_type(rocksdb::DBCompressionType::Lz4);
    opts.set_block_based_table_factory(&table);
    opts.set_write_buffer_size(16 << 20);
    opts.set_max_background_jobs(2);
    opts.set_merge_operator_associative("floe-list-append", list_append);
    opts
}

/// The merge operator of list states: a stored list is `bincode((Vec<V>, expiry))`, that is
/// `count (u64 LE) | elements | expiry (i64 LE)`, and appending a list to it adds the counts,
/// concatenates the elements and keeps the newer expiry, whatever `V` is, without decoding
/// an element. So an append is a blind write (Flink appends to RocksDB lists the same way).
fn list_append(_key: &[u8], existing: Option<&[u8]>, operands: &rocksdb::MergeOperands) -> Option<Vec<u8>> {
    let parts: Vec<&[u8]> = existing.into_iter().chain(operands.iter()).collect();
    let mut count: u64 = 0;
    let mut out = vec![0u8; 8];
    let mut expiry: &[u8] = &[];
    for part in parts {
        if part.len() < 16 {
            return None; // not a list: RocksDB reports the corruption
        }
        count += u64::from_le_bytes(part[..8].try_into().ok()?);
        out.extend_from_slice(&part[8..part.len() - 8]);
        expiry = &part[part.len() - 8..];
    }
    out[..8].copy_from_slice(&count.to_le_bytes());
    out.extend_from_slice(expiry);
    Some(out)
}

/// Writes `batch` without the WAL: checkpoints are the durability.
fn write_unlogged(db: &Db, batch: WriteBatch) -> Result<()> {
    if batch.is_empty() {
        return Ok(());
    }
    let mut wo = WriteOptions::default();
    wo.disable_wal(true);
    db.write_opt(batch, &wo).map_err(err)
}

fn io(context: String) -> impl FnOnce(std::io::Error) -> StateError {
    move |e| StateError::Storage(format!("{context}: {e}"))
}

fn fresh_dir(dir: &Path) -> Result<()> {
    if dir.exists() {
        fs::remove_dir_all(dir).map_err(io(format!("clearing {}", dir.display())))?;
    }
    fs::create_dir_all(dir).map_err(io(format!("creating {}", dir.display())))
}

/// Hard-links `from` to `to` (same file system), copying where linking is not possible.
fn link_or_copy(from: &Path, to: &Path) -> Result<()> {
    if fs::hard_link(from, to).is_ok() {
        return Ok(());
    }
    fs::copy(from, to)
        .map(|_| ())
        .map_err(io(format!("copying {} to {}", from.display(), to.display())))
}

/// Lays the files of `native` out in `dir` (emptied first), ready to open.
fn materialize(native: &NativeSnapshot, dir: &Path) -> Result<()> {
    fresh_dir(dir)?;
    for sst in &native.sst {
        link_or_copy(&sst.path, &dir.join(&sst.local_name))?;
    }
    for (name, bytes) in &native.private {
        fs::write(dir.join(name), bytes).map_err(io(format!("writing {}", dir.join(name).display())))?;
    }
    Ok(())
}

fn open_existing(opts: &Options, dir: &Path) -> Result<Db> {
    let names = Db::list_cf(opts, dir).map_err(err)?;
    let cfs = names.into_iter().map(|n| ColumnFamilyDescriptor::new(n, opts.clone()));
    Db::open_cf_descriptors(opts, dir, cfs).map_err(err)
}

/// The RocksDB database of one backend, in a directory of its own (removed with it):
/// `db/` is the live database (a working copy: durability comes from checkpoints),
/// `chk-N/` the local checkpoint being uploaded.
pub(crate) struct DbDir {
    db: Option<Arc<Db>>,
    dir: PathBuf,
    opts: Options,
    /// Unique among the databases that write to one checkpoint storage: prefixes the shared
    /// names of the SST files this database writes.
    id: String,
    /// SST files that came from a restored checkpoint: local name → shared name and the
    /// checksum verified on restore.
    restored: HashMap<String, (String, Option<u64>)>,
    next_local: u64,
}

impl DbDir {
    /// A fresh, empty database in `dir` with a block cache of `block_cache_bytes`.
    pub(crate) fn open(dir: &Path, block_cache_bytes: usize) -> Result<Self> {
        fresh_dir(dir)?;
        let opts = options(&Cache::new_lru_cache(block_cache_bytes));
        let db = Db::open_cf_descriptors(&opts, dir.join("db"), Vec::<ColumnFamilyDescriptor>::new()).map_err(err)?;
        let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos());
        let id = format!("{:x}-{:x}", nanos, std::process::id());
        Ok(DbDir {
            db: Some(Arc::new(db)),
            dir: dir.to_path_buf(),
            opts,
            id,
            restored: HashMap::new(),
            next_local: 0,
        })
    }

    /// Replaces the (still unused) database with the one in `native`, linking its files in.
    pub(crate) fn install(&mut self, native: &NativeSnapshot) -> Result<()> {
        match self.db.take().map(Arc::try_unwrap) {
            Some(Err(db)) => {
                self.db = Some(db);
                return Err(StateError::Storage(
                    "the database is in use; it cannot be replaced".into(),
                ));
            }
            Some(Ok(db)) => drop(db), // closes it, releasing its lock
            None => {}
        }
        let path = self.dir.join("db");
        materialize(native, &path)?;
        self.db = Some(Arc::new(open_existing(&self.opts, &path)?));
        self.restored = native
            .sst
            .iter()
            .map(|f| (f.local_name.clone(), (f.shared_name.clone(), f.checksum)))
            .collect();
        Ok(())
    }

    /// The synchronous part of a snapshot: flushes the memtables of `cfs` and creates a
    /// local checkpoint (hard links to the immutable SST files); uploading it is left to the
    /// checkpoint storage.
    pub(crate) fn checkpoint(&mut self, cfs: &[&str], range: KeyGroupRange) -> Result<NativeSnapshot> {
        let db = self
            .db
            .as_ref()
            .ok_or_else(|| StateError::Storage("no database".into()))?;
        let handles: Vec<_> = cfs.iter().filter_map(|n| db.cf_handle(n)).collect();
        let mut flush = FlushOptions::default();
        flush.set_wait(true);
        db.flush_cfs_opt(&handles.iter().collect::<Vec<_>>(), &flush)
            .map_err(err)?;
        drop(handles);
        // Local checkpoints of earlier snapshots were uploaded (or abandoned) by now.
        for e in fs::read_dir(&self.dir)
            .map_err(io(format!("listing {}", self.dir.display())))?
            .flatten()
        {
            if e.file_name().to_string_lossy().starts_with("chk-") {
                let _ = fs::remove_dir_all(e.path());
            }
        }
        self.next_local += 1;
        let local = self.dir.join(format!("chk-{}", self.next_local));
        Checkpoint::new(db)
            .and_then(|c| c.create_checkpoint(&local))
            .map_err(err)?;
        let mut native = NativeSnapshot {
            range,
            local_dir: Some(local.clone()),
            ..NativeSnapshot::default()
        };
        for e in fs::read_dir(&local)
            .map_err(io(format!("listing {}", local.display())))?
            .flatten()
        {
            let name = e.file_name().to_string_lossy().into_owned();
            let path = e.path();
            if name.ends_with(".sst") {
                let bytes = e.metadata().map_err(io(format!("reading {}", path.display())))?.len();
                let (shared_name, checksum) = self
                    .restored
                    .get(&name)
                    .cloned()
                    .unwrap_or_else(|| (format!("{}-{name}", self.id), None));
                native.sst.push(SstFile {
                    local_name: name,
                    shared_name,
                    bytes,
                    path,
                    checksum,
                });
            } else {
                let bytes = fs::read(&path).map_err(io(format!("reading {}", path.display())))?;
                native.private.push((name, bytes));
            }
        }
        native.sst.sort_by(|a, b| a.local_name.cmp(&b.local_name));
        native.private.sort();
        Ok(native)
    }

    /// The store of state `name` (its column family, created if missing).
    pub(crate) fn store<K, N, S>(&self, name: &str) -> Result<RocksStore<K, N, S>>
    where
        K: Serialize + DeserializeOwned,
        N: Serialize + DeserializeOwned,
        S: Serialize + DeserializeOwned,
    {
        let db = self
            .db
            .as_ref()
            .ok_or_else(|| StateError::Storage("no database".into()))?;
        RocksStore::new(db.clone(), &self.opts, name)
    }

    /// Where restores lay out the databases they read.
    pub(crate) fn scratch(&self) -> PathBuf {
        self.dir.join("restore")
    }
}

impl Drop for DbDir {
    /// Removes the directory, except the newest local checkpoint: checkpoint storage may not
    /// have uploaded it yet (it removes it, and the emptied directory, when it has).
    fn drop(&mut self) {
        drop(self.db.take());
        let newest = format!("chk-{}", self.next_local);
        if let Ok(entries) = fs::read_dir(&self.dir) {
            for e in entries.flatten() {
                if e.file_name().to_string_lossy() != newest {
                    let path = e.path();
                    let _ = if path.is_dir() {
                        fs::remove_dir_all(path)
                    } else {
                        fs::remove_file(path)
                    };
                }
            }
        }
        let _ = fs::remove_dir(&self.dir);
    }
}

/// Reads the entries of key groups in `range` out of the database in `native` (laid out in
/// `scratch`, removed afterwards), as `(state, key group, blob)` with the blobs in the format
/// of heap snapshots: `bincode(Vec<(key, namespace, value, expiry)>)`, which is the count
/// followed by each stored key (after its key group) and value.
pub(crate) fn read_native(
    native: &NativeSnapshot,
    scratch: &Path,
    range: KeyGroupRange,
) -> Result<Vec<(String, KeyGroup, Vec<u8>)>> {
    materialize(native, scratch)?;
    let out = read_groups(scratch, range);
    let _ = fs::remove_dir_all(scratch);
    out
}

fn read_groups(dir: &Path, range: KeyGroupRange) -> Result<Vec<(String, KeyGroup, Vec<u8>)>> {
    let opts = options(&Cache::new_lru_cache(8 << 20));
    let db = open_existing(&opts, dir)?;
    let mut out = Vec::new();
    for name in Db::list_cf(&opts, dir).map_err(err)? {
        let Some(cf) = db.cf_handle(&name) else { continue };
        let mut current: Option<(KeyGroup, u64, Vec<u8>)> = None;
        let finish = |c: Option<(KeyGroup, u64, Vec<u8>)>, out: &mut Vec<_>| {
            if let Some((kg, n, mut blob)) = c {
                blob[..8].copy_from_slice(&n.to_le_bytes());
                out.push((name.clone(), kg, blob));
            }
        };
        let start = range.start.to_be_bytes();
        for item in db.iterator_cf(&cf, IteratorMode::From(&start, Direction::Forward)) {
            let (k, v) = item.map_err(err)?;
            let Some(kg) = k.get(..2).map(|b| KeyGroup::from_be_bytes([b[0], b[1]])) else {
                continue;
            };
            if kg >= range.end {
                break;
            }
            if current.as_ref().is_none_or(|c| c.0 != kg) {
                finish(current.take(), &mut out);
                current = Some((kg, 0, vec![0; 8]));
            }
            if let Some((_, n, blob)) = current.as_mut() {
                *n += 1;
                blob.extend_from_slice(&k[2..]);
                blob.extend_from_slice(&v);
            }
        }
        finish(current.take(), &mut out);
    }
    Ok(out)
}

/// The column family of one state.
pub(crate) struct RocksStore<K, N, S> {
    db: Arc<Db>,
    cf: String,
    _t: PhantomData<fn(K, N, S)>,
}

fn key_bytes<K: Serialize, N: Serialize>(kg: KeyGroup, key: &K, ns: &N) -> Result<Vec<u8>> {
    let mut bytes = kg.to_be_bytes().to_vec();
    bytes.extend(encode(&(key, ns))?);
    Ok(bytes)
}

impl<K: Serialize + DeserializeOwned, N: Serialize + DeserializeOwned, S: Serialize + DeserializeOwned>
    RocksStore<K, N, S>
{
    /// The column family `name` of `db`, created if missing.
    fn new(db: Arc<Db>, opts: &Options, name: &str) -> Result<Self> {
        if db.cf_handle(name).is_none() {
            db.create_cf(name, opts).map_err(err)?;
        }
        Ok(RocksStore {
            db,
            cf: name.to_string(),
            _t: PhantomData,
        })
    }

    fn cf(&self) -> Result<Arc<rocksdb::BoundColumnFamily<'_>>> {
        self.db
            .cf_handle(&self.cf)
            .ok_or_else(|| StateError::Storage(format!("column family {} is missing", self.cf)))
    }

    /// The stored value of `(key, ns)` and its expiry.
    pub(crate) fn load(&self, kg: KeyGroup, key: &K, ns: &N) -> Result<Option<(S, i64)>> {
        match self.db.get_cf(&self.cf()?, key_bytes(kg, key, ns)?).map_err(err)? {
            Some(bytes) => decode(&bytes).map(Some),
            None => Ok(None),
        }
    }

    /// Writes puts (`Some`) and deletes (`None`) in one batch, without the WAL.
    pub(crate) fn write<'a>(
        &self,
        changes: impl Iterator<Item = (KeyGroup, &'a K, &'a N, Option<(&'a S, i64)>)>,
    ) -> Result<()>
    where
        K: 'a,
        N: 'a,
        S: 'a,
    {
        let cf = self.cf()?;
        let mut batch = WriteBatch::default();
        for (kg, key, ns, value) in changes {
            let k = key_bytes(kg, key, ns)?;
            match value {
                Some(v) => batch.put_cf(&cf, k, encode(&v)?),
                None => batch.delete_cf(&cf, k),
            }
        }
        write_unlogged(&self.db, batch)
    }

    /// Appends each given list to the stored one (RocksDB merges, without reading), in one
    /// batch without the WAL.
    pub(crate) fn merge<'a>(&self, appends: impl Iterator<Item = (KeyGroup, &'a K, &'a N, &'a S, i64)>) -> Result<()>
    where
        K: 'a,
        N: 'a,
        S: 'a,
    {
        let cf = self.cf()?;
        let mut batch = WriteBatch::default();
        for (kg, key, ns, value, expires) in appends {
            batch.merge_cf(&cf, key_bytes(kg, key, ns)?, encode(&(value, expires))?);
        }
        write_unlogged(&self.db, batch)
    }

    /// Every stored entry of key group `kg`.
    pub(crate) fn scan_group(&self, kg: KeyGroup) -> Result<Vec<(K, N, S, i64)>> {
        let mut out = Vec::new();
        self.scan(&kg.to_be_bytes(), |k, v| {
            let (key, ns): (K, N) = decode(&k[2..])?;
            let (value, expires): (S, i64) = decode(v)?;
            out.push((key, ns, value, expires));
            Ok(())
        })?;
        Ok(out)
    }

    /// Visits every stored entry whose key starts with `prefix`, in key order.
    fn scan(&self, prefix: &[u8], mut visit: impl FnMut(&[u8], &[u8]) -> Result<()>) -> Result<()> {
        let cf = self.cf()?;
        for item in self.db.iterator_cf(&cf, IteratorMode::From(prefix, Direction::Forward)) {
            let (k, v) = item.map_err(err)?;
            if !k.starts_with(prefix) {
                break;
            }
            visit(&k, &v)?;
        }
        Ok(())
    }
}

impl<K, N, UK, S> RocksStore<K, (N, UK), S>
where
    K: Serialize + DeserializeOwned,
    N: Serialize + DeserializeOwned,
    UK: Serialize + DeserializeOwned,
    S: Serialize + DeserializeOwned,
{
    /// The stored entries of the map of `(key, ns)`: one prefix iteration over the keys
    /// `key group | key | namespace | user key`.
    pub(crate) fn scan_prefix(&self, kg: KeyGroup, key: &K, ns: &N) -> Result<Vec<(UK, S, i64)>> {
        let prefix = key_bytes(kg, key, ns)?;
        let mut out = Vec::new();
        self.scan(&prefix, |k, v| {
            let uk: UK = decode(&k[prefix.len()..])?;
            let (value, expires): (S, i64) = decode(v)?;
            out.push((uk, value, expires));
            Ok(())
        })?;
        Ok(out)
    }
}

/// The column family of one timer queue: keys `key group (2 bytes) | timestamp (8 bytes, big
/// endian, sign bit flipped so that byte order is time order) | bincode(key, namespace)`, empty
/// values. A key group's timers are one prefix range in time order, so the earliest timers of
/// a key group are a seek away and a key-group range moves on rescale like any state.
pub struct TimerColumn {
    db: Arc<Db>,
    cf: String,
}

impl TimerColumn {
    fn cf(&self) -> Result<Arc<rocksdb::BoundColumnFamily<'_>>> {
        self.db
            .cf_handle(&self.cf)
            .ok_or_else(|| StateError::Storage(format!("column family {} is missing", self.cf)))
    }

    /// Writes timers (`true`) and deletions (`false`), given by full key, in one batch
    /// without the WAL.
    pub fn write<'a>(&self, changes: impl Iterator<Item = (&'a [u8], bool)>) -> Result<()> {
        let cf = self.cf()?;
        let mut batch = WriteBatch::default();
        for (key, present) in changes {
            if present {
                batch.put_cf(&cf, key, []);
            } else {
                batch.delete_cf(&cf, key);
            }
        }
        write_unlogged(&self.db, batch)
    }

    /// Visits the timers of key group `kg` from the one at or after `from` (the 8 timestamp
    /// bytes of a key) in time order, with each key after its key group bytes, while `visit`
    /// returns true.
    pub fn scan(&self, kg: KeyGroup, from: [u8; 8], mut visit: impl FnMut(&[u8]) -> bool) -> Result<()> {
        let cf = self.cf()?;
        let prefix = kg.to_be_bytes();
        let mut start = prefix.to_vec();
        start.extend_from_slice(&from);
        for item in self.db.iterator_cf(&cf, IteratorMode::From(&start, Direction::Forward)) {
            let (k, _) = item.map_err(err)?;
            if !k.starts_with(&prefix) || !visit(&k[2..]) {
                break;
            }
        }
        Ok(())
    }
}

impl DbDir {
    /// The timer queue `name` (its column family, created if missing).
    pub(crate) fn timers(&self, name: &str) -> Result<TimerColumn> {
        let db = self
            .db
            .as_ref()
            .ok_or_else(|| StateError::Storage("no database".into()))?;
        if db.cf_handle(name).is_none() {
            db.create_cf(name, &self.opts).map_err(err)?;
        }
        Ok(TimerColumn {
            db: db.clone(),
            cf: name.to_string(),
        })
    }
}
