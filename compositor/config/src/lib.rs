//! Bulkhead's configuration: schema, lookup and validation.
//!
//! Parsing happens in two steps: `toml` + serde into the raw schema (which keeps the source span
//! of every value that needs a semantic check), then [`Config::from_raw`] validates names,
//! colours and key bindings and reports the first problem as a [`ConfigError`] that names
//! `file:line:col` and what to change.

mod action;
pub mod desktop;
mod keys;
pub mod values;
pub mod vm;

use std::collections::BTreeMap;
use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use toml::Spanned;

pub use action::{Action, ACTION_NAMES};
pub use keys::{lowercase_keysym, KeyCombo, Modifiers};
use values::{Duration, Size};
pub use vm::{VmSpec, VmmSettings};

/// The name reserved for the trusted host domain.
pub const HOST_DOMAIN: &str = "host";

/// `sizeof(sockaddr_un.sun_path)` on Linux, including the terminating NUL.
pub const SUN_PATH_MAX: usize = 108;

/// The example configuration shipped with Bulkhead (also what `bulkhead validate` is tested on).
pub const EXAMPLE_CONFIG: &str = include_str!("../example-config.toml");

/// A configuration problem, with its position when it comes from a file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub file: PathBuf,
    /// 1-based line and column, when the problem is at a place in the file.
    pub position: Option<(usize, usize)>,
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.position {
            Some((line, col)) => {
                write!(f, "{}:{line}:{col}: {}", self.file.display(), self.message)
            }
            None => write!(f, "{}: {}", self.file.display(), self.message),
        }
    }
}

impl std::error::Error for ConfigError {}

/// An sRGB colour without alpha: frames are always opaque.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Color {
    pub r: u8,
    pub g: u8,
    pub b: u8,
}

impl Color {
    pub const fn rgb(r: u8, g: u8, b: u8) -> Self {
        Color { r, g, b }
    }

    /// Parses `#rrggbb`.
    pub fn parse(s: &str) -> Result<Self, String> {
        let hex = s
            .strip_prefix('#')
            .filter(|h| h.len() == 6 && h.bytes().all(|b| b.is_ascii_hexdigit()))
            .ok_or_else(|| {
                format!("colour {s:?} is not of the form \"#rrggbb\" (for example \"#3060ff\")")
            })?;
        let byte = |i: usize| u8::from_str_radix(&hex[i..i + 2], 16).unwrap_or(0);
        Ok(Color::rgb(byte(0), byte(2), byte(4)))
    }

    /// Components as `[r, g, b, a]` floats in 0..=1 (alpha always 1).
    pub fn to_f32(self) -> [f32; 4] {
        [
            self.r as f32 / 255.0,
            self.g as f32 / 255.0,
            self.b as f32 / 255.0,
            1.0,
        ]
    }

    /// Relative luminance (WCAG), used to pick black or white text on this colour.
    pub fn luminance(self) -> f32 {
        fn lin(c: u8) -> f32 {
            let c = c as f32 / 255.0;
            if c <= 0.04045 {
                c / 12.92
            } else {
                ((c + 0.055) / 1.055).powf(2.4)
            }
        }
        0.2126 * lin(self.r) + 0.7152 * lin(self.g) + 0.0722 * lin(self.b)
    }

    /// Black or white, whichever contrasts more with `self`.
    pub fn text_color(self) -> Color {
        // Contrast ratio against white equals the one against black at luminance ~0.179.
        if self.luminance() > 0.179 {
            Color::rgb(0, 0, 0)
        } else {
            Color::rgb(255, 255, 255)
        }
    }
}

impl fmt::Display for Color {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "#{:02x}{:02x}{:02x}", self.r, self.g, self.b)
    }
}

/// One VM domain.
#[derive(Debug, Clone, PartialEq)]
pub struct VmConfig {
    pub name: String,
    pub color: Color,
    /// How it runs: memory, disks, networks, ...
    pub spec: VmSpec,
    /// Where `name` was written, to point at it from later checks (socket path length).
    name_span: Range<usize>,
}

/// Keyboard layout and repeat.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case", default)]
pub struct KeyboardConfig {
    pub layout: String,
    pub variant: String,
    pub options: String,
    pub model: String,
    pub rules: String,
    /// Key repeats per second; 0 disables repeat.
    pub repeat_rate: i32,
    /// Milliseconds before a held key starts repeating.
    pub repeat_delay: i32,
}

impl Default for KeyboardConfig {
    fn default() -> Self {
        KeyboardConfig {
            layout: String::new(),
            variant: String::new(),
            options: String::new(),
            model: String::new(),
            rules: String::new(),
            repeat_rate: 25,
            repeat_delay: 600,
        }
    }
}

/// Sizes and colours of what the compositor draws.
#[derive(Debug, Clone, PartialEq)]
pub struct Appearance {
    pub border_width: i32,
    pub title_height: i32,
    pub host_color: Color,
    pub background: Color,
}

impl Default for Appearance {
    fn default() -> Self {
        Appearance {
            border_width: 4,
            title_height: 24,
            host_color: Color::rgb(0x5a, 0x5a, 0x5a),
            background: Color::rgb(0x1e, 0x1e, 0x24),
        }
    }
}

/// Outputs of the headless backend (tests, screenshots, benchmarks).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case", default)]
pub struct HeadlessConfig {
    /// How many outputs, laid out left to right.
    pub outputs: u32,
    pub width: i32,
    pub height: i32,
    /// Frames per second.
    pub refresh: u32,
    pub scale: f64,
}

impl Default for HeadlessConfig {
    fn default() -> Self {
        HeadlessConfig {
            outputs: 1,
            width: 1280,
            height: 800,
            refresh: 60,
            scale: 1.0,
        }
    }
}

/// A key binding.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Binding {
    pub combo: KeyCombo,
    pub action: Action,
}

/// The whole validated configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// The file it came from (or a placeholder for built-in defaults).
    pub source: PathBuf,
    pub vms: Vec<VmConfig>,
    pub vmm: VmmSettings,
    pub keyboard: KeyboardConfig,
    pub appearance: Appearance,
    pub headless: HeadlessConfig,
    pub bindings: Vec<Binding>,
    pub clipboard: ClipboardConfig,
    /// Host apps for the launcher (`[[app]]`).
    pub apps: Vec<vm::AppConfig>,
    pub session: SessionConfig,
    /// Monitor settings by connector name (`[[output]]`).
    pub outputs: Vec<desktop::OutputConfig>,
    /// Input device settings (`[[input]]`), applied in order.
    pub inputs: Vec<desktop::InputConfig>,
}

/// What the session starts and when it locks (`[session]`).
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case", default)]
pub struct SessionConfig {
    /// Host command lines started with the session (through `sh -c`), e.g. "waybar".
    pub autostart: Vec<String>,
    /// The command that locks the screen, e.g. "swaylock -f".
    pub lock: Option<String>,
    /// Run `lock` after this long without input (none: never).
    pub idle_lock: Option<Duration>,
    /// Blank the monitors (DPMS off) after this long without input (none: never).
    pub dpms: Option<Duration>,
    /// Run Xwayland for host X11 apps (unset: when it is installed).
    pub xwayland: Option<bool>,
    /// Export WAYLAND_DISPLAY, XDG_CURRENT_DESKTOP (and DISPLAY) to the systemd user manager
    /// and D-Bus (unset: only on the DRM backend, the real session).
    pub export_environment: Option<bool>,
    /// How long after a launch (launcher, vm-run) its VM's first window may still take the
    /// keyboard (unset: 120s). Other new VM windows open without focus.
    pub launch_focus: Option<Duration>,
    /// How the DRM session draws: GLES when the GPU's EGL works, else pixman (`auto`), or
    /// always pixman on the CPU (`pixman`).
    pub renderer: Renderer,
}

/// The DRM session's renderer (`[session] renderer`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Renderer {
    /// GLES through GBM and EGL; pixman into dumb buffers when those fail.
    #[default]
    Auto,
    /// pixman into dumb buffers, never GLES.
    Pixman,
}

/// The two-level clipboard (`[clipboard]`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClipboardConfig {
    /// The most a copy into the global clipboard takes, all types together.
    pub max_size: Size,
    /// How long the source domain has to hand over its clipboard.
    pub timeout: Duration,
    /// Whether the global clipboard keeps its contents after a paste (Qubes empties it).
    pub keep_after_paste: bool,
}

impl Default for ClipboardConfig {
    fn default() -> Self {
        ClipboardConfig {
            max_size: Size::mib(16),
            timeout: Duration(5),
            keep_after_paste: false,
        }
    }
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct RawClipboard {
    max_size: Option<Spanned<Size>>,
    timeout: Option<Spanned<Duration>>,
    keep_after_paste: Option<bool>,
}

// ---- raw schema, as written in the file ----

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct RawConfig {
    #[serde(default)]
    vm: Vec<vm::RawVm>,
    #[serde(default)]
    vmm: vm::RawVmm,
    #[serde(default)]
    keyboard: KeyboardConfig,
    #[serde(default)]
    appearance: RawAppearance,
    headless: Option<Spanned<HeadlessConfig>>,
    #[serde(default)]
    binds: BTreeMap<Spanned<String>, Spanned<String>>,
    #[serde(default)]
    clipboard: RawClipboard,
    #[serde(default)]
    app: Vec<Spanned<vm::RawApp>>,
    session: Option<Spanned<SessionConfig>>,
    #[serde(default)]
    output: Vec<Spanned<desktop::OutputConfig>>,
    #[serde(default)]
    input: Vec<Spanned<desktop::InputConfig>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct RawAppearance {
    border_width: Option<Spanned<i32>>,
    title_height: Option<Spanned<i32>>,
    host_color: Option<Spanned<String>>,
    background: Option<Spanned<String>>,
}

/// The default key bindings; `[binds]` entries override or add to them (`"none"` removes one).
pub const DEFAULT_BINDINGS: &[(&str, &str)] = &[
    ("Alt+Tab", "focus-next"),
    ("Alt+Shift+Tab", "focus-prev"),
    ("Super+Q", "close"),
    ("Super+F", "fullscreen"),
    ("Super+M", "maximize"),
    ("Super+H", "minimize"),
    ("Super+Escape", "escape"),
    ("Super+Shift+E", "quit"),
    ("Ctrl+Shift+C", "clipboard-copy"),
    ("Ctrl+Shift+V", "clipboard-paste"),
    ("Super", "launcher"),
];

impl Config {
    /// Reads and validates the file at `path`.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
            file: path.to_owned(),
            position: None,
            message: format!("cannot read the config file: {e}"),
        })?;
        Config::parse(&text, path)
    }

    /// The configuration used when no file exists: no VMs, default everything.
    pub fn builtin_default() -> Config {
        // The empty document is valid by construction; a failure here is a bug in the defaults.
        Config::parse("", Path::new("<built-in defaults>"))
            .unwrap_or_else(|e| panic!("built-in default config is invalid: {e}"))
    }

    /// Parses and validates `text`; `file` is only used in messages.
    pub fn parse(text: &str, file: &Path) -> Result<Config, ConfigError> {
        let err = |span: Option<Range<usize>>, message: String| ConfigError {
            file: file.to_owned(),
            position: span.map(|s| line_col(text, s.start)),
            message,
        };
        let raw: RawConfig = toml::from_str(text).map_err(|e| {
            // toml's message repeats the whole snippet; keep its first line, which says what.
            let msg = e
                .message()
                .lines()
                .next()
                .unwrap_or("invalid TOML")
                .to_string();
            err(e.span(), hint_for_toml_error(&msg))
        })?;

        // Relative paths in the file are relative to the file, wherever Bulkhead runs from.
        let absolute = if file.is_absolute() {
            file.to_owned()
        } else {
            std::env::current_dir()
                .map(|d| d.join(file))
                .unwrap_or_else(|_| file.to_owned())
        };
        let base = absolute.parent().unwrap_or(Path::new("/"));
        let mut vms: Vec<VmConfig> = Vec::with_capacity(raw.vm.len());
        let mut vm_spans = Vec::with_capacity(raw.vm.len());
        for (index, vm) in raw.vm.into_iter().enumerate() {
            let name = vm.name.get_ref();
            check_vm_name(name).map_err(|m| err(Some(vm.name.span()), m))?;
            if let Some(first) = vms.iter().find(|v| &v.name == name) {
                let (line, _) = line_col(text, first.name_span.start);
                return Err(err(
                    Some(vm.name.span()),
                    format!("VM name {name:?} is already used on line {line}; every VM needs its own name"),
                ));
            }
            let color =
                Color::parse(vm.color.get_ref()).map_err(|m| err(Some(vm.color.span()), m))?;
            let name = name.clone();
            let name_span = vm.name.span();
            vm_spans.push(vm.spans());
            let spec = vm::vm_spec(vm, index, base).map_err(|(span, m)| err(span, m))?;
            vms.push(VmConfig {
                name,
                color,
                spec,
                name_span,
            });
        }
        let checks: Vec<_> = vms
            .iter()
            .zip(vm_spans)
            .map(|(v, spans)| (v.name.as_str(), &v.spec, spans))
            .collect();
        vm::check_vms(&checks).map_err(|(span, m)| err(span, m))?;
        let vmm = vm::vmm_settings(raw.vmm).map_err(|(span, m)| err(span, m))?;

        let mut appearance = Appearance::default();
        let a = raw.appearance;
        if let Some(bw) = a.border_width {
            if !(1..=32).contains(bw.get_ref()) {
                return Err(err(
                    Some(bw.span()),
                    "border-width must be between 1 and 32 pixels".into(),
                ));
            }
            appearance.border_width = *bw.get_ref();
        }
        if let Some(th) = a.title_height {
            if !(16..=64).contains(th.get_ref()) {
                return Err(err(
                    Some(th.span()),
                    "title-height must be between 16 and 64 pixels (the VM label must stay readable)".into(),
                ));
            }
            appearance.title_height = *th.get_ref();
        }
        if let Some(c) = a.host_color {
            appearance.host_color =
                Color::parse(c.get_ref()).map_err(|m| err(Some(c.span()), m))?;
        }
        if let Some(c) = a.background {
            appearance.background =
                Color::parse(c.get_ref()).map_err(|m| err(Some(c.span()), m))?;
        }

        let headless = match raw.headless {
            Some(h) => {
                let span = h.span();
                let h = h.into_inner();
                check_headless(&h).map_err(|m| err(Some(span), m))?;
                h
            }
            None => HeadlessConfig::default(),
        };

        if raw.keyboard.repeat_rate < 0 || raw.keyboard.repeat_delay < 0 {
            return Err(err(
                None,
                "[keyboard] repeat-rate and repeat-delay must not be negative".into(),
            ));
        }

        let mut bindings: Vec<Binding> = Vec::new();
        for (combo, action) in DEFAULT_BINDINGS {
            let combo =
                KeyCombo::parse(combo).unwrap_or_else(|e| panic!("default binding {combo}: {e}"));
            let action =
                Action::parse(action).unwrap_or_else(|e| panic!("default binding {action}: {e}"));
            bindings.push(Binding { combo, action });
        }
        for (combo, action) in raw.binds {
            let parsed =
                KeyCombo::parse(combo.get_ref()).map_err(|m| err(Some(combo.span()), m))?;
            bindings.retain(|b| b.combo != parsed);
            if action.get_ref().trim() == "none" {
                continue;
            }
            let action =
                Action::parse(action.get_ref()).map_err(|m| err(Some(action.span()), m))?;
            bindings.push(Binding {
                combo: parsed,
                action,
            });
        }

        let mut clipboard = ClipboardConfig::default();
        if let Some(m) = raw.clipboard.max_size {
            if !(Size(1024)..=Size::mib(1024)).contains(m.get_ref()) {
                return Err(err(
                    Some(m.span()),
                    "[clipboard] max-size must be between 1K and 1G".into(),
                ));
            }
            clipboard.max_size = *m.get_ref();
        }
        if let Some(t) = raw.clipboard.timeout {
            if !(1..=600).contains(&t.get_ref().0) {
                return Err(err(
                    Some(t.span()),
                    "[clipboard] timeout must be between 1s and 10m".into(),
                ));
            }
            clipboard.timeout = *t.get_ref();
        }
        if let Some(k) = raw.clipboard.keep_after_paste {
            clipboard.keep_after_paste = k;
        }

        let apps = vm::apps(raw.app, base).map_err(|(span, m)| err(span, m))?;
        let session = match raw.session {
            Some(s) => {
                let span = s.span();
                let s = s.into_inner();
                if s.idle_lock.is_some() && s.lock.as_deref().is_none_or(|l| l.trim().is_empty()) {
                    return Err(err(
                        Some(span),
                        "[session] idle-lock needs a lock command, e.g. lock = \"swaylock -f\""
                            .into(),
                    ));
                }
                if s.idle_lock.is_some_and(|d| d.0 == 0) {
                    return Err(err(
                        Some(span),
                        "[session] idle-lock must be at least 1s".into(),
                    ));
                }
                if s.launch_focus.is_some_and(|d| d.0 > 3600) {
                    return Err(err(
                        Some(span),
                        "[session] launch-focus must be at most 1h".into(),
                    ));
                }
                if s.dpms.is_some_and(|d| d.0 == 0) {
                    return Err(err(Some(span), "[session] dpms must be at least 1s".into()));
                }
                if s.autostart.iter().any(|c| c.trim().is_empty()) {
                    return Err(err(
                        Some(span),
                        "[session] autostart has an empty command".into(),
                    ));
                }
                s
            }
            None => SessionConfig::default(),
        };

        let output_spans: Vec<_> = raw.output.iter().map(|o| o.span()).collect();
        let outputs: Vec<_> = raw.output.into_iter().map(|o| o.into_inner()).collect();
        desktop::check_outputs(&outputs).map_err(|(i, m)| err(output_spans.get(i).cloned(), m))?;
        let input_spans: Vec<_> = raw.input.iter().map(|o| o.span()).collect();
        let inputs: Vec<_> = raw.input.into_iter().map(|o| o.into_inner()).collect();
        desktop::check_inputs(&inputs).map_err(|(i, m)| err(input_spans.get(i).cloned(), m))?;

        Ok(Config {
            apps,
            session,
            outputs,
            inputs,
            source: file.to_owned(),
            vms,
            vmm,
            keyboard: raw.keyboard,
            appearance,
            headless,
            bindings,
            clipboard,
        })
    }

    /// Finds the config file: `explicit`, else `$XDG_CONFIG_HOME/bulkhead/config.toml`
    /// (`~/.config/...`), else `/etc/bulkhead/config.toml`. `None` when none exists.
    pub fn locate(explicit: Option<&Path>) -> Option<PathBuf> {
        if let Some(p) = explicit {
            return Some(p.to_owned());
        }
        let config_home = std::env::var_os("XDG_CONFIG_HOME")
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
            .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".config")));
        let candidates = config_home
            .map(|d| d.join("bulkhead/config.toml"))
            .into_iter()
            .chain(std::iter::once(PathBuf::from("/etc/bulkhead/config.toml")));
        candidates.into_iter().find(|p| p.exists())
    }

    /// The Wayland socket of VM `name` under the given runtime dir.
    pub fn vm_socket_path(runtime_dir: &Path, name: &str) -> PathBuf {
        runtime_dir
            .join("bulkhead")
            .join("vms")
            .join(name)
            .join("wayland-0")
    }

    /// Checks that every VM's socket path fits in `sun_path` under `runtime_dir`.
    pub fn check_socket_paths(&self, runtime_dir: &Path) -> Result<(), ConfigError> {
        let text = std::fs::read_to_string(&self.source).ok();
        for vm in &self.vms {
            let path = Self::vm_socket_path(runtime_dir, &vm.name);
            let len = path.as_os_str().len();
            if len >= SUN_PATH_MAX {
                return Err(ConfigError {
                    file: self.source.clone(),
                    position: text.as_deref().map(|t| line_col(t, vm.name_span.start)),
                    message: format!(
                        "the Wayland socket of VM {:?} would be {} ({len} bytes), longer than the \
                         {} bytes a Unix socket path may have; shorten the VM name or use a shorter \
                         XDG_RUNTIME_DIR",
                        vm.name,
                        path.display(),
                        SUN_PATH_MAX - 1
                    ),
                });
            }
        }
        Ok(())
    }

    pub fn vm(&self, name: &str) -> Option<&VmConfig> {
        self.vms.iter().find(|v| v.name == name)
    }
}

fn hint_for_toml_error(msg: &str) -> String {
    if msg.starts_with("unknown field") {
        format!("{msg}; remove it or check its spelling")
    } else if msg.starts_with("missing field") {
        format!("{msg}; add it")
    } else {
        msg.to_string()
    }
}

/// Checks a VM name: `^[a-z][a-z0-9-]{0,31}$` and not the reserved `host`.
pub fn check_vm_name(name: &str) -> Result<(), String> {
    let valid = name.len() <= 32
        && name.bytes().next().is_some_and(|b| b.is_ascii_lowercase())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    if !valid {
        return Err(format!(
            "VM name {name:?} is not allowed: use 1 to 32 characters, lowercase letters, digits and \
             '-', starting with a letter (for example \"work\" or \"banking-2\")"
        ));
    }
    if name == HOST_DOMAIN {
        return Err("VM name \"host\" is reserved for the host domain; pick another name".into());
    }
    Ok(())
}

fn check_headless(h: &HeadlessConfig) -> Result<(), String> {
    if !(1..=8).contains(&h.outputs) {
        return Err("[headless] outputs must be between 1 and 8".into());
    }
    if !(64..=8192).contains(&h.width) || !(64..=8192).contains(&h.height) {
        return Err("[headless] width and height must be between 64 and 8192 pixels".into());
    }
    if !(1..=1000).contains(&h.refresh) {
        return Err("[headless] refresh must be between 1 and 1000 frames per second".into());
    }
    if !(h.scale.is_finite() && (0.5..=4.0).contains(&h.scale)) {
        return Err("[headless] scale must be between 0.5 and 4".into());
    }
    Ok(())
}

/// 1-based line and column (in characters) of byte `offset` in `text`.
pub fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(text.len());
    let before = &text[..floor_char_boundary(text, offset)];
    let line = before.matches('\n').count() + 1;
    let col = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, col)
}

fn floor_char_boundary(s: &str, mut i: usize) -> usize {
    while i > 0 && !s.is_char_boundary(i) {
        i -= 1;
    }
    i
}

#[cfg(test)]
mod tests;
