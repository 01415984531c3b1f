//! A writer of `newc` cpio archives, the format the kernel unpacks an initramfs from
//! (Documentation/driver-api/early-userspace/buffer-format.rst).
//!
//! Entries are kept in a map ordered by path, so a directory is always written before what
//! it holds: the kernel's unpacker creates each entry in order and does not create missing
//! parents.

use std::{
    collections::BTreeMap,
    fs::File,
    io::{self, Write},
    path::{Path, PathBuf},
};

use anyhow::{Context as _, bail, ensure};

/// What an archive path holds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Node {
    /// A directory (mode 0755).
    Dir,
    /// A regular file with this content, copied from a file of the host when written.
    HostFile { source: PathBuf, mode: u32 },
    /// A regular file with this content.
    Bytes { data: Vec<u8>, mode: u32 },
    /// A symbolic link to this target.
    Symlink(PathBuf),
}

/// The contents of an archive, by absolute path.
#[derive(Default)]
pub struct Archive {
    entries: BTreeMap<PathBuf, Node>,
}

const S_IFDIR: u32 = 0o040_000;
const S_IFREG: u32 = 0o100_000;
const S_IFLNK: u32 = 0o120_000;
const TRAILER: &str = "TRAILER!!!";

impl Archive {
    /// Adds `path` and, as directories, every parent it lacks. Adding the same node twice is
    /// allowed; giving a path two different nodes is an error, since one of them would be
    /// lost.
    ///
    /// # Errors
    /// If `path` is not absolute, or already holds something else, or a parent is not a
    /// directory.
    pub fn add(&mut self, path: &Path, node: Node) -> anyhow::Result<()> {
        ensure!(
            path.is_absolute(),
            "archive path {} is not absolute",
            path.display()
        );
        if let Some(parent) = path.parent()
            && parent != Path::new("/")
        {
            self.add(parent, Node::Dir)?;
        }
        match self.entries.get(path) {
            None => {
                self.entries.insert(path.to_owned(), node);
                Ok(())
            }
            Some(existing) if *existing == node => Ok(()),
            Some(existing) => bail!(
                "archive path {} would hold both {existing:?} and {node:?}",
                path.display()
            ),
        }
    }

    /// What `path` holds, if anything.
    #[cfg(test)]
    #[must_use]
    pub fn get(&self, path: &Path) -> Option<&Node> {
        self.entries.get(path)
    }

    /// Writes the archive to `out`.
    ///
    /// # Errors
    /// If a host file cannot be read or `out` cannot be written.
    pub fn write_to(&self, out: &mut impl Write) -> anyhow::Result<()> {
        let mut writer = Writer {
            out,
            offset: 0,
            ino: 1,
        };
        for (path, node) in &self.entries {
            // newc names are relative to the root ("usr/bin/ip"), as `find . | cpio` writes.
            let name = path
                .strip_prefix("/")
                .unwrap_or(path)
                .to_str()
                .with_context(|| format!("archive path {} is not UTF-8", path.display()))?;
            match node {
                Node::Dir => writer.entry(name, S_IFDIR | 0o755, 2, &mut io::empty(), 0)?,
                Node::Symlink(target) => {
                    let target = target.to_str().with_context(|| {
                        format!("symlink target {} is not UTF-8", target.display())
                    })?;
                    writer.entry(
                        name,
                        S_IFLNK | 0o777,
                        1,
                        &mut target.as_bytes(),
                        target.len(),
                    )?;
                }
                Node::Bytes { data, mode } => {
                    writer.entry(name, S_IFREG | mode, 1, &mut data.as_slice(), data.len())?;
                }
                Node::HostFile { source, mode } => {
                    let mut file = File::open(source)
                        .with_context(|| format!("cannot read {}", source.display()))?;
                    let len = file
                        .metadata()
                        .with_context(|| format!("cannot stat {}", source.display()))?
                        .len();
                    let len = usize::try_from(len).context("file too large")?;
                    writer
                        .entry(name, S_IFREG | mode, 1, &mut file, len)
                        .with_context(|| format!("cannot archive {}", source.display()))?;
                }
            }
        }
        writer.entry(TRAILER, 0, 1, &mut io::empty(), 0)?;
        writer.out.flush()?;
        Ok(())
    }
}

struct Writer<'a, W: Write> {
    out: &'a mut W,
    offset: usize,
    ino: u32,
}

impl<W: Write> Writer<'_, W> {
    /// One header, name and data, each of name and data padded to 4 bytes.
    fn entry(
        &mut self,
        name: &str,
        mode: u32,
        nlink: u32,
        data: &mut impl io::Read,
        len: usize,
    ) -> anyhow::Result<()> {
        let ino = self.ino;
        self.ino += 1;
        // Fields: ino, mode, uid, gid, nlink, mtime, filesize, devmajor, devminor,
        // rdevmajor, rdevminor, namesize (with its NUL), check. Owned by root, mtime 0, so
        // that the same inputs give the same archive.
        let header = format!(
            "070701{ino:08x}{mode:08x}{:08x}{:08x}{nlink:08x}{:08x}{len:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}",
            0,
            0,
            0,
            0,
            0,
            0,
            0,
            name.len() + 1,
            0
        );
        self.put(header.as_bytes())?;
        self.put(name.as_bytes())?;
        self.put(&[0])?;
        self.pad()?;
        let copied = io::copy(&mut io::Read::take(&mut *data, len as u64), &mut *self.out)?;
        ensure!(
            copied == len as u64,
            "{name}: expected {len} bytes, read {copied} (did the file change?)"
        );
        self.offset += len;
        self.pad()
    }

    fn put(&mut self, bytes: &[u8]) -> anyhow::Result<()> {
        self.out.write_all(bytes)?;
        self.offset += bytes.len();
        Ok(())
    }

    fn pad(&mut self) -> anyhow::Result<()> {
        let pad = (4 - self.offset % 4) % 4;
        self.put(&[0; 3][..pad])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// (name, mode, data) of every entry, read back the way the kernel reads them.
    fn parse(mut bytes: &[u8]) -> Vec<(String, u32, Vec<u8>)> {
        let field = |h: &[u8], i: usize| {
            u32::from_str_radix(std::str::from_utf8(&h[6 + 8 * i..14 + 8 * i]).unwrap(), 16)
                .unwrap()
        };
        let mut entries = Vec::new();
        let mut offset = 0;
        loop {
            assert_eq!(offset % 4, 0, "every header starts 4-byte aligned");
            assert_eq!(&bytes[..6], b"070701", "newc magic");
            let header = &bytes[..110];
            let (mode, size, namesize) = (field(header, 1), field(header, 6), field(header, 11));
            let name_end = 110 + namesize as usize;
            let name = std::str::from_utf8(&bytes[110..name_end - 1])
                .unwrap()
                .to_owned();
            assert_eq!(bytes[name_end - 1], 0, "names end with NUL");
            let data_start = name_end.next_multiple_of(4);
            let data_end = data_start + size as usize;
            let data = bytes[data_start..data_end].to_vec();
            let next = data_end.next_multiple_of(4);
            bytes = &bytes[next..];
            offset += next;
            if name == TRAILER {
                assert!(bytes.is_empty(), "nothing follows the trailer");
                return entries;
            }
            entries.push((name, mode, data));
        }
    }

    #[test]
    fn entries_round_trip_with_parents_first() {
        let mut archive = Archive::default();
        archive
            .add(
                Path::new("/usr/bin/tool"),
                Node::Bytes {
                    data: b"hello".to_vec(),
                    mode: 0o755,
                },
            )
            .unwrap();
        archive
            .add(Path::new("/bin"), Node::Symlink("usr/bin".into()))
            .unwrap();
        archive
            .add(Path::new("/usr/bin/tool2"), Node::Symlink("tool".into()))
            .unwrap();
        let mut out = Vec::new();
        archive.write_to(&mut out).unwrap();
        let entries = parse(&out);
        let names: Vec<&str> = entries.iter().map(|e| e.0.as_str()).collect();
        assert_eq!(
            names,
            ["bin", "usr", "usr/bin", "usr/bin/tool", "usr/bin/tool2"]
        );
        assert_eq!(entries[0].1, S_IFLNK | 0o777);
        assert_eq!(entries[0].2, b"usr/bin");
        assert_eq!(entries[2].1, S_IFDIR | 0o755);
        assert_eq!(entries[3].1, S_IFREG | 0o755);
        assert_eq!(entries[3].2, b"hello");
    }

    #[test]
    fn a_path_cannot_hold_two_things() {
        let mut archive = Archive::default();
        archive.add(Path::new("/a"), Node::Dir).unwrap();
        archive.add(Path::new("/a"), Node::Dir).unwrap();
        assert!(
            archive
                .add(Path::new("/a"), Node::Symlink("b".into()))
                .is_err()
        );
        assert!(archive.add(Path::new("relative"), Node::Dir).is_err());
    }
}
