//! Safe writes inside a run folder: the one atomic-file and atomic-directory helper, the sweep
//! of leftovers, and the refusal of symlinked entries.
//!
//! Every file is written as a new temporary file (`.fintune-tmp-*`, created exclusively, so a
//! symlink planted under the final name is never written through) and renamed into place; an
//! existing file's permissions are kept. A folder is built under a temporary name and swapped
//! in with a rollback: the previous folder is parked as `.NAME.old` until the new one is in
//! place, and put back when the swap fails. [`sweep`] removes temporary leftovers of earlier
//! (interrupted) runs and recovers a folder left only as `.NAME.old`.
//!
//! [`lock_dir`] takes a folder's advisory lock (`flock` on the folder itself, released when the
//! process ends, killed or not), so two processes never write one run folder.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use crate::{Error, Result};

/// Prefix of every temporary file and folder this crate creates in a run folder.
pub const TMP_PREFIX: &str = ".fintune-tmp-";

/// The parent folder of `path` (`.` for a bare file name).
pub fn parent_of(path: &Path) -> PathBuf {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_owned(),
        _ => PathBuf::from("."),
    }
}

fn file_name(path: &Path) -> String {
    path.file_name().map_or_else(|| "out".into(), |n| n.to_string_lossy().into_owned())
}

/// Refuses `path` when it is a symbolic link (a run folder's entries are written by this
/// crate only; a link there would redirect a write elsewhere).
pub fn refuse_symlink(path: &Path) -> Result<()> {
    match fs::symlink_metadata(path) {
        Ok(m) if m.file_type().is_symlink() => Err(Error::Symlink { path: path.to_owned() }),
        _ => Ok(()),
    }
}

/// Writes `bytes` to `path` atomically: a new temporary file beside it, then a rename. The
/// rename replaces a symlink at `path` instead of writing through it; the permissions of an
/// existing regular file at `path` are kept.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = parent_of(path);
    let keep = fs::symlink_metadata(path).ok().filter(|m| m.is_file()).map(|m| m.permissions());
    let prefix = format!("{TMP_PREFIX}{}-", file_name(path));
    let mut b = tempfile::Builder::new();
    b.prefix(&prefix);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        // 0o666 minus the umask: the mode a plain `File::create` gives.
        b.permissions(fs::Permissions::from_mode(0o666));
    }
    let mut tmp = b.tempfile_in(&dir).map_err(|e| Error::io(&dir, e))?;
    tmp.write_all(bytes).map_err(|e| Error::io(tmp.path(), e))?;
    tmp.as_file().sync_all().map_err(|e| Error::io(tmp.path(), e))?;
    if let Some(p) = keep {
        fs::set_permissions(tmp.path(), p).map_err(|e| Error::io(tmp.path(), e))?;
    }
    tmp.persist(path).map_err(|e| Error::io(path, e.error))?;
    Ok(())
}

/// Serialises `value` as pretty JSON to `path`, atomically.
pub fn write_json<T: serde::Serialize>(path: &Path, value: &T) -> Result<()> {
    let text = serde_json::to_string_pretty(value)
        .map_err(|e| Error::Json { path: path.to_owned(), source: e })?;
    write_atomic(path, (text + "\n").as_bytes())
}

/// Reads JSON from `path`.
pub fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T> {
    let text = fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    serde_json::from_str(&text).map_err(|e| Error::Json { path: path.to_owned(), source: e })
}

/// The name a folder is parked under while it is being replaced.
pub fn old_name(dir: &Path) -> PathBuf {
    parent_of(dir).join(format!(".{}.old", file_name(dir)))
}

/// Replaces the folder `dir` atomically with one that `build` fills (in a temporary folder
/// beside it). On failure the previous folder stays (or is put back) and the temporary one
/// is removed.
pub fn replace_dir(dir: &Path, build: impl FnOnce(&Path) -> Result<()>) -> Result<()> {
    let parent = parent_of(dir);
    refuse_symlink(dir)?;
    let tmp = tempfile::Builder::new()
        .prefix(&format!("{TMP_PREFIX}{}-", file_name(dir)))
        .tempdir_in(&parent)
        .map_err(|e| Error::io(&parent, e))?;
    build(tmp.path())?;
    let tmp = tmp.keep();
    let undo = |e: Error| {
        let _ = fs::remove_dir_all(&tmp);
        e
    };
    if !dir.exists() {
        return fs::rename(&tmp, dir).map_err(|e| undo(Error::io(dir, e)));
    }
    let old = old_name(dir);
    if old.exists() {
        fs::remove_dir_all(&old).map_err(|e| undo(Error::io(&old, e)))?;
    }
    fs::rename(dir, &old).map_err(|e| undo(Error::io(dir, e)))?;
    if let Err(e) = fs::rename(&tmp, dir) {
        // Roll back: the previous folder returns under its name.
        let _ = fs::rename(&old, dir);
        return Err(undo(Error::io(dir, e)));
    }
    let _ = fs::remove_dir_all(&old);
    Ok(())
}

/// What [`sweep`] did, one line per action (for the log).
pub type SweepNotes = Vec<String>;

/// Cleans `dir` of an interrupted run's leftovers: temporary files and folders (this crate's
/// `.fintune-tmp-*`, the older `.checkpoint.tmp`, and `.NAME.tmp-PID` such as the model
/// writer's `.model.tmp-PID`), and a parked `.NAME.old` (or the model writer's
/// `.NAME.old-PID`): removed when `NAME` exists, renamed back to `NAME` (recovered) when it
/// does not.
pub fn sweep(dir: &Path) -> Result<SweepNotes> {
    let mut notes = Vec::new();
    let entries = match fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(notes),
        Err(e) => return Err(Error::io(dir, e)),
    };
    for entry in entries {
        let entry = entry.map_err(|e| Error::io(dir, e))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        let path = entry.path();
        let temporary =
            name.starts_with(TMP_PREFIX) || name == ".checkpoint.tmp" || is_pid_temp(&name);
        if temporary {
            remove_any(&path)?;
            notes.push(format!("removed the leftover {}", path.display()));
        } else if let Some(base) = parked(&name) {
            let target = dir.join(base);
            if fs::symlink_metadata(&target).is_ok() {
                remove_any(&path)?;
            } else {
                fs::rename(&path, &target).map_err(|e| Error::io(&path, e))?;
                notes.push(format!(
                    "recovered {} from {} (an earlier run stopped while replacing it)",
                    target.display(),
                    path.display()
                ));
            }
        }
    }
    Ok(notes)
}

/// `NAME` of a parked `.NAME.old` (this module) or `.NAME.old-DIGITS` (the model writer).
fn parked(name: &str) -> Option<&str> {
    let rest = name.strip_prefix('.')?;
    if let Some(base) = rest.strip_suffix(".old") {
        return Some(base);
    }
    let (base, pid) = rest.rsplit_once(".old-")?;
    (!pid.is_empty() && pid.bytes().all(|b| b.is_ascii_digit())).then_some(base)
}

/// `.NAME.tmp-DIGITS`: the temporary names of earlier versions and of the model writer.
fn is_pid_temp(name: &str) -> bool {
    name.starts_with('.')
        && name
            .rsplit_once(".tmp-")
            .is_some_and(|(_, pid)| !pid.is_empty() && pid.bytes().all(|b| b.is_ascii_digit()))
}

fn remove_any(path: &Path) -> Result<()> {
    let m = fs::symlink_metadata(path).map_err(|e| Error::io(path, e))?;
    if m.is_dir() { fs::remove_dir_all(path) } else { fs::remove_file(path) }
        .map_err(|e| Error::io(path, e))
}

/// The advisory lock of a folder, held until dropped (or until the process ends).
#[derive(Debug)]
pub struct DirLock {
    _file: fs::File,
}

/// Takes the exclusive lock of the existing folder `dir`. Held by another process:
/// [`Error::Busy`] when `wait` is `None`; otherwise `wait` is called once and the lock is
/// waited for.
pub fn lock_dir(dir: &Path, wait: Option<&mut dyn FnMut()>) -> Result<DirLock> {
    let file = fs::File::open(dir).map_err(|e| Error::io(dir, e))?;
    match file.try_lock() {
        Ok(()) => {}
        Err(fs::TryLockError::WouldBlock) => match wait {
            None => return Err(Error::Busy { path: dir.to_owned() }),
            Some(wait) => {
                wait();
                file.lock().map_err(|e| Error::io(dir, e))?;
            }
        },
        Err(fs::TryLockError::Error(e)) => return Err(Error::io(dir, e)),
    }
    Ok(DirLock { _file: file })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_replace_a_symlink_instead_of_writing_through_it() {
        let d = tempfile::tempdir().unwrap();
        let target = d.path().join("target.txt");
        fs::write(&target, "keep").unwrap();
        let link = d.path().join("history.csv");
        std::os::unix::fs::symlink(&target, &link).unwrap();
        write_atomic(&link, b"new").unwrap();
        assert_eq!(fs::read_to_string(&target).unwrap(), "keep");
        assert!(!fs::symlink_metadata(&link).unwrap().file_type().is_symlink());
        assert!(refuse_symlink(&target).is_ok());
    }

    #[test]
    fn overwriting_keeps_permissions() {
        use std::os::unix::fs::PermissionsExt;
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("a.txt");
        fs::write(&p, "x").unwrap();
        fs::set_permissions(&p, fs::Permissions::from_mode(0o640)).unwrap();
        write_atomic(&p, b"y").unwrap();
        assert_eq!(fs::metadata(&p).unwrap().permissions().mode() & 0o777, 0o640);
        // A new file gets the mode of File::create, not the temporary file's 0600.
        let q = d.path().join("b.txt");
        write_atomic(&q, b"z").unwrap();
        let r = d.path().join("c.txt");
        fs::write(&r, "z").unwrap();
        assert_eq!(
            fs::metadata(&q).unwrap().permissions().mode(),
            fs::metadata(&r).unwrap().permissions().mode()
        );
    }

    #[test]
    fn replace_dir_rolls_back_when_building_fails() {
        let d = tempfile::tempdir().unwrap();
        let dir = d.path().join("checkpoint");
        let put = |v: &'static str| {
            move |t: &Path| fs::write(t.join("a"), v).map_err(|e| Error::io(t, e))
        };
        replace_dir(&dir, put("1")).unwrap();
        let err = replace_dir(&dir, |_| Err(Error::Config("boom".into()))).unwrap_err();
        assert!(err.to_string().contains("boom"));
        assert_eq!(fs::read_to_string(dir.join("a")).unwrap(), "1");
        replace_dir(&dir, put("2")).unwrap();
        assert_eq!(fs::read_to_string(dir.join("a")).unwrap(), "2");
        let left: Vec<_> =
            fs::read_dir(d.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(left, vec![std::ffi::OsString::from("checkpoint")], "no leftovers");
    }

    #[test]
    fn sweep_removes_temporaries_and_recovers_parked_folders() {
        let d = tempfile::tempdir().unwrap();
        for n in [
            ".model.tmp-4242",
            ".fintune-tmp-checkpoint-abc",
            ".history.csv.tmp-17",
            ".model.old-9",
        ] {
            fs::create_dir_all(d.path().join(n)).unwrap();
        }
        fs::create_dir_all(d.path().join(".checkpoint.old")).unwrap();
        fs::write(d.path().join(".checkpoint.old/trainer.json"), "{}").unwrap();
        let notes = sweep(d.path()).unwrap();
        let left: Vec<String> = fs::read_dir(d.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        let mut left = left;
        left.sort();
        assert_eq!(left, vec!["checkpoint".to_owned(), "model".to_owned()]);
        assert!(notes.iter().any(|n| n.contains("recovered")), "{notes:?}");
    }

    #[test]
    fn a_folder_lock_excludes_a_second_holder_until_dropped() {
        let d = tempfile::tempdir().unwrap();
        let first = lock_dir(d.path(), None).unwrap();
        let err = lock_dir(d.path(), None).unwrap_err();
        assert!(matches!(&err, Error::Busy { path } if path == d.path()), "{err}");
        assert!(err.to_string().contains("in use by another fintune process"), "{err}");
        drop(first);
        lock_dir(d.path(), None).unwrap();
        let gone = d.path().join("missing");
        assert!(matches!(lock_dir(&gone, None), Err(Error::Io { .. })));
    }

    #[test]
    fn a_waiting_lock_is_told_once_and_taken_when_released() {
        let d = tempfile::tempdir().unwrap();
        let first = lock_dir(d.path(), None).unwrap();
        let released = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = released.clone();
        let holder = std::thread::spawn(move || {
            std::thread::sleep(std::time::Duration::from_millis(300));
            flag.store(true, std::sync::atomic::Ordering::SeqCst);
            drop(first);
        });
        let mut told = 0;
        let second = lock_dir(d.path(), Some(&mut || told += 1)).unwrap();
        assert_eq!(told, 1);
        assert!(released.load(std::sync::atomic::Ordering::SeqCst), "taken before the release");
        holder.join().unwrap();
        drop(second);
        let mut told = 0;
        let _third = lock_dir(d.path(), Some(&mut || told += 1)).unwrap();
        assert_eq!(told, 0, "a free lock is taken without waiting");
    }
}
