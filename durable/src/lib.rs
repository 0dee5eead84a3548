//! durable: small files that services keep beside the log (Firehose delivery stream and Kinesis
//! Video stream definitions), replaced and removed so that a crash leaves the old or the new
//! version, never a torn one.
//!
//! - [`replace`] writes `<path>.tmp`, fsyncs it, renames it over `path` and fsyncs the directory.
//! - [`remove`] unlinks `path` (absent is fine) and fsyncs the directory.
//! - Both run on a short-lived thread of their own, so neither a shard core (glommio) nor a
//!   service core (tokio) blocks on an fsync; the future can be awaited from either.
//! - A reader that opens a directory deletes leftover `*.tmp` files ([`is_leftover`]).

#![forbid(unsafe_code)]

use std::fs;
use std::io::Write as _;
use std::path::{Path, PathBuf};

/// A file operation that failed, with the file it was about.
#[derive(Debug)]
pub struct FileError {
    pub path: PathBuf,
    pub source: std::io::Error,
}

impl std::fmt::Display for FileError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.path.display(), self.source)
    }
}

impl std::error::Error for FileError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.source)
    }
}

fn at(path: &Path) -> impl FnOnce(std::io::Error) -> FileError + '_ {
    move |source| FileError {
        path: path.to_owned(),
        source,
    }
}

/// The temporary name [`replace`] writes before renaming.
pub fn tmp_path(path: &Path) -> PathBuf {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    PathBuf::from(tmp)
}

/// Whether `file_name` is a temporary file a crash left behind.
pub fn is_leftover(file_name: &str) -> bool {
    file_name.ends_with(".tmp")
}

/// Fsyncs directory `dir`, so that a rename or unlink in it survives a power cut.
pub fn sync_dir(dir: &Path) -> Result<(), FileError> {
    fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(at(dir))
}

fn replace_now(path: &Path, bytes: &[u8]) -> Result<(), FileError> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let tmp = tmp_path(path);
    let mut file = fs::File::create(&tmp).map_err(at(&tmp))?;
    file.write_all(bytes).map_err(at(&tmp))?;
    file.sync_all().map_err(at(&tmp))?;
    fs::rename(&tmp, path).map_err(at(path))?;
    sync_dir(dir)
}

fn remove_now(path: &Path) -> Result<(), FileError> {
    match fs::remove_file(path) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(at(path)(e)),
    }
    sync_dir(path.parent().unwrap_or(Path::new(".")))
}

/// One file [`open_dir`] found: its path, its file name and its bytes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredFile {
    pub path: PathBuf,
    pub file_name: String,
    pub bytes: Vec<u8>,
}

/// Opens (creating) `<parent>/<name>`, fsyncs `parent` so the directory itself survives, deletes
/// the temporary files a crash left behind, and reads every file whose name ends in `extension`
/// (in file-name order). Blocking: for start-up, before any executor runs.
pub fn open_dir(
    parent: &Path,
    name: &str,
    extension: &str,
) -> Result<(PathBuf, Vec<StoredFile>), FileError> {
    let dir = parent.join(name);
    fs::create_dir_all(&dir).map_err(at(&dir))?;
    sync_dir(parent)?;
    let mut files = Vec::new();
    for entry in fs::read_dir(&dir).map_err(at(&dir))? {
        let path = entry.map_err(at(&dir))?.path();
        let file_name = path
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or("")
            .to_owned();
        if is_leftover(&file_name) {
            fs::remove_file(&path).map_err(at(&path))?;
            continue;
        }
        if !file_name.ends_with(extension) {
            continue;
        }
        let bytes = fs::read(&path).map_err(at(&path))?;
        files.push(StoredFile {
            path,
            file_name,
            bytes,
        });
    }
    sync_dir(&dir)?;
    files.sort_by(|a, b| a.file_name.cmp(&b.file_name));
    Ok((dir, files))
}

/// Runs `work` on a thread named `thread` and awaits its result from any executor.
async fn off_thread(
    thread: &str,
    path: &Path,
    work: impl FnOnce() -> Result<(), FileError> + Send + 'static,
) -> Result<(), FileError> {
    let (tx, rx) = futures_channel::oneshot::channel();
    std::thread::Builder::new()
        .name(thread.to_owned())
        .spawn(move || {
            let _ = tx.send(work());
        })
        .map_err(at(path))?;
    rx.await.unwrap_or_else(|_| {
        Err(FileError {
            path: path.to_owned(),
            source: std::io::Error::other("the file thread ended without an answer"),
        })
    })
}

/// Replaces `path` with `bytes` durably (see the crate doc), on a thread named `thread`.
pub async fn replace(thread: &str, path: PathBuf, bytes: Vec<u8>) -> Result<(), FileError> {
    let target = path.clone();
    off_thread(thread, &target, move || replace_now(&path, &bytes)).await
}

/// Removes `path` durably (see the crate doc), on a thread named `thread`.
pub async fn remove(thread: &str, path: PathBuf) -> Result<(), FileError> {
    let target = path.clone();
    off_thread(thread, &target, move || remove_now(&path)).await
}

#[cfg(test)]
mod tests {
    use futures_lite::future::block_on;

    use super::*;

    fn temp_dir(name: &str) -> PathBuf {
        let dir =
            std::env::temp_dir().join(format!("sluice-durable-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).expect("temp dir");
        dir
    }

    #[test]
    fn a_replace_leaves_the_new_bytes_and_no_temporary_file() {
        let dir = temp_dir("replace");
        let path = dir.join("a.json");
        block_on(replace("t", path.clone(), b"old".to_vec())).expect("written");
        block_on(replace("t", path.clone(), b"new".to_vec())).expect("replaced");
        assert_eq!(fs::read(&path).expect("readable"), b"new");
        assert!(!tmp_path(&path).exists());
        block_on(remove("t", path.clone())).expect("removed");
        assert!(!path.exists());
        block_on(remove("t", path)).expect("removing an absent file is fine");
        fs::remove_dir_all(dir).expect("cleaned up");
    }

    #[test]
    fn opening_a_directory_drops_leftovers_and_reads_the_rest() {
        let parent = temp_dir("open");
        let (dir, none) = open_dir(&parent, "defs", ".json").expect("created");
        assert!(none.is_empty());
        fs::write(dir.join("b.json"), b"2").expect("written");
        fs::write(dir.join("a.json"), b"1").expect("written");
        fs::write(dir.join("c.json.tmp"), b"{torn").expect("written");
        fs::write(dir.join("notes.txt"), b"x").expect("written");
        let (_, files) = open_dir(&parent, "defs", ".json").expect("opened");
        let names: Vec<&str> = files.iter().map(|f| f.file_name.as_str()).collect();
        assert_eq!(names, ["a.json", "b.json"]);
        assert_eq!(files[1].bytes, b"2");
        assert!(!dir.join("c.json.tmp").exists());
        fs::remove_dir_all(parent).expect("cleaned up");
    }

    #[test]
    fn a_failed_write_names_its_file() {
        let error = block_on(replace(
            "t",
            PathBuf::from("/nonexistent-dir/x.json"),
            Vec::new(),
        ))
        .expect_err("no such directory");
        assert!(
            error.to_string().contains("/nonexistent-dir/x.json.tmp"),
            "{error}"
        );
        assert!(is_leftover("x.json.tmp") && !is_leftover("x.json"));
    }
}
