//! Looking up the guest user in /etc/passwd (the guest has no NSS beyond files).

use std::path::Path;

/// One passwd entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Account {
    pub name: String,
    pub uid: u32,
    pub gid: u32,
    pub home: String,
    pub shell: String,
}

/// Parses one `name:x:uid:gid:gecos:home:shell` line.
pub fn parse_line(line: &str) -> Option<Account> {
    let f: Vec<&str> = line.split(':').collect();
    if f.len() != 7 || f[0].is_empty() {
        return None;
    }
    Some(Account {
        name: f[0].into(),
        uid: f[2].parse().ok()?,
        gid: f[3].parse().ok()?,
        home: f[5].into(),
        shell: if f[6].is_empty() {
            "/bin/sh".into()
        } else {
            f[6].into()
        },
    })
}

/// Finds `user` in the passwd file at `path`.
pub fn lookup(path: &Path, user: &str) -> Result<Account, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    text.lines()
        .filter_map(parse_line)
        .find(|a| a.name == user)
        .ok_or_else(|| format!("no such user in {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_entries_and_rejects_junk() {
        let a = parse_line("user:x:1000:1000:Guest user:/home/user:/bin/sh").unwrap();
        assert_eq!((a.uid, a.gid, a.home.as_str()), (1000, 1000, "/home/user"));
        assert_eq!(parse_line("root:x:0:0::/root:").unwrap().shell, "/bin/sh");
        for junk in [
            "",
            "user:x:1000",
            "user:x:abc:1:g:/h:/s",
            ":x:1:1:g:/h:/s",
            "a:b:c:d:e:f:g:h",
        ] {
            assert!(parse_line(junk).is_none(), "{junk:?}");
        }
    }
}
