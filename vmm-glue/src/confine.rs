//! What a confined VMM or helper sees of the host: built from the launch plan by one function,
//! [`view`], for QEMU, crosvm and every helper alike.
//!
//! A view is a whitelist. Its root is an empty tmpfs that holds, at their host paths:
//! - the system's programs and libraries read-only (`/usr`, the loader's files in `/etc`, the
//!   top-level `/lib*` and `/bin` links), the program itself (and its prefix when it lives
//!   under `/opt`);
//! - a few harmless device nodes (`/dev/null`, `/dev/zero`, `/dev/full`, `/dev/random`,
//!   `/dev/urandom`), a fresh `/proc` of its own PID namespace;
//! - its VM's runtime dir, read-write (its sockets);
//! - what its process spec declares it uses: the VMM's images, console log, KVM, switch and
//!   vhost-user sockets; a virtiofsd's shared directory; passt's `/etc/resolv.conf`.
//!
//! Nothing else exists in it: no `/home`, `/root`, `/tmp`, `/var`, no other part of `/run`,
//! no other VM. [`crate::jail`] makes the view real.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::plan::{Access, LaunchPlan, ProcessSpec};

/// System files every confined process reads: programs, libraries, the loader's cache.
const SYSTEM: &[&str] = &[
    "/usr",
    // NixOS: every program, library and loader lives in the store.
    "/nix/store",
    "/etc/ld.so.cache",
    "/etc/ld.so.conf",
    "/etc/ld.so.conf.d",
];

/// Top-level entries that are links into /usr on merged-/usr systems, directories elsewhere.
const TOP_LEVEL: &[&str] = &["/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32"];

/// Device nodes every process may use (none of them reaches anything).
const DEVICES: &[&str] = &[
    "/dev/null",
    "/dev/zero",
    "/dev/full",
    "/dev/random",
    "/dev/urandom",
];

/// One confined process's view of the host.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct View {
    /// Host paths bound at the same path, parents before children.
    pub binds: Vec<Access>,
    /// Symbolic links: (where, what it points to).
    pub links: Vec<(PathBuf, PathBuf)>,
    /// Whether the process stays in the host's network namespace.
    pub host_network: bool,
}

/// The view for `spec` of `plan`, running `program` (its resolved path on the host).
/// Optional system entries that this host lacks are left out; whether what the spec declares
/// exists is checked when the view is made real.
pub fn view(plan: &LaunchPlan, spec: &ProcessSpec, program: &Path) -> View {
    let mut binds: Vec<Access> = SYSTEM
        .iter()
        .map(Path::new)
        .filter(|p| p.exists())
        .map(Access::read)
        .collect();
    let mut links = Vec::new();
    for top in TOP_LEVEL.iter().map(Path::new) {
        match std::fs::read_link(top) {
            Ok(target) => links.push((top.to_path_buf(), target)),
            Err(_) if top.is_dir() => binds.push(Access::read(top)),
            Err(_) => {}
        }
    }
    binds.extend(DEVICES.iter().map(|d| Access::write(*d)));
    binds.push(Access::read(program_root(program)));
    binds.push(Access::write(&plan.runtime_dir));
    binds.extend(spec.access.iter().cloned());
    View {
        binds: normalise(binds),
        links,
        host_network: spec.host_network,
    }
}

/// What of a program's location the view holds: nothing more under /usr (already there), its
/// prefix under /opt (a self-contained install with its libraries and data), else the file.
fn program_root(program: &Path) -> PathBuf {
    if let Ok(rest) = program.strip_prefix("/opt") {
        if let Some(first) = rest.components().next() {
            return Path::new("/opt").join(first);
        }
    }
    program.to_path_buf()
}

/// Drops duplicates (writable wins) and paths inside a bind that already covers them with
/// the same or more access, and orders parents before children.
fn normalise(mut binds: Vec<Access>) -> Vec<Access> {
    binds.sort_by(|a, b| {
        a.path
            .components()
            .count()
            .cmp(&b.path.components().count())
            .then(a.path.cmp(&b.path))
    });
    let mut out: Vec<Access> = Vec::new();
    for b in binds {
        if let Some(same) = out.iter_mut().find(|o| o.path == b.path) {
            same.writable |= b.writable;
            continue;
        }
        let covered = out
            .iter()
            .any(|o| b.path.starts_with(&o.path) && (o.writable || !b.writable));
        if !covered {
            out.push(b);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nested_and_duplicate_binds_collapse() {
        let got = normalise(vec![
            Access::read("/usr/lib/x"),
            Access::read("/usr"),
            Access::read("/run/vm"),
            Access::write("/run/vm"),
            Access::write("/usr/lib/y"),
            Access::read("/run/vm/sock"),
        ]);
        assert_eq!(
            got,
            vec![
                Access::read("/usr"),
                Access::write("/run/vm"),
                Access::write("/usr/lib/y"),
            ]
        );
    }

    #[test]
    fn programs_under_opt_bring_their_prefix() {
        assert_eq!(
            program_root(Path::new("/opt/qemu-rutabaga/bin/qemu-system-x86_64")),
            Path::new("/opt/qemu-rutabaga")
        );
        assert_eq!(
            program_root(Path::new("/root/.cargo/bin/virtiofsd")),
            Path::new("/root/.cargo/bin/virtiofsd")
        );
    }
}
