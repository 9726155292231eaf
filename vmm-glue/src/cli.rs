//! What the vm-* commands share: talking to the compositor and reporting errors.

use std::process::ExitCode;

use bulkhead_ipc::client::{default_socket, Client};
use bulkhead_ipc::{Reply, Request, Response};

/// Connects, sends `req` and returns the connection for reading the answer(s).
pub fn send(req: &Request) -> Result<Client, String> {
    let mut c = Client::connect(&default_socket()?)?;
    c.send(req)?;
    Ok(c)
}

/// Sends `req` and returns its one reply; the compositor's error text becomes the error.
pub fn call(req: &Request) -> Result<Reply, String> {
    match send(req)?.recv()? {
        Response::Ok(r) => Ok(r),
        Response::Error(e) => Err(e),
    }
}

/// Prints `prog: message` and returns failure.
pub fn fail(prog: &str, message: &str) -> ExitCode {
    eprintln!("{prog}: {message}");
    ExitCode::FAILURE
}

/// An unexpected reply (a compositor of another version).
pub fn unexpected(prog: &str, reply: &Reply) -> ExitCode {
    fail(
        prog,
        &format!("unexpected reply {reply:?}; is the compositor the same Bulkhead version?"),
    )
}

/// Seconds with one decimal, for boot times.
pub fn secs(ms: u64) -> String {
    format!("{:.1} s", ms as f64 / 1000.0)
}
