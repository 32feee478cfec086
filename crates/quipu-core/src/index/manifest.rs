//! The manifest: which table files make up the index, oldest first. It is
//! replaced whole (temp file, fsync, rename, directory fsync) each time a
//! flush or a merge publishes tables, so after a crash it names either the
//! tables before or the tables after, never a mix. A table file it does
//! not name is a flush or merge that did not finish, and is removed on
//! open.
//!
//! Format: the line `quipu-index-manifest 1`, one table file name per
//! line, and `crc32c <hex>` of everything before that line.

use std::path::Path;

use crate::error::Error;

const FILE: &str = "MANIFEST";
const FIRST_LINE: &str = "quipu-index-manifest 1";

/// Table file names, oldest first.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Manifest {
    /// File names in the tables directory.
    pub tables: Vec<String>,
}

impl Manifest {
    /// Reads the manifest in `dir`; an empty one when there is none yet.
    ///
    /// # Errors
    /// I/O errors; a manifest that does not check.
    pub fn read(dir: &Path) -> Result<Manifest, Error> {
        let path = dir.join(FILE);
        let text = match std::fs::read_to_string(&path) {
            Ok(text) => text,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(Manifest::default()),
            Err(source) => return Err(Error::Io { context: format!("reading {}", path.display()), source }),
        };
        let bad = || Error::Io {
            context: format!("reading {}: it does not check", path.display()),
            source: std::io::Error::new(std::io::ErrorKind::InvalidData, "delete the index directory to rebuild it"),
        };
        let (body, crc_line) = text.trim_end().rsplit_once('\n').ok_or_else(bad)?;
        let crc = crc_line.strip_prefix("crc32c ").and_then(|hex| u32::from_str_radix(hex, 16).ok());
        if crc != Some(crc32c::crc32c(format!("{body}\n").as_bytes())) {
            return Err(bad());
        }
        let mut lines = body.lines();
        if lines.next() != Some(FIRST_LINE) {
            return Err(bad());
        }
        Ok(Manifest { tables: lines.map(str::to_owned).collect() })
    }

    /// Replaces the manifest in `dir` with this one, durably.
    ///
    /// # Errors
    /// I/O errors.
    pub fn write(&self, dir: &Path) -> Result<(), Error> {
        let mut body = format!("{FIRST_LINE}\n");
        for table in &self.tables {
            body.push_str(table);
            body.push('\n');
        }
        let crc = crc32c::crc32c(body.as_bytes());
        body.push_str(&format!("crc32c {crc:08x}\n"));
        crate::store::write_durably(dir, FILE, body.as_bytes())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn a_manifest_reads_back_and_a_damaged_one_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(Manifest::read(dir.path()).unwrap(), Manifest::default());
        let manifest = Manifest { tables: vec!["000000000001.qidx".into(), "000000000007.qidx".into()] };
        manifest.write(dir.path()).unwrap();
        assert_eq!(Manifest::read(dir.path()).unwrap(), manifest);
        let path = dir.path().join(FILE);
        let text = std::fs::read_to_string(&path).unwrap().replace("07", "08");
        std::fs::write(&path, text).unwrap();
        assert!(Manifest::read(dir.path()).is_err());
    }
}
