//! Running out of storage. SQLite's `SQLITE_FULL` (13) and PostgreSQL's `disk_full` (53100)
//! are told apart from other errors by their codes, never by message text, and answered 503
//! `storage_full`; `/readyz` reports the database `degraded` while it cannot grow: for SQLite
//! by the free space of the file system that holds the file, for a PostgreSQL server (whose
//! disks are not ours to look at) by a disk-full error in the last [`RECENT`].

use std::path::Path;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::{Backend, Db};

/// Below this much free space SQLite's next transaction may fail: a signup writes a few dozen
/// pages to the WAL, a checkpoint more.
pub const MIN_FREE_BYTES: u64 = 1024 * 1024;

/// How long a PostgreSQL disk-full error keeps readiness degraded.
pub const RECENT: Duration = Duration::from_secs(15);

const SQLITE_FULL: &str = "13";
const PG_DISK_FULL: &str = "53100";

static LAST_FULL: Mutex<Option<Instant>> = Mutex::new(None);

/// Whether the database refused a write for lack of space.
pub fn is_full(err: &sqlx::Error) -> bool {
    let sqlx::Error::Database(db) = err else {
        return false;
    };
    let Some(code) = db.code() else {
        return false;
    };
    if db.try_downcast_ref::<sqlx::sqlite::SqliteError>().is_some() {
        // The extended code: SQLITE_FULL has no extended variants, but keep to the primary.
        code.parse::<i32>()
            .is_ok_and(|c| (c & 0xff).to_string() == SQLITE_FULL)
    } else {
        code == PG_DISK_FULL
    }
}

/// Remembers that a write just failed for lack of space (see [`problem`]).
pub fn note_full() {
    if let Ok(mut last) = LAST_FULL.lock() {
        *last = Some(Instant::now());
    }
}

/// Why the database cannot take writes, if it cannot.
pub fn problem(db: &Db) -> Option<String> {
    match (db.backend, &db.sqlite_file) {
        (Backend::Sqlite, Some(file)) => {
            let dir = file.parent().filter(|d| !d.as_os_str().is_empty());
            let dir = dir.unwrap_or(Path::new("."));
            let free = free_bytes(dir)?;
            (free < MIN_FREE_BYTES).then(|| {
                format!(
                    "database storage full: {free} bytes free on the file system of {}",
                    dir.display()
                )
            })
        }
        (Backend::Sqlite, None) => None,
        (Backend::Postgres, _) => {
            let last = (*LAST_FULL.lock().ok()?)?;
            (last.elapsed() < RECENT).then(|| {
                format!(
                    "database storage full: PostgreSQL refused a write for lack of disk space {} s ago",
                    last.elapsed().as_secs()
                )
            })
        }
    }
}

/// Space an unprivileged writer can still use (`f_bavail`), None when it cannot be read.
fn free_bytes(dir: &Path) -> Option<u64> {
    use std::os::unix::ffi::OsStrExt;
    let path = std::ffi::CString::new(dir.as_os_str().as_bytes()).ok()?;
    let mut stat = std::mem::MaybeUninit::<libc::statvfs>::uninit();
    // SAFETY: a NUL-terminated path and a buffer statvfs fills on success.
    let rc = unsafe { libc::statvfs(path.as_ptr(), stat.as_mut_ptr()) };
    if rc != 0 {
        return None;
    }
    // SAFETY: filled, as statvfs returned 0.
    let stat = unsafe { stat.assume_init() };
    #[allow(clippy::unnecessary_cast)] // the field types differ between platforms
    Some(stat.f_bavail as u64 * stat.f_frsize as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn free_space_of_an_existing_directory_is_read() {
        assert!(free_bytes(Path::new(".")).is_some());
        assert!(free_bytes(Path::new("/no/such/dir")).is_none());
    }
}
