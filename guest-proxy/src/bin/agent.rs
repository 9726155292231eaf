//! `bulkhead-agent`: started at guest boot, runs commands for the host over vsock.

fn main() {
    let opts = match bulkhead_guest::agent::parse_args(std::env::args_os().skip(1)) {
        Ok(o) => o,
        Err(e) => {
            eprintln!("bulkhead-agent: {e}");
            std::process::exit(2);
        }
    };
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("bulkhead-agent: cannot start the runtime: {e}");
            std::process::exit(1);
        }
    };
    if let Err(e) = rt.block_on(bulkhead_guest::agent::serve(opts)) {
        eprintln!("bulkhead-agent: {e}");
        std::process::exit(1);
    }
}
