//! The launcher: a menu the compositor draws in its reserved top layer (no client can cover or
//! imitate it), listing each domain in its colour with its state and its apps. Type to filter,
//! Up/Down (or the pointer) to choose, Enter (or a click) to run, Escape to close. A VM app runs
//! through the same path as `vm-run`, booting the VM first when it is stopped.
//!
//! Also writes a `.desktop` file per VM app into `$XDG_DATA_HOME/applications` (`Exec=vm-run
//! VM …`, the VM's name in the entry's name) so host launchers list them too.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use bulkhead_config::{Color, Config};
use bulkhead_ipc::VmState;
use smithay::backend::allocator::Fourcc;
use smithay::backend::renderer::element::memory::MemoryRenderBuffer;
use smithay::utils::{Logical, Point, Rectangle, Transform};

use crate::domain::Domain;
use crate::state::{Desktop, State};
use crate::text;

pub const WIDTH: i32 = 520;
pub const ROW: i32 = 28;
/// Rows shown at most (the list scrolls with the selection).
pub const MAX_ROWS: usize = 18;
const STRIP: i32 = 6;
const BACKGROUND: Color = Color::rgb(0x26, 0x26, 0x2c);
const SELECTED: Color = Color::rgb(0x44, 0x44, 0x50);
const HEADER: Color = Color::rgb(0x1c, 0x1c, 0x20);
const TEXT: Color = Color::rgb(0xee, 0xee, 0xee);

/// One app the launcher can run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub domain: Domain,
    pub name: String,
    pub command: Vec<String>,
    /// Its icon's file, drawn once decoded (`crate::icons`).
    pub icon: Option<PathBuf>,
}

/// Every app of the config: the host's (`[[app]]`), then each VM's in config order.
pub fn entries(config: &Config) -> Vec<Entry> {
    let host = config.apps.iter().map(|a| Entry {
        domain: Domain::Host,
        name: a.name.clone(),
        command: a.command.clone(),
        icon: a.icon_file().map(Path::to_path_buf),
    });
    let vms = config.vms.iter().flat_map(|vm| {
        vm.spec.apps.iter().map(move |a| Entry {
            domain: Domain::Vm(vm.name.as_str().into()),
            name: a.name.clone(),
            command: a.command.clone(),
            icon: a.icon_file().map(Path::to_path_buf),
        })
    });
    host.chain(vms).collect()
}

/// A row of the menu.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Row {
    Search,
    Domain(Domain),
    App(usize),
    Nothing,
}

/// The open launcher.
pub struct Launcher {
    pub filter: String,
    /// Index into the matching apps.
    pub selected: usize,
    pub entries: Vec<Entry>,
    /// VM states when it opened.
    pub states: HashMap<String, VmState>,
    pub buffer: MemoryRenderBuffer,
    rows: Vec<Row>,
}

impl Launcher {
    /// Indices into `entries` of the apps matching the filter (name or domain, any case).
    pub fn matching(&self) -> Vec<usize> {
        let f = self.filter.to_lowercase();
        (0..self.entries.len())
            .filter(|&i| {
                let e = &self.entries[i];
                f.is_empty()
                    || e.name.to_lowercase().contains(&f)
                    || e.domain.name().to_lowercase().contains(&f)
            })
            .collect()
    }

    fn layout(&mut self) {
        let matching = self.matching();
        self.selected = self.selected.min(matching.len().saturating_sub(1));
        let mut rows = Vec::new();
        let mut last: Option<&Domain> = None;
        for &i in &matching {
            let d = &self.entries[i].domain;
            if last != Some(d) {
                rows.push(Row::Domain(d.clone()));
                last = Some(d);
            }
            rows.push(Row::App(i));
        }
        if rows.is_empty() {
            rows.push(Row::Nothing);
        }
        // Keep the selected app in view.
        let sel = matching
            .get(self.selected)
            .and_then(|s| rows.iter().position(|r| *r == Row::App(*s)))
            .unwrap_or(0);
        let room = MAX_ROWS - 1;
        let first = sel
            .saturating_sub(room - 1)
            .min(rows.len().saturating_sub(room));
        let mut shown = vec![Row::Search];
        shown.extend(rows.into_iter().skip(first).take(room));
        self.rows = shown;
    }

    fn render(&mut self, colors: &dyn Fn(&Domain) -> Color, icons: &crate::icons::Icons) {
        self.layout();
        let matching = self.matching();
        let selected = matching.get(self.selected).copied();
        let h = self.rows.len() as i32 * ROW;
        let mut pixels = Vec::with_capacity((WIDTH * h * 4) as usize);
        for row in &self.rows {
            let (line, bg, strip) = match row {
                Row::Search => (format!("Run: {}_", self.filter), BACKGROUND, None),
                Row::Domain(d) => {
                    let state = match d {
                        Domain::Host | Domain::Unknown(_) => String::new(),
                        Domain::Vm(n) => match self.states.get(&**n) {
                            Some(VmState::Running) => " running".into(),
                            Some(VmState::Starting) => " starting".into(),
                            Some(VmState::Stopping) => " stopping".into(),
                            _ => " stopped".into(),
                        },
                    };
                    (format!("[{}]{state}", d.name()), HEADER, Some(colors(d)))
                }
                Row::App(i) => {
                    let e = &self.entries[*i];
                    let bg = if Some(*i) == selected {
                        SELECTED
                    } else {
                        BACKGROUND
                    };
                    (format!("    {}", e.name), bg, Some(colors(&e.domain)))
                }
                Row::Nothing => (
                    format!("No app matches {:?}", self.filter),
                    BACKGROUND,
                    None,
                ),
            };
            let mut img = text::render_line(&line, WIDTH, ROW, STRIP + 10, TEXT, bg, false);
            // An app's icon, in the indent before its name, over the row's background.
            let icon = match row {
                Row::App(i) => self.entries[*i].icon.as_deref().and_then(|p| icons.get(p)),
                _ => None,
            };
            if let Some(icon) = icon {
                blend_icon(&mut img.pixels, icon, bg);
            }
            if let Some(c) = strip {
                for y in 0..ROW as usize {
                    for x in 0..STRIP as usize {
                        let i = (y * WIDTH as usize + x) * 4;
                        img.pixels[i..i + 4].copy_from_slice(&[c.b, c.g, c.r, 0xff]);
                    }
                }
            }
            pixels.extend_from_slice(&img.pixels);
        }
        self.buffer = MemoryRenderBuffer::from_slice(
            &pixels,
            Fourcc::Argb8888,
            (WIDTH, h),
            1,
            Transform::Normal,
            None,
        );
    }

    /// The app under `y` pixels from the launcher's top, if any.
    fn app_at(&self, y: i32) -> Option<usize> {
        match self.rows.get((y / ROW).max(0) as usize) {
            Some(Row::App(i)) if y >= 0 => Some(*i),
            _ => None,
        }
    }

    pub fn size(&self) -> (i32, i32) {
        (WIDTH, self.rows.len() as i32 * ROW)
    }
}

/// Where an app's icon sits in its row: after the domain strip, centred in height.
pub const ICON_X: i32 = STRIP + 10;
pub const ICON_Y: i32 = (ROW - crate::icons::SIZE as i32) / 2;

/// Draws `icon` (premultiplied) over a row image (B, G, R, A, [`WIDTH`] wide) whose
/// background is `bg`.
fn blend_icon(row: &mut [u8], icon: &crate::icons::Icon, bg: Color) {
    let size = crate::icons::SIZE as usize;
    for y in 0..size {
        for x in 0..size {
            let s = &icon.bgra[(y * size + x) * 4..][..4];
            let i = ((ICON_Y as usize + y) * WIDTH as usize + ICON_X as usize + x) * 4;
            let keep = 255 - s[3] as u16;
            let back = [bg.b, bg.g, bg.r];
            for c in 0..3 {
                row[i + c] = (s[c] as u16 + (back[c] as u16 * keep + 127) / 255).min(255) as u8;
            }
            row[i + 3] = 0xff;
        }
    }
}

/// Where the open launcher is: centred on the first output, a fifth of the way down.
pub fn geometry(desk: &Desktop) -> Option<Rectangle<i32, Logical>> {
    let l = desk.launcher.as_ref()?;
    let out = desk.space.outputs().next()?;
    let geo = desk.space.output_geometry(out)?;
    let (w, h) = l.size();
    Some(Rectangle::new(
        (geo.loc.x + (geo.size.w - w) / 2, geo.loc.y + geo.size.h / 5).into(),
        (w, h).into(),
    ))
}

impl State {
    pub fn launcher_toggle(&mut self) {
        if self.desk.launcher.take().is_some() {
            self.desk.request_redraw();
            return;
        }
        let states = self
            .vms
            .as_ref()
            .map(|m| m.list().into_iter().map(|v| (v.name, v.state)).collect())
            .unwrap_or_default();
        let mut l = Launcher {
            filter: String::new(),
            selected: 0,
            entries: entries(&self.desk.config),
            states,
            buffer: MemoryRenderBuffer::new(Fourcc::Argb8888, (1, 1), 1, Transform::Normal, None),
            rows: Vec::new(),
        };
        let desk = &self.desk;
        l.render(&|d| desk.domain_color(d), &desk.icons);
        self.desk.launcher = Some(l);
        self.desk.request_redraw();
    }

    pub fn launcher_redraw(&mut self) {
        if let Some(mut l) = self.desk.launcher.take() {
            let desk = &self.desk;
            l.render(&|d| desk.domain_color(d), &desk.icons);
            self.desk.launcher = Some(l);
            self.desk.request_redraw();
        }
    }

    /// A key while the launcher is open (it takes every key). `sym` is the keysym with
    /// modifiers applied.
    pub fn launcher_key(&mut self, sym: u32, ch: Option<char>) {
        use smithay::input::keyboard::keysyms as k;
        let Some(l) = self.desk.launcher.as_mut() else {
            return;
        };
        match sym {
            k::KEY_Escape | k::KEY_Super_L | k::KEY_Super_R => {
                self.desk.launcher = None;
                self.desk.request_redraw();
                return;
            }
            k::KEY_Return | k::KEY_KP_Enter => {
                let m = l.matching();
                if let Some(&i) = m.get(l.selected) {
                    let e = l.entries[i].clone();
                    self.desk.launcher = None;
                    self.desk.request_redraw();
                    self.launch(e);
                }
                return;
            }
            k::KEY_Down | k::KEY_Tab => {
                if l.selected + 1 < l.matching().len() {
                    l.selected += 1;
                }
            }
            k::KEY_Up | k::KEY_ISO_Left_Tab => l.selected = l.selected.saturating_sub(1),
            k::KEY_BackSpace => {
                l.filter.pop();
                l.selected = 0;
            }
            _ => match ch {
                Some(c) if !c.is_control() && l.filter.chars().count() < 64 => {
                    l.filter.push(c);
                    l.selected = 0;
                }
                _ => return,
            },
        }
        self.launcher_redraw();
    }

    /// A click while the launcher is open: runs the app under the pointer, or closes.
    pub fn launcher_click(&mut self, pos: Point<f64, Logical>) {
        let Some(geo) = geometry(&self.desk) else {
            return;
        };
        let inside = geo.to_f64().contains(pos);
        let app = self
            .desk
            .launcher
            .as_ref()
            .filter(|_| inside)
            .and_then(|l| {
                l.app_at(pos.y as i32 - geo.loc.y)
                    .map(|i| l.entries[i].clone())
            });
        if inside && app.is_none() {
            return; // a header or the search row
        }
        self.desk.launcher = None;
        self.desk.request_redraw();
        if let Some(e) = app {
            self.launch(e);
        }
    }

    /// Runs an app: host apps directly, VM apps as `vm-run` does (booting the VM if needed).
    pub fn launch(&mut self, e: Entry) {
        tracing::info!(domain = e.domain.name(), app = e.name, "launching");
        match &e.domain {
            Domain::Host => {
                let mut c = std::process::Command::new(&e.command[0]);
                c.args(&e.command[1..])
                    .env("WAYLAND_DISPLAY", &self.desk.host_socket)
                    .env("XDG_CURRENT_DESKTOP", "Bulkhead")
                    .stdin(std::process::Stdio::null());
                bulkhead_vmm::monitor::unblock_signals_in_child(&mut c);
                crate::accept::restore_fd_limit(&mut c);
                match c.spawn() {
                    Ok(child) => self.desk.children.push(child),
                    Err(err) => self
                        .desk
                        .notify_for_user(&e.domain, format!("Cannot run {}: {err}", e.name)),
                }
            }
            Domain::Vm(vm) => {
                let Some(m) = self.vms.clone() else {
                    self.desk.notify_for_user(
                        &e.domain,
                        format!("Cannot run {}: the VM manager is not running", e.name),
                    );
                    return;
                };
                let stopped = !matches!(
                    m.list()
                        .into_iter()
                        .find(|v| v.name == **vm)
                        .map(|v| v.state),
                    Some(VmState::Running)
                );
                if stopped {
                    self.desk
                        .notify_for_user(&e.domain, format!("[{vm}] starting for {}", e.name));
                }
                let env = self.grant_launch(vm);
                let notices = self.desk.notices.clone();
                let vm = vm.to_string();
                std::thread::spawn(move || match m.run(&vm, &e.command, &env, None) {
                    Ok((pid, _)) => tracing::info!("{} runs in {vm} as pid {pid}", e.name),
                    Err(err) => {
                        let text = format!("[{vm}] cannot run {}: {err}", e.name);
                        let _ = notices.send((e.domain.clone(), text));
                    }
                });
            }
            // Launcher entries come from the config: the host or a configured VM.
            Domain::Unknown(_) => {}
        }
    }
}

/// `arg` quoted for an Exec line (desktop entry spec: reserved characters in double quotes,
/// `"`, `` ` ``, `$` and `\` escaped; `%` doubled).
fn exec_quote(arg: &str) -> String {
    let arg = arg.replace('%', "%%");
    let reserved = |c: char| " \t\n\"'\\><~|&;$*?#()`".contains(c);
    if !arg.is_empty() && !arg.chars().any(reserved) {
        return arg;
    }
    let mut q = String::from("\"");
    for c in arg.chars() {
        if matches!(c, '"' | '`' | '$' | '\\') {
            q.push('\\');
        }
        q.push(c);
    }
    q.push('"');
    q
}

/// The desktop entry of a VM app.
pub fn desktop_entry(vm: &str, app: &bulkhead_config::vm::AppConfig) -> String {
    let name: String = app.name.chars().filter(|c| !c.is_control()).collect();
    let mut exec = vec!["vm-run".to_string(), exec_quote(vm)];
    exec.extend(app.command.iter().map(|a| exec_quote(a)));
    let mut s = format!(
        "[Desktop Entry]\nType=Application\nName=[{vm}] {name}\nExec={}\nTerminal=false\n\
         Categories=X-Bulkhead;\nX-Bulkhead-VM={vm}\n",
        exec.join(" ")
    );
    if let Some(icon) = &app.icon {
        let icon: String = icon.chars().filter(|c| !c.is_control()).collect();
        s.push_str(&format!("Icon={icon}\n"));
    }
    s
}

/// A file name part from an app name: lowercase letters, digits and dashes.
fn slug(name: &str) -> String {
    let s: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .collect();
    s.trim_matches('-').to_string()
}

/// Writes `bulkhead-<vm>-<app>.desktop` for every VM app into `dir` and removes the ones of
/// apps no longer configured. Returns the files written.
pub fn write_desktop_files(config: &Config, dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    std::fs::create_dir_all(dir)?;
    let mut written = Vec::new();
    for vm in &config.vms {
        for (i, app) in vm.spec.apps.iter().enumerate() {
            let mut s = slug(&app.name);
            if s.is_empty() {
                s = format!("app{i}");
            }
            let path = dir.join(format!("bulkhead-{}-{s}.desktop", vm.name));
            let tmp = dir.join(format!(".bulkhead-{}-{s}.desktop.tmp", vm.name));
            std::fs::write(&tmp, desktop_entry(&vm.name, app))?;
            std::fs::rename(&tmp, &path)?;
            written.push(path);
        }
    }
    for e in std::fs::read_dir(dir)?.flatten() {
        let p = e.path();
        let ours = p
            .file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n.starts_with("bulkhead-") && n.ends_with(".desktop"));
        if ours && !written.contains(&p) {
            let _ = std::fs::remove_file(&p);
        }
    }
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn desktop_entries_quote_their_commands() {
        let app = bulkhead_config::vm::AppConfig {
            name: "Files & more".into(),
            command: vec!["sh".into(), "-c".into(), "echo \"$HOME\" 100%".into()],
            icon: Some("folder".into()),
        };
        let e = desktop_entry("work", &app);
        assert!(e.contains("Name=[work] Files & more\n"), "{e}");
        assert!(
            e.contains("Exec=vm-run work sh -c \"echo \\\"\\$HOME\\\" 100%%\"\n"),
            "{e}"
        );
        assert!(e.contains("Icon=folder\n"));
        assert_eq!(slug("Files & more"), "files---more");
    }

    #[test]
    fn desktop_files_follow_the_config() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("bulkhead-old-gone.desktop"), "x").unwrap();
        std::fs::write(dir.path().join("firefox.desktop"), "not ours").unwrap();
        let config = Config::parse(
            "[[vm]]\nname = \"work\"\ncolor = \"#3060ff\"\n[[vm.app]]\nname = \"Terminal\"\ncommand = [\"foot\"]\n",
            Path::new("/x/config.toml"),
        )
        .unwrap();
        let written = write_desktop_files(&config, dir.path()).unwrap();
        assert_eq!(written, [dir.path().join("bulkhead-work-terminal.desktop")]);
        assert!(!dir.path().join("bulkhead-old-gone.desktop").exists());
        assert!(dir.path().join("firefox.desktop").exists());
    }
}
