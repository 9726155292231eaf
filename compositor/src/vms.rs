//! The VM manager inside the compositor: created with the session, its events shown to the
//! user (a VM that crashes loses its windows and says so), its IPC requests served on worker
//! threads so a booting VM never stalls the desktop.

use std::io::Write;
use std::os::unix::net::UnixStream;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bulkhead_ipc::{OutputStream, Reply, Request, Response};
use bulkhead_vmm::agent::RunEvent;
use bulkhead_vmm::manager::StopReason;
use bulkhead_vmm::{HostEnv, Manager, VmEvent};
use smithay::reexports::calloop::channel;
use smithay::reexports::wayland_server::backend::{ClientId, DisconnectReason};

use crate::domain::{ClientState, Domain};
use crate::state::{Desktop, State};

/// Creates the manager (re-adopting VMs a previous compositor left running) and routes its
/// events into the event loop.
pub fn start(desk: &Desktop) -> Result<Arc<Manager>, String> {
    let env = HostEnv::detect(&desk.config.vmm)?;
    // The VM monitor is a program of its own, next to this one (a build, an install) or on PATH.
    let exe = std::env::current_exe()
        .ok()
        .map(|e| e.with_file_name("bulkhead-vm-monitor"))
        .filter(|p| p.is_file())
        .or_else(|| bulkhead_vmm::plan::find_program("bulkhead-vm-monitor"))
        .ok_or(
            "bulkhead-vm-monitor is neither next to bulkhead nor on PATH; install the VM tools",
        )?;
    let (tx, rx) = channel::channel::<VmEvent>();
    desk.loop_handle
        .insert_source(rx, |event, _, state| {
            if let channel::Event::Msg(e) = event {
                state.on_vm_event(e);
            }
        })
        .map_err(|e| e.to_string())?;
    let tx = Mutex::new(tx);
    Ok(Manager::new(
        &desk.config,
        env,
        exe,
        Box::new(move |e| {
            if let Ok(tx) = tx.lock() {
                let _ = tx.send(e);
            }
        }),
    ))
}

impl State {
    fn on_vm_event(&mut self, event: VmEvent) {
        match event {
            VmEvent::Started { vm } => tracing::info!("VM {vm} started"),
            VmEvent::Stopped { vm, reason } => {
                let domain = Domain::Vm(vm.as_str().into());
                let text = match &reason {
                    StopReason::Requested => None,
                    StopReason::Idle => Some(format!("[{vm}] shut down after being idle")),
                    StopReason::Crashed(why) => Some(format!(
                        "[{vm}] stopped unexpectedly: {}",
                        crate::sanitize::sanitize_title(why)
                    )),
                };
                // Whatever is still connected on the VM's socket belonged to the VM.
                let killed = self.desk.disconnect_domain(&vm);
                let n = killed.len();
                // Dispatching a killed client runs its destructors now (windows unmapped), not
                // whenever some other client next sends something.
                let display = self.desk.display.clone();
                for id in killed {
                    let _ = display
                        .borrow_mut()
                        .backend()
                        .dispatch_single_client(self, id);
                }
                tracing::info!("VM {vm} stopped ({reason:?}); {n} clients disconnected");
                if let Some(text) = text {
                    self.desk.notify(&domain, text);
                }
            }
        }
    }
}

impl Desktop {
    /// Disconnects every client of VM domain `name`; returns them.
    pub fn disconnect_domain(&mut self, name: &str) -> Vec<ClientId> {
        let handle = self.display_handle.backend_handle();
        // Collect first: the backend is locked while iterating.
        let mut ids = Vec::new();
        handle.with_all_clients(|id| ids.push(id));
        let ours: Vec<_> = ids
            .into_iter()
            .filter(|id| {
                handle
                    .get_client_data(id.clone())
                    .ok()
                    .and_then(|d| d.downcast_arc::<ClientState>().ok())
                    .is_some_and(|c| !c.domain.is_host() && c.domain.name() == name)
            })
            .collect();
        for id in &ours {
            handle.kill_client(id.clone(), DisconnectReason::ConnectionClosed);
        }
        ours
    }
}

/// Serves one VM request on a worker thread, writing one or more response lines to `stream`.
pub fn serve(
    manager: Option<Arc<Manager>>,
    request: Request,
    env: Vec<(String, String)>,
    mut stream: UnixStream,
) {
    let _ = stream.set_nonblocking(false);
    // A reader that stops reading stalls only this worker, and not for ever.
    let _ = stream.set_write_timeout(Some(Duration::from_secs(30)));
    let send = |stream: &mut UnixStream, r: Response| -> std::io::Result<()> {
        let line = bulkhead_ipc::to_line(&r).map_err(std::io::Error::other)?;
        stream.write_all(line.as_bytes())
    };
    let Some(m) = manager else {
        let _ = send(
            &mut stream,
            Response::Error("the VM manager is not running in this compositor".into()),
        );
        return;
    };
    let result = match request {
        Request::VmList => Ok(Reply::Vms(m.list())),
        Request::SwitchCounters { network } => m.switch_counters(&network).and_then(|text| {
            serde_json::from_str(&text)
                .map(|counters| Reply::SwitchCounters {
                    network: network.clone(),
                    counters,
                })
                .map_err(|e| {
                    format!("the counters of switch network {network:?} are unreadable: {e}")
                })
        }),
        Request::VmStart { vm } => m.start(&vm).map(|started| Reply::VmStarted {
            boot: m
                .list()
                .into_iter()
                .find(|i| i.name == vm)
                .and_then(|i| i.boot),
            vm,
            started,
        }),
        Request::VmStop { vm } => m.stop(&vm).map(|stopped| Reply::VmStopped { vm, stopped }),
        Request::VmConsole { vm } => m.console(&vm).map(|path| Reply::Console { path }),
        Request::VmRun { vm, argv, wait } => {
            if wait {
                let mut out = stream.try_clone();
                let mut sink = |e: RunEvent| -> std::io::Result<()> {
                    let reply = match e {
                        RunEvent::Started(pid) => Reply::VmRunStarted { pid },
                        RunEvent::Stdout(d) => Reply::Output {
                            stream: OutputStream::Stdout,
                            data: d.to_vec(),
                        },
                        RunEvent::Stderr(d) => Reply::Output {
                            stream: OutputStream::Stderr,
                            data: d.to_vec(),
                        },
                    };
                    match out.as_mut() {
                        Ok(s) => send(s, Response::Ok(reply)),
                        Err(e) => Err(std::io::Error::other(e.to_string())),
                    }
                };
                m.run(&vm, &argv, &env, Some(&mut sink))
                    .map(|(_, exit)| Reply::Exited {
                        code: exit.and_then(|e| e.code),
                        signal: exit.and_then(|e| e.signal),
                    })
            } else {
                m.run(&vm, &argv, &env, None)
                    .map(|(pid, _)| Reply::VmRunStarted { pid })
            }
        }
        other => Err(format!("{other:?} is not a VM request")),
    };
    let response = match result {
        Ok(r) => Response::Ok(r),
        Err(e) => Response::Error(e),
    };
    let _ = send(&mut stream, response);
}

impl State {
    /// A connection on `vm`'s socket. Its peer (the process that connected, from the kernel)
    /// tells how it arrived: the VM's VMM (virtio-gpu cross-domain), its vsock bridge, or some
    /// other host process (direct). Only shown to the user (`bulkhead msg clients`): the
    /// socket alone decides the domain.
    pub fn accept_vm_client(&mut self, stream: UnixStream, vm: &crate::state::VmDomain) {
        use bulkhead_ipc::Arrival;
        use bulkhead_vmm::monitor::PeerRole;
        let manager = &self.vms;
        self.desk.accept_vm_client(stream, vm, |stream| {
            let peer = crate::domain::Peer::of(stream);
            let arrival = match (&peer, manager) {
                (Some(p), Some(m)) => match m.peer_role(vm.domain.name(), p.pid) {
                    PeerRole::Vmm => Arrival::CrossDomain,
                    PeerRole::Helper(h) if h == "wl-bridge" => Arrival::VsockBridge,
                    PeerRole::Helper(_) | PeerRole::Other => Arrival::Direct,
                },
                _ => Arrival::Direct,
            };
            (peer, arrival)
        });
    }
}
