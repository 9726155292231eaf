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

/// The most supplementary groups an account gets (the kernel's NGROUPS_MAX is far larger; a
/// guest user is in a handful).
pub const MAX_GROUPS: usize = 64;

/// The groups of `a` from the group file at `path`: its primary group, then every group that
/// lists it as a member (`name:x:gid:user1,user2`), at most [`MAX_GROUPS`]. A missing or
/// unreadable file gives the primary group alone.
pub fn groups_of(path: &Path, a: &Account) -> Vec<u32> {
    let mut groups = vec![a.gid];
    let Ok(text) = std::fs::read_to_string(path) else {
        return groups;
    };
    for line in text.lines() {
        let f: Vec<&str> = line.split(':').collect();
        if f.len() != 4 || !f[3].split(',').any(|m| m == a.name) {
            continue;
        }
        if let Ok(gid) = f[2].parse::<u32>() {
            if !groups.contains(&gid) && groups.len() < MAX_GROUPS {
                groups.push(gid);
            }
        }
    }
    groups
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_accounts_groups_come_from_the_group_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("group");
        std::fs::write(
            &path,
            "root:x:0:\nuser:x:1000:\nrender:x:105:user\nvideo:x:44:other,user\n\
             audio:x:29:other\njunk\nbad:x:notanumber:user\nuser2:x:1000:user\n",
        )
        .unwrap();
        let a = parse_line("user:x:1000:1000:Guest user:/home/user:/bin/sh").unwrap();
        assert_eq!(groups_of(&path, &a), vec![1000, 105, 44]);
        assert_eq!(groups_of(&dir.path().join("none"), &a), vec![1000]);
    }

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
