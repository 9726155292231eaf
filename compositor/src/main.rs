//! `bulkhead`: run the compositor, check a config, or talk to a running compositor.

use std::path::PathBuf;
use std::process::ExitCode;

use bulkhead_compositor::backend::BackendKind;
use bulkhead_compositor::{ipc, run, RunOptions};
use bulkhead_config::Config;
use bulkhead_ipc::{Request, Response};
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "bulkhead",
    version,
    about = "A Wayland compositor whose windows belong to VM security domains"
)]
struct Cli {
    /// Where the compositor draws: nested in a running desktop (winit), on the screens from a
    /// text console (drm), in memory (headless), or auto (winit inside a desktop, drm on a VT,
    /// else headless).
    #[arg(long, value_enum, default_value = "auto")]
    backend: BackendKind,
    /// Config file (default: $XDG_CONFIG_HOME/bulkhead/config.toml, then /etc/bulkhead/config.toml).
    #[arg(long, global = true)]
    config: Option<PathBuf>,
    /// Run this command line on the host socket once the compositor is up.
    #[arg(long)]
    startup: Option<String>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Check a config file without starting anything.
    Validate {
        /// The file to check (default: the one Bulkhead would use).
        path: Option<PathBuf>,
    },
    /// Decode one app icon: the file on stdin, its pixels on stdout. The compositor runs this
    /// for each icon, confined (compositor/src/icons/process.rs).
    #[command(name = bulkhead_compositor::icons::DECODER_COMMAND, hide = true)]
    DecodeIcon,
    /// Send a request to the running compositor and print the JSON reply.
    Msg {
        #[command(subcommand)]
        request: MsgRequest,
    },
}

#[derive(Subcommand)]
enum MsgRequest {
    /// The compositor's version.
    Version,
    /// Every window: id, domain, title, app id, geometry, focus.
    Windows,
    /// Every Wayland client: domain, pid and program, and how it arrived (direct,
    /// cross-domain through the VM's VMM, or the VM's vsock bridge).
    Clients,
    /// The host and VM domains with their sockets.
    Domains,
    /// The outputs and their layout.
    Outputs,
    /// Counters (frames composed, keys handled) for benchmarks and test harnesses.
    Stats,
    /// What the global clipboard holds (source domain, types, size; never the data).
    Clipboard,
    /// Per-port counters of a VM switch network (frames, bytes, drops by reason, restarts).
    Switch { network: String },
    /// Write a PNG of everything on screen.
    Screenshot { path: PathBuf },
    /// Run a named action (focus-next, focus-prev, focus-window ID, close, fullscreen, maximize,
    /// minimize, escape, quit, spawn CMD, clipboard-copy, clipboard-paste, launcher).
    Action { name: String, arg: Option<String> },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Some(Command::Validate { path }) => validate(path.or(cli.config)),
        Some(Command::Msg { request }) => msg(request),
        Some(Command::DecodeIcon) => bulkhead_compositor::icons::decoder_main(),
        None => start(cli.config, cli.backend, cli.startup),
    }
}

/// Logs to stderr and, for the desktop session (where a display manager may drop stderr),
/// also to `$XDG_STATE_HOME/bulkhead/session.log`, the previous session's kept as
/// `session.log.old`.
fn init_logging(backend: BackendKind) {
    use tracing_subscriber::fmt::writer::MakeWriterExt;
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    use std::io::IsTerminal;
    let file = (backend.resolve() == BackendKind::Drm)
        .then(bulkhead_compositor::session::open_session_log)
        .flatten();
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal());
    match file {
        Some((path, file)) => {
            builder
                .with_writer(std::io::stderr.and(std::sync::Arc::new(file)))
                .with_ansi(false)
                .init();
            tracing::info!("this session's log: {}", path.display());
            // A panic goes to the log too, not only to a stderr nobody may read.
            let default = std::panic::take_hook();
            std::panic::set_hook(Box::new(move |info| {
                tracing::error!("{info}");
                default(info);
            }));
        }
        None => builder.with_writer(std::io::stderr).init(),
    }
}

/// The config to start with, and what was wrong with the file if it could not be used. A
/// broken file never keeps the session from starting (a black screen, or a loop back to the
/// display manager): it starts with the defaults and says why in a notification, and the
/// file is still watched, so fixing it applies.
fn load_config(explicit: Option<PathBuf>) -> (Config, Option<String>) {
    match Config::locate(explicit.as_deref()) {
        Some(path) => match Config::load(&path) {
            Ok(c) => (c, None),
            Err(e) => {
                let mut c = Config::builtin_default();
                c.source = path;
                (c, Some(e.to_string()))
            }
        },
        None => (Config::builtin_default(), None),
    }
}

fn validate(path: Option<PathBuf>) -> ExitCode {
    let Some(path) = Config::locate(path.as_deref()) else {
        eprintln!("no config file found (looked in $XDG_CONFIG_HOME/bulkhead/config.toml and /etc/bulkhead/config.toml)");
        return ExitCode::FAILURE;
    };
    let result = Config::load(&path).and_then(|c| {
        if let Some(rt) = std::env::var_os("XDG_RUNTIME_DIR").filter(|v| !v.is_empty()) {
            c.check_socket_paths(std::path::Path::new(&rt))?;
        }
        Ok(c)
    });
    match result {
        Ok(c) => {
            println!(
                "{}: valid ({} VM{})",
                path.display(),
                c.vms.len(),
                if c.vms.len() == 1 { "" } else { "s" }
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("{e}");
            ExitCode::FAILURE
        }
    }
}

fn msg(request: MsgRequest) -> ExitCode {
    let req = match request {
        MsgRequest::Version => Request::Version,
        MsgRequest::Windows => Request::Windows,
        MsgRequest::Clients => Request::Clients,
        MsgRequest::Domains => Request::Domains,
        MsgRequest::Outputs => Request::Outputs,
        MsgRequest::Stats => Request::Stats,
        MsgRequest::Clipboard => Request::Clipboard,
        MsgRequest::Switch { network } => Request::SwitchCounters { network },
        MsgRequest::Screenshot { path } => {
            let path = if path.is_absolute() {
                path
            } else {
                match std::env::current_dir() {
                    Ok(d) => d.join(path),
                    Err(e) => {
                        eprintln!("cannot resolve {}: {e}", path.display());
                        return ExitCode::FAILURE;
                    }
                }
            };
            Request::Screenshot { path }
        }
        MsgRequest::Action { name, arg } => Request::Action { name, arg },
    };
    let Some(runtime) = std::env::var_os("XDG_RUNTIME_DIR").filter(|v| !v.is_empty()) else {
        if std::env::var_os(bulkhead_ipc::SOCKET_ENV).is_none() {
            eprintln!(
                "neither BULKHEAD_SOCKET nor XDG_RUNTIME_DIR is set; cannot find the compositor"
            );
            return ExitCode::FAILURE;
        }
        return send(&bulkhead_ipc::socket_path(std::path::Path::new("/")), &req);
    };
    send(
        &bulkhead_ipc::socket_path(std::path::Path::new(&runtime)),
        &req,
    )
}

fn send(socket: &std::path::Path, req: &Request) -> ExitCode {
    match ipc::request(socket, req) {
        Ok(Response::Ok(reply)) => {
            match serde_json::to_string_pretty(&reply) {
                Ok(s) => println!("{s}"),
                Err(e) => eprintln!("cannot print the reply: {e}"),
            }
            ExitCode::SUCCESS
        }
        Ok(Response::Error(e)) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("{e}");
            ExitCode::FAILURE
        }
    }
}

fn start(config: Option<PathBuf>, backend: BackendKind, startup: Option<String>) -> ExitCode {
    init_logging(backend);
    let (config, config_error) = load_config(config);
    if let Some(e) = &config_error {
        tracing::error!("{e}; starting with the default config");
    }
    match run(RunOptions {
        config,
        config_error,
        backend,
        startup_command: startup,
    }) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("the session ended: {e:#}");
            eprintln!("bulkhead: {e:#}");
            ExitCode::FAILURE
        }
    }
}
