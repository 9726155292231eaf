//! Named actions: what key bindings and `bulkhead msg action NAME [ARG]` run.

use std::fmt;

/// Something the compositor can be asked to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Focus (and raise, un-minimising if needed) the next window in most-recently-used order.
    FocusNext,
    FocusPrev,
    /// Focus the window with this IPC id.
    FocusWindow(u64),
    /// Ask the focused window to close.
    Close,
    /// Toggle fullscreen of the focused window.
    Fullscreen,
    /// Toggle maximized of the focused window.
    Maximize,
    Minimize,
    /// Leave fullscreen and take back a pointer lock or confinement (the binding that no VM
    /// can inhibit).
    Escape,
    /// End the session.
    Quit,
    /// Run a host command line (through `sh -c`).
    Spawn(String),
    /// Copy the focused window's domain clipboard into the global clipboard.
    ClipboardCopy,
    /// Offer the global clipboard to the focused window's domain, then empty it.
    ClipboardPaste,
    /// Open (or close) the launcher.
    Launcher,
    /// Read the config file again and apply it.
    ReloadConfig,
}

/// Every action name, for messages and completion.
pub const ACTION_NAMES: &[&str] = &[
    "focus-next",
    "focus-prev",
    "focus-window",
    "close",
    "fullscreen",
    "maximize",
    "minimize",
    "escape",
    "quit",
    "spawn",
    "clipboard-copy",
    "clipboard-paste",
    "launcher",
    "reload-config",
];

impl Action {
    /// Parses `"name"` or `"name argument"` (as written in `[binds]`).
    pub fn parse(s: &str) -> Result<Action, String> {
        let s = s.trim();
        let (name, arg) = match s.split_once(char::is_whitespace) {
            Some((n, a)) => (n, Some(a.trim())),
            None => (s, None),
        };
        Action::from_name(name, arg)
    }

    /// Builds an action from its name and optional argument (as sent over IPC).
    pub fn from_name(name: &str, arg: Option<&str>) -> Result<Action, String> {
        let arg = arg.filter(|a| !a.is_empty());
        let no_arg = |a: Action| match arg {
            None => Ok(a),
            Some(x) => Err(format!(
                "action {name:?} takes no argument, but {x:?} was given"
            )),
        };
        match name {
            "focus-next" => no_arg(Action::FocusNext),
            "focus-prev" => no_arg(Action::FocusPrev),
            "close" => no_arg(Action::Close),
            "fullscreen" => no_arg(Action::Fullscreen),
            "maximize" => no_arg(Action::Maximize),
            "minimize" => no_arg(Action::Minimize),
            "escape" => no_arg(Action::Escape),
            "quit" => no_arg(Action::Quit),
            "clipboard-copy" => no_arg(Action::ClipboardCopy),
            "clipboard-paste" => no_arg(Action::ClipboardPaste),
            "launcher" => no_arg(Action::Launcher),
            "reload-config" => no_arg(Action::ReloadConfig),
            "focus-window" => {
                let a = arg.ok_or(
                    "action \"focus-window\" needs a window id (see `bulkhead msg windows`)",
                )?;
                a.parse::<u64>().map(Action::FocusWindow).map_err(|_| {
                    format!("window id {a:?} is not a number (see `bulkhead msg windows`)")
                })
            }
            "spawn" => {
                let a = arg.ok_or("action \"spawn\" needs a command line, e.g. \"spawn foot\"")?;
                Ok(Action::Spawn(a.to_string()))
            }
            other => Err(format!(
                "unknown action {other:?}; known actions: {}",
                ACTION_NAMES.join(", ")
            )),
        }
    }

    pub fn name(&self) -> &'static str {
        match self {
            Action::FocusNext => "focus-next",
            Action::FocusPrev => "focus-prev",
            Action::FocusWindow(_) => "focus-window",
            Action::Close => "close",
            Action::Fullscreen => "fullscreen",
            Action::Maximize => "maximize",
            Action::Minimize => "minimize",
            Action::Escape => "escape",
            Action::Quit => "quit",
            Action::Spawn(_) => "spawn",
            Action::ClipboardCopy => "clipboard-copy",
            Action::ClipboardPaste => "clipboard-paste",
            Action::Launcher => "launcher",
            Action::ReloadConfig => "reload-config",
        }
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Action::FocusWindow(id) => write!(f, "focus-window {id}"),
            Action::Spawn(cmd) => write!(f, "spawn {cmd}"),
            other => f.write_str(other.name()),
        }
    }
}
