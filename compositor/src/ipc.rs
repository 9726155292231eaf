//! The IPC socket: newline-delimited JSON requests from `bulkhead msg` and the VM CLIs.
//!
//! Connections are read without blocking the event loop; replies are written with a short
//! bounded wait. A screenshot is composed on the loop (it needs the renderer) and encoded to
//! PNG on a worker thread, which hands the connection back when done.

use std::io::{self, Read, Write};
use std::os::fd::AsFd;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use bulkhead_config::Action;
use bulkhead_ipc::{
    DomainInfo, OutputInfo, Rect, Reply, Request, Response, WindowInfo, MAX_REQUEST_LEN,
};
use smithay::reexports::calloop::channel::{self, Sender};
use smithay::reexports::calloop::generic::Generic;
use smithay::reexports::calloop::{Interest, LoopHandle, Mode, PostAction};
use smithay::utils::{Logical, Rectangle};

use crate::backend::Screenshot;
use crate::domain::DomainSocket;
use crate::shell::{meta, title_and_app_id};
use crate::state::State;
use smithay::wayland::selection::SelectionTarget;

/// How long a reply may wait for a client that does not read.
const WRITE_TIMEOUT: Duration = Duration::from_secs(2);

/// A finished screenshot, sent back from the encoder thread.
struct Finished {
    stream: UnixStream,
    response: Response,
}

pub struct IpcServer {
    pub path: PathBuf,
    _socket: DomainSocket,
    done: Sender<Finished>,
}

impl IpcServer {
    pub fn start(
        path: &Path,
        loop_handle: &LoopHandle<'static, State>,
    ) -> Result<IpcServer, String> {
        let socket = DomainSocket::bind(path)
            .map_err(|e| format!("cannot open the IPC socket: {}", error_chain(&e)))?;
        let fd = std::os::fd::AsFd::as_fd(socket.listener())
            .try_clone_to_owned()
            .map_err(|e| e.to_string())?;
        let path = path.to_owned();
        let listener = socket.listener().try_clone().map_err(|e| e.to_string())?;
        crate::accept::watch(
            loop_handle,
            path.display().to_string(),
            fd,
            move || match listener.accept() {
                Ok((stream, _)) => Ok(Some(stream)),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(None),
                Err(e) => Err(e),
            },
            |state, stream| {
                if let Err(e) = register(&state.desk.loop_handle, stream) {
                    tracing::warn!("IPC connection dropped: {e}");
                }
            },
        )?;
        let (done, finished) = channel::channel::<Finished>();
        loop_handle
            .insert_source(finished, |event, _, state| {
                if let channel::Event::Msg(Finished { stream, response }) = event {
                    if send(&stream, &response).is_ok() {
                        let _ = register(&state.desk.loop_handle, stream);
                    }
                }
            })
            .map_err(|e| e.to_string())?;
        Ok(IpcServer {
            path,
            _socket: socket,
            done,
        })
    }
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(cause) = src {
        s.push_str(": ");
        s.push_str(&cause.to_string());
        src = cause.source();
    }
    s
}

fn register(loop_handle: &LoopHandle<'static, State>, stream: UnixStream) -> io::Result<()> {
    stream.set_nonblocking(true)?;
    let mut buf: Vec<u8> = Vec::new();
    loop_handle
        .insert_source(Generic::new(stream, Interest::READ, Mode::Level), move |_, stream, state| {
            let mut chunk = [0u8; 4096];
            // SAFETY: we only read from the stream; the event source keeps owning it.
            let s: &mut UnixStream = unsafe { stream.get_mut() };
            loop {
                match s.read(&mut chunk) {
                    Ok(0) => return Ok(PostAction::Remove),
                    Ok(n) => buf.extend_from_slice(&chunk[..n]),
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(_) => return Ok(PostAction::Remove),
                }
                if buf.len() > MAX_REQUEST_LEN {
                    let _ = send(s, &Response::Error(format!("request longer than {MAX_REQUEST_LEN} bytes")));
                    return Ok(PostAction::Remove);
                }
            }
            while let Some(nl) = buf.iter().position(|b| *b == b'\n') {
                let line: Vec<u8> = buf.drain(..=nl).collect();
                let request = match serde_json::from_slice::<Request>(&line) {
                    Ok(r) => r,
                    Err(e) => {
                        let msg = format!("malformed request ({e}); send one JSON object per line, e.g. {{\"request\":\"windows\"}}");
                        if send(s, &Response::Error(msg)).is_err() {
                            return Ok(PostAction::Remove);
                        }
                        continue;
                    }
                };
                match state.handle_request(request) {
                    Outcome::Reply(r) => {
                        if send(s, &r).is_err() {
                            return Ok(PostAction::Remove);
                        }
                    }
                    Outcome::Vm(request, env) => {
                        // The worker owns the connection from here on and closes it when done.
                        let Ok(dup) = s.try_clone() else { return Ok(PostAction::Remove) };
                        let manager = state.vms.clone();
                        std::thread::spawn(move || crate::vms::serve(manager, request, env, dup));
                        return Ok(PostAction::Remove);
                    }
                    Outcome::Screenshot(path, shot) => {
                        // Hand a duplicate of the connection to the encoder; it comes back
                        // through the channel with the reply. Requests pipelined behind the
                        // screenshot are dropped (clients wait for each reply).
                        let Ok(dup) = s.try_clone() else { return Ok(PostAction::Remove) };
                        let Some(done) = state.ipc.as_ref().map(|i| i.done.clone()) else {
                            return Ok(PostAction::Remove);
                        };
                        std::thread::spawn(move || {
                            let response = write_png(&path, &shot);
                            let _ = done.send(Finished { stream: dup, response });
                        });
                        return Ok(PostAction::Remove);
                    }
                }
            }
            Ok(PostAction::Continue)
        })
        .map_err(|e| io::Error::other(e.to_string()))?;
    Ok(())
}

/// Writes one response line, waiting at most [`WRITE_TIMEOUT`] for a slow reader.
fn send(stream: &UnixStream, response: &Response) -> io::Result<()> {
    let line = bulkhead_ipc::to_line(response).map_err(io::Error::other)?;
    let mut data = line.as_bytes();
    let deadline = Instant::now() + WRITE_TIMEOUT;
    let mut w = stream;
    while !data.is_empty() {
        match w.write(data) {
            Ok(n) => data = &data[n..],
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                let left = deadline.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    return Err(io::ErrorKind::TimedOut.into());
                }
                let mut fds = [nix::poll::PollFd::new(
                    stream.as_fd(),
                    nix::poll::PollFlags::POLLOUT,
                )];
                let ms = u16::try_from(left.as_millis()).unwrap_or(u16::MAX);
                let _ = nix::poll::poll(&mut fds, nix::poll::PollTimeout::from(ms));
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

fn write_png(path: &Path, shot: &Screenshot) -> Response {
    let result = (|| -> Result<(), String> {
        let file = std::fs::File::create(path)
            .map_err(|e| format!("cannot create {}: {e}", path.display()))?;
        let mut enc = png::Encoder::new(io::BufWriter::new(file), shot.width, shot.height);
        enc.set_color(png::ColorType::Rgba);
        enc.set_depth(png::BitDepth::Eight);
        let mut writer = enc
            .write_header()
            .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
        writer
            .write_image_data(&shot.rgba)
            .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
        writer
            .finish()
            .map_err(|e| format!("cannot write {}: {e}", path.display()))
    })();
    match result {
        Ok(()) => Response::Ok(Reply::Screenshot {
            path: path.to_owned(),
            width: shot.width,
            height: shot.height,
        }),
        Err(e) => Response::Error(e),
    }
}

pub enum Outcome {
    Reply(Response),
    Screenshot(PathBuf, Screenshot),
    /// A VM request, served on a worker thread (it may wait for a VM to boot), with the
    /// environment a launch gives its command (its activation token).
    Vm(Request, Vec<(String, String)>),
}

fn rect(r: Rectangle<i32, Logical>) -> Rect {
    Rect {
        x: r.loc.x,
        y: r.loc.y,
        width: r.size.w,
        height: r.size.h,
    }
}

impl State {
    pub fn handle_request(&mut self, request: Request) -> Outcome {
        let reply =
            match request {
                Request::Version => Ok(Reply::Version {
                    version: env!("CARGO_PKG_VERSION").to_string(),
                }),
                Request::Windows => Ok(Reply::Windows(self.window_infos())),
                Request::Clients => Ok(Reply::Clients(self.client_infos())),
                Request::Domains => Ok(Reply::Domains(self.domain_infos())),
                Request::Outputs => Ok(Reply::Outputs(self.output_infos())),
                Request::Stats => Ok(Reply::Stats {
                    frames_composed: self.desk.frames_composed,
                    keys_handled: self.desk.keys_handled,
                }),
                Request::Clipboard => Ok(Reply::Clipboard {
                    global: self.desk.clipboard.global.as_ref().map(|c| {
                        bulkhead_ipc::ClipboardInfo {
                            from: c.from.name().to_string(),
                            types: c.mime_types(),
                            bytes: c.total() as u64,
                        }
                    }),
                    selection_domain: self
                        .desk
                        .selections
                        .installed_domain(SelectionTarget::Clipboard)
                        .map(|d| d.name().to_string()),
                    primary_domain: self
                        .desk
                        .selections
                        .installed_domain(SelectionTarget::Primary)
                        .map(|d| d.name().to_string()),
                    selection_version: self
                        .desk
                        .selections
                        .installed_version(SelectionTarget::Clipboard),
                    primary_version: self
                        .desk
                        .selections
                        .installed_version(SelectionTarget::Primary),
                }),
                Request::Screenshot { path } => {
                    if !path.is_absolute() {
                        Err(format!(
                            "screenshot path {} must be absolute",
                            path.display()
                        ))
                    } else {
                        match self.backend.screenshot(&self.desk) {
                            Ok(shot) => return Outcome::Screenshot(path, shot),
                            Err(e) => Err(e),
                        }
                    }
                }
                Request::Action { name, arg } => Action::from_name(&name, arg.as_deref())
                    .and_then(|a| self.run_action(&a))
                    .map(|()| Reply::Done),
                Request::Input { events } => {
                    if !self.backend.is_headless() {
                        Err("synthetic input is only accepted with --backend headless".to_string())
                    } else {
                        for e in events {
                            self.synthetic_input(e);
                        }
                        Ok(Reply::Done)
                    }
                }
                Request::VmRun { ref vm, .. } => {
                    // A launch: its VM's first window may take the keyboard, or the window
                    // the app activates with the launch's token.
                    let env = self.grant_launch(vm);
                    return Outcome::Vm(request, env);
                }
                Request::VmList
                | Request::VmStart { .. }
                | Request::VmStop { .. }
                | Request::VmConsole { .. }
                | Request::SwitchCounters { .. } => return Outcome::Vm(request, Vec::new()),
            };
        Outcome::Reply(match reply {
            Ok(r) => Response::Ok(r),
            Err(e) => Response::Error(e),
        })
    }

    /// Every live client in the order they connected, with its toplevel windows counted.
    pub fn client_infos(&self) -> Vec<bulkhead_ipc::ClientInfo> {
        use smithay::reexports::wayland_server::Resource;
        use smithay::wayland::seat::WaylandFocus;
        let desk = &self.desk;
        let owner =
            |w: &smithay::desktop::Window| w.wl_surface().and_then(|s| s.client()).map(|c| c.id());
        let owners: Vec<_> = desk
            .space
            .elements()
            .chain(desk.minimized.iter().map(|(w, _)| w))
            .filter_map(owner)
            .collect();
        desk.clients
            .iter()
            .filter_map(|id| {
                let data = desk
                    .display_handle
                    .backend_handle()
                    .get_client_data(id.clone())
                    .ok()?;
                let st = data.downcast_arc::<crate::domain::ClientState>().ok()?;
                Some(bulkhead_ipc::ClientInfo {
                    domain: st.domain.name().to_string(),
                    pid: st.peer.as_ref().map(|p| p.pid),
                    uid: st.peer.as_ref().map(|p| p.uid),
                    program: st.peer.as_ref().and_then(|p| p.program.clone()),
                    arrival: st.arrival,
                    sandboxed: st.security_context.is_some(),
                    windows: owners.iter().filter(|o| *o == id).count(),
                })
            })
            .collect()
    }

    pub fn window_infos(&self) -> Vec<WindowInfo> {
        let desk = &self.desk;
        let focused = desk.focused_window();
        let metrics = desk.metrics();
        let mut out = Vec::new();
        let mapped = desk
            .space
            .elements()
            .map(|w| (w.clone(), desk.space.element_location(w), false));
        let minimized = desk
            .minimized
            .iter()
            .map(|(w, loc)| (w.clone(), Some(*loc), true));
        for (w, loc, is_min) in mapped.chain(minimized) {
            let Some(loc) = loc else { continue };
            let m = meta(&w);
            let st = m.state.borrow();
            let (title, app_id) = title_and_app_id(&w);
            let content = Rectangle::new(loc, crate::frame::clamp_size(w.geometry().size));
            let outer = metrics.outer(content, desk.frame_kind(&w));
            out.push(WindowInfo {
                id: m.id,
                domain: m.domain.name().to_string(),
                title,
                app_id,
                geometry: rect(content),
                frame: rect(outer),
                output: if is_min {
                    None
                } else {
                    desk.window_output(&w).map(|o| o.name())
                },
                focused: focused.as_ref() == Some(&w),
                maximized: st.maximized,
                fullscreen: st.fullscreen,
                minimized: is_min,
                attention: st.attention,
                client_decorations: w.toplevel().is_some_and(|t| {
                    crate::handlers::xdg_shell::wants_client_decorations(t.wl_surface())
                }),
            });
        }
        out
    }

    fn domain_infos(&self) -> Vec<DomainInfo> {
        let desk = &self.desk;
        let clients = |name: &str| {
            let handle = desk.display_handle.backend_handle();
            // Collect first: the backend is locked while iterating.
            let mut ids = Vec::new();
            handle.with_all_clients(|id| ids.push(id));
            ids.into_iter()
                .filter_map(|id| handle.get_client_data(id).ok())
                .filter_map(|d| d.downcast_arc::<crate::domain::ClientState>().ok())
                .filter(|c| c.domain.name() == name)
                .count()
        };
        let windows = |name: &str| {
            desk.all_windows()
                .iter()
                .filter(|w| meta(w).domain.name() == name)
                .count()
        };
        let mut out = vec![DomainInfo {
            name: "host".into(),
            color: desk.config.appearance.host_color.to_string(),
            socket: desk.runtime_dir.join(&desk.host_socket),
            clients: clients("host"),
            windows: windows("host"),
            x11_display: desk.xwayland.display.map(|n| format!(":{n}")),
        }];
        for vm in &desk.vms {
            let name = vm.domain.name();
            out.push(DomainInfo {
                name: name.to_string(),
                color: vm.color.to_string(),
                socket: vm.socket.path.clone(),
                clients: clients(name),
                windows: windows(name),
                x11_display: None,
            });
        }
        out
    }

    fn output_infos(&self) -> Vec<OutputInfo> {
        let renderer = self.backend.renderer_name();
        self.desk
            .space
            .outputs()
            .filter_map(|o| {
                let geo = self.desk.space.output_geometry(o)?;
                Some(OutputInfo {
                    name: o.name(),
                    geometry: rect(geo),
                    scale: o.current_scale().fractional_scale(),
                    refresh_mhz: o.current_mode().map_or(0, |m| m.refresh),
                    renderer: Some(renderer.to_string()),
                })
            })
            .collect()
    }
}

pub use bulkhead_ipc::client::{request, request_within};
