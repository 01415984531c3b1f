//! The daemon's own files in its run directory (the traffic baselines, the upstream book,
//! the fleet's applied entries): JSON, read as empty when absent, and written through a
//! temporary file and a rename, so that a crash leaves the old file or the new one.

use std::path::Path;

use anyhow::Context as _;
use serde::{Serialize, de::DeserializeOwned};

/// Reads `path`; the default value when there is no such file.
///
/// # Errors
/// If the file cannot be read, or does not hold `what` (named in the error with the path).
pub fn load<T: DeserializeOwned + Default>(path: &Path, what: &str) -> anyhow::Result<T> {
    match std::fs::read(path) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .with_context(|| format!("{} is not {what}", path.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(T::default()),
        Err(e) => Err(e).with_context(|| format!("cannot read {}", path.display())),
    }
}

/// Writes `value` to `path` atomically.
///
/// # Errors
/// If the file cannot be written or renamed.
pub fn save<T: Serialize>(value: &T, path: &Path) -> anyhow::Result<()> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".new");
    let tmp = std::path::PathBuf::from(tmp);
    let bytes = serde_json::to_vec(value)
        .with_context(|| format!("cannot serialize {}", path.display()))?;
    std::fs::write(&tmp, bytes).with_context(|| format!("cannot write {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("cannot rename to {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_is_read_back_absent_is_empty_and_junk_is_named() {
        let dir = std::env::temp_dir().join(format!("floodwall-state-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let path = dir.join("numbers.json");
        let _ = std::fs::remove_file(&path);
        assert_eq!(
            load::<Vec<u32>>(&path, "a list").expect("absent"),
            Vec::<u32>::new()
        );
        save(&vec![1u32, 2], &path).expect("saved");
        assert_eq!(load::<Vec<u32>>(&path, "a list").expect("read"), [1, 2]);
        assert!(!dir.join("numbers.json.new").exists(), "renamed over");
        std::fs::write(&path, "junk").expect("write");
        let e = load::<Vec<u32>>(&path, "a list of numbers").expect_err("junk");
        assert!(
            format!("{e:#}").contains("numbers.json is not a list of numbers"),
            "{e:#}"
        );
        std::fs::remove_dir_all(&dir).expect("clean up");
    }
}
