//! The `[[vm]]` schema: what a VM is made of and how it runs, and the global `[vmm]` settings.
//!
//! Single values check themselves while parsing (see `values`); checks that need more than one
//! value (a disposable VM with a home, an unknown dependency, two routers on one network) are
//! done in [`check_vms`] with the span of the value to fix.

use std::collections::{BTreeMap, BTreeSet};
use std::ops::Range;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use toml::Spanned;

use crate::values::{BoolOr, Cidr, Duration, IdMap, Ip, Mac, PciAddress, Size};

/// Which VMM runs a VM.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum VmmKind {
    /// crosvm when it is installed, else QEMU.
    Auto,
    Crosvm,
    Qemu,
}

/// How the VMM accelerates the guest.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Accel {
    /// KVM when /dev/kvm can be opened, else TCG.
    Auto,
    Kvm,
    /// QEMU's software emulation (CI machines, nested setups without working KVM).
    Tcg,
}

/// Where the guest's root changes go; they never persist.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RootOverlay {
    /// A fresh scratch disk the host creates at each start and deletes at stop.
    Disk { size: Size },
    /// Guest memory.
    Tmpfs,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum LogLevel {
    Error,
    Warn,
    Info,
    Debug,
    Trace,
}

impl LogLevel {
    pub fn as_str(self) -> &'static str {
        match self {
            LogLevel::Error => "error",
            LogLevel::Warn => "warn",
            LogLevel::Info => "info",
            LogLevel::Debug => "debug",
            LogLevel::Trace => "trace",
        }
    }
}

/// An additional disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DiskConfig {
    pub path: PathBuf,
    pub read_only: bool,
}

/// A host directory shared with the guest over virtiofs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShareConfig {
    pub tag: String,
    pub path: PathBuf,
    /// Where the guest mounts it.
    pub mount: String,
    pub read_only: bool,
    pub uid_map: Vec<IdMap>,
    pub gid_map: Vec<IdMap>,
}

/// The VM's persistent home: a host directory mounted at the guest user's home.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HomeConfig {
    /// `None`: `$XDG_DATA_HOME/bulkhead/vms/<vm>/home`.
    pub path: Option<PathBuf>,
    /// Copied into a new home on first start.
    pub template: Option<PathBuf>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GpuConfig {
    pub enable: bool,
    /// crosvm `--gpu context-types=...`.
    pub context_types: Vec<String>,
    pub transport: GpuTransport,
}

/// How the guest's Wayland connections reach the VM's socket.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum GpuTransport {
    /// Cross-domain when the VMM has it (crosvm; a QEMU with virtio-gpu-rutabaga), else the
    /// vsock stream.
    Auto,
    /// virtio-gpu cross-domain: the VMM itself connects to the VM's socket.
    CrossDomain,
    /// The guest proxy's stream over vsock, put on the VM's socket by bulkhead-wl-bridge.
    Vsock,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SoundConfig {
    pub playback: bool,
    pub capture: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VhostUserConfig {
    /// The virtio device type (net, fs, block, sound, gpu, console, rng, vsock).
    pub kind: String,
    pub socket: PathBuf,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SwitchRole {
    Router,
    Client,
}

/// What a network interface attaches to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NetKind {
    /// User-mode networking (QEMU's slirp; passt with crosvm): internet without root.
    User,
    /// A host tap device, with an address of its own or enslaved to a bridge.
    Tap {
        name: String,
        host_address: Option<Cidr>,
        bridge: Option<String>,
    },
    /// A port on a bulkhead-switch VM network.
    Switch { network: String, role: SwitchRole },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    pub to: Cidr,
    pub via: Ip,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetworkConfig {
    pub kind: NetKind,
    pub mac: Mac,
    /// The guest's address on this interface.
    pub address: Option<Cidr>,
    pub gateway: Option<Ip>,
    pub routes: Vec<Route>,
    pub nameservers: Vec<Ip>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppConfig {
    pub name: String,
    pub command: Vec<String>,
    /// An icon theme name (`folder`), or an image file (PNG or SVG: a value with a `/` or one
    /// of those extensions), made absolute against the config file's directory. The launcher
    /// draws files; desktop entries carry either.
    pub icon: Option<String>,
}

impl AppConfig {
    /// The icon's image file, when the icon is one.
    pub fn icon_file(&self) -> Option<&Path> {
        self.icon
            .as_deref()
            .filter(|i| i.starts_with('/'))
            .map(Path::new)
    }
}

/// Whether an `icon` value names a file rather than a theme icon.
fn is_icon_file(icon: &str) -> bool {
    let lower = icon.to_ascii_lowercase();
    icon.contains('/') || lower.ends_with(".png") || lower.ends_with(".svg")
}

/// Everything about how a VM runs. Part of [`crate::VmConfig`].
#[derive(Debug, Clone, PartialEq)]
pub struct VmSpec {
    pub memory: Size,
    pub cpus: u32,
    pub vmm: VmmKind,
    pub kernel: Option<PathBuf>,
    pub initramfs: Option<PathBuf>,
    pub root_disk: Option<PathBuf>,
    pub root_overlay: RootOverlay,
    pub kernel_params: Vec<String>,
    pub disks: Vec<DiskConfig>,
    pub shares: Vec<ShareConfig>,
    /// `None` when disposable or disabled.
    pub home: Option<HomeConfig>,
    pub gpu: GpuConfig,
    pub sound: SoundConfig,
    pub pci: Vec<PciAddress>,
    pub vhost_user: Vec<VhostUserConfig>,
    pub networks: Vec<NetworkConfig>,
    /// Stop after this long without running commands or apps.
    pub auto_shutdown: Option<Duration>,
    pub disposable: bool,
    pub autostart: bool,
    pub depends_on: Vec<String>,
    pub apps: Vec<AppConfig>,
    pub log_level: LogLevel,
    pub extra_args: Vec<String>,
    /// Whether the VM's apps may keep the screen awake (an idle inhibitor on a visible,
    /// unminimised window of an unlocked session); default true.
    pub idle_inhibit: bool,
    /// The guest's vsock context id.
    pub cid: u32,
}

/// Global VMM settings (`[vmm]`).
#[derive(Debug, Clone, PartialEq)]
pub struct VmmSettings {
    pub qemu: String,
    pub crosvm: String,
    pub accel: Accel,
    /// How long a guest gets to power off before it is killed.
    pub stop_timeout: Duration,
    /// How long a start may take until the agent answers.
    pub start_timeout: Duration,
}

impl Default for VmmSettings {
    fn default() -> Self {
        VmmSettings {
            qemu: "qemu-system-x86_64".into(),
            crosvm: "crosvm".into(),
            accel: Accel::Auto,
            stop_timeout: Duration(20),
            start_timeout: Duration(120),
        }
    }
}

// ---- raw schema ----

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub(crate) struct RawVm {
    pub name: Spanned<String>,
    pub color: Spanned<String>,
    #[serde(default = "default_memory")]
    memory: Spanned<Size>,
    #[serde(default = "default_cpus")]
    cpus: Spanned<u32>,
    #[serde(default = "default_vmm")]
    vmm: VmmKind,
    kernel: Option<PathBuf>,
    initramfs: Option<PathBuf>,
    root_disk: Option<PathBuf>,
    root_overlay: Option<Spanned<RawOverlay>>,
    #[serde(default)]
    kernel_params: Vec<Spanned<String>>,
    #[serde(default)]
    disk: Vec<RawDisk>,
    #[serde(default)]
    share: Vec<RawShare>,
    home: Option<Spanned<BoolOr<RawHome>>>,
    gpu: Option<BoolOr<RawGpu>>,
    sound: Option<BoolOr<RawSound>>,
    #[serde(default)]
    pci: Vec<PciAddress>,
    #[serde(default)]
    vhost_user: Vec<RawVhostUser>,
    #[serde(default)]
    network: Vec<Spanned<RawNetwork>>,
    auto_shutdown: Option<BoolOr<RawAutoShutdown>>,
    #[serde(default)]
    disposable: bool,
    #[serde(default)]
    autostart: bool,
    #[serde(default)]
    depends_on: Vec<Spanned<String>>,
    #[serde(default)]
    app: Vec<Spanned<RawApp>>,
    #[serde(default = "default_log_level")]
    log_level: LogLevel,
    #[serde(default)]
    extra_args: Vec<String>,
    #[serde(default = "yes")]
    idle_inhibit: bool,
    cid: Option<Spanned<u32>>,
}

fn default_memory() -> Spanned<Size> {
    Spanned::new(0..0, Size::mib(1024))
}
fn default_cpus() -> Spanned<u32> {
    Spanned::new(0..0, 2)
}
fn default_vmm() -> VmmKind {
    VmmKind::Auto
}
fn default_log_level() -> LogLevel {
    LogLevel::Info
}
fn yes() -> bool {
    true
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct RawOverlayTable {
    #[serde(rename = "type")]
    kind: OverlayType,
    size: Option<Size>,
}

#[derive(Deserialize, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
enum OverlayType {
    Disk,
    Tmpfs,
}

/// `root-overlay = "tmpfs"` or `root-overlay = { type = "disk", size = "2G" }`.
#[derive(Deserialize)]
#[serde(
    untagged,
    expecting = "\"disk\", \"tmpfs\" or a table { type = \"disk\", size = \"2G\" }"
)]
enum RawOverlay {
    Name(OverlayType),
    Table(RawOverlayTable),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct RawDisk {
    path: Spanned<PathBuf>,
    #[serde(default)]
    read_only: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct RawShare {
    tag: Spanned<String>,
    path: Spanned<PathBuf>,
    mount: Option<Spanned<String>>,
    #[serde(default)]
    read_only: bool,
    #[serde(default)]
    uid_map: Vec<IdMap>,
    #[serde(default)]
    gid_map: Vec<IdMap>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct RawHome {
    #[serde(default = "yes")]
    enable: bool,
    path: Option<PathBuf>,
    template: Option<PathBuf>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct RawGpu {
    #[serde(default = "yes")]
    enable: bool,
    #[serde(default)]
    context_types: Vec<Spanned<String>>,
    #[serde(default = "auto_transport")]
    transport: GpuTransport,
}

fn auto_transport() -> GpuTransport {
    GpuTransport::Auto
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct RawSound {
    #[serde(default = "yes")]
    playback: bool,
    #[serde(default)]
    capture: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct RawVhostUser {
    #[serde(rename = "type")]
    kind: Spanned<String>,
    socket: PathBuf,
}

#[derive(Deserialize, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
enum NetType {
    User,
    Tap,
    Switch,
}

#[derive(Deserialize, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
enum RawRole {
    Router,
    Client,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct RawRoute {
    to: Cidr,
    via: Ip,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct RawNetwork {
    #[serde(rename = "type")]
    kind: NetType,
    mac: Option<Spanned<Mac>>,
    address: Option<Cidr>,
    gateway: Option<Ip>,
    #[serde(default)]
    routes: Vec<RawRoute>,
    #[serde(default)]
    nameservers: Vec<Ip>,
    // tap
    name: Option<Spanned<String>>,
    host_address: Option<Cidr>,
    bridge: Option<Spanned<String>>,
    // switch
    network: Option<Spanned<String>>,
    role: Option<RawRole>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct RawAutoShutdown {
    #[serde(default = "yes")]
    enable: bool,
    after: Option<Duration>,
}

/// Validated `[[app]]` / `[[vm.app]]` entries.
pub(crate) fn apps(raw: Vec<Spanned<RawApp>>, base: &Path) -> Result<Vec<AppConfig>, Fail> {
    let mut apps: Vec<AppConfig> = Vec::new();
    for a in raw {
        let span = a.span();
        let a = a.into_inner();
        if a.name.trim().is_empty() || a.command.is_empty() || a.command[0].is_empty() {
            return fail(
                span,
                "an app needs a `name` and a `command` list, like command = [\"firefox\"]",
            );
        }
        if a.name.chars().any(char::is_control) || a.name.len() > 64 {
            return fail(
                span,
                "an app name must be at most 64 characters, without control characters",
            );
        }
        if apps.iter().any(|o| o.name == a.name) {
            return fail(
                span,
                format!(
                    "there are two apps named {:?} here; give each its own name",
                    a.name
                ),
            );
        }
        let icon = match a.icon {
            Some(i) if is_icon_file(&i) => Some(
                resolve(base, PathBuf::from(i))
                    .to_string_lossy()
                    .into_owned(),
            ),
            other => other,
        };
        apps.push(AppConfig {
            name: a.name,
            command: a.command,
            icon,
        });
    }
    Ok(apps)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub(crate) struct RawApp {
    name: String,
    command: Vec<String>,
    icon: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub(crate) struct RawVmm {
    qemu: Option<String>,
    crosvm: Option<String>,
    accel: Option<Accel>,
    stop_timeout: Option<Spanned<Duration>>,
    start_timeout: Option<Spanned<Duration>>,
}

/// Default idle time before an auto-shutdown.
pub const DEFAULT_AUTO_SHUTDOWN: Duration = Duration(15 * 60);

/// virtio-fs tags are at most 36 bytes.
const MAX_TAG: usize = 36;

/// The virtio device types `[[vm.vhost-user]]` accepts.
pub const VHOST_USER_TYPES: &[&str] = &[
    "net", "block", "fs", "sound", "gpu", "console", "rng", "vsock", "input",
];

pub(crate) type Fail = (Option<Range<usize>>, String);

fn fail<T>(span: Range<usize>, msg: impl Into<String>) -> Result<T, Fail> {
    Err((Some(span), msg.into()))
}

/// Resolves a path from the config file: relative paths are relative to the file's directory.
fn resolve(base: &Path, p: PathBuf) -> PathBuf {
    if p.is_absolute() {
        p
    } else {
        base.join(p)
    }
}

fn is_ifname(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 15
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.')
}

/// Converts one raw `[[vm]]` into its spec; `index` is its position (for the default CID).
pub(crate) fn vm_spec(raw: RawVm, index: usize, base: &Path) -> Result<VmSpec, Fail> {
    let name = raw.name.get_ref().clone();
    let mem = *raw.memory.get_ref();
    if !(Size::mib(64)..=Size::mib(1024 * 1024)).contains(&mem) {
        return fail(
            raw.memory.span(),
            format!("memory = {mem} is outside 64M..1024G; give the VM at least \"64M\""),
        );
    }
    if !(1..=256).contains(raw.cpus.get_ref()) {
        return fail(raw.cpus.span(), "cpus must be between 1 and 256");
    }
    let disposable = raw.disposable;

    let root_overlay = match raw.root_overlay {
        None => RootOverlay::Disk {
            size: Size::mib(2048),
        },
        Some(o) => {
            let span = o.span();
            match o.into_inner() {
                RawOverlay::Name(OverlayType::Tmpfs)
                | RawOverlay::Table(RawOverlayTable {
                    kind: OverlayType::Tmpfs,
                    size: None,
                }) => RootOverlay::Tmpfs,
                RawOverlay::Table(RawOverlayTable {
                    kind: OverlayType::Tmpfs,
                    size: Some(_),
                }) => {
                    return fail(
                        span,
                        "a tmpfs overlay has no size (it grows in guest memory); remove `size`",
                    )
                }
                RawOverlay::Name(OverlayType::Disk) => RootOverlay::Disk {
                    size: Size::mib(2048),
                },
                RawOverlay::Table(RawOverlayTable {
                    kind: OverlayType::Disk,
                    size,
                }) => {
                    let size = size.unwrap_or(Size::mib(2048));
                    if size < Size::mib(16) {
                        return fail(span, "the scratch disk needs at least \"16M\"");
                    }
                    RootOverlay::Disk { size }
                }
            }
        }
    };

    let mut kernel_params = Vec::new();
    for p in raw.kernel_params {
        let v = p.get_ref();
        if v.is_empty() || v.contains(char::is_whitespace) {
            return fail(
                p.span(),
                "each kernel-params entry is one parameter without spaces, like \"quiet\"",
            );
        }
        if v.starts_with("bulkhead.") {
            return fail(
                p.span(),
                "parameters starting with \"bulkhead.\" are set by Bulkhead from the VM's \
                 definition; use the matching option instead",
            );
        }
        kernel_params.push(v.clone());
    }

    let mut disks = Vec::new();
    for d in raw.disk {
        if disposable && !d.read_only {
            return fail(
                d.path.span(),
                "a disposable VM keeps nothing: its disks must be read-only = true (or make the \
                 VM not disposable)",
            );
        }
        disks.push(DiskConfig {
            path: resolve(base, d.path.into_inner()),
            read_only: d.read_only,
        });
    }

    let mut shares: Vec<ShareConfig> = Vec::new();
    for s in raw.share {
        let tag = s.tag.get_ref();
        if tag.is_empty()
            || tag.len() > MAX_TAG
            || !tag
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            return fail(
                s.tag.span(),
                format!(
                    "share tag {tag:?}: use 1 to {MAX_TAG} letters, digits, '-' or '_' \
                     (the tag the guest mounts)"
                ),
            );
        }
        if tag == "home" || shares.iter().any(|o| &o.tag == tag) {
            return fail(
                s.tag.span(),
                format!("share tag {tag:?} is already used (\"home\" is the VM's home)"),
            );
        }
        let path_text = s.path.get_ref().to_string_lossy().into_owned();
        if path_text.contains([',', ':']) {
            return fail(
                s.path.span(),
                "a shared directory's path may not contain ',' or ':' (the VMMs' option syntax)",
            );
        }
        let mount = match s.mount {
            Some(m) => {
                let v = m.get_ref();
                if !v.starts_with('/') || v.contains([',', ' ', '\t', '\n']) {
                    return fail(
                        m.span(),
                        "mount is an absolute guest path without spaces or commas, like \"/mnt/data\"",
                    );
                }
                v.clone()
            }
            None => format!("/mnt/{tag}"),
        };
        shares.push(ShareConfig {
            tag: tag.clone(),
            path: resolve(base, s.path.into_inner()),
            mount,
            read_only: s.read_only,
            uid_map: s.uid_map,
            gid_map: s.gid_map,
        });
    }

    let home = match raw.home {
        None if disposable => None,
        None => Some(HomeConfig {
            path: None,
            template: None,
        }),
        Some(h) => {
            let span = h.span();
            let table = match h.into_inner() {
                BoolOr::Bool(false) => None,
                BoolOr::Bool(true) => Some(RawHome {
                    enable: true,
                    ..RawHome::default()
                }),
                BoolOr::Table(t) if !t.enable => None,
                BoolOr::Table(t) => Some(t),
            };
            match table {
                Some(_) if disposable => {
                    return fail(
                        span,
                        "a disposable VM has no persistent home; remove `home` or set \
                         disposable = false",
                    )
                }
                Some(t) => Some(HomeConfig {
                    path: t.path.map(|p| resolve(base, p)),
                    template: t.template.map(|p| resolve(base, p)),
                }),
                None => None,
            }
        }
    };

    let gpu = match raw.gpu {
        None | Some(BoolOr::Bool(true)) => GpuConfig {
            enable: true,
            context_types: vec!["cross-domain".into()],
            transport: GpuTransport::Auto,
        },
        Some(BoolOr::Bool(false)) => GpuConfig {
            enable: false,
            context_types: Vec::new(),
            transport: GpuTransport::Auto,
        },
        Some(BoolOr::Table(g)) => {
            let mut types = Vec::new();
            for t in g.context_types {
                const KNOWN: &[&str] = &["cross-domain", "virgl", "virgl2", "venus", "gfxstream"];
                if !KNOWN.contains(&t.get_ref().as_str()) {
                    return fail(
                        t.span(),
                        format!(
                            "unknown GPU context type {:?}; known: {}",
                            t.get_ref(),
                            KNOWN.join(", ")
                        ),
                    );
                }
                types.push(t.into_inner());
            }
            if types.is_empty() {
                types.push("cross-domain".into());
            }
            GpuConfig {
                enable: g.enable,
                context_types: types,
                transport: g.transport,
            }
        }
    };

    let sound = match raw.sound {
        None | Some(BoolOr::Bool(false)) => SoundConfig {
            playback: false,
            capture: false,
        },
        Some(BoolOr::Bool(true)) => SoundConfig {
            playback: true,
            capture: false,
        },
        Some(BoolOr::Table(s)) => SoundConfig {
            playback: s.playback,
            capture: s.capture,
        },
    };

    let mut vhost_user = Vec::new();
    for v in raw.vhost_user {
        if !VHOST_USER_TYPES.contains(&v.kind.get_ref().as_str()) {
            return fail(
                v.kind.span(),
                format!(
                    "unknown vhost-user device type {:?}; known: {}",
                    v.kind.get_ref(),
                    VHOST_USER_TYPES.join(", ")
                ),
            );
        }
        vhost_user.push(VhostUserConfig {
            kind: v.kind.into_inner(),
            socket: resolve(base, v.socket),
        });
    }

    let mut networks = Vec::new();
    for (i, n) in raw.network.into_iter().enumerate() {
        let span = n.span();
        let n = n.into_inner();
        let only = |what: &str, present: bool, kind: &str| -> Result<(), Fail> {
            if present {
                fail(
                    span.clone(),
                    format!("`{what}` does not apply to a type = \"{kind}\" interface; remove it"),
                )
            } else {
                Ok(())
            }
        };
        let kind = match n.kind {
            NetType::User => {
                only("name", n.name.is_some(), "user")?;
                only("host-address", n.host_address.is_some(), "user")?;
                only("bridge", n.bridge.is_some(), "user")?;
                only("network", n.network.is_some(), "user")?;
                only("role", n.role.is_some(), "user")?;
                NetKind::User
            }
            NetType::Tap => {
                only("network", n.network.is_some(), "tap")?;
                only("role", n.role.is_some(), "tap")?;
                let Some(ifname) = n.name else {
                    return fail(
                        span,
                        "a tap interface needs `name`, the host tap device (for example \
                         \"vm-work0\")",
                    );
                };
                if !is_ifname(ifname.get_ref()) {
                    return fail(
                        ifname.span(),
                        "an interface name has 1 to 15 letters, digits, '-', '_' or '.'",
                    );
                }
                if let Some(b) = &n.bridge {
                    if !is_ifname(b.get_ref()) {
                        return fail(
                            b.span(),
                            "a bridge name has 1 to 15 letters, digits, '-', '_' or '.'",
                        );
                    }
                    if n.host_address.is_some() {
                        return fail(
                            span,
                            "give a tap interface either `host-address` or `bridge`, not both",
                        );
                    }
                }
                NetKind::Tap {
                    name: ifname.into_inner(),
                    host_address: n.host_address,
                    bridge: n.bridge.map(Spanned::into_inner),
                }
            }
            NetType::Switch => {
                only("name", n.name.is_some(), "switch")?;
                only("host-address", n.host_address.is_some(), "switch")?;
                only("bridge", n.bridge.is_some(), "switch")?;
                let Some(net) = n.network else {
                    return fail(
                        span,
                        "a switch interface needs `network`, the VM network's name",
                    );
                };
                if crate::check_vm_name(net.get_ref()).is_err() {
                    return fail(
                        net.span(),
                        "a network name has 1 to 32 lowercase letters, digits and '-', starting \
                         with a letter",
                    );
                }
                let role = match n.role {
                    Some(RawRole::Router) => SwitchRole::Router,
                    Some(RawRole::Client) | None => SwitchRole::Client,
                };
                NetKind::Switch {
                    network: net.into_inner(),
                    role,
                }
            }
        };
        let (mut address, mut gateway, mut nameservers) = (n.address, n.gateway, n.nameservers);
        if kind == NetKind::User && address.is_none() {
            // QEMU's user network: the guest is 10.0.2.15, the host 10.0.2.2, DNS 10.0.2.3.
            address = Some(Cidr {
                addr: [10, 0, 2, 15].into(),
                prefix: 24,
            });
            gateway = gateway.or(Some(Ip([10, 0, 2, 2].into())));
            if nameservers.is_empty() {
                nameservers.push(Ip([10, 0, 2, 3].into()));
            }
        }
        networks.push(NetworkConfig {
            kind,
            mac: n
                .mac
                .map(Spanned::into_inner)
                .unwrap_or_else(|| Mac::derive(&name, i)),
            address,
            gateway,
            routes: n
                .routes
                .into_iter()
                .map(|r| Route {
                    to: r.to,
                    via: r.via,
                })
                .collect(),
            nameservers,
        });
    }

    let auto_shutdown = match raw.auto_shutdown {
        None | Some(BoolOr::Bool(false)) => None,
        Some(BoolOr::Bool(true)) => Some(DEFAULT_AUTO_SHUTDOWN),
        Some(BoolOr::Table(a)) if !a.enable => None,
        Some(BoolOr::Table(a)) => Some(a.after.unwrap_or(DEFAULT_AUTO_SHUTDOWN)),
    };

    let apps = apps(raw.app, base)?;

    let cid = match raw.cid {
        Some(c) if *c.get_ref() < 3 || *c.get_ref() == u32::MAX => {
            return fail(
                c.span(),
                "cid must be at least 3 (0-2 are reserved) and below 2^32-1",
            )
        }
        Some(c) => c.into_inner(),
        None => 3 + index as u32,
    };

    Ok(VmSpec {
        memory: mem,
        cpus: *raw.cpus.get_ref(),
        vmm: raw.vmm,
        kernel: raw.kernel.map(|p| resolve(base, p)),
        initramfs: raw.initramfs.map(|p| resolve(base, p)),
        root_disk: raw.root_disk.map(|p| resolve(base, p)),
        root_overlay,
        kernel_params,
        disks,
        shares,
        home,
        gpu,
        sound,
        pci: raw.pci,
        vhost_user,
        networks,
        auto_shutdown,
        disposable,
        autostart: raw.autostart,
        depends_on: raw.depends_on.iter().map(|d| d.get_ref().clone()).collect(),
        apps,
        log_level: raw.log_level,
        extra_args: raw.extra_args,
        idle_inhibit: raw.idle_inhibit,
        cid,
    })
}

/// What [`check_vms`] needs to know of each VM besides its spec.
pub(crate) struct VmSpans {
    pub depends_on: Vec<Spanned<String>>,
    pub cid: Range<usize>,
    pub networks: Vec<Range<usize>>,
    pub name: Range<usize>,
}

impl RawVm {
    pub(crate) fn spans(&self) -> VmSpans {
        VmSpans {
            depends_on: self.depends_on.clone(),
            cid: self
                .cid
                .as_ref()
                .map_or_else(|| self.name.span(), |c| c.span()),
            networks: self.network.iter().map(|n| n.span()).collect(),
            name: self.name.span(),
        }
    }
}

/// Checks across VMs: dependencies exist and have no cycle, CIDs and MACs are unique, a switch
/// network has at most one router.
pub(crate) fn check_vms(vms: &[(&str, &VmSpec, VmSpans)]) -> Result<(), Fail> {
    let names: BTreeSet<&str> = vms.iter().map(|(n, _, _)| *n).collect();
    for (name, _, spans) in vms {
        for d in &spans.depends_on {
            let dep = d.get_ref().as_str();
            if dep == *name {
                return fail(d.span(), format!("VM {name:?} cannot depend on itself"));
            }
            if !names.contains(dep) {
                let defined: Vec<&str> = names.iter().copied().collect();
                return fail(
                    d.span(),
                    format!(
                        "depends-on names VM {dep:?}, which is not defined; defined: {}",
                        defined.join(", ")
                    ),
                );
            }
        }
    }
    // Cycles: depth-first search from every VM.
    let deps: BTreeMap<&str, Vec<&str>> = vms
        .iter()
        .map(|(n, s, _)| (*n, s.depends_on.iter().map(String::as_str).collect()))
        .collect();
    for (name, _, spans) in vms {
        let mut stack = vec![(*name, vec![*name])];
        while let Some((at, path)) = stack.pop() {
            for next in deps.get(at).into_iter().flatten() {
                if *next == *name {
                    let mut cycle = path.clone();
                    cycle.push(next);
                    return fail(
                        spans.name.clone(),
                        format!(
                            "depends-on forms a cycle: {}; remove one of these dependencies",
                            cycle.join(" -> ")
                        ),
                    );
                }
                if !path.contains(next) && path.len() <= vms.len() {
                    let mut p = path.clone();
                    p.push(next);
                    stack.push((next, p));
                }
            }
        }
    }
    let mut cids: BTreeMap<u32, &str> = BTreeMap::new();
    let mut macs: BTreeMap<Mac, &str> = BTreeMap::new();
    let mut routers: BTreeMap<&str, &str> = BTreeMap::new();
    for (name, spec, spans) in vms {
        if let Some(other) = cids.insert(spec.cid, name) {
            return fail(
                spans.cid.clone(),
                format!(
                    "VM {name:?} and VM {other:?} have the same vsock cid {}; give one a \
                     different `cid`",
                    spec.cid
                ),
            );
        }
        for (n, span) in spec.networks.iter().zip(&spans.networks) {
            if let Some(other) = macs.insert(n.mac, name) {
                return fail(
                    span.clone(),
                    format!(
                        "MAC {} is already used by an interface of VM {other:?}; set another `mac`",
                        n.mac
                    ),
                );
            }
            if let NetKind::Switch {
                network,
                role: SwitchRole::Router,
            } = &n.kind
            {
                if let Some(other) = routers.insert(network, name) {
                    return fail(
                        span.clone(),
                        format!(
                            "network {network:?} already has a router (VM {other:?}); a network \
                             has one router, the other VMs are clients"
                        ),
                    );
                }
            }
        }
    }
    Ok(())
}

impl Ord for Mac {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.0.cmp(&other.0)
    }
}

impl PartialOrd for Mac {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

pub(crate) fn vmm_settings(raw: RawVmm) -> Result<VmmSettings, Fail> {
    let d = VmmSettings::default();
    let timeout = |t: Option<Spanned<Duration>>, default: Duration| -> Result<Duration, Fail> {
        match t {
            Some(t) if t.get_ref().0 == 0 || t.get_ref().0 > 3600 => {
                fail(t.span(), "timeouts are between 1 s and 1 h")
            }
            Some(t) => Ok(t.into_inner()),
            None => Ok(default),
        }
    };
    Ok(VmmSettings {
        qemu: raw.qemu.unwrap_or(d.qemu),
        crosvm: raw.crosvm.unwrap_or(d.crosvm),
        accel: raw.accel.unwrap_or(d.accel),
        stop_timeout: timeout(raw.stop_timeout, d.stop_timeout)?,
        start_timeout: timeout(raw.start_timeout, d.start_timeout)?,
    })
}
