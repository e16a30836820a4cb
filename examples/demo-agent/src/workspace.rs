//! The agent's files: the task it reads and the output folder it writes, `/workspace/output`.
//!
//! The model chooses the paths it writes to, so every path is checked twice: lexically (relative,
//! no `..`, not apf's own `budget.txt`) and on disk (the parent folder, symlinks resolved, is
//! still inside the output folder, and the file itself is not a symlink). Files are written to a
//! temporary name and renamed, so apf never reads a half-written result.

use std::fs;
use std::io::{self, Read, Write};
use std::path::{Component, Path, PathBuf};

/// The file apf writes the budget into; the agent reads it and never writes it.
pub const BUDGET_FILE: &str = "budget.txt";
const MAX_WRITE: usize = 1024 * 1024;
const MAX_READ: u64 = 256 * 1024;

#[derive(Debug, Clone)]
pub struct Workspace {
    output: PathBuf,
}

impl Workspace {
    pub fn new(output: PathBuf) -> Workspace {
        Workspace { output }
    }

    pub fn output(&self) -> &Path {
        &self.output
    }

    /// The path under the output folder that `requested` names, or why it is refused.
    /// Absolute paths are accepted only when they lie inside the output folder.
    pub fn resolve(&self, requested: &str) -> Result<PathBuf, String> {
        let requested = Path::new(requested);
        let relative = if requested.is_absolute() {
            requested
                .strip_prefix(&self.output)
                .map_err(|_| format!("refused: only paths under {} may be written", self.shown()))?
        } else {
            requested
        };

        let mut clean = PathBuf::new();
        for part in relative.components() {
            match part {
                Component::Normal(name) => clean.push(name),
                Component::CurDir => {}
                _ => return Err("refused: the path leaves the output folder".to_string()),
            }
        }
        if clean.as_os_str().is_empty() {
            return Err("refused: the path names no file".to_string());
        }
        if clean == Path::new(BUDGET_FILE) {
            return Err("refused: budget.txt belongs to apf".to_string());
        }
        Ok(self.output.join(clean))
    }

    /// Write a file the model asked for, after every check; returns the path written.
    pub fn write_file(&self, requested: &str, content: &str) -> Result<PathBuf, String> {
        if content.len() > MAX_WRITE {
            return Err(format!("refused: content is over {MAX_WRITE} bytes"));
        }
        let path = self.resolve(requested)?;
        self.write_checked(&path, content.as_bytes())?;
        Ok(path)
    }

    /// Write one of the agent's own files (snapshots, the result) by plain name.
    pub fn write_own(&self, name: &str, content: &str) -> Result<PathBuf, String> {
        let path = self.output.join(name);
        self.write_checked(&path, content.as_bytes())?;
        Ok(path)
    }

    fn write_checked(&self, path: &Path, content: &[u8]) -> Result<(), String> {
        let relative =
            path.strip_prefix(&self.output).map_err(|_| "refused: outside".to_string())?;
        let (Some(name), Some(folders)) = (relative.file_name(), relative.parent()) else {
            return Err("refused: the path names no file".to_string());
        };

        // Walk down from the output folder, creating each missing folder only inside one that
        // is already known to be a real folder, so a symlink can never lead a write outside.
        let mut dir = self.output.clone();
        fs::create_dir_all(&dir).map_err(|e| format!("could not create the output folder: {e}"))?;
        for part in folders.components() {
            dir.push(part);
            match fs::symlink_metadata(&dir) {
                Ok(meta) if meta.file_type().is_symlink() => {
                    return Err("refused: the path goes through a symlink".to_string());
                }
                Ok(meta) if meta.is_dir() => {}
                Ok(_) => return Err("refused: a part of the path is a file".to_string()),
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    fs::create_dir(&dir).map_err(|e| format!("could not create a folder: {e}"))?;
                }
                Err(e) => return Err(format!("could not inspect the path: {e}")),
            }
        }
        if let Ok(meta) = fs::symlink_metadata(path) {
            if meta.file_type().is_symlink() {
                return Err("refused: the path is a symlink".to_string());
            }
            if meta.is_dir() {
                return Err("refused: the path is a folder".to_string());
            }
        }

        let mut tmp_name = std::ffi::OsString::from(".");
        tmp_name.push(name);
        tmp_name.push(".tmp");
        let tmp = dir.join(tmp_name);
        // `create_new` (O_EXCL) never follows a symlink planted at the temporary name.
        let _ = fs::remove_file(&tmp);
        let result = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&tmp)
            .and_then(|mut file| file.write_all(content))
            .and_then(|()| fs::rename(&tmp, path));
        if result.is_err() {
            let _ = fs::remove_file(&tmp);
        }
        result.map_err(|e| format!("could not write: {e}"))
    }

    /// The whole budget file, if apf has written one.
    pub fn budget(&self) -> Option<String> {
        read_capped(&self.output.join(BUDGET_FILE)).ok()
    }

    /// The budget's first line, for the `progress` event; `None` when absent or empty.
    pub fn budget_line(&self) -> Option<String> {
        first_line(&self.budget()?)
    }

    fn shown(&self) -> String {
        self.output.display().to_string()
    }
}

/// The first line of `text` without its line ending, if it has any content.
pub fn first_line(text: &str) -> Option<String> {
    let line = text.lines().next()?.trim_end();
    (!line.is_empty()).then(|| line.to_string())
}

/// A text file, read up to a cap so a huge file cannot exhaust memory.
pub fn read_capped(path: &Path) -> io::Result<String> {
    let mut bytes = Vec::new();
    fs::File::open(path)?.take(MAX_READ).read_to_end(&mut bytes)?;
    Ok(String::from_utf8_lossy(&bytes).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    struct TempDir(PathBuf);

    impl TempDir {
        fn new(tag: &str) -> TempDir {
            let nanos = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos())
                .unwrap_or(0);
            let path =
                std::env::temp_dir().join(format!("apf-demo-{tag}-{}-{nanos}", std::process::id()));
            fs::create_dir_all(&path).unwrap();
            TempDir(path)
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.0);
        }
    }

    #[test]
    fn paths_that_escape_are_refused() {
        let ws = Workspace::new(PathBuf::from("/workspace/output"));
        for bad in [
            "../TASK.md",
            "a/../../etc/passwd",
            "/etc/passwd",
            "/workspace/outputs/x",
            "/workspace/output/../TASK.md",
            "",
            ".",
            "budget.txt",
            "./budget.txt",
        ] {
            assert!(ws.resolve(bad).is_err(), "{bad:?} was accepted");
        }
    }

    #[test]
    fn paths_inside_are_accepted() {
        let ws = Workspace::new(PathBuf::from("/workspace/output"));
        assert_eq!(ws.resolve("notes.md").unwrap(), Path::new("/workspace/output/notes.md"));
        assert_eq!(ws.resolve("./a/b.txt").unwrap(), Path::new("/workspace/output/a/b.txt"));
        assert_eq!(
            ws.resolve("/workspace/output/sub/c.txt").unwrap(),
            Path::new("/workspace/output/sub/c.txt")
        );
        assert_eq!(
            ws.resolve("sub/budget.txt").unwrap(),
            Path::new("/workspace/output/sub/budget.txt")
        );
    }

    #[test]
    fn writes_land_inside_and_replace_whole_files() {
        let dir = TempDir::new("write");
        let ws = Workspace::new(dir.0.join("output"));
        fs::create_dir_all(ws.output()).unwrap();

        let path = ws.write_file("deep/er/poem.txt", "one").unwrap();
        ws.write_file("deep/er/poem.txt", "two").unwrap();
        assert_eq!(fs::read_to_string(&path).unwrap(), "two");
        let leftovers: Vec<_> = fs::read_dir(path.parent().unwrap()).unwrap().collect();
        assert_eq!(leftovers.len(), 1, "a temporary file was left behind");
    }

    #[test]
    fn symlinks_out_of_the_folder_are_refused() {
        let dir = TempDir::new("symlink");
        let outside = dir.0.join("outside");
        let ws = Workspace::new(dir.0.join("output"));
        fs::create_dir_all(ws.output()).unwrap();
        fs::create_dir_all(&outside).unwrap();
        std::os::unix::fs::symlink(&outside, ws.output().join("link")).unwrap();
        std::os::unix::fs::symlink(outside.join("f"), ws.output().join("file-link")).unwrap();

        assert!(ws.write_file("link/escape.txt", "x").is_err());
        assert!(ws.write_file("link/new/escape.txt", "x").is_err());
        assert!(!outside.join("new").exists(), "a folder was created through the symlink");
        assert!(ws.write_file("file-link", "x").is_err());
        assert!(!outside.join("escape.txt").exists());
        assert!(!outside.join("f").exists());
    }

    #[test]
    fn oversized_content_is_refused() {
        let ws = Workspace::new(PathBuf::from("/nonexistent/output"));
        assert!(ws.write_file("big", &"x".repeat(MAX_WRITE + 1)).is_err());
    }

    #[test]
    fn budget_line_is_the_first_line() {
        let dir = TempDir::new("budget");
        let ws = Workspace::new(dir.0.clone());
        assert_eq!(ws.budget_line(), None);

        fs::write(dir.0.join(BUDGET_FILE), "").unwrap();
        assert_eq!(ws.budget_line(), None);

        let detailed = "Budget: $0.086 remaining of $0.15 (57% left)\r\nLast actions:\n  $0.01\n";
        fs::write(dir.0.join(BUDGET_FILE), detailed).unwrap();
        assert_eq!(
            ws.budget_line().as_deref(),
            Some("Budget: $0.086 remaining of $0.15 (57% left)")
        );
        assert_eq!(ws.budget().as_deref(), Some(detailed));
    }

    #[test]
    fn first_line_handles_edges() {
        assert_eq!(first_line("a\nb"), Some("a".into()));
        assert_eq!(first_line("\nb"), None);
        assert_eq!(first_line("only  "), Some("only".into()));
    }
}
