//! The object store under checkpoint storage, through the `object_store` crate: a local
//! directory or `file://` URL now, and any URL `object_store` understands (`s3://`, `gs://`,
//! `az://`) once its cloud features are built in. Calls are blocking: checkpoint storage runs
//! on the coordinator's thread, off the processing path.

use std::path::PathBuf;
use std::sync::Arc;

use futures::executor::block_on;
use futures::TryStreamExt;
use object_store::path::Path;
use object_store::{ObjectStore, PutPayload};

use crate::error::{Result, StateError};

/// A directory in an object store.
#[derive(Clone, Debug)]
pub(crate) struct Objects {
    store: Arc<dyn ObjectStore>,
    root: Path,
    /// The directory on this machine, when the store is a local file system.
    local: Option<PathBuf>,
    location: String,
}

fn storage_error(context: String) -> impl FnOnce(object_store::Error) -> StateError {
    move |e| StateError::Storage(format!("{context}: {e}"))
}

impl Objects {
    /// Opens `location`: a URL (`file:///…`, `memory://`, and the schemes of the cloud
    /// features) or a path on this machine (created if missing).
    pub(crate) fn open(location: &std::path::Path) -> Result<Self> {
        let text = location.to_string_lossy().into_owned();
        let is_url = text
            .split_once("://")
            .is_some_and(|(scheme, _)| !scheme.is_empty() && scheme.chars().all(|c| c.is_ascii_alphanumeric()));
        let url = if is_url {
            url::Url::parse(&text)
                .map_err(|e| StateError::Storage(format!("checkpoint location {text:?} is not a valid URL: {e}")))?
        } else {
            std::fs::create_dir_all(location)
                .map_err(|e| StateError::Storage(format!("creating checkpoint directory {text}: {e}")))?;
            let abs = std::path::absolute(location)
                .map_err(|e| StateError::Storage(format!("checkpoint directory {text}: {e}")))?;
            url::Url::from_directory_path(&abs)
                .map_err(|()| StateError::Storage(format!("checkpoint directory {text} is not a usable path")))?
        };
        let (store, root) = object_store::parse_url(&url).map_err(|e| {
            StateError::Storage(format!(
                "checkpoint location {text}: {e} (this build stores checkpoints in local directories, file:// \
                 and memory:// URLs; s3://, gs:// and az:// need object_store's cloud features)"
            ))
        })?;
        let local = (url.scheme() == "file").then(|| url.to_file_path().ok()).flatten();
        if let Some(dir) = &local {
            std::fs::create_dir_all(dir)
                .map_err(|e| StateError::Storage(format!("creating checkpoint directory {}: {e}", dir.display())))?;
        }
        Ok(Objects {
            store: Arc::from(store),
            root,
            local,
            location: text,
        })
    }

    /// The location as given.
    pub(crate) fn location(&self) -> &str {
        &self.location
    }

    fn path(&self, rel: &str) -> Path {
        rel.split('/')
            .filter(|p| !p.is_empty())
            .fold(self.root.clone(), |p, part| p.child(part))
    }

    /// Where `rel` is on this machine, if the store is local.
    pub(crate) fn local_path(&self, rel: &str) -> Option<PathBuf> {
        self.local.as_ref().map(|d| d.join(rel))
    }

    /// Writes `rel` whole (readers see the old object or the new one, never a part).
    pub(crate) fn put(&self, rel: &str, bytes: Vec<u8>) -> Result<()> {
        let payload = PutPayload::from(bytes);
        block_on(self.store.put(&self.path(rel), payload))
            .map(|_| ())
            .map_err(storage_error(format!("writing {rel} to {}", self.location)))
    }

    /// Stores the immutable file `src` as `rel`. On a local store the file is hard-linked
    /// (copied if it is on another file system) under a temporary name and renamed into
    /// place, so storing a large SST costs no copy; elsewhere it is uploaded.
    pub(crate) fn put_file(&self, rel: &str, src: &std::path::Path) -> Result<()> {
        let Some(target) = self.local_path(rel) else {
            let bytes = std::fs::read(src)
                .map_err(|e| StateError::Storage(format!("reading {} to upload it: {e}", src.display())))?;
            return self.put(rel, bytes);
        };
        let fail = |what: &str, e: std::io::Error| StateError::Storage(format!("{what} {}: {e}", target.display()));
        if let Some(dir) = target.parent() {
            std::fs::create_dir_all(dir).map_err(|e| fail("creating the directory of", e))?;
        }
        let tmp = target.with_extension(format!("tmp-{}", std::process::id()));
        let _ = std::fs::remove_file(&tmp);
        if std::fs::hard_link(src, &tmp).is_err() {
            std::fs::copy(src, &tmp).map_err(|e| fail("copying into", e))?;
            std::fs::File::open(&tmp)
                .and_then(|f| f.sync_all())
                .map_err(|e| fail("syncing", e))?;
        }
        std::fs::rename(&tmp, &target).map_err(|e| fail("renaming into", e))
    }

    /// Copies `rel` from `from` into this store under the same name (a file copy when both
    /// are local).
    pub(crate) fn copy_from(&self, from: &Objects, rel: &str) -> Result<()> {
        match (from.local_path(rel), self.local_path(rel)) {
            (Some(src), Some(dst)) => {
                let fail = |e: std::io::Error| {
                    StateError::Storage(format!("copying {} to {}: {e}", src.display(), dst.display()))
                };
                if let Some(dir) = dst.parent() {
                    std::fs::create_dir_all(dir).map_err(fail)?;
                }
                let tmp = dst.with_extension(format!("tmp-{}", std::process::id()));
                std::fs::copy(&src, &tmp).map_err(fail)?;
                std::fs::rename(&tmp, &dst).map_err(fail)
            }
            _ => self.put(rel, from.get(rel)?),
        }
    }

    /// The contents of `rel`.
    pub(crate) fn get(&self, rel: &str) -> Result<Vec<u8>> {
        let context = format!("reading {rel} from {}", self.location);
        let result = block_on(self.store.get(&self.path(rel))).map_err(storage_error(context.clone()))?;
        let bytes = block_on(result.bytes()).map_err(storage_error(context))?;
        Ok(bytes.to_vec())
    }

    /// The size of `rel`, or `None` if there is no such object.
    pub(crate) fn size(&self, rel: &str) -> Result<Option<u64>> {
        match block_on(self.store.head(&self.path(rel))) {
            Ok(meta) => Ok(Some(meta.size)),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(storage_error(format!("reading {rel} in {}", self.location))(e)),
        }
    }

    /// The names of the directories right under the root.
    pub(crate) fn dirs(&self) -> Result<Vec<String>> {
        let list = block_on(self.store.list_with_delimiter(Some(&self.root)))
            .map_err(storage_error(format!("listing {}", self.location)))?;
        Ok(list
            .common_prefixes
            .iter()
            .filter_map(|p| p.filename().map(str::to_string))
            .collect())
    }

    /// The names of the objects directly in directory `rel`.
    pub(crate) fn files(&self, rel: &str) -> Result<Vec<String>> {
        let list = block_on(self.store.list_with_delimiter(Some(&self.path(rel))))
            .map_err(storage_error(format!("listing {rel} in {}", self.location)))?;
        Ok(list
            .objects
            .iter()
            .filter_map(|o| o.location.filename().map(str::to_string))
            .collect())
    }

    /// Deletes `rel` (no error if it is gone already).
    pub(crate) fn delete(&self, rel: &str) -> Result<()> {
        match block_on(self.store.delete(&self.path(rel))) {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(storage_error(format!("deleting {rel} in {}", self.location))(e)),
        }
    }

    /// Deletes everything under directory `rel`.
    pub(crate) fn delete_dir(&self, rel: &str) -> Result<()> {
        let objects: Vec<_> = block_on(self.store.list(Some(&self.path(rel))).try_collect())
            .map_err(storage_error(format!("listing {rel} in {}", self.location)))?;
        for o in objects {
            match block_on(self.store.delete(&o.location)) {
                Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
                Err(e) => return Err(storage_error(format!("deleting {}", o.location))(e)),
            }
        }
        if let Some(dir) = self.local_path(rel) {
            let _ = std::fs::remove_dir_all(dir); // the emptied directories
        }
        Ok(())
    }
}
